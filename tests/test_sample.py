"""export.load_generator: every library generator rebuilt from a checkpoint, new (config) and old (weights) layouts.

The checkpoints are written here with ``checkpoint.save_checkpoint`` in the layouts of
docs/architecture.md, so these tests do not depend on the trainer: format 2 holds
``models["generator"]`` (the builder's record), format 1 only the weights and the
trainer's ``latent_dim``/``sample_shape``/``num_classes``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from torchgan_lite.checkpoints import export
from torchgan_lite.checkpoints.format import save_checkpoint
from torchgan_lite.cli import evaluate, sample
from torchgan_lite.nets import registry, sampling

FORMAT_1 = "torchgan_lite.checkpoint/1"

# One small generator of each kind the library builds; the DCGAN ones at every size, every norm at each size,
# conditional and not at each size (9 of the 18 combinations, to keep the file fast).
GENERATORS: list[tuple[str, dict[str, Any]]] = [
    ("mlp_generator", {"latent_dim": 6, "hidden": [8, 12], "out_shape": [1, 4, 4]}),
    ("mlp_generator", {"latent_dim": 3, "hidden": [], "out_shape": [2, 3], "fast_layers": False}),
    ("conditional_mlp_generator", {"num_classes": 4, "latent_dim": 6, "hidden": [8], "out_shape": [1, 3, 3],
                                   "embed_dim": 5}),
    *[("dcgan_generator", {"latent_dim": 5, "image_size": size, "channels": 3, "base_width": 2, "norm": norm,
                           "num_classes": (None, 3)[(i + j) % 2]})
      for i, size in enumerate((28, 32, 64)) for j, norm in enumerate(("batch", "spectral", None))],
]
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(GENERATORS)]


def _build(name: str, kwargs: dict[str, Any], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return registry.build({"builder": name, "kwargs": kwargs})


def _perturbed(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state with every float tensor moved, so that loading it is visible."""
    return {k: v + 0.01 if v.is_floating_point() else v.clone() for k, v in module.state_dict().items()}


def _outputs(g: nn.Module, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(4, g.latent_dim, generator=gen)  # (4, latent)
    y = None if g.num_classes is None else torch.randint(0, g.num_classes, (4,), generator=gen)
    with torch.no_grad():
        return g.eval()(z) if y is None else g.eval()(z, y)


def _trainer_info(g: nn.Module) -> dict[str, Any]:
    return {"latent_dim": g.latent_dim, "sample_shape": list(g.out_shape), "num_classes": g.num_classes,
            "epoch": 1, "step": 7}


def _write(path: Path, g: nn.Module, *, models: bool = True, ema: dict[str, torch.Tensor] | None = None,
           trainer: bool = True) -> Path:
    ckpt: dict[str, Any] = {"generator": g.state_dict(), "discriminator": {}}
    if models:
        ckpt["models"] = {"generator": registry.module_config(g), "discriminator": None}
    else:
        ckpt["format"] = FORMAT_1
    if trainer:
        ckpt["trainer"] = _trainer_info(g)
    if ema is not None:
        ckpt["extra"] = {"ema": {"generator": ema, "num_updates": 3, "decay": 0.9, "warmup_steps": 0, "every": 1}}
    return save_checkpoint(ckpt, path)


@pytest.mark.parametrize(("name", "kwargs"), GENERATORS, ids=IDS)
def test_format_2_rebuilds_the_same_generator_from_its_config(name, kwargs, tmp_path):
    g = _build(name, kwargs)
    path = _write(tmp_path / "c.pt", g, trainer=False)  # the config alone suffices
    loaded = export.load_generator(path)
    assert not loaded.training
    assert loaded.config == g.config
    assert torch.equal(_outputs(loaded), _outputs(g))


@pytest.mark.parametrize(("name", "kwargs"), GENERATORS, ids=IDS)
def test_format_1_rebuilds_the_same_generator_from_its_weights(name, kwargs, tmp_path):
    g = _build(name, kwargs)
    path = _write(tmp_path / "c.pt", g, models=False)
    loaded = export.load_generator(path)
    # The weights give back every argument but fast_layers (same state either way), so the config is the same
    # up to that one.
    fast = {"fast_layers": loaded.config["kwargs"].get("fast_layers")} if "fast_layers" in kwargs else {}
    assert loaded.config["builder"] == name
    assert loaded.config["kwargs"] == {**g.config["kwargs"], **fast}
    assert torch.equal(_outputs(loaded), _outputs(g))


@pytest.mark.parametrize("models", [True, False], ids=["format2", "format1"])
def test_ema_weights_are_preferred_unless_use_ema_is_false(models, tmp_path):
    name, kwargs = GENERATORS[2]  # conditional: the EMA entry sits beside the labels path
    g = _build(name, kwargs)
    average = _build(name, kwargs, seed=5)
    path = _write(tmp_path / "c.pt", g, models=models, ema=average.state_dict())
    assert torch.equal(_outputs(export.load_generator(path)), _outputs(average))
    assert torch.equal(_outputs(export.load_generator(path, use_ema=False)), _outputs(g))
    ckpt = torch.load(path, weights_only=True)
    assert export.generator_state(ckpt)[1] == "ema"
    assert export.generator_state(ckpt, use_ema=False)[1] == "generator"


def test_legacy_config_reads_hidden_widths_norm_and_classes_off_the_weights():
    g = _build("dcgan_generator", {"latent_dim": 5, "image_size": 32, "channels": 3, "base_width": 4,
                                   "norm": "spectral", "num_classes": 2, "embed_dim": 7})
    ckpt = {"generator": g.state_dict(), "trainer": _trainer_info(g)}
    config = export.legacy_generator_config(ckpt)
    assert config == {"builder": "dcgan_generator", "kwargs": {"latent_dim": 5, "image_size": 32, "channels": 3,
                                                               "base_width": 4, "norm": "spectral",
                                                               "num_classes": 2, "embed_dim": 7}}
    wrong = {**ckpt, "trainer": {**ckpt["trainer"], "sample_shape": [3, 30, 30]}}
    with pytest.raises(ValueError, match=r"sample_shape is \(3, 30, 30\)"):
        export.legacy_generator_config(wrong)
    m = _build("mlp_generator", {"latent_dim": 6, "hidden": [8], "out_shape": [1, 4, 4]})
    bad = {"generator": m.state_dict(), "trainer": {**_trainer_info(m), "latent_dim": 7}}
    with pytest.raises(ValueError, match="latent_dim=7"):
        export.legacy_generator_config(bad)


def test_errors_name_the_checkpoint_and_what_is_wrong(tmp_path):
    g = _build(*GENERATORS[0])
    # A custom generator in a format-2 file: no config to rebuild it from.
    path = save_checkpoint({"generator": g.state_dict(), "models": {"generator": None, "discriminator": None}},
                           tmp_path / "custom.pt")
    with pytest.raises(ValueError, match=r"custom\.pt.*not made by a registered builder.*load ckpt\['generator'\]"):
        export.load_generator(path)
    # A config naming a builder nobody registered (its module not imported).
    path = save_checkpoint({"generator": g.state_dict(), "models": {
        "generator": {"builder": "my_stylegan", "kwargs": {}}, "discriminator": None}}, tmp_path / "unknown.pt")
    with pytest.raises(ValueError, match=r"unknown\.pt.*'my_stylegan', which is not registered"):
        export.load_generator(path)
    # Weights that do not fit the config.
    config = registry.module_config(g)
    config["kwargs"]["hidden"] = [8, 13]
    path = save_checkpoint({"generator": g.state_dict(), "models": {"generator": config, "discriminator": None}},
                           tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match=r"mismatch\.pt: the generator weights do not fit the mlp_generator"):
        export.load_generator(path)
    # A format-1 file of a custom generator: its weights are none of the library's.
    custom = nn.Sequential(nn.Conv2d(1, 2, 3))
    path = save_checkpoint({"format": FORMAT_1, "generator": custom.state_dict(),
                            "trainer": {"latent_dim": 8, "sample_shape": [1, 4, 4]}}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"old\.pt: the generator is not an mlp_generator"):
        export.load_generator(path)
    # A format-1 file without the trainer's shapes.
    path = save_checkpoint({"format": FORMAT_1, "generator": g.state_dict()}, tmp_path / "bare.pt")
    with pytest.raises(ValueError, match=r"bare\.pt: no 'models' entry.*latent_dim and sample_shape"):
        export.load_generator(path)
    with pytest.raises(TypeError, match="use_ema"):
        export.load_generator(_write(tmp_path / "ok.pt", g), use_ema="yes")


def test_sample_cli_draws_from_the_ema_or_the_trained_weights(tmp_path, capsys):
    name, kwargs = GENERATORS[0]
    g, average = _build(name, kwargs), _build(name, kwargs, seed=5)
    path = _write(tmp_path / "c.pt", g, ema=average.state_dict())
    out = tmp_path / "s.pt"
    assert sample.main([str(path), "--n", "5", "--tensor", str(out), "--seed", "2"]) == 0
    assert torch.equal(torch.load(out, weights_only=True), sampling.sample_images(average.eval(), 5, seed=2))
    assert sample.main([str(path), "--n", "5", "--tensor", str(out), "--seed", "2", "--no-ema"]) == 0
    assert torch.equal(torch.load(out, weights_only=True), sampling.sample_images(g.eval(), 5, seed=2))
    assert sample.main([str(path), "--digit", "1", "--tensor", str(out)]) == 2
    assert "unconditional" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.mnist
def test_evaluate_scores_a_conditional_generator_on_balanced_labels(mnist_dir, tmp_path):
    g = _build("conditional_mlp_generator", {"num_classes": 10, "latent_dim": 8, "hidden": [16],
                                             "out_shape": [1, 28, 28]})
    path = _write(tmp_path / "cond.pt", g)
    out = io.StringIO()
    rc = evaluate.main([str(path), "--n", "200", "--batch-size", "100", "--data-root", os.fspath(mnist_dir)],
                       out=out)
    assert rc == 0, out.getvalue()
    text = out.getvalue()
    assert "generator weights" in text and "Fréchet distance" in text
    assert "class accuracy" in text  # a conditional generator: its class accuracy, overall and per digit
    per_digit = text.split("per digit (%): ")[1].splitlines()[0].split(", ")
    assert [entry.split(":")[0] for entry in per_digit] == [str(c) for c in range(10)]
