"""SIGKILL during training and saving: the whole set of checkpoint names stays whole, and the run resumes.

A child process (``tests/crash_child.py``) forks trainers that save after every step
with ``keep_last=2`` (plus 1 MB of extra state, so saving is a large share of the
time). Deterministic trials kill a trainer on entering each ``os`` call of its third
save (every one: the calls are counted first), random trials a seeded 0 to 0.4 s after
its first save, wherever it is. After every kill the *whole set* of names is checked
(``NAME`` and its step-numbered copies: no stranger, each loading and holding the step its
name says), the newest is found by :func:`latest_checkpoint`, a new trainer resumes from it
and trains, and its next save leaves the exact expected set and no temporary file.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from torchgan_lite.checkpoints.format import latest_checkpoint, load_checkpoint

from .crash_child import build_trainer, next_rotation, observed_rotation, rotation_states, trainer_step
from .resume_child import single_thread

CHILD = Path(__file__).resolve().parent / "crash_child.py"
RANDOM_TRIALS = 6
KILLED_SAVE = 4  # the first save that prunes a numbered file (keep_last=2 keeps 3)


def _run(root: Path, trials: list[dict]) -> list[dict]:
    spec, result = root / f"spec{len(trials)}.json", root / f"result{len(trials)}.json"
    spec.write_text(json.dumps({"trials": trials, "timeout": 60}))
    proc = subprocess.run([sys.executable, str(CHILD), str(spec), str(result)], capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(result.read_text())


@pytest.fixture(scope="module")
def crashed(tmp_path_factory) -> list[tuple[dict, dict]]:
    root = tmp_path_factory.mktemp("crash")
    (count,) = _run(root, [{"kind": "trainer_count", "saves": KILLED_SAVE, "folder": str(root / "count")}])
    assert count["exit_code"] == 0, count
    n_calls = len(count["calls"][KILLED_SAVE - 1])
    rng = random.Random(0)
    trials = [{"kind": "trainer_at", "save": KILLED_SAVE, "at": k, "folder": str(root / f"at{k}")}
              for k in range(1, n_calls + 1)]
    trials += [{"kind": "random", "delay": rng.uniform(0.0, 0.4), "folder": str(root / f"random{i}")}
               for i in range(RANDOM_TRIALS)]
    trials.append({"kind": "trainer_at", "save": 1, "at": count["calls"][0].index("replace") + 1,
                   "folder": str(root / "first_save")})
    return list(zip(trials, _run(root, trials)))


def _resume_and_save(folder: Path, newest: Path, step: int) -> None:
    with single_thread():
        trainer, loader = build_trainer()
        trainer.load_checkpoint(newest)
        assert trainer.state.step == step
        trainer.fit(loader, epochs=10**6, max_steps=step + 1)  # and training goes on from there
        assert trainer.state.step == step + 1
        trainer.save_checkpoint(folder / "ckpt.pt", keep_last=2)


def test_a_kill_at_every_point_of_a_trainer_save_leaves_the_rotation_whole_and_resumable(crashed):
    states = rotation_states(KILLED_SAVE, 2)  # steps == save numbers: one save per step
    seen = []
    for trial, outcome in crashed:
        if trial["kind"] != "trainer_at" or trial["save"] != KILLED_SAVE:
            continue
        folder = Path(trial["folder"])
        assert outcome["killed_by_sigkill"], outcome  # it really died by SIGKILL, not by finishing
        now = observed_rotation(folder, step_of=trainer_step)  # the whole set of names: no stranger, all load
        assert now in states, f"{folder.name}: {now} is none of {states}"
        seen.append(states.index(now))
        assert latest_checkpoint(folder) == latest_checkpoint(folder / "ckpt.pt") == folder / "ckpt.pt"
        _resume_and_save(folder, folder / "ckpt.pt", now[0])
        assert observed_rotation(folder, step_of=trainer_step) == next_rotation(now, now[0] + 1, 2)
        assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]  # the dead writer's are gone
    assert seen == sorted(seen) and set(seen) == set(range(len(states)))  # every state of the save was hit


@pytest.mark.parametrize("index", range(RANDOM_TRIALS))
def test_a_random_kill_leaves_the_rotation_whole_and_resumable(crashed, index):
    trial, outcome = [c for c in crashed if c[0]["kind"] == "random"][index]
    assert outcome["killed_by_sigkill"] and outcome["first_save_seen"], outcome
    folder = Path(trial["folder"])
    now = observed_rotation(folder, step_of=trainer_step)
    # the state of some save, before it ended or after: never a stranger or a step backwards
    assert now in rotation_states(now[0], 2) + rotation_states(now[0] + 1, 2), now
    newest = latest_checkpoint(folder)
    assert newest == folder / "ckpt.pt"
    _resume_and_save(folder, newest, now[0])
    assert observed_rotation(folder, step_of=trainer_step) == next_rotation(now, now[0] + 1, 2)
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_kill_inside_the_first_save_leaves_no_checkpoint_but_no_torn_file(crashed):
    trial, outcome = crashed[-1]
    assert trial["folder"].endswith("first_save") and outcome["killed_by_sigkill"]
    folder = Path(trial["folder"])
    assert observed_rotation(folder) == []  # never a partial file under the real name
    assert len([p for p in folder.iterdir() if p.name.endswith(".tmp")]) == 1
    assert latest_checkpoint(folder) is None
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(folder / "ckpt.pt")
    with single_thread():
        trainer, _ = build_trainer()
        trainer.save_checkpoint(folder / "ckpt.pt")
    assert [p.name for p in folder.iterdir()] == ["ckpt.pt"]  # the dead writer's temporary is gone
    assert trainer_step(load_checkpoint(folder / "ckpt.pt")) == 0
