"""The metric formulas against closed forms and independent computations (no MNIST needed)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchgan_lite.metrics.frechet import SingularCovarianceWarning, feature_statistics, frechet_distance
from torchgan_lite.metrics.kid import kernel_distance, mmd2_unbiased
from torchgan_lite.metrics.precision_recall import knn_radii, precision_recall
from torchgan_lite.metrics.scores import class_coverage, classifier_score

floats = st.floats(min_value=-5, max_value=5, allow_nan=False)
positive = st.floats(min_value=0.01, max_value=10, allow_nan=False)


def random_spd(d: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=gen, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


# ---------------------------------------------------------------- Fréchet distance


@given(st.lists(floats, min_size=1, max_size=12))
@settings(max_examples=40, deadline=None)
def test_fd_of_unit_gaussians_is_squared_mean_distance(m):
    d = len(m)
    mu = torch.tensor(m, dtype=torch.float64)
    eye = torch.eye(d, dtype=torch.float64)
    assert frechet_distance(torch.zeros(d), eye, mu, eye) == pytest.approx(float((mu**2).sum()), rel=1e-9, abs=1e-9)


@given(st.lists(st.tuples(positive, positive, floats), min_size=1, max_size=12))
@settings(max_examples=40, deadline=None)
def test_fd_of_diagonal_covariances_matches_closed_form(entries):
    a = np.array([e[0] for e in entries])
    b = np.array([e[1] for e in entries])
    mu2 = np.array([e[2] for e in entries])
    expected = float(((np.sqrt(a) - np.sqrt(b)) ** 2).sum() + (mu2**2).sum())
    got = frechet_distance(np.zeros(len(a)), np.diag(a), mu2, np.diag(b))  # NumPy inputs
    assert got == pytest.approx(expected, rel=1e-8, abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fd_matches_eigenvalues_of_the_product_and_is_symmetric(seed):
    # tr sqrt(S1 S2) = sum sqrt(eig(S1 S2)): an independent route through a non-symmetric matrix.
    d = 20
    s1, s2 = random_spd(d, seed), random_spd(d, seed + 100)
    mu1 = torch.randn(d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    mu2 = torch.zeros(d, dtype=torch.float64)
    eig = np.linalg.eigvals((s1 @ s2).numpy())
    expected = float((mu1**2).sum() + torch.trace(s1) + torch.trace(s2)) - 2 * float(np.sqrt(eig.real).sum())
    fd = frechet_distance(mu1, s1, mu2, s2)
    assert fd == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(fd, rel=1e-9)


@given(st.floats(min_value=0.1, max_value=10))
@settings(max_examples=20, deadline=None)
def test_fd_scales_with_the_square_of_the_features(c):
    s1, s2 = random_spd(8, 3), random_spd(8, 4)
    mu = torch.linspace(-1, 1, 8, dtype=torch.float64)
    base = frechet_distance(mu, s1, -mu, s2)
    assert frechet_distance(c * mu, c * c * s1, -c * mu, c * c * s2) == pytest.approx(c * c * base, rel=1e-7)


def test_fd_of_a_set_against_itself_is_near_zero_in_any_dtype():
    x = torch.randn(3000, 32, generator=torch.Generator().manual_seed(0))
    mu, sigma = feature_statistics(x)
    assert frechet_distance(mu, sigma, mu, sigma) < 1e-9 * float(torch.trace(sigma))
    assert frechet_distance(mu.float(), sigma.half(), mu.numpy(), sigma.numpy().astype(np.float32)) < 1e-2
    other = feature_statistics(x + 0.5)
    assert frechet_distance(mu, sigma, *other) == pytest.approx(32 * 0.25, rel=1e-6)


def test_fd_from_fewer_samples_than_features_warns_and_stays_finite():
    x = torch.randn(10, 64, generator=torch.Generator().manual_seed(0))
    y = torch.randn(10, 64, generator=torch.Generator().manual_seed(1))
    with pytest.warns(SingularCovarianceWarning, match="10 samples of 64 features"):
        mu1, s1 = feature_statistics(x)
    with pytest.warns(SingularCovarianceWarning):
        mu2, s2 = feature_statistics(y)
    fd = frechet_distance(mu1, s1, mu2, s2)
    assert math.isfinite(fd) and fd > 0


def test_feature_statistics_with_enough_samples_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        feature_statistics(torch.randn(65, 64))


def test_fd_rejects_bad_input_naming_the_argument():
    eye = torch.eye(3)
    with pytest.raises(ValueError, match="sigma2 is not positive semi-definite"):
        frechet_distance(torch.zeros(3), eye, torch.zeros(3), -eye)
    with pytest.raises(ValueError, match="sigma1 is not symmetric"):
        frechet_distance(torch.zeros(3), torch.triu(torch.ones(3, 3)), torch.zeros(3), eye)
    with pytest.raises(ValueError, match="mu2"):
        frechet_distance(torch.zeros(3), eye, torch.zeros(4), eye)
    with pytest.raises(ValueError, match="mu1 contains NaN"):
        frechet_distance(torch.tensor([0.0, float("nan"), 0.0]), eye, torch.zeros(3), eye)
    with pytest.raises(TypeError, match="mu1 must be a floating-point"):
        frechet_distance(torch.zeros(3, dtype=torch.int64), eye, torch.zeros(3), eye)
    with pytest.raises(TypeError, match=r"sigma1 must be a torch\.Tensor"):
        frechet_distance(torch.zeros(3), [[1.0]], torch.zeros(3), eye)
    with pytest.raises(ValueError, match="at least 2 samples"):
        feature_statistics(torch.zeros(1, 3))


# ---------------------------------------------------------------- KID


def test_mmd2_unbiased_matches_the_double_sum():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(7, 3, generator=gen, dtype=torch.float64) + 0.3

    def k(a, b):
        return (float(a @ b) / 3 + 1) ** 3

    m = 7
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    assert float(mmd2_unbiased(x, y)) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_a_shift():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(1000, 16, generator=gen)
    b = torch.randn(1000, 16, generator=gen)
    mean, std = kernel_distance(a, b, subsets=20, subset_size=300)
    assert std > 0
    assert abs(mean) < std  # unbiased: zero within its spread
    shifted_mean, shifted_std = kernel_distance(a, b + 0.5, subsets=20, subset_size=300)
    assert shifted_mean > 10 * shifted_std
    assert shifted_mean > 10 * abs(mean)


def test_kid_is_reproducible_and_checks_its_arguments():
    a = torch.randn(300, 4)
    assert kernel_distance(a, a + 1, subsets=5, subset_size=100, seed=3) == kernel_distance(
        a, a + 1, subsets=5, subset_size=100, seed=3)
    with pytest.raises(ValueError, match="subset_size=400 is larger"):
        kernel_distance(a, a, subset_size=400)
    with pytest.raises(ValueError, match="feats_b has 5: they must match"):
        kernel_distance(a, torch.randn(300, 5), subset_size=100)
    with pytest.raises(ValueError, match="subsets must be >= 1"):
        kernel_distance(a, a, subsets=0, subset_size=100)


# ---------------------------------------------------------------- classifier score and coverage


def test_classifier_score_closed_forms():
    assert classifier_score(torch.full((50, 10), 0.1)) == pytest.approx(1.0)  # no confidence
    onehot = torch.eye(10).repeat(5, 1)  # confident and balanced
    assert classifier_score(onehot) == pytest.approx(10.0)
    assert classifier_score(torch.eye(10)[[3] * 20]) == pytest.approx(1.0)  # one class only


def test_classifier_score_is_over_the_whole_set_not_per_batch():
    # Two batches of one class each: per batch the score would be 1; over the set, 2.
    probs = torch.cat([torch.eye(10)[[1] * 100], torch.eye(10)[[7] * 100]])
    assert classifier_score(probs) == pytest.approx(2.0)


@given(st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=2**31))
@settings(max_examples=30, deadline=None)
def test_classifier_score_lies_between_one_and_the_class_count(n, seed):
    logits = 3 * torch.randn(n, 10, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    s = classifier_score(torch.softmax(logits, 1))
    assert 1.0 - 1e-9 <= s <= 10.0 + 1e-9


def test_class_coverage_sees_mode_collapse():
    ref = torch.full((10,), 0.1, dtype=torch.float64)
    balanced = class_coverage(torch.eye(10).repeat(3, 1), ref)
    assert balanced.kl == pytest.approx(0.0, abs=1e-12)
    assert balanced.classes_covered == 10
    collapsed = class_coverage(torch.eye(10)[[4] * 30], ref)
    assert collapsed.kl == pytest.approx(math.log(10))
    assert collapsed.classes_covered == 1
    assert collapsed.histogram[4] == 1.0
    with pytest.raises(ValueError, match="rows of class probabilities"):
        class_coverage(torch.ones(3, 10), ref)
    with pytest.raises(ValueError, match="reference must be class fractions"):
        class_coverage(torch.eye(10), torch.eye(10)[0].double())


# ---------------------------------------------------------------- precision and recall


def test_knn_radii_match_a_brute_force_sort_for_any_chunk_size():
    x = torch.randn(97, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    brute = torch.cdist(x, x).sort(dim=1).values[:, 3]  # column 0 is the point itself
    for chunk in (1, 10, 97, 500):
        assert torch.allclose(knn_radii(x, k=3, chunk_size=chunk), brute, atol=1e-9)


def test_precision_recall_of_a_half_covering_generator():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-10.0, 0.0], [10.0, 0.0]])
    real = torch.cat([torch.randn(200, 2, generator=gen) + c for c in centres])  # two modes
    fake = torch.randn(200, 2, generator=gen) + centres[0]  # one mode only
    precision, recall = precision_recall(real, fake, chunk_size=64)
    assert precision > 0.95  # every sample looks real
    assert 0.4 < recall < 0.55  # half the real data is never produced
    assert precision_recall(real, real) == (1.0, 1.0)
    assert precision_recall(real, fake + 100.0) == (0.0, 0.0)
    assert precision_recall(real, fake, chunk_size=7) == (precision, recall)  # memory-bounded chunks, same answer


def test_loading_the_classifier_leaves_the_global_rng_alone(monkeypatch):
    # Scoring mid-training (MetricsCallback, --eval-every) must not change the run: the first load
    # builds the network, whose random init once drew from torch's global RNG.
    from torchgan_lite.metrics import classifier

    monkeypatch.setattr(classifier, "_LOADED", {})  # as in a fresh process: nothing built yet
    before = torch.get_rng_state()
    model = classifier.load_classifier()
    assert torch.equal(torch.get_rng_state(), before)
    state = torch.load(classifier.CLASSIFIER_PATH, weights_only=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())  # the shipped weights, loaded
