"""The quantities the CI accuracy tier (tests/test_accuracy_tier.py) asserts, printed.

    KERAS_BACKEND=tensorflow python benchmarks/accuracy_tier.py

Runs the tier's exact settings (same seeds, budgets and image counts) and
prints every number the tests compare, with the seconds each part took, so
that the tests' margins come from measured values.
"""

import json
import os
import sys
import tempfile
import time

import keras
from absl import app
from absl import flags
from provenance import git_commit

# The experiments live beside the tests that assert on them.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests import accuracy_tier as tier  # noqa: E402

_OUT = flags.DEFINE_string("out", None, "Optional JSON file for the numbers.")
_GENIE_SEEDS = flags.DEFINE_list(
    "genie_seeds",
    None,
    "Instead of the tier: GENIE against noise with these seeds (synthesis and "
    "reconstruction), for the spread the margin must allow for.",
)


def main(argv):
    del argv
    numbers = {"commit": git_commit(), "backend": keras.backend.backend()}
    if _GENIE_SEEDS.value:
        for seed in map(int, _GENIE_SEEDS.value):
            for name in tier.GENIE_MODELS:
                for key, value in tier.genie_vs_gaussian(name, seed).items():
                    numbers[f"{key} seed {seed}"] = value
                print(json.dumps(numbers), flush=True)
        _write(numbers)
        return
    start = time.time()
    numbers.update(tier.real_reconstruction_vs_rtn())
    numbers["seconds_real"] = time.time() - start
    for name in tier.GENIE_MODELS:
        start = time.time()
        numbers.update(tier.genie_vs_gaussian(name))
        numbers[f"seconds_genie_{name}"] = time.time() - start
    name = tier.GENIE_MODELS[1]
    numbers.update(tier.calibration_only_w4a4(name))
    images = tier.genie_models(name)["images"]
    numbers[f"{name} genie images mean"] = float(images.mean())
    numbers[f"{name} genie images std"] = float(images.std())
    start = time.time()
    with tempfile.TemporaryDirectory() as folder:
        for key, agreement in tier.tflite_agreements(folder).items():
            numbers[key] = agreement
    numbers["seconds_tflite"] = time.time() - start
    print(json.dumps(numbers, indent=1))
    _write(numbers)


def _write(numbers):
    if _OUT.value:
        os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
        with open(_OUT.value, "w") as f:
            json.dump(numbers, f, indent=1)


if __name__ == "__main__":
    app.run(main)
