"""A quantized model saved under one backend loads with the same outputs under both."""

import os
import subprocess
import sys

import keras
import numpy as np

import keras_sagdq as ks
from tests.test_case import TestCase
from tests.test_case import random_images
from tests.test_case import tiny_resnet
from tests.test_case import to_numpy

_LOAD_AND_PREDICT = """
import sys
import numpy as np
import keras
import keras_sagdq  # registers the layers
model = keras.models.load_model(sys.argv[1])
np.save(sys.argv[3], keras.ops.convert_to_numpy(model(np.load(sys.argv[2]))))
"""


class CrossBackendSavingTest(TestCase):
    def test_load_under_each_backend(self):
        qmodel = ks.quantize_model(tiny_resnet(), ks.QuantConfig(4, 4))
        images = random_images(8)
        ks.calibrate_activations(qmodel, images)
        expected = to_numpy(qmodel(images))
        folder = self.temp_dir()
        model_path = os.path.join(folder, "q.keras")
        images_path = os.path.join(folder, "x.npy")
        qmodel.save(model_path)
        np.save(images_path, images)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for name in ("tensorflow", "torch"):
            out_path = os.path.join(folder, f"y_{name}.npy")
            env = dict(os.environ, KERAS_BACKEND=name, PYTHONPATH=root)
            subprocess.run(
                [sys.executable, "-c", _LOAD_AND_PREDICT, model_path, images_path, out_path],
                env=env,
                check=True,
                capture_output=True,
                timeout=300,
            )
            # Same weights and graph; only float summation order may differ.
            # A flip of one activation level would show up far above 1e-4.
            np.testing.assert_allclose(
                np.load(out_path), expected, atol=1e-4, err_msg=f"saved under "
                f"{keras.backend.backend()}, loaded under {name}"
            )
