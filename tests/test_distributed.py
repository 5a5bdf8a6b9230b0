"""Data-parallel training: 2 CPU processes on gloo against 1 process, launched like torchrun.

The two processes are real (``tests/_dist_worker.py`` run as a script with
torchrun's environment variables, loopback address only) and bounded by a
timeout; the 1-process runs happen in the test process itself. One module
fixture runs everything once; each test compares the results it needs:

- after K steps both ranks hold bitwise-identical weights, even from different
  initial weights and with dropout on;
- with dropout off, 2 processes x batch 8 match 1 process x batch 16 (weights and
  epoch-mean losses) to a tight tolerance;
- a mid-epoch checkpoint moves between world sizes (2 -> 1, 1 -> 2) and the run
  continues as it would have; only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from . import _dist_worker as worker

WORKER = Path(worker.__file__)
LAUNCH_TIMEOUT_S = 90
# Float32 round-off only: the 2-process run sums two batch means where the 1-process
# run takes one mean of 16; measured differences after 12 Adam steps: 1.5e-8 at most.
ATOL = 1e-6
RTOL = 1e-5
LOSS_FIELDS = ("d_loss", "g_loss", "d_real", "d_fake")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(rank: int, world: int, port: int) -> dict[str, str]:
    """torchrun's variables for one local rank, on the loopback address; one thread, no GPU."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    return env


def launch(scenario: str, out: Path, world: int) -> None:
    """Run the worker on ``world`` processes, as torchrun would; fail with their output."""
    port = _free_port()
    ranks = list(range(world))
    procs = [subprocess.Popen([sys.executable, str(WORKER), scenario, str(out)], env=_env(r, world, port),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in ranks]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=LAUNCH_TIMEOUT_S)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"scenario {scenario!r} on {world} process(es) ran past {LAUNCH_TIMEOUT_S} s (a hang?)")
    for r, p, text in zip(ranks, procs, outputs):
        if p.returncode != 0:
            pytest.fail(f"scenario {scenario!r}, rank {r}: exit code {p.returncode}\n{text[-4000:]}")


@contextlib.contextmanager
def _one_thread_and_own_rngs() -> Iterator[None]:
    """Run a 1-process scenario here without leaking its seeds or thread count into other tests."""
    threads, py_state, np_state = torch.get_num_threads(), random.getstate(), np.random.get_state()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(threads)
        random.setstate(py_state)
        np.random.set_state(np_state)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    x = worker.synthetic_images()
    with _one_thread_and_own_rngs():
        worker.scenario_single(out, x)  # writes ckpt_1p_mid.pt, which the 2-process run resumes
    launch("dp", out, 2)  # writes ckpt_2p_mid.pt
    with _one_thread_and_own_rngs():
        worker.scenario_single_resume(out, x)
    return out


def load(out: Path, name: str) -> dict[str, Any]:
    return torch.load(out / f"{name}.pt", weights_only=True)


def assert_weights(a: dict[str, Any], b: dict[str, Any], exact: bool) -> None:
    for net in ("G", "D"):
        assert a[net].keys() == b[net].keys()
        for key in a[net]:
            if exact:
                assert torch.equal(a[net][key], b[net][key]), f"{net}.{key} differs"
            else:
                torch.testing.assert_close(a[net][key], b[net][key], atol=ATOL, rtol=RTOL, msg=f"{net}.{key}")


def assert_history(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert [h["epoch"] for h in a] == [h["epoch"] for h in b]
    assert [h["step"] for h in a] == [h["step"] for h in b]
    for ha, hb in zip(a, b):
        for field in LOSS_FIELDS:
            assert ha[field] == pytest.approx(hb[field], rel=RTOL, abs=ATOL), f"epoch {ha['epoch']} {field}"


def test_trainer_and_loader_pick_up_the_torchrun_group(runs: Path) -> None:
    for r in (0, 1):
        res = load(runs, f"result_2p_rank{r}")
        assert (res["rank"], res["world_size"]) == (r, 2)
        assert (res["loader_rank"], res["loader_world"]) == (r, 2)
        # 96 rows in global batches of 2 x 8: 6 steps an epoch, 2 epochs.
        assert res["step"] == 12 and [h["step"] for h in res["history"]] == [6, 12]


def test_ranks_hold_identical_weights_after_training(runs: Path) -> None:
    s0, s1 = load(runs, "result_sync_rank0"), load(runs, "result_sync_rank1")
    # Each rank built its networks from its own seed: they differed before the trainer.
    for net in ("G", "D"):
        assert any(not torch.equal(s0["before"][net][k], s1["before"][net][k]) for k in s0["before"][net])
    assert_weights(s0["start"], s1["start"], exact=True)  # rank 0's weights, broadcast
    assert_weights(s0["start"], s0["before"], exact=True)
    assert_weights(s0["after"], s1["after"], exact=True)  # 5 steps with dropout 0.3: still bitwise equal
    assert any(not torch.equal(s0["after"]["D"][k], s0["start"]["D"][k]) for k in s0["start"]["D"])
    assert any(not torch.equal(s0["after"]["G"][k], s0["start"]["G"][k]) for k in s0["start"]["G"])
    r0, r1 = load(runs, "result_2p_rank0"), load(runs, "result_2p_rank1")
    assert_weights(r0, r1, exact=True)
    assert r0["history"] == [{**h, "seconds": r0["history"][i]["seconds"],
                              "steps_per_s": r0["history"][i]["steps_per_s"]} for i, h in enumerate(r1["history"])]


def test_two_processes_match_one_process_with_the_same_global_batch(runs: Path) -> None:
    one, two = load(runs, "result_1p"), load(runs, "result_2p_rank0")
    assert_weights(one["mid"], two["mid"], exact=False)  # after 3 steps
    assert_weights(one, two, exact=False)  # after 12 steps, 2 epochs
    assert_history(one["history"], two["history"])
    # The tolerance is meaningful: steps 4 to 12 moved the weights far more than it.
    moved = max((one["G"][k] - one["mid"]["G"][k]).abs().max().item() for k in one["G"])
    assert moved > 100 * ATOL


def test_two_process_checkpoint_resumes_in_one_process(runs: Path) -> None:
    two, resumed = load(runs, "result_2p_rank0"), load(runs, "result_1p_from2p")
    assert resumed["world_size"] == 1 and resumed["step"] == two["step"] == 12
    assert_weights(resumed, two, exact=False)


def test_one_process_checkpoint_resumes_in_two_processes(runs: Path) -> None:
    one = load(runs, "result_1p")
    for r in (0, 1):
        resumed = load(runs, f"result_2p_from1p_rank{r}")
        assert resumed["world_size"] == 2 and resumed["step"] == one["step"] == 12
        assert_weights(resumed, one, exact=False)
        assert_history(resumed["history"], one["history"])


def test_resume_at_the_same_world_size_is_exact(runs: Path) -> None:
    two = load(runs, "result_2p_rank0")
    for r in (0, 1):
        assert_weights(load(runs, f"result_2p_from2p_rank{r}"), two, exact=True)


def test_only_rank_zero_writes_checkpoints(runs: Path) -> None:
    assert (runs / "written_by_rank0.pt").is_file()
    assert not (runs / "written_by_rank1.pt").exists()
    ckpt = torch.load(runs / "ckpt_2p_mid.pt", weights_only=True)
    assert ckpt["trainer"]["step"] == worker.MID_STEP and ckpt["trainer"]["world_size"] == 2
    assert ckpt["loader"]["global_batch_size"] == worker.GLOBAL_BATCH


def test_epoch_means_survive_a_mid_epoch_resume_of_a_two_process_run(runs: Path) -> None:
    # The checkpoint must hold the epoch's sums averaged over ranks, not rank 0's own.
    two = load(runs, "result_2p_rank0")
    assert_history(load(runs, "result_1p_from2p")["history"], two["history"])
    assert_history(load(runs, "result_2p_from2p_rank0")["history"], two["history"])


def test_fit_refuses_a_loader_that_does_not_shard_by_rank(runs: Path) -> None:
    # Built before the group existed, the loader would serve every rank the same batches.
    for r in (0, 1):
        res = load(runs, f"result_early_rank{r}")
        assert res["early_world"] == 1
        assert res["outcome"].startswith("ValueError") and "world_size" in res["outcome"]


def test_a_nan_on_one_rank_stops_every_rank_with_the_same_error(runs: Path) -> None:
    # Not a crash inside a collective (gloo) or a hang (NCCL) on the ranks whose loss was finite.
    for r in (0, 1):
        outcome = load(runs, f"result_nan_rank{r}")["outcome"]
        assert outcome.startswith("NonFiniteLossError"), f"rank {r}: {outcome}"


def test_checkpoint_callback_into_node_local_folders_finishes_on_every_rank(runs: Path) -> None:
    # Multi-node runs without a shared disk: only rank 0's folder ever holds the file.
    assert (runs / "node0" / "checkpoint.pt").is_file()
    assert not (runs / "node1" / "checkpoint.pt").exists()
    for r in (0, 1):
        res = load(runs, f"result_nodelocal_rank{r}")
        assert res["outcome"] == "finished", f"rank {r}: {res['outcome']}"
        assert res["step"] == worker.N_ROWS // worker.GLOBAL_BATCH


def test_ada_moves_p_by_the_global_mean_on_every_rank(runs: Path) -> None:
    # Each rank sees its own half of the batch; p must follow the mean over both halves,
    # as one process with the whole batch does, and stay the same on both ranks.
    one = load(runs, "result_ada_1p")["p"]
    r0, r1 = load(runs, "result_ada_rank0")["p"], load(runs, "result_ada_rank1")["p"]
    assert len(one) == len(r0) == 12
    assert r0 == r1 == one
    assert len(set(one)) > 2  # p moved at several of the 6 adjustments (0.032 each)
