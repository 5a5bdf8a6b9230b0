"""torchgan_lite.loggers: TensorBoard event files read back with tensorboard's own reader; history.jsonl."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # in the [dev] extra

from torchgan_lite import Event, GANTrainer, TensorLoader, seed_everything
from torchgan_lite.callbacks import loggers, reporting
from torchgan_lite.losses import adversarial as losses

from .conftest import tiny_models


def _fit(trainer: GANTrainer, data: torch.Tensor, **kw) -> None:
    trainer.fit(TensorLoader(data, batch_size=16), **kw)  # 64 rows: 4 steps an epoch


def _events(folder) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_tensorboard_logger_writes_losses_metrics_speed_and_sample_grids(tiny_trainer, tiny_data, tmp_path):
    tiny_trainer.add_callback(Event.EPOCH_END, lambda t: t.state.metrics.__setitem__("score", 1.0 + t.state.epoch))
    z = reporting.fixed_noise(16, tiny_trainer.latent_dim, seed=0)
    loggers.TensorBoardLogger(tmp_path / "tb", step_every=2, z=z).attach(tiny_trainer)
    _fit(tiny_trainer, tiny_data, epochs=2)
    acc = _events(tmp_path / "tb")
    tags = acc.Tags()
    for tag in ("epoch/d_loss", "epoch/g_loss", "epoch/d_real", "epoch/d_fake", "epoch/steps_per_s",
                "step/d_loss", "step/g_loss", "step/steps_per_s", "metrics/score"):
        assert tag in tags["scalars"], tag
    history = tiny_trainer.state.history
    assert [e.step for e in acc.Scalars("epoch/d_loss")] == [4, 8]
    assert [e.value for e in acc.Scalars("epoch/g_loss")] == pytest.approx([h.g_loss for h in history], rel=1e-6)
    assert [e.step for e in acc.Scalars("step/d_loss")] == [2, 4, 6, 8]
    assert [e.value for e in acc.Scalars("metrics/score")] == [2.0, 3.0]
    images = acc.Images("samples")
    assert [e.step for e in images] == [4, 8, 8]  # each epoch end, and the end of fit
    assert (images[0].width, images[0].height) == (8 * 6 + 2, 2 * 6 + 2)  # 16 images of 4x4, 8 a row


def test_tensorboard_logger_checks_its_arguments(tiny_trainer, tmp_path):
    with pytest.raises(ValueError, match="step_every"):
        loggers.TensorBoardLogger(tmp_path, step_every=0)
    with pytest.raises(ValueError, match="latent_dim"):
        loggers.TensorBoardLogger(tmp_path, z=torch.zeros(4, 3)).attach(tiny_trainer)
    with pytest.raises(ValueError, match="labels"):
        loggers.TensorBoardLogger(tmp_path, z=torch.zeros(4, 8), labels=torch.zeros(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="log_dir"):
        loggers.TensorBoardLogger(3)  # type: ignore[arg-type]


def test_tensorboard_logger_explains_a_missing_package(tiny_trainer, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    with pytest.raises(ModuleNotFoundError, match=r"torchgan_lite\[tensorboard\]"):
        loggers.TensorBoardLogger(tmp_path).attach(tiny_trainer)


def test_tensorboard_logger_writes_on_the_main_process_only(tiny_trainer, tiny_data, tmp_path):
    tiny_trainer.rank = 1  # as on the second process of a data-parallel run
    loggers.TensorBoardLogger(tmp_path / "tb", z=reporting.fixed_noise(4, 8)).attach(tiny_trainer)
    _fit(tiny_trainer, tiny_data, epochs=1)
    assert not (tmp_path / "tb").exists()


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_history_one_object_per_epoch_with_its_metrics(tiny_trainer, tiny_data, tmp_path):
    tiny_trainer.add_callback(Event.EPOCH_END, lambda t: t.state.metrics.__setitem__("fd", 10.0 * t.state.epoch),
                              every=2)
    loggers.JSONLHistory(tmp_path / "history.jsonl").attach(tiny_trainer)
    _fit(tiny_trainer, tiny_data, epochs=3)
    rows = _lines(tmp_path / "history.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3] and [r["step"] for r in rows] == [4, 8, 12]
    for row, h in zip(rows, tiny_trainer.state.history):
        assert row["d_loss"] == h.d_loss and row["g_loss"] == h.g_loss  # floats round-trip exactly in JSON
    assert ["fd" in r for r in rows] == [False, True, False] and rows[1]["fd"] == 20.0
    assert list(tmp_path.iterdir()) == [tmp_path / "history.jsonl"]  # no temporary left behind


def test_jsonl_history_after_a_resume_from_an_older_checkpoint_repeats_no_epoch(tiny_data, tmp_path):
    def trainer():
        seed_everything(0)
        t = GANTrainer(*tiny_models(), losses.NonSaturatingLoss())
        t.add_callback(Event.EPOCH_END, lambda t: t.state.metrics.__setitem__("m", float(t.state.epoch)))
        loggers.JSONLHistory(tmp_path / "history.jsonl").attach(t)
        return t

    first = trainer()
    _fit(first, tiny_data, epochs=1)
    first.save_checkpoint(tmp_path / "ckpt.pt")
    _fit(first, tiny_data, epochs=3)  # epochs 2 and 3 written, then "lost"
    second = trainer()
    second.load_checkpoint(tmp_path / "ckpt.pt")
    _fit(second, tiny_data, epochs=2)
    rows = _lines(tmp_path / "history.jsonl")
    assert [(r["epoch"], r["m"]) for r in rows] == [(1, 1.0), (2, 2.0)]


def test_jsonl_history_writes_nan_as_null(tiny_trainer, tiny_data, tmp_path):
    tiny_trainer.add_callback(Event.EPOCH_END, lambda t: t.state.metrics.__setitem__("bad", math.nan))
    loggers.JSONLHistory(tmp_path / "h.jsonl").attach(tiny_trainer)
    _fit(tiny_trainer, tiny_data, epochs=1)
    assert _lines(tmp_path / "h.jsonl")[0]["bad"] is None


def test_get_logger_is_the_library_logger():
    assert loggers.get_logger() is logging.getLogger("torchgan_lite")
    assert loggers.get_logger("train") is logging.getLogger("torchgan_lite.train")
