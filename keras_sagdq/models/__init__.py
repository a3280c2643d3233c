"""Reference models trained on Fashion-MNIST, shipped inside the package.

Example:

>>> model = load_reference_model("resnet20_fashion_mnist")
>>> model.input_shape
(None, 28, 28, 1)
"""

import os

import keras

from keras_sagdq.models import architectures  # noqa: F401  (builders for the training script)

_FOLDER = os.path.dirname(os.path.abspath(__file__))
REFERENCE_MODELS = ("resnet20_fashion_mnist", "mobilenet_v2_fashion_mnist")


def reference_model_path(name):
    """Path of a shipped reference model's `.keras` file.

    Raises:
        ValueError: if `name` is not one of `REFERENCE_MODELS`.
    """
    if name not in REFERENCE_MODELS:
        raise ValueError(
            f"Unknown reference model. Choose one of {REFERENCE_MODELS}. Received: name={name!r}"
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
