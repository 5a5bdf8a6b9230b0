"""A long run in constant memory: 5,000 steps on the CPU, checkpoints included.

After a warm-up, the process's resident memory (``VmRSS``) may not grow by more
than a small bound, the number of live tensors may not grow, and the trainer's
state keeps no tensors but the last step's four values: history entries are plain
floats, so nothing accumulates on the device.
"""

from __future__ import annotations

import dataclasses
import gc
import math
from pathlib import Path

import pytest
import torch

from torchgan_lite import Event, GANTrainer, TensorLoader, seed_everything
from torchgan_lite.callbacks import checkpoint
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.nets import mlp as models

from .resume_child import single_thread

STEPS = 5_000
WARMUP = 500
RSS_BOUND_MB = 20.0


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # kB
    raise AssertionError("no VmRSS in /proc/self/status")


def _live_tensors() -> int:
    gc.collect()
    # type(), not isinstance(): the latter reads __class__, which warns on torch.distributed's deprecated proxies
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmRSS is read from /proc (Linux)")
def test_five_thousand_steps_in_constant_memory(tmp_path):
    with single_thread():
        seed_everything(0)
        g = models.mlp_generator(latent_dim=8, hidden=(16,), out_shape=(1, 4, 4))
        d = models.mlp_discriminator(in_shape=(1, 4, 4), hidden=(16,), dropout=0.3)
        seed_everything(0)
        trainer = GANTrainer(g, d, losses.NonSaturatingLoss())
        x = torch.rand(64, 1, 4, 4) * 2 - 1
        loader = TensorLoader(x, batch_size=8)  # 8 steps an epoch: 625 epochs, 625 history entries
        checkpoint.ModelCheckpoint(tmp_path / "c.pt", every=125, keep_last=2).attach(trainer)  # every 1,000 steps
        reads: list[float] = []
        trainer.add_callback(Event.STEP_END, lambda t: reads.append(t.state.last.as_dict()["d_loss"])
                             if t.state.step % 1000 == 0 else None)

        trainer.fit(loader, epochs=10**6, max_steps=WARMUP)
        rss0, tensors0 = _rss_mb(), _live_tensors()
        state = trainer.fit(loader, epochs=10**6, max_steps=STEPS)
        rss1, tensors1 = _rss_mb(), _live_tensors()

    assert state.step == STEPS and state.epoch == STEPS // 8 and len(state.history) == STEPS // 8
    assert len(reads) == STEPS // 1000 and all(math.isfinite(v) for v in reads)
    assert rss1 - rss0 < RSS_BOUND_MB, f"RSS grew by {rss1 - rss0:.1f} MB over {STEPS - WARMUP} steps"
    assert tensors1 - tensors0 <= 8, f"{tensors1 - tensors0} more live tensors after {STEPS - WARMUP} steps"
    # No tensor kept in the state but the last step's four 0-d values.
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        if f.name == "last":
            assert all(t.dim() == 0 for t in (value.d_loss, value.g_loss, value.d_real, value.d_fake))
        elif f.name == "history":
            assert all(type(getattr(h, k.name)) in (int, float) for h in value for k in dataclasses.fields(h))
        else:
            assert not isinstance(value, torch.Tensor), f.name
            if isinstance(value, dict):
                assert not any(isinstance(v, torch.Tensor) for v in value.values()), f.name
    assert trainer.state_dict()["trainer"]["epoch_sums"].shape == (5,)
    # The checkpoints written along the way are whole, and the newest is the final state.
    trainer2 = GANTrainer(models.mlp_generator(latent_dim=8, hidden=(16,), out_shape=(1, 4, 4)),
                          models.mlp_discriminator(in_shape=(1, 4, 4), hidden=(16,), dropout=0.3),
                          losses.NonSaturatingLoss())
    trainer2.load_checkpoint(tmp_path / "c.pt")
    assert trainer2.state.step == STEPS and len(trainer2.state.history) == STEPS // 8
    assert all(torch.equal(a, b) for a, b in zip(trainer.generator.parameters(), trainer2.generator.parameters()))
