"""Know the floor: how close the MLP training step runs to what this machine's matrix units allow.

Run from the repository root (CPU; about 3 minutes with the defaults, most of it compiling)::

    .venv/bin/python -m benchmarks.floor [--batch 128] [--turns 20] [--steps 5] \\
        [--variants baseline,default,default+bf16,compiled,compiled+bf16] [--threads N] [--json out.json]

``--quick`` is a smoke run of the tool (3 turns of 1 step, short GEMM timings, no compiled
variants unless named): not a measurement. Per variant of :mod:`benchmarks.variants` (the
tutorial's loop ``baseline``; ``default``: ``GANTrainer(mlp_generator(), mlp_discriminator(),
NonSaturatingLoss())``; ``default+bf16``: ``StepConfig(amp="bf16")``; ``compiled`` and
``compiled+bf16``: ``StepConfig(implementation="compiled")``), on the reference nets at batch 128:

1. **FLOPs, counted**: one steady step (forward, backward, both updates) runs under
   ``torch.utils.flop_counter.FlopCounterMode`` and, nested in it, :class:`GemmRecorder`, which
   notes every matrix product dispatched (``mm``/``addmm``/``bmm``/``baddbmm``): its shape
   ``(m, k, n)``, dtype (after autocast) and operand layout (row-major ``N`` or transposed ``T``).
2. **The matmul rate at the step's own GEMMs**: each distinct product is timed alone with
   ``torch.mm``/``torch.addmm`` on operands of its shape and layout, in float32 and in bfloat16
   (:func:`time_gemm`: the median of many timed blocks of calls).
3. **The floor**: :func:`floor_ms`, the sum over the step's products of FLOPs / rate at the
   dtype the step used. It counts matrix work only: everything else (elementwise work,
   the optimizer, dispatch) is what separates the measured step from it.
4. **The measured step**: ``benchmarks.interleaved.interleaved_ratios`` (every variant one
   round in turn, shuffled, against the tutorial's loop; median of per-turn ratios, quartiles).
5. **The fraction of the floor reached**: floor / measured ms per step.
6. **Where the rest goes**: :func:`benchmarks.profile_step.operator_shares` per variant.

The CPU model, ``torch.backends.cpu.get_cpu_capability()``, its bfloat16 instructions
(AVX512-BF16, AMX), the thread count and torch's version are printed above the tables.
On a CPU without bfloat16 instructions the ``+bf16`` variants are left out (their products
are emulated, about 100x slower than float32: not a speed-up) unless ``--force-bf16``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from torchgan_lite import cpu_bf16_instructions

from .harness import device_name, step_runner, synthetic_batches
from .interleaved import interleaved_ratios
from .profile_step import format_shares, operator_shares
from .variants import BASELINE, variant_by_name

__all__ = [
    "DEFAULT_VARIANTS",
    "Gemm",
    "GemmRecorder",
    "StepCount",
    "count_step",
    "floor_ms",
    "fraction_of_floor",
    "gemm_operands",
    "machine_info",
    "machine_line",
    "main",
    "time_gemm",
]

DEFAULT_VARIANTS = ("baseline", "default", "default+bf16", "compiled", "compiled+bf16")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_GEMM_OPS = {"mm", "addmm", "bmm", "baddbmm"}


@dataclass(frozen=True, order=True)
class Gemm:
    """One matrix product as the step dispatched it: ``(batch x) (m, k) @ (k, n)``.

    Attributes:
        op: ``"mm"``, ``"addmm"``, ``"bmm"`` or ``"baddbmm"``.
        m, k, n: The product's sizes.
        dtype: ``"float32"`` or ``"bfloat16"`` (the operands' dtype, after autocast).
        layout: The two operands' memory layouts, ``"NN"``, ``"NT"``, ``"TN"``...: ``N`` row-major,
            ``T`` a transposed row-major tensor, ``S`` any other strides.
        batch: Products in a ``bmm``; 1 for ``mm``/``addmm``.
    """

    op: str
    m: int
    k: int
    n: int
    dtype: str = "float32"
    layout: str = "NN"
    batch: int = 1

    @property
    def flops(self) -> int:
        """``2 * batch * m * k * n``: one multiply and one add per term (the bias add not counted)."""
        return 2 * self.batch * self.m * self.k * self.n

    def with_dtype(self, dtype: str) -> Gemm:
        """The same product in another dtype."""
        return replace(self, dtype=dtype)

    def label(self) -> str:
        """``addmm (128, 784, 1024) NT`` (``bmm 4x(...)`` for a batched product)."""
        times = f"{self.batch}x" if self.batch != 1 else ""
        return f"{self.op} {times}({self.m}, {self.k}, {self.n}) {self.layout}"


def _layout(t: torch.Tensor) -> str:
    if t.is_contiguous():
        return "N"
    if t.transpose(-1, -2).is_contiguous():
        return "T"
    return "S"


class GemmRecorder(TorchDispatchMode):
    """Records the matrix products dispatched inside it (see :class:`Gemm`); ``gemms`` counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.gemms: Counter[Gemm] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func.overloadpacket.__name__
        if name in _GEMM_OPS:
            a, b = (args[1], args[2]) if name in ("addmm", "baddbmm") else (args[0], args[1])
            batch = a.shape[0] if a.dim() == 3 else 1
            dtype = str(a.dtype).removeprefix("torch.")
            self.gemms[Gemm(name, a.shape[-2], a.shape[-1], b.shape[-1], dtype, _layout(a) + _layout(b), batch)] += 1
        return func(*args, **(kwargs or {}))


@dataclass(frozen=True)
class StepCount:
    """What one step computes.

    Attributes:
        counted_flops: ``FlopCounterMode``'s total for the step (every operator it has a formula for).
        gemms: The step's matrix products, with how many times each ran.
    """

    counted_flops: int
    gemms: Mapping[Gemm, int]

    @property
    def gemm_flops(self) -> int:
        """FLOPs of the recorded products (``2mkn`` each): ``counted_flops`` when the step is all GEMMs."""
        return sum(g.flops * c for g, c in self.gemms.items())

    @property
    def dtypes(self) -> list[str]:
        """The dtypes the products ran in."""
        return sorted({g.dtype for g in self.gemms})


def count_step(step: Callable[[], object]) -> StepCount:
    """Run ``step`` once under ``FlopCounterMode`` and :class:`GemmRecorder`; run it warm (steady state)."""
    with FlopCounterMode(display=False) as counter, GemmRecorder() as recorder:
        step()
    return StepCount(int(counter.get_total_flops()), dict(recorder.gemms))


def _operand(rows: int, cols: int, layout: str, dtype: torch.dtype, device: str) -> torch.Tensor:
    if layout == "T":  # a transposed row-major tensor, as W.t() in a Linear layer's forward
        return torch.randn(cols, rows, device=device).to(dtype).t()
    return torch.randn(rows, cols, device=device).to(dtype)


def gemm_operands(g: Gemm, device: str = "cpu") -> tuple[Callable[[], torch.Tensor], list[torch.Tensor]]:
    """A call computing ``g`` on fresh operands of its shape, dtype and layout, and those operands."""
    dtype = _DTYPES[g.dtype]
    if g.batch != 1:
        a = torch.randn(g.batch, g.m, g.k, device=device).to(dtype)  # (batch, m, k)
        b = torch.randn(g.batch, g.k, g.n, device=device).to(dtype)  # (batch, k, n)
        if g.layout[0] == "T":
            a = a.transpose(1, 2).contiguous().transpose(1, 2)
        if g.layout[1] == "T":
            b = b.transpose(1, 2).contiguous().transpose(1, 2)
        if g.op == "baddbmm":
            c = torch.randn(g.batch, g.m, g.n, device=device).to(dtype)
            return (lambda: torch.baddbmm(c, a, b)), [c, a, b]
        return (lambda: torch.bmm(a, b)), [a, b]
    a = _operand(g.m, g.k, g.layout[0], dtype, device)  # (m, k)
    b = _operand(g.k, g.n, g.layout[1], dtype, device)  # (k, n)
    if g.op == "addmm":
        bias = torch.randn(g.n, device=device).to(dtype)  # (n,), broadcast over rows as a Linear's bias
        return (lambda: torch.addmm(bias, a, b)), [bias, a, b]
    return (lambda: torch.mm(a, b)), [a, b]


def time_gemm(g: Gemm, device: str = "cpu", min_time: float = 0.3, min_blocks: int = 7) -> tuple[float, float]:
    """Seconds per call of ``g`` alone: ``(median, best)`` over timed blocks of calls.

    Each block runs enough calls to last about a millisecond; blocks are timed until
    ``min_time`` seconds have passed and at least ``min_blocks`` blocks ran. On CUDA the
    device is synchronised before each clock read.
    """
    fn, _ = gemm_operands(g, device)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    reps = max(1, math.ceil(1e-3 / max(time.perf_counter() - t0, 1e-7)))
    blocks: list[float] = []
    end = time.perf_counter() + min_time
    while time.perf_counter() < end or len(blocks) < min_blocks:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        sync()
        blocks.append((time.perf_counter() - t0) / reps)
    return statistics.median(blocks), min(blocks)


def floor_ms(gemms: Mapping[Gemm, int], gflops: Mapping[Gemm, float]) -> float:
    """The step's matrix-work floor: the sum over its products of ``calls * FLOPs / rate``, in ms.

    Args:
        gemms: Each product the step ran (with its dtype) and how many times.
        gflops: The measured rate of each product, in GFLOP/s, keyed by the same :class:`Gemm`.

    Raises:
        ValueError: for a product with no rate, or a rate that is not positive.
    """
    total = 0.0
    for g, calls in gemms.items():
        rate = gflops.get(g)
        if rate is None:
            raise ValueError(f"gflops has no rate for {g.label()} in {g.dtype}")
        if not rate > 0:
            raise ValueError(f"gflops[{g.label()} {g.dtype}] must be > 0, got {rate}")
        total += calls * g.flops / (rate * 1e9)
    return total * 1e3


def fraction_of_floor(floor: float, measured: float) -> float:
    """``floor / measured`` (both in ms per step): 1.0 is a step that does matrix work only, at full rate."""
    if not measured > 0:
        raise ValueError(f"measured must be > 0 ms, got {measured}")
    return floor / measured


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """What the figures depend on: CPU model, capability, bfloat16 instructions, threads, versions, load."""
    bf16 = cpu_bf16_instructions()
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_instructions": bf16,
        "avx512_bf16": "avx512_bf16" in bf16,
        "amx_bf16": "amx_bf16" in bf16,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "device": device_name(device),
    }
    return info


def machine_line(info: Mapping[str, Any]) -> str:
    """:func:`machine_info` in one line, for the top of a table."""
    bf16 = ", ".join(info["bf16_instructions"]) or "none"
    load = info["load_avg_1min"]
    return (f"CPU {info['cpu_model']}; capability {info['cpu_capability']}; bf16 instructions: {bf16}; "
            f"{info['threads']} threads; torch {info['torch']}; load {'?' if load is None else f'{load:.1f}'}; "
            f"device {info['device']}")


def _rates(gemms: Sequence[Gemm], device: str, min_time: float) -> dict[Gemm, dict[str, float]]:
    """Median and best GFLOP/s of each product in float32 and bfloat16, keyed by the product in each dtype."""
    out: dict[Gemm, dict[str, float]] = {}
    for g in gemms:
        for dtype in _DTYPES:
            gd = g.with_dtype(dtype)
            if gd in out:
                continue
            median, best = time_gemm(gd, device, min_time=min_time)
            out[gd] = {"gflops": gd.flops / median / 1e9, "best_gflops": gd.flops / best / 1e9,
                       "median_us": median * 1e6}
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="the MLP step's FLOPs, GEMM rates, floor and measured speed")
    p.add_argument("--batch", type=int, default=128, help="images per step (default 128)")
    p.add_argument("--variants", default=None,
                   help=f"comma-separated, from benchmarks/variants.py (default {','.join(DEFAULT_VARIANTS)}; "
                        "the baseline is added first if missing)")
    p.add_argument("--turns", type=int, default=20, help="interleaved rounds of every variant (default 20)")
    p.add_argument("--steps", type=int, default=5, help="steps per round (default 5)")
    p.add_argument("--min-time", type=float, default=0.3, help="seconds of timing per GEMM and dtype (default 0.3)")
    p.add_argument("--profile-steps", type=int, default=10, help="profiled steps per variant (default 10; 0: none)")
    p.add_argument("--rows", type=int, default=12, help="operators per profile table (default 12)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default 0: torch's own choice)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the steps run (default cpu)")
    p.add_argument("--force-bf16", action="store_true", help="run +bf16 variants on a CPU without bf16 instructions")
    p.add_argument("--quick", action="store_true", help="a smoke run of the tool, not a measurement")
    p.add_argument("--json", type=Path, default=None, help="also write every figure here (JSON)")
    return p


def _variant_names(a: argparse.Namespace, bf16_ok: bool) -> tuple[list[str], list[str]]:
    if a.variants:
        names = [n for n in a.variants.split(",") if n]
    else:
        names = [n for n in DEFAULT_VARIANTS if not (a.quick and n.startswith("compiled"))]
    for n in names:
        variant_by_name(n)  # an unknown name fails here, with the list of names
    names = [BASELINE] + [n for n in names if n != BASELINE]
    skipped = [n for n in names if n.endswith("+bf16") and not bf16_ok]
    return [n for n in names if n not in skipped], skipped


def main(argv: list[str] | None = None) -> None:
    """Print the GEMM, floor and profile tables (and write them as JSON)."""
    a = _parser().parse_args(argv)
    if a.quick:
        a.turns, a.steps, a.min_time, a.profile_steps, a.rows = 3, 1, 0.02, min(a.profile_steps, 2), 6
    if a.threads:
        torch.set_num_threads(a.threads)
    info = machine_info(a.device)
    bf16_ok = a.force_bf16 or a.device == "cuda" or bool(info["bf16_instructions"])
    names, skipped = _variant_names(a, bf16_ok)
    batches = synthetic_batches(a.batch, a.device)
    counts: dict[str, StepCount] = {}
    profiles: dict[str, dict[str, Any]] = {}
    for name in names:
        reason = variant_by_name(name).skip_reason(a.device)
        if reason is not None:
            raise SystemExit(f"cannot run {name} on {a.device}: {reason}")
        torch.manual_seed(0)
        runner = step_runner(variant_by_name(name), a.device, batches)
        runner.run(3)  # optimizer state; a compiled step compiles here
        one_step = functools.partial(runner.run, 1)
        counts[name] = count_step(one_step)
        if a.profile_steps > 0:
            top, total = operator_shares(one_step, steps=a.profile_steps, rows=a.rows, warmup=0)
            profiles[name] = {"total_ms": total, "top": top}
    distinct = sorted({g.with_dtype("float32") for c in counts.values() for g in c.gemms})
    rates = _rates(distinct, a.device, a.min_time)
    gflops = {g: r["gflops"] for g, r in rates.items()}
    measured = interleaved_ratios(names, batch=a.batch, turns=a.turns, steps=a.steps, device=a.device)

    print(machine_line(info))
    print(f"batch {a.batch}; {a.turns} interleaved turns of {a.steps} steps; GEMMs timed {a.min_time:g} s each"
          + (" (--quick: a smoke run, not a measurement)" if a.quick else ""))
    if skipped:
        print(f"left out: {', '.join(skipped)} (this CPU has no bfloat16 instructions; --force-bf16 runs them)")
    print()
    print("| GEMM (op (m, k, n) layout) | fp32 GFLOP/s | bf16 GFLOP/s | " + " | ".join(f"{n} calls" for n in names)
          + " |")
    print("|---|---:|---:|" + "---:|" * len(names))
    for g in distinct:
        calls = [sum(c for h, c in counts[n].gemms.items() if h.with_dtype("float32") == g) for n in names]
        print(f"| {g.label()} | {gflops[g]:.0f} | {gflops[g.with_dtype('bfloat16')]:.0f} | "
              + " | ".join(str(c) for c in calls) + " |")
    print()
    print("| variant | GFLOP/step (counted) | products | floor (ms) | measured ms/step | x tutorial (median) "
          "| quartiles | floor / measured |")
    print("|---|---:|---|---:|---:|---:|---|---:|")
    rows: dict[str, dict[str, Any]] = {}
    for n in names:
        c, m = counts[n], measured[n]
        fl = floor_ms(c.gemms, gflops)
        rows[n] = {"counted_flops": c.counted_flops, "gemm_flops": c.gemm_flops, "gemm_calls": sum(c.gemms.values()),
                   "gemm_dtypes": c.dtypes, "floor_ms": fl, **m,
                   "fraction_of_floor": fraction_of_floor(fl, m["ms_per_step"])}
        print(f"| {n} | {c.counted_flops / 1e9:.3f} | {rows[n]['gemm_calls']} GEMMs, {'/'.join(c.dtypes)} | {fl:.1f} "
              f"| {m['ms_per_step']:.1f} | {m['ratio']:.2f}x | {m['ratio_q1']:.2f}-{m['ratio_q3']:.2f} "
              f"| {100 * rows[n]['fraction_of_floor']:.0f}% |")
    other = {n: (c.counted_flops - c.gemm_flops) / 1e9 for n, c in counts.items() if c.counted_flops != c.gemm_flops}
    if other:
        print("\ncounted FLOPs outside the recorded GEMMs (GFLOP/step): "
              + ", ".join(f"{n} {v:.3f}" for n, v in other.items()))
    for n, prof in profiles.items():
        print()
        print(format_shares(f"### {n}: top operators by self CPU time", prof["top"], prof["total_ms"]))
    if a.json is not None:
        a.json.write_text(json.dumps({
            "machine": info, "batch": a.batch, "turns": a.turns, "steps": a.steps, "min_time": a.min_time,
            "quick": a.quick, "skipped": skipped, "variants": rows,
            "gemm_rates": [{**asdict(g), "flops": g.flops, **r} for g, r in sorted(rates.items())],
            "gemm_calls": {n: [{**asdict(g), "calls": k} for g, k in sorted(c.gemms.items())]
                           for n, c in counts.items()},
            "profiles": {n: {"total_ms": p["total_ms"], "top": [asdict(s) for s in p["top"]]}
                         for n, p in profiles.items()},
        }, indent=1) + "\n")


if __name__ == "__main__":
    main()
