"""Break a method on purpose and run the accuracy-tier test that must catch it.

    KERAS_BACKEND=tensorflow python benchmarks/sabotage_tier.py rounding
    KERAS_BACKEND=tensorflow python benchmarks/sabotage_tier.py genie

`rounding`: reconstruction with the rounding frozen at nearest
(`rounding_lr=1e-12`; steps still learned), then
`test_reconstruction_beats_round_to_nearest_on_real_images`.
`genie`: `ks.synthesize(method="genie")` returns Gaussian noise in the same
input space, then `test_genie_beats_gaussian_noise_under_the_same_reconstruction`.
Exits with pytest's status: 1 (a failed test) is the expected outcome.
"""

import dataclasses
import os
import sys

import pytest

import keras_sagdq as ks
from keras_sagdq import reconstruction

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TESTS = {
    "rounding": "test_reconstruction_beats_round_to_nearest_on_real_images",
    "genie": "test_genie_beats_gaussian_noise_under_the_same_reconstruction",
}


def _freeze_rounding():
    reconstruction.PROFILES["fast"] = dataclasses.replace(
        reconstruction.PROFILES["fast"], rounding_lr=1e-12
    )


def _noise_for_genie():
    real = ks.synthesize

    def noise_instead(model, num_samples=1024, method="genie", **kwargs):
        if method != "genie":
            return real(model, num_samples, method=method, **kwargs)
        keep = ("seed", "input_mean", "input_std")
        kwargs = {k: v for k, v in kwargs.items() if k in keep}
        return real(model, num_samples, method="gaussian", **kwargs)

    ks.synthesize = noise_instead


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in _TESTS:
        sys.exit(f"usage: {sys.argv[0]} rounding|genie")
    what = sys.argv[1]
    (_freeze_rounding if what == "rounding" else _noise_for_genie)()
    sys.path.insert(0, _ROOT)
    test_file = os.path.join(_ROOT, "tests", "test_accuracy_tier.py")
    sys.exit(
        pytest.main(["-q", "-p", "no:cacheprovider", test_file, "-k", _TESTS[what]])
    )


if __name__ == "__main__":
    main()
