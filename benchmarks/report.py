"""Print the benchmarks' Markdown table from pytest-benchmark JSON files.

Usage (from the repository root)::

    .venv/bin/python benchmarks/report.py benchmarks/results/cpu.json [more.json ...]

One row per case: benchmark (step or end to end), device, batch, variant, steps/s,
images/s, the ratio of its step rate to the baseline's (same benchmark, device and
batch), milliseconds per step, peak memory, peak memory relative to the library's
plain path, and (step cases) the median ratio from rounds run alternately with the
baseline's, which a machine's drift between cases does not move. The rates come from
``extra_info`` (``steps_per_s = steps per round / median round time``), which the
harness writes. Under the table: the devices and
versions, and every fast variant whose peak memory exceeds the plain path's.

The file runs as a script and imports nothing from the project, so it can read
results copied from another machine.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

__all__ = ["Row", "add_ratios", "compile_lines", "load_rows", "main", "markdown_table", "memory_warnings"]

BASELINE = "baseline"
PLAIN = "plain"
KIND_ORDER = {"step": 0, "end_to_end": 1}
KIND_LABEL = {"step": "step", "end_to_end": "end to end"}
DEVICE_ORDER = {"cpu": 0, "cuda": 1}


@dataclass(frozen=True)
class Row:
    """One benchmark case, as the table shows it.

    Attributes:
        kind: ``"step"`` or ``"end_to_end"``.
        device: ``"cpu"`` or ``"cuda"``.
        device_name: The processor in words.
        batch: Images per step.
        variant: The variant's name (``"baseline"``, ``"plain"``, ``"fast"``, ...).
        steps_per_s: Training steps per second (median round).
        images_per_s: ``steps_per_s * batch``.
        peak_mem_bytes: Peak memory growth of the case.
        order: Position of the case in the files (keeps the variants' table order).
        ratio: ``steps_per_s`` over the baseline's at the same kind, device and batch.
        mem_vs_plain: ``peak_mem_bytes`` over the plain path's at the same kind, device and batch.
        paired_ratio: Median of per-pair ratios from rounds run alternately with the
            baseline's (``harness.paired_ratios``), where the case recorded them.
        compile_s: How much longer the case's first step took than a steady step: for a
            compiled step, its compilation (kept out of the rates).
    """

    kind: str
    device: str
    device_name: str
    batch: int
    variant: str
    steps_per_s: float
    images_per_s: float
    peak_mem_bytes: int
    order: int = 0
    ratio: float | None = None
    mem_vs_plain: float | None = None
    paired_ratio: float | None = None
    compile_s: float | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        """The group whose rows are compared with each other."""
        return (self.kind, self.device, self.batch)


def load_rows(paths: Sequence[str | Path]) -> tuple[list[Row], dict[str, Any]]:
    """Rows of every timed case in ``paths`` (cases without rates, e.g. disabled runs, are left out).

    Returns:
        The rows, and facts about the run(s): ``torch`` versions, ``datetime``s, ``machine``s.

    Raises:
        ValueError: a file is not pytest-benchmark JSON written by these benchmarks.
    """
    rows: list[Row] = []
    facts: dict[str, Any] = {"torch": set(), "datetime": [], "machine": set()}
    for path in paths:
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a readable JSON file ({err})") from err
        if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
            raise ValueError(f"{path}: not pytest-benchmark JSON (no 'benchmarks' list)")
        facts["datetime"].append(doc.get("datetime", "?"))
        info = doc.get("machine_info", {})
        facts["machine"].add(f"{info.get('system', '?')} {info.get('release', '')}, "
                             f"Python {info.get('python_version', '?')}")
        for bench in doc["benchmarks"]:
            extra = bench.get("extra_info", {})
            if "steps_per_s" not in extra:
                continue
            facts["torch"].add(extra.get("torch", "?"))
            rows.append(Row(
                kind=str(extra["kind"]),
                device=str(extra["device"]),
                device_name=str(extra.get("device_name", extra["device"])),
                batch=int(extra["batch"]),
                variant=str(extra["variant"]),
                steps_per_s=float(extra["steps_per_s"]),
                images_per_s=float(extra["images_per_s"]),
                peak_mem_bytes=int(extra.get("peak_mem_bytes", 0)),
                order=len(rows),
                paired_ratio=float(extra["paired_ratio"]) if "paired_ratio" in extra else None,
                compile_s=float(extra["compile_s"]) if "compile_s" in extra else None,
            ))
    return rows, facts


def add_ratios(rows: Sequence[Row]) -> list[Row]:
    """The rows with ``ratio`` (to the baseline) and ``mem_vs_plain`` filled, sorted for the table.

    Sorted by kind (step first), device, batch, then baseline first and the other
    variants in the order they were run.
    """
    base = {r.key: r for r in rows if r.variant == BASELINE}
    plain = {r.key: r for r in rows if r.variant == PLAIN}
    out = []
    for r in rows:
        b, p = base.get(r.key), plain.get(r.key)
        ratio = r.steps_per_s / b.steps_per_s if b is not None and b.steps_per_s > 0 else None
        mem = r.peak_mem_bytes / p.peak_mem_bytes if p is not None and p.peak_mem_bytes > 0 else None
        out.append(replace(r, ratio=ratio, mem_vs_plain=mem))
    out.sort(key=lambda r: (KIND_ORDER.get(r.kind, 9), DEVICE_ORDER.get(r.device, 9), r.batch,
                            r.variant != BASELINE, r.order))
    return out


def _fmt(x: float | None, digits: int = 2, suffix: str = "") -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:,.{digits}f}{suffix}"


def markdown_table(rows: Sequence[Row]) -> str:
    """The Markdown table of :func:`add_ratios`' rows."""
    lines = [
        "| benchmark | device | batch | variant | steps/s | images/s | x baseline | ms/step | peak mem (MiB) "
        "| mem x plain | x baseline, paired |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {KIND_LABEL.get(r.kind, r.kind)} | {r.device} | {r.batch} | {r.variant} "
            f"| {_fmt(r.steps_per_s)} | {_fmt(r.images_per_s, 0)} | {_fmt(r.ratio, 2, 'x')} "
            f"| {_fmt(1e3 / r.steps_per_s if r.steps_per_s > 0 else None, 1)} "
            f"| {_fmt(r.peak_mem_bytes / 2**20, 1)} | {_fmt(r.mem_vs_plain, 2, 'x')} "
            f"| {'-' if r.paired_ratio is None else _fmt(r.paired_ratio, 2, 'x')} |"
        )
    return "\n".join(lines)


def compile_lines(rows: Sequence[Row], at_least_s: float = 1.0) -> list[str]:
    """One line per case whose first step took ``at_least_s`` or more beyond a steady step (compilation)."""
    return [
        f"{KIND_LABEL.get(r.kind, r.kind)} {r.device} batch {r.batch}: {r.variant} first step +{r.compile_s:.1f} s "
        f"(= {r.compile_s * r.steps_per_s:,.0f} steady steps)"
        for r in rows
        if r.compile_s is not None and r.compile_s >= at_least_s
    ]


def memory_warnings(rows: Sequence[Row]) -> list[str]:
    """One line per library variant other than plain whose peak memory exceeds the plain path's."""
    return [
        f"{KIND_LABEL.get(r.kind, r.kind)} {r.device} batch {r.batch}: {r.variant} peaks at "
        f"{r.peak_mem_bytes / 2**20:.1f} MiB, {r.mem_vs_plain:.2f}x the plain path"
        for r in rows
        if r.variant not in (BASELINE, PLAIN) and r.mem_vs_plain is not None and r.mem_vs_plain > 1.0
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table for the JSON files named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="+", help="files written by pytest --benchmark-json=...")
    args = parser.parse_args(argv)
    try:
        rows, facts = load_rows(args.json)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not rows:
        print("error: no timed cases in " + ", ".join(args.json) + " (was --benchmark-disable set?)",
              file=sys.stderr)
        return 2
    rows = add_ratios(rows)
    devices = sorted({f"{r.device}: {r.device_name}" for r in rows})
    print(f"Devices: {'; '.join(devices)}. torch {', '.join(sorted(facts['torch']))}; "
          f"{', '.join(sorted(facts['machine']))}; measured {', '.join(facts['datetime'])}.")
    print()
    print(markdown_table(rows))
    print()
    compiled = compile_lines(rows)
    if compiled:
        print("First-step overhead (compilation; not in the rates above):")
        for line in compiled:
            print(f"- {line}")
        print()
    warnings = memory_warnings(rows)
    if warnings:
        print("Peak memory above the plain path's:")
        for line in warnings:
            print(f"- {line}")
    else:
        print("Peak memory: no fast variant exceeds the plain path's.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
