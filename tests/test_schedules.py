"""LRSchedule against the scheduler's closed form, its checkpoint state and resume; ttur's optimizers."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_models
from torchgan_lite import GANTrainer, TensorLoader, seed_everything
from torchgan_lite.callbacks.schedules import LRSchedule, ttur
from torchgan_lite.losses import adversarial as losses


def _trainer() -> GANTrainer:
    seed_everything(0)
    g, d = tiny_models()
    g_opt, d_opt = ttur(g, d, g_lr=1e-3, d_lr=4e-3)
    return GANTrainer(g, d, losses.NonSaturatingLoss(), g_optimizer=g_opt, d_optimizer=d_opt)


def _loader(data: torch.Tensor) -> TensorLoader:
    return TensorLoader(data, batch_size=16, generator=torch.Generator().manual_seed(3))  # 4 steps an epoch


def test_ttur_gives_the_discriminator_the_larger_rate():
    g, d = tiny_models()
    g_opt, d_opt = ttur(g, d)
    assert g_opt.param_groups[0]["lr"] == 1e-4 and d_opt.param_groups[0]["lr"] == 4e-4
    assert {id(p) for p in g_opt.param_groups[0]["params"]} == {id(p) for p in g.parameters()}
    assert {id(p) for p in d_opt.param_groups[0]["params"]} == {id(p) for p in d.parameters()}
    with pytest.raises(ValueError, match="d_lr"):
        ttur(g, d, d_lr=0.0)
    with pytest.raises(TypeError, match="discriminator"):
        ttur(g, "D")


def test_step_interval_follows_the_closed_form(tiny_data):
    trainer = _trainer()
    sched = torch.optim.lr_scheduler.ExponentialLR(trainer.gan_step.g_optimizer, gamma=0.5)
    LRSchedule(sched).attach(trainer)
    trainer.fit(_loader(tiny_data), epochs=2, max_steps=6)
    assert trainer.gan_step.g_optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5**6)
    assert trainer.gan_step.d_optimizer.param_groups[0]["lr"] == 4e-3  # the other optimizer is untouched


def test_epoch_interval_steps_once_an_epoch(tiny_data):
    trainer = _trainer()
    sched = torch.optim.lr_scheduler.StepLR(trainer.gan_step.d_optimizer, step_size=1, gamma=0.1)
    schedule = LRSchedule(sched, interval="epoch")
    schedule.attach(trainer)
    assert schedule.name == "lr_schedule_d"
    trainer.fit(_loader(tiny_data), epochs=3)
    assert trainer.state.step == 12
    assert trainer.gan_step.d_optimizer.param_groups[0]["lr"] == pytest.approx(4e-3 * 0.1**3)


def test_a_resumed_run_continues_the_schedule_exactly(tmp_path, tiny_data):
    def run(max_steps: int, resume: object = None) -> GANTrainer:
        trainer = _trainer()
        total = 10
        step = trainer.gan_step
        LRSchedule(torch.optim.lr_scheduler.LinearLR(step.g_optimizer, 1.0, 0.1, total_iters=total)).attach(trainer)
        LRSchedule(torch.optim.lr_scheduler.CosineAnnealingLR(step.d_optimizer, T_max=total)).attach(trainer)
        if resume is not None:
            # The schedule moved the learning rates; the check compares the schedule's initial_lr, and the
            # default load continues from the saved rates.
            trainer.load_checkpoint(resume)
        trainer.fit(_loader(tiny_data), epochs=3, max_steps=max_steps)
        return trainer

    straight = run(9)
    first = run(5)
    path = first.save_checkpoint(tmp_path / "ckpt.pt")
    saved = torch.load(path, weights_only=False)
    assert saved["extra"]["lr_schedule_g"]["scheduler"]["last_epoch"] == 5
    resumed = run(9, resume=path)
    for opt in ("g_optimizer", "d_optimizer"):
        got, want = getattr(resumed.gan_step, opt), getattr(straight.gan_step, opt)
        assert got.param_groups[0]["lr"] == want.param_groups[0]["lr"]
    for got, want in zip(resumed.generator.parameters(), straight.generator.parameters()):
        assert torch.equal(got, want)


def test_bad_arguments_are_named():
    g, _ = tiny_models()
    opt = torch.optim.SGD(g.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="interval"):
        LRSchedule(torch.optim.lr_scheduler.StepLR(opt, 1), interval="batch")
    with pytest.raises(TypeError, match="ReduceLROnPlateau"):
        LRSchedule(torch.optim.lr_scheduler.ReduceLROnPlateau(opt))
    with pytest.raises(TypeError, match="scheduler"):
        LRSchedule(opt)
    with pytest.raises(TypeError, match="scheduler"):
        LRSchedule(object())
    trainer = _trainer()
    with pytest.raises(ValueError, match="neither"):
        LRSchedule(torch.optim.lr_scheduler.StepLR(opt, 1)).attach(trainer)
    with pytest.raises(ValueError, match="'scheduler'"):
        LRSchedule(torch.optim.lr_scheduler.StepLR(opt, 1)).load_state_dict({})
