"""export_generator / load_generator(folder): safetensors weights plus a JSON builder config, loaded without pickle.

Each library generator (MLP, conditional MLP, DCGAN) is exported, from the module and from a
checkpoint, and rebuilt from the folder; the rebuilt one must give bitwise-equal outputs for
the same noise. A folder with a file missing, changed or replaced is refused naming that file,
and loading a folder never calls ``torch.load`` or pickle.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from torch import nn

import torchgan_lite
from torchgan_lite.checkpoints import export
from torchgan_lite.checkpoints.format import save_checkpoint
from torchgan_lite.nets import registry
from torchgan_lite.utils import atomic

GENERATORS: list[tuple[str, dict[str, Any]]] = [
    ("mlp_generator", {"latent_dim": 6, "hidden": [8, 12], "out_shape": [1, 4, 4]}),
    ("conditional_mlp_generator", {"num_classes": 4, "latent_dim": 6, "hidden": [8], "out_shape": [1, 3, 3],
                                   "embed_dim": 5}),
    ("dcgan_generator", {"latent_dim": 5, "image_size": 28, "channels": 1, "base_width": 2, "norm": "batch"}),
    ("dcgan_generator", {"latent_dim": 5, "image_size": 32, "channels": 3, "base_width": 2, "norm": "spectral",
                         "num_classes": 3}),
]
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(GENERATORS)]


def _build(name: str, kwargs: dict[str, Any], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    g = registry.build({"builder": name, "kwargs": kwargs})
    with torch.no_grad():  # move every float tensor (BatchNorm statistics, spectral-norm vectors included)
        for t in g.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.01)
    return g


def _outputs(g: nn.Module, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(4, g.latent_dim, generator=gen)  # (4, latent)
    y = None if g.num_classes is None else torch.randint(0, g.num_classes, (4,), generator=gen)
    with torch.no_grad():
        return g.eval()(z) if y is None else g.eval()(z, y)


def _checkpoint(path: Path, g: nn.Module, ema: nn.Module | None = None) -> Path:
    ckpt: dict[str, Any] = {"generator": g.state_dict(), "discriminator": {},
                            "models": {"generator": registry.module_config(g), "discriminator": None}}
    if ema is not None:
        ckpt["extra"] = {"ema": {"generator": ema.state_dict(), "num_updates": 3}}
    return save_checkpoint(ckpt, path)


def no_pickle(m: pytest.MonkeyPatch) -> None:
    """Make every way to unpickle (torch.load included) raise: what runs then reads no pickle."""
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pickle or torch.load was called")

    for owner, name in [(torch, "load"), (torch.serialization, "load"), (pickle, "load"), (pickle, "loads"),
                        (pickle, "Unpickler")]:
        m.setattr(owner, name, refuse)


@pytest.mark.parametrize(("name", "kwargs"), GENERATORS, ids=IDS)
def test_an_exported_generator_comes_back_bitwise_without_pickle(name, kwargs, tmp_path, monkeypatch):
    g = _build(name, kwargs)
    expected = _outputs(g)
    folder = export.export_generator(g, tmp_path / "shared")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    record = json.loads((folder / "config.json").read_text())
    assert record["generator"] == registry.module_config(g)
    assert record["torchgan_lite_version"] == torchgan_lite.__version__
    assert record["format"] == export.EXPORT_FORMAT
    with monkeypatch.context() as m:
        no_pickle(m)
        loaded = export.load_generator(folder)
    assert not loaded.training and loaded.config == g.config
    assert torch.equal(_outputs(loaded), expected)
    # The weights file is plain safetensors: any safetensors reader gets the state dict.
    state = safetensors.torch.load_file(folder / "model.safetensors")
    assert state.keys() == g.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in g.state_dict().items())


def test_the_no_pickle_guard_would_catch_a_checkpoint_load(tmp_path, monkeypatch):
    g = _build(*GENERATORS[0])
    path = _checkpoint(tmp_path / "c.pt", g)
    no_pickle(monkeypatch)
    with pytest.raises(ValueError, match=r"pickle or torch\.load was called"):
        export.load_generator(path)  # a checkpoint file is a pickle: the guard sees torch.load called


@pytest.mark.parametrize("use_ema", [True, False], ids=["ema", "trained"])
def test_export_from_a_checkpoint_takes_its_ema_weights_unless_told_not_to(use_ema, tmp_path):
    name, kwargs = GENERATORS[1]
    g, average = _build(name, kwargs), _build(name, kwargs, seed=5)
    path = _checkpoint(tmp_path / "c.pt", g, ema=average)
    folder = export.export_generator(path, tmp_path / "shared", use_ema=use_ema)
    record = json.loads((folder / "config.json").read_text())
    assert record["weights"]["which"] == ("ema" if use_ema else "generator")
    assert torch.equal(_outputs(export.load_generator(folder)), _outputs(average if use_ema else g))
    if use_ema:
        with pytest.raises(ValueError, match="EMA weights only"):
            export.load_generator(folder, use_ema=False)


def _exported(tmp_path: Path) -> tuple[Path, nn.Module]:
    g = _build(*GENERATORS[0])
    return export.export_generator(g, tmp_path / "shared"), g


def test_a_changed_weights_file_is_refused_by_name(tmp_path):
    folder, _ = _exported(tmp_path)
    weights = folder / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-3] ^= 0x01  # one bit of the last weight: still valid safetensors, other numbers
    weights.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"model\.safetensors does not match the SHA-256"):
        export.load_generator(folder)


def test_a_replaced_weights_file_is_refused_by_name(tmp_path):
    folder, g = _exported(tmp_path)
    other = {k: v + 1 if v.is_floating_point() else v for k, v in g.state_dict().items()}
    safetensors.torch.save_file(other, folder / "model.safetensors")
    with pytest.raises(ValueError, match=r"model\.safetensors does not match the SHA-256"):
        export.load_generator(folder)


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors"])
def test_a_missing_file_is_named(missing, tmp_path):
    folder, _ = _exported(tmp_path)
    (folder / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing.replace(".", r"\.")):
        export.load_generator(folder)


def _rewrite_config(folder: Path, edit: Any) -> None:
    record = json.loads((folder / "config.json").read_text())
    edit(record)
    (folder / "config.json").write_text(json.dumps(record))


@pytest.mark.parametrize(("edit", "match"), [
    (lambda r: r["generator"]["kwargs"].update(hidden=[8, 13]), r"config\.json: the module weights do not fit"),
    (lambda r: r["generator"].update(builder="my_stylegan"), r"config\.json: .*'my_stylegan', which is not regist"),
    (lambda r: r.update(format="someone-else/1"), r"config\.json is not a torchgan_lite export"),
    (lambda r: r.pop("weights"), r"config\.json is not a torchgan_lite export"),
])
def test_an_edited_config_is_refused_by_name(edit, match, tmp_path):
    folder, _ = _exported(tmp_path)
    _rewrite_config(folder, edit)
    with pytest.raises(ValueError, match=match):
        export.load_generator(folder)


def test_a_config_that_is_not_json_and_weights_that_are_not_safetensors_are_named(tmp_path):
    folder, _ = _exported(tmp_path)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        export.load_generator(folder)
    folder, _ = _exported(tmp_path / "b")
    junk = b"\x08" + bytes(20)
    (folder / "model.safetensors").write_bytes(junk)
    _rewrite_config(folder, lambda r: r["weights"].update(sha256=hashlib.sha256(junk).hexdigest()))
    with pytest.raises(ValueError, match=r"model\.safetensors cannot be read as safetensors"):
        export.load_generator(folder)


def test_an_interrupted_re_export_is_refused_not_mixed(tmp_path, monkeypatch):
    folder, _ = _exported(tmp_path)
    newer = _build(*GENERATORS[0], seed=9)
    real = atomic.atomic_open

    def fail_on_config(path: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(path).name == "config.json":
            raise OSError(28, "No space left on device")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(export, "atomic_open", fail_on_config)
    with pytest.raises(OSError):
        export.export_generator(newer, folder)
    monkeypatch.undo()
    # The new weights landed, the old config did not change: the SHA-256 tells, and nothing mixed loads.
    with pytest.raises(ValueError, match=r"model\.safetensors does not match the SHA-256"):
        export.load_generator(folder)
    export.export_generator(newer, folder)  # exporting again repairs it
    assert torch.equal(_outputs(export.load_generator(folder)), _outputs(newer))


def test_a_generator_without_a_builder_config_is_refused(tmp_path):
    custom = nn.Sequential(nn.Linear(4, 8))
    with pytest.raises(ValueError, match="records no builder config"):
        export.export_generator(custom, tmp_path / "shared")
    assert not (tmp_path / "shared").exists() or not any((tmp_path / "shared").iterdir())


def test_nan_weights_are_not_exported_and_not_loaded_unless_allowed(tmp_path):
    g = _build(*GENERATORS[0])
    with torch.no_grad():
        g.net[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"'net\.0\.weight' holds a NaN or infinity"):
        export.export_generator(g, tmp_path / "refused")
    # A folder written by hand, its SHA-256 right, its weights not finite.
    folder, _ = _exported(tmp_path)
    data = safetensors.torch.save({k: v.contiguous() for k, v in g.state_dict().items()})
    (folder / "model.safetensors").write_bytes(data)
    _rewrite_config(folder, lambda r: r["weights"].update(sha256=hashlib.sha256(data).hexdigest()))
    with pytest.raises(ValueError, match=r"model\.safetensors: its weight 'net\.0\.weight' holds a NaN"):
        export.load_generator(folder)
    with pytest.warns(RuntimeWarning, match="allow_nonfinite=True"):
        loaded = export.load_generator(folder, allow_nonfinite=True)
    assert torch.isnan(loaded.net[0].weight[0, 0])


@pytest.mark.parametrize(("call", "arg", "exc"), [
    (lambda tmp: export.export_generator(3, tmp / "x"), "generator_or_checkpoint_path", TypeError),
    (lambda tmp: export.export_generator(_build(*GENERATORS[0]), 3), "folder", TypeError),
    (lambda tmp: export.export_generator(_build(*GENERATORS[0]), tmp / "f.txt"), "folder", ValueError),
    (lambda tmp: export.export_generator(_build(*GENERATORS[0]), tmp / "x", use_ema="yes"), "use_ema", TypeError),
    (lambda tmp: export.load_generator(tmp, allow_nonfinite=1), "allow_nonfinite", TypeError),
    (lambda tmp: export.load_generator(None), "path", TypeError),
])
def test_bad_arguments_are_named(call, arg, exc, tmp_path):
    (tmp_path / "f.txt").write_text("a file")
    with pytest.raises(exc, match=arg):
        call(tmp_path)
