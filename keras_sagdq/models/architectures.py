"""The reference architectures, sized for 28x28x1 inputs (Fashion-MNIST).

Both take images in [0, 1] and standardize them with a weightless
`Rescaling` layer, so the quantized twin keeps that step in float.
"""

import keras
from keras import layers

# Fashion-MNIST training-set pixel mean and standard deviation.
PIXEL_MEAN = 0.2860
PIXEL_STD = 0.3530
BN_MOMENTUM = 0.9


def _bn(name):
    return layers.BatchNormalization(momentum=BN_MOMENTUM, name=name)


def _standardize(inputs):
    return layers.Rescaling(
        1 / PIXEL_STD, offset=-PIXEL_MEAN / PIXEL_STD, name="standardize"
    )(inputs)


def resnet20(
    input_shape=(28, 28, 1), num_classes=10, widths=(16, 32, 64), blocks_per_stage=3
):
    """ResNet-20 (He et al., 2016, the CIFAR variant): 3 stages x 3 basic blocks.

    Downsampling blocks use a strided 1x1 convolution + BN shortcut.

    Reference:
        - [He et al., 2016. Deep Residual Learning](https://arxiv.org/abs/1512.03385)
    """
    inputs = keras.Input(input_shape, name="image")
    x = _standardize(inputs)
    x = layers.Conv2D(widths[0], 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.ReLU(name="stem_relu")(_bn("stem_bn")(x))
    for stage, width in enumerate(widths):
        for block in range(blocks_per_stage):
            name = f"s{stage + 1}b{block + 1}"
            strides = 2 if stage > 0 and block == 0 else 1
            y = layers.Conv2D(
                width, 3, strides, "same", use_bias=False, name=f"{name}_conv1"
            )(x)
            y = layers.ReLU(name=f"{name}_relu1")(_bn(f"{name}_bn1")(y))
            y = layers.Conv2D(
                width, 3, padding="same", use_bias=False, name=f"{name}_conv2"
            )(y)
            y = _bn(f"{name}_bn2")(y)
            if strides != 1 or x.shape[-1] != width:
                x = layers.Conv2D(
                    width, 1, strides, use_bias=False, name=f"{name}_short"
                )(x)
                x = _bn(f"{name}_short_bn")(x)
            x = layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([x, y]))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="resnet20")


# (expansion, output channels, repeats, first stride), MobileNetV2's table shrunk
# for 28x28 inputs.
_MOBILENET_BLOCKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 2, 1),
    (6, 96, 1, 1),
)


def mobilenet_v2(
    input_shape=(28, 28, 1), num_classes=10, stem_width=32, head_width=256
):
    """MobileNetV2-style network: inverted residuals, depthwise convs, ReLU6.

    Reference:
        - [Sandler et al., 2018. MobileNetV2](https://arxiv.org/abs/1801.04381)
    """
    inputs = keras.Input(input_shape, name="image")
    x = _standardize(inputs)
    x = layers.Conv2D(stem_width, 3, padding="same", use_bias=False, name="stem_conv")(
        x
    )
    x = layers.ReLU(6.0, name="stem_relu")(_bn("stem_bn")(x))
    index = 0
    for expansion, width, repeats, first_stride in _MOBILENET_BLOCKS:
        for r in range(repeats):
            index += 1
            name = f"block{index}"
            strides = first_stride if r == 0 else 1
            y = x
            if expansion != 1:
                y = layers.Conv2D(
                    x.shape[-1] * expansion, 1, use_bias=False, name=f"{name}_expand"
                )(y)
                y = layers.ReLU(6.0, name=f"{name}_expand_relu")(
                    _bn(f"{name}_expand_bn")(y)
                )
            y = layers.DepthwiseConv2D(
                3, strides, "same", use_bias=False, name=f"{name}_dw"
            )(y)
            y = layers.ReLU(6.0, name=f"{name}_dw_relu")(_bn(f"{name}_dw_bn")(y))
            y = layers.Conv2D(width, 1, use_bias=False, name=f"{name}_project")(y)
            y = _bn(f"{name}_project_bn")(y)
            if strides == 1 and x.shape[-1] == width:
                y = layers.Add(name=f"{name}_add")([x, y])
            x = y
    x = layers.Conv2D(head_width, 1, use_bias=False, name="head_conv")(x)
    x = layers.ReLU(6.0, name="head_relu")(_bn("head_bn")(x))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="mobilenet_v2")
