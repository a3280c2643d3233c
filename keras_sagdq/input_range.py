"""The range of values a model's real inputs can take.

An integer file clips its input to one range, and synthetic images do not
say what it is: they rarely reach the extremes of real pixels. The model
often does (a leading `Rescaling(1/255)`, an adapted `Normalization`), or
the usual conventions do ([0, 1], [-1, 1], [0, 255]).
"""

import keras
import numpy as np

from keras_sagdq.layers import ActivationQuantizer

# Leading rescalings that say the model takes 8-bit pixels.
_PIXEL_RESCALINGS = ((1 / 255.0, 0.0), (1 / 127.5, -1.0), (2 / 255.0, -1.0))
# The usual input conventions, smallest first.
_CONVENTIONS = ((0.0, 1.0), (-1.0, 1.0), (0.0, 255.0))
# Span / std of real images in a convention: Fashion-MNIST in [0, 1] has 2.8,
# natural images 3-4; a convention far wider than that is not the data's.
_SPAN_OVER_STD = (1.5, 10.0)


def default_input_range(qmodel, images, margin=0.25, tolerance=0.02):
    """The input range `export_tflite` uses when none is given.

    Synthetic images rarely reach the extremes of real pixels, so their own
    range would make the file clip real inputs. See `choose_input_range`
    for the rules.

    Args:
        qmodel: the model to export (its leading layers are inspected).
        images: the representative images.
        margin: widening on each side when no convention applies, a
            fraction of the images' span.
        tolerance: how far outside a convention the images may reach, as a
            fraction of their span.

    Returns:
        `(low, high)` floats.

    Example:

    >>> default_input_range(qmodel, synthetic_images)   # images in [0.01, 0.8]
    (0.0, 1.0)
    """
    low, high, _ = choose_input_range(qmodel, images, margin, tolerance)
    return low, high


def choose_input_range(qmodel, images, margin=0.25, tolerance=0.02):
    """`(low, high, reason)`: the default input range and why it was chosen.

    In order:

    1. A model whose first layer rescales 8-bit pixels (`Rescaling(1/255)`,
       or `1/127.5` with offset -1): [0, 255].
    2. A model with a leading `Normalization` (adapted to its data), or a
       leading `Rescaling` that standardizes (`(x - mean) / std`): the
       smallest usual convention, [0, 1], [-1, 1] or [0, 255], that holds
       the declared mean of every channel and spans 1.5-10 declared stds
       (real images span about 3).
    3. The smallest usual convention that holds the images (up to
       `tolerance` of their span outside it).
    4. Otherwise the images' range widened by `margin` times its span on
       each side (e.g. inputs standardized outside the model).

    A declared convention (cases 1 and 2) wins over the images: synthetic
    images often overshoot the pixel range, real pixels never do, and 8-bit
    pixels `k / 255` are exact on the [0, 1] grid.

    Args:
        qmodel: the model to export (its leading layers are inspected).
        images: the representative images.
        margin: widening on each side in case 4, a fraction of the span.
        tolerance: how far outside a convention the images may reach, as a
            fraction of their span, in case 3.

    Returns:
        `(low, high, reason)`: floats and a sentence.

    Example:

    >>> choose_input_range(qmodel, synthetic_images)[2]
    'the representative images fit the [0, 1] convention'
    """
    from keras_sagdq.synthesis.input_space import declared_input_space

    low, high = float(np.min(images)), float(np.max(images))
    span = max(high - low, 1e-6)

    first = _first_layer(qmodel)
    if isinstance(first, keras.layers.Rescaling):
        scale = np.unique(np.asarray(first.scale, np.float64))
        offset = np.unique(np.asarray(first.offset, np.float64))
        if (
            scale.size == 1
            and offset.size == 1
            and any(
                np.isclose(scale[0], a, rtol=1e-4)
                and np.isclose(offset[0], b, atol=1e-4)
                for a, b in _PIXEL_RESCALINGS
            )
        ):
            return 0.0, 255.0, "the model rescales 8-bit pixels first"
    # A standardizing Rescaling, `(x - mean) / std`, declares them too.
    declared = declared_input_space(qmodel, rescaling=True)
    if declared is not None:
        source = {
            "normalization layer": "the Normalization layer's",
            "rescaling layer": "the leading Rescaling's implied",
        }[declared.source]
        for bottom, top in _CONVENTIONS:
            ratio = (top - bottom) / float(np.max(declared.std))
            if (
                np.all(declared.mean >= bottom)
                and np.all(declared.mean <= top)
                and _SPAN_OVER_STD[0] <= ratio <= _SPAN_OVER_STD[1]
            ):
                return (
                    bottom,
                    top,
                    f"{source} mean and std fit the [{bottom:g}, {top:g}] convention",
                )
    for bottom, top in _CONVENTIONS:
        if low >= bottom - tolerance * span and high <= top + tolerance * span:
            return (
                bottom,
                top,
                f"the representative images fit the [{bottom:g}, {top:g}] convention",
            )
    return (
        low - margin * span,
        high + margin * span,
        f"the representative images' range widened by {margin:g} of its span "
        "on each side",
    )


def _first_layer(model):
    """The first layer reading the input, past an input quantizer; or None."""
    from keras_sagdq.graph import tracing

    for step in tracing.trace(model).leading_steps():
        if not isinstance(step.layer, ActivationQuantizer):
            return step.layer
    return None


def file_input_range(qmodel, images):
    """`(low, high, reason)`: the input range `export_tflite` gives a file by default.

    A model that quantizes its own input (`QuantConfig(int8_tensors=True)`)
    gives the file that quantizer's grid; any other gets
    `choose_input_range`.

    Args:
        qmodel: the model to export.
        images: the representative images.

    Returns:
        `(low, high, reason)`: floats and a sentence.

    Example:

    >>> low, high, reason = file_input_range(qmodel, synthetic_images)
    >>> round(low, 6), round(high, 6)
    (0.0, 1.0)
    """
    first = input_quantizer(qmodel)
    if first is not None and first.initialized:
        return (*_grid(first), "the grid of the model's input quantizer")
    return choose_input_range(qmodel, images)


def input_quantizer(qmodel):
    """The `ActivationQuantizer` reading `qmodel`'s input directly, or None."""
    from keras_sagdq.graph import tracing

    graph = tracing.trace(qmodel)
    readers = graph.consumers().get(graph.inputs[0], [])
    for step in readers:
        if isinstance(step.layer, ActivationQuantizer):
            return step.layer
    return None


def set_input_grid(quantizer, low, high):
    """Put an 8-bit input quantizer on the grid of `(low, high)` and freeze it.

    Zero-point-free grids: `[0, 255] * high / 255` when `low >= 0` (exact
    for 8-bit pixels in [0, 1] or [0, 255]), else `[-128, 127] * step`
    covering both ends. Reconstruction leaves it alone (`trainable=False`).
    """
    quantizer.zero_point = None
    if low >= 0:
        quantizer.signed, step = False, high / 255.0
    else:
        quantizer.signed, step = True, max(-low / 128.0, high / 127.0)
    quantizer.step.assign(step)
    quantizer.initialized = True
    quantizer.trainable = False


def cover_input_range(qmodel, low, high):
    """Widen the quantizer after a leading Rescaling/Normalization to real inputs.

    Its step was searched on calibration images, often synthetic ones that
    stop short of the pixel range (GENIE images of a [0, 1] model reach
    about 0.8): it would clip the bright pixels of real inputs. It gets the
    range of the leading layers' outputs over `(low, high)` instead, if
    that is wider, and is frozen (`trainable=False`) like the input
    quantizer.

    Args:
        qmodel: a calibrated model that quantizes its own input.
        low: the smallest real input value.
        high: the largest real input value.
    """
    from keras_sagdq.graph import tracing

    chain, quantizer = [], None
    for step in tracing.trace(qmodel).leading_steps():
        layer = step.layer
        if isinstance(layer, ActivationQuantizer):
            if chain:
                quantizer = layer
                break
            continue  # the input quantizer
        if not isinstance(layer, (keras.layers.Rescaling, keras.layers.Normalization)):
            return
        chain.append(layer)
    if quantizer is None:
        return
    shape = tuple(qmodel.inputs[0].shape[1:])
    values = np.stack(
        [np.full(shape, low, np.float32), np.full(shape, high, np.float32)]
    )
    for layer in chain:
        values = keras.ops.convert_to_numpy(layer(values))
    grid_low, grid_high = _grid(quantizer)
    if values.min() < grid_low or values.max() > grid_high:
        quantizer.signed = None
        quantizer.initialize(values.ravel(), method="minmax")
    # Reconstruction on the same images would learn the step back down to
    # where they stop (ResNet-20 W4A4 on GENIE images: 14 % of real
    # standardized pixels clipped, -2.5 pt).
    quantizer.trainable = False


def _grid(quantizer):
    """`(low, high)`: the values a calibrated quantizer's grid spans."""
    qmin, qmax = quantizer.integer_range
    step = float(keras.ops.convert_to_numpy(quantizer.step))
    return qmin * step, qmax * step
