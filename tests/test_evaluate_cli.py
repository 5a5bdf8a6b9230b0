"""``torchgan-lite-evaluate`` on a non-MNIST checkpoint: a user's TorchScript extractor, FD checked against an
independent computation on the samples ``torchgan-lite-sample`` draws, bad options as one error line. Offline."""

from __future__ import annotations

import io
import json
import urllib.error
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from torchgan_lite import GANTrainer, dcgan_discriminator, dcgan_generator, seed_everything
from torchgan_lite.cli import evaluate, sample
from torchgan_lite.losses.adversarial import NonSaturatingLoss
from torchgan_lite.metrics import reference as reference_module

from .test_metrics_any import register_tiny_extractor

N = 120


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("TORCHGAN_LITE_CACHE", str(folder))
    reference_module._MEMORY.clear()
    return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An RGB 32x32 DCGAN checkpoint trained one step, a user's TorchScript extractor, and a real set (.pt)."""
    folder = tmp_path_factory.mktemp("rgb")
    torch.manual_seed(0)
    g = dcgan_generator(latent_dim=16, image_size=32, channels=3, base_width=8)
    d = dcgan_discriminator(image_size=32, channels=3, base_width=8)
    seed_everything(0)
    trainer = GANTrainer(g, d, NonSaturatingLoss(), device="cpu")
    trainer.train_step(torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    ckpt = trainer.save_checkpoint(folder / "checkpoint.pt")
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 16, 4, stride=2), nn.ReLU(), nn.Conv2d(16, 24, 4, stride=2), nn.Tanh(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()  # (N, 24)
    extractor = folder / "extractor.pt"
    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.14; users still hand us such files
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(net), str(extractor))
    g_ = torch.Generator().manual_seed(2)
    real = (nn.functional.interpolate(torch.rand(N, 3, 4, 4, generator=g_), size=(32, 32), mode="bilinear")
            * 255).round().to(torch.uint8)  # (N, 3, 32, 32)
    torch.save(real, folder / "real.pt")
    return {"ckpt": ckpt, "extractor": extractor, "real": folder / "real.pt", "folder": folder}


def independent_fd(a: np.ndarray, b: np.ndarray) -> float:
    """pytorch-fid's formula (scipy's sqrtm if installed, else numpy eigenvalues), in float64."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    try:
        from scipy import linalg

        tr = float(np.trace(linalg.sqrtm(s1.dot(s2)).real))
    except ImportError:
        tr = float(np.sqrt(np.linalg.eigvals(s1.dot(s2)).astype(complex)).real.sum())
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr)


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    out = io.StringIO()
    rc = evaluate.main(argv, out=out)
    return rc, out.getvalue(), capsys.readouterr().err


def test_rgb_checkpoint_scored_with_a_torchscript_extractor_agrees_with_sampled_images(files, tmp_path, capsys):
    report = tmp_path / "m.json"
    rc, text, err = run([str(files["ckpt"]), "--data", str(files["real"]), "--features", str(files["extractor"]),
                         "--n", str(N), "--json", str(report), "--batch-size", "50"], capsys)
    assert rc == 0, err
    assert "Fréchet distance" in text and "density" in text and "coverage" in text
    saved = json.loads(report.read_text())
    assert saved["n"] == N and saved["features"] == str(files["extractor"])
    assert saved["protocol"]["n_fake"] == N and saved["protocol"]["real_subset"] == f"all {N} images"
    assert saved["protocol"]["features"]["name"] == "extractor.pt"

    # Independently: the samples torchgan-lite-sample draws, the extractor run by hand, pytorch-fid's formula.
    samples_file = tmp_path / "s.pt"
    assert sample.main([str(files["ckpt"]), "--n", str(N), "--tensor", str(samples_file), "--seed", "0"]) == 0
    samples = torch.load(samples_file, weights_only=True)  # (N, 3, 32, 32) in [-1, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        net = torch.jit.load(str(files["extractor"]))
    real = torch.load(files["real"], weights_only=True)
    with torch.no_grad():
        f_fake, f_real = net(samples).double().numpy(), net(real.float() / 127.5 - 1).double().numpy()
    assert saved["metrics"]["fd"] == pytest.approx(independent_fd(f_fake, f_real), rel=1e-5)
    assert saved["metrics"]["fd"] > 0

    # A second run reads the cached reference: the same figures.
    reference_module._MEMORY.clear()
    rc, again, _ = run([str(files["ckpt"]), "--data", str(files["real"]), "--features", str(files["extractor"]),
                        "--n", str(N), "--batch-size", "50"], capsys)
    assert rc == 0 and again.splitlines()[2:] == text.splitlines()[2:]


def test_floor_needs_twice_n_real_images_and_is_shown_when_there(files, capsys):
    rc, text, err = run([str(files["ckpt"]), "--data", str(files["real"]), "--features", str(files["extractor"]),
                         "--n", str(N // 2)], capsys)
    assert rc == 0, err
    fd_line = next(line for line in text.splitlines() if line.startswith("Fréchet"))
    assert fd_line.split()[-2] != "-"  # a floor: 60 other real images
    rc, text, _ = run([str(files["ckpt"]), "--data", str(files["real"]), "--features", str(files["extractor"]),
                       "--n", str(N)], capsys)
    assert rc == 0 and "floor: none" in text


def test_a_folder_of_pngs_is_a_real_set(files, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "pngs"
    folder.mkdir()
    real = torch.load(files["real"], weights_only=True)  # (N, 3, 32, 32) uint8
    for i in range(60):
        Image.fromarray(real[i].permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")
    rc, text, err = run([str(files["ckpt"]), "--data", str(folder), "--features", str(files["extractor"]),
                         "--n", "30"], capsys)
    assert rc == 0, err
    assert "pngs" in text and "floor: 30 other real images" in text


@pytest.mark.mnist
def test_an_mnist_generator_against_another_split_with_the_classifier(tmp_path, mnist_dir, capsys):
    torch.manual_seed(0)
    from torchgan_lite.nets.mlp import mlp_discriminator, mlp_generator

    trainer = GANTrainer(mlp_generator(latent_dim=8, hidden=(16,)), mlp_discriminator(hidden=(16,)),
                         NonSaturatingLoss(), device="cpu")
    ckpt = trainer.save_checkpoint(tmp_path / "mnist.pt")
    rc, text, err = run([str(ckpt), "--data", "mnist", "--data-split", "test", "--n", "200", "--data-root",
                         str(mnist_dir)], capsys)
    assert rc == 0, err
    assert "features: mnist" in text and "density" in text and "classifier score" not in text


def test_bad_options_give_one_error_line(files, tmp_path, capsys):
    base = [str(files["ckpt"]), "--data", str(files["real"])]
    cases = [
        ([*base, "--features", str(files["extractor"]), "--n", str(N + 1)], "--n"),  # more than the real set
        ([*base, "--features", "mnist", "--n", "10"], "--features"),  # RGB 32x32 into the MNIST classifier
        ([*base, "--features", str(files["real"]), "--n", "10"], "not a TorchScript module"),  # a tensor file
        ([*base, "--features", str(tmp_path / "nope.pt"), "--n", "10"], "nope.pt"),
        ([str(files["ckpt"]), "--n", "10"], "--data"),  # no real set for RGB images
        ([*base, "--json", str(tmp_path), "--features", str(files["extractor"])], "folder"),  # --json DIR
        ([str(tmp_path / "missing.pt")], "missing.pt"),
    ]
    for argv, words in cases:
        rc, _, err = run(argv, capsys)
        assert rc == 2, (argv, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], (argv, err)


def test_inception_offline_is_one_error_line(files, tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch_fidelity", reason="torch-fidelity is not installed")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    rc, _, err = run([str(files["ckpt"]), "--data", str(files["real"]), "--n", "20"], capsys)  # inception: default
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "inception-v3-compat" in lines[0] and "python -c" in lines[0], err


def test_a_torch_fidelity_extractor_by_name_gives_the_evaluators_figures(files, tmp_path, capsys):
    from torchgan_lite.metrics.fidelity import FidelityEvaluator
    from torchgan_lite.nets.sampling import sample_images

    _, name = register_tiny_extractor()
    report = tmp_path / "f.json"
    rc, _, err = run([str(files["ckpt"]), "--data", str(files["real"]), "--features", name, "--n", "50",
                         "--json", str(report)], capsys)
    assert rc == 0, err
    saved = json.loads(report.read_text())
    assert saved["protocol"]["features"]["implementation"] == "torch-fidelity" and "real_fd" in saved["metrics"]
    from torchgan_lite.checkpoints.export import load_generator

    samples = sample_images(load_generator(files["ckpt"]), 50, seed=0)
    direct = FidelityEvaluator(torch.load(files["real"], weights_only=True), name, source="x", n=50, cache=False)
    assert saved["metrics"]["fd"] == pytest.approx(direct.evaluate(samples)["fd"], rel=1e-9)


def test_help_names_the_new_options(capsys):
    assert evaluate.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "--data" in text and "--features" in text and "inception" in text
