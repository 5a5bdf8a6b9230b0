"""Exact resume: N steps, save, load in a new process, M more steps == N+M uninterrupted, bitwise.

Dropout is on, so the dropout masks (torch's CPU RNG) must be restored too; the
loader's permutation and position, both optimizers, an EMA registered with
``register_state``, a regularizer that draws random numbers (WGAN-GP) and the epoch
bookkeeping all have to come back exactly. The uninterrupted runs and the
interrupted first halves run here; the second halves run in one child process
(``tests/resume_child.py``), which knows nothing but the checkpoint file.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from torchgan_lite import Event, TensorLoader
from torchgan_lite.callbacks import checkpoint
from torchgan_lite.checkpoints.format import load_checkpoint
from torchgan_lite.checkpoints.rotation import numbered_path
from torchgan_lite.data import mnist as data

from .resume_child import build, fit_recording, single_thread, snapshot, tiny_data

CHILD = Path(__file__).resolve().parent / "resume_child.py"
STEPS_PER_EPOCH = 5  # tiny_data(): 40 rows in batches of 8

# name: (kind, where the first half stops, the totals of the whole run)
#   ("fit", N): fit(max_steps=N) then save_checkpoint; ("epoch_ckpt", k): the k-th epoch-end
#   checkpoint that ModelCheckpoint(keep_last=2) wrote during the uninterrupted run itself.
SCENARIOS: dict[str, tuple[str, tuple[str, int], tuple[int, int | None]]] = {
    "mid_epoch": ("tiny", ("fit", 7), (4, 13)),  # stops at step 2 of epoch 2, ends at step 3 of epoch 3
    "across_epochs": ("tiny", ("fit", 3), (3, None)),  # mid-epoch to the end of epoch 3
    "at_epoch_end": ("tiny", ("fit", 5), (4, 9)),  # max_steps closes epoch 1 exactly
    "model_checkpoint": ("tiny", ("epoch_ckpt", 1), (3, None)),  # resume from NAME-000000005 (end of epoch 1)
    "wgan_gp_mid_epoch": ("wgan", ("fit", 6), (3, 11)),  # n_critic=2, GradientPenalty's random alphas
    "fast_paths_mid_epoch": ("perf", ("fit", 4), (3, 8)),  # MaskDropout, fused D call, R1
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


def _assert_same(ref: Any, got: Any, where: str = "") -> None:
    """Bitwise equality of nested snapshots (tensors with torch.equal, floats with ==)."""
    if isinstance(ref, torch.Tensor):
        assert isinstance(got, torch.Tensor) and ref.dtype == got.dtype and torch.equal(ref, got), where
    elif isinstance(ref, dict):
        assert isinstance(got, dict) and set(ref) == set(got), where
        for k in ref:
            _assert_same(ref[k], got[k], f"{where}.{k}")
    elif isinstance(ref, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(ref) == len(got), f"{where}: {len(ref)} vs {len(got)}"
        for i, (a, b) in enumerate(zip(ref, got)):
            _assert_same(a, b, f"{where}[{i}]")
    elif isinstance(ref, float) and math.isnan(ref):
        assert isinstance(got, float) and math.isnan(got), where
    else:
        assert ref == got, f"{where}: {ref!r} != {got!r}"


def _reference(kind: str, x: torch.Tensor, epochs: int, max_steps: int | None,
               ckpt_path: Path | None = None, device: str = "cpu") -> dict[str, Any]:
    trainer, loader, ema = build(kind, x, device)
    if ckpt_path is not None:
        checkpoint.ModelCheckpoint(ckpt_path, every=1, keep_last=2).attach(trainer)
    record: list[torch.Tensor] = []
    fit_recording(trainer, loader, epochs, max_steps, record)
    return snapshot(trainer, ema, record)


def _first_half(kind: str, x: torch.Tensor, n: int, epochs: int, path: Path, device: str = "cpu") -> None:
    trainer, loader, _ = build(kind, x, device)
    trainer.fit(loader, epochs=epochs, max_steps=n)
    assert trainer.state.step == n
    trainer.save_checkpoint(path)


def _run_child(jobs: list[dict[str, Any]], folder: Path, timeout: float) -> None:
    for job in jobs:
        job["threads"] = torch.get_num_threads()
    jobs_file = folder / "jobs.json"
    jobs_file.write_text(json.dumps(jobs))
    proc = subprocess.run([sys.executable, str(CHILD), str(jobs_file)], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"the resuming process failed:\n{proc.stderr[-4000:]}"


@pytest.fixture(scope="module")
def resumed(tmp_path_factory) -> dict[str, tuple[dict[str, Any], dict[str, Any], int]]:
    """For each scenario: (uninterrupted snapshot, resumed-in-a-new-process snapshot, steps before the save)."""
    folder = tmp_path_factory.mktemp("resume")
    x = tiny_data()
    jobs, refs, starts = [], {}, {}
    for name, (kind, (how, n), (epochs, max_steps)) in SCENARIOS.items():
        ckpt = folder / f"{name}.pt"
        if how == "fit":
            _first_half(kind, x, n, epochs, ckpt)
            refs[name] = _reference(kind, x, epochs, max_steps)
            starts[name] = n
        else:
            refs[name] = _reference(kind, x, epochs, max_steps, ckpt_path=ckpt)
            # keep_last=2 after 3 epoch ends: NAME = epoch 3, and the numbered files of epochs 3, 2 and 1.
            ckpt = numbered_path(ckpt, n * STEPS_PER_EPOCH)
            starts[name] = n * STEPS_PER_EPOCH
        jobs.append({"kind": kind, "data": None, "ckpt": str(ckpt), "out": str(folder / f"{name}.out.pt"),
                     "epochs": epochs, "max_steps": max_steps})
    _run_child(jobs, folder, timeout=300)
    return {name: (refs[name], torch.load(folder / f"{name}.out.pt", weights_only=True), starts[name])
            for name in SCENARIOS}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_resume_in_a_new_process_is_bitwise_exact(resumed, name):
    ref, got, n = resumed[name]
    # The second half really trained (torchgan's resume silently trained nothing).
    assert got["losses"].shape[0] == ref["losses"].shape[0] - n > 0
    _assert_same(ref["losses"][n:], got["losses"], "losses of the resumed steps")
    for key in ("progress", "history", "generator", "discriminator", "g_optimizer", "d_optimizer", "ema",
                "next_noise"):
        _assert_same(ref[key], got[key], key)


def test_checkpoint_rotation_holds_the_epochs_in_order(tmp_path):
    trainer, loader, _ = build("tiny", tiny_data())
    checkpoint.ModelCheckpoint(tmp_path / "c.pt", every=1, keep_last=2).attach(trainer)
    trainer.fit(loader, epochs=4)
    names = ["c.pt", "c-000000020.pt", "c-000000015.pt", "c-000000010.pt"]  # numbered by step, 5 steps an epoch
    assert [load_checkpoint(tmp_path / name)["trainer"]["epoch"] for name in names] == [4, 4, 3, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # epoch 1's pruned, no temporaries left


def test_resume_with_a_fresh_loader_after_an_earlier_fit(tmp_path):
    """load_checkpoint into a trainer that already trained, then fit with a *new* loader object."""
    x = tiny_data()
    ref = _reference("tiny", x, 3, 12)
    _first_half("tiny", x, 7, 3, tmp_path / "a.pt")
    trainer, loader, ema = build("tiny", x)
    trainer.fit(loader, epochs=3, max_steps=2)  # some other training first
    fresh_loader = TensorLoader(x, batch_size=8)  # same data, a new loader object (made before the load,
    trainer.load_checkpoint(tmp_path / "a.pt")  # which restores the RNG its seed was drawn from)
    record: list[torch.Tensor] = []
    fit_recording(trainer, fresh_loader, 3, 12, record)
    _assert_same(ref["losses"][7:], torch.stack(record), "losses")
    _assert_same(ref["generator"], snapshot(trainer, ema, record)["generator"], "generator")


def test_load_then_save_before_fit_keeps_the_loader_position(tmp_path):
    x = tiny_data()
    ref = _reference("tiny", x, 3, 9)
    _first_half("tiny", x, 7, 3, tmp_path / "a.pt")
    t1, _, _ = build("tiny", x)
    t1.load_checkpoint(tmp_path / "a.pt")
    t1.save_checkpoint(tmp_path / "b.pt")  # re-saved before any fit
    a = torch.load(tmp_path / "a.pt", weights_only=True)
    b = torch.load(tmp_path / "b.pt", weights_only=True)
    _assert_same(a["loader"], b["loader"], "loader")
    assert b["loader"]["pos"] == 2  # step 7 = batch 2 of epoch 2
    t2, loader, ema = build("tiny", x)
    t2.load_checkpoint(tmp_path / "b.pt")
    record: list[torch.Tensor] = []
    fit_recording(t2, loader, 3, 9, record)
    _assert_same(ref["losses"][7:], torch.stack(record), "losses")
    _assert_same(ref["discriminator"], snapshot(t2, ema, record)["discriminator"], "discriminator")


def test_state_counters_and_numpy_metrics_round_trip(tmp_path):
    trainer, loader, _ = build("tiny", tiny_data())
    trainer.fit(loader, epochs=2, max_steps=7)
    trainer.state.metrics.update(fid=np.float64(12.5), kid=torch.tensor(0.25), count=np.int64(3))
    trainer.state.skipped_steps = 2
    trainer.save_checkpoint(tmp_path / "m.pt")
    other, _, _ = build("tiny", tiny_data())
    other.load_checkpoint(tmp_path / "m.pt")
    assert other.state.metrics == {"fid": 12.5, "kid": 0.25, "count": 3}
    assert type(other.state.metrics["fid"]) is float and type(other.state.metrics["count"]) is int
    assert (other.state.epoch, other.state.step, other.state.epoch_step, other.state.skipped_steps) == (1, 7, 2, 2)
    assert [h.d_loss for h in other.state.history] == [h.d_loss for h in trainer.state.history]


def test_rng_states_of_every_library_come_back(tmp_path):
    import random

    trainer, _, _ = build("tiny", tiny_data())
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state
    np.random.standard_normal()
    trainer.save_checkpoint(tmp_path / "r.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random(), random.gauss(0, 1))
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    trainer.load_checkpoint(tmp_path / "r.pt")
    got = (torch.rand(3), np.random.rand(3), random.random(), random.gauss(0, 1))
    assert torch.equal(expected[0], got[0])
    assert np.array_equal(expected[1], got[1])
    assert expected[2:] == got[2:]


def test_save_from_step_end_at_an_epoch_boundary_resumes_exactly(tmp_path):
    """Saved after the epoch's last step but before its EPOCH_END: the resumed run closes that epoch first."""
    x = tiny_data()
    ref = _reference("tiny", x, 4, 9)
    trainer, loader, _ = build("tiny", x)
    trainer.add_callback(Event.STEP_END, lambda t: t.save_checkpoint(tmp_path / "s.pt")
                         if t.state.step == STEPS_PER_EPOCH else None)
    trainer.fit(loader, epochs=4, max_steps=6)
    resumed, loader2, ema = build("tiny", x)
    resumed.load_checkpoint(tmp_path / "s.pt")
    record: list[torch.Tensor] = []
    fit_recording(resumed, loader2, 4, 9, record)
    got = snapshot(resumed, ema, record)
    _assert_same(ref["generator"], got["generator"], "generator")
    _assert_same(ref["history"], got["history"], "history")  # epoch 1 closed at step 5, not 6
    _assert_same(ref["losses"][STEPS_PER_EPOCH:], got["losses"], "losses")


class _InterruptAt:
    """The recipe's loss, raising KeyboardInterrupt (Ctrl-C) in the generator loss of one step."""

    def __init__(self, trainer_box: list, step: int) -> None:
        from torchgan_lite.losses import adversarial as losses

        self.inner, self.box, self.step = losses.NonSaturatingLoss(), trainer_box, step

    def discriminator_loss(self, real_logits, fake_logits):
        return self.inner.discriminator_loss(real_logits, fake_logits)

    def generator_loss(self, fake_logits):
        if self.box[0].state.step + 1 == self.step:
            raise KeyboardInterrupt
        return self.inner.generator_loss(fake_logits)


def test_ctrl_c_inside_a_step_does_not_leave_a_half_step_checkpoint(tmp_path):
    """A raw KeyboardInterrupt after step 4's D update: no checkpoint of that half step is written."""
    from torchgan_lite import GANTrainer, TensorLoader, seed_everything
    from torchgan_lite.losses import adversarial as losses
    from torchgan_lite.nets import mlp as models

    def make(loss_factory):
        seed_everything(0)
        g = models.mlp_generator(latent_dim=16, hidden=(64,), out_shape=(1, 8, 8))
        d = models.mlp_discriminator(in_shape=(1, 8, 8), hidden=(64,), dropout=0.3)
        box: list = []
        seed_everything(0)
        trainer = GANTrainer(g, d, loss_factory(box))
        box.append(trainer)
        return trainer, TensorLoader(tiny_data(), batch_size=8)

    ref, loader = make(lambda box: losses.NonSaturatingLoss())
    ref.fit(loader, epochs=3, max_steps=6)
    first, loader = make(lambda box: _InterruptAt(box, 4))
    checkpoint.ModelCheckpoint(tmp_path / "c.pt", every=1).attach(first)
    with pytest.raises(KeyboardInterrupt):
        first.fit(loader, epochs=3, max_steps=6)
    assert first.in_step and not (tmp_path / "c.pt").exists()
    second, loader = make(lambda box: losses.NonSaturatingLoss())
    if (tmp_path / "c.pt").exists():  # any checkpoint written on Ctrl-C must resume exactly
        second.load_checkpoint(tmp_path / "c.pt")
    second.fit(loader, epochs=3, max_steps=6)
    assert all(torch.equal(a, b) for a, b in zip(ref.discriminator.parameters(), second.discriminator.parameters()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on a GPU machine)")
@pytest.mark.parametrize(("kind", "n", "totals"), [("tiny", 7, (4, 13)), ("perf", 4, (3, 8))])
def test_resume_on_cuda_in_a_new_process_is_bitwise_exact(tmp_path, kind, n, totals):
    """As on the CPU, with the CUDA RNG (dropout masks, noise) and a deferred finiteness check.

    Not "wgan": on an H200, WGAN-GP with n_critic=2 and dropout is not bitwise repeatable even
    within one process (max difference 7e-9 after 6 steps, deterministic algorithms on), so no
    resume of it can be bitwise there (docs/reliability.md).
    """
    x = tiny_data()
    epochs, max_steps = totals
    ref = _reference(kind, x, epochs, max_steps, device="cuda")
    _first_half(kind, x, n, epochs, tmp_path / "c.pt", device="cuda")
    assert load_checkpoint(tmp_path / "c.pt")["rng"]["cuda"]  # the CUDA generator's state is in the file
    job = {"kind": kind, "data": None, "ckpt": str(tmp_path / "c.pt"), "out": str(tmp_path / "out.pt"),
           "epochs": epochs, "max_steps": max_steps, "device": "cuda"}
    _run_child([job], tmp_path, timeout=300)
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    assert got["losses"].is_cuda and got["losses"].shape[0] == max_steps - n
    _assert_same(ref["losses"][n:], got["losses"], "losses")
    for key in ("progress", "history", "generator", "discriminator", "g_optimizer", "d_optimizer", "ema",
                "next_noise"):
        _assert_same(ref[key], got[key], key)


@pytest.mark.mnist
def test_reference_models_resume_exactly_on_real_mnist(mnist_dir, tmp_path):
    """The recipe's networks (1.5M parameters each, Dropout 0.3) on 512 real digits: 4 batches an epoch."""
    x = data.mnist(mnist_dir)[:512].clone()
    torch.save(x, tmp_path / "x.pt")
    ref = _reference("mnist", x, 2, 6)
    _first_half("mnist", x, 3, 2, tmp_path / "m.pt")
    job = {"kind": "mnist", "data": str(tmp_path / "x.pt"), "ckpt": str(tmp_path / "m.pt"),
           "out": str(tmp_path / "out.pt"), "epochs": 2, "max_steps": 6}
    _run_child([job], tmp_path, timeout=300)
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    assert got["losses"].shape[0] == 3
    _assert_same(ref["losses"][3:], got["losses"], "losses")
    for key in ("progress", "history", "generator", "discriminator", "g_optimizer", "d_optimizer", "next_noise"):
        _assert_same(ref[key], got[key], key)
