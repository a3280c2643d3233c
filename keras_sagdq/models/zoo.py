"""A zoo of Fashion-MNIST classifiers built the way users build them.

The two reference models standardize their input with a `Rescaling` layer
that holds the Fashion-MNIST pixel statistics. Users' models rarely do; each
zoo model follows another input convention or layer habit, so that a method
measured on the zoo is not measured on our own conventions only. They are
trained by `scripts/train_zoo_models.py` (a few minutes each on 2 cores) with
other seeds, widths and recipes than the reference models, and shipped in
`keras_sagdq/models/zoo/`.

- `mobilenet_unit_range`: [0, 1] inputs, no normalization layer; BN momentum
  0.9, statistics re-estimated after training.
- `vgg_raw_pixels`: [0, 255] inputs, `Rescaling(1/255)` in front; max pooling,
  BN momentum 0.9.
- `resnet_standardized`: inputs standardized outside the model; no
  normalization layer.
- `vgg_biased`: [0, 1] inputs; biased convolutions before BN,
  `Activation("relu")`, a Flatten + Dense head.
- `cnn_momentum099`: [-1, 1] inputs; Keras' default BN momentum 0.99,
  statistics re-estimated after training.
- `se_hardswish`: [0, 1] inputs, an adapted `Normalization` layer; hard-swish,
  squeeze-and-excitation.
- `mobilenet_v3_style`: [0, 255] inputs rescaled to [-1, 1] inside; hard-swish
  and hard-sigmoid SE gates written with `keras.ops` arithmetic, as
  `keras.applications.MobileNetV3` writes them.
- `efficientnet_style`: [0, 255] inputs, `Rescaling(1/255)` + `Normalization`
  inside; swish, SE with sigmoid gates (MBConv blocks). Its Normalization was
  adapted to the raw pixels, not to what it sees, so it declares an input
  space 255x too wide: a slip users make too, which synthesis detects.
- `separable_xception_style`: [-1, 1] inputs; `SeparableConv2D` blocks with max
  pooling and strided 1x1 shortcuts.

Example:

>>> model = load_zoo_model("mobilenet_unit_range")
>>> x = to_model_input(x_test, "mobilenet_unit_range")   # x_test in [0, 1]
"""

import dataclasses
import os

import keras
import numpy as np
from keras import layers

_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zoo")
# Fashion-MNIST training-set pixel statistics, for the model that expects
# standardized inputs (the caller standardizes, not the model).
_PIXEL_MEAN, _PIXEL_STD = 0.2860, 0.3530


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One zoo model: how to build it and what input it takes.

    Args:
        builder: a function returning the untrained `keras.Model`.
        convention: `"unit"` ([0, 1]), `"raw"` ([0, 255]), `"signed"`
            ([-1, 1]) or `"standardized"` ((x - mean) / std).
        bn_momentum: momentum of its BatchNorms during training.
        reestimate_bn: re-estimate BN statistics on training images after
            training.
        description: one line for tables.
    """

    builder: object
    convention: str
    bn_momentum: float
    reestimate_bn: bool
    description: str


def _bn(momentum, name=None):
    return layers.BatchNormalization(momentum=momentum, name=name)


def mobilenet_unit_range(momentum=0.9):
    """Inverted residuals with ReLU6, narrower than the reference MobileNetV2."""
    inputs = keras.Input((28, 28, 1), name="pixels")
    x = layers.Conv2D(24, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = layers.ReLU(6.0)(_bn(momentum)(x))
    for expansion, width, strides in (
        (1, 16, 1),
        (4, 24, 2),
        (4, 24, 1),
        (4, 40, 2),
        (4, 40, 1),
        (4, 64, 1),
    ):
        y = x
        if expansion != 1:
            y = layers.Conv2D(x.shape[-1] * expansion, 1, use_bias=False)(y)
            y = layers.ReLU(6.0)(_bn(momentum)(y))
        y = layers.DepthwiseConv2D(3, strides, "same", use_bias=False)(y)
        y = layers.ReLU(6.0)(_bn(momentum)(y))
        y = _bn(momentum)(layers.Conv2D(width, 1, use_bias=False)(y))
        x = layers.Add()([x, y]) if strides == 1 and x.shape[-1] == width else y
    x = layers.ReLU(6.0)(_bn(momentum)(layers.Conv2D(192, 1, use_bias=False)(x)))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x), name="mobilenet_unit_range")


def vgg_raw_pixels(momentum=0.9):
    """VGG-style blocks with max pooling, for raw [0, 255] pixels."""
    inputs = keras.Input((28, 28, 1), name="raw_pixels")
    x = layers.Rescaling(1 / 255.0)(inputs)
    for width in (32, 32, "pool", 64, 64, "pool", 128):
        if width == "pool":
            x = layers.MaxPooling2D(2)(x)
            continue
        x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
        x = layers.ReLU()(_bn(momentum)(x))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x), name="vgg_raw_pixels")


def resnet_standardized(momentum=0.9):
    """A small ResNet (2 blocks per stage) fed standardized images."""
    inputs = keras.Input((28, 28, 1), name="standardized")
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(_bn(momentum)(x))
    for stage, width in enumerate((16, 32, 48)):
        for block in range(2):
            strides = 2 if stage and not block else 1
            y = layers.Conv2D(width, 3, strides, "same", use_bias=False)(x)
            y = layers.ReLU()(_bn(momentum)(y))
            y = _bn(momentum)(
                layers.Conv2D(width, 3, padding="same", use_bias=False)(y)
            )
            if strides != 1 or x.shape[-1] != width:
                x = _bn(momentum)(layers.Conv2D(width, 1, strides, use_bias=False)(x))
            x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x), name="resnet_standardized")


def vgg_biased(momentum=0.9):
    """A plain CNN as tutorials write it: biased convolutions before BN."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, padding="same"),
            _bn(momentum),
            layers.Activation("relu"),
            layers.Conv2D(32, 3, strides=2, padding="same"),
            _bn(momentum),
            layers.Activation("relu"),
            layers.Conv2D(64, 3, padding="same"),
            _bn(momentum),
            layers.Activation("relu"),
            layers.Conv2D(64, 3, strides=2, padding="same"),
            _bn(momentum),
            layers.Activation("relu"),
            layers.Flatten(),
            layers.Dense(128),
            layers.Activation("relu"),
            layers.Dense(10),
        ],
        name="vgg_biased",
    )


def cnn_momentum099(momentum=0.99):
    """Strided convolutions, no pooling, inputs in [-1, 1]."""
    inputs = keras.Input((28, 28, 1), name="signed_pixels")
    x = inputs
    for width, strides in ((32, 1), (48, 2), (64, 1), (96, 2), (128, 1)):
        x = layers.Conv2D(width, 3, strides, "same", use_bias=False)(x)
        x = layers.ReLU()(_bn(momentum)(x))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x), name="cnn_momentum099")


def se_hardswish(momentum=0.9):
    """Hard-swish convolutions with squeeze-and-excitation, behind a `Normalization`."""
    inputs = keras.Input((28, 28, 1), name="pixels")
    x = layers.Normalization(name="normalize")(inputs)
    x = layers.Conv2D(24, 3, padding="same", use_bias=False)(x)
    x = layers.Activation("hard_swish")(_bn(momentum)(x))
    for width, strides in ((32, 2), (48, 1), (64, 2)):
        x = layers.Conv2D(width, 3, strides, "same", use_bias=False)(x)
        x = layers.Activation("hard_swish")(_bn(momentum)(x))
        squeeze = layers.GlobalAveragePooling2D(keepdims=True)(x)
        squeeze = layers.Conv2D(width // 4, 1, activation="relu")(squeeze)
        squeeze = layers.Conv2D(width, 1, activation="hard_sigmoid")(squeeze)
        x = layers.Multiply()([x, squeeze])
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x), name="se_hardswish")


def _hard_sigmoid_ops(x):
    # As keras.applications.MobileNetV3 writes it: keras.ops arithmetic
    # around a ReLU(6) layer.
    return layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)


def _hard_swish_ops(x):
    return layers.Multiply()([x, _hard_sigmoid_ops(x)])


def mobilenet_v3_style(momentum=0.9):
    """MobileNetV3's block habits: hard-swish and SE gates written with keras.ops."""
    inputs = keras.Input((28, 28, 1), name="raw_pixels")
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(x)
    x = _hard_swish_ops(_bn(momentum)(x))
    # (expansion, width, kernel, strides, squeeze-excite, hard-swish)
    for expansion, width, kernel, strides, se, hswish in (
        (1, 16, 3, 2, True, False),
        (4, 24, 3, 1, False, False),
        (3, 40, 5, 2, True, True),
        (3, 40, 5, 1, True, True),
        (3, 48, 5, 1, True, True),
    ):
        act = _hard_swish_ops if hswish else layers.ReLU()
        y = x
        if expansion != 1:
            y = layers.Conv2D(x.shape[-1] * expansion, 1, use_bias=False)(y)
            y = act(_bn(momentum)(y))
        y = layers.DepthwiseConv2D(kernel, strides, "same", use_bias=False)(y)
        y = act(_bn(momentum)(y))
        if se:
            squeeze = layers.GlobalAveragePooling2D(keepdims=True)(y)
            squeeze = layers.Conv2D(max(8, y.shape[-1] // 4), 1)(squeeze)
            squeeze = layers.ReLU()(squeeze)
            squeeze = _hard_sigmoid_ops(layers.Conv2D(y.shape[-1], 1)(squeeze))
            y = layers.Multiply()([y, squeeze])
        y = _bn(momentum)(layers.Conv2D(width, 1, use_bias=False)(y))
        x = layers.Add()([x, y]) if strides == 1 and x.shape[-1] == width else y
    x = _hard_swish_ops(_bn(momentum)(layers.Conv2D(96, 1, use_bias=False)(x)))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x), name="mobilenet_v3_style")


def efficientnet_style(momentum=0.9):
    """EfficientNet's MBConv: swish, SE with sigmoid gates, a Normalization."""
    inputs = keras.Input((28, 28, 1), name="raw_pixels")
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = layers.Normalization(name="normalize")(x)
    x = layers.Conv2D(24, 3, padding="same", use_bias=False)(x)
    x = layers.Activation("swish")(_bn(momentum)(x))
    for expansion, width, strides in ((1, 16, 1), (4, 24, 2), (4, 24, 1), (4, 40, 2)):
        y = x
        if expansion != 1:
            y = layers.Conv2D(x.shape[-1] * expansion, 1, use_bias=False)(y)
            y = layers.Activation("swish")(_bn(momentum)(y))
        y = layers.DepthwiseConv2D(3, strides, "same", use_bias=False)(y)
        y = layers.Activation("swish")(_bn(momentum)(y))
        squeeze = layers.GlobalAveragePooling2D()(y)
        squeeze = layers.Reshape((1, 1, y.shape[-1]))(squeeze)
        squeeze = layers.Conv2D(max(4, x.shape[-1] // 4), 1, activation="swish")(
            squeeze
        )
        squeeze = layers.Conv2D(y.shape[-1], 1, activation="sigmoid")(squeeze)
        y = layers.Multiply()([y, squeeze])
        y = _bn(momentum)(layers.Conv2D(width, 1, use_bias=False)(y))
        x = layers.Add()([x, y]) if strides == 1 and x.shape[-1] == width else y
    x = layers.Activation("swish")(
        _bn(momentum)(layers.Conv2D(128, 1, use_bias=False)(x))
    )
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x), name="efficientnet_style")


def separable_xception_style(momentum=0.9):
    """Xception's habits: SeparableConv2D + BN + ReLU, strided 1x1 shortcuts."""
    inputs = keras.Input((28, 28, 1), name="signed_pixels")
    x = layers.Conv2D(32, 3, padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(_bn(momentum)(x))
    for width in (64, 128):
        shortcut = _bn(momentum)(layers.Conv2D(width, 1, 2, use_bias=False)(x))
        y = layers.SeparableConv2D(width, 3, padding="same", use_bias=False)(x)
        y = layers.ReLU()(_bn(momentum)(y))
        y = layers.SeparableConv2D(width, 3, padding="same", use_bias=False)(y)
        y = _bn(momentum)(y)
        y = layers.MaxPooling2D(3, 2, padding="same")(y)
        x = layers.Add()([y, shortcut])
    x = layers.SeparableConv2D(192, 3, padding="same", use_bias=False)(x)
    x = layers.ReLU()(_bn(momentum)(x))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x), name="separable_xception_style")


ZOO = {
    "mobilenet_unit_range": ZooEntry(
        mobilenet_unit_range, "unit", 0.9, True, "[0, 1], no normalization layer"
    ),
    "vgg_raw_pixels": ZooEntry(
        vgg_raw_pixels, "raw", 0.9, False, "[0, 255], Rescaling(1/255) in front"
    ),
    "resnet_standardized": ZooEntry(
        resnet_standardized,
        "standardized",
        0.9,
        False,
        "standardized outside the model",
    ),
    "vgg_biased": ZooEntry(
        vgg_biased, "unit", 0.9, False, "[0, 1], biased convs before BN, Flatten head"
    ),
    "cnn_momentum099": ZooEntry(
        cnn_momentum099, "signed", 0.99, True, "[-1, 1], BN momentum 0.99, re-estimated"
    ),
    "se_hardswish": ZooEntry(
        se_hardswish, "unit", 0.9, False, "[0, 1] behind Normalization, hard-swish, SE"
    ),
    "mobilenet_v3_style": ZooEntry(
        mobilenet_v3_style,
        "raw",
        0.9,
        False,
        "[0, 255], Rescaling to [-1, 1]; hard-swish and SE gates as keras.ops",
    ),
    "efficientnet_style": ZooEntry(
        efficientnet_style,
        "raw",
        0.9,
        False,
        "[0, 255], Rescaling + Normalization; swish, SE with sigmoid gates",
    ),
    "separable_xception_style": ZooEntry(
        separable_xception_style,
        "signed",
        0.9,
        False,
        "[-1, 1]; SeparableConv2D, max pooling, 1x1 strided shortcuts",
    ),
}
ZOO_MODELS = tuple(ZOO)


def _entry(name):
    if name not in ZOO:
        raise ValueError(
            f"Unknown zoo model. Choose one of {ZOO_MODELS}. Received: name={name!r}"
        )
    return ZOO[name]


def to_model_input(images, name):
    """Fashion-MNIST images in [0, 1] -> the input convention of zoo model `name`.

    Args:
        images: float array in [0, 1].
        name: one of `ZOO_MODELS`.

    Returns:
        float32 array of the same shape.
    """
    convention = _entry(name).convention
    images = np.asarray(images, np.float32)
    if convention == "raw":
        return images * 255.0
    if convention == "signed":
        return images * 2.0 - 1.0
    if convention == "standardized":
        return (images - _PIXEL_MEAN) / _PIXEL_STD
    return images


def zoo_model_path(name):
    """Path of a zoo model's `.keras` file (it may not exist yet)."""
    _entry(name)
    return os.path.join(_FOLDER, name + ".keras")


def load_zoo_model(name):
    """Load a trained zoo model.

    Args:
        name: one of `ZOO_MODELS`.

    Returns:
        A Functional or Sequential `keras.Model`.

    Raises:
        ValueError: if `name` is unknown.
        FileNotFoundError: if the file is missing (train it with
            `scripts/train_zoo_models.py`).
    """
    path = zoo_model_path(name)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Zoo model file {path!r} is missing; train it with "
            f"`python scripts/train_zoo_models.py --models={name}`."
        )
    return keras.models.load_model(path, compile=False, safe_mode=True)


def reestimate_batchnorm(model, images, batch_size=500):
    """Set every BatchNorm's moving statistics to those of its inputs on `images`.

    BatchNorms are visited in graph order, each measured with the earlier
    ones already updated, so the statistics are those the model sees in
    inference mode. Each BatchNorm must be called once.

    Args:
        model: a Functional or Sequential model (modified in place).
        images: float array in the model's input convention.
        batch_size: prediction batch size.
    """
    for layer in model.layers:
        if not isinstance(layer, layers.BatchNormalization):
            continue
        probe = keras.Model(model.inputs, layer.input)
        activations = probe.predict(images, batch_size=batch_size, verbose=0)
        axes = tuple(range(activations.ndim - 1))
        layer.moving_mean.assign(activations.mean(axis=axes))
        layer.moving_variance.assign(activations.var(axis=axes))
