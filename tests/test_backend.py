import contextlib

import keras
import numpy as np
from keras import ops

from keras_sagdq import backend
from tests.test_case import TestCase


class ValueAndGradTest(TestCase):
    def test_quadratic(self):
        v = keras.Variable(np.array([1.0, -2.0], "float32"))
        loss, (grad,) = backend.value_and_grad(lambda: ops.sum(v.value**2), [v])
        self.assertAllClose(loss, 5.0)
        self.assertAllClose(grad, [2.0, -4.0])

    def test_unused_variable_gets_zeros(self):
        used = keras.Variable(3.0)
        unused = keras.Variable(np.ones((2, 2), "float32"))
        _, grads = backend.value_and_grad(lambda: used.value * 2.0, [used, unused])
        self.assertAllClose(grads[0], 2.0)
        self.assertAllClose(grads[1], np.zeros((2, 2)))

    def test_through_a_layer(self):
        layer = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")
        x = np.array([[1.0, 2.0]], "float32")
        layer.build((None, 2))
        _, (grad,) = backend.value_and_grad(lambda: ops.sum(layer(x)), [layer.kernel])
        self.assertAllClose(grad, [[1.0], [2.0]])


class UniformLikeTest(TestCase):
    def _draws(self, generator, count, shape=(64, 8)):
        x = ops.zeros(shape)
        return [
            ops.convert_to_numpy(backend.uniform_like(x, generator))
            for _ in range(count)
        ]

    def test_shape_range_and_spread(self):
        generator = keras.random.SeedGenerator(3)
        for context in (backend.random_streams, contextlib.nullcontext):
            with context():
                (noise,) = self._draws(generator, 1, shape=(100, 100))
            self.assertEqual(noise.shape, (100, 100))
            self.assertEqual(noise.dtype, np.float32)
            self.assertTrue(np.all((noise >= 0.0) & (noise < 1.0)))
            self.assertAllClose(noise.mean(), 0.5, atol=0.02)

    def test_a_stream_depends_only_on_the_state_at_entry(self):
        generator = keras.random.SeedGenerator(5)
        start = ops.convert_to_numpy(generator.state.value)
        with backend.random_streams():
            first = self._draws(generator, 3)
        generator.state.assign(start)
        with backend.random_streams():
            again = self._draws(generator, 3)
        for a, b in zip(first, again):
            self.assertAllClose(a, b)
        # Successive draws differ, and a later entry starts a new stream.
        self.assertGreater(np.abs(first[0] - first[1]).max(), 0.1)
        with backend.random_streams():
            (later,) = self._draws(generator, 1)
        self.assertGreater(np.abs(later - first[0]).max(), 0.1)

    def test_neighbouring_states_give_different_streams(self):
        # [s, 1] and [s + 1, 0] sum to the same number.
        a = keras.random.SeedGenerator(0)
        b = keras.random.SeedGenerator(0)
        dtype = a.state.dtype
        a.state.assign(ops.convert_to_tensor([7, 1], dtype=dtype))
        b.state.assign(ops.convert_to_tensor([8, 0], dtype=dtype))
        with backend.random_streams():
            (from_a,) = self._draws(a, 1)
            (from_b,) = self._draws(b, 1)
        self.assertGreater(np.abs(from_a - from_b).max(), 0.1)


class LocalAcceleratorTest(TestCase):
    def test_cpu_machine_and_bad_rank(self):
        if backend.use_local_accelerator("0") is not None:
            self.skipTest("this machine has a GPU")
        self.assertIsNone(backend.use_local_accelerator(3))
        for bad in ("x", -1, None):
            with self.assertRaisesRegex(ValueError, "local_rank"):
                backend.use_local_accelerator(bad)
