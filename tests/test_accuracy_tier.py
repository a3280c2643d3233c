"""Accuracy tier: the methods on shipped models and real test images.

Fails when a method breaks in a way unit tests on tiny random models cannot
see: reconstruction that does not beat round-to-nearest, learned rounding
that does no better than nearest rounding, synthetic images no better than
noise, a `.tflite` file that does not compute the Keras model. The
experiments are in `tests/accuracy_tier.py`; the values behind each margin
are printed by `benchmarks/accuracy_tier.py` (docs/benchmarks.md, "Accuracy
tier"). Needs Fashion-MNIST (scripts/run_tests.sh installs it).
"""

import tempfile
import unittest

from tests import accuracy_tier as tier
from tests.test_case import TestCase

# Measured on 1000 test images (TensorFlow, then PyTorch): reconstruction
# minus round-to-nearest +1.3 / +0.8 / +27.9 pt at W4A4 / W3A3 / W2A4.
RECONSTRUCTION_MARGIN = {"W4A4": 0.003, "W3A3": 0.0, "W2A4": 0.15}
# W2A4 after reconstruction: 89.3 % with learned rounding, 82.4 % with the
# rounding frozen at nearest (learned steps only).
LEARNED_ROUNDING_W2A4_FLOOR = 0.86
# GENIE against Gaussian noise under the same W3A3 reconstruction (30 steps per
# block), TensorFlow, seeds 0-3 (`benchmarks/accuracy_tier.py --genie_seeds`):
# MobileNetV2 GENIE 69-83 %, noise 25-29 %: the detector of synthesis no better
# than noise. mobilenet_unit_range: GENIE 70-76 %, but noise lands near 40 % or
# near 64 % with float rounding (63.2 % at seed 0 since e4c928f), and a rerun of
# one seed moves GENIE by up to 3 pt (MobileNetV2: 10 pt), so that model is only
# asked to beat noise; its inferred input space has its own test below.
GENIE_MARGIN = {"mobilenet_v2_fashion_mnist": 0.15, "mobilenet_unit_range": 0.0}


@unittest.skipUnless(tier.has_data(), "Fashion-MNIST not installed")
class AccuracyTierTest(TestCase):
    def test_reconstruction_beats_round_to_nearest_on_real_images(self):
        top1 = tier.real_reconstruction_vs_rtn()
        model = tier.REAL_MODEL
        for bits, margin in RECONSTRUCTION_MARGIN.items():
            rtn = top1[f"{model} {bits} rtn real"]
            reconstructed = top1[f"{model} {bits} reconstruct real"]
            self.assertGreater(reconstructed, rtn + margin, bits)
        self.assertGreater(
            top1[f"{model} W2A4 reconstruct real"], LEARNED_ROUNDING_W2A4_FLOOR
        )

    def test_genie_beats_gaussian_noise_under_the_same_reconstruction(self):
        for name in tier.GENIE_MODELS:
            top1 = tier.genie_vs_gaussian(name)
            genie = top1[f"{name} W3A3 reconstruct genie"]
            noise = top1[f"{name} W3A3 reconstruct gaussian"]
            self.assertGreater(genie, noise + GENIE_MARGIN[name], name)

    def test_input_space_found_on_a_model_without_normalization_layer(self):
        # mobilenet_unit_range takes [0, 1] pixels and declares nothing.
        name = tier.GENIE_MODELS[1]
        images = tier.genie_models(name)["images"]
        # The training pixels' mean and std are 0.286 and 0.353.
        self.assertBetween(float(images.mean()), 0.236, 0.336)
        self.assertBetween(float(images.std()), 0.30, 0.41)
        # Measured (TensorFlow): FP 92.9 %, GENIE 90.3 %, noise 53.6 %.
        top1 = tier.calibration_only_w4a4(name)
        genie = top1[f"{name} W4A4 calibrate genie"]
        self.assertGreater(genie, top1[f"{name} FP"] - 0.06)
        self.assertGreater(
            genie, top1[f"{name} W4A4 calibrate standardized noise"] + 0.15
        )

    # Failed before issue 14's fixes (per-image agreement 98.0 / 97.4 % for
    # ResNet-20 W4A4, 91.9 / 87.6 % for MobileNetV2 W3A3 with signed grids);
    # passes since int8_tensors is the default (b8e7f4a).
    def test_tflite_file_computes_the_keras_model(self):
        with tempfile.TemporaryDirectory() as folder:
            results = tier.tflite_agreements(folder)
        for key, result in results.items():
            self.assertGreaterEqual(result["agreement"], 0.99, key)
            self.assertLessEqual(
                abs(result["file_top1"] - result["keras_top1"]), 0.003, key
            )
