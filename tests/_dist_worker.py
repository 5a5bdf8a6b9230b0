"""One process of the data-parallel tests (tests/test_distributed.py runs it as a script).

The test launches W copies the way ``torchrun`` would: ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR=127.0.0.1`` and ``MASTER_PORT`` in the environment, so
``GANTrainer`` sets the process group up itself (``distributed.init_from_env``,
gloo on the CPU):

    python tests/_dist_worker.py dp OUT_DIR

The two 1-process scenarios run inside the test process itself (importing torch
costs seconds per process on a loaded 2-core machine). Each scenario writes
``.pt`` result files into ``OUT_DIR`` for the test to compare:

- :func:`scenario_single`: the 1-process reference, global batch 16: 3 steps, a
  mid-epoch checkpoint ``ckpt_1p_mid.pt``, then on to 2 epochs.
- :func:`scenario_dp`: the same run on W processes with per-rank batch 16 / W; a
  mid-epoch checkpoint ``ckpt_2p_mid.pt``; the same-size resume of it; the resume
  of ``ckpt_1p_mid.pt``; a dropout run from rank-dependent initial weights; a
  loader built before the process group existed; a NaN in rank 1's shard (each
  rank records what ``fit`` raised); last, ``ModelCheckpoint`` into node-local
  folders.
- :func:`scenario_single_resume`: a 1-process run resumed from ``ckpt_2p_mid.pt``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from torchgan_lite import GANTrainer, StepConfig, TensorLoader, seed_everything
from torchgan_lite.callbacks import checkpoint
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.nets import mlp as models
from torchgan_lite.utils.distributed import shutdown

__all__ = ["GLOBAL_BATCH", "LATENT", "MID_STEP", "N_ROWS", "SHAPE", "TOTAL_EPOCHS", "main", "scenario_dp",
           "scenario_single", "scenario_single_resume", "synthetic_images"]

LATENT = 16
SHAPE = (1, 8, 8)
N_ROWS = 96  # 6 global batches of 16 an epoch
GLOBAL_BATCH = 16
MID_STEP = 3  # the mid-epoch checkpoint
TOTAL_EPOCHS = 2  # 12 steps in all


def synthetic_images() -> torch.Tensor:
    """The same ``(96, 1, 8, 8)`` images in [-1, 1] on every rank, independent of any seed."""
    gen = torch.Generator().manual_seed(1)
    return torch.rand(N_ROWS, *SHAPE, generator=gen) * 2 - 1


def build(dropout: float, model_seed: int, distributed: bool | None = None,
          augment: torch.nn.Module | None = None) -> GANTrainer:
    seed_everything(model_seed)
    g = models.mlp_generator(latent_dim=LATENT, hidden=(64,), out_shape=SHAPE)
    d = models.mlp_discriminator(in_shape=SHAPE, hidden=(64,), dropout=dropout)
    return GANTrainer(g, d, losses.NonSaturatingLoss(), device="cpu", distributed=distributed,
                      step=StepConfig(augment=augment))


def weights(t: GANTrainer) -> dict[str, dict[str, torch.Tensor]]:
    return {"G": {k: v.detach().clone() for k, v in t.generator.state_dict().items()},
            "D": {k: v.detach().clone() for k, v in t.discriminator.state_dict().items()}}


def result(t: GANTrainer, **extra: Any) -> dict[str, Any]:
    return {**weights(t), "history": [asdict(h) for h in t.state.history], "step": t.state.step,
            "rank": t.rank, "world_size": t.world_size, **extra}


def scenario_single(out: Path, x: torch.Tensor) -> None:
    torch.save(ada_run(GLOBAL_BATCH), out / "result_ada_1p.pt")
    t = build(dropout=0.0, model_seed=0)
    loader = TensorLoader(x, batch_size=GLOBAL_BATCH)
    t.fit(loader, epochs=TOTAL_EPOCHS, max_steps=MID_STEP)
    t.save_checkpoint(out / "ckpt_1p_mid.pt")
    mid = weights(t)
    t.fit(loader, epochs=TOTAL_EPOCHS)
    torch.save(result(t, mid=mid), out / "result_1p.pt")


def resume(ckpt: Path, x: torch.Tensor, batch_size: int) -> GANTrainer:
    t = build(dropout=0.0, model_seed=123)  # other initial weights: the checkpoint wins
    loader = TensorLoader(x, batch_size=batch_size)  # before the load: building it draws from torch's RNG
    t.load_checkpoint(ckpt)
    t.fit(loader, epochs=TOTAL_EPOCHS)
    return t


def scenario_dp(out: Path, x: torch.Tensor) -> None:
    world = int(os.environ["WORLD_SIZE"])
    b = GLOBAL_BATCH // world
    early = TensorLoader(x, batch_size=b)  # built before any process group exists

    # The match run: dropout off, global batch 16 split over the ranks.
    t = build(dropout=0.0, model_seed=0)
    assert dist.is_initialized() and t.world_size == world, "GANTrainer did not set up the process group"
    r = t.rank
    loader = TensorLoader(x, batch_size=b)
    t.fit(loader, epochs=TOTAL_EPOCHS, max_steps=MID_STEP)
    t.save_checkpoint(out / "ckpt_2p_mid.pt")
    t.save_checkpoint(out / f"written_by_rank{r}.pt")
    mid = weights(t)
    t.fit(loader, epochs=TOTAL_EPOCHS)
    torch.save(result(t, mid=mid, loader_rank=loader.rank, loader_world=loader.world_size),
               out / f"result_2p_rank{r}.pt")
    dist.barrier()  # rank 0's checkpoint is on disk before anyone reads it

    torch.save(result(resume(out / "ckpt_2p_mid.pt", x, b)), out / f"result_2p_from2p_rank{r}.pt")
    torch.save(result(resume(out / "ckpt_1p_mid.pt", x, b)), out / f"result_2p_from1p_rank{r}.pt")

    # Dropout on, and initial weights that differ per rank until the trainer broadcasts rank 0's.
    seed_everything(100 + r)
    g = models.mlp_generator(latent_dim=LATENT, hidden=(64,), out_shape=SHAPE)
    d = models.mlp_discriminator(in_shape=SHAPE, hidden=(64,), dropout=0.3)
    before = {"G": {k: v.clone() for k, v in g.state_dict().items()},
              "D": {k: v.clone() for k, v in d.state_dict().items()}}
    t2 = GANTrainer(g, d, losses.NonSaturatingLoss(), device="cpu")
    start = weights(t2)
    seed_everything(7)
    t2.fit(TensorLoader(x, batch_size=b), epochs=1, max_steps=5)
    torch.save({"before": before, "start": start, "after": weights(t2)}, out / f"result_sync_rank{r}.pt")

    # A loader that saw no process group serves every rank the same batches: fit should refuse it.
    t3 = build(dropout=0.0, model_seed=0)
    try:
        t3.fit(early, epochs=1, max_steps=1)
        outcome = "trained"
    except ValueError as err:
        outcome = f"ValueError: {err}"
    torch.save({"outcome": outcome, "early_world": early.world_size}, out / f"result_early_rank{r}.pt")
    dist.barrier()

    # ADA: p moves by the sign of the global mean of sign(D(real)), the same on every rank.
    torch.save(ada_run(b), out / f"result_ada_rank{r}.pt")

    # Last, as it may leave the group broken: rank 1's shard of the first batch holds a NaN.
    bad = x.clone()
    bad[b, 0, 0, 0] = float("nan")  # first row of rank 1's shard of batch 0 (no shuffle)
    t4 = build(dropout=0.0, model_seed=0)
    try:
        t4.fit(TensorLoader(bad, batch_size=b, shuffle=False), epochs=1, max_steps=2)
        outcome = "finished"
    except Exception as err:  # recorded for the test: which error each rank saw
        outcome = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    torch.save({"outcome": outcome}, out / f"result_nan_rank{r}.pt")

    # Last of all: ModelCheckpoint writing to node-local folders (one per rank, as on nodes without a
    # shared disk). Rank 1's file never exists; every rank must still take part in the same saves.
    t5 = build(dropout=0.0, model_seed=0)
    checkpoint.ModelCheckpoint(out / f"node{r}" / "checkpoint.pt").attach(t5)
    try:
        t5.fit(TensorLoader(x, batch_size=b), epochs=1)
        outcome = "finished"
    except Exception as err:  # recorded for the test
        outcome = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    torch.save({"outcome": outcome, "step": t5.state.step}, out / f"result_nodelocal_rank{r}.pt")


class IdentityAugment(torch.nn.Module):
    """An augment that changes nothing, with the ``probability`` buffer ADA adjusts."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("probability", torch.tensor(0.5))
        self.last_batch_size = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last_batch_size = x.shape[0]
        return x


def ada_run(batch_size: int) -> dict[str, Any]:
    """12 steps with AdaptiveAugment on an identity augment: the p after every step (dropout off)."""
    from torchgan_lite.callbacks.ada import AdaptiveAugment
    from torchgan_lite.training.events import Event

    aug = IdentityAugment()
    t = build(dropout=0.0, model_seed=0, augment=aug)
    AdaptiveAugment(aug, target=0.0, interval=2, speed_images=1000).attach(t)
    ps: list[float] = []
    t.add_callback(Event.STEP_END, lambda tr: ps.append(float(aug.probability)))
    t.fit(TensorLoader(synthetic_images(), batch_size=batch_size), epochs=TOTAL_EPOCHS)
    return {"p": ps}


def scenario_single_resume(out: Path, x: torch.Tensor) -> None:
    torch.save(result(resume(out / "ckpt_2p_mid.pt", x, GLOBAL_BATCH)), out / "result_1p_from2p.pt")


def main(argv: list[str]) -> int:
    scenario, out = argv[0], Path(argv[1])
    if scenario != "dp":
        raise ValueError(f"scenario must be 'dp' (the others run in the test process), got {scenario!r}")
    torch.set_num_threads(1)
    try:
        scenario_dp(out, synthetic_images())
    finally:
        shutdown()  # a gloo process that exits with its group alive can abort (-6)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
