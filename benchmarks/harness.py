"""Benchmark harness: quantize a reference model, evaluate on the real test split.

    KERAS_BACKEND=tensorflow python benchmarks/harness.py
    KERAS_BACKEND=torch python benchmarks/harness.py \
        --models=resnet20_fashion_mnist --quick

Each row: a reference model, a bit setting, a calibration source and a
method; it records top-1 accuracy on the 10 000 Fashion-MNIST test images,
the seconds of each stage and the process's peak resident memory. Results
are merged into a JSON file (a rerun replaces rows with the same key) and the
markdown table in docs/benchmarks.md is rewritten from every
`benchmarks/results*.json`.

Calibration sources: `real` (the first N training images, never test data),
`gaussian` (N(0, 1) noise in the model's standardized input space, i.e.
Fashion-MNIST pixel mean + std * noise), and `genie` / `zeroq` (images
synthesized from the model's BatchNorm statistics by `ks.synthesize`, cached
under `--synthetic_dir` so a rerun reuses them). Methods:
`rtn` (round to nearest; min/max ranges for weights and activations) and
`reconstruct` (Lp-searched initial ranges, then GENIE-M block
reconstruction with the chosen profile).
"""

import dataclasses
import glob
import hashlib
import itertools
import json
import os
import platform
import resource
import time

import keras
import numpy as np
from absl import app
from absl import flags
from provenance import git_commit
from provenance import library_state
from provenance import newest
from provenance import save_row
from tflite_measure import float_tflite
from tflite_measure import latency_pair
from tflite_measure import size_breakdown

import keras_sagdq as ks
from keras_sagdq.config import parse_overrides
from keras_sagdq.datasets import load_fashion_mnist
from keras_sagdq.models import REFERENCE_MODELS
from keras_sagdq.models import load_shipped_model
from keras_sagdq.models import shipped_model_input
from keras_sagdq.models import zoo
from keras_sagdq.synthesis.synthesize import SADAG_FIELDS

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BITS = {"W8A8": (8, 8), "W4A4": (4, 4), "W3A3": (3, 3), "W2A4": (2, 4)}

_MODELS = flags.DEFINE_list(
    "models",
    list(REFERENCE_MODELS),
    "Reference models and/or zoo models (keras_sagdq/models/zoo.py).",
)
_SETTINGS = flags.DEFINE_list("bits", list(BITS), "Bit settings.")
_SOURCES = flags.DEFINE_list(
    "calibration",
    ["real", "gaussian"],
    "Calibration sources: real, gaussian, genie, zeroq, sadag (one synthesis per "
    "bit setting; its warm-up is the genie directory of the same seed).",
)
_SYNTHESIS_PROFILE = flags.DEFINE_enum(
    "synthesis_profile", "fast", ["fast", "paper"], "Synthesis profile."
)
_SYNTHESIS_OPTIONS = flags.DEFINE_list(
    "synthesis_options", [], "SynthesisConfig overrides as key=value, e.g. steps=200."
)
_SYNTHETIC_DIR = flags.DEFINE_string(
    "synthetic_dir",
    os.path.join(_ROOT, "benchmarks", "synthetic"),
    "Where synthesized batches are cached (one folder per model and settings).",
)
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1024, "Calibration images.")
_SEEDS = flags.DEFINE_list(
    "seeds",
    ["0"],
    "Seeds: each seeds the synthesis (Gaussian noise, GENIE) and the "
    "reconstruction (QDrop, batch order); one row per seed.",
)
_METHODS = flags.DEFINE_list(
    "methods",
    ["rtn"],
    "rtn (round to nearest, min/max ranges) and/or reconstruct (GENIE-M).",
)
_PROFILE = flags.DEFINE_enum(
    "profile", "fast", ["fast", "paper"], "Reconstruction profile."
)
_OPTIONS = flags.DEFINE_list(
    "options",
    [],
    "ReconstructionConfig overrides as key=value, e.g. steps=500,rounding_lr=0.01.",
)
_QUANT_OPTIONS = flags.DEFINE_list(
    "quant_options",
    [],
    "QuantConfig overrides as key=value, e.g. int8_tensors=True; recorded in the "
    "row's method label.",
)
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir",
    None,
    "If set, export each quantized model to an integer .tflite there and evaluate "
    "the file (top-1, size, single-image latency next to the float .tflite).",
)
_EXPORT_OPTIONS = flags.DEFINE_list(
    "export_options",
    [],
    "export_tflite overrides as key=value, e.g. int8_io=True,low_bit_weights=True; "
    "recorded in the row's tflite entry and the file's name.",
)
_MODELS_DIR = flags.DEFINE_string(
    "models_dir",
    None,
    "If set, save each quantized model there as "
    "<model>_<bits>_<calibration>_<method>.keras, "
    "so that exports can be measured again without quantizing again.",
)
_TABLE_ONLY = flags.DEFINE_bool(
    "table_only", False, "Only rewrite the table from the JSON files."
)
_VALIDATION = flags.DEFINE_integer(
    "validation",
    0,
    "If > 0, also record top-1 on the last N training images (`val_top1`): a "
    "held-out slice for choosing settings, never used for calibration (real "
    "calibration takes the first images) and never the test split.",
)
_QUICK = flags.DEFINE_bool(
    "quick", False, "Smoke test: 1000 test images, 128 calibration images."
)
_RESULTS = flags.DEFINE_string(
    "results", os.path.join(_ROOT, "benchmarks", "results.json"), "JSON results file."
)
_TABLE = flags.DEFINE_string(
    "table", os.path.join(_ROOT, "docs", "benchmarks.md"), "Markdown table to rewrite."
)


def load_model(name):
    """A reference or zoo model, and the function mapping [0, 1] pixels to its input."""
    return load_shipped_model(name), lambda x: shipped_model_input(x, name)


def synthetic_directory(model_name, source, options, seed):
    """The cache folder of one model's synthesized images.

    Keyed by the resolved synthesis config (every field), the imported
    library's commit and the backend, not only by the overrides: images
    made by other code or settings are never reused under a row's commit.
    """
    label = options_label(options).replace(", ", "_").replace("=", "-")
    commit, dirty = library_state()
    config = dataclasses.asdict(ks.synthesis.synthesis_config(source, **options))
    identity = json.dumps(
        [commit, dirty, keras.backend.backend(), config], sort_keys=True, default=str
    )
    digest = hashlib.sha1(identity.encode()).hexdigest()[:10]
    return os.path.join(
        _SYNTHETIC_DIR.value, f"{model_name}_{source}_{label}_seed{seed}_{digest}"
    )


def genie_options(options):
    """`options` without the fields only SADAG reads."""
    return {k: v for k, v in options.items() if k not in SADAG_FIELDS}


def calibration_images(
    source, num_samples, model, model_name, options, seed=0, to_input=None, setting=None
):
    """Calibration images and seconds per synthesis step (None if not synthesized).

    `setting` (a key of `BITS`) is needed by `sadag`, whose images depend on it.
    """
    if source == "real":
        images, _ = load_fashion_mnist("train")
        return (to_input or (lambda x: x))(images[:num_samples]), None
    if source == "gaussian":
        return ks.synthesize(model, num_samples, method="gaussian", seed=seed), None
    if source in ("genie", "zeroq", "sadag"):
        if source == "genie":
            options = genie_options(options)
        directory = synthetic_directory(model_name, source, options, seed)
        extra = {}
        if source == "sadag":
            # One directory per bit setting; the warm-up is the GENIE
            # directory of the same seed, shared by every setting.
            directory = f"{directory}_{setting}"
            warmup = synthetic_directory(
                model_name, "genie", genie_options(options), seed
            )
            os.makedirs(warmup, exist_ok=True)
            os.makedirs(directory, exist_ok=True)
            link = os.path.join(directory, "warmup")
            if not os.path.lexists(link):
                os.symlink(os.path.abspath(warmup), link)
            extra["quant_config"] = ks.QuantConfig(*BITS[setting])
        timing_path = os.path.join(directory, "timing.json")
        existing = len(glob.glob(os.path.join(directory, "batch_*.npy")))
        start = time.time()
        images = ks.synthesize(
            model,
            num_samples,
            method=source,
            seed=seed,
            directory=directory,
            verbose=2,
            **options,
            **extra,
        )
        seconds = time.time() - start
        config = ks.synthesis.synthesis_config(source, **options)
        made = len(glob.glob(os.path.join(directory, "batch_*.npy"))) - existing
        if made:
            # Batches synthesized by this call (not loaded): record the time per step.
            with open(timing_path, "w") as f:
                # SADAG: the seconds include the warm-up and q0 when they
                # were made by this call too; steps are refinement steps.
                steps = config.refine_steps if source == "sadag" else config.steps
                json.dump(
                    {
                        "seconds": seconds,
                        "steps": made * steps,
                        "backend": keras.backend.backend(),
                    },
                    f,
                )
        # No timing for batches made by another call (e.g. a GENIE directory
        # filled as SADAG's warm-up).
        if not os.path.exists(timing_path):
            return images, None
        with open(timing_path) as f:
            timing = json.load(f)
        return images, timing
    raise ValueError(f"Unknown calibration source. Received: calibration={source!r}")


def top1(model, images, labels, batch_size=500):
    logits = model.predict(images, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def tflite_outputs(path, images):
    outputs, _ = ks.export.run_tflite(path, images)
    return outputs


def export_row(qmodel, model, model_name, setting, images, x_test, y_test):
    """Export `qmodel`, and measure the file against the float .tflite."""
    os.makedirs(_EXPORT_DIR.value, exist_ok=True)
    float_path = os.path.join(_EXPORT_DIR.value, f"{model_name}_float.tflite")
    if not os.path.exists(float_path):
        float_tflite(model, float_path)
    options = parse_overrides(_EXPORT_OPTIONS.value)
    suffix = "".join(f"_{k}-{v}" for k, v in sorted(options.items()))
    path = os.path.join(
        _EXPORT_DIR.value, f"{model_name}_{setting.lower()}{suffix}.tflite"
    )
    start = time.time()
    check_error = None
    try:
        ks.export_tflite(qmodel, path, representative_data=images[:256], **options)
    except RuntimeError as error:
        # The file failed export_tflite's own check against the Keras model:
        # record why, and measure the file anyway (written without the check).
        check_error = str(error)
        print(f"export check failed: {check_error}", flush=True)
        options = {**options, "min_top1_agreement": None}
        ks.export_tflite(qmodel, path, representative_data=images[:256], **options)
    seconds = time.time() - start
    lite = np.argmax(tflite_outputs(path, x_test), -1)
    keras_classes = np.argmax(qmodel.predict(x_test, batch_size=500, verbose=0), -1)
    row = {
        "top1": float(np.mean(lite == y_test)),
        "agreement": float(np.mean(lite == keras_classes)),
        "export_seconds": seconds,
        "bytes": os.path.getsize(path),
        "float_bytes": os.path.getsize(float_path),
        "partitions": ks.export.delegate_partitions(path),
        "input_range": list(ks.export.input_range_of(path)),
        "options": options,
        "size": size_breakdown(path),
    }
    if check_error is not None:
        row["export_check_error"] = check_error
    # Side by side, one thread then two (median of 500 invokes, 20 warm-up),
    # with the load average: only near 0 is it an idle-machine number.
    row.update(latency_pair(path, float_path, x_test[0]))
    return row


def peak_memory_mb():
    # ru_maxrss is in KiB on Linux: the peak of the whole process so far.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def quantize_with(method, model, setting, images, options, quant_options=None):
    """Quantize `model` with one method; returns (qmodel, seconds per stage, config).

    `config` is the resolved `QuantConfig` as a dict (every field).
    """
    weight_bits, activation_bits = BITS[setting]
    quant_options = quant_options or {}
    seconds = {}
    start = time.time()
    if method == "rtn":
        config = ks.QuantConfig(
            weight_bits, activation_bits, **{"weight_range": "minmax", **quant_options}
        )
        qmodel = ks.quantize_model(model, config)
        ks.calibrate_activations(
            qmodel, images, method="minmax", max_samples=len(images), batch_size=128
        )
        seconds["quantize"] = time.time() - start
    elif method == "reconstruct":
        config = ks.QuantConfig(weight_bits, activation_bits, **quant_options)
        qmodel = ks.quantize_model(model, config)
        ks.calibrate_activations(
            qmodel, images, max_samples=len(images), batch_size=128
        )
        seconds["quantize"] = time.time() - start
        start = time.time()
        histories = ks.reconstruct(qmodel, model, images, verbose=0, **options)
        seconds["reconstruct"] = time.time() - start
        total_steps = sum(len(h.epoch) * h.params["steps"] for h in histories)
        seconds["steps_per_s"] = total_steps / seconds["reconstruct"]
    else:
        raise ValueError(f"Unknown method. Received: methods={method!r}")
    return qmodel, seconds, dataclasses.asdict(config)


def run_rows(
    model_name,
    settings,
    sources,
    methods,
    num_samples,
    quick,
    options,
    synthesis_options,
    seeds=(0,),
):
    x_test, y_test = load_fashion_mnist("test")
    quant_options = parse_overrides(_QUANT_OPTIONS.value)
    x_val = y_val = None
    if _VALIDATION.value:
        x_train, y_train = load_fashion_mnist("train")
        if num_samples > len(x_train) - _VALIDATION.value:
            raise ValueError(
                "Real calibration images would overlap the validation slice. "
                f"Received: num_samples={num_samples}, validation={_VALIDATION.value}"
            )
        x_val, y_val = x_train[-_VALIDATION.value :], y_train[-_VALIDATION.value :]
    if quick:
        x_test, y_test = x_test[:1000], y_test[:1000]
        num_samples = min(num_samples, 128)
        options = dict(options, steps=min(options.get("steps", 50), 50))
        synthesis_options = dict(
            synthesis_options, steps=min(synthesis_options.get("steps", 20), 20)
        )
    model, to_input = load_model(model_name)
    x_test = to_input(x_test)
    if x_val is not None:
        x_val = to_input(x_val)
    common = dict(
        model=model_name,
        commit=git_commit(),
        backend=keras.backend.backend(),
        test_images=len(x_test),
        quick=quick,
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs",
    )
    start = time.time()
    rows = [
        dict(
            common,
            seed=0,
            bits="FP",
            calibration="-",
            method="float",
            top1=top1(model, x_test, y_test),
            seconds={"evaluate": time.time() - start},
            peak_mb=peak_memory_mb(),
        )
    ]
    print(rows[-1])
    save_row(_RESULTS.value, rows[-1], row_key)
    cache = {}
    for seed, source, method, setting in itertools.product(
        seeds, sources, methods, settings
    ):
        key = (seed, source, setting if source == "sadag" else None)
        if key not in cache:
            cache = {
                key: calibration_images(
                    source,
                    num_samples,
                    model,
                    model_name,
                    synthesis_options,
                    seed=seed,
                    to_input=to_input,
                    setting=setting,
                )
            }
        images, timing = cache[key]
        used_options = (
            genie_options(synthesis_options) if source == "genie" else synthesis_options
        )
        label = f"{source} ({len(images)})"
        if source in ("genie", "zeroq", "sadag"):
            label = f"{source} ({len(images)}, {options_label(used_options)})"
        qmodel, seconds, quant_config = quantize_with(
            method, model, setting, images, dict(options, seed=seed), quant_options
        )
        start = time.time()
        accuracy = top1(qmodel, x_test, y_test)
        seconds["evaluate"] = time.time() - start
        validation = {} if x_val is None else {"val_top1": top1(qmodel, x_val, y_val)}
        if timing:
            seconds = {
                "synthesize": timing["seconds"],
                "synthesis_s_per_step": timing["seconds"] / timing["steps"],
                **seconds,
            }
        name = method if method == "rtn" else f"{method} ({options_label(options)})"
        if quant_options:
            name += f" [{options_label(quant_options)}]"
        rows.append(
            dict(
                common,
                seed=seed,
                bits=setting,
                calibration=label,
                method=name,
                top1=accuracy,
                **validation,
                seconds=seconds,
                peak_mb=peak_memory_mb(),
                # Every step count and rate the row depends on.
                configs=dict(
                    row_configs(source, method, used_options, options),
                    quant_options=quant_options,
                ),
                # The resolved QuantConfig, every field (defaults change).
                quant_config=quant_config,
            )
        )
        if _MODELS_DIR.value:
            os.makedirs(_MODELS_DIR.value, exist_ok=True)
            qmodel.save(
                os.path.join(
                    _MODELS_DIR.value,
                    f"{model_name}_{setting}_{source}_{method}_seed{seed}.keras",
                )
            )
        if _EXPORT_DIR.value:
            rows[-1]["tflite"] = export_row(
                qmodel, model, model_name, setting, images, x_test, y_test
            )
        print(rows[-1], flush=True)
        save_row(_RESULTS.value, rows[-1], row_key)
    return rows


def options_label(options):
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items()))


def row_configs(source, method, synthesis_options, options):
    """The full synthesis and reconstruction configs behind a row (None if unused)."""
    configs = {"synthesis": None, "reconstruction": None}
    if source in ("genie", "zeroq", "sadag"):
        config = ks.synthesis.synthesis_config(source, **synthesis_options)
        configs["synthesis"] = dataclasses.asdict(config)
    if method == "reconstruct":
        config = ks.reconstruction.reconstruction_config(**options)
        configs["reconstruction"] = dataclasses.asdict(config)
    return configs


def row_key(row):
    return (
        row["model"],
        row["backend"],
        row["bits"],
        row["method"],
        row["calibration"],
        row["quick"],
        row.get("seed", 0),
        # Files exported with non-default options are rows of their own.
        export_label(row),
    )


def export_label(row):
    options = row.get("tflite", {}).get("options") or {}
    return " {" + options_label(options) + "}" if options else ""


def write_table(results, path):
    """Rewrite the results, export and zoo sections of the markdown file."""
    for name, lines in table_sections(results).items():
        replace_section(path, name, lines)


def table_sections(results):
    """`{section name: markdown lines}` of docs/benchmarks.md from accuracy rows."""
    sections = {}
    order = {name: i for i, name in enumerate(["FP", *BITS])}
    # Of rows with one key, the one measured with the newest code is shown
    # (file names say nothing about which is newer).
    every = results
    results = sorted(
        newest(every, row_key),
        key=lambda r: (
            r["model"],
            r["backend"],
            r["bits"] != "FP",
            r["method"],
            r["calibration"],
            order.get(r["bits"], 99),
        ),
    )
    lines = [
        "| model | backend | bits | method | calibration | seed | top-1 % | Δ vs FP | "
        "seconds (stages) | peak MB | commit |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    fp = {
        (r["model"], r["backend"], r["quick"]): r["top1"]
        for r in results
        if r["bits"] == "FP"
    }
    for r in results:
        if r["quick"]:
            continue
        base = fp.get((r["model"], r["backend"], r["quick"]))
        delta = (
            ""
            if r["bits"] == "FP" or base is None
            else f"{100 * (r['top1'] - base):+.2f}"
        )
        stages = ", ".join(
            f"{k} {v:.1f}"
            for k, v in r["seconds"].items()
            if k not in ("steps_per_s", "synthesis_s_per_step")
        )
        if "synthesis_s_per_step" in r["seconds"]:
            stages += f" ({r['seconds']['synthesis_s_per_step']:.2f} s/synthesis step)"
        if "steps_per_s" in r["seconds"]:
            stages += f" ({r['seconds']['steps_per_s']:.0f} steps/s)"
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['bits']} | {r['method']} | "
            f"{r['calibration']} | {r.get('seed', 0)} "
            f"| {100 * r['top1']:.2f} | {delta} | {stages} | {r['peak_mb']:.0f} | "
            f"{r.get('commit', '-')} |"
        )
    superseded = len(every) - len(results)
    lines.append("")
    lines.append(
        f"{superseded} older rows of these keys (other commits or configs) stay in "
        "the results files, superseded by the rows shown."
    )
    sections["results"] = lines
    exported = [r for r in results if r.get("tflite") and not r["quick"]]
    lines = [
        "| model | backend | bits | method | calibration | Keras top-1 % "
        "| .tflite top-1 % | Δ | agreement % | .tflite KB | float KB "
        "| size ratio | int8 ms | float ms | int8 / float, 1 thread | 2 threads "
        "| partitions | commit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in exported:
        t = r["tflite"]
        agreement = f"{100 * t['agreement']:.2f}" if "agreement" in t else "-"
        if "export_check_error" in t:
            agreement += " (failed the export check)"
        two = (
            f"{t['latency_ms_2_threads'] / t['float_latency_ms_2_threads']:.2f}"
            if "latency_ms_2_threads" in t
            else "-"
        )
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['bits']} "
            f"| {r['method']}{export_label(r)} "
            f"| {r['calibration']} | {100 * r['top1']:.2f} "
            f"| {100 * t['top1']:.2f} | {100 * (t['top1'] - r['top1']):+.2f} "
            f"| {agreement} | {t['bytes'] / 1024:.0f} "
            f"| {t['float_bytes'] / 1024:.0f} | {t['float_bytes'] / t['bytes']:.2f}x "
            f"| {t['latency_ms']:.3f} | {t['float_latency_ms']:.3f} "
            f"| {t['latency_ms'] / t['float_latency_ms']:.2f} | {two} "
            f"| {t.get('partitions', '-')} | {r.get('commit', '-')} |"
        )
    sections["export"] = lines
    sections["zoo"] = zoo_lines(results)
    return sections


def accuracy_rows(folder):
    """The accuracy rows of every `results*.json` in `folder`, file by file."""
    every = []
    for path in sorted(glob.glob(os.path.join(folder, "results*.json"))):
        with open(path) as f:
            # Only accuracy rows (other scripts' files have other fields).
            every.extend(r for r in json.load(f) if "bits" in r and "method" in r)
    return every


def zoo_lines(results):
    """One line per zoo model and bit setting: every calibration side by side."""
    rows = [r for r in results if r["model"] in zoo.ZOO_MODELS and not r["quick"]]

    def cell(model, bits, method, source, tflite=False):
        for r in rows:
            if (
                (r["model"], r["bits"]) == (model, bits)
                and r["method"].startswith(method)
                and r["calibration"].startswith(source)
            ):
                if tflite:
                    return r.get("tflite", {}).get("top1"), r.get("commit", "-")
                return r["top1"], r.get("commit", "-")
        return None, None

    def text(value):
        return "" if value is None else f"{100 * value:.2f}"

    lines = [
        "| model (FP) | bits | RTN real | RTN Gaussian | RTN GENIE | recon. real | "
        "recon. GENIE "
        "| GENIE − real | .tflite (recon. GENIE) | file − Keras | commit |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in zoo.ZOO_MODELS:
        fp, _ = cell(model, "FP", "float", "-")
        for bits in BITS:
            values = {
                "rtn_real": cell(model, bits, "rtn", "real")[0],
                "rtn_gauss": cell(model, bits, "rtn", "gaussian")[0],
                "rtn_genie": cell(model, bits, "rtn", "genie")[0],
                "rec_real": cell(model, bits, "reconstruct", "real")[0],
            }
            rec_genie, commit = cell(model, bits, "reconstruct", "genie")
            if all(v is None for v in values.values()) and rec_genie is None:
                continue
            lite, _ = cell(model, bits, "reconstruct", "genie", tflite=True)
            gap = (
                None
                if rec_genie is None or values["rec_real"] is None
                else rec_genie - values["rec_real"]
            )
            file_gap = None if lite is None or rec_genie is None else lite - rec_genie
            gap_text = "" if gap is None else f"{100 * gap:+.2f}"
            file_text = "" if file_gap is None else f"{100 * file_gap:+.2f}"
            lines.append(
                f"| {model} ({text(fp)}) | {bits} | {text(values['rtn_real'])} "
                f"| {text(values['rtn_gauss'])} | {text(values['rtn_genie'])} | "
                f"{text(values['rec_real'])} "
                f"| {text(rec_genie)} | {gap_text} | {text(lite)} | {file_text} | "
                f"{commit or '-'} |"
            )
    return lines


def replace_section(path, name, lines):
    """Replace what stands between `<!-- name:begin -->` and `<!-- name:end -->`."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if begin not in text:
        text += f"\n{begin}\n{end}\n"
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    with open(path, "w") as f:
        f.write(head + begin + "\n" + "\n".join(lines) + "\n" + end + tail)


def main(argv):
    del argv
    for setting in _SETTINGS.value:
        if setting not in BITS:
            raise ValueError(
                f"Unknown bit setting; choose from {list(BITS)}. Received: "
                f"bits={setting!r}"
            )
    models = [] if _TABLE_ONLY.value else _MODELS.value
    options = {"profile": _PROFILE.value}
    options.update(parse_overrides(_OPTIONS.value))
    synthesis_options = {
        "profile": _SYNTHESIS_PROFILE.value,
        **parse_overrides(_SYNTHESIS_OPTIONS.value),
    }
    for name in models:
        # Each row is saved as it finishes (save_row).
        run_rows(
            name,
            _SETTINGS.value,
            _SOURCES.value,
            _METHODS.value,
            _NUM_SAMPLES.value,
            _QUICK.value,
            options,
            synthesis_options,
            seeds=[int(seed) for seed in _SEEDS.value],
        )
    # The table shows every results*.json beside this one (parallel runs each
    # write their own file).
    write_table(accuracy_rows(os.path.dirname(_RESULTS.value)), _TABLE.value)
    print(
        f"wrote {_TABLE.value}"
        if _TABLE_ONLY.value
        else f"wrote {_RESULTS.value} and {_TABLE.value}"
    )


if __name__ == "__main__":
    app.run(main)
