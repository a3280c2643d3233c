"""SeparableConv2D and unfoldable BatchNorms, rewritten as plain quantized layers."""

import os

import keras
import numpy as np
from keras import layers

import keras_sagdq as ks
from tests.test_case import TestCase
from tests.test_case import randomize_batchnorms


def separable_preactivation_net():
    """A separable convolution, then a pre-activation (BN -> ReLU -> conv) block."""
    inputs = keras.Input((12, 12, 3))
    x = layers.Conv2D(8, 3, padding="same")(inputs)
    x = layers.SeparableConv2D(
        16, 3, padding="same", depth_multiplier=2, use_bias=False, name="sep"
    )(x)
    x = layers.ReLU()(layers.BatchNormalization(name="bn_after_sep")(x))
    y = layers.ReLU()(layers.BatchNormalization(name="preact_bn")(x))
    y = layers.Conv2D(16, 3, padding="same")(y)
    x = layers.Add()([x, y])
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(5, name="head")(x))
    return randomize_batchnorms(model)


class LoweringTest(TestCase):
    def test_separable_and_preactivation_batchnorm_are_quantized(self):
        model = separable_preactivation_net()
        x = np.random.default_rng(0).uniform(0, 1, (32, 12, 12, 3)).astype("float32")
        qmodel = ks.quantize_model(model, ks.QuantConfig(4, 4), calibration_data=x)
        rows = {row.name: row for row in qmodel.quantization_report}
        self.assertEqual(rows["sep_depthwise"].status, "quantized")
        self.assertEqual(rows["sep_pointwise"].weight_bits, 4)
        self.assertIn("'sep_pointwise'", rows["bn_after_sep"].reason)  # folded
        self.assertEqual(rows["preact_bn_affine"].weight_bits, 8)
        self.assertIn("per-channel affine", rows["preact_bn_affine"].reason)
        self.assertFalse([r for r in qmodel.quantization_report if r.status == "float"])
        # The first and last layers keep their 8 bits: affines do not count.
        self.assertEqual(rows["head"].weight_bits, 8)
        self.assertFloatTwin(qmodel, model, x, atol=1e-5, rtol=1e-5)
        ks.set_mode(qmodel, "hard")
        path = os.path.join(self.temp_dir(), "sep.tflite")
        ks.export_tflite(qmodel, path, representative_data=x)
        agreement = ks.verify_tflite(path, qmodel, x)
        self.assertEqual(agreement.top1_agreement, 1.0)
        self.assertLessEqual(agreement.max_error_steps, 1.0)
        self.assertEqual(agreement.partitions, 1)

    def test_skip_layers_and_no_folding_keep_them_float(self):
        model = separable_preactivation_net()
        config = ks.QuantConfig(4, 4, skip_layers=("sep",), fold_batchnorm=False)
        qmodel = ks.quantize_model(model, config)
        rows = {row.name: row for row in qmodel.quantization_report}
        self.assertEqual(rows["sep"].status, "float")
        self.assertEqual(rows["preact_bn"].status, "float")

    def test_grouped_convolutions(self):
        inputs = keras.Input((8, 8, 4))
        x = layers.Conv2D(4, 3, padding="same")(inputs)
        x = layers.Conv2D(8, 3, padding="same", groups=4, name="per_channel")(x)
        x = layers.Conv2D(8, 3, padding="same", groups=2, name="two_groups")(x)
        model = keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(x)))
        x = np.random.default_rng(0).uniform(0, 1, (8, 8, 8, 4)).astype("float32")
        qmodel = ks.quantize_model(model, ks.QuantConfig(4, 4), calibration_data=x)
        rows = {row.name: row for row in qmodel.quantization_report}
        self.assertEqual(rows["per_channel_depthwise"].layer_type, "DepthwiseConv2D")
        self.assertEqual(rows["per_channel_depthwise"].status, "quantized")
        self.assertIn("groups=2", rows["two_groups"].reason)
        self.assertFloatTwin(qmodel, model, x, atol=1e-5, rtol=1e-5)
