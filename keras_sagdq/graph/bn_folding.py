"""Fold a BatchNormalization into the layer that feeds it."""

import numpy as np
from keras import ops

from keras_sagdq.layers import quantized_class_for


def fold_batchnorm(layer, batchnorm):
    """Kernel and bias of `layer` with `batchnorm` (inference mode) folded in.

    `BN(conv(x) + b) = conv_{w * a}(x) + (b - mean) * a + beta` with
    `a = gamma / sqrt(var + eps)` per output channel.

    Args:
        layer: a built layer of a quantizable type (`quantized_class_for`).
        batchnorm: a built BatchNormalization over the last axis.

    Returns:
        `(kernel, bias)` numpy float32 arrays.

    Raises:
        ValueError: if the BatchNormalization does not normalize the last
            axis or its size does not match the layer's outputs.
    """
    kernel = ops.convert_to_numpy(layer.kernel).astype(np.float64)
    channel_shape = quantized_class_for(layer).channel_shape(kernel.shape)
    out_channels = int(np.prod(channel_shape))
    bias = (
        ops.convert_to_numpy(layer.bias).astype(np.float64)
        if layer.bias is not None
        else np.zeros(out_channels)
    )
    mean = ops.convert_to_numpy(batchnorm.moving_mean).astype(np.float64)
    if mean.shape != (out_channels,):
        raise ValueError(
            f"Cannot fold {batchnorm.name!r} into {layer.name!r}: it normalizes "
            f"{mean.shape} channels, the layer has {out_channels} outputs."
        )
    scale, offset = batchnorm_affine(batchnorm)
    kernel = kernel * scale.reshape(channel_shape)
    bias = bias * scale + offset
    return kernel.astype(np.float32), bias.astype(np.float32)


def batchnorm_affine(batchnorm):
    """`(scale, offset)` per channel (float64): the BatchNorm in inference mode.

    `BN(x) = x * scale + offset`, `scale = gamma / sqrt(var + eps)`,
    `offset = beta - mean * scale`.
    """
    mean = ops.convert_to_numpy(batchnorm.moving_mean).astype(np.float64)
    var = ops.convert_to_numpy(batchnorm.moving_variance).astype(np.float64)
    gamma = _value_or(batchnorm.gamma, np.ones_like(mean))
    beta = _value_or(batchnorm.beta, np.zeros_like(mean))
    scale = gamma / np.sqrt(var + batchnorm.epsilon)
    return scale, beta - mean * scale


def _value_or(variable, default):
    if variable is None:
        return default
    return ops.convert_to_numpy(variable).astype(np.float64)
