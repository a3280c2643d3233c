import gzip
import os

import numpy as np
from absl.testing import parameterized

from keras_sagdq.datasets import load_fashion_mnist
from tests.test_case import TestCase


def _idx_bytes(array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


class FashionMnistTest(TestCase):
    def _write(self, folder, name, array, compress):
        path = os.path.join(folder, name + (".gz" if compress else ""))
        with (gzip.open if compress else open)(path, "wb") as f:
            f.write(_idx_bytes(array))

    @parameterized.parameters(True, False)
    def test_reads_idx_files(self, compress):
        folder = self.temp_dir()
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (5, 28, 28))
        labels = rng.integers(0, 10, 5)
        self._write(folder, "t10k-images-idx3-ubyte", images, compress)
        self._write(folder, "t10k-labels-idx1-ubyte", labels, compress)
        x, y = load_fashion_mnist("test", path=folder)
        self.assertEqual(
            (x.shape, x.dtype, y.dtype), ((5, 28, 28, 1), np.float32, np.int32)
        )
        np.testing.assert_allclose(x[..., 0], images / 255.0, atol=1e-7)
        np.testing.assert_array_equal(y, labels)

    def test_missing_files_name_the_install_command(self):
        with self.assertRaisesRegex(
            FileNotFoundError, "apt-get install dataset-fashion-mnist"
        ):
            load_fashion_mnist("train", path=self.temp_dir())

    def test_corrupt_file(self):
        folder = self.temp_dir()
        data = _idx_bytes(np.zeros((5, 28, 28)))[:-10]
        with open(os.path.join(folder, "t10k-images-idx3-ubyte"), "wb") as f:
            f.write(data)
        self._write(folder, "t10k-labels-idx1-ubyte", np.zeros(5), False)
        with self.assertRaisesRegex(ValueError, "truncated or corrupt"):
            load_fashion_mnist("test", path=folder)
        with open(os.path.join(folder, "t10k-images-idx3-ubyte"), "wb") as f:
            f.write(b"PK\x03\x04 not an idx file")
        with self.assertRaisesRegex(ValueError, "not an unsigned-byte idx file"):
            load_fashion_mnist("test", path=folder)

    def test_bad_split(self):
        with self.assertRaisesRegex(ValueError, "Received: split='validation'"):
            load_fashion_mnist("validation")
