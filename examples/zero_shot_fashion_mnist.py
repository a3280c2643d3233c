"""Zero-shot quantization of a shipped Fashion-MNIST model: no training images used.

Synthesizes calibration images from the model's BatchNorm statistics,
quantizes the model, calibrates it by block reconstruction on those images,
exports an integer `.tflite` file and reports the top-1 of the Keras model
and of the file on the real test split (the only real data touched).

    KERAS_BACKEND=tensorflow python examples/zero_shot_fashion_mnist.py
    KERAS_BACKEND=torch python examples/zero_shot_fashion_mnist.py \
        --bits=W2A4 --num_samples=256
    KERAS_BACKEND=tensorflow python examples/zero_shot_fashion_mnist.py \
        --model=vgg_raw_pixels

`--model` takes a shipped reference model or a zoo model (keras_sagdq/models/zoo.py:
other input conventions, such as raw [0, 255] pixels); the library finds the
model's input space by itself and the export picks an input range that does
not clip real pixels.

About 15 minutes on 2 CPU cores with the defaults (TensorFlow backend).
"""

import os

import numpy as np
from absl import app
from absl import flags

import keras_sagdq as ks
from keras_sagdq.datasets import load_fashion_mnist
from keras_sagdq.models import REFERENCE_MODELS
from keras_sagdq.models import load_reference_model
from keras_sagdq.models import zoo

_BITS = {"W8A8": (8, 8), "W4A4": (4, 4), "W3A3": (3, 3), "W2A4": (2, 4)}
_MODEL = flags.DEFINE_enum(
    "model",
    "resnet20_fashion_mnist",
    [*REFERENCE_MODELS, *zoo.ZOO_MODELS],
    "Shipped model.",
)
_BITS_FLAG = flags.DEFINE_enum(
    "bits", "W4A4", list(_BITS), "Weight and activation bits."
)
_METHOD = flags.DEFINE_enum(
    "method", "genie", ["genie", "zeroq", "gaussian"], "Synthesis method."
)
_NUM_SAMPLES = flags.DEFINE_integer(
    "num_samples", 1024, "Synthetic calibration images."
)
_PROFILE = flags.DEFINE_enum(
    "profile", "fast", ["fast", "paper"], "Synthesis and reconstruction profile."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of synthesis and reconstruction.")
_OUTPUT = flags.DEFINE_string("output", "/tmp/keras_sagdq_zero_shot", "Output folder.")


def top1(model, images, labels):
    logits = model.predict(images, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == labels))


def main(argv):
    del argv
    if _MODEL.value in zoo.ZOO_MODELS:
        model = zoo.load_zoo_model(_MODEL.value)
    else:
        model = load_reference_model(_MODEL.value)
    tag = "_".join(
        (_MODEL.value, _METHOD.value, _PROFILE.value, str(_NUM_SAMPLES.value))
    )
    tag += f"_seed{_SEED.value}"
    images = ks.synthesize(
        model,
        num_samples=_NUM_SAMPLES.value,
        method=_METHOD.value,
        profile=_PROFILE.value,
        seed=_SEED.value,
        # Batches are saved as they finish: rerunning resumes.
        directory=os.path.join(_OUTPUT.value, "synthetic", tag),
    )
    grid = ks.save_image_grid(images[:64], os.path.join(_OUTPUT.value, f"{tag}.png"))
    print(f"input space found: mean {images.mean():.4g}, std {images.std():.4g}")
    print(f"{len(images)} synthetic images; the first 64 are in {grid}")

    weight_bits, activation_bits = _BITS[_BITS_FLAG.value]
    qmodel = ks.quantize_model(model, ks.QuantConfig(weight_bits, activation_bits))
    ks.reconstruct(qmodel, model, images, profile=_PROFILE.value, seed=_SEED.value)
    path = os.path.join(
        _OUTPUT.value, f"{_MODEL.value}_{_BITS_FLAG.value.lower()}.keras"
    )
    qmodel.save(path)

    # No input_range: the default covers the usual pixel conventions
    # (ks.export.default_input_range), though synthetic images stop short.
    tflite_path = ks.export_tflite(qmodel, path.replace(".keras", ".tflite"), images)

    x_test, y_test = load_fashion_mnist("test")
    if _MODEL.value in zoo.ZOO_MODELS:
        x_test = zoo.to_model_input(x_test, _MODEL.value)
    lite_outputs, _ = ks.export.run_tflite(tflite_path, x_test)
    lite_top1 = float(np.mean(np.argmax(lite_outputs, -1) == y_test))
    print(f"float top-1:          {100 * top1(model, x_test, y_test):.2f} %")
    print(
        f"{_BITS_FLAG.value} Keras top-1:    "
        f"{100 * top1(qmodel, x_test, y_test):.2f} %  "
        f"(calibrated on {_METHOD.value} images only; {path})"
    )
    print(
        f"{_BITS_FLAG.value} .tflite top-1:  {100 * lite_top1:.2f} %  "
        f"({os.path.getsize(tflite_path) / 1024:.0f} KB, {tflite_path})"
    )


if __name__ == "__main__":
    app.run(main)
