"""How one benchmark case is built, timed and recorded.

A case is a *runner*: something whose ``run(k)`` does ``k`` training steps and then
synchronises once (``torch.cuda.synchronize()`` on CUDA; on the CPU, where every
kernel has finished when it returns, one loss is read). pytest-benchmark times
``run(k)`` for ``plan.warmup`` untimed rounds and then ``plan.rounds`` timed rounds
(``benchmark.pedantic``, one iteration a round); the median round gives the rates.

Peak memory covers everything from just before the models are built to the end of
the last round: weights, optimizer state, gradients, activations, the batches a
loader makes. The data set itself (built before) is not counted.

- CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``,
  minus ``memory_allocated()`` at the start: bytes held by live tensors, not the
  caching allocator's reserve.
- CPU: growth of the process's peak resident set. Free heap pages are first handed
  back to the kernel (``malloc_trim(0)``) so that memory freed by an earlier case
  cannot be reused unseen, the kernel's high-water mark is reset (write ``5`` to
  ``/proc/self/clear_refs``), and the figure is ``VmHWM`` at the end minus ``VmRSS``
  at the start. It counts what the process really touched, allocator overhead and
  fragmentation included, so it is a little noisier than the CUDA figure. Where
  ``clear_refs`` cannot be written it falls back to the growth of ``ru_maxrss``,
  which is only a lower bound (0 when an earlier case peaked higher) and says so.
"""

from __future__ import annotations

import ctypes
import gc
import math
import platform
import resource
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset

from torchgan_lite import GANTrainer, StepConfig, TensorLoader
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.nets import layers
from torchgan_lite.nets import mlp as models

from .plain_step import tutorial_adam
from .reference_loop import ReferenceLoop, endless_batches, mnist_dataloader
from .variants import Plan, Variant

__all__ = [
    "PeakMemory",
    "Runner",
    "device_name",
    "end_to_end_runner",
    "make_trainer",
    "measure",
    "paired_ratios",
    "step_runner",
    "synthetic_batches",
]


class Runner(Protocol):
    """What :func:`measure` times."""

    def run(self, k: int) -> None:
        """Do ``k`` training steps, then synchronise once."""

    def last_loss(self) -> float:
        """The generator loss of the last step, read on the host (outside the timing)."""


# ---------------------------------------------------------------------- memory


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to trim


def _reset_rss_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


class PeakMemory:
    """Context manager measuring peak memory growth on one device (see the module docstring).

    Attributes:
        peak_bytes: The growth, set on exit.
        method: How it was measured, in words (recorded with the figures).
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak_bytes = 0
        self.method = ""
        self._start = 0

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
            self.method = "CUDA max_memory_allocated growth"
            return self
        _malloc_trim()
        if _reset_rss_peak() and _status_kib("VmRSS") is not None:
            self._start = 1024 * (_status_kib("VmRSS") or 0)
            self.method = "peak RSS growth (VmHWM reset via clear_refs, after malloc_trim)"
        else:
            self._start = 1024 * resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.method = "ru_maxrss growth (lower bound)"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            end = torch.cuda.max_memory_allocated()
        elif self.method.startswith("peak RSS"):
            end = 1024 * (_status_kib("VmHWM") or 0)
        else:
            end = 1024 * resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.peak_bytes = max(0, end - self._start)


# ---------------------------------------------------------------------- runners


def device_name(device: str) -> str:
    """The processor in words: the GPU's name, or the CPU model and torch's thread count."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model} ({torch.get_num_threads()} threads)"


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def synthetic_batches(batch: int, device: str, count: int = 4, seed: int = 0) -> list[torch.Tensor]:
    """``count`` device-resident batches ``(batch, 1, 28, 28)`` uniform in [-1, 1]."""
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(batch, 1, 28, 28, generator=gen) * 2 - 1).to(device) for _ in range(count)]


def make_trainer(variant: Variant, device: str, **overrides: Any) -> GANTrainer:
    """The reference models in a ``GANTrainer`` configured by ``variant`` (then ``overrides``)."""
    assert variant.trainer_kwargs is not None
    kwargs = {**variant.trainer_kwargs, **overrides}
    generator, discriminator = models.mlp_generator(**variant.g_kwargs), models.mlp_discriminator(**variant.d_kwargs)
    if variant.onednn:
        layers.use_onednn_linear(generator)
        layers.use_onednn_linear(discriminator)
    if variant.optimizer == "tutorial":
        kwargs.setdefault("g_optimizer", tutorial_adam(generator.parameters()))
        kwargs.setdefault("d_optimizer", tutorial_adam(discriminator.parameters()))
    return GANTrainer(generator, discriminator, losses.NonSaturatingLoss(), device=device, **trainer_arguments(kwargs))


def trainer_arguments(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A variant's keywords as ``GANTrainer``'s: the step's options (``compile=True``, ``capture=...``,
    ``amp``, ``nonfinite``...) gathered into one :class:`~torchgan_lite.StepConfig`."""
    kw = dict(kwargs)
    step: dict[str, Any] = {k: kw.pop(k) for k in ("n_critic", "regularizers", "amp", "augment", "nonfinite")
                            if k in kw}
    if kw.pop("compile", False):
        step["implementation"] = "compiled"
    if kw.get("capture"):
        step["implementation"] = kw.pop("capture")
    kw.pop("capture", None)
    if kw.get("step_class") is not None:
        step["implementation"] = kw.pop("step_class")
    kw.pop("step_class", None)
    return {**kw, "step": StepConfig(**step)}


@dataclass
class _TrainerSteps:
    trainer: GANTrainer
    batches: list[torch.Tensor]
    device: str

    def run(self, k: int) -> None:
        n = len(self.batches)
        for i in range(k):
            result = self.trainer.train_step(self.batches[i % n])
        if self.device == "cuda":
            torch.cuda.synchronize()
        else:
            float(result.g_loss)  # the one read of the round

    def last_loss(self) -> float:
        assert self.trainer.state.last is not None
        return float(self.trainer.state.last.g_loss)


@dataclass
class _ReferenceSteps:
    loop: ReferenceLoop
    batches: Any  # a list of device-resident batches, or an endless iterator of loader batches
    device: str

    def run(self, k: int) -> None:
        if isinstance(self.batches, list):
            n = len(self.batches)
            for i in range(k):
                self.loop.step(self.batches[i % n])  # reads both losses with .item(), as the tutorial does
        else:
            for _ in range(k):
                self.loop.step(next(self.batches))
        _sync(self.device)

    def last_loss(self) -> float:
        return self.loop.history[-1][1]


@dataclass
class _TrainerFit:
    trainer: GANTrainer
    loader: TensorLoader
    device: str

    def run(self, k: int) -> None:
        st = self.trainer.state
        self.trainer.fit(self.loader, epochs=10**9, max_steps=st.step + k)
        if self.device == "cuda":
            torch.cuda.synchronize()
        else:
            assert st.last is not None
            float(st.last.g_loss)

    def last_loss(self) -> float:
        assert self.trainer.state.last is not None
        return float(self.trainer.state.last.g_loss)


def step_runner(variant: Variant, device: str, batches: list[torch.Tensor]) -> Runner:
    """Training steps on device-resident batches: no data loading.

    A captured variant (``capture=...``) replays its graph only inside ``fit`` over a
    ``TensorLoader``, so it runs ``fit`` over the same batches stacked into one tensor.
    """
    if variant.is_baseline:
        return _ReferenceSteps(ReferenceLoop.create(device), batches, device)
    assert variant.trainer_kwargs is not None
    if variant.trainer_kwargs.get("capture"):
        images = torch.cat(batches)  # (count * batch, 1, 28, 28)
        return _TrainerFit(make_trainer(variant, device), TensorLoader(images, batch_size=batches[0].shape[0]),
                           device)
    return _TrainerSteps(make_trainer(variant, device), batches, device)


def end_to_end_runner(variant: Variant, device: str, batch: int, images: torch.Tensor | None,
                      reference_dataset: Dataset | None) -> Runner:
    """Training steps with their data loading.

    Args:
        variant: What to run.
        device: Where.
        batch: Batch size.
        images: The library's decoded MNIST ``(N, 1, 28, 28)`` on ``device`` (library variants).
        reference_dataset: The tutorial's torchvision MNIST with its transforms (the baseline),
            batched here by the tutorial's ``DataLoader``.
    """
    if variant.is_baseline:
        assert reference_dataset is not None
        loader = mnist_dataloader(reference_dataset, batch)
        return _ReferenceSteps(ReferenceLoop.create(device), endless_batches(loader), device)
    assert images is not None
    return _TrainerFit(make_trainer(variant, device), TensorLoader(images, batch_size=batch), device)


# ---------------------------------------------------------------------- timing


def paired_ratios(runner: Runner, baseline: Runner, steps: int, rounds: int) -> list[float]:
    """Baseline round time over ``runner``'s round time, for ``rounds`` back-to-back pairs.

    The two run one round each in turn (which goes first alternates), so a machine whose
    speed drifts over minutes (a shared VM) slows both sides of a pair alike and the
    ratio keeps its meaning where separately timed cases would not.
    """
    ratios = []
    for i in range(rounds):
        timed: dict[int, float] = {}
        for who in ((baseline, runner) if i % 2 == 0 else (runner, baseline)):
            t0 = time.perf_counter()
            who.run(steps)
            timed[id(who)] = time.perf_counter() - t0
        ratios.append(timed[id(baseline)] / timed[id(runner)])
    return ratios


def measure(benchmark: Any, *, kind: str, variant: Variant, device: str, batch: int, plan: Plan,
            build: Callable[[], Runner], pair_with: Callable[[], Runner] | None = None) -> dict[str, Any]:
    """Build the runner, time it with ``benchmark.pedantic`` and record the figures.

    The first step is run and timed on its own before the rounds (``first_step_s``); what
    it takes beyond a steady step is recorded as ``compile_s``: for a compiled step, its
    compilation, reported apart from the steady-state rates.

    With ``pair_with`` (a builder of the baseline's runner), the case then also runs
    :func:`paired_ratios` after its timed rounds, outside the memory measurement, and
    records their median as ``paired_ratio`` (with ``paired_ratio_min``/``_max``).

    Args:
        benchmark: pytest-benchmark's fixture.
        kind: ``"step"`` or ``"end_to_end"``.
        variant: The variant (for the record).
        device: ``"cpu"`` or ``"cuda"``.
        batch: Images per step.
        plan: Steps per round, rounds, warm-up rounds.
        build: Makes the runner (inside the memory measurement).
        pair_with: Makes the baseline's runner for the paired rounds, or None.

    Returns:
        The ``extra_info`` written (steps/s, images/s, peak memory, ...).
    """
    benchmark.group = f"{kind} {device} batch={batch}"
    torch.manual_seed(0)
    with PeakMemory(device) as mem:
        runner = build()
        t0 = time.perf_counter()
        runner.run(1)  # the first step: optimizer state, and for a compiled step its compilation
        first_step_s = time.perf_counter() - t0
        benchmark.pedantic(runner.run, args=(plan.steps,), rounds=plan.rounds,
                           warmup_rounds=plan.warmup, iterations=1)
    loss = runner.last_loss()
    if not math.isfinite(loss):
        raise AssertionError(f"{variant.name} on {device} at batch {batch}: the last G loss is {loss}")
    info: dict[str, Any] = {
        "kind": kind,
        "variant": variant.name,
        "device": device,
        "device_name": device_name(device),
        "batch": batch,
        "steps_per_round": plan.steps,
        "rounds": plan.rounds,
        "warmup_rounds": plan.warmup,
        "peak_mem_bytes": mem.peak_bytes,
        "mem_method": mem.method,
        "torch": torch.__version__,
        "last_g_loss": loss,
        "first_step_s": first_step_s,
    }
    stats = getattr(benchmark.stats, "stats", None) if benchmark.stats is not None else None
    if stats is not None and stats.median > 0:  # None under --benchmark-disable
        steps_per_s = plan.steps / stats.median
        info.update(median_round_s=stats.median, steps_per_s=steps_per_s, images_per_s=steps_per_s * batch,
                    ms_per_step=1e3 / steps_per_s, compile_s=max(0.0, first_step_s - 1 / steps_per_s))
        if pair_with is not None:
            baseline = pair_with()
            for _ in range(plan.warmup):
                baseline.run(plan.steps)
            ratios = paired_ratios(runner, baseline, plan.steps, plan.rounds)
            info.update(paired_ratio=statistics.median(ratios), paired_ratio_min=min(ratios),
                        paired_ratio_max=max(ratios), paired_rounds=len(ratios))
    benchmark.extra_info.update(info)
    return info
