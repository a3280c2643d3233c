"""Set the activation quantizers' steps from sample images."""

import keras
import numpy as np

from keras_sagdq.input_range import cover_input_range
from keras_sagdq.input_range import default_input_range
from keras_sagdq.input_range import input_quantizer
from keras_sagdq.input_range import set_input_grid
from keras_sagdq.integer_alignment import align_biases
from keras_sagdq.layers import activation_quantizers
from keras_sagdq.layers import quantization_off
from keras_sagdq.layers import reset_compiled_functions
from keras_sagdq.layers import share_grids

_VALUES_PER_BATCH = 1 << 16


def calibrate_activations(
    qmodel, images, method="lp", batch_size=32, max_samples=256, seed=0
):
    """Initialize every `ActivationQuantizer` of `qmodel` from `images`.

    Activations are collected with all quantizers off (the float model), at
    most `max_samples` images, keeping a fixed-size random subsample of each
    tensor per batch plus its exact min and max, so memory stays bounded on
    large models. Each quantizer then picks its sign and step (`method`),
    except an 8-bit quantizer of the model input (`int8_tensors`), which
    takes the grid of `default_input_range` and stays fixed; such a model's
    biases are then rounded to the units of an integer runtime
    (`align_biases`).

    Args:
        qmodel: a model from `keras_sagdq.quantize_model`.
        images: numpy array `(N, H, W, C)` in the model's input space.
        method: `"lp"` (the `mean|x - Q(x)|^2.4` search) or `"minmax"`.
        batch_size: images per forward pass.
        max_samples: use at most this many images.
        seed: seed of the subsampling.

    Raises:
        ValueError: if `images` is empty or `method` is unknown.

    Example:

    >>> qmodel = ks.quantize_model(model, ks.QuantConfig(4, 4))
    >>> ks.calibrate_activations(qmodel, x_train[:256])
    """
    if method not in ("lp", "minmax"):
        raise ValueError(
            f"`method` must be 'lp' or 'minmax'. Received: method={method!r}"
        )
    images = np.asarray(images, np.float32)[:max_samples]
    if len(images) == 0:
        raise ValueError(f"`images` is empty. Received: images.shape={images.shape}")
    quantizers = activation_quantizers(qmodel)
    if not quantizers:
        return
    probe = keras.Model(qmodel.input, [q.input for q in quantizers])
    rng = np.random.default_rng(seed)
    samples = [[] for _ in quantizers]
    with quantization_off(qmodel):
        for start in range(0, len(images), batch_size):
            outputs = probe(images[start : start + batch_size], training=False)
            for kept, value in zip(samples, outputs):
                kept.append(_subsample(keras.ops.convert_to_numpy(value), rng))
    for quantizer, kept in zip(quantizers, samples):
        quantizer.initialize(np.concatenate(kept), method=method)
    share_grids(qmodel)
    first = input_quantizer(qmodel)
    if first is not None and first.bits == 8:
        # Built for an integer runtime (`int8_tensors`). The file's input
        # grid: where real inputs live, not where these (often synthetic)
        # images happen to stop; and biases in the file's units.
        low, high = default_input_range(qmodel, images)
        set_input_grid(first, low, high)
        cover_input_range(qmodel, low, high)
        share_grids(qmodel)
        align_biases(qmodel)
    reset_compiled_functions(qmodel)


def _subsample(values, rng):
    flat = values.ravel()
    if flat.size > _VALUES_PER_BATCH:
        flat = rng.choice(flat, _VALUES_PER_BATCH, replace=False)
    return np.concatenate([flat, [values.min(), values.max()]])
