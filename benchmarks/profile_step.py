"""Where a steady training step spends its CPU time, operator by operator, per benchmark variant.

Run from the repository root (CPU, a minute plus compilation)::

    .venv/bin/python -m benchmarks.profile_step [--batch 128] [--variants baseline,default,compiled] \\
        [--bf16] [--steps 10] [--rows 14] [--json out.json]

Each variant is a runner of :mod:`benchmarks.harness` (``step_runner``: the tutorial's loop for
``baseline``, ``GANTrainer.train_step`` for the library's variants of :mod:`benchmarks.variants`),
on four synthetic device-resident batches. Three warm-up steps (a compiled variant compiles
there), then ``torch.profiler`` over ``--steps`` steps, reduced to the operators with the most
self CPU time: milliseconds and calls per step, and each one's share of all the self CPU time
the profiler saw. ``--bf16`` swaps every library variant for its ``+bf16`` twin where one
exists. In a compiled step, ``## Call CompiledFxGraph`` rows are Inductor's generated code (its
fused elementwise loops) and the products it calls appear as ``aten::mm``/``aten::addmm``.

:func:`operator_shares` is what :mod:`benchmarks.floor` prints beside each variant's floor.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from .harness import Runner, device_name, step_runner, synthetic_batches
from .variants import VARIANTS, variant_by_name

__all__ = ["OperatorShare", "format_shares", "main", "operator_shares", "profile_variants"]


@dataclass(frozen=True)
class OperatorShare:
    """One operator's self CPU time in a profiled step.

    Attributes:
        name: The profiler's key (``aten::mm``, ``## Call CompiledFxGraph ...``).
        ms_per_step: Self CPU milliseconds per step.
        calls_per_step: Calls per step.
        share: Its fraction of all self CPU time the profiler recorded (0 to 1).
    """

    name: str
    ms_per_step: float
    calls_per_step: float
    share: float


def operator_shares(step: Callable[[], object], steps: int = 10, rows: int = 14,
                    warmup: int = 3) -> tuple[list[OperatorShare], float]:
    """Profile ``steps`` calls of ``step`` (after ``warmup`` unprofiled ones) on the CPU.

    Args:
        step: One training step (it should end with whatever read or sync the benchmarks time).
        steps: Profiled calls.
        rows: Operators returned, the most self CPU time first.
        warmup: Calls before the profiler starts (optimizer state, compilation).

    Returns:
        ``(top operators, total self CPU ms per step)``; the shares are of that total.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    for _ in range(warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = list(prof.key_averages())
    total_us = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    top = [OperatorShare(e.key, e.self_cpu_time_total / steps / 1e3, e.count / steps,
                         e.self_cpu_time_total / total_us if total_us > 0 else 0.0) for e in events[:rows]]
    return top, total_us / steps / 1e3


def format_shares(title: str, top: Sequence[OperatorShare], total_ms: float) -> str:
    """``top`` as a Markdown table under ``title``, with the step's total self CPU time."""
    lines = [f"{title}: {total_ms:.1f} ms self CPU per step", "",
             "| operator | ms/step | calls/step | share |", "|---|---:|---:|---:|"]
    for s in top:
        name = s.name if len(s.name) <= 70 else s.name[:67] + "..."
        lines.append(f"| `{name}` | {s.ms_per_step:.2f} | {s.calls_per_step:g} | {100 * s.share:.1f}% |")
    return "\n".join(lines)


def _one_step(runner: Runner) -> Callable[[], object]:
    return lambda: runner.run(1)


def profile_variants(names: Sequence[str], batch: int = 128, steps: int = 10, rows: int = 14,
                     device: str = "cpu") -> dict[str, dict[str, Any]]:
    """:func:`operator_shares` of each variant's steady step; ``{name: {"total_ms": ..., "top": [...]}}``."""
    batches = synthetic_batches(batch, device)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        variant = variant_by_name(name)
        reason = variant.skip_reason(device)
        if reason is not None:
            raise ValueError(f"cannot profile {name} on {device}: {reason}")
        torch.manual_seed(0)
        top, total = operator_shares(_one_step(step_runner(variant, device, batches)), steps=steps, rows=rows)
        out[name] = {"total_ms": total, "top": [asdict(s) for s in top]}
    return out


def _with_bf16(name: str) -> str:
    twin = f"{name}+bf16"
    known = {v.name for v in VARIANTS}
    return twin if twin in known and not name.endswith("+bf16") else name


def main(argv: list[str] | None = None) -> None:
    """Print one operator table per variant (and write them as JSON)."""
    p = argparse.ArgumentParser(description="profiler tables of one steady step, per variant")
    p.add_argument("--batch", type=int, default=128, help="images per step (default 128)")
    p.add_argument("--variants", default="baseline,default,compiled",
                   help="comma-separated names from benchmarks/variants.py (default baseline,default,compiled)")
    p.add_argument("--bf16", action="store_true", help="each library variant's +bf16 twin where there is one")
    p.add_argument("--steps", type=int, default=10, help="profiled steps per variant (default 10)")
    p.add_argument("--rows", type=int, default=14, help="operators shown per table (default 14)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default 0: torch's own choice)")
    p.add_argument("--json", type=Path, default=None, help="also write the tables here (JSON)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    names = [n for n in a.variants.split(",") if n]
    if a.bf16:
        names = [_with_bf16(n) for n in names]
    tables = profile_variants(names, batch=a.batch, steps=a.steps, rows=a.rows)
    print(f"{device_name('cpu')}, torch {torch.__version__}, batch {a.batch}, {a.steps} profiled steps")
    for name, t in tables.items():
        print()
        print(format_shares(f"### {name}", [OperatorShare(**s) for s in t["top"]], t["total_ms"]))
    if a.json is not None:
        a.json.write_text(json.dumps({"device": device_name("cpu"), "torch": torch.__version__, "batch": a.batch,
                                      "steps": a.steps, "tables": tables}, indent=1) + "\n")


if __name__ == "__main__":
    main()
