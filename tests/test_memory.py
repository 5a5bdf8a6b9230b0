"""Memory over a long run: what an epoch's reports allocate dies with them (``docs/reliability.md``).

A matplotlib figure is a web of reference cycles, which reference counting never frees. Drawn
and dropped at every epoch end (``LossPlot``), the figures piled up in the collector's oldest
generation until a full collection, and the heap grew between those collections (RSS +13.8 MB
per 1,000 steps with the training command's callbacks; ``benchmarks/memory_growth.py``). Each
report must leave nothing for the cyclic collector to find.
"""

from __future__ import annotations

import gc

import pytest

from torchgan_lite import TensorLoader
from torchgan_lite.callbacks import reporting
from torchgan_lite.training.state import EpochStats

pytest.importorskip("matplotlib")


def _history(epochs: int) -> list[EpochStats]:
    return [EpochStats(e, 32 * e, 1.0 / e, 2.0 / e, 0.5, -0.5, seconds=1.0, steps_per_s=30.0)
            for e in range(1, epochs + 1)]


@pytest.fixture(autouse=True)
def _collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    (gc.enable if was else gc.disable)()


@pytest.mark.parametrize("epochs", [0, 3, 40])
def test_plot_losses_leaves_no_cyclic_garbage(tmp_path, epochs):
    history = _history(epochs)
    reporting.plot_losses(history, tmp_path / "losses.png")  # the first draw fills matplotlib's caches
    gc.collect()
    reporting.plot_losses(history, tmp_path / "losses.png")
    assert gc.collect() == 0  # was ~3,800 objects a draw: the dropped figure
    assert (tmp_path / "losses.png").stat().st_size > 1000


def test_a_fit_with_the_loss_plot_leaves_no_cyclic_garbage(tiny_trainer, tiny_data, tmp_path):
    reporting.LossPlot(tmp_path / "losses.png").attach(tiny_trainer)
    loader = TensorLoader(tiny_data, batch_size=16)
    tiny_trainer.fit(loader, epochs=1)
    gc.collect()
    tiny_trainer.fit(loader, epochs=6)  # five more epoch-end draws and the FIT_END one
    assert gc.collect() == 0


def test_plot_losses_restores_the_collector_state(tmp_path, monkeypatch):
    reporting.plot_losses(_history(2), tmp_path / "a.png")
    assert gc.isenabled()
    gc.disable()  # a caller's choice is kept: no collection forced on it either
    collected = []
    monkeypatch.setattr(gc, "collect", lambda *a: collected.append(a) or 0)
    reporting.plot_losses(_history(2), tmp_path / "b.png")
    assert not gc.isenabled() and collected == []
    gc.enable()
    monkeypatch.undo()

    def fails(*args):
        assert not gc.isenabled()  # paused while the figure is drawn
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(reporting, "_draw_losses", fails)
    with pytest.raises(RuntimeError, match="disk on fire"):
        reporting.plot_losses(_history(2), tmp_path / "c.png")
    assert gc.isenabled()  # and on again after a failed draw
