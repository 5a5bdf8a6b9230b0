"""The training command line (torchgan_lite.train): options, mistakes, resuming, signals, run.json.

Runs are in process, on synthetic 4x4 "MNIST" and tiny networks (``fake_mnist`` patches the
data and the network builders of the CLI), so a whole run costs well under a second. The
real-MNIST end-to-end checks (a SIGTERM'd example resumed bitwise) are in test_example.py.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest
import torch

from torchgan_lite.checkpoints.format import load_checkpoint
from torchgan_lite.cli import train
from torchgan_lite.losses import penalties
from torchgan_lite.nets import conditional

from .conftest import REPO, tiny_models

N_IMAGES = 64  # 2 steps an epoch at --batch-size 32
FAST = ["--batch-size", "32", "--device", "cpu", "--no-progress", "--sample-every", "1"]
COMMAND = ["python-under-test", "train"]  # the resume command's prefix in these tests


@pytest.fixture
def fake_mnist(monkeypatch):
    """The CLI on 64 synthetic 4x4 images (labels 0..9) and tiny networks, instead of MNIST and the MLPs."""
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(N_IMAGES, 1, 4, 4, generator=gen) * 2 - 1  # (64, 1, 4, 4)
    labels = torch.arange(N_IMAGES) % 10  # (64,)

    def load(data_root, conditional_, device):
        return images.to(device), (labels.to(device) if conditional_ else None)

    def networks(args):
        if args.conditional:
            return (conditional.conditional_mlp_generator(10, latent_dim=8, hidden=(16,), out_shape=(1, 4, 4)),
                    conditional.conditional_mlp_discriminator(10, in_shape=(1, 4, 4), hidden=(16,)))
        return tiny_models()

    monkeypatch.setattr(train, "load_mnist", load)
    monkeypatch.setattr(train, "_networks", networks)
    return images


def run(args: list[str], out: Path, *, defaults: train.CLIDefaults = train.REFERENCE) -> int:
    return train.main([*FAST, "--out", str(out), *args], defaults=defaults, command=COMMAND)


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def run_json(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


# --------------------------------------------------------------------------- options and --help


def _options(parser) -> dict[str, object]:
    return {a.option_strings[0]: a.default for a in parser._actions if a.option_strings}


def test_both_examples_share_one_option_set_and_differ_only_in_defaults():
    ref = _options(train.build_parser(train.REFERENCE))
    cond = _options(train.build_parser(train.CONDITIONAL))
    assert set(ref) == set(cond)
    wanted = {"--lr", "--loss", "--amp", "--no-progress", "--compile", "--logger", "--resume", "--epochs",
              "--max-steps", "--batch-size", "--arch", "--norm", "--recipe", "--ema-decay", "--n-critic", "--seed",
              "--device", "--data-root", "--subset", "--out", "--sample-every", "--checkpoint-every",
              "--eval-every", "--eval-n", "--conditional"}
    assert wanted <= set(ref)
    differ = {k for k in ref if ref[k] != cond[k]}
    assert differ == {"--conditional", "--epochs", "--recipe", "--out"}
    assert (cond["--conditional"], cond["--epochs"], cond["--recipe"]) == (True, 30, "improved")


@pytest.mark.parametrize("defaults", [train.REFERENCE, train.CONDITIONAL])
def test_help_is_plain_text_with_metavars_and_defaults(defaults):
    text = train.build_parser(defaults).format_help()
    assert not re.search(r"``|:class:|:func:|:mod:|:data:", text)
    for action in train.build_parser(defaults)._actions:
        if action.option_strings and action.option_strings[0] != "-h":
            assert action.help, action.option_strings  # every flag described
            if action.nargs is None and action.const is None and not action.choices:
                assert action.metavar, action.option_strings  # --epochs N, not --epochs EPOCHS


def test_evaluate_help_is_plain_text(capsys):
    from torchgan_lite.cli import evaluate

    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "evaluate" in text and not re.search(r"``|:class:|:func:|:mod:", text)


def test_resume_command_uses_the_running_interpreter_and_replaces_resume():
    command = train.resume_command(["--epochs", "9", "--resume", "old.pt", "--out", "a b"], Path("a b/checkpoint.pt"),
                                   command=["/venv/bin/python", "/repo/examples/mnist_mlp.py"])
    assert command == "/venv/bin/python /repo/examples/mnist_mlp.py --epochs 9 --out 'a b' --resume 'a b/checkpoint.pt'"
    default = train.resume_command(["--resume=x.pt"], "c.pt")
    assert default.startswith(sys.executable) and default.endswith("--resume c.pt")


def test_make_loss_table():
    from torchgan_lite.losses import adversarial as losses

    loss, regs, n_critic = train.make_loss("wgan-gp")
    assert isinstance(loss, losses.WassersteinLoss) and isinstance(regs[0], penalties.GradientPenalty) and n_critic == 5
    assert isinstance(train.make_loss("nonsaturating")[0], losses.NonSaturatingLoss)


# --------------------------------------------------------------------------- mistakes: one error line, no traceback


@pytest.mark.parametrize("argv, match", [
    (["--epochs", "0"], r"--epochs.*>= 1, got 0"),
    (["--lr", "-1"], r"--lr.*> 0"),
    (["--ema-decay", "1.5"], r"--ema-decay must be in \[0, 1\)"),
    (["--norm", "spectral"], r"--norm spectral applies to --arch dcgan"),
    (["--loss", "bce"], r"--loss.*invalid choice"),
])
def test_option_mistakes_end_in_one_error_line(argv, match, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        train.main([*argv, "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert re.search(match, one_error_line(capsys.readouterr().err))


def test_subset_smaller_than_a_batch(fake_mnist, tmp_path, capsys):
    assert run(["--subset", "20"], tmp_path) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--subset 20" in line and "--batch-size 32" in line and "drop_last" not in line


def test_subset_larger_than_the_data(fake_mnist, tmp_path, capsys):
    assert run(["--subset", "70000"], tmp_path) == 2
    assert f"more than the {N_IMAGES} training images" in one_error_line(capsys.readouterr().err)


def test_out_is_a_file(fake_mnist, tmp_path, capsys):
    (tmp_path / "README.md").write_text("x")
    assert run([], tmp_path / "README.md") == 2
    assert "is a file, not a folder" in one_error_line(capsys.readouterr().err)


def test_out_not_writable(fake_mnist, tmp_path, capsys, monkeypatch):
    def refuse(*args, **kwargs):  # what a read-only folder does (the tests may run as root, where chmod cannot)
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(train.tempfile, "TemporaryFile", refuse)
    assert run([], tmp_path / "locked") == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(tmp_path / "locked") in line and "Permission denied" in line


def test_resume_a_folder_or_a_missing_file(fake_mnist, tmp_path, capsys):
    assert run(["--resume", str(tmp_path)], tmp_path / "out") == 2
    assert "is a folder, not a checkpoint file" in one_error_line(capsys.readouterr().err)
    assert run(["--resume", str(tmp_path / "nope.pt")], tmp_path / "out") == 2
    assert "no such file" in one_error_line(capsys.readouterr().err)
    assert run(["--resume", "latest"], tmp_path / "empty") == 2
    assert "no valid checkpoint" in one_error_line(capsys.readouterr().err)


def test_resume_with_other_options_names_every_difference(fake_mnist, tmp_path, capsys):
    assert run(["--epochs", "1"], tmp_path) == 0
    capsys.readouterr()
    before = (tmp_path / "checkpoint.pt").read_bytes()
    assert run(["--epochs", "2", "--resume", "auto", "--batch-size", "16", "--loss", "wgan-gp"], tmp_path) == 2
    line = one_error_line(capsys.readouterr().err)
    for part in ("--batch-size 32 (this command: 16)", "--loss 'nonsaturating' (this command: 'wgan-gp')",
                 "--n-critic 1 (this command: 5)"):
        assert part in line
    assert "--lr" in line  # says how to change the learning rate legitimately
    assert (tmp_path / "checkpoint.pt").read_bytes() == before  # nothing trained, nothing written


# --------------------------------------------------------------------------- resuming


def test_resume_auto_starts_afresh_then_continues(fake_mnist, tmp_path, capsys):
    assert run(["--epochs", "1", "--resume", "auto"], tmp_path) == 0
    assert "starting afresh" in capsys.readouterr().out
    assert run(["--epochs", "2", "--resume", "auto"], tmp_path) == 0
    out = capsys.readouterr().out
    assert f"resumed from {tmp_path / 'checkpoint.pt'}: 1 of 2 epochs completed, step 2" in out
    assert "done: 2 of 2 epochs completed, step 4" in out
    info = run_json(tmp_path)
    assert (info["status"], info["step"], info["epoch"]) == ("completed", 4, 2)
    assert [json.loads(line)["step"] for line in (tmp_path / "history.jsonl").read_text().splitlines()] == [2, 4]


def test_rerunning_a_finished_run_trains_nothing(fake_mnist, tmp_path, capsys, recwarn):
    assert run(["--epochs", "1", "--resume", "auto"], tmp_path) == 0
    before = (tmp_path / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert run(["--epochs", "1", "--resume", "auto"], tmp_path) == 0
    assert "nothing to train: the checkpoint has reached --epochs 1 already" in capsys.readouterr().out
    assert not [w for w in recwarn if "nothing to train" in str(w.message)]
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert run_json(tmp_path)["status"] == "completed"


def test_resume_auto_takes_the_newest_valid_checkpoint(fake_mnist, tmp_path, capsys):
    assert run(["--epochs", "1"], tmp_path) == 0
    older = tmp_path / "checkpoint.pt.1"
    older.write_bytes((tmp_path / "checkpoint.pt").read_bytes())
    assert run(["--epochs", "2", "--resume", "auto"], tmp_path) == 0  # checkpoint.pt now at step 4
    (tmp_path / "checkpoint.pt").write_bytes(b"torn")  # the newest file is damaged: skip it
    found = train.find_checkpoint(tmp_path)
    assert found is not None and found[0] == older and found[1]["trainer"]["step"] == 2
    capsys.readouterr()
    assert run(["--epochs", "2", "--resume", "auto"], tmp_path) == 0
    captured = capsys.readouterr()
    assert f"skipping {tmp_path / 'checkpoint.pt'}" in captured.err
    assert f"resumed from {older}" in captured.out
    assert load_checkpoint(tmp_path / "checkpoint.pt")["trainer"]["step"] == 4


def test_lr_on_resume_is_explicit_and_run_json_tells_the_truth(fake_mnist, tmp_path, capsys):
    assert run(["--epochs", "1", "--lr", "1e-3"], tmp_path) == 0
    assert run_json(tmp_path)["lr"] == {"generator": 1e-3, "discriminator": 1e-3}
    assert run(["--epochs", "2", "--resume", "auto"], tmp_path) == 0  # no --lr: the checkpoint's
    assert run_json(tmp_path)["lr"] == {"generator": 1e-3, "discriminator": 1e-3}
    assert run(["--epochs", "3", "--resume", "auto", "--lr", "5e-4"], tmp_path) == 0  # --lr: the new one
    assert run_json(tmp_path)["lr"] == {"generator": 5e-4, "discriminator": 5e-4}
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["extra"]["cli_options"]["lr"] == 5e-4
    assert "learning rate 0.0005 (--lr), was 0.001 in the checkpoint" in capsys.readouterr().out


def test_run_json_tells_the_progress_while_running(fake_mnist, tmp_path, monkeypatch):
    make, seen = train._networks, []

    def networks(args):
        g, d = make(args)
        forward, calls = g.forward, [0]

        def reading_run_json(*a):
            calls[0] += 1
            if calls[0] == 1 + 2 * 4 + 2 + 1:  # the D update of step 5: two epochs (and their grids) done
                seen.append(run_json(tmp_path))
            return forward(*a)

        g.forward = reading_run_json
        return g, d

    monkeypatch.setattr(train, "_networks", networks)
    assert run(["--epochs", "3"], tmp_path) == 0
    assert [(i["status"], i["step"], i["epoch"], i["checkpoint_step"]) for i in seen] == [("running", 4, 2, 4)]
    assert run_json(tmp_path)["status"] == "completed"


def test_compile_is_passed_to_the_trainer(fake_mnist, tmp_path, monkeypatch):
    built, real = [], train.GANTrainer

    def trainer(*args, **kwargs):
        built.append(kwargs["compile"])
        return real(*args, **{**kwargs, "compile": False})  # eager here: compiling would take minutes

    monkeypatch.setattr(train, "GANTrainer", trainer)
    assert run(["--epochs", "1", "--compile"], tmp_path) == 0
    assert run(["--epochs", "1"], tmp_path / "eager") == 0
    assert built == [True, False]


def test_resume_refuses_a_checkpoint_without_command_line_options(fake_mnist, tmp_path, capsys, tiny_trainer):
    tiny_trainer.save_checkpoint(tmp_path / "library.pt")  # written by a script, not by this command
    assert run(["--resume", str(tmp_path / "library.pt")], tmp_path / "out") == 2
    assert "holds no command-line options" in one_error_line(capsys.readouterr().err)


def test_conditional_run_writes_the_digit_grids(fake_mnist, tmp_path):
    assert run(["--epochs", "1"], tmp_path, defaults=train.CONDITIONAL) == 0
    for name in ("samples_final.png", "digits_final.png", "digits_epoch_001.png", "history.jsonl"):
        assert (tmp_path / name).is_file(), name
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["extra"]["cli_options"]["conditional"] is True
    assert "ema" in saved["extra"]  # the improved recipe's generator EMA


def test_logger_tensorboard_one_epoch_run(fake_mnist, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert run(["--epochs", "1", "--logger", "tensorboard"], tmp_path) == 0
    acc = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert {"epoch/d_loss", "epoch/g_loss", "epoch/steps_per_s"} <= set(scalars)
    history = json.loads((tmp_path / "history.jsonl").read_text())
    assert [(e.step, e.value) for e in acc.Scalars("epoch/d_loss")] == [(2, pytest.approx(history["d_loss"]))]
    assert [e.step for e in acc.Images("samples")] == [2, 2]  # the epoch's grid and the final one


def test_logger_tensorboard_without_the_package_is_one_error_line(fake_mnist, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if the [tensorboard] extra were not installed
    assert run(["--logger", "tensorboard"], tmp_path) == 2
    assert "pip install 'torchgan_lite[tensorboard]'" in one_error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- failures while training


@pytest.mark.parametrize("failure", [
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4416 vs 4310"),
    OSError(errno.ENOSPC, "No space left on device"),
])
def test_disk_full_names_the_checkpoint_and_keeps_the_previous_one(fake_mnist, tmp_path, capsys, monkeypatch,
                                                                    failure):
    assert run(["--epochs", "1"], tmp_path) == 0
    capsys.readouterr()

    def full_disk(*args, **kwargs):
        raise failure

    monkeypatch.setattr(torch, "save", full_disk)
    assert run(["--epochs", "2", "--resume", "auto"], tmp_path) == train.EXIT_FAILED
    line = one_error_line(capsys.readouterr().err)
    assert "checkpoint.pt" in line and ("disk is full" in line or "no space left on device" in line)
    assert "the last checkpoint" in line and "is intact" in line
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["trainer"]["step"] == 2  # the previous one, whole
    info = run_json(tmp_path)
    assert info["status"] == "failed" and info["step"] == 4 and "checkpoint.pt" in info["error"]


def _sigterm_in_step(monkeypatch, at_call: int) -> None:
    """Send this process SIGTERM from inside the generator's ``at_call``-th forward pass (mid-step)."""
    make = train._networks
    calls = {"n": 0}

    def networks(args):
        g, d = make(args)
        forward = g.forward

        def forward_with_signal(*a):
            calls["n"] += 1
            if calls["n"] == at_call:
                os.kill(os.getpid(), signal.SIGTERM)
            return forward(*a)

        g.forward = forward_with_signal
        return g, d

    monkeypatch.setattr(train, "_networks", networks)


def test_sigterm_finishes_the_step_saves_and_exits_143(fake_mnist, tmp_path, capsys, monkeypatch):
    # Generator calls: 1 shape probe at construction, 2 a step (D update, G update), 1 per epoch-end grid.
    _sigterm_in_step(monkeypatch, at_call=1 + 2 * 2 + 1 + 1)  # the D update of step 3, the first of epoch 2
    assert run(["--epochs", "5"], tmp_path) == 143
    err = capsys.readouterr().err
    assert "SIGTERM: stopped in epoch 2 of 5 (1 completed), step 3" in err
    assert f"Resume with:\n  python-under-test train {' '.join(FAST)} --out {tmp_path} --epochs 5 --resume " \
           f"{tmp_path / 'checkpoint.pt'}" in err
    info = run_json(tmp_path)
    assert (info["status"], info["step"], info["epoch"], info["signal"]) == ("interrupted", 3, 1, "SIGTERM")
    assert info["checkpoint_step"] == 3
    assert load_checkpoint(tmp_path / "checkpoint.pt")["trainer"]["step"] == 3


def test_sigterm_then_resume_auto_equals_an_uninterrupted_run(fake_mnist, tmp_path, monkeypatch):
    assert run(["--epochs", "3"], tmp_path / "whole") == 0
    plain = train._networks
    _sigterm_in_step(monkeypatch, at_call=1 + 2 * 3 + 1 + 2)  # the G update of step 4 (grid after step 2)
    assert run(["--epochs", "3", "--resume", "auto"], tmp_path / "cut") == 143
    monkeypatch.setattr(train, "_networks", plain)
    assert run(["--epochs", "3", "--resume", "auto"], tmp_path / "cut") == 0
    whole = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    cut = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert whole["trainer"]["step"] == cut["trainer"]["step"] == 6
    for net in ("generator", "discriminator"):
        for key, value in whole[net].items():
            assert torch.equal(value, cut[net][key]), (net, key)


# --------------------------------------------------------------------------- the package's command


def test_module_help_runs_in_a_fresh_interpreter():
    import subprocess

    res = subprocess.run([sys.executable, "-m", "torchgan_lite.train", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: python -m torchgan_lite.train")
