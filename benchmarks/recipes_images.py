"""Recipes on RGB 32x32 images: train DCGAN-32 (or ResNet-32) nets on the colour digits, score along the way.

The RGB counterpart of ``benchmarks/recipes_ablation.py`` (whose epoch schedule and
continuation it reuses): each named recipe of :mod:`torchgan_lite.recipes` trains the
convolutional nets on the colour digits of ``benchmarks/make_colour_digits.py`` (made on
the first run if ``--data`` is missing), batches of 64, and is scored at every ``--eval-at``
epoch of one continuing run, its trained generator and, where the recipe has one, its EMA.
Each row is appended to ``--out`` as one JSON line as soon as it exists.

    TORCHGAN_LITE_DATA=/work/shared/data python benchmarks/recipes_images.py --recipes dcgan rpgan-r1r2 \\
        --epochs 3 --eval-at 1,2 --seed 0 --run-dir runs/recipes_images \\
        --out benchmarks/results/recipes_images/rgb_s0.jsonl

**The score** (no Inception weights offline): :func:`luma_colour_extractor`, named
``"mnist-luma+colour"``: the shipped MNIST classifier's 128 features of the image's luma
resized to 28x28, beside a 6-number colour descriptor (the mean RGB of the brightest 10 % of
pixels, the strokes, and of the darkest half, the background) times :data:`COLOUR_WEIGHT`.
FD and KID of ``--n`` samples against ``--n`` real images of the set through
:class:`torchgan_lite.ImageEvaluator`, whose floor is ``--n`` other real images (two disjoint
halves of the 20,000). It says whether the digits are digits and their colours the set's; it
is **not** Inception FID, and its figures compare with nothing outside this file's protocol.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchgan_lite import (
    CLASSIFIER_SHA256,
    FeatureExtractor,
    GANTrainer,
    ImageEvaluator,
    fixed_noise,
    load_classifier,
    load_images,
    save_grid,
    seed_everything,
)
from torchgan_lite.nets.dcgan import dcgan_discriminator, dcgan_generator
from torchgan_lite.nets.resnet import resnet_discriminator, resnet_generator
from torchgan_lite.recipes import SPECS, build_parts
from torchgan_lite.utils.checks import check_float, check_int

try:  # run as a script (benchmarks/ on sys.path) or imported as benchmarks.recipes_images
    from benchmarks import make_colour_digits
    from benchmarks.recipes_ablation import eval_epochs
except ImportError:  # pragma: no cover - the script's path
    import make_colour_digits  # type: ignore[import-not-found,no-redef]
    from recipes_ablation import eval_epochs  # type: ignore[import-not-found,no-redef]

__all__ = ["COLOUR_WEIGHT", "EXTRACTOR_NAME", "LumaColourFeatures", "build_nets", "luma_colour_extractor", "main",
           "make_trainer", "parse_args", "side_by_side", "train_and_score"]

EXTRACTOR_NAME = "mnist-luma+colour"
#: Scales the colour descriptor (RGB in [0, 1]) beside the classifier's features. Chosen so that on the
#: colour digits the two blocks' total variances are of one order (measured on 2,000 of them: the
#: classifier's 128 features 43.7, the 6 colours 0.26 x 10^2 = 26): a wrong digit and a wrong colour both move FD.
COLOUR_WEIGHT = 10.0
FOREGROUND_FRACTION, BACKGROUND_FRACTION = 0.10, 0.50
_VERSION = "luma601-bilinear28aa-top10-bottom50/1"  # part of the fingerprint: change it with the descriptor


class LumaColourFeatures(nn.Module):
    """RGB ``(B, 3, H, W)`` in [-1, 1] -> ``(B, 134)``: MNIST features of the luma at 28x28, then the colours.

    Args:
        classifier: The MNIST classifier (``features_and_logits`` of ``(B, 1, 28, 28)`` in [-1, 1]).
        colour_weight: Factor on the 6 colour numbers.
    """

    def __init__(self, classifier: nn.Module, colour_weight: float = COLOUR_WEIGHT) -> None:
        super().__init__()
        self.classifier = classifier
        self.colour_weight = check_float("colour_weight", colour_weight, 0.0, low_open=True)
        self.luma_weights: torch.Tensor
        self.register_buffer("luma_weights", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = (x + 1) / 2  # (B, 3, H, W) in [0, 1]
        grey = (rgb * self.luma_weights).sum(1, keepdim=True)  # (B, 1, H, W)
        grey28 = F.interpolate(grey, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
        digits = self.classifier.features_and_logits(grey28 * 2 - 1)[0]  # type: ignore[operator]  # (B, 128)
        flat_grey, flat_rgb = grey.flatten(1), rgb.flatten(2)  # (B, HW), (B, 3, HW)
        pixels = flat_grey.shape[1]
        order = flat_grey.argsort(dim=1, descending=True)  # (B, HW), brightest first
        k_fg, k_bg = max(1, round(FOREGROUND_FRACTION * pixels)), max(1, round(BACKGROUND_FRACTION * pixels))

        def mean_of(idx: torch.Tensor) -> torch.Tensor:  # (B, k) -> (B, 3)
            return flat_rgb.gather(2, idx[:, None, :].expand(-1, 3, -1)).mean(2)

        colours = torch.cat([mean_of(order[:, :k_fg]), mean_of(order[:, -k_bg:])], 1)  # (B, 6)
        return torch.cat([digits, self.colour_weight * colours], 1)  # (B, 134)


def luma_colour_extractor(device: torch.device | str = "cpu", colour_weight: float = COLOUR_WEIGHT,
                          image_size: int = 32) -> FeatureExtractor:
    """The ``"mnist-luma+colour"`` extractor of RGB ``(3, image_size, image_size)`` images (see the module doc).

    Its fingerprint is the classifier's sha256, the descriptor's version and ``colour_weight``,
    so cached reference statistics never mix two settings.
    """
    check_int("image_size", image_size, 4)
    module = LumaColourFeatures(load_classifier(device), colour_weight).to(device)
    fingerprint = hashlib.sha256(f"{CLASSIFIER_SHA256}|{_VERSION}|w={module.colour_weight!r}".encode()).hexdigest()
    return FeatureExtractor(module, name=EXTRACTOR_NAME, fingerprint=fingerprint,
                            input_shape=(3, image_size, image_size))


def build_nets(arch: str, base_width: int | None) -> tuple[nn.Module, nn.Module]:
    """The 32x32 RGB generator and discriminator of ``arch`` ("dcgan" or "resnet"), builders' widths by default."""
    width = 64 if base_width is None else check_int("base_width", base_width)  # 64: both builders' default
    if arch == "dcgan":
        return (dcgan_generator(image_size=32, channels=3, base_width=width),
                dcgan_discriminator(image_size=32, channels=3, base_width=width))
    if arch == "resnet":
        return (resnet_generator(image_size=32, channels=3, base_width=width),
                resnet_discriminator(image_size=32, channels=3, base_width=width))
    raise ValueError(f"arch must be 'dcgan' or 'resnet', got {arch!r}")


def make_trainer(recipe: str, args: argparse.Namespace) -> tuple[GANTrainer, list[Any]]:
    """Seeded nets and a trainer built through the recipe (``build_parts`` -> ``step_config``), callbacks attached."""
    seed_everything(args.seed)
    generator, discriminator = build_nets(args.arch, args.base_width)
    parts = build_parts(recipe, generator, discriminator, batch_size=args.batch_size)
    trainer = GANTrainer(generator, discriminator, parts.loss, g_optimizer=parts.g_optimizer,
                         d_optimizer=parts.d_optimizer, step=parts.step_config(), device=args.device)
    for callback in parts.callbacks:  # before load_checkpoint: a continued run restores their state
        callback.attach(trainer)
    return trainer, parts.callbacks


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _device_label(args: argparse.Namespace) -> str:
    if args.device == "cuda":
        return f"{torch.cuda.get_device_name()} ({args.machine})"
    return (f"cpu, 1 thread: {_cpu_name()}, {torch.backends.cpu.get_cpu_capability()} ({args.machine})")


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def train_and_score(recipe: str, args: argparse.Namespace, train_set: Any, evaluator: ImageEvaluator):
    """Train one recipe, yielding its result rows at each scored epoch (written as they come)."""
    trainer, _ = make_trainer(recipe, args)
    loader = train_set.loader(batch_size=args.batch_size, shuffle=True, drop_last=True)
    width = "default" if args.base_width is None else str(args.base_width)
    name = f"{args.arch}{'' if args.base_width is None else args.base_width}_{recipe}_seed{args.seed}"
    run_dir = None if args.run_dir is None else args.run_dir / name
    ckpt = None if run_dir is None else run_dir / "checkpoint.pt"
    if ckpt is not None and ckpt.exists():  # continue a shorter run (bitwise, as resume is)
        trainer.load_checkpoint(ckpt, data=loader)
        print(f"{name}: continuing from epoch {trainer.state.epoch} of {ckpt}", flush=True)
    common = {"recipe": recipe, "description": SPECS[recipe].description, "arch": f"{args.arch}-32",
              "base_width": width, "g_params": _params(trainer.generator),
              "d_params": _params(trainer.discriminator), "batch_size": args.batch_size, "seed": args.seed,
              "train_images": len(train_set), "n": evaluator.n, "features": EXTRACTOR_NAME,
              "torch": torch.__version__, "device": _device_label(args)}
    train_s = 0.0
    for epoch in eval_epochs(args):
        if trainer.state.epoch >= epoch:
            continue
        t0 = time.perf_counter()
        trainer.fit(loader, epochs=epoch)
        train_s += time.perf_counter() - t0
        if ckpt is not None and run_dir is not None:
            trainer.save_checkpoint(ckpt)
            z = fixed_noise(64, trainer.latent_dim, seed=0)  # the same 64 noise vectors in every grid
            save_grid(trainer.sample(64, z=z, use_ema=False), run_dir / f"epoch{epoch:03d}_trained.png")
            if trainer.ema_generator is not None:
                save_grid(trainer.sample(64, z=z), run_dir / f"epoch{epoch:03d}_ema.png")
        row = {**common, "epochs": epoch, "steps": trainer.state.step, "train_s_this_process": round(train_s, 1)}
        weights = [("trained", trainer.generator)]
        if trainer.ema_generator is not None:
            weights.append(("ema", trainer.ema_generator))
        for tag, generator in weights:
            t0 = time.perf_counter()
            scores = evaluator.evaluate(generator)
            yield {**row, "weights": tag, **{k: round(float(v), 4) for k, v in scores.items()},
                   "eval_s": round(time.perf_counter() - t0, 1)}


LABEL_H, GAP = 16, 8  # pixels above each panel for its label, between panels


def side_by_side(panels: list[str], out: Path) -> Path:
    """Write grids side by side in one RGB PNG, each under its label.

    Args:
        panels: ``LABEL=PATH`` entries, left to right; ``PATH#X0,Y0,X1,Y1`` takes that box of the image
            (e.g. one panel of an earlier side-by-side figure).
        out: The PNG written.
    """
    from PIL import Image, ImageDraw

    images, labels = [], []
    for entry in panels:
        label, sep, where = entry.partition("=")
        path, _, box = where.partition("#")
        if not sep or not path:
            raise ValueError(f"a panel is LABEL=PATH or LABEL=PATH#X0,Y0,X1,Y1, got {entry!r}")
        if not Path(path).is_file():
            raise FileNotFoundError(f"panel {label!r}: no image {path}")
        image = Image.open(path).convert("RGB")
        if box:
            try:
                x0, y0, x1, y1 = (int(v) for v in box.split(","))
            except ValueError:
                raise ValueError(f"panel {label!r}: the box must be X0,Y0,X1,Y1 in pixels, got {box!r}") from None
            image = image.crop((x0, y0, x1, y1))
        images.append(image)
        labels.append(label)
    width = sum(im.width for im in images) + GAP * (len(images) - 1)
    canvas = Image.new("RGB", (width, max(im.height for im in images) + LABEL_H), color=(255, 255, 255))
    draw, x = ImageDraw.Draw(canvas), 0
    for image, label in zip(images, labels):
        draw.text((x + 2, 2), label, fill=(0, 0, 0))
        canvas.paste(image, (x, LABEL_H))
        x += image.width + GAP
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipes", nargs="+", default=["dcgan", "rpgan-r1r2"], choices=sorted(SPECS),
                   help="recipes of torchgan_lite.recipes, trained one after another (default: %(default)s)")
    p.add_argument("--arch", choices=("dcgan", "resnet"), default="dcgan", help="the 32x32 nets")
    p.add_argument("--base-width", type=int, default=None,
                   help="the builders' base_width (default: theirs, 64); e.g. 32 for a cheaper ResNet")
    p.add_argument("--data", type=Path, default=Path("runs/colour_digits"),
                   help="the colour digits' folder, made with make_colour_digits' defaults if missing")
    p.add_argument("--subset", type=int, default=None, help="train on N images spread over the set (smoke runs)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of each run (default: %(default)s)")
    p.add_argument("--eval-at", type=str, default=None, help="comma-separated epochs to score at besides --epochs")
    p.add_argument("--seed", type=int, default=0, help="seeds weights, noise and data order (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="images a step (default: %(default)s)")
    p.add_argument("--n", type=int, default=10000, help="samples scored, and real images in the reference")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="each run's checkpoint (rewritten at every scored epoch; a longer --epochs continues "
                        "from it) and 8x8 grids of the same noise (default: none written)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/recipes_images/rgb.jsonl"),
                   help="JSON-lines file the rows are appended to (default: %(default)s)")
    p.add_argument("--machine", default="2-core machine shared with other jobs",
                   help="what else ran on the machine, recorded with each row")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--side-by-side", type=Path, default=None, metavar="PNG",
                   help="no training: write the --panels grids side by side to this PNG")
    p.add_argument("--panels", nargs="+", default=[], metavar="LABEL=PATH[#X0,Y0,X1,Y1]",
                   help="with --side-by-side: the grids, left to right, each under its label")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.side_by_side is not None:
        try:
            print(f"wrote {side_by_side(args.panels, args.side_by_side)}")
        except (ValueError, FileNotFoundError) as err:
            sys.exit(f"error: {err}")
        return 0
    torch.set_num_threads(1)
    for flag in ("epochs", "batch_size", "n"):
        if getattr(args, flag) < 1:
            sys.exit(f"error: --{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda, but torch.cuda.is_available() is False")
    if not args.data.exists():
        make_colour_digits.main(["--out", str(args.data)])
    full = load_images(args.data, image_size=32, channels=3)  # uint8 (20000, 3, 32, 32), 10 classes
    if full.image_shape != (3, 32, 32):
        sys.exit(f"error: --data {args.data} holds images of shape {full.image_shape}, not (3, 32, 32)")
    evaluator = ImageEvaluator(full.images, luma_colour_extractor(args.device), n=args.n, device=args.device)
    train_set = full if args.subset is None else load_images(args.data, image_size=32, channels=3,
                                                             limit=args.subset)
    train_set = train_set.to(args.device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for recipe in args.recipes:
        for row in train_and_score(recipe, args, train_set, evaluator):
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            # after a scoring, so the extractor's width is known even when the reference came from the cache
            args.out.with_suffix(".protocol.json").write_text(json.dumps(evaluator.protocol, indent=1) + "\n")
            print(json.dumps({k: row.get(k) for k in ("recipe", "seed", "epochs", "weights", "fd", "kid_mean",
                                                      "real_fd", "real_kid_mean", "train_s_this_process")}),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
