"""The synthesis losses: BatchNorm statistics matching, the input prior, and
SADAG's gradient matching and gradient diversity.

The SADAG terms compare per-sample gradients of the logit reconstruction
loss `l_i = 0.5 * ||f(x_i) - q(x_i)||^2` with respect to the last Dense
kernel. That gradient is the outer product `g_i = -h_i (x) r_i` of the
Dense input `h_i` and the logit residual `r_i`, so the cosine of two of
them factors: `cos(g_i, g_j) = cos(h_i, h_j) * cos(r_i, r_j)`; no per-sample
autodiff is needed.

Reference:
    - [Yin et al., 2020. DeepInversion](https://arxiv.org/abs/1912.08795)
    - [Cai et al., 2020. ZeroQ](https://arxiv.org/abs/2001.00281)
    - [Jeon et al., 2023. GENIE](https://arxiv.org/abs/2212.04780)
    - [Dung et al., 2024. Sharpness-Aware Data Generation for Zero-shot
      Quantization](https://arxiv.org/abs/2510.07018)
"""

from keras import ops

_EPSILON = 1e-5


def _mean_and_std(x, axes, epsilon):
    mean = ops.mean(x, axis=axes)
    # epsilon inside the root keeps the gradient finite for a constant channel.
    std = ops.sqrt(ops.var(x, axis=axes) + epsilon)
    return mean, std


def bn_statistics_loss(activations, means, stds, per_sample=False, epsilon=_EPSILON):
    """Distance between activation statistics and BatchNorm running statistics.

    For each BatchNorm `l` with running mean `mu_l` and `sigma_l =
    sqrt(running_var + eps)`, and the activations `a_l` entering it:
    `||mu_l - mean(a_l)||^2 + ||sigma_l - std(a_l)||^2`, divided by the
    channel count `C_l`, summed over layers.

    Args:
        activations: list of channels-last tensors, the BatchNorm inputs.
        means: list of running means, one `(C_l,)` array per layer.
        stds: list of `sqrt(running_var + eps)`, one `(C_l,)` array per layer.
        per_sample: if False (GENIE), statistics over the batch and spatial
            axes; if True (ZeroQ), over each image's spatial axes, with the
            distances averaged over images. Rank-2 activations always use the
            batch.
        epsilon: added to the variance before the square root.

    Returns:
        Scalar loss.
    """
    total = 0.0
    for a, mu, sigma in zip(activations, means, stds):
        mu, sigma = (
            ops.convert_to_tensor(mu, a.dtype),
            ops.convert_to_tensor(sigma, a.dtype),
        )
        rank = len(a.shape)
        if per_sample and rank > 2:
            mean, std = _mean_and_std(a, tuple(range(1, rank - 1)), epsilon)
        else:
            mean, std = _mean_and_std(a, tuple(range(rank - 1)), epsilon)
        distance = ops.sum(ops.square(mean - mu) + ops.square(std - sigma), axis=-1)
        total = total + ops.mean(distance) / mu.shape[-1]
    return total


def input_prior_loss(images, epsilon=_EPSILON):
    """Per-image, per-channel mean -> 0 and std -> 1 of standardized images.

    Args:
        images: `(B, H, W, C)` images in the model's standardized input space.
        epsilon: added to the variance before the square root.

    Returns:
        Scalar loss: `mean_i(||m_i||^2 + ||s_i - 1||^2) / C`.
    """
    mean, std = _mean_and_std(images, (1, 2), epsilon)
    distance = ops.sum(ops.square(mean) + ops.square(std - 1.0), axis=-1)
    return ops.mean(distance) / images.shape[-1]


def unit_rows(x, epsilon=1e-12):
    """Each row of `x` divided by its Euclidean norm (a zero row stays zero)."""
    norm = ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
    return x / ops.maximum(norm, epsilon)


def gradient_cosine(features, residuals, other_features, other_residuals):
    """Row-wise cosine between last-layer gradients `-h (x) r` and `-h' (x) r'`.

    Args:
        features: `(B, D)` inputs `h` of the last Dense layer.
        residuals: `(B, K)` logit residuals `r = f(x) - q(x)`.
        other_features: `(B, D)` the `h'` to compare with, row by row.
        other_residuals: `(B, K)` the `r'`.

    Returns:
        `(B,)` cosines `cos(h_i, h'_i) * cos(r_i, r'_i)`.

    Example:

    >>> h, r = np.ones((2, 3), "float32"), np.eye(2, dtype="float32")
    >>> np.round(ops.convert_to_numpy(gradient_cosine(h, r, h, r[::-1])), 3)
    array([0., 0.], dtype=float32)
    """
    h_cos = ops.sum(unit_rows(features) * unit_rows(other_features), axis=-1)
    r_cos = ops.sum(unit_rows(residuals) * unit_rows(other_residuals), axis=-1)
    return h_cos * r_cos


def gradient_matching_loss(
    features,
    residuals,
    neighbor_features,
    neighbor_residuals,
    blocks=None,
    neighbor_blocks=None,
    block_count=0,
):
    """SADAG's `L_GM = 1 - mean_i cos(g_i, g'_i)`, samples against neighbors.

    With `block_count` blocks, `cos` is the mean of `block_count + 1`
    cosines: the head's and each block's.

    Args:
        features: `(B, D)` last-Dense inputs of the samples.
        residuals: `(B, K)` logit residuals of the samples.
        neighbor_features: `(B, D)` the same for each sample's neighbor.
        neighbor_residuals: `(B, K)` the same for each sample's neighbor.
        blocks: optional `(B, S)` per-block gradients of the samples, each
            block's part scaled to unit norm and concatenated
            (`HeadPair(..., blocks=True)`).
        neighbor_blocks: the same for the neighbors.
        block_count: how many blocks `blocks` holds (0: head only).

    Returns:
        Scalar loss in [0, 2].
    """
    cosines = gradient_cosine(
        features, residuals, neighbor_features, neighbor_residuals
    )
    if block_count:
        blocks = ops.convert_to_tensor(blocks)
        neighbor_blocks = ops.convert_to_tensor(neighbor_blocks)
        block_sum = ops.sum(blocks * neighbor_blocks, axis=-1)
        cosines = (cosines + block_sum) / (1.0 + block_count)
    return 1.0 - ops.mean(cosines)


def gradient_diversity_loss(
    features,
    residuals,
    earlier_features=None,
    earlier_residuals=None,
    delta=0.0,
    blocks=None,
    earlier_blocks=None,
    block_count=0,
):
    """SADAG's `L_div = mean_i max_j [|cos(g_i, g_j)| - delta]_+`.

    `j` runs over the other samples of the batch, detached, and the samples
    of earlier batches (constants); a sample is not compared with itself.
    With blocks, `cos` is the mean over the head and the blocks, as in
    `gradient_matching_loss`.

    Args:
        features: `(B, D)` last-Dense inputs of the batch.
        residuals: `(B, K)` logit residuals of the batch.
        earlier_features: optional `(M, D)` last-Dense inputs of earlier
            batches.
        earlier_residuals: optional `(M, K)` their logit residuals.
        delta: margin below which similarity costs nothing.
        blocks: optional `(B, S)` per-block gradients (unit per block).
        earlier_blocks: optional `(M, S)` those of earlier batches.
        block_count: how many blocks `blocks` holds (0: head only).

    Returns:
        Scalar loss.
    """
    h, r = unit_rows(features), unit_rows(residuals)
    h_all, r_all = ops.stop_gradient(h), ops.stop_gradient(r)
    b_all = None
    if block_count:
        blocks = ops.convert_to_tensor(blocks, h.dtype)
        b_all = ops.stop_gradient(blocks)
    if earlier_features is not None and earlier_features.shape[0]:
        earlier_h = unit_rows(ops.convert_to_tensor(earlier_features, h.dtype))
        earlier_r = unit_rows(ops.convert_to_tensor(earlier_residuals, r.dtype))
        h_all = ops.concatenate([h_all, earlier_h], 0)
        r_all = ops.concatenate([r_all, earlier_r], 0)
        if block_count:
            earlier_b = ops.convert_to_tensor(earlier_blocks, h.dtype)
            b_all = ops.concatenate([b_all, earlier_b], 0)
    similarity = ops.matmul(h, ops.transpose(h_all)) * ops.matmul(
        r, ops.transpose(r_all)
    )
    if block_count:
        similarity = (similarity + ops.matmul(blocks, ops.transpose(b_all))) / (
            1.0 + block_count
        )
    similarity = ops.abs(similarity)
    batch = h.shape[0] if h.shape[0] is not None else ops.shape(h)[0]
    # Zero each sample's similarity with itself (the first B columns).
    self_mask = ops.pad(
        ops.eye(batch, dtype=similarity.dtype),
        [[0, 0], [0, ops.shape(similarity)[1] - batch]],
    )
    similarity = similarity * (1.0 - self_mask)
    return ops.mean(ops.max(ops.relu(similarity - delta), axis=1))
