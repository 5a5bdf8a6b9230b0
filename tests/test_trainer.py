"""GANTrainer: the step's contract, the loop's events and totals, sampling, bad input."""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch

from torchgan_lite import Event, GANStep, GANTrainer, StepConfig, TensorLoader, build_step, seed_everything
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.losses import penalties
from torchgan_lite.nets import mlp as models
from torchgan_lite.training.fused import FusedDiscriminatorStep

from .conftest import tiny_models


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_train_step_changes_both_networks(tiny_trainer, tiny_data):
    g0, d0 = _snapshot(tiny_trainer.generator), _snapshot(tiny_trainer.discriminator)
    result = tiny_trainer.train_step(tiny_data[:16])
    assert not _same(g0, _snapshot(tiny_trainer.generator))
    assert not _same(d0, _snapshot(tiny_trainer.discriminator))
    values = result.as_dict()
    assert set(values) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert all(torch.isfinite(torch.tensor(v)) for v in values.values())
    assert tiny_trainer.state.step == 1


def test_generator_update_leaves_discriminator_weights_and_grads(tiny_trainer, tiny_data):
    t = tiny_trainer
    t.gan_step.discriminator_update(tiny_data[:16], None)
    d_weights = _snapshot(t.discriminator)
    d_grads = [p.grad.clone() for p in t.discriminator.parameters()]
    g_weights = _snapshot(t.generator)
    t.gan_step.generator_update(16)
    assert _same(d_weights, _snapshot(t.discriminator))
    assert _same(d_grads, [p.grad for p in t.discriminator.parameters()])
    assert not _same(g_weights, _snapshot(t.generator))
    assert all(p.requires_grad for p in t.discriminator.parameters())  # unfrozen afterwards


def test_discriminator_update_leaves_generator_alone(tiny_trainer, tiny_data):
    t = tiny_trainer
    t.gan_step.generator_update(16)
    g_weights = _snapshot(t.generator)
    g_grads = [p.grad.clone() for p in t.generator.parameters()]
    t.gan_step.discriminator_update(tiny_data[:16], None)
    assert _same(g_weights, _snapshot(t.generator))
    assert _same(g_grads, [p.grad for p in t.generator.parameters()])


def test_n_critic_runs_that_many_discriminator_steps(tiny_data):
    g, d = tiny_models()
    seed_everything(0)
    t = GANTrainer(g, d, losses.WassersteinLoss(),
                   step=StepConfig(n_critic=3, regularizers=[penalties.GradientPenalty()]))
    t.train_step(tiny_data[:16])
    assert t.gan_step.d_optimizer.state[next(iter(d.parameters()))]["step"] == 3
    assert t.gan_step.g_optimizer.state[next(iter(g.parameters()))]["step"] == 1


def test_regularizer_enters_the_discriminator_loss(tiny_data):
    def run(regs):
        g, d = tiny_models()
        torch.manual_seed(0)
        g.load_state_dict(base_g)
        d.load_state_dict(base_d)
        seed_everything(5)
        t = GANTrainer(g, d, losses.NonSaturatingLoss(), step=StepConfig(regularizers=regs))
        return t.train_step(tiny_data[:16])

    g, d = tiny_models()
    base_g, base_d = g.state_dict(), d.state_dict()
    plain, penalised = run([]), run([lambda disc, real, fake: torch.tensor(2.5)])
    assert float(penalised.d_loss) == pytest.approx(float(plain.d_loss) + 2.5, abs=1e-5)


def _tutorial_step(g, d, opt_g, opt_d, real, latent_dim):
    """The reference recipe's step written literally (docs/reference-recipe.md): a graph through G for the
    discriminator's fakes, detached; D's weight gradients computed in the G update; BCE on sigmoid outputs."""
    bce = torch.nn.BCELoss()
    b = real.shape[0]
    fake = g(torch.randn(b, latent_dim)).detach()
    opt_d.zero_grad()
    d_loss = bce(torch.sigmoid(d(real)).view(-1), torch.ones(b)) + bce(torch.sigmoid(d(fake)).view(-1), torch.zeros(b))
    d_loss.backward()
    opt_d.step()
    opt_g.zero_grad()
    g_loss = bce(torch.sigmoid(d(g(torch.randn(b, latent_dim)))).view(-1), torch.ones(b))
    g_loss.backward()
    opt_g.step()
    return float(d_loss.detach()), float(g_loss.detach())


def test_library_step_matches_the_tutorial_step_literally(tiny_data):
    # Dropout on: the masks are drawn in the same order, so the two agree to float rounding.
    runs = []
    for literal in (True, False):
        torch.manual_seed(0)
        g, d = tiny_models(dropout=0.3)
        seed_everything(7)
        opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, foreach=False)
        opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, foreach=False)
        losses_seen = []
        if literal:
            for i in range(4):
                losses_seen.append(_tutorial_step(g, d, opt_g, opt_d, tiny_data[16 * i : 16 * (i + 1)], g.latent_dim))
        else:
            t = GANTrainer(g, d, losses.NonSaturatingLoss(), g_optimizer=opt_g, d_optimizer=opt_d)
            for i in range(4):
                r = t.train_step(tiny_data[16 * i : 16 * (i + 1)])
                losses_seen.append((float(r.d_loss), float(r.g_loss)))
        runs.append((losses_seen, _snapshot(g) + _snapshot(d)))
    assert [v for pair in runs[0][0] for v in pair] == pytest.approx([v for pair in runs[1][0] for v in pair], rel=1e-5)
    for a, b in zip(runs[0][1], runs[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_bf16_autocast_trains_with_float32_losses(tiny_data):
    g, d = tiny_models()
    seed_everything(0)
    t = GANTrainer(g, d, losses.NonSaturatingLoss(), step=StepConfig(amp="bf16"))
    r = t.train_step(tiny_data[:16])
    assert r.d_loss.dtype == torch.float32 and torch.isfinite(r.d_loss)
    assert next(g.parameters()).dtype == torch.float32


# ---------------------------------------------------------------- events and the loop


def test_event_order_on_a_tiny_run(tiny_trainer, tiny_data):
    seen = []
    for ev in Event:
        tiny_trainer.add_callback(ev, lambda t, ev=ev: seen.append((ev.name, t.state.epoch, t.state.step)))
    tiny_trainer.fit(TensorLoader(tiny_data, batch_size=32), epochs=2)
    names = [s[0] for s in seen]
    step_block = ["STEP_START", "STEP_END"] * 2
    assert names == ["FIT_START", "EPOCH_START", *step_block, "EPOCH_END", "EPOCH_START", *step_block,
                     "EPOCH_END", "FIT_END"]
    assert seen[-2] == ("EPOCH_END", 2, 4)


def test_every_and_handle_removal(tiny_trainer, tiny_data):
    steps, epochs = [], []

    @tiny_trainer.on(Event.STEP_END, every=3)
    def on_step(t):
        steps.append(t.state.step)

    handle = tiny_trainer.add_callback(Event.EPOCH_END, lambda t: epochs.append(t.state.epoch), every=2)
    loader = TensorLoader(tiny_data, batch_size=16)  # 4 steps an epoch
    tiny_trainer.fit(loader, epochs=4)
    assert steps == [3, 6, 9, 12, 15]
    assert epochs == [2, 4]
    assert handle.active
    handle.remove()
    handle.remove()  # idempotent
    assert not handle.active
    tiny_trainer.fit(loader, epochs=6)
    assert epochs == [2, 4]


def test_handlers_run_in_registration_order(tiny_trainer, tiny_data):
    order = []
    for i in range(4):
        tiny_trainer.add_callback(Event.FIT_START, lambda t, i=i: order.append(i))
    tiny_trainer.fit(TensorLoader(tiny_data, batch_size=16), epochs=1)
    assert order == [0, 1, 2, 3]


def test_terminate_stops_after_the_current_step(tiny_trainer, tiny_data):
    tiny_trainer.add_callback(Event.STEP_END, lambda t: t.terminate() if t.state.step == 5 else None)
    state = tiny_trainer.fit(TensorLoader(tiny_data, batch_size=16), epochs=10)
    assert state.step == 5 and state.epoch == 1 and state.epoch_step == 1


def test_epochs_and_max_steps_are_totals(tiny_trainer, tiny_data):
    loader = TensorLoader(tiny_data, batch_size=16)
    tiny_trainer.fit(loader, epochs=5, max_steps=6)
    assert (tiny_trainer.state.step, tiny_trainer.state.epoch) == (6, 1)
    tiny_trainer.fit(loader, epochs=5, max_steps=10)  # continues: 4 more steps, mid-epoch first
    assert (tiny_trainer.state.step, tiny_trainer.state.epoch) == (10, 2)
    tiny_trainer.fit(loader, epochs=3)
    assert (tiny_trainer.state.step, tiny_trainer.state.epoch) == (12, 3)
    assert [h.step for h in tiny_trainer.state.history] == [4, 8, 12]
    with pytest.warns(UserWarning, match="nothing to train"):
        tiny_trainer.fit(loader, epochs=3)
    assert tiny_trainer.state.step == 12


def test_epoch_history_holds_means_of_the_steps(tiny_trainer, tiny_data):
    d_losses = []
    tiny_trainer.add_callback(Event.STEP_END, lambda t: d_losses.append(float(t.state.last.d_loss)))
    tiny_trainer.fit(TensorLoader(tiny_data, batch_size=16), epochs=2)
    h = tiny_trainer.state.history
    assert h[0].d_loss == pytest.approx(sum(d_losses[:4]) / 4, rel=1e-5)
    assert h[1].d_loss == pytest.approx(sum(d_losses[4:]) / 4, rel=1e-5)


def test_exception_event_fires_and_reraises(tiny_trainer, tiny_data):
    seen = []
    tiny_trainer.add_callback(Event.EXCEPTION, lambda t: seen.append(type(t.state.exception).__name__))
    tiny_trainer.add_callback(Event.FIT_END, lambda t: seen.append("fit_end"))

    def boom(t):
        if t.state.step == 2:
            raise RuntimeError("boom")

    tiny_trainer.add_callback(Event.STEP_END, boom)
    with pytest.raises(RuntimeError, match="boom"):
        tiny_trainer.fit(TensorLoader(tiny_data, batch_size=16), epochs=1)
    assert seen == ["RuntimeError"]


def test_fit_accepts_a_dataloader_of_image_label_pairs(tiny_trainer, tiny_data):
    ds = torch.utils.data.TensorDataset(tiny_data, torch.zeros(64, dtype=torch.long))
    loader = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True, drop_last=True)
    state = tiny_trainer.fit(loader, epochs=2)
    assert state.step == 8 and state.epoch == 2


# ---------------------------------------------------------------- sampling


def test_sample_is_gradient_free_and_restores_mode(tiny_trainer):
    g = tiny_trainer.generator
    g.train()
    out = tiny_trainer.sample(5)
    assert out.shape == (5, 1, 4, 4) and not out.requires_grad and g.training
    g.eval()
    tiny_trainer.sample(2)
    assert not g.training
    z = torch.randn(3, 8)
    torch.testing.assert_close(tiny_trainer.sample(3, z=z), tiny_trainer.sample(3, z=z))
    with pytest.raises(ValueError, match="z must have shape"):
        tiny_trainer.sample(3, z=torch.randn(3, 9))
    with pytest.raises(ValueError, match="n must be"):
        tiny_trainer.sample(0)


# ---------------------------------------------------------------- bad input, before any training


def _fresh():
    g, d = tiny_models()
    return g, d, losses.NonSaturatingLoss()


def test_data_shape_mismatch_is_a_clear_error(tiny_trainer):
    before = _snapshot(tiny_trainer.generator)
    with pytest.raises(ValueError, match=r"real has shape \(16, 1, 5, 5\).*\(B, 1, 4, 4\)"):
        tiny_trainer.train_step(torch.randn(16, 1, 5, 5))
    with pytest.raises(ValueError, match="shape"):
        tiny_trainer.fit(TensorLoader(torch.randn(32, 1, 28, 28), batch_size=16))
    assert _same(before, _snapshot(tiny_trainer.generator)) and tiny_trainer.state.step == 0


def test_integer_data_is_a_type_error(tiny_trainer):
    with pytest.raises(TypeError, match=r"floating-point.*uint8"):
        tiny_trainer.train_step(torch.zeros(16, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(TypeError, match="float64"):
        tiny_trainer.train_step(torch.zeros(16, 1, 4, 4, dtype=torch.float64))


def test_latent_dim_rejected_by_generator():
    g, d, loss = _fresh()
    with pytest.raises(ValueError, match="latent_dim=5"):
        GANTrainer(g, d, loss, latent_dim=5)


def test_latent_dim_required_without_attribute():
    g = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Unflatten(1, (1, 4, 4)))
    d = models.mlp_discriminator(in_shape=(1, 4, 4), hidden=(8,))
    with pytest.raises(ValueError, match="latent_dim is required"):
        GANTrainer(g, d, losses.HingeLoss())
    t = GANTrainer(g, d, losses.HingeLoss(), latent_dim=4)
    assert t.sample_shape == (1, 4, 4)


def test_discriminator_output_shape_checked():
    g, _, loss = _fresh()
    d = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    with pytest.raises(ValueError, match="one logit per sample"):
        GANTrainer(g, d, loss)


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"latent_dim": -3}, ValueError, "latent_dim"),
        ({"device": "gpu7"}, ValueError, "device"),
        ({"device": "cuda"}, ValueError, "device"),
        ({"distributed": "yes"}, TypeError, "distributed"),
        ({"step": {"n_critic": 2}}, TypeError, "step"),
        ({"seed": "x"}, TypeError, "seed"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, exc, name):
    if kwargs.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is present here, so 'cuda' is a valid device")
    g, d, loss = _fresh()
    with pytest.raises(exc, match=name):
        GANTrainer(g, d, loss, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"n_critic": 0}, ValueError, "n_critic"),
        ({"n_critic": 1.5}, TypeError, "n_critic"),
        ({"regularizers": [3]}, TypeError, "regularizers"),
        ({"regularizers": "r1"}, TypeError, "regularizers"),
        ({"amp": "fp8"}, ValueError, "amp"),
        ({"augment": 3}, TypeError, "augment"),
        ({"nonfinite": -1}, ValueError, "nonfinite"),
        ({"implementation": "jit"}, ValueError, "implementation"),
        ({"implementation": dict}, TypeError, "implementation"),
    ],
)
def test_step_config_rejects_bad_fields_by_name(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        StepConfig(**kwargs)


def test_the_trainer_takes_parts_or_a_built_step_not_both():
    g, d, loss = _fresh()
    step = build_step(g, d, loss, StepConfig(n_critic=2))
    assert type(step) is GANStep and step.n_critic == 2
    trainer = GANTrainer(step=step)
    assert trainer.gan_step is step and trainer.generator is g and trainer.latent_dim == g.latent_dim
    with pytest.raises(ValueError, match="generator"):
        GANTrainer(g, step=step)
    with pytest.raises(ValueError, match="g_optimizer"):
        GANTrainer(step=step, g_optimizer=torch.optim.Adam(g.parameters()))


def test_the_implementation_is_one_field_of_the_step_config():
    g, d, loss = _fresh()
    fused = GANTrainer(g, d, loss, step=StepConfig(implementation="fused")).gan_step
    assert isinstance(fused, FusedDiscriminatorStep)
    g, d, loss = _fresh()
    own = GANTrainer(g, d, loss, step=StepConfig(implementation=FusedDiscriminatorStep)).gan_step
    assert type(own) is FusedDiscriminatorStep
    g, d, loss = _fresh()
    with pytest.warns(UserWarning, match="cuda_graph"):  # not available on a CPU: the eager step, said once
        assert type(build_step(g, d, loss, StepConfig(implementation="cuda_graph"))) is GANStep


def test_the_trainer_does_not_re_declare_the_steps_options():
    params = inspect.signature(GANTrainer.__init__).parameters
    assert len(params) - 1 <= 10  # self excluded
    assert not {"n_critic", "regularizers", "amp", "augment", "nonfinite", "compile", "capture"} & set(params)


def test_swapped_optimizers_are_rejected():
    g, d, loss = _fresh()
    with pytest.raises(ValueError, match="g_optimizer"):
        GANTrainer(g, d, loss, g_optimizer=torch.optim.Adam(d.parameters()))
    with pytest.raises(TypeError, match="loss"):
        GANTrainer(g, d, object())


def test_fit_rejects_bad_totals_and_empty_data(tiny_trainer, tiny_data):
    loader = TensorLoader(tiny_data, batch_size=16)
    with pytest.raises(ValueError, match="epochs"):
        tiny_trainer.fit(loader, epochs=0)
    with pytest.raises(ValueError, match="max_steps"):
        tiny_trainer.fit(loader, max_steps=0)
    with pytest.raises(TypeError, match="data"):
        tiny_trainer.fit(tiny_data)
    with pytest.raises(ValueError, match="empty"):
        tiny_trainer.fit([], epochs=1)
    with pytest.raises(ValueError, match="no batches"):
        tiny_trainer.fit(iter([]), epochs=1)
    assert tiny_trainer.state.step == 0


def test_unknown_event_and_bad_every(tiny_trainer):
    with pytest.raises(TypeError, match="event"):
        tiny_trainer.add_callback("epoch_end", lambda t: None)
    with pytest.raises(TypeError, match="event"):
        tiny_trainer.on("STEP_END")
    with pytest.raises(ValueError, match="every"):
        tiny_trainer.add_callback(Event.STEP_END, lambda t: None, every=0)
    with pytest.raises(ValueError, match="every"):
        tiny_trainer.add_callback(Event.FIT_START, lambda t: None, every=2)
    with pytest.raises(TypeError, match="callable"):
        tiny_trainer.add_callback(Event.STEP_END, None)


def test_no_warning_on_a_normal_fit(tiny_trainer, tiny_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_trainer.fit(TensorLoader(tiny_data, batch_size=16), epochs=1)


def test_fused_discriminator_forward_is_the_same_math(tiny_data):
    # Dropout off: the only difference is one D call on cat([real, fake]) instead of two.
    results = []
    for fused in (False, True):
        torch.manual_seed(0)
        g, d = tiny_models(dropout=0.0)
        seed_everything(7)
        t = GANTrainer(g, d, losses.NonSaturatingLoss(),
                       step=StepConfig(implementation=FusedDiscriminatorStep if fused else "eager"))
        t.fit(TensorLoader(tiny_data, batch_size=16, generator=torch.Generator().manual_seed(3)), epochs=2)
        results.append(([h.d_loss for h in t.state.history], _snapshot(g) + _snapshot(d)))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_fused_discriminator_forward_refuses_batch_norm():
    g = models.mlp_generator(latent_dim=8, hidden=(16,), out_shape=(1, 4, 4))
    d = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.BatchNorm1d(8),
                            torch.nn.Linear(8, 1))
    with pytest.raises(ValueError, match=r"FusedDiscriminatorStep.*BatchNorm1d"):
        GANTrainer(g, d, losses.NonSaturatingLoss(), step=StepConfig(implementation=FusedDiscriminatorStep))
