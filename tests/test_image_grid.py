import os

import numpy as np
import tensorflow as tf

import keras_sagdq as ks
from tests.test_case import TestCase


def _decode(path):
    # TensorFlow's PNG decoder: an independent reader of what we wrote.
    with open(path, "rb") as f:
        return tf.io.decode_png(f.read()).numpy()


class SaveImageGridTest(TestCase):
    def test_grayscale_grid_layout_and_values(self):
        images = np.zeros((3, 2, 2, 1), "float32")
        images[0] = 0.5
        images[1, 0, 0, 0] = 1.0
        images[2] = np.array([[0.0, 1.0], [0.25, 0.5]])[..., None]
        path = os.path.join(self.temp_dir(), "sub", "grid.png")
        ks.save_image_grid(images, path, columns=2, value_range=(0, 1), padding=1)
        grid = _decode(path)
        # 2 rows x 2 columns of 2x2 images, 1 pixel of padding around each.
        self.assertEqual(grid.shape, (7, 7, 1))
        np.testing.assert_array_equal(grid[1:3, 1:3, 0], [[128, 128], [128, 128]])
        np.testing.assert_array_equal(grid[1:3, 4:6, 0], [[255, 0], [0, 0]])
        np.testing.assert_array_equal(grid[4:6, 1:3, 0], [[0, 255], [64, 128]])
        np.testing.assert_array_equal(grid[:, 0, 0], np.zeros(7))
        np.testing.assert_array_equal(grid[4:6, 4:6, 0], np.zeros((2, 2)))

    def test_rgb_and_per_image_stretch(self):
        images = np.random.default_rng(0).normal(5, 3, (5, 4, 3, 3)).astype("float32")
        path = os.path.join(self.temp_dir(), "rgb.png")
        ks.save_image_grid(images, path)
        grid = _decode(path)
        # ceil(sqrt(5)) = 3 columns, 2 rows of 4x3 images.
        self.assertEqual(grid.shape, (2 * 5 + 1, 3 * 4 + 1, 3))
        first = grid[1:5, 1:4]
        self.assertEqual(first.min(), 0)
        self.assertEqual(first.max(), 255)

    def test_bad_input(self):
        path = os.path.join(self.temp_dir(), "x.png")
        with self.assertRaisesRegex(ValueError, "shape"):
            ks.save_image_grid(np.zeros((2, 4, 4, 2)), path)
        with self.assertRaisesRegex(ValueError, "finite"):
            ks.save_image_grid(np.full((1, 4, 4, 1), np.nan), path)
        with self.assertRaisesRegex(ValueError, "value_range"):
            ks.save_image_grid(np.zeros((1, 4, 4, 1)), path, value_range=(1, 0))
        self.assertFalse(os.path.exists(path))
