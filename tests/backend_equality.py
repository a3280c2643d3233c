"""Cross-backend equality: short deterministic runs compared with stored values.

The accuracy tier's heavy experiments (block reconstruction and GENIE on
the shipped models) run on TensorFlow only. What makes PyTorch trustworthy
there is that it computes the same thing: a few synthesis steps and a few
reconstruction steps, with every random draw fixed, give the same numbers
on both backends. This module runs those steps and reads or writes the
reference values, made on TensorFlow and stored in
`tests/fixtures/backend_equality/`:

    KERAS_BACKEND=tensorflow python -m tests.backend_equality

writes them again (after a deliberate change of the numerics). The stored
settings hold the resolved configs and the shipped models' fingerprints;
a fixture made with other settings is refused with the difference named.
"""

import dataclasses
import hashlib
import json
import os
import sys

import keras
import numpy as np

import keras_sagdq as ks
from keras_sagdq import backend
from keras_sagdq.datasets import fashion_mnist
from keras_sagdq.reconstruction import reconstruction_config
from keras_sagdq.synthesis.probe import BatchNormProbe
from keras_sagdq.synthesis.storage import settings_differences
from keras_sagdq.synthesis.trainer import SynthesisTrainer

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "backend_equality")
RECONSTRUCTION_MODEL = "resnet20_fashion_mnist"
SYNTHESIS_MODEL = "mobilenet_v2_fashion_mnist"
CALIBRATION_IMAGES = 32
TEST_IMAGES = 64
# W2A4: the setting where learned rounding decides the accuracy.
QUANT_CONFIG = ks.QuantConfig(2, 4)
# No QDrop and no mixing of float inputs: their masks come from each
# backend's own random generator, so with them the runs could not agree.
RECONSTRUCTION_CONFIG = reconstruction_config(
    steps=5, batch_size=8, qdrop_probability=0.0, input_mix=0.0
)
# No swing: its offsets are drawn per backend as well. A small generator
# keeps the stored start small (GENIE's is 1.5 M weights at 28x28).
SYNTHESIS_CONFIG = ks.synthesis.synthesis_config(
    "genie", swing=False, latent_dim=16, generator_channels=8
)
SYNTHESIS_BATCH = 8
SYNTHESIS_SEED = 0


def file_digest(name):
    """sha256 of a shipped model's file: the weights the references came from."""
    with open(ks.models.reference_model_path(name), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def settings():
    """Everything the stored values depend on, resolved."""
    return {
        "reconstruction_model": RECONSTRUCTION_MODEL,
        "reconstruction_model_sha256": file_digest(RECONSTRUCTION_MODEL),
        "synthesis_model": SYNTHESIS_MODEL,
        "synthesis_model_sha256": file_digest(SYNTHESIS_MODEL),
        "calibration_images": CALIBRATION_IMAGES,
        "test_images": TEST_IMAGES,
        "quant_config": dataclasses.asdict(QUANT_CONFIG),
        "reconstruction_config": dataclasses.asdict(RECONSTRUCTION_CONFIG),
        "synthesis_config": dataclasses.asdict(SYNTHESIS_CONFIG),
        "synthesis_batch": SYNTHESIS_BATCH,
        "synthesis_seed": SYNTHESIS_SEED,
    }


def _real_images(split, count):
    x, _ = fashion_mnist.load_fashion_mnist(split)
    return ks.models.shipped_model_input(x[:count], RECONSTRUCTION_MODEL)


def _quantizer_values(qmodel):
    """The learned quantities of a quantized model, by layer name."""
    values = {}
    for layer in qmodel.layers:
        if hasattr(layer, "integer_kernel"):
            values[f"{layer.name}/weight_step"] = keras.ops.convert_to_numpy(
                layer.weight_step.value
            )
            values[f"{layer.name}/integer_kernel"] = np.asarray(
                keras.ops.convert_to_numpy(layer.integer_kernel()), np.int8
            )
    for index, quantizer in enumerate(ks.layers.activation_quantizers(qmodel)):
        values[f"activation_{index:03d}_{quantizer.name}/step"] = (
            keras.ops.convert_to_numpy(quantizer.step.value)
        )
    return values


def reconstruction_run():
    """W2A4 ResNet-20: calibrate, reconstruct a few steps; values and logits."""
    model = ks.models.load_shipped_model(RECONSTRUCTION_MODEL)
    images = _real_images("train", CALIBRATION_IMAGES)
    qmodel = ks.quantize_model(model, QUANT_CONFIG)
    ks.calibrate_activations(qmodel, images)
    calibrated = {f"calibrated/{k}": v for k, v in _quantizer_values(qmodel).items()}
    ks.reconstruct(qmodel, model, images, config=RECONSTRUCTION_CONFIG, verbose=0)
    values = {f"reconstructed/{k}": v for k, v in _quantizer_values(qmodel).items()}
    test = _real_images("test", TEST_IMAGES)
    values["logits"] = keras.ops.convert_to_numpy(qmodel(test))
    return {**calibrated, **values}


def synthesis_run(initial_state=None):
    """GENIE's loss on MobileNetV2 and its gradients, at `initial_state`
    (default: this backend's own seeded start).

    Gradients, not images after some steps: Adam's first step moves every
    parameter by about its rate in the sign of its gradient, so a gradient
    near zero, whose sign float rounding decides, moves a pixel as far as
    a large one; images after a few steps differ by percents across
    backends while the gradients agree to float precision.
    """
    model = ks.models.load_shipped_model(SYNTHESIS_MODEL)
    trainer = SynthesisTrainer(
        BatchNormProbe(model),
        SYNTHESIS_CONFIG,
        SYNTHESIS_BATCH,
        input_mean=np.zeros(1, "float32"),
        input_std=np.ones(1, "float32"),
        seed=SYNTHESIS_SEED,
    )
    if initial_state is not None:
        trainer.set_state(initial_state)
    start = trainer.state()
    variables = [trainer.codes, *trainer.generator.trainable_variables]
    loss, grads = backend.value_and_grad(lambda: trainer.genie_loss({}), variables)
    return {
        **{f"start/{k}": v for k, v in start.items()},
        "images": trainer.images(),
        "loss": np.asarray(keras.ops.convert_to_numpy(loss), np.float32),
        **{
            f"gradient/{i:03d}": keras.ops.convert_to_numpy(g)
            for i, g in enumerate(grads)
        },
    }


def load_fixture():
    """The stored settings and arrays.

    Raises:
        FileNotFoundError: if the fixture is missing.
        ValueError: if it was made with other settings (the fields named).
    """
    path = os.path.join(FIXTURE, "settings.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"No fixture at {FIXTURE!r}; {_REMAKE}")
    with open(path) as f:
        stored = json.load(f)
    now = json.loads(json.dumps(settings()))
    detail = settings_differences(stored, now, ignore=("made_with",))
    if detail:
        raise ValueError(f"Stale fixture {FIXTURE!r} ({detail}); {_REMAKE}")
    arrays = {}
    for part in ("reconstruction", "synthesis"):
        with np.load(os.path.join(FIXTURE, f"{part}.npz"), allow_pickle=False) as data:
            arrays[part] = {name: data[name] for name in data.files}
    return stored, arrays


_REMAKE = "make it with `KERAS_BACKEND=tensorflow python -m tests.backend_equality`."


def write_fixture():
    sys.path.insert(0, os.path.join(os.path.dirname(FIXTURE), "..", "..", "benchmarks"))
    from provenance import library_state

    if keras.backend.backend() != "tensorflow":
        sys.exit("The references are TensorFlow's: run with KERAS_BACKEND=tensorflow.")
    os.makedirs(FIXTURE, exist_ok=True)
    np.savez_compressed(
        os.path.join(FIXTURE, "reconstruction.npz"), **reconstruction_run()
    )
    np.savez_compressed(os.path.join(FIXTURE, "synthesis.npz"), **synthesis_run())
    commit, dirty = library_state()
    made_with = {
        "keras_sagdq_commit": commit,
        "keras_sagdq_dirty": dirty,
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
    }
    with open(os.path.join(FIXTURE, "settings.json"), "w") as f:
        json.dump({**settings(), "made_with": made_with}, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"Wrote {FIXTURE}")


if __name__ == "__main__":
    write_fixture()
