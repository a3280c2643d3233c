"""Quantize a Keras application (W4A4 by default) and inspect the result.

Runs offline: the model is built with random weights (`weights=None`), so
this shows the graph rewrite, the report, calibration and saving, not
accuracy. Calibration images here are random noise for the same reason.

    KERAS_BACKEND=torch python examples/quantize_application.py --model=resnet50
"""

import os

import keras
import numpy as np
from absl import app
from absl import flags

import keras_sagdq as ks

_MODEL = flags.DEFINE_enum(
    "model", "mobilenet_v2", ["mobilenet_v2", "resnet50"], "Architecture."
)
_WEIGHT_BITS = flags.DEFINE_integer(
    "weight_bits", 4, "Weight bits of the inner layers."
)
_ACTIVATION_BITS = flags.DEFINE_integer("activation_bits", 4, "Activation bits.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 96, "Input height and width.")
_OUTPUT = flags.DEFINE_string(
    "output", "/tmp/quantized_application.keras", "Where to save."
)

_BUILDERS = {
    "mobilenet_v2": keras.applications.MobileNetV2,
    "resnet50": keras.applications.ResNet50,
}


def main(argv):
    del argv
    size = _IMAGE_SIZE.value
    model = _BUILDERS[_MODEL.value](weights=None, input_shape=(size, size, 3))
    config = ks.QuantConfig(
        weight_bits=_WEIGHT_BITS.value, activation_bits=_ACTIVATION_BITS.value
    )
    qmodel = ks.quantize_model(model, config)
    print(qmodel.quantization_report)

    images = (
        np.random.default_rng(0).uniform(-1, 1, (32, size, size, 3)).astype("float32")
    )
    ks.calibrate_activations(qmodel, images)
    ks.set_mode(qmodel, "float")
    float_out = keras.ops.convert_to_numpy(qmodel(images[:4]))
    print(
        "float mode vs original, max |diff|:",
        np.abs(float_out - keras.ops.convert_to_numpy(model(images[:4]))).max(),
    )
    ks.set_mode(qmodel, "hard")

    qmodel.save(_OUTPUT.value)
    reloaded = keras.models.load_model(_OUTPUT.value)
    diff = np.abs(
        keras.ops.convert_to_numpy(reloaded(images[:4]))
        - keras.ops.convert_to_numpy(qmodel(images[:4]))
    ).max()
    print(
        f"saved {_OUTPUT.value} ({os.path.getsize(_OUTPUT.value) / 1e6:.1f} MB); "
        f"reloaded max |diff| = {diff}"
    )


if __name__ == "__main__":
    app.run(main)
