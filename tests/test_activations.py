"""Phone networks: activations as TFLite computes them, SE blocks, keras.ops nodes."""

import os

import keras
import numpy as np
from absl.testing import parameterized
from keras import layers

import keras_sagdq as ks
from keras_sagdq.graph import activations
from keras_sagdq.layers import ActivationQuantizer
from tests.test_case import TestCase
from tests.test_case import randomize_batchnorms
from tests.test_case import to_numpy


def se_hardswish_net(gate="hard_sigmoid", act="hard_swish", ops_graph=False):
    """A MobileNetV3-style net: Normalization, act, squeeze-and-excitation."""
    inputs = keras.Input((12, 12, 1))
    x = layers.Normalization(mean=0.3, variance=0.1)(inputs)
    x = layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
    x = layers.Activation(act)(layers.BatchNormalization()(x))
    x = layers.DepthwiseConv2D(3, 2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    # MobileNetV3 writes hard-swish and the gate with keras.ops arithmetic.
    x = x * keras.ops.relu6(x + 3.0) * (1.0 / 6.0) if ops_graph else x
    x = x if ops_graph else layers.Activation(act)(x)
    squeeze = layers.GlobalAveragePooling2D(keepdims=True)(x)
    squeeze = layers.Conv2D(4, 1, activation="relu")(squeeze)
    squeeze = layers.Conv2D(8, 1, activation=gate)(squeeze)
    x = layers.Multiply()([x, squeeze])
    x = layers.Conv2D(12, 1, activation="swish")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = randomize_batchnorms(keras.Model(inputs, layers.Dense(5)(x)))
    # Logits far apart enough that the class depends on the image.
    head = model.layers[-1]
    rng = np.random.default_rng(1)
    head.set_weights([rng.normal(0, 30, (12, 5)), np.zeros(5)])
    return model


def images(n, seed=0):
    # Brightness and contrast vary per image, so the class does too.
    rng = np.random.default_rng(seed)
    power = rng.uniform(0.1, 8.0, (n, 1, 1, 1))
    return (rng.uniform(0, 1, (n, 12, 12, 1)) ** power).astype("float32")


class AsymmetricGridTest(TestCase):
    def test_zero_point_and_step_of_a_hand_computed_grid(self):
        # [-0.5, 2.5] on 4 bits: 3 / 15 = 0.2 puts the zero at 2.5 levels. The
        # zero point must be an integer and the grid must hold both ends:
        # z = 2 needs max(2.5 / 13, 0.5 / 2) = 0.25, z = 3 needs
        # max(2.5 / 12, 0.5 / 3) = 0.2083: z = 3, integers [-3, 12].
        x = np.linspace(-0.5, 2.5, 301, dtype="float32")
        aq = ActivationQuantizer(bits=4, symmetry="asymmetric")
        aq.initialize(x, method="minmax")
        self.assertAlmostEqual(float(to_numpy(aq.step)), 2.5 / 12, places=6)
        self.assertEqual(aq.zero_point, 3)
        self.assertEqual(aq.integer_range, (-3, 12))
        y = to_numpy(aq(np.array([-1.0, -0.5, 0.1, 2.5, 9.0], "float32")))
        expected = np.array([-3, -2, 0, 12, 12]) * 2.5 / 12
        np.testing.assert_allclose(y, expected, atol=1e-6)

    def test_auto_picks_the_zero_point_for_hard_swish_outputs(self):
        rng = np.random.default_rng(0)
        pre = rng.normal(0, 2, 20000).astype("float32")
        hswish = to_numpy(keras.activations.hard_swish(pre))
        lopsided = ActivationQuantizer(bits=4, symmetry="auto")
        lopsided.initialize(hswish)
        self.assertIsNotNone(lopsided.zero_point)
        symmetric = ActivationQuantizer(bits=4, symmetry="symmetric")
        symmetric.initialize(hswish)
        error = lambda aq: np.mean((to_numpy(aq(hswish)) - hswish) ** 2)  # noqa: E731
        self.assertLess(error(lopsided), 0.5 * error(symmetric))
        # A tensor symmetric around 0 keeps the symmetric grid.
        balanced = ActivationQuantizer(bits=4, symmetry="auto")
        balanced.initialize(pre)
        self.assertIsNone(balanced.zero_point)
        self.assertEqual(balanced.integer_range, (-8, 7))

    def test_round_trip_and_bad_arguments(self):
        aq = ActivationQuantizer(bits=3, symmetry="asymmetric")
        aq.initialize(np.linspace(-0.2, 3, 50, dtype="float32"))
        clone = ActivationQuantizer.from_config(aq.get_config())
        self.assertEqual(clone.integer_range, aq.integer_range)
        with self.assertRaisesRegex(ValueError, "symmetry='lopsided'"):
            ActivationQuantizer(symmetry="lopsided")
        with self.assertRaisesRegex(ValueError, "zero_point=16"):
            ActivationQuantizer(bits=4, zero_point=16)
        with self.assertRaisesRegex(ValueError, "activation_symmetry='x'"):
            ks.QuantConfig(activation_symmetry="x")

    def test_fixed_step_is_kept(self):
        aq = ActivationQuantizer(bits=8, signed=False, fixed_step=1 / 256)
        aq.initialize(np.linspace(0, 0.3, 10, dtype="float32"))
        self.assertEqual(float(to_numpy(aq.step)), 1 / 256)
        self.assertFalse(aq.trainable)


class PhoneNetworkExportTest(TestCase):
    @parameterized.named_parameters(("layers", False), ("keras_ops", True))
    def test_se_hard_swish_file_computes_the_keras_model(self, ops_graph):
        model = se_hardswish_net(ops_graph=ops_graph)
        x = images(64)
        qmodel = ks.quantize_model(model, ks.QuantConfig(4, 4), calibration_data=x)
        kinds = {type(layer).__name__ for layer in qmodel.layers}
        self.assertNotIn("Normalization", kinds)  # a Rescaling: one op
        self.assertFloatTwin(qmodel, model, x, atol=1e-4, rtol=1e-4)
        ks.set_mode(qmodel, "hard")
        path = os.path.join(self.temp_dir(), "se.tflite")
        ks.export_tflite(qmodel, path, representative_data=x)
        agreement = ks.verify_tflite(path, qmodel, images(64, seed=1))
        self.assertEqual(agreement.top1_agreement, 1.0)
        self.assertLessEqual(agreement.max_error_steps, 1.0)
        self.assertEqual(agreement.values_within_step, 1.0)
        self.assertEqual(agreement.partitions, 1)
        self.assertEqual(agreement.ops_outside_delegate, ())

    def test_a_diverging_file_is_an_error_naming_the_grid(self):
        model = se_hardswish_net()
        x = images(32)
        qmodel = ks.quantize_model(model, ks.QuantConfig(4, 4), calibration_data=x)
        path = os.path.join(self.temp_dir(), "se.tflite")
        ks.export_tflite(qmodel, path, representative_data=x)
        # The model changes after the file was written: its classifier's
        # output channels are permuted, so the file is wrong now.
        head = ks.layers.weight_layers(qmodel)[-1]
        for variable in (head.weight_base, head.rounding_logits, head.weight_step):
            variable.assign(np.roll(to_numpy(variable), 1, axis=-1))
        head.bias.assign(np.roll(to_numpy(head.bias), 1))
        ks.layers.reset_compiled_functions(qmodel)
        from keras_sagdq.export.tflite import check_agreement

        with self.assertRaisesRegex(
            RuntimeError,
            "grid after 'dense.*computes this part of the model differently",
        ):
            check_agreement(path, qmodel, x, 0.99)
        self.assertEqual(check_agreement(path, qmodel, x, None), path)


class ActivationTableTest(TestCase):
    def test_report_says_how_each_activation_runs(self):
        qmodel = ks.quantize_model(se_hardswish_net(), ks.QuantConfig(4, 4))
        notes = " ".join(row.reason for row in qmodel.quantization_report)
        self.assertIn("hard_sigmoid as an op of its own", notes)
        self.assertIn("silu as an op of its own", notes)
        self.assertIn("three int8 ops", notes)
        fixed = [
            q.fixed_step
            for q in qmodel.layers
            if isinstance(q, ActivationQuantizer) and q.fixed_step
        ]
        self.assertEqual(fixed, [1 / 256])  # the swish's sigmoid

    def test_fusable(self):
        self.assertTrue(activations.is_fusable(keras.activations.relu6))
        self.assertFalse(activations.is_fusable(keras.activations.hard_sigmoid))
