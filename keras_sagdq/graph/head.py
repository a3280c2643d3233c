"""The classifier head: the last Dense layer, its input and its pre-activation logits.

SADAG's per-sample gradients live on the last Dense kernel, and need the
Dense input `h` and the logits before any softmax (a softmax would turn
the logit residual into a difference of probabilities).
"""

import keras
from keras import ops

from keras_sagdq.layers.activation_quantizer import ActivationQuantizer
from keras_sagdq.layers.quantized_layers import WeightQuantization

# Layers allowed between the last Dense and the output: activations, and
# the 8-bit quantizer of the logits (`QuantConfig.int8_tensors`).
_ACTIVATIONS = (
    keras.layers.Activation,
    keras.layers.Softmax,
    keras.layers.ReLU,
    ActivationQuantizer,
)


def find_classifier_head(graph, model_name="model"):
    """The step of the last Dense layer of a traced classifier.

    The head is the Dense layer that produces the model's output, possibly
    followed by activation layers (`Activation`, `Softmax`, `ReLU`).

    Args:
        graph: a `tracing.Graph` with one output.
        model_name: used in the error message.

    Returns:
        The `tracing.Step` of that Dense layer (float or quantized).

    Raises:
        ValueError: if the output is not computed by a Dense layer.

    Example:

    >>> from keras_sagdq.graph import tracing
    >>> head = find_classifier_head(tracing.trace(model))
    >>> head.layer.units
    10
    """
    producers = graph.producers()
    step = producers.get(graph.outputs[0]) if len(graph.outputs) == 1 else None
    while step is not None and isinstance(step.layer, _ACTIVATIONS):
        step = producers.get(step.input_ids[0])
    if step is None or not isinstance(step.layer, keras.layers.Dense):
        found = "nothing" if step is None else type(step.layer).__name__
        raise ValueError(
            "SADAG needs a classifier whose output is a Dense layer (optionally "
            "followed by an activation layer): its per-sample gradients live on "
            f"that layer's kernel. Model {model_name!r} ends in {found}."
        )
    return step


def pre_activation_logits(layer, features):
    """`features @ W + b` of a Dense layer, before its activation.

    A quantized Dense uses its kernel as its current mode computes it.
    """
    if isinstance(layer, WeightQuantization):
        kernel = layer.quantized_kernel()
        bias = None if layer.bias is None else layer.quantized_bias()
    else:
        kernel, bias = layer.kernel, layer.bias
    logits = ops.matmul(features, kernel)
    return logits if bias is None else logits + bias
