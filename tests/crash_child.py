"""Processes that save checkpoints and die by SIGKILL, for ``tests/test_crash.py`` and ``tests/test_adversarial.py``.

``python tests/crash_child.py SPEC.json RESULT.json`` imports torch once, then for each
trial forks a process (so each trial costs no new interpreter). Trial kinds:

- ``{"kind": "count", "saves": S, "keep_last": K, "no_links": bool}``: save S small
  checkpoints (``{"step": i}``) and record, per save, the names of the ``os`` calls it
  made (see :data:`INTERCEPTED`); nothing is killed.
- ``{"kind": "kill_save", "saves": S, "keep_last": K, "no_links": bool, "at": k}``: the
  same saves, but the process SIGKILLs itself on entering the k-th intercepted ``os``
  call of save S: a deterministic kill at one exact point of one save.
- ``{"kind": "random", "delay": s}``: a tiny trainer saves ``FOLDER/ckpt.pt`` after every
  step (``keep_last=2``, plus 1 MB of extra state so a save is most of a step); once the
  first checkpoint exists this process waits ``s`` seconds and sends SIGKILL, wherever
  the trainer happens to be.
- ``{"kind": "trainer_count", "saves": S}``: that trainer (no kill) records the intercepted
  calls of its first S saves, then exits.
- ``{"kind": "trainer_at", "save": S, "at": k}``: that trainer SIGKILLs itself on entering
  the k-th intercepted ``os`` call of its save number S.

RESULT.json lists, per trial, how the process ended (and the calls, for ``count``).
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

from torchgan_lite import Event, GANTrainer, TensorLoader, seed_everything  # noqa: E402
from torchgan_lite.checkpoints import format as checkpoint  # noqa: E402
from torchgan_lite.checkpoints.rotation import parse_numbered  # noqa: E402
from torchgan_lite.losses import adversarial as losses  # noqa: E402
from torchgan_lite.nets import mlp as models  # noqa: E402

__all__ = ["INTERCEPTED", "build_trainer", "main", "next_rotation", "observed_rotation", "rotation_states",
           "save_step", "trainer_step"]

#: The ``os`` functions a save may call; a kill lands on entering any of them.
INTERCEPTED = ("open", "replace", "link", "fsync", "unlink", "utime")


def build_trainer() -> tuple[GANTrainer, TensorLoader]:
    """The crash tests' tiny trainer (also rebuilt by the test to load what survived)."""
    seed_everything(0)
    g = models.mlp_generator(latent_dim=8, hidden=(32,), out_shape=(1, 4, 4))
    d = models.mlp_discriminator(in_shape=(1, 4, 4), hidden=(32,), dropout=0.3)
    trainer = GANTrainer(g, d, losses.NonSaturatingLoss())
    x = torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return trainer, TensorLoader(x, batch_size=16)


def save_step(folder: Path, step: int, keep_last: int) -> None:
    """Save the small checkpoint of step ``step`` (its tensor says the step too)."""
    checkpoint.save_checkpoint({"step": step, "weights": torch.full((64,), float(step))}, folder / "ckpt.pt",
                               keep_last=keep_last, step=step)


def _prune(numbered: list[int], keep: int) -> list[int]:
    return sorted(set(numbered), reverse=True)[: keep + 1]


def rotation_states(saves: int, keep: int) -> list[list[int]]:
    """Every state ``[step of NAME, steps of its numbered files, newest first]`` that save number ``saves`` passes
    through, in order (one save per step, ``keep >= 1``).

    Before it: ``NAME`` holds the previous step and the numbered files the ``keep + 1`` newest
    steps; then the new file replaces ``NAME``; then it gets its numbered name; last, the oldest
    numbered file beyond ``keep + 1`` is removed.
    """
    before = list(range(saves - 1, max(saves - 1 - (keep + 1), 0), -1))
    states = [[before[0], *before] if before else []]
    states.append([saves, *before])
    states.append([saves, saves, *before])
    states.append([saves, *_prune([saves, *before], keep)])
    return [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]


def next_rotation(now: list[int], step: int, keep: int) -> list[int]:
    """The state a completed save of ``step`` leaves after the state ``now`` (see :func:`rotation_states`)."""
    return [step, *_prune([step, *[s for s in now[1:] if s <= step]], keep)]


def trainer_step(ckpt: dict[str, Any]) -> int:
    """The step a trainer checkpoint was saved at."""
    return int(ckpt["trainer"]["step"])


def observed_rotation(folder: Path, name: str = "ckpt.pt", step_of: Any = None) -> list[int]:
    """``[step of NAME, steps of its numbered files, newest first]``, after checking the whole set of names.

    Raises AssertionError if any file other than those and temporaries (``.*.tmp``) is there,
    if a numbered file holds another step than its name says or a later one than ``NAME``, or
    if one of them does not load.
    """
    step_of = step_of or (lambda ckpt: int(ckpt["step"]))
    present = sorted(p.name for p in folder.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp")))
    if not present:
        return []
    numbered = {n: parse_numbered(n) for n in present if n != name}
    strangers = [n for n, parsed in numbered.items() if parsed is None or parsed[0] != name]
    assert name in present and not strangers, f"no {name}, or strangers: {present}"
    steps = sorted((parsed[1] for parsed in numbered.values() if parsed is not None), reverse=True)
    for n, parsed in numbered.items():
        assert parsed is not None and step_of(checkpoint.load_checkpoint(folder / n)) == parsed[1], n
    head = step_of(checkpoint.load_checkpoint(folder / name))
    assert all(s <= head for s in steps), f"a numbered file newer than {name}: {present}"
    return [head, *steps]


class _Calls:
    """Counts (and names) the intercepted ``os`` calls made inside ``save_checkpoint``; kills at the k-th."""

    def __init__(self, kill_at: int | None, only_save: int | None) -> None:
        self.kill_at, self.only_save = kill_at, only_save
        self.save = 0  # the number of the save in progress (1-based), 0 outside saves
        self.count = 0
        self.names: list[list[str]] = []
        for name in INTERCEPTED:
            self._wrap(name)
        real_save = checkpoint.save_checkpoint

        def counted_save(*args: Any, **kwargs: Any) -> Any:
            self.save = len(self.names) + 1
            self.names.append([])
            try:
                return real_save(*args, **kwargs)
            finally:
                self.save = 0

        checkpoint.save_checkpoint = counted_save  # the trainer imports it at call time

    def _wrap(self, name: str) -> None:
        real = getattr(os, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self.save and (self.only_save is None or self.save == self.only_save):
                self.count += 1
                self.names[-1].append(name)
                if self.count == self.kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            elif self.save:
                self.names[-1].append(name)
            return real(*args, **kwargs)

        setattr(os, name, wrapper)


def _no_links() -> None:
    def refuse(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(1, "Operation not permitted")  # as on a filesystem without hard links

    os.link = refuse  # type: ignore[assignment]


def _run_saves(folder: Path, trial: dict[str, Any], result: Path) -> None:
    if trial.get("no_links"):
        _no_links()
    calls = _Calls(trial.get("at"), trial["saves"] if trial["kind"] == "kill_save" else None)
    for step in range(1, trial["saves"] + 1):
        save_step(folder, step, trial["keep_last"])
    result.write_text(json.dumps(calls.names))


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
    calls = None
    if trial["kind"] == "trainer_at":
        calls = _Calls(trial["at"], trial["save"])
    elif trial["kind"] == "trainer_count":
        calls = _Calls(None, None)

    def save(t: GANTrainer) -> None:
        t.save_checkpoint(folder / "ckpt.pt", keep_last=2)
        if calls is not None and trial["kind"] == "trainer_count" and len(calls.names) == trial["saves"]:
            (folder.parent / f"{folder.name}.calls.json").write_text(json.dumps(calls.names))
            os._exit(0)

    trainer.add_callback(Event.STEP_END, save)
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
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def main(spec_file: str, result_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    results = []
    for trial in spec["trials"]:
        folder = Path(trial["folder"])
        folder.mkdir(parents=True, exist_ok=True)
        calls_file = folder.parent / f"{folder.name}.calls.json"
        pid = os.fork()
        if pid == 0:  # the child: never returns into this loop
            code = 1
            try:
                if trial["kind"] in ("count", "kill_save"):
                    _run_saves(folder, trial, calls_file)
                    code = 0
                else:
                    _train_forever(folder, trial)
            except BaseException as err:  # pragma: no cover - reported through the exit code
                print(f"child failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
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
        outcome["exit_code"] = os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else None
        if trial["kind"] in ("count", "trainer_count") and calls_file.exists():
            outcome["calls"] = json.loads(calls_file.read_text())
        results.append(outcome)
    Path(result_file).write_text(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
