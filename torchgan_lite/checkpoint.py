"""Checkpoint files: atomic writes, rotation, safe loading, and every RNG state.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it
loads with ``torch.load(weights_only=True)``: no code from the file is ever run.

Writing is atomic: the dict goes to a temporary file in the same folder, which is
flushed and fsync'ed, then renamed over the target with ``os.replace`` (atomic on
POSIX and Windows). A process killed at any moment leaves either the old file or
the new one, never a torn one; with ``keep_last=K`` the previous K files are kept
as ``NAME.1`` (newest) ... ``NAME.K``.
"""

from __future__ import annotations

import os
import random
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from .trainer import GANTrainer

__all__ = [
    "FORMAT",
    "capture_rng_state",
    "check_module_state",
    "load_checkpoint",
    "load_trainer_state",
    "restore_rng_state",
    "save_checkpoint",
    "trainer_state_dict",
]

FORMAT = "torchgan_lite.checkpoint/1"


def capture_rng_state() -> dict[str, Any]:
    """torch (CPU and every CUDA device), NumPy and Python ``random`` states, weights_only-safe."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": py_version, "internal": list(py_internal), "gauss_next": py_gauss},
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        for i, s in enumerate(cuda_states):
            torch.cuda.set_rng_state(s, i)
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike[str], keep_last: int | None = None) -> Path:
    """Write ``obj`` to ``path`` atomically; optionally keep ``keep_last`` older copies.

    Args:
        obj: A dict of tensors and plain Python values.
        path: Target file; its folder is created.
        keep_last: None or 0: only ``path``. K: also ``path.1`` ... ``path.K``, newest first.

    Returns:
        ``path`` as a ``Path``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if keep_last is not None and (isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0):
        raise ValueError(f"keep_last must be None or an int >= 0, got {keep_last!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, **obj}
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        if keep_last and path.exists():
            for i in range(keep_last - 1, 0, -1):  # NAME.(K-1) -> NAME.K ... NAME.1 -> NAME.2
                older = path.with_name(f"{path.name}.{i}")
                if older.exists():
                    os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
            # The current file becomes NAME.1 through a hard link, so NAME itself never vanishes.
            staged = path.with_name(f".{path.name}.1.tmp")
            with _suppress_oserror():
                os.unlink(staged)  # left over by a crash
            os.link(path, staged)
            os.replace(staged, path.with_name(f"{path.name}.1"))
        os.replace(tmp_name, path)
    except BaseException:
        with _suppress_oserror():
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)
    return path


class _suppress_oserror:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool:
        return isinstance(exc, OSError)


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable (POSIX); not possible or needed on Windows.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and check its format.

    Raises:
        FileNotFoundError: no such file.
        ValueError: truncated, corrupted or foreign file (the message names the file).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"checkpoint {path} cannot be read (truncated, corrupted, or not a torchgan_lite "
                         f"checkpoint): {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"checkpoint {path} is not a torchgan_lite checkpoint (format {found!r}, "
                         f"expected {FORMAT!r})")
    return ckpt


def check_module_state(source: str, name: str, module: nn.Module, saved: object) -> None:
    """Raise ``ValueError`` naming ``source`` and the first mismatch if ``saved`` cannot load into ``module``."""
    if not isinstance(saved, dict):
        raise ValueError(f"{source}: '{name}' entry is {type(saved).__name__}, expected a state dict")
    own = module.state_dict()
    missing = sorted(set(own) - set(saved))
    unexpected = sorted(set(saved) - set(own))
    if missing or unexpected:
        raise ValueError(f"{source}: the saved {name} does not fit this {name}: missing keys {missing[:5]}, "
                         f"unexpected keys {unexpected[:5]}")
    for key, tensor in own.items():
        other = saved[key]
        if not isinstance(other, torch.Tensor) or other.shape != tensor.shape:
            shape = tuple(other.shape) if isinstance(other, torch.Tensor) else type(other).__name__
            raise ValueError(f"{source}: {name}.{key} has shape {shape} in the checkpoint but "
                             f"{tuple(tensor.shape)} in this {name}")


def trainer_state_dict(trainer: GANTrainer) -> dict[str, Any]:
    """Everything needed to continue ``trainer`` exactly: models, optimizers, progress, loader, RNGs."""
    st = trainer.state
    data = trainer._data
    loader = data.state_dict() if hasattr(data, "state_dict") else trainer._pending_loader_state
    return {
        "generator": trainer.generator.state_dict(),
        "discriminator": trainer.discriminator.state_dict(),
        "g_optimizer": trainer.g_optimizer.state_dict(),
        "d_optimizer": trainer.d_optimizer.state_dict(),
        "regularizers": [r.state_dict() if hasattr(r, "state_dict") else None for r in trainer.regularizers],
        "trainer": {
            "epoch": st.epoch,
            "step": st.step,
            "epoch_step": st.epoch_step,
            "skipped_steps": st.skipped_steps,
            "history": [asdict(h) for h in st.history],
            "metrics": dict(st.metrics),
            "epoch_sums": trainer._epoch_sums.detach().cpu().clone(),
            "latent_dim": trainer.latent_dim,
            "num_classes": trainer.num_classes,
            "sample_shape": list(trainer.sample_shape),
            "n_critic": trainer.n_critic,
            "world_size": trainer.world_size,
        },
        "loader": loader,
        "extra": {name: obj.state_dict() for name, obj in trainer._extra_state.items()},
        "rng": capture_rng_state(),
    }


def load_trainer_state(trainer: GANTrainer, ckpt: dict[str, Any], source: str) -> None:
    """Check ``ckpt`` against ``trainer`` completely, then restore it; on any mismatch nothing changes."""
    from .state import EpochStats

    if not isinstance(ckpt, dict):
        raise ValueError(f"{source}: expected a checkpoint dict, got {type(ckpt).__name__}")
    for key in ("generator", "discriminator", "g_optimizer", "d_optimizer", "trainer", "rng"):
        if key not in ckpt:
            raise ValueError(f"{source}: not a torchgan_lite checkpoint (no '{key}' entry)")
    check_module_state(source, "generator", trainer.generator, ckpt["generator"])
    check_module_state(source, "discriminator", trainer.discriminator, ckpt["discriminator"])
    tr = ckpt["trainer"]
    if tr["latent_dim"] != trainer.latent_dim:
        raise ValueError(f"{source}: saved with latent_dim={tr['latent_dim']}, this trainer has {trainer.latent_dim}")
    if tuple(tr["sample_shape"]) != trainer.sample_shape:
        raise ValueError(f"{source}: saved for samples of shape {tuple(tr['sample_shape'])}, "
                         f"this trainer makes {trainer.sample_shape}")
    if tr.get("num_classes") != trainer.num_classes:
        raise ValueError(f"{source}: saved with num_classes={tr.get('num_classes')}, "
                         f"this trainer has {trainer.num_classes}")
    for name in ("g_optimizer", "d_optimizer"):
        opt = getattr(trainer, name)
        saved_groups = ckpt[name].get("param_groups", [])
        saved_sizes = [len(g["params"]) for g in saved_groups]
        own_sizes = [len(g["params"]) for g in opt.param_groups]
        if saved_sizes != own_sizes:
            raise ValueError(f"{source}: {name} state has parameter groups of sizes {saved_sizes}, "
                             f"this trainer's has {own_sizes}")
    missing = [n for n in trainer._extra_state if n not in ckpt.get("extra", {})]
    if missing:
        raise ValueError(f"{source}: no saved state for registered {missing}")

    trainer.generator.load_state_dict(ckpt["generator"])
    trainer.discriminator.load_state_dict(ckpt["discriminator"])
    trainer.g_optimizer.load_state_dict(ckpt["g_optimizer"])
    trainer.d_optimizer.load_state_dict(ckpt["d_optimizer"])
    for reg, saved in zip(trainer.regularizers, ckpt.get("regularizers", [])):
        if saved is not None and hasattr(reg, "load_state_dict"):
            reg.load_state_dict(saved)
    for name, obj in trainer._extra_state.items():
        obj.load_state_dict(ckpt["extra"][name])
    st = trainer.state
    st.epoch, st.step, st.epoch_step = int(tr["epoch"]), int(tr["step"]), int(tr["epoch_step"])
    st.skipped_steps = int(tr.get("skipped_steps", 0))
    st.history = [EpochStats(**h) for h in tr["history"]]
    st.metrics = dict(tr.get("metrics", {}))
    st.last = None
    trainer._epoch_sums = tr["epoch_sums"].to(trainer.device).clone()
    trainer._pending_loader_state = ckpt.get("loader")
    if trainer._data is not None and trainer._pending_loader_state is not None and hasattr(trainer._data,
                                                                                            "load_state_dict"):
        trainer._data.load_state_dict(trainer._pending_loader_state)
        trainer._pending_loader_state = None
    restore_rng_state(ckpt["rng"])
