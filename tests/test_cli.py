"""The training command line (torchgan_lite.train): options, mistakes, resuming, signals, run.json.

Runs are in process, on synthetic 4x4 "MNIST" and tiny networks handed to the command
through its seams (``train.main(argv, data=..., networks=...)``, tests/_cli_worker.py), so
a whole run costs well under a second. Resuming across world sizes launches the same
command on 2 processes (gloo, CPU). The real-MNIST end-to-end checks (a SIGTERM'd example
resumed bitwise) are in test_example.py; every bad value of every option in test_cli_errors.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from torchgan_lite.checkpoints.format import load_checkpoint, save_checkpoint
from torchgan_lite.cli import resume as cli_resume
from torchgan_lite.cli import run as cli_run
from torchgan_lite.cli import train
from torchgan_lite.cli.common import CLIError
from torchgan_lite.cli.sources import build_networks
from torchgan_lite.recipes import make_loss

from . import _cli_worker as worker
from .conftest import REPO

FAST = ["--batch-size", "32", "--device", "cpu", "--no-progress", "--sample-every", "1"]
N_IMAGES = worker.N_IMAGES  # 2 steps an epoch at --batch-size 32


def run(args: list[str], out: Path, *, defaults: train.CLIDefaults = train.REFERENCE, networks=None,
        data=None) -> int:
    return train.main([*FAST, "--out", str(out), *args], defaults=defaults, command=worker.COMMAND,
                      data=data or worker.fake_data, networks=networks or worker.tiny_networks)


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def run_json(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def _calling(at_call: int, action):
    """Networks whose generator runs ``action()`` in its ``at_call``-th forward pass (1 = the trainer's probe)."""
    calls = {"n": 0}

    def networks(args, shape, classes):
        g, d = worker.tiny_networks(args, shape, classes)
        forward = g.forward

        def counted(*a):
            calls["n"] += 1
            if calls["n"] == at_call:
                action()
            return forward(*a)

        g.forward = counted
        return g, d

    return networks


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
              "--eval-every", "--eval-n", "--conditional", "--data", "--image-size", "--channels", "--hflip",
              "--eval-features"}
    assert wanted <= set(ref)
    differ = {k for k in ref if ref[k] != cond[k]}
    assert differ == {"--conditional", "--epochs", "--out"}
    assert (cond["--conditional"], cond["--epochs"]) == (True, 30)
    # The recipe and the networks depend on the data: the script's own for MNIST, DCGAN's for other images.
    for defaults, recipe in ((train.REFERENCE, "reference"), (train.CONDITIONAL, "improved")):
        args = train.parse_args([], defaults)
        assert (args.data, args.arch, args.recipe) == ("mnist", "mlp", recipe)
        args = train.parse_args(["--data", "CIFAR10"], defaults)
        assert (args.data, args.arch, args.recipe) == ("cifar10", "dcgan", "dcgan")
        args = train.parse_args(["--data", "./photos", "--arch", "resnet", "--recipe", "improved"], defaults)
        assert (args.data, args.arch, args.recipe) == ("./photos", "resnet", "improved")
    # The loss is the recipe's unless given: R3GAN's recipe trains with its own loss.
    assert train.parse_args([]).loss == "nonsaturating"
    assert train.parse_args(["--recipe", "rpgan-r1r2"]).loss == "rpgan"
    assert train.parse_args(["--recipe", "rpgan-r1r2", "--loss", "rpgan"]).loss == "rpgan"
    assert train.parse_args(["--amp", "auto"]).amp == "auto"


@pytest.mark.parametrize("defaults", [train.REFERENCE, train.CONDITIONAL])
def test_help_is_plain_text_with_metavars_and_defaults(defaults):
    text = train.build_parser(defaults).format_help()
    assert not re.search(r"``|:class:|:func:|:mod:|:data:", text)
    for action in train.build_parser(defaults)._actions:
        if action.option_strings and action.option_strings[0] != "-h":
            assert action.help, action.option_strings  # every flag described
            if action.nargs is None and action.const is None and not action.choices:
                assert action.metavar, action.option_strings  # --epochs N, not --epochs EPOCHS


def test_help_exits_0_and_prints_the_options(capsys):
    assert train.main(["--help"]) == 0
    assert "--resume auto|latest|PATH" in capsys.readouterr().out


def test_evaluate_help_is_plain_text(capsys):
    from torchgan_lite.cli import evaluate

    with contextlib.suppress(SystemExit):  # its own parser may still exit rather than return
        assert evaluate.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "evaluate" in text and not re.search(r"``|:class:|:func:|:mod:", text)


def test_resume_command_uses_the_running_interpreter_and_replaces_resume():
    command = train.resume_command(["--epochs", "9", "--resume", "old.pt", "--out", "a b"], Path("a b/checkpoint.pt"),
                                   command=["/venv/bin/python", "/repo/examples/mnist_mlp.py"])
    assert command == "/venv/bin/python /repo/examples/mnist_mlp.py --epochs 9 --out 'a b' --resume 'a b/checkpoint.pt'"
    default = train.resume_command(["--resume=x.pt"], "c.pt")
    assert default.startswith(sys.executable) and default.endswith("--resume c.pt")


def test_the_default_networks_follow_arch_norm_and_conditional():
    from torchgan_lite.nets.registry import module_config

    def builder(argv, shape=(1, 28, 28), classes=None):
        return [module_config(m)["builder"] for m in build_networks(train.parse_args(argv), shape, classes)]

    assert builder([]) == ["mlp_generator", "mlp_discriminator"]
    assert builder(["--conditional"], classes=10) == ["conditional_mlp_generator", "conditional_mlp_discriminator"]
    assert builder(["--arch", "dcgan", "--norm", "spectral"]) == ["dcgan_generator", "dcgan_discriminator"]
    g, _ = build_networks(train.parse_args(["--arch", "dcgan", "--conditional"]), (1, 28, 28), 10)
    assert g.num_classes == 10


# --------------------------------------------------------------------------- mistakes: one error line, no traceback


@pytest.mark.parametrize("argv, match", [
    (["--epochs", "0"], r"--epochs.*>= 1, got 0"),
    (["--lr", "-1"], r"--lr.*> 0"),
    (["--ema-decay", "1.5"], r"--ema-decay.*in \[0, 1\)"),
    (["--norm", "spectral"], r"--norm spectral applies to --arch dcgan"),
    (["--loss", "bce"], r"--loss.*invalid choice"),
    (["--seed", "-1"], r"--seed.*\[0, 2\*\*32\)"),
    (["--seed", str(2**70)], r"--seed.*\[0, 2\*\*32\)"),
])
def test_option_mistakes_end_in_one_error_line(argv, match, capsys, tmp_path):
    assert run(argv, tmp_path) == 2
    assert re.search(match, one_error_line(capsys.readouterr().err))
    assert not (tmp_path / "run.json").exists()


def test_subset_smaller_than_a_batch(tmp_path, capsys):
    assert run(["--subset", "20"], tmp_path) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--subset 20" in line and "--batch-size 32" in line and "drop_last" not in line


def test_subset_larger_than_the_data(tmp_path, capsys):
    assert run(["--subset", "70000"], tmp_path) == 2
    assert f"more than the {N_IMAGES} training images" in one_error_line(capsys.readouterr().err)


def test_out_is_a_file(tmp_path, capsys):
    (tmp_path / "README.md").write_text("x")
    assert run([], tmp_path / "README.md") == 2
    assert "is a file, not a folder" in one_error_line(capsys.readouterr().err)


def test_out_not_writable(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")  # a folder under a regular file cannot be made, even by root
    locked = tmp_path / "file.txt" / "out"
    assert run([], locked) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(locked) in line and "cannot write there" in line


def test_resume_a_folder_or_a_missing_file(tmp_path, capsys):
    assert run(["--resume", str(tmp_path)], tmp_path / "out") == 2
    assert "is a folder, not a checkpoint file" in one_error_line(capsys.readouterr().err)
    assert run(["--resume", str(tmp_path / "nope.pt")], tmp_path / "out") == 2
    assert "no such file" in one_error_line(capsys.readouterr().err)
    assert run(["--resume", "latest"], tmp_path / "empty") == 2
    assert "no valid checkpoint" in one_error_line(capsys.readouterr().err)


def test_resume_with_other_options_names_every_difference(tmp_path, capsys):
    assert run(["--epochs", "1"], tmp_path) == 0
    capsys.readouterr()
    before = (tmp_path / "checkpoint.pt").read_bytes()
    assert run(["--epochs", "2", "--resume", "auto", "--batch-size", "16", "--loss", "wgan-gp"], tmp_path) == 2
    line = one_error_line(capsys.readouterr().err)
    for part in ("--batch-size 32 on 1 process(es), a global batch of 32 (this command: 16 on 1, 16)",
                 "--loss 'nonsaturating' (this command: 'wgan-gp')", "--n-critic 1 (this command: 5)"):
        assert part in line
    assert "--lr" in line  # says how to change the learning rate legitimately
    assert (tmp_path / "checkpoint.pt").read_bytes() == before  # nothing trained, nothing written


def _options_for(batch: int, world: int) -> dict:
    args = train.parse_args(["--batch-size", str(batch)])
    return cli_resume.resolved_options(args, 2e-4, world, worker.fake_data(args))


@pytest.mark.parametrize("saved_batch, saved_world, batch, world, ok", [
    (64, 2, 128, 1, True), (128, 1, 64, 2, True), (32, 4, 64, 2, True),  # the same global batch: resumable
    (64, 2, 64, 1, False), (128, 1, 128, 2, False),  # the same per-process batch, another global one
])
def test_resume_compares_the_global_batch_not_the_per_process_one(saved_batch, saved_world, batch, world, ok):
    saved, current = _options_for(saved_batch, saved_world), _options_for(batch, world)
    if ok:
        cli_resume.check_resumable(saved, current, Path("c.pt"))
    else:
        with pytest.raises(CLIError, match=r"--batch-size .* global batch of \d+ .*the number of processes"):
            cli_resume.check_resumable(saved, current, Path("c.pt"))


def test_resume_of_an_older_checkpoint_takes_its_world_size_from_the_trainer_entry():
    saved = {k: v for k, v in _options_for(64, 2).items() if k not in ("world_size", "global_batch")}
    ckpt = {"trainer": {"world_size": 2}}
    cli_resume.check_resumable(saved, _options_for(128, 1), Path("c.pt"), ckpt)
    with pytest.raises(CLIError, match="global batch of 128"):
        cli_resume.check_resumable(saved, _options_for(64, 1), Path("c.pt"), ckpt)


# --------------------------------------------------------------------------- resuming


def test_resume_auto_starts_afresh_then_continues(tmp_path, capsys):
    assert run(["--epochs", "1", "--resume", "auto"], tmp_path) == 0
    assert "starting afresh" in capsys.readouterr().out
    assert run(["--epochs", "2", "--resume", "auto"], tmp_path) == 0
    out = capsys.readouterr().out
    assert f"resumed from {tmp_path / 'checkpoint.pt'}: 1 of 2 epochs completed, step 2" in out
    assert "done: 2 of 2 epochs completed, step 4" in out
    info = run_json(tmp_path)
    assert (info["status"], info["step"], info["epoch"], info["world_size"]) == ("completed", 4, 2, 1)
    assert [json.loads(line)["step"] for line in (tmp_path / "history.jsonl").read_text().splitlines()] == [2, 4]


def test_rerunning_a_finished_run_trains_nothing(tmp_path, capsys, recwarn):
    assert run(["--epochs", "1", "--resume", "auto"], tmp_path) == 0
    before = (tmp_path / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert run(["--epochs", "1", "--resume", "auto"], tmp_path) == 0
    assert "nothing to train: the checkpoint has reached --epochs 1 already" in capsys.readouterr().out
    assert not [w for w in recwarn if "nothing to train" in str(w.message)]
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert run_json(tmp_path)["status"] == "completed"


def test_resume_auto_takes_the_newest_valid_checkpoint(tmp_path, capsys):
    assert run(["--epochs", "1"], tmp_path) == 0
    path = tmp_path / "checkpoint.pt"
    saved = {k: v for k, v in load_checkpoint(path).items() if k not in ("format", "checksums")}
    save_checkpoint(saved, path, keep_last=1)  # an older copy, kept under the name the library gives it
    assert run(["--epochs", "2", "--resume", "auto"], tmp_path) == 0  # checkpoint.pt now at step 4
    path.write_bytes(b"torn")  # the newest file is damaged: skip it
    found = train.find_checkpoint(tmp_path)
    assert found is not None and found[0] != path and found[1]["trainer"]["step"] == 2
    capsys.readouterr()
    assert run(["--epochs", "2", "--resume", "auto"], tmp_path) == 0
    captured = capsys.readouterr()
    assert str(path) in captured.err  # the damaged file is named
    assert f"resumed from {found[0]}" in captured.out
    assert load_checkpoint(path)["trainer"]["step"] == 4


def test_lr_on_resume_is_explicit_and_run_json_tells_the_truth(tmp_path, capsys):
    assert run(["--epochs", "1", "--lr", "1e-3"], tmp_path) == 0
    assert run_json(tmp_path)["lr"] == {"generator": 1e-3, "discriminator": 1e-3}
    assert run(["--epochs", "2", "--resume", "auto"], tmp_path) == 0  # no --lr: the checkpoint's
    assert run_json(tmp_path)["lr"] == {"generator": 1e-3, "discriminator": 1e-3}
    assert run(["--epochs", "3", "--resume", "auto", "--lr", "5e-4"], tmp_path) == 0  # --lr: the new one
    assert run_json(tmp_path)["lr"] == {"generator": 5e-4, "discriminator": 5e-4}
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["extra"]["cli_options"]["lr"] == 5e-4
    assert "learning rate 0.0005 (--lr), was 0.001 in the checkpoint" in capsys.readouterr().out


def test_run_json_tells_the_progress_while_running(tmp_path):
    seen = []
    # Generator calls: 1 shape probe, 2 a step (D update, G update), 1 per epoch-end grid.
    networks = _calling(1 + 2 * 4 + 2 + 1, lambda: seen.append(run_json(tmp_path)))  # step 5's D update
    assert run(["--epochs", "3"], tmp_path, networks=networks) == 0
    assert [(i["status"], i["step"], i["epoch"], i["checkpoint_step"]) for i in seen] == [("running", 4, 2, 4)]
    assert run_json(tmp_path)["status"] == "completed"


def test_compile_chooses_the_compiled_step(tmp_path, monkeypatch):
    built, real = [], cli_run.GANTrainer

    def trainer(*args, **kwargs):
        built.append(kwargs["step"].implementation)
        eager = dataclasses.replace(kwargs["step"], implementation="eager")  # compiling would take minutes here
        return real(*args, **{**kwargs, "step": eager})

    monkeypatch.setattr(cli_run, "GANTrainer", trainer)
    assert run(["--epochs", "1", "--compile"], tmp_path) == 0
    assert run(["--epochs", "1"], tmp_path / "eager") == 0
    assert built == ["compiled", "eager"]


def test_resume_refuses_a_checkpoint_without_command_line_options(tmp_path, capsys, tiny_trainer):
    tiny_trainer.save_checkpoint(tmp_path / "library.pt")  # written by a script, not by this command
    assert run(["--resume", str(tmp_path / "library.pt")], tmp_path / "out") == 2
    assert "holds no command-line options" in one_error_line(capsys.readouterr().err)


def test_conditional_run_writes_the_digit_grids_from_fixed_labels(tmp_path):
    assert run(["--epochs", "1"], tmp_path, defaults=train.CONDITIONAL) == 0
    for name in ("samples_final.png", "digits_final.png", "digits_epoch_001.png", "history.jsonl"):
        assert (tmp_path / name).is_file(), name
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["extra"]["cli_options"]["conditional"] is True
    assert "ema" in saved["extra"]  # the improved recipe's generator EMA
    from PIL import Image

    with Image.open(tmp_path / "digits_final.png") as im:
        assert im.size == (10 * 6 + 2, 10 * 6 + 2)  # 10x10 images of 4x4, 2-px padding


def test_logger_tensorboard_one_epoch_run(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert run(["--epochs", "1", "--logger", "tensorboard"], tmp_path) == 0
    acc = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert {"epoch/d_loss", "epoch/g_loss", "epoch/steps_per_s"} <= set(scalars)
    history = json.loads((tmp_path / "history.jsonl").read_text())
    assert [(e.step, e.value) for e in acc.Scalars("epoch/d_loss")] == [(2, pytest.approx(history["d_loss"]))]
    assert [e.step for e in acc.Images("samples")] == [2, 2]  # the epoch's grid and the final one


def test_logger_tensorboard_without_the_package_is_one_error_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if the [tensorboard] extra were not installed
    assert run(["--logger", "tensorboard"], tmp_path) == 2
    assert "pip install 'torchgan_lite[tensorboard]'" in one_error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- failures while training


@pytest.mark.parametrize("failure", [
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4416 vs 4310"),
    OSError(errno.ENOSPC, "No space left on device"),
])
def test_disk_full_names_the_checkpoint_and_keeps_the_previous_one(tmp_path, capsys, monkeypatch, failure):
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


# --------------------------------------------------------------------------- signals: the trainer's one path


def _sigterm():
    os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_finishes_the_step_saves_and_exits_143(tmp_path, capsys):
    networks = _calling(1 + 2 * 2 + 1 + 1, _sigterm)  # the D update of step 3, the first of epoch 2
    assert run(["--epochs", "5"], tmp_path, networks=networks) == 143
    err = capsys.readouterr().err
    assert "SIGTERM: stopped in epoch 2 of 5 (1 completed), step 3" in err
    assert f"Resume with:\n  python-under-test train {' '.join(FAST)} --out {tmp_path} --epochs 5 --resume " \
           f"{tmp_path / 'checkpoint.pt'}" in err
    info = run_json(tmp_path)
    assert (info["status"], info["step"], info["epoch"], info["signal"]) == ("interrupted", 3, 1, "SIGTERM")
    assert info["checkpoint_step"] == 3
    assert load_checkpoint(tmp_path / "checkpoint.pt")["trainer"]["step"] == 3


def test_sigterm_then_resume_auto_equals_an_uninterrupted_run(tmp_path):
    assert run(["--epochs", "3"], tmp_path / "whole") == 0
    networks = _calling(1 + 2 * 3 + 1 + 2, _sigterm)  # the G update of step 4 (grid after step 2)
    assert run(["--epochs", "3", "--resume", "auto"], tmp_path / "cut", networks=networks) == 143
    assert run(["--epochs", "3", "--resume", "auto"], tmp_path / "cut") == 0
    whole = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    cut = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert whole["trainer"]["step"] == cut["trainer"]["step"] == 6
    for net in ("generator", "discriminator"):
        for key, value in whole[net].items():
            assert torch.equal(value, cut[net][key]), (net, key)


def test_the_command_installs_no_signal_handler_of_its_own(tmp_path):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    seen = {}

    def data(args):  # runs inside the command, before fit
        seen["loading"] = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
        return worker.fake_data(args)

    def record():  # inside fit: the trainer's handler (training/signals.py) is the one installed
        seen["training"] = signal.getsignal(signal.SIGTERM)

    assert run(["--epochs", "1"], tmp_path, data=data, networks=_calling(2, record)) == 0
    assert seen["loading"] == before
    handler = seen["training"]
    assert callable(handler) and handler.__module__ == "torchgan_lite.training.signals"
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_ctrl_c_before_training_exits_130_and_writes_nothing(tmp_path, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    assert run(["--epochs", "1"], tmp_path, data=interrupted) == 130
    assert "interrupted before training started; nothing was saved" in capsys.readouterr().err
    assert not (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "run.json").exists()


# --------------------------------------------------------------------------- resuming on another number of processes


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(argv: list[str], world: int) -> str:
    """The command on ``world`` processes, as torchrun starts them (loopback, gloo, one thread each)."""
    port = _free_port()
    procs = []
    for rank in range(world):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "RANK": str(rank),
               "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        procs.append(subprocess.Popen([sys.executable, str(Path(worker.__file__)), *argv], env=env, cwd=REPO,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for rank, (p, text) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"rank {rank}: exit {p.returncode}\n{text[-3000:]}"
    return outputs[0]  # rank 0's, the one that reports


@contextlib.contextmanager
def _one_thread_and_own_rngs():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(threads)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(path)
    assert ckpt["trainer"]["step"] == 6, ckpt["trainer"]["step"]
    return {f"{net}.{k}": v for net in ("generator", "discriminator") for k, v in ckpt[net].items()}


def test_a_two_process_checkpoint_resumes_on_one_process_and_the_reverse(tmp_path, capsys):
    # 64 images, global batch 32: 2 steps an epoch, 3 epochs; the checkpoints are taken mid-epoch 2 (step 3).
    base = ["--device", "cpu", "--no-progress", "--sample-every", "100", "--epochs", "3"]
    with _one_thread_and_own_rngs():
        assert worker.main([*base, "--batch-size", "32", "--out", str(tmp_path / "whole")]) == 0
        assert worker.main([*base, "--batch-size", "32", "--max-steps", "3", "--out", str(tmp_path / "one")]) == 0
    _launch([*base, "--batch-size", "16", "--max-steps", "3", "--out", str(tmp_path / "two")], world=2)
    two_mid = load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    assert (two_mid["trainer"]["step"], two_mid["trainer"]["epoch_step"], two_mid["trainer"]["world_size"]) == (3, 1, 2)

    # 2 x 16 -> 1 x 16 is another global batch: refused, naming both; 2 x 16 -> 1 x 32 and 1 x 32 -> 2 x 16 resume.
    assert run(["--epochs", "3", "--batch-size", "16", "--resume", "auto"], tmp_path / "two") == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--batch-size 16 on 2 process(es), a global batch of 32 (this command: 16 on 1, 16)" in line
    with _one_thread_and_own_rngs():
        assert worker.main([*base, "--batch-size", "32", "--out", str(tmp_path / "two"), "--resume", "auto"]) == 0
    mid = "in epoch 2 of 3 (1 completed), step 3"  # resumed, not started afresh (which would end the same)
    assert f"resumed from {tmp_path / 'two' / 'checkpoint.pt'}: {mid}" in capsys.readouterr().out
    said = _launch([*base, "--batch-size", "16", "--out", str(tmp_path / "one"), "--resume", "auto"], world=2)
    assert f"resumed from {tmp_path / 'one' / 'checkpoint.pt'}: {mid}" in said

    whole = _weights(tmp_path / "whole" / "checkpoint.pt")
    for resumed in ("two", "one"):
        got = _weights(tmp_path / resumed / "checkpoint.pt")
        assert got.keys() == whole.keys()
        for key in whole:
            torch.testing.assert_close(got[key], whole[key], atol=1e-6, rtol=0, msg=f"{resumed}: {key}")
    assert run_json(tmp_path / "one")["world_size"] == 2 and run_json(tmp_path / "two")["world_size"] == 1


# --------------------------------------------------------------------------- the package's command


def test_make_loss_names_the_wgan_gp_parts():
    from torchgan_lite.losses import adversarial as losses
    from torchgan_lite.losses import penalties

    loss, regs, n_critic = make_loss("wgan-gp")
    assert isinstance(loss, losses.WassersteinLoss) and isinstance(regs[0], penalties.GradientPenalty) and n_critic == 5
    assert isinstance(make_loss("nonsaturating")[0], losses.NonSaturatingLoss)


def test_module_help_runs_in_a_fresh_interpreter():
    res = subprocess.run([sys.executable, "-m", "torchgan_lite.train", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: python -m torchgan_lite.train")



# --------------------------------------------------------------------------- any images: --data, --arch, --label


def _image_folder(root: Path, classes=("cats", "dogs"), per_class: int = 8, size: int = 12) -> Path:
    """A folder of RGB PNGs, one sub-folder per class, each class its own colour (so classes differ)."""
    from PIL import Image

    gen = torch.Generator().manual_seed(3)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            base = torch.tensor([200 * (c == 0), 200 * (c == 1), 100], dtype=torch.float32)
            pixels = (base + 40 * torch.rand(size, size, 3, generator=gen)).clamp(0, 255).to(torch.uint8)
            Image.fromarray(pixels.numpy(), "RGB").save(root / name / f"{i}.png")
    return root


IMAGES = ["--device", "cpu", "--no-progress", "--sample-every", "1", "--image-size", "8", "--batch-size", "4",
          "--arch", "mlp"]  # 8x8 RGB, so the tiny MLPs of the seam fit; DCGAN's sizes start at 28


def _train_on(folder: Path, out: Path, *args: str, networks=None) -> int:
    return train.main([*IMAGES, "--data", str(folder), "--out", str(out), *args], command=worker.COMMAND,
                      networks=networks or worker.tiny_networks)


def test_a_folder_of_rgb_images_trains_with_colour_grids_and_records_its_classes(tmp_path):
    folder = _image_folder(tmp_path / "photos")
    assert _train_on(folder, tmp_path / "run", "--epochs", "1", "--conditional") == 0
    from PIL import Image

    with Image.open(tmp_path / "run" / "samples_final.png") as im:
        assert im.mode == "RGB" and im.size == (8 * 10 + 2, 8 * 10 + 2)  # 64 images of 8x8, 8 a row
    with Image.open(tmp_path / "run" / "classes_final.png") as im:  # one row per class
        assert im.size == (10 * 10 + 2, 2 * 10 + 2)
    options = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["extra"]["cli_options"]
    assert (options["data"], options["image_shape"], options["classes"]) == ("folder", [3, 8, 8], ["cats", "dogs"])
    assert options["data_path"] == str(folder.resolve()) and options["recipe"] == "dcgan"


def test_the_dcgan_recipe_is_the_default_for_images_and_resume_checks_the_image_options(tmp_path, capsys):
    folder = _image_folder(tmp_path / "photos")
    assert _train_on(folder, tmp_path / "run", "--epochs", "1") == 0
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    betas = {tuple(g["betas"]) for opt in ("g_optimizer", "d_optimizer") for g in ckpt["step"][opt]["param_groups"]}
    assert betas == {(0.5, 0.999)}  # the DCGAN paper's Adam, not the reference recipe's (0.9, 0.999)
    capsys.readouterr()
    assert _train_on(folder, tmp_path / "run", "--epochs", "2", "--resume", "auto", "--hflip") == 2
    assert "--hflip False (this command: True)" in one_error_line(capsys.readouterr().err)
    moved = tmp_path / "copied"  # a job that copies its images elsewhere each time still resumes
    import shutil

    shutil.copytree(folder, moved)
    assert _train_on(moved, tmp_path / "run", "--epochs", "2", "--resume", "auto") == 0


@pytest.mark.parametrize("how", [(), ("--stream", "--workers", "0"), ("--stream", "--workers", "1")],
                         ids=["in-memory", "streamed", "streamed-1-worker"])
def test_sigterm_then_resume_auto_on_a_folder_with_hflip_equals_an_uninterrupted_run(tmp_path, how):
    folder = _image_folder(tmp_path / "photos")  # 16 images, batch 4: 4 steps an epoch
    assert _train_on(folder, tmp_path / "whole", "--epochs", "2", "--hflip", *how) == 0
    networks = _calling(1 + 2 * 5 + 1 + 1, _sigterm)  # the D update of step 6, in epoch 2 (grid after step 4)
    assert _train_on(folder, tmp_path / "cut", "--epochs", "2", "--hflip", "--resume", "auto", *how,
                     networks=networks) == 143
    cut = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert cut["trainer"]["step"] == 6 and cut["trainer"]["epoch_step"] == 2  # stopped mid-epoch
    assert _train_on(folder, tmp_path / "cut", "--epochs", "2", "--hflip", "--resume", "auto", *how) == 0
    whole = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    cut = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert whole["trainer"]["step"] == cut["trainer"]["step"] == 8
    for net in ("generator", "discriminator"):
        for key, value in whole[net].items():
            assert torch.equal(value, cut[net][key]), (net, key)


def test_streamed_and_in_memory_training_are_the_same_run(tmp_path):
    folder = _image_folder(tmp_path / "photos")
    # The same images (decoded alike) in the same order (the same permutations); the flips of --hflip are
    # drawn from another generator when streamed, so this compares runs without them.
    assert _train_on(folder, tmp_path / "memory", "--epochs", "2") == 0
    assert _train_on(folder, tmp_path / "stream", "--epochs", "2", "--stream", "--workers", "0") == 0
    a = load_checkpoint(tmp_path / "memory" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "stream" / "checkpoint.pt")
    for net in ("generator", "discriminator"):
        for key, value in a[net].items():
            assert torch.equal(value, b[net][key]), (net, key)


def test_stream_is_for_folders(capsys):
    assert train.main(["--data", "cifar10", "--stream"]) == 2
    assert "--stream" in one_error_line(capsys.readouterr().err)


def test_hflip_changes_what_is_trained_on(tmp_path):
    folder = _image_folder(tmp_path / "photos")
    assert _train_on(folder, tmp_path / "plain", "--epochs", "1") == 0
    assert _train_on(folder, tmp_path / "flipped", "--epochs", "1", "--hflip") == 0
    a = load_checkpoint(tmp_path / "plain" / "checkpoint.pt")["discriminator"]
    b = load_checkpoint(tmp_path / "flipped" / "checkpoint.pt")["discriminator"]
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_the_default_networks_fit_the_images_at_their_size(tmp_path):
    def params(argv, shape, classes=None):
        g, d = build_networks(train.parse_args(argv), shape, classes)
        with torch.no_grad():
            z = torch.randn(2, g.latent_dim)
            x = g(z) if classes is None else g(z, torch.tensor([0, 1]))
        return tuple(x.shape), module_config(g)["builder"], module_config(d)["builder"]

    from torchgan_lite.nets.registry import module_config

    assert params(["--data", "cifar10"], (3, 32, 32)) == ((2, 3, 32, 32), "dcgan_generator", "dcgan_discriminator")
    assert params(["--data", "cifar10", "--arch", "resnet"], (3, 32, 32), 10) == \
        ((2, 3, 32, 32), "resnet_generator", "resnet_discriminator")
    assert params(["--data", "./x", "--arch", "mlp"], (3, 8, 8)) == ((2, 3, 8, 8), "mlp_generator",
                                                                     "mlp_discriminator")
    with pytest.raises(CLIError, match=r"--image-size 32"):  # a 36x36 set for DCGAN: the nearest size it builds
        build_networks(train.parse_args(["--data", "./x"]), (3, 36, 36), None)


def test_conditional_on_a_folder_without_classes_is_one_error_line(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "flat").mkdir()
    for i in range(8):
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(tmp_path / "flat" / f"{i}.png")
    assert _train_on(tmp_path / "flat", tmp_path / "run", "--conditional") == 2
    assert "--conditional" in one_error_line(capsys.readouterr().err)


def test_sample_label_by_name_or_index_from_a_folder_checkpoint(tmp_path, capsys):
    from torchgan_lite.checkpoints.export import load_generator
    from torchgan_lite.cli import sample
    from torchgan_lite.nets.sampling import sample_images

    folder = _image_folder(tmp_path / "photos")
    assert _train_on(folder, tmp_path / "run", "--epochs", "1", "--conditional") == 0
    ckpt = tmp_path / "run" / "checkpoint.pt"
    by_name, by_index = tmp_path / "by_name.pt", tmp_path / "by_index.pt"
    assert sample.main([str(ckpt), "--n", "6", "--label", "dogs", "--tensor", str(by_name)]) == 0
    assert sample.main([str(ckpt), "--n", "6", "--label", "1", "--tensor", str(by_index)]) == 0
    dogs = torch.load(by_name, weights_only=True)
    assert dogs.shape == (6, 3, 8, 8) and dogs.min() >= -1 and dogs.max() <= 1
    assert torch.equal(dogs, torch.load(by_index, weights_only=True))
    expected = sample_images(load_generator(ckpt), 6, seed=0, labels=torch.ones(6, dtype=torch.int64))
    assert torch.equal(dogs, expected)
    cats = sample_images(load_generator(ckpt), 6, seed=0, labels=torch.zeros(6, dtype=torch.int64))
    assert not torch.equal(dogs, cats)  # the label reaches the generator
    capsys.readouterr()
    assert sample.main([str(ckpt), "--label", "birds"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--label 'birds'" in line and "cats, dogs" in line
    assert sample.main([str(ckpt), "--label", "2"]) == 2
    assert "--label must be a class name or an index in [0, 2)" in one_error_line(capsys.readouterr().err)


@pytest.mark.mnist
def test_mnist_keeps_the_reference_recipe_exactly(mnist_dir):
    from torchgan_lite.cli.sources import default_data
    from torchgan_lite.data import mnist
    from torchgan_lite.nets.mlp import mlp_discriminator, mlp_generator

    args = train.parse_args(["--data-root", str(mnist_dir)])
    data = default_data(args)  # the float tensor the reference recipe always trained on, not a uint8 copy
    assert data.images.dtype == torch.float32 and torch.equal(data.images, mnist.mnist(mnist_dir))
    assert (args.arch, args.recipe, data.classes[:3]) == ("mlp", "reference", ("0", "1", "2"))
    torch.manual_seed(0)
    g, d = build_networks(args, data.image_shape, None)
    torch.manual_seed(0)
    g_ref, d_ref = mlp_generator(), mlp_discriminator()
    for net, ref in ((g, g_ref), (d, d_ref)):
        assert net.state_dict().keys() == ref.state_dict().keys()
        assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ref.state_dict().values()))


def test_the_training_cli_keeps_freed_memory_for_the_next_step(tmp_path, monkeypatch):
    # The CLI owns its process, so it sets glibc's malloc to keep freed memory (the library never does).
    calls: list[int] = []
    monkeypatch.setattr(cli_run, "retain_freed_memory", lambda: calls.append(1) or True)
    folder = _image_folder(tmp_path / "photos", per_class=4)
    assert _train_on(folder, tmp_path / "run", "--max-steps", "1") == 0
    assert calls == [1]
