"""Shared helpers for the tests: tiny models and numpy conversions."""

import os
import shutil
import subprocess
import sys
import tempfile

import keras
import numpy as np
from absl.testing import parameterized
from keras import layers


class TestCase(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        keras.utils.set_random_seed(0)

    def temp_dir(self):
        # absl's create_tempdir needs parsed flags, which pytest never parses.
        path = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, path, ignore_errors=True)
        return path

    def assertFloatTwin(self, qmodel, model, x, atol=1e-5, rtol=1e-6):
        """With quantization off, `qmodel` computes what `model` computes."""
        import keras_sagdq

        keras_sagdq.set_mode(qmodel, "float")
        self.assertAllClose(qmodel(x), model(x), atol=atol, rtol=rtol)

    def assertAllClose(self, actual, expected, atol=1e-6, rtol=1e-6):
        np.testing.assert_allclose(
            to_numpy(actual), to_numpy(expected), atol=atol, rtol=rtol
        )


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def randomize_batchnorms(model, seed=0):
    """Give every BatchNorm non-trivial statistics, so folding is tested for real."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.2, n))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n))
            if layer.gamma is not None:
                layer.gamma.assign(rng.uniform(0.5, 1.5, n))
                layer.beta.assign(rng.normal(0, 0.2, n))
    return model


def tiny_resnet(input_shape=(12, 12, 3), classes=5):
    """Stem conv + one residual block with a conv shortcut + one identity block."""
    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU()(x)
    # Block 1: strided, with a 1x1 conv shortcut.
    y = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="b1_c1")(x)
    y = layers.BatchNormalization(name="b1_bn1")(y)
    y = layers.ReLU()(y)
    y = layers.Conv2D(16, 3, padding="same", use_bias=False, name="b1_c2")(y)
    y = layers.BatchNormalization(name="b1_bn2")(y)
    s = layers.Conv2D(16, 1, strides=2, use_bias=False, name="b1_short")(x)
    s = layers.BatchNormalization(name="b1_short_bn")(s)
    x = layers.ReLU()(layers.Add()([y, s]))
    # Block 2: identity shortcut, depthwise conv inside.
    y = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=1, name="b2_dw")(x)
    y = layers.BatchNormalization(name="b2_bn1")(y)
    y = layers.ReLU(6.0)(y)
    y = layers.Conv2D(16, 1, name="b2_pw")(y)
    y = layers.BatchNormalization(name="b2_bn2")(y)
    x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.1)(x)
    outputs = layers.Dense(classes, name="head")(x)
    return randomize_batchnorms(keras.Model(inputs, outputs, name="tiny_resnet"))


def random_images(n=8, shape=(12, 12, 3), seed=0, scale=255.0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 1, (n, *shape)) * scale).astype("float32")


_LOAD_AND_PREDICT = """
import sys
import numpy as np
import keras
import keras_sagdq  # registers the quantizer layers
model = keras.models.load_model(sys.argv[1], safe_mode=True)
np.save(sys.argv[3], keras.ops.convert_to_numpy(model(np.load(sys.argv[2]))))
"""


def predict_in_subprocess(model_path, images, backend, folder):
    """Load a `.keras` file in a fresh process under `backend` and predict."""
    images_path = os.path.join(folder, "images.npy")
    out_path = os.path.join(folder, f"out_{backend}.npy")
    np.save(images_path, images)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=root)
    subprocess.run(
        [sys.executable, "-c", _LOAD_AND_PREDICT, model_path, images_path, out_path],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return np.load(out_path)
