"""`keras.applications` networks (random weights, offline) through the whole path.

quantize -> calibrate -> export -> verify. With random weights the logits are
near ties, so the check is the file's outputs against the Keras model's, in
output steps, not accuracy. MobileNetV3Small runs by default (SE, hard-swish,
keras.ops nodes, a Rescaling); the other families are marked slow.
"""

import os

import keras
import numpy as np
import pytest
from absl.testing import parameterized

import keras_sagdq as ks
from tests.test_case import TestCase

# (builder, input size, keyword arguments)
_FAMILIES = {
    "MobileNetV3Small": (32, {"include_preprocessing": True, "minimalistic": False}),
    "MobileNetV3Large": (32, {"include_preprocessing": True}),
    "EfficientNetB0": (32, {}),
    "EfficientNetV2B0": (32, {"include_preprocessing": True}),
    "Xception": (71, {}),
    "ResNet50V2": (32, {}),
    "DenseNet121": (32, {}),
}


def _application(name):
    size, kwargs = _FAMILIES[name]
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(
        input_shape=(size, size, 3), weights=None, classes=10, **kwargs
    )
    images = np.random.default_rng(0).uniform(0, 255, (16, size, size, 3))
    return model, images.astype("float32")


class _ApplicationCheck(TestCase):
    def _check(self, name):
        model, images = _application(name)
        qmodel = ks.quantize_model(model, ks.QuantConfig(8, 8), calibration_data=images)
        self.assertEqual(qmodel.quantization_report.float_layers, [])
        path = os.path.join(self.temp_dir(), f"{name}.tflite")
        ks.export_tflite(qmodel, path, representative_data=images)
        agreement = ks.verify_tflite(path, qmodel, images)
        # Near-tie logits: the class up to ties within one output step.
        self.assertEqual(agreement.top1_agreement_within_step, 1.0)
        self.assertLessEqual(agreement.mean_error_steps, 1.0)
        return agreement


class ApplicationsTest(_ApplicationCheck):
    def test_mobilenet_v3_small(self):
        self._check("MobileNetV3Small")


# A class-level mark: absl's parameterized copies of a method lose their own.
@pytest.mark.slow
class SlowApplicationsTest(_ApplicationCheck):
    @parameterized.parameters(*[n for n in _FAMILIES if n != "MobileNetV3Small"])
    def test_family(self, name):
        self._check(name)
