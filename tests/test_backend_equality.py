"""Both backends compute the tier's methods alike (stored TensorFlow values).

The heavy accuracy-tier cases run on TensorFlow only (tests/
test_accuracy_tier.py); these runs are what covers PyTorch there. On
TensorFlow they also catch a change of the numerics that was not meant:
remake the fixture only after checking the change
(`KERAS_BACKEND=tensorflow python -m tests.backend_equality`).
"""

import unittest

import numpy as np

from tests import accuracy_tier as tier
from tests import backend_equality as equality
from tests.test_case import TestCase


@unittest.skipUnless(tier.has_data(), "Fashion-MNIST not installed")
class BackendEqualityTest(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.settings, cls.stored = equality.load_fixture()

    def test_reconstruction_learns_what_tensorflow_learned(self):
        stored = self.stored["reconstruction"]
        now = equality.reconstruction_run()
        self.assertEqual(sorted(now), sorted(stored))
        for name in sorted(stored):
            if name.endswith("integer_kernel"):
                # A rounding logit within float error of its threshold may
                # fall either way; nearly all must agree.
                same = np.mean(now[name] == stored[name])
                self.assertGreaterEqual(same, 0.999, name)
                self.assertLessEqual(np.max(np.abs(now[name] - stored[name])), 1, name)
            elif name != "logits":
                np.testing.assert_allclose(
                    now[name], stored[name], rtol=1e-4, atol=1e-7, err_msg=name
                )
        logits, reference = now["logits"], stored["logits"]
        scale = np.abs(reference).max()
        np.testing.assert_allclose(logits, reference, atol=0.02 * scale)
        np.testing.assert_array_equal(logits.argmax(-1), reference.argmax(-1))

    def test_genie_loss_and_gradients_are_tensorflow_s(self):
        stored = self.stored["synthesis"]
        start = {
            name.removeprefix("start/"): value
            for name, value in stored.items()
            if name.startswith("start/")
        }
        now = equality.synthesis_run(initial_state=start)
        self.assertEqual(sorted(now), sorted(stored))
        reference = stored["images"]
        np.testing.assert_allclose(
            now["images"], reference, atol=1e-5 * reference.std()
        )
        np.testing.assert_allclose(now["loss"], stored["loss"], rtol=1e-5)
        # Measured on PyTorch: at most 6e-4 of an array's largest gradient
        # (a ReLU6 input within float error of a kink); a wrong gradient is
        # off by its own size. A bias in front of a BatchNorm has gradient 0
        # in exact arithmetic: float noise, held to the floor.
        names = sorted(n for n in stored if n.startswith("gradient/"))
        floor = 1e-4 * max(np.abs(stored[n]).max() for n in names)
        for name in names:
            atol = max(2e-3 * np.abs(stored[name]).max(), floor)
            np.testing.assert_allclose(now[name], stored[name], atol=atol, err_msg=name)

    def test_fixture_is_tagged_with_what_it_was_made_from(self):
        made_with = self.settings["made_with"]
        self.assertEqual(made_with["backend"], "tensorflow")
        self.assertFalse(made_with["keras_sagdq_dirty"])
        self.assertEqual(
            self.settings["reconstruction_config"]["qdrop_probability"], 0.0
        )
