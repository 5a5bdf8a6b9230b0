"""Metrics for any images: extractors, cached reference statistics, FD/KID/PR/density/coverage checked against
outside implementations, the torch-fidelity path, and MetricsCallback on a non-MNIST generator. All offline."""

from __future__ import annotations

import csv
import json
import urllib.error
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from torchgan_lite import GANTrainer, HistoryCSV, TensorLoader, seed_everything
from torchgan_lite.callbacks.metrics import MetricsCallback
from torchgan_lite.losses.adversarial import NonSaturatingLoss
from torchgan_lite.metrics import reference as reference_module
from torchgan_lite.metrics.features import FeatureExtractor, as_extractor, load_extractor, module_fingerprint
from torchgan_lite.metrics.frechet import feature_statistics, frechet_distance
from torchgan_lite.metrics.images import IMAGE_METRICS, ImageEvaluator, real_subset
from torchgan_lite.metrics.kid import kernel_distance
from torchgan_lite.metrics.precision_recall import density_coverage, precision_recall
from torchgan_lite.nets.mlp import mlp_discriminator, mlp_generator

SHAPE = (3, 12, 12)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A private metrics cache per test (never the user's); the in-process memo emptied."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("TORCHGAN_LITE_CACHE", str(folder))
    reference_module._MEMORY.clear()
    return folder


def conv_net(seed: int = 0, channels: int = 3) -> nn.Module:
    """A small random conv net: (N, C, H, W) -> (N, 24)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(channels, 16, 3, stride=2), nn.ReLU(), nn.Conv2d(16, 24, 3), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()


def scripted(tmp_path, seed: int = 0, name: str = "extractor.pt") -> tuple[str, nn.Module]:
    net = conv_net(seed)
    path = tmp_path / name
    with warnings.catch_warnings():  # torch 2.14 marks TorchScript deprecated; users still hand us such files
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(net), str(path))
    return str(path), net


def real_images(n: int, seed: int = 1) -> torch.Tensor:
    """uint8 images (n, 3, 12, 12): smooth random blobs, so features have structure."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 3, 3, generator=g)
    x = nn.functional.interpolate(low, size=SHAPE[1:], mode="bilinear", align_corners=False)
    return (x * 255).round().to(torch.uint8)


def independent_fd(a: np.ndarray, b: np.ndarray) -> float:
    """pytorch-fid's formula (scipy's sqrtm if installed, else numpy eigenvalues), in float64."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    try:
        from scipy import linalg

        covmean = linalg.sqrtm(s1.dot(s2))
        tr = float(np.trace(covmean.real))
    except ImportError:
        tr = float(np.sqrt(np.linalg.eigvals(s1.dot(s2)).astype(complex)).real.sum())
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr)


def brute_prdc(real: np.ndarray, fake: np.ndarray, k_pr: int = 3, k_dc: int = 5) -> dict[str, float]:
    """Kynkäänniemi's precision/recall and Naeem's density/coverage written out with full distance matrices."""
    def radii(x: np.ndarray, k: int) -> np.ndarray:
        d = np.linalg.norm(x[:, None] - x[None], axis=2)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    d_rf = np.linalg.norm(real[:, None] - fake[None], axis=2)  # (N_r, N_f)
    r3, f3, r5 = radii(real, k_pr), radii(fake, k_pr), radii(real, k_dc)
    return {"precision": float((d_rf <= r3[:, None]).any(0).mean()),
            "recall": float((d_rf <= f3[None, :]).any(1).mean()),
            "density": float((d_rf <= r5[:, None]).sum(0).mean() / k_dc),
            "coverage": float((d_rf.min(1) <= r5).mean())}


# --------------------------------------------------------------------------- metrics against outside code


def test_fd_kid_pr_density_coverage_agree_with_outside_implementations():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 8, generator=g) @ torch.randn(8, 8, generator=g)  # correlated features
    fake = torch.randn(250, 8, generator=g) * 1.3 + 0.4
    fd = frechet_distance(*feature_statistics(fake), *feature_statistics(real))
    assert fd == pytest.approx(independent_fd(fake.numpy().astype(np.float64), real.numpy().astype(np.float64)),
                               rel=1e-6)
    ours = dict(zip(("precision", "recall"), precision_recall(real, fake)))
    ours.update(zip(("density", "coverage"), density_coverage(real, fake)))
    brute = brute_prdc(real.double().numpy(), fake.double().numpy())
    for key, value in brute.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key
    assert 0 < ours["coverage"] < 1 and 0 < ours["density"]


def test_density_coverage_agree_with_naeem_et_al_prdc_package():
    prdc = pytest.importorskip("prdc", reason="prdc (Naeem et al.'s own implementation) is not installed")
    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(200, 6, generator=g), torch.randn(180, 6, generator=g) * 0.8 + 0.2
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # compute_prdc prints the set sizes
        theirs = prdc.compute_prdc(real.numpy(), fake.numpy(), nearest_k=5)
    density, coverage = density_coverage(real, fake, k=5)
    assert density == pytest.approx(float(theirs["density"]), abs=1e-9)
    assert coverage == pytest.approx(float(theirs["coverage"]), abs=1e-9)


def test_kid_and_precision_recall_agree_with_torch_fidelity_on_the_same_features():
    tf_kid = pytest.importorskip("torch_fidelity.metric_kid", reason="torch-fidelity is not installed")
    tf_prc = pytest.importorskip("torch_fidelity.metric_prc")
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(200, 16, generator=g), torch.rand(200, 16, generator=g) * 1.1
    # One subset holding every row: the subset draw (their numpy RNG, our torch one) no longer matters.
    theirs = tf_kid.kid_features_to_metric(a, b, kid_subsets=1, kid_subset_size=200, verbose=False)
    ours = kernel_distance(a, b, subsets=1, subset_size=200)[0]
    assert ours == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4)
    assert abs(ours) > 1e-4  # the two sets differ: not a comparison of two zeros
    prc = tf_prc.prc_features_to_metric(b, a, prc_neighborhood=3, verbose=False)  # their input1 is the fake set
    precision, recall = precision_recall(a, b)
    assert precision == pytest.approx(prc["precision"], abs=1e-6)
    assert recall == pytest.approx(prc["recall"], abs=1e-6)


# --------------------------------------------------------------------------- extractors


def test_torchscript_extractor_round_trip_and_fingerprint(tmp_path):
    path, net = scripted(tmp_path)
    ext = load_extractor(path)
    x = torch.rand(5, *SHAPE) * 2 - 1
    assert torch.allclose(ext(x), net(x), atol=1e-6)
    assert ext.name == "extractor.pt" and len(ext.fingerprint) == 64
    other, _ = scripted(tmp_path, seed=1, name="other.pt")
    assert load_extractor(other).fingerprint != ext.fingerprint  # other weights, other cache entries
    assert module_fingerprint(conv_net(0)) == module_fingerprint(conv_net(0)) != module_fingerprint(conv_net(1))


def test_an_exported_program_is_an_extractor_too(tmp_path):
    net = conv_net()
    x = torch.rand(4, *SHAPE) * 2 - 1
    path = tmp_path / "extractor.pt2"
    torch.export.save(torch.export.export(net, (x,)), str(path))
    assert torch.allclose(load_extractor(path)(x), net(x), atol=1e-6)


def test_bad_extractor_files_and_outputs_are_refused_by_name(tmp_path):
    not_script = tmp_path / "weights.pt"
    torch.save(conv_net().state_dict(), not_script)
    with pytest.raises(ValueError, match=r"weights\.pt.*not a TorchScript module"):
        load_extractor(not_script)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"garbage\.pt"):
        load_extractor(garbage)
    with pytest.raises(FileNotFoundError, match=r"missing\.pt"):
        load_extractor(tmp_path / "missing.pt")
    x = torch.rand(4, *SHAPE) * 2 - 1

    class Bad(nn.Module):
        def __init__(self, kind: str) -> None:
            super().__init__()
            self.kind = kind

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            f = x.flatten(1)[:, :6]
            return {"3d": f[:, :, None], "rows": f[1:], "nan": f * float("nan")}[self.kind]

    for kind, words in (("3d", r"shape \(4, D\)"), ("rows", r"shape \(4, D\)"), ("nan", "NaN")):
        with pytest.raises(ValueError, match=words):
            FeatureExtractor(Bad(kind), name="bad")(x)
    with pytest.raises(ValueError, match=r"failed on images of shape \(1, 12, 12\).*--features"):
        as_extractor(conv_net())(torch.rand(4, 1, 12, 12))  # 3-channel net, grey images: no torch trace
    with pytest.raises(ValueError, match=r"takes images of shape \(1, 28, 28\).*--features"):
        as_extractor("mnist")(x)
    with pytest.raises(TypeError, match="features"):
        as_extractor(3)


# --------------------------------------------------------------------------- the image evaluator and its cache


def test_image_evaluator_matches_an_independent_computation_and_records_its_protocol(tmp_path):
    path, net = scripted(tmp_path)
    real = real_images(400)
    fake = real_images(200, seed=7).float() / 127.5 - 1
    fake = (fake * 0.8).clamp(-1, 1)  # a shifted set
    ev = ImageEvaluator(real, path, source="blobs", n=200, batch_size=64)
    result = ev.evaluate(fake)
    assert set(result) == set(IMAGE_METRICS) | {f"real_{k}" for k in IMAGE_METRICS}
    idx = real_subset(400, 200, 0)[0]
    with torch.no_grad():
        f_real, f_fake = net(real[idx].float() / 127.5 - 1).double(), net(fake).double()
    assert result["fd"] == pytest.approx(independent_fd(f_fake.numpy(), f_real.numpy()), rel=1e-5)
    assert result["kid_mean"] == pytest.approx(kernel_distance(f_fake, f_real, 100, 200, seed=0)[0], rel=1e-5)
    brute = brute_prdc(f_real.numpy(), f_fake.numpy())
    for key in ("precision", "recall", "density", "coverage"):
        assert result[key] == pytest.approx(brute[key], abs=1e-9), key
    assert result["real_fd"] < result["fd"]  # real images disjoint from the reference score closer
    p = ev.protocol
    assert p["n_fake"] == p["n_real"] == 200 and p["real_set_size"] == 400
    assert "200 of 400" in p["real_subset"] and p["features"]["fingerprint"] == load_extractor(path).fingerprint
    assert "resize" in p and p["precision_recall"] == {"k": 3, "n": 200}
    json.dumps(p)  # recordable beside the figures


def test_reference_is_computed_once_and_a_stale_or_corrupt_cache_is_rebuilt(tmp_path, cache):
    real, fake = real_images(300), real_images(150, seed=9).float() / 127.5 - 1
    first = ImageEvaluator(real, conv_net(), source="blobs", n=150).evaluate(fake, with_floor=False)
    files = sorted(cache.glob("images_*.pt"))
    assert len(files) == 1

    def must_not_load() -> torch.Tensor:
        raise AssertionError("the real set was loaded although its statistics are cached")

    reference_module._MEMORY.clear()
    again = ImageEvaluator(must_not_load, conv_net(), source="blobs", n=150).evaluate(fake, with_floor=False)
    assert again == first  # from the disk cache: the fake side only

    # Stale: a file under the expected name, computed for another key (e.g. another extractor's weights).
    saved = torch.load(files[0], weights_only=True)
    saved["key"] = {**saved["key"], "extractor": "0" * 64}
    saved["features"] = saved["features"] + 1.0
    torch.save(saved, files[0])
    reference_module._MEMORY.clear()
    with pytest.warns(RuntimeWarning, match="stale"):
        rebuilt = ImageEvaluator(real, conv_net(), source="blobs", n=150).evaluate(fake, with_floor=False)
    assert rebuilt == first
    # Corrupt: a torn file.
    files[0].write_bytes(files[0].read_bytes()[:200])
    reference_module._MEMORY.clear()
    with pytest.warns(RuntimeWarning, match="unreadable"):
        assert ImageEvaluator(real, conv_net(), source="blobs", n=150).evaluate(fake, with_floor=False) == first
    # Another extractor or n: another entry, never the first one's.
    ImageEvaluator(real, conv_net(seed=5), source="blobs", n=150).reference()
    ImageEvaluator(real, conv_net(), source="blobs", n=100).reference()
    assert len(list(cache.glob("images_*.pt"))) == 3


def test_image_evaluator_rejects_bad_input_by_name():
    real = real_images(100)
    with pytest.raises(ValueError, match="n=150 is more than the real set's 100 images"):
        ImageEvaluator(real, conv_net(), n=150).reference()
    ev = ImageEvaluator(real, conv_net(), n=50)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        ev.evaluate(torch.full((50, *SHAPE), 3.0))
    with pytest.raises(ValueError, match="shape"):
        ev.evaluate(torch.zeros(50, 3, 16, 16))  # not the real set's size
    with pytest.raises(TypeError, match="samples"):
        ev.evaluate("samples.pt")
    with pytest.raises(TypeError, match="source"):
        ImageEvaluator(lambda: real, conv_net(), n=50)  # a callable needs a name for the cache
    with pytest.raises(ValueError, match="n must be"):
        ImageEvaluator(real, conv_net(), n=3)
    assert set(ev.floor()) == set(IMAGE_METRICS)  # 100 images hold two disjoint sets of 50
    small = ImageEvaluator(real, conv_net(), n=60)  # 100 images hold no two disjoint sets of 60
    assert small.floor() == {} and "real_fd" not in small.evaluate(torch.zeros(60, *SHAPE))
    assert "100 < 2n" in small.protocol["floor"]


# --------------------------------------------------------------------------- MetricsCallback for any images


def _trainer(seed: int = 0) -> GANTrainer:
    torch.manual_seed(seed)
    g = mlp_generator(latent_dim=8, hidden=(32,), out_shape=SHAPE)
    d = mlp_discriminator(in_shape=SHAPE, hidden=(32,))
    seed_everything(seed)
    return GANTrainer(g, d, NonSaturatingLoss(), device="cpu")


def test_metrics_callback_scores_any_images_into_history_without_changing_training(tmp_path):
    data = real_images(128, seed=4).float() / 127.5 - 1
    loader = lambda: TensorLoader(data, batch_size=32, generator=torch.Generator().manual_seed(0))  # noqa: E731
    plain = _trainer()
    plain.fit(loader(), epochs=2)
    cb = MetricsCallback(every=2, n=64, batch_size=32, features=conv_net(), real=real_images(200), source="blobs")
    trainer = _trainer()  # after conv_net(), which seeds torch's RNG
    cb.attach(trainer)
    HistoryCSV(tmp_path / "history.csv").attach(trainer)
    trainer.fit(loader(), epochs=2)
    assert set(trainer.state.metrics) == set(IMAGE_METRICS)
    for a, b in zip(plain.generator.parameters(), trainer.generator.parameters()):
        assert torch.equal(a, b)  # scoring drew nothing from the trainer's random stream
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert rows[0]["fd"] == "" and float(rows[1]["fd"]) == pytest.approx(cb.last["fd"])
    assert set(cb.floor) == {f"real_{k}" for k in IMAGE_METRICS} and cb.protocol["n_fake"] == 64
    # The same figure as scoring the generator directly on the callback's noise bank.
    direct = ImageEvaluator(real_images(200), conv_net(), source="blobs", n=64, batch_size=32)
    assert direct.evaluate(trainer.generator, with_floor=False)["fd"] == pytest.approx(cb.last["fd"], rel=1e-6)
    with pytest.raises(ValueError, match="real="):
        MetricsCallback(features=conv_net())
    with pytest.raises(ValueError, match=r"\(1, 28, 28\)"):
        MetricsCallback(n=64).attach(_trainer())  # the MNIST default on 3x12x12 images
    with pytest.raises(ValueError, match="--features"):
        MetricsCallback(n=64, features="mnist", real=real_images(100)).attach(_trainer())


# --------------------------------------------------------------------------- torch-fidelity


@pytest.fixture
def tiny_fidelity_extractor():
    return register_tiny_extractor()


def register_tiny_extractor():
    """A small extractor registered with torch-fidelity, so its own code path runs offline."""
    tf = pytest.importorskip("torch_fidelity", reason="torch-fidelity is not installed (pip install torch-fidelity)")
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    class Tiny(FeatureExtractorBase):
        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)
            g = torch.Generator().manual_seed(0)
            self.w = nn.Parameter(torch.randn(16, 3, 4, 4, generator=g), requires_grad=False)
            self.h = nn.Parameter(torch.randn(10, 16, generator=g), requires_grad=False)

        def forward(self, x):
            f = nn.functional.conv2d(x.float() / 255, self.w, stride=4).relu().mean((2, 3))  # (B, 16)
            out = {"feat": f, "logits": f @ self.h.T}
            return tuple(out[a] for a in self.features_list)

        @staticmethod
        def get_provided_features_list():
            return ("feat", "logits")

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return {"isc": "logits", "fid": "feat", "kid": "feat", "prc": "feat"}[metric]

        @staticmethod
        def can_be_compiled():
            return False

    name = "torchgan-lite-test-tiny"
    if name not in tf.registry.FEATURE_EXTRACTORS_REGISTRY:
        tf.register_feature_extractor(name, Tiny)
    return tf, name


def test_fidelity_evaluator_gives_torch_fidelitys_numbers_and_trusts_no_stale_cache(tiny_fidelity_extractor, cache):
    from torchgan_lite.metrics.fidelity import FidelityEvaluator, to_uint8_rgb

    tf, name = tiny_fidelity_extractor
    real = real_images(300)
    fake = (real_images(150, seed=5).float() / 127.5 - 1) * 0.9
    ev = FidelityEvaluator(real, name, source="blobs", n=150, isc=True)
    ours = ev.evaluate(fake)
    idx = real_subset(300, 150, 0)[0]
    from torch.utils.data import TensorDataset

    class Images(TensorDataset):
        def __getitem__(self, i):
            return self.tensors[0][i]

    theirs = tf.calculate_metrics(input1=Images(to_uint8_rgb(fake)), input2=Images(real[idx]), feature_extractor=name,
                                  fid=True, kid=True, isc=True, kid_subset_size=150, cuda=False, verbose=False,
                                  cache=False, save_cpu_ram=True)
    assert ours == {"fd": theirs["frechet_inception_distance"], "kid_mean": theirs["kernel_inception_distance_mean"],
                    "kid_std": theirs["kernel_inception_distance_std"], "is_mean": theirs["inception_score_mean"],
                    "is_std": theirs["inception_score_std"]}
    assert ours["fd"] > 0

    def must_not_load() -> torch.Tensor:
        raise AssertionError("the real set was loaded although torch-fidelity has its features cached")

    assert FidelityEvaluator(must_not_load, name, source="blobs", n=150, isc=True).evaluate(fake) == ours
    cached = sorted((cache / "torch_fidelity").glob("torchgan_lite-*-features-feat.pt"))
    assert len(cached) == 1
    torch.save(torch.zeros(150, 16), cached[0])  # a tampered features file: torch-fidelity would trust it
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        assert FidelityEvaluator(real, name, source="blobs", n=150, isc=True).evaluate(fake) == ours
    assert ev.protocol["features"]["implementation"] == "torch-fidelity" and "resize" in ev.protocol


def test_inception_offline_is_one_line_saying_how_to_fetch_the_weights(tmp_path, monkeypatch):
    pytest.importorskip("torch_fidelity", reason="torch-fidelity is not installed")
    from torchgan_lite.metrics.fidelity import FidelityEvaluator, WeightsUnavailableError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))  # no cached weights

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    ev = FidelityEvaluator(real_images(20), "inception", n=10)
    with pytest.raises(WeightsUnavailableError) as err:
        ev.evaluate_uint8(real_images(10, seed=3))
    text = str(err.value)
    assert "\n" not in text and str(tmp_path / "empty_torch_home") in text
    assert "inception-v3-compat" in text and "python -c" in text and "create_feature_extractor" in text
    # Training with --eval-every on Inception fails at attach, before the first step, not at an epoch's end.
    with pytest.raises(WeightsUnavailableError, match="inception-v3-compat"):
        MetricsCallback(n=10, features="inception", real=real_images(20)).attach(_trainer())


def test_inception_metrics_equal_torch_fidelitys_where_the_weights_are_cached():
    tf = pytest.importorskip("torch_fidelity", reason="torch-fidelity is not installed")
    from torchgan_lite.metrics.fidelity import FidelityEvaluator, to_uint8_rgb, weights_location

    where = weights_location("inception")
    if where is None or not where.exists():
        pytest.skip(f"torch-fidelity's Inception weights are not cached at {where} (offline machine)")
    real, fake = real_images(100), real_images(100, seed=2)
    ours = FidelityEvaluator(real, "inception", n=100, cache=False).evaluate_uint8(fake)
    from torch.utils.data import TensorDataset

    class Images(TensorDataset):
        def __getitem__(self, i):
            return self.tensors[0][i]

    theirs = tf.calculate_metrics(input1=Images(to_uint8_rgb(fake)), input2=Images(real), fid=True, kid=True,
                                  isc=True, kid_subset_size=100, cuda=False, verbose=False, cache=False)
    assert ours["fd"] == theirs["frechet_inception_distance"] and ours["is_mean"] == theirs["inception_score_mean"]
