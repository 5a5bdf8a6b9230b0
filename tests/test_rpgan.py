"""R3GAN's objective: the relativistic pairing loss (RpGAN) and the R1/R2 penalties, each against a closed form.

- RpGAN's two sides against ``log(1 + exp(.))`` written out by hand, their symmetry, the
  pairing (no broadcasting), finite gradients at huge logits;
- the step: a ``needs_real_logits`` loss gets D's logits on the real batch in the generator
  update (and only such a loss: the others' update calls D once, as before), in the eager,
  fused, compiled and (on CUDA) graphed steps;
- R1 and R2 against discriminators whose input gradient is known in closed form, R2 detached
  from G, both inside the D update's loss;
- a short RpGAN + R1 + R2 run on a 2-D toy, and the ``rpgan-r1r2`` recipe.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from torchgan_lite import Event, GANStep, GANTrainer, StepConfig, TensorLoader, seed_everything
from torchgan_lite.callbacks.ema import GeneratorEMA
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.losses import penalties
from torchgan_lite.losses.penalties import LazyRegularizer
from torchgan_lite.nets import conditional
from torchgan_lite.nets import mlp as models
from torchgan_lite.recipes import LOSSES, SPECS, build_parts, make_loss
from torchgan_lite.training.compiled import CompiledGANStep
from torchgan_lite.training.fused import FusedDiscriminatorStep

from .conftest import tiny_models

RP = losses.RelativisticPairingLoss()


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))  # log(1 + e^v), by hand


def _step(cls: type[GANStep] = GANStep, loss=RP, seed: int = 0, **options) -> GANStep:
    """A step over tiny nets (dropout off), built in one place so the step options are easy to migrate."""
    torch.manual_seed(seed)
    g, d = tiny_models(latent=8, dropout=0.0)
    g_opt = torch.optim.Adam(g.parameters(), lr=2e-3, betas=(0.0, 0.99))
    d_opt = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.0, 0.99))
    return cls(g, d, loss, g_opt, d_opt, latent_dim=8, **options)


def _trainer(generator: nn.Module, discriminator: nn.Module, loss, **step_options) -> GANTrainer:
    """The one place a test builds a trainer with step options (StepConfig)."""
    return GANTrainer(generator, discriminator, loss, step=StepConfig(**step_options))


def _data(n: int = 64) -> torch.Tensor:
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1  # (n, 1, 4, 4)


def _count_calls(module: nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_pre_hook(lambda m, args: calls.__setitem__(0, calls[0] + 1))
    return calls


# --------------------------------------------------------------------------- the loss, closed form


REAL = [2.0, -1.0, 0.5, 3.0]
FAKE = [0.0, 1.0, 3.0, -2.0]


def test_rpgan_losses_match_the_softplus_written_out():
    real, fake = torch.tensor(REAL), torch.tensor(FAKE)
    d_expected = sum(_softplus(-(r - f)) for r, f in zip(REAL, FAKE)) / len(REAL)
    g_expected = sum(_softplus(-(f - r)) for r, f in zip(REAL, FAKE)) / len(REAL)
    for d_value in (RP.discriminator_loss(real, fake), losses.relativistic_pairing_discriminator_loss(real, fake)):
        assert d_value.dim() == 0 and d_value.dtype == torch.float32
        assert float(d_value) == pytest.approx(d_expected, rel=1e-6)
    for g_value in (RP.generator_loss(fake, real), losses.relativistic_pairing_generator_loss(fake, real)):
        assert float(g_value) == pytest.approx(g_expected, rel=1e-6)


def test_generator_loss_is_the_discriminator_loss_with_the_roles_swapped():
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(32, generator=gen) * 3, torch.randn(32, generator=gen) * 3
    torch.testing.assert_close(RP.generator_loss(fake, real), RP.discriminator_loss(fake, real))
    torch.testing.assert_close(RP.discriminator_loss(real, fake), RP.generator_loss(real, fake))
    # Relativistic: adding one constant to every logit changes neither side (a fixed-target loss would change).
    torch.testing.assert_close(RP.discriminator_loss(real + 5, fake + 5), RP.discriminator_loss(real, fake))
    assert not torch.allclose(losses.NonSaturatingLoss().discriminator_loss(real + 5, fake + 5),
                              losses.NonSaturatingLoss().discriminator_loss(real, fake))


def test_rpgan_pairs_sample_by_sample_and_refuses_to_broadcast():
    real, fake = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    # The pairs (1, 0) and (0, 1), not all four cross pairs (whose mean adds two softplus(0) terms).
    value = float(RP.discriminator_loss(real, fake))
    assert value == pytest.approx((_softplus(-1) + _softplus(1)) / 2)
    assert value != pytest.approx((_softplus(-1) + _softplus(1) + 2 * _softplus(0)) / 4)
    with pytest.raises(ValueError, match=r"real_logits.*fake_logits"):
        RP.discriminator_loss(torch.zeros(4), torch.zeros(4, 1))  # (4,) against (4, 1) would broadcast to 16 pairs
    with pytest.raises(ValueError, match=r"fake_logits.*real_logits"):
        losses.relativistic_pairing_generator_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(TypeError, match="real_logits"):
        RP.generator_loss(torch.zeros(4))  # the one-argument GANLoss call: a clear error, not a wrong loss
    with pytest.raises(TypeError, match="fake_logits"):
        RP.discriminator_loss(torch.zeros(2), [0.0, 1.0])  # type: ignore[arg-type]


@pytest.mark.parametrize("scale", [50.0, 1e4, 1e30])
def test_gradients_are_finite_and_match_the_sigmoid_at_huge_logits(scale):
    n = 4
    real = torch.tensor([scale, -scale, scale, 0.0], requires_grad=True)
    fake = torch.tensor([-scale, scale, scale, 0.0], requires_grad=True)
    d_loss = RP.discriminator_loss(real, fake)
    g_loss = RP.generator_loss(fake, real)
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    d_real, d_fake = torch.autograd.grad(d_loss, (real, fake))
    (g_fake,) = torch.autograd.grad(g_loss, fake)
    for grad in (d_real, d_fake, g_fake):
        assert torch.isfinite(grad).all()
    # d/d real_i of mean softplus(f - r) = -sigmoid(f_i - r_i) / n: 0 for a real far above its fake, -1/n far below.
    expected = -torch.sigmoid(fake.detach() - real.detach()) / n
    torch.testing.assert_close(d_real, expected)
    torch.testing.assert_close(d_fake, -expected)
    torch.testing.assert_close(g_fake, -torch.sigmoid(real.detach() - fake.detach()) / n)
    assert float(d_real[0]) == pytest.approx(0.0, abs=1e-12) and float(d_real[1]) == pytest.approx(-1 / n)


def test_only_the_relativistic_loss_asks_for_real_logits():
    assert losses.RelativisticPairingLoss.needs_real_logits is True
    assert "needs_real_logits" not in dataclasses.asdict(RP)  # a class attribute, not a field (nor in a config)
    for cls in (losses.NonSaturatingLoss, losses.MinimaxLoss, losses.LeastSquaresLoss, losses.WassersteinLoss,
                losses.HingeLoss):
        assert not getattr(cls(), "needs_real_logits", False)
    assert isinstance(RP, losses.GANLoss)


# --------------------------------------------------------------------------- the step


def test_generator_update_compares_the_fakes_with_the_real_batch():
    step = _step()
    real = _data(16)
    g, d = step.generator, step.discriminator
    torch.manual_seed(5)
    z, _ = step.noise(16)
    with torch.no_grad():
        expected = losses.relativistic_pairing_generator_loss(d(g(z)).reshape(16), d(real).reshape(16))
    g_before = [p.detach().clone() for p in g.parameters()]
    d_before = [p.detach().clone() for p in d.parameters()]
    torch.manual_seed(5)
    g_loss = step.generator_update(16, real)
    torch.testing.assert_close(g_loss, expected)
    assert all(not torch.equal(a, b) for a, b in zip(g_before, g.parameters()))  # G moved
    assert all(torch.equal(a, b) and p.grad is None for a, b, p in zip(d_before, d.parameters(), d.parameters()))
    assert all(p.requires_grad for p in d.parameters())  # D unfrozen again
    with pytest.raises(ValueError, match="real"):
        step.generator_update(16)  # RpGAN cannot run without the batch


def test_the_real_logits_in_the_generator_update_carry_no_graph():
    step = _step()
    seen: list[torch.Tensor] = []
    loss = step.loss

    class Spy(losses.RelativisticPairingLoss):
        def generator_loss(self, fake_logits, real_logits=None):
            seen.extend([fake_logits, real_logits])
            return loss.generator_loss(fake_logits, real_logits)

    step.loss = Spy()
    step.generator_update(16, _data(16))
    fake_logits, real_logits = seen
    assert fake_logits.requires_grad and not real_logits.requires_grad  # G's gradient flows through the fakes only


@pytest.mark.parametrize(("loss", "calls"), [(losses.NonSaturatingLoss(), 1), (losses.HingeLoss(), 1), (RP, 2)])
def test_only_a_needs_real_logits_loss_scores_the_reals_in_the_generator_update(loss, calls):
    step = _step(loss=loss)
    d_calls = _count_calls(step.discriminator)
    step.generator_update(16, _data(16))
    assert d_calls[0] == calls
    d_calls[0] = 0
    step.step(_data(16))  # D update: real and fake in one call (the MLP D declares independent_samples), then G's
    assert d_calls[0] == 1 + calls


def test_fused_step_scores_real_and_fake_in_one_call_and_matches_the_eager_step():
    fused = _step(FusedDiscriminatorStep)
    d_calls = _count_calls(fused.discriminator)
    fused.generator_update(16, _data(16))
    assert d_calls[0] == 2  # the generator update scores the reals in their own call, with no graph
    d_calls[0] = 0
    fused.discriminator_update(_data(16))
    assert d_calls[0] == 1  # cat([real, fake])
    _assert_same_training(_step(GANStep), _step(FusedDiscriminatorStep))


def _assert_same_training(eager: GANStep, other: GANStep, steps: int = 3) -> None:
    """The two steps train alike, in what RpGAN determines.

    RpGAN sees only logit differences, so the gradient to D's last bias is 0 up to rounding,
    and Adam (which divides by the gradient's scale) turns that rounding into steps of up to
    ``lr``: the bias, and with it ``d_real`` and ``d_fake`` (not their difference), drifts
    apart between two implementations that round differently. So compare the losses,
    ``d_real - d_fake`` and G's parameters, which do not depend on the bias.
    """
    data = _data(16 * steps)
    for i in range(steps):
        torch.manual_seed(10 + i)  # both draw their noise eagerly from torch's generator
        a = eager.step(data[i * 16:(i + 1) * 16])
        torch.manual_seed(10 + i)
        b = other.step(data[i * 16:(i + 1) * 16])
        for r in (a, b):
            assert torch.isfinite(torch.stack(r.as_tuple())).all()
        torch.testing.assert_close(torch.stack([a.d_loss, a.g_loss, a.d_real - a.d_fake]),
                                   torch.stack([b.d_loss, b.g_loss, b.d_real - b.d_fake]), rtol=1e-4, atol=1e-5)
    for pa, pb in zip(eager.generator.parameters(), other.generator.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)


def test_compiled_step_matches_the_eager_step():
    compiled = _step(CompiledGANStep)
    assert "discriminator update" not in compiled.eager_parts  # both updates compiled (no input regularizer)
    _assert_same_training(_step(GANStep), compiled)


def test_conditional_and_bf16_steps_pass_the_real_labels_along():
    torch.manual_seed(0)
    g = conditional.conditional_mlp_generator(num_classes=3, latent_dim=8, hidden=(16,), out_shape=(1, 4, 4))
    d = conditional.conditional_mlp_discriminator(num_classes=3, in_shape=(1, 4, 4), hidden=(16,), dropout=0.0)
    seen: list[torch.Tensor] = []
    d.register_forward_pre_hook(lambda m, args: seen.append(args[1]))
    step = GANStep(g, d, RP, torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters()), latent_dim=8,
                   num_classes=3, amp="bf16")
    labels = torch.tensor([0, 1, 2, 0])
    result = step.step(_data(4), labels)
    assert torch.isfinite(torch.stack(result.as_tuple())).all()
    # D update: one call on cat([real, fake]) with cat([labels, fake_labels]); G update: D(real, labels)
    assert len(seen) == 3 and seen[0].shape == (8,) and torch.equal(seen[0][:4], labels)
    assert sum(torch.equal(y, labels) for y in seen[1:]) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_graphed_step_matches_the_eager_step_with_rpgan():
    def run(implementation: str) -> tuple[GANTrainer, list[dict[str, float]]]:
        torch.manual_seed(0)
        g = models.mlp_generator(latent_dim=16, hidden=(32,), out_shape=(1, 8, 8))
        d = models.mlp_discriminator(in_shape=(1, 8, 8), hidden=(32,), dropout=0.0)
        seed_everything(3)
        t = GANTrainer(g, d, RP, device="cuda", step=StepConfig(nonfinite=10, implementation=implementation))
        x = (torch.rand(96, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1).cuda()
        seen: list[dict[str, float]] = []
        t.add_callback(Event.STEP_END, lambda tr: seen.append(tr.state.last.as_dict()))
        t.fit(TensorLoader(x, batch_size=16, generator=torch.Generator().manual_seed(2)), epochs=2, max_steps=10)
        return t, seen

    _, eager_seen = run("eager")
    graphed, graphed_seen = run("cuda_graph")
    assert getattr(graphed.gan_step, "graph", None) is not None  # really captured and replayed
    assert len(eager_seen) == len(graphed_seen) == 10
    for a, b in zip(eager_seen, graphed_seen):  # what RpGAN determines (see _assert_same_training)
        assert [a["d_loss"], a["g_loss"], a["d_real"] - a["d_fake"]] == pytest.approx(
            [b["d_loss"], b["g_loss"], b["d_real"] - b["d_fake"]], rel=1e-4, abs=1e-5)


# --------------------------------------------------------------------------- R1 and R2, closed form


class _Linear(nn.Module):
    """``D(x) = <w, x> + b``: the input gradient is ``w`` for every sample."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(torch.tensor(0.3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w + self.b  # (B,)


class _Quadratic(nn.Module):
    """``D(x) = 0.5 * sum(c * x^2)``: the input gradient is ``c * x``, so R1 and R2 see different samples."""

    def __init__(self, c: torch.Tensor) -> None:
        super().__init__()
        self.c = nn.Parameter(c.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.c * x.flatten(1).square()).sum(dim=1)  # (B,)


W = torch.tensor([1.0, -2.0, 0.5, 3.0])


@pytest.mark.parametrize("cls", [penalties.R1Penalty, penalties.R2Penalty])
def test_r1_and_r2_of_a_linear_discriminator_are_half_gamma_times_the_squared_weight_norm(cls):
    d = _Linear(W)
    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    value = cls(gamma=3.0)(d, real, fake)
    assert value.detach().item() == pytest.approx(3.0 / 2 * (1 + 4 + 0.25 + 9), rel=1e-6)
    (grad_w,) = torch.autograd.grad(value, d.w)  # d/dw of gamma/2 ||w||^2 = gamma * w
    torch.testing.assert_close(grad_w, 3.0 * W)


def test_r1_penalises_the_reals_and_r2_the_fakes():
    c = torch.tensor([0.5, 1.0, 2.0, -1.0])
    d = _Quadratic(c)
    real, fake = torch.randn(6, 4), torch.randn(6, 4) * 3
    gamma = 0.7
    r1_expected = gamma / 2 * (c * real).square().sum(dim=1).mean()
    r2_expected = gamma / 2 * (c * fake).square().sum(dim=1).mean()
    torch.testing.assert_close(penalties.R1Penalty(gamma)(d, real, fake), r1_expected)
    torch.testing.assert_close(penalties.R2Penalty(gamma)(d, real, fake), r2_expected)
    assert penalties.R1Penalty(gamma) != penalties.R2Penalty(gamma)  # one code, two penalties
    assert repr(penalties.R2Penalty(gamma)) == "R2Penalty(gamma=0.7)"


def test_r2_reaches_the_discriminator_but_never_the_generator():
    torch.manual_seed(0)
    g = models.mlp_generator(latent_dim=3, hidden=(8,), out_shape=(4,))
    d = _Quadratic(torch.ones(4))
    fake = g(torch.randn(5, 3))  # (5, 4), still in G's graph
    value = penalties.R2Penalty(1.0)(d, torch.randn(5, 4), fake)
    assert all(gr is None for gr in torch.autograd.grad(value, list(g.parameters()), allow_unused=True,
                                                        retain_graph=True))
    (grad_c,) = torch.autograd.grad(value, d.c)
    assert torch.isfinite(grad_c).all() and grad_c.abs().sum() > 0


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "1"])
def test_r2_refuses_a_bad_gamma_by_name(bad):
    with pytest.raises((TypeError, ValueError), match="gamma"):
        penalties.R2Penalty(gamma=bad)


def test_r1_and_r2_are_added_to_the_discriminator_loss_of_the_step():
    torch.manual_seed(0)
    g, _ = tiny_models(latent=8)
    c = torch.linspace(-1, 1, 16)
    d = _Quadratic(c)
    gamma = 0.4
    step = GANStep(g, d, RP, torch.optim.Adam(g.parameters()), torch.optim.SGD(d.parameters(), lr=0.1),
                   latent_dim=8, regularizers=[penalties.R1Penalty(gamma), penalties.R2Penalty(gamma)])
    real = _data(8)
    torch.manual_seed(3)
    z, _ = step.noise(8)
    with torch.no_grad():
        fake = g(z)
        expected = (RP.discriminator_loss(d(real), d(fake))
                    + gamma / 2 * (c * real.flatten(1)).square().sum(1).mean()
                    + gamma / 2 * (c * fake.flatten(1)).square().sum(1).mean())
    before = d.c.detach().clone()
    torch.manual_seed(3)
    update = step.discriminator_update(real)
    torch.testing.assert_close(update.d_loss, expected)
    assert not torch.equal(before, d.c)  # one backward of the sum, one SGD step
    assert all(p.grad is None for p in g.parameters())  # nothing of the D update reaches G


# --------------------------------------------------------------------------- training, and the recipe


def test_a_short_rpgan_r1_r2_run_on_a_2d_toy_trains_and_stays_finite():
    torch.manual_seed(0)
    modes = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    x = modes[torch.randint(0, 4, (256,))] * 0.8 + 0.05 * torch.randn(256, 2)  # (256, 2): 4 Gaussians
    g = models.mlp_generator(latent_dim=4, hidden=(16,), out_shape=(2,))
    d = models.mlp_discriminator(in_shape=(2,), hidden=(16,), dropout=0.0)
    seed_everything(1)
    t = _trainer(g, d, RP, regularizers=[penalties.R1Penalty(0.5), penalties.R2Penalty(0.5)])
    g0 = [p.detach().clone() for p in t.generator.parameters()]
    # RpGAN and R1/R2 see D only through logit differences and input gradients, so D's output bias gets no
    # gradient (0 up to rounding) and need not move; every other parameter must.
    d_params = [p for name, p in t.discriminator.named_parameters() if name != "net.2.bias"]
    assert len(d_params) == 3
    d0 = [p.detach().clone() for p in d_params]
    seen: list[dict[str, float]] = []
    t.add_callback(Event.STEP_END, lambda tr: seen.append(tr.state.last.as_dict()))
    t.fit(TensorLoader(x, batch_size=32, generator=torch.Generator().manual_seed(2)), epochs=5, max_steps=40)
    assert t.state.step == 40 and len(seen) == 40
    assert all(math.isfinite(v) for s in seen for v in s.values())
    assert all(not torch.equal(a, b) for a, b in zip(g0, t.generator.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(d0, d_params))
    # RpGAN's D loss is log 2 where D cannot tell a pair apart; penalties only add to it.
    assert all(s["d_loss"] > 0 for s in seen) and len({round(s["g_loss"], 6) for s in seen}) > 1


def test_rpgan_is_a_loss_name_with_one_critic_step_and_no_implicit_penalty():
    assert "rpgan" in LOSSES
    loss, regs, n_critic = make_loss("rpgan")
    assert isinstance(loss, losses.RelativisticPairingLoss) and regs == [] and n_critic == 1


def test_rpgan_r1r2_recipe_builds_r3gans_parts_and_trains_two_steps():
    torch.manual_seed(0)
    g, d = tiny_models(latent=8, dropout=0.3)
    parts = build_parts("rpgan-r1r2", g, d)
    assert isinstance(parts.loss, losses.RelativisticPairingLoss)
    assert parts.regularizers == [penalties.R1Penalty(0.05), penalties.R2Penalty(0.05)]  # every D update, not lazy
    for opt in (parts.g_optimizer, parts.d_optimizer):  # no lazy correction: R3GAN's betas and lr as they are
        group = opt.param_groups[0]
        assert group["betas"] == (0.0, 0.99) and group["lr"] == pytest.approx(2e-4)
    assert parts.n_critic == 1 and parts.augment is None
    assert any(isinstance(cb, GeneratorEMA) for cb in parts.callbacks)
    assert build_parts("rpgan-r1r2", g, d, loss="rpgan").loss == parts.loss
    with pytest.raises(ValueError, match="loss"):
        build_parts("rpgan-r1r2", g, d, loss="hinge")  # the recipe names its loss: another is refused

    seed_everything(0)
    t = GANTrainer(g, d, parts.loss, g_optimizer=parts.g_optimizer, d_optimizer=parts.d_optimizer,
                   step=StepConfig(n_critic=parts.n_critic, regularizers=tuple(parts.regularizers)))
    before = [p.detach().clone() for p in t.generator.parameters()]
    t.fit(TensorLoader(_data(32), batch_size=16), epochs=1, max_steps=2)
    assert t.state.step == 2 and t.state.last is not None
    assert torch.isfinite(torch.stack(t.state.last.as_tuple())).all()
    assert all(not torch.equal(a, b) for a, b in zip(before, t.generator.parameters()))


def test_lazy_r1_and_r2_share_one_interval_and_one_adam_correction():
    g, d = tiny_models()
    spec = dataclasses.replace(SPECS["rpgan-r1r2"], r1_every=4)
    parts = build_parts(spec, g, d)
    assert [type(r) for r in parts.regularizers] == [LazyRegularizer, LazyRegularizer]
    assert [r.reg for r in parts.regularizers] == [penalties.R1Penalty(0.05), penalties.R2Penalty(0.05)]
    assert all(r.every == 4 for r in parts.regularizers)
    c = 4 / 5
    group = parts.d_optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(2e-4 * c) and group["betas"] == pytest.approx((0.0, 0.99**c))
    assert SPECS["improved-r1"].r2_gamma == 0 and SPECS["improved-r1"].loss is None  # the others are unchanged
