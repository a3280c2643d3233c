"""Accuracy tier: the methods on shipped models and real test images.

Fails when a method breaks in a way unit tests on tiny random models cannot
see: reconstruction that does not beat round-to-nearest, learned rounding
that does no better than nearest rounding, synthetic images no better than
noise, a `.tflite` file that does not compute the Keras model. The
experiments are in `tests/accuracy_tier.py`; the values behind each margin
are printed by `benchmarks/accuracy_tier.py` (docs/benchmarks.md, "Accuracy
tier"); `benchmarks/sabotage_tier.py` breaks each method and shows the test
that fails. Needs Fashion-MNIST (scripts/run_tests.sh installs it).

Each experiment runs on one backend: reconstruction and export on
TensorFlow (the faster backend here), the fresh synthesis and the
calibration on stored images on PyTorch. The backends are held to
computing the same calibration, reconstruction steps and GENIE gradients
(tests/test_backend_equality.py), which costs seconds instead of minutes.
"""

import json
import os
import shutil
import tempfile
import unittest
import unittest.mock

import keras

from tests import accuracy_tier as tier
from tests.test_case import TestCase

tensorflow_only = unittest.skipUnless(
    keras.backend.backend() == "tensorflow",
    "heavy tier case: run on TensorFlow; tests/test_backend_equality.py holds "
    "PyTorch to the same numbers",
)
# PyTorch repeats a GENIE run bit for bit (TensorFlow does not at batch 64),
# and the two backends' test runs share CI's cores: the fresh synthesis
# runs there, the reconstruction cases on TensorFlow.
torch_only = unittest.skipUnless(
    keras.backend.backend() == "torch",
    "fresh-synthesis tier case: run on PyTorch; tests/test_backend_equality.py "
    "holds TensorFlow to the same GENIE gradients",
)

# Reconstruction minus round-to-nearest on 1000 test images, TensorFlow,
# b337d83 (`benchmarks/accuracy_tier.py`, docs/benchmarks.md "Accuracy
# tier"): 91.7 -> 93.4 % at W4A4, 61.2 -> 88.8 % at W2A4.
RECONSTRUCTION_MARGIN = {"W4A4": 0.005, "W2A4": 0.15}
# W2A4 after reconstruction: 88.8 % with learned rounding, about 82 % with
# the rounding frozen at nearest (`benchmarks/sabotage_tier.py rounding`).
LEARNED_ROUNDING_W2A4_FLOOR = 0.86
# MobileNetV2 W3A3, 30 reconstruction steps per block, TensorFlow: GENIE
# 88.1 %, Gaussian noise in the same input space 23.5 % on the stored
# images (b337d83); seeds 1-3 synthesized afresh (a5916a5, `--genie_seeds`):
# 87.9 / 23.9, 82.6 / 25.6, 88.0 / 25.7. Issue 11's worst seed was 68.6 /
# 27.0: the margin stays below that 41.6-point gap.
GENIE_MARGIN = 0.3


@unittest.skipUnless(tier.has_data(), "Fashion-MNIST not installed")
class AccuracyTierTest(TestCase):
    @tensorflow_only
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

    @tensorflow_only
    def test_genie_beats_gaussian_noise_under_the_same_reconstruction(self):
        name = tier.GENIE_MODELS[0]
        top1 = tier.genie_vs_gaussian(name)
        genie = top1[f"{name} W3A3 reconstruct genie"]
        noise = top1[f"{name} W3A3 reconstruct gaussian"]
        self.assertGreater(genie, noise + GENIE_MARGIN)

    @torch_only
    def test_fresh_genie_matches_batchnorm_statistics_in_the_inferred_space(self):
        # The stored images cannot show that synthesis still works: this
        # run does. mobilenet_unit_range takes [0, 1] pixels and declares
        # nothing, so its input space is inferred first.
        fresh = tier.fresh_genie()
        images = fresh["images"]
        # The training pixels' mean and std are 0.286 and 0.353.
        self.assertBetween(float(images.mean()), 0.236, 0.336)
        self.assertBetween(float(images.std()), 0.30, 0.41)
        # Measured (`benchmarks/accuracy_tier.py`): GENIE 0.011, Gaussian
        # noise in the same space 0.36 (PyTorch, 5585d11); 0.012 and 0.35 on
        # TensorFlow (b337d83).
        self.assertLess(fresh["genie bn_mismatch"], 0.05)
        self.assertLess(
            fresh["genie bn_mismatch"], 0.25 * fresh["gaussian bn_mismatch"]
        )

    @torch_only
    def test_stored_genie_images_calibrate_far_better_than_standardized_noise(self):
        # Measured (PyTorch 5585d11, TensorFlow b337d83 alike): FP 92.9 %,
        # GENIE 90.3 %, noise 54.8 %.
        name = tier.GENIE_MODELS[1]
        top1 = tier.calibration_only_w4a4(name)
        genie = top1[f"{name} W4A4 calibrate genie"]
        self.assertGreater(genie, top1[f"{name} FP"] - 0.06)
        self.assertGreater(
            genie, top1[f"{name} W4A4 calibrate standardized noise"] + 0.15
        )

    def test_a_stale_fixture_is_refused_with_the_field_named(self):
        name = tier.GENIE_MODELS[1]
        with tempfile.TemporaryDirectory() as folder:
            copy = os.path.join(folder, name)
            shutil.copytree(os.path.join(tier.FIXTURES, name), copy)
            settings_path = os.path.join(copy, "synthesis.json")
            with open(settings_path) as f:
                settings = json.load(f)
            settings["config"]["steps"] += 1
            with open(settings_path, "w") as f:
                json.dump(settings, f)
            with unittest.mock.patch.object(tier, "FIXTURES", folder):
                tier.stored_genie.cache_clear()
                try:
                    with self.assertRaisesRegex(ValueError, "Stale fixture.*steps"):
                        tier.stored_genie(name)
                finally:
                    tier.stored_genie.cache_clear()

    # Failed before issue 14's fixes (per-image agreement 98.0 / 97.4 % for
    # ResNet-20 W4A4, 91.9 / 87.6 % for MobileNetV2 W3A3 with signed grids);
    # passes since int8_tensors is the default (b8e7f4a).
    @tensorflow_only
    def test_tflite_file_computes_the_keras_model(self):
        with tempfile.TemporaryDirectory() as folder:
            results = tier.tflite_agreements(folder)
        for key, result in results.items():
            # Agreement on 99.7 % of the images also keeps the file's top-1
            # within 0.3 pt of the Keras model's.
            self.assertGreaterEqual(result["agreement"], 0.997, key)
            # Measured (b337d83): mean 0.033 steps (max 6) for ResNet-20,
            # whose residual additions TFLite rescales with its own rounding;
            # 0 for MobileNetV2. A grid one step off gives about 1.
            self.assertLess(result["mean_error_steps"], 0.1, key)
