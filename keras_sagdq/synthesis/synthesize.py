"""`synthesize`: calibration images from a model's BatchNorm statistics, no data.

Methods:
- `genie` (GENIE-D): per batch, a fresh generator and latents trained so
  that every BatchNorm's input statistics match its running statistics,
  with swing shifts before strided convolutions and an input prior.
- `zeroq`: the pixels themselves are optimized, with per-image statistics.
- `gaussian`: N(0, 1) in the model's standardized input space, the naive
  baseline.

Reference:
    - [Jeon et al., 2023. GENIE](https://arxiv.org/abs/2212.04780)
    - [Cai et al., 2020. ZeroQ](https://arxiv.org/abs/2001.00281)
"""

import dataclasses
import math

import keras
import numpy as np

from keras_sagdq.config import resolve_config
from keras_sagdq.graph import tracing
from keras_sagdq.synthesis import diagnostics
from keras_sagdq.synthesis.input_space import InputSpace
from keras_sagdq.synthesis.input_space import declared_input_space
from keras_sagdq.synthesis.input_space import resolve_input_space
from keras_sagdq.synthesis.probe import BatchNormProbe
from keras_sagdq.synthesis.probe import check_model
from keras_sagdq.synthesis.storage import BatchStore
from keras_sagdq.synthesis.trainer import SynthesisTrainer

METHODS = ("genie", "zeroq", "gaussian")


@dataclasses.dataclass
class SynthesisConfig:
    """Hyperparameters of image synthesis (per batch).

    Args:
        steps: optimization steps per batch.
        batch_size: images per batch (BatchNorm statistics are matched over
            a batch).
        generator: True for GENIE-D (train a generator and its latents);
            False optimizes the pixels (ZeroQ).
        latent_dim: size of each latent vector.
        latent_lr: initial Adam rate of the latents (or the pixels).
        plateau_patience: steps without a 1e-4 relative improvement of the
            loss before the latent rate is scaled by `plateau_factor`.
        plateau_factor: scaling of the latent rate on a plateau.
        min_latent_lr: the latent rate never falls below this.
        generator_lr: initial Adam rate of the generator.
        generator_decay: factor applied to the generator rate every
            `generator_decay_steps` steps.
        generator_decay_steps: see `generator_decay`.
        prior_weight: weight of the input prior (0 turns it off).
        swing: shift the input of every strided convolution by up to one pixel.
        per_sample: match statistics per image instead of per batch.
        input_space_steps: GENIE steps of the run that infers the input
            space of a model that does not declare it (`infer_input_space`).
        input_space_lr: Adam rate of the learned input mean and log std.
    """

    steps: int = 4000
    batch_size: int = 128
    generator: bool = True
    latent_dim: int = 256
    latent_lr: float = 0.1
    plateau_patience: int = 100
    plateau_factor: float = 0.1
    min_latent_lr: float = 1e-4
    generator_lr: float = 0.01
    generator_decay: float = 0.95
    generator_decay_steps: int = 100
    prior_weight: float = 1.0
    swing: bool = True
    per_sample: bool = False
    input_space_steps: int = 300
    input_space_lr: float = 0.02

    def __post_init__(self):
        for name in (
            "steps",
            "batch_size",
            "latent_dim",
            "generator_decay_steps",
            "input_space_steps",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"`{name}` must be a positive integer. Received: {name}={value!r}"
                )
        for name in ("latent_lr", "generator_lr", "min_latent_lr", "input_space_lr"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(
                    f"`{name}` must be positive. Received: {name}={value!r}"
                )
        if self.prior_weight < 0:
            raise ValueError(
                "`prior_weight` must be >= 0. Received: "
                f"prior_weight={self.prior_weight!r}"
            )


_ZEROQ = dict(
    generator=False, latent_lr=0.5, prior_weight=0.0, swing=False, per_sample=True
)
PROFILES = {
    ("genie", "paper"): SynthesisConfig(),
    ("zeroq", "paper"): SynthesisConfig(steps=500, **_ZEROQ),
    # Chosen by measurement on the Fashion-MNIST reference models (docs/benchmarks.md).
    ("genie", "fast"): SynthesisConfig(steps=200),
    ("zeroq", "fast"): SynthesisConfig(steps=500, **_ZEROQ),
}


def synthesis_config(method="genie", profile="fast", **overrides):
    """The `SynthesisConfig` of a method and profile, with keyword overrides.

    Example:

    >>> synthesis_config("genie", "fast", steps=100).steps
    100

    Raises:
        ValueError: on an unknown method or profile, or an override that is
            not a field.
    """
    return resolve_config(None, profile, _presets(method), overrides)


def _presets(method):
    if method not in ("genie", "zeroq"):
        raise ValueError(
            f"`method` must be 'genie' or 'zeroq'. Received: method={method!r}"
        )
    return {profile: c for (m, profile), c in PROFILES.items() if m == method}


def synthesize(
    model,
    num_samples=1024,
    method="genie",
    config=None,
    profile=None,
    seed=0,
    directory=None,
    verbose="auto",
    callbacks=None,
    input_mean=None,
    input_std=None,
    **overrides,
):
    """Synthesize calibration images from a trained model, without data.

    Images are made batch by batch; each batch is optimized by
    `SynthesisTrainer.fit` (progress bar, callbacks and a `History` as
    usual). With `directory`, each finished batch is saved there at once and
    a rerun with the same arguments reuses them, so an interrupted run picks
    up where it stopped. Batch `i` depends only on `seed` and `i`, so a
    resumed run gives the same images as an uninterrupted one.

    The model's input space is described by a per-channel `mean` and `std`:
    synthetic images are `mean + std * z` with `z` standardized. A leading
    `Normalization` layer declares them; otherwise they are inferred from
    the model's first BatchNorms and a short GENIE run
    (`keras_sagdq.synthesis.infer_input_space`; docs/synthesis.md), and
    printed when `verbose`. Pass `input_mean` / `input_std` to override,
    e.g. `input_mean=127.5, input_std=64.0` for [0, 255] inputs.

    Every synthesized batch is checked (`diagnostics.check_images`): images
    far from the model's statistics, constant or saturated images, or
    extreme pixels raise a `SynthesisWarning` naming the numbers.

    Args:
        model: a trained Sequential or Functional image classifier with
            BatchNormalization layers (not modified).
        num_samples: number of images.
        method: `"genie"`, `"zeroq"` or `"gaussian"`.
        config: a `SynthesisConfig`; default: the preset of `method` and
            `profile`.
        profile: preset name when no `config` is given: `"fast"` (the
            default) or `"paper"` (the published step counts).
        seed: seed of everything random; batch `i` uses a seed derived from
            `(seed, i)`.
        directory: optional path; finished batches are saved there and
            reused by a rerun with the same settings.
        verbose: `fit` verbosity (0, 1, 2 or "auto"); also prints which batch
            is running.
        callbacks: Keras callbacks passed to each batch's `fit`.
        input_mean: per-channel mean of the input space (float or list);
            default: declared by a `Normalization` layer, else inferred.
        input_std: per-channel std of the input space; default: as
            `input_mean`.
        **overrides: fields of the config to replace, e.g. `steps=200`.

    Returns:
        float32 numpy array `(num_samples, H, W, C)` in the model's input space.

    Raises:
        TypeError: for a subclassed model.
        ValueError: for bad arguments, a model without BatchNormalization,
            or a `directory` holding batches made with other settings.
        FloatingPointError: if the loss becomes NaN or infinite (names the
            batch and step).

    Example:

    >>> model = ks.models.load_reference_model("resnet20_fashion_mnist")
    >>> images = ks.synthesize(model, num_samples=256, method="genie",
    ...                        directory="synthetic/resnet20", seed=0)
    >>> images.shape
    (256, 28, 28, 1)

    Reference:
        - [Jeon et al., 2023. GENIE](https://arxiv.org/abs/2212.04780)
        - [Cai et al., 2020. ZeroQ](https://arxiv.org/abs/2001.00281)
    """
    if method not in METHODS:
        raise ValueError(
            f"`method` must be one of {METHODS}. Received: method={method!r}"
        )
    if (
        isinstance(num_samples, bool)
        or not isinstance(num_samples, int)
        or num_samples < 1
    ):
        raise ValueError(
            "`num_samples` must be a positive integer. Received: "
            f"num_samples={num_samples!r}"
        )
    check_model(model)
    image_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    if method == "gaussian":
        given = sorted(overrides) + ["config"] * (config is not None)
        given += ["profile"] * (profile is not None)
        if given:
            raise ValueError(
                "method='gaussian' has no config, profile or options. Received: "
                f"{given}"
            )
        space = _gaussian_input_space(model, input_mean, input_std, seed, verbose)
        rng = np.random.default_rng(seed)
        noise = rng.standard_normal((num_samples, *image_shape))
        return (space.mean + space.std * noise).astype(np.float32)

    config = resolve_config(config, profile, _presets(method), overrides)
    probe = BatchNormProbe(model)
    store = None
    if directory is not None:
        settings = dict(
            method=method,
            seed=seed,
            config=dataclasses.asdict(config),
            image_shape=image_shape,
            input_mean=None if input_mean is None else np.asarray(input_mean).tolist(),
            input_std=None if input_std is None else np.asarray(input_std).tolist(),
            model=probe.fingerprint(),
        )
        store = BatchStore(directory, settings)
    space = _stored_or_resolved_input_space(
        model, store, input_mean, input_std, config, seed, verbose
    )
    num_batches = math.ceil(num_samples / config.batch_size)
    batches = []
    for index in range(num_batches):
        size = min(config.batch_size, num_samples - index * config.batch_size)
        images = store.load(index, (size, *image_shape)) if store else None
        if images is None:
            if verbose:
                print(
                    f"Synthesis batch {index + 1}/{num_batches} "
                    f"({method}, {size} images)"
                )
            images = _synthesize_batch(
                model,
                config,
                size,
                space,
                _batch_seed(seed, index),
                index,
                verbose,
                callbacks,
            )
            check = diagnostics.check_images(images, probe, space)
            diagnostics.warn_if_degenerate(check, model.name, index, space)
            if store:
                store.save(index, images)
        batches.append(images)
    return np.concatenate(batches)


_INPUT_SPACE_FILE = "input_space.json"


def _stored_or_resolved_input_space(
    model, store, input_mean, input_std, config, seed, verbose
):
    # The inferred space is saved with the batches: a resumed run must use
    # the same one, and inferring it again would cost a GENIE run.
    stored = store.load_json(_INPUT_SPACE_FILE) if store else None
    if stored is not None:
        space = InputSpace.from_dict(stored)
    else:
        space = resolve_input_space(model, input_mean, input_std, config, seed=seed)
        if store:
            store.save_json(_INPUT_SPACE_FILE, space.to_dict())
    if verbose:
        print(f"Input space of {model.name!r}: {space}")
    return space


def _gaussian_input_space(model, input_mean, input_std, seed, verbose):
    steps = tracing.trace(model).steps
    has_bn = any(isinstance(s.layer, keras.layers.BatchNormalization) for s in steps)
    if (
        not has_bn
        and (input_mean is None or input_std is None)
        and declared_input_space(model) is None
    ):
        raise ValueError(
            f"Model {model.name!r} has no BatchNormalization and no Normalization "
            "layer, so its input space cannot be inferred: pass `input_mean` and "
            "`input_std`. "
            f"Received: input_mean={input_mean!r}, input_std={input_std!r}"
        )
    return _stored_or_resolved_input_space(
        model, None, input_mean, input_std, None, seed, verbose
    )


def _synthesize_batch(model, config, size, space, seed, index, verbose, callbacks):
    probe = BatchNormProbe(model, swing=config.swing, seed=seed)
    trainer = SynthesisTrainer(probe, config, size, space.mean, space.std, seed=seed)
    trainer.run(config.steps, f"batch {index}", verbose, callbacks)
    images = trainer.images()
    if not np.all(np.isfinite(images)):
        raise FloatingPointError(f"Synthesis batch {index} produced non-finite images.")
    return images


def _batch_seed(seed, index):
    # Small enough that the seeds derived from it (x1000 in the probe) fit
    # the int32 seeds of Keras' torch backend.
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] % 2**20)
