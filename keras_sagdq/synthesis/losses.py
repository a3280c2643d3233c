"""The synthesis losses: BatchNorm statistics matching and the input prior.

Reference:
    - [Yin et al., 2020. DeepInversion](https://arxiv.org/abs/1912.08795)
    - [Cai et al., 2020. ZeroQ](https://arxiv.org/abs/2001.00281)
    - [Jeon et al., 2023. GENIE](https://arxiv.org/abs/2212.04780)
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
