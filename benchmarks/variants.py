"""The table of what is benchmarked: variants, devices, batch sizes, steps per round.

Adding a variant is one line in :data:`VARIANTS`: a name and the keyword arguments
given to :class:`torchgan_lite.GANTrainer` (``None`` means the tutorial's loop from
:mod:`benchmarks.reference_loop`, the baseline). A variant whose keywords the
installed ``GANTrainer`` does not accept, or that the device cannot run, is skipped
with the reason, so a line may be added before the option lands.

``plain`` is the tutorial's step on the library's ``nn.Linear``/``nn.Dropout`` models
(:class:`benchmarks.plain_step.TutorialLiteralStep`, through ``step_class``); ``default``
is ``GANTrainer(...)`` with the builders' defaults; ``compiled`` is ``compile=True``
(:class:`torchgan_lite.training.compiled.CompiledGANStep`), whose first steps compile (the
harness reports that time apart from the steady state).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

from torchgan_lite.training.fused import FusedDiscriminatorStep

from .plain_step import TutorialLiteralStep, TwoCallStep

__all__ = [
    "BASELINE",
    "BATCH_SIZES",
    "DEVICES",
    "END_TO_END_PLAN",
    "STEP_PLAN",
    "VARIANTS",
    "Plan",
    "Variant",
    "plan_for",
    "variant_by_name",
]


def _unknown_options(fn: Any, kwargs: Mapping[str, Any]) -> list[str]:
    accepted = inspect.signature(fn).parameters
    return sorted(set(kwargs) - set(accepted))


@dataclass(frozen=True)
class Variant:
    """One way of running the training step.

    Attributes:
        name: Short label used in test ids and the report (``"fast+bf16"``).
        trainer_kwargs: Keywords for ``GANTrainer(...)``; ``None``: the reference loop.
        d_kwargs: Keywords for ``models.mlp_discriminator(...)`` (library variants).
        g_kwargs: Keywords for ``models.mlp_generator(...)`` (library variants).
        devices: Device types it runs on (``"cpu"``, ``"cuda"``).
        needs_bf16: Skip where the device has no bfloat16 support.
        end_to_end: Also run it in the end-to-end benchmark. The library's variants
            share one data path, so a single option that only changes the step is
            measured by the step benchmark and left out here to keep the run short.
        onednn: Opt both networks into :func:`torchgan_lite.nets.layers.use_onednn_linear` (the
            private oneDNN operator) after building them.
        optimizer: ``"tutorial"``: both networks get :func:`benchmarks.plain_step.tutorial_adam`
            instead of the trainer's default fused Adam.
    """

    name: str
    trainer_kwargs: Mapping[str, Any] | None
    d_kwargs: Mapping[str, Any] = field(default_factory=dict)
    g_kwargs: Mapping[str, Any] = field(default_factory=dict)
    devices: tuple[str, ...] = ("cpu", "cuda")
    needs_bf16: bool = False
    end_to_end: bool = True
    onednn: bool = False
    optimizer: str | None = None

    def __post_init__(self) -> None:
        for name in ("trainer_kwargs", "d_kwargs", "g_kwargs"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, MappingProxyType(dict(value)))

    @property
    def is_baseline(self) -> bool:
        """Whether this is the tutorial's loop rather than the library."""
        return self.trainer_kwargs is None

    def skip_reason(self, device: str) -> str | None:
        """Why this variant cannot run on ``device`` here, or None when it can."""
        if device not in self.devices:
            return f"{self.name} is not defined on {device} (only on {', '.join(self.devices)})"
        if device == "cuda" and not torch.cuda.is_available():
            return "CUDA is not available on this machine"
        if self.needs_bf16 and device == "cuda" and not torch.cuda.is_bf16_supported():
            return f"{torch.cuda.get_device_name()} has no bfloat16 support"
        if self.trainer_kwargs is not None:
            from torchgan_lite.nets import mlp as models

            for what, fn, kwargs in (("GANTrainer", _trainer_options, self.trainer_kwargs),
                                     ("mlp_discriminator", models.mlp_discriminator, self.d_kwargs),
                                     ("mlp_generator", models.mlp_generator, self.g_kwargs)):
                unknown = _unknown_options(fn, kwargs)
                if unknown:
                    return f"this {what} has no option {', '.join(unknown)}"
        return None


def _trainer_options(*, g_optimizer: Any = None, d_optimizer: Any = None, latent_dim: Any = None,
                     distributed: Any = None, n_critic: Any = 1, regularizers: Any = (), amp: Any = None,
                     augment: Any = None, nonfinite: Any = "auto", compile: Any = False, capture: Any = None,
                     step_class: Any = None) -> None:
    """The keywords a variant may set: ``GANTrainer``'s own and its ``StepConfig``'s
    (``compile``/``capture``/``step_class`` name the implementation; see ``harness.trainer_arguments``)."""


BASELINE = "baseline"

#: The variants, in report order. One line each.
VARIANTS: tuple[Variant, ...] = (
    Variant(BASELINE, None),  # the tutorial's loop, D step called
    # The tutorial's step, literally, on the library's nn.Linear/nn.Dropout models (benchmarks/plain_step.py).
    Variant("plain", {"step_class": TutorialLiteralStep}, d_kwargs={"fast_layers": False},
            g_kwargs={"fast_layers": False}, optimizer="tutorial"),
    Variant("default", {}),  # GANTrainer(...) with the builders' defaults: public PyTorch only
    Variant("default+bf16", {"amp": "bf16"}, needs_bf16=True),  # bf16 autocast
    # The default step with nn.Linear/nn.Dropout (fast_layers=False): what MaskDropout adds.
    Variant("nn_layers", {}, d_kwargs={"fast_layers": False}, g_kwargs={"fast_layers": False}, end_to_end=False),
    # The opt-in oneDNN Linear (a private operator; layers.use_onednn_linear) on the default step.
    Variant("onednn", {}, onednn=True, end_to_end=False),
    # One D call on cat([real, fake]), forced (what `default` now does for the MLP discriminator,
    # which declares independent_samples); `two_calls` is the default step as it was before, D(real), D(fake).
    Variant("fused_d", {"step_class": FusedDiscriminatorStep}, end_to_end=False),
    Variant("two_calls", {"step_class": TwoCallStep}, end_to_end=False),
    # The step through torch.compile (CompiledGANStep), fp32 and bf16.
    Variant("compiled", {"compile": True}),
    Variant("compiled+bf16", {"compile": True, "amp": "bf16"}, needs_bf16=True),
    # The whole step as one CUDA graph (torchgan_lite.graphed), fp32 and bf16.
    Variant("graph", {"capture": "cuda_graph"}, devices=("cuda",)),
    Variant("graph+bf16", {"capture": "cuda_graph", "amp": "bf16"}, devices=("cuda",), needs_bf16=True),
)


def variant_by_name(name: str) -> Variant:
    """The entry of :data:`VARIANTS` called ``name``."""
    for v in VARIANTS:
        if v.name == name:
            return v
    raise ValueError(f"no variant named {name!r}; the variants are {[v.name for v in VARIANTS]}")


DEVICES: tuple[str, ...] = ("cpu", "cuda")
BATCH_SIZES: tuple[int, ...] = (128, 512, 2048)


@dataclass(frozen=True)
class Plan:
    """How one case is timed: ``rounds`` timed rounds of ``steps`` steps after ``warmup`` rounds."""

    steps: int
    rounds: int
    warmup: int = 1


# Steps per round fall with the batch so that each case costs about the same time.
# A batch-2048 step is about 16x a batch-128 step on a 2-core CPU; a CUDA step is
# launch-bound, so it needs many more steps per round to be timed well.
STEP_PLAN: Mapping[tuple[str, int], Plan] = MappingProxyType({
    ("cpu", 128): Plan(steps=20, rounds=5),
    ("cpu", 512): Plan(steps=6, rounds=5),
    ("cpu", 2048): Plan(steps=2, rounds=4),
    ("cuda", 128): Plan(steps=200, rounds=5, warmup=2),
    ("cuda", 512): Plan(steps=200, rounds=5, warmup=2),
    ("cuda", 2048): Plan(steps=100, rounds=5, warmup=2),
})

# End to end: K steps of a started epoch per round (the first, warm-up round starts it).
END_TO_END_PLAN: Mapping[tuple[str, int], Plan] = MappingProxyType({
    ("cpu", 128): Plan(steps=50, rounds=3),
    ("cpu", 512): Plan(steps=12, rounds=3),
    ("cpu", 2048): Plan(steps=3, rounds=3),
    ("cuda", 128): Plan(steps=200, rounds=3),
    ("cuda", 512): Plan(steps=100, rounds=3),
    ("cuda", 2048): Plan(steps=50, rounds=3),
})


def plan_for(plans: Mapping[tuple[str, int], Plan], device: str, batch: int, quick: bool = False,
             scale: float = 1.0) -> Plan:
    """The plan of one case.

    Args:
        plans: :data:`STEP_PLAN` or :data:`END_TO_END_PLAN`.
        device: ``"cpu"`` or ``"cuda"``.
        batch: Batch size.
        quick: A smoke run (env ``TORCHGAN_LITE_BENCH_QUICK=1``): a tenth of the steps, one round.
        scale: Multiplies steps and rounds, rounding up (env ``TORCHGAN_LITE_BENCH_SCALE``);
            for a shorter, noisier measurement on a busy machine.
    """
    plan = plans[(device, batch)]
    if quick:
        return Plan(steps=max(1, plan.steps // 10), rounds=1, warmup=1)
    if scale != 1.0:
        return Plan(steps=max(1, math.ceil(plan.steps * scale)), rounds=max(1, math.ceil(plan.rounds * scale)),
                    warmup=plan.warmup)
    return plan
