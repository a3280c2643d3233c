"""`value_and_grad` and `apply_gradients` on the PyTorch backend."""

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
