"""The shipped MNIST classifier, the evaluation protocol on real data, MetricsCallback and the evaluate CLI."""

from __future__ import annotations

import io
import json
import os
import shutil

import pytest
import torch
import torch.nn.functional as F

from torchgan_lite import GANTrainer, TensorLoader, seed_everything
from torchgan_lite.callbacks.metrics import MetricsCallback
from torchgan_lite.cli import evaluate
from torchgan_lite.data import mnist as data
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.metrics import evaluator as evaluator_module
from torchgan_lite.metrics.classifier import CLASSIFIER_PATH, CLASSIFIER_SHA256, file_sha256, load_classifier
from torchgan_lite.metrics.evaluator import METRIC_NAMES, MNISTEvaluator, evaluate_mnist
from torchgan_lite.metrics.train_classifier import MIN_ACCURACY, accuracy
from torchgan_lite.nets import mlp as models

from .conftest import mnist_root

N = 2000  # samples per scored set: small enough for CI, large enough for the orderings below


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private metrics cache for this module (never the user's, never the data folder)."""
    folder = tmp_path_factory.mktemp("metrics_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCHGAN_LITE_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="module")
def root():
    folder = mnist_root()
    if not (folder / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.fail(f"real MNIST is required for this test but is not at {folder}; set TORCHGAN_LITE_DATA")
    return folder


@pytest.fixture(scope="module")
def scored(root, cache):
    """Metrics of real, blurred, single-class and noise sets of N images, and the floor."""
    ev = MNISTEvaluator(n=N, data_root=root, seed=0)
    x, y = data.mnist_with_labels(root, train=True)
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(1))[:N]  # not the floor's subset
    real = x[idx]
    kernel = torch.exp(-((torch.arange(5.0) - 2) ** 2) / (2 * 1.5**2))
    kernel = (kernel[:, None] * kernel[None, :] / kernel.sum() ** 2).view(1, 1, 5, 5)
    blurred = F.conv2d(F.pad(real, (2, 2, 2, 2), value=-1.0), kernel)  # Gaussian blur, sigma 1.5 px
    ones = x[y == 1][:N]
    noise = torch.rand(N, 1, 28, 28, generator=torch.Generator().manual_seed(2)) * 2 - 1
    return {"floor": ev.floor(), "real": ev.evaluate_tensor(real), "blurred": ev.evaluate_tensor(blurred),
            "single_class": ev.evaluate_tensor(ones), "noise": ev.evaluate_tensor(noise)}


def test_shipped_weights_match_their_checksum(tmp_path):
    assert file_sha256(CLASSIFIER_PATH) == CLASSIFIER_SHA256
    assert CLASSIFIER_PATH.stat().st_size < 2_000_000
    tampered = tmp_path / "w.pt"
    shutil.copy(CLASSIFIER_PATH, tampered)
    raw = bytearray(tampered.read_bytes())
    raw[-100] ^= 0xFF
    tampered.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256"):
        load_classifier(path=tampered)


@pytest.mark.mnist
def test_shipped_classifier_accuracy_on_the_test_set(root, cache):
    # The reference statistics hold the shipped classifier's predictions on the test set
    # (computed in this session, in a fresh cache): one pass over the 10,000 images serves both.
    y = data.mnist_with_labels(root, train=False)[1]
    predictions = MNISTEvaluator(n=N, data_root=root).reference()["predictions"]
    acc = float((predictions == y).double().mean())
    assert acc >= MIN_ACCURACY
    x, y = data.mnist_with_labels(root, train=False)
    assert accuracy(load_classifier(), x[:500], y[:500]) == float((predictions[:500] == y[:500]).double().mean())


@pytest.mark.mnist
def test_real_data_scores_at_the_floor(scored):
    floor, real = scored["floor"], scored["real"]
    assert set(floor) == set(METRIC_NAMES)
    # Two disjoint random sets of training images score alike (only sampling noise apart).
    assert real["fd"] < 1.5 * floor["fd"]
    assert abs(real["kid_mean"] - floor["kid_mean"]) < 3 * max(real["kid_std"], floor["kid_std"])
    assert real["classes_at_1pct"] == floor["classes_at_1pct"] == 10
    assert real["classifier_score"] > 9.5
    assert real["coverage_kl"] < 0.01
    assert real["precision"] > 0.6 and real["recall"] > 0.6


@pytest.mark.mnist
def test_degraded_sets_score_worse_in_the_expected_order(scored):
    real, blurred, single, noise = scored["real"], scored["blurred"], scored["single_class"], scored["noise"]
    # FD and KID: noise is furthest, then blur, each clearly above real data.
    assert real["fd"] * 3 < blurred["fd"] < noise["fd"], scored
    assert real["kid_mean"] + 10 * real["kid_std"] < blurred["kid_mean"] < noise["kid_mean"]
    assert single["fd"] > 3 * real["fd"] and single["kid_mean"] > 10 * real["kid_mean"]
    # One digit only: the coverage metrics see the collapse, precision does not, recall does.
    assert single["classes_at_1pct"] <= 2 and single["coverage_kl"] > 1.5
    assert single["classifier_score"] < 2
    assert single["precision"] > 0.5 * real["precision"]
    assert single["recall"] < 0.3 * real["recall"]
    # Noise is not classifiable. (k-NN precision does NOT reject it: a few real outliers have
    # balls wide enough to swallow every noise image; measured 1.0. See docs/evaluation.md.)
    assert noise["classifier_score"] < 2 < real["classifier_score"], noise


@pytest.mark.mnist
def test_evaluate_mnist_takes_a_module_a_callable_or_a_tensor(root, cache):
    torch.manual_seed(0)
    gen = models.mlp_generator(latent_dim=8, hidden=(32,))
    gen.train()
    z = torch.randn(500, 8, generator=torch.Generator().manual_seed(0))  # the noise evaluate_mnist draws
    with torch.no_grad():
        samples = torch.cat([gen.eval()(zc) for zc in z.split(128)])  # the chunks evaluate_mnist uses
    gen.train()
    rng_before = torch.get_rng_state()
    from_module = evaluate_mnist(gen, n=500, data_root=root, batch_size=128)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is not touched
    assert gen.training  # mode restored
    assert set(from_module) == set(METRIC_NAMES) | {f"real_{k}" for k in METRIC_NAMES}
    assert all(isinstance(v, float) for v in from_module.values())
    chunks = iter(samples.split(128))
    from_callable = evaluate_mnist(lambda k: next(chunks), n=500, data_root=root, batch_size=128)
    from_tensor = evaluate_mnist(torch.cat([samples, samples]), n=500, data_root=root, batch_size=128)
    for key in METRIC_NAMES:
        assert from_callable[key] == pytest.approx(from_module[key], rel=1e-5, abs=1e-7)
        assert from_tensor[key] == pytest.approx(from_module[key], rel=1e-5, abs=1e-7)
    assert from_module["fd"] > 10 * from_module["real_fd"]  # an untrained generator is far from the floor


@pytest.mark.mnist
def test_evaluate_mnist_rejects_bad_samples(root, cache):
    with pytest.raises(ValueError, match=r"\(N >= n=500, 1, 28, 28\)"):
        evaluate_mnist(torch.zeros(100, 1, 28, 28), n=500, data_root=root)
    with pytest.raises(ValueError, match=r"in \[-1, 1\]"):
        evaluate_mnist(torch.full((500, 1, 28, 28), 3.0), n=500, data_root=root)
    with pytest.raises(ValueError, match=r"shape \(100, 1, 28, 28\)"):
        evaluate_mnist(lambda k: torch.zeros(k, 784), n=100, data_root=root, batch_size=100)
    with pytest.raises(TypeError, match="latent_dim"):
        evaluate_mnist(torch.nn.Linear(3, 784), n=100, data_root=root)
    with pytest.raises(TypeError, match="generator_or_samples"):
        evaluate_mnist("samples.pt", n=100, data_root=root)
    with pytest.warns(RuntimeWarning, match=r"\[0, 1\]"):
        evaluate_mnist(torch.rand(200, 1, 28, 28, generator=torch.Generator().manual_seed(0)), n=200,
                       data_root=root)


@pytest.mark.mnist
def test_reference_statistics_are_cached_outside_the_data_folder(root, cache, scored):
    files = sorted(p.name for p in cache.iterdir())
    assert any(f.startswith(f"mnist_test_{CLASSIFIER_SHA256[:16]}") and f.endswith(".pt") for f in files)
    assert any(f.startswith("mnist_floor_") and f"_n{N}_seed0" in f for f in files)
    evaluator_module._MEMORY.clear()  # force a read from the cache file
    ev = MNISTEvaluator(n=N, data_root=root, seed=0)
    assert ev.floor() == scored["floor"]
    assert ev.reference()["features"].shape == (10000, 128)
    assert not any("mnist_test" in p.name for p in root.rglob("*"))


def _tiny_mnist_trainer(x: torch.Tensor, seed: int = 0) -> tuple[GANTrainer, TensorLoader]:
    torch.manual_seed(seed)
    g = models.mlp_generator(latent_dim=8, hidden=(32,))
    d = models.mlp_discriminator(hidden=(32,))
    seed_everything(seed)
    trainer = GANTrainer(g, d, losses.NonSaturatingLoss())
    return trainer, TensorLoader(x, batch_size=64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.mnist
def test_metrics_callback_fills_state_metrics_without_changing_training(root, cache, tmp_path):
    x = data.mnist(root)[:256]
    plain, loader = _tiny_mnist_trainer(x)
    plain.fit(loader, epochs=1)
    plain.fit(loader, epochs=2)
    trainer, loader = _tiny_mnist_trainer(x)
    cb = MetricsCallback(every=2, n=500, data_root=root)
    handles = cb.attach(trainer)
    assert len(handles) == 1
    trainer.fit(loader, epochs=1)
    assert trainer.state.metrics == {}  # every=2: nothing after epoch 1
    trainer.fit(loader, epochs=2)
    assert set(trainer.state.metrics) == set(METRIC_NAMES)
    assert all(isinstance(v, float) for v in trainer.state.metrics.values())
    assert set(cb.floor) == {f"real_{k}" for k in METRIC_NAMES}
    assert trainer.state.metrics["fd"] > cb.floor["real_fd"]
    for a, b in zip(plain.generator.parameters(), trainer.generator.parameters()):
        assert torch.equal(a, b)  # evaluation drew no numbers from the trainer's RNG

    ckpt = tmp_path / "ckpt.pt"
    trainer.save_checkpoint(ckpt)
    out, report = io.StringIO(), tmp_path / "m.json"
    rc = evaluate.main([str(ckpt), "--n", "500", "--json", str(report), "--data-root", os.fspath(root)], out=out)
    assert rc == 0
    text = out.getvalue()
    assert "real data" in text and "Fréchet distance" in text and "recall" in text
    saved = json.loads(report.read_text())
    assert saved["epoch"] == 2 and saved["n"] == 500
    assert saved["metrics"]["fd"] == pytest.approx(cb.last["fd"], rel=1e-5)  # same noise, same weights
    assert saved["metrics"]["real_fd"] == cb.floor["real_fd"]
    assert evaluate.main([str(tmp_path / "missing.pt")], out=io.StringIO()) == 2
