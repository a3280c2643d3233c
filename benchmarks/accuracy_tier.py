"""The quantities the CI accuracy tier (tests/test_accuracy_tier.py) asserts, measured.

    KERAS_BACKEND=tensorflow python benchmarks/accuracy_tier.py
    KERAS_BACKEND=tensorflow python benchmarks/accuracy_tier.py --genie_seeds=1,2,3

Runs the tier's exact experiments (`tests/accuracy_tier.py`: same seeds,
budgets, image counts and stored GENIE images) and prints every number the
tests compare, with the seconds each part took, so that the tests' margins
come from measured values. The numbers go, as one row with the tier's
resolved settings (`configs`) and `provenance.environment()`, to
`benchmarks/results_accuracy_tier.json`; docs/benchmarks.md's
`accuracy_tier` table is made from those rows (`benchmarks/tables.py`).
"""

import os
import sys
import tempfile
import time

import keras
from absl import app
from absl import flags
from provenance import git_commit
from provenance import save_row

# The experiments live beside the tests that assert on them.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests import accuracy_tier as tier  # noqa: E402

RESULTS = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "results_accuracy_tier.json"
)
_RESULTS = flags.DEFINE_string("results", RESULTS, "JSON file the row is added to.")
_PARTS = flags.DEFINE_list(
    "parts",
    ["real", "genie_vs_gaussian", "fresh_genie", "calibration_only", "tflite"],
    "The tier's experiments to run (the tests run each on the backend named in "
    "tests/test_accuracy_tier.py).",
)
_GENIE_SEEDS = flags.DEFINE_list(
    "genie_seeds",
    None,
    "Instead of the tier: MobileNetV2's GENIE against noise with these seeds "
    "(synthesis and reconstruction; seed 0 uses the stored images), for the "
    "spread the margin must allow for.",
)


def _timed(seconds, name, function, *args):
    start = time.time()
    result = function(*args)
    seconds[name] = time.time() - start
    return result


def _real(seconds):
    return _timed(seconds, "real", tier.real_reconstruction_vs_rtn)


def _genie_vs_gaussian(seconds):
    name = tier.GENIE_MODELS[0]
    return _timed(seconds, "genie_vs_gaussian", tier.genie_vs_gaussian, name)


def _fresh_genie(seconds):
    fresh = _timed(seconds, "fresh_genie", tier.fresh_genie)
    name = tier.FRESH_MODEL
    return {
        f"{name} fresh genie images mean": float(fresh["images"].mean()),
        f"{name} fresh genie images std": float(fresh["images"].std()),
        **{
            f"{name} fresh {k}": fresh[k]
            for k in ("genie bn_mismatch", "gaussian bn_mismatch")
        },
    }


def _calibration_only(seconds):
    name = tier.GENIE_MODELS[1]
    return _timed(seconds, "calibration_only", tier.calibration_only_w4a4, name)


def _tflite(seconds):
    with tempfile.TemporaryDirectory() as folder:
        files = _timed(seconds, "tflite", tier.tflite_agreements, folder)
    return {
        f"{key} {field}": value
        for key, result in files.items()
        for field, value in result.items()
    }


PARTS = {
    "real": _real,
    "genie_vs_gaussian": _genie_vs_gaussian,
    "fresh_genie": _fresh_genie,
    "calibration_only": _calibration_only,
    "tflite": _tflite,
}


def tier_numbers(seconds, parts=tuple(PARTS)):
    """Every number the tier's tests compare, by name (of the `parts` asked for)."""
    numbers = {}
    for part in parts:
        numbers.update(PARTS[part](seconds))
    return numbers


def main(argv):
    del argv
    seconds = {}
    if _GENIE_SEEDS.value:
        what, numbers = f"genie seeds {','.join(_GENIE_SEEDS.value)}", {}
        for seed in map(int, _GENIE_SEEDS.value):
            values = _timed(
                seconds,
                f"seed {seed}",
                tier.genie_vs_gaussian,
                tier.GENIE_MODELS[0],
                seed,
            )
            numbers.update({f"{key} seed {seed}": v for key, v in values.items()})
            print(numbers, flush=True)
    else:
        unknown = sorted(set(_PARTS.value) - set(PARTS))
        if unknown:
            raise app.UsageError(f"Unknown parts {unknown}; choose from {list(PARTS)}.")
        what = "tier" if list(_PARTS.value) == list(PARTS) else "tier parts"
        numbers = tier_numbers(seconds, _PARTS.value)
    row = {
        "what": what,
        "commit": git_commit(),
        "backend": keras.backend.backend(),
        "numbers": numbers,
        "seconds": seconds,
        "configs": tier.settings(),
    }
    for key, value in numbers.items():
        print(f"{key}: {value:.4g}")
    print("seconds:", {k: round(v, 1) for k, v in seconds.items()})
    save_row(_RESULTS.value, row, key=("what", "backend"))


if __name__ == "__main__":
    app.run(main)
