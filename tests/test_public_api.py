import importlib

import keras_sagdq as ks
from tests.test_case import TestCase


class PublicApiTest(TestCase):
    def test_everything_in_all_exists(self):
        self.assertEqual(ks.__all__, sorted(ks.__all__))
        for name in ks.__all__:
            self.assertTrue(hasattr(ks, name), name)

    def test_subpackages_as_documented(self):
        self.assertTrue(callable(ks.models.load_reference_model))
        self.assertTrue(callable(ks.models.load_shipped_model))
        self.assertTrue(callable(ks.datasets.load_fashion_mnist))
        self.assertTrue(callable(ks.export.export_tflite))
        self.assertTrue(callable(ks.quantizers.fake_quantize))
        for name in (
            "ActivationQuantizer",
            "QuantConv2D",
            "QuantDense",
            "QuantDepthwiseConv2D",
        ):
            self.assertTrue(hasattr(ks.layers, name), name)

    def test_version_in_one_place(self):
        version = importlib.import_module("keras_sagdq.version").__version__
        self.assertEqual(ks.__version__, version)
