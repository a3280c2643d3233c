"""Switch every quantizer layer of a model between float, soft and hard."""

import contextlib

from keras_sagdq.layers.activation_quantizer import ActivationQuantizer
from keras_sagdq.layers.activation_quantizer import check_mode
from keras_sagdq.layers.quantized_weights import WeightQuantization


def weight_layers(model):
    """The weight-quantized layers of `model`, in graph order."""
    return [l for l in model.layers if isinstance(l, WeightQuantization)]


def activation_quantizers(model):
    """The `ActivationQuantizer` layers of `model`, in graph order."""
    return [l for l in model.layers if isinstance(l, ActivationQuantizer)]


def set_mode(model, weights, activations=None):
    """Set the mode of all quantizer layers of `model`.

    Args:
        model: a model from `keras_sagdq.quantize_model`.
        weights: `"float"`, `"soft"` or `"hard"` for the weight-quantized
            layers.
        activations: `True` / `False` to switch activation quantization on or
            off; `None` means on unless `weights == "float"`.

    Raises:
        ValueError: if `weights` is not a known mode.

    Example:

    >>> set_mode(qmodel, "float")                      # the float model
    >>> set_mode(qmodel, "hard", activations=False)    # weight-only
    """
    check_mode(weights)
    if activations is None:
        activations = weights != "float"
    for layer in weight_layers(model):
        layer.mode = weights
    for layer in activation_quantizers(model):
        layer.mode = "hard" if activations else "float"
    # Modes are Python state baked into traced functions: drop the old traces.
    model.predict_function = None
    model.train_function = None
    model.test_function = None


@contextlib.contextmanager
def quantization_off(model):
    """Run every quantizer layer of `model` in float mode inside the block.

    The previous modes come back on exit, also after an error.

    Example:

    >>> with quantization_off(qmodel):
    ...     float_outputs = qmodel(images)
    """
    layers = [l for l in model.layers if hasattr(l, "mode")]
    modes = [l.mode for l in layers]
    for layer in layers:
        layer.mode = "float"
    try:
        yield model
    finally:
        for layer, mode in zip(layers, modes):
            layer.mode = mode
        model.predict_function = None
