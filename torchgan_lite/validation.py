"""The trainer's checks at its boundary: arguments, the networks' shapes, every batch.

Each function raises ``TypeError``/``ValueError`` naming the argument, the value and
what was expected, before anything is trained or changed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from .utils import check_int

if TYPE_CHECKING:
    from .trainer import GANTrainer

__all__ = [
    "check_batch",
    "check_labels",
    "check_optimizer",
    "check_trainer_arguments",
    "local_rank_device",
    "probe_shapes",
]


def local_rank_device(device: torch.device | str) -> torch.device | str:
    """Under torchrun with several processes, ``"cuda"``/``"auto"`` mean this process's GPU, ``cuda:LOCAL_RANK``."""
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is None or int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not torch.cuda.is_available():
        return device
    if device in ("cuda", "auto") or (isinstance(device, torch.device) and device.type == "cuda"
                                      and device.index is None):
        torch.cuda.set_device(int(local_rank))
        return torch.device("cuda", int(local_rank))
    return device


def check_optimizer(name: str, opt: object, module: nn.Module, module_name: str) -> None:
    """``opt`` must be a torch optimizer over ``module``'s parameters only (swapped optimizers are caught)."""
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"{name} must be a torch.optim.Optimizer, got {type(opt).__name__}")
    owned = {id(p) for p in module.parameters()}
    foreign = [p for g in opt.param_groups for p in g["params"] if id(p) not in owned]
    if foreign:
        raise ValueError(f"{name} updates {len(foreign)} tensor(s) that are not parameters of the "
                         f"{module_name}: build it from {module_name}.parameters()")


def probe_shapes(trainer: GANTrainer) -> tuple[int, ...]:
    """One tiny no-grad forward pass through G then D, in eval mode, to check they fit."""
    g, d = trainer.generator, trainer.discriminator
    g_mode, d_mode = g.training, d.training
    g.eval()
    d.eval()
    try:
        z = torch.zeros(2, trainer.latent_dim, device=trainer.device, dtype=trainer.param_dtype)  # (2, latent_dim)
        y = None if trainer.num_classes is None else torch.zeros(2, dtype=torch.int64, device=trainer.device)
        with torch.no_grad():
            try:
                fake = trainer._gen(z, y)
            except Exception as err:
                raise ValueError(f"latent_dim={trainer.latent_dim}: the generator rejected noise of shape "
                                 f"(2, {trainer.latent_dim}): {type(err).__name__}: {err}") from err
            if not isinstance(fake, torch.Tensor) or fake.dim() < 2 or fake.shape[0] != 2:
                raise ValueError(f"generator must return a (B, ...) tensor for noise (2, {trainer.latent_dim}), "
                                 f"got {getattr(fake, 'shape', type(fake).__name__)}")
            try:
                logits = trainer._disc(fake, y)
            except Exception as err:
                raise ValueError(f"the discriminator rejected the generator's output of shape "
                                 f"{tuple(fake.shape)}: {type(err).__name__}: {err}") from err
            if not isinstance(logits, torch.Tensor) or tuple(logits.shape) not in ((2,), (2, 1)):
                raise ValueError("discriminator must return one logit per sample, shape (B,) or (B, 1); for "
                                 f"a batch of 2 it returned {getattr(logits, 'shape', type(logits).__name__)}")
    finally:
        g.train(g_mode)
        d.train(d_mode)
    return tuple(fake.shape[1:])


def check_batch(trainer: GANTrainer, batch: object) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate one batch; returns ``(real, labels)`` on the device (labels None if unconditional)."""
    labels = None
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError("batch is an empty tuple; expected a tensor or (images, labels)")
        if trainer.num_classes is not None:
            if len(batch) < 2:
                raise ValueError("a conditional generator needs (images, labels) batches, got a 1-tuple")
            labels = batch[1]
        batch = batch[0]  # (images, labels): an unconditional trainer uses the images
    elif trainer.num_classes is not None:
        raise TypeError(f"the generator is conditional (num_classes={trainer.num_classes}): batches must be "
                        f"(images, labels), got a {type(batch).__name__}; use TensorLoader(images, labels)")
    real = batch
    if not isinstance(real, torch.Tensor):
        raise TypeError(f"real must be a torch.Tensor batch (or an (images, ...) tuple), got {type(real).__name__}")
    if real.layout != torch.strided:
        raise TypeError(f"real must be a dense (strided) tensor, got layout {real.layout}; call .to_dense()")
    if real.device.type == "meta":
        raise ValueError("real is on the 'meta' device and holds no data")
    if not real.is_floating_point():
        raise TypeError(f"real must be a floating-point tensor in the generator's range (e.g. [-1, 1]), "
                        f"got dtype {real.dtype}; convert integer images with x.float() / 127.5 - 1")
    if real.dtype != trainer.param_dtype:
        raise TypeError(f"real has dtype {real.dtype} but the models are {trainer.param_dtype}; "
                        f"convert it with .to({trainer.param_dtype})")
    if real.dim() < 2 or tuple(real.shape[1:]) != trainer.sample_shape:
        raise ValueError(f"real has shape {tuple(real.shape)} but the generator makes samples of shape "
                         f"(B, {', '.join(map(str, trainer.sample_shape))}): the data and the models must agree")
    if real.shape[0] < 1:
        raise ValueError("real is an empty batch (0 samples)")
    if real.device != trainer.device:
        real = real.to(trainer.device, non_blocking=True)
    if labels is not None:
        labels = check_labels(trainer, labels, real.shape[0])
    return real, labels


def check_labels(trainer: GANTrainer, labels: object, n: int, name: str = "labels") -> torch.Tensor:
    assert trainer.num_classes is not None
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices, got {type(labels).__name__}")
    if labels.dtype != torch.int64:
        raise TypeError(f"{name} must be int64 class indices, got dtype {labels.dtype}")
    if tuple(labels.shape) != (n,):
        raise ValueError(f"{name} must have shape ({n},), one per sample, got {tuple(labels.shape)}")
    if labels.device.type == "cpu":  # a free check on the host; on a GPU it would be a sync per step
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= trainer.num_classes:
            raise ValueError(f"{name} must be in [0, {trainer.num_classes}), got values in [{lo}, {hi}]")
    return labels.to(trainer.device, non_blocking=True)


def check_trainer_arguments(
    generator: object, discriminator: object, loss: object, *, latent_dim: object, n_critic: object,
    regularizers: object, seed: object, amp: object, fast: object, check_finite: object, fused_d_forward: object,
    distributed: object, capture: object, compile: object,
) -> tuple[int, int | None]:
    """Check ``GANTrainer``'s arguments (before any is used).

    Returns:
        ``(latent_dim, num_classes)``: the noise size (from the generator's ``latent_dim``
        attribute when the argument is None) and the generator's ``num_classes`` (None if
        unconditional).
    """
    if not isinstance(generator, nn.Module):
        raise TypeError(f"generator must be a torch.nn.Module, got {type(generator).__name__}")
    if not isinstance(discriminator, nn.Module):
        raise TypeError(f"discriminator must be a torch.nn.Module, got {type(discriminator).__name__}")
    if generator is discriminator:
        raise ValueError("generator and discriminator must be two different modules")
    for method in ("discriminator_loss", "generator_loss"):
        if not callable(getattr(loss, method, None)):
            raise TypeError(f"loss must have a callable {method}(); got {type(loss).__name__} "
                            "(see torchgan_lite.losses)")
    check_int("n_critic", n_critic, 1)
    if isinstance(regularizers, (str, bytes)) or not isinstance(regularizers, Sequence):
        raise TypeError(f"regularizers must be a sequence of callables, got {type(regularizers).__name__}")
    for i, reg in enumerate(regularizers):
        if not callable(reg):
            raise TypeError(f"regularizers[{i}] must be callable as reg(D, real, fake), got {reg!r}")
    if seed is not None:
        check_int("seed", seed, 0)
    if amp not in (None, "bf16"):
        raise ValueError(f"amp must be None or 'bf16', got {amp!r}")
    for flag_name, flag in (("fast", fast), ("fused_d_forward", fused_d_forward)):
        if not isinstance(flag, bool):
            raise TypeError(f"{flag_name} must be a bool, got {flag!r}")
    if capture not in (None, "cuda_graph"):
        raise ValueError(f"capture must be None or 'cuda_graph', got {capture!r}")
    if not isinstance(compile, bool):
        raise TypeError(f"compile must be a bool, got {compile!r}")
    if distributed is not None and not isinstance(distributed, bool):
        raise TypeError(f"distributed must be a bool or None, got {distributed!r}")
    if not (isinstance(check_finite, bool) or check_finite == "auto"):
        check_int("check_finite", check_finite, 1)
    if latent_dim is None:
        latent_dim = getattr(generator, "latent_dim", None)
        if latent_dim is None:
            raise ValueError("latent_dim is required: the generator has no latent_dim attribute, "
                             "so pass GANTrainer(..., latent_dim=N)")
    check_int("latent_dim", latent_dim, 1)
    num_classes = getattr(generator, "num_classes", None)
    if num_classes is not None:
        check_int("generator.num_classes", num_classes, 1)
    return latent_dim, num_classes  # type: ignore[return-value]
