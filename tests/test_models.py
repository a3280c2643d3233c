"""The shipped reference models load from the package, the same on both backends."""

import numpy as np
from absl.testing import parameterized

from keras_sagdq.models import REFERENCE_MODELS
from keras_sagdq.models import load_reference_model
from keras_sagdq.models import reference_model_path
from tests.test_case import TestCase
from tests.test_case import predict_in_subprocess
from tests.test_case import to_numpy


class ReferenceModelsTest(TestCase):
    @parameterized.parameters(*REFERENCE_MODELS)
    def test_same_predictions_on_both_backends(self, name):
        model = load_reference_model(name)
        self.assertEqual(model.input_shape, (None, 28, 28, 1))
        self.assertEqual(model.output_shape, (None, 10))
        images = (
            np.random.default_rng(0).uniform(0, 1, (16, 28, 28, 1)).astype("float32")
        )
        logits = to_numpy(model(images))
        for backend in ("tensorflow", "torch"):
            other = predict_in_subprocess(
                reference_model_path(name), images, backend, self.temp_dir()
            )
            np.testing.assert_allclose(other, logits, atol=1e-4, err_msg=backend)
            np.testing.assert_array_equal(other.argmax(-1), logits.argmax(-1))

    def test_unknown_name(self):
        with self.assertRaisesRegex(ValueError, "Received: name='resnet18'"):
            load_reference_model("resnet18")
