"""Data-parallel training on PyTorch's ``torch.distributed``: process-group setup and gradient averaging.

How a GAN step is made data-parallel here (see ``docs/distributed.md``):

- Every rank holds the same weights (broadcast from rank 0 at construction) and
  seeds the same RNGs, so every rank draws the same *global* noise batch and keeps
  its own slice: an N-process run with per-rank batch B sees exactly the fakes
  of a 1-process run with batch N*B.
- Each rank serves its slice of one shared permutation per epoch (``TensorLoader``
  with ``rank``/``world_size``).
- After each backward, the gradients of the network being updated are averaged
  across ranks with one ``all_reduce`` over a flat buffer. This is what
  ``DistributedDataParallel`` does, done by hand because a GAN step breaks DDP's
  assumptions: the discriminator runs two forwards (real, fake) before one
  backward, a gradient penalty needs a double backward, and the generator update
  runs D with frozen weights. Averaging explicitly is correct for all three.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "AllReduceSync", "all_reduce_gradients", "all_reduce_max", "all_reduce_mean", "all_reduce_min",
    "broadcast_module", "init_from_env", "rank_and_world", "shutdown",
]


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised default process group, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device: torch.device) -> tuple[int, int]:
    """Initialise the default process group from torchrun's environment, if there is one.

    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) and with no group yet,
    this calls ``init_process_group`` with NCCL on CUDA and gloo on CPU. Outside
    torchrun it does nothing.

    Returns:
        ``(rank, world_size)``.
    """
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return rank_and_world()


def shutdown() -> None:
    """Destroy the default process group, if one is initialised: what a torchrun script does before it exits.

    Without it a gloo process can abort at interpreter exit ("terminate called without an active
    exception", exit status -6) while the group's threads are still alive.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()  # no barrier: a rank that failed must not wait for the others


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (no-op without a group)."""
    if rank_and_world()[1] == 1:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


def all_reduce_gradients(params: list[torch.Tensor], world_size: int) -> None:
    """Average the ``.grad`` of ``params`` across ranks, in one flat ``all_reduce``."""
    grads = [p.grad for p in params if p.grad is not None]
    if world_size == 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])  # (sum of numels,)
    dist.all_reduce(flat)
    flat.div_(world_size)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


class AllReduceSync:
    """The data-parallel gradient sync of a :class:`~torchgan_lite.training.step.GANStep`: average over ranks."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size

    def __call__(self, params: list[torch.Tensor]) -> None:  # type: ignore[override]
        all_reduce_gradients(list(params), self.world_size)


def all_reduce_mean(t: torch.Tensor, world_size: int) -> torch.Tensor:
    """The mean of ``t`` over ranks (returns ``t`` itself on one process)."""
    if world_size == 1:
        return t
    out = t.clone()
    dist.all_reduce(out)
    return out.div_(world_size)


def _all_reduce(t: torch.Tensor, op: dist.ReduceOp.RedOpType, world_size: int) -> torch.Tensor:
    if world_size == 1:
        return t
    out = t.clone()
    dist.all_reduce(out, op=op)
    return out


def all_reduce_min(t: torch.Tensor, world_size: int) -> torch.Tensor:
    """The element-wise minimum of ``t`` over ranks."""
    return _all_reduce(t, dist.ReduceOp.MIN, world_size)


def all_reduce_max(t: torch.Tensor, world_size: int) -> torch.Tensor:
    """The element-wise maximum of ``t`` over ranks."""
    return _all_reduce(t, dist.ReduceOp.MAX, world_size)
