"""Loss contracts, one test parametrized over every loss; penalties against direct autograd."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchgan_lite.losses import adversarial as losses
from torchgan_lite.losses import penalties

# Each loss with the logit range on which its objective is monotone (LSGAN pulls
# real logits to 1 and fake ones to 0, so it is monotone only up to its targets).
ALL_LOSSES = [
    (losses.NonSaturatingLoss(), (-20.0, 20.0), (-20.0, 20.0)),
    (losses.NonSaturatingLoss(real_label=0.9), (-20.0, 2.0), (-20.0, 20.0)),
    (losses.MinimaxLoss(), (-20.0, 20.0), (-20.0, 20.0)),
    (losses.LeastSquaresLoss(), (-20.0, 1.0), (0.0, 20.0)),
    (losses.WassersteinLoss(), (-20.0, 20.0), (-20.0, 20.0)),
    (losses.HingeLoss(), (-20.0, 20.0), (-20.0, 20.0)),
]
IDS = [f"{type(loss).__name__}-{i}" for i, (loss, _, _) in enumerate(ALL_LOSSES)]


@pytest.mark.parametrize(("loss", "real_range", "fake_range"), ALL_LOSSES, ids=IDS)
@settings(max_examples=30, deadline=None)
@given(data=st.data(), n=st.integers(1, 16), delta=st.floats(0.01, 5.0))
def test_loss_contract(loss, real_range, fake_range, data, n, delta):
    lo_r, hi_r = real_range
    lo_f, hi_f = fake_range
    floats = st.floats(lo_r, hi_r - delta)
    real = torch.tensor(data.draw(st.lists(floats, min_size=n, max_size=n)), dtype=torch.float32)
    fake = torch.tensor(data.draw(st.lists(st.floats(lo_f + delta, hi_f), min_size=n, max_size=n)),
                        dtype=torch.float32)
    d = loss.discriminator_loss(real, fake)
    g = loss.generator_loss(fake)
    for value in (d, g):
        assert value.dim() == 0 and torch.isfinite(value)
    # The discriminator loss never rises as real logits rise or fake logits fall ...
    assert loss.discriminator_loss(real + delta, fake) <= d + 1e-5
    assert loss.discriminator_loss(real, fake - delta) <= d + 1e-5
    # ... and the generator loss never rises as fake logits rise (within the monotone range).
    if fake.max() + delta <= hi_f and (not isinstance(loss, losses.LeastSquaresLoss) or fake.max() + delta <= 1):
        assert loss.generator_loss(fake + delta) <= g + 1e-5


@pytest.mark.parametrize(("loss", "real_range", "fake_range"), ALL_LOSSES, ids=IDS)
def test_loss_is_differentiable_and_computes_no_backward(loss, real_range, fake_range):
    real = torch.randn(8, requires_grad=True)
    fake = torch.randn(8, requires_grad=True)
    d = loss.discriminator_loss(real, fake)
    assert real.grad is None and fake.grad is None  # computing a loss ran no backward
    d.backward()
    assert real.grad is not None and fake.grad is not None


def test_nonsaturating_equals_recipe_bce_on_sigmoid():
    torch.manual_seed(0)
    real, fake = torch.randn(128) * 3, torch.randn(128) * 3
    bce = torch.nn.BCELoss()
    loss = losses.NonSaturatingLoss()
    d_ref = bce(torch.sigmoid(real), torch.ones(128)) + bce(torch.sigmoid(fake), torch.zeros(128))
    g_ref = bce(torch.sigmoid(fake), torch.ones(128))
    torch.testing.assert_close(loss.discriminator_loss(real, fake), d_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(loss.generator_loss(fake), g_ref, atol=1e-6, rtol=0)


def test_minimax_is_log_one_minus_d():
    fake = torch.linspace(-4, 4, 9)
    expected = torch.log1p(-torch.sigmoid(fake)).mean()
    torch.testing.assert_close(losses.MinimaxLoss().generator_loss(fake), expected)


def test_label_smoothing_changes_only_the_real_term():
    real, fake = torch.randn(16), torch.randn(16)
    smooth = losses.NonSaturatingLoss(real_label=0.9).discriminator_loss(real, fake)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(real, torch.full_like(real, 0.9)) + bce(fake, torch.zeros_like(fake))
    torch.testing.assert_close(smooth, expected)


@pytest.mark.parametrize("bad", [0.0, 1.5, float("nan"), "1"])
def test_bad_real_label(bad):
    with pytest.raises(ValueError, match="real_label"):
        losses.NonSaturatingLoss(real_label=bad)


def _critic():
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1),
                               torch.nn.Flatten(0))


def test_gradient_penalty_matches_direct_autograd():
    d = _critic()
    real, fake = torch.randn(6, 3, 4), torch.randn(6, 3, 4)
    torch.manual_seed(11)
    penalty = penalties.GradientPenalty(weight=10.0)(d, real, fake)
    torch.manual_seed(11)
    alpha = torch.rand(6, 1, 1)  # one coefficient per sample, drawn the same way
    x = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x).sum(), x)
    expected = 10.0 * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
    torch.testing.assert_close(penalty, expected, rtol=1e-5, atol=1e-6)


def test_gradient_penalty_uses_one_coefficient_per_sample():
    # A critic linear in x has a constant gradient: the penalty is then the same for
    # any interpolation, so compare against a non-linear check instead: with real ==
    # fake the interpolate is real itself whatever alpha is.
    d = _critic()
    real = torch.randn(5, 3, 4)
    p1 = penalties.GradientPenalty()(d, real, real.clone())
    x = real.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x).sum(), x)
    torch.testing.assert_close(p1, 10.0 * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean(), rtol=1e-5, atol=1e-6)


def test_r1_penalty_matches_direct_autograd_and_backpropagates():
    d = _critic()
    real = torch.randn(7, 3, 4)
    penalty = penalties.R1Penalty(gamma=4.0)(d, real, torch.zeros_like(real))
    x = real.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x).sum(), x)
    torch.testing.assert_close(penalty, 2.0 * grad.flatten(1).pow(2).sum(1).mean(), rtol=1e-5, atol=1e-6)
    penalty.backward()
    first = d[1].weight  # the penalty depends on the weights (not on the last bias)
    assert first.grad is not None and torch.isfinite(first.grad).all() and first.grad.abs().sum() > 0


@pytest.mark.parametrize(("cls", "kw"), [(penalties.GradientPenalty, {"weight": -1.0}),
                                         (penalties.R1Penalty, {"gamma": float("inf")})])
def test_penalties_reject_bad_weights(cls, kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        cls(**kw)
