"""Does the `.tflite` file compute the Keras model? Phone networks, per bit width.

    KERAS_BACKEND=tensorflow python benchmarks/phone_networks.py
    python benchmarks/phone_networks.py --table     # the markdown table of the rows

Zoo and reference models: trained weights, round-to-nearest with steps from
the first 512 real training images, compared on the first `--test_images`
real test images. `keras.applications` models: random weights (nothing can
be downloaded here), 64 random images for steps and comparison; their logits
are near ties, so the output error in steps is the measure there. With
`--batchnorm_statistics=random_images` their BatchNorm statistics are first
re-estimated on 128 other random images: with the initial ones (mean 0,
variance 1) nothing normalizes a random network, and its deep activations
vanish (grids of step 1e-8) or grow until one-step rounding differences
dominate, which no trained network does. Per model
and bit width: top-1 agreement (also up to ties within one output step),
output error, max logit gap, XNNPACK partitions and the ops left outside,
size and single-thread latency against the float `.tflite` file. Rows go to
`benchmarks/results_phone_networks.json` with the commit; a row of another
commit sits beside the old one.
"""

import os
import platform
import tempfile
import time

import keras
import numpy as np
from absl import app
from absl import flags
from provenance import git_commit
from provenance import save_row
from tables import phone_table
from tflite_measure import float_tflite
from tflite_measure import tflite_latency_ms

import keras_sagdq as ks
from keras_sagdq.datasets import load_fashion_mnist
from keras_sagdq.models import load_shipped_model
from keras_sagdq.models import shipped_model_input
from keras_sagdq.models import zoo

_RESULTS = "benchmarks/results_phone_networks.json"
_APPLICATIONS = {
    "MobileNetV3Small": (96, {"include_preprocessing": True}),
    "MobileNetV3Large": (96, {"include_preprocessing": True}),
    "EfficientNetB0": (96, {}),
    "EfficientNetV2B0": (96, {"include_preprocessing": True}),
    "Xception": (96, {}),
    "ResNet50V2": (96, {}),
    "DenseNet121": (96, {}),
    "ConvNeXtTiny": (96, {}),
}
_MODELS = flags.DEFINE_list(
    "models",
    [*zoo.ZOO_MODELS, "resnet20_fashion_mnist", "mobilenet_v2_fashion_mnist"],
    "Zoo, reference or keras.applications model names.",
)
_BITS = flags.DEFINE_list("bits", ["W8A8", "W4A4", "W3A3"], "Bit widths.")
_TEST_IMAGES = flags.DEFINE_integer("test_images", 2000, "Real test images compared.")
_TABLE = flags.DEFINE_bool("table", False, "Print the table of the stored rows.")
_BATCHNORM = flags.DEFINE_enum(
    "batchnorm_statistics",
    "initial",
    ["initial", "random_images"],
    "keras.applications models: keep the initial BatchNorm statistics, or "
    "re-estimate them on 128 other random images.",
)


def _model_and_data(name):
    if name in _APPLICATIONS:
        size, kwargs = _APPLICATIONS[name]
        keras.utils.set_random_seed(0)
        model = getattr(keras.applications, name)(
            input_shape=(size, size, 3), weights=None, **kwargs
        )
        rng = np.random.default_rng(0)
        images = rng.uniform(0, 255, (64, size, size, 3)).astype("float32")
        data = "random weights, 64 random images"
        if _BATCHNORM.value == "random_images":
            other = np.random.default_rng(1).uniform(0, 255, (128, size, size, 3))
            zoo.reestimate_batchnorm(model, other.astype("float32"), batch_size=32)
            data += ", BatchNorm statistics of 128 other random images"
        return model, images, images, data
    x_train, _ = load_fashion_mnist("train")
    x_test, _ = load_fashion_mnist("test")
    model = load_shipped_model(name)
    test = shipped_model_input(x_test[: _TEST_IMAGES.value], name)
    calibration = shipped_model_input(x_train[:512], name)
    return model, calibration, test, f"{len(test)} real test images"


def measure(name, bits, folder):
    model, calibration, test, data = _model_and_data(name)
    w, a = int(bits[1]), int(bits[3])
    start = time.time()
    qmodel = ks.quantize_model(
        model, ks.QuantConfig(w, a), calibration_data=calibration
    )
    path = os.path.join(folder, f"{name}_{bits}.tflite")
    ks.export_tflite(qmodel, path, representative_data=calibration)
    agreement = ks.verify_tflite(path, qmodel, test)
    float_path = float_tflite(model, os.path.join(folder, f"{name}_float.tflite"))
    latency, float_latency = tflite_latency_ms([path, float_path], test[0], runs=100)
    report = qmodel.quantization_report
    return {
        "model": name,
        "bits": bits,
        "commit": git_commit(),
        "backend": keras.backend.backend(),
        "versions": {"keras": keras.__version__, "keras_sagdq": ks.__version__},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "quant_config": dict(vars(ks.QuantConfig(w, a))),
        "calibration": "round to nearest, 512 real training images"
        if name not in _APPLICATIONS
        else "round to nearest, the 64 random images",
        "data": data,
        "input_shape": list(model.inputs[0].shape[1:]),
        "float_layers": [f"{r.name}: {r.reason}" for r in report.float_layers],
        "top1_agreement": agreement.top1_agreement,
        "top1_agreement_within_step": agreement.top1_agreement_within_step,
        "values_within_step": agreement.values_within_step,
        "max_error_steps": agreement.max_error_steps,
        "mean_error_steps": agreement.mean_error_steps,
        "max_logit_gap": agreement.max_logit_gap,
        "partitions": agreement.partitions,
        "ops_outside_delegate": list(agreement.ops_outside_delegate),
        "size_ratio": os.path.getsize(path) / os.path.getsize(float_path),
        "latency_ratio": latency / float_latency,
        "latency_ms": latency,
        "load_average_1min": os.getloadavg()[0],
        "seconds": time.time() - start,
    }


def main(argv):
    del argv
    if _TABLE.value:
        import json

        with open(_RESULTS) as f:
            print(phone_table(json.load(f)))
        return
    with tempfile.TemporaryDirectory() as folder:
        for name in _MODELS.value:
            for bits in _BITS.value:
                try:
                    row = measure(name, bits, folder)
                except Exception as error:  # a row that says what failed
                    row = {
                        "model": name,
                        "bits": bits,
                        "commit": git_commit(),
                        "backend": keras.backend.backend(),
                        "error": f"{type(error).__name__}: {str(error)[:1500]}",
                    }
                row["batchnorm_statistics"] = _BATCHNORM.value
                save_row(
                    _RESULTS,
                    row,
                    ("model", "bits", "commit", "backend", "batchnorm_statistics"),
                    defaults={"batchnorm_statistics": "initial"},
                )
                print({k: v for k, v in row.items() if k != "quant_config"}, flush=True)


if __name__ == "__main__":
    app.run(main)
