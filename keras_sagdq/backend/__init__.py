"""The gradient seam: the only code that imports TensorFlow or PyTorch.

Keras 3 has no backend-agnostic `grad`. Each module here offers the same
functions, `value_and_grad(loss_fn, variables)` and
`apply_gradients(optimizer, grads, variables)`, and this package picks the
module of the active Keras backend, so a single `train_step` serves both.
The random masks of a training step (`uniform_like`, `random_streams`) live
here too: on PyTorch, Keras' per-call seeding costs a step 13 %.

Example:

```python
from keras_sagdq import backend

v = keras.Variable(3.0)
loss, (grad,) = backend.value_and_grad(lambda: v * v, [v])   # 9.0, 6.0
```
"""

import keras


def _impl():
    name = keras.backend.backend()
    if name == "tensorflow":
        from keras_sagdq.backend import tensorflow as impl
    elif name == "torch":
        from keras_sagdq.backend import torch as impl
    else:
        raise ValueError(
            "keras_sagdq supports the 'tensorflow' and 'torch' Keras backends. "
            f"Received: KERAS_BACKEND={name!r}"
        )
    return impl


def value_and_grad(loss_fn, variables):
    """Evaluate `loss_fn()` and its gradients with respect to `variables`.

    Args:
        loss_fn: a zero-argument callable returning a scalar tensor. It must
            read the variables inside the call (e.g. through a model or
            `keras.ops`), so the backend can record the computation.
        variables: list of `keras.Variable`.

    Returns:
        `(loss, grads)`: the scalar loss and one gradient per variable (zeros
        for a variable the loss does not depend on).
    """
    return _impl().value_and_grad(loss_fn, list(variables))


def gradient_function(loss_fn, variables):
    """A function `(*tensors) -> (loss, grads)` of `loss_fn(*tensors)`.

    For gradients outside `fit`, over many batches: on TensorFlow the
    function is traced once per input shape (eager convolution gradients
    of oneDNN crashed on some batch sizes, graph ones do not, and tracing
    is faster); on PyTorch it runs eagerly.

    Args:
        loss_fn: a callable of tensors returning a scalar tensor; Python
            state it reads (e.g. layer modes) is fixed at the first call.
        variables: list of `keras.Variable`.

    Returns:
        A callable returning `(loss, grads)` as `value_and_grad` does.

    Example:

    >>> v = keras.Variable(3.0)
    >>> grad_fn = gradient_function(lambda x: v * x, [v])
    >>> float(grad_fn(keras.ops.convert_to_tensor(2.0))[1][0])
    2.0
    """
    variables = list(variables)

    def value_and_grads(*tensors):
        return value_and_grad(lambda: loss_fn(*tensors), variables)

    return _impl().traced(value_and_grads)


def minimize_step(loss_fn, optimizers, groups):
    """One step of several optimizers, each on its own group of variables.

    The trainers of the library give different variables different rates
    (latents and generator, steps and rounding logits); this is their one
    update rule. Empty groups are skipped.

    Args:
        loss_fn: as in `value_and_grad`.
        optimizers: one Keras optimizer per group, built on it.
        groups: lists of `keras.Variable`.

    Returns:
        The loss, without its gradient.

    Example:

    >>> v = keras.Variable(3.0)
    >>> optimizer = keras.optimizers.SGD(0.1)
    >>> optimizer.build([v])
    >>> float(minimize_step(lambda: v * v, [optimizer], [[v]]))
    9.0
    """
    variables = [v for group in groups for v in group]
    loss, grads = value_and_grad(loss_fn, variables)
    start = 0
    for optimizer, group in zip(optimizers, groups):
        if group:
            _impl().apply_gradients(optimizer, grads[start : start + len(group)], group)
        start += len(group)
    return keras.ops.stop_gradient(loss)


def uniform_like(x, seed_generator):
    """Uniform noise in [0, 1) of `x`'s shape, drawn from `seed_generator`.

    Outside `random_streams()` this is `keras.random.uniform`. Inside it, on
    PyTorch, each seed generator is read once and feeds one `torch.Generator`
    for the rest of the block: Keras builds and seeds a fresh generator per
    call, with a device-to-host read of the seed, which cost the torch
    reconstruction step 13 % on CPU and would stall a GPU once per mask.
    The draws are as random but not the same numbers as Keras'. On
    TensorFlow this is always `keras.random.uniform`.

    Args:
        x: a tensor whose shape the noise takes.
        seed_generator: a `keras.random.SeedGenerator`.

    Returns:
        A float32 tensor shaped like `x`.

    Example:

    >>> noise = uniform_like(np.zeros((2, 3)), keras.random.SeedGenerator(0))
    >>> tuple(noise.shape)
    (2, 3)
    """
    return _impl().uniform_like(x, seed_generator)


def random_streams():
    """A context in which `uniform_like` keeps one stream per seed generator.

    Each entry starts the streams afresh from the seed generators' states
    (advancing each by one draw), so a block's masks depend only on the
    states at the block's start: a resumed reconstruction draws the same
    masks as an uninterrupted one.

    Returns:
        A context manager (a no-op on TensorFlow).

    Example:

    >>> generator = keras.random.SeedGenerator(0)
    >>> with random_streams():
    ...     first = uniform_like(np.zeros((4,)), generator)
    """
    return _impl().random_streams()


def use_local_accelerator(local_rank):
    """Put this process on GPU `local_rank` of its machine (if it has GPUs).

    Launchers such as `torchrun` start one process per GPU and tell each its
    index on the machine in `LOCAL_RANK`; without this, every process would
    use the first GPU. The `keras-sagdq` command calls it when `LOCAL_RANK`
    is set. On TensorFlow it must run before the first GPU op.

    Args:
        local_rank: the process's index on its machine (int or digit string);
            taken modulo the number of GPUs.

    Returns:
        The device's name, or None on a machine without GPUs.

    Raises:
        ValueError: if `local_rank` is not a non-negative integer.
        RuntimeError: on TensorFlow, if its GPUs are already in use (set
            `CUDA_VISIBLE_DEVICES` per process instead).

    Example:

    >>> device = use_local_accelerator(0)  # "cuda:0" with GPUs on torch, else None
    """
    try:
        rank = int(local_rank)
    except (TypeError, ValueError):
        rank = -1
    if rank < 0:
        raise ValueError(
            "`local_rank` must be a non-negative integer (as LOCAL_RANK). "
            f"Received: local_rank={local_rank!r}"
        )
    return _impl().use_local_accelerator(rank)
