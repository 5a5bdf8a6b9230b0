"""build_parts: the reference recipe is the trainer's default bit for bit; every recipe option builds its part."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from tests.conftest import tiny_models
from torchgan_lite import GANTrainer, TensorLoader, seed_everything
from torchgan_lite.callbacks.ada import AdaptiveAugment
from torchgan_lite.callbacks.ema import GeneratorEMA
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.losses import penalties
from torchgan_lite.losses.augment import DiffAugment
from torchgan_lite.losses.penalties import LazyRegularizer, LeCamRegularizer
from torchgan_lite.recipes import LOSSES, RECIPES, SPECS, RecipeSpec, build_parts


def _fit(trainer: GANTrainer, data: torch.Tensor, steps: int = 6) -> None:
    trainer.fit(TensorLoader(data, batch_size=16, generator=torch.Generator().manual_seed(2)), epochs=3,
                max_steps=steps)


def test_reference_recipe_trains_bit_for_bit_as_the_trainers_default(tiny_data):
    seed_everything(0)
    g, d = tiny_models()
    seed_everything(1)
    default = GANTrainer(g, d, losses.NonSaturatingLoss())
    _fit(default, tiny_data)

    seed_everything(0)
    g2, d2 = tiny_models()
    parts = build_parts("reference", g2, d2)
    assert parts.n_critic == 1 and parts.regularizers == [] and parts.augment is None and parts.callbacks == []
    seed_everything(1)
    built = GANTrainer(g2, d2, parts.loss, g_optimizer=parts.g_optimizer, d_optimizer=parts.d_optimizer,
                       step=parts.step_config())
    _fit(built, tiny_data)
    for a, b in zip(list(built.generator.parameters()) + list(built.discriminator.parameters()),
                    list(default.generator.parameters()) + list(default.discriminator.parameters())):
        assert torch.equal(a, b)
    group = parts.d_optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["fused"]) == (2e-4, (0.9, 0.999), True)


def test_improved_recipe_is_the_example_recipe():
    g, d = tiny_models()
    parts = build_parts("improved", g, d)
    assert parts.loss == losses.NonSaturatingLoss(real_label=0.9)
    assert parts.g_optimizer.param_groups[0]["betas"] == (0.5, 0.999)
    (ema,) = parts.callbacks
    assert isinstance(ema, GeneratorEMA) and (ema.decay, ema.warmup_steps) == (0.999, 500)


def test_improved_r1_is_improved_plus_lazy_r1_with_corrected_adam():
    g, d = tiny_models()
    parts = build_parts("improved-r1", g, d)
    (lazy,) = parts.regularizers
    assert isinstance(lazy, LazyRegularizer) and lazy.every == 16 and lazy.reg == penalties.R1Penalty(10.0)
    c = 16 / 17
    group = parts.d_optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(2e-4 * c) and group["betas"] == pytest.approx((0.5**c, 0.999**c))
    assert parts.g_optimizer.param_groups[0]["betas"] == (0.5, 0.999)  # G's penalty is not lazy: uncorrected
    assert parts.loss == losses.NonSaturatingLoss(real_label=0.9)
    assert isinstance(parts.callbacks[0], GeneratorEMA)


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_builds_with_its_critic_steps(loss):
    g, d = tiny_models()
    parts = build_parts("reference", g, d, loss=loss)
    assert parts.n_critic == (5 if loss == "wgan-gp" else 1)
    assert [type(r) for r in parts.regularizers] == ([penalties.GradientPenalty] if loss == "wgan-gp" else [])
    assert build_parts("reference", g, d, loss=loss, n_critic=2, lr=1e-3).n_critic == 2


def test_every_recipe_option_builds_its_part():
    spec = dataclasses.replace(SPECS["reference"], g_lr=1e-4, d_lr=4e-4, r1_gamma=10.0, r1_every=16,
                               lecam_weight=0.3, augment_policy="translation,cutout", ada_target=0.6,
                               ema_half_life_images=10_000, spectral_norm=True)
    g, d = tiny_models()
    parts = build_parts(spec, g, d, batch_size=64)
    assert parts.g_optimizer.param_groups[0]["lr"] == 1e-4
    c = 16 / 17  # lazy R1: StyleGAN2's correction of D's Adam
    assert parts.d_optimizer.param_groups[0]["lr"] == pytest.approx(4e-4 * c)
    assert parts.d_optimizer.param_groups[0]["betas"] == pytest.approx((0.9**c, 0.999**c))
    lazy, lecam = parts.regularizers
    assert isinstance(lazy, LazyRegularizer) and lazy.every == 16 and lazy.reg == penalties.R1Penalty(10.0)
    assert isinstance(lecam, LeCamRegularizer) and lecam.weight == 0.3
    assert isinstance(parts.augment, DiffAugment) and parts.augment.p == 0.0  # ADA starts at 0
    ada, ema = parts.callbacks
    assert isinstance(ada, AdaptiveAugment) and ada.target == 0.6 and ada.batch_size == 64
    assert ema.half_life_images == 10_000 and ema.batch_size == 64
    normed = [m for m in d.modules() if isinstance(m, nn.Linear)]
    assert normed and all(hasattr(m, "weight_u") for m in normed)  # the output method (Linear layers)
    # the optimizer holds the spectral-normed D's parameters (the originals, not stale weights)
    assert {id(p) for p in parts.d_optimizer.param_groups[0]["params"]} == {id(p) for p in d.parameters()}


def test_a_recipe_with_every_part_trains_and_resumes_exactly(tmp_path, tiny_data):
    spec = dataclasses.replace(SPECS["reference"], r1_gamma=1.0, r1_every=3, lecam_weight=0.3,
                               augment_policy="color,translation,cutout", ada_target=0.6,
                               ema_half_life_images=500, spectral_norm=True)

    def run(max_steps: int, resume: object = None) -> GANTrainer:
        seed_everything(0)
        g, d = tiny_models()
        parts = build_parts(spec, g, d, batch_size=16)
        trainer = GANTrainer(g, d, parts.loss, g_optimizer=parts.g_optimizer, d_optimizer=parts.d_optimizer,
                             step=parts.step_config())
        for callback in parts.callbacks:
            callback.attach(trainer)
        if resume is not None:
            trainer.load_checkpoint(resume)
        _fit(trainer, tiny_data, steps=max_steps)
        return trainer

    straight = run(8)
    first = run(4)
    path = first.save_checkpoint(tmp_path / "ckpt.pt")
    resumed = run(8, resume=path)
    for module in ("generator", "discriminator", "ema_generator"):
        for a, b in zip(getattr(resumed, module).state_dict().values(),
                        getattr(straight, module).state_dict().values()):
            assert torch.equal(a, b), module


def test_bad_arguments_are_named():
    g, d = tiny_models()
    with pytest.raises(ValueError, match="recipe"):
        build_parts("best", g, d)
    with pytest.raises(ValueError, match="loss"):
        build_parts("reference", g, d, loss="wasserstein")
    with pytest.raises(ValueError, match="lr"):
        build_parts("reference", g, d, lr=-1.0)
    with pytest.raises(ValueError, match="n_critic"):
        build_parts("reference", g, d, n_critic=0)
    with pytest.raises(TypeError, match="discriminator"):
        build_parts("reference", g, None)
    assert set(RECIPES) == set(SPECS) and all(isinstance(v, str) and v for v in RECIPES.values())
    assert isinstance(SPECS["reference"], RecipeSpec)
