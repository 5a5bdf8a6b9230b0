"""DCGAN builders: the builder contract (shapes, range, one logit per sample) for every size and norm, the layouts
(28 px unchanged, the width cap of the larger sizes), spectral norm, argument checks, checkpoint round trips."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from torchgan_lite import GANTrainer, TensorLoader, seed_everything
from torchgan_lite.callbacks.ema import GeneratorEMA
from torchgan_lite.checkpoints import export
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.nets.dcgan import IMAGE_SIZES, dcgan_discriminator, dcgan_generator

NORMS = ("batch", "spectral", None)


@settings(max_examples=12, deadline=None)
@given(size=st.sampled_from(sorted(IMAGE_SIZES)), norm=st.sampled_from(NORMS), batch=st.integers(1, 4),
       latent=st.integers(1, 12), channels=st.integers(1, 3), width=st.integers(1, 3),
       classes=st.one_of(st.none(), st.integers(1, 5)))
def test_builder_contract(size, norm, batch, latent, channels, width, classes):
    g = dcgan_generator(latent_dim=latent, image_size=size, channels=channels, base_width=width, norm=norm,
                        num_classes=classes)
    d = dcgan_discriminator(image_size=size, channels=channels, base_width=width, norm=norm, num_classes=classes)
    y = None if classes is None else torch.randint(0, classes, (batch,))
    g.eval()  # batch norm in eval mode accepts a batch of 1
    d.eval()
    x = g(torch.randn(batch, latent) * 5, y)
    assert x.shape == (batch, channels, size, size)
    assert x.abs().max() <= 1.0
    logits = d(x, y)
    assert logits.shape == (batch,)
    assert torch.isfinite(logits).all()
    assert g.latent_dim == latent and g.num_classes == classes and d.num_classes == classes
    assert g.out_shape == d.in_shape == (channels, size, size)


@pytest.mark.parametrize("norm", NORMS)
def test_norm_option_decides_the_layers(norm):
    g, d = dcgan_generator(base_width=4, norm=norm), dcgan_discriminator(base_width=4, norm=norm)
    for net in (g, d):
        has_bn = any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
        has_sn = any(name.endswith("parametrizations.weight.original") for name, _ in net.named_parameters())
        assert has_bn == (norm == "batch")
        assert has_sn == (norm == "spectral")
    # The paper's D has no batch norm on its first layer.
    assert not isinstance(d.trunk[1], nn.BatchNorm2d)


def test_spectral_norm_keeps_every_discriminator_weight_at_unit_norm():
    torch.manual_seed(0)
    d = dcgan_discriminator(base_width=4, norm="spectral", num_classes=3)
    d.train()
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 3, (4,))
    for _ in range(30):  # power iterations, one per training forward pass
        d(x, y)
    d.eval()
    layers = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
    assert len(layers) == 4
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, rel=0.05)


def _generator_layout(g: nn.Module) -> list[tuple[int, int]]:
    """(channels, height) after each transposed convolution of a DCGAN generator."""
    sizes, h = [], torch.randn(2, g.latent_dim)[:, :, None, None]
    with torch.no_grad():
        for m in g.net:
            h = m(h)
            if isinstance(m, nn.ConvTranspose2d):
                sizes.append((h.shape[1], h.shape[2]))
    return sizes


def _discriminator_layout(d: nn.Module) -> list[tuple[int, int]]:
    sizes, h = [], torch.randn(2, *d.in_shape)
    with torch.no_grad():
        for m in d.trunk:
            h = m(h)
            if isinstance(m, nn.Conv2d):
                sizes.append((h.shape[1], h.shape[2]))
    return sizes


def test_the_28x28_layout_is_7_14_28():
    g = dcgan_generator(base_width=8, norm=None)
    assert _generator_layout(g) == [(16, 7), (8, 14), (1, 28)]
    assert _discriminator_layout(dcgan_discriminator(base_width=8, norm=None)) == [(8, 14), (16, 7)]


def test_the_mnist_nets_keep_their_parameter_counts():
    # The 28x28 layout of the module docstring at the defaults (latent 100, w = 64, batch norm, no bias before it).
    w, z = 64, 100
    g_expected = z * 2 * w * 7 * 7 + 2 * 2 * w + 2 * w * w * 4 * 4 + 2 * w + w * 1 * 4 * 4 + 1
    d_expected = (1 * w * 4 * 4 + w) + w * 2 * w * 4 * 4 + 2 * 2 * w + (2 * w * 7 * 7 + 1)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(dcgan_generator()) == g_expected
    assert count(dcgan_discriminator()) == d_expected


def test_the_64x64_layout_is_the_tutorials():
    w = 2
    g = dcgan_generator(latent_dim=4, image_size=64, channels=3, base_width=w)
    assert _generator_layout(g) == [(8 * w, 4), (4 * w, 8), (2 * w, 16), (w, 32), (3, 64)]
    d = dcgan_discriminator(image_size=64, channels=3, base_width=w)
    assert _discriminator_layout(d) == [(w, 32), (2 * w, 16), (4 * w, 8), (8 * w, 4)]


@pytest.mark.parametrize("size", [128, 256])
def test_larger_sizes_double_the_width_up_to_8w(size):
    w = 2
    g = dcgan_generator(latent_dim=4, image_size=size, channels=3, base_width=w, norm=None)
    d = dcgan_discriminator(image_size=size, channels=3, base_width=w, norm=None)
    stages = {128: [8, 8, 4, 2, 1], 256: [8, 8, 8, 4, 2, 1]}[size]  # x w, from 4x4 up
    assert _generator_layout(g) == [(m * w, 4 * 2**i) for i, m in enumerate(stages)] + [(3, size)]
    assert _discriminator_layout(d) == [(m * w, size // 2 ** (i + 1)) for i, m in enumerate(stages[::-1])]
    assert d.head.in_features == 8 * w * 4 * 4


@pytest.mark.parametrize("size", sorted(IMAGE_SIZES))
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_output_shapes_at_every_size_and_channel_count(size, channels):
    norm, classes = NORMS[size % 3], (None, 2)[channels % 2]
    g = dcgan_generator(latent_dim=5, image_size=size, channels=channels, base_width=1, norm=norm,
                        num_classes=classes)
    d = dcgan_discriminator(image_size=size, channels=channels, base_width=1, norm=norm, num_classes=classes)
    y = None if classes is None else torch.tensor([1, 0])
    x = g(torch.randn(2, 5), y)  # train mode: batch norm on the batch's statistics
    assert x.shape == (2, channels, size, size) and x.abs().max() <= 1.0
    assert d(x, y).shape == (2,)


@pytest.mark.parametrize(
    ("builder", "kwargs", "name"),
    [
        (dcgan_generator, {"image_size": 48}, "image_size"),
        (dcgan_generator, {"image_size": 512}, "image_size"),
        (dcgan_discriminator, {"image_size": 16}, "image_size"),
        (dcgan_discriminator, {"image_size": 96}, "image_size"),
        (dcgan_generator, {"image_size": 28.0}, "image_size"),
        (dcgan_generator, {"norm": "layer"}, "norm"),
        (dcgan_generator, {"base_width": 0}, "base_width"),
        (dcgan_generator, {"latent_dim": -3}, "latent_dim"),
        (dcgan_generator, {"embed_dim": 4}, "embed_dim"),
        (dcgan_generator, {"num_classes": 0}, "num_classes"),
        (dcgan_discriminator, {"channels": 0}, "channels"),
        (dcgan_discriminator, {"negative_slope": -0.2}, "negative_slope"),
        (dcgan_discriminator, {"norm": "Batch"}, "norm"),
    ],
)
def test_builders_reject_bad_arguments_by_name(builder, kwargs, name):
    with pytest.raises((TypeError, ValueError), match=name):
        builder(**kwargs)


def test_a_size_it_cannot_make_names_the_sizes_it_can():
    with pytest.raises(ValueError, match=r"image_size.*\[28, 32, 64, 128, 256\].*got 48"):
        dcgan_generator(image_size=48)


def test_conditional_and_unconditional_calls_are_checked():
    g, d = dcgan_generator(base_width=2), dcgan_discriminator(base_width=2)
    gc, dc = dcgan_generator(base_width=2, num_classes=3), dcgan_discriminator(base_width=2, num_classes=3)
    z, x, y = torch.randn(2, 100), torch.randn(2, 1, 28, 28), torch.tensor([0, 2])
    with pytest.raises(TypeError, match="not conditional"):
        g(z, y)
    with pytest.raises(TypeError, match="not conditional"):
        d(x, y)
    with pytest.raises(TypeError, match=r"G\(z, y\)"):
        gc(z)
    with pytest.raises(TypeError, match=r"D\(x, y\)"):
        dc(x)
    with pytest.raises(TypeError, match="int64"):
        gc(z, y.float())
    with pytest.raises(ValueError, match=r"1, 28, 28\), got \(2, 1, 32, 32\)"):
        d(torch.randn(2, 1, 32, 32))


@pytest.mark.parametrize("norm", NORMS)
def test_a_few_training_steps_with_ema(norm, tmp_path):
    torch.manual_seed(0)
    g = dcgan_generator(latent_dim=8, base_width=2, norm=norm, num_classes=2)
    d = dcgan_discriminator(base_width=2, norm=norm, num_classes=2)
    seed_everything(0)
    trainer = GANTrainer(g, d, losses.HingeLoss())
    ema = GeneratorEMA(decay=0.5)
    ema.attach(trainer)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 1, 28, 28, generator=gen) * 2 - 1, torch.randint(0, 2, (32,), generator=gen)
    before = [p.detach().clone() for p in g.parameters()]
    trainer.fit(TensorLoader(x, y, batch_size=8), epochs=1)
    assert trainer.state.step == 4 and ema.num_updates == 4
    assert any(not torch.equal(a, b) for a, b in zip(before, g.parameters()))
    assert trainer.sample(3, labels=torch.tensor([0, 1, 1])).shape == (3, 1, 28, 28)
    trainer.save_checkpoint(tmp_path / "c.pt")
    assert torch.load(tmp_path / "c.pt", weights_only=True)["extra"]["ema"]["num_updates"] == 4
    # The checkpoint rebuilds this generator (norm, classes, trained batch-norm statistics and all), EMA or live.
    z, labels = torch.randn(3, 8), torch.tensor([1, 0, 1])
    for use_ema in (True, False):
        loaded = export.load_generator(tmp_path / "c.pt", use_ema=use_ema)
        assert loaded.config == g.config
        with torch.no_grad():
            assert torch.equal(loaded(z, labels), trainer.sample(3, z=z, labels=labels, use_ema=use_ema))


def test_checkpoint_round_trip_of_a_64px_colour_generator(tmp_path):
    seed_everything(0)
    g = dcgan_generator(latent_dim=8, image_size=64, channels=3, base_width=2)
    d = dcgan_discriminator(image_size=64, channels=3, base_width=2)
    trainer = GANTrainer(g, d, losses.NonSaturatingLoss(), device="cpu")
    x = torch.rand(16, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    running = [m.running_mean.clone() for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    trainer.fit(TensorLoader(x, batch_size=8), max_steps=2)
    assert trainer.state.step == 2
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    assert any(not torch.equal(m.running_mean, r) for m, r in zip(bns, running))  # statistics to carry over
    loaded = export.load_generator(trainer.save_checkpoint(tmp_path / "dcgan64.pt"))
    assert loaded.config == g.config and loaded.out_shape == (3, 64, 64)
    z = torch.randn(3, 8)
    with torch.no_grad():
        assert torch.equal(loaded(z), trainer.sample(3, z=z, use_ema=False))
