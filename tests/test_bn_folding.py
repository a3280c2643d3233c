import keras
import numpy as np
from absl.testing import parameterized
from keras import layers

from keras_sagdq.graph.bn_folding import fold_batchnorm
from tests.test_case import TestCase
from tests.test_case import randomize_batchnorms


class FoldBatchNormTest(TestCase):
    @parameterized.named_parameters(
        ("conv_no_bias", layers.Conv2D(6, 3, use_bias=False), (9, 9, 4)),
        ("conv_bias", layers.Conv2D(6, 3, strides=2), (9, 9, 4)),
        (
            "depthwise_multiplier",
            layers.DepthwiseConv2D(3, depth_multiplier=3),
            (9, 9, 4),
        ),
        ("dense", layers.Dense(5), (7,)),
    )
    def test_folded_layer_matches_layer_then_bn(self, layer, shape):
        inputs = keras.Input(shape)
        bn = layers.BatchNormalization(epsilon=1e-3)
        model = randomize_batchnorms(keras.Model(inputs, bn(layer(inputs))))
        kernel, bias = fold_batchnorm(layer, bn)
        config = layer.get_config()
        config.update(use_bias=True, name="folded")
        folded = type(layer).from_config(config)
        folded.build((None, *shape))
        folded.set_weights([kernel, bias])
        x = np.random.default_rng(0).normal(0, 1, (2, *shape)).astype("float32")
        self.assertAllClose(folded(x), model(x, training=False), atol=1e-5)

    def test_size_mismatch(self):
        conv = layers.Conv2D(4, 1)
        conv.build((None, 5, 5, 2))
        bn = layers.BatchNormalization()
        bn.build((None, 5, 5, 3))
        with self.assertRaisesRegex(ValueError, "normalizes"):
            fold_batchnorm(conv, bn)
