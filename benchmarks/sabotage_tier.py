"""Break a method on purpose and run the accuracy-tier test that must catch it.

    KERAS_BACKEND=tensorflow python benchmarks/sabotage_tier.py rounding
    KERAS_BACKEND=torch python benchmarks/sabotage_tier.py genie
    KERAS_BACKEND=tensorflow python benchmarks/sabotage_tier.py export

`rounding`: reconstruction with the rounding frozen at nearest
(`rounding_lr=1e-12`; steps still learned), then
`test_reconstruction_beats_round_to_nearest_on_real_images`.
`genie`: `ks.synthesize(method="genie")` returns Gaussian noise in the same
input space, then `test_fresh_genie_matches_batchnorm_statistics_in_the_
inferred_space` (the tier's reconstruction cases use stored images, which
this sabotage cannot reach).
`export`: every activation grid of the exported graph one step off (its
values shifted up by one step), then the tier's `.tflite` test and
`tests/test_export.py`'s exactness test.
Exits with pytest's status: 1 (a failed test) is the expected outcome. The
outcome of each test, with the tier's settings, is added as a row to
`benchmarks/results_sabotage_tier.json` (docs/benchmarks.md's
`sabotage` table).
"""

import dataclasses
import os
import sys

import keras
import pytest
from provenance import git_commit
from provenance import save_row

import keras_sagdq as ks
from keras_sagdq import reconstruction

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TIER = os.path.join("tests", "test_accuracy_tier.py")
_TESTS = {
    "rounding": [
        f"{_TIER}::AccuracyTierTest::"
        "test_reconstruction_beats_round_to_nearest_on_real_images"
    ],
    "genie": [
        f"{_TIER}::AccuracyTierTest::"
        "test_fresh_genie_matches_batchnorm_statistics_in_the_inferred_space"
    ],
    "export": [
        f"{_TIER}::AccuracyTierTest::test_tflite_file_computes_the_keras_model",
        "tests/test_export.py::ExportTest::test_verify_agrees_with_the_keras_model",
    ],
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


def _shift_export_grids():
    from keras_sagdq.export import fake_quant_graph

    graph = fake_quant_graph.FakeQuantGraph
    real = graph._quantize_activation

    def one_step_up(self, x, qmin, qmax, step, nonnegative=False):
        y = real(self, x, qmin, qmax, step, nonnegative)
        low, high = self._container(qmin, qmax, step)
        return fake_quant_graph._fake_quant(y + step, low, high)

    graph._quantize_activation = one_step_up


# The backend whose test run holds each case (tests/test_accuracy_tier.py).
_BACKEND = {"rounding": "tensorflow", "genie": "torch", "export": "tensorflow"}
_SABOTAGE = {
    "rounding": _freeze_rounding,
    "genie": _noise_for_genie,
    "export": _shift_export_grids,
}


class _Outcomes:
    """A pytest plugin that keeps each test's outcome and failure message."""

    def __init__(self):
        self.outcomes = {}

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or report.outcome != "passed":
            crash = getattr(report.longrepr, "reprcrash", None)
            message = crash.message.splitlines()[0] if crash is not None else ""
            self.outcomes[report.nodeid] = {
                "outcome": report.outcome,
                "message": message[:300],
            }


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in _TESTS:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(_TESTS)}")
    what = sys.argv[1]
    if keras.backend.backend() != _BACKEND[what]:
        sys.exit(
            f"The tier checks {what!r} in its {_BACKEND[what]} run: "
            f"KERAS_BACKEND={_BACKEND[what]} python {sys.argv[0]} {what}"
        )
    _SABOTAGE[what]()
    sys.path.insert(0, _ROOT)
    os.chdir(_ROOT)
    outcomes = _Outcomes()
    status = pytest.main(["-q", "-p", "no:cacheprovider", *_TESTS[what]], [outcomes])
    from tests import accuracy_tier as tier

    row = {
        "sabotage": what,
        "commit": git_commit(),
        "backend": keras.backend.backend(),
        "exit_status": int(status),
        "tests": outcomes.outcomes,
        "configs": tier.settings(),
    }
    save_row(
        os.path.join(_ROOT, "benchmarks", "results_sabotage_tier.json"),
        row,
        key=("sabotage", "backend"),
    )
    sys.exit(status)


if __name__ == "__main__":
    main()
