"""The quantized model as a TensorFlow function with fake-quant ops, for the converter.

TFLite's converter keeps a tensor's integers and scale exactly when the
tensor comes out of a TensorFlow fake-quant op, and every op is wrapped in
them. This module replays a quantized model's graph (TensorFlow backend)
with

- each quantized layer's deployed weights `step * (q - zp)` behind a
  per-channel 8-bit fake-quant with range `[-127, 127] * step`, so the file
  holds `q - zp` with scale `step`;
- each `ActivationQuantizer` on its own grid: an int8 tensor with scale
  `step` and zero point `127 - qmax`, so saturation clips at the grid's top,
  and a ReLU at its bottom (signed grids: on the tensor shifted by the
  grid's bottom, then shifted back by an ADD)
  (`activation_grid="exact"`); or, with
  `activation_grid="range"`, an int8 tensor spanning the learned range
  `[qmin, qmax] * step` (a finer grid than the model's below 8 bits);
- every other tensor (layer outputs the Keras model keeps float, the
  logits) behind an 8-bit fake-quant over the range observed on
  representative images.

Each quantized layer type says how it exports (`export_call`).
"""

import keras
import numpy as np
import tensorflow as tf

from keras_sagdq.graph import tracing
from keras_sagdq.graph.activations import ROUNDED_ON_INPUT_GRID
from keras_sagdq.graph.activations import SAME_GRID
from keras_sagdq.graph.activations import is_relu
from keras_sagdq.graph.activations import is_softmax
from keras_sagdq.integer_alignment import RESCALING_WEIGHT
from keras_sagdq.layers import ActivationQuantizer
from keras_sagdq.layers import SharedGrid
from keras_sagdq.layers import WeightQuantization

INT8_WEIGHT_LIMIT = 127
# Layers whose output is non-negative when all their inputs are.
_SIGN_PRESERVING = (
    keras.layers.GlobalAveragePooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.Multiply,
    keras.layers.Add,
    keras.layers.Concatenate,
)


def deployed_weights(layer):
    """`(integers, steps)` of a quantized layer: integers `q - zp`, per-channel steps.

    A negative step is written as its absolute value with negated integers.

    Raises:
        ValueError: if an integer does not fit int8's `[-127, 127]`.
    """
    integers = layer.integer_kernel()
    steps = keras.ops.convert_to_numpy(layer.weight_step).astype(np.float32)
    # Learning can carry a channel's step below zero; `s * (q - zp)` is the
    # same weight as `|s| * -(q - zp)`, and a file's scales are positive.
    sign = np.where(steps < 0, -1, 1)
    integers, steps = integers * sign.astype(integers.dtype), np.abs(steps)
    if np.abs(integers).max() > INT8_WEIGHT_LIMIT:
        raise ValueError(
            f"Layer {layer.name!r} has weight integers outside [-127, 127] "
            f"({integers.min()}..{integers.max()}), which TFLite int8 weights cannot "
            "hold; 8-bit weights must be symmetric (the default of quantize_model). "
            f"Received: weight_bits={layer.weight_bits}, "
            f"weight_symmetric={layer.weight_symmetric}"
        )
    return integers, steps


def _fake_quant_weights(integers, steps, num_bits=8):
    """Per-channel fake-quant of `integers * steps`, channels on the last axis."""
    steps = np.broadcast_to(steps, integers.shape)
    channel_steps = steps.reshape(-1, steps.shape[-1])[0]
    weights = (integers * steps).astype(np.float32)
    if num_bits == 8:
        limit = np.array([_exact_limit(s) for s in channel_steps], np.float32)
    else:
        limit = (2 ** (num_bits - 1) - 1) * channel_steps
    return tf.quantization.fake_quant_with_min_max_vars_per_channel(
        tf.constant(weights), -limit, limit, num_bits=num_bits, narrow_range=True
    )


def _exact_limit(step):
    """A float32 `L` near `127 * step` from which the converter derives exactly `step`.

    The converter derives each channel's scale from the fake-quant range;
    `127 * step` rounded to float32 can land the scale one ulp off the step.
    Nearby limits usually hit it exactly; for some steps no float32 limit
    does, and the scale stays one ulp off (a relative 6e-8).
    """
    step = np.float32(step)
    base = np.float32(INT8_WEIGHT_LIMIT) * step
    for k in (0, 1, -1, 2, -2, 3, -3, 4, -4):
        limit = base
        for _ in range(abs(k)):
            limit = np.nextafter(limit, np.float32(np.inf if k > 0 else -np.inf))
        # The scale may be computed as (max - min) / 254 or max / 127, in
        # float32 or float64: pick a limit that gives `step` every way.
        candidates = (
            np.float32(np.float32(2) * limit) / np.float32(254),
            np.float32(2 * np.float64(limit) / 254),
            limit / np.float32(127),
            np.float32(np.float64(limit) / 127),
        )
        if all(c == step for c in candidates):
            return limit
    return base


def _as_4d(x):
    if len(x.shape) == 2:
        return tf.reshape(x, (-1, 1, 1, int(x.shape[-1])))
    return x


def _fake_quant(x, low, high):
    return tf.quantization.fake_quant_with_min_max_vars(
        x, float(min(low, 0.0)), float(max(high, 0.0)), num_bits=8
    )


def _export_rescaling(layer, x):
    """`x * scale + offset` as one 1x1 depthwise convolution.

    The converter turns a Rescaling into MUL and ADD and requantizes the
    input of the MUL on a grid of its own: three roundings where the Keras
    model has one. A depthwise convolution with the scale as its (exact,
    +-127) weight and the offset as its bias rounds once.
    """
    # Feature vectors arrive as (N, 1, 1, C) (`FakeQuantGraph.__call__`).
    if len(x.shape) != 4:
        return layer(x)
    return _affine(x, layer.scale, layer.offset)


def _affine(x, scale, offset, strides=(1, 1)):
    """`x * scale + offset`, per channel, as one 1x1 depthwise convolution."""
    channels = int(x.shape[-1])
    scale = np.broadcast_to(np.asarray(scale, np.float32), (channels,))
    offset = np.broadcast_to(np.asarray(offset, np.float32), (channels,))
    steps = np.where(scale == 0, 1.0, np.abs(scale) / RESCALING_WEIGHT)
    integers = np.round(scale / steps).reshape(1, 1, channels, 1)
    kernel = _fake_quant_weights(
        integers.reshape(1, 1, 1, channels), steps.reshape(1, 1, 1, channels)
    )
    outputs = tf.nn.depthwise_conv2d(
        x, tf.reshape(kernel, (1, 1, channels, 1)), (1, *strides, 1), "VALID"
    )
    return outputs + offset


def _is_subsampling(layer):
    """A 1x1 max or average pooling: it only keeps every n-th value."""
    pools = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
    return (
        isinstance(layer, pools)
        and tuple(layer.pool_size) == (1, 1)
        and layer.data_format == "channels_last"
    )


def _check_exportable(layer):
    if not layer.weight_per_channel:
        raise ValueError(
            f"Export needs per-channel weight steps. Received: layer {layer.name!r} "
            "with weight_per_channel=False"
        )
    data_format = getattr(layer, "data_format", "channels_last")
    if getattr(layer, "groups", 1) != 1 or data_format != "channels_last":
        raise ValueError(
            f"Export supports channels_last, ungrouped convolutions. Received: layer "
            f"{layer.name!r} with groups={getattr(layer, 'groups', 1)}, "
            f"data_format={data_format!r}"
        )


class FakeQuantGraph:
    """A quantized model's graph replayed with TensorFlow ops and fake-quant ops.

    Args:
        qmodel: a quantized model (`keras_sagdq.quantize_model`), TensorFlow
            backend.
        activation_grid: `"exact"` (the model's activation grids) or
            `"range"` (int8 over each quantizer's learned range).
        low_bit_weights: 4-bit fake-quant for Conv2D and Dense layers whose
            weight integers fit `[-7, 7]`, so the converter can pack them as
            int4 (depthwise layers stay int8).

    Raises:
        ValueError: for several inputs or outputs, a layer that cannot be
            exported (grouped or per-tensor weights), or weight integers that
            do not fit int8.
    """

    def __init__(self, qmodel, activation_grid="exact", low_bit_weights=False):
        if activation_grid not in ("exact", "range"):
            raise ValueError(
                "`activation_grid` must be 'exact' or 'range'. "
                f"Received: activation_grid={activation_grid!r}"
            )
        self.activation_grid = activation_grid
        self.graph = tracing.trace(qmodel)
        self.output_shape = tuple(qmodel.outputs[0].shape)
        if len(self.graph.inputs) != 1 or len(self.graph.outputs) != 1:
            raise ValueError(
                "Export needs a model with one input and one output. Received: "
                f"{len(self.graph.inputs)} inputs, {len(self.graph.outputs)} outputs"
            )
        # Numpy values read once, eagerly: the replay runs inside tf.function.
        self.weights, self.activation_ranges = {}, {}
        for step in self.graph.steps:
            layer = step.layer
            if isinstance(layer, WeightQuantization):
                _check_exportable(layer)
                bias = (
                    None
                    if layer.bias is None
                    else keras.ops.convert_to_numpy(layer.aligned_bias())
                )
                integers, steps = deployed_weights(layer)
                # 4-bit containers only hold the symmetric [-7, 7] grid, and
                # TFLite's int4 depthwise kernel does not reproduce the int8
                # one (MobileNetV2 W4A4: 94.1 vs 96.5 % top-1 agreement with
                # Keras when its depthwise layers were int4 too).
                small = (
                    low_bit_weights
                    and np.abs(integers).max() <= 7
                    and not isinstance(layer, keras.layers.DepthwiseConv2D)
                )
                self.weights[id(layer)] = (integers, steps, bias, 4 if small else 8)
            elif isinstance(layer, ActivationQuantizer):
                if not layer.initialized:
                    raise ValueError(
                        f"Activation quantizer {layer.name!r} has no calibrated step; "
                        "run calibrate_activations or reconstruct first."
                    )
                qmin, qmax = layer.integer_range
                s = float(keras.ops.convert_to_numpy(layer.step))
                self.activation_ranges[id(layer)] = (qmin, qmax, s)
        consumers = self.graph.consumers()

        def feeds_quantizers(i):
            # Read only by activation quantizers, directly or through ReLUs
            # (the converter fuses them) or layers that keep the grid
            # (Dropout, Reshape, max pooling): the quantizer's range serves.
            readers = consumers.get(i, [])
            return bool(readers) and all(
                isinstance(c.layer, ActivationQuantizer)
                or (
                    (is_relu(c.layer) or isinstance(c.layer, SAME_GRID))
                    and all(feeds_quantizers(o) for o in c.outputs)
                )
                for c in readers
            )

        # An input read by a quantizer (`int8_tensors`) is on its grid.
        inputs = [] if feeds_quantizers(self.graph.inputs[0]) else self.graph.inputs
        self.observed = list(inputs) + [
            i
            for step in self.graph.steps
            if not isinstance(step.layer, ActivationQuantizer)
            for i in step.outputs
            if not feeds_quantizers(i)
        ]
        # ReLU outputs, and what zero padding, pooling or reshaping makes of
        # them: their quantizers need no ReLU op of their own (one after a
        # PAD would not be fused, and XNNPACK does not take it).
        # Also unsigned grids, and averages and products of what is
        # non-negative: a ReLU added after a MEAN or MUL is an op of its own
        # (not fused), with a tensor the file rounds and the model does not.
        self.nonnegative = set()
        for step in self.graph.steps:
            layer = step.layer
            keeps_sign = isinstance(layer, (*SAME_GRID, *_SIGN_PRESERVING))
            unsigned_grid = (
                isinstance(layer, ActivationQuantizer) and layer.integer_range[0] >= 0
            )
            if (
                is_relu(layer)
                or unsigned_grid
                or (keeps_sign and all(i in self.nonnegative for i in step.input_ids))
            ):
                self.nonnegative.update(step.outputs)
        # Outputs of value-preserving ops (ReLU, pad, pooling, reshape) of a
        # tensor on a quantizer's grid are on that grid: the file must keep
        # its scale (XNNPACK takes these ops only without requantization).
        producers = self.graph.producers()
        self.inherited = {}  # tensor -> the quantizer whose grid it is on
        for step in self.graph.steps:
            layer = step.layer
            if not step.input_ids or not (
                isinstance(layer, SAME_GRID) or is_relu(layer)
            ):
                continue
            source = step.input_ids[0]
            producer = producers.get(source)
            if producer is not None and isinstance(producer.layer, ActivationQuantizer):
                quantizer = producer.layer
            else:
                quantizer = self.inherited.get(source)
            if quantizer is not None:
                self.inherited.update((i, quantizer) for i in step.outputs)
        self.observed = [i for i in self.observed if i not in self.inherited]
        # TFLite's int8 softmax writes probabilities in steps of 1/256 from
        # 0: a range observed on a few images would clip larger ones.
        self.ranges = {
            i: (0.0, 255.0 / 256.0)
            for step in self.graph.steps
            if is_softmax(step.layer)
            for i in step.outputs
        }
        self.fixed = set(self.ranges)

    def __call__(self, images, observe=False):
        """Run the graph; with `observe`, widen the observed ranges instead of "
        "fake-quantizing."""

        def store(i, value):
            if i in self.inherited and not observe:
                quantizer = self.inherited[i]
                return _fake_quant(
                    value, *self._container(*self.activation_ranges[id(quantizer)])
                )
            if i not in self.observed:
                return value
            if observe and i not in self.fixed:
                low, high = float(tf.reduce_min(value)), float(tf.reduce_max(value))
                old = self.ranges.get(i, (low, high))
                self.ranges[i] = (min(old[0], low), max(old[1], high))
                return value
            return _fake_quant(value, *self.ranges[i])

        def call(step, args, kwargs):
            layer = step.layer
            if isinstance(layer, SharedGrid):
                # Averages stay inside the grid: the container alone, whose
                # scale the converter finds equal to the pooling input's.
                return _fake_quant(
                    args[0], *self._container(*self.activation_ranges[id(layer)])
                )
            if isinstance(layer, ActivationQuantizer):
                nonnegative = step.input_ids[0] in self.nonnegative
                ranges = self.activation_ranges[id(layer)]
                return self._quantize_activation(args[0], *ranges, nonnegative)
            if id(layer) in self.weights:
                integers, steps, bias, num_bits = self.weights[id(layer)]

                def quantize(values, value_steps):
                    return _fake_quant_weights(values, value_steps, num_bits=num_bits)

                return layer.export_call(args[0], integers, steps, bias, quantize)
            if isinstance(layer, keras.layers.Rescaling):
                return _export_rescaling(layer, args[0])
            source = step.input_ids[0] if step.input_ids else None
            if (
                isinstance(layer, ROUNDED_ON_INPUT_GRID)
                and source in self.observed
                and source in self.ranges
                and not observe
            ):
                # A float input's pooling keeps its grid in the file.
                return _fake_quant(layer(args[0]), *self.ranges[source])
            if _is_subsampling(layer) and len(args[0].shape) == 4:
                # A 1x1 pooling with a stride (ResNetV2's shortcuts) picks
                # values: XNNPACK takes no 1x1 pooling, but an identity 1x1
                # depthwise convolution with that stride is exact.
                return _affine(args[0], 1.0, 0.0, strides=tuple(layer.strides))
            if is_relu(layer) and step.outputs[0] in self.inherited:
                # XNNPACK takes no int8 RELU op of its own; fused into an
                # identity 1x1 depthwise convolution it is a clamp, exact.
                x = args[0]
                return layer(_affine(x, 1.0, 0.0)) if len(x.shape) == 4 else layer(x)
            return layer(*args, **kwargs)

        def call_4d(step, args, kwargs):
            # Feature vectors travel as (N, 1, 1, C): the converter drops the
            # grid of a tensor between two reshapes that cancel (a Dense's
            # output before a BatchNorm in a classifier head), so no 2-D
            # tensor ever sits between two 1x1 convolutions.
            outputs = call(step, args, kwargs)
            if isinstance(outputs, (list, tuple)):
                return [_as_4d(y) for y in outputs]
            return _as_4d(outputs)

        inputs = {self.graph.inputs[0]: tf.convert_to_tensor(images)}
        values = tracing.replay(self.graph.steps, inputs, call=call_4d, store=store)
        outputs = values[self.graph.outputs[0]]
        shape = self.output_shape
        if len(outputs.shape) != len(shape):
            outputs = tf.reshape(outputs, (-1, *shape[1:]))
        return outputs

    def _container(self, qmin, qmax, step):
        """`(low, high)` of the int8 tensor that holds a quantizer's grid."""
        low, high = qmin * step, qmax * step
        if self.activation_grid == "range" or qmax - qmin == 255:
            return low, high
        # The model's step, and the grid's top as the largest int8 value, so
        # int8 saturation clips there (zero point 127 - qmax).
        return high - 255 * step, high

    def _quantize_activation(self, x, qmin, qmax, step, nonnegative=False):
        low, high = qmin * step, qmax * step
        if self.activation_grid == "range" or qmax - qmin == 255:
            return _fake_quant(x, low, high)
        int8_low, _ = self._container(qmin, qmax, step)
        if qmin == 0:
            # A ReLU clips the bottom (fused into the producing op).
            return _fake_quant(x if nonnegative else tf.nn.relu(x), int8_low, high)
        # Signed grids: a MAXIMUM op would clip the bottom, but XNNPACK does
        # not take quantized MAXIMUM and the graph would split. On the grid,
        # then shifted so the bottom is 0, a ReLU (fused into the SUB) clips
        # it, and an ADD shifts back: integer steps on one scale, exact.
        x = _fake_quant(x, int8_low, high)
        shifted = _fake_quant(tf.nn.relu(x - low), int8_low - low, high - low)
        return _fake_quant(shifted + low, int8_low, high)

    def observe(self, images, batch_size=64):
        """Record the range of every observed tensor over `images`."""
        for start in range(0, len(images), batch_size):
            self(images[start : start + batch_size], observe=True)
