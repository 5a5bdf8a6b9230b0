"""Ready-made callbacks: progress bar, epoch log, periodic and on-interrupt checkpoints."""

from __future__ import annotations

import io

import pytest
import torch

from torchgan_lite import Event, TensorLoader
from torchgan_lite.callbacks.checkpoint import ModelCheckpoint
from torchgan_lite.callbacks.progress import EpochLogger, ProgressBar
from torchgan_lite.checkpoints.format import latest_checkpoint, load_checkpoint


def test_progress_bar_counts_every_step(tiny_trainer, tiny_data):
    out = io.StringIO()
    bar = ProgressBar(refresh_every=3, file=out)
    bar.attach(tiny_trainer)
    tiny_trainer.fit(TensorLoader(tiny_data, batch_size=16), epochs=2)  # 8 steps
    text = out.getvalue()
    assert "8/8" in text and "d=" in text and "g=" in text
    assert bar._bar is None  # closed at FIT_END


def test_progress_bar_starts_at_the_resumed_step(tiny_trainer, tiny_data):
    loader = TensorLoader(tiny_data, batch_size=16)
    tiny_trainer.fit(loader, epochs=1)
    out = io.StringIO()
    ProgressBar(refresh_every=1, file=out).attach(tiny_trainer)
    tiny_trainer.fit(loader, epochs=3)
    assert "12/12" in out.getvalue()


def test_epoch_logger_prints_one_line_per_epoch(tiny_trainer, tiny_data):
    out = io.StringIO()
    # a "metric" measured at every epoch end, before the logger prints
    tiny_trainer.add_callback(Event.EPOCH_END, lambda t: t.state.metrics.__setitem__("fd", 12.5))
    EpochLogger(every=2, file=out).attach(tiny_trainer)
    tiny_trainer.fit(TensorLoader(tiny_data, batch_size=16), epochs=4)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("epoch 2/4 step 8:") and "fd 12.5" in lines[0]
    assert lines[1].startswith("epoch 4/4 step 16:")


def test_model_checkpoint_saves_every_n_epochs_and_at_the_end(tiny_trainer, tiny_data, tmp_path):
    path = tmp_path / "ckpt.pt"
    saved = []
    tiny_trainer.add_callback(Event.CHECKPOINT_SAVED, lambda t: saved.append(t.state.step))
    ModelCheckpoint(path, every=2, keep_last=1).attach(tiny_trainer)
    tiny_trainer.fit(TensorLoader(tiny_data, batch_size=16), epochs=3)
    assert saved == [8, 12]  # epoch 2, then fit end (epoch 3)
    assert load_checkpoint(path)["trainer"]["step"] == 12
    assert load_checkpoint(tmp_path / "ckpt-000000008.pt")["trainer"]["step"] == 8


def test_model_checkpoint_saves_on_keyboard_interrupt(tiny_trainer, tiny_data, tmp_path):
    path = tmp_path / "ckpt.pt"
    ModelCheckpoint(path, every=100).attach(tiny_trainer)

    def interrupt(t):
        if t.state.step == 3:
            raise KeyboardInterrupt

    tiny_trainer.add_callback(Event.STEP_END, interrupt)
    with pytest.raises(KeyboardInterrupt):
        tiny_trainer.fit(TensorLoader(tiny_data, batch_size=16), epochs=5)
    ckpt = load_checkpoint(path)
    assert ckpt["trainer"]["step"] == 3 and ckpt["trainer"]["epoch_step"] == 3
    torch.testing.assert_close(ckpt["generator"]["net.0.weight"], tiny_trainer.generator.net[0].weight.detach())


@pytest.mark.parametrize(("cls", "kwargs"), [(ProgressBar, {"refresh_every": 0}), (EpochLogger, {"every": -1}),
                                              (ModelCheckpoint, {"path": "x.pt", "every": 0})])
def test_callbacks_reject_bad_intervals(cls, kwargs):
    with pytest.raises(ValueError, match="every"):
        cls(**kwargs)


def test_ctrl_c_finishes_the_step_then_saves_a_resumable_checkpoint(tiny_trainer, tiny_data, tmp_path):
    import os
    import signal

    path = tmp_path / "ckpt.pt"
    ModelCheckpoint(path, every=100).attach(tiny_trainer)
    # SIGINT arrives in the middle of step 3 (from its STEP_START): the step still completes.
    tiny_trainer.add_callback(Event.STEP_START, lambda t: os.kill(os.getpid(), signal.SIGINT)
                              if t.state.step == 2 else None)
    with pytest.raises(KeyboardInterrupt, match="step 3"):
        tiny_trainer.fit(TensorLoader(tiny_data, batch_size=16), epochs=5)
    assert tiny_trainer.state.step == 3 and not tiny_trainer.in_step
    assert load_checkpoint(path)["trainer"]["step"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler was restored


def test_no_checkpoint_from_the_middle_of_a_step(tiny_trainer, tiny_data, tmp_path):
    path = tmp_path / "ckpt.pt"
    ModelCheckpoint(path, every=100).attach(tiny_trainer)
    inner = tiny_trainer.gan_step.loss

    class InterruptInGeneratorLoss:
        def discriminator_loss(self, r, f):
            return inner.discriminator_loss(r, f)

        def generator_loss(self, f):
            if tiny_trainer.state.step == 2:
                raise KeyboardInterrupt  # after the D update of step 3, before its G update
            return inner.generator_loss(f)

    tiny_trainer.gan_step.loss = InterruptInGeneratorLoss()
    with pytest.raises(KeyboardInterrupt):
        tiny_trainer.fit(TensorLoader(tiny_data, batch_size=16), epochs=5)
    assert tiny_trainer.in_step and not path.exists()


def test_model_checkpoint_keeps_the_last_steps_by_name(tiny_trainer, tiny_data, tmp_path):
    ModelCheckpoint(tmp_path / "ckpt.pt", keep_last=2).attach(tiny_trainer)
    tiny_trainer.fit(TensorLoader(tiny_data, batch_size=16), epochs=4)  # 4 steps an epoch
    names = ["ckpt.pt", "ckpt-000000016.pt", "ckpt-000000012.pt", "ckpt-000000008.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert [load_checkpoint(tmp_path / n)["trainer"]["step"] for n in names] == [16, 16, 12, 8]
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt.pt"


def test_model_checkpoint_on_interrupt_false_does_not_save(tiny_trainer, tiny_data, tmp_path):
    ModelCheckpoint(tmp_path / "ckpt.pt", every=100, on_interrupt=False).attach(tiny_trainer)

    def interrupt(t):
        if t.state.step == 2:
            raise KeyboardInterrupt

    tiny_trainer.add_callback(Event.STEP_END, interrupt)
    with pytest.raises(KeyboardInterrupt):
        tiny_trainer.fit(TensorLoader(tiny_data, batch_size=16), epochs=5)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: ModelCheckpoint(p, keep_last=-1), "keep_last must be None or an int >= 0, got -1"),
    (lambda p: ModelCheckpoint(p, on_interrupt="no"), "on_interrupt must be a bool, got 'no'"),
    (lambda p: ModelCheckpoint(p.parent), "is a folder; give the checkpoint file's path"),
    (lambda p: ProgressBar(disable=1), "disable must be a bool, got 1"),
    (lambda p: EpochLogger(file="log.txt"), "file must be None or a text stream with write()"),
])
def test_bad_arguments_fail_at_construction_before_any_training(make, message, tmp_path):
    with pytest.raises((TypeError, ValueError)) as info:
        make(tmp_path / "ckpt.pt")
    assert message in str(info.value)
