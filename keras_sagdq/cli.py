"""The `keras-sagdq` command: a classifier in, a quantized model and TFLite file out.

    keras-sagdq --reference=resnet20_fashion_mnist --eval=fashion_mnist
    keras-sagdq --model=my_model.keras --weight_bits=4 --activation_bits=4 \\
        --output_dir=out/ --eval=test_data.npz

It runs `ks.quantize` (synthetic calibration images, no training data) and
writes into `--output_dir`: `quantized.keras`, `quantized.tflite`,
`report.txt` / `report.json` (per layer, and the summary), and
`synthetic_images.png`. The work in progress is kept under
`--output_dir/work`: rerunning the same command resumes it. Errors are one
line on stderr and a non-zero exit code. `--helpfull` lists every flag.
"""

import dataclasses
import json
import math
import os
import sys
import time

from absl import app
from absl import flags

_MODEL = flags.DEFINE_string("model", None, "A `.keras` image classifier to quantize.")
_REFERENCE = flags.DEFINE_string(
    "reference",
    None,
    "A model shipped with the package instead of --model, e.g. "
    "resnet20_fashion_mnist (see keras_sagdq.models).",
)
_WEIGHT_BITS = flags.DEFINE_integer("weight_bits", 4, "Weight bits, 2..8.")
_ACTIVATION_BITS = flags.DEFINE_integer("activation_bits", 4, "Activation bits, 2..8.")
_METHOD = flags.DEFINE_enum(
    "method",
    None,
    ["sadag", "genie", "zeroq", "gaussian"],
    "How to synthesize calibration images (default: ks.quantize's default).",
)
_NUM_SAMPLES = flags.DEFINE_integer(
    "num_samples", 1024, "Number of synthetic calibration images."
)
_PROFILE = flags.DEFINE_enum(
    "profile",
    "fast",
    ["fast", "paper"],
    "Step counts: minutes on a CPU, or the paper's.",
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of synthesis and reconstruction.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", "keras_sagdq_output", "Folder for the results (and resumable work)."
)
_EVAL = flags.DEFINE_string(
    "eval",
    None,
    "Optional real labelled data for top-1: `fashion_mnist` (the Debian "
    "package's test split, pixels in [0, 1], or a shipped model's input), or "
    "an `.npz` file with arrays `x` (in the model's input space) and `y`.",
)
_TFLITE = flags.DEFINE_bool("tflite", True, "Export an integer `.tflite` file.")
_SYNTHESIS = flags.DEFINE_list(
    "synthesis", [], "SynthesisConfig overrides, e.g. `steps=500,batch_size=64`."
)
_RECONSTRUCTION = flags.DEFINE_list(
    "reconstruction", [], "ReconstructionConfig overrides, e.g. `steps=2000`."
)
_INPUT_MEAN = flags.DEFINE_list(
    "input_mean",
    None,
    "Per-channel mean of the model's input space, e.g. `0` for [-1, 1] inputs or "
    "`127.5` for [0, 255] (default: declared by a Normalization layer, else "
    "inferred from the model).",
)
_INPUT_STD = flags.DEFINE_list(
    "input_std", None, "Per-channel std of the input space, e.g. `0.5` or `64`."
)
_SHARD = flags.DEFINE_string(
    "shard",
    None,
    "This process's part of a synthesis split across processes sharing "
    "--output_dir, as index/count (e.g. 1/4); default: torchrun's RANK / "
    "WORLD_SIZE or TF_CONFIG if set. Shard 0 calibrates and writes the files.",
)
_VERBOSE = flags.DEFINE_integer(
    "verbose", 1, "0: quiet, 1: progress bars, 2: one line per run."
)

_PROGRAM = "keras-sagdq"
_GRID_IMAGES = 64


class UsageError(Exception):
    """Bad command-line input, reported as one line."""


def run_command():
    """Run with the parsed flags; returns the exit code.

    0 on success, 1 on an error (one line on stderr), 130 if interrupted.
    """
    try:
        _run()
    except KeyboardInterrupt:
        print(
            f"{_PROGRAM}: interrupted; rerun the same command to resume.",
            file=sys.stderr,
        )
        return 130
    except (
        UsageError,
        ValueError,
        TypeError,
        OSError,
        FloatingPointError,
        RuntimeError,  # e.g. a written .tflite that does not compute the model
    ) as error:
        message = " ".join(str(error).split())
        print(f"{_PROGRAM}: error: {message}", file=sys.stderr)
        return 1
    return 0


def main():
    """Entry point of the `keras-sagdq` console script."""
    app.run(lambda argv: sys.exit(run_command() if len(argv) == 1 else _extra(argv)))


def _extra(argv):
    print(f"{_PROGRAM}: error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2


def _run():
    from keras_sagdq.config import QuantConfig

    # Checked before anything slow: bits, model, output folder, eval data.
    QuantConfig(_WEIGHT_BITS.value, _ACTIVATION_BITS.value)
    if "LOCAL_RANK" in os.environ:  # torchrun: one process per GPU
        from keras_sagdq import backend

        backend.use_local_accelerator(os.environ["LOCAL_RANK"])
    model, name = _load_model()
    output_dir = _writable_folder(_OUTPUT_DIR.value)
    evaluation = _load_eval(model, name)

    import keras_sagdq as ks
    from keras_sagdq.config import parse_overrides

    result = ks.quantize(
        model,
        weight_bits=_WEIGHT_BITS.value,
        activation_bits=_ACTIVATION_BITS.value,
        method=_METHOD.value,
        num_samples=_NUM_SAMPLES.value,
        profile=_PROFILE.value,
        seed=_SEED.value,
        directory=os.path.join(output_dir, "work"),
        synthesis=parse_overrides(_SYNTHESIS.value) or None,
        reconstruction=parse_overrides(_RECONSTRUCTION.value) or None,
        input_mean=_floats(_INPUT_MEAN),
        input_std=_floats(_INPUT_STD),
        verbose=_VERBOSE.value,
        shard=_SHARD.value,
    )
    if result is None:  # another shard calibrates
        print(f"{name}: this shard's synthesis is done; shard 0 writes the files")
        return
    files = {"quantized model": os.path.join(output_dir, "quantized.keras")}
    result.model.save(files["quantized model"])
    seconds = dict(result.seconds)
    if _TFLITE.value:
        files["tflite"] = os.path.join(output_dir, "quantized.tflite")
        start = time.time()
        low, high, reason = ks.input_range.file_input_range(result.model, result.data)
        ks.export_tflite(
            result.model,
            files["tflite"],
            representative_data=result.data,
            input_range=(low, high),
        )
        seconds["export"] = time.time() - start
        input_range = {"low": low, "high": high, "reason": reason}
    else:
        input_range = None
    files["images"] = ks.save_image_grid(
        result.data[:_GRID_IMAGES], os.path.join(output_dir, "synthetic_images.png")
    )
    top1 = _evaluate(model, result.model, files.get("tflite"), evaluation)
    summary = dict(
        model=name,
        bits=f"W{_WEIGHT_BITS.value}A{_ACTIVATION_BITS.value}",
        calibration=result.method,
        num_samples=len(result.data),
        profile=_PROFILE.value,
        seed=_SEED.value,
        top1=top1,
        eval=_EVAL.value,
        tflite_input_range=input_range,
        seconds=seconds,
        bytes={
            "float weights": 4 * model.count_params(),
            **{k: os.path.getsize(v) for k, v in files.items() if k != "images"},
        },
    )
    files["report"] = os.path.join(output_dir, "report.txt")
    text = _summary_text(summary, files)
    with open(files["report"], "w") as f:
        f.write(text + "\n\n" + str(result.report) + "\n")
    with open(os.path.join(output_dir, "report.json"), "w") as f:
        rows = [_finite(dataclasses.asdict(row)) for row in result.report]
        json.dump(dict(summary, files=files, layers=rows), f, indent=1)
    print(text)


def _floats(flag):
    if flag.value is None:
        return None
    try:
        return [float(v) for v in flag.value]
    except ValueError:
        raise UsageError(
            f"--{flag.name} must be numbers separated by commas. Received: "
            f"--{flag.name}={','.join(flag.value)}"
        ) from None


def _load_model():
    import keras

    if (_MODEL.value is None) == (_REFERENCE.value is None):
        raise UsageError(
            "give exactly one of --model (a .keras file) and --reference (a "
            f"shipped model). Received: --model={_MODEL.value!r}, "
            f"--reference={_REFERENCE.value!r}"
        )
    if _REFERENCE.value is not None:
        from keras_sagdq.models import load_shipped_model

        return load_shipped_model(_REFERENCE.value), _REFERENCE.value
    path = _MODEL.value
    if not os.path.isfile(path):
        raise UsageError(f"no such model file: --model={path!r}")
    if not path.endswith(".keras"):
        raise UsageError(f"--model must be a `.keras` file. Received: --model={path!r}")
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises many types for a bad file.
        raise UsageError(f"cannot load --model={path!r}: {error}") from None
    return model, os.path.basename(path)


def _writable_folder(path):
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".write_test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as error:
        raise UsageError(
            f"cannot write to --output_dir={path!r} ({error.strerror})"
        ) from None
    return path


def _load_eval(model, name):
    """(images, labels) for top-1, or None; a missing data set is not an error."""
    import numpy as np

    if _EVAL.value is None:
        return None
    if _EVAL.value == "fashion_mnist":
        from keras_sagdq.datasets import load_fashion_mnist
        from keras_sagdq.models import shipped_model_input

        try:
            x, y = load_fashion_mnist("test")
        except FileNotFoundError:
            print(
                f"{_PROGRAM}: warning: Fashion-MNIST is not installed (`apt-get "
                "install dataset-fashion-mnist`); quantizing without --eval.",
                file=sys.stderr,
            )
            return None
        if _REFERENCE.value is not None:
            x = shipped_model_input(x, name)
    else:
        try:
            with np.load(_EVAL.value, allow_pickle=False) as data:
                x, y = data["x"], data["y"]
        except (OSError, ValueError, KeyError) as error:
            raise UsageError(
                f"--eval must be `fashion_mnist` or an .npz with arrays `x` and `y` "
                f"({error}). Received: --eval={_EVAL.value!r}"
            ) from None
    expected = tuple(int(d) for d in model.inputs[0].shape[1:])
    if x.shape[1:] != expected or len(x) != len(y):
        raise UsageError(
            f"--eval images must have shape (N, {', '.join(map(str, expected))}) and "
            f"one label each. Received: x {x.shape}, y {y.shape} from "
            f"--eval={_EVAL.value!r}"
        )
    return x.astype(np.float32), np.asarray(y).reshape(-1)


def _evaluate(model, qmodel, tflite_path, evaluation):
    import numpy as np

    if evaluation is None:
        return None
    x, y = evaluation

    def accuracy(logits):
        return round(float(np.mean(np.argmax(logits, -1) == y)), 4)

    top1 = {
        "float": accuracy(model.predict(x, batch_size=500, verbose=0)),
        "quantized": accuracy(qmodel.predict(x, batch_size=500, verbose=0)),
    }
    if tflite_path is not None:
        from keras_sagdq.export import run_tflite

        top1["tflite"] = accuracy(run_tflite(tflite_path, x)[0])
    return top1


def _summary_text(summary, files):
    lines = [
        f"{summary['model']} {summary['bits']}, calibration: {summary['calibration']} "
        f"({summary['num_samples']} images, profile {summary['profile']}, "
        f"seed {summary['seed']})"
    ]
    if summary["top1"]:
        accuracy = ", ".join(f"{k} {100 * v:.2f}%" for k, v in summary["top1"].items())
        lines.append(f"top-1 on {summary['eval']}: {accuracy}")
    if summary["tflite_input_range"]:
        r = summary["tflite_input_range"]
        lines.append(
            f".tflite input range: [{r['low']:.4g}, {r['high']:.4g}] ({r['reason']}; "
            "inputs outside it are clipped)"
        )
    lines.append(
        "time: " + ", ".join(f"{k} {v:.0f} s" for k, v in summary["seconds"].items())
    )
    lines.append(
        "size: "
        + ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in summary["bytes"].items())
    )
    lines += [f"{k}: {v}" for k, v in files.items()]
    return "\n".join(lines)


def _finite(row):
    # JSON has no infinity (an exactly representable layer has infinite SQNR).
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v
        for k, v in row.items()
    }
