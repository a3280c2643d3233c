"""GENIE-D's image generator: a small convolutional decoder from latents to images."""

import keras
from keras import layers

LATENT_DIM = 256
CHANNELS = 128


def build_generator(
    image_shape,
    latent_dim=LATENT_DIM,
    seed=0,
    name="generator",
    feature_channels=CHANNELS,
):
    """A fresh GENIE-D generator for images of `image_shape`.

    Dense -> (H/4, W/4, c) -> BN -> upsample x2 -> Conv3x3(c/2) -> BN ->
    LeakyReLU(0.2) -> upsample x2 -> Conv3x3(C) -> tanh -> BN without affine
    parameters, so its output is standardized per channel over the batch.
    Sizes not divisible by 4 start from `ceil(H/4) x ceil(W/4)` and are
    center-cropped after the last convolution. Call it with `training=True`:
    its BatchNorms normalize with the batch's own statistics.

    Args:
        image_shape: `(height, width, channels)`.
        latent_dim: size of each latent vector.
        seed: seed of the kernel initializers (the same seed gives the same
            generator).
        name: model name.
        feature_channels: `c`, the channels of the first feature map (GENIE:
            128).
            The first projection has `latent_dim * (H/4) * (W/4) * c`
            weights: 103 M at 224x224 with 128, a quarter of that with 32.

    Returns:
        A Sequential `keras.Model` mapping `(B, latent_dim)` to
        `(B, height, width, channels)`.

    Example:

    >>> generator = build_generator((28, 28, 1), seed=0)
    >>> tuple(generator(keras.random.normal((8, 256)), training=True).shape)
    (8, 28, 28, 1)

    Reference:
        - [Jeon et al., 2023. GENIE](https://arxiv.org/abs/2212.04780)
    """
    height, width, channels = (int(d) for d in image_shape)
    h0, w0 = -(-height // 4), -(-width // 4)

    def kernel(i):
        return keras.initializers.GlorotUniform(seed=seed * 3 + i)

    stack = [
        keras.Input((latent_dim,)),
        layers.Dense(feature_channels * h0 * w0, kernel_initializer=kernel(0)),
        layers.Reshape((h0, w0, feature_channels)),
        layers.BatchNormalization(),
        layers.UpSampling2D(2),
        layers.Conv2D(
            max(feature_channels // 2, 1),
            3,
            padding="same",
            kernel_initializer=kernel(1),
        ),
        layers.BatchNormalization(),
        layers.LeakyReLU(0.2),
        layers.UpSampling2D(2),
        layers.Conv2D(channels, 3, padding="same", kernel_initializer=kernel(2)),
    ]
    extra_h, extra_w = 4 * h0 - height, 4 * w0 - width
    if extra_h or extra_w:
        stack.append(
            layers.Cropping2D(
                (
                    (extra_h // 2, extra_h - extra_h // 2),
                    (extra_w // 2, extra_w - extra_w // 2),
                )
            )
        )
    stack += [
        layers.Activation("tanh"),
        layers.BatchNormalization(center=False, scale=False),
    ]
    return keras.Sequential(stack, name=name)
