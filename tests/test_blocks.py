import keras
from absl.testing import parameterized
from keras import layers

import keras_sagdq as ks
from keras_sagdq.graph.blocks import find_blocks
from tests.test_case import TestCase
from tests.test_case import random_images
from tests.test_case import tiny_resnet


def _block_summary(model):
    _, blocks = find_blocks(
        ks.quantize_model(model, ks.QuantConfig(weight_range="minmax"))
    )
    return [(b.name, len(b.weight_layers)) for b in blocks]


class FindBlocksTest(TestCase):
    def test_tiny_resnet(self):
        self.assertEqual(
            _block_summary(tiny_resnet()),
            # The 8-bit quantizers of `int8_tensors` put b1_c2 after b1_short.
            [("stem", 1), ("b1_c1..b1_c2", 3), ("b2_dw..b2_pw", 2), ("head", 1)],
        )

    def test_plain_chain_is_one_block_per_layer(self):
        model = keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                layers.Conv2D(4, 3, name="c1"),
                layers.ReLU(),
                layers.Conv2D(4, 3, name="c2"),
                layers.MaxPooling2D(),
                layers.Flatten(),
                layers.Dense(3, name="d"),
            ]
        )
        self.assertEqual(_block_summary(model), [("c1", 1), ("c2", 1), ("d", 1)])

    def test_blocks_compose_to_the_model(self):
        qmodel = ks.quantize_model(tiny_resnet())
        x = random_images(4)
        ks.calibrate_activations(qmodel, x)
        _, blocks = find_blocks(qmodel)
        h = x
        for block in blocks:
            h = block(h)
        self.assertAllClose(h, qmodel(x), atol=1e-6)

    @parameterized.named_parameters(
        # 16 bottleneck blocks between the stem and the classifier.
        ("resnet50", keras.applications.ResNet50, 18, {1: 2, 3: 12, 4: 4}),
        # 10 inverted residuals with a skip (3 layers); the others split per layer.
        ("mobilenet_v2", keras.applications.MobileNetV2, 33, {1: 23, 3: 10}),
    )
    def test_applications(self, builder, num_blocks, layers_per_block):
        summary = _block_summary(builder(weights=None, input_shape=(32, 32, 3)))
        self.assertEqual(len(summary), num_blocks)
        counts = {}
        for _, n in summary:
            counts[n] = counts.get(n, 0) + 1
        self.assertEqual(counts, layers_per_block)
        self.assertEqual(summary[-1][0], "predictions")

    def test_multi_output_rejected(self):
        inputs = keras.Input((4,))
        x = layers.Dense(3)(inputs)
        model = keras.Model(inputs, [layers.Dense(2)(x), layers.Dense(2)(x)])
        with self.assertRaisesRegex(ValueError, "one input and one output"):
            find_blocks(ks.quantize_model(model))
