"""Where a model's real inputs live: per-channel mean and std of its input space.

Synthetic images must land where real inputs live: a model trained on
pixels in [0, 1] sees nothing useful in standardized noise. A leading
`Normalization` layer declares the space (it was adapted to the data). Any
other model, including one that only rescales its input, gets it inferred
from its own statistics:

1. Mean: the map from the image to the inputs of the first BatchNorms is
   affine (convolutions, rescalings); their running means are then linear in
   the per-channel image mean, which least squares recovers.
2. Std: the variance of a BatchNorm input scales with the square of the
   image scale; a first guess fits the running variances with images of
   GENIE's untrained generator.
3. The std (and the mean, when step 1 does not apply) is refined by a
   short GENIE-D run in which a per-channel scale (and shift) from the
   generator's standardized output to the image is learned with the
   BN-statistics loss of every layer.

Reference:
    - [Jeon et al., 2023. GENIE](https://arxiv.org/abs/2212.04780)
"""

import dataclasses
import warnings

import keras
import numpy as np

from keras_sagdq.graph import lowering
from keras_sagdq.graph import tracing
from keras_sagdq.layers import ActivationQuantizer
from keras_sagdq.synthesis.diagnostics import SynthesisWarning
from keras_sagdq.synthesis.generator import build_generator

_AFFINE_RTOL = 1e-3
# float32 rounding of the tap values themselves: an offset before the first
# convolution (Rescaling(1/127.5, -1)) makes a tiny test image's response
# small against values near 1, and their rounding is not a nonlinearity.
_FLOAT32_FLOOR = 1e-5
# A declared input space the BatchNorms contradict by more than this (std
# ratio, or mean offset in inferred stds) is not where the model's inputs
# were: the inferred space is within ~20 % of the truth (docs/synthesis.md),
# while the closed-form first guess of the std alone can be 25x off.
_DECLARED_STD_RATIO = 3.0
_DECLARED_MEAN_STDS = 1.0


@dataclasses.dataclass
class InputSpace:
    """Per-channel mean and std of a model's inputs, and how they were found.

    Args:
        mean: float32 `(C,)`.
        std: float32 `(C,)`, positive.
        source: `"normalization layer"` (declared by the model), `"rescaling
            layer"` (implied by a leading Rescaling, for export), `"given"`
            (passed by the user), `"inferred"` (from the BatchNorm statistics)
            or `"given mean, inferred std"` and the like.
    """

    mean: np.ndarray
    std: np.ndarray
    source: str

    def __post_init__(self):
        self.mean = np.asarray(self.mean, np.float32).reshape(-1)
        self.std = np.asarray(self.std, np.float32).reshape(-1)

    def to_dict(self):
        return {
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data):
        return cls(data["mean"], data["std"], data["source"])

    def __str__(self):
        mean = ", ".join(f"{v:.4g}" for v in self.mean)
        std = ", ".join(f"{v:.4g}" for v in self.std)
        return f"mean [{mean}], std [{std}] ({self.source})"


def declared_input_space(model, rescaling=False):
    """The input space declared by leading `Normalization` layers, or None.

    Follows the input through leading `Rescaling` and `Normalization` layers
    (each the only reader of the tensor before it). If a `Normalization` is
    among them, the values after the chain are standardized, so the chain's
    inverse gives the raw input's mean and std. A `Rescaling` alone declares
    a unit (e.g. [0, 255] -> [0, 1]), not where the data lies: None, unless
    `rescaling` asks for the space it would standardize.

    Args:
        model: a Sequential or Functional model with one image input.
        rescaling: also read leading `Rescaling` layers alone, with a
            positive scale, as `(x - mean) / std` (export uses this to pick
            a convention; synthesis does not: `Rescaling(1/127.5, -1)` is
            not the data's std).

    Returns:
        An `InputSpace` with source `"normalization layer"` (or `"rescaling
        layer"`), or None.

    Example:

    >>> inputs = keras.Input((28, 28, 1))
    >>> x = keras.layers.Normalization(mean=0.5, variance=0.04)(inputs)
    >>> x = keras.layers.Conv2D(8, 3)(x)
    >>> model = keras.Model(inputs, keras.layers.BatchNormalization()(x))
    >>> declared_input_space(model).mean, declared_input_space(model).std
    (array([0.5], dtype=float32), array([0.2], dtype=float32))
    """
    graph = tracing.trace(model)
    channels = int(model.inputs[0].shape[-1])
    # The leading layers compute y = x * scale + offset; track scale and offset.
    scale, offset = np.ones(channels), np.zeros(channels)
    normalized = rescaled = False
    for step in graph.leading_steps():
        layer = step.layer
        if isinstance(layer, ActivationQuantizer):  # a quantized twin's input
            continue
        if isinstance(layer, keras.layers.Rescaling):
            a = np.broadcast_to(np.asarray(layer.scale, np.float64), (channels,))
            b = np.broadcast_to(np.asarray(layer.offset, np.float64), (channels,))
            rescaled = True
        elif lowering.normalization_affine(layer) is not None:
            a, b = (
                np.broadcast_to(v, (channels,))
                for v in lowering.normalization_affine(layer)
            )
            normalized = True
        else:
            break
        scale, offset = scale * a, offset * a + b
    if normalized:
        return InputSpace(-offset / scale, 1 / np.abs(scale), "normalization layer")
    if rescaling and rescaled and np.all(scale > 0):
        return InputSpace(-offset / scale, 1 / scale, "rescaling layer")
    return None


def affine_estimate(probe, seed=0):
    """Closed-form first guess of the input mean and std from the first BatchNorms.

    Uses every BatchNorm whose input is an affine function of the image
    (checked numerically). Mean: least squares on their running means.
    Std: one scale for all channels, fitted to their running variances with
    images of an untrained GENIE generator.

    Args:
        probe: a `BatchNormProbe` (without swing shifts).
        seed: seed of the test images.

    Returns:
        `(mean, std)` float32 `(C,)` arrays, or None when no BatchNorm input
        is affine in the image (e.g. a ReLU comes first).
    """
    shape = tuple(int(d) for d in probe.model.inputs[0].shape[1:])
    channels = shape[-1]
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((1, *shape)).astype(np.float32)
    constants = np.eye(channels, dtype=np.float32)[:, None, None, :] * np.ones(
        (1, *shape), np.float32
    )
    # Affine at every scale, not only near zero: a ReLU after a BatchNorm
    # looks linear for tiny inputs. Scales up to 1e4 cover [0, 255] pixels.
    scales = (1e-2, 1.0, 1e2, 1e4)
    tests = [s * k * noise for s in scales for k in (1.0, 2.0, -1.0)]
    images = np.concatenate([np.zeros((1, *shape), np.float32), constants, *tests])
    _, taps = probe(images)
    taps = [np.asarray(keras.ops.convert_to_numpy(t), np.float64) for t in taps]
    rows, targets, variances = [], [], []
    for index, tap in enumerate(taps):
        if tap.ndim < 2:
            continue
        zero, ones = tap[0], tap[1 : 1 + channels]
        affine = True
        for i in range(len(scales)):
            plus, twice, minus = tap[1 + channels + 3 * i : 4 + channels + 3 * i]
            change = np.abs(plus - zero).max()
            tolerance = (
                _AFFINE_RTOL * change
                + _FLOAT32_FLOOR * (np.abs(zero).max() + change)
                + 1e-12
            )
            affine &= bool(
                np.abs(twice - zero - 2 * (plus - zero)).max() <= 2 * tolerance
                and np.abs(minus - zero + (plus - zero)).max() <= tolerance
            )
        if not affine:
            continue
        axes = tuple(range(tap.ndim - 2))
        base = zero.mean(axis=axes)  # (C_l,)
        response = (
            ones.reshape(channels, -1, tap.shape[-1]).mean(axis=1) - base
        )  # (C, C_l)
        rows.append(response.T)
        targets.append(probe.means[index] - base)
        variances.append((index, probe.stds[index] ** 2, zero))
    if not rows:
        return None
    design, target = np.concatenate(rows), np.concatenate(targets)
    if np.linalg.matrix_rank(design, tol=1e-6 * np.abs(design).max()) < channels:
        return None
    mean = np.linalg.lstsq(design, target, rcond=None)[0]
    # Variance of each affine tap under standardized generator images: the
    # image scale s multiplies it by s^2; fit s^2 over all channels.
    generator = build_generator(shape, seed=seed)
    z = generator(rng.standard_normal((64, 256)).astype(np.float32), training=True)
    _, taps = probe(z)
    fitted, observed = [], []
    for index, target_var, zero in variances:
        tap = np.asarray(keras.ops.convert_to_numpy(taps[index]), np.float64)
        centered = tap - zero  # the tap of the black image, from the first pass
        fitted.append(centered.reshape(-1, tap.shape[-1]).var(axis=0))
        observed.append(target_var)
    fitted, observed = np.concatenate(fitted), np.concatenate(observed)
    scale_squared = float(np.sum(fitted * observed) / max(np.sum(fitted**2), 1e-30))
    std = np.full(channels, np.sqrt(max(scale_squared, 1e-30)))
    return mean.astype(np.float32), std.astype(np.float32)


def infer_input_space(
    model, config=None, input_mean=None, input_std=None, seed=0, verbose=0
):
    """Infer the per-channel mean and std of a model's inputs from its BatchNorms.

    Starts from `affine_estimate` (or mean 0 / std 1 when the first
    BatchNorms are not affine in the image), then runs one GENIE-D batch of
    `config.input_space_steps` steps in which the image log std (and the
    mean, when there is no closed form for it) is learned with the
    generator. Components passed by the user stay fixed.

    Args:
        model: a trained Sequential or Functional image classifier with
            BatchNormalization layers.
        config: a `SynthesisConfig` whose `input_space_steps`,
            `input_space_lr`, `latent_dim` and `batch_size` (at most 64 is
            used) apply; the rest is GENIE's `fast` preset whatever the method.
        input_mean: optional per-channel mean to keep fixed.
        input_std: optional per-channel std to keep fixed.
        seed: seed of the run.
        verbose: `fit` verbosity of the run.

    Returns:
        An `InputSpace` (source `"inferred"`, or naming what was given).

    Example:

    >>> space = infer_input_space(model)   # a model fed [0, 1] pixels
    >>> space.mean, space.std               # near the data's 0.29 and 0.35
    """
    from keras_sagdq.synthesis.probe import BatchNormProbe
    from keras_sagdq.synthesis.synthesize import synthesis_config
    from keras_sagdq.synthesis.trainer import SynthesisTrainer

    # GENIE's settings whatever the method (ZeroQ's pixel rate and missing
    # prior would not suit a generator); only the input-space knobs carry over.
    given = config or synthesis_config("genie")
    config = synthesis_config(
        "genie",
        latent_dim=given.latent_dim,
        generator_channels=given.generator_channels,
        input_space_steps=given.input_space_steps,
        input_space_lr=given.input_space_lr,
        jit_compile=given.jit_compile,
    )
    batch_size = min(given.batch_size, 64)
    probe = BatchNormProbe(model)
    channels = int(model.inputs[0].shape[-1])
    estimate = affine_estimate(probe, seed=seed)
    mean, std = (
        estimate if estimate is not None else (np.zeros(channels), np.ones(channels))
    )
    if input_mean is not None:
        mean = np.broadcast_to(np.asarray(input_mean, np.float32), (channels,))
    if input_std is not None:
        std = np.broadcast_to(np.asarray(input_std, np.float32), (channels,))
    trainer = SynthesisTrainer(
        BatchNormProbe(model, swing=True, seed=seed),
        config,
        batch_size,
        mean,
        std,
        seed=seed,
        # The closed-form mean is exact in expectation and measured closer to
        # the truth than a learned one (docs/synthesis.md): learn the mean only
        # where there is no closed form.
        learn_mean=input_mean is None and estimate is None,
        learn_std=input_std is None,
    )
    trainer.run(
        config.input_space_steps, "the run that infers the input space", verbose
    )
    mean, std = trainer.input_space()
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
        raise FloatingPointError(
            f"Inferring the input space of model {model.name!r} diverged. Pass "
            "`input_mean` and `input_std`."
        )
    fixed = [
        name
        for name, value in (("mean", input_mean), ("std", input_std))
        if value is not None
    ]
    source = (
        "inferred"
        if not fixed
        else f"given {fixed[0]}, inferred {'std' if fixed == ['mean'] else 'mean'}"
    )
    return InputSpace(mean, std, source)


def resolve_input_space(
    model, input_mean=None, input_std=None, config=None, seed=0, verbose=0
):
    """The input space synthesis uses: given, declared, or inferred.

    Both `input_mean` and `input_std` given: those. Else a leading
    `Normalization` layer's values for what is not given, unless the space
    `infer_input_space` finds contradicts them (a `Normalization` adapted
    to other data than it sees, e.g. to raw pixels in front of a
    `Rescaling(1/255)`): then a warning, and the inferred space. Else
    `infer_input_space`. The check costs one inference run
    (`input_space_steps` at 64 images).

    Raises:
        ValueError: if a given value is not finite, has the wrong number of
            channels, or a std is not positive.
    """
    channels = int(model.inputs[0].shape[-1])
    given = {}
    for name, value in (("input_mean", input_mean), ("input_std", input_std)):
        if value is None:
            continue
        array = np.asarray(value, np.float32).reshape(-1)
        if array.size not in (1, channels) or not np.all(np.isfinite(array)):
            raise ValueError(
                f"`{name}` must be a finite number or one per channel ({channels}). "
                f"Received: {name}={value!r}"
            )
        if name == "input_std" and np.any(array <= 0):
            raise ValueError(
                f"`input_std` must be positive. Received: input_std={value!r}"
            )
        given[name] = np.broadcast_to(array, (channels,)).astype(np.float32)
    if len(given) == 2:
        return InputSpace(given["input_mean"], given["input_std"], "given")
    declared = declared_input_space(model)
    if declared is not None:
        inferred = infer_input_space(model, config, seed=seed, verbose=verbose)
        if _checked_against_batchnorms(model, declared, inferred) is None:
            if not given:
                return inferred
            declared = None
    if declared is not None:
        if not given:
            return declared
        mean = given.get("input_mean", declared.mean)
        std = given.get("input_std", declared.std)
        return InputSpace(
            mean, std, f"normalization layer, given {next(iter(given))[6:]}"
        )
    return infer_input_space(
        model,
        config,
        given.get("input_mean"),
        given.get("input_std"),
        seed=seed,
        verbose=verbose,
    )


def _checked_against_batchnorms(model, declared, inferred):
    """`declared`, or None (with a warning) when `inferred` contradicts it."""
    ratio = np.maximum(declared.std / inferred.std, inferred.std / declared.std)
    offset = np.abs(declared.mean - inferred.mean) / inferred.std
    if np.all(ratio <= _DECLARED_STD_RATIO) and np.all(offset <= _DECLARED_MEAN_STDS):
        return declared
    warnings.warn(
        f"The leading Normalization of model {model.name!r} declares inputs with "
        f"mean {_numbers(declared.mean)} and std {_numbers(declared.std)}, but its "
        f"BatchNorms were fitted to inputs with mean about "
        f"{_numbers(inferred.mean)} and std about {_numbers(inferred.std)}: the "
        "Normalization was adapted to other data than it sees. Synthesis uses the "
        "BatchNorms' input space; pass `input_mean` and `input_std` to choose it.",
        SynthesisWarning,
        stacklevel=3,
    )
    return None


def _numbers(values):
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"
