"""The reference recipe: the classic MNIST MLP GAN, trained through torchgan_lite's public API.

The defaults are the recipe of ``shared/seed-recipe.md`` (see docs/reference-recipe.md):
MNIST in [-1, 1], batches of 128 (468 an epoch), the MLP generator and discriminator,
non-saturating BCE, Adam(2e-4) for both, one D step then one G step on fresh noise,
200 epochs.

    python examples/mnist_mlp.py                                  # the full recipe
    python examples/mnist_mlp.py --epochs 3                       # a short look
    python examples/mnist_mlp.py --max-steps 50 --out /tmp/smoke  # a smoke run
    python examples/mnist_mlp.py --resume runs/mnist_mlp/checkpoint.pt   # carry on
    python examples/mnist_mlp.py --loss wgan-gp                   # WGAN-GP, 5 critic steps
    python examples/mnist_mlp.py --recipe improved                # same networks, better samples (docs/recipes.md)
    python examples/mnist_mlp.py --arch dcgan                     # convolutional networks (torchgan_lite.dcgan)

Outputs in --out (default runs/mnist_mlp): samples_epoch_NNN.png and samples_final.png
(8x8 grids from one fixed noise bank), losses.png, history.csv, checkpoint.pt, run.json.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

from torchgan_lite import GANTrainer, TensorLoader, callbacks, data, losses, models, reporting, seed_everything

LOSSES = ("nonsaturating", "minimax", "lsgan", "wgan-gp", "hinge")
#: --recipe: Adam betas, the real label of the non-saturating loss, generator EMA decay and warm-up
#: (docs/recipes.md has the measurements behind "improved").
RECIPES = {
    "reference": {"betas": (0.9, 0.999), "real_label": 1.0, "ema_decay": None, "ema_warmup": 0},
    "improved": {"betas": (0.5, 0.999), "real_label": 0.9, "ema_decay": 0.999, "ema_warmup": 500},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Train the classic MNIST MLP GAN (the reference recipe; its settings are the defaults).",
        epilog="Outputs: samples_epoch_NNN.png, samples_final.png, losses.png, history.csv, checkpoint.pt and "
               "run.json in --out. Ctrl-C saves a checkpoint; --resume it to carry on.")
    p.add_argument("--epochs", type=int, default=200, metavar="N",
                   help="total epochs, counting those of a resumed run (default: %(default)s)")
    p.add_argument("--max-steps", type=int, default=None, metavar="N",
                   help="stop at this total step count, e.g. for a smoke run (default: no limit)")
    p.add_argument("--batch-size", type=int, default=128, metavar="B",
                   help="images per batch and process (under torchrun the global batch is B x processes); "
                        "128 gives 468 batches an epoch (default: %(default)s)")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate of both networks (default: %(default)s)")
    p.add_argument("--loss", choices=LOSSES, default="nonsaturating",
                   help="GAN loss; wgan-gp is WassersteinLoss + GradientPenalty(10) (default: %(default)s)")
    p.add_argument("--recipe", choices=tuple(RECIPES), default="reference",
                   help="reference: the seed recipe; improved: Adam betas (0.5, 0.999), real label 0.9, generator "
                        "EMA 0.999 (docs/recipes.md) (default: %(default)s)")
    p.add_argument("--arch", choices=("mlp", "dcgan"), default="mlp",
                   help="mlp: the recipe's networks; dcgan: torchgan_lite.dcgan's 28x28 convolutional "
                        "networks with batch norm (default: %(default)s)")
    p.add_argument("--n-critic", type=int, default=None, metavar="K",
                   help="discriminator steps per generator step (default: 5 for wgan-gp, else 1)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the weights, noise, data order and the sample grids' noise (default: %(default)s)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CUDA when present, else the CPU (default: %(default)s)")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="folder holding MNIST/raw/ (default: $TORCHGAN_LITE_DATA, else ./data with download)")
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help="train on the first N images only, for quick tests (default: all 60,000)")
    p.add_argument("--out", type=Path, default=Path("runs/mnist_mlp"), metavar="DIR",
                   help="output folder (default: %(default)s)")
    p.add_argument("--sample-every", type=int, default=5, metavar="N",
                   help="epochs between samples_epoch_NNN.png grids (default: %(default)s)")
    p.add_argument("--checkpoint-every", type=int, default=1, metavar="N",
                   help="epochs between checkpoint.pt saves (default: %(default)s)")
    p.add_argument("--resume", type=Path, default=None, metavar="PATH",
                   help="checkpoint to continue from; pass the same options as the first run")
    p.add_argument("--amp", choices=("none", "bf16"), default="none",
                   help="bf16 autocast for the forward passes (default: %(default)s)")
    p.add_argument("--eval-every", type=int, default=0, metavar="N",
                   help="epochs between sample-quality metrics, e.g. FD and KID (default: 0, off)")
    p.add_argument("--eval-n", type=int, default=10000, metavar="N",
                   help="samples per quality evaluation (default: %(default)s)")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "sample_every", "checkpoint_every", "eval_n"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("max_steps", "n_critic", "subset"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not args.lr > 0:
        p.error(f"--lr must be > 0, got {args.lr}")
    if args.eval_every < 0:
        p.error(f"--eval-every must be >= 0 (0 turns evaluation off), got {args.eval_every}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but CUDA is not available here (use --device auto or cpu)")
    if args.resume is not None and not args.resume.is_file():
        p.error(f"--resume {args.resume}: no such file")
    return args


def make_loss(name: str) -> tuple[losses.GANLoss, list[losses.Regularizer], int]:
    """The loss object, the discriminator regularizers and the default n_critic for ``--loss``."""
    if name == "wgan-gp":
        return losses.WassersteinLoss(), [losses.GradientPenalty(weight=10.0)], 5
    table = {"nonsaturating": losses.NonSaturatingLoss(), "minimax": losses.MinimaxLoss(),
             "lsgan": losses.LeastSquaresLoss(), "hinge": losses.HingeLoss()}
    return table[name], [], 1


def metrics_callback(args: argparse.Namespace):
    """The quality-metrics callback for --eval-every (imported only when asked for)."""
    try:
        from torchgan_lite.metrics import MetricsCallback
    except ImportError as err:
        sys.exit(f"error: --eval-every needs torchgan_lite.metrics, which cannot be imported here ({err})")
    return MetricsCallback(every=args.eval_every, n=args.eval_n, data_root=args.data_root)


def resume_command(argv: list[str], checkpoint: Path) -> str:
    """This run's command line, with ``--resume checkpoint`` in place of any earlier --resume."""
    kept, skip = [], False
    for arg in argv:
        if skip or arg.startswith("--resume="):
            skip = False
            continue
        if arg == "--resume":
            skip = True
            continue
        kept.append(arg)
    return shlex.join(["python", "examples/mnist_mlp.py", *kept, "--resume", str(checkpoint)])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    evaluator = metrics_callback(args) if args.eval_every > 0 else None  # fail fast, before loading anything

    # The recipe's networks: G 100-256-512-1024-784 (Tanh), D 784-1024-512-256-1 (a logit; the
    # sigmoid lives in the loss). Seed first, so the initial weights are the same every run.
    seed_everything(args.seed)
    if args.arch == "dcgan":
        from torchgan_lite.dcgan import dcgan_discriminator, dcgan_generator

        generator, discriminator = dcgan_generator(), dcgan_discriminator()
    else:
        generator = models.mlp_generator()
        discriminator = models.mlp_discriminator()
    recipe = RECIPES[args.recipe]
    loss, regularizers, default_n_critic = make_loss(args.loss)
    if args.loss == "nonsaturating":
        loss = losses.NonSaturatingLoss(real_label=recipe["real_label"])
    betas = recipe["betas"]
    trainer = GANTrainer(
        generator, discriminator, loss,
        g_optimizer=torch.optim.Adam(generator.parameters(), lr=args.lr, betas=betas, fused=True),
        d_optimizer=torch.optim.Adam(discriminator.parameters(), lr=args.lr, betas=betas, fused=True),
        device=args.device,
        n_critic=args.n_critic or default_n_critic,
        regularizers=regularizers,
        amp=None if args.amp == "none" else args.amp,
    )

    if recipe["ema_decay"] is not None:  # before any resume, so the checkpoint restores the average
        from torchgan_lite.ema import GeneratorEMA

        GeneratorEMA(decay=recipe["ema_decay"], warmup_steps=recipe["ema_warmup"]).attach(trainer)

    # MNIST decoded once, as one tensor on the training device; one shuffle an epoch, drop_last.
    try:
        images = data.mnist(args.data_root, device=trainer.device)  # (60000, 1, 28, 28) in [-1, 1]
    except FileNotFoundError as err:
        sys.exit(f"error: {err}")
    if args.subset is not None:
        images = images[: args.subset]
    loader = TensorLoader(images, batch_size=args.batch_size, shuffle=True, drop_last=True)

    # Reports and checkpoints, all through events. Order matters at each epoch end: metrics
    # first, then the files that show them, the checkpoint last.
    out = args.out
    if evaluator is not None:
        evaluator.attach(trainer)
    reporting.HistoryCSV(out / "history.csv").attach(trainer)
    reporting.LossPlot(out / "losses.png").attach(trainer)
    fixed_z = reporting.fixed_noise(64, trainer.latent_dim, seed=args.seed)  # (64, 100): one bank for every grid
    reporting.SampleGrid(out, fixed_z, every=args.sample_every).attach(trainer)
    callbacks.ProgressBar().attach(trainer)
    callbacks.EpochLogger().attach(trainer)
    checkpoint = callbacks.ModelCheckpoint(out / "checkpoint.pt", every=args.checkpoint_every)
    checkpoint.attach(trainer)

    def say(*parts: object, **kwargs: object) -> None:
        """print() on the main process only (under torchrun every rank runs this script)."""
        if trainer.is_main_process:
            kwargs.setdefault("flush", True)
            print(*parts, **kwargs)  # type: ignore[call-overload]

    if args.resume is not None:
        try:
            trainer.load_checkpoint(args.resume)  # weights, optimizers, step, history, data order, RNGs
        except ValueError as err:
            sys.exit(f"error: cannot resume: {err}")
        say(f"resumed from {args.resume} at epoch {trainer.state.epoch}, step {trainer.state.step}")

    def write_run_json(status: str) -> None:
        if not trainer.is_main_process:
            return
        info = reporting.run_info(trainer, vars(args), time.perf_counter() - started, status)
        reporting.write_json(out / "run.json", info)

    say(f"training on {trainer.device}: {args.epochs} epochs of {len(loader)} steps, loss {args.loss}, "
          f"outputs in {out}/", flush=True)
    try:
        write_run_json("running")
        trainer.fit(loader, epochs=args.epochs, max_steps=args.max_steps)
    except KeyboardInterrupt:
        write_run_json("interrupted")
        st = trainer.state
        say(f"\ninterrupted at epoch {st.epoch}, step {st.step}.", file=sys.stderr)
        if checkpoint.last_saved_step == st.step:
            command = resume_command(sys.argv[1:] if argv is None else argv, checkpoint.path)
            say(f"Checkpoint saved to {checkpoint.path}. Resume with:\n  {command}", file=sys.stderr)
        return 130
    write_run_json("finished")
    st = trainer.state
    say(f"done: epoch {st.epoch}, step {st.step} in {time.perf_counter() - started:.0f} s; "
          f"samples in {out / 'samples_final.png'}, losses in {out / 'losses.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
