"""Where a steady training step spends its CPU time, operator by operator: tutorial, default, compiled.

Run from the repository root (CPU, a minute plus compilation)::

    .venv/bin/python -m benchmarks.profile_step [--batch 128] [--bf16]

For each of the tutorial's loop, the default ``GANStep`` and ``CompiledGANStep`` on the
reference models: three warm-up steps, then ``torch.profiler`` over ten steps, printed as
the operators with the most self CPU time. In the compiled step, ``## Call CompiledFxGraph``
rows are Inductor's generated code (its fused elementwise loops) and the products it calls
appear as ``aten::mm``/``aten::addmm``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from torchgan_lite.losses import adversarial as losses
from torchgan_lite.nets import mlp as models
from torchgan_lite.training.compiled import CompiledGANStep
from torchgan_lite.training.step import GANStep

from .reference_loop import ReferenceLoop

__all__ = ["main"]


def _step(cls: type[GANStep], amp: str | None) -> GANStep:
    torch.manual_seed(0)
    g, d = models.mlp_generator(), models.mlp_discriminator()
    return cls(g, d, losses.NonSaturatingLoss(), torch.optim.Adam(g.parameters(), lr=2e-4, fused=True),
               torch.optim.Adam(d.parameters(), lr=2e-4, fused=True), latent_dim=100, amp=amp)


def main(argv: list[str] | None = None) -> None:
    """Print one profiler table per step implementation."""
    p = argparse.ArgumentParser(description="profiler tables of one steady step")
    p.add_argument("--batch", type=int, default=128, help="images per step (default 128)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the library's steps")
    p.add_argument("--rows", type=int, default=14, help="operators shown per table (default 14)")
    a = p.parse_args(argv)
    amp = "bf16" if a.bf16 else None
    real = torch.rand(a.batch, 1, 28, 28) * 2 - 1  # (B, 1, 28, 28)
    loop = ReferenceLoop.create("cpu")
    default, compiled = _step(GANStep, amp), _step(CompiledGANStep, amp)
    runs: dict[str, Callable[[], object]] = {
        "tutorial": lambda: loop.step(real),
        "default": lambda: float(default.step(real).g_loss),
        "compiled": lambda: float(compiled.step(real).g_loss),
    }
    for name, fn in runs.items():
        for _ in range(3):
            fn()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(10):
                fn()
        print(f"\n### {name} (batch {a.batch}, amp {amp}, {torch.get_num_threads()} threads): self CPU time, 10 steps")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.rows, max_name_column_width=60))


if __name__ == "__main__":
    main()
