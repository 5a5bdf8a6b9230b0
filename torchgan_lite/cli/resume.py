"""Resuming from the command line: which checkpoint ``--resume`` means, and whether this command may resume it.

- **Discovery** is the library's one function,
  :func:`torchgan_lite.checkpoints.format.latest_checkpoint`: ``--resume auto``/``latest``
  take ``--out/checkpoint.pt``, or the newest of its kept copies where it does not verify
  (the CLI has no discovery of its own).
- **The run's options** (:class:`RunOptions`) are saved in each checkpoint the command
  writes, in the command line's own terms. Resuming with other ones is refused before any
  training, naming each ``--flag`` that differs (:func:`check_resumable`); the trainer's
  ``load_checkpoint`` then checks everything a checkpoint holds, whoever wrote it (the
  step's settings, shapes, optimizers, the loader's position).
- **The batch is the global one**: ``--batch-size`` is per process, so a checkpoint of
  2 processes x 64 resumes on 1 process x 128 (and the reverse), mid-epoch included;
  only another global batch is refused (docs/distributed.md, "Resume across world sizes").
"""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torchgan_lite.checkpoints.format import latest_checkpoint, load_checkpoint
from torchgan_lite.cli.common import CLIError
from torchgan_lite.cli.options import invocation, is_named_set
from torchgan_lite.cli.sources import TrainingData
from torchgan_lite.recipes import make_loss

__all__ = [
    "CHECKPOINT_NAME", "RunOptions", "check_resumable", "find_checkpoint", "resolve_resume", "resolved_options",
    "resume_command", "saved_options"
]

#: The checkpoint file the command writes in ``--out``.
CHECKPOINT_NAME = "checkpoint.pt"

#: The options a checkpoint must have been trained with to be resumed: (flag, key in RunOptions).
_MATCHED = (("--data", "data"), ("--image-size/--channels", "image_shape"), ("--hflip", "hflip"),
            ("--conditional", "conditional"), ("--arch", "arch"), ("--norm", "norm"), ("--recipe", "recipe"),
            ("--loss", "loss"), ("--n-critic", "n_critic"), ("--ema-decay", "ema_decay"), ("--subset", "subset"),
            ("--amp", "amp"))
#: What a checkpoint written before an option existed was trained with.
_BEFORE = {"data": "mnist", "image_shape": [1, 28, 28], "hflip": False}


class RunOptions:
    """The options that shaped a run (resolved: n_critic, EMA decay, lr, global batch), saved in its checkpoint.

    Registered with ``trainer.register_state("cli_options", ...)``. :func:`check_resumable`
    compares a checkpoint's copy with this run's before anything is loaded.
    """

    state_name = "cli_options"

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = dict(options)
        self.saved: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return dict(self.options)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.saved = dict(state)  # the check ran before the load (check_resumable)


def resolved_options(args: argparse.Namespace, lr: float, world_size: int, data: TrainingData) -> dict[str, Any]:
    """What :class:`RunOptions` records for ``args`` on ``world_size`` processes, training on ``data``.

    ``data`` is the set's name, or ``"folder"`` for a folder: its path is recorded (``data_path``)
    but not compared, so a job that copies its images to a node-local folder each time resumes.
    """
    return {"data": args.data if is_named_set(args.data) else "folder",
            "data_path": None if is_named_set(args.data) else str(Path(args.data).resolve()),
            "image_shape": list(data.image_shape), "hflip": args.hflip, "classes": list(data.classes),
            "conditional": args.conditional, "arch": args.arch, "norm": args.norm if args.arch == "dcgan" else None,
            "recipe": args.recipe, "loss": args.loss, "n_critic": args.n_critic or make_loss(args.loss)[2],
            "ema_decay": args.ema_decay, "batch_size": args.batch_size, "world_size": world_size,
            "global_batch": args.batch_size * world_size, "subset": args.subset, "amp": args.amp, "lr": lr}


def saved_options(path: Path, ckpt: dict[str, Any]) -> dict[str, Any]:
    """The :class:`RunOptions` a checkpoint holds; ``CLIError`` if it was not written by this command."""
    saved = ckpt.get("extra", {}).get(RunOptions.state_name) if isinstance(ckpt.get("extra"), dict) else None
    if not isinstance(saved, dict):
        raise CLIError(f"cannot resume from {path}: it holds no command-line options (it was not written "
                       "by this command); load it with GANTrainer.load_checkpoint in your own script")
    return saved


def _global_batch(saved: dict[str, Any], ckpt: dict[str, Any]) -> tuple[Any, Any, Any]:
    """``(global batch, per-process batch, processes)`` of a saved run (older files: from the trainer entry)."""
    batch = saved.get("batch_size")
    trainer = ckpt.get("trainer")
    world = saved.get("world_size", trainer.get("world_size", 1) if isinstance(trainer, dict) else 1)
    found = saved.get("global_batch")
    if found is None and isinstance(batch, int) and isinstance(world, int):
        found = batch * world
    return found, batch, world


def check_resumable(saved: dict[str, Any], current: dict[str, Any], source: Path,
                    ckpt: dict[str, Any] | None = None) -> None:
    """Raise :class:`CLIError` naming every option whose value differs from the checkpoint's.

    Args:
        saved: The checkpoint's :class:`RunOptions`.
        current: This command's (:func:`resolved_options`).
        source: The checkpoint file, for the message.
        ckpt: The whole checkpoint, for the world size of files that did not record it in ``saved``.
    """
    differ = [f"{flag} {saved.get(key, _BEFORE.get(key))!r} (this command: {current[key]!r})"
              for flag, key in _MATCHED if saved.get(key, _BEFORE.get(key)) != current[key]]
    found, batch, world = _global_batch(saved, ckpt or {})
    if found != current["global_batch"]:
        differ.append(f"--batch-size {batch} on {world} process(es), a global batch of {found} (this command: "
                      f"{current['batch_size']} on {current['world_size']}, {current['global_batch']}); the global "
                      "batch must match, the number of processes may differ")
    if differ:
        raise CLIError(f"cannot resume from {source}: it was trained with other options: {'; '.join(differ)}. "
                       "Rerun with the checkpoint's options (--lr alone may differ: it sets a new learning rate), "
                       "or start afresh in another --out")


def find_checkpoint(folder: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]] | None:
    """The newest valid checkpoint of the command in ``folder`` and its content, or None when there is none.

    :func:`torchgan_lite.checkpoints.format.latest_checkpoint` of ``folder/checkpoint.pt``: that
    file if it verifies, else the newest of its kept copies that does (a damaged candidate is
    logged as passed over, naming it and why).
    """
    found = latest_checkpoint(Path(folder) / CHECKPOINT_NAME)
    if found is None:
        return None
    return found, load_checkpoint(found)


def resolve_resume(resume: str | None, out: Path) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint ``--resume`` names, read and verified; None for a fresh start.

    Args:
        resume: ``--resume``: None, ``"auto"``, ``"latest"`` or a file.
        out: ``--out``, where ``auto`` and ``latest`` look (``auto`` finding nothing: None).
    """
    if resume is None:
        return None
    if resume in ("auto", "latest"):
        found = find_checkpoint(out)
        if found is None and resume == "latest":
            raise CLIError(f"--resume latest: no valid checkpoint in {out} (--resume auto starts afresh then)")
        return found
    path = Path(resume)
    if path.is_dir():
        newest = latest_checkpoint(path / CHECKPOINT_NAME)
        hint = f"; the newest there is {newest}" if newest is not None else ""
        raise CLIError(f"--resume {path} is a folder, not a checkpoint file{hint} (--resume auto picks the newest "
                       "checkpoint in --out)")
    if not path.exists():
        raise CLIError(f"--resume {path}: no such file")
    try:
        return path, load_checkpoint(path)
    except (ValueError, OSError) as err:
        raise CLIError(f"--resume {path}: {err}") from None


def resume_command(argv: Sequence[str], checkpoint: str | os.PathLike[str],
                   command: Sequence[str] | None = None) -> str:
    """This run's command line with ``--resume checkpoint`` in place of any earlier ``--resume``.

    Args:
        argv: The options of this run (``sys.argv[1:]``).
        checkpoint: The checkpoint to resume.
        command: How this program was started; default: the interpreter that runs
            (``sys.executable``) and the script's absolute path, or ``-m torchgan_lite.train``.
    """
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip or arg.startswith("--resume="):
            skip = False
            continue
        if arg == "--resume":
            skip = True
            continue
        kept.append(arg)
    return shlex.join([*(command if command is not None else invocation()), *kept, "--resume", str(checkpoint)])
