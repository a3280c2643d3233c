"""Does SADAG's refinement align calibration gradients with real data's? (issue 30)

    KERAS_BACKEND=tensorflow python benchmarks/sadag_mechanism.py \
        --models=resnet20_fashion_mnist --bits=W2A4 --seeds=0 [--calibrate]

Per model, bit setting and seed, on one shared GENIE warm-up and one `q0`:
the arms `genie` (the warm-up's own images), `sadag` (the fast preset) and
its ablations (`gm_weight=0`, `div_weight=0`, `neighbor="random"`), the
wider matching `match="blocks"` (`sadag_blocks`), and
`genie_equal_time`: GENIE given SADAG's wall time end to end (warm-up, `q0`
and refinement as measured in this run). For each arm:

- the mechanism (`keras_sagdq.alignment.gradient_alignment`): cosines
  between the calibration gradients on the arm's images and on the first
  `--real_images` real training images, at `q0` and at the fresh model the
  final calibration starts from (RTN, activations calibrated on the warm-up
  images, the same for every arm);
- SADAG's own `gm`, `div` and matching `cosine` at the first and last
  refinement step (mean over batches);
- with `--calibrate`: block reconstruction (`fast`) on the arm's images,
  then `ks.output_fidelity` against the float model on all 60 000 real
  training images (KL, logit MSE, agreement) and test top-1.

Rows go to `benchmarks/results_sadag_mechanism.json` as each arm finishes,
with the resolved configs and seconds. `synthesis_seconds` is wall time end
to end (an ablation's includes the warm-up and `q0` it loads, as the `sadag`
arm made them), except the `genie` arm's: the time of its fits inside the
`sadag` call, per-batch set-up left out. `python benchmarks/tables.py`
writes the table in docs/sadag.md (`mechanism_table.py`).
"""

import dataclasses
import json
import os
import time

import keras
import numpy as np
from absl import app
from absl import flags
from provenance import git_commit
from provenance import save_row

import keras_sagdq as ks
from keras_sagdq.alignment import gradient_alignment
from keras_sagdq.config import parse_overrides
from keras_sagdq.datasets import load_fashion_mnist
from keras_sagdq.models import load_shipped_model
from keras_sagdq.models import shipped_model_input
from keras_sagdq.synthesis import BatchNormProbe
from keras_sagdq.synthesis import synthesis_config
from keras_sagdq.synthesis.refinement import HeadPair

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BITS = {"W4A4": (4, 4), "W3A3": (3, 3), "W2A4": (2, 4)}
ABLATIONS = {
    "sadag": {},
    "sadag_gm0": {"gm_weight": 0.0},
    "sadag_div0": {"div_weight": 0.0},
    "sadag_random": {"neighbor": "random"},
    # Beyond the paper: gradients matched at every block too.
    "sadag_blocks": {"match": "blocks"},
}
_MODELS = flags.DEFINE_list("models", ["resnet20_fashion_mnist"], "Models.")
_BITS = flags.DEFINE_list("bits", ["W2A4"], "Bit settings.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds.")
_ARMS = flags.DEFINE_list(
    "arms", ["genie", *ABLATIONS, "genie_equal_time"], "Arms, in this order."
)
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 512, "Synthetic images per arm.")
_REAL = flags.DEFINE_integer("real_images", 2000, "Real training images compared.")
_OPTIONS = flags.DEFINE_list(
    "synthesis_options", [], "SynthesisConfig overrides for every arm, key=value."
)
_CALIBRATE = flags.DEFINE_bool(
    "calibrate", False, "Also reconstruct on each arm and measure KL and top-1."
)
_FIDELITY_IMAGES = flags.DEFINE_integer(
    "fidelity_images", 60000, "Real training images of the KL judge (all: 60 000)."
)
_RECONSTRUCTION_STEPS = flags.DEFINE_integer(
    "reconstruction_steps", None, "Override the fast profile's steps per block."
)
_WORKDIR = flags.DEFINE_string(
    "workdir",
    os.path.join(_ROOT, "benchmarks", "mechanism"),
    "Synthesized images, in a folder per library commit.",
)
_RESULTS = flags.DEFINE_string(
    "results",
    os.path.join(_ROOT, "benchmarks", "results_sadag_mechanism.json"),
    "JSON results file.",
)


class _FitLogs(keras.callbacks.Callback):
    """Seconds of GENIE and refinement fits; SADAG's terms at their first and last step.

    A fit is a refinement when its logs have `gm`.
    """

    def __init__(self):
        super().__init__()
        self.first, self.last = [], []
        self.seconds = {"genie": 0.0, "refinement": 0.0}
        # From the start of the first GENIE fit to the end of the last one:
        # the warm-up's wall time with its per-batch set-up, without the
        # input-space inference before it.
        self.genie_begin = self.genie_end = None

    def on_train_begin(self, logs=None):
        self._start, self._kind, self._values = time.perf_counter(), "genie", None

    def on_train_batch_end(self, step, logs=None):
        if logs and "gm" in logs:
            self._kind = "refinement"
            self._values = {k: float(logs[k]) for k in ("gm", "div", "cosine")}
            if step == 0:
                self.first.append(self._values)

    def on_train_end(self, logs=None):
        now = time.perf_counter()
        self.seconds[self._kind] += now - self._start
        if self._kind == "genie":
            if self.genie_begin is None:
                self.genie_begin = self._start
            self.genie_end = now
        if self._values is not None:
            self.last.append(self._values)

    def summary(self):
        return {
            name: {k: float(np.mean([v[k] for v in rows])) for k in rows[0]}
            for name, rows in (("first", self.first), ("last", self.last))
            if rows
        }


def _options():
    return parse_overrides(_OPTIONS.value)


def _synthesize(model, method, directory, seed, quant_config=None, **options):
    callbacks = _FitLogs()
    start = time.perf_counter()
    extra = {} if quant_config is None else {"quant_config": quant_config}
    images = ks.synthesize(
        model,
        _NUM_SAMPLES.value,
        method=method,
        seed=seed,
        directory=directory,
        verbose=0,
        callbacks=[callbacks],
        **extra,
        **options,
    )
    end = time.perf_counter()
    if callbacks.genie_begin is not None:
        # Seconds from the warm-up's start: the input-space inference,
        # common to every arm, is not counted.
        callbacks.span = callbacks.genie_end - callbacks.genie_begin
        return images, end - callbacks.genie_begin, callbacks
    callbacks.span = 0.0
    return images, end - start, callbacks


def _link(target, link):
    if not os.path.lexists(link):
        os.symlink(os.path.abspath(target), link)


def _mechanism(model, q0, start_model, images, real):
    result = {}
    for name, qmodel in (("q0", q0), ("init", start_model)):
        pair = HeadPair(BatchNormProbe(model), qmodel)
        result[name] = gradient_alignment(pair, qmodel, images, real)
    return result


def _calibrate(model, images, quant_config, seed, train, test):
    overrides = {}
    if _RECONSTRUCTION_STEPS.value:
        overrides["steps"] = _RECONSTRUCTION_STEPS.value
    config = ks.reconstruction.reconstruction_config("fast", **overrides)
    qmodel = ks.quantize_model(model, quant_config)
    start = time.perf_counter()
    ks.reconstruct(qmodel, model, images, config=config, seed=seed, verbose=0)
    seconds = time.perf_counter() - start
    fidelity = ks.output_fidelity(model, qmodel, train[0][: _FIDELITY_IMAGES.value])
    predictions = qmodel.predict(test[0], batch_size=500, verbose=0).argmax(-1)
    return {
        "fidelity_train": fidelity,
        "top1": float(np.mean(predictions == test[1])),
        "reconstruction": dataclasses.asdict(config),
        "reconstruct_seconds": seconds,
    }


def _sadag_timing(base, genie_dir, seconds, logs):
    """Seconds of the SADAG call end to end, kept on disk for a resumed run.

    The warm-up is shared by the bit settings of a seed and made by the
    first SADAG call; every setting counts it as its wall time from the
    first GENIE fit to the last (the input-space inference before it is
    common to every arm and left out).
    """
    warmup_path = os.path.join(genie_dir, "warmup_seconds.json")
    made_warmup = logs.span > 0
    if made_warmup:
        with open(warmup_path, "w") as f:
            json.dump({"seconds": logs.span}, f)
    path = os.path.join(base, "timing.json")
    if logs.seconds["refinement"] > 0:
        with open(warmup_path) as f:
            warmup = json.load(f)["seconds"]
        timing = {
            "genie": warmup,
            # With the warm-up made here, `seconds` already starts at it.
            "sadag": seconds if made_warmup else seconds + warmup,
            "sadag_refinement": logs.seconds["refinement"],
        }
        with open(path, "w") as f:
            json.dump(timing, f)
    if not os.path.exists(path):
        raise ValueError(
            f"{base!r} holds SADAG work from a run that did not finish the "
            "refinement here; delete it to time a fresh run."
        )
    with open(path) as f:
        return json.load(f)


def _done(model_name, setting, seed):
    """Arms with a row of this commit (a rerun after a stop skips them)."""
    if not os.path.exists(_RESULTS.value):
        return set()
    with open(_RESULTS.value) as f:
        rows = json.load(f)
    options = _options()
    return {
        r["arm"]
        for r in rows
        if (r["model"], r["bits"], r["seed"], r["commit"])
        == (model_name, setting, seed, git_commit())
        and r.get("synthesis_options", {}) == options
    }


def run(model_name, setting, seed, train, test):
    model = load_shipped_model(model_name)
    train = (shipped_model_input(train[0], model_name), train[1])
    test = (shipped_model_input(test[0], model_name), test[1])
    real = train[0][: _REAL.value]
    quant_config = ks.QuantConfig(*BITS[setting])
    # One GENIE warm-up per model and seed, shared by the bit settings;
    # images of other code are never reused.
    label = "".join(f"_{k}-{v}" for k, v in sorted(_options().items()))
    root = os.path.join(_WORKDIR.value, git_commit(), f"{model_name}_seed{seed}{label}")
    genie_dir = os.path.join(root, "genie")
    base = os.path.join(root, setting)
    options = _options()
    # SADAG first: its call makes the GENIE warm-up (with the generator
    # states refinement continues from), `q0` and the refinement, and its
    # wall time is the end-to-end cost. The `genie` arm then loads the
    # warm-up; GENIE's own time is that of its fits in the SADAG call.
    arms = sorted(_ARMS.value, key=lambda arm: arm != "sadag")
    if "sadag" not in arms:
        raise ValueError(f"Every arm needs the `sadag` arm's warm-up. Received: {arms}")
    start_model, q0, timing = None, None, {}
    done = _done(model_name, setting, seed)
    for arm in arms:
        if arm in done and arm != "sadag":
            print(
                f"{model_name} {setting} seed {seed} {arm}: row of this commit exists"
            )
            continue
        arm_options = dict(options)
        logs = None
        if arm == "genie":
            method = "genie"
            images, _, _ = _synthesize(model, "genie", genie_dir, seed, **options)
            seconds = timing["genie"]
        elif arm in ABLATIONS:
            method = "sadag"
            arm_options.update(ABLATIONS[arm])
            directory = os.path.join(base, arm)
            os.makedirs(directory, exist_ok=True)
            os.makedirs(genie_dir, exist_ok=True)
            _link(genie_dir, os.path.join(directory, "warmup"))
            shared_q0 = os.path.join(base, "sadag", "q0.keras")
            if arm != "sadag":
                _link(shared_q0, os.path.join(directory, "q0.keras"))
            images, seconds, logs = _synthesize(
                model, "sadag", directory, seed, quant_config, **arm_options
            )
            if arm == "sadag":
                timing = _sadag_timing(base, genie_dir, seconds, logs)
                seconds = timing["sadag"]
            else:
                # Warm-up and q0 are loaded: count them as SADAG made them.
                seconds += timing["sadag"] - timing["sadag_refinement"]
        elif arm == "genie_equal_time":
            method = "genie"
            base_steps = synthesis_config("genie", **options).steps
            arm_options["steps"] = int(
                round(base_steps * timing["sadag"] / timing["genie"])
            )
            # The warm-up's input space, as SADAG's refinement had it: no
            # second inference on the control's clock.
            with open(os.path.join(genie_dir, "input_space.json")) as f:
                space = json.load(f)
            images, seconds, _ = _synthesize(
                model,
                "genie",
                os.path.join(base, arm),
                seed,
                input_mean=space["mean"],
                input_std=space["std"],
                **arm_options,
            )
        else:
            raise ValueError(f"Unknown arm {arm!r}; one of {_ARMS.default}.")
        if arm in done:  # `sadag`, loaded for its warm-up, `q0` and timing
            continue
        if start_model is None:
            warmup, _, _ = _synthesize(model, "genie", genie_dir, seed, **options)
            start_model = ks.quantize_model(model, quant_config)
            ks.calibrate_activations(start_model, warmup)
            ks.set_mode(start_model, "hard")
        if q0 is None and os.path.exists(os.path.join(base, "sadag", "q0.keras")):
            q0 = keras.saving.load_model(
                os.path.join(base, "sadag", "q0.keras"), safe_mode=True
            )
            ks.set_mode(q0, "hard")
        start = time.perf_counter()
        mechanism = _mechanism(model, q0, start_model, images, real)
        row = dict(
            model=model_name,
            bits=setting,
            seed=seed,
            arm=arm,
            commit=git_commit(),
            backend=keras.backend.backend(),
            num_samples=_NUM_SAMPLES.value,
            real_images=len(real),
            synthesis_options=options,
            synthesis_seconds=seconds,
            mechanism=mechanism,
            refinement=None if logs is None else logs.summary(),
            fit_seconds=None if logs is None else logs.seconds,
            configs={
                "synthesis": dataclasses.asdict(
                    synthesis_config(method, **arm_options)
                ),
                "quant_config": dataclasses.asdict(quant_config),
            },
            seconds={"mechanism": time.perf_counter() - start},
        )
        if _CALIBRATE.value:
            calibrated = _calibrate(model, images, quant_config, seed, train, test)
            row["configs"]["reconstruction"] = calibrated.pop("reconstruction")
            row["seconds"]["reconstruct"] = calibrated.pop("reconstruct_seconds")
            row.update(calibrated)
        print(json.dumps({k: row[k] for k in ("model", "bits", "seed", "arm")}))
        print(json.dumps(mechanism["q0"]["mean"]), mechanism["q0"]["head"], flush=True)
        save_row(
            _RESULTS.value,
            row,
            lambda r: json.dumps(
                [r["model"], r["bits"], r["seed"], r["arm"], r.get("synthesis_options")]
            ),
        )


def main(argv):
    del argv
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    for model_name in _MODELS.value:
        for setting in _BITS.value:
            for seed in _SEEDS.value:
                run(model_name, setting, int(seed), train, test)


if __name__ == "__main__":
    app.run(main)
