"""export.load_generator: every library generator rebuilt from a checkpoint's recorded builder config.

The checkpoints are written here with ``checkpoint.save_checkpoint`` in the layout of
docs/architecture.md, so these tests do not depend on the trainer: they hold
``models["generator"]`` (the builder's record). A file without that record, or of
format 1, is refused with what to do instead; one holding NaN weights is refused unless
``allow_nonfinite=True``, by the function and by ``torchgan-lite-sample``.
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
from torchgan_lite.checkpoints.format import FORMAT, save_checkpoint
from torchgan_lite.cli import evaluate, sample
from torchgan_lite.nets import registry, sampling

FORMAT_1 = "torchgan_lite.checkpoint/1"  # before the step redesign: refused

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


def _write(path: Path, g: nn.Module, *, ema: dict[str, torch.Tensor] | None = None, trainer: bool = True) -> Path:
    ckpt: dict[str, Any] = {"generator": g.state_dict(), "discriminator": {},
                            "models": {"generator": registry.module_config(g), "discriminator": None}}
    if trainer:
        ckpt["trainer"] = _trainer_info(g)
    if ema is not None:
        ckpt["extra"] = {"ema": {"generator": ema, "num_updates": 3, "decay": 0.9, "warmup_steps": 0, "every": 1}}
    return save_checkpoint(ckpt, path)


@pytest.mark.parametrize(("name", "kwargs"), GENERATORS, ids=IDS)
def test_every_generator_is_rebuilt_from_its_recorded_config(name, kwargs, tmp_path):
    g = _build(name, kwargs)
    path = _write(tmp_path / "c.pt", g, trainer=False)  # the config alone suffices
    loaded = export.load_generator(path)
    assert not loaded.training
    assert loaded.config == g.config
    assert torch.equal(_outputs(loaded), _outputs(g))


def test_ema_weights_are_preferred_unless_use_ema_is_false(tmp_path):
    name, kwargs = GENERATORS[2]  # conditional: the EMA entry sits beside the labels path
    g = _build(name, kwargs)
    average = _build(name, kwargs, seed=5)
    path = _write(tmp_path / "c.pt", g, ema=average.state_dict())
    assert torch.equal(_outputs(export.load_generator(path)), _outputs(average))
    assert torch.equal(_outputs(export.load_generator(path, use_ema=False)), _outputs(g))
    ckpt = torch.load(path, weights_only=True)
    assert export.generator_state(ckpt)[1] == "ema"
    assert export.generator_state(ckpt, use_ema=False)[1] == "generator"


def test_errors_name_the_checkpoint_and_what_is_wrong(tmp_path):
    g = _build(*GENERATORS[0])
    # A custom generator in a format-2 file: no config to rebuild it from.
    path = save_checkpoint({"generator": g.state_dict(), "models": {"generator": None, "discriminator": None}},
                           tmp_path / "custom.pt")
    with pytest.raises(ValueError, match=r"custom\.pt.*records no builder config.*load ckpt\['generator'\]"):
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
    # No record at all (a hand-built file): the same advice, not a guess from the weight shapes.
    path = save_checkpoint({"generator": g.state_dict(), "trainer": _trainer_info(g)}, tmp_path / "bare.pt")
    with pytest.raises(ValueError, match=r"bare\.pt.*records no builder config.*load ckpt\['generator'\]"):
        export.load_generator(path)
    # A format-1 file: one refusal naming the file and its format.
    path = tmp_path / "old.pt"
    torch.save({"format": FORMAT_1, "generator": g.state_dict(), "trainer": _trainer_info(g)}, path)
    with pytest.raises(ValueError, match=r"old\.pt is in format 'torchgan_lite\.checkpoint/1'"):
        export.load_generator(path)
    with pytest.raises(TypeError, match="use_ema"):
        export.load_generator(_write(tmp_path / "ok.pt", g), use_ema="yes")


def _nan_file(folder: Path, g: nn.Module, *, in_ema: bool) -> Path:
    """A valid checkpoint written by hand with ``torch.save`` whose generator (or EMA) holds one NaN weight."""
    state = {k: v.clone() for k, v in g.state_dict().items()}
    state["net.0.weight"][0, 0] = float("nan")
    ckpt: dict[str, Any] = {"format": FORMAT, "generator": g.state_dict() if in_ema else state, "discriminator": {},
                            "models": {"generator": registry.module_config(g), "discriminator": None},
                            "trainer": _trainer_info(g)}
    if in_ema:
        ckpt["extra"] = {"ema": {"generator": state, "num_updates": 3}}
    path = folder / ("nan_ema.pt" if in_ema else "nan.pt")
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("in_ema", [False, True], ids=["weights", "ema"])
def test_nan_weights_are_refused_unless_allowed_and_the_sample_cli_refuses_them(in_ema, tmp_path, capsys):
    g = _build(*GENERATORS[0])
    path = _nan_file(tmp_path, g, in_ema=in_ema)
    named = r"extra\['ema'\]\['generator'\]\['net\.0\.weight'\]" if in_ema else r"generator\['net\.0\.weight'\]"
    with pytest.raises(ValueError, match=rf"{path.name} holds a NaN or infinity in {named}"):
        export.load_generator(path)
    out = tmp_path / "s.pt"
    assert sample.main([str(path), "--n", "4", "--tensor", str(out)]) == 2
    err = capsys.readouterr().err
    assert path.name in err and "NaN" in err and "Traceback" not in err
    assert not out.exists()  # no all-NaN samples written
    with pytest.warns(RuntimeWarning, match=rf"{path.name} holds a NaN or infinity"):
        loaded = export.load_generator(path, allow_nonfinite=True)
    assert torch.isnan(loaded.state_dict()["net.0.weight"][0, 0])


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
