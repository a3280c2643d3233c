"""Checks that a synthesized batch looks like images, not a degenerate optimum.

A wrong input space, a model with broken BatchNorm statistics or a diverging
optimizer can give images that match nothing: constant images, a few
extreme pixels on a flat background, or statistics far from the model's.
Calibrating on them quietly ruins the quantized model, so `synthesize`
checks every batch and warns with the numbers.
"""

import dataclasses
import warnings

import keras
import numpy as np

# Thresholds from measured batches (docs/synthesis.md): healthy GENIE
# batches of the zoo models have a relative BN mismatch near 0.01 and pixels
# within ~2 std of the input mean (real Fashion-MNIST pixels: 2.0); the
# degenerate batches of a [0, 1] model synthesized in a standardized space
# reach 0.27 and 26 std.
MAX_BN_MISMATCH = 0.1
MAX_ABS_Z = 12.0
MAX_CONSTANT_FRACTION = 0.1
MAX_SATURATED_FRACTION = 0.9


class SynthesisWarning(UserWarning):
    """Synthesized images look degenerate (see `check_images`).

    Example:

    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", SynthesisWarning)  # stop on bad images
    """


@dataclasses.dataclass
class ImageCheck:
    """What `check_images` measured on one batch.

    Attributes:
        bn_mismatch: mean over BatchNorms of
            `(||mu - mean(a)||^2 + ||sigma - std(a)||^2) / ||sigma||^2`.
        max_abs_z: largest `|x - mean| / std` of any pixel, in the input space.
        constant_fraction: fraction of images with (almost) no variation.
        saturated_fraction: fraction of pixels at the batch's min or max.
        problems: one sentence per failed check; empty when healthy.
    """

    bn_mismatch: float
    max_abs_z: float
    constant_fraction: float
    saturated_fraction: float
    problems: list

    @property
    def healthy(self):
        return not self.problems


def bn_mismatch(probe, images):
    """Relative distance between BatchNorm input statistics and running ones."""
    _, taps = probe(images)
    values = []
    for tap, mu, sigma in zip(taps, probe.means, probe.stds):
        a = np.asarray(keras.ops.convert_to_numpy(tap), np.float64).reshape(
            -1, mu.shape[-1]
        )
        mean, std = a.mean(axis=0), a.std(axis=0)
        distance = np.sum((mean - mu) ** 2 + (std - sigma) ** 2)
        values.append(
            distance / max(float(np.sum(sigma.astype(np.float64) ** 2)), 1e-30)
        )
    return float(np.mean(values))


def check_images(images, probe, input_space):
    """Measure one synthesized batch and list what looks broken.

    Args:
        images: `(N, H, W, C)` float images in the model's input space.
        probe: the float model's `BatchNormProbe` (no swing shifts).
        input_space: the `InputSpace` the images were made for.

    Returns:
        An `ImageCheck`.

    Example:

    >>> check = check_images(images, ks.synthesis.BatchNormProbe(model), space)
    >>> check.healthy, check.problems
    """
    images = np.asarray(images, np.float64)
    z = (images - input_space.mean) / input_space.std
    per_image = images.reshape(len(images), -1).std(axis=1)
    constant = float(np.mean(per_image < 1e-3 * float(np.mean(input_space.std))))
    low, high = images.min(), images.max()
    tolerance = 1e-4 * max(high - low, 1e-12)
    saturated = float(
        np.mean((images <= low + tolerance) | (images >= high - tolerance))
    )
    check = ImageCheck(
        bn_mismatch=bn_mismatch(probe, images.astype(np.float32)),
        max_abs_z=float(np.abs(z).max()),
        constant_fraction=constant,
        saturated_fraction=saturated,
        problems=[],
    )
    if not check.bn_mismatch <= MAX_BN_MISMATCH:
        check.problems.append(
            f"the BatchNorm statistics are far from the model's (relative mismatch "
            f"{check.bn_mismatch:.3g}, healthy runs stay below {MAX_BN_MISMATCH})"
        )
    if check.max_abs_z > MAX_ABS_Z:
        check.problems.append(
            f"some pixels lie {check.max_abs_z:.1f} std from the input mean "
            f"(healthy: below {MAX_ABS_Z:.0f})"
        )
    if constant > MAX_CONSTANT_FRACTION:
        check.problems.append(f"{100 * constant:.0f}% of the images are constant")
    if saturated > MAX_SATURATED_FRACTION:
        check.problems.append(
            f"{100 * saturated:.0f}% of the pixels sit at the batch's min or max"
        )
    return check


def warn_if_degenerate(check, model_name, batch_index, input_space):
    """Issue a `SynthesisWarning` naming the model, batch and numbers."""
    if check.healthy:
        return
    warnings.warn(
        f"Synthesized batch {batch_index} for model {model_name!r} looks degenerate: "
        + "; ".join(check.problems)
        + f". Input space used: {input_space}. If the model's inputs are not where "
        "that says, pass `input_mean` and `input_std`; calibrating on these images "
        "may give a poor quantized model.",
        SynthesisWarning,
        stacklevel=3,
    )
