"""Non-finite losses: stop with an error naming the step and the loss, before any bad update.

By default (``nonfinite="auto"``, per-update on a CPU) a NaN or infinite loss
raises :class:`NonFiniteLossError` before the optimizer step that would apply it,
the last good checkpoint is left as it was, and a ``NONFINITE`` handler may call
``trainer.skip_step()`` to go on instead. With ``nonfinite=N`` the check is
deferred (no per-step synchronisation on a GPU) and ``save_checkpoint`` refuses to
record weights that a bad step has touched.
"""

from __future__ import annotations

import math

import pytest
import torch

from torchgan_lite import (
    Event,
    GANTrainer,
    NonFiniteLossError,
    NonFinitePolicy,
    StepConfig,
    TensorLoader,
    seed_everything,
)
from torchgan_lite.callbacks import checkpoint
from torchgan_lite.checkpoints.format import load_checkpoint
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.nets import mlp as models

from .resume_child import single_thread, tiny_data


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


class PoisonedLoss:
    """The recipe's loss, made NaN (or infinite) for one network at the given 1-based steps."""

    def __init__(self, at_steps: set[int], which: str = "discriminator", value: float = math.nan) -> None:
        self.inner = losses.NonSaturatingLoss()
        self.at_steps, self.which, self.value = at_steps, which, value
        self.trainer: GANTrainer | None = None

    def _poisoned(self, which: str) -> bool:
        if self.trainer is None:  # the trainer's construction-time probe
            return False
        return which == self.which and self.trainer.state.step + 1 in self.at_steps

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        loss = self.inner.discriminator_loss(real_logits, fake_logits)
        return loss * self.value if self._poisoned("discriminator") else loss  # a bad value and bad gradients

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        loss = self.inner.generator_loss(fake_logits)
        return loss * self.value if self._poisoned("generator") else loss


def _trainer(loss: object, **kw: object) -> GANTrainer:
    torch.manual_seed(0)
    g = models.mlp_generator(latent_dim=16, hidden=(64,), out_shape=(1, 8, 8))
    d = models.mlp_discriminator(in_shape=(1, 8, 8), hidden=(64,), dropout=0.3)
    seed_everything(0)
    trainer = GANTrainer(g, d, loss, step=StepConfig(**kw))  # type: ignore[arg-type]
    if isinstance(loss, PoisonedLoss):
        loss.trainer = trainer
    return trainer


def _weights(trainer: GANTrainer, which: str = "both") -> list[torch.Tensor]:
    mods = {"g": [trainer.generator], "d": [trainer.discriminator],
            "both": [trainer.generator, trainer.discriminator]}[which]
    opts = {"g": [trainer.gan_step.g_optimizer], "d": [trainer.gan_step.d_optimizer],
            "both": [trainer.gan_step.g_optimizer, trainer.gan_step.d_optimizer]}[which]
    return ([p.detach().clone() for m in mods for p in m.parameters()]
            + [t.clone() for o in opts for s in o.state.values() for t in s.values()])


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def _record_before_each_step(trainer: GANTrainer) -> dict[int, list[torch.Tensor]]:
    seen: dict[int, list[torch.Tensor]] = {}
    trainer.add_callback(Event.STEP_START, lambda t: seen.__setitem__(t.state.step + 1, _weights(t)))
    return seen


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_bad_discriminator_loss_stops_before_any_update_and_keeps_the_checkpoint(value, tmp_path):
    trainer = _trainer(PoisonedLoss({8}, "discriminator", value))
    checkpoint.ModelCheckpoint(tmp_path / "c.pt", every=1).attach(trainer)  # saved at step 5 (end of epoch 1)
    before = _record_before_each_step(trainer)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(TensorLoader(tiny_data(), batch_size=8), epochs=3)
    message = str(info.value)
    assert "step 8" in message and "discriminator" in message and f"({value})" in message
    assert trainer.state.step == 7
    assert _same(before[8], _weights(trainer))  # nothing of step 8 was applied
    seen = {k: trainer.state.nonfinite[k] for k in ("step", "which", "loss")}
    assert seen == {"step": 8, "which": "discriminator", "loss": value} or math.isnan(value)
    assert trainer.state.nonfinite["reason"] == f"non-finite discriminator loss ({value})"
    ckpt = load_checkpoint(tmp_path / "c.pt")  # the last good checkpoint: intact, and it loads
    assert ckpt["trainer"]["step"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no save was attempted on the error
    fresh = _trainer(losses.NonSaturatingLoss())
    with pytest.warns(UserWarning, match="set up differently.*loss: saved 'PoisonedLoss'"):
        fresh.load_checkpoint(tmp_path / "c.pt", strict=False)  # another loss object: allowed when asked
    assert fresh.state.step == 5


def test_no_checkpoint_of_a_half_step_until_the_last_good_one_is_loaded(tmp_path):
    trainer = _trainer(PoisonedLoss({3}, "generator"))  # step 3: D updated, then G's loss is NaN
    trainer.fit(TensorLoader(tiny_data(), batch_size=8), epochs=1, max_steps=2)
    good = trainer.save_checkpoint(tmp_path / "c.pt")
    with pytest.raises(NonFiniteLossError):
        trainer.fit(TensorLoader(tiny_data(), batch_size=8), epochs=1)
    with pytest.raises(RuntimeError, match="cannot checkpoint in the middle of step 3"):
        trainer.save_checkpoint(tmp_path / "half.pt")
    assert not (tmp_path / "half.pt").exists()
    trainer.load_checkpoint(good)
    assert trainer.save_checkpoint(tmp_path / "again.pt").exists()


def test_a_nonfinite_handler_cannot_save_a_half_step(tmp_path):
    trainer = _trainer(PoisonedLoss({2}, "discriminator"))
    trainer.add_callback(Event.NONFINITE, lambda t: t.save_checkpoint(tmp_path / "c.pt"))
    with pytest.raises(RuntimeError, match="middle of step 2"):
        trainer.fit(TensorLoader(tiny_data(), batch_size=8), epochs=1)
    assert list(tmp_path.iterdir()) == []


def test_nan_in_the_data_is_caught_at_its_batch():
    x = tiny_data()
    x[24:32] = math.nan  # batch 4 of an unshuffled epoch
    trainer = _trainer(losses.NonSaturatingLoss())
    before = _record_before_each_step(trainer)
    with pytest.raises(NonFiniteLossError, match=r"non-finite discriminator loss \(nan\) at step 4"):
        trainer.fit(TensorLoader(x, batch_size=8, shuffle=False), epochs=2)
    assert _same(before[4], _weights(trainer))
    assert all(torch.isfinite(w).all() for w in _weights(trainer))


def test_bad_generator_loss_leaves_the_generator_untouched():
    trainer = _trainer(PoisonedLoss({3}, "generator"))
    g_before: dict[int, list[torch.Tensor]] = {}
    d_before: dict[int, list[torch.Tensor]] = {}
    trainer.add_callback(Event.STEP_START, lambda t: (g_before.__setitem__(t.state.step + 1, _weights(t, "g")),
                                                      d_before.__setitem__(t.state.step + 1, _weights(t, "d"))))
    with pytest.raises(NonFiniteLossError, match=r"non-finite generator loss \(nan\) at step 3"):
        trainer.fit(TensorLoader(tiny_data(), batch_size=8), epochs=1)
    assert _same(g_before[3], _weights(trainer, "g"))  # G and its optimizer: untouched
    # D's update of step 3 ran before G's loss existed, so it has been applied (docs/reliability.md).
    assert not _same(d_before[3], _weights(trainer, "d"))


def test_a_nonfinite_handler_can_skip_the_step():
    trainer = _trainer(PoisonedLoss({3, 7}, "discriminator"))
    seen: list[dict] = []

    @trainer.on(Event.NONFINITE)
    def skip(t: GANTrainer) -> None:
        seen.append(dict(t.state.nonfinite))
        t.skip_step()

    before = _record_before_each_step(trainer)
    after: dict[int, list[torch.Tensor]] = {}
    trainer.add_callback(Event.STEP_END, lambda t: after.__setitem__(t.state.step, _weights(t)))
    state = trainer.fit(TensorLoader(tiny_data(), batch_size=8), epochs=2)
    assert state.step == 10 and state.epoch == 2 and state.skipped_steps == 2
    assert [s["step"] for s in seen] == [3, 7] and all(s["which"] == "discriminator" for s in seen)
    assert _same(before[3], after[3]) and _same(before[7], after[7])  # skipped: no update at all
    assert not _same(before[4], after[4])  # the others trained
    assert all(math.isfinite(v) for h in state.history for v in (h.d_loss, h.g_loss, h.d_real, h.d_fake))
    assert state.nonfinite is None


def test_deferred_check_raises_at_the_next_check_naming_the_bad_step():
    trainer = _trainer(PoisonedLoss({3}, "discriminator"), nonfinite=5)
    expected = r"non-finite or diverging values at step 3 of this run \(found at step 5, checked every 5"
    with pytest.raises(NonFiniteLossError, match=expected):
        trainer.fit(TensorLoader(tiny_data(), batch_size=8), epochs=4)
    assert trainer.state.step == 5


def test_deferred_mode_refuses_to_save_after_a_bad_step_and_recovers_from_the_last_good(tmp_path):
    x = tiny_data()
    trainer = _trainer(losses.NonSaturatingLoss(), nonfinite=100)
    trainer.train_step(x[:8])
    good = trainer.save_checkpoint(tmp_path / "c.pt")
    on_disk = good.read_bytes()
    trainer.train_step(torch.full_like(x[:8], math.nan))  # no error yet: checked every 100 steps
    with pytest.raises(NonFiniteLossError, match="non-finite or diverging values at step 2 "):
        trainer.save_checkpoint(tmp_path / "c.pt", keep_last=3)
    assert good.read_bytes() == on_disk and sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
    trainer.load_checkpoint(good)  # back to the last good state: the pending bad step is forgotten
    trainer.train_step(x[8:16])
    trainer.save_checkpoint(tmp_path / "c.pt")
    assert load_checkpoint(tmp_path / "c.pt")["trainer"]["step"] == 2
    assert all(torch.isfinite(w).all() for w in _weights(trainer))


def test_check_finite_false_lets_nan_through():
    trainer = _trainer(PoisonedLoss({2}, "discriminator"), nonfinite=0)
    state = trainer.fit(TensorLoader(tiny_data(), batch_size=8), epochs=1)
    assert state.step == 5
    assert not all(torch.isfinite(p).all() for p in trainer.discriminator.parameters())


def _all_finite(ckpt: dict) -> bool:
    def walk(obj):
        if isinstance(obj, torch.Tensor):
            return not obj.is_floating_point() or bool(torch.isfinite(obj).all())
        if isinstance(obj, dict):
            return all(walk(v) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return all(walk(v) for v in obj)
        return True

    return all(walk(ckpt[k]) for k in ("generator", "discriminator", "step"))


def test_a_huge_learning_rate_stops_before_any_checkpoint_holds_broken_numbers(tmp_path):
    """lr=1e6 (issue #15): Adam's squared gradients overflow long before a loss is NaN. The gradient-norm
    guard stops the update that would overflow them, so every checkpoint left loads, is finite, and trains on."""
    from torchgan_lite.callbacks.checkpoint import ModelCheckpoint

    def build(lr: float) -> GANTrainer:
        torch.manual_seed(0)
        g, d = models.mlp_generator(), models.mlp_discriminator()  # the reference nets: at lr 1e6 they overflow
        seed_everything(0)
        return GANTrainer(g, d, losses.NonSaturatingLoss(),
                          g_optimizer=torch.optim.Adam(g.parameters(), lr=lr),
                          d_optimizer=torch.optim.Adam(d.parameters(), lr=lr))

    x = torch.rand(128, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1  # one batch an epoch
    healthy = build(2e-4)
    ModelCheckpoint(tmp_path / "c.pt", keep_last=3).attach(healthy)
    healthy.fit(TensorLoader(x, batch_size=128), epochs=2)
    trainer = build(1e6)  # the same run, resumed with lr 1e6
    trainer.load_checkpoint(tmp_path / "c.pt", hyperparameters="current")
    ModelCheckpoint(tmp_path / "c.pt", keep_last=3).attach(trainer)
    # Step 3's loss is sane (computed before its update); the update moves every weight by ~1e6, so step 4's
    # squared gradients would overflow Adam's state: the guard stops there, before applying anything.
    with pytest.raises(NonFiniteLossError, match=r"gradient norm \(inf\) at step 4; no update was applied"):
        trainer.fit(TensorLoader(x, batch_size=128), epochs=30)
    assert trainer.state.step == 3
    saved = sorted(tmp_path.glob("c*.pt"))
    assert [p.name for p in saved] == ["c-000000001.pt", "c-000000002.pt", "c-000000003.pt", "c.pt"]
    for path in saved:
        assert _all_finite(load_checkpoint(path)), f"{path.name} holds a NaN or infinity"
    assert all(bool(torch.isfinite(p).all()) for p in list(trainer.generator.parameters())
               + list(trainer.discriminator.parameters()))  # the live state too: the bad update never ran
    assert load_checkpoint(tmp_path / "c-000000002.pt")["trainer"]["step"] == 2  # the last one at a sane lr
    sane = build(2e-4)
    sane.load_checkpoint(tmp_path / "c-000000002.pt", hyperparameters="current")
    assert sane.gan_step.g_optimizer.param_groups[0]["lr"] == 2e-4
    sane.fit(TensorLoader(x, batch_size=128), epochs=4)
    assert sane.state.step == 4
    assert all(math.isfinite(h.d_loss) and math.isfinite(h.g_loss) for h in sane.state.history[-2:])


def test_saving_a_state_with_an_infinite_optimizer_buffer_is_refused_and_keeps_the_last_good_file(tmp_path):
    trainer = _trainer(losses.NonSaturatingLoss())
    trainer.fit(TensorLoader(tiny_data(), batch_size=8), epochs=1)
    good = trainer.save_checkpoint(tmp_path / "c.pt")
    before = good.read_bytes()
    first = next(iter(trainer.gan_step.d_optimizer.state.values()))
    first["exp_avg_sq"].view(-1)[0] = math.inf  # what an overflowing squared gradient leaves behind
    with pytest.raises(NonFiniteLossError, match=r"not saving .*step\['d_optimizer'\]\['state'\]\[0\]\['exp_avg_sq'\]"):
        trainer.save_checkpoint(tmp_path / "c.pt")
    assert good.read_bytes() == before


def test_a_loss_above_max_loss_stops_a_run_that_diverges_while_finite():
    trainer = _trainer(PoisonedLoss({3}, "generator", value=1e30), nonfinite=NonFinitePolicy(max_loss=1e6))
    with pytest.raises(NonFiniteLossError, match=r"generator loss .* above the guard's limit 1e\+06.* at step 3"):
        trainer.fit(TensorLoader(tiny_data(), batch_size=8), epochs=1)
    assert trainer.state.step == 2
