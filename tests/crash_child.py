"""Trainers that save a checkpoint every step and die by SIGKILL, for ``tests/test_crash.py``.

``python tests/crash_child.py SPEC.json RESULT.json`` imports torch once, then for each
trial forks a trainer process (so each trial costs no new interpreter) that trains a
tiny GAN forever, saving ``FOLDER/ckpt.pt`` after every step with ``keep_last=2``:

- ``{"kind": "random", "delay": s}``: once the first checkpoint exists, this process
  waits ``s`` seconds and sends SIGKILL, wherever the trainer happens to be
  (a step, ``torch.save`` into the temporary file, fsync, rotation, rename).
- ``{"kind": "at_call", "call": "replace" | "link" | "fsync", "n": k}``: the trainer
  SIGKILLs itself on entering its k-th ``os.replace`` / ``os.link`` / ``os.fsync``:
  a deterministic kill at each boundary inside ``save_checkpoint``.

RESULT.json lists, per trial, how the trainer process ended.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch._dynamo  # imported once here, not in every forked trainer (optimizers need it)

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from torchgan_lite import Event, GANTrainer, TensorLoader, losses, models, seed_everything  # noqa: E402

__all__ = ["build_trainer", "main"]


def build_trainer() -> tuple[GANTrainer, TensorLoader]:
    """The crash tests' tiny trainer (also rebuilt by the test to load what survived)."""
    seed_everything(0)
    g = models.mlp_generator(latent_dim=8, hidden=(32,), out_shape=(1, 4, 4))
    d = models.mlp_discriminator(in_shape=(1, 4, 4), hidden=(32,), dropout=0.3)
    trainer = GANTrainer(g, d, losses.NonSaturatingLoss(), seed=0)
    x = torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return trainer, TensorLoader(x, batch_size=16)


def _die_on_call(name: str, n: int) -> None:
    real = getattr(os, name)
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    setattr(os, name, wrapper)


class _Ballast:
    """1 MB of extra state, so that writing a checkpoint takes most of each step's time
    and a random kill usually lands inside a save rather than between saves."""

    def __init__(self) -> None:
        self.buffer = torch.arange(256 * 1024, dtype=torch.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer = state["buffer"]


def _train_forever(folder: Path, trial: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    trainer, loader = build_trainer()
    trainer.register_state("ballast", _Ballast())
    if trial["kind"] == "at_call":
        _die_on_call(trial["call"], trial["n"])
    trainer.add_callback(Event.STEP_END, lambda t: t.save_checkpoint(folder / "ckpt.pt", keep_last=2))
    trainer.fit(loader, epochs=10**9)


def _wait_for(path: Path, pid: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            return True
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
        time.sleep(0.005)
    return False


def _reap(pid: int, timeout: float) -> int | None:
    """Wait for ``pid``; SIGKILL it if it outlives ``timeout``. Returns the wait status (None: had to kill)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def main(spec_file: str, result_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    results = []
    for trial in spec["trials"]:
        folder = Path(trial["folder"])
        folder.mkdir(parents=True, exist_ok=True)
        pid = os.fork()
        if pid == 0:  # the trainer: never returns into this loop
            code = 1
            try:
                _train_forever(folder, trial)
            except BaseException as err:  # pragma: no cover - reported through the exit code
                print(f"trainer failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
            finally:
                os._exit(code)
        outcome: dict[str, Any] = {"pid": pid}
        if trial["kind"] == "random":
            outcome["first_save_seen"] = _wait_for(folder / "ckpt.pt", pid, spec["timeout"])
            time.sleep(trial["delay"])
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        status = _reap(pid, spec["timeout"])
        outcome["killed_by_sigkill"] = status is not None and os.WIFSIGNALED(status) and \
            os.WTERMSIG(status) == signal.SIGKILL
        results.append(outcome)
    Path(result_file).write_text(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
