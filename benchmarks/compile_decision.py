"""The numbers behind issue #16's decisions: layer choices and the compiled step, interleaved with the tutorial.

Run from the repository root (CPU; a few minutes, plus compilation the first time)::

    .venv/bin/python -m benchmarks.compile_decision [--batch 128] [--turns 12] [--steps 3] \\
        [--variants onednn,nn_mask,nn,compiled] [--threads N] [--json out.json]

Each variant is a step object on the reference models (no trainer, no data loading):

- ``nn``: ``GANStep`` with ``nn.Linear``/``nn.Dropout``;
- ``nn_mask``: ``GANStep`` with ``nn.Linear``/``MaskDropout`` (the builders' default);
- ``onednn``: ``nn_mask`` with the opt-in oneDNN ``Linear`` (``layers.use_onednn_linear``);
- ``compiled``: ``CompiledGANStep`` on the default models;
- a ``+bf16`` suffix adds ``amp="bf16"``.

Every variant first runs one step, timed (its compilation for ``compiled``), then three
warm-up steps; then ``turns`` rounds of ``steps`` steps each, every variant once a turn in
shuffled order. Printed per variant: the median ms a step, the median of the per-turn
ratios to the tutorial's round (``benchmarks.reference_loop``), their quartiles, and the
first step's time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from torchgan_lite.losses import adversarial as losses
from torchgan_lite.nets import layers
from torchgan_lite.nets import mlp as models
from torchgan_lite.training.compiled import CompiledGANStep
from torchgan_lite.training.step import GANStep

from .reference_loop import ReferenceLoop

__all__ = ["main", "make_step"]


def make_step(name: str) -> GANStep:
    """The step of variant ``name`` (see the module docstring), seeded."""
    amp = "bf16" if name.endswith("+bf16") else None
    base = name.removesuffix("+bf16")
    if base not in ("nn", "nn_mask", "onednn", "compiled"):
        raise ValueError(f"unknown variant {name!r}; expected nn, nn_mask, onednn or compiled (optionally +bf16)")
    torch.manual_seed(0)
    mask = base != "nn"
    g, d = models.mlp_generator(fast_layers=mask), models.mlp_discriminator(fast_layers=mask)
    if base == "onednn":
        layers.use_onednn_linear(g)
        layers.use_onednn_linear(d)
    cls = CompiledGANStep if base == "compiled" else GANStep
    g_opt = torch.optim.Adam(g.parameters(), lr=2e-4, fused=True)
    d_opt = torch.optim.Adam(d.parameters(), lr=2e-4, fused=True)
    return cls(g, d, losses.NonSaturatingLoss(), g_opt, d_opt, latent_dim=100, amp=amp)


class _Tutorial:
    def __init__(self) -> None:
        torch.manual_seed(0)
        self.loop = ReferenceLoop.create("cpu")

    def step(self, real: torch.Tensor) -> float:
        return self.loop.step(real)[1]  # reads the losses, as the tutorial does


def _read(out: Any) -> float:
    return out if isinstance(out, float) else float(out.g_loss)


def main(argv: list[str] | None = None) -> None:
    """Print the interleaved table (and write it as JSON)."""
    p = argparse.ArgumentParser(description="layer choices and the compiled step against the tutorial, interleaved")
    p.add_argument("--batch", type=int, default=128, help="images per step (default 128)")
    p.add_argument("--turns", type=int, default=12, help="rounds of every variant, in shuffled order (default 12)")
    p.add_argument("--steps", type=int, default=3, help="steps per round (default 3)")
    p.add_argument("--variants", default="onednn,nn_mask,nn,compiled",
                   help="comma-separated: nn, nn_mask, onednn, compiled, each optionally +bf16")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default 0: torch's own choice)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here (JSON)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    batches = [torch.rand(a.batch, 1, 28, 28) * 2 - 1 for _ in range(4)]  # (B, 1, 28, 28) each
    names = ["tutorial", *a.variants.split(",")]
    runners: dict[str, Any] = {}
    first_s: dict[str, float] = {}
    for n in names:
        r = _Tutorial() if n == "tutorial" else make_step(n)
        t0 = time.perf_counter()
        _read(r.step(batches[0]))
        first_s[n] = time.perf_counter() - t0
        for i in range(3):
            r.step(batches[i])
        runners[n] = r
    times: dict[str, list[float]] = {n: [] for n in names}
    order = random.Random(0)
    for _ in range(a.turns):
        turn = names[:]
        order.shuffle(turn)
        for n in turn:
            t0 = time.perf_counter()
            for i in range(a.steps):
                out = runners[n].step(batches[i % 4])
            _read(out)
            times[n].append((time.perf_counter() - t0) / a.steps)
    load = os.getloadavg()[0]
    print(f"batch {a.batch}, {a.turns} turns x {a.steps} steps, {torch.get_num_threads()} threads, load {load:.1f}")
    print("| variant | ms/step (median) | x tutorial (median per-turn) | quartiles | first step (s) |")
    print("|---|---:|---:|---|---:|")
    res = {}
    for n in names:
        ratios = [b / x for b, x in zip(times["tutorial"], times[n])]
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        res[n] = {"ms": statistics.median(times[n]) * 1e3, "ratio": statistics.median(ratios), "q1": q1, "q3": q3,
                  "first_s": first_s[n]}
        print(f"| {n} | {res[n]['ms']:.1f} | {res[n]['ratio']:.2f}x | {q1:.2f}-{q3:.2f} | {first_s[n]:.1f} |")
    if a.json is not None:
        a.json.write_text(json.dumps({"batch": a.batch, "load": load, "threads": torch.get_num_threads(),
                                      "res": res}, indent=1) + "\n")


if __name__ == "__main__":
    main()
