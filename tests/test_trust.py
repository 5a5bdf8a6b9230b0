"""Issue #26's trainer-side surprises, each held by a test that failed before its fix.

- ``fit`` with nothing left to train still checks the data it was given;
- a batch far outside the generator's output range is trained on only after one warning.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from torchgan_lite import GANTrainer, NonSaturatingLoss, TensorLoader, seed_everything

from .conftest import tiny_models


def _finished_trainer(tiny_data: torch.Tensor) -> GANTrainer:
    seed_everything(0)
    g, d = tiny_models()
    trainer = GANTrainer(g, d, NonSaturatingLoss())
    trainer.fit([tiny_data[:16]], epochs=1)  # epoch 1 done: another fit(epochs=1) has nothing to train
    return trainer


@pytest.mark.parametrize(
    ("data", "exc"),
    [
        ([3, 4], TypeError),  # a list, but of ints
        ([torch.zeros(4, 1, 8, 8)], ValueError),  # the wrong sample shape (the models make (1, 4, 4))
        ([torch.zeros(4, 1, 4, 4, dtype=torch.int64)], TypeError),  # integer images
        ([], ValueError),  # no batches
    ],
)
def test_fit_with_nothing_to_train_still_checks_the_data(tiny_data, data, exc):
    trainer = _finished_trainer(tiny_data)
    with pytest.raises(exc):
        trainer.fit(data, epochs=1)


def test_fit_with_nothing_to_train_checks_a_tensor_loader_without_moving_it(tiny_data):
    trainer = _finished_trainer(tiny_data)
    wrong = TensorLoader(torch.zeros(32, 1, 8, 8), batch_size=16)  # the models make (1, 4, 4) samples
    before = wrong.state_dict()["generator"].clone()
    with pytest.raises(ValueError, match="shape"):
        trainer.fit(wrong, epochs=1)
    assert torch.equal(wrong.state_dict()["generator"], before)  # no permutation was drawn


def test_fit_with_nothing_to_train_accepts_good_data_and_leaves_a_loader_where_it_was(tiny_data):
    trainer = _finished_trainer(tiny_data)
    loader = TensorLoader(tiny_data, batch_size=16, generator=torch.Generator().manual_seed(1))
    before = loader.state_dict()
    with pytest.warns(UserWarning, match="nothing to train"):
        trainer.fit(loader, epochs=1)
    after = loader.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        b, a = before[key], after[key]
        assert torch.equal(b, a) if isinstance(b, torch.Tensor) else b == a, key


@pytest.mark.parametrize(("scale", "expect"), [(lambda x: (x + 1) * 127.5, "0, 255"),
                                                (lambda x: (x + 1) / 2, "x \\* 2 - 1")])
def test_a_batch_outside_the_generators_range_is_said_once(tiny_data, scale, expect):
    seed_everything(0)
    g, d = tiny_models()
    trainer = GANTrainer(g, d, NonSaturatingLoss())
    batch = scale(tiny_data[:16])
    with pytest.warns(UserWarning, match=expect):
        trainer.train_step(batch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once, not at every step
        trainer.train_step(batch)


def test_data_in_the_generators_range_gives_no_warning(tiny_data):
    seed_everything(0)
    g, d = tiny_models()
    trainer = GANTrainer(g, d, NonSaturatingLoss())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.train_step(tiny_data[:16])
