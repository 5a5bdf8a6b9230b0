"""GeneratorEMA: the update arithmetic, warm-up, buffers, the trainer hook-up and checkpoints."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tests.conftest import tiny_models
from torchgan_lite import GANTrainer, TensorLoader, seed_everything
from torchgan_lite.callbacks.ema import GeneratorEMA
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.nets import dcgan


def _params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _shift(module: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen))


@settings(max_examples=30, deadline=None)
@given(decay=st.floats(0.0, 0.999), steps=st.integers(1, 4), seed=st.integers(0, 1000))
def test_update_is_the_exponential_moving_average(decay, steps, seed):
    torch.manual_seed(seed)
    live, _ = tiny_models()
    ema = GeneratorEMA(decay=decay)
    ema.reset(live)
    expected = _params(live)
    for k in range(steps):
        _shift(live, seed + k)
        ema.update()
        expected = [decay * e + (1 - decay) * p for e, p in zip(expected, _params(live))]
    for got, want in zip(_params(ema.generator), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert ema.num_updates == steps


def test_warmup_ramps_the_decay_linearly_and_the_first_update_copies():
    live, _ = tiny_models()
    ema = GeneratorEMA(decay=0.9, warmup_steps=4)
    ema.reset(live)
    _shift(live, 0)
    assert ema.current_decay() == 0.0
    ema.update()  # beta = 0: a copy
    for got, want in zip(_params(ema.generator), _params(live)):
        torch.testing.assert_close(got, want)
    decays = []
    for _ in range(6):
        decays.append(ema.current_decay())
        ema.update()
    assert decays == pytest.approx([0.9 * 1 / 4, 0.9 * 2 / 4, 0.9 * 3 / 4, 0.9, 0.9, 0.9])


def test_buffers_are_copied_not_averaged_and_the_copy_is_frozen():
    g = dcgan.dcgan_generator(latent_dim=4, base_width=2, norm="batch")
    ema = GeneratorEMA(decay=0.99)
    ema.reset(g)
    g.train()
    g(torch.randn(8, 4))  # updates the live batch-norm running statistics
    ema.update()
    for (name, e), live in zip(ema.generator.named_buffers(), g.buffers()):
        assert torch.equal(e, live), name
    assert not ema.generator.training
    assert not any(p.requires_grad for p in ema.generator.parameters())
    assert all(p.requires_grad for p in g.parameters())


def test_spectral_norm_generator_can_be_averaged():
    g = dcgan.dcgan_generator(latent_dim=4, base_width=2, norm="spectral")
    ema = GeneratorEMA(decay=0.5)
    ema.reset(g)
    before = _params(ema.generator)
    _shift(g, 3)
    ema.update()
    after = _params(ema.generator)
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    assert ema.generator(torch.randn(3, 4)).shape == (3, 1, 28, 28)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"decay": 1.0}, "decay"), ({"decay": -0.1}, "decay"), ({"decay": "0.9"}, "decay"),
     ({"decay": float("nan")}, "decay"), ({"warmup_steps": -1}, "warmup_steps"),
     ({"warmup_steps": 1.5}, "warmup_steps"), ({"every": 0}, "every"), ({"every": True}, "every")],
)
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises((TypeError, ValueError), match=name):
        GeneratorEMA(**kwargs)


def test_update_before_reset_is_a_clear_error():
    with pytest.raises(RuntimeError, match="attach"):
        GeneratorEMA().update()


def _trainer(seed: int = 0) -> GANTrainer:
    seed_everything(seed)
    g, d = tiny_models()
    seed_everything(seed)  # the noise and data order, as the trainer's former seed= argument did
    return GANTrainer(g, d, losses.NonSaturatingLoss())


def test_attached_ema_follows_training_and_sample_prefers_it(tiny_data):
    trainer = _trainer()
    ema = GeneratorEMA(decay=0.9, every=2)
    ema.attach(trainer)
    assert trainer.ema_generator is ema.generator
    trainer.fit(TensorLoader(tiny_data, batch_size=16), epochs=10, max_steps=7)
    assert ema.num_updates == 3  # steps 2, 4, 6
    z = torch.randn(5, trainer.latent_dim)
    with torch.no_grad():
        from_ema = ema.generator(z)
        from_live = trainer.generator.eval()(z)
    assert torch.equal(trainer.sample(5, z=z), from_ema)
    assert torch.equal(trainer.sample(5, z=z, use_ema=False), from_live)
    assert not torch.equal(from_ema, from_live)


def test_second_ema_on_one_trainer_is_refused():
    trainer = _trainer()
    GeneratorEMA().attach(trainer)
    with pytest.raises(ValueError, match="ema_generator"):
        GeneratorEMA().attach(trainer)


def test_checkpoint_holds_the_average_and_a_resumed_run_continues_it_exactly(tmp_path, tiny_data):
    straight = _trainer()
    ema_a = GeneratorEMA(decay=0.8, warmup_steps=3)
    ema_a.attach(straight)
    loader_a = TensorLoader(tiny_data, batch_size=16, generator=torch.Generator().manual_seed(5))
    straight.fit(loader_a, epochs=10, max_steps=8)

    first = _trainer()
    ema_b = GeneratorEMA(decay=0.8, warmup_steps=3)
    ema_b.attach(first)
    loader_b = TensorLoader(tiny_data, batch_size=16, generator=torch.Generator().manual_seed(5))
    first.fit(loader_b, epochs=10, max_steps=5)
    path = first.save_checkpoint(tmp_path / "ckpt.pt")
    saved = torch.load(path, weights_only=True)
    assert saved["extra"]["ema"]["num_updates"] == 5
    for key, value in ema_b.generator.state_dict().items():
        assert torch.equal(saved["extra"]["ema"]["generator"][key], value)

    resumed = _trainer(seed=1)  # other initial weights: everything must come from the file
    ema_c = GeneratorEMA(decay=0.8, warmup_steps=3)
    ema_c.attach(resumed)
    resumed.load_checkpoint(path)
    assert ema_c.num_updates == 5
    loader_c = TensorLoader(tiny_data, batch_size=16, generator=torch.Generator().manual_seed(99))
    resumed.fit(loader_c, epochs=10, max_steps=8)
    assert ema_c.num_updates == ema_a.num_updates == 8
    for got, want in zip(_params(ema_c.generator), _params(ema_a.generator)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_load_state_dict_rejects_a_foreign_state_and_changes_nothing():
    live, _ = tiny_models()
    ema = GeneratorEMA()
    ema.reset(live)
    before = _params(ema.generator)
    other, _ = tiny_models(latent=3)
    bad = {"generator": other.state_dict(), "num_updates": 4}
    with pytest.raises(ValueError, match="shape"):
        ema.load_state_dict(bad)
    with pytest.raises(ValueError, match="num_updates"):
        ema.load_state_dict({"generator": live.state_dict(), "num_updates": -1})
    with pytest.raises(ValueError, match="generator"):
        ema.load_state_dict({"num_updates": 1})
    assert ema.num_updates == 0
    for got, want in zip(_params(ema.generator), before):
        assert torch.equal(got, want)


# ---------------------------------------------------------------- half-life in images (StyleGAN2-ADA)


def test_half_life_decay_matches_stylegan2_ada_with_ramp_up():
    ema = GeneratorEMA.from_half_life(10_000, batch_size=128, rampup=0.05)
    # beta = 0.5 ** (batch / max(min(half_life, images_seen * rampup), 1e-8)), images_seen = n * batch
    assert ema.current_decay() == 0.0  # n = 0: nothing seen, the first update copies
    ema.num_updates = 10  # 1280 images seen: the ramp-up's half-life is 64 images
    assert ema.current_decay() == pytest.approx(0.5 ** (128 / 64))
    ema.num_updates = 10_000  # ramp-up over: the half-life is 10,000 images
    assert ema.current_decay() == pytest.approx(0.5 ** (128 / 10_000))
    no_ramp = GeneratorEMA.from_half_life(10_000, batch_size=128, rampup=None, every=4)
    assert no_ramp.current_decay() == pytest.approx(0.5 ** (512 / 10_000))  # 4 steps of 128 an update


def test_half_life_means_the_weight_of_an_old_update_halves_after_that_many_images():
    live, _ = tiny_models()
    ema = GeneratorEMA.from_half_life(640, batch_size=64, rampup=None)  # 10 updates a half-life
    ema.reset(live)
    ema.num_updates = 1  # past the copying first update
    with torch.no_grad():
        for p in live.parameters():
            p.zero_()
    start = _params(ema.generator)
    for _ in range(10):
        ema.update()
    for got, was in zip(_params(ema.generator), start):
        torch.testing.assert_close(got, was * 0.5)


def test_half_life_settings_are_checked_and_saved_and_old_states_load():
    with pytest.raises(ValueError, match="half_life_images"):
        GeneratorEMA.from_half_life(0, batch_size=128)
    with pytest.raises(ValueError, match="batch_size"):
        GeneratorEMA.from_half_life(10_000, batch_size=0)
    with pytest.raises(ValueError, match="rampup"):
        GeneratorEMA.from_half_life(10_000, batch_size=128, rampup=-1.0)
    live, _ = tiny_models()
    ema = GeneratorEMA.from_half_life(10_000, batch_size=128)
    ema.reset(live)
    ema.update()
    state = ema.state_dict()
    assert (state["half_life_images"], state["batch_size"], state["rampup"]) == (10_000.0, 128, 0.05)
    old = {k: state[k] for k in ("generator", "num_updates", "decay", "warmup_steps", "every")}  # a pre-half-life file
    other = GeneratorEMA.from_half_life(10_000, batch_size=128)
    other.reset(live)
    other.load_state_dict(old)
    assert other.num_updates == 1 and other.half_life_images == 10_000.0
