import keras
import numpy as np
from absl.testing import parameterized
from keras import ops

from keras_sagdq import backend
from keras_sagdq import quantizers
from tests.test_case import TestCase
from tests.test_case import to_numpy


class IntegerRangeTest(TestCase):
    @parameterized.parameters(
        (2, False, (0, 3)),
        (2, True, (-2, 1)),
        (4, False, (0, 15)),
        (4, True, (-8, 7)),
        (8, False, (0, 255)),
        (8, True, (-128, 127)),
    )
    def test_range(self, bits, signed, expected):
        self.assertEqual(quantizers.integer_range(bits, signed), expected)

    @parameterized.parameters(1, 9, 0, 4.0, True, "4")
    def test_bad_bits(self, bits):
        with self.assertRaisesRegex(ValueError, "Received: weight_bits="):
            quantizers.check_bits(bits, "weight_bits")


class FakeQuantizeTest(TestCase):
    @parameterized.named_parameters(
        # x, step, zero_point, bits, signed -> expected (hand computed)
        (
            "w2_unsigned",
            [-0.3, 0.1, 0.26, 0.9],
            0.25,
            0.0,
            2,
            False,
            [0.0, 0.0, 0.25, 0.75],
        ),
        (
            "w2_zero_point",
            [-0.6, -0.2, 0.1, 0.5],
            0.25,
            2.0,
            2,
            False,
            [-0.5, -0.25, 0.0, 0.25],
        ),
        (
            "w4_signed",
            [-3.0, -0.74, 0.76, 2.0],
            0.5,
            0.0,
            4,
            True,
            [-3.0, -0.5, 1.0, 2.0],
        ),
        ("w4_clip", [-9.0, 5.2, 7.6, 100.0], 1.0, 0.0, 4, True, [-8.0, 5.0, 7.0, 7.0]),
        (
            "w8_unsigned",
            [0.004, 0.0151, 1.0, 3.0],
            0.01,
            0.0,
            8,
            False,
            [0.0, 0.02, 1.0, 2.55],
        ),
    )
    def test_known_values(self, x, step, zero_point, bits, signed, expected):
        qmin, qmax = quantizers.integer_range(bits, signed)
        y = quantizers.fake_quantize(
            ops.convert_to_tensor(np.array(x, "float32")), step, zero_point, qmin, qmax
        )
        self.assertAllClose(y, expected, atol=1e-6)

    def test_learned_step_gradient(self):
        # LSQ: d/ds = round(x/s) - x/s inside the grid, qmin or qmax - zp at the clip.
        x = np.array([0.3, 1.7, -5.0, 9.0], "float32")
        step = keras.Variable(0.5)
        qmin, qmax = quantizers.integer_range(4, signed=True)  # [-8, 7]

        def loss():
            return ops.sum(
                quantizers.fake_quantize(
                    ops.convert_to_tensor(x), step, 0.0, qmin, qmax
                )
            )

        value, (grad,) = backend.value_and_grad(loss, [step])
        # x/s = [0.6, 3.4, -10, 18] -> q = [1, 3, -8 (clipped), 7 (clipped)]
        self.assertAllClose(value, 0.5 * (1 + 3 - 8 + 7), atol=1e-6)
        self.assertAllClose(grad, (1 - 0.6) + (3 - 3.4) - 8.0 + 7.0, atol=1e-5)

    def test_straight_through_input_gradient(self):
        x = keras.Variable(np.array([0.3, 0.6, 5.0], "float32"))

        def loss():
            return ops.sum(quantizers.fake_quantize(x.value, 0.5, 0.0, 0, 3))

        _, (grad,) = backend.value_and_grad(loss, [x])
        self.assertAllClose(grad, [1.0, 1.0, 0.0])


class AdaRoundTest(TestCase):
    def test_logits_invert_rectified_sigmoid(self):
        residue = np.array([0.01, 0.25, 0.5, 0.75, 0.99], "float32")
        h = quantizers.rectified_sigmoid(quantizers.rounding_logits_for(residue))
        self.assertAllClose(h, residue, atol=1e-5)

    def test_soft_starts_at_weights_and_hard_rounds_to_nearest(self):
        rng = np.random.default_rng(1)
        w = rng.normal(0, 1, (3, 3, 4, 8)).astype("float32")
        step, zp = quantizers.search_weight_params(w, 4, channel_axes=(3,))
        base = np.floor(w / step)
        logits = quantizers.rounding_logits_for(w / step - base)
        args = (
            ops.convert_to_tensor(base),
            ops.convert_to_tensor(logits),
            step,
            zp,
            0,
            15,
        )
        soft = to_numpy(quantizers.adaround_quantize(*args, hard=False))
        hard = to_numpy(quantizers.adaround_quantize(*args, hard=True))
        nearest = (np.clip(np.round(w / step) + zp, 0, 15) - zp) * step
        inside = (w / step + zp > 0) & (w / step + zp < 15)
        np.testing.assert_allclose(soft[inside], w[inside], atol=1e-5)
        np.testing.assert_allclose(hard, nearest, atol=1e-6)
        # Hard values lie on the grid.
        np.testing.assert_allclose(hard / step, np.round(hard / step), atol=1e-4)

    def test_rounding_regularizer(self):
        decided = ops.convert_to_tensor(np.array([-20.0, 20.0], "float32"))
        undecided = ops.convert_to_tensor(np.array([0.0, 0.0], "float32"))
        self.assertAllClose(
            quantizers.rounding_regularizer(decided, 2.0), 0.0, atol=1e-6
        )
        self.assertAllClose(
            quantizers.rounding_regularizer(undecided, 2.0), 2.0, atol=1e-6
        )


class StepSearchTest(TestCase):
    def _lp_error(self, w, step, zp, bits):
        q = np.clip(np.round(w / step) + zp, 0, 2**bits - 1)
        return np.mean(np.abs((q - zp) * step - w) ** 2.4, axis=(0, 1, 2))

    def test_weight_search_beats_min_max(self):
        rng = np.random.default_rng(2)
        w = rng.standard_t(3, (3, 3, 16, 4)).astype("float32")
        step, zp = quantizers.search_weight_params(w, 3, channel_axes=(3,))
        self.assertEqual(step.shape, (1, 1, 1, 4))
        lo = np.minimum(w.min(axis=(0, 1, 2), keepdims=True), 0)
        hi = np.maximum(w.max(axis=(0, 1, 2), keepdims=True), 0)
        mm_step = (hi - lo) / 7
        mm_zp = np.round(-lo / mm_step)
        searched = self._lp_error(w, step, zp, 3)
        minmax = self._lp_error(w, mm_step, mm_zp, 3)
        self.assertTrue(np.all(searched <= minmax + 1e-9))
        # Heavy tails at 3 bits: the best range clips.
        self.assertTrue(np.all(step < mm_step))

    def test_symmetric_weight_search(self):
        w = np.linspace(-1, 1, 64, dtype="float32").reshape(64, 1)
        step, zp = quantizers.search_weight_params(w, 8, (1,), symmetric=True)
        np.testing.assert_array_equal(zp, 0)
        np.testing.assert_allclose(step, 1 / 127, rtol=0.02)

    def test_activation_steps(self):
        x = np.random.default_rng(3).uniform(0, 2, 10000).astype("float32")
        self.assertAlmostEqual(
            quantizers.minmax_activation_step(x, 4, signed=False),
            x.max() / 15,
            places=6,
        )
        step = quantizers.search_activation_step(x, 8, signed=False)
        self.assertAlmostEqual(step, x.max() / 255, delta=0.02 * x.max() / 255)
        signed = quantizers.search_activation_step(x - 1, 4, signed=True)
        self.assertGreater(signed, 0)
        self.assertLessEqual(signed, 1.0 / 7 + 1e-6)
