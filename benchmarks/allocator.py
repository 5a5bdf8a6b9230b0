"""What glibc's malloc settings cost a CPU step: processes with and without ``retain_freed_memory``, alternated.

Run from the repository root (CPU, about 4 minutes with the defaults)::

    .venv/bin/python -m benchmarks.allocator [--rounds 6] [--turns 4] [--steps 3] \\
        [--variants baseline,default,two_calls] [--json out.json]

The setting is process-wide, so it cannot be compared inside one process. Each round starts two
child processes one after the other, in a fresh random order: ``plain`` (glibc as it comes) and
``retain`` (:func:`torchgan_lite.retain_freed_memory` called first, as ``torchgan-lite-train`` does).
Each child runs :func:`benchmarks.interleaved.interleaved_ratios` over ``--variants`` (the tutorial's
loop first) and reports every variant's median ms/step, its in-process ratio to the tutorial, and
the minor page faults per step of each variant's own rounds. The table gives, per setting and
variant, the median over rounds; and, per library variant, **the tutorial as a user runs it**
(a ``plain`` process) over **the library as the CLI runs it** (a ``retain`` process) of the same
round: the two processes ran back to back, so slow drift of the machine cancels out of each ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from .floor import machine_info, machine_line
from .interleaved import interleaved_ratios
from .variants import BASELINE

__all__ = ["SETTINGS", "child", "main"]

SETTINGS = ("plain", "retain")


def child(setting: str, names: list[str], turns: int, steps: int, batch: int, seed: int) -> dict[str, Any]:
    """One process's figures: per variant, median ms/step, ratio to the tutorial, page faults per step."""
    applied = None
    if setting == "retain":
        from torchgan_lite import retain_freed_memory

        applied = retain_freed_memory()
    figures = interleaved_ratios(names, batch=batch, turns=turns, steps=steps, seed=seed)
    return {"setting": setting, "applied": applied,
            "variants": {n: {k: f[k] for k in ("ms_per_step", "ratio", "faults_per_step")} for n, f in figures.items()}}


def _run_child(setting: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.allocator", "--child", setting, "--variants", args.variants,
           "--turns", str(args.turns), "--steps", str(args.steps), "--batch", str(args.batch), "--seed", str(seed)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _quartiles(xs: list[float]) -> tuple[float, float]:
    if len(xs) < 2:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=4)
    return q[0], q[2]


def main(argv: list[str] | None = None) -> None:
    """Command line; see the module docstring."""
    p = argparse.ArgumentParser(description="step speed with and without retain_freed_memory, alternated processes")
    p.add_argument("--rounds", type=int, default=6, help="rounds of one plain and one retain process (default 6)")
    p.add_argument("--turns", type=int, default=4, help="interleaved turns inside each process (default 4)")
    p.add_argument("--steps", type=int, default=3, help="steps per variant per turn (default 3)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--variants", default="baseline,default,two_calls", help="the tutorial's loop first")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--child", choices=SETTINGS, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.variants.split(",")
    if names[0] != BASELINE:
        p.error(f"--variants must start with {BASELINE}")
    if args.child is not None:
        print(json.dumps(child(args.child, names, args.turns, args.steps, args.batch, args.seed)))
        return
    print(machine_line(machine_info("cpu")))
    rng = random.Random(args.seed)
    rounds: list[dict[str, dict[str, Any]]] = []
    for i in range(args.rounds):
        order = list(SETTINGS)
        rng.shuffle(order)
        rounds.append({s: _run_child(s, args, args.seed + i) for s in order})
        print(f"round {i + 1}/{args.rounds} done", file=sys.stderr)
    print("\n| setting | variant | ms/step (median over rounds) | x tutorial, same process | page faults / step |")
    print("|---|---|---:|---:|---:|")
    for s in SETTINGS:
        for n in names:
            v = [r[s]["variants"][n] for r in rounds]
            print(f"| {s} | {n} | {statistics.median(x['ms_per_step'] for x in v):.1f} | "
                  f"{statistics.median(x['ratio'] for x in v):.2f}x | "
                  f"{statistics.median(x['faults_per_step'] for x in v):.0f} |")
    print("\n| library variant (retain process) | tutorial (plain process) / library, per round: median | quartiles |")
    print("|---|---:|---|")
    cross: dict[str, list[float]] = {}
    for n in names[1:]:
        cross[n] = [r["plain"]["variants"][BASELINE]["ms_per_step"] / r["retain"]["variants"][n]["ms_per_step"]
                    for r in rounds]
        q1, q3 = _quartiles(cross[n])
        print(f"| {n} | {statistics.median(cross[n]):.2f}x | {q1:.2f}-{q3:.2f} |")
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine_info("cpu"), "args": vars(args) | {"json": str(args.json)},
                                         "rounds": rounds, "cross": cross}, indent=1, default=str))


if __name__ == "__main__":
    main()
