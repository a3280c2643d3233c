import numpy as np
from keras import layers

import keras_sagdq as ks
from keras_sagdq import private_api
from keras_sagdq.layers import activation_quantizers
from tests.test_case import TestCase
from tests.test_case import random_images
from tests.test_case import tiny_resnet
from tests.test_case import to_numpy


class CalibrateActivationsTest(TestCase):
    def setUp(self):
        super().setUp()
        self.model = tiny_resnet()
        self.images = random_images(16)

    def test_minmax_covers_float_range(self):
        qmodel = ks.quantize_model(self.model, ks.QuantConfig(4, 4))
        ks.calibrate_activations(qmodel, self.images, method="minmax", batch_size=5)
        by_name = {layer.name: layer for layer in qmodel.layers}
        head = by_name["head"]
        # The head's input is the pooled features; with quantizers off they are
        # the float features, all non-negative after the ReLU.
        ks.set_mode(qmodel, "float")
        import keras

        features = keras.Model(qmodel.input, head.input)(self.images)
        quantizer = private_api.producing_layer(head.input)
        if isinstance(quantizer, keras.layers.Dropout):
            # The grid goes before a Dropout (it keeps its input's grid).
            quantizer = private_api.producing_layer(quantizer.input)
        self.assertFalse(quantizer.signed)
        step = float(to_numpy(quantizer.step))
        self.assertAlmostEqual(step * 255, float(to_numpy(features).max()), places=4)

    def test_all_initialized_and_modes_restored(self):
        qmodel = ks.quantize_model(self.model)
        quantizers = activation_quantizers(qmodel)
        self.assertFalse(any(q.initialized for q in quantizers))
        ks.calibrate_activations(qmodel, self.images)
        self.assertTrue(all(q.initialized for q in quantizers))
        self.assertEqual(
            {layer.mode for layer in qmodel.layers if hasattr(layer, "mode")}, {"hard"}
        )
        # With activation quantization on, outputs move off the weight-only model.
        weight_only = to_numpy(qmodel(self.images))
        ks.set_mode(qmodel, "hard", activations=False)
        self.assertFalse(np.allclose(to_numpy(qmodel(self.images)), weight_only))

    def test_signed_inputs(self):
        import keras

        inputs = keras.Input((4,))
        x = layers.Dense(8, name="d1")(inputs)  # no ReLU: signed activations
        model = keras.Model(inputs, layers.Dense(2, name="d2")(x))
        data = np.random.default_rng(0).normal(0, 1, (32, 4)).astype("float32")
        # Only the quantizer of d2's input (no 8-bit grids on the other tensors).
        config = ks.QuantConfig(int8_tensors=False)
        qmodel = ks.quantize_model(model, config, calibration_data=data)
        (quantizer,) = activation_quantizers(qmodel)
        self.assertTrue(quantizer.signed)
        self.assertTrue(quantizer.initialized)

    def test_errors(self):
        qmodel = ks.quantize_model(self.model)
        with self.assertRaisesRegex(ValueError, "method='mse'"):
            ks.calibrate_activations(qmodel, self.images, method="mse")
        with self.assertRaisesRegex(ValueError, "empty"):
            ks.calibrate_activations(qmodel, self.images[:0])
