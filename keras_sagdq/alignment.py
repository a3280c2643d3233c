"""Do calibration gradients on some images point where real data's point?

SADAG's premise: one calibration step on images `T` changes the
reconstruction loss on real data `V` by about `-lr * <grad L(T), grad L(V)>`,
so images whose gradients align with real data's calibrate a model that
also fits real data. The cosine between the two batch-mean gradients
measures that alignment directly, with little noise and without training
anything:

- at the classifier head: the gradient of `0.5 * ||f(x) - q(x)||^2`
  (pre-activation logits) with respect to the quantized model's last Dense
  kernel, `-mean_i h_i (x) r_i`, the parameters SADAG's matching loss sees;
- per block: the gradient of the block's reconstruction loss
  `mean ||block_q(x_q) - block_f(x_f)||^2` (as `reconstruct` minimizes it,
  without QDrop and the rounding term) with respect to the block's weight
  steps, activation steps and rounding logits, in soft mode, each block
  reading the quantized model's own stream as calibration does.

Reference:
    - [Dung et al., 2024. Sharpness-Aware Data Generation for Zero-shot
      Quantization](https://arxiv.org/abs/2510.07018)
"""

import numpy as np
from keras import ops

from keras_sagdq import backend
from keras_sagdq.graph.blocks import find_blocks
from keras_sagdq.layers import activation_quantizers
from keras_sagdq.layers import set_layer_modes
from keras_sagdq.layers import weight_layers
from keras_sagdq.reconstruction import learned_variables
from keras_sagdq.reconstruction import run_block

GROUPS = ("weight_steps", "activation_steps", "rounding")


def head_gradient(pair, images, batch_size=256):
    """Batch-mean gradient of the logit disagreement at `q`'s last Dense kernel.

    Args:
        pair: a `synthesis.refinement.HeadPair` of the float model and `q`.
        images: numpy images in the models' input space.
        batch_size: images per forward pass.

    Returns:
        The flat float64 gradient `-mean_i h_i (x) r_i`.
    """
    h, r = pair.features(np.asarray(images, np.float32), batch_size)
    h, r = h.astype(np.float64), r.astype(np.float64)
    return (-(h.T @ r) / len(h)).ravel()


def block_gradients(qmodel, images, batch_size=128):
    """Batch-mean gradients of every block's reconstruction loss.

    The model's modes are left as they were; each block is differentiated
    in soft mode (rounding logits reachable) with its activation quantizers
    on, and feeds the next block in the mode the model was in.

    Args:
        qmodel: a model from `quantize_model` with calibrated activations.
        images: numpy images in the model's input space.
        batch_size: images per forward and backward pass.

    Returns:
        One dict per block: `name`, and for each of `GROUPS` the flat
        float64 mean gradient (None if the block has no such parameter).

    Example:

    >>> blocks = block_gradients(qmodel, images[:8])
    >>> sorted(blocks[0])
    ['activation_steps', 'name', 'rounding', 'weight_steps']
    """
    images = np.asarray(images, np.float32)
    # Even, as in `reconstruction.batch_indices`: oneDNN's strided 1x1
    # filter gradient fails on odd batches.
    batch_size += batch_size % 2
    layers = weight_layers(qmodel) + activation_quantizers(qmodel)
    modes = [layer.mode for layer in layers]
    _, blocks = find_blocks(qmodel)
    fp_stream = q_stream = images
    result = []
    try:
        for block in blocks:
            block_modes = [
                (layer, layer.mode) for layer in layers if layer in block.layers
            ]
            set_layer_modes(block.layers, "float")
            target = run_block(block, fp_stream, batch_size)
            set_layer_modes(block.layers, "soft")
            result.append(
                {
                    "name": block.name,
                    **_mean_gradients(block, q_stream, target, batch_size),
                }
            )
            for layer, mode in block_modes:
                layer.mode = mode
            q_stream = run_block(block, q_stream, batch_size)
            fp_stream = target
    finally:
        for layer, mode in zip(layers, modes):
            layer.mode = mode
    return result


def _groups(block):
    return dict(zip(GROUPS, learned_variables(block)))


def _mean_gradients(block, inputs, target, batch_size):
    groups = _groups(block)
    variables = [v for name in GROUPS for v in groups[name]]
    totals = [np.zeros(v.shape, np.float64) for v in variables]

    def loss(x, y, weights):
        # `BlockTrainer`'s reconstruction loss without its rounding term
        # (squared error summed over channels, mean over positions), summed
        # over the batch's real rows.
        error = ops.sum(ops.square(block(x) - y), axis=-1)
        per_sample = ops.mean(ops.reshape(error, (ops.shape(error)[0], -1)), axis=-1)
        return ops.sum(per_sample * weights)

    grad_fn = backend.gradient_function(loss, variables)
    for start in range(0, len(inputs), batch_size):
        # Every batch has the same (even) shape; the last one is padded
        # with zero-weight copies of its first row.
        x, y = inputs[start : start + batch_size], target[start : start + batch_size]
        weights = np.zeros(batch_size, np.float32)
        weights[: len(x)] = 1.0
        x, y = (_pad(a, batch_size) for a in (x, y))
        _, grads = grad_fn(*(ops.convert_to_tensor(a) for a in (x, y, weights)))
        for total, grad in zip(totals, grads):
            total += np.asarray(ops.convert_to_numpy(grad), np.float64)
    result, index = {}, 0
    for name in GROUPS:
        parts = totals[index : index + len(groups[name])]
        index += len(groups[name])
        result[name] = (
            np.concatenate([p.ravel() for p in parts]) / len(inputs) if parts else None
        )
    return result


def _pad(array, size):
    if len(array) == size:
        return array
    return np.concatenate([array, np.repeat(array[:1], size - len(array), axis=0)])


def cosine(a, b):
    """Cosine of two flat vectors; None if either is missing or zero."""
    if a is None or b is None:
        return None
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm > 0 else None


def gradient_alignment(pair, qmodel, images, reference_images, batch_size=128):
    """Cosines between the calibration gradients on `images` and on `reference_images`.

    Args:
        pair: a `HeadPair` of the float model and `qmodel`.
        qmodel: the quantized model the gradients are taken at.
        images: the images under test (e.g. synthetic).
        reference_images: the images they should agree with (e.g. real).
        batch_size: images per pass.

    Returns:
        A dict: `head` (the cosine at the last Dense kernel), `blocks` (per
        block: `name` and a cosine per group and over `all` of the block's
        parameters, each group scaled to unit norm first so no group's
        scale dominates), and `mean` (each per-block cosine averaged over
        the blocks that have it).

    Example:

    >>> from keras_sagdq.synthesis import BatchNormProbe
    >>> from keras_sagdq.synthesis.refinement import HeadPair
    >>> pair = HeadPair(BatchNormProbe(model), qmodel)
    >>> result = gradient_alignment(pair, qmodel, images[:8], images[8:])
    >>> sorted(result)
    ['blocks', 'head', 'mean']
    """
    head = cosine(
        head_gradient(pair, images, batch_size),
        head_gradient(pair, reference_images, batch_size),
    )
    ours = block_gradients(qmodel, images, batch_size)
    theirs = block_gradients(qmodel, reference_images, batch_size)
    blocks = []
    for a, b in zip(ours, theirs):
        row = {"name": a["name"]}
        for name in GROUPS:
            row[name] = cosine(a[name], b[name])
        row["all"] = cosine(_unit_groups(a), _unit_groups(b))
        blocks.append(row)
    mean = {}
    for name in (*GROUPS, "all"):
        values = [row[name] for row in blocks if row[name] is not None]
        mean[name] = float(np.mean(values)) if values else None
    return {"head": head, "blocks": blocks, "mean": mean}


def _unit_groups(gradients):
    parts = []
    for name in GROUPS:
        g = gradients[name]
        if g is not None:
            norm = np.linalg.norm(g)
            parts.append(g / norm if norm > 0 else g)
    return np.concatenate(parts) if parts else None
