"""Switch every quantizer layer of a model between float, soft and hard."""

import contextlib

from keras_sagdq.layers.activation_quantizer import ActivationQuantizer
from keras_sagdq.layers.activation_quantizer import check_mode
from keras_sagdq.layers.quantized_layers import WeightQuantization


def weight_layers(model):
    """The weight-quantized layers of `model` (anything with `.layers`), in order."""
    return [layer for layer in model.layers if isinstance(layer, WeightQuantization)]


def activation_quantizers(model):
    """The activation quantizers of `model` (anything with `.layers`), in order."""
    return [layer for layer in model.layers if isinstance(layer, ActivationQuantizer)]


def set_layer_modes(layers, weights, activations=None):
    """Set the mode of the quantizer layers among `layers`; others are left alone.

    The one place that knows which layers have a mode: weight-quantized
    layers take `weights`, activation quantizers `"hard"` or `"float"`.

    Args:
        layers: any layers (e.g. `model.layers` or a block's layers).
        weights: `"float"`, `"soft"` or `"hard"`.
        activations: `True` / `False` for activation quantization on / off;
            `None` means on unless `weights == "float"`.

    Raises:
        ValueError: if `weights` is not a known mode.
    """
    check_mode(weights)
    if activations is None:
        activations = weights != "float"
    for layer in layers:
        if isinstance(layer, WeightQuantization):
            layer.mode = weights
        elif isinstance(layer, ActivationQuantizer):
            layer.mode = "hard" if activations else "float"


def reset_compiled_functions(model):
    """Drop `model`'s traced predict/train/test functions.

    Modes are Python state baked into traced functions, so every mode change
    on a model is followed by this.
    """
    model.predict_function = None
    model.train_function = None
    model.test_function = None


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
    set_layer_modes(model.layers, weights, activations)
    reset_compiled_functions(model)


@contextlib.contextmanager
def quantization_off(model):
    """Run every quantizer layer of `model` in float mode inside the block.

    The previous modes come back on exit, also after an error.

    Example:

    >>> with quantization_off(qmodel):
    ...     float_outputs = qmodel(images)
    """
    layers = weight_layers(model) + activation_quantizers(model)
    modes = [layer.mode for layer in layers]
    set_mode(model, "float")
    try:
        yield model
    finally:
        for layer, mode in zip(layers, modes):
            layer.mode = mode
        reset_compiled_functions(model)
