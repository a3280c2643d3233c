import numpy as np
from absl.testing import parameterized

from keras_sagdq.synthesis import build_generator
from tests.test_case import TestCase
from tests.test_case import to_numpy


class GeneratorTest(TestCase):
    @parameterized.named_parameters(
        ("divisible_by_4", (28, 28, 1)),
        ("cropped", (30, 26, 3)),
    )
    def test_shape_and_standardized_output(self, image_shape):
        generator = build_generator(image_shape, latent_dim=16, seed=0)
        z = np.random.default_rng(0).standard_normal((16, 16)).astype("float32")
        images = to_numpy(generator(z, training=True))
        self.assertEqual(images.shape, (16, *image_shape))
        # The last BatchNorm (no affine) standardizes each channel over the batch.
        self.assertAllClose(
            images.mean(axis=(0, 1, 2)), np.zeros(image_shape[-1]), atol=1e-4
        )
        self.assertAllClose(
            images.std(axis=(0, 1, 2)), np.ones(image_shape[-1]), atol=1e-2
        )

    def test_seed_fixes_the_weights(self):
        a = build_generator((8, 8, 3), latent_dim=8, seed=3).get_weights()
        b = build_generator((8, 8, 3), latent_dim=8, seed=3).get_weights()
        c = build_generator((8, 8, 3), latent_dim=8, seed=4).get_weights()
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
        self.assertFalse(np.allclose(a[0], c[0]))

    def test_channels_set_the_projection_size(self):
        small = build_generator((28, 28, 1), latent_dim=16, seed=0, feature_channels=32)
        default = build_generator((28, 28, 1), latent_dim=16, seed=0)
        # Dense 16 -> 7 * 7 * c, then a 3x3 convolution to c / 2 channels.
        self.assertEqual(small.layers[0].kernel.shape, (16, 7 * 7 * 32))
        self.assertEqual(default.layers[0].kernel.shape, (16, 7 * 7 * 128))
        self.assertEqual(small.layers[4].kernel.shape, (3, 3, 32, 16))
        z = np.random.default_rng(0).standard_normal((8, 16)).astype("float32")
        self.assertEqual(to_numpy(small(z, training=True)).shape, (8, 28, 28, 1))
