"""How closely a quantized model follows its float model, without labels.

Top-1 on 10 000 test images moves by about 0.3 points from one calibration
to the next at the same quality, which hides the differences between
calibration methods. Comparing the two models' output distributions on
many images needs no labels and is far less noisy: the KL divergence
`KL(p_float || p_quantized)` of the softmax outputs, the mean squared
difference of their centred logits and the share of images on which both
models pick the same class.
"""

import keras
import numpy as np

from keras_sagdq.graph import tracing

_SOFTMAX_FREE = (keras.layers.Activation, keras.layers.ReLU, keras.layers.Dropout)


def output_fidelity(fp_model, qmodel, images, batch_size=256):
    """Label-free distance between `fp_model`'s and `qmodel`'s outputs on `images`.

    Logits are the models' outputs, or their logarithms when the float
    model ends in a softmax (a `Softmax` layer, or a last layer with
    `activation="softmax"`); they are centred per image before the squared
    difference, so a constant shift of all logits costs nothing, as it
    changes no probability.

    Args:
        fp_model: the float classifier.
        qmodel: a model of the same outputs (e.g. from `quantize_model`).
        images: numpy array `(N, ...)` in the models' input space; read in
            chunks of `batch_size`, so N may be large.
        batch_size: images per forward pass.

    Returns:
        A dict: `kl` (mean over images of `KL(p_float || p_quantized)`, in
        nats), `logit_mse` (mean over images and classes of the squared
        difference of centred logits), `top1_agreement` (fraction of
        images where the two argmaxes agree) and `count` (N).

    Raises:
        ValueError: if `images` is empty, `batch_size` is not a positive
            integer, or the two models' outputs differ in shape.

    Example:

    >>> fidelity = ks.output_fidelity(model, qmodel, x_train[:200])
    >>> sorted(fidelity)
    ['count', 'kl', 'logit_mse', 'top1_agreement']
    >>> fidelity["count"]
    200
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            "`batch_size` must be a positive integer. Received: "
            f"batch_size={batch_size!r}"
        )
    if len(images) == 0:
        raise ValueError("`images` is empty; pass at least one image.")
    probabilities = ends_in_softmax(fp_model)
    totals = {"kl": 0.0, "logit_mse": 0.0, "agree": 0.0}
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start : start + batch_size], np.float32)
        p_logits = _logits(fp_model, batch, probabilities)
        q_logits = _logits(qmodel, batch, probabilities)
        if p_logits.shape != q_logits.shape:
            raise ValueError(
                f"The models' outputs differ in shape: {p_logits.shape} from "
                f"{fp_model.name!r}, {q_logits.shape} from {qmodel.name!r}."
            )
        p_log, q_log = _log_softmax(p_logits), _log_softmax(q_logits)
        totals["kl"] += float(np.sum(np.exp(p_log) * (p_log - q_log)))
        difference = (p_logits - p_logits.mean(-1, keepdims=True)) - (
            q_logits - q_logits.mean(-1, keepdims=True)
        )
        totals["logit_mse"] += float(np.sum(np.mean(np.square(difference), -1)))
        totals["agree"] += float(np.sum(p_logits.argmax(-1) == q_logits.argmax(-1)))
    count = len(images)
    return {
        "kl": totals["kl"] / count,
        "logit_mse": totals["logit_mse"] / count,
        "top1_agreement": totals["agree"] / count,
        "count": count,
    }


def ends_in_softmax(model):
    """Whether `model`'s single output is a softmax (its values are probabilities)."""
    graph = tracing.trace(model)
    if len(graph.outputs) != 1:
        return False
    producers = graph.producers()
    step = producers.get(graph.outputs[0])
    while step is not None:
        layer = step.layer
        if isinstance(layer, keras.layers.Softmax):
            return True
        activation = getattr(layer, "activation", None)
        if activation is not None and getattr(activation, "__name__", "") == "softmax":
            return True
        if not isinstance(layer, _SOFTMAX_FREE) or not step.input_ids:
            return False
        step = producers.get(step.input_ids[0])
    return False


def _logits(model, batch, probabilities):
    outputs = np.asarray(
        keras.ops.convert_to_numpy(model(batch, training=False)), np.float64
    )
    outputs = outputs.reshape(len(batch), -1)
    if probabilities:
        # The smallest positive float32: a probability rounded to zero
        # gets a finite (very negative) logit.
        return np.log(np.maximum(outputs, np.finfo(np.float32).tiny))
    return outputs


def _log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), -1, keepdims=True))
