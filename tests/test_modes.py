import keras
from keras import layers

import keras_sagdq as ks
from keras_sagdq.layers import activation_quantizers
from keras_sagdq.layers import quantization_off
from keras_sagdq.layers import set_layer_modes
from keras_sagdq.layers import weight_layers
from tests.test_case import TestCase
from tests.test_case import random_images
from tests.test_case import tiny_resnet


def _modes(qmodel):
    return [layer.mode for layer in weight_layers(qmodel)], {
        q.mode for q in activation_quantizers(qmodel)
    }


def _flip_model():
    inputs = keras.Input((8, 8, 1))
    x = layers.RandomFlip(name="flip")(inputs)
    x = layers.Conv2D(2, 3, name="conv")(x)
    x = layers.Flatten()(x)
    return keras.Model(inputs, layers.Dense(3, name="head")(x))


class ModesTest(TestCase):
    def test_set_mode(self):
        qmodel = ks.quantize_model(tiny_resnet(), calibration_data=random_images(4))
        ks.set_mode(qmodel, "soft")
        weights, activations = _modes(qmodel)
        self.assertEqual(set(weights), {"soft"})
        self.assertEqual(activations, {"hard"})
        ks.set_mode(qmodel, "hard", activations=False)
        self.assertEqual(_modes(qmodel), (["hard"] * len(weights), {"float"}))
        ks.set_mode(qmodel, "float")
        self.assertEqual(_modes(qmodel), (["float"] * len(weights), {"float"}))

    def test_quantization_off_restores_modes_after_an_error(self):
        qmodel = ks.quantize_model(tiny_resnet(), calibration_data=random_images(4))
        ks.set_mode(qmodel, "soft")
        before = _modes(qmodel)
        with self.assertRaises(RuntimeError):
            with quantization_off(qmodel):
                self.assertEqual(_modes(qmodel)[1], {"float"})
                raise RuntimeError("inside")
        self.assertEqual(_modes(qmodel), before)

    def test_other_layers_with_a_mode_are_left_alone(self):
        qmodel = ks.quantize_model(_flip_model())
        flip = [
            layer for layer in qmodel.layers if isinstance(layer, layers.RandomFlip)
        ][0]
        mode = flip.mode
        ks.set_mode(qmodel, "float")
        with quantization_off(qmodel):
            pass
        self.assertEqual(flip.mode, mode)

    def test_set_mode_resets_the_compiled_predict_function(self):
        qmodel = ks.quantize_model(tiny_resnet(), calibration_data=random_images(4))
        x = random_images(4)
        hard = qmodel.predict(x, verbose=0)
        ks.set_mode(qmodel, "float")
        self.assertIsNone(qmodel.predict_function)
        float_outputs = qmodel.predict(x, verbose=0)
        self.assertGreater(abs(hard - float_outputs).max(), 1e-4)

    def test_unknown_mode_raises(self):
        with self.assertRaisesRegex(ValueError, "fuzzy"):
            set_layer_modes([], "fuzzy")
