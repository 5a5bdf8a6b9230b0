"""The convolutional nets' training step: the library's step against a plain PyTorch loop of the same nets.

Run from the repository root (CPU: one command per net keeps each under about 5 minutes)::

    .venv/bin/python -m benchmarks.conv_step --nets dcgan32 [--batch 64] [--turns 6] [--steps 2] \\
        [--configs fp32,fp32+cl,bf16,bf16+cl] [--device cpu|cuda] [--json out.json]

``--quick`` is a smoke run (3 turns of 1 step): not a measurement. The nets (:data:`NETS`) are
``torchgan_lite.dcgan_generator/dcgan_discriminator(image_size=32 or 64, channels=3)`` and
``resnet_generator/resnet_discriminator(image_size=32, channels=3)`` at their default widths. The
configurations (:data:`CONFIGS`): float32; float32 with channels-last memory (both nets
``.to(memory_format=torch.channels_last)`` and channels-last batches, ``+cl``); bfloat16 autocast
(``StepConfig(amp="bf16")``); and both. Each configuration runs twice, on identical copies of the
same freshly initialised nets:

- **library**: ``GANTrainer(g, d, loss, step=StepConfig(amp=...), g_optimizer=..., d_optimizer=...)``
  and ``trainer.train_step(batch)`` (:func:`library_trainer`), with ``Adam(2e-4, betas=(0.5, 0.999),
  fused=True)`` (the library's fused kernel with DCGAN's betas);
- **plain**: :class:`PlainConvLoop`, the loop a PyTorch user writes: ``fake = G(z)`` (a graph
  through G), ``zero_grad``, ``D(real)``, ``D(fake.detach())``, BCE-with-logits (hinge for ResNet,
  as SNGAN trains it), ``backward``, ``step``; then the G update on fresh noise through D (which
  also computes D's weight gradients, thrown away), ``Adam(2e-4, betas=(0.5, 0.999))`` with
  PyTorch's default implementation for the device, ``torch.autocast`` around the forwards for bf16.

Both make one D and one G update a step with the same loss and noise draws, so from the same
weights they train the same nets (``tests/test_speed_tools.py`` checks it). Every runner of a net
takes one warm-up step first, under ``FlopCounterMode`` (the step's FLOPs, counted) and forward
hooks on every convolution (the dtype and memory format their outputs really had: a silent
float32 or contiguous fallback shows there), inside :class:`benchmarks.harness.PeakMemory` (peak
RSS growth on a CPU, allocated bytes on CUDA, over building the nets and that step). Then all of
a net's runners run one round of ``--steps`` steps in turn, shuffled, for ``--turns`` turns
(synchronising CUDA before reading the clock); the table gives median ms per step, the median and
quartiles of the per-turn ratio plain / library, and the library's per-turn ratio to the plain
float32 loop. On a CPU without bfloat16 instructions the bf16 configurations are left out unless
``--force-bf16`` (emulated bfloat16 is far slower than float32). A configuration that fails is
reported with its error, and the others still run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from torchgan_lite import (
    GANTrainer,
    HingeLoss,
    NonSaturatingLoss,
    StepConfig,
    dcgan_discriminator,
    dcgan_generator,
    resnet_discriminator,
    resnet_generator,
)

from .floor import machine_info, machine_line
from .harness import PeakMemory

__all__ = ["CONFIGS", "NETS", "Config", "ConvNet", "PlainConvLoop", "conv_formats", "interleave",
           "library_trainer", "main", "plain_adam", "run_net"]

BETAS = (0.5, 0.999)
LR = 2e-4


@dataclass(frozen=True)
class ConvNet:
    """One benchmarked pair of nets.

    Attributes:
        name: ``"dcgan32"``, ``"dcgan64"``, ``"resnet32"``.
        family: ``"dcgan"`` or ``"resnet"``.
        image_size: Image side in pixels (RGB images).
        loss: ``"bce"`` (non-saturating, DCGAN) or ``"hinge"`` (SNGAN's ResNet).
    """

    name: str
    family: str
    image_size: int
    loss: str

    def build(self, base_width: int | None = None) -> tuple[nn.Module, nn.Module]:
        """A fresh ``(G, D)``: the builders' defaults, or ``base_width`` (tiny nets for tests)."""
        width: dict[str, Any] = {} if base_width is None else {"base_width": base_width}
        if self.family == "dcgan":
            return (dcgan_generator(image_size=self.image_size, channels=3, **width),
                    dcgan_discriminator(image_size=self.image_size, channels=3, **width))
        return (resnet_generator(image_size=self.image_size, channels=3, **width),
                resnet_discriminator(image_size=self.image_size, channels=3, **width))

    def library_loss(self) -> NonSaturatingLoss | HingeLoss:
        """The library's loss object for :attr:`loss`."""
        return NonSaturatingLoss() if self.loss == "bce" else HingeLoss()


@dataclass(frozen=True)
class Config:
    """How a step runs: ``amp`` (None or ``"bf16"``) and channels-last memory."""

    name: str
    amp: str | None
    channels_last: bool


NETS: Mapping[str, ConvNet] = {n.name: n for n in (ConvNet("dcgan32", "dcgan", 32, "bce"),
                                                   ConvNet("dcgan64", "dcgan", 64, "bce"),
                                                   ConvNet("resnet32", "resnet", 32, "hinge"))}
CONFIGS: Mapping[str, Config] = {c.name: c for c in (Config("fp32", None, False), Config("fp32+cl", None, True),
                                                     Config("bf16", "bf16", False), Config("bf16+cl", "bf16", True))}


def plain_adam(module: nn.Module) -> torch.optim.Adam:
    """The plain loop's optimizer: ``Adam(2e-4, betas=(0.5, 0.999))``, PyTorch's default implementation."""
    return torch.optim.Adam(module.parameters(), lr=LR, betas=BETAS)


def library_trainer(generator: nn.Module, discriminator: nn.Module, loss: Any, amp: str | None,
                    device: str) -> GANTrainer:
    """The library side: a trainer with DCGAN's Adam as one fused kernel per net, and ``amp``.

    The one place this benchmark builds a trainer with step options.
    """
    return GANTrainer(generator, discriminator, loss, step=StepConfig(amp=amp),
                      g_optimizer=torch.optim.Adam(generator.parameters(), lr=LR, betas=BETAS, fused=True),
                      d_optimizer=torch.optim.Adam(discriminator.parameters(), lr=LR, betas=BETAS, fused=True),
                      device=device)


class PlainConvLoop:
    """The plain PyTorch loop of a GAN step (see the module docstring).

    Args:
        generator: ``G(z) -> (B, C, H, W)``.
        discriminator: ``D(x) -> (B,)`` or ``(B, 1)`` logits.
        loss: ``"bce"`` or ``"hinge"``.
        latent_dim: Noise size.
        amp: None or ``"bf16"`` (``torch.autocast`` around the forwards).
        g_optimizer, d_optimizer: Default: :func:`plain_adam`.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, loss: str, latent_dim: int,
                 amp: str | None = None, g_optimizer: torch.optim.Optimizer | None = None,
                 d_optimizer: torch.optim.Optimizer | None = None) -> None:
        if loss not in ("bce", "hinge"):
            raise ValueError(f"loss must be 'bce' or 'hinge', got {loss!r}")
        if amp not in (None, "bf16"):
            raise ValueError(f"amp must be None or 'bf16', got {amp!r}")
        self.generator, self.discriminator = generator, discriminator
        self.loss, self.latent_dim, self.amp = loss, latent_dim, amp
        self.device = next(generator.parameters()).device
        self.g_optimizer = g_optimizer if g_optimizer is not None else plain_adam(generator)
        self.d_optimizer = d_optimizer if d_optimizer is not None else plain_adam(discriminator)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.loss == "hinge":
            return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
        return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))

    def _g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.loss == "hinge":
            return -fake_logits.mean()
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))

    def step(self, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One D update then one G update on ``real`` ``(B, C, H, W)``; the two losses, detached, on the device."""
        g, d, b = self.generator, self.discriminator, real.shape[0]
        g.train()
        d.train()
        z = torch.randn(b, self.latent_dim, device=self.device)  # (B, latent)
        with self._autocast():
            fake = g(z)  # (B, C, H, W), with its graph through G
        self.d_optimizer.zero_grad()
        with self._autocast():
            real_logits = d(real).reshape(b).float()  # (B,)
            fake_logits = d(fake.detach()).reshape(b).float()  # (B,)
        d_loss = self._d_loss(real_logits, fake_logits)
        d_loss.backward()
        self.d_optimizer.step()
        self.g_optimizer.zero_grad()
        z = torch.randn(b, self.latent_dim, device=self.device)  # (B, latent): fresh noise
        with self._autocast():
            fake_logits = d(g(z)).reshape(b).float()  # (B,)
        g_loss = self._g_loss(fake_logits)
        g_loss.backward()  # D's weight gradients too: the next zero_grad throws them away
        self.g_optimizer.step()
        return d_loss.detach(), g_loss.detach()


def _format(t: torch.Tensor) -> str:
    if t.dim() != 4:
        return "not 4-D"
    cl, contiguous = t.is_contiguous(memory_format=torch.channels_last), t.is_contiguous()
    return "either" if cl and contiguous else "channels_last" if cl else "contiguous" if contiguous else "strided"


@contextlib.contextmanager
def conv_formats(*modules: nn.Module) -> Iterator[Counter[tuple[str, str]]]:
    """Count ``(dtype, memory format)`` of every ``Conv2d``/``ConvTranspose2d`` output inside it.

    The format is ``"channels_last"``, ``"contiguous"``, ``"either"`` (a tensor both describe,
    e.g. ``(B, 1, 1, 1)``) or ``"strided"``.
    """
    seen: Counter[tuple[str, str]] = Counter()

    def hook(module: nn.Module, args: Any, out: torch.Tensor) -> None:
        seen[(str(out.dtype).removeprefix("torch."), _format(out))] += 1

    handles = [m.register_forward_hook(hook) for mod in modules for m in mod.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


class _Runner:
    """``run(k)``: ``k`` steps over the batches, then one sync (CUDA) or one loss read (CPU)."""

    def __init__(self, step: Callable[[torch.Tensor], torch.Tensor], batches: Sequence[torch.Tensor],
                 device: str) -> None:
        self.step, self.batches, self.device = step, batches, device
        self.last: torch.Tensor | None = None
        self.i = 0

    def run(self, k: int) -> None:
        for _ in range(k):
            self.last = self.step(self.batches[self.i % len(self.batches)])
            self.i += 1
        if self.device == "cuda":
            torch.cuda.synchronize()
        else:
            float(self.last)  # type: ignore[arg-type]

    def last_loss(self) -> float:
        return float("nan") if self.last is None else float(self.last)


def interleave(runners: Mapping[str, _Runner], turns: int, steps: int, seed: int = 0) -> dict[str, list[float]]:
    """Seconds per step of each runner, one round of ``steps`` per turn, in a fresh shuffled order each turn."""
    order = random.Random(seed)
    times: dict[str, list[float]] = {n: [] for n in runners}
    for _ in range(turns):
        names = list(runners)
        order.shuffle(names)
        for n in names:
            t0 = time.perf_counter()
            runners[n].run(steps)
            times[n].append((time.perf_counter() - t0) / steps)
    return times


def _batches(batch: int, size: int, channels_last: bool, device: str, count: int = 2) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(count):
        x = (torch.rand(batch, 3, size, size, generator=gen) * 2 - 1).to(device)  # (B, 3, S, S) in [-1, 1]
        out.append(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
    return out


def _warm(runner: _Runner, models: Sequence[nn.Module], device: str) -> dict[str, Any]:
    """The warm-up step, counted and observed, inside the memory measurement's scope (the caller's)."""
    t0 = time.perf_counter()
    with FlopCounterMode(display=False) as flops, conv_formats(*models) as seen:
        runner.run(1)
    return {"first_step_s": time.perf_counter() - t0, "gflop_per_step": flops.get_total_flops() / 1e9,
            "conv_outputs": {f"{dt} {fmt}": c for (dt, fmt), c in sorted(seen.items())}}


def _build(net: ConvNet, config: Config, batch: int, device: str, seed: int) -> dict[str, Any]:
    """Both runners of one configuration on identical nets, each warmed up and measured; or the error."""
    batches = _batches(batch, net.image_size, config.channels_last, device)
    out: dict[str, Any] = {}
    try:
        torch.manual_seed(seed)
        g0, d0 = net.build()  # the initial weights both sides copy (on the CPU, outside both measurements)
        if config.channels_last:
            g0, d0 = g0.to(memory_format=torch.channels_last), d0.to(memory_format=torch.channels_last)
        with PeakMemory(device) as mem_lib:
            trainer = library_trainer(copy.deepcopy(g0), copy.deepcopy(d0), net.library_loss(), config.amp, device)
            lib = _Runner(lambda x: trainer.train_step(x).g_loss, batches, device)
            out["library"] = _warm(lib, (trainer.gan_step.generator, trainer.gan_step.discriminator), device)
        with PeakMemory(device) as mem_plain:
            g, d = copy.deepcopy(g0).to(device), copy.deepcopy(d0).to(device)
            loop = PlainConvLoop(g, d, net.loss, trainer.gan_step.latent_dim, config.amp)
            plain = _Runner(lambda x: loop.step(x)[1], batches, device)
            out["plain"] = _warm(plain, (g, d), device)
    except Exception as err:  # reported in the table; the other configurations still run
        return {"error": f"{type(err).__name__}: {err}"}
    out["library"]["peak_mem_mib"] = mem_lib.peak_bytes / 2**20
    out["plain"]["peak_mem_mib"] = mem_plain.peak_bytes / 2**20
    out["mem_method"] = mem_lib.method
    out["runners"] = {"library": lib, "plain": plain}
    return out


def _prime(net: ConvNet, configs: Sequence[Config], device: str) -> None:
    """One step of tiny copies of the nets per configuration, both sides, before any measurement: the
    process's one-time costs (kernel libraries, thread pools, autocast) then fall on no measured case."""
    for c in configs:
        with contextlib.suppress(Exception):  # a failing configuration is reported by _build
            g, d = net.build(base_width=4)
            if c.channels_last:
                g, d = g.to(memory_format=torch.channels_last), d.to(memory_format=torch.channels_last)
            x = _batches(2, net.image_size, c.channels_last, device, count=1)[0]  # (2, 3, S, S)
            trainer = library_trainer(g, d, net.library_loss(), c.amp, device)
            trainer.train_step(x)
            PlainConvLoop(trainer.gan_step.generator, trainer.gan_step.discriminator, net.loss,
                          trainer.gan_step.latent_dim, c.amp).step(x)


def _quartiles(xs: Sequence[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q1, _, q3 = statistics.quantiles(xs, n=4)
    return q1, statistics.median(xs), q3


def run_net(net: ConvNet, configs: Sequence[Config], batch: int, turns: int, steps: int, device: str,
            seed: int = 0) -> dict[str, dict[str, Any]]:
    """Build, warm and time every configuration of ``net``; ``{config: figures}`` (see :func:`main`)."""
    _prime(net, configs, device)
    built = {c.name: _build(net, c, batch, device, seed) for c in configs}
    runners = {f"{c} {side}": b["runners"][side] for c, b in built.items() if "runners" in b
               for side in ("plain", "library")}
    times = interleave(runners, turns, steps, seed) if runners else {}
    base = times.get("fp32 plain")
    out: dict[str, dict[str, Any]] = {}
    for c, b in built.items():
        if "error" in b:
            out[c] = {"error": b["error"]}
            continue
        lib_t, plain_t = times[f"{c} library"], times[f"{c} plain"]
        q1, med, q3 = _quartiles([p / t for p, t in zip(plain_t, lib_t)])
        row = {"library": b["library"], "plain": b["plain"], "mem_method": b["mem_method"],
               "library_ms": statistics.median(lib_t) * 1e3, "plain_ms": statistics.median(plain_t) * 1e3,
               "ratio": med, "ratio_q1": q1, "ratio_q3": q3, "library_s": lib_t, "plain_s": plain_t}
        if base is not None:
            row["x_plain_fp32"] = _quartiles([p / t for p, t in zip(base, lib_t)])[1]
        out[c] = row
    return out


def _conv_summary(seen: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in seen.items())


def print_table(net: str, rows: Mapping[str, Mapping[str, Any]]) -> None:
    """One net's Markdown table."""
    print(f"\n### {net}\n")
    print("| config | library ms/step | plain ms/step | plain / library (median) | quartiles | library x plain fp32 "
          "| GFLOP/step (library, plain) | peak MiB (library, plain) | first step s "
          "| conv outputs in the library step |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---|")
    for c, r in rows.items():
        if "error" in r:
            print(f"| {c} | failed: {r['error'][:160]} | | | | | | | | |")
            continue
        lib, plain = r["library"], r["plain"]
        x_fp32 = f"{r['x_plain_fp32']:.2f}x" if "x_plain_fp32" in r else "-"
        print(f"| {c} | {r['library_ms']:.0f} | {r['plain_ms']:.0f} | {r['ratio']:.2f}x | {r['ratio_q1']:.2f}-"
              f"{r['ratio_q3']:.2f} | {x_fp32} | {lib['gflop_per_step']:.1f}, {plain['gflop_per_step']:.1f} "
              f"| {lib['peak_mem_mib']:.0f}, {plain['peak_mem_mib']:.0f} | {lib['first_step_s']:.1f} "
              f"| {_conv_summary(lib['conv_outputs'])} |")


def _names(raw: str, known: Mapping[str, Any], what: str) -> list[str]:
    names = [n for n in raw.split(",") if n]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise SystemExit(f"--{what}: unknown {unknown or raw!r}; choose from {', '.join(known)}")
    return names


def main(argv: list[str] | None = None) -> None:
    """Print one table per net (and write every figure as JSON)."""
    p = argparse.ArgumentParser(description="conv nets: the library's step against a plain PyTorch loop")
    p.add_argument("--nets", default="dcgan32", help=f"comma-separated from {', '.join(NETS)} (default dcgan32)")
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated from {', '.join(CONFIGS)}")
    p.add_argument("--batch", type=int, default=64, help="images per step (default 64)")
    p.add_argument("--turns", type=int, default=6, help="interleaved rounds of every runner (default 6)")
    p.add_argument("--steps", type=int, default=2, help="steps per round (default 2)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to run (default cpu)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default 0: torch's own choice)")
    p.add_argument("--force-bf16", action="store_true", help="run bf16 on a CPU without bfloat16 instructions")
    p.add_argument("--quick", action="store_true", help="a smoke run (3 turns of 1 step), not a measurement")
    p.add_argument("--json", type=Path, default=None, help="also write every figure here (JSON)")
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    if a.batch < 1 or a.turns < 1 or a.steps < 1:
        raise SystemExit(f"--batch, --turns and --steps must be >= 1, got {a.batch}, {a.turns}, {a.steps}")
    if a.quick:
        a.turns, a.steps = 3, 1
    if a.threads:
        torch.set_num_threads(a.threads)
    info = machine_info(a.device)
    configs = [CONFIGS[c] for c in _names(a.configs, CONFIGS, "configs")]
    skipped = []
    if a.device == "cpu" and not info["bf16_instructions"] and not a.force_bf16:
        skipped = [c.name for c in configs if c.amp is not None]
        configs = [c for c in configs if c.amp is None]
    print(machine_line(info))
    print(f"batch {a.batch}; {a.turns} interleaved turns of {a.steps} steps"
          + (" (--quick: a smoke run, not a measurement)" if a.quick else ""))
    if skipped:
        print(f"left out: {', '.join(skipped)} (no bfloat16 instructions on this CPU; --force-bf16 runs them)")
    results: dict[str, Any] = {}
    for name in _names(a.nets, NETS, "nets"):
        rows = run_net(NETS[name], configs, a.batch, a.turns, a.steps, a.device)
        print_table(f"{name} ({NETS[name].loss} loss)", rows)
        results[name] = rows
    if a.json is not None:
        a.json.write_text(json.dumps({"machine": info, "batch": a.batch, "turns": a.turns, "steps": a.steps,
                                      "device": a.device, "quick": a.quick, "skipped": skipped, "nets": results},
                                     indent=1) + "\n")


if __name__ == "__main__":
    main()
