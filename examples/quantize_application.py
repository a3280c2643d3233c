"""A `keras.applications` model through the whole path: quantize, calibrate, export.

Runs offline: the model is built with random weights (`weights=None`) and a
tiny budget (a few synthesis and reconstruction steps), so this shows the
graph handling (BatchNorm folding, residual adds, depthwise convolutions,
ReLU6), the report, block reconstruction and the integer `.tflite` export on
a real architecture, not accuracy.

    python examples/quantize_application.py
    KERAS_BACKEND=torch python examples/quantize_application.py --model=resnet50
"""

import os

import keras
from absl import app
from absl import flags

import keras_sagdq as ks

_MODEL = flags.DEFINE_enum(
    "model", "mobilenet_v2", ["mobilenet_v2", "resnet50"], "Architecture."
)
_WEIGHT_BITS = flags.DEFINE_integer("weight_bits", 4, "Weight bits.")
_ACTIVATION_BITS = flags.DEFINE_integer("activation_bits", 4, "Activation bits.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 96, "Input height and width.")
_OUTPUT = flags.DEFINE_string("output", "/tmp/quantized_application", "Output folder.")

_BUILDERS = {
    "mobilenet_v2": keras.applications.MobileNetV2,
    "resnet50": keras.applications.ResNet50,
}


def main(argv):
    del argv
    size = _IMAGE_SIZE.value
    model = _BUILDERS[_MODEL.value](weights=None, input_shape=(size, size, 3))
    result = ks.quantize(
        model,
        weight_bits=_WEIGHT_BITS.value,
        activation_bits=_ACTIVATION_BITS.value,
        num_samples=16,
        # keras.applications models take inputs preprocessed to [-1, 1].
        input_mean=0.0,
        input_std=0.5,
        synthesis={"steps": 5, "batch_size": 8},
        reconstruction={"steps": 10, "batch_size": 8},
        verbose=2,
    )
    print(result.report)
    print(result.summary())
    os.makedirs(_OUTPUT.value, exist_ok=True)
    keras_path = os.path.join(_OUTPUT.value, f"{_MODEL.value}.keras")
    result.model.save(keras_path)
    tflite_path = os.path.join(_OUTPUT.value, f"{_MODEL.value}.tflite")
    ks.export_tflite(
        result.model, tflite_path, representative_data=result.data, input_range=(-1, 1)
    )
    print(ks.verify_tflite(tflite_path, result.model, result.data))
    for path in (keras_path, tflite_path):
        print(f"{path}: {os.path.getsize(path) / 1e6:.1f} MB")


if __name__ == "__main__":
    app.run(main)
