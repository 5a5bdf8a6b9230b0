"""A short real-MNIST fit of the reference recipe (runs in CI)."""

from __future__ import annotations

import pytest
import torch

from torchgan_lite import Event, GANTrainer, TensorLoader, seed_everything
from torchgan_lite.data import mnist as data
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.nets import mlp as models


@pytest.mark.mnist
def test_short_reference_fit_lowers_discriminator_loss(mnist_dir):
    seed_everything(0)
    x = data.mnist(mnist_dir)
    seed_everything(0)
    trainer = GANTrainer(models.mlp_generator(), models.mlp_discriminator(), losses.NonSaturatingLoss())
    first = []
    trainer.add_callback(Event.STEP_END, lambda t: first.append(float(t.state.last.d_loss)) if t.state.step <= 3
                         else None)
    loader = TensorLoader(x, batch_size=128)
    assert len(loader) == 468  # the recipe's batches per epoch
    state = trainer.fit(loader, epochs=1, max_steps=40)
    assert state.step == 40
    last = float(state.last.d_loss)
    assert torch.isfinite(torch.tensor(last))
    # At the start D cannot tell real from fake: BCE sum ~ 2 ln 2 = 1.386. It learns fast.
    assert first[0] == pytest.approx(1.386, abs=0.15)
    assert last < first[0] - 0.3
