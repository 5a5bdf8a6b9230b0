"""The reference example (examples/mnist_mlp.py), its report callbacks and the sampling CLI.

Unit tests use the tiny synthetic trainer of conftest.py; the ``mnist`` tests run the
example itself in a subprocess on real MNIST (a 320-image subset, batches of 32, so
an epoch is 10 steps and a run costs mostly its start-up).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from torchgan_lite import Event, GANTrainer, TensorLoader, seed_everything
from torchgan_lite.callbacks import reporting
from torchgan_lite.checkpoints import export
from torchgan_lite.checkpoints.format import load_checkpoint
from torchgan_lite.cli import sample as sample_cli
from torchgan_lite.cli import train
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.nets import sampling

from .conftest import REPO, tiny_models

EXAMPLE = REPO / "examples" / "mnist_mlp.py"
# 10 steps an epoch; a run of 25 steps ends two epochs and stops in the third.
SMOKE = ["--subset", "320", "--batch-size", "32", "--epochs", "3", "--sample-every", "1", "--checkpoint-every", "1",
         "--device", "cpu"]


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.load()
        return im.size


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _example_module():
    spec = importlib.util.spec_from_file_location("mnist_mlp_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- reporting, unit tests


def test_fixed_noise_depends_on_the_seed_only():
    a = reporting.fixed_noise(64, 10, seed=3)
    torch.randn(100)  # draws from the global RNG must not matter
    b = reporting.fixed_noise(64, 10, seed=3)
    assert a.shape == (64, 10)
    assert torch.equal(a, b)
    assert not torch.equal(a, reporting.fixed_noise(64, 10, seed=4))
    with pytest.raises(ValueError, match="latent_dim"):
        reporting.fixed_noise(64, 0)


def test_save_grid_writes_the_recipe_grid(tmp_path):
    images = torch.rand(64, 1, 28, 28) * 2 - 1
    path = reporting.save_grid(images, tmp_path / "g.png")
    assert _png_size(path) == (242, 242)  # 8 * (28 + 2) + 2
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the 0600 of a temporary file
    with Image.open(path) as im:
        pixels = np.asarray(im)  # (242, 242) grey, uint8
    assert pixels.max() == 255 and pixels.min() == 0  # normalize=True: min-max scaled
    assert _png_size(reporting.save_grid(torch.rand(10, 3, 8, 8), tmp_path / "c.png", nrow=5)) == (52, 22)
    with pytest.raises(ValueError, match="images must have shape"):
        reporting.save_grid(torch.rand(64, 784), tmp_path / "flat.png")


def _fit(trainer: GANTrainer, data: torch.Tensor, **kw) -> None:
    trainer.fit(TensorLoader(data, batch_size=16), **kw)  # 64 rows: 4 steps an epoch


def test_sample_grid_every_n_epochs_and_final(tiny_trainer, tiny_data, tmp_path):
    z = reporting.fixed_noise(16, tiny_trainer.latent_dim, seed=0)
    grid = reporting.SampleGrid(tmp_path, z, every=2)
    grid.attach(tiny_trainer)
    _fit(tiny_trainer, tiny_data, epochs=3)
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["samples_epoch_002.png", "samples_final.png"]
    assert _png_size(tmp_path / "samples_final.png") == (8 * 6 + 2, 2 * 6 + 2)  # 16 images of 4x4, 8 a row
    # One fixed bank: the same generator gives the same grid, byte for byte.
    grid.save(tiny_trainer, "again.png")
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "samples_final.png").read_bytes()
    with pytest.raises(ValueError, match="latent_dim"):
        reporting.SampleGrid(tmp_path, torch.zeros(4, 3)).attach(tiny_trainer)
    with pytest.raises(ValueError, match="labels"):  # an unconditional generator takes no labels
        reporting.SampleGrid(tmp_path, z, labels=torch.zeros(16, dtype=torch.int64)).attach(tiny_trainer)


def _conditional_trainer() -> GANTrainer:
    from torchgan_lite.nets import conditional

    seed_everything(0)
    g = conditional.conditional_mlp_generator(3, latent_dim=8, hidden=(16,), out_shape=(1, 4, 4))
    d = conditional.conditional_mlp_discriminator(3, in_shape=(1, 4, 4), hidden=(16,))
    return GANTrainer(g, d, losses.NonSaturatingLoss(), device="cpu")


def test_sample_grid_of_a_conditional_generator_draws_the_labels_asked_for(tmp_path):
    trainer = _conditional_trainer()
    z = reporting.fixed_noise(6, trainer.latent_dim, seed=0)
    labels = torch.tensor([2, 2, 0, 1, 1, 0])
    grid = reporting.SampleGrid(tmp_path, z, labels=labels, nrow=3, prefix="digits")
    grid.attach(trainer)
    path = grid.save(trainer, "digits_test.png")
    expected = trainer.sample(6, z=z, labels=labels)  # (6, 1, 4, 4)
    reporting.save_grid(expected, tmp_path / "expected.png", nrow=3)
    assert path.read_bytes() == (tmp_path / "expected.png").read_bytes()
    other = trainer.sample(6, z=z, labels=torch.tensor([0, 1, 2, 0, 1, 2]))
    assert not torch.equal(other, expected)  # the labels matter, so the comparison above means something
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        reporting.SampleGrid(tmp_path, z, labels=torch.full((6,), 3)).attach(trainer)
    with pytest.raises(ValueError, match="labels"):
        reporting.SampleGrid(tmp_path, z, labels=torch.zeros(5, dtype=torch.int64))
    with pytest.raises(TypeError, match="labels"):
        reporting.SampleGrid(tmp_path, z, labels=[0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match="prefix"):
        reporting.SampleGrid(tmp_path, z, prefix="a/b")


def test_sample_grid_without_labels_cycles_the_classes_and_leaves_the_global_rng_alone(tmp_path):
    trainer = _conditional_trainer()
    z = reporting.fixed_noise(6, trainer.latent_dim, seed=0)
    grid = reporting.SampleGrid(tmp_path, z, nrow=3)
    grid.attach(trainer)
    state = torch.get_rng_state()
    grid.save(trainer, "cycled.png")
    assert torch.equal(torch.get_rng_state(), state)  # no label drawn from torch's RNG: training is unaffected
    reporting.save_grid(trainer.sample(6, z=z, labels=torch.arange(6) % 3), tmp_path / "expected.png", nrow=3)
    assert (tmp_path / "cycled.png").read_bytes() == (tmp_path / "expected.png").read_bytes()


def _metric_every_second_epoch(trainer: GANTrainer) -> None:
    trainer.state.metrics["score"] = 10.0 + trainer.state.epoch  # a metric measured at epochs 2, 4...


def test_history_csv_has_the_columns_and_the_epochs_metrics(tiny_trainer, tiny_data, tmp_path):
    tiny_trainer.add_callback(Event.EPOCH_END, _metric_every_second_epoch, every=2)
    reporting.HistoryCSV(tmp_path / "history.csv").attach(tiny_trainer)
    _fit(tiny_trainer, tiny_data, epochs=3)
    columns, rows = _read_csv(tmp_path / "history.csv")
    assert columns == [*reporting.HISTORY_COLUMNS, "score"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [int(r["step"]) for r in rows] == [4, 8, 12]
    for row, h in zip(rows, tiny_trainer.state.history):
        assert float(row["d_loss"]) == pytest.approx(h.d_loss)
        assert float(row["g_loss"]) == pytest.approx(h.g_loss)
    assert [r["score"] for r in rows] == ["", "12.0", ""]  # measured at epoch 2 only


def test_history_csv_and_plot_are_written_when_fit_stops_mid_epoch(tiny_trainer, tiny_data, tmp_path):
    reporting.HistoryCSV(tmp_path / "history.csv").attach(tiny_trainer)
    reporting.LossPlot(tmp_path / "losses.png").attach(tiny_trainer)
    _fit(tiny_trainer, tiny_data, epochs=2, max_steps=2)  # no epoch completes
    columns, rows = _read_csv(tmp_path / "history.csv")
    assert columns == list(reporting.HISTORY_COLUMNS) and rows == []
    assert _png_size(tmp_path / "losses.png")[0] > 100


def test_history_csv_keeps_its_metrics_across_a_resume(tiny_data, tmp_path):
    def trainer_with_reports():
        torch.manual_seed(0)
        seed_everything(0)
        t = GANTrainer(*tiny_models(), losses.NonSaturatingLoss())
        t.add_callback(Event.EPOCH_END, _metric_every_second_epoch, every=2)
        reporting.HistoryCSV(tmp_path / "history.csv").attach(t)
        return t

    first = trainer_with_reports()
    _fit(first, tiny_data, epochs=2)
    first.save_checkpoint(tmp_path / "ckpt.pt")
    (tmp_path / "history.csv").unlink()
    second = trainer_with_reports()
    second.load_checkpoint(tmp_path / "ckpt.pt")
    _fit(second, tiny_data, epochs=3)
    _, rows = _read_csv(tmp_path / "history.csv")
    assert [int(r["step"]) for r in rows] == [4, 8, 12]
    assert [r["score"] for r in rows] == ["", "12.0", ""]


def test_plot_losses_draws_and_loss_plot_skips_without_matplotlib(tiny_trainer, tiny_data, tmp_path, monkeypatch,
                                                                   caplog):
    _fit(tiny_trainer, tiny_data, epochs=2)
    path = reporting.plot_losses(tiny_trainer.state.history, tmp_path / "losses.png")
    assert _png_size(path)[0] > 100
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if matplotlib were not installed
    with pytest.raises(ModuleNotFoundError, match=r"torchgan_lite\[plot\]"):
        reporting.plot_losses(tiny_trainer.state.history, tmp_path / "none.png")
    plot = reporting.LossPlot(tmp_path / "skipped.png")
    with caplog.at_level(logging.WARNING, logger="torchgan_lite"):
        assert plot.draw(tiny_trainer) is None and plot.draw(tiny_trainer) is None
    notes = [r for r in caplog.records if r.name == "torchgan_lite.callbacks.reporting" and "note:" in r.getMessage()]
    assert len(notes) == 1 and "skipping skipped.png" in notes[0].getMessage()  # one note, not one per epoch
    assert not (tmp_path / "skipped.png").exists()


def test_run_info_is_json_with_versions_and_progress(tiny_trainer, tiny_data, tmp_path):
    _fit(tiny_trainer, tiny_data, epochs=1)
    info = reporting.run_info(tiny_trainer, {"epochs": 1, "out": tmp_path}, wall_seconds=1.5, status="finished")
    loaded = json.loads(reporting.write_json(tmp_path / "run.json", info).read_text())
    assert loaded["step"] == 4 and loaded["epoch"] == 1 and loaded["status"] == "finished"
    assert loaded["versions"]["torch"] == torch.__version__
    assert loaded["config"]["out"] == str(tmp_path)
    assert loaded["device"] == "cpu"


def test_reports_are_written_by_the_main_process_only(tiny_trainer, tiny_data, tmp_path):
    tiny_trainer.rank = 1  # as on the second process of a data-parallel run
    assert not tiny_trainer.is_main_process
    reporting.SampleGrid(tmp_path, reporting.fixed_noise(8, tiny_trainer.latent_dim)).attach(tiny_trainer)
    reporting.HistoryCSV(tmp_path / "history.csv").attach(tiny_trainer)
    reporting.LossPlot(tmp_path / "losses.png").attach(tiny_trainer)
    _fit(tiny_trainer, tiny_data, epochs=1)
    assert tiny_trainer.state.epoch == 1
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- sample.py, unit tests


def test_load_generator_rebuilds_the_saved_generator(tiny_trainer, tiny_data, tmp_path):
    _fit(tiny_trainer, tiny_data, epochs=1)
    tiny_trainer.save_checkpoint(tmp_path / "ckpt.pt")
    g = export.load_generator(tmp_path / "ckpt.pt")
    assert not g.training and g.latent_dim == tiny_trainer.latent_dim
    z = torch.randn(5, tiny_trainer.latent_dim)
    assert torch.equal(g(z), tiny_trainer.sample(5, z=z))


def test_load_generator_prefers_ema_weights(tiny_trainer, tmp_path):
    class FakeEMA:  # stands for a future EMA callback: its state holds a generator state dict
        def __init__(self, state):
            self.state = state

        def state_dict(self):
            return {"generator": self.state}

        def load_state_dict(self, state):
            self.state = state["generator"]

    other = {k: torch.zeros_like(v) for k, v in tiny_trainer.generator.state_dict().items()}
    tiny_trainer.register_state("ema", FakeEMA(other))
    tiny_trainer.save_checkpoint(tmp_path / "ckpt.pt")
    g = export.load_generator(tmp_path / "ckpt.pt")
    assert all(torch.equal(p, torch.zeros_like(p)) for p in g.parameters())


def test_load_generator_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export.load_generator(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pt"):
        export.load_generator(tmp_path / "junk.pt")

    class Custom(torch.nn.Module):
        latent_dim = 8

        def __init__(self):
            super().__init__()
            self.body = torch.nn.Linear(8, 16)

        def forward(self, z):
            return self.body(z).view(-1, 1, 4, 4)

    _, d = tiny_models()
    GANTrainer(Custom(), d, losses.NonSaturatingLoss()).save_checkpoint(tmp_path / "custom.pt")
    with pytest.raises(ValueError, match="registered builder"):
        export.load_generator(tmp_path / "custom.pt")


def test_sample_main_writes_a_grid_and_a_tensor(tiny_trainer, tmp_path, capsys):
    tiny_trainer.save_checkpoint(tmp_path / "ckpt.pt")
    rc = sample_cli.main([str(tmp_path / "ckpt.pt"), "--n", "10", "--tensor", str(tmp_path / "s.pt"),
                          "--out", str(tmp_path / "g.png"), "--seed", "1"])
    assert rc == 0
    samples = torch.load(tmp_path / "s.pt", weights_only=True)
    assert samples.shape == (10, 1, 4, 4)
    assert samples.min() >= -1 and samples.max() <= 1
    assert _png_size(tmp_path / "g.png") == (8 * 6 + 2, 2 * 6 + 2)
    again = sampling.sample_images(export.load_generator(tmp_path / "ckpt.pt"), 10, seed=1)
    assert torch.equal(again, samples)  # --seed fixes the noise
    assert sample_cli.main([str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --------------------------------------------------------------------------- the example's wiring, in process


def test_example_is_the_training_cli_with_the_reference_defaults():
    ex = _example_module()
    args = train.parse_args([], train.REFERENCE)
    assert (args.epochs, args.batch_size, args.lr, args.loss, args.seed, args.recipe, args.conditional) == \
        (200, 128, None, "nonsaturating", 0, "reference", False)  # lr None: the recipe's 2e-4
    assert ex.main(["--epochs", "0"]) == 2


# --------------------------------------------------------------------------- the example on real MNIST


def _run(args: list[str], mnist_dir: Path, **kw) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TORCHGAN_LITE_DATA": str(mnist_dir)}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                          **kw)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One example run of 25 steps (two epochs and a half), shared by the tests below."""
    from .conftest import mnist_root

    out = tmp_path_factory.mktemp("mnist_mlp")
    proc = _run([str(EXAMPLE), *SMOKE, "--max-steps", "25", "--out", str(out)], mnist_root())
    return out, proc


@pytest.mark.mnist
def test_example_writes_every_output(mnist_dir, smoke_run):
    out, proc = smoke_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("samples_epoch_001.png", "samples_epoch_002.png", "samples_final.png"):
        assert _png_size(out / name) == (242, 242), name  # 8x8 grid of 28x28, 2-px padding
    assert not (out / "samples_epoch_003.png").exists()  # the third epoch did not end
    assert _png_size(out / "losses.png")[0] > 100
    columns, rows = _read_csv(out / "history.csv")
    assert columns[: len(reporting.HISTORY_COLUMNS)] == list(reporting.HISTORY_COLUMNS)
    assert [int(r["step"]) for r in rows] == [10, 20]  # the partial epoch is not in the history
    info = json.loads((out / "run.json").read_text())
    assert (info["status"], info["step"], info["epoch"]) == ("completed", 25, 2)
    assert info["config"]["max_steps"] == 25 and info["device"] == "cpu"
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["trainer"]["step"] == 25
    assert "epoch 2/3 step 20" in proc.stdout  # the per-epoch summary line
    assert "done: 2 of 3 epochs completed, step 25 (--max-steps 25 reached in epoch 3 of 3)" in proc.stdout
    # The grids come from the noise bank of --seed alone, so a resumed run draws the same bank:
    # the saved generator on fixed_noise(seed=0) redraws samples_final.png byte for byte.
    g = export.load_generator(out / "checkpoint.pt")
    with torch.no_grad():
        again = g(reporting.fixed_noise(64, 100, seed=0))
    reporting.save_grid(again, out / "redrawn.png")
    assert (out / "redrawn.png").read_bytes() == (out / "samples_final.png").read_bytes()


@pytest.mark.mnist
def test_example_resume_continues_the_step_count(mnist_dir, smoke_run, tmp_path):
    first, proc = smoke_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    resumed = _run([str(EXAMPLE), *SMOKE, "--max-steps", "30", "--out", str(tmp_path),
                    "--resume", str(first / "checkpoint.pt")], mnist_dir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout
    info = json.loads((tmp_path / "run.json").read_text())
    assert (info["step"], info["epoch"]) == (30, 3)
    _, rows = _read_csv(tmp_path / "history.csv")
    assert [int(r["step"]) for r in rows] == [10, 20, 30]  # the history came with the checkpoint
    assert _png_size(tmp_path / "samples_epoch_003.png") == (242, 242)
    assert not (tmp_path / "samples_epoch_002.png").exists()


@pytest.mark.mnist
def test_sampling_cli_on_the_example_checkpoint(mnist_dir, smoke_run, tmp_path):
    out, proc = smoke_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = subprocess.run([sys.executable, "-m", "torchgan_lite.sample", str(out / "checkpoint.pt"), "--n", "64",
                          "--out", str(tmp_path / "grid.png"), "--tensor", str(tmp_path / "s.pt"), "--seed", "3"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert _png_size(tmp_path / "grid.png") == (242, 242)
    samples = torch.load(tmp_path / "s.pt", weights_only=True)
    assert samples.shape == (64, 1, 28, 28)
    assert samples.min() >= -1 and samples.max() <= 1 and samples.std() > 0
    assert sample_cli.main([str(tmp_path / "grid.png")]) == 2  # not a checkpoint: a message, no traceback


@pytest.mark.mnist
def test_ctrl_c_saves_a_checkpoint_and_exits_130(mnist_dir, tmp_path):
    env = {**os.environ, "TORCHGAN_LITE_DATA": str(mnist_dir)}
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), *SMOKE, "--epochs", "1000", "--out", str(tmp_path)], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A shell may start us with SIGINT ignored; the child must see Ctrl-C as a user would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "checkpoint.pt").exists():  # the first epoch has ended: fit is running
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the example never reached the end of its first epoch"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    # It prints the command that resumes: this interpreter, the script's path, this run's options, plus --resume.
    assert f"{sys.executable} {EXAMPLE} --subset 320 --batch-size 32 --epochs 3" in err
    assert f"--resume {tmp_path / 'checkpoint.pt'}" in err
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["status"] == "interrupted"
    assert load_checkpoint(tmp_path / "checkpoint.pt")["trainer"]["step"] == info["step"] >= 10



@pytest.mark.mnist
def test_sigterm_mid_epoch_then_resume_auto_matches_an_uninterrupted_run(mnist_dir, tmp_path):
    """What a scheduler does: SIGTERM (kill, timeout, Slurm, docker stop), then the same command again."""
    env = {**os.environ, "TORCHGAN_LITE_DATA": str(mnist_dir)}
    # 32 steps an epoch; the signal comes a little after the first epoch's checkpoint, inside epoch 2.
    options = ["--subset", "1024", "--batch-size", "32", "--epochs", "3", "--device", "cpu", "--no-progress",
               "--sample-every", "100"]

    def start(out: Path) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, str(EXAMPLE), *options, "--out", str(out), "--resume", "auto"],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    whole, cut = start(tmp_path / "whole"), start(tmp_path / "cut")  # side by side: the test waits once
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "cut" / "checkpoint.pt").exists():
            assert cut.poll() is None, cut.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the example never reached the end of its first epoch"
            time.sleep(0.05)
        time.sleep(0.3)
        cut.send_signal(signal.SIGTERM)
        _, err = cut.communicate(timeout=120)
        assert whole.wait(timeout=240) == 0, whole.communicate()[1][-2000:]
    finally:
        for proc in (whole, cut):
            if proc.poll() is None:
                proc.kill()
    assert cut.returncode == 143, err[-2000:]
    info = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert info["status"] == "interrupted" and info["signal"] == "SIGTERM"
    saved = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["trainer"]
    assert saved["step"] == info["step"] == info["checkpoint_step"]
    assert 32 < info["step"] < 96 and info["epoch_step"] > 0, info  # stopped inside epoch 2 or 3
    assert f"stopped in epoch {info['epoch'] + 1} of 3 ({info['epoch']} completed), step {info['step']}" in err
    assert f"{sys.executable} {EXAMPLE} " in err and "--resume" in err

    again = _run([str(EXAMPLE), *options, "--out", str(tmp_path / "cut"), "--resume", "auto"], mnist_dir)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resumed from {tmp_path / 'cut' / 'checkpoint.pt'}" in again.stdout
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert a["trainer"]["step"] == b["trainer"]["step"] == 96
    for net in ("generator", "discriminator"):
        for key, value in a[net].items():
            assert torch.equal(value, b[net][key]), (net, key)  # bitwise
    assert json.loads((tmp_path / "cut" / "run.json").read_text())["status"] == "completed"
