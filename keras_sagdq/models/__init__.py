"""Reference models trained on Fashion-MNIST, shipped inside the package.

Example:

>>> model = load_reference_model("resnet20_fashion_mnist")
>>> model.input_shape
(None, 28, 28, 1)
"""

import os

import keras

from keras_sagdq.models import architectures  # noqa: F401  (builders for the training script)
from keras_sagdq.models import zoo

_FOLDER = os.path.dirname(os.path.abspath(__file__))
REFERENCE_MODELS = ("resnet20_fashion_mnist", "mobilenet_v2_fashion_mnist")


def reference_model_path(name):
    """Path of a shipped reference model's `.keras` file.

    Raises:
        ValueError: if `name` is not one of `REFERENCE_MODELS`.
    """
    if name not in REFERENCE_MODELS:
        raise ValueError(
            f"Unknown reference model. Choose one of {REFERENCE_MODELS}. Received: "
            f"name={name!r}"
        )
    return os.path.join(_FOLDER, name + ".keras")


def load_reference_model(name):
    """Load a shipped reference model (float, trained, BN momentum 0.9).

    The models take float32 images `(N, 28, 28, 1)` in [0, 1] and return 10
    logits. Accuracy and the training command are in docs/benchmarks.md.

    Args:
        name: one of `REFERENCE_MODELS`.

    Returns:
        A Functional `keras.Model`.

    Raises:
        ValueError: if `name` is unknown.
        FileNotFoundError: if the package was installed without its model files.
    """
    path = reference_model_path(name)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Reference model file {path!r} is missing; reinstall keras_sagdq "
            "or train it with scripts/train_reference_models.py."
        )
    return keras.models.load_model(path, compile=False, safe_mode=True)


def load_shipped_model(name):
    """Load a reference model or a zoo model by name.

    Args:
        name: one of `REFERENCE_MODELS` or `zoo.ZOO_MODELS`.

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: if `name` is neither.

    Example:

    >>> model = load_shipped_model("vgg_raw_pixels")
    >>> model.predict(shipped_model_input(x_test, "vgg_raw_pixels"))
    """
    if name in zoo.ZOO_MODELS:
        return zoo.load_zoo_model(name)
    return load_reference_model(name)


def shipped_model_input(images, name):
    """Fashion-MNIST images in [0, 1] -> the input of shipped model `name`.

    The reference models take [0, 1] pixels; zoo models their own convention
    (`zoo.to_model_input`).
    """
    if name in zoo.ZOO_MODELS:
        return zoo.to_model_input(images, name)
    reference_model_path(name)  # raises on an unknown name
    return images
