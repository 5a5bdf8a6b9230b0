"""Contracts over every step implementation and every regularizer the library ships.

- Each implementation :func:`~torchgan_lite.build_step` offers (eager, compiled, fused, and the
  CUDA graph where CUDA is present) gives the eager step's losses on the same batch and noise.
- Each regularizer in :mod:`torchgan_lite.losses.penalties` is value-only (never ``backward()``),
  gives a finite float32 scalar with a gradient to the discriminator, and round-trips its state.
A new implementation or regularizer fails ``test_*_are_all_covered`` until it is added here.
"""

from __future__ import annotations

import copy
import inspect
import math

import pytest
import torch
from torch import nn

from torchgan_lite import IMPLEMENTATIONS, NonSaturatingLoss, StepConfig, build_step
from torchgan_lite.losses import penalties

from .conftest import tiny_models

LATENT = 8


def _data() -> torch.Tensor:
    return torch.rand(16, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1  # (16, 1, 4, 4)


def _losses(implementation: str, device: str = "cpu", steps: int = 3) -> list[list[float]]:
    torch.manual_seed(0)
    g, d = tiny_models(latent=LATENT)
    step = build_step(g, d, NonSaturatingLoss(), StepConfig(implementation=implementation, nonfinite=0),
                      g_optimizer=torch.optim.Adam(g.parameters(), lr=2e-3),
                      d_optimizer=torch.optim.Adam(d.parameters(), lr=2e-3), device=device)
    real = _data().to(device)
    torch.manual_seed(1)  # the same noise for every implementation: all draw it eagerly, in the same order
    out = []
    for _ in range(steps):
        r = step.step(real)
        out.append([float(r.d_loss), float(r.g_loss), float(r.d_real), float(r.d_fake)])
    return out


def _devices(impl: str) -> list[str]:
    return ["cuda"] if impl == "cuda_graph" else ["cpu"]


CASES = [pytest.param(impl, dev, marks=[pytest.mark.skipif(dev == "cuda" and not torch.cuda.is_available(),
                                                               reason="the CUDA graph step needs a CUDA device")])
         for impl in IMPLEMENTATIONS if impl != "eager" for dev in _devices(impl)]


@pytest.mark.parametrize(("implementation", "device"), CASES)
def test_every_implementation_gives_the_eager_losses(implementation, device):
    if implementation == "compiled":
        torch._dynamo.reset()
    ref = _losses("eager", device)
    got = _losses(implementation, device)
    assert ref[0] != ref[-1]  # the steps really trained
    torch.testing.assert_close(torch.tensor(got), torch.tensor(ref), rtol=1e-4, atol=1e-5)


def test_the_implementations_are_all_covered():
    covered = {"eager"} | {p.values[0] for p in CASES}
    assert covered == set(IMPLEMENTATIONS)


# --------------------------------------------------------------------------- regularizers

#: One instance of each regularizer class, with the arguments it needs.
FACTORIES = {
    "GradientPenalty": lambda: penalties.GradientPenalty(),
    "R1Penalty": lambda: penalties.R1Penalty(1.0),
    "R2Penalty": lambda: penalties.R2Penalty(1.0),
    "LeCamRegularizer": lambda: penalties.LeCamRegularizer(0.1),
    "LazyRegularizer": lambda: penalties.LazyRegularizer(penalties.R1Penalty(1.0), every=1),
    "LazyRegularizer(LeCam)": lambda: penalties.LazyRegularizer(penalties.LeCamRegularizer(0.1), every=1),
}


def _shipped() -> set[str]:
    return {name for name in penalties.__all__
            if inspect.isclass(getattr(penalties, name)) and name != "Regularizer"}


def test_the_regularizers_are_all_covered():
    covered = {name.split("(")[0] for name in FACTORIES}
    assert _shipped() <= covered, _shipped() - covered


def _discriminator() -> nn.Module:
    torch.manual_seed(0)
    d = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(0))
    for p in d.parameters():
        p.grad = torch.full_like(p, 0.5)  # left by an earlier backward: a regularizer must not touch it
    return d


def _value(reg: object, d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    if getattr(reg, "uses_logits", False):
        return reg(d(real), d(fake))  # type: ignore[operator]
    return reg(d, real, fake)  # type: ignore[operator]


@pytest.mark.parametrize("name", [n for n in FACTORIES if n.split("(")[0] in _shipped()])
def test_every_regularizer_is_value_only_with_a_gradient_to_the_discriminator(name):
    reg = FACTORIES[name]()
    d = _discriminator()
    before = [p.grad.clone() for p in d.parameters()]
    gen = torch.Generator().manual_seed(3)
    real, fake = torch.rand(6, 1, 4, 4, generator=gen) * 2 - 1, torch.rand(6, 1, 4, 4, generator=gen) * 2 - 1
    value = _value(reg, d, real, fake)
    assert value.dim() == 0 and value.dtype == torch.float32 and math.isfinite(value.item())
    assert all(torch.equal(p.grad, b) for p, b in zip(d.parameters(), before))  # no backward() inside
    grads = [g for g in torch.autograd.grad(value, list(d.parameters()), allow_unused=True) if g is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and sum(g.abs().sum() for g in grads) > 0


@pytest.mark.parametrize("name", [n for n in FACTORIES if n.split("(")[0] in _shipped()])
def test_every_regularizer_round_trips_its_state(name):
    reg = FACTORIES[name]()
    d = _discriminator()
    gen = torch.Generator().manual_seed(4)
    for _ in range(3):  # let a stateful one (LeCam's EMAs, Lazy's counter) move
        _value(reg, d, torch.rand(6, 1, 4, 4, generator=gen), torch.rand(6, 1, 4, 4, generator=gen))
    if not hasattr(reg, "state_dict"):
        assert not hasattr(reg, "load_state_dict")
        return
    fresh = FACTORIES[name]()
    fresh.load_state_dict(copy.deepcopy(reg.state_dict()))
    real, fake = torch.rand(6, 1, 4, 4, generator=gen), torch.rand(6, 1, 4, 4, generator=gen)
    torch.manual_seed(5)
    a = _value(reg, d, real, fake)
    torch.manual_seed(5)
    b = _value(fresh, d, real, fake)
    torch.testing.assert_close(a, b)
