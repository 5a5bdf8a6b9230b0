"""Checks that a saved state fits a live object, run before anything is restored.

Loading a checkpoint is all-or-nothing: the trainer checks every part with these
functions first, and only then applies any. Each raises ``ValueError`` naming the
file (``source``), the entry and the mismatch.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from torchgan_lite.checkpoints.format import first_nonfinite

__all__ = [
    "Restored", "check_module_state", "check_optimizer_state", "check_progress_entry", "check_settings",
    "check_step_state", "config_differences", "hand_position", "refuse_nonfinite", "restore"
]

#: Optimizer options that choose an implementation, not the arithmetic: never compared on resume.
IMPLEMENTATION_KEYS = frozenset({"fused", "foreach", "capturable", "differentiable"})
# Optimizer buffers that have the shape of their parameter (torch.optim's Adam, AdamW, SGD, RMSprop, ...).
_PARAM_SHAPED = frozenset({"exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer", "square_avg",
                           "acc_delta", "sum", "grad_avg", "ax", "exp_inf", "prev", "step_size"})


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


def check_optimizer_state(source: str, name: str, opt: torch.optim.Optimizer, saved: object,
                          saved_type: object) -> None:
    """Raise ``ValueError`` unless ``saved`` is a state dict of an optimizer like ``opt``."""
    if saved_type is not None and saved_type != type(opt).__name__:
        raise ValueError(f"{source}: {name} was a {saved_type} when saved, this trainer's is a "
                         f"{type(opt).__name__}")
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) \
            or not isinstance(saved.get("param_groups"), list) \
            or not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in saved["param_groups"]):
        raise ValueError(f"{source}: '{name}' entry is not an optimizer state dict (state, param_groups)")
    saved_sizes = [len(g["params"]) for g in saved["param_groups"]]
    own_sizes = [len(g["params"]) for g in opt.param_groups]
    if saved_sizes != own_sizes:
        raise ValueError(f"{source}: {name} state has parameter groups of sizes {saved_sizes}, "
                         f"this trainer's has {own_sizes}")
    # torch.optim maps saved ids to this optimizer's parameters in order; check the buffers fit them.
    own_params = [p for g in opt.param_groups for p in g["params"]]
    index = {pid: own_params[i] for i, pid in enumerate(p for g in saved["param_groups"] for p in g["params"])}
    for pid, entry in saved["state"].items():
        if pid not in index or not isinstance(entry, dict):
            raise ValueError(f"{source}: {name} state has an entry for parameter {pid!r}, which is not in its "
                             "param_groups")
        for key, value in entry.items():
            if key in _PARAM_SHAPED and isinstance(value, torch.Tensor) and value.shape != index[pid].shape:
                raise ValueError(f"{source}: {name} state[{pid}][{key!r}] has shape {tuple(value.shape)} but its "
                                 f"parameter has shape {tuple(index[pid].shape)}")


def check_step_state(source: str, step: Any, saved: object) -> None:
    """Check a saved ``GANStep.state_dict()`` against ``step`` (optimizers, regularizers, settings)."""
    if not isinstance(saved, dict):
        raise ValueError(f"{source}: 'step' entry is {type(saved).__name__}, expected a dict")
    config = saved.get("config") or {}
    for name in ("g_optimizer", "d_optimizer"):
        if name not in saved:
            raise ValueError(f"{source}: the step state has no {name!r} entry")
        saved_type = (config.get(name) or {}).get("type") if isinstance(config, dict) else None
        check_optimizer_state(source, name, getattr(step, name), saved[name], saved_type)
    regs = saved.get("regularizers") or []
    if not isinstance(regs, list) or len(regs) not in (0, len(step.regularizers)):
        raise ValueError(f"{source}: saved with {len(regs) if isinstance(regs, list) else regs!r} regularizer "
                         f"states, this trainer has {len(step.regularizers)} regularizers")


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """``"name: saved X, now Y"`` for every leaf that differs between two nested config dicts."""
    out: list[str] = []
    for key in sorted(set(saved) | set(current), key=str):
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, name + ".")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b) \
                and all(isinstance(x, dict) for x in a + b):
            for i, (x, y) in enumerate(zip(a, b)):
                out += config_differences(x, y, f"{name}[{i}].")
        elif a != b and not (isinstance(a, float) and isinstance(b, float) and a != a and b != b):  # nan == nan
            out.append(f"{name}: saved {a!r}, now {b!r}")
    return out


def check_progress_entry(source: str, tr: dict[str, Any], latent_dim: int, num_classes: int | None,
                         sample_shape: tuple[int, ...]) -> None:
    """The trainer entry's sizes must match this trainer's models."""
    sums = tr.get("epoch_sums")
    if not isinstance(sums, torch.Tensor) or tuple(sums.shape) != (5,) or not sums.is_floating_point():
        raise ValueError(f"{source}: trainer epoch_sums must be a float tensor of shape (5,)")
    if tr.get("latent_dim") != latent_dim:
        raise ValueError(f"{source}: saved with latent_dim={tr.get('latent_dim')}, this trainer has {latent_dim}")
    if not isinstance(tr.get("sample_shape"), (list, tuple)) or tuple(tr["sample_shape"]) != tuple(sample_shape):
        raise ValueError(f"{source}: saved for samples of shape {tr.get('sample_shape')}, "
                         f"this trainer makes {tuple(sample_shape)}")
    if tr.get("num_classes") != num_classes:
        raise ValueError(f"{source}: saved with num_classes={tr.get('num_classes')}, this trainer has {num_classes}")


def _without_implementation_keys(config: dict[str, Any]) -> dict[str, Any]:
    out = dict(config)
    for name in ("g_optimizer", "d_optimizer"):
        if isinstance(out.get(name), dict):
            opt = dict(out[name])
            # With a learning-rate schedule, "initial_lr" is the run's setting and "lr" its moving position
            # (restored by the schedule's own state): compare the first only.
            opt["param_groups"] = [{k: v for k, v in g.items() if k not in IMPLEMENTATION_KEYS
                                    and not (k == "lr" and "initial_lr" in g)}
                                   for g in opt.get("param_groups", [])]
            out[name] = opt
    return out


def check_settings(source: str, saved: object, current: dict[str, Any], loader: object, data: object,
                   hyperparameters: str, strict: bool) -> None:
    """Refuse (or, not ``strict``, warn about) a run set up differently from the saved one.

    Optimizer hyper-parameters are governed by ``hyperparameters`` (``"check"`` refuses a
    difference; ``"saved"`` and ``"current"`` accept it); the loss, ``n_critic``, ``amp``,
    regularizers, augmentation and batch size by ``strict``.
    """
    diffs_opt: list[str] = []
    diffs_run: list[str] = []
    if isinstance(saved, dict) and "loss" in saved:  # a hand-built step entry may hold no settings
        for line in config_differences(_without_implementation_keys(saved), _without_implementation_keys(current)):
            (diffs_opt if line.startswith(("g_optimizer", "d_optimizer")) else diffs_run).append(line)
    if isinstance(loader, dict) and data is not None:
        gb = getattr(data, "global_batch_size", None)
        if isinstance(gb, int) and loader.get("global_batch_size") not in (None, gb):
            diffs_run.append(f"batch size: saved {loader['global_batch_size']}, now {gb}")
    problems = []
    if diffs_opt and hyperparameters == "check":
        problems.append("optimizer hyper-parameters differ (" + "; ".join(diffs_opt) + "); pass "
                        "hyperparameters='current' to train on with this trainer's (the CLI: give --lr "
                        "explicitly) or hyperparameters='saved' to continue with the saved ones")
    if diffs_run:
        text = "the run was set up differently (" + "; ".join(diffs_run) + ")"
        if strict:
            problems.append(text + "; build the trainer as the saved run was, or pass strict=False")
        else:
            warnings.warn(f"{source}: {text}; continuing because strict=False", stacklevel=4)
    if problems:
        raise ValueError(f"{source}: cannot resume: " + "; and ".join(problems))


def refuse_nonfinite(state: dict[str, Any], path: object, step: int) -> None:
    """Raise ``NonFiniteLossError`` naming the tensor if ``state`` holds a NaN or infinity.

    The same check as loading's (:func:`torchgan_lite.checkpoints.format.first_nonfinite`), so a file
    this refuses to write is one loading would refuse.
    """
    from torchgan_lite.training.state import NonFiniteLossError

    bad = first_nonfinite(state)
    if bad is not None:
        raise NonFiniteLossError(f"not saving {path}: {bad} holds a NaN or infinity at step {step}; the previous "
                                 "checkpoint is kept as the last good one")


@dataclass(frozen=True)
class Restored:
    """What :func:`restore` hands back to the trainer."""

    epoch_sums: torch.Tensor
    pending_loader: dict[str, Any] | None  # a position for the next fit's data
    lost_position: bool  # saved mid-epoch from data without state_dict()


def restore(ckpt: dict[str, Any], source: str, *, gan_step: Any, state: Any, registered: dict[str, Any], data: Any,
            hyperparameters: str, strict: bool, shapes: tuple[int, int | None, tuple[int, ...]]) -> Restored:
    """Check every part of ``ckpt`` against the live objects, then apply all of them, or none.

    Registered objects (user code whose ``load_state_dict`` may still refuse) and the data
    are applied first, each after a snapshot, and rolled back if a later one refuses.
    """
    from torchgan_lite.checkpoints import rng
    from torchgan_lite.training.state import TrainerState

    if hyperparameters not in ("check", "saved", "current"):
        raise ValueError(f"hyperparameters must be 'check', 'saved' or 'current', got {hyperparameters!r}")
    if not isinstance(ckpt, dict):
        raise ValueError(f"{source}: expected a checkpoint dict, got {type(ckpt).__name__}")
    for key in ("generator", "discriminator", "step", "trainer", "rng"):
        if key not in ckpt:
            raise ValueError(f"{source}: not a torchgan_lite checkpoint (no '{key}' entry)")
    check_module_state(source, "generator", gan_step.generator, ckpt["generator"])
    check_module_state(source, "discriminator", gan_step.discriminator, ckpt["discriminator"])
    check_step_state(source, gan_step, ckpt["step"])
    tr = ckpt["trainer"]
    TrainerState.check_state_dict(tr, source)
    check_progress_entry(source, tr, *shapes)
    extra, loader = ckpt.get("extra", {}), ckpt.get("loader")
    if not isinstance(extra, dict):
        raise ValueError(f"{source}: 'extra' entry is {type(extra).__name__}, expected a dict")
    missing = [n for n in registered if n not in extra]
    if missing:
        raise ValueError(f"{source}: no saved state for registered {missing}")
    if loader is not None and not isinstance(loader, dict):
        raise ValueError(f"{source}: 'loader' entry is {type(loader).__name__}, expected a dict or None")
    if data is not None and loader is not None and callable(getattr(data, "check_state_dict", None)):
        data.check_state_dict(loader)
    rng.check_rng_state(ckpt["rng"], source)
    check_settings(source, ckpt["step"].get("config"), gan_step.config(), loader, data, hyperparameters, strict)

    done: list[tuple[Any, Any]] = []
    try:
        for name, obj in registered.items():
            before = copy.deepcopy(obj.state_dict())
            obj.load_state_dict(extra[name])
            done.append((obj, before))
        if data is not None and loader is not None and hasattr(data, "load_state_dict"):
            before = copy.deepcopy(data.state_dict())
            data.load_state_dict(loader)
            done.append((data, before))
    except BaseException:
        for obj, before in reversed(done):
            obj.load_state_dict(before)
        raise
    groups = gan_step.g_optimizer.param_groups + gan_step.d_optimizer.param_groups
    kept = [{k: v for k, v in g.items() if k != "params" and k not in IMPLEMENTATION_KEYS} for g in groups]
    gan_step.load_state_dict(ckpt["step"])
    if hyperparameters == "current":  # keep this trainer's lr, betas...: what an explicit --lr asks for
        for group, values in zip(gan_step.g_optimizer.param_groups + gan_step.d_optimizer.param_groups, kept):
            group.update(values)
    gan_step.generator.load_state_dict(ckpt["generator"])
    gan_step.discriminator.load_state_dict(ckpt["discriminator"])
    state.load_state_dict(tr)
    gan_step.guard.reset(state.step)  # a checkpoint holds a good state: nothing is pending
    rng.restore_rng_state(ckpt["rng"])
    return Restored(tr["epoch_sums"], loader if data is None else None,
                    loader is None and state.epoch_step > 0)


def hand_position(data: Any, pending: dict[str, Any] | None, lost: bool, epoch_step: int) -> None:
    """Give ``fit``'s data the loader position a checkpoint held, or warn that it is lost."""
    if pending is not None:
        if hasattr(data, "load_state_dict"):
            data.load_state_dict(pending)
        else:
            warnings.warn("the checkpoint holds a data-loader position but this data has no load_state_dict(): "
                          "the interrupted epoch restarts from a fresh order", stacklevel=3)
    elif lost:
        warnings.warn(f"the checkpoint was saved {epoch_step} steps into an epoch from data that could not save "
                      "its position (no state_dict(), e.g. a DataLoader): the rest of that epoch is drawn from a "
                      "fresh order, so the run does not repeat the saved one exactly", stacklevel=3)
