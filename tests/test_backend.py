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


class LocalAcceleratorTest(TestCase):
    def test_cpu_machine_and_bad_rank(self):
        if backend.use_local_accelerator("0") is not None:
            self.skipTest("this machine has a GPU")
        self.assertIsNone(backend.use_local_accelerator(3))
        for bad in ("x", -1, None):
            with self.assertRaisesRegex(ValueError, "local_rank"):
                backend.use_local_accelerator(bad)
