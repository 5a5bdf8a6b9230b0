"""GANStep on its own, and the trainer's composition of state around it (the step redesign, issue #13).

Everything here goes through public API: ``GANStep`` without a trainer, ``trainer.gan_step``,
``state_dict``/``load_state_dict``/``load_checkpoint`` and signals.
"""

from __future__ import annotations

import os
import signal

import pytest
import torch
from torch import nn

from torchgan_lite import Event, GANStep, GANTrainer, StepConfig, TensorLoader, TrainingInterrupted, seed_everything
from torchgan_lite.callbacks.checkpoint import ModelCheckpoint
from torchgan_lite.checkpoints.format import load_checkpoint
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.losses import penalties

from .conftest import tiny_models


def _data(n: int = 64) -> torch.Tensor:
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1  # (n, 1, 4, 4)


def _trainer(**kw) -> GANTrainer:
    torch.manual_seed(0)
    g, d = tiny_models(dropout=0.0)
    seed_everything(0)
    loss = kw.pop("loss", losses.NonSaturatingLoss())
    return GANTrainer(g, d, loss, step=StepConfig(**kw))


def test_a_step_runs_without_a_trainer_and_reports_real_sign():
    torch.manual_seed(0)
    g, _ = tiny_models()
    d = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))  # (B, 16) -> (B, 1): the logit is the pixel sum
    with torch.no_grad():
        d[1].weight.fill_(1.0)
        d[1].bias.zero_()
    step = GANStep(g, d, losses.NonSaturatingLoss(), torch.optim.Adam(g.parameters(), lr=1e-3),
                   torch.optim.SGD(d.parameters(), lr=0.0), latent_dim=g.latent_dim)
    real = torch.full((16, 1, 4, 4), 0.5)
    real[12:] = -0.5  # 12 reals score +8, 4 score -8
    before = [p.clone() for p in g.parameters()]
    result = step.step(real)
    assert float(result.real_sign) == pytest.approx((12 - 4) / 16)
    assert float(result.d_real) == pytest.approx((12 * 8 - 4 * 8) / 16)
    assert all(not torch.equal(a, b) for a, b in zip(before, g.parameters()))  # G was updated
    assert result.d_loss.dim() == 0 and not result.d_loss.requires_grad


class _CountingAugment:
    """x -> x + 0, counting calls and remembering the shapes it saw."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return x * 1.0


def test_augment_sees_every_discriminator_input():
    aug = _CountingAugment()
    t = _trainer(augment=aug, n_critic=2)
    t.train_step(_data(16))
    # 2 D updates x (real, fake) + 1 G update (fake)
    assert aug.shapes == [(16, 1, 4, 4)] * 5


class _LogitPenalty:
    uses_logits = True

    def __init__(self) -> None:
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        self.seen.append((real_logits.detach(), fake_logits.detach()))
        return torch.tensor(3.0)


def test_a_logit_regularizer_gets_the_logits_and_adds_to_the_loss():
    pen = _LogitPenalty()
    plain, with_pen = _trainer().train_step(_data(16)), _trainer(regularizers=[pen]).train_step(_data(16))
    assert float(with_pen.d_loss) == pytest.approx(float(plain.d_loss) + 3.0, abs=1e-5)
    (real_logits, fake_logits), = pen.seen
    assert real_logits.shape == fake_logits.shape == (16,)
    assert float(real_logits.mean()) == pytest.approx(float(with_pen.d_real), abs=1e-6)


class _Refuses:
    def state_dict(self):
        return {"v": 1}

    def load_state_dict(self, state):
        raise ValueError("refused by design")


class _Box:
    def __init__(self) -> None:
        self.value = 0

    def state_dict(self):
        return {"value": self.value}

    def load_state_dict(self, state):
        self.value = state["value"]


def test_loading_is_all_or_nothing_when_a_registered_object_refuses(tmp_path):
    t = _trainer()
    box = _Box()
    t.register_state("box", box)
    t.register_state("refuses", _Refuses())
    box.value = 7
    t.fit(TensorLoader(_data(), batch_size=16), epochs=1)
    path = t.save_checkpoint(tmp_path / "c.pt")
    box.value = 99
    t.fit(TensorLoader(_data(), batch_size=16), epochs=2)
    weights = [p.clone() for p in t.generator.parameters()]
    with pytest.raises(ValueError, match="refused by design"):
        t.load_checkpoint(path)
    assert box.value == 99  # rolled back, although it loaded before the second one refused
    assert t.state.step == 8 and all(torch.equal(a, b) for a, b in zip(weights, t.generator.parameters()))


def test_a_loader_that_does_not_fit_is_refused_at_load_time_before_anything_changes(tmp_path):
    t = _trainer()
    t.fit(TensorLoader(_data(), batch_size=16), epochs=1, max_steps=2)
    path = t.save_checkpoint(tmp_path / "c.pt")
    fresh = _trainer()
    weights = [p.clone() for p in fresh.generator.parameters()]
    with pytest.raises(ValueError, match=r"global batches of 16.*global batches of 8"):
        fresh.load_checkpoint(path, data=TensorLoader(_data(), batch_size=8))
    assert fresh.state.step == 0 and all(torch.equal(a, b) for a, b in zip(weights, fresh.generator.parameters()))


def test_resume_refuses_other_hyperparameters_by_name_unless_told(tmp_path):
    t = _trainer()
    t.fit(TensorLoader(_data(), batch_size=16), epochs=1)
    path = t.save_checkpoint(tmp_path / "c.pt")

    def other(lr: float) -> GANTrainer:
        torch.manual_seed(0)
        g, d = tiny_models(dropout=0.0)
        return GANTrainer(g, d, losses.NonSaturatingLoss(), g_optimizer=torch.optim.Adam(g.parameters(), lr=lr))

    with pytest.raises(ValueError, match=r"g_optimizer\.param_groups\[0\]\.lr: saved 0\.0002, now 0\.001.*"
                                         r"hyperparameters='current'"):
        other(1e-3).load_checkpoint(path)
    kept = other(1e-3)
    kept.load_checkpoint(path, hyperparameters="current")
    assert kept.gan_step.g_optimizer.param_groups[0]["lr"] == 1e-3 and kept.state.step == 4
    assert kept.gan_step.g_optimizer.state  # the saved Adam moments came back
    taken = other(1e-3)
    taken.load_checkpoint(path, hyperparameters="saved")
    assert taken.gan_step.g_optimizer.param_groups[0]["lr"] == 2e-4


def test_resume_refuses_another_loss_and_n_critic_naming_them(tmp_path):
    t = _trainer()
    t.fit(TensorLoader(_data(), batch_size=16), epochs=1)
    path = t.save_checkpoint(tmp_path / "c.pt")
    wgan = _trainer(loss=losses.WassersteinLoss(), n_critic=5)
    with pytest.raises(ValueError, match=r"loss: saved 'NonSaturatingLoss', now 'WassersteinLoss'.*n_critic: "
                                         r"saved 1, now 5.*strict=False"):
        wgan.load_checkpoint(path)
    assert wgan.state.step == 0


def test_sigterm_stops_after_the_step_and_the_checkpoint_holds_it(tmp_path):
    t = _trainer()
    ModelCheckpoint(tmp_path / "c.pt", every=100).attach(t)

    @t.on(Event.STEP_END)
    def kill_at_three(tr: GANTrainer) -> None:
        if tr.state.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="SIGTERM received: stopped after step 3") as info:
        t.fit(TensorLoader(_data(), batch_size=16), epochs=5)
    assert info.value.signal == signal.SIGTERM and info.value.step == 3
    assert isinstance(info.value, KeyboardInterrupt)
    assert load_checkpoint(tmp_path / "c.pt")["trainer"]["step"] == 3
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is put back


def test_resuming_mid_epoch_from_a_dataloader_warns_that_the_order_is_lost(tmp_path):
    from torch.utils.data import DataLoader

    t = _trainer()
    data = DataLoader(_data(), batch_size=16, drop_last=True)
    t.fit(data, epochs=1, max_steps=2)  # half an epoch
    path = t.save_checkpoint(tmp_path / "c.pt")
    fresh = _trainer()
    fresh.load_checkpoint(path)
    with pytest.warns(UserWarning, match="saved 2 steps into an epoch from data that could not save its position"):
        fresh.fit(data, epochs=1)
    assert fresh.state.epoch == 1


def test_a_loss_returning_a_vector_is_refused_at_construction():
    class VectorLoss:
        def discriminator_loss(self, r, f):
            return r - f  # (B,): forgot the mean

        def generator_loss(self, f):
            return -f

    with pytest.raises(ValueError, match=r"loss\.discriminator_loss.*must return a scalar.*\(2,\)"):
        _trainer(loss=VectorLoss())


def test_a_discriminator_ending_in_a_sigmoid_is_warned_about():
    torch.manual_seed(0)
    g, d = tiny_models()
    with pytest.warns(UserWarning, match="ends in a Sigmoid, but NonSaturatingLoss takes logits"):
        GANTrainer(g, nn.Sequential(d, nn.Sigmoid()), losses.NonSaturatingLoss())


def test_classes_passed_for_instances_are_named():
    g, d = tiny_models()
    with pytest.raises(TypeError, match="loss must be an instance, got the class NonSaturatingLoss"):
        GANTrainer(g, d, losses.NonSaturatingLoss)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"regularizers\[0\] must be an instance, got the class GradientPenalty"):
        GANTrainer(g, d, losses.NonSaturatingLoss(), step=StepConfig(regularizers=[penalties.GradientPenalty]))  # type: ignore[list-item]
