"""An average of grid values rounded back onto that grid, as TFLite's int8 does."""

import keras
from keras import ops

from keras_sagdq.layers.activation_quantizer import ActivationQuantizer

# Averages are multiples of 1 / (pool size) in grid units; float32 may land
# a tie a hair below it. Any pool under 500 values keeps its ties apart.
_TIE_TOLERANCE = 1e-3


@keras.saving.register_keras_serializable(package="keras_sagdq")
class SharedGrid(ActivationQuantizer):
    """Rounds an average pooling's output onto the grid of the pooling's input.

    TFLite's int8 `AVERAGE_POOL_2D` must keep its input's scale and zero
    point, and rounds each average of the stored int8 values half away from
    zero. This layer does the same on the grid of another
    `ActivationQuantizer` (`source`): the file's int8 values are the grid's
    integers plus the zero point `127 - qmax` (the export's container; `-128 -
    qmin` for a full 256-level grid), so the tie rule applies to
    `x / step + offset`. It learns nothing: its grid is a copy of the
    source's, made by `share_grids` (calibration and reconstruction call
    it), and `initialize` leaves it alone.

    Args:
        source: name of the `ActivationQuantizer`, in the same model, whose
            grid this layer shares.
        **kwargs: `ActivationQuantizer` arguments (the grid fields are
            overwritten by `share_grids`).

    Example:

    >>> grid = ActivationQuantizer(bits=4)
    >>> grid.initialize(np.linspace(0, 1.5, 64, dtype="float32"))
    >>> rounding = SharedGrid(source=grid.name)
    >>> rounding.copy_grid(grid)
    >>> y = rounding(np.full((1, 2), 0.15, "float32"))  # 1.5 steps
    """

    def __init__(self, source, **kwargs):
        kwargs.pop("fixed_step", None)
        super().__init__(**kwargs)
        self.source = str(source)
        self.trainable = False

    def initialize(self, values, method="lp"):
        """Nothing to search: the grid is the source's (`share_grids`)."""
        del values, method

    def copy_grid(self, quantizer):
        """Take `quantizer`'s bits, sign, zero point and step."""
        self.bits = quantizer.bits
        self.signed = quantizer.signed
        self.zero_point = quantizer.zero_point
        self.symmetry = quantizer.symmetry
        self.step.assign(quantizer.step)
        self.initialized = quantizer.initialized

    def call(self, inputs, training=None):
        if self.mode == "float" or not self.initialized:
            return inputs
        qmin, qmax = self.integer_range
        offset = -128 - qmin if qmax - qmin == 255 else 127 - qmax
        stored = inputs / self.step + offset
        rounded = ops.sign(stored) * ops.floor(ops.abs(stored) + 0.5 + _TIE_TOLERANCE)
        # Straight-through gradient, as for the other quantizers.
        q = ops.clip(stored + ops.stop_gradient(rounded - stored) - offset, qmin, qmax)
        return q * self.step

    def get_config(self):
        config = super().get_config()
        config.pop("fixed_step")
        config["source"] = self.source
        return config


def share_grids(model):
    """Copy each `SharedGrid`'s grid from its source quantizer in `model`.

    Args:
        model: a quantized model (anything with `.layers` and `get_layer`).

    Raises:
        ValueError: if a source is missing or is not an `ActivationQuantizer`.
    """
    names = {layer.name: layer for layer in model.layers}
    for layer in model.layers:
        if not isinstance(layer, SharedGrid):
            continue
        source = names.get(layer.source)
        if not isinstance(source, ActivationQuantizer):
            raise ValueError(
                f"SharedGrid {layer.name!r} shares the grid of {layer.source!r}, "
                f"which is not an ActivationQuantizer of model {model.name!r}. "
                f"Received: {type(source).__name__}"
            )
        layer.copy_grid(source)
