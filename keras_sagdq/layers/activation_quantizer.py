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

    The grid is `[0, 2^b - 1]` for non-negative activations and the signed
    `[-2^(b-1), 2^(b-1) - 1]` otherwise, both with zero point 0. The step
    starts at 1.0 and is set from data by `initialize(values)` (the
    `keras_sagdq.calibrate_activations` helper does it for a whole model).
    Until then the layer passes its input through unchanged.

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
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.bits = quantizers.check_bits(bits, "bits")
        self.signed = signed
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

    @property
    def integer_range(self):
        return quantizers.integer_range(self.bits, bool(self.signed))

    def initialize(self, values, method="lp"):
        """Set the sign and step from sample activations.

        Args:
            values: numpy array of activations this layer will see.
            method: `"lp"` (grid search minimizing `mean|x - Q(x)|^2.4`) or
                `"minmax"` (cover the full observed range).

        Raises:
            ValueError: if `method` is unknown or `values` is not finite.
        """
        values = np.asarray(values, np.float32)
        if not np.all(np.isfinite(values)):
            raise ValueError(
                f"Activations seen by {self.name!r} contain NaN or inf; "
                "cannot initialize the step size."
            )
        if self.signed is None:
            self.signed = bool(values.min() < 0)
        if method == "lp":
            step = quantizers.search_activation_step(values, self.bits, self.signed)
        elif method == "minmax":
            step = quantizers.minmax_activation_step(values, self.bits, self.signed)
        else:
            raise ValueError(
                f"`method` must be 'lp' or 'minmax'. Received: method={method!r}"
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
            }
        )
        return config


def check_mode(mode):
    """Validate a quantization mode string."""
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
    return mode
