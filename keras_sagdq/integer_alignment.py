"""Put biases on the grids an integer runtime stores them on.

An int8 convolution adds its bias as an int32 in units of
`input_step * weight_step` (per output channel). A float bias between two
of those units is rounded in the file and not in the Keras model, and the
output then rounds differently near ties: the first difference between a
`.tflite` file and its model (ResNet-20 W4A4: 84 of 150 test images had a
differing tensor from rounding the standardization offset alone). Rounding
the biases to those units in the Keras model's quantized modes makes it
compute what the file computes; each bias moves by at most half a unit.
"""

import keras
import numpy as np

from keras_sagdq.graph import tracing
from keras_sagdq.graph.activations import SAME_GRID
from keras_sagdq.graph.activations import is_relu
from keras_sagdq.layers import ActivationQuantizer
from keras_sagdq.layers import WeightQuantization

# The weight of a Rescaling exported as a 1x1 depthwise convolution.
RESCALING_WEIGHT = 127


def align_biases(qmodel):
    """Give `qmodel`'s quantized layers the units of the file's int32 biases.

    Each weight layer whose input an activation quantizer covers gets that
    quantizer's step as its `input_step`; its quantized modes then add the
    bias rounded to units of `input_step * weight_step` (`aligned_bias`),
    as the file does, while float mode keeps the float bias. Layers whose
    input no quantizer covers (a float first-layer input) keep a float
    bias. A `Rescaling` reading a quantized input gets its offset rounded
    in place (the export writes it as a 1x1 depthwise convolution with
    weight `RESCALING_WEIGHT`). `calibrate_activations` and `reconstruct`
    call this at their end for models that quantize their own input
    (`QuantConfig(int8_tensors=True)`); call it again after changing steps
    by hand, or yourself for other models.

    Args:
        qmodel: a model from `keras_sagdq.quantize_model`, calibrated.

    Returns:
        The number of layers given a bias unit or a rounded offset.

    Example:

    >>> ks.calibrate_activations(qmodel, images)   # aligns already
    >>> layers_aligned = align_biases(qmodel)      # after changing steps by hand
    """
    graph = tracing.trace(qmodel)
    producers = graph.producers()

    def input_step(step):
        producer = producers.get(step.input_ids[0])
        # Max pooling, padding, reshapes and ReLUs keep their input's grid:
        # the quantizer before them sets the unit.
        while producer is not None and (
            isinstance(producer.layer, SAME_GRID) or is_relu(producer.layer)
        ):
            producer = producers.get(producer.input_ids[0])
        if producer is None or not isinstance(producer.layer, ActivationQuantizer):
            return None
        quantizer = producer.layer
        if not quantizer.initialized:
            return None
        return float(keras.ops.convert_to_numpy(quantizer.step))

    aligned = 0
    for step in graph.steps:
        layer = step.layer
        s_in = input_step(step)
        if isinstance(layer, WeightQuantization):
            layer.input_step.assign(0.0 if s_in is None else s_in)
            aligned += s_in is not None and layer.bias is not None
        elif isinstance(layer, keras.layers.Rescaling) and s_in is not None:
            scale = np.asarray(layer.scale, np.float32)
            unit = s_in * np.abs(scale) / RESCALING_WEIGHT
            offset = _on_grid(np.asarray(layer.offset, np.float32), unit)
            layer.offset = float(offset) if offset.ndim == 0 else offset.tolist()
            aligned += 1
    return int(aligned)


def _on_grid(values, unit):
    unit = np.asarray(unit, np.float32)
    safe = np.where(unit > 0, unit, 1.0)
    return np.where(unit > 0, np.round(values / safe) * safe, values).astype(np.float32)
