"""Run a model and collect the input of every BatchNormalization layer.

The probe replays the model's own layers (no copy, no new graph nodes), so
the user's model is never modified; swing shifts are applied to the inputs
of strided convolutions only inside the probe.
"""

import hashlib

import keras
import numpy as np
from keras import ops

from keras_sagdq.graph import tracing
from keras_sagdq.synthesis.swing import SwingShift

_CONVOLUTIONS = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
)


def check_model(model):
    """Raises unless `model` is a graph model with one fixed-size image input."""
    if not isinstance(model, keras.Model) or not tracing.is_graph_model(model):
        raise TypeError(
            "Synthesis reads BatchNorm statistics from a Sequential or Functional "
            "model; subclassed models hide their graph. Rebuild it with the "
            f"Functional API. Received: model of type {type(model).__name__}"
        )
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        raise ValueError(
            "Synthesis needs a model with one image input (B, H, W, C). Received: "
            f"inputs with shapes {[tuple(x.shape) for x in model.inputs]}"
        )
    if any(d is None for d in model.inputs[0].shape[1:]):
        raise ValueError(
            "Synthesis needs a fixed input size. Received: input shape "
            f"{tuple(model.inputs[0].shape)}"
        )


class BatchNormProbe:
    """Calls a model and returns its outputs and every BatchNorm's input.

    Args:
        model: a Sequential or Functional image classifier with one input.
        swing: if True, shift the input of every strided convolution by a
            random offset of up to one pixel (`SwingShift`).
        seed: seed of the swing offsets.

    Attributes:
        means: running means, one `(C,)` float32 array per BatchNorm call.
        stds: `sqrt(running_var + epsilon)`, one array per BatchNorm call.
        names: the BatchNorm layers' names.

    Raises:
        TypeError: for a subclassed model.
        ValueError: for a model without BatchNormalization layers, or one
            without a single fixed-size image input.

    Example:

    >>> probe = BatchNormProbe(model)
    >>> logits, bn_inputs = probe(images)
    """

    def __init__(self, model, swing=False, seed=None):
        check_model(model)
        self.model = model
        self.graph = tracing.trace(model)
        bn_steps = [
            s
            for s in self.graph.steps
            if isinstance(s.layer, keras.layers.BatchNormalization)
        ]
        if not bn_steps:
            raise ValueError(
                f"Model {model.name!r} has no BatchNormalization layer, so there are "
                "no statistics to synthesize images from. Use method='gaussian' or "
                "calibrate on real images."
            )
        self._bn_axes = {}
        self.means, self.stds, self.names = [], [], []
        for step in bn_steps:
            bn = step.layer
            self._bn_axes[id(step)] = (
                bn.axis if isinstance(bn.axis, int) else bn.axis[-1]
            )
            self.means.append(np.asarray(bn.moving_mean, np.float32))
            variance = np.asarray(bn.moving_variance, np.float32)
            self.stds.append(np.sqrt(variance + bn.epsilon).astype(np.float32))
            self.names.append(bn.name)
        self._swings = {}
        if swing:
            for index, step in enumerate(self.graph.steps):
                if (
                    isinstance(step.layer, _CONVOLUTIONS)
                    and max(step.layer.strides) > 1
                ):
                    self._swings[id(step)] = SwingShift(seed=_swing_seed(seed, index))

    def reseed(self, seed):
        """Restart the swing offsets as a new probe with `seed` would.

        Args:
            seed: an int, as `seed` of the constructor.
        """
        for index, step in enumerate(self.graph.steps):
            if id(step) in self._swings:
                state = self._swings[id(step)].seed_generator.state
                state.assign(
                    ops.convert_to_tensor(
                        [_swing_seed(seed, index), 0], dtype=state.dtype
                    )
                )

    @property
    def num_swings(self):
        """How many strided convolutions get a swing shift."""
        return len(self._swings)

    def __call__(self, images):
        """Returns `(model outputs, [BatchNorm input, channels last, ...])`."""
        outputs, bn_inputs, _ = self.run(images)
        return outputs, bn_inputs

    def run(self, images, tensor_ids=()):
        """Returns `(outputs, BatchNorm inputs, [tapped tensors])`.

        Args:
            images: the model input.
            tensor_ids: ids in `self.graph` of intermediate tensors to return
                too (see `tracing.tap`).
        """
        bn_inputs = []

        def call(step, args, kwargs):
            if id(step) in self._swings:
                args = (self._swings[id(step)](args[0]),) + tuple(args[1:])
            if id(step) in self._bn_axes:
                x, rank = args[0], len(args[0].shape)
                axis = self._bn_axes[id(step)] % rank
                bn_inputs.append(x if axis == rank - 1 else ops.moveaxis(x, axis, -1))
            return step.layer(*args, **kwargs)

        outputs, taps = tracing.tap(self.graph, images, list(tensor_ids), call=call)
        return outputs, bn_inputs, taps

    def fingerprint(self):
        """A short hash of the BatchNorm statistics and the input shape."""
        digest = hashlib.sha256(str(tuple(self.model.inputs[0].shape[1:])).encode())
        for mean, std in zip(self.means, self.stds):
            digest.update(mean.tobytes())
            digest.update(std.tobytes())
        return digest.hexdigest()[:16]


def _swing_seed(seed, index):
    return None if seed is None else seed * 1000 + index
