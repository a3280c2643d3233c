"""Seconds per synthesis step on the active backend: GENIE and SADAG refinement.

    KERAS_BACKEND=tensorflow python benchmarks/synthesis_speed.py
    KERAS_BACKEND=torch python benchmarks/synthesis_speed.py

For each reference model, in one process and one after the other: a GENIE
step (`SynthesisTrainer`), the set-up cost of each batch of a `synthesize`
run beyond its steps (four short batches), and a SADAG refinement step
(`RefinementTrainer`, with the neighbor direction recomputed every step and
every `--neighbor_every` steps) on one batch of `--batch_size` images. The first
step of each run is not timed (graph tracing on TensorFlow). The images are
synthesized in an assumed [0, 1] input space and `q0` is calibrated, not
reconstructed: the step cost does not depend on either.

Each row records the commit, backend, batch size, steps and seconds per
step, and the end-to-end synthesis time of `sadag` relative to `genie` at
the paper and fast profiles' step counts (`q0`'s reconstruction not
counted). Rows are merged into `benchmarks/synthesis_speed.json`.
"""

import dataclasses
import json
import os
import platform
import time

import keras
from absl import app
from absl import flags
from provenance import git_commit
from provenance import save_row

import keras_sagdq as ks
from keras_sagdq.models import REFERENCE_MODELS
from keras_sagdq.models import load_reference_model
from keras_sagdq.synthesis import BatchNormProbe
from keras_sagdq.synthesis import synthesis_config
from keras_sagdq.synthesis.refinement import HeadPair
from keras_sagdq.synthesis.refinement import RefinementTrainer
from keras_sagdq.synthesis.synthesize import PROFILES
from keras_sagdq.synthesis.trainer import SynthesisTrainer

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MODELS = flags.DEFINE_list("models", list(REFERENCE_MODELS), "Reference models.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per run (plus one untimed).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Images per batch.")
_NEIGHBOR_EVERY = flags.DEFINE_integer(
    "neighbor_every", 4, "The cheaper refinement: a new neighbor direction every k."
)
_RESULTS = flags.DEFINE_string(
    "results",
    os.path.join(_ROOT, "benchmarks", "synthesis_speed.json"),
    "JSON results file.",
)
_SPACE = (0.286, 0.353)


class _StepTimer(keras.callbacks.Callback):
    def on_train_batch_end(self, step, logs=None):
        if step == 0:
            self.start = time.perf_counter()
        self.end = time.perf_counter()
        self.timed = step


def _seconds_per_step(trainer, steps):
    timer = _StepTimer()
    trainer.run(steps + 1, "timing", verbose=0, callbacks=[timer])
    return (timer.end - timer.start) / timer.timed


def _overhead_per_batch(model, batch_size, steps_per_second, batches=4, steps=10):
    # Set-up per batch outside the steps: `synthesize` of a few short
    # batches, less what their steps cost at the measured rate.
    start = time.perf_counter()
    ks.synthesize(
        model,
        batches * batch_size,
        steps=steps,
        batch_size=batch_size,
        input_mean=_SPACE[0],
        input_std=_SPACE[1],
        verbose=0,
    )
    elapsed = time.perf_counter() - start
    return (elapsed - batches * steps / steps_per_second) / batches


def _end_to_end_ratio(genie, refine, profile):
    config = PROFILES[("sadag", profile)]
    return (config.steps * genie + config.refine_steps * refine) / (
        config.steps * genie
    )


def time_model(name, steps, batch_size, neighbor_every):
    model = load_reference_model(name)
    probe = BatchNormProbe(model, swing=True, seed=0)
    config = synthesis_config("sadag", batch_size=batch_size)
    genie = SynthesisTrainer(probe, config, batch_size, *_SPACE, seed=0)
    seconds = {"genie": _seconds_per_step(genie, steps)}
    seconds["genie_overhead_per_batch"] = _overhead_per_batch(
        model, batch_size, 1.0 / seconds["genie"]
    )
    quant_config = ks.QuantConfig(4, 4)
    q0 = ks.quantize_model(model, quant_config)
    ks.calibrate_activations(q0, genie.images())
    ks.set_mode(q0, "hard")
    pair = HeadPair(BatchNormProbe(model), q0)
    for every in (1, neighbor_every):
        refine_config = synthesis_config(
            "sadag", batch_size=batch_size, neighbor_every=every
        )
        trainer = RefinementTrainer(pair, refine_config, batch_size, *_SPACE)
        trainer.set_state(genie.state())
        seconds[f"refine_every_{every}"] = _seconds_per_step(trainer, steps)
    return dict(
        model=name,
        backend=keras.backend.backend(),
        commit=git_commit(),
        batch_size=batch_size,
        timed_steps=steps,
        seconds_per_step=seconds,
        refine_over_genie={
            k: v / seconds["genie"]
            for k, v in seconds.items()
            if k.startswith("refine")
        },
        sadag_over_genie_end_to_end={
            f"{profile}, neighbor every {every}": _end_to_end_ratio(
                seconds["genie"], seconds[f"refine_every_{every}"], profile
            )
            for profile in ("paper", "fast")
            for every in (1, neighbor_every)
        },
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs",
        configs={
            "synthesis": dataclasses.asdict(config),
            "refinement": dataclasses.asdict(refine_config),
            "quant_config": dataclasses.asdict(quant_config),
        },
    )


def main(argv):
    del argv
    for name in _MODELS.value:
        row = time_model(name, _STEPS.value, _BATCH_SIZE.value, _NEIGHBOR_EVERY.value)
        print(json.dumps(row, indent=1), flush=True)
        save_row(_RESULTS.value, row, ("model", "backend", "batch_size"))


if __name__ == "__main__":
    app.run(main)
