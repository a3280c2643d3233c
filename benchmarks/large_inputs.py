"""Seconds per step and peak memory per stage for 224x224 keras.applications models.

    KERAS_BACKEND=tensorflow python benchmarks/large_inputs.py
    KERAS_BACKEND=torch python benchmarks/large_inputs.py --models=resnet50

The reference models are 28x28; users bring 224x224 ones. This runs a
`keras.applications` model (random weights, offline: step costs and memory
do not depend on the weights' values) through the library's stages, each in
a child process of its own so that the child's peak resident memory is that
stage's:

- `load`: building the model (the floor under every other stage);
- `synthesis`: `synthesize` of one batch of `--batch_size` images for
  `--synthesis_steps` GENIE steps, with the generator's size and the time of
  the generator's own forward and backward pass beside the whole step;
- `reconstruction`: `quantize_model` (W4A4) and `reconstruct` for
  `--reconstruction_steps` steps per block on the synthesized images;
- `export`: `export_tflite` of the reconstructed model.

Seconds per step leave out each run's first step (tracing on TensorFlow).
Rows are merged into `benchmarks/results_large_inputs.json` (a rerun replaces
the row with the same model, size and backend).
"""

import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
from absl import app
from absl import flags
from provenance import git_commit
from provenance import save_row

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BUILDERS = {
    "mobilenet_v2": keras.applications.MobileNetV2,
    "resnet50": keras.applications.ResNet50,
}
# (mean, std) of each model's input convention: MobileNetV2 takes [-1, 1];
# ResNet50 takes caffe-style BGR pixels less the ImageNet means.
_INPUT_SPACE = {"mobilenet_v2": (0.0, 0.5), "resnet50": (0.0, 60.0)}
_STAGES = ("load", "synthesis", "reconstruction", "export")
_MODELS = flags.DEFINE_list("models", list(_BUILDERS), "keras.applications models.")
_SIZE = flags.DEFINE_integer("size", 224, "Input height and width.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Synthesized images (one batch).")
_SYNTHESIS_STEPS = flags.DEFINE_integer("synthesis_steps", 4, "GENIE steps.")
_GENERATOR_CHANNELS = flags.DEFINE_integer(
    "generator_channels", 128, "Channels of the generator's first feature map."
)
_ONLY = flags.DEFINE_list("stages", list(_STAGES), "Stages to run, in order.")
_RECONSTRUCTION_STEPS = flags.DEFINE_integer(
    "reconstruction_steps", 4, "Reconstruction steps per block."
)
_RECONSTRUCTION_BATCH = flags.DEFINE_integer(
    "reconstruction_batch", 8, "Images per reconstruction step."
)
_RESULTS = flags.DEFINE_string(
    "results",
    os.path.join(_ROOT, "benchmarks", "results_large_inputs.json"),
    "JSON results file.",
)
_STAGE = flags.DEFINE_enum("stage", None, _STAGES, "Internal: run one stage.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Internal: the stages' folder.")


class _StepTimer(keras.callbacks.Callback):
    """Seconds per step of each `fit`, leaving out its first step."""

    def __init__(self):
        super().__init__()
        self.per_fit = []

    def on_train_batch_end(self, step, logs=None):
        now = time.perf_counter()
        if step == 0:
            self.start = now
        elif step == self.params["steps"] - 1:
            self.per_fit.append((now - self.start) / step)


def _model(name, size):
    keras.utils.set_random_seed(0)
    return _BUILDERS[name](weights=None, input_shape=(size, size, 3))


def _generator_pass_seconds(generator, batch_size, repeats=3):
    """Forward and backward of the generator alone, median of `repeats`."""
    from keras_sagdq import backend

    codes = np.random.default_rng(0).standard_normal((batch_size, 256))
    codes = keras.Variable(codes.astype("float32"))
    variables = [codes, *generator.trainable_variables]

    def loss():
        return keras.ops.mean(keras.ops.square(generator(codes.value, training=True)))

    seconds = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        _, grads = backend.value_and_grad(loss, variables)
        keras.ops.convert_to_numpy(grads[-1])
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds[1:]))


def run_stage(stage, name, size, workdir):
    """Run one stage in this process; returns its measurements."""
    import keras_sagdq as ks
    from keras_sagdq.synthesis.generator import build_generator

    start = time.perf_counter()
    model = _model(name, size)
    row = {"build_s": time.perf_counter() - start, "params": model.count_params()}
    images_path = os.path.join(workdir, "images.npy")
    qmodel_path = os.path.join(workdir, "qmodel.keras")
    mean, std = _INPUT_SPACE[name]
    if stage == "synthesis":
        timer = _StepTimer()
        start = time.perf_counter()
        images = ks.synthesize(
            model,
            _BATCH_SIZE.value,
            steps=_SYNTHESIS_STEPS.value,
            batch_size=_BATCH_SIZE.value,
            input_mean=mean,
            input_std=std,
            generator_channels=_GENERATOR_CHANNELS.value,
            verbose=0,
            callbacks=[timer],
        )
        row["wall_s"] = time.perf_counter() - start
        row["s_per_step"] = timer.per_fit[0]
        np.save(images_path, images)
        generator = build_generator(
            (size, size, 3), feature_channels=_GENERATOR_CHANNELS.value
        )
        row["generator_params"] = generator.count_params()
        row["generator_projection_params"] = generator.layers[0].count_params()
        row["generator_pass_s"] = _generator_pass_seconds(generator, _BATCH_SIZE.value)
    elif stage == "reconstruction":
        images = np.load(images_path)
        start = time.perf_counter()
        qmodel = ks.quantize_model(model, ks.QuantConfig(4, 4), images)
        row["quantize_s"] = time.perf_counter() - start
        timer = _StepTimer()
        start = time.perf_counter()
        ks.reconstruct(
            qmodel,
            model,
            images,
            steps=_RECONSTRUCTION_STEPS.value,
            batch_size=_RECONSTRUCTION_BATCH.value,
            verbose=0,
            callbacks=[timer],
        )
        row["wall_s"] = time.perf_counter() - start
        row["blocks"] = len(timer.per_fit)
        row["s_per_step_mean_over_blocks"] = float(np.mean(timer.per_fit))
        row["s_per_step_sum_over_blocks"] = float(np.sum(timer.per_fit))
        qmodel.save(qmodel_path)
    elif stage == "export":
        images = np.load(images_path)
        qmodel = keras.models.load_model(qmodel_path)
        path = os.path.join(workdir, "model.tflite")
        start = time.perf_counter()
        ks.export_tflite(qmodel, path, representative_data=images)
        row["wall_s"] = time.perf_counter() - start
        row["tflite_mb"] = os.path.getsize(path) / 2**20
    row["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def _configs():
    """The resolved configs the stages run with (every field)."""
    import keras_sagdq as ks

    synthesis = ks.synthesis.synthesis_config(
        "genie",
        steps=_SYNTHESIS_STEPS.value,
        batch_size=_BATCH_SIZE.value,
        generator_channels=_GENERATOR_CHANNELS.value,
    )
    reconstruction = ks.reconstruction.reconstruction_config(
        steps=_RECONSTRUCTION_STEPS.value, batch_size=_RECONSTRUCTION_BATCH.value
    )
    return {
        "synthesis": dataclasses.asdict(synthesis),
        "reconstruction": dataclasses.asdict(reconstruction),
        "quant_config": dataclasses.asdict(ks.QuantConfig(4, 4)),
    }


def measure(name, size):
    """All stages of one model, each in a child process; one row."""
    row = dict(
        model=name,
        size=size,
        backend=keras.backend.backend(),
        commit=git_commit(),
        batch_size=_BATCH_SIZE.value,
        synthesis_steps=_SYNTHESIS_STEPS.value,
        reconstruction_steps=_RECONSTRUCTION_STEPS.value,
        reconstruction_batch=_RECONSTRUCTION_BATCH.value,
        generator_channels=_GENERATOR_CHANNELS.value,
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs",
        configs=_configs(),
        stages={},
    )
    with tempfile.TemporaryDirectory() as workdir:
        for stage in _ONLY.value:
            argv = [sys.executable, os.path.abspath(__file__), f"--stage={stage}"]
            argv += [f"--models={name}", f"--size={size}", f"--workdir={workdir}"]
            argv += [
                f"--batch_size={_BATCH_SIZE.value}",
                f"--synthesis_steps={_SYNTHESIS_STEPS.value}",
                f"--reconstruction_steps={_RECONSTRUCTION_STEPS.value}",
                f"--reconstruction_batch={_RECONSTRUCTION_BATCH.value}",
                f"--generator_channels={_GENERATOR_CHANNELS.value}",
            ]
            done = subprocess.run(argv, capture_output=True, text=True)
            if done.returncode:
                row["stages"][stage] = {"error": done.stderr[-2000:]}
                break
            row["stages"][stage] = json.loads(done.stdout.strip().splitlines()[-1])
            print(stage, row["stages"][stage], flush=True)
    row["load_average"] = os.getloadavg()[0]
    return row


def main(argv):
    del argv
    if _STAGE.value:
        row = run_stage(_STAGE.value, _MODELS.value[0], _SIZE.value, _WORKDIR.value)
        print(json.dumps(row))
        return
    for name in _MODELS.value:
        row = measure(name, _SIZE.value)
        print(json.dumps(row, indent=1), flush=True)
        # Rows from before `generator_channels` existed used GENIE's 128.
        save_row(
            _RESULTS.value,
            row,
            ("model", "size", "backend", "generator_channels"),
            defaults={"generator_channels": 128},
        )


if __name__ == "__main__":
    app.run(main)
