"""A class-conditional GAN on MNIST: ask for a digit, get that digit.

The reference recipe's networks (``--arch mlp``; or a DCGAN, ``--arch dcgan``) told
the class: the generator concatenates a label embedding to its noise, the
discriminator is a projection discriminator (docs/conditional.md). The trainer
sees a generator with ``num_classes`` and trains on ``(images, labels)`` batches.

    python examples/mnist_conditional.py                       # 30 epochs, the improved recipe
    python examples/mnist_conditional.py --epochs 5            # a short look
    python examples/mnist_conditional.py --arch dcgan --epochs 5
    python examples/mnist_conditional.py --max-steps 50 --out /tmp/smoke   # a smoke run
    python examples/mnist_conditional.py --eval-every 5        # FD/KID/coverage + class accuracy

Outputs in --out (default runs/mnist_conditional), as the reference example's plus the digit grids:
samples_epoch_NNN.png / samples_final.png (8x8, fixed noise and labels), digits_epoch_NNN.png /
digits_final.png (10x10, row d shows digit d, column j the same noise), losses.png, history.csv,
checkpoint.pt, run.json. Draw a chosen digit from the checkpoint with
``python -m torchgan_lite.sample runs/mnist_conditional/checkpoint.pt --digit 7``.

Recipes (``--recipe``; docs/recipes.md has the measurements):

- ``reference``: the seed recipe's optimisation: Adam(2e-4, betas (0.9, 0.999)) for both
  networks, BCE with real label 1, no averaging.
- ``improved``: Adam betas (0.5, 0.999), one-sided label smoothing (real label 0.9), and a
  generator EMA (decay 0.999, 500 warm-up updates) that the grids, the metrics and the
  checkpoint's sampler use.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchgan_lite import Event, GANTrainer, TensorLoader, callbacks, data, losses, reporting, seed_everything
from torchgan_lite.conditional import (
    class_accuracy,
    conditional_mlp_discriminator,
    conditional_mlp_generator,
    digit_grid_labels,
)
from torchgan_lite.dcgan import dcgan_discriminator, dcgan_generator
from torchgan_lite.ema import GeneratorEMA

NUM_CLASSES = 10


@dataclass(frozen=True)
class Recipe:
    """The optimisation settings of a recipe (the networks are chosen by ``--arch``)."""

    betas: tuple[float, float]
    g_lr: float
    d_lr: float
    real_label: float
    ema_decay: float | None
    ema_warmup: int = 0


RECIPES: dict[str, Recipe] = {
    "reference": Recipe(betas=(0.9, 0.999), g_lr=2e-4, d_lr=2e-4, real_label=1.0, ema_decay=None),
    "improved": Recipe(betas=(0.5, 0.999), g_lr=2e-4, d_lr=2e-4, real_label=0.9, ema_decay=0.999, ema_warmup=500),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train a class-conditional GAN on MNIST.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=30, help="total epochs (counting those of a resumed run)")
    p.add_argument("--max-steps", type=int, default=None, help="stop at this total step count (smoke runs)")
    p.add_argument("--batch-size", type=int, default=128, help="images per batch")
    p.add_argument("--arch", choices=("mlp", "dcgan"), default="mlp",
                   help="mlp: the reference networks, conditioned; dcgan: convolutional (slower on a CPU)")
    p.add_argument("--norm", choices=("batch", "spectral", "none"), default="batch", help="DCGAN normalisation")
    p.add_argument("--recipe", choices=tuple(RECIPES), default="improved", help="optimisation recipe")
    p.add_argument("--ema-decay", type=float, default=None, help="override the recipe's EMA decay (0: no EMA)")
    p.add_argument("--seed", type=int, default=0, help="seeds the weights, noise, data order and the sample bank")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when present")
    p.add_argument("--data-root", default=None, help="folder holding MNIST/raw/ (default: $TORCHGAN_LITE_DATA, "
                   "else ./data with download)")
    p.add_argument("--subset", type=int, default=None, help="train on the first N images only (quick tests)")
    p.add_argument("--out", type=Path, default=Path("runs/mnist_conditional"), help="output folder")
    p.add_argument("--sample-every", type=int, default=5, help="epochs between sample grids")
    p.add_argument("--checkpoint-every", type=int, default=1, help="epochs between checkpoint.pt saves")
    p.add_argument("--resume", type=Path, default=None, help="checkpoint to continue from (same settings)")
    p.add_argument("--eval-every", type=int, default=0,
                   help="epochs between quality metrics and class accuracy (0: off)")
    p.add_argument("--eval-n", type=int, default=10000, help="samples per quality evaluation (n/10 per digit "
                   "for the class accuracy)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "sample_every", "checkpoint_every", "eval_n"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("max_steps", "subset"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.ema_decay is not None and not 0 <= args.ema_decay < 1:
        p.error(f"--ema-decay must be in [0, 1) (0 turns the EMA off), got {args.ema_decay}")
    if args.eval_every < 0:
        p.error(f"--eval-every must be >= 0 (0 turns evaluation off), got {args.eval_every}")
    if args.eval_every and args.eval_n < NUM_CLASSES:
        p.error(f"--eval-n must be >= {NUM_CLASSES} (one sample per digit at least), got {args.eval_n}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but CUDA is not available here (use --device auto or cpu)")
    if args.resume is not None and not args.resume.is_file():
        p.error(f"--resume {args.resume}: no such file")
    return args


def build_networks(arch: str, norm: str) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    """The conditional generator and discriminator for ``--arch``, and the spec saved with them."""
    spec: dict[str, Any] = {"arch": arch, "num_classes": NUM_CLASSES, "latent_dim": 100}
    if arch == "mlp":
        return conditional_mlp_generator(NUM_CLASSES), conditional_mlp_discriminator(NUM_CLASSES), spec
    norm_arg = None if norm == "none" else norm
    spec["norm"] = norm
    return (dcgan_generator(norm=norm_arg, num_classes=NUM_CLASSES),
            dcgan_discriminator(norm=norm_arg, num_classes=NUM_CLASSES), spec)


class ModelSpec:
    """How the networks were built, saved in the checkpoint (``extra["model"]``) so it can be rebuilt.

    On resume, a checkpoint of other networks is refused with a clear message.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = dict(spec)

    def state_dict(self) -> dict[str, Any]:
        return dict(self.spec)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if dict(state) != self.spec:
            raise ValueError(f"the checkpoint was written for networks {state}, this run builds {self.spec}")


class DigitGrid:
    """A grid from a fixed noise bank *and* fixed labels, every ``every`` epochs and at the end.

    Args:
        out_dir: Folder of the PNGs.
        prefix: File names ``{prefix}_epoch_NNN.png`` and ``{prefix}_final.png``.
        z: Noise ``(n, latent_dim)``.
        labels: Classes ``(n,)`` int64.
        nrow: Images per row.
        every: Epochs between grids.
    """

    def __init__(self, out_dir: Path, prefix: str, z: torch.Tensor, labels: torch.Tensor, nrow: int,
                 every: int) -> None:
        if z.shape[0] != labels.shape[0]:
            raise ValueError(f"z has {z.shape[0]} rows but labels has {labels.shape[0]}")
        self.out_dir, self.prefix, self.z, self.labels, self.nrow, self.every = out_dir, prefix, z, labels, nrow, every

    def attach(self, trainer: GANTrainer) -> list[Any]:
        return [trainer.add_callback(Event.EPOCH_END, self._epoch, every=self.every),
                trainer.add_callback(Event.FIT_END, self._final)]

    def save(self, trainer: GANTrainer, name: str) -> Path:
        images = trainer.sample(self.z.shape[0], z=self.z, labels=self.labels)  # (n, 1, 28, 28)
        return reporting.save_grid(images, self.out_dir / name, nrow=self.nrow)

    def _epoch(self, trainer: GANTrainer) -> None:
        self.save(trainer, f"{self.prefix}_epoch_{trainer.state.epoch:03d}.png")

    def _final(self, trainer: GANTrainer) -> None:
        self.save(trainer, f"{self.prefix}_final.png")


class ClassAccuracy:
    """Every ``every`` epochs: the fraction of samples of digit d that the metrics classifier calls d.

    Writes ``class_accuracy`` and ``min_class_accuracy`` into ``trainer.state.metrics``.
    """

    def __init__(self, every: int, per_class: int) -> None:
        from torchgan_lite.metrics import load_classifier  # fails early if the metrics package is missing

        self.every, self.per_class = every, per_class
        self._load = load_classifier
        self.last: dict[str, float] = {}

    def attach(self, trainer: GANTrainer) -> list[Any]:
        return [trainer.add_callback(Event.EPOCH_END, self._evaluate, every=self.every)]

    def _evaluate(self, trainer: GANTrainer) -> None:
        classifier = self._load(trainer.device)
        gen = torch.Generator().manual_seed(1234)  # the same noise at every evaluation
        z = torch.randn(NUM_CLASSES * self.per_class, trainer.latent_dim, generator=gen)
        offsets = iter(range(0, z.shape[0], 500))

        def sample(y: torch.Tensor) -> torch.Tensor:
            i = next(offsets)
            return trainer.sample(y.shape[0], z=z[i : i + y.shape[0]], labels=y).float()

        self.last = class_accuracy(sample, classifier, NUM_CLASSES, self.per_class, batch_size=500)
        trainer.state.metrics["class_accuracy"] = self.last["accuracy"]
        trainer.state.metrics["min_class_accuracy"] = self.last["min_class_accuracy"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    recipe = RECIPES[args.recipe]
    ema_decay = recipe.ema_decay if args.ema_decay is None else (args.ema_decay or None)
    evaluators: list[Any] = []
    if args.eval_every > 0:  # fail fast, before loading anything
        try:
            from torchgan_lite.metrics import MetricsCallback
        except ImportError as err:
            sys.exit(f"error: --eval-every needs torchgan_lite.metrics, which cannot be imported here ({err})")
        evaluators = [MetricsCallback(every=args.eval_every, n=args.eval_n, data_root=args.data_root),
                      ClassAccuracy(args.eval_every, args.eval_n // NUM_CLASSES)]

    seed_everything(args.seed)
    generator, discriminator, spec = build_networks(args.arch, args.norm)
    trainer = GANTrainer(
        generator, discriminator, losses.NonSaturatingLoss(real_label=recipe.real_label),
        g_optimizer=torch.optim.Adam(generator.parameters(), lr=recipe.g_lr, betas=recipe.betas),
        d_optimizer=torch.optim.Adam(discriminator.parameters(), lr=recipe.d_lr, betas=recipe.betas),
        device=args.device,
    )
    trainer.register_state("model", ModelSpec(spec))
    if ema_decay is not None:
        GeneratorEMA(decay=ema_decay, warmup_steps=recipe.ema_warmup).attach(trainer)  # before any resume

    try:
        images, labels = data.mnist_with_labels(args.data_root, device=trainer.device)  # (60000, 1, 28, 28), (60000,)
    except FileNotFoundError as err:
        sys.exit(f"error: {err}")
    if args.subset is not None:
        images, labels = images[: args.subset], labels[: args.subset]
    loader = TensorLoader(images, labels, batch_size=args.batch_size, shuffle=True, drop_last=True)

    out = args.out
    for evaluator in evaluators:
        evaluator.attach(trainer)
    reporting.HistoryCSV(out / "history.csv").attach(trainer)
    reporting.LossPlot(out / "losses.png").attach(trainer)
    z64 = reporting.fixed_noise(64, trainer.latent_dim, seed=args.seed)  # (64, 100)
    y64 = torch.arange(64) % NUM_CLASSES  # (64,) 0..9 repeated
    DigitGrid(out, "samples", z64, y64, nrow=8, every=args.sample_every).attach(trainer)
    z10 = reporting.fixed_noise(10, trainer.latent_dim, seed=args.seed + 1).repeat(NUM_CLASSES, 1)  # (100, 100)
    DigitGrid(out, "digits", z10, digit_grid_labels(NUM_CLASSES, 10), nrow=10, every=args.sample_every).attach(trainer)
    if not args.no_progress:
        callbacks.ProgressBar().attach(trainer)
    callbacks.EpochLogger().attach(trainer)
    checkpoint = callbacks.ModelCheckpoint(out / "checkpoint.pt", every=args.checkpoint_every)
    checkpoint.attach(trainer)

    if args.resume is not None:
        try:
            trainer.load_checkpoint(args.resume)
        except ValueError as err:
            sys.exit(f"error: cannot resume: {err}")
        print(f"resumed from {args.resume} at epoch {trainer.state.epoch}, step {trainer.state.step}")

    def write_run_json(status: str) -> None:
        config = {**vars(args), "recipe_settings": asdict(recipe), "ema_decay_used": ema_decay}
        reporting.write_json(out / "run.json", reporting.run_info(trainer, config, time.perf_counter() - started,
                                                                   status))

    print(f"training a conditional {args.arch} GAN on {trainer.device}: {args.epochs} epochs of {len(loader)} steps, "
          f"recipe {args.recipe}, outputs in {out}/", flush=True)
    write_run_json("running")
    try:
        trainer.fit(loader, epochs=args.epochs, max_steps=args.max_steps)
    except KeyboardInterrupt:
        write_run_json("interrupted")
        st = trainer.state
        print(f"\ninterrupted at epoch {st.epoch}, step {st.step}.", file=sys.stderr)
        if checkpoint.last_saved_step == st.step:
            print(f"Checkpoint saved to {checkpoint.path}. Resume with:\n  python examples/mnist_conditional.py "
                  f"--resume {checkpoint.path} [the same options]", file=sys.stderr)
        return 130
    write_run_json("finished")
    st = trainer.state
    print(f"done: epoch {st.epoch}, step {st.step} in {time.perf_counter() - started:.0f} s; "
          f"digits in {out / 'digits_final.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
