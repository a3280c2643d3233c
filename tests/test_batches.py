import numpy as np

from keras_sagdq.datasets import AugmentedBatches
from tests.test_case import TestCase


class AugmentedBatchesTest(TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(0)
        self.images = rng.uniform(0, 1, (20, 6, 6, 1)).astype("float32")
        self.labels = np.arange(20)

    def test_flips_only(self):
        batches = AugmentedBatches(self.images, self.labels, 8, seed=1, max_shift=0)
        self.assertLen(batches, 2)
        x, y = batches[0]
        self.assertEqual(x.shape, (8, 6, 6, 1))
        for image, label in zip(x, y):
            original = self.images[label]
            self.assertTrue(
                np.array_equal(image, original)
                or np.array_equal(image, original[:, ::-1])
            )

    def test_shifts_keep_the_shape_and_the_seed_decides(self):
        a = AugmentedBatches(self.images, self.labels, 8, seed=3, max_shift=2)
        b = AugmentedBatches(self.images, self.labels, 8, seed=3, max_shift=2)
        (xa, ya), (xb, yb) = a[1], b[1]
        self.assertEqual(xa.shape, (8, 6, 6, 1))
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
        other = AugmentedBatches(self.images, self.labels, 8, seed=4, max_shift=2)
        self.assertFalse(np.array_equal(other[1][0], xa))
