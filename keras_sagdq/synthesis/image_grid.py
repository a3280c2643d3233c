"""Write a batch of images as one PNG grid (no imaging library needed)."""

import math
import os
import struct
import zlib

import numpy as np


def save_image_grid(images, path, columns=None, value_range=None, padding=1):
    """Save `(N, H, W, C)` images as a PNG grid, row by row.

    Args:
        images: array of N images with 1 (grayscale) or 3 (RGB) channels.
        path: the `.png` file to write (parent directories are created).
        columns: images per row; default `ceil(sqrt(N))`.
        value_range: `(low, high)` mapped to black and white, values outside
            clipped; default: stretch each image from its own min to max,
            which shows synthetic images whose range is not the data's.
        padding: pixels of black between images.

    Returns:
        `path`.

    Raises:
        ValueError: if `images` is not a non-empty `(N, H, W, 1 or 3)` array
            of finite values, or `value_range` is not increasing.

    Example:

    >>> images = ks.synthesize(model, num_samples=64)
    >>> ks.save_image_grid(images, "docs/images/genie_resnet20.png")
    """
    images = np.asarray(images, np.float64)
    if images.ndim != 4 or images.shape[0] == 0 or images.shape[-1] not in (1, 3):
        raise ValueError(
            "`images` must have shape (N, H, W, C) with N > 0 and C in (1, 3). "
            f"Received: images with shape {images.shape}"
        )
    if not np.all(np.isfinite(images)):
        raise ValueError(
            "`images` must be finite. Received: images with NaN or inf values"
        )
    if value_range is None:
        low = images.min(axis=(1, 2, 3), keepdims=True)
        high = images.max(axis=(1, 2, 3), keepdims=True)
    else:
        low, high = (float(v) for v in value_range)
        if not high > low:
            raise ValueError(
                "`value_range` must be (low, high) with high > low. Received: "
                f"value_range={value_range!r}"
            )
    scaled = np.clip((images - low) / np.maximum(high - low, 1e-12), 0.0, 1.0)
    pixels = np.round(scaled * 255).astype(np.uint8)

    n, h, w, c = pixels.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.zeros(
        (rows * (h + padding) + padding, columns * (w + padding) + padding, c), np.uint8
    )
    for i, image in enumerate(pixels):
        top = padding + (i // columns) * (h + padding)
        left = padding + (i % columns) * (w + padding)
        grid[top : top + h, left : left + w] = image
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "wb") as f:
        f.write(_png(grid))
    return path


def _png(grid):
    height, width, channels = grid.shape
    color_type = 0 if channels == 1 else 2

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    # Each scanline starts with filter type 0 (none).
    raw = b"".join(b"\x00" + row.tobytes() for row in grid.reshape(height, -1))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )
