"""`ks.quantize`: synthesize calibration images, quantize, calibrate, in one call."""

import dataclasses
import os
import time

import keras
import numpy as np

from keras_sagdq.config import QuantConfig
from keras_sagdq.graph import quantize_model
from keras_sagdq.graph.rewrite import refresh_weight_sqnr
from keras_sagdq.reconstruction import ReconstructionConfig
from keras_sagdq.reconstruction import reconstruct
from keras_sagdq.reconstruction import reconstruction_config
from keras_sagdq.synthesis import SynthesisConfig
from keras_sagdq.synthesis import synthesize
from keras_sagdq.synthesis.probe import check_model
from keras_sagdq.synthesis.sharding import Shard
from keras_sagdq.synthesis.sharding import resolve_shard
from keras_sagdq.synthesis.synthesize import METHODS
from keras_sagdq.synthesis.synthesize import synthesis_config

# The method used when neither `method` nor `images` is given.
DEFAULT_METHOD = "genie"
_DEFAULT_BITS = 4


@dataclasses.dataclass
class QuantizationResult:
    """What `ks.quantize` returns.

    Attributes:
        model: the calibrated quantized model (fake-quant Keras model; its
            `predict` gives the same kind of output as the float model's).
        data: the calibration images, float32 `(N, H, W, C)` in the model's
            input space (synthetic, or the `images` given).
        report: `QuantizationReport`, one row per layer of the float model:
            quantized / folded / kept float and why, bits, and the SQNR of
            the final (learned-rounding) weights against the float weights.
        method: how `data` was made: a synthesis method, or `"images"`.
        quant_config: the `QuantConfig` used.
        seconds: wall seconds per stage: `"synthesis"`, `"quantization"`,
            `"reconstruction"`.
        histories: `{"synthesis": [...], "reconstruction": [...]}`, the
            logs of each `fit` (one per synthesized batch, one per block)
            run by this call, as dicts of per-epoch lists like
            `History.history`; work loaded from `directory` has none.

    Example:

    >>> result = ks.quantize(model, num_samples=8, verbose=0)
    >>> sorted(result.seconds)
    ['quantization', 'reconstruction', 'synthesis']
    """

    model: keras.Model
    data: np.ndarray
    report: object
    method: str
    quant_config: QuantConfig
    seconds: dict
    histories: dict

    def summary(self):
        """A few lines: method, bits, layer counts, time per stage."""
        counts = {
            status: len(self.report.with_status(status))
            for status in ("quantized", "folded", "float")
        }
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.items())
        return "\n".join(
            [
                f"{_bits_label(self.quant_config)}, calibration: {self.method} "
                f"({len(self.data)} images)",
                "layers: " + ", ".join(f"{n} {s}" for s, n in counts.items()),
                f"time: {stages}",
            ]
        )


def quantize(
    model,
    weight_bits=None,
    activation_bits=None,
    method=None,
    num_samples=1024,
    profile="fast",
    seed=0,
    directory=None,
    images=None,
    synthesis=None,
    reconstruction=None,
    quant_config=None,
    input_mean=None,
    input_std=None,
    verbose="auto",
    callbacks=None,
    shard=None,
):
    """Quantize a trained image classifier without its training data.

    Three stages: synthesize `num_samples` calibration images from the
    model's BatchNorm statistics (`ks.synthesize`), make the quantized twin
    (`ks.quantize_model`), and calibrate it by block reconstruction on the
    images (`ks.reconstruct`). Users who have a few real images pass them as
    `images` and no synthesis runs. `model` is not modified.

    With `directory`, every stage saves its progress as it goes (synthesized
    batches under `synthetic/`, reconstructed blocks under
    `reconstruction/`); rerunning the same call continues where an
    interrupted one stopped and gives the same model.

    Args:
        model: a trained Sequential or Functional image classifier with
            BatchNormalization layers.
        weight_bits: weight bits of the inner layers, 2..8 (default 4).
        activation_bits: activation bits of the inner layers, 2..8
            (default 4).
        method: how to make the calibration images: `"genie"` (the
            default), `"sadag"`, `"zeroq"` or `"gaussian"`; must be left
            None when `images` is given.
        num_samples: number of synthetic images.
        profile: `"fast"` (minutes on a CPU) or `"paper"` (the published
            step counts); the preset of both synthesis and reconstruction
            unless `synthesis` / `reconstruction` give a config.
        seed: seed of synthesis and reconstruction.
        directory: optional folder where progress is saved and resumed from.
        images: optional real calibration images `(N, H, W, C)` in the
            model's input space, used instead of synthesis.
        synthesis: a `SynthesisConfig`, or a dict of its fields that
            replace those of the `profile` preset (e.g. `{"steps": 500}`).
        reconstruction: a `ReconstructionConfig`, or a dict of overrides.
        quant_config: a `QuantConfig` for conventions beyond the two bit
            widths (first/last layers, `skip_layers`, ...); its bits are
            used, and `weight_bits` / `activation_bits`, if given, must
            agree with them.
        input_mean: per-channel mean of the model's input space, for
            synthesis (default: declared by a `Normalization` layer, else
            inferred; see `ks.synthesize`).
        input_std: per-channel std of the input space; as `input_mean`.
        verbose: verbosity of every stage (0, 1, 2 or `"auto"`).
        callbacks: Keras callbacks passed to every `fit` (each synthesized
            batch and each reconstructed block).
        shard: split the synthesis across processes sharing `directory`
            (see `ks.synthesize`); default: the launcher's (`torchrun`'s
            `RANK` / `WORLD_SIZE`, or `TF_CONFIG`), else none. Shard 0
            then calibrates; the others return None once the images are
            all made.

    Returns:
        A `QuantizationResult` (`.model`, `.data`, `.report`, `.seconds`,
        `.histories`), or None on a shard other than 0.

    Raises:
        TypeError: for a model that is not a Sequential or Functional
            `keras.Model`, or configs of the wrong class.
        ValueError: for bits out of range, an unknown method or profile,
            `method` together with `images`, images of the wrong shape, a
            model without BatchNormalization, or a `directory` holding
            progress made with other settings.
        FloatingPointError: if synthesis produces NaN or infinite values.

    Example:

    >>> model = ks.models.load_reference_model("resnet20_fashion_mnist")
    >>> result = ks.quantize(model, weight_bits=4, activation_bits=4,
    ...                      num_samples=256, directory="runs/resnet20_w4a4")
    >>> print(result.report)
    >>> ks.export_tflite(result.model, "resnet20_w4a4.tflite",
    ...                  representative_data=result.data)

    Reference:
        - [Jeon et al., 2023. GENIE](https://arxiv.org/abs/2212.04780)
        - [Dung et al., 2024. Sharpness-Aware Data Generation for Zero-shot
          Quantization](https://arxiv.org/abs/2510.07018)
    """
    check_model(model)
    quant_config = _quant_config(quant_config, weight_bits, activation_bits)
    if images is not None:
        if method is not None:
            raise ValueError(
                "Pass either `method` (to synthesize calibration images) or "
                f"`images` (real ones), not both. Received: method={method!r}"
            )
        method = "images"
        images = _checked_images(images, model)
    elif method is None:
        method = DEFAULT_METHOD
    elif method not in METHODS:
        raise ValueError(
            f"`method` must be one of {METHODS}. Received: method={method!r}"
        )
    # Resolved here too: whether this process calibrates depends on it.
    shard = resolve_shard(shard) if images is None else Shard()
    synthesis_cfg = _synthesis_config(method, profile, synthesis)
    reconstruction_cfg = _config(
        reconstruction,
        ReconstructionConfig,
        "reconstruction",
        lambda overrides: reconstruction_config(profile, **overrides),
    )
    synthesis_logs, reconstruction_logs = _Logs(), _Logs()
    seconds = {}

    start = time.time()
    if images is None:
        if verbose:
            print(f"[1/3] Synthesizing {num_samples} calibration images ({method})")
        extra = {}
        if method == "sadag":
            extra["quant_config"] = quant_config
        if synthesis_cfg is not None:
            extra["config"] = synthesis_cfg
        images = synthesize(
            model,
            num_samples,
            method=method,
            seed=seed,
            directory=_subdirectory(directory, "synthetic"),
            input_mean=input_mean,
            input_std=input_std,
            verbose=verbose,
            callbacks=[synthesis_logs, *(callbacks or [])],
            shard=shard,
            **extra,
        )
    seconds["synthesis"] = time.time() - start
    if shard.index != 0:
        if verbose:
            print(f"Shard {shard.index}/{shard.count}: done; shard 0 calibrates.")
        return None

    start = time.time()
    if verbose:
        print(f"[2/3] Quantizing to {_bits_label(quant_config)}")
    qmodel = quantize_model(model, quant_config)
    seconds["quantization"] = time.time() - start

    start = time.time()
    if verbose:
        print(f"[3/3] Block reconstruction on {len(images)} images")
    reconstruct(
        qmodel,
        model,
        images,
        config=reconstruction_cfg,
        seed=seed,
        verbose=verbose,
        callbacks=[reconstruction_logs, *(callbacks or [])],
        directory=_subdirectory(directory, "reconstruction"),
    )
    seconds["reconstruction"] = time.time() - start
    return QuantizationResult(
        model=qmodel,
        data=images,
        report=refresh_weight_sqnr(qmodel),
        method=method,
        quant_config=quant_config,
        seconds=seconds,
        histories={
            "synthesis": synthesis_logs.runs,
            "reconstruction": reconstruction_logs.runs,
        },
    )


def _quant_config(quant_config, weight_bits, activation_bits):
    if quant_config is None:
        return QuantConfig(
            weight_bits=_DEFAULT_BITS if weight_bits is None else weight_bits,
            activation_bits=(
                _DEFAULT_BITS if activation_bits is None else activation_bits
            ),
        )
    if not isinstance(quant_config, QuantConfig):
        raise TypeError(
            "`quant_config` must be a `keras_sagdq.QuantConfig`. Received: "
            f"quant_config of type {type(quant_config).__name__}"
        )
    given = {"weight_bits": weight_bits, "activation_bits": activation_bits}
    for name, value in given.items():
        if value is not None and value != getattr(quant_config, name):
            raise ValueError(
                f"`{name}` disagrees with `quant_config.{name}`; give the bits "
                f"once. Received: {name}={value!r}, quant_config.{name}="
                f"{getattr(quant_config, name)!r}"
            )
    return quant_config


def _bits_label(quant_config):
    return f"W{quant_config.weight_bits}A{quant_config.activation_bits}"


def _synthesis_config(method, profile, synthesis):
    if method in ("images", "gaussian"):
        if synthesis is not None:
            raise ValueError(
                f"method={method!r} runs no synthesis, so it takes no `synthesis` "
                f"config. Received: synthesis={synthesis!r}"
            )
        return None
    return _config(
        synthesis,
        SynthesisConfig,
        "synthesis",
        lambda overrides: synthesis_config(method, profile, **overrides),
    )


def _config(value, config_class, name, from_overrides):
    if value is None or isinstance(value, dict):
        return from_overrides(value or {})
    if not isinstance(value, config_class):
        raise TypeError(
            f"`{name}` must be a `{config_class.__name__}` or a dict of its "
            f"fields. Received: {name} of type {type(value).__name__}"
        )
    return value


def _checked_images(images, model):
    images = np.asarray(images, np.float32)
    expected = tuple(int(d) for d in model.inputs[0].shape[1:])
    if images.ndim != 4 or images.shape[1:] != expected or len(images) == 0:
        raise ValueError(
            f"`images` must have shape (N, {', '.join(map(str, expected))}) with "
            f"N > 0, the model's input shape. Received: images with shape "
            f"{images.shape}"
        )
    # Non-finite values are refused by `reconstruct`.
    return images


def _subdirectory(directory, name):
    return None if directory is None else os.path.join(os.fspath(directory), name)


class _Logs(keras.callbacks.Callback):
    """Keeps the per-epoch logs of every `fit` it is passed to."""

    def __init__(self):
        super().__init__()
        self.runs = []

    def on_train_begin(self, logs=None):
        self.runs.append({})

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.runs[-1].setdefault(key, []).append(float(value))
