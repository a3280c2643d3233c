import importlib

import keras_sagdq as ks
from tests.test_case import TestCase


class PublicApiTest(TestCase):
    def test_everything_in_all_exists(self):
        self.assertEqual(ks.__all__, sorted(ks.__all__))
        for name in ks.__all__:
            self.assertTrue(hasattr(ks, name), name)

    def test_the_public_names_are_a_deliberate_list(self):
        # Adding or removing a public name is an API change: update this list
        # and docs/api.md together.
        self.assertEqual(
            set(ks.__all__),
            {
                "LayerReport",
                "QuantConfig",
                "QuantizationReport",
                "QuantizationResult",
                "ReconstructionConfig",
                "SynthesisConfig",
                "SynthesisWarning",
                "__version__",
                "align_biases",
                "calibrate_activations",
                "datasets",
                "export",
                "export_tflite",
                "input_range",
                "layers",
                "models",
                "output_fidelity",
                "quantization_off",
                "quantize",
                "quantize_model",
                "quantizers",
                "reconstruct",
                "run_tflite",
                "save_image_grid",
                "set_mode",
                "synthesis",
                "synthesize",
                "verify_tflite",
            },
        )

    def test_public_callables_document_themselves_with_an_example(self):
        for name in ks.__all__:
            value = getattr(ks, name)
            if not callable(value) or isinstance(value, type(ks)):
                continue
            doc = value.__doc__ or ""
            self.assertIn("Example", doc, name)
            self.assertGreater(len(doc.strip().splitlines()[0]), 10, name)

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
            "SharedGrid",
        ):
            self.assertTrue(hasattr(ks.layers, name), name)

    def test_version_in_one_place(self):
        version = importlib.import_module("keras_sagdq.version").__version__
        self.assertEqual(ks.__version__, version)
