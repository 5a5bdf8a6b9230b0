"""DiffAugment's transforms against hand computations, its probability, flat inputs; ADA's update rule and state."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import tiny_models
from torchgan_lite import Event, GANTrainer, StepConfig, TensorLoader, seed_everything
from torchgan_lite.callbacks.ada import AdaptiveAugment
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.losses.augment import (
    DiffAugment,
    rand_brightness,
    rand_contrast,
    rand_cutout,
    rand_saturation,
    rand_translation,
)


def _images(b: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), b=st.integers(1, 4), c=st.integers(1, 3), h=st.integers(2, 9),
       w=st.integers(2, 9))
def test_translation_shifts_each_sample_and_fills_zeros(seed, b, c, h, w):
    x = _images(b, c, h, w, seed)
    torch.manual_seed(seed)
    out = rand_translation(x)
    torch.manual_seed(seed)  # the same draws, in the function's order: dy then dx
    sy, sx = int(h * 0.125 + 0.5), int(w * 0.125 + 0.5)
    dy = torch.randint(-sy, sy + 1, size=(b, 1, 1)).flatten().tolist()
    dx = torch.randint(-sx, sx + 1, size=(b, 1, 1)).flatten().tolist()
    want = torch.zeros_like(x)
    for n in range(b):
        for i in range(h):
            for j in range(w):
                if 0 <= i + dy[n] < h and 0 <= j + dx[n] < w:
                    want[n, :, i, j] = x[n, :, i + dy[n], j + dx[n]]
    assert torch.equal(out, want)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), b=st.integers(1, 4), h=st.integers(2, 9), w=st.integers(2, 9))
def test_cutout_zeroes_one_clipped_square_per_sample(seed, b, h, w):
    x = _images(b, 2, h, w, seed) + 3.0  # no zeros of its own
    torch.manual_seed(seed)
    out = rand_cutout(x)
    torch.manual_seed(seed)
    sh, sw = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
    oy = torch.randint(0, h + (1 - sh % 2), size=(b, 1, 1)).flatten().tolist()
    ox = torch.randint(0, w + (1 - sw % 2), size=(b, 1, 1)).flatten().tolist()
    want = x.clone()
    for n in range(b):
        top, left = oy[n] - sh // 2, ox[n] - sw // 2
        want[n, :, max(top, 0):max(top + sh, 0), max(left, 0):max(left + sw, 0)] = 0
    assert torch.equal(out, want)


def test_cutout_square_is_half_the_side_inside_the_image():
    x = torch.ones(500, 1, 28, 28)
    torch.manual_seed(0)
    zeros = (rand_cutout(x) == 0).sum(dim=(1, 2, 3))  # (500,)
    assert int(zeros.max()) == 14 * 14  # a square fully inside the image: 14 x 14
    assert int(zeros.min()) > 0


def test_color_transforms_match_their_formulas():
    x = _images(3, 3, 4, 5)
    torch.manual_seed(1)
    u = torch.rand(3, 1, 1, 1, dtype=x.dtype)
    torch.manual_seed(1)
    torch.testing.assert_close(rand_brightness(x), x + (u - 0.5), rtol=0, atol=0)
    torch.manual_seed(1)
    mean_c = x.mean(dim=1, keepdim=True)
    torch.testing.assert_close(rand_saturation(x), (x - mean_c) * 2 * u + mean_c)
    torch.manual_seed(1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(rand_contrast(x), (x - mean) * (u + 0.5) + mean)
    gray = _images(3, 1, 4, 5)
    torch.testing.assert_close(rand_saturation(gray), gray)  # one channel: nothing to saturate


def test_p_zero_is_the_identity_and_p_one_applies_every_transform():
    x = _images(8, 1, 6, 6)
    assert torch.equal(DiffAugment(p=0.0)(x), x)
    aug = DiffAugment("color", p=1.0)
    torch.manual_seed(3)
    got = aug(x)
    torch.manual_seed(3)  # per transform: the p-draw (B,), then the transform's own draws
    want = x
    for fn in (rand_brightness, rand_saturation, rand_contrast):
        torch.rand(8, 1, 1, 1, dtype=x.dtype)
        want = fn(want)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_p_applies_each_transform_to_about_a_fraction_p_of_the_samples():
    x = torch.zeros(4000, 1, 4, 4)
    torch.manual_seed(0)
    out = DiffAugment("color", p=0.3)(x)  # brightness moves a zero image; contrast and saturation do not
    moved = (out.flatten(1) != 0).any(dim=1).float().mean().item()
    assert abs(moved - 0.3) < 0.03  # binomial std at n = 4000: 0.007


def test_flat_inputs_are_augmented_as_images_and_seeded_runs_repeat():
    x = _images(4, 1, 8, 8)
    aug = DiffAugment(image_shape=(1, 8, 8))
    torch.manual_seed(5)
    flat = aug(x.flatten(1))  # (4, 64)
    torch.manual_seed(5)
    image = aug(x)  # (4, 1, 8, 8)
    assert flat.shape == (4, 64)
    assert torch.equal(flat, image.flatten(1))
    assert not torch.equal(image, x)


def test_diffaugment_is_differentiable():
    aug = DiffAugment("color,translation,cutout")
    x = _images(2, 3, 5, 5).requires_grad_(True)

    def fixed(t: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(7)  # the same augmentation at every evaluation
        return aug(t)

    assert torch.autograd.gradcheck(fixed, (x,))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"policy": "zoom"}, "policy"), ({"policy": ""}, "policy"), ({"p": 1.5}, "p must"), ({"p": "1"}, "p must"),
    ({"image_shape": (28, 28, 1, 1)}, "image_shape"), ({"image_shape": (0, 28)}, "image_shape")])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        DiffAugment(**kwargs)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="image_shape"):
        DiffAugment()(torch.zeros(2, 784))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        DiffAugment()(torch.zeros(2, 1, 28))
    with pytest.raises(TypeError, match="floating"):
        DiffAugment()(torch.zeros(2, 1, 4, 4, dtype=torch.int64))


def test_p_is_saved_with_the_module():
    aug = DiffAugment(p=0.25)
    other = DiffAugment(p=1.0)
    other.load_state_dict(aug.state_dict())
    assert other.p == 0.25


# ---------------------------------------------------------------- ADA


def test_ada_moves_p_by_the_sign_rule_at_each_interval_only():
    aug = DiffAugment(p=0.0)
    ada = AdaptiveAugment(aug, target=0.6, interval=2, speed_images=100, batch_size=10)  # a step of 0.2 per interval
    seen = []
    for r in [1.0, 1.0, 1.0, 1.0, 0.0, 0.2, 0.6, 0.6, 1.0] + [1.0] * 12:
        ada.observe(torch.tensor(r))
        seen.append(round(aug.p, 6))
    # mean 1 > 0.6: +0.2; again +0.2; mean 0.1 < 0.6: -0.2; mean 0.6 = target: no change; then up to the cap of 1
    assert seen[:9] == [0.0, 0.2, 0.2, 0.4, 0.4, 0.2, 0.2, 0.2, 0.2]
    assert seen[-1] == 1.0
    for _ in range(20):
        ada.observe(-1.0)
    assert aug.p == 0.0  # clamped below at 0


def test_ada_reads_the_batch_size_from_the_augment():
    aug = DiffAugment(p=0.5)
    aug(torch.zeros(25, 1, 4, 4))
    ada = AdaptiveAugment(aug, interval=1, speed_images=1000)
    ada.observe(1.0)
    assert aug.p == pytest.approx(0.5 + 25 / 1000)


def test_ada_state_resumes_mid_interval_exactly():
    signs = torch.rand(23, generator=torch.Generator().manual_seed(0)) * 2 - 1
    straight = AdaptiveAugment(DiffAugment(p=0.1), interval=4, speed_images=50, batch_size=3)
    for s in signs:
        straight.observe(s)
    first = AdaptiveAugment(DiffAugment(p=0.1), interval=4, speed_images=50, batch_size=3)
    for s in signs[:10]:  # stops mid-interval: a partial sum to carry
        first.observe(s)
    saved = first.state_dict()
    resumed = AdaptiveAugment(DiffAugment(p=0.9), interval=4, speed_images=50, batch_size=3)
    resumed.load_state_dict(saved)
    for s in signs[10:]:
        resumed.observe(s)
    assert torch.equal(resumed.augment.probability, straight.augment.probability)
    assert resumed.steps == straight.steps == 23


def test_ada_rejects_bad_arguments_and_states():
    with pytest.raises(TypeError, match="augment"):
        AdaptiveAugment(torch.nn.Identity())
    with pytest.raises(ValueError, match="target"):
        AdaptiveAugment(DiffAugment(), target=2.0)
    with pytest.raises(ValueError, match="interval"):
        AdaptiveAugment(DiffAugment(), interval=0)
    ada = AdaptiveAugment(DiffAugment(p=0.3))
    with pytest.raises(ValueError, match="p must"):
        ada.load_state_dict({"p": torch.tensor(3.0), "sign_sum": None, "steps": 0})
    assert ada.augment.p == pytest.approx(0.3)


def test_ada_in_a_trainer_follows_real_sign_and_resumes_exactly(tmp_path, tiny_data):
    signs: list[float] = []

    def run(max_steps: int, resume: object = None) -> tuple[GANTrainer, DiffAugment]:
        seed_everything(0)
        g, d = tiny_models()
        aug = DiffAugment("translation,cutout", p=0.5)
        trainer = GANTrainer(g, d, losses.NonSaturatingLoss(), step=StepConfig(augment=aug))
        AdaptiveAugment(aug, interval=2, speed_images=320).attach(trainer)  # 0.1 per interval of 2 x 16 images
        trainer.add_callback(Event.STEP_END, lambda t: signs.append(float(t.state.last.real_sign)))
        if resume is not None:
            trainer.load_checkpoint(resume)
        trainer.fit(TensorLoader(tiny_data, batch_size=16, generator=torch.Generator().manual_seed(1)), epochs=5,
                    max_steps=max_steps)
        return trainer, aug

    straight, aug_a = run(9)
    want = 0.5
    for i in range(0, 8, 2):  # four full intervals in 9 steps
        mean = (signs[i] + signs[i + 1]) / 2
        want = min(1.0, max(0.0, want + 0.1 * ((mean > 0.6) - (mean < 0.6))))
    assert aug_a.p == pytest.approx(want, abs=1e-6)
    first, _ = run(5)
    path = first.save_checkpoint(tmp_path / "ckpt.pt")
    resumed, aug_c = run(9, resume=path)
    assert torch.equal(aug_c.probability, aug_a.probability)
    for got, want_p in zip(resumed.discriminator.parameters(), straight.discriminator.parameters()):
        assert torch.equal(got, want_p)


@pytest.mark.parametrize("transform", [rand_brightness, rand_saturation, rand_contrast, rand_translation, rand_cutout])
def test_keep_leaves_unkept_samples_bitwise_and_transforms_kept_ones_as_without_it(transform):
    x = _images(6, 3, 8, 8) + 3.0  # no zeros of its own, so a cutout or a shift shows
    keep = torch.tensor([True, False, True, False, False, True])
    torch.manual_seed(5)
    full = transform(x)
    torch.manual_seed(5)  # the same draws: keep= changes which samples change, not the random numbers
    got = transform(x, keep=keep)
    assert torch.equal(got[~keep], x[~keep])
    assert torch.equal(got[keep], full[keep])
    assert not torch.equal(got[keep], x[keep])
