"""Fashion-MNIST from Debian's `dataset-fashion-mnist` package (idx files)."""

import gzip
import os

import numpy as np

DEFAULT_PATH = "/usr/share/datasets/fashion-mnist"
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_TYPES = {0x08: np.uint8}


def load_fashion_mnist(split="test", path=None):
    """Load one split of Fashion-MNIST.

    Args:
        split: `"train"` (60 000 images) or `"test"` (10 000 images).
        path: folder with the idx files (`.gz` or not). Default: the
            `KERAS_SAGDQ_FASHION_MNIST` environment variable, else
            `/usr/share/datasets/fashion-mnist` (Debian's package).

    Returns:
        `(images, labels)`: float32 `(N, 28, 28, 1)` in [0, 1] and int32 `(N,)`.

    Raises:
        ValueError: if `split` is unknown or a file is not a valid idx file.
        FileNotFoundError: if the files are missing, with the install command.

    Example:

    >>> x_test, y_test = load_fashion_mnist("test")
    >>> x_test.shape, x_test.dtype
    ((10000, 28, 28, 1), dtype('float32'))
    """
    if split not in _FILES:
        raise ValueError(
            f"`split` must be 'train' or 'test'. Received: split={split!r}"
        )
    path = path or os.environ.get("KERAS_SAGDQ_FASHION_MNIST", DEFAULT_PATH)
    images_name, labels_name = _FILES[split]
    images = _read_idx(_find(path, images_name))
    labels = _read_idx(_find(path, labels_name))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"Fashion-MNIST files in {path!r} do not match: images {images.shape}, "
            f"labels {labels.shape}."
        )
    images = (images.astype(np.float32) / 255.0)[..., None]
    return images, labels.astype(np.int32)


def _find(folder, name):
    for candidate in (name, name + ".gz"):
        full = os.path.join(folder, candidate)
        if os.path.isfile(full):
            return full
    raise FileNotFoundError(
        f"Fashion-MNIST file {name}[.gz] not found in {folder!r}. Install the data "
        "with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or pass "
        "`path=` / set KERAS_SAGDQ_FASHION_MNIST to a folder with the idx files."
    )


def _read_idx(filename):
    opener = gzip.open if filename.endswith(".gz") else open
    with opener(filename, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(f"{filename!r} is not an unsigned-byte idx file.")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise ValueError(
            f"{filename!r} is truncated or corrupt: {len(data)} bytes, expected "
            f"{expected}."
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)
