"""Markdown tables from recipes_ablation.py's JSON lines: every row, and each recipe's mean over seeds.

    python benchmarks/recipes_table.py benchmarks/results/recipes_long/*.jsonl
    python benchmarks/recipes_table.py --summary --epochs 20 benchmarks/results/recipes_long/*.jsonl

Without ``--summary``: one table row per (config, seed, epochs, weights), sorted. With it:
per (config, epochs, weights), the mean of FD and KID over the seeds measured, the smallest
and largest, and how many seeds; a config measured on one seed shows that seed's figure alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

COLUMNS = (("fd", "FD ↓", 1), ("kid_mean", "KID ↓", 1), ("classifier_score", "classifier score ↑", 2),
           ("coverage_kl", "coverage KL ↓", 3), ("classes_at_1pct", "classes ≥ 1 %", 0),
           ("precision", "precision", 3), ("recall", "recall", 3))


def read(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def table(rows: list[dict]) -> str:
    head = "| recipe | epochs | seed | weights | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    lines = [head, "|---|---:|---:|---|" + "---:|" * len(COLUMNS)]
    for r in sorted(rows, key=lambda r: (r["config"], r["epochs"], r["seed"], r["weights"])):
        cells = " | ".join(_fmt(r[key], digits) for key, _, digits in COLUMNS)
        lines.append(f"| {r['config']} | {r['epochs']} | {r['seed']} | {r['weights']} | {cells} |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["config"], r["epochs"], r["weights"])].append(r)
    lines = ["| recipe | epochs | weights | seeds | FD ↓ mean (min-max) | KID ↓ mean (min-max) |",
             "|---|---:|---|---:|---:|---:|"]
    for (config, epochs, weights), group in sorted(groups.items()):
        cells = []
        for key in ("fd", "kid_mean"):
            values = [r[key] for r in group]
            mean = statistics.fmean(values)
            cells.append(f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ({min(values):.1f}-{max(values):.1f})")
        seeds = ",".join(str(s) for s in sorted({r["seed"] for r in group}))
        lines.append(f"| {config} | {epochs} | {weights} | {seeds} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="JSON-lines files written by recipes_ablation.py")
    p.add_argument("--summary", action="store_true", help="mean and range over seeds instead of every row")
    p.add_argument("--epochs", type=int, action="append", default=None, help="only this scored epoch (repeatable)")
    args = p.parse_args(argv)
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = read(args.files)
    if args.epochs:
        rows = [r for r in rows if r["epochs"] in args.epochs]
    print(summary(rows) if args.summary else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
