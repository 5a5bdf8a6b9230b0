"""The RGB recipe tools: the colour digits, the "mnist-luma+colour" extractor, the RGB harness, the MNIST one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import make_colour_digits as colour
from benchmarks import recipes_ablation, recipes_images
from torchgan_lite import load_images, mnist_with_labels
from torchgan_lite.recipes import SPECS


def _digits(n: int, seed: int = 0) -> torch.Tensor:
    """Synthetic grey "digits" in [-1, 1]: a bright bar on black, at a place drawn per image."""
    gen = torch.Generator().manual_seed(seed)
    x = -torch.ones(n, 1, 28, 28)  # (n, 1, 28, 28)
    for i, col in enumerate(torch.randint(6, 20, (n,), generator=gen).tolist()):
        x[i, 0, 6:22, col : col + 3] = 1.0
    return x


def test_colour_digits_deterministic_rgb_and_painted_as_drawn() -> None:
    digits = _digits(40)
    a, b = colour.colour_digits(digits, seed=3), colour.colour_digits(digits, seed=3)
    assert a.dtype == torch.uint8 and tuple(a.shape) == (40, 3, 32, 32)
    assert torch.equal(a, b)
    assert not torch.equal(a, colour.colour_digits(digits, seed=4))
    fg, bg = colour.draw_colours(40, torch.Generator().manual_seed(3))  # the colours colour_digits drew
    # a corner holds no ink: the background colour; the bar's middle is all ink: the stroke colour
    assert torch.equal(a[:, :, 0, 0], bg.mul(255).round().to(torch.uint8))
    cols = [int(torch.nonzero(digits[i, 0, 14] > 0)[1]) for i in range(40)]  # the bar's middle column
    strokes = torch.stack([a[i, :, 16, round((c + 0.5) * 32 / 28 - 0.5)] for i, c in enumerate(cols)])
    assert (strokes.int() - fg.mul(255).round().int()).abs().max() <= 1
    # colours vary across images and the strokes are brighter than the background by the promised gap
    assert fg.std(0).min() > 0.1 and bg.std(0).min() > 0.05
    assert bool((colour.luma(fg) - colour.luma(bg) >= colour.MIN_LUMA_GAP).all())


def test_colour_digits_refuses_colour_input() -> None:
    with pytest.raises(ValueError, match="digits"):
        colour.colour_digits(torch.zeros(2, 3, 28, 28))


@pytest.mark.mnist
def test_make_colour_digits_writes_the_mnist_labels(tmp_path: Path, mnist_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHGAN_LITE_DATA", str(mnist_dir))
    monkeypatch.setenv("TORCHGAN_LITE_CACHE", str(tmp_path / "cache"))
    assert colour.main(["--out", str(tmp_path / "set"), "-n", "50", "--seed", "1"]) == 0
    loaded = load_images(tmp_path / "set")
    digits, labels = mnist_with_labels()
    order = sorted(range(50), key=lambda i: (int(labels[i]), i))  # folders by class, files by index
    assert loaded.classes == [str(d) for d in range(10)] and loaded.image_shape == (3, 32, 32)
    assert torch.equal(loaded.labels, labels[:50][order])
    assert torch.equal(loaded.images, colour.colour_digits(digits[:50], seed=1)[order])  # PNG is lossless
    assert json.loads((tmp_path / "set" / "manifest.json").read_text())["seed"] == 1


def test_luma_colour_extractor_shape_and_colour_block() -> None:
    ex = recipes_images.luma_colour_extractor()
    assert ex.name == "mnist-luma+colour" and ex.input_shape == (3, 32, 32)
    fg, bg = torch.tensor([0.9, 0.8, 0.1]), torch.tensor([0.1, 0.2, 0.5])  # fg brighter in luma
    img = bg.view(3, 1, 1).expand(3, 32, 32).clone()  # (3, 32, 32) in [0, 1]
    img[:, 4:12, 4:20] = fg.view(3, 1, 1)  # 128 of 1024 pixels (> the brightest 10 %)
    feats = ex(torch.stack([img, img.flip(2)]) * 2 - 1)  # (2, 134)
    assert tuple(feats.shape) == (2, 128 + 6)
    w = recipes_images.COLOUR_WEIGHT
    assert torch.allclose(feats[:, 128:131], w * fg.expand(2, 3), atol=1e-4)
    assert torch.allclose(feats[:, 131:], w * bg.expand(2, 3), atol=1e-4)
    with pytest.raises(ValueError, match="mnist-luma"):  # a grey image is refused by name, before the net
        ex(torch.zeros(2, 1, 28, 28))
    other = recipes_images.luma_colour_extractor(colour_weight=1.0)
    assert other.fingerprint != ex.fingerprint  # the cache never mixes two weights
    with pytest.raises(ValueError, match="colour_weight"):
        recipes_images.luma_colour_extractor(colour_weight=0.0)


def test_build_nets_refuses_an_unknown_arch() -> None:
    with pytest.raises(ValueError, match="arch"):
        recipes_images.build_nets("vgg", None)


def test_recipes_ablation_trains_any_named_recipe() -> None:
    assert recipes_ablation.spec_for("rpgan-r1r2") is SPECS["rpgan-r1r2"]
    assert recipes_ablation.spec_for("improved-r1") is SPECS["improved-r1"]
    with pytest.raises(ValueError, match="unknown config"):
        recipes_ablation.spec_for("no-such-recipe")


def test_harness_smoke_two_steps_then_continues(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHGAN_LITE_CACHE", str(tmp_path / "cache"))
    digits = _digits(300)
    labels = torch.arange(300) % 10
    data = colour.write_folder(colour.colour_digits(digits), labels, tmp_path / "set")
    out = tmp_path / "rows.jsonl"
    argv = ["--recipes", "dcgan", "rpgan-r1r2", "--data", str(data), "--subset", "128", "--epochs", "1",
            "--n", "140", "--run-dir", str(tmp_path / "runs"), "--out", str(out)]
    assert recipes_images.main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["recipe"], r["weights"]) for r in rows] == [("dcgan", "trained"), ("rpgan-r1r2", "trained"),
                                                          ("rpgan-r1r2", "ema")]
    for r in rows:
        assert r["steps"] == 2 and r["epochs"] == 1 and r["train_images"] == 128
        assert r["fd"] > r["real_fd"] >= 0 and r["features"] == "mnist-luma+colour"
    assert (tmp_path / "runs" / "dcgan_rpgan-r1r2_seed0" / "epoch001_ema.png").exists()
    assert recipes_images.main([*argv[:8], "2", *argv[9:]]) == 0  # --epochs 2: continues from the checkpoint
    rows = [json.loads(line) for line in out.read_text().splitlines()][3:]
    assert [(r["recipe"], r["epochs"], r["steps"]) for r in rows] == [("dcgan", 2, 4), ("rpgan-r1r2", 2, 4),
                                                                      ("rpgan-r1r2", 2, 4)]
    protocol = json.loads(out.with_suffix(".protocol.json").read_text())
    assert protocol["features"]["name"] == "mnist-luma+colour" and protocol["n_real"] == 140
    assert protocol["features"]["feature_dim"] == 134  # known although the second run's reference was cached


def test_side_by_side_places_and_crops_panels(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (20, 10), (255, 0, 0)).save(tmp_path / "a.png")
    b = Image.new("L", (30, 30), 0)
    b.paste(200, (10, 5, 20, 25))  # the box the panel keeps
    b.save(tmp_path / "b.png")
    out = recipes_images.side_by_side([f"a={tmp_path / 'a.png'}", f"b={tmp_path / 'b.png'}#10,5,20,25"],
                                      tmp_path / "out.png")
    im = Image.open(out)
    gap, label = recipes_images.GAP, recipes_images.LABEL_H
    assert im.size == (20 + gap + 10, 20 + label)
    assert im.getpixel((5, label + 5)) == (255, 0, 0)
    assert im.getpixel((20 + gap + 5, label + 10)) == (200, 200, 200)  # grey panel, made RGB
    with pytest.raises(ValueError, match="panel"):
        recipes_images.side_by_side(["no-path"], tmp_path / "x.png")
    with pytest.raises(FileNotFoundError, match="missing"):
        recipes_images.side_by_side([f"missing={tmp_path / 'none.png'}"], tmp_path / "x.png")
