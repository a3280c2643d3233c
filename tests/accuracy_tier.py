"""The experiments of the CI accuracy tier, shared by its tests and its benchmark.

Each function runs one experiment on a shipped model and real Fashion-MNIST
test images and returns top-1 values; results are cached, so the tests
that compare them and `benchmarks/accuracy_tier.py` (which prints them) run
each experiment once per process. Budgets are small: the point is to catch
a broken method, not to reach the best accuracy.
"""

import functools
import os

import numpy as np

import keras_sagdq as ks
from keras_sagdq.datasets import fashion_mnist
from keras_sagdq.synthesis import resolve_input_space

TEST_IMAGES = 1000
REAL_CALIBRATION = 256
SYNTHETIC_CALIBRATION = 64
GENIE_STEPS = 100
INPUT_SPACE_STEPS = 150
RECONSTRUCTION_STEPS = 100
# GENIE against noise differs by 35-49 pt; a shorter reconstruction keeps the
# two MobileNets (21 and 16 blocks) affordable in CI.
GENIE_RECONSTRUCTION_STEPS = 30
REAL_MODEL = "resnet20_fashion_mnist"
REAL_BITS = ((4, 4), (3, 3), (2, 4))
GENIE_MODELS = ("mobilenet_v2_fashion_mnist", "mobilenet_unit_range")


def has_data():
    return os.path.isdir(
        os.environ.get("KERAS_SAGDQ_FASHION_MNIST", fashion_mnist.DEFAULT_PATH)
    )


@functools.cache
def test_split(name):
    x, y = fashion_mnist.load_fashion_mnist("test")
    return ks.models.shipped_model_input(x[:TEST_IMAGES], name), y[:TEST_IMAGES]


def top1(model, name):
    x, y = test_split(name)
    logits = model.predict(x, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == y))


def _quantize(model, bits, images, steps, seed=0):
    """Quantize, calibrate on `images`, then reconstruct for `steps` (0: RTN)."""
    weight_bits, activation_bits = bits
    qmodel = ks.quantize_model(model, ks.QuantConfig(weight_bits, activation_bits))
    ks.calibrate_activations(qmodel, images)
    if steps:
        ks.reconstruct(qmodel, model, images, steps=steps, seed=seed, verbose=0)
    return qmodel


@functools.cache
def real_calibration():
    """The first training images in the real-data model's input convention."""
    x, _ = fashion_mnist.load_fashion_mnist("train")
    return ks.models.shipped_model_input(x[:REAL_CALIBRATION], REAL_MODEL)


@functools.cache
def real_models():
    """Round-to-nearest and reconstruction on real training images.

    W2A4 is the setting where learned rounding shows: with this budget,
    reconstruction with rounding frozen at nearest reaches 82.4 % on
    ResNet-20 W2A4, learned rounding 89.3 % (TensorFlow; at W4A4 and W3A3
    frozen rounding is as good or better, docs/benchmarks.md).
    """
    model = ks.models.load_shipped_model(REAL_MODEL)
    images = real_calibration()
    return {
        (bits, method): _quantize(
            model, bits, images, RECONSTRUCTION_STEPS * (method == "reconstruct")
        )
        for bits in REAL_BITS
        for method in ("rtn", "reconstruct")
    }


def real_reconstruction_vs_rtn():
    return {
        f"{REAL_MODEL} W{w}A{a} {method} real": top1(qmodel, REAL_MODEL)
        for ((w, a), method), qmodel in real_models().items()
    }


@functools.cache
def genie_models(name, seed=0):
    """W3A3 reconstruction on GENIE images and on Gaussian noise, same input space.

    The tests use seed 0; other seeds (`benchmarks/accuracy_tier.py
    --genie_seeds`) show the spread the tests' margins must allow for.
    """
    model = ks.models.load_shipped_model(name)
    space = resolve_input_space(
        model,
        config=ks.synthesis.synthesis_config(
            "genie", input_space_steps=INPUT_SPACE_STEPS, batch_size=64
        ),
    )
    common = dict(input_mean=space.mean, input_std=space.std, seed=seed)
    genie = ks.synthesize(
        model,
        SYNTHETIC_CALIBRATION,
        batch_size=SYNTHETIC_CALIBRATION,
        steps=GENIE_STEPS,
        verbose=0,
        **common,
    )
    noise = ks.synthesize(model, SYNTHETIC_CALIBRATION, method="gaussian", **common)
    return {
        "genie": _quantize(model, (3, 3), genie, GENIE_RECONSTRUCTION_STEPS, seed),
        "gaussian": _quantize(model, (3, 3), noise, GENIE_RECONSTRUCTION_STEPS, seed),
        "images": genie,
    }


def genie_vs_gaussian(name, seed=0):
    models = genie_models(name, seed)
    return {
        f"{name} W3A3 reconstruct {source}": top1(models[source], name)
        for source in ("genie", "gaussian")
    }


def calibration_only_w4a4(name):
    """W4A4 with calibrated ranges only (no reconstruction), on the GENIE
    images and on noise in a standardized space, which is what synthesis
    assumed before it inferred input spaces; and the float top-1."""
    model = ks.models.load_shipped_model(name)

    def w4a4_on(images):
        qmodel = ks.quantize_model(model, ks.QuantConfig(4, 4))
        ks.calibrate_activations(qmodel, images)
        return top1(qmodel, name)

    noise = ks.synthesize(
        model, SYNTHETIC_CALIBRATION, method="gaussian", input_mean=0.0, input_std=1.0
    )
    return {
        f"{name} FP": top1(model, name),
        f"{name} W4A4 calibrate genie": w4a4_on(genie_models(name)["images"]),
        f"{name} W4A4 calibrate standardized noise": w4a4_on(noise),
    }


def tflite_agreement(qmodel, name, path, representative):
    """Top-1 of the Keras model and of its `.tflite`, and their per-image agreement."""
    ks.export_tflite(qmodel, path, representative_data=representative)
    x, y = test_split(name)
    outputs, _ = ks.run_tflite(path, x)
    keras_classes = np.argmax(qmodel.predict(x, batch_size=500, verbose=0), -1)
    file_classes = np.argmax(outputs, -1)
    return {
        "keras_top1": float(np.mean(keras_classes == y)),
        "file_top1": float(np.mean(file_classes == y)),
        "agreement": float(np.mean(keras_classes == file_classes)),
    }


def tflite_agreements(folder):
    """Real-data ResNet-20 W4A4 and zero-shot MobileNetV2 W3A3 (signed grids)."""
    genie = GENIE_MODELS[0]
    return {
        f"{REAL_MODEL} W4A4 tflite": tflite_agreement(
            real_models()[((4, 4), "reconstruct")],
            REAL_MODEL,
            os.path.join(folder, "real.tflite"),
            real_calibration(),
        ),
        f"{genie} W3A3 tflite": tflite_agreement(
            genie_models(genie)["genie"],
            genie,
            os.path.join(folder, "genie.tflite"),
            genie_models(genie)["images"],
        ),
    }
