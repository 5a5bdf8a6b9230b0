"""SIGKILL during training and saving always leaves a latest checkpoint that loads.

A child process (``tests/crash_child.py``) forks trainers that save after every step
with ``keep_last=2`` (plus 1 MB of extra state, so saving is a large share of the
time). Random trials kill them a seeded random 0 to 0.4 s after the first save,
wherever they are; deterministic trials kill them on entering each ``os.replace``,
``os.link`` and ``os.fsync`` inside ``save_checkpoint``, so every boundary of the
atomic write and of the rotation is hit at least once.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from torchgan_lite.checkpoint import load_checkpoint

from .crash_child import build_trainer
from .resume_child import single_thread

CHILD = Path(__file__).resolve().parent / "crash_child.py"
RANDOM_TRIALS = 8
# Calls inside save_checkpoint (keep_last=2), counted from the trainer's start:
#   save 1: fsync(tmp) #1, replace(tmp -> NAME) #1, fsync(dir) #2
#   save 2: fsync(tmp) #3, link(NAME -> staged) #1, replace(staged -> NAME.1) #2, replace(tmp -> NAME) #3, fsync #4
#   save 3: fsync(tmp) #5, replace(NAME.1 -> NAME.2) #4, link #2, replace(staged -> NAME.1) #5, replace(tmp) #6
AT_CALL = [("replace", n) for n in (2, 3, 4, 5, 6)] + [("link", 1), ("link", 2), ("fsync", 3), ("fsync", 5)]


@pytest.fixture(scope="module")
def crashed(tmp_path_factory) -> list[tuple[dict, dict]]:
    root = tmp_path_factory.mktemp("crash")
    rng = random.Random(0)
    trials = [{"kind": "random", "delay": rng.uniform(0.0, 0.4), "folder": str(root / f"random{i}")}
              for i in range(RANDOM_TRIALS)]
    trials += [{"kind": "at_call", "call": call, "n": n, "folder": str(root / f"{call}{n}")} for call, n in AT_CALL]
    trials.append({"kind": "at_call", "call": "replace", "n": 1, "folder": str(root / "first_save")})
    spec, result = root / "spec.json", root / "result.json"
    spec.write_text(json.dumps({"trials": trials, "timeout": 30}))
    proc = subprocess.run([sys.executable, str(CHILD), str(spec), str(result)], capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return list(zip(trials, json.loads(result.read_text())))


def _checkpoints(folder: Path) -> list[Path]:
    return [p for p in (folder / "ckpt.pt", folder / "ckpt.pt.1", folder / "ckpt.pt.2") if p.exists()]


def _trial_ids() -> list[str]:
    return [f"random{i}" for i in range(RANDOM_TRIALS)] + [f"{c}{n}" for c, n in AT_CALL]


@pytest.mark.parametrize("index", range(RANDOM_TRIALS + len(AT_CALL)), ids=_trial_ids())
def test_latest_checkpoint_survives_sigkill_and_resumes(crashed, index):
    trial, outcome = crashed[index]
    assert outcome["killed_by_sigkill"], outcome  # the trainer really died by SIGKILL, not by finishing
    if trial["kind"] == "random":
        assert outcome["first_save_seen"]
    folder = Path(trial["folder"])
    paths = _checkpoints(folder)
    assert paths and paths[0].name == "ckpt.pt"  # once written, the latest never disappears
    steps = [load_checkpoint(p)["trainer"]["step"] for p in paths]  # every file there loads
    # Older names never hold newer steps. (A kill between "NAME.1 = link(NAME)" and "NAME = new" leaves
    # NAME.1 equal to NAME for a moment: a duplicate, never a gap or a step backwards.)
    assert steps == sorted(steps, reverse=True)
    if trial["kind"] == "at_call" and trial["call"] == "fsync":
        # killed after torch.save into the temporary file, before its rename: a partial save was left
        assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]

    with single_thread():
        trainer, loader = build_trainer()
        trainer.load_checkpoint(paths[0])
        assert trainer.state.step == steps[0]
        trainer.fit(loader, epochs=10**6, max_steps=steps[0] + 1)  # and training goes on from there
        assert trainer.state.step == steps[0] + 1
        trainer.save_checkpoint(folder / "ckpt.pt", keep_last=2)
    # The next save cleans what the killed writer left, and the rotation is whole again.
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert [load_checkpoint(p)["trainer"]["step"] for p in _checkpoints(folder)][:2] == [steps[0] + 1, steps[0]]


def test_kill_inside_the_first_save_leaves_no_checkpoint_but_no_torn_file(crashed):
    trial, outcome = crashed[-1]
    assert trial["folder"].endswith("first_save") and outcome["killed_by_sigkill"]
    folder = Path(trial["folder"])
    assert not (folder / "ckpt.pt").exists()  # never a partial file under the real name
    leftovers = [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(folder / "ckpt.pt")
    with single_thread():
        trainer, _ = build_trainer()
        trainer.save_checkpoint(folder / "ckpt.pt")
    assert not leftovers[0].exists()
    assert torch.equal(load_checkpoint(folder / "ckpt.pt")["trainer"]["epoch_sums"], torch.zeros(5))
