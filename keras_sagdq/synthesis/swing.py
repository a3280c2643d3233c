"""Swing convolution's input jitter: reflect-pad, then crop back at a random offset."""

import keras
from keras import ops


class SwingShift(keras.layers.Layer):
    """Shift a `(B, H, W, C)` batch by a random offset of up to `width` pixels.

    The input is reflect-padded by `width` on each side and cropped back to
    `H x W` at a random offset (one offset per call, shared by the batch).
    Placed before a strided convolution during synthesis, it makes the
    synthetic images work for every alignment of the stride grid, which
    removes the checkerboard artifacts strided convolutions otherwise imprint.
    Maps too small to reflect-pad pass through unchanged.

    Args:
        width: largest shift in pixels.
        seed: seed of the offsets.

    Example:

    >>> swing = SwingShift(seed=0)
    >>> tuple(swing(keras.random.normal((2, 8, 8, 3))).shape)
    (2, 8, 8, 3)

    Reference:
        - [Jeon et al., 2023. GENIE](https://arxiv.org/abs/2212.04780)
    """

    def __init__(self, width=1, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        w = self.width
        if height <= w or width <= w:
            return inputs
        padded = ops.pad(inputs, [[0, 0], [w, w], [w, w], [0, 0]], mode="reflect")
        offsets = keras.random.randint((2,), 0, 2 * w + 1, seed=self.seed_generator)
        rows = ops.take(padded, ops.arange(height) + offsets[0], axis=1)
        return ops.take(rows, ops.arange(width) + offsets[1], axis=2)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "width": self.width, "seed": self.seed}
