"""Conditional MLP builders: shapes, label plumbing and its errors, and short conditional training runs."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import REPO
from torchgan_lite import GANTrainer, StepConfig, TensorLoader, seed_everything
from torchgan_lite.callbacks.ema import GeneratorEMA
from torchgan_lite.checkpoints import export
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.losses import penalties
from torchgan_lite.metrics.classes import generator_class_accuracy
from torchgan_lite.nets.conditional import check_labels, conditional_mlp_discriminator, conditional_mlp_generator

hidden_st = st.lists(st.integers(1, 16), min_size=1, max_size=3).map(tuple)
shape_st = st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple)


def test_reference_sized_networks_add_only_the_label_parameters():
    g, d = conditional_mlp_generator(), conditional_mlp_discriminator()
    # The reference G (1,486,352) plus a 10x10 embedding and its 10x256 first-layer weights.
    assert sum(p.numel() for p in g.parameters()) == 1_486_352 + 10 * 10 + 10 * 256
    # The reference D (1,460,225) plus a 10x256 projection embedding.
    assert sum(p.numel() for p in d.parameters()) == 1_460_225 + 10 * 256
    assert (g.num_classes, g.latent_dim, d.num_classes) == (10, 100, 10)


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 6), classes=st.integers(1, 12), latent=st.integers(1, 16), hidden=hidden_st,
       shape=shape_st, embed=st.one_of(st.none(), st.integers(1, 8)))
def test_generator_shape_range_and_attributes(batch, classes, latent, hidden, shape, embed):
    g = conditional_mlp_generator(num_classes=classes, latent_dim=latent, hidden=hidden, out_shape=shape,
                                  embed_dim=embed)
    y = torch.randint(0, classes, (batch,))
    out = g(torch.randn(batch, latent) * 10, y)
    assert out.shape == (batch, *shape)
    assert out.abs().max() <= 1.0
    assert (g.num_classes, g.latent_dim, g.out_shape) == (classes, latent, shape)


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 6), classes=st.integers(1, 12), hidden=hidden_st, shape=shape_st,
       projection=st.booleans(), dropout=st.sampled_from([0.0, 0.3]))
def test_discriminator_returns_one_finite_logit_per_sample(batch, classes, hidden, shape, projection, dropout):
    d = conditional_mlp_discriminator(num_classes=classes, in_shape=shape, hidden=hidden, dropout=dropout,
                                      projection=projection)
    out = d(torch.randn(batch, *shape), torch.randint(0, classes, (batch,)))
    assert out.shape == (batch,)
    assert torch.isfinite(out).all()


def test_the_label_changes_the_output():
    torch.manual_seed(0)
    g = conditional_mlp_generator(num_classes=3, latent_dim=4, hidden=(8,), out_shape=(5,))
    d = conditional_mlp_discriminator(num_classes=3, in_shape=(5,), hidden=(8,), dropout=0.0)
    z = torch.randn(1, 4).expand(3, 4)  # the same noise, three classes
    x = g(z, torch.arange(3))
    assert not torch.allclose(x[0], x[1]) and not torch.allclose(x[1], x[2])
    same_x = torch.randn(1, 5).expand(3, 5)
    logits = d(same_x, torch.arange(3))
    assert len(set(logits.tolist())) == 3


def test_projection_logit_is_linear_term_plus_inner_product():
    torch.manual_seed(1)
    d = conditional_mlp_discriminator(num_classes=4, in_shape=(6,), hidden=(5, 3), dropout=0.0).eval()
    x, y = torch.randn(7, 6), torch.randint(0, 4, (7,))
    h = d.trunk(x)  # (7, 3)
    expected = d.head(h).squeeze(1) + (d.embed.weight[y] * h).sum(1)
    torch.testing.assert_close(d(x, y), expected)


@pytest.mark.parametrize(
    ("labels", "error", "match"),
    [
        (torch.zeros(3, dtype=torch.int64), ValueError, r"shape \(4,\).*got \(3,\)"),
        (torch.zeros(4, 1, dtype=torch.int64), ValueError, r"shape \(4,\)"),
        (torch.zeros(4), TypeError, "int64.*float32"),
        (torch.zeros(4, dtype=torch.int32), TypeError, "int64.*int32"),
        ([0, 1, 2, 3], TypeError, "list"),
    ],
)
def test_wrong_labels_are_clear_errors_in_both_networks(labels, error, match):
    g = conditional_mlp_generator(num_classes=3, latent_dim=4, hidden=(8,), out_shape=(5,))
    d = conditional_mlp_discriminator(num_classes=3, in_shape=(5,), hidden=(8,))
    with pytest.raises(error, match=match):
        g(torch.randn(4, 4), labels)
    with pytest.raises(error, match=match):
        d(torch.randn(4, 5), labels)
    with pytest.raises(error, match=match):
        check_labels(labels, 4, 3)


@pytest.mark.parametrize(
    ("builder", "kwargs", "name"),
    [
        (conditional_mlp_generator, {"num_classes": 0}, "num_classes"),
        (conditional_mlp_generator, {"num_classes": 2.0}, "num_classes"),
        (conditional_mlp_generator, {"embed_dim": 0}, "embed_dim"),
        (conditional_mlp_generator, {"hidden": (8, 0)}, r"hidden\[1\]"),
        (conditional_mlp_discriminator, {"num_classes": -1}, "num_classes"),
        (conditional_mlp_discriminator, {"projection": 1}, "projection"),
        (conditional_mlp_discriminator, {"hidden": ()}, "hidden"),
        (conditional_mlp_discriminator, {"embed_dim": 4}, "embed_dim"),
        (conditional_mlp_discriminator, {"dropout": 1.5}, "dropout"),
    ],
)
def test_builders_reject_bad_arguments_by_name(builder, kwargs, name):
    with pytest.raises((TypeError, ValueError), match=name):
        builder(**kwargs)


def _tiny_conditional_trainer(classes: int = 3) -> GANTrainer:
    torch.manual_seed(0)
    g = conditional_mlp_generator(num_classes=classes, latent_dim=8, hidden=(32,), out_shape=(1, 4, 4))
    d = conditional_mlp_discriminator(num_classes=classes, in_shape=(1, 4, 4), hidden=(32,), dropout=0.0)
    seed_everything(0)
    return GANTrainer(g, d, losses.NonSaturatingLoss(real_label=0.9),
                      step=StepConfig(regularizers=[penalties.R1Penalty(1.0)]))


def _labelled_data(n: int = 96, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    y = torch.randint(0, classes, (n,), generator=gen)
    x = (y.float()[:, None, None, None] / classes * 2 - 1 + 0.1 * torch.randn(n, 1, 4, 4, generator=gen)).clamp(-1, 1)
    return x, y


def test_the_trainer_recognises_the_conditional_pair_and_trains_on_labelled_batches(tmp_path):
    trainer = _tiny_conditional_trainer()
    assert trainer.num_classes == 3
    ema = GeneratorEMA(decay=0.9)
    ema.attach(trainer)
    x, y = _labelled_data()
    before = [p.detach().clone() for p in trainer.generator.parameters()]
    trainer.fit(TensorLoader(x, y, batch_size=16), epochs=4, max_steps=20)
    assert trainer.state.step == 20 and ema.num_updates == 20
    assert all(not torch.equal(a, b) for a, b in zip(before, trainer.generator.parameters()))
    assert torch.isfinite(torch.tensor([h.d_loss for h in trainer.state.history])).all()
    digits = trainer.sample(6, labels=torch.tensor([0, 1, 2, 0, 1, 2]))
    assert digits.shape == (6, 1, 4, 4)
    path = trainer.save_checkpoint(tmp_path / "c.pt")
    saved = torch.load(path, weights_only=True)
    assert saved["trainer"]["num_classes"] == 3
    assert "embed.weight" in saved["extra"]["ema"]["generator"]


def test_the_trainer_refuses_unlabelled_or_mislabelled_batches():
    trainer = _tiny_conditional_trainer()
    x, y = _labelled_data(16)
    with pytest.raises(TypeError, match="labels"):
        trainer.train_step(x)
    with pytest.raises(TypeError, match="int64"):
        trainer.train_step((x, y.float()))
    with pytest.raises(ValueError, match=r"\(16,\)"):
        trainer.train_step((x, y[:15]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        trainer.train_step((x, y + 5))
    with pytest.raises(ValueError, match=r"\(4,\)"):
        trainer.sample(4, labels=torch.zeros(5, dtype=torch.int64))


def _load_example():
    path = REPO / "examples" / "mnist_conditional.py"
    spec = importlib.util.spec_from_file_location("mnist_conditional_example", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.mnist
def test_conditional_example_short_run_on_real_mnist(tmp_path, mnist_dir):
    example = _load_example()
    out = tmp_path / "run"
    status = example.main(["--max-steps", "20", "--subset", "2560", "--epochs", "1", "--data-root", str(mnist_dir),
                           "--out", str(out), "--device", "cpu", "--recipe", "improved", "--no-progress"])
    assert status == 0
    for name in ("samples_final.png", "digits_final.png", "losses.png", "history.csv", "checkpoint.pt",
                 "run.json"):
        assert (out / name).is_file(), name
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["trainer"]["step"] == 20 and ckpt["trainer"]["num_classes"] == 10
    assert ckpt["extra"]["ema"]["num_updates"] == 20


def test_sampling_cli_draws_the_digit_asked_for(tmp_path):
    from torchgan_lite.cli import sample

    trainer = _tiny_conditional_trainer()
    GeneratorEMA(decay=0.5).attach(trainer)
    x, y = _labelled_data(32)
    trainer.fit(TensorLoader(x, y, batch_size=16), epochs=1)
    ckpt = trainer.save_checkpoint(tmp_path / "c.pt")
    out = tmp_path / "twos.pt"
    assert sample.main([str(ckpt), "--digit", "2", "--n", "5", "--tensor", str(out), "--seed", "3"]) == 0
    z = torch.randn(5, trainer.latent_dim, generator=torch.Generator().manual_seed(3))
    expected = trainer.sample(5, z=z, labels=torch.full((5,), 2))  # the EMA copy, as the CLI loads it
    torch.testing.assert_close(torch.load(out, weights_only=True), expected)
    assert sample.main([str(ckpt), "--digit", "3", "--tensor", str(out)]) == 2  # 3 classes: 0, 1, 2
    loaded = export.load_generator(ckpt)
    assert loaded.num_classes == 3 and not loaded.training


def _label_classifier(images: torch.Tensor) -> torch.Tensor:
    """A stand-in classifier: an image whose pixels all equal c is class c (logits one-hot, (b, 10))."""
    return torch.nn.functional.one_hot(images[:, 0, 0, 0].round().long(), 10).float()


def test_generator_class_accuracy_counts_each_digit_on_its_own_seeded_noise():
    def draws_the_label_when_z0_is_positive(z, y):  # digit 3 is never drawn right
        right = (z[:, 0] > 0) & (y != 3)
        shown = torch.where(right, y, (y + 1) % 10).float()  # (b,)
        return shown.view(-1, 1, 1, 1).expand(-1, 1, 4, 4)  # (b, 1, 4, 4)

    state = torch.get_rng_state()
    a = generator_class_accuracy(draws_the_label_when_z0_is_positive, 5, _label_classifier, per_class=400, seed=1)
    assert torch.equal(torch.get_rng_state(), state)  # its own noise: the global RNG is untouched
    assert a == generator_class_accuracy(draws_the_label_when_z0_is_positive, 5, _label_classifier, per_class=400,
                                         seed=1)
    assert a != generator_class_accuracy(draws_the_label_when_z0_is_positive, 5, _label_classifier, per_class=400,
                                         seed=2)
    assert a["accuracy_3"] == 0.0 and a["min_class_accuracy"] == 0.0
    for c in (0, 1, 2, 4, 5, 6, 7, 8, 9):
        assert abs(a[f"accuracy_{c}"] - 0.5) < 0.1  # P(z0 > 0) = 1/2; binomial std at 400: 0.025
    assert a["accuracy"] == pytest.approx(sum(a[f"accuracy_{c}"] for c in range(10)) / 10)

    perfect = generator_class_accuracy(lambda z, y: y.float().view(-1, 1, 1, 1).expand(-1, 1, 4, 4), 5,
                                       _label_classifier, per_class=7)
    assert perfect["accuracy"] == perfect["min_class_accuracy"] == 1.0
    with pytest.raises(ValueError, match="latent_dim"):
        generator_class_accuracy(draws_the_label_when_z0_is_positive, 0, _label_classifier)
