import keras
import numpy as np
from keras import layers

from keras_sagdq.synthesis import BatchNormProbe
from tests.test_case import TestCase
from tests.test_case import random_images
from tests.test_case import tiny_resnet
from tests.test_case import to_numpy


class BatchNormProbeTest(TestCase):
    def test_collects_every_batchnorm_input(self):
        model = tiny_resnet()
        bns = [
            layer
            for layer in model.layers
            if isinstance(layer, layers.BatchNormalization)
        ]
        # Reference: a Functional model exposing each BatchNorm's input tensor.
        taps = keras.Model(model.inputs, [bn.input for bn in bns] + model.outputs)
        x = random_images(4)
        *expected, logits = taps([x])
        outputs, bn_inputs = BatchNormProbe(model)(x)
        self.assertLen(bn_inputs, len(bns))
        for actual, reference in zip(bn_inputs, expected):
            self.assertAllClose(actual, reference, atol=1e-5)
        self.assertAllClose(outputs, logits, atol=1e-5)

    def test_statistics_read_from_the_layers(self):
        model = tiny_resnet()
        probe = BatchNormProbe(model)
        bn = model.get_layer("b1_bn1")
        index = probe.names.index("b1_bn1")
        self.assertAllClose(probe.means[index], bn.moving_mean)
        self.assertAllClose(
            probe.stds[index], np.sqrt(to_numpy(bn.moving_variance) + bn.epsilon)
        )

    def test_swing_only_on_strided_convolutions_and_model_untouched(self):
        model = tiny_resnet()
        x = random_images(4)
        before = to_numpy(model(x))
        num_layers, weights = len(model.layers), [w.copy() for w in model.get_weights()]
        probe = BatchNormProbe(model, swing=True, seed=0)
        self.assertEqual(probe.num_swings, 2)  # b1_c1 and b1_short
        probe(x)
        self.assertEqual(len(model.layers), num_layers)
        for w, v in zip(weights, model.get_weights()):
            np.testing.assert_array_equal(w, v)
        self.assertAllClose(model(x), before)

    def test_keras_application(self):
        model = keras.applications.MobileNetV2(
            weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=4
        )
        bns = [
            layer
            for layer in model.layers
            if isinstance(layer, layers.BatchNormalization)
        ]
        strided = [
            layer
            for layer in model.layers
            if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D))
            and max(layer.strides) > 1
        ]
        probe = BatchNormProbe(model, swing=True, seed=0)
        self.assertEqual(probe.names, [layer.name for layer in bns])
        self.assertEqual(probe.num_swings, len(strided))
        outputs, bn_inputs = probe(random_images(2, (32, 32, 3), scale=1.0))
        self.assertEqual(tuple(outputs.shape), (2, 4))
        self.assertLen(bn_inputs, len(bns))

    def test_channels_first_batchnorm_inputs_are_channels_last(self):
        inputs = keras.Input((6, 6, 3))
        x = layers.Permute((3, 1, 2))(inputs)
        x = layers.BatchNormalization(axis=1)(x)
        model = keras.Model(inputs, layers.Flatten()(x))
        _, (a,) = BatchNormProbe(model)(random_images(2, (6, 6, 3)))
        self.assertEqual(tuple(a.shape), (2, 6, 6, 3))

    def test_errors(self):
        inputs = keras.Input((8, 8, 1))
        no_bn = keras.Model(inputs, layers.Conv2D(2, 3)(inputs))
        with self.assertRaisesRegex(ValueError, "no BatchNormalization"):
            BatchNormProbe(no_bn)

        class Subclassed(keras.Model):
            def call(self, x):
                return x

        with self.assertRaisesRegex(TypeError, "subclassed"):
            BatchNormProbe(Subclassed())
        a, b = keras.Input((4, 4, 1)), keras.Input((4, 4, 1))
        two_inputs = keras.Model(
            [a, b], layers.BatchNormalization()(layers.Add()([a, b]))
        )
        with self.assertRaisesRegex(ValueError, "one image input"):
            BatchNormProbe(two_inputs)
