"""Uniform quantizer math: fake quantization, learned steps, soft rounding.

Everything here is a pure function of tensors (``keras.ops``) or of numpy
arrays (the one-off step-size searches), so the same code runs on every
Keras backend. The layers in ``keras_sagdq.layers`` hold the variables and
call these functions.

Reference:
    - [Esser et al., 2020. Learned Step Size Quantization](https://arxiv.org/abs/1902.08153)
    - [Nagel et al., 2020. Up or Down? Adaptive Rounding for Post-Training
      Quantization](https://arxiv.org/abs/2004.10568)
    - [Jeon et al., 2023. GENIE: Show Me the Data for Quantization](https://arxiv.org/abs/2212.04780)
"""

import numpy as np
from keras import ops

MIN_BITS = 2
MAX_BITS = 8
# Stretch of the rectified sigmoid
# h(V) = clip(sigmoid(V) * (ZETA - GAMMA) + GAMMA, 0, 1) lets h reach exactly
# 0 and 1 with finite logits.
ZETA = 1.1
GAMMA = -0.1
DEFAULT_NORM_P = 2.4
DEFAULT_NUM_CANDIDATES = 100
_MIN_STEP = 1e-8
# Activation grids: symmetric around 0, with a zero point, or chosen per tensor.
SYMMETRIES = ("auto", "symmetric", "asymmetric")


def check_bits(bits, name):
    """Validate a bit width argument.

    Args:
        bits: the value to check.
        name: the argument name to put in the error message.

    Returns:
        `bits` as a Python int.

    Raises:
        ValueError: if `bits` is not an integer in [2, 8].
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise ValueError(
            f"`{name}` must be an integer between {MIN_BITS} and {MAX_BITS}. "
            f"Received: {name}={bits!r}"
        )
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(
            f"`{name}` must be between {MIN_BITS} and {MAX_BITS}. "
            f"Received: {name}={bits}"
        )
    return int(bits)


def integer_range(bits, signed, narrow=False):
    """Return `(qmin, qmax)` of a `bits`-bit integer grid.

    `narrow` drops the most negative signed value, so the grid is symmetric
    around 0 (TFLite's convention for int8 weights: [-127, 127]).

    Example:

    >>> integer_range(4, signed=False)
    (0, 15)
    >>> integer_range(4, signed=True)
    (-8, 7)
    >>> integer_range(8, signed=True, narrow=True)
    (-127, 127)
    """
    if signed:
        return -(2 ** (bits - 1)) + int(bool(narrow)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def round_ste(x):
    """Round to nearest with a straight-through (identity) gradient."""
    return x + ops.stop_gradient(ops.round(x) - x)


def fake_quantize(x, step, zero_point, qmin, qmax):
    """Quantize and dequantize `x` on a uniform grid (LSQ).

    The rounding has a straight-through gradient, so the gradient with
    respect to `step` is the LSQ one: `round(x/s) - x/s` inside the range
    and `qmin - zp` or `qmax - zp` where `x` is clipped.

    Args:
        x: tensor to quantize.
        step: step size, broadcastable to `x`.
        zero_point: integer offset (as float), broadcastable to `x`.
        qmin: smallest integer of the grid.
        qmax: largest integer of the grid.

    Returns:
        A tensor like `x` holding `step * (clip(round(x / step) + zp) - zp)`.

    Example:

    >>> y = fake_quantize(np.array([0.26, 0.9, -1.0]), 0.25, 0.0, 0, 3)
    >>> keras.ops.convert_to_numpy(y)
    array([0.25, 0.75, 0.  ])
    """
    x = ops.convert_to_tensor(x)
    q = ops.clip(round_ste(x / step) + zero_point, qmin, qmax)
    return (q - zero_point) * step


def rectified_sigmoid(v):
    """The soft rounding offset `h(V) = clip(1.2 * sigmoid(V) - 0.1, 0, 1)`."""
    return ops.clip(ops.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def rounding_logits_for(residue):
    """Invert `rectified_sigmoid`: logits `V` with `h(V) = residue` (numpy).

    Args:
        residue: array of fractional parts in [0, 1).

    Returns:
        float32 array of logits; residues at the edges map to finite logits.
    """
    p = (np.asarray(residue, np.float64) - GAMMA) / (ZETA - GAMMA)
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p)).astype(np.float32)


def adaround_quantize(base, logits, step, zero_point, qmin, qmax, hard):
    """Dequantized weights from a frozen integer base and a rounding offset.

    `w_q = s * (clip(base + h + zp, qmin, qmax) - zp)`, where `h` is the
    soft offset `h(V)` while learning and `1[V >= 0]` once hardened.

    Args:
        base: frozen `floor(w / s0)`, the integer part at the initial step.
        logits: rounding logits `V`, same shape as `base`.
        step: learned step `s`, broadcastable to `base`.
        zero_point: integer offset, broadcastable to `base`.
        qmin: smallest integer of the grid.
        qmax: largest integer of the grid.
        hard: if True, round with `V >= 0` (what is deployed).

    Returns:
        The fake-quantized weights.
    """
    if hard:
        h = ops.cast(ops.greater_equal(logits, 0.0), base.dtype)
    else:
        h = rectified_sigmoid(logits)
    q = ops.clip(base + h + zero_point, qmin, qmax)
    return (q - zero_point) * step


def rounding_regularizer(logits, beta):
    """AdaRound's regularizer `sum(1 - |2 h(V) - 1| ** beta)`.

    It is zero when every offset sits at 0 or 1, so it pushes the soft
    rounding towards a hard decision as `beta` is annealed down.
    """
    h = rectified_sigmoid(logits)
    return ops.sum(1.0 - ops.power(ops.abs(2.0 * h - 1.0), beta))


def _grid_error(x, step, zero_point, qmin, qmax, p, axis):
    q = np.clip(np.round(x / step) + zero_point, qmin, qmax)
    return np.mean(np.abs((q - zero_point) * step - x) ** p, axis=axis)


def search_weight_params(
    kernel,
    bits,
    channel_axes,
    symmetric=False,
    p=DEFAULT_NORM_P,
    num_candidates=DEFAULT_NUM_CANDIDATES,
):
    """Per-channel step and zero point minimizing `mean|w - Q(w)|^p`.

    A grid search over clip ratios from 1.00 down to 0.01 of each channel's
    min/max range (numpy, run once when a layer is quantized).

    Args:
        kernel: numpy weights.
        bits: weight bit width.
        channel_axes: axes that index output channels (kept); all other axes
            are reduced. Pass `()` for a single per-tensor step.
        symmetric: if True, a signed narrow grid `[-(2^(b-1) - 1), 2^(b-1) - 1]`
            with zero point 0.
        p: norm of the error.
        num_candidates: number of clip ratios tried.

    Returns:
        `(step, zero_point)` numpy float32 arrays shaped like `kernel` with
        the reduced axes set to 1.
    """
    w = np.asarray(kernel, np.float32)
    reduce_axes = tuple(a for a in range(w.ndim) if a not in channel_axes)
    qmin, qmax = integer_range(bits, symmetric, narrow=symmetric)
    w_min = np.minimum(w.min(axis=reduce_axes, keepdims=True), 0.0)
    w_max = np.maximum(w.max(axis=reduce_axes, keepdims=True), 0.0)
    best_err = np.full(w_min.shape, np.inf, np.float32)
    best_step = np.ones_like(w_min)
    best_zp = np.zeros_like(w_min)
    for ratio in np.linspace(1.0, 0.01, num_candidates, dtype=np.float32):
        if symmetric:
            amax = ratio * np.maximum(-w_min, w_max)
            step = np.maximum(amax / qmax, _MIN_STEP)
            zp = np.zeros_like(step)
        else:
            lo, hi = ratio * w_min, ratio * w_max
            step = np.maximum((hi - lo) / np.float32(qmax - qmin), _MIN_STEP)
            zp = np.clip(np.round(-lo / step), qmin, qmax)
        err = _grid_error(w, step, zp, qmin, qmax, p, reduce_axes)
        err = err.reshape(best_err.shape)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_step = np.where(better, step, best_step)
        best_zp = np.where(better, zp, best_zp)
    return best_step.astype(np.float32), best_zp.astype(np.float32)


def search_activation_step(
    values,
    bits,
    signed,
    p=DEFAULT_NORM_P,
    num_candidates=DEFAULT_NUM_CANDIDATES,
):
    """Per-tensor activation step minimizing `mean|x - Q(x)|^p` (numpy).

    Args:
        values: numpy array of sample activations (any shape).
        bits: activation bit width.
        signed: if True, a signed symmetric grid; else `[0, 2^b - 1]`.
        p: norm of the error.
        num_candidates: number of clip ratios tried, 1.00 down to 0.01.

    Returns:
        The step size, a Python float.
    """
    x = np.asarray(values, np.float32).ravel()
    qmin, qmax = integer_range(bits, signed)
    amax = float(np.max(np.abs(x))) if signed else float(max(x.max(), 0.0))
    if amax <= 0.0:
        return 1.0
    best_err, best_step = np.inf, amax / qmax
    for ratio in np.linspace(1.0, 0.01, num_candidates):
        step = max(ratio * amax / qmax, _MIN_STEP)
        err = float(_grid_error(x, step, 0.0, qmin, qmax, p, None))
        if err < best_err:
            best_err, best_step = err, step
    return float(best_step)


def search_activation_grid(
    values,
    bits,
    signed,
    symmetry="symmetric",
    method="lp",
    p=DEFAULT_NORM_P,
    num_candidates=DEFAULT_NUM_CANDIDATES,
):
    """Per-tensor activation grid: a step and, where it wins, a zero point (numpy).

    A non-negative tensor always gets the unsigned grid `[0, 2^b - 1]`. A
    signed one gets the symmetric `[-2^(b-1), 2^(b-1) - 1]` grid, or the
    asymmetric `[0, 2^b - 1]` grid shifted by a zero point `z` (values
    `(q - z) * step`), which spends no levels on a side the tensor barely
    reaches (hard-swish's output lives in `[-0.375, inf)`).

    Args:
        values: numpy array of sample activations (any shape).
        bits: activation bit width.
        signed: whether the tensor takes negative values.
        symmetry: `"symmetric"`, `"asymmetric"`, or `"auto"` (the grid with
            the smaller `mean|x - Q(x)|^p` on `values`).
        method: `"lp"` (clip ratios 1.00 down to 0.01, minimizing
            `mean|x - Q(x)|^p`) or `"minmax"` (the full observed range).
        p: norm of the error.
        num_candidates: number of clip ratios tried by `"lp"`.

    Returns:
        `(step, zero_point)`: a Python float and an int in `[0, 2^b - 1]`,
        or None for the symmetric (or unsigned) grid.

    Raises:
        ValueError: for an unknown `symmetry` or `method`.

    Example:

    >>> x = np.linspace(-0.375, 3.0, 1000)
    >>> step, zero_point = search_activation_grid(x, 4, True, "asymmetric", "minmax")
    >>> round(step, 4), zero_point
    (0.2308, 2)
    """
    if symmetry not in SYMMETRIES:
        raise ValueError(
            f"`symmetry` must be one of {SYMMETRIES}. Received: symmetry={symmetry!r}"
        )
    if method not in ("lp", "minmax"):
        raise ValueError(
            f"`method` must be 'lp' or 'minmax'. Received: method={method!r}"
        )
    x = np.asarray(values, np.float32).ravel()
    num_candidates = 1 if method == "minmax" else num_candidates
    if not signed or symmetry == "symmetric":
        if method == "minmax":
            return minmax_activation_step(x, bits, signed), None
        return search_activation_step(x, bits, signed, p, num_candidates), None
    qmax = 2**bits - 1
    low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    best = (np.inf, 1.0, 0)
    if high > low:
        for ratio in np.linspace(1.0, 0.01, num_candidates):
            step = max(ratio * (high - low) / qmax, _MIN_STEP)
            zero_point = int(np.clip(np.round(-ratio * low / step), 0, qmax))
            if method == "minmax":
                step, zero_point = _covering_grid(low, high, step, qmax)
            err = float(_grid_error(x, step, zero_point, 0, qmax, p, None))
            if err < best[0]:
                best = (err, float(step), zero_point)
    if symmetry == "asymmetric":
        return best[1], best[2]
    if method == "minmax":
        step = minmax_activation_step(x, bits, signed)
    else:
        step = search_activation_step(x, bits, signed, p, num_candidates)
    qmin_s, qmax_s = integer_range(bits, signed=True)
    symmetric_err = float(_grid_error(x, step, 0.0, qmin_s, qmax_s, p, None))
    return (best[1], best[2]) if best[0] < symmetric_err else (step, None)


def _covering_grid(low, high, step, qmax):
    """The smallest `(step, zero point)` near `step` whose grid holds [low, high].

    A zero point rounded to an integer moves the grid; of the two integers
    around `-low / step`, the one needing the smaller step to keep both ends.
    """
    best = None
    for zero_point in {int(np.floor(-low / step)), int(np.ceil(-low / step))}:
        zero_point = int(np.clip(zero_point, 0, qmax))
        if zero_point == 0 and low < 0:
            continue
        needed = max(high / max(qmax - zero_point, 1), -low / max(zero_point, 1))
        if best is None or needed < best[0]:
            best = (max(needed, _MIN_STEP), zero_point)
    return best


def minmax_activation_step(values, bits, signed):
    """Per-tensor step that covers the full observed range (no clipping)."""
    x = np.asarray(values, np.float32)
    _, qmax = integer_range(bits, signed)
    amax = float(np.max(np.abs(x))) if signed else float(max(x.max(), 0.0))
    return max(amax / qmax, _MIN_STEP) if amax > 0 else 1.0
