import numpy as np

from keras_sagdq.synthesis import SwingShift
from tests.test_case import TestCase
from tests.test_case import to_numpy


def _offset(x, y):
    """The (dy, dx) in {-1, 0, 1}^2 with y[i, j] == x[i + dy, j + dx] inside, or "
    "None."""
    h, w = x.shape[1:3]
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if np.array_equal(
                y[:, 1:-1, 1:-1], x[:, 1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx]
            ):
                return dy, dx
    return None


class SwingShiftTest(TestCase):
    def test_shape_kept_and_shift_at_most_one_pixel(self):
        x = np.random.default_rng(0).standard_normal((2, 9, 7, 3)).astype("float32")
        swing = SwingShift(seed=0)
        offsets = set()
        for _ in range(30):
            y = to_numpy(swing(x))
            self.assertEqual(y.shape, x.shape)
            offset = _offset(x, y)
            self.assertIsNotNone(offset)
            offsets.add(offset)
            # Reflect padding: border values come from the image itself.
            self.assertTrue(np.all(np.isin(y, x)))
        # Random offsets: more than a few of the 9 occur in 30 calls.
        self.assertGreater(len(offsets), 3)

    def test_same_seed_same_offsets(self):
        x = np.random.default_rng(1).standard_normal((1, 6, 6, 2)).astype("float32")
        a, b = SwingShift(seed=5), SwingShift(seed=5)
        for _ in range(5):
            np.testing.assert_array_equal(to_numpy(a(x)), to_numpy(b(x)))

    def test_map_too_small_to_pad_passes_through(self):
        x = np.ones((2, 1, 1, 4), "float32")
        np.testing.assert_array_equal(to_numpy(SwingShift(seed=0)(x)), x)
