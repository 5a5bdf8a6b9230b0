"""Step-rate ratios to the baseline from interleaved rounds: a cross-check for noisy machines.

The pytest-benchmark cases time one variant after another, so a machine whose speed
drifts (a shared VM) moves whole cases and their ratios. Here every variant runs one
short round in turn, in a fresh random order each time, and each round's time is
divided into the baseline's round of the same turn; the median of those per-turn
ratios, with its quartiles, is what is printed. Slow drift cancels out of each ratio.

Run from the repository root (CPU, about 4 minutes with the defaults)::

    .venv/bin/python -m benchmarks.interleaved [--batch 128] [--turns 20] [--steps 5] \\
        [--variants baseline,default,compiled] [--json out.json]

The step is timed as in ``test_step.py``: four synthetic device-resident batches, the
baseline's ``ReferenceLoop.step``, the library's ``trainer.train_step``, one read of a
loss at the end of each round. The warm-up steps (3 by default) are timed apart: a
compiled variant compiles in them, and the table shows that time beside its steady rate.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import time
from pathlib import Path

import torch

from .harness import device_name, step_runner, synthetic_batches
from .variants import BASELINE, VARIANTS, variant_by_name

__all__ = ["interleaved_ratios", "main"]


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def interleaved_ratios(names: list[str], batch: int = 128, turns: int = 20, steps: int = 5, warmup: int = 3,
                       device: str = "cpu", seed: int = 0) -> dict[str, dict[str, float]]:
    """Time ``names`` (the baseline first) in interleaved rounds; per variant, its figures.

    Returns:
        ``{name: {"ms_per_step": median, "ratio": median per-turn ratio to the baseline,
        "ratio_q1": ..., "ratio_q3": ..., "warmup_s": the warm-up steps' time (a compiled
        step's compilation is in it, not in the turns), "faults_per_step": the process's minor
        page faults during the variant's timed rounds, per step}}``.
    """
    if not names or names[0] != BASELINE:
        raise ValueError(f"names must start with {BASELINE!r}, got {names!r}")
    if turns < 2:
        raise ValueError(f"turns must be >= 2, got {turns}")
    batches = synthetic_batches(batch, device)
    runners = {}
    warmup_s: dict[str, float] = {}
    for name in names:
        variant = variant_by_name(name)
        reason = variant.skip_reason(device)
        if reason is not None:
            raise ValueError(f"cannot run {name} on {device}: {reason}")
        runners[name] = step_runner(variant, device, batches)
        t0 = time.perf_counter()
        runners[name].run(warmup)  # a compiled step compiles here: timed apart from the turns
        warmup_s[name] = time.perf_counter() - t0
    order = random.Random(seed)
    times: dict[str, list[float]] = {name: [] for name in names}
    faults: dict[str, int] = dict.fromkeys(names, 0)
    for _ in range(turns):
        turn = names[:]
        order.shuffle(turn)
        for name in turn:
            f0 = _minor_faults()
            t0 = time.perf_counter()
            runners[name].run(steps)
            times[name].append((time.perf_counter() - t0) / steps)
            faults[name] += _minor_faults() - f0
    out: dict[str, dict[str, float]] = {}
    for name in names:
        ratios = [b / t for b, t in zip(times[BASELINE], times[name])]
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        out[name] = {"ms_per_step": statistics.median(times[name]) * 1e3, "ratio": statistics.median(ratios),
                     "ratio_q1": q1, "ratio_q3": q3, "warmup_s": warmup_s[name],
                     "faults_per_step": faults[name] / (turns * steps)}
    return out


def main(argv: list[str] | None = None) -> None:
    """Print the interleaved ratios as a Markdown table."""
    default = [v.name for v in VARIANTS if v.skip_reason("cpu") is None and not v.name.startswith("graph")]
    parser = argparse.ArgumentParser(description="step-rate ratios from interleaved rounds")
    parser.add_argument("--batch", type=int, default=128, help="images per step (default 128)")
    parser.add_argument("--turns", type=int, default=20, help="rounds of every variant, in shuffled order (default 20)")
    parser.add_argument("--steps", type=int, default=5, help="steps per round (default 5)")
    parser.add_argument("--variants", default=",".join(default),
                        help="comma-separated, the baseline first (default: every CPU variant)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here (JSON)")
    args = parser.parse_args(argv)
    names = args.variants.split(",")
    figures = interleaved_ratios(names, batch=args.batch, turns=args.turns, steps=args.steps)
    header = (f"{device_name('cpu')}, torch {torch.__version__}, batch {args.batch}, "
              f"{args.turns} turns of {args.steps} steps")
    print(header)
    print()
    print("| variant | ms/step (median) | x baseline (median of per-turn ratios) | quartiles | warm-up (s) |")
    print("|---|---:|---:|---|---:|")
    for name, f in figures.items():
        print(f"| {name} | {f['ms_per_step']:.1f} | {f['ratio']:.2f}x | {f['ratio_q1']:.2f}-{f['ratio_q3']:.2f} "
              f"| {f['warmup_s']:.1f} |")
    if args.json is not None:
        args.json.write_text(json.dumps({"setup": header, "figures": figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
