"""LeCam, lazy regularisation, StyleGAN2's Adam correction and spectral norm, against hand computations."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tests.conftest import tiny_models
from torchgan_lite.losses import penalties
from torchgan_lite.losses.penalties import LazyRegularizer, LeCamRegularizer, lazy_adam_hparams
from torchgan_lite.nets import layers
from torchgan_lite.nets.spectral import apply_spectral_norm, spectral_norm_output

# ---------------------------------------------------------------- LeCam


def test_lecam_first_call_matches_a_hand_computation():
    reg = LeCamRegularizer(weight=0.5)
    real = torch.tensor([1.0, 2.0], requires_grad=True)
    fake = torch.tensor([-1.0, 0.0], requires_grad=True)
    value = reg(real, fake)
    # First call: the averages are the means, a_R = 1.5, a_F = -0.5.
    # mean(relu([1, 2] + 0.5)^2) + mean(relu(1.5 - [-1, 0])^2) = (2.25 + 6.25)/2 + (6.25 + 2.25)/2 = 8.5
    assert value.item() == pytest.approx(0.5 * 8.5)
    value.backward()
    # d/d real_i = weight * 2 (real_i - a_F) / B; d/d fake_i = -weight * 2 (a_R - fake_i) / B
    torch.testing.assert_close(real.grad, torch.tensor([1.5, 2.5]) * 0.5)
    torch.testing.assert_close(fake.grad, -torch.tensor([2.5, 1.5]) * 0.5)
    assert reg.real_ema.item() == 1.5 and reg.fake_ema.item() == -0.5


def test_lecam_relu_ignores_reals_below_the_fake_average():
    reg = LeCamRegularizer(weight=1.0)
    reg(torch.tensor([0.0]), torch.tensor([0.0]))  # a_R = a_F = 0
    # decay 0.99: a_R = 0.01 * -3 = -0.03, a_F = 0.01 * 3 = 0.03; real -3 < a_F and fake 3 > a_R: no penalty
    assert reg(torch.tensor([-3.0]), torch.tensor([3.0])).item() == 0.0


@settings(max_examples=30, deadline=None)
@given(decay=st.floats(0.0, 0.999), means=st.lists(st.tuples(st.floats(-5, 5), st.floats(-5, 5)), min_size=1,
                                                     max_size=6))
def test_lecam_averages_are_exponential_moving_averages(decay, means):
    reg = LeCamRegularizer(weight=1.0, decay=decay)
    a_r, a_f = means[0]
    for i, (r, f) in enumerate(means):
        reg(torch.full((3,), r), torch.full((3,), f))
        if i:
            a_r, a_f = decay * a_r + (1 - decay) * r, decay * a_f + (1 - decay) * f
    assert reg.real_ema.item() == pytest.approx(a_r, abs=1e-4)
    assert reg.fake_ema.item() == pytest.approx(a_f, abs=1e-4)
    assert reg.num_updates == len(means)


def test_lecam_state_resumes_exactly_and_is_checked():
    logits = torch.randn(10, 2, 8, generator=torch.Generator().manual_seed(0))
    straight, first = LeCamRegularizer(0.3), LeCamRegularizer(0.3)
    want = [straight(r, f) for r, f in logits]
    for r, f in logits[:4]:
        first(r, f)
    resumed = LeCamRegularizer(0.3)
    resumed.load_state_dict(first.state_dict())
    got = [resumed(r, f) for r, f in logits[4:]]
    assert all(torch.equal(a, b) for a, b in zip(got, want[4:]))
    with pytest.raises(ValueError, match="real_ema"):
        resumed.load_state_dict({"real_ema": torch.zeros(()), "fake_ema": None, "num_updates": 1})
    with pytest.raises(ValueError, match="num_updates"):
        resumed.load_state_dict({"real_ema": None})
    assert LeCamRegularizer.uses_logits is True


def test_lecam_bad_arguments_are_named():
    with pytest.raises(ValueError, match="decay"):
        LeCamRegularizer(1.0, decay=1.0)
    with pytest.raises(ValueError, match="weight"):
        LeCamRegularizer(-1.0)
    with pytest.raises(TypeError, match="real_logits"):
        LeCamRegularizer(1.0)(torch.zeros(2, dtype=torch.int64), torch.zeros(2))


# ---------------------------------------------------------------- lazy regularisation


class _Counting:
    """A regularizer returning 1 + the number of times it was called."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, d, real, fake):
        self.calls += 1
        return torch.tensor(float(self.calls))


@given(every=st.integers(1, 7), n=st.integers(1, 30))
def test_lazy_returns_every_times_the_penalty_every_kth_call_else_zero(every, n):
    inner = _Counting()
    lazy = LazyRegularizer(inner, every=every)
    real = torch.zeros(2, 3)
    values = [lazy(None, real, real).item() for _ in range(n)]
    due = [i for i in range(n) if i % every == 0]  # the first call included, as StyleGAN2's phase at batch 0
    want = [0.0] * n
    for k, i in enumerate(due):
        want[i] = every * (k + 1)
    assert values == want
    assert inner.calls == len(due)
    assert sum(values) == every * sum(range(1, len(due) + 1))


def test_lazy_r1_is_every_times_r1_on_due_calls_and_its_zero_matches_the_input():
    torch.manual_seed(0)
    _, d = tiny_models()
    real = torch.randn(4, 1, 4, 4, dtype=torch.float64)
    d = d.double()
    lazy = LazyRegularizer(penalties.R1Penalty(10.0), every=4)
    first = lazy(d, real, real)
    torch.testing.assert_close(first, 4 * penalties.R1Penalty(10.0)(d, real, real))
    zero = lazy(d, real, real)
    assert zero.item() == 0.0 and zero.dtype == torch.float64 and zero.shape == ()


def test_lazy_passes_uses_logits_through_and_saves_counter_and_inner_state():
    lazy = LazyRegularizer(LeCamRegularizer(1.0), every=3)
    assert lazy.uses_logits is True
    assert LazyRegularizer(penalties.R1Penalty(), every=3).uses_logits is False
    r, f = torch.tensor([1.0, 2.0]), torch.tensor([0.0, -1.0])
    for _ in range(4):
        lazy(r, f)
    state = lazy.state_dict()
    assert state["calls"] == 4 and state["reg"]["num_updates"] == 2  # LeCam ran at calls 0 and 3
    other = LazyRegularizer(LeCamRegularizer(1.0), every=3)
    other.load_state_dict(state)
    assert other.calls == 4 and not other.is_due()
    assert torch.equal(other.reg.real_ema, lazy.reg.real_ema)
    with pytest.raises(ValueError, match="calls"):
        other.load_state_dict({"every": 3})
    with pytest.raises(ValueError, match="every"):
        LazyRegularizer(penalties.R1Penalty(), every=0)
    with pytest.raises(TypeError, match="reg"):
        LazyRegularizer(3.0)


def test_lazy_adam_hparams_is_stylegan2s_correction():
    lr, (b1, b2) = lazy_adam_hparams(0.0025, (0.0, 0.99), every=16)  # StyleGAN2's D at R1 every 16
    c = 16 / 17
    assert lr == pytest.approx(0.0025 * c)
    assert (b1, b2) == (0.0, pytest.approx(0.99**c))
    lr, (b1, b2) = lazy_adam_hparams(2e-4, (0.5, 0.999), every=4)
    assert lr == pytest.approx(1.6e-4) and b1 == pytest.approx(0.5**0.8) and b2 == pytest.approx(0.999**0.8)
    with pytest.raises(ValueError, match="lr"):
        lazy_adam_hparams(0.0, (0.9, 0.999), 4)
    with pytest.raises(ValueError, match="betas"):
        lazy_adam_hparams(1e-3, (0.9, 1.0), 4)


# ---------------------------------------------------------------- spectral norm


def _largest_singular_value(w: torch.Tensor) -> float:
    return torch.linalg.matrix_norm(w.detach().flatten(1), ord=2).item()


def _operator(layer: nn.Module, in_features: int) -> torch.Tensor:
    """The matrix a Linear layer applies, (out, in), read from its outputs in eval mode (no power iteration)."""
    was = layer.training
    layer.eval()
    with torch.no_grad():
        eye = torch.eye(in_features)
        matrix = (layer(eye) - layer(torch.zeros(1, in_features))).T  # (out, in): the bias cancels
    layer.train(was)
    return matrix


@pytest.mark.parametrize("method", ["auto", "parametrization"])
def test_spectral_norm_makes_every_layer_1_lipschitz_including_layers_linear(method):
    torch.manual_seed(0)
    d = nn.Sequential(layers.Linear(12, 20), nn.LeakyReLU(0.2), nn.Linear(20, 7),
                      nn.Unflatten(1, (7, 1, 1)), nn.Conv2d(7, 5, 1), nn.Flatten(), nn.Linear(5, 1))
    for m in d:
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            with torch.no_grad():
                m.weight.mul_(10)  # far from norm 1 before
    assert apply_spectral_norm(d, method=method) is d
    x = torch.randn(8, 12)
    for _ in range(50):  # power iterations, one per training forward
        d(x)
    linears = [m for m in d if isinstance(m, nn.Linear)]
    assert len(linears) == 3
    for m in linears:
        assert _largest_singular_value(_operator(m, m.in_features)) == pytest.approx(1.0, abs=1e-3)
    conv = d[4]
    assert hasattr(conv, "parametrizations")  # convolutions always take torch's parametrization
    assert _largest_singular_value(conv.weight) == pytest.approx(1.0, abs=1e-3)
    first = d[0]
    if method == "auto":  # the output is rescaled, the parameter is not
        assert _largest_singular_value(first.weight) > 5
    else:  # layers.Linear's forward reads the normalised weight: its output is x @ W_sn^T + b
        torch.testing.assert_close(first(x), x @ first.weight.T + first.bias)


def _torch_and_output_twins(shape=(12, 20, 1), seed=0):
    """The same nn.Linear stack, spectral-normalised by torch's parametrization and by the output method."""
    torch.manual_seed(seed)
    widths = list(shape)
    base = nn.Sequential(*[m for i in range(len(widths) - 1)
                           for m in (nn.Linear(widths[i], widths[i + 1]), nn.LeakyReLU(0.2))][:-1])
    twins = []
    for method in ("parametrization", "output"):
        net = copy.deepcopy(base)
        torch.manual_seed(seed + 1)  # the same draws for u and v
        twins.append(apply_spectral_norm(net, method=method))
    return twins


def _weight(layer: nn.Module) -> torch.Tensor:
    return layer.parametrizations.weight.original if hasattr(layer, "parametrizations") else layer.weight


def test_output_spectral_norm_trains_like_torchs_parametrization():
    ref, out = _torch_and_output_twins()
    opt_ref, opt_out = (torch.optim.Adam(n.parameters(), lr=1e-2) for n in (ref, out))
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):  # D(real) - D(fake): two training forwards between updates, as in a GAN step
        real, fake = torch.randn(8, 12, generator=gen), torch.randn(8, 12, generator=gen)
        losses_ = [(n(real) - n(fake)).pow(2).mean() for n in (ref, out)]
        torch.testing.assert_close(losses_[1], losses_[0], rtol=1e-5, atol=1e-6)
        for opt, loss in zip((opt_ref, opt_out), losses_):
            opt.zero_grad()
            loss.backward()
        for a, b in zip(ref, out):
            if isinstance(a, nn.Linear):
                torch.testing.assert_close(_weight(b).grad, _weight(a).grad, rtol=1e-4, atol=1e-6)
                torch.testing.assert_close(b.weight_u, a.parametrizations.weight[0]._u, rtol=1e-4, atol=1e-6)
                torch.testing.assert_close(b.weight_v, a.parametrizations.weight[0]._v, rtol=1e-4, atol=1e-6)
        opt_ref.step()
        opt_out.step()


def test_output_spectral_norm_second_order_gradients_match_torchs():
    # R1 differentiates D's input gradient again with respect to D's weights
    ref, out = _torch_and_output_twins()
    x = torch.randn(6, 12)
    grads = []
    for net in (ref, out):
        xi = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(xi).sum(), xi, create_graph=True)
        g.pow(2).sum().backward()
        grads.append([_weight(m).grad for m in net if isinstance(m, nn.Linear)])
    for a, b in zip(*grads):
        assert a is not None and a.abs().sum() > 0
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_output_spectral_norm_on_inputs_of_other_ranks_and_in_eval_mode():
    ref, out = _torch_and_output_twins()
    x = torch.randn(3, 5, 12)  # (B, T, in): sigma by torch.mv instead of the appended row
    torch.testing.assert_close(out(x), ref(x), rtol=1e-5, atol=1e-6)
    out.eval()
    ref.eval()
    u = out[0].weight_u.clone()
    torch.testing.assert_close(out(x[0]), ref(x[0]), rtol=1e-5, atol=1e-6)
    assert torch.equal(out[0].weight_u, u)  # no power iteration in eval mode


def test_output_spectral_norm_copies_state_and_refuses_keyword_calls():
    _, out = _torch_and_output_twins()
    x = torch.randn(4, 12)
    twin = copy.deepcopy(out)
    u = out[0].weight_u.clone()
    twin(x)  # a training forward of the copy updates the copy's vectors only
    assert torch.equal(out[0].weight_u, u) and not torch.equal(twin[0].weight_u, u)
    assert {"0.weight", "0.weight_u", "0.weight_v"} <= set(out.state_dict())
    other = _torch_and_output_twins(seed=5)[1]
    other.load_state_dict(twin.state_dict())
    other.eval()
    twin.eval()
    assert torch.equal(other(x), twin(x))
    with pytest.raises(TypeError, match="positional"):
        out[0](input=x)


def test_spectral_norm_method_is_checked():
    with pytest.raises(ValueError, match="method must be one of"):
        apply_spectral_norm(nn.Linear(2, 2), method="fast")
    conv = nn.Sequential(nn.Linear(4, 4), nn.Unflatten(1, (4, 1, 1)), nn.Conv2d(4, 2, 1))
    with pytest.raises(ValueError, match=r"Linear layers only, but 2 is a Conv2d"):
        apply_spectral_norm(conv, method="output")
    assert not hasattr(conv[0], "weight_u")  # nothing changed before the refusal
    with pytest.raises(TypeError, match=r"layer must be a torch\.nn\.Linear"):
        spectral_norm_output(nn.Conv2d(2, 2, 1))


def test_spectral_norm_state_dict_round_trips_and_is_idempotent():
    torch.manual_seed(0)
    _, d = tiny_models()
    apply_spectral_norm(d)
    apply_spectral_norm(d)  # no second hook
    apply_spectral_norm(d, method="parametrization")  # nor torch's on top of it
    linears = [m for m in d.modules() if isinstance(m, nn.Linear)]
    assert all(len(m._forward_hooks) == 1 and not hasattr(m, "parametrizations") for m in linears)
    x = torch.randn(5, 1, 4, 4)
    for _ in range(3):
        d(x)
    d.eval()
    want = d(x)
    torch.manual_seed(1)
    _, other = tiny_models()
    apply_spectral_norm(other)
    other.load_state_dict(d.state_dict())
    other.eval()
    assert torch.equal(other(x), want)
    assert any(k.endswith("weight_u") for k in d.state_dict())


def test_spectral_norm_bad_arguments_are_named():
    with pytest.raises(TypeError, match="module"):
        apply_spectral_norm("D")
    with pytest.raises(ValueError, match="no Linear or Conv"):
        apply_spectral_norm(nn.ReLU())


@pytest.mark.parametrize("method", ["auto", "parametrization"])
def test_spectral_norm_gradients_reach_the_original_weight(method):
    torch.manual_seed(0)
    d = apply_spectral_norm(nn.Sequential(layers.Linear(6, 4), nn.Tanh(), layers.Linear(4, 1)), method=method)
    d(torch.randn(3, 6)).sum().backward()
    original = _weight(d[0])
    assert original.grad is not None and math.isfinite(original.grad.abs().sum().item())
    assert original.grad.abs().sum().item() > 0


def test_layers_linear_runs_torchs_power_iteration_once_per_forward():
    # layers.Linear read its weight twice per forward: under torch's parametrization that was two
    # power iterations (and two W / sigma) per call; it must match nn.Linear's one
    torch.manual_seed(0)
    plain = nn.Linear(12, 20)
    ours = layers.Linear(12, 20)
    ours.load_state_dict(plain.state_dict())
    for layer in (plain, ours):
        torch.manual_seed(1)
        apply_spectral_norm(layer, method="parametrization")
    x = torch.randn(4, 12)
    for _ in range(3):
        torch.testing.assert_close(ours(x), plain(x))
    assert torch.equal(ours.parametrizations.weight[0]._u, plain.parametrizations.weight[0]._u)


def test_output_spectral_norm_runs_under_bf16_autocast_like_float32():
    """Found by the conv benchmark: under bf16 autocast the layer's output (and so W v) is bf16 while the
    bias and u are float32, and sigma's dot product refused the mixed dtypes (the ResNet D's head)."""
    torch.manual_seed(0)
    layer = spectral_norm_output(nn.Linear(16, 4))
    x = torch.randn(8, 16)
    layer.eval()  # no power iteration: the two calls see the same u, v
    ref = layer(x)  # (8, 4) float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = layer(x)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), ref, rtol=0.05, atol=0.05)  # bf16 rounding only
