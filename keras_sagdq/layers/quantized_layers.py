"""Conv2D, DepthwiseConv2D and Dense with quantized weights.

Each layer is its Keras parent plus the weight quantizer state of GENIE-M:
a per-channel learned step `s`, a zero point, the frozen integer base
`floor(w / s0)` and the rounding logits `V`. The float kernel stays in the
layer (BatchNorm already folded in), so any layer can switch between

- `"float"`: the float kernel, exactly the original layer;
- `"soft"`: `s * (clip(base + h(V) + zp) - zp)`, differentiable in `s` and `V`;
- `"hard"`: the same with `h = 1[V >= 0]`, the weights that get deployed.

Reference:
    - [Nagel et al., 2020. AdaRound](https://arxiv.org/abs/2004.10568)
    - [Jeon et al., 2023. GENIE](https://arxiv.org/abs/2212.04780)
"""

import keras
import numpy as np
from keras import ops

from keras_sagdq import quantizers
from keras_sagdq.layers.activation_quantizer import check_mode


class WeightQuantization:
    """Mixin adding GENIE-M weight quantization to a Keras layer with a kernel.

    A subclass is everything the library knows about one layer type (add it
    to `QUANTIZED_LAYERS`): `FLOAT_CLASS`, the Keras layer it replaces;
    `CHANNEL_AXES`, the kernel axes that index output channels (steps and
    BatchNorm folding follow them); its output from
    `self.quantized_kernel()`; and `export_call`, its output in the ops that
    the TFLite converter keeps per-channel.
    """

    FLOAT_CLASS = None
    CHANNEL_AXES = (-1,)

    @classmethod
    def channel_shape(cls, kernel_shape):
        """`kernel_shape` with 1 on every axis but the output-channel axes."""
        axes = {a % len(kernel_shape) for a in cls.CHANNEL_AXES}
        return tuple(d if a in axes else 1 for a, d in enumerate(kernel_shape))

    def export_call(self, inputs, integers, steps, bias, quantize):
        """The layer's output from deployed weights, for the TFLite export.

        Args:
            inputs: the input tensor (TensorFlow backend).
            integers: kernel integers `q - zp` (numpy, kernel layout).
            steps: per-channel steps, broadcastable to `integers`.
            bias: the float bias (numpy) or None.
            quantize: `quantize(integers, steps)` returns the fake-quantized
                kernel, per channel along the last axis of its arguments.
        """
        raise NotImplementedError

    def _export_finish(self, outputs, bias):
        if bias is not None:
            outputs = ops.add(outputs, bias)
        return self.activation(outputs) if self.activation is not None else outputs

    # The mixin comes first in each subclass's bases, so `super()` here is
    # the Keras layer.
    def build(self, input_shape):
        super().build(input_shape)
        self._build_weight_quantization()

    def get_config(self):
        return {**super().get_config(), **self._quantization_config()}

    def _init_weight_quantization(
        self, weight_bits, weight_symmetric, weight_per_channel, mode
    ):
        self.weight_bits = quantizers.check_bits(weight_bits, "weight_bits")
        self.weight_symmetric = bool(weight_symmetric)
        self.weight_per_channel = bool(weight_per_channel)
        self.mode = check_mode(mode)

    @property
    def _channel_axes(self):
        if not self.weight_per_channel:
            return ()
        rank = len(self.kernel.shape)
        return tuple(a % rank for a in self.CHANNEL_AXES)

    def _build_weight_quantization(self):
        shape = tuple(self.kernel.shape)
        axes = self._channel_axes
        param_shape = tuple(d if a in axes else 1 for a, d in enumerate(shape))
        self.weight_step = self.add_weight(
            name="weight_step", shape=param_shape, initializer="ones"
        )
        self.weight_zero_point = self.add_weight(
            name="weight_zero_point",
            shape=param_shape,
            initializer="zeros",
            trainable=False,
        )
        self.weight_base = self.add_weight(
            name="weight_base", shape=shape, initializer="zeros", trainable=False
        )
        self.rounding_logits = self.add_weight(
            name="rounding_logits", shape=shape, initializer="zeros"
        )
        # The step of the quantizer feeding this layer (0: unknown), set by
        # `keras_sagdq.integer_alignment.align_biases`; it fixes the
        # unit of the bias in an integer runtime.
        self.input_step = self.add_weight(
            name="input_step", shape=(), initializer="zeros", trainable=False
        )
        # Calibration learns steps and rounding only; the float weights stay.
        self.kernel.trainable = False
        if self.bias is not None:
            self.bias.trainable = False

    @property
    def weight_integer_range(self):
        return quantizers.integer_range(
            self.weight_bits, self.weight_symmetric, narrow=self.weight_symmetric
        )

    def initialize_weight_quantizer(
        self, p=quantizers.DEFAULT_NORM_P, weight_range="lp"
    ):
        """Set step, zero point, integer base and rounding logits from the kernel.

        The step comes from the `mean|w - Q(w)|^p` grid search; the logits
        start at the fractional residue, so soft mode begins at the float
        weights (up to clipping) and hard mode at round-to-nearest.

        Args:
            p: norm of the search's error.
            weight_range: `"lp"` (search clip ratios 1.00 .. 0.01) or
                `"minmax"` (ratio 1.00 only: the channel's full range).
        """
        w = ops.convert_to_numpy(self.kernel).astype(np.float32)
        step, zero_point = quantizers.search_weight_params(
            w,
            self.weight_bits,
            self._channel_axes,
            self.weight_symmetric,
            p,
            num_candidates=1
            if weight_range == "minmax"
            else quantizers.DEFAULT_NUM_CANDIDATES,
        )
        scaled = w / step
        base = np.floor(scaled)
        self.weight_step.assign(step)
        self.weight_zero_point.assign(zero_point)
        self.weight_base.assign(base)
        self.rounding_logits.assign(quantizers.rounding_logits_for(scaled - base))

    def quantized_kernel(self):
        """The kernel as the current mode computes it."""
        if self.mode == "float":
            return self.kernel
        qmin, qmax = self.weight_integer_range
        return quantizers.adaround_quantize(
            self.weight_base,
            self.rounding_logits,
            self.weight_step,
            self.weight_zero_point,
            qmin,
            qmax,
            hard=self.mode == "hard",
        )

    def aligned_bias(self):
        """The bias in whole units of `input_step * weight_step` (an int8
        runtime's int32 bias), or the float bias while `input_step` is 0."""
        # A learned step may turn negative; the file's unit is positive.
        unit = self.input_step * ops.abs(ops.reshape(self.weight_step, (-1,)))
        safe = ops.where(unit > 0, unit, ops.ones_like(unit))
        return ops.where(unit > 0, ops.round(self.bias / safe) * safe, self.bias)

    def quantized_bias(self):
        """The bias as the current mode computes it (aligned unless float)."""
        if self.mode == "float":
            return self.bias
        return ops.stop_gradient(self.aligned_bias())

    def integer_kernel(self):
        """The deployed integers `q - zp` (hard rounding), as numpy int32."""
        qmin, qmax = self.weight_integer_range
        base = ops.convert_to_numpy(self.weight_base)
        h = ops.convert_to_numpy(self.rounding_logits) >= 0
        zp = ops.convert_to_numpy(self.weight_zero_point)
        return (np.clip(base + h + zp, qmin, qmax) - zp).astype(np.int32)

    def rounding_loss(self, beta):
        """AdaRound regularizer of this layer's rounding logits."""
        return quantizers.rounding_regularizer(self.rounding_logits, beta)

    def _serialized_variables(self):
        names = ["kernel", "bias", "weight_step", "weight_zero_point"]
        names += ["weight_base", "rounding_logits", "input_step"]
        return [getattr(self, n) for n in names if getattr(self, n) is not None]

    # Keras' Conv and Dense save a fixed list of their own variables; these
    # two methods add the quantizer state to it.
    def save_own_variables(self, store):
        if not self.built:
            return
        for i, variable in enumerate(self._serialized_variables()):
            store[str(i)] = variable

    def load_own_variables(self, store):
        variables = self._serialized_variables()
        if len(store.keys()) == len(variables) - 1:
            # Saved before `input_step` existed: the bias stays float.
            variables = variables[:-1]
        if len(store.keys()) != len(variables):
            raise ValueError(
                f"Layer {self.name!r} expects {len(variables)} saved variables. "
                f"Received: {len(store.keys())} variables in the file."
            )
        for i, variable in enumerate(variables):
            variable.assign(store[str(i)])

    def _quantization_config(self):
        return {
            "weight_bits": self.weight_bits,
            "weight_symmetric": self.weight_symmetric,
            "weight_per_channel": self.weight_per_channel,
            "mode": self.mode,
        }


_QUANT_ARGS_DOC = """
    Args:
        weight_bits: weight bit width, 2..8.
        weight_symmetric: signed narrow grid `[-(2^(b-1) - 1), 2^(b-1) - 1]`
            with zero point 0 instead of the asymmetric `[0, 2^b - 1]` grid
            with a per-channel zero point.
        weight_per_channel: one step per output channel (else per tensor).
        mode: `"float"`, `"soft"` or `"hard"` (see the module docstring).
        **kwargs: the arguments of the Keras parent layer.
"""


@keras.saving.register_keras_serializable(package="keras_sagdq")
class QuantConv2D(WeightQuantization, keras.layers.Conv2D):
    __doc__ = (
        "`keras.layers.Conv2D` with quantized weights.\n"
        + _QUANT_ARGS_DOC
        + """
    Example:

    >>> layer = QuantConv2D(8, 3, weight_bits=4, mode="hard")
    >>> layer.build((None, 16, 16, 3))
    >>> layer.initialize_weight_quantizer()
    >>> y = layer(np.zeros((1, 16, 16, 3), "float32"))
"""
    )

    def __init__(
        self,
        filters,
        kernel_size,
        weight_bits=8,
        weight_symmetric=False,
        weight_per_channel=True,
        mode="soft",
        **kwargs,
    ):
        super().__init__(filters, kernel_size, **kwargs)
        self._init_weight_quantization(
            weight_bits, weight_symmetric, weight_per_channel, mode
        )

    FLOAT_CLASS = keras.layers.Conv2D

    def convolution_op(self, inputs, kernel):
        # Conv2D.call passes its float kernel; the quantized one replaces it.
        outputs = super().convolution_op(inputs, self.quantized_kernel())
        if self.bias is None or self.mode == "float":
            return outputs
        # Conv2D.call then adds the float bias: add what aligning moves.
        moved = self.quantized_bias() - self.bias
        if self.data_format == "channels_first":
            moved = ops.reshape(moved, (1, -1, 1, 1))
        return ops.add(outputs, moved)

    def export_call(self, inputs, integers, steps, bias, quantize):
        kernel = quantize(integers, steps)
        outputs = ops.conv(
            inputs, kernel, self.strides, self.padding, dilation_rate=self.dilation_rate
        )
        return self._export_finish(outputs, bias)


@keras.saving.register_keras_serializable(package="keras_sagdq")
class QuantDepthwiseConv2D(WeightQuantization, keras.layers.DepthwiseConv2D):
    __doc__ = (
        "`keras.layers.DepthwiseConv2D` with quantized weights.\n"
        + _QUANT_ARGS_DOC
        + """
    Example:

    >>> layer = QuantDepthwiseConv2D(3, weight_bits=4, mode="hard")
    >>> layer.build((None, 16, 16, 8))
    >>> layer.initialize_weight_quantizer()
"""
    )

    FLOAT_CLASS = keras.layers.DepthwiseConv2D
    # Kernel (kh, kw, in_channels, depth_multiplier): one output channel per
    # (input channel, multiplier) pair.
    CHANNEL_AXES = (2, 3)

    def export_call(self, inputs, integers, steps, bias, quantize):
        h, w, c, m = integers.shape
        # TFLite quantizes depthwise weights along the flattened c * m axis.
        flat = quantize(
            integers.reshape(h, w, 1, c * m),
            np.broadcast_to(steps, integers.shape).reshape(h, w, 1, c * m),
        )
        outputs = ops.depthwise_conv(
            inputs,
            ops.reshape(flat, (h, w, c, m)),
            self.strides,
            self.padding,
            dilation_rate=self.dilation_rate,
        )
        return self._export_finish(outputs, bias)

    def __init__(
        self,
        kernel_size,
        weight_bits=8,
        weight_symmetric=False,
        weight_per_channel=True,
        mode="soft",
        **kwargs,
    ):
        super().__init__(kernel_size, **kwargs)
        self._init_weight_quantization(
            weight_bits, weight_symmetric, weight_per_channel, mode
        )

    def call(self, inputs):
        outputs = ops.depthwise_conv(
            inputs,
            self.quantized_kernel(),
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        if self.use_bias:
            if self.data_format == "channels_last":
                bias_shape = (1,) * (self.rank + 1) + (-1,)
            else:
                bias_shape = (1, -1) + (1,) * self.rank
            outputs = ops.add(outputs, ops.reshape(self.quantized_bias(), bias_shape))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs


@keras.saving.register_keras_serializable(package="keras_sagdq")
class QuantDense(WeightQuantization, keras.layers.Dense):
    __doc__ = (
        "`keras.layers.Dense` with quantized weights.\n"
        + _QUANT_ARGS_DOC
        + """
    Example:

    >>> layer = QuantDense(10, weight_bits=8, mode="hard")
    >>> layer.build((None, 64))
    >>> layer.initialize_weight_quantizer()
"""
    )

    def __init__(
        self,
        units,
        weight_bits=8,
        weight_symmetric=False,
        weight_per_channel=True,
        mode="soft",
        **kwargs,
    ):
        super().__init__(units, **kwargs)
        self._init_weight_quantization(
            weight_bits, weight_symmetric, weight_per_channel, mode
        )

    FLOAT_CLASS = keras.layers.Dense

    def export_call(self, inputs, integers, steps, bias, quantize):
        # A 1x1 convolution: the converter cannot keep per-channel scales on
        # a fully connected op.
        fan_in, units = integers.shape
        kernel = quantize(integers[None, None], steps[None, None])
        outputs = ops.conv(ops.reshape(inputs, (-1, 1, 1, fan_in)), kernel, 1, "valid")
        # Bias and activation before the reshape back, so the converter fuses
        # them into the convolution and the output grid lands on its output.
        outputs = self._export_finish(outputs, bias)
        leading = tuple(inputs.shape[1:-1])
        return ops.reshape(outputs, (-1, *leading, units))

    def call(self, inputs, training=None):
        outputs = ops.matmul(inputs, self.quantized_kernel())
        if self.bias is not None:
            outputs = ops.add(outputs, self.quantized_bias())
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs


# The registry of quantizable layer types: a new type is a class above, added here.
QUANTIZED_LAYERS = (QuantConv2D, QuantDepthwiseConv2D, QuantDense)


def quantized_class_for(layer):
    """The quantized class that replaces `layer`, or None if it is not quantizable.

    Exact types only: a subclass of `Conv2D` may change `call`, so it stays
    float rather than be replaced by a layer that computes something else.

    Example:

    >>> quantized_class_for(keras.layers.Dense(4))
    <class 'keras_sagdq.layers.quantized_layers.QuantDense'>
    """
    for cls in QUANTIZED_LAYERS:
        if type(layer) is cls.FLOAT_CLASS:
            return cls
    return None
