"""Generators out of checkpoints: rebuilt for sampling, or exported as safetensors weights to share.

:func:`load_generator` takes a checkpoint file (the generator it was trained with, its
EMA weights when saved) or a folder written by :func:`export_generator`. Either way the
generator is rebuilt from the builder config its checkpoint recorded
(:func:`torchgan_lite.nets.registry.module_config`); a checkpoint without one (a
generator no registered builder made) is refused with what to do instead.

An exported folder holds two files, the field's format for shared weights:

- ``model.safetensors``: the weights (``safetensors`` stores raw tensors and a JSON
  header, so reading it runs no code and needs no pickle);
- ``config.json``: ``{"format", "torchgan_lite_version", "generator": {"builder", "kwargs"},
  "weights": {"file", "sha256", "which"}}``.

Loading a folder reads only JSON and safetensors (never ``torch.load`` or pickle) and
checks the weights' SHA-256 against ``config.json``, so a weights file changed or replaced
after the export, or a half-finished export, is refused by name. Both files are written
atomically, the weights first: ``config.json`` commits the export.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from torchgan_lite.checkpoints.format import load_checkpoint
from torchgan_lite.nets import registry
from torchgan_lite.utils.atomic import atomic_open
from torchgan_lite.utils.checks import check_bool, check_path, describe
from torchgan_lite.utils.runtime import resolve_device
from torchgan_lite.utils.version import __version__

__all__ = [
    "CONFIG_FILE", "EXPORT_FORMAT", "WEIGHTS_FILE", "export_generator", "generator_from_checkpoint",
    "generator_state", "load_generator"
]

#: The format of an exported folder's ``config.json``.
EXPORT_FORMAT = "torchgan_lite.generator/1"
#: The files of an exported folder.
WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"

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


def _rebuild(config: object, state: Mapping[str, torch.Tensor], which: str, source: str) -> nn.Module:
    """``registry.build(config)`` with ``state`` loaded; ``ValueError`` naming ``source`` when either does not fit."""
    if not isinstance(config, Mapping):
        raise ValueError(f"{source}: its builder config must be a dict, got {describe(config)}")
    try:
        generator = registry.build(config)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from err
    try:
        generator.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{source}: the {which} weights do not fit the {config['builder']} it was built with: "
                         f"{str(err).splitlines()[0]}") from err
    return generator


def generator_from_checkpoint(ckpt: Mapping[str, Any], device: torch.device | str = "cpu", use_ema: bool = True,
                              source: str = "checkpoint") -> nn.Module:
    """The generator of a loaded checkpoint (see :func:`load_generator`), in eval mode on ``device``.

    Raises:
        ValueError: the checkpoint records no builder config for its generator, or the weights
            do not fit the one it records.
    """
    dev = resolve_device(device)
    check_bool("use_ema", use_ema)
    state, which = generator_state(ckpt, source, use_ema)
    models = ckpt.get("models")
    config = models.get("generator") if isinstance(models, Mapping) else None
    if config is None:
        raise ValueError(f"{source}: it records no builder config for its generator (models['generator'] is "
                         f"missing or None: no registered builder made it), so it cannot be rebuilt; {_CUSTOM}")
    generator = _rebuild(config, state, which, source)
    info = ckpt.get("trainer")
    saved_classes = info.get("num_classes") if isinstance(info, Mapping) else None
    if saved_classes is not None and getattr(generator, "num_classes", None) != saved_classes:
        raise ValueError(f"{source}: saved with num_classes={saved_classes}, but its generator is for "
                         f"num_classes={getattr(generator, 'num_classes', None)}")
    return generator.to(dev).eval()


def load_generator(path: str | os.PathLike[str], device: torch.device | str = "cpu", use_ema: bool = True, *,
                   allow_nonfinite: bool = False) -> nn.Module:
    """The generator saved in a torchgan_lite checkpoint or exported folder, in eval mode on ``device``.

    Args:
        path: A checkpoint written by ``GANTrainer.save_checkpoint`` (or ``ModelCheckpoint``), or a
            folder written by :func:`export_generator` (read without pickle).
        device: Where to put the generator (``"cpu"``, ``"cuda"``, ``"auto"``...).
        use_ema: Load the EMA weights when the checkpoint has them (False: the trained weights).
        allow_nonfinite: Load weights holding a NaN or infinity, with a warning (default: refuse).

    Returns:
        The generator the run trained (``mlp_generator``, ``conditional_mlp_generator``,
        ``dcgan_generator`` or another registered builder's module), with ``latent_dim``,
        ``num_classes`` and ``config``.

    Raises:
        FileNotFoundError: no such file, or a folder without ``config.json`` or ``model.safetensors``.
        ValueError: not a readable torchgan_lite checkpoint or export (the message names the file), one
            holding a NaN or infinity (named), or a generator that cannot be rebuilt.
    """
    path = check_path("path", path)
    check_bool("use_ema", use_ema)
    check_bool("allow_nonfinite", allow_nonfinite)
    if path.is_dir():
        return _load_export(path, device, use_ema, allow_nonfinite)
    ckpt = load_checkpoint(path, allow_nonfinite=allow_nonfinite)  # the file, its CRCs, format, finite weights
    return generator_from_checkpoint(ckpt, device, use_ema, f"checkpoint {path}")


# --------------------------------------------------------------------------- export


def _nonfinite(state: Mapping[str, torch.Tensor]) -> str | None:
    for key, t in state.items():
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            return key
    return None


def export_generator(generator_or_checkpoint_path: nn.Module | str | os.PathLike[str],
                     folder: str | os.PathLike[str], *, use_ema: bool = True) -> Path:
    """Write a generator's weights as ``folder/model.safetensors`` and its builder config as ``folder/config.json``.

    Args:
        generator_or_checkpoint_path: A generator made by a registered builder (its own weights;
            for an EMA's, pass ``GeneratorEMA.generator``), or a checkpoint file (its EMA weights
            when it has them and ``use_ema``, else the trained ones).
        folder: Where to write the two files (created; an earlier export there is replaced).
        use_ema: For a checkpoint: prefer its EMA weights.

    Returns:
        ``folder`` as a ``Path``; :func:`load_generator` rebuilds the generator from it.

    Raises:
        TypeError: an argument of the wrong type, named.
        ValueError: a generator with no recorded builder config (no registered builder made it),
            weights holding a NaN or infinity, ``folder`` an existing file, or a checkpoint that
            cannot be read (named).
        OSError: a file could not be written (named, with the cause).
    """
    folder = check_path("folder", folder)
    check_bool("use_ema", use_ema)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"folder {folder} is a file; give the folder to export into")
    if isinstance(generator_or_checkpoint_path, nn.Module):
        generator, which = generator_or_checkpoint_path, "module"
        source = f"generator {type(generator).__name__}"
    elif isinstance(generator_or_checkpoint_path, (str, os.PathLike)):
        path = check_path("generator_or_checkpoint_path", generator_or_checkpoint_path)
        ckpt = load_checkpoint(path)
        source = f"checkpoint {path}"
        generator = generator_from_checkpoint(ckpt, "cpu", use_ema, source)
        which = generator_state(ckpt, source, use_ema)[1]
    else:
        raise TypeError("generator_or_checkpoint_path must be an nn.Module or a checkpoint path (str or "
                        f"os.PathLike), got {describe(generator_or_checkpoint_path)}")
    config = registry.module_config(generator)
    if config is None:
        raise ValueError(f"{source} records no builder config (no registered builder made it, so module_config() "
                         "is None): an export could not be rebuilt; build it with a registered builder "
                         "(torchgan_lite.register_builder), or save its state_dict() yourself")
    # Contiguous CPU copies: safetensors refuses views and tensors sharing storage.
    state = {k: v.detach().to("cpu").clone(memory_format=torch.contiguous_format)
             for k, v in generator.state_dict().items()}
    bad = _nonfinite(state)
    if bad is not None:
        raise ValueError(f"{source}: its weight {bad!r} holds a NaN or infinity; not exporting it")
    data = safetensors.torch.save(state, metadata={"format": EXPORT_FORMAT})
    record = {"format": EXPORT_FORMAT, "torchgan_lite_version": __version__, "generator": config,
              "weights": {"file": WEIGHTS_FILE, "sha256": hashlib.sha256(data).hexdigest(), "which": which}}
    with atomic_open(folder / WEIGHTS_FILE, "wb", what="export the weights") as f:
        f.write(data)
    with atomic_open(folder / CONFIG_FILE, "w", what="export the config") as f:
        f.write(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return folder


def _load_export(folder: Path, device: torch.device | str, use_ema: bool, allow_nonfinite: bool) -> nn.Module:
    """The generator of an exported folder, from JSON and safetensors only (no pickle)."""
    dev = resolve_device(device)
    config_file, weights_file = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for needed in (config_file, weights_file):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} does not exist: a folder given to load_generator must hold the "
                                    f"{CONFIG_FILE} and {WEIGHTS_FILE} that export_generator writes (for a "
                                    "checkpoint, give its file)")
    try:
        record = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{config_file} is not valid JSON ({err}); it was damaged or edited after the export") from err
    weights = record.get("weights") if isinstance(record, dict) else None
    if not isinstance(record, dict) or record.get("format") != EXPORT_FORMAT or not isinstance(weights, dict) \
            or not isinstance(weights.get("sha256"), str) or "generator" not in record:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"{config_file} is not a torchgan_lite export (format {found!r}, expected "
                         f"{EXPORT_FORMAT!r}, with 'generator' and 'weights'['sha256'])")
    if weights.get("which") == "ema" and not use_ema:
        raise ValueError(f"{folder} holds the EMA weights only (use_ema=False asks for the trained ones): export "
                         "them with export_generator(checkpoint, folder, use_ema=False)")
    data = weights_file.read_bytes()
    if hashlib.sha256(data).hexdigest() != weights["sha256"]:
        raise ValueError(f"{weights_file} does not match the SHA-256 that {config_file.name} records: it was "
                         "changed or replaced after the export (or the export was interrupted); export again")
    try:
        state = safetensors.torch.load(data)
    except (safetensors.SafetensorError, ValueError, RuntimeError) as err:
        raise ValueError(f"{weights_file} cannot be read as safetensors: {err}") from err
    bad = _nonfinite(state)
    if bad is not None:
        message = f"{weights_file}: its weight {bad!r} holds a NaN or infinity"
        if not allow_nonfinite:
            raise ValueError(f"{message}; pass allow_nonfinite=True to load it anyway")
        warnings.warn(f"{message}; loading it because allow_nonfinite=True", RuntimeWarning, stacklevel=3)
    generator = _rebuild(record["generator"], state, str(weights.get("which", "exported")), str(config_file))
    return generator.to(dev).eval()
