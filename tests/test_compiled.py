"""CompiledGANStep: the eager step's numbers through torch.compile, no recompiles, clear fallbacks.

Compiling is slow on a small CPU (seconds per function even for these tiny models),
so the compiled steps are built once per module where the test allows.
"""

from __future__ import annotations

import copy
import statistics

import pytest
import torch

from torchgan_lite import GANTrainer, StepConfig, TensorLoader
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.losses import penalties
from torchgan_lite.losses import penalties as regularizers
from torchgan_lite.training.compiled import CompiledGANStep
from torchgan_lite.training.step import GANStep

from .conftest import tiny_models

LATENT = 8


def _step(cls: type[GANStep], dropout: float = 0.0, seed: int = 0, **kwargs) -> GANStep:
    torch.manual_seed(seed)
    g, d = tiny_models(latent=LATENT, dropout=dropout)
    g_opt = torch.optim.Adam(g.parameters(), lr=2e-3, fused=True)
    d_opt = torch.optim.Adam(d.parameters(), lr=2e-3, fused=True)
    return cls(g, d, losses.NonSaturatingLoss(), g_opt, d_opt, latent_dim=LATENT, **kwargs)


def _run(step: GANStep, data: torch.Tensor, steps: int, seed: int = 1) -> list[list[float]]:
    torch.manual_seed(seed)  # the same noise for both steps: both draw it eagerly
    out = []
    for i in range(steps):
        r = step.step(data[(i % 4) * 16:(i % 4 + 1) * 16])
        out.append([float(r.d_loss), float(r.g_loss), float(r.d_real), float(r.d_fake)])
    return out


@pytest.fixture(scope="module")
def data() -> torch.Tensor:
    return torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1  # (64, 1, 4, 4)


def test_compiled_step_matches_the_eager_step_over_20_steps(data):
    torch._dynamo.reset()
    eager, compiled = _step(GANStep), _step(CompiledGANStep)
    ref, got = _run(eager, data, 20), _run(compiled, data, 20)
    torch.testing.assert_close(torch.tensor(got), torch.tensor(ref), rtol=1e-4, atol=1e-5)
    for a, b in zip(compiled.generator.parameters(), eager.generator.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(compiled.discriminator.parameters(), eager.discriminator.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # The trajectory really moved (the comparison is not between two frozen runs).
    assert ref[0] != ref[-1]
    # The compiled step saves the eager step's state: a checkpoint moves from one to the other.
    resumed = _step(GANStep, seed=5)
    resumed.generator.load_state_dict(compiled.generator.state_dict())
    resumed.discriminator.load_state_dict(compiled.discriminator.state_dict())
    resumed.load_state_dict(copy.deepcopy(compiled.state_dict()))  # optimizers' state_dicts hold live tensors
    torch.testing.assert_close(torch.tensor(_run(resumed, data, 3, seed=9)),
                               torch.tensor(_run(compiled, data, 3, seed=9)), rtol=1e-4, atol=1e-5)


def test_no_recompiles_across_steps_batches_and_epochs(data):
    torch._dynamo.reset()
    g, d = tiny_models(latent=LATENT)
    trainer = GANTrainer(g, d, losses.NonSaturatingLoss(), step=StepConfig(implementation="compiled"))
    assert isinstance(trainer.gan_step, CompiledGANStep)
    # 40 rows in batches of 16 without drop_last: 16, 16 and a short 8 each epoch.
    loader = TensorLoader(data[:40], batch_size=16, drop_last=False)
    trainer.fit(loader, epochs=1)  # warm-up: compiles for 16 and for 8 rows
    with torch.compiler.set_stance("fail_on_recompile"):
        trainer.fit(loader, epochs=3)  # raises if anything recompiles
    assert trainer.state.epoch == 3 and trainer.state.step == 9



def test_mask_dropout_draws_the_eager_masks_in_the_compiled_step(data, monkeypatch):
    # MaskDropout's mask is one opaque custom operator in the graph, drawn from torch's
    # generator in the eager order: with dropout on, the numbers are the eager step's.
    from torchgan_lite.nets import layers

    monkeypatch.setattr(layers, "WORD_MASK_MIN_NUMEL", 0)  # the tiny layers take the word-mask path
    eager, compiled = _step(GANStep, dropout=0.3), _step(CompiledGANStep, dropout=0.3)
    assert any(isinstance(m, layers.MaskDropout) for m in compiled.discriminator.modules())
    ref, got = _run(eager, data, 20), _run(compiled, data, 20)
    torch.testing.assert_close(torch.tensor(got), torch.tensor(ref), rtol=1e-4, atol=1e-5)
    no_dropout = _run(_step(GANStep), data, 20)
    assert torch.tensor(ref).sub(torch.tensor(no_dropout)).abs().max() > 1e-3  # dropout really acted

def test_dropout_on_gives_the_same_loss_statistics(data):
    # Below MaskDropout's size cut-off (these tiny layers) dropout is F.dropout, whose masks
    # come from Inductor's generator in the compiled step: the runs differ step by step,
    # and their loss trajectories must agree in distribution.
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    eager, compiled = _step(GANStep, dropout=0.3), _step(CompiledGANStep, dropout=0.3)
    ref, got = _run(eager, data, 60), _run(compiled, data, 60)
    # The library's models, dropout included, trace whole: one graph per update, no graph break.
    assert dict(counters["graph_break"]) == {}
    assert counters["stats"]["unique_graphs"] == 2
    assert ref != got  # different masks
    for k in range(2):  # d_loss, g_loss
        a, b = [r[k] for r in ref[20:]], [r[k] for r in got[20:]]
        spread = statistics.pstdev(a + b) + 1e-3
        assert abs(statistics.mean(a) - statistics.mean(b)) < 1.0 * spread
        assert 0.33 < (statistics.pstdev(a) + 1e-6) / (statistics.pstdev(b) + 1e-6) < 3.0


def test_gradient_penalty_falls_back_to_an_eager_discriminator_update(data):
    eager = _step(GANStep, regularizers=[penalties.R1Penalty(1.0)])
    compiled = _step(CompiledGANStep, regularizers=[penalties.R1Penalty(1.0)])
    assert "double backward" in compiled.eager_parts["discriminator update"]
    assert "R1Penalty" in compiled.eager_parts["discriminator update"]
    ref, got = _run(eager, data, 5), _run(compiled, data, 5)
    torch.testing.assert_close(torch.tensor(got), torch.tensor(ref), rtol=1e-4, atol=1e-5)


def test_logit_regularizer_is_added_outside_the_graph(data):
    eager = _step(GANStep, regularizers=[regularizers.LeCamRegularizer(0.1)])
    compiled = _step(CompiledGANStep, regularizers=[regularizers.LeCamRegularizer(0.1)])
    assert "logit regularizers" in compiled.eager_parts
    ref, got = _run(eager, data, 5), _run(compiled, data, 5)
    torch.testing.assert_close(torch.tensor(got), torch.tensor(ref), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(compiled.regularizers[0].state_dict()["real_ema"],
                               eager.regularizers[0].state_dict()["real_ema"], rtol=1e-4, atol=1e-5)


def test_compile_options_must_be_a_dict():
    with pytest.raises(TypeError, match="compile_options must be a dict"):
        _step(CompiledGANStep, compile_options="max-autotune")

