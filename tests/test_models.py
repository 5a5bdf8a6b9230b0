"""Builder contracts: shapes, ranges, parameter counts, argument checks (one test over every builder)."""

from __future__ import annotations

import io
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchgan_lite.nets import layers, registry
from torchgan_lite.nets import mlp as models

hidden_st = st.lists(st.integers(1, 24), min_size=0, max_size=3).map(tuple)
shape_st = st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple)


def test_reference_parameter_counts():
    g = models.mlp_generator()
    d = models.mlp_discriminator()
    assert sum(p.numel() for p in g.parameters()) == 1_486_352
    assert sum(p.numel() for p in d.parameters()) == 1_460_225


@pytest.mark.parametrize("fast_layers", [True, False])
def test_reference_layer_order_matches_recipe(fast_layers):
    g, d = models.mlp_generator(fast_layers=fast_layers), models.mlp_discriminator(fast_layers=fast_layers)
    g_kinds = [type(m) for m in g.net]
    d_kinds = [type(m) for m in d.net]
    linear, drop = (torch.nn.Linear, layers.MaskDropout) if fast_layers else (torch.nn.Linear, torch.nn.Dropout)
    assert g_kinds == [linear, torch.nn.LeakyReLU] * 3 + [linear, torch.nn.Tanh]
    assert d_kinds == [linear, torch.nn.LeakyReLU, drop] * 3 + [linear]
    assert [m.p for m in d.net if isinstance(m, torch.nn.Dropout)] == [0.3, 0.3, 0.3]
    assert all(m.negative_slope == 0.2 for m in list(g.net) + list(d.net) if isinstance(m, torch.nn.LeakyReLU))


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 9), latent=st.integers(1, 32), hidden=hidden_st, shape=shape_st)
def test_generator_shape_and_range(batch, latent, hidden, shape):
    g = models.mlp_generator(latent_dim=latent, hidden=hidden, out_shape=shape)
    out = g(torch.randn(batch, latent) * 10)
    assert out.shape == (batch, *shape)
    assert out.abs().max() <= 1.0
    assert g.latent_dim == latent


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 9), hidden=hidden_st, shape=shape_st, dropout=st.sampled_from([0.0, 0.3]))
def test_discriminator_returns_one_logit_per_sample(batch, hidden, shape, dropout):
    d = models.mlp_discriminator(in_shape=shape, hidden=hidden, dropout=dropout)
    out = d(torch.randn(batch, *shape))
    assert out.shape == (batch,)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("builder", "kwargs", "name"),
    [
        (models.mlp_generator, {"latent_dim": 0}, "latent_dim"),
        (models.mlp_generator, {"latent_dim": 2.5}, "latent_dim"),
        (models.mlp_generator, {"hidden": (8, -1)}, "hidden[1]"),
        (models.mlp_generator, {"out_shape": ()}, "out_shape"),
        (models.mlp_generator, {"out_shape": "1x28x28"}, "out_shape"),
        (models.mlp_generator, {"negative_slope": -1.0}, "negative_slope"),
        (models.mlp_discriminator, {"dropout": 1.0}, "dropout"),
        (models.mlp_discriminator, {"in_shape": (1, 0, 28)}, "in_shape[1]"),
        (models.mlp_discriminator, {"hidden": 128}, "hidden"),
    ],
)
def test_builders_reject_bad_arguments_by_name(builder, kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name.replace("[", r"\[").replace("]", r"\]")):
        builder(**kwargs)


def test_out_shape_product_is_output_width():
    g = models.mlp_generator(out_shape=(3, 8, 8))
    assert g.net[-2].out_features == math.prod((3, 8, 8))


@settings(max_examples=20, deadline=None)
@given(latent=st.integers(1, 16), hidden=hidden_st, shape=shape_st, slope=st.floats(0.0, 1.0), fast=st.booleans(),
       dropout=st.sampled_from([0.0, 0.25]))
def test_the_config_records_the_call_and_rebuilds_the_same_network(latent, hidden, shape, slope, fast, dropout):
    g = models.mlp_generator(latent_dim=latent, hidden=hidden, out_shape=shape, negative_slope=slope, fast_layers=fast)
    d = models.mlp_discriminator(in_shape=shape, hidden=hidden, dropout=dropout, fast_layers=fast)
    assert g.config == {"builder": "mlp_generator", "kwargs": {
        "latent_dim": latent, "hidden": list(hidden), "out_shape": list(shape), "negative_slope": slope,
        "fast_layers": fast}}
    assert d.config["kwargs"]["dropout"] == dropout and d.config["kwargs"]["in_shape"] == list(shape)
    for m in (g, d):
        buf = io.BytesIO()
        torch.save(registry.module_config(m), buf)
        buf.seek(0)
        again = registry.build(torch.load(buf, weights_only=True))  # as a checkpoint stores it
        assert type(again) is type(m) and again.config == m.config
        shapes = [[(k, v.shape) for k, v in net.state_dict().items()] for net in (again, m)]
        assert shapes[0] == shapes[1]
        again.load_state_dict(m.state_dict())
        x = torch.randn(2, latent) if m is g else torch.randn(2, *shape)
        assert torch.equal(again.eval()(x), m.eval()(x))
