import json
import os
import subprocess
import sys

import numpy as np

from tests.test_case import TestCase


def _run(args, backend="tensorflow"):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "keras_sagdq.export.convert", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


class ConvertEntryTest(TestCase):
    """The child-process entry of `export_tflite` fails clearly, never silently."""

    def test_wrong_argument_count(self):
        result = _run(["only_one"])
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("Usage", result.stderr)

    def test_refuses_another_backend(self):
        result = _run(["m", "o", "i", "p"], backend="torch")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("KERAS_BACKEND=tensorflow", result.stderr)

    def test_corrupt_model_file(self):
        folder = self.temp_dir()
        model = os.path.join(folder, "model.keras")
        with open(model, "wb") as f:
            f.write(b"not a zip file")
        images = os.path.join(folder, "images.npy")
        np.save(images, np.zeros((2, 4, 4, 1), np.float32))
        options = os.path.join(folder, "options.json")
        with open(options, "w") as f:
            json.dump({}, f)
        out = os.path.join(folder, "out.tflite")
        result = _run([model, out, images, options])
        self.assertNotEqual(result.returncode, 0)
        self.assertFalse(os.path.exists(out))
