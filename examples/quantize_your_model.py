"""Quantize your own `.keras` classifier without its data, end to end, in Python.

What the `keras-sagdq` command does, written out: load the model safely,
`ks.quantize` (synthetic calibration images, block reconstruction), export an
integer `.tflite`, check the file against the Keras model, and measure top-1
on labelled images if you have some (an `.npz` with `x` in the model's input
space and `y`).

    python examples/quantize_your_model.py --model=my_classifier.keras \
        --eval=my_test_images.npz
    KERAS_BACKEND=torch python examples/quantize_your_model.py \
        --model=my_classifier.keras
    # a quick look (a few steps; the images and the accuracy will be poor)
    python examples/quantize_your_model.py --num_samples=64 \
        --synthesis=steps=10 --reconstruction=steps=50

Without `--model` it uses a shipped zoo model that takes raw [0, 255] pixels
(`keras_sagdq/models/zoo/vgg_raw_pixels.keras`, built unlike the reference
models) and the Fashion-MNIST test split in [0, 255] when it is installed.
About 10 minutes on 2 CPU cores with the defaults.
"""

import os

import keras
import numpy as np
from absl import app
from absl import flags

import keras_sagdq as ks
from keras_sagdq.config import parse_overrides
from keras_sagdq.models import zoo

_MODEL = flags.DEFINE_string("model", None, "A `.keras` image classifier.")
_EVAL = flags.DEFINE_string("eval", None, "Optional `.npz` with `x` and `y`.")
_WEIGHT_BITS = flags.DEFINE_integer("weight_bits", 4, "Weight bits.")
_ACTIVATION_BITS = flags.DEFINE_integer("activation_bits", 4, "Activation bits.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 512, "Synthetic images.")
_OUTPUT = flags.DEFINE_string("output", "/tmp/keras_sagdq_example", "Output folder.")
_SYNTHESIS = flags.DEFINE_list(
    "synthesis", [], "SynthesisConfig overrides, e.g. `steps=500`."
)
_RECONSTRUCTION = flags.DEFINE_list(
    "reconstruction", [], "ReconstructionConfig overrides, e.g. `steps=2000`."
)


def labelled_images():
    if _EVAL.value is not None:
        with np.load(_EVAL.value, allow_pickle=False) as data:
            return data["x"], data["y"]
    if _MODEL.value is not None:
        return None
    try:
        x, y = ks.datasets.load_fashion_mnist("test")
    except FileNotFoundError as error:
        print(f"No evaluation: {error}")
        return None
    return 255.0 * x, y  # this zoo model's input convention


def top1(predict, data):
    x, y = data
    return float(np.mean(np.argmax(predict(x), -1) == y))


def main(argv):
    del argv
    path = _MODEL.value or zoo.zoo_model_path("vgg_raw_pixels")
    model = keras.saving.load_model(path, safe_mode=True)
    backend = keras.backend.backend()
    # Progress is saved here: rerunning after an interruption resumes.
    work = os.path.join(_OUTPUT.value, f"work_{backend}")
    result = ks.quantize(
        model,
        weight_bits=_WEIGHT_BITS.value,
        activation_bits=_ACTIVATION_BITS.value,
        num_samples=_NUM_SAMPLES.value,
        directory=work,
        synthesis=parse_overrides(_SYNTHESIS.value),
        reconstruction=parse_overrides(_RECONSTRUCTION.value),
    )
    print(result.report)
    print(result.summary())
    tflite_path = os.path.join(_OUTPUT.value, f"model_{backend}.tflite")
    ks.export_tflite(result.model, tflite_path, representative_data=result.data)
    print(ks.verify_tflite(tflite_path, result.model, result.data[:64]))
    data = labelled_images()
    if data is not None:
        print(
            f"top-1 float     {top1(lambda x: model.predict(x, verbose=0), data):.4f}"
        )
        print(
            "top-1 quantized "
            f"{top1(lambda x: result.model.predict(x, verbose=0), data):.4f}"
        )
        print(
            "top-1 .tflite   "
            f"{top1(lambda x: ks.run_tflite(tflite_path, x)[0], data):.4f}"
        )


if __name__ == "__main__":
    app.run(main)
