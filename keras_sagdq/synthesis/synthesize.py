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
import os

import keras
import numpy as np

from keras_sagdq.config import QuantConfig
from keras_sagdq.config import resolve_config
from keras_sagdq.graph import tracing
from keras_sagdq.graph.head import find_classifier_head
from keras_sagdq.synthesis import diagnostics
from keras_sagdq.synthesis import sadag
from keras_sagdq.synthesis.input_space import InputSpace
from keras_sagdq.synthesis.input_space import declared_input_space
from keras_sagdq.synthesis.input_space import resolve_input_space
from keras_sagdq.synthesis.probe import BatchNormProbe
from keras_sagdq.synthesis.probe import check_model
from keras_sagdq.synthesis.sharding import Shard
from keras_sagdq.synthesis.sharding import resolve_shard
from keras_sagdq.synthesis.sharding import wait_for
from keras_sagdq.synthesis.storage import BatchStore
from keras_sagdq.synthesis.trainer import SynthesisTrainer
from keras_sagdq.synthesis.trainer import TrainerCache

_WHOLE_RUN = Shard()

METHODS = ("genie", "zeroq", "gaussian", "sadag")


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
        generator_channels: channels of the generator's first feature map
            (GENIE: 128). Its first projection has `latent_dim * (H/4) *
            (W/4) * generator_channels` weights, 103 M for 224x224 inputs at
            128; a smaller value makes large-input synthesis cheaper.
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
        refine_steps: SADAG refinement steps per batch (`method="sadag"`
            only, as are the fields below).
        refine_latent_lr: constant Adam rate of the latents in refinement.
        refine_generator_lr: constant Adam rate of the generator in
            refinement.
        rho: radius of the neighborhood in latent space.
        gm_weight: weight of the gradient-matching loss.
        div_weight: weight of the gradient-diversity loss.
        delta: margin of the diversity loss.
        neighbor: `"sam"` (the latent direction in which the quantized
            model disagrees most with the float one) or `"random"`.
        neighbor_every: recompute the neighbor direction every this many
            steps (1: every step; larger saves a differentiation).
        match: which per-sample gradients the matching and diversity
            losses compare: `"head"` (the paper's, the last Dense kernel)
            or `"blocks"` (beyond the paper: also, for every block but the
            last, the gradient of its reconstruction loss with respect to a
            per-channel scale of its output, which is what its last
            layer's weight steps see; the cosine is then the mean over the
            head and the blocks).
        warmup_reconstruction_steps: block reconstruction steps per block
            of the warm-up quantized model.
        jit_compile: compile each synthesis and refinement step (XLA on
            TensorFlow, `torch.compile` on PyTorch). Measured on 2 CPU
            cores, ResNet-20, batch 128: a GENIE step 20 % faster on
            TensorFlow, 12 % on PyTorch (docs/benchmarks.md), after a
            compilation per batch size. Off by default: `torch.compile`
            needs a C++ compiler, and XLA does not run every op. It changes
            the images only by float rounding, so it is not part of a
            directory's saved settings: a run may resume with it on or off.

    Example:

    >>> config = SynthesisConfig(steps=200, batch_size=64)
    >>> config.steps, config.batch_size
    (200, 64)
    """

    steps: int = 4000
    batch_size: int = 128
    generator: bool = True
    latent_dim: int = 256
    generator_channels: int = 128
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
    refine_steps: int = 500
    refine_latent_lr: float = 1e-5
    refine_generator_lr: float = 1e-4
    rho: float = 2.0
    gm_weight: float = 1.0
    div_weight: float = 1.0
    delta: float = 0.0
    neighbor: str = "sam"
    neighbor_every: int = 1
    match: str = "head"
    warmup_reconstruction_steps: int = 4000
    jit_compile: bool = False

    def __post_init__(self):
        for name in (
            "steps",
            "batch_size",
            "latent_dim",
            "generator_channels",
            "generator_decay_steps",
            "input_space_steps",
            "refine_steps",
            "neighbor_every",
            "warmup_reconstruction_steps",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"`{name}` must be a positive integer. Received: {name}={value!r}"
                )
        for name in (
            "latent_lr",
            "generator_lr",
            "min_latent_lr",
            "input_space_lr",
            "refine_latent_lr",
            "refine_generator_lr",
        ):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(
                    f"`{name}` must be positive. Received: {name}={value!r}"
                )
        for name in ("prior_weight", "rho", "gm_weight", "div_weight", "delta"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"`{name}` must be >= 0. Received: {name}={value!r}")
        for name in ("generator", "swing", "per_sample", "jit_compile"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(
                    f"`{name}` must be True or False. Received: {name}={value!r}"
                )
        if self.neighbor not in NEIGHBORS:
            raise ValueError(
                f"`neighbor` must be one of {NEIGHBORS}. Received: "
                f"neighbor={self.neighbor!r}"
            )
        if self.match not in MATCHES:
            raise ValueError(
                f"`match` must be one of {MATCHES}. Received: match={self.match!r}"
            )


NEIGHBORS = ("sam", "random")
MATCHES = ("head", "blocks")
# Fields added after directories were first saved: left out of the saved
# settings at their default, so those directories stay valid.
_LATER_FIELDS = {"generator_channels": 128, "match": "head"}
# How a run computes, not what it makes: never part of the saved settings.
_RUN_FIELDS = ("jit_compile",)


def _saved_config(config):
    fields = dataclasses.asdict(config)
    for name in _RUN_FIELDS:
        del fields[name]
    for name, default in _LATER_FIELDS.items():
        if fields[name] == default:
            del fields[name]
    return fields


# The fields only SADAG reads: GENIE batches do not depend on them, so they
# are left out of a GENIE directory's settings (and SADAG's warm-up batches
# are GENIE batches).
SADAG_FIELDS = (
    "refine_steps",
    "refine_latent_lr",
    "refine_generator_lr",
    "rho",
    "gm_weight",
    "div_weight",
    "delta",
    "neighbor",
    "neighbor_every",
    "match",
    "warmup_reconstruction_steps",
)


_ZEROQ = dict(
    generator=False, latent_lr=0.5, prior_weight=0.0, swing=False, per_sample=True
)
PROFILES = {
    ("genie", "paper"): SynthesisConfig(),
    ("zeroq", "paper"): SynthesisConfig(steps=500, **_ZEROQ),
    ("sadag", "paper"): SynthesisConfig(),
    # Chosen by measurement on the Fashion-MNIST reference models (docs/benchmarks.md).
    ("genie", "fast"): SynthesisConfig(steps=200),
    ("zeroq", "fast"): SynthesisConfig(steps=500, **_ZEROQ),
    ("sadag", "fast"): SynthesisConfig(
        steps=200, refine_steps=50, warmup_reconstruction_steps=200
    ),
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
    if method not in ("genie", "zeroq", "sadag"):
        raise ValueError(
            f"`method` must be 'genie', 'zeroq' or 'sadag'. Received: method={method!r}"
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
    quant_config=None,
    shard=None,
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

    `method="sadag"` continues each GENIE batch with the sharpness-aware
    refinement, which depends on the bit widths: pass the `quant_config`
    the model will be quantized with. It quantizes the model once (`q0`,
    `warmup_reconstruction_steps` per block) and refines every batch so
    that the last-layer gradients of `q0` agree between each sample and a
    neighbor and differ across samples (docs/sadag.md). With `directory`,
    the warm-up batches, their generator state, `q0` and the refined
    batches are all saved and reused.

    Processes that share `directory` can split the batches (`shard`, or
    the shard a launcher such as `torchrun` gives the process): each makes
    its own batches, then waits for the others' files, and every process
    returns the images a single process would have made. With `"sadag"`
    the GENIE warm-up is split; `q0` and the refinement, which reads the
    earlier batches, run on shard 0 while the others wait for its files.

    Every synthesized batch is checked (`diagnostics.check_images`): images
    far from the model's statistics, constant or saturated images, or
    extreme pixels raise a `SynthesisWarning` naming the numbers.

    Args:
        model: a trained Sequential or Functional image classifier with
            BatchNormalization layers (not modified).
        num_samples: number of images.
        method: `"genie"`, `"zeroq"`, `"gaussian"` or `"sadag"`.
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
        quant_config: the `QuantConfig` of the model to calibrate;
            required by `"sadag"`, refused by the other methods.
        shard: this process's part of a run split across processes:
            `"index/count"`, `(index, count)` or a
            `keras_sagdq.synthesis.Shard` (which also sets how long to wait
            for the others). Default: the launcher's (`RANK` /
            `WORLD_SIZE`, or `TF_CONFIG`), else the whole run. A split run
            needs `directory`.
        **overrides: fields of the config to replace, e.g. `steps=200`.

    Returns:
        float32 numpy array `(num_samples, H, W, C)` in the model's input space.

    Raises:
        TypeError: for a subclassed model.
        ValueError: for bad arguments, a model without BatchNormalization,
            or a `directory` holding batches made with other settings.
        FloatingPointError: if the loss becomes NaN or infinite (names the
            batch and step).
        TimeoutError: if a shard waits longer than its `timeout_s` for
            another shard's files.

    Example:

    >>> model = ks.models.load_reference_model("resnet20_fashion_mnist")
    >>> images = ks.synthesize(model, num_samples=256, method="genie",
    ...                        directory="synthetic/resnet20", seed=0)
    >>> images.shape
    (256, 28, 28, 1)
    >>> refined = ks.synthesize(model, num_samples=64, method="sadag",
    ...                         quant_config=ks.QuantConfig(4, 4), seed=0)

    Reference:
        - [Jeon et al., 2023. GENIE](https://arxiv.org/abs/2212.04780)
        - [Cai et al., 2020. ZeroQ](https://arxiv.org/abs/2001.00281)
        - [Dung et al., 2024. Sharpness-Aware Data Generation for Zero-shot
          Quantization](https://arxiv.org/abs/2510.07018)
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
    if (method == "sadag") != (quant_config is not None):
        raise ValueError(
            "`quant_config` is required by method='sadag' (its refinement "
            "depends on the bit widths) and unused by the other methods. "
            f"Received: method={method!r}, quant_config={quant_config!r}"
        )
    if quant_config is not None and not isinstance(quant_config, QuantConfig):
        raise TypeError(
            "`quant_config` must be a `keras_sagdq.QuantConfig`. Received: "
            f"quant_config of type {type(quant_config).__name__}"
        )
    check_model(model)
    # Gaussian noise takes no time to make: every process makes all of it.
    shard = _WHOLE_RUN if method == "gaussian" else resolve_shard(shard)
    if shard.sharded and directory is None:
        raise ValueError(
            f"Shard {shard.index}/{shard.count}: a split run meets in `directory`; "
            "pass a directory all processes share, or shard='0/1' to make every "
            f"image in this process. Received: directory={directory!r}"
        )
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
    if method == "sadag":
        # Refused before the warm-up spends any time.
        find_classifier_head(probe.graph, model.name)
    settings = dict(
        method=method,
        seed=seed,
        config=_saved_config(config),
        image_shape=image_shape,
        input_mean=None if input_mean is None else np.asarray(input_mean).tolist(),
        input_std=None if input_std is None else np.asarray(input_std).tolist(),
        model=probe.fingerprint(),
    )
    # A GENIE directory's settings: SADAG's warm-up batches are exactly those.
    genie_settings = dict(
        settings,
        method="genie" if method == "sadag" else method,
        config={k: v for k, v in settings["config"].items() if k not in SADAG_FIELDS},
    )
    store = warmup_store = None
    if directory is not None and method == "sadag":
        store = BatchStore(
            directory, dict(settings, quant_config=dataclasses.asdict(quant_config))
        )
        warmup_store = BatchStore(os.path.join(directory, "warmup"), genie_settings)
    elif directory is not None:
        warmup_store = BatchStore(directory, genie_settings)
    space = _stored_or_resolved_input_space(
        model,
        store or warmup_store,
        input_mean,
        input_std,
        config,
        seed,
        verbose,
        shard,
    )
    sizes = [
        min(config.batch_size, num_samples - start)
        for start in range(0, num_samples, config.batch_size)
    ]
    seeds = [_batch_seed(seed, index) for index in range(len(sizes))]
    label = "GENIE warm-up" if method == "sadag" else method
    batches, states = _synthesized_batches(
        model,
        probe,
        config,
        sizes,
        space,
        seeds,
        warmup_store,
        label,
        verbose,
        callbacks,
        keep_states=method == "sadag",
        shard=shard,
    )
    if method != "sadag":
        return np.concatenate(batches)
    if shard.index != 0:
        # q0 and the refinement (each batch reads the earlier ones) are
        # shard 0's; the others return its images.
        return np.concatenate(
            [
                wait_for(
                    lambda i=i, n=n: store.load(i, (n, *image_shape)),
                    shard,
                    f"refined batch {i} from shard 0",
                )
                for i, n in enumerate(sizes)
            ]
        )
    if warmup_store is not None:
        warmup_store.save_json(_INPUT_SPACE_FILE, space.to_dict())
    q0 = sadag.load_or_make_q0(
        model,
        np.concatenate(batches),
        quant_config,
        config,
        seed,
        directory,
        verbose,
    )
    return sadag.refine_batches(
        probe,
        q0,
        states,
        sizes,
        config,
        space,
        seeds,
        store=store,
        verbose=verbose,
        callbacks=callbacks,
    )


def _synthesized_batches(
    model,
    probe,
    config,
    sizes,
    space,
    seeds,
    store,
    label,
    verbose,
    callbacks,
    keep_states=False,
    shard=_WHOLE_RUN,
):
    """Synthesized (or loaded) batches, and a function returning a batch's state.

    With `keep_states`, each batch's generator state is kept too (saved
    beside the batch with a store, else in memory); a saved batch without
    its state is synthesized again (the same seed gives the same batch).
    A shard makes its own batches first, then waits for the others'.
    """
    image_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    batches, in_memory = {}, {}
    # Seeded per batch by `reset`; seed 0 only keeps the global random
    # state untouched.
    swing_probe = BatchNormProbe(model, swing=config.swing, seed=0)

    def make_trainer(size, seed):
        swing_probe.reseed(seed)
        return SynthesisTrainer(
            swing_probe, config, size, space.mean, space.std, seed=seed
        )

    trainers = TrainerCache(make_trainer)

    def saved(index):
        images = store.load(index, (sizes[index], *image_shape)) if store else None
        if images is not None and keep_states and not store.has_arrays(index):
            return None  # its state is written first: not finished yet
        return images

    for index, size in enumerate(sizes):
        if not shard.owns(index):
            continue
        images = saved(index)
        if images is None:
            if verbose:
                print(
                    f"Synthesis batch {index + 1}/{len(sizes)} ({label}, {size} images)"
                )
            images, state = _synthesize_batch(
                trainers.get(size, seeds[index]), config, index, verbose, callbacks
            )
            check = diagnostics.check_images(images, probe, space)
            diagnostics.warn_if_degenerate(check, model.name, index, space)
            if store:
                if keep_states:
                    store.save_arrays(index, state)
                store.save(index, images)
            elif keep_states:
                in_memory[index] = state
        batches[index] = images
    for index in range(len(sizes)):
        if index not in batches:
            batches[index] = wait_for(
                lambda index=index: saved(index),
                shard,
                f"batch {index} from shard {index % shard.count}",
            )

    def state_of(index):
        return in_memory[index] if index in in_memory else store.load_arrays(index)

    return [batches[index] for index in range(len(sizes))], state_of


_INPUT_SPACE_FILE = "input_space.json"


def _stored_or_resolved_input_space(
    model, store, input_mean, input_std, config, seed, verbose, shard=_WHOLE_RUN
):
    # The inferred space is saved with the batches: a resumed run must use
    # the same one, and inferring it again would cost a GENIE run. Shard 0
    # infers it for a split run.
    stored = store.load_json(_INPUT_SPACE_FILE) if store else None
    if stored is None and shard.index != 0:
        stored = wait_for(
            lambda: store.load_json(_INPUT_SPACE_FILE), shard, "the input space"
        )
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


def _synthesize_batch(trainer, config, index, verbose, callbacks):
    trainer.run(config.steps, f"batch {index}", verbose, callbacks)
    images = trainer.images()
    if not np.all(np.isfinite(images)):
        raise FloatingPointError(f"Synthesis batch {index} produced non-finite images.")
    return images, trainer.state()


def _batch_seed(seed, index):
    # Small enough that the seeds derived from it (x1000 in the probe) fit
    # the int32 seeds of Keras' torch backend.
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] % 2**20)
