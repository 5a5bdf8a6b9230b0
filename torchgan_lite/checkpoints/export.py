"""Rebuild a generator from a checkpoint: the builder config it recorded, its EMA or trained weights.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from torchgan_lite.checkpoints.format import load_checkpoint
from torchgan_lite.nets import registry
from torchgan_lite.utils.runtime import resolve_device

__all__ = ["generator_from_checkpoint", "generator_state", "legacy_generator_config", "load_generator"]

_LINEAR_WEIGHT = re.compile(r"^net\.(\d+)\.weight$")  # nn.Sequential Linear weights, (out, in)
_CUSTOM = "build your generator yourself and load ckpt['generator'] into it"


def generator_state(ckpt: Mapping[str, Any], source: str = "checkpoint",
                    use_ema: bool = True) -> tuple[dict[str, torch.Tensor], str]:
    """The generator weights to sample from: the EMA copy if asked for and saved, else the trained ones.

    Args:
        ckpt: A loaded checkpoint.
        source: How to name the checkpoint in errors.
        use_ema: Prefer ``ckpt["extra"]["ema"]["generator"]`` when it is there.

    Returns:
        ``(state_dict, which)`` with ``which`` either ``"ema"`` or ``"generator"``.

    Raises:
        ValueError: the checkpoint holds no generator state dict.
    """
    extra = ckpt.get("extra")
    ema = extra.get("ema") if isinstance(extra, Mapping) else None
    if use_ema and isinstance(ema, Mapping) and isinstance(ema.get("generator"), Mapping):
        return dict(ema["generator"]), "ema"
    state = ckpt.get("generator")
    if not isinstance(state, Mapping):
        raise ValueError(f"{source}: no generator state dict in the checkpoint (its keys: {sorted(ckpt)[:8]})")
    return dict(state), "generator"


def _classes(embed: torch.Tensor) -> dict[str, int]:
    """``num_classes`` and ``embed_dim`` from a label embedding ``(num_classes, embed_dim)``; the latter only
    when it is not the builders' default (``num_classes``), so the config reads as the call that made it."""
    num_classes, embed_dim = int(embed.shape[0]), int(embed.shape[1])
    return {"num_classes": num_classes} | ({"embed_dim": embed_dim} if embed_dim != num_classes else {})


def _dcgan_config(state: Mapping[str, torch.Tensor], latent_dim: int, shape: tuple[int, ...],
                  source: str) -> registry.Config:
    from torchgan_lite.nets.dcgan import IMAGE_SIZES

    if len(shape) != 3 or shape[1] != shape[2] or shape[1] not in IMAGE_SIZES:
        raise ValueError(f"{source}: a DCGAN generator makes (C, S, S) images with S in {sorted(IMAGE_SIZES)}, "
                         f"but the checkpoint's sample_shape is {shape}")
    spectral = any(".parametrizations." in k for k in state)
    norm = "spectral" if spectral else "batch" if any(k.endswith("running_mean") for k in state) else None
    suffix = "parametrizations.weight.original" if spectral else "weight"
    convs = sorted((int(k.split(".")[1]), v) for k, v in state.items()
                   if k.startswith("net.") and k.endswith(suffix) and isinstance(v, torch.Tensor) and v.dim() == 4)
    if len(convs) < 2:
        raise ValueError(f"{source}: not a dcgan_generator state (state keys {sorted(state)[:6]}); {_CUSTOM}")
    embed = state.get("embed.weight", state.get("embed.parametrizations.weight.original"))
    kwargs = {"latent_dim": latent_dim, "image_size": shape[1], "channels": shape[0],
              "base_width": int(convs[-1][1].shape[0]),  # the last ConvTranspose2d's weight: (in, out, k, k)
              "norm": norm}
    if isinstance(embed, torch.Tensor):
        kwargs |= _classes(embed)
    return {"builder": "dcgan_generator", "kwargs": kwargs}


def _mlp_config(state: Mapping[str, torch.Tensor], latent_dim: int, shape: tuple[int, ...],
                source: str) -> registry.Config:
    layers = sorted((int(m.group(1)), v) for k, v in state.items() if (m := _LINEAR_WEIGHT.match(k)))
    shapes = [tuple(w.shape) for _, w in layers if isinstance(w, torch.Tensor)]
    embed = state.get("embed.weight")
    if not shapes or any(len(s) != 2 for s in shapes) or (embed is not None and embed.dim() != 2):
        raise ValueError(f"{source}: the generator is not an mlp_generator, conditional_mlp_generator or "
                         f"dcgan_generator (state keys {sorted(state)[:6]}); {_CUSTOM}")
    embed_dim = 0 if embed is None else int(embed.shape[1])
    widths = [shapes[0][1]] + [s[0] for s in shapes]  # latent (+ embedding), hidden..., prod(sample_shape)
    chained = all(shapes[i][1] == shapes[i - 1][0] for i in range(1, len(shapes)))
    if not chained or widths[0] != latent_dim + embed_dim or widths[-1] != math.prod(shape):
        label = f" plus a {embed_dim}-d label embedding" if embed is not None else ""
        raise ValueError(f"{source}: the generator's Linear shapes {shapes} do not map latent_dim={latent_dim}"
                         f"{label} to samples of shape {shape}")
    kwargs: dict[str, Any] = {"latent_dim": latent_dim, "hidden": widths[1:-1], "out_shape": list(shape)}
    if embed is None:
        return {"builder": "mlp_generator", "kwargs": kwargs}
    kwargs |= _classes(embed)
    return {"builder": "conditional_mlp_generator", "kwargs": kwargs}


def legacy_generator_config(ckpt: Mapping[str, Any], source: str = "checkpoint") -> registry.Config:
    """The builder config of a checkpoint written before configs were saved (format 1), read off its weights.

    A transposed convolution first means :func:`~torchgan_lite.nets.dcgan.dcgan_generator`
    (norm from the keys, base width from the last layer, classes from ``embed``); a chain
    of Linear weights means :func:`~torchgan_lite.nets.mlp.mlp_generator`, or
    :func:`~torchgan_lite.nets.conditional.conditional_mlp_generator` with an ``embed.weight``.
    ``latent_dim`` and ``sample_shape`` come from ``ckpt["trainer"]``.

    Raises:
        ValueError: no ``trainer`` entry with ``latent_dim`` and ``sample_shape``, or weights
            that none of the three generators has (a custom generator).
    """
    info = ckpt.get("trainer")
    if not isinstance(info, Mapping) or "latent_dim" not in info or "sample_shape" not in info:
        raise ValueError(f"{source}: no 'models' entry saying how the generator was built, and no 'trainer' entry "
                         f"with latent_dim and sample_shape to rebuild it from its weights; {_CUSTOM}")
    state = ckpt.get("generator")
    if not isinstance(state, Mapping):
        raise ValueError(f"{source}: no generator state dict in the checkpoint (its keys: {sorted(ckpt)[:8]})")
    latent_dim, shape = int(info["latent_dim"]), tuple(int(s) for s in info["sample_shape"])
    first = state.get("net.0.weight", state.get("net.0.parametrizations.weight.original"))
    if isinstance(first, torch.Tensor) and first.dim() == 4:  # a transposed convolution first: a DCGAN
        return _dcgan_config(state, latent_dim, shape, source)
    return _mlp_config(state, latent_dim, shape, source)


def generator_from_checkpoint(ckpt: Mapping[str, Any], device: torch.device | str = "cpu", use_ema: bool = True,
                              source: str = "checkpoint") -> nn.Module:
    """The generator of a loaded checkpoint (see :func:`load_generator`), in eval mode on ``device``.

    Raises:
        ValueError: the generator cannot be rebuilt, or the weights do not fit it.
    """
    dev = resolve_device(device)
    if not isinstance(use_ema, bool):
        raise TypeError(f"use_ema must be a bool, got {use_ema!r}")
    state, which = generator_state(ckpt, source, use_ema)
    if "models" in ckpt:  # format 2: the builder's own record
        models = ckpt["models"]
        config = models.get("generator") if isinstance(models, Mapping) else None
        if config is None:
            raise ValueError(f"{source}: its generator was not made by a registered builder (models['generator'] "
                             f"is None); {_CUSTOM}")
    else:
        config = legacy_generator_config(ckpt, source)
    try:
        generator = registry.build(config)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from err
    try:
        generator.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{source}: the {which} weights do not fit the {config['builder']} it was built with: "
                         f"{str(err).splitlines()[0]}") from err
    info = ckpt.get("trainer")
    saved_classes = info.get("num_classes") if isinstance(info, Mapping) else None
    if saved_classes is not None and getattr(generator, "num_classes", None) != saved_classes:
        raise ValueError(f"{source}: saved with num_classes={saved_classes}, but its generator is for "
                         f"num_classes={getattr(generator, 'num_classes', None)}")
    return generator.to(dev).eval()


def load_generator(path: str | os.PathLike[str], device: torch.device | str = "cpu",
                   use_ema: bool = True) -> nn.Module:
    """The generator saved in a torchgan_lite checkpoint, in eval mode on ``device``.

    Args:
        path: A checkpoint written by ``GANTrainer.save_checkpoint`` (or ``ModelCheckpoint``).
        device: Where to put the generator (``"cpu"``, ``"cuda"``, ``"auto"``...).
        use_ema: Load the EMA weights when the checkpoint has them (False: the trained weights).

    Returns:
        The generator the run trained (``mlp_generator``, ``conditional_mlp_generator``,
        ``dcgan_generator`` or another registered builder's module), with ``latent_dim``,
        ``num_classes`` and ``config``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable torchgan_lite checkpoint, or its generator cannot be rebuilt.
    """
    ckpt = load_checkpoint(path)  # checks the file and its format; weights_only loading
    return generator_from_checkpoint(ckpt, device, use_ema, f"checkpoint {path}")
