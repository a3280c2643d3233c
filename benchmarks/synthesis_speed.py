"""Seconds per synthesis step on the active backend, per reference model.

    KERAS_BACKEND=tensorflow python benchmarks/synthesis_speed.py
    KERAS_BACKEND=torch python benchmarks/synthesis_speed.py

Times `--steps` GENIE steps on one batch, excluding the first step (graph
tracing on TensorFlow), and merges one row per (model, backend, method) into
`benchmarks/synthesis_speed.json`. Prints the TF / torch ratio when both
backends have rows.
"""

import json
import os
import platform
import time

import keras
from absl import app
from absl import flags

import keras_sagdq as ks
from keras_sagdq.models import REFERENCE_MODELS
from keras_sagdq.models import load_reference_model

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MODELS = flags.DEFINE_list("models", list(REFERENCE_MODELS), "Reference models.")
_METHODS = flags.DEFINE_list("methods", ["genie"], "Synthesis methods to time.")
_STEPS = flags.DEFINE_integer("steps", 30, "Timed steps (plus one untimed).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Images per batch.")
_RESULTS = flags.DEFINE_string(
    "results",
    os.path.join(_ROOT, "benchmarks", "synthesis_speed.json"),
    "JSON results file.",
)


class _StepTimer(keras.callbacks.Callback):
    def on_train_batch_end(self, step, logs=None):
        if step == 0:
            self.start = time.perf_counter()
        self.end = time.perf_counter()
        self.timed = step


def main(argv):
    del argv
    rows = []
    if os.path.exists(_RESULTS.value):
        with open(_RESULTS.value) as f:
            rows = json.load(f)
    for name in _MODELS.value:
        model = load_reference_model(name)
        for method in _METHODS.value:
            timer = _StepTimer()
            ks.synthesize(
                model,
                _BATCH_SIZE.value,
                method=method,
                steps=_STEPS.value + 1,
                batch_size=_BATCH_SIZE.value,
                verbose=0,
                callbacks=[timer],
            )
            row = dict(
                model=name,
                backend=keras.backend.backend(),
                method=method,
                batch_size=_BATCH_SIZE.value,
                seconds_per_step=(timer.end - timer.start) / timer.timed,
                machine=f"{platform.machine()}, {os.cpu_count()} CPUs",
            )
            print(row, flush=True)
            rows = [
                r
                for r in rows
                if (r["model"], r["backend"], r["method"])
                != (name, row["backend"], method)
            ]
            rows.append(row)
    with open(_RESULTS.value, "w") as f:
        json.dump(rows, f, indent=1)
    by_key = {
        (r["model"], r["method"], r["backend"]): r["seconds_per_step"] for r in rows
    }
    for (model, method, backend), seconds in sorted(by_key.items()):
        if backend == "torch" and (model, method, "tensorflow") in by_key:
            tf_seconds = by_key[(model, method, "tensorflow")]
            print(
                f"{model} {method}: tensorflow {tf_seconds:.3f} s/step, torch "
                f"{seconds:.3f} "
                f"s/step, torch / tensorflow = {seconds / tf_seconds:.2f}"
            )


if __name__ == "__main__":
    app.run(main)
