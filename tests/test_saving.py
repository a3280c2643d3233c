"""A quantized model saved under one backend loads with the same outputs under both."""

import os

import keras
import numpy as np

import keras_sagdq as ks
from tests.test_case import TestCase
from tests.test_case import predict_in_subprocess
from tests.test_case import random_images
from tests.test_case import tiny_resnet
from tests.test_case import to_numpy


class CrossBackendSavingTest(TestCase):
    def test_load_under_each_backend(self):
        qmodel = ks.quantize_model(tiny_resnet(), ks.QuantConfig(4, 4))
        images = random_images(8)
        ks.calibrate_activations(qmodel, images)
        expected = to_numpy(qmodel(images))
        folder = self.temp_dir()
        model_path = os.path.join(folder, "q.keras")
        qmodel.save(model_path)
        for name in ("tensorflow", "torch"):
            # Same weights and graph; only float summation order may differ.
            # A flip of one activation level would show up far above 1e-4.
            np.testing.assert_allclose(
                predict_in_subprocess(model_path, images, name, folder),
                expected,
                atol=1e-4,
                err_msg=f"saved under {keras.backend.backend()}, loaded under {name}",
            )
