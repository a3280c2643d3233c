"""The gradient seam and device choice on the PyTorch backend."""

import contextlib

import keras
import torch

# {SeedGenerator: torch.Generator} inside `random_streams()`, else None.
_streams = None


def value_and_grad(loss_fn, variables):
    with torch.enable_grad():
        loss = loss_fn()
        tensors = [v.value for v in variables]
        grads = torch.autograd.grad(loss, tensors, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)]
    return loss, grads


def traced(function):
    return function


def apply_gradients(optimizer, grads, variables):
    optimizer.apply(grads, variables)


@contextlib.contextmanager
def random_streams():
    global _streams
    outer, _streams = _streams, {}
    try:
        yield
    finally:
        _streams = outer


def uniform_like(x, seed_generator):
    x = torch.as_tensor(x)
    if _streams is None or x.device.type == "meta":
        return keras.random.uniform(tuple(x.shape), seed=seed_generator)
    generator = _streams.get(seed_generator)
    if generator is None:
        first, second = (int(s) & 0xFFFFFFFF for s in seed_generator.next().tolist())
        # Both words, not their sum: states [s, k] and [s - 1, k + 1] of two
        # quantizers must not share a stream.
        generator = torch.Generator(device=x.device)
        generator.manual_seed(first << 32 | second)
        _streams[seed_generator] = generator
    return torch.rand(
        x.shape, generator=generator, device=x.device, dtype=torch.float32
    )


def use_local_accelerator(local_rank):
    if not torch.cuda.is_available():
        return None
    # Keras' torch backend places tensors on "cuda", the current device.
    index = local_rank % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return f"cuda:{index}"
