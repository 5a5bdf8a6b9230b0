"""ResNet builders (SNGAN/BigGAN): shapes, layouts, conditioning, spectral norm, argument checks, checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from torchgan_lite import GANTrainer, TensorLoader, load_generator, seed_everything
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.nets.resnet import RESNET_IMAGE_SIZES, resnet_discriminator, resnet_generator
from torchgan_lite.nets.resnet_blocks import ConditionalBatchNorm2d, ResidualDownBlock, ResidualUpBlock
from torchgan_lite.nets.spectral import OutputSpectralNorm, apply_spectral_norm


def _trainer(g: nn.Module, d: nn.Module) -> GANTrainer:
    """The one place this file builds a trainer (its step options, if any, go here)."""
    return GANTrainer(g, d, losses.HingeLoss(), device="cpu")


def _sn_hook(layer: nn.Module) -> OutputSpectralNorm | None:
    hook = getattr(layer, "output_spectral_norm", None)
    return hook if isinstance(hook, OutputSpectralNorm) else None


def _normalised_weight(layer: nn.Module) -> torch.Tensor | None:
    """The operator a spectral-normalised layer applies, as a matrix ``(out, -1)``; None if it is not normalised."""
    if parametrize.is_parametrized(layer, "weight"):
        return layer.weight.detach().flatten(1)  # W / sigma, torch's parametrization
    hook = _sn_hook(layer)
    if hook is not None:  # the output rescaling: the weight stays raw, the layer divides by its sigma estimate
        return (layer.weight / hook.sigma(layer)).detach()
    return None


# --------------------------------------------------------------------------- shapes and layouts


@pytest.mark.parametrize("size", RESNET_IMAGE_SIZES)
@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("classes", [None, 4])
def test_output_shapes_at_every_size_and_channel_count(size, channels, classes):
    torch.manual_seed(0)
    g = resnet_generator(latent_dim=6, image_size=size, channels=channels, base_width=2, num_classes=classes)
    d = resnet_discriminator(image_size=size, channels=channels, base_width=2, num_classes=classes)
    y = None if classes is None else torch.tensor([0, 3])
    for mode in (True, False):  # batch norm and the power iterations in both modes
        g.train(mode)
        d.train(mode)
        x = g(torch.randn(2, 6) * 3, y)
        assert x.shape == (2, channels, size, size)
        assert x.abs().max() <= 1.0
        logits = d(x, y)
        assert logits.shape == (2,) and torch.isfinite(logits).all()
    assert g.latent_dim == 6 and g.num_classes == classes and d.num_classes == classes
    assert g.out_shape == d.in_shape == (channels, size, size)


def _feature_maps(blocks: nn.Module, h: torch.Tensor, y: torch.Tensor | None = None) -> list[tuple[int, int]]:
    sizes = []
    for block in blocks:
        h = block(h, y) if isinstance(block, ResidualUpBlock) else block(h)
        sizes.append((h.shape[1], h.shape[2]))  # (channels, height)
    return sizes


def test_the_32px_nets_are_sngans_cifar_nets():
    # Miyato et al. 2018, table 4: G 128 -> 4x4x256 -> three up blocks of 256 -> 32x32x3; D an optimized
    # block of 128 to 16x16, a down block to 8x8, two blocks at 8x8, all of width 128.
    g, d = resnet_generator(), resnet_discriminator()
    assert g.latent_dim == 128 and g.linear.out_features == 4 * 4 * 256
    with torch.no_grad():
        h = g.linear(torch.randn(2, 128)).view(2, 256, 4, 4)
        assert _feature_maps(g.blocks, h) == [(256, 8), (256, 16), (256, 32)]
        assert _feature_maps(d.blocks, torch.randn(2, 3, 32, 32)) == [(128, 16), (128, 8), (128, 8), (128, 8)]
    assert d.head.in_features == 128
    # the blocks that keep width and size add their input unchanged: no 1x1 convolution in the shortcut
    assert [block.shortcut is None for block in d.blocks] == [False, False, True, True]


def test_the_128px_nets_follow_sngans_imagenet_schedule():
    w = 2
    g = resnet_generator(latent_dim=4, image_size=128, base_width=w)
    d = resnet_discriminator(image_size=128, base_width=w)
    with torch.no_grad():
        h = g.linear(torch.randn(2, 4)).view(2, 16 * w, 4, 4)
        assert _feature_maps(g.blocks, h) == [(16 * w, 8), (8 * w, 16), (4 * w, 32), (2 * w, 64), (w, 128)]
        assert _feature_maps(d.blocks, torch.randn(2, 3, 128, 128)) == [
            (w, 64), (2 * w, 32), (4 * w, 16), (8 * w, 8), (16 * w, 4), (16 * w, 4)]


def test_the_discriminator_pools_by_summing():
    # Global *sum* pooling (SNGAN): a feature map of ones, 8x8 at 32 px, reaches the head as 64s.
    d = resnet_discriminator(base_width=2, spectral_norm=False).eval()
    seen = []
    d.blocks.register_forward_hook(lambda m, args, out: torch.ones_like(out))  # (2, F, 8, 8)
    d.head.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    with torch.no_grad():
        d(torch.randn(2, 3, 32, 32))
    assert torch.equal(seen[0], torch.full((2, d.head.in_features), 64.0))


# --------------------------------------------------------------------------- conditioning


def test_conditional_generator_starts_unconditional_and_follows_its_class_tables():
    torch.manual_seed(0)
    g = resnet_generator(latent_dim=8, base_width=2, num_classes=3).eval()
    z = torch.randn(4, 8)
    a, b = torch.tensor([0, 0, 1, 2]), torch.tensor([1, 2, 0, 0])
    with torch.no_grad():
        # gains 1 and biases 0 at initialisation: the label changes nothing yet
        assert torch.equal(g(z, a), g(z, b))
        for module in g.modules():
            if isinstance(module, ConditionalBatchNorm2d) and module.gain is not None:
                nn.init.normal_(module.gain.weight, 1.0, 0.5)
                nn.init.normal_(module.bias.weight, 0.0, 0.5)
        out_a, out_b = g(z, a), g(z, b)
        assert (out_a - out_b).abs().flatten(1).amax(1).min() > 1e-3  # every sample changes with its label
        assert torch.equal(g(z, a), out_a)


def test_projection_discriminator_depends_on_the_label():
    torch.manual_seed(0)
    d = resnet_discriminator(base_width=2, num_classes=3).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        out = {c: d(x, torch.full((4,), c)) for c in range(3)}
    assert (out[0] - out[1]).abs().min() > 0 and (out[1] - out[2]).abs().min() > 0
    with torch.no_grad():
        assert torch.equal(d(x, torch.full((4,), 2)), out[2])


def test_conditional_batch_norm_is_a_per_class_affine_batch_norm():
    torch.manual_seed(0)
    plain = ConditionalBatchNorm2d(3)
    reference = nn.BatchNorm2d(3)
    x = torch.randn(5, 3, 4, 4)
    torch.testing.assert_close(plain(x), reference(x))
    assert plain.gain is None and plain.bn.affine
    cbn = ConditionalBatchNorm2d(3, num_classes=2)
    assert not cbn.bn.affine and torch.equal(cbn.gain.weight, torch.ones(2, 3))
    assert torch.equal(cbn.bias.weight, torch.zeros(2, 3))
    with torch.no_grad():
        cbn.gain.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]]))
        cbn.bias.weight.copy_(torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, -1.0]]))
    y = torch.tensor([0, 1, 1, 0, 1])
    normed = F.batch_norm(x, None, None, training=True)  # (5, 3, 4, 4)
    expected = normed * cbn.gain.weight[y][:, :, None, None] + cbn.bias.weight[y][:, :, None, None]
    torch.testing.assert_close(cbn(x, y), expected)
    with pytest.raises(ValueError, match="labels"):
        cbn(x)


def test_blocks_change_width_and_size_as_asked():
    x = torch.randn(2, 4, 8, 8)
    assert ResidualUpBlock(4, 6)(x).shape == (2, 6, 16, 16)
    assert ResidualDownBlock(4, 6)(x).shape == (2, 6, 4, 4)
    assert ResidualDownBlock(4, 4, downsample=False)(x).shape == (2, 4, 8, 8)
    assert ResidualDownBlock(4, 4, downsample=False).shortcut is None
    assert ResidualDownBlock(4, 4, downsample=False, preactivation=False).shortcut is not None
    with pytest.raises(TypeError, match="downsample"):
        ResidualDownBlock(4, 4, downsample=1)
    with pytest.raises(ValueError, match="out_channels"):
        ResidualUpBlock(4, 0)


# --------------------------------------------------------------------------- spectral norm


def test_spectral_norm_is_on_every_discriminator_weight_and_keeps_it_at_unit_norm():
    torch.manual_seed(0)
    d = resnet_discriminator(base_width=2, num_classes=3).train()
    layers = [(name, m) for name, m in d.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
    # 4 blocks of 2 convolutions, 2 of them with a 1x1 shortcut, the head and the projection embedding
    assert len(layers) == 4 * 2 + 2 + 2
    raw = {name for name, p in d.named_parameters() if p.dim() >= 2}  # every weight matrix or kernel
    normalised = {f"{name}.parametrizations.weight.original" if parametrize.is_parametrized(m, "weight")
                  else f"{name}.weight" for name, m in layers if _normalised_weight(m) is not None}
    assert raw == normalised
    assert _sn_hook(d.head) is not None  # the Linear head by its output (method="auto")
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 3, (4,))
    with torch.no_grad():
        for _ in range(30):  # power iterations, one per training forward
            d(x, y)
    d.eval()
    for name, m in layers:
        sigma = torch.linalg.matrix_norm(_normalised_weight(m), ord=2)
        assert sigma == pytest.approx(1.0, rel=0.05), name


def test_spectral_norm_options():
    d = resnet_discriminator(base_width=2, num_classes=3, spectral_norm=False)
    assert all(_normalised_weight(m) is None for m in d.modules())
    g = resnet_generator(latent_dim=4, base_width=2, num_classes=3, spectral_norm=True)
    for m in g.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert _normalised_weight(m) is not None
        elif isinstance(m, nn.Embedding):  # the class gains and biases are no operators
            assert _normalised_weight(m) is None
    assert all(_normalised_weight(m) is None for m in resnet_generator(latent_dim=4, base_width=2).modules())


def test_apply_spectral_norm_normalises_embeddings_only_when_asked():
    net = nn.ModuleDict({"embed": nn.Embedding(5, 3), "head": nn.Linear(3, 1)})
    apply_spectral_norm(net)
    assert not parametrize.is_parametrized(net["embed"], "weight")
    apply_spectral_norm(net, embeddings=True)  # the head is normalised already: only the embedding changes
    assert parametrize.is_parametrized(net["embed"], "weight") and _sn_hook(net["head"]) is not None
    assert torch.linalg.matrix_norm(net["embed"].weight.detach(), ord=2) == pytest.approx(1.0, rel=1e-3)
    with pytest.raises(TypeError, match="embeddings"):
        apply_spectral_norm(nn.Linear(2, 2), embeddings="yes")
    with pytest.raises(ValueError, match="embeddings=False"):
        apply_spectral_norm(nn.Embedding(4, 2), method="output", embeddings=True)


# --------------------------------------------------------------------------- arguments and calls


@pytest.mark.parametrize(
    ("builder", "kwargs", "name"),
    [
        (resnet_generator, {"image_size": 48}, "image_size"),
        (resnet_generator, {"image_size": 256}, "image_size"),
        (resnet_generator, {"image_size": 32.0}, "image_size"),
        (resnet_generator, {"image_size": True}, "image_size"),
        (resnet_generator, {"channels": 0}, "channels"),
        (resnet_generator, {"base_width": 0}, "base_width"),
        (resnet_generator, {"base_width": 2.5}, "base_width"),
        (resnet_generator, {"latent_dim": -1}, "latent_dim"),
        (resnet_generator, {"num_classes": 0}, "num_classes"),
        (resnet_generator, {"spectral_norm": 1}, "spectral_norm"),
        (resnet_discriminator, {"image_size": 28}, "image_size"),
        (resnet_discriminator, {"channels": "3"}, "channels"),
        (resnet_discriminator, {"base_width": -2}, "base_width"),
        (resnet_discriminator, {"num_classes": 1.0}, "num_classes"),
        (resnet_discriminator, {"spectral_norm": None}, "spectral_norm"),
    ],
)
def test_builders_reject_bad_arguments_by_name(builder, kwargs, name):
    with pytest.raises((TypeError, ValueError), match=name):
        builder(**kwargs)


def test_a_size_it_cannot_make_names_the_sizes_it_can():
    with pytest.raises(ValueError, match=r"image_size.*\[32, 64, 128\].*48"):
        resnet_discriminator(image_size=48)


def test_conditional_and_unconditional_calls_are_checked():
    g, d = resnet_generator(latent_dim=4, base_width=1), resnet_discriminator(base_width=1)
    gc = resnet_generator(latent_dim=4, base_width=1, num_classes=3)
    dc = resnet_discriminator(base_width=1, num_classes=3)
    z, x, y = torch.randn(2, 4), torch.randn(2, 3, 32, 32), torch.tensor([0, 2])
    with pytest.raises(TypeError, match="not conditional"):
        g(z, y)
    with pytest.raises(TypeError, match="not conditional"):
        d(x, y)
    with pytest.raises(TypeError, match=r"G\(z, y\)"):
        gc(z)
    with pytest.raises(TypeError, match=r"D\(x, y\)"):
        dc(x)
    with pytest.raises(TypeError, match="int64"):
        dc(x, y.float())
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        gc(z, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"z must have shape \(B, 4\)"):
        g(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"3, 32, 32\), got \(2, 3, 64, 64\)"):
        d(torch.randn(2, 3, 64, 64))


# --------------------------------------------------------------------------- training and checkpoints


def test_checkpoint_round_trip_rebuilds_the_trained_conditional_generator(tmp_path):
    seed_everything(0)
    g = resnet_generator(latent_dim=8, image_size=32, channels=3, base_width=2, num_classes=3)
    d = resnet_discriminator(image_size=32, channels=3, base_width=2, num_classes=3)
    trainer = _trainer(g, d)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 3, 32, 32, generator=gen) * 2 - 1, torch.randint(0, 3, (16,), generator=gen)
    before = {k: v.clone() for k, v in g.state_dict().items()}
    trainer.fit(TensorLoader(x, y, batch_size=8), max_steps=2)
    assert trainer.state.step == 2
    changed = [k for k, v in g.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.endswith("gain.weight") for k in changed)  # the class tables learn
    path = trainer.save_checkpoint(tmp_path / "resnet.pt")
    loaded = load_generator(path)
    assert loaded.config == g.config and type(loaded) is type(g)
    assert not loaded.training
    z, labels = torch.randn(4, 8), torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        expected = trainer.sample(4, z=z, labels=labels, use_ema=False)
        assert torch.equal(loaded(z, labels), expected)
        # trained a little, the generator already draws each class differently
        assert not torch.equal(loaded(z, torch.tensor([1, 2, 0, 0])), expected)
