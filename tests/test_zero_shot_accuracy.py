"""Accuracy tier: zero-shot calibration on a real model and real test images.

Runs in the default test command: it fails when input-space inference or
synthesis breaks, which unit tests on tiny random models cannot see. Needs
Fashion-MNIST (`apt-get install dataset-fashion-mnist`; scripts/run_tests.sh
installs it). Margins come from measured values (docs/synthesis.md), with
room for backend and seed noise.
"""

import os
import unittest

import numpy as np

import keras_sagdq as ks
from keras_sagdq.datasets import fashion_mnist
from keras_sagdq.models import zoo
from tests.test_case import TestCase

_HAS_DATA = os.path.isdir(
    os.environ.get("KERAS_SAGDQ_FASHION_MNIST", fashion_mnist.DEFAULT_PATH)
)


@unittest.skipUnless(
    _HAS_DATA, "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"
)
class NoNormalizationZooModelTest(TestCase):
    """`mobilenet_unit_range`: [0, 1] inputs and no normalization layer."""

    def test_genie_finds_the_input_space_and_calibrates_w4a4(self):
        model = zoo.load_zoo_model("mobilenet_unit_range")
        x_test, y_test = fashion_mnist.load_fashion_mnist("test")
        x_test, y_test = x_test[:1000], y_test[:1000]

        def top1(m):
            return float(
                np.mean(
                    np.argmax(m.predict(x_test, batch_size=500, verbose=0), -1)
                    == y_test
                )
            )

        images = ks.synthesize(
            model,
            64,
            batch_size=64,
            steps=100,
            input_space_steps=150,
            verbose=0,
            seed=0,
        )
        # The training pixels' mean and std are 0.286 and 0.353.
        self.assertBetween(float(images.mean()), 0.236, 0.336)
        self.assertBetween(float(images.std()), 0.30, 0.41)

        def w4a4_on(calibration):
            qmodel = ks.quantize_model(model, ks.QuantConfig(4, 4))
            ks.calibrate_activations(qmodel, calibration)
            return top1(qmodel)

        float_top1, genie_top1 = top1(model), w4a4_on(images)
        # Noise in a standardized space: what synthesis assumed before it
        # inferred the input space (measured: 53.6 % against 90.3 % for GENIE,
        # 76.1 % for GENIE images made in that space; float 92.9 %).
        noise = ks.synthesize(
            model, 64, method="gaussian", input_mean=0.0, input_std=1.0
        )
        self.assertGreater(genie_top1, float_top1 - 0.06)
        self.assertGreater(genie_top1, w4a4_on(noise) + 0.15)
