"""capture="cuda_graph": falls back clearly where it cannot work; on CUDA, matches the eager step.

The CUDA tests run on a machine with a GPU (see docs/benchmarks.md for where they
were run) and are skipped here otherwise; the fallback tests run everywhere.
"""

from __future__ import annotations

import pytest
import torch

from torchgan_lite import Event, GANStep, GANTrainer, StepConfig, TensorLoader, seed_everything
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.losses import penalties
from torchgan_lite.nets import mlp as models
from torchgan_lite.training.graphed import CudaGraphStep

from .conftest import tiny_models

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_capture_falls_back_with_a_reason_on_cpu():
    g, d = tiny_models()
    with pytest.warns(UserWarning, match="eager step runs: CUDA graphs need a CUDA device"):
        t = GANTrainer(g, d, losses.NonSaturatingLoss(), step=StepConfig(implementation="cuda_graph"))
    assert type(t.gan_step) is GANStep
    t.fit(TensorLoader(torch.rand(32, 1, 4, 4) * 2 - 1, batch_size=8), epochs=1)
    assert t.state.step == 4


def test_capture_rejects_unknown_modes():
    with pytest.raises(ValueError, match="implementation"):
        StepConfig(implementation="graph")
    with pytest.raises(ValueError, match="implementation"):
        StepConfig(implementation=True)  # type: ignore[arg-type]


def _run(capture, steps, dropout, epochs=3, amp=None, regs=()):
    torch.manual_seed(0)
    g = models.mlp_generator(latent_dim=16, hidden=(64, 128), out_shape=(1, 8, 8))
    d = models.mlp_discriminator(in_shape=(1, 8, 8), hidden=(128, 64), dropout=dropout)
    seed_everything(3)
    t = GANTrainer(g, d, losses.NonSaturatingLoss(), device="cuda",
                   step=StepConfig(amp=amp, regularizers=regs, nonfinite=10, implementation=capture or "eager"))
    x = (torch.rand(96, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1).cuda()
    loader = TensorLoader(x, batch_size=16, generator=torch.Generator().manual_seed(2))
    seen = []
    t.add_callback(Event.STEP_END, lambda tr: seen.append(tr.state.last.as_dict()))
    t.fit(loader, epochs=epochs, max_steps=steps)
    return t, seen


@cuda
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_graphed_step_matches_the_eager_step(dropout):
    eager, eager_seen = _run(None, 15, dropout)
    graphed, graphed_seen = _run("cuda_graph", 15, dropout)
    assert isinstance(graphed.gan_step, CudaGraphStep) and graphed.gan_step.graph is not None  # really replayed
    assert graphed.state.step == eager.state.step == 15
    for a, b in zip(eager_seen, graphed_seen):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5)
    for pa, pb in zip(list(eager.generator.parameters()) + list(eager.discriminator.parameters()),
                      list(graphed.generator.parameters()) + list(graphed.discriminator.parameters())):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)
    assert [h.d_loss for h in eager.state.history] == pytest.approx([h.d_loss for h in graphed.state.history],
                                                                     rel=1e-4)


@cuda
def test_graphed_resume_continues_the_loader_position(tmp_path):
    t, _ = _run("cuda_graph", 8, 0.3)
    t.save_checkpoint(tmp_path / "c.pt")
    ref, _ = _run("cuda_graph", 14, 0.3)
    t2, _ = _run("cuda_graph", 1, 0.3)  # a fresh trainer, then the checkpoint
    t2.load_checkpoint(tmp_path / "c.pt")
    x = (torch.rand(96, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1).cuda()
    t2.fit(TensorLoader(x, batch_size=16, generator=torch.Generator().manual_seed(2)), epochs=3, max_steps=14)
    assert t2.state.step == 14
    for pa, pb in zip(ref.generator.parameters(), t2.generator.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)


@cuda
def test_graph_falls_back_for_regularizers():
    with pytest.warns(UserWarning, match="double backward"):
        t, _ = _run("cuda_graph", 4, 0.0, regs=[penalties.R1Penalty()])
    assert type(t.gan_step) is GANStep and t.state.step == 4


@cuda
def test_graphed_bf16_trains():
    t, seen = _run("cuda_graph", 10, 0.3, amp="bf16")
    assert t.gan_step.graph is not None
    assert all(torch.isfinite(torch.tensor(list(s.values()))).all() for s in seen)
    assert seen[0] != seen[-1]
