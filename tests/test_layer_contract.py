"""The contract every Keras layer keeps, checked for each quantizer layer.

Modeled on what Keras' own `run_layer_test` checks: the config round-trips,
the layer serializes and deserializes by name, output shapes match
`compute_output_shape`, the trainable variables are the quantizer's, and a
model holding the layer saves to `.keras` and loads in safe mode with the
same outputs.
"""

import os

import keras
import numpy as np
from absl.testing import parameterized

from keras_sagdq.layers import ActivationQuantizer
from keras_sagdq.layers import QuantConv2D
from keras_sagdq.layers import QuantDense
from keras_sagdq.layers import QuantDepthwiseConv2D
from tests.test_case import TestCase

WEIGHT_TRAINABLE = {"weight_step", "rounding_logits"}

CASES = (
    (
        "conv2d",
        QuantConv2D,
        dict(filters=4, kernel_size=3, weight_bits=3),
        (2, 7, 7, 3),
    ),
    (
        "depthwise",
        QuantDepthwiseConv2D,
        dict(kernel_size=3, depth_multiplier=2, weight_bits=4, padding="same"),
        (2, 7, 7, 3),
    ),
    ("dense", QuantDense, dict(units=5, weight_bits=2, weight_symmetric=True), (2, 6)),
    ("activation", ActivationQuantizer, dict(bits=3, qdrop_probability=0.25), (2, 6)),
)


def _prepare(layer, x):
    if isinstance(layer, ActivationQuantizer):
        layer.initialize(x)
    else:
        layer.initialize_weight_quantizer()
    layer.mode = "hard"


class LayerContractTest(TestCase):
    @parameterized.named_parameters(*CASES)
    def test_config_round_trip(self, cls, kwargs, shape):
        layer = cls(**kwargs)
        clone = cls.from_config(layer.get_config())
        self.assertEqual(clone.get_config(), layer.get_config())
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(layer)
        )
        self.assertIsInstance(restored, cls)
        self.assertEqual(restored.get_config(), layer.get_config())

    @parameterized.named_parameters(*CASES)
    def test_output_shape_and_trainable_variables(self, cls, kwargs, shape):
        layer = cls(**kwargs)
        x = np.random.default_rng(0).normal(size=shape).astype("float32")
        layer.build(shape)
        _prepare(layer, x)
        y = layer(x)
        self.assertEqual(tuple(y.shape), tuple(layer.compute_output_shape(shape)))
        names = {v.path.split("/")[-1] for v in layer.trainable_variables}
        expected = {"step"} if cls is ActivationQuantizer else WEIGHT_TRAINABLE
        self.assertEqual(names, expected)

    @parameterized.named_parameters(*CASES)
    def test_saved_model_loads_in_safe_mode(self, cls, kwargs, shape):
        layer = cls(**kwargs)
        x = np.random.default_rng(0).normal(size=shape).astype("float32")
        inputs = keras.Input(shape[1:])
        model = keras.Model(inputs, layer(inputs))
        _prepare(layer, x)
        path = os.path.join(self.temp_dir(), "m.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        self.assertIsInstance(loaded.layers[-1], cls)
        self.assertEqual(loaded.layers[-1].get_config(), layer.get_config())
        self.assertAllClose(loaded(x), model(x), atol=0)
