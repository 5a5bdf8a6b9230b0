"""layers.Linear and layers.MaskDropout: the same function as nn.Linear / nn.Dropout."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from torchgan_lite.nets import layers
from torchgan_lite.nets import mlp as models


@pytest.fixture(autouse=True)
def _fast_paths_at_any_size(monkeypatch):
    """Small test tensors take the oneDNN / word-mask paths too (the size cut-offs are tested below)."""
    monkeypatch.setattr(layers, "ONEDNN_MIN_MACS", 0)
    monkeypatch.setattr(layers, "WORD_MASK_MIN_NUMEL", 0)


def _pair(i: int, o: int, bias: bool = True) -> tuple[layers.Linear, nn.Linear]:
    fast = layers.Linear(i, o, bias=bias)
    ref = nn.Linear(i, o, bias=bias)
    ref.load_state_dict(fast.state_dict())
    return fast, ref


def _uses_onednn(out: torch.Tensor) -> bool:
    return out.grad_fn is not None and "OneDNN" in type(out.grad_fn).__name__


def test_onednn_is_used_where_torch_has_it():
    # If this fails on a build with oneDNN, the private operator changed: Linear silently
    # fell back to nn.Linear and the CPU step lost its speed-up.
    if torch.backends.mkldnn.is_available():
        assert layers.onednn_linear_available()
        fast, _ = _pair(4, 3)
        assert _uses_onednn(fast(torch.randn(2, 4, requires_grad=True)))


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 9), i=st.integers(1, 40), o=st.integers(1, 40), bias=st.booleans(),
       x_grad=st.booleans(), w_grad=st.booleans())
def test_linear_matches_nn_linear_values_and_gradients(b, i, o, bias, x_grad, w_grad):
    fast, ref = _pair(i, o, bias)
    for m in (fast, ref):
        m.weight.requires_grad_(w_grad)
    x = torch.randn(b, i)
    xf, xr = x.clone().requires_grad_(x_grad), x.clone().requires_grad_(x_grad)
    yf, yr = fast(xf), ref(xr)
    torch.testing.assert_close(yf, yr, rtol=1e-5, atol=1e-5)
    if not yf.requires_grad:
        return
    g = torch.randn(b, o)
    yf.backward(g)
    yr.backward(g)
    if x_grad:
        torch.testing.assert_close(xf.grad, xr.grad, rtol=1e-5, atol=1e-5)
    if w_grad:
        torch.testing.assert_close(fast.weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-5)
    else:
        assert fast.weight.grad is None
    if bias:
        torch.testing.assert_close(fast.bias.grad, ref.bias.grad, rtol=1e-5, atol=1e-5)


def test_linear_gradient_penalty_double_backward_matches():
    # A gradient penalty differentiates D's input gradient (create_graph=True).
    torch.manual_seed(0)
    fast = nn.Sequential(layers.Linear(6, 8), nn.LeakyReLU(0.2), layers.Linear(8, 1))
    ref = nn.Sequential(nn.Linear(6, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(5, 6)
    for net in (fast, ref):
        xi = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(net(xi).sum(), xi, create_graph=True)
        ((grad.norm(dim=1) - 1) ** 2).mean().backward()
    for (name, pf), pr in zip(fast.named_parameters(), ref.parameters()):
        if name.endswith("bias"):  # a piecewise-linear net's input gradient ignores its biases
            assert all(p.grad is None or not p.grad.any() for p in (pf, pr))
            continue
        assert pf.grad is not None and pf.grad.abs().sum() > 0
        torch.testing.assert_close(pf.grad, pr.grad, rtol=1e-5, atol=1e-6)


def test_flop_counter_sees_every_product():
    from torch.utils.flop_counter import FlopCounterMode

    fast, _ = _pair(64, 32)
    x = torch.randn(16, 64, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        fast(x).sum().backward()
    assert counter.get_total_flops() == 3 * 2 * 16 * 64 * 32  # forward, input and weight gradients


@pytest.mark.parametrize("case", ["bf16_autocast", "3d_input", "float64", "no_grad"])
def test_linear_falls_back_to_f_linear(case):
    fast, ref = _pair(5, 3)
    x = torch.randn(4, 5)
    if case == "bf16_autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y, want = fast(x), ref(x)
        assert y.dtype == torch.bfloat16
        assert not _uses_onednn(y)
        torch.testing.assert_close(y, want)
    elif case == "3d_input":
        x3 = torch.randn(2, 4, 5, requires_grad=True)
        y = fast(x3)
        assert y.shape == (2, 4, 3) and not _uses_onednn(y)
        torch.testing.assert_close(y, ref(x3))
    elif case == "float64":
        fast.double()
        ref.double()
        y = fast(x.double())
        assert y.dtype == torch.float64
        torch.testing.assert_close(y, ref(x.double()))
    else:
        with torch.no_grad():
            y = fast(x)
        assert y.grad_fn is None
        torch.testing.assert_close(y, ref(x).detach(), rtol=1e-5, atol=1e-5)


def test_small_calls_use_torch_and_large_ones_the_fast_paths(monkeypatch):
    monkeypatch.setattr(layers, "ONEDNN_MIN_MACS", 1000)
    monkeypatch.setattr(layers, "WORD_MASK_MIN_NUMEL", 100)
    fast, _ = _pair(10, 10)
    assert not _uses_onednn(fast(torch.randn(9, 10, requires_grad=True)))  # 900 multiply-adds
    if layers.onednn_linear_available():
        assert _uses_onednn(fast(torch.randn(10, 10, requires_grad=True)))  # 1000
    drop = layers.MaskDropout(0.5)
    x = torch.ones(99)
    torch.manual_seed(3)
    small = drop(x)
    torch.manual_seed(3)
    assert torch.equal(small, torch.nn.functional.dropout(x, 0.5, training=True))  # torch's own masks
    torch.manual_seed(3)
    big = drop(torch.ones(100))
    torch.manual_seed(3)
    assert not torch.equal(big, torch.nn.functional.dropout(torch.ones(100), 0.5, training=True))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_default_builders_script_with_torchscript():
    # TorchScript compiles the layers' torch fallbacks only (F.linear, F.dropout).
    g, d = models.mlp_generator().eval(), models.mlp_discriminator().eval()
    z = torch.randn(4, 100)
    torch.testing.assert_close(torch.jit.script(g)(z), g(z), rtol=1e-5, atol=1e-5)
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(torch.jit.script(d)(x), d(x), rtol=1e-5, atol=1e-5)


def test_linear_state_dict_is_nn_linears():
    fast, ref = _pair(7, 2)
    assert isinstance(fast, nn.Linear)
    assert fast.state_dict().keys() == ref.state_dict().keys()
    other = nn.Linear(7, 2)
    fast.load_state_dict(other.state_dict())
    assert torch.equal(fast.weight, other.weight)


@pytest.mark.parametrize("fast_layers", [True, False])
def test_builders_state_dicts_interchange(fast_layers):
    g1, d1 = models.mlp_generator(fast_layers=fast_layers), models.mlp_discriminator(fast_layers=fast_layers)
    g2, d2 = models.mlp_generator(fast_layers=not fast_layers), models.mlp_discriminator(fast_layers=not fast_layers)
    g2.load_state_dict(g1.state_dict())
    d2.load_state_dict(d1.state_dict())
    z = torch.randn(8, 100)
    d1.eval()
    d2.eval()  # dropout off: the same function
    torch.testing.assert_close(g1(z), g2(z), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(d1(g1(z)), d2(g2(z)), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ MaskDropout


def test_mask_dropout_keeps_one_minus_p_and_scales_survivors():
    torch.manual_seed(0)
    drop = layers.MaskDropout(0.3)
    x = torch.ones(1000, 201)  # odd count: the last 64-bit word is half used
    y = drop(x)
    kept = (y != 0).double().mean().item()
    assert kept == pytest.approx(0.7, abs=5 * math.sqrt(0.21 / x.numel()))
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / 0.7))
    # The two halves of a 64-bit word are independent: neighbours are both kept 49% of the time.
    flat = (y != 0).flatten()
    both = (flat[0:-1:2] & flat[1::2]).double().mean().item()
    assert both == pytest.approx(0.49, abs=5 * math.sqrt(0.25 / (x.numel() // 2)))


@pytest.mark.parametrize("p", [1e-6, 0.05, 0.5, 0.9, 0.999])
def test_mask_dropout_keep_fraction_across_p(p):
    torch.manual_seed(1)
    y = layers.MaskDropout(p)(torch.ones(400_000))
    kept = (y != 0).double().mean().item()
    sd = math.sqrt(p * (1 - p) / y.numel())
    assert kept == pytest.approx(1 - p, abs=5 * sd + 1e-6)


def test_mask_dropout_gradient_is_the_mask():
    torch.manual_seed(0)
    x = torch.randn(64, 33, requires_grad=True)
    y = layers.MaskDropout(0.4)(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() / 0.6)


def test_mask_dropout_is_seeded_by_torch_and_advances_its_generator():
    drop = layers.MaskDropout(0.3)
    x = torch.ones(50, 50)
    torch.manual_seed(5)
    a, b = drop(x), drop(x)
    torch.manual_seed(5)
    assert torch.equal(drop(x), a)
    assert not torch.equal(a, b)


def test_mask_dropout_eval_zero_p_dtype_and_layout():
    x = torch.randn(6, 10)
    drop = layers.MaskDropout(0.3)
    assert isinstance(drop, nn.Dropout) and drop.p == 0.3
    drop.eval()
    assert drop(x) is x
    assert layers.MaskDropout(0.0)(x) is x
    drop.train()
    y = drop(x.t())  # non-contiguous input
    assert y.shape == (10, 6)
    torch.testing.assert_close(y[y != 0], (x.t() / 0.7)[y != 0])
    yb = drop(x.bfloat16())
    assert yb.dtype == torch.bfloat16


@pytest.mark.parametrize(("bad", "exc"), [(1.0, ValueError), (-0.1, ValueError), (1.5, ValueError),
                                          (float("nan"), ValueError), (True, TypeError), ("0.3", TypeError),
                                          (None, TypeError)])
def test_mask_dropout_rejects_bad_p(bad, exc):
    with pytest.raises(exc, match=r"^p must"):
        layers.MaskDropout(bad)


# ------------------------------------------------------------------ the opt-in and the default path


def test_builders_default_layers_are_public_torch():
    assert layers.layer_types(True) == (nn.Linear, layers.MaskDropout)
    assert layers.layer_types(False) == (nn.Linear, nn.Dropout)
    for net in (models.mlp_generator(), models.mlp_discriminator()):
        assert not any(isinstance(m, layers.Linear) for m in net.modules())


def test_use_onednn_linear_swaps_exact_linears_in_place():
    class MyLinear(nn.Linear):
        pass

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.LeakyReLU(0.2), MyLinear(8, 3))
    params = list(net.parameters())
    x = torch.randn(5, 6)
    want = net(x)
    assert layers.use_onednn_linear(net) is net
    assert type(net[0]) is layers.Linear and type(net[2]) is MyLinear  # subclasses left alone
    assert all(a is b for a, b in zip(params, net.parameters()))  # the same parameter objects
    torch.testing.assert_close(net(x), want, rtol=1e-5, atol=1e-5)
    if layers.onednn_linear_available():
        assert _uses_onednn(net[0](x.requires_grad_()))
    with pytest.raises(TypeError, match=r"module must be an nn\.Module, got int"):
        layers.use_onednn_linear(3)


def test_private_torch_apis_only_behind_opt_ins():
    # The default path uses public PyTorch only; each remaining private use is listed with its opt-in.
    import re
    from pathlib import Path

    allowed = {
        "layers.py": "the oneDNN Linear, opt-in through use_onednn_linear",
    }
    package = Path(layers.__file__).parent
    found = {}
    for path in package.rglob("*.py"):
        text = path.read_text()
        if re.search(r"torch\.ops\.|torch\._[a-z]|torch\.utils\._|torch\.nn\.utils\._", text):
            found[path.name] = True
    assert set(found) <= set(allowed), f"private torch APIs in {sorted(set(found) - set(allowed))}"
    assert "layers.py" in found  # the scan does see the one private use that remains
