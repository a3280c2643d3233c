"""Integer `.tflite` latency against float as the input grows (keras.applications).

    KERAS_BACKEND=tensorflow python benchmarks/export_latency.py
    python benchmarks/export_latency.py --models=mobilenet_v2 --sizes=96,224

The reference models are 28x28: there the delegate's fixed cost per op is a
large part of a 0.3 ms invoke, and MobileNetV2's int8 file is barely faster
than its float one. This measures where int8 starts to pay: a
`keras.applications` model (random weights, offline; latency does not
depend on the weights' values) at each input size, round to nearest with
min/max ranges on 32 uniform images in [-1, 1] (the models' input range),
exported with the library's defaults, against the same model as a float
`.tflite`: size, XNNPACK partitions, median single-image latency on 1 and
2 threads side by side, and the load average. Accuracy is not measured.

Rows are merged into `benchmarks/results_export_latency.json` (a rerun
replaces the row with the same model, size, bits and backend).
"""

import json
import os
import platform
import tempfile

import keras
import numpy as np
from absl import app
from absl import flags
from provenance import git_commit
from provenance import save_row
from tflite_measure import float_tflite
from tflite_measure import latency_pair

import keras_sagdq as ks

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BUILDERS = {
    "mobilenet_v2": keras.applications.MobileNetV2,
    "resnet50": keras.applications.ResNet50,
}
_BITS = {"W8A8": (8, 8), "W4A4": (4, 4)}
_MODELS = flags.DEFINE_list("models", ["mobilenet_v2"], "keras.applications models.")
_SIZES = flags.DEFINE_list("sizes", ["96", "160", "224"], "Input heights and widths.")
_SETTINGS = flags.DEFINE_list("bits", list(_BITS), "Bit settings.")
_RESULTS = flags.DEFINE_string(
    "results",
    os.path.join(_ROOT, "benchmarks", "results_export_latency.json"),
    "JSON results file.",
)


def measure(name, size, setting, folder):
    """One row: export `name` at `size` with `setting`, time it against float."""
    keras.utils.set_random_seed(0)
    model = _BUILDERS[name](weights=None, input_shape=(size, size, 3))
    images = np.random.default_rng(0).uniform(-1, 1, (32, size, size, 3))
    images = images.astype("float32")
    float_path = float_tflite(model, os.path.join(folder, "float.tflite"))
    weight_bits, activation_bits = _BITS[setting]
    config = ks.QuantConfig(weight_bits, activation_bits, weight_range="minmax")
    qmodel = ks.quantize_model(model, config)
    ks.calibrate_activations(qmodel, images, method="minmax", batch_size=8)
    path = ks.export_tflite(
        qmodel, os.path.join(folder, "int8.tflite"), images, input_range=(-1, 1)
    )
    return {
        "model": name,
        "size": size,
        "bits": setting,
        "commit": git_commit(),
        "backend": keras.backend.backend(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "bytes": os.path.getsize(path),
        "float_bytes": os.path.getsize(float_path),
        "partitions": ks.export.delegate_partitions(path),
        **latency_pair(path, float_path, images[0]),
    }


def main(argv):
    del argv
    for name in _MODELS.value:
        for size in map(int, _SIZES.value):
            for setting in _SETTINGS.value:
                with tempfile.TemporaryDirectory() as folder:
                    row = measure(name, size, setting, folder)
                print(json.dumps(row), flush=True)
                save_row(_RESULTS.value, row, ("model", "size", "bits", "backend"))


if __name__ == "__main__":
    app.run(main)
