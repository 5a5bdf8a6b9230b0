"""Builders shared by the resume tests, and the script that resumes runs in a *new* process.

``python tests/resume_child.py JOBS.json`` reads a list of jobs, each
``{"kind", "data", "ckpt", "out", "epochs", "max_steps", "threads", "device"}``; for each it builds the
trainer exactly as :func:`build` does in the test process, loads the checkpoint,
fits to the given totals while recording every step's losses, and ``torch.save``s a
:func:`snapshot` to ``out``. The test compares that, bitwise, with an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from torchgan_lite import Event, GANTrainer, StepConfig, TensorLoader, seed_everything  # noqa: E402
from torchgan_lite.losses import adversarial as losses  # noqa: E402
from torchgan_lite.losses import penalties  # noqa: E402
from torchgan_lite.nets import mlp as models  # noqa: E402
from torchgan_lite.training.fused import FusedDiscriminatorStep  # noqa: E402

__all__ = ["KINDS", "WeightAverage", "build", "fit_recording", "single_thread", "snapshot", "tiny_data"]

KINDS = ("tiny", "wgan", "perf", "mnist")


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, then restore the count.

    The tests' models are tiny: a second thread buys nothing, and on a busy 2-core
    machine OpenMP's spinning threads make each step many times slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class WeightAverage:
    """A minimal EMA of the generator's weights, registered with ``trainer.register_state``.

    Stands in for any extra state (an EMA, a callback's counters) that a checkpoint must carry.
    """

    def __init__(self, trainer: GANTrainer, decay: float = 0.9) -> None:
        self.decay = decay
        self.average = {k: v.detach().clone() for k, v in trainer.generator.state_dict().items()}
        self.updates = 0
        trainer.add_callback(Event.STEP_END, self.update)
        trainer.register_state("weight_average", self)

    def update(self, trainer: GANTrainer) -> None:
        with torch.no_grad():
            for k, v in trainer.generator.state_dict().items():
                self.average[k].lerp_(v, 1 - self.decay)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"average": {k: v.clone() for k, v in self.average.items()}, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state["average"].items():
            self.average[k].copy_(v)
        self.updates = int(state["updates"])


def tiny_data(n: int = 40) -> torch.Tensor:
    """``(n, 1, 8, 8)`` synthetic images in [-1, 1], the same in every process."""
    gen = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 8, 8, generator=gen) * 2 - 1


def build(kind: str, data: torch.Tensor, device: str = "cpu") -> tuple[GANTrainer, TensorLoader, WeightAverage]:
    """The same trainer, loader and EMA in every process: seeded models, dropout on.

    ``tiny``: 16-d noise, one hidden layer of 64, Dropout(0.3), batches of 8.
    ``wgan``: the same models with WGAN-GP (n_critic=2, GradientPenalty draws random numbers).
    ``perf``: the fast layers (oneDNN ``Linear``, ``MaskDropout``), one fused D call, LSGAN with R1.
    ``tiny`` and ``wgan`` build D from ``nn.Linear``/``nn.Dropout`` (``fast_layers=False``).
    ``mnist``: the reference recipe's networks and batches of 128.
    ``device``: where the models and the data live (the tests use "cpu", and "cuda" where there is one).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    seed_everything(0)
    if kind == "mnist":
        g, d = models.mlp_generator(), models.mlp_discriminator()
        seed_everything(0)
        trainer = GANTrainer(g, d, losses.NonSaturatingLoss(), device=device)
        batch = 128
    else:
        g = models.mlp_generator(latent_dim=16, hidden=(64,), out_shape=(1, 8, 8))
        d = models.mlp_discriminator(in_shape=(1, 8, 8), hidden=(64,), dropout=0.3, fast_layers=kind == "perf")
        seed_everything(0)
        if kind == "perf":
            trainer = GANTrainer(g, d, losses.LeastSquaresLoss(),
                                 step=StepConfig(regularizers=[penalties.R1Penalty(1.0)],
                                                 implementation=FusedDiscriminatorStep), device=device)
        elif kind == "wgan":
            trainer = GANTrainer(g, d, losses.WassersteinLoss(),
                                 step=StepConfig(n_critic=2, regularizers=[penalties.GradientPenalty()]), device=device)
        else:
            seed_everything(0)
            trainer = GANTrainer(g, d, losses.NonSaturatingLoss(), device=device)
        batch = 8
    ema = WeightAverage(trainer)
    loader = TensorLoader(data.to(trainer.device), batch_size=batch)  # permutations seeded from torch's RNG
    return trainer, loader, ema


def fit_recording(trainer: GANTrainer, loader: TensorLoader, epochs: int, max_steps: int | None,
                  record: list[torch.Tensor]) -> None:
    """``trainer.fit`` that appends each step's ``(d_loss, g_loss, d_real, d_fake)`` to ``record``."""
    handle = trainer.add_callback(Event.STEP_END, lambda t: record.append(
        torch.stack([t.state.last.d_loss, t.state.last.g_loss, t.state.last.d_real, t.state.last.d_fake])))
    try:
        trainer.fit(loader, epochs=epochs, max_steps=max_steps)
    finally:
        handle.remove()


def snapshot(trainer: GANTrainer, ema: WeightAverage, record: list[torch.Tensor]) -> dict[str, Any]:
    """Everything the comparison looks at: weights, optimizer buffers, EMA, progress, losses."""
    st = trainer.state
    return {
        "generator": {k: v.clone() for k, v in trainer.generator.state_dict().items()},
        "discriminator": {k: v.clone() for k, v in trainer.discriminator.state_dict().items()},
        "g_optimizer": [t.clone() for s in trainer.gan_step.g_optimizer.state.values() for t in s.values()],
        "d_optimizer": [t.clone() for s in trainer.gan_step.d_optimizer.state.values() for t in s.values()],
        "ema": ema.state_dict(),
        "progress": [st.epoch, st.step, st.epoch_step],
        # Wall-time fields (seconds, steps_per_s) differ between processes by nature.
        "history": [[h.epoch, h.step, h.d_loss, h.g_loss, h.d_real, h.d_fake] for h in st.history],
        "losses": torch.stack(record) if record else torch.empty(0, 4),
        "next_noise": trainer.noise(4),  # the global RNG state after the run
    }


def main(jobs_file: str) -> None:
    jobs = json.loads(Path(jobs_file).read_text())
    for job in jobs:
        torch.set_num_threads(job["threads"])  # as in the test process: the same kernels, the same bits
        data = tiny_data() if job["data"] is None else torch.load(job["data"], weights_only=True)
        trainer, loader, ema = build(job["kind"], data, job.get("device", "cpu"))
        trainer.load_checkpoint(job["ckpt"])
        record: list[torch.Tensor] = []
        fit_recording(trainer, loader, job["epochs"], job["max_steps"], record)
        torch.save(snapshot(trainer, ema, record), job["out"])


if __name__ == "__main__":
    main(sys.argv[1])
