import os

import keras
import numpy as np
from absl.testing import parameterized
from keras import layers
from keras import ops

from keras_sagdq import backend
from keras_sagdq.layers import QuantConv2D
from keras_sagdq.layers import QuantDense
from keras_sagdq.layers import QuantDepthwiseConv2D
from keras_sagdq.layers import quantized_class_for
from tests.test_case import TestCase
from tests.test_case import to_numpy

CASES = (
    (
        "conv2d",
        layers.Conv2D,
        QuantConv2D,
        dict(filters=6, kernel_size=3, strides=2, padding="same"),
        (2, 9, 9, 4),
    ),
    (
        "grouped_conv2d",
        layers.Conv2D,
        QuantConv2D,
        dict(filters=6, kernel_size=3, groups=2),
        (2, 9, 9, 4),
    ),
    (
        "depthwise",
        layers.DepthwiseConv2D,
        QuantDepthwiseConv2D,
        dict(kernel_size=3, depth_multiplier=2, activation="relu"),
        (2, 9, 9, 4),
    ),
    ("dense", layers.Dense, QuantDense, dict(units=5), (3, 7)),
)


def _pair(float_cls, quant_cls, kwargs, shape, bits=4, mode="hard"):
    x = np.random.default_rng(0).normal(0, 1, shape).astype("float32")
    ref = float_cls(**kwargs)
    ref.build(shape)
    q = quant_cls(**kwargs, weight_bits=bits, mode=mode)
    q.build(shape)
    q.kernel.assign(ref.kernel)
    q.bias.assign(np.random.default_rng(1).normal(0, 1, q.bias.shape))
    ref.bias.assign(q.bias)
    q.initialize_weight_quantizer()
    return x, ref, q


class QuantizedWeightsTest(TestCase):
    @parameterized.named_parameters(*CASES)
    def test_float_mode_is_the_parent_layer(self, float_cls, quant_cls, kwargs, shape):
        x, ref, q = _pair(float_cls, quant_cls, kwargs, shape, mode="float")
        self.assertAllClose(q(x), ref(x), atol=1e-6)

    @parameterized.named_parameters(*CASES)
    def test_hard_mode_uses_grid_weights(self, float_cls, quant_cls, kwargs, shape):
        x, ref, q = _pair(float_cls, quant_cls, kwargs, shape, bits=3)
        step = to_numpy(q.weight_step)
        integers = q.integer_kernel()
        self.assertAllClose(q.quantized_kernel(), integers * step, atol=1e-6)
        zp = to_numpy(q.weight_zero_point)
        self.assertTrue(np.all(integers + zp >= 0) and np.all(integers + zp <= 7))
        # The layer's output is the parent layer run with those weights.
        ref.kernel.assign(integers * step)
        self.assertAllClose(q(x), ref(x), atol=1e-5)
        # Round to nearest at initialization: each weight within half a step
        # unless clipped.
        w = to_numpy(q.kernel)
        inside = (w / step + zp > 0) & (w / step + zp < 7)
        self.assertTrue(
            np.all(np.abs(integers * step - w)[inside] <= step.max() / 2 + 1e-6)
        )

    @parameterized.named_parameters(*CASES)
    def test_soft_to_hard(self, float_cls, quant_cls, kwargs, shape):
        _, _, q = _pair(float_cls, quant_cls, kwargs, shape, mode="soft")
        # Decided logits: soft rounding equals hard rounding exactly.
        logits = np.where(to_numpy(q.rounding_logits) >= 0, 30.0, -30.0)
        q.rounding_logits.assign(logits)
        soft = to_numpy(q.quantized_kernel())
        q.mode = "hard"
        self.assertAllClose(soft, q.quantized_kernel(), atol=1e-6)

    @parameterized.named_parameters(*CASES)
    def test_gradients_reach_step_and_rounding(
        self, float_cls, quant_cls, kwargs, shape
    ):
        x, _, q = _pair(float_cls, quant_cls, kwargs, shape, mode="soft")
        names = [v.name for v in q.trainable_variables]
        self.assertEqual(sorted(names), ["rounding_logits", "weight_step"])
        _, grads = backend.value_and_grad(
            lambda: ops.sum(ops.square(q(x))), q.trainable_variables
        )
        for name, grad in zip(names, grads):
            self.assertGreater(np.abs(to_numpy(grad)).sum(), 0, name)

    @parameterized.named_parameters(*CASES)
    def test_saving(self, float_cls, quant_cls, kwargs, shape):
        x, _, q = _pair(float_cls, quant_cls, kwargs, shape, mode="soft")
        q.rounding_logits.assign(
            np.random.default_rng(2).normal(0, 1, q.rounding_logits.shape)
        )
        inputs = keras.Input(shape[1:])
        model = keras.Model(inputs, q(inputs))
        path = os.path.join(self.temp_dir(), "m.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        self.assertIsInstance(loaded.layers[-1], quant_cls)
        self.assertEqual(loaded.layers[-1].mode, "soft")
        self.assertAllClose(loaded(x), model(x), atol=0)

    def test_bad_bits(self):
        with self.assertRaisesRegex(ValueError, "Received: weight_bits=1"):
            QuantConv2D(4, 3, weight_bits=1)
        with self.assertRaisesRegex(ValueError, "Received: mode='int4'"):
            QuantDense(4, mode="int4")

    def test_per_tensor(self):
        q = QuantDense(5, weight_per_channel=False)
        q.build((None, 7))
        q.initialize_weight_quantizer()
        self.assertEqual(tuple(q.weight_step.shape), (1, 1))


class RegistryTest(TestCase):
    def test_each_float_type_maps_to_its_quantized_class(self):
        self.assertIs(quantized_class_for(keras.layers.Conv2D(2, 3)), QuantConv2D)
        self.assertIs(
            quantized_class_for(keras.layers.DepthwiseConv2D(3)), QuantDepthwiseConv2D
        )
        self.assertIs(quantized_class_for(keras.layers.Dense(2)), QuantDense)
        self.assertIsNone(quantized_class_for(keras.layers.BatchNormalization()))

    def test_subclasses_are_not_quantizable(self):
        class MyConv(keras.layers.Conv2D):
            pass

        self.assertIsNone(quantized_class_for(MyConv(2, 3)))
        # A quantized layer is not quantized again.
        self.assertIsNone(quantized_class_for(QuantDense(2)))

    def test_channel_shape_follows_the_channel_axes(self):
        self.assertEqual(QuantConv2D.channel_shape((3, 3, 4, 8)), (1, 1, 1, 8))
        self.assertEqual(QuantDepthwiseConv2D.channel_shape((3, 3, 4, 2)), (1, 1, 4, 2))
        self.assertEqual(QuantDense.channel_shape((16, 10)), (1, 10))
