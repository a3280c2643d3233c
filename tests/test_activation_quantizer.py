import keras
import numpy as np
from absl.testing import parameterized

from keras_sagdq.layers import ActivationQuantizer
from tests.test_case import TestCase
from tests.test_case import to_numpy


class ActivationQuantizerTest(TestCase):
    def test_passthrough_until_initialized(self):
        x = np.random.default_rng(0).uniform(0, 1, (4, 6)).astype("float32")
        aq = ActivationQuantizer(bits=2)
        self.assertAllClose(aq(x), x)

    @parameterized.parameters(2, 4, 8)
    def test_unsigned_grid(self, bits):
        x = np.random.default_rng(0).uniform(0, 3, (256, 8)).astype("float32")
        aq = ActivationQuantizer(bits=bits)
        aq.initialize(x, method="minmax")
        self.assertFalse(aq.signed)
        step = float(to_numpy(aq.step))
        self.assertAlmostEqual(step, x.max() / (2**bits - 1), places=5)
        y = to_numpy(aq(x))
        levels = y / step
        np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
        self.assertLessEqual(len(np.unique(np.round(levels))), 2**bits)
        self.assertLessEqual(np.abs(y - x).max(), step / 2 + 1e-5)

    def test_signed_detected_from_data(self):
        x = np.random.default_rng(0).normal(0, 1, (64, 8)).astype("float32")
        aq = ActivationQuantizer(bits=4)
        aq.initialize(x)
        self.assertTrue(aq.signed)
        self.assertLess(to_numpy(aq(x)).min(), 0)

    def test_float_mode_and_nan_error(self):
        x = np.ones((2, 3), "float32")
        aq = ActivationQuantizer(bits=4, mode="float")
        aq.initialize(x * 2)
        self.assertAllClose(aq(x * 0.37), x * 0.37)
        with self.assertRaisesRegex(ValueError, "NaN"):
            aq.initialize(np.array([np.nan], "float32"))

    def test_qdrop(self):
        x = np.random.default_rng(0).uniform(0.01, 1, (200, 50)).astype("float32")
        quantized = {}
        for p in (0.0, 0.5, 1.0):
            aq = ActivationQuantizer(bits=2, qdrop_probability=p, seed=1)
            aq.initialize(x, method="minmax")
            quantized[p] = to_numpy(aq(x, training=True))
        kept_float = lambda y: np.mean(np.isclose(y, x))  # noqa: E731
        self.assertLess(kept_float(quantized[0.0]), 0.05)
        self.assertEqual(kept_float(quantized[1.0]), 1.0)
        self.assertAlmostEqual(kept_float(quantized[0.5]), 0.5, delta=0.05)
        # Inference never drops.
        aq = ActivationQuantizer(bits=2, qdrop_probability=1.0)
        aq.initialize(x, method="minmax")
        self.assertLess(kept_float(to_numpy(aq(x))), 0.05)

    def test_config_round_trip(self):
        aq = ActivationQuantizer(bits=3, qdrop_probability=0.5, name="aq")
        aq.initialize(np.linspace(-1, 1, 100, dtype="float32"))
        clone = ActivationQuantizer.from_config(aq.get_config())
        self.assertEqual(clone.bits, 3)
        self.assertTrue(clone.signed)
        self.assertTrue(clone.initialized)
        self.assertEqual(clone.qdrop_probability, 0.5)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: bits=9"):
            ActivationQuantizer(bits=9)
        with self.assertRaisesRegex(ValueError, "Received: mode='int8'"):
            ActivationQuantizer(mode="int8")
        with self.assertRaisesRegex(ValueError, "qdrop_probability=1.5"):
            ActivationQuantizer(qdrop_probability=1.5)
        with self.assertRaisesRegex(ValueError, "method='max'"):
            ActivationQuantizer().initialize(np.ones(3, "float32"), method="max")


class KerasModelTest(TestCase):
    def test_step_is_trainable(self):
        aq = ActivationQuantizer(bits=4)
        aq.initialize(np.linspace(0, 1, 64, dtype="float32"))
        self.assertEqual([v.name for v in aq.trainable_variables], ["step"])
        self.assertIsInstance(aq.seed_generator, keras.random.SeedGenerator)
