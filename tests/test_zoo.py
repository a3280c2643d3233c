import os
import unittest

import numpy as np

from keras_sagdq.datasets import fashion_mnist
from keras_sagdq.models import load_shipped_model
from keras_sagdq.models import shipped_model_input
from keras_sagdq.models import zoo
from tests.test_case import TestCase

_HAS_DATA = os.path.isdir(
    os.environ.get("KERAS_SAGDQ_FASHION_MNIST", fashion_mnist.DEFAULT_PATH)
)


class ZooTest(TestCase):
    def test_input_conventions(self):
        x = np.array([0.0, 0.5, 1.0], np.float32)
        self.assertAllClose(shipped_model_input(x, "vgg_raw_pixels"), [0, 127.5, 255])
        self.assertAllClose(shipped_model_input(x, "cnn_momentum099"), [-1, 0, 1])
        self.assertAllClose(
            shipped_model_input(x, "resnet_standardized"),
            (x - 0.286) / 0.353,
            atol=1e-6,
        )
        self.assertAllClose(shipped_model_input(x, "resnet20_fashion_mnist"), x)
        with self.assertRaisesRegex(ValueError, "name='nope'"):
            shipped_model_input(x, "nope")
        with self.assertRaisesRegex(ValueError, "name='nope'"):
            zoo.load_zoo_model("nope")

    def test_builders_match_the_shipped_files(self):
        for name, entry in zoo.ZOO.items():
            with self.subTest(name):
                shipped = load_shipped_model(name)
                built = entry.builder(momentum=entry.bn_momentum)
                self.assertEqual(
                    [w.shape for w in shipped.weights], [w.shape for w in built.weights]
                )

    @unittest.skipUnless(_HAS_DATA, "Fashion-MNIST not installed")
    def test_shipped_zoo_models_classify_real_images(self):
        x_test, y_test = fashion_mnist.load_fashion_mnist("test")
        for name in zoo.ZOO_MODELS:
            with self.subTest(name):
                model = load_shipped_model(name)
                logits = model.predict(
                    shipped_model_input(x_test[:500], name), verbose=0
                )
                # Trained to 87-92 % on the full test split (docs/benchmarks.md).
                self.assertGreater(np.mean(np.argmax(logits, -1) == y_test[:500]), 0.83)
