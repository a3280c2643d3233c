"""Does a smaller GENIE generator keep the BatchNorm loss as low?

    KERAS_BACKEND=tensorflow python benchmarks/generator_size.py

At 224x224 the generator's first projection has 103 M weights and the
generator is 38-50 % of a synthesis step (docs/benchmarks.md). This
synthesizes one batch per seed on each trained reference model with
`generator_channels` of 128 (GENIE), 64, 32 and 16, at the fast profile's
step count, and records the BatchNorm statistics loss at the end (the mean
of the last 10 steps), the generator's parameter count and the seconds per
step. No real data is involved. Rows are merged into
`benchmarks/results_generator_size.json`.
"""

import dataclasses
import json
import os
import platform
import time

import keras
import numpy as np
from absl import app
from absl import flags
from provenance import git_commit
from provenance import save_row

import keras_sagdq as ks
from keras_sagdq.models import REFERENCE_MODELS
from keras_sagdq.models import load_reference_model
from keras_sagdq.synthesis import build_generator
from keras_sagdq.synthesis import synthesis_config

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MODELS = flags.DEFINE_list("models", list(REFERENCE_MODELS), "Reference models.")
_CHANNELS = flags.DEFINE_list("channels", ["128", "64", "32", "16"], "Widths tried.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1"], "Seeds (one batch each).")
_STEPS = flags.DEFINE_integer("steps", 200, "GENIE steps (the fast profile's).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Images per batch.")
_RESULTS = flags.DEFINE_string(
    "results",
    os.path.join(_ROOT, "benchmarks", "results_generator_size.json"),
    "JSON results file.",
)
_SPACE = dict(input_mean=0.286, input_std=0.353)


class _Losses(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.bn, self.times = [], []

    def on_train_batch_end(self, step, logs=None):
        self.bn.append(float(logs["bn"]))
        self.times.append(time.perf_counter())


def measure(name, channels, seed):
    model = load_reference_model(name)
    losses = _Losses()
    ks.synthesize(
        model,
        _BATCH_SIZE.value,
        steps=_STEPS.value,
        batch_size=_BATCH_SIZE.value,
        seed=seed,
        generator_channels=channels,
        verbose=0,
        callbacks=[losses],
        **_SPACE,
    )
    shape = tuple(model.inputs[0].shape[1:])
    generator = build_generator(shape, feature_channels=channels)
    times = np.diff(losses.times)
    config = synthesis_config(
        "genie",
        steps=_STEPS.value,
        batch_size=_BATCH_SIZE.value,
        generator_channels=channels,
    )
    return dict(
        model=name,
        backend=keras.backend.backend(),
        commit=git_commit(),
        generator_channels=channels,
        seed=seed,
        steps=_STEPS.value,
        batch_size=_BATCH_SIZE.value,
        final_bn_loss=float(np.mean(losses.bn[-10:])),
        bn_loss_at={
            str(s): losses.bn[s - 1] for s in (10, 50, 100) if s <= len(losses.bn)
        },
        generator_params=generator.count_params(),
        s_per_step=float(np.median(times)),
        load_average=os.getloadavg()[0],
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs",
        configs={"synthesis": dataclasses.asdict(config)},
    )


def main(argv):
    del argv
    key = ("model", "backend", "generator_channels", "seed", "steps", "commit")
    for name in _MODELS.value:
        for seed in _SEEDS.value:
            for channels in _CHANNELS.value:
                row = measure(name, int(channels), int(seed))
                print(json.dumps(row), flush=True)
                save_row(_RESULTS.value, row, key)


if __name__ == "__main__":
    app.run(main)
