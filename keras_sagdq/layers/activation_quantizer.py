"""A per-tensor activation quantizer with a learned step (LSQ) and QDrop."""

import keras
import numpy as np
from keras import ops

from keras_sagdq import backend
from keras_sagdq import quantizers

MODES = ("float", "soft", "hard")


@keras.saving.register_keras_serializable(package="keras_sagdq")
class ActivationQuantizer(keras.layers.Layer):
    """Fake-quantizes a tensor on a uniform per-tensor grid with a learned step.

    The grid is `[0, 2^b - 1]` for non-negative activations. Signed ones get
    the symmetric `[-2^(b-1), 2^(b-1) - 1]`, or (`symmetry`) the grid
    `[0, 2^b - 1]` with a zero point `z`, i.e. the integers `[-z, 2^b - 1 - z]`
    times the step: a tensor that barely dips below zero (hard-swish, swish,
    GELU) then keeps almost all its levels for the side it lives on. The
    zero point is chosen with the step by `initialize(values)` (the
    `keras_sagdq.calibrate_activations` helper does it for a whole model)
    and stays fixed afterwards: block reconstruction learns the step only,
    so the grid's ends scale together and `z`, an integer of the deployed
    file, never needs rounding. Until initialized the layer passes its input
    through unchanged.

    During training calls with `qdrop_probability > 0`, each element keeps
    its float value with that probability (QDrop), which makes block
    reconstruction generalize better.

    Args:
        bits: activation bit width, 2..8.
        signed: whether the grid is signed. `None` means "decide from the
            first data seen by `initialize`".
        mode: `"float"` (pass-through), `"soft"` or `"hard"` (quantize; the
            two are the same for activations and exist so one mode string
            drives a whole model).
        qdrop_probability: probability of keeping an element float in
            training calls.
        seed: seed for the QDrop mask.
        initialized: whether the step already holds a calibrated value
            (set by `initialize`; saved with the layer).
        symmetry: how `initialize` grids a signed tensor: `"symmetric"`,
            `"asymmetric"` (with a zero point) or `"auto"` (whichever has the
            smaller quantization error on the calibration values).
        zero_point: the zero point of an asymmetric grid, set by
            `initialize`; None for the symmetric (or unsigned) grid.
        fixed_step: a step the grid must keep (`initialize` and reconstruction
            leave it alone), for tensors whose grid an integer runtime fixes:
            TFLite's int8 sigmoid writes steps of 1/256 from 0.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Example:

    >>> aq = ActivationQuantizer(bits=4)
    >>> aq.initialize(np.random.rand(64, 8).astype("float32"))
    >>> y = aq(np.random.rand(2, 8).astype("float32"))

    Reference:
        - [Esser et al., 2020. Learned Step Size Quantization](https://arxiv.org/abs/1902.08153)
        - [Wei et al., 2022. QDrop](https://arxiv.org/abs/2203.05740)
    """

    def __init__(
        self,
        bits=8,
        signed=None,
        mode="soft",
        qdrop_probability=0.0,
        seed=None,
        initialized=False,
        symmetry="symmetric",
        zero_point=None,
        fixed_step=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.bits = quantizers.check_bits(bits, "bits")
        self.signed = signed
        if symmetry not in quantizers.SYMMETRIES:
            raise ValueError(
                f"`symmetry` must be one of {quantizers.SYMMETRIES}. "
                f"Received: symmetry={symmetry!r}"
            )
        self.symmetry = symmetry
        if zero_point is not None and not 0 <= int(zero_point) < 2**self.bits:
            raise ValueError(
                f"`zero_point` must be in [0, {2**self.bits - 1}] for {self.bits} "
                f"bits. Received: zero_point={zero_point!r}"
            )
        self.zero_point = None if zero_point is None else int(zero_point)
        self.mode = check_mode(mode)
        if not 0.0 <= qdrop_probability <= 1.0:
            raise ValueError(
                "`qdrop_probability` must be in [0, 1]. "
                f"Received: qdrop_probability={qdrop_probability}"
            )
        self.qdrop_probability = float(qdrop_probability)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.step = self.add_weight(
            name="step", shape=(), initializer="ones", trainable=True
        )
        # A Python flag, not a variable: it decides the traced graph.
        self.initialized = bool(initialized)
        self.fixed_step = None if fixed_step is None else float(fixed_step)
        if self.fixed_step is not None:
            if not self.fixed_step > 0:
                raise ValueError(
                    f"`fixed_step` must be positive. Received: fixed_step={fixed_step}"
                )
            self.step.assign(self.fixed_step)
            self.signed = bool(signed)
            self.initialized = True
            self.trainable = False

    @property
    def integer_range(self):
        """`(qmin, qmax)`: the grid's values are `q * step` for integer q in it."""
        if self.zero_point is None:
            return quantizers.integer_range(self.bits, bool(self.signed))
        return -self.zero_point, 2**self.bits - 1 - self.zero_point

    def initialize(self, values, method="lp"):
        """Set the sign and step from sample activations.

        Args:
            values: numpy array of activations this layer will see.
            method: `"lp"` (grid search minimizing `mean|x - Q(x)|^2.4`) or
                `"minmax"` (cover the full observed range).

        A quantizer with a `fixed_step` keeps its grid.

        Raises:
            ValueError: if `method` is unknown or `values` is not finite.
        """
        if method not in ("lp", "minmax"):
            raise ValueError(
                f"`method` must be 'lp' or 'minmax'. Received: method={method!r}"
            )
        if self.fixed_step is not None:
            return
        values = np.asarray(values, np.float32)
        if not np.all(np.isfinite(values)):
            raise ValueError(
                f"Activations seen by {self.name!r} contain NaN or inf; "
                "cannot initialize the step size."
            )
        if self.signed is None:
            self.signed = bool(values.min() < 0)
        step, self.zero_point = quantizers.search_activation_grid(
            values, self.bits, self.signed, self.symmetry, method
        )
        self.step.assign(step)
        self.initialized = True

    def call(self, inputs, training=None):
        if self.mode == "float" or not self.initialized:
            return inputs
        qmin, qmax = self.integer_range
        # Adam normalizes gradient scale, so LSQ's gradient scaling is omitted.
        outputs = quantizers.fake_quantize(inputs, self.step, 0.0, qmin, qmax)
        if training and self.qdrop_probability > 0.0:
            keep_float = (
                backend.uniform_like(inputs, self.seed_generator)
                < self.qdrop_probability
            )
            outputs = ops.where(keep_float, inputs, outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "bits": self.bits,
                "signed": self.signed,
                "mode": self.mode,
                "qdrop_probability": self.qdrop_probability,
                "seed": self.seed,
                "initialized": self.initialized,
                "symmetry": self.symmetry,
                "zero_point": self.zero_point,
                "fixed_step": self.fixed_step,
            }
        )
        return config


def check_mode(mode):
    """Validate a quantization mode string."""
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
    return mode
