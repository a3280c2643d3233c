"""Does block reconstruction fall below round-to-nearest on bad calibration images?

    KERAS_BACKEND=tensorflow python benchmarks/bad_calibration.py

Synthesizes GENIE images for a zoo model twice: in its inferred input space
and in a standardized space (mean 0, std 1: the library's assumption before
issue 10, which gives degenerate images for a [0, 1] model). On each set it
compares round-to-nearest (min/max ranges) with Lp initialization and with
block reconstruction, at the given bits, on real test images. Prints one
line per (images, method); nothing is written.
"""

import time
import warnings

import numpy as np
from absl import app
from absl import flags

import keras_sagdq as ks
from keras_sagdq.datasets import load_fashion_mnist
from keras_sagdq.models import load_shipped_model
from keras_sagdq.models import shipped_model_input

_MODEL = flags.DEFINE_string("model", "mobilenet_unit_range", "Shipped model.")
_BITS = flags.DEFINE_integer("bits", 4, "Weight and activation bits.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 256, "Calibration images per set.")
_STEPS = flags.DEFINE_integer("synthesis_steps", 200, "GENIE steps per batch.")
_RECONSTRUCTION_STEPS = flags.DEFINE_integer(
    "reconstruction_steps", 300, "Steps per block."
)
_TEST_IMAGES = flags.DEFINE_integer(
    "test_images", 2000, "Real test images to evaluate on."
)


def main(argv):
    del argv
    model = load_shipped_model(_MODEL.value)
    x_test, y_test = load_fashion_mnist("test")
    x_test = shipped_model_input(x_test[: _TEST_IMAGES.value], _MODEL.value)
    y_test = y_test[: _TEST_IMAGES.value]

    def top1(m):
        return float(
            np.mean(
                np.argmax(m.predict(x_test, batch_size=500, verbose=0), -1) == y_test
            )
        )

    print(
        f"{_MODEL.value}: float {100 * top1(model):.2f} % on {len(y_test)} test images"
    )
    sets = {
        "inferred space": {},
        "standardized space": {"input_mean": 0.0, "input_std": 1.0},
    }
    for label, space in sets.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            images = ks.synthesize(
                model,
                _NUM_SAMPLES.value,
                steps=_STEPS.value,
                seed=0,
                verbose=0,
                **space,
            )
        for method in ("rtn", "lp", "reconstruct"):
            start = time.time()
            config = ks.QuantConfig(
                _BITS.value,
                _BITS.value,
                weight_range="minmax" if method == "rtn" else "lp",
            )
            qmodel = ks.quantize_model(model, config)
            ks.calibrate_activations(
                qmodel,
                images,
                method="minmax" if method == "rtn" else "lp",
                max_samples=len(images),
            )
            if method == "reconstruct":
                ks.reconstruct(
                    qmodel, model, images, steps=_RECONSTRUCTION_STEPS.value, verbose=0
                )
            print(
                f"W{_BITS.value}A{_BITS.value} {label:18s} {method:11s} "
                f"{100 * top1(qmodel):.2f} % ({time.time() - start:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    app.run(main)
