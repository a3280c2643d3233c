"""The gradient seam and device choice on the PyTorch backend."""

import torch


def value_and_grad(loss_fn, variables):
    with torch.enable_grad():
        loss = loss_fn()
        tensors = [v.value for v in variables]
        grads = torch.autograd.grad(loss, tensors, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)]
    return loss, grads


def apply_gradients(optimizer, grads, variables):
    optimizer.apply(grads, variables)


def use_local_accelerator(local_rank):
    if not torch.cuda.is_available():
        return None
    # Keras' torch backend places tensors on "cuda", the current device.
    index = local_rank % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return f"cuda:{index}"
