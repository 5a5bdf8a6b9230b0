"""truncated_noise: the range, the distribution of a truncated standard normal, seeding, bad arguments."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchgan_lite.nets.sampling import truncated_noise


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 50), dim=st.integers(1, 20), threshold=st.floats(0.05, 4.0), seed=st.integers(0, 1000))
def test_every_entry_is_within_the_threshold(n, dim, threshold, seed):
    z = truncated_noise(n, dim, threshold, generator=torch.Generator().manual_seed(seed))
    assert z.shape == (n, dim) and z.dtype == torch.get_default_dtype()
    assert float(z.abs().max()) <= threshold


@pytest.mark.parametrize("t", [0.5, 1.0, 2.0])
def test_variance_is_that_of_the_truncated_normal(t):
    z = truncated_noise(200_000, 1, t, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # Var of N(0, 1) truncated to [-t, t]: 1 - 2 t phi(t) / (2 Phi(t) - 1)
    phi = math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    big_phi_width = math.erf(t / math.sqrt(2))  # 2 Phi(t) - 1
    want = 1 - 2 * t * phi / big_phi_width
    assert float(z.var()) == pytest.approx(want, rel=0.02)
    assert abs(float(z.mean())) < 0.01


def test_infinite_threshold_is_plain_randn_and_seeded_draws_repeat():
    a = truncated_noise(4, 3, math.inf, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, torch.randn(4, 3, generator=torch.Generator().manual_seed(2)))
    torch.manual_seed(9)
    b = truncated_noise(6, 5, 0.7)
    torch.manual_seed(9)
    assert torch.equal(b, truncated_noise(6, 5, 0.7))


@pytest.mark.parametrize(("args", "kwargs", "match"), [
    ((0, 5, 1.0), {}, "n must"), ((2, 0, 1.0), {}, "latent_dim"), ((2, 5, 0.0), {}, "threshold"),
    ((2, 5, float("nan")), {}, "threshold"), ((2, 5, 1.0), {"dtype": torch.int64}, "dtype")])
def test_bad_arguments_are_named(args, kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        truncated_noise(*args, **kwargs)
