"""Score a saved generator from the command line: ``torchgan-lite-evaluate``, every figure beside its floor.

    torchgan-lite-evaluate runs/mnist_mlp/checkpoint.pt --n 10000 --json metrics.json
    torchgan-lite-evaluate runs/cifar/checkpoint.pt --data cifar10 --features inception --n 50000
    torchgan-lite-evaluate runs/faces/checkpoint.pt --data faces/ --features my_extractor.pt --n 5000

The generator is rebuilt from the checkpoint as :func:`torchgan_lite.checkpoints.export.load_generator`
does (the EMA weights if the checkpoint holds them, unless ``--no-ema``) and sampled with noise
seeded by ``--seed`` (a conditional generator with the balanced labels ``0, 1, ..., 0, ...``):
the samples ``torchgan-lite-sample --seed S`` draws. Which evaluation:

- A ``1x28x28`` generator without ``--data`` (or ``--data mnist``) and without ``--features``
  (or ``--features mnist``): the MNIST protocol (:func:`torchgan_lite.metrics.evaluator.evaluate_mnist`)
  against the test set, its floor ``n`` training images; a conditional generator also gets its
  class accuracy. Its figures are unchanged by the options below.
- ``--features PATH`` (a TorchScript module mapping ``(N, C, H, W)`` in [-1, 1] to ``(N, D)``) or
  ``mnist`` with ``--data``: FD, KID, precision/recall, density/coverage against ``n`` images of
  ``--data`` (:class:`torchgan_lite.metrics.images.ImageEvaluator`).
- ``--features inception`` (the default for every other generator), ``dinov2`` or ``clip``:
  torch-fidelity's FID, KID (and IS) (:class:`torchgan_lite.metrics.fidelity.FidelityEvaluator`).

``--data`` is what ``load_images`` reads (a folder, a set name such as ``cifar10``), or a ``.pt``
file holding an image tensor; it is loaded at the generator's size and channels. The protocol
(n, the real subset, the extractor, resizing) is printed and written beside the figures in
``--json`` (atomically). Every mistake ends in one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import torch

from torchgan_lite.cli.common import (
    CLIError,
    Parser,
    about_option,
    entry_point,
    error_line,
    output_file,
    path_arg,
    positive_int,
    seed,
)
from torchgan_lite.utils.atomic import atomic_open
from torchgan_lite.utils.runtime import resolve_device

__all__ = ["build_parser", "format_class_accuracy", "format_table", "main"]

# name, label, which way is better
_ROWS = (
    ("fd", "Fréchet distance (FD)", "lower"),
    ("kid_mean", "KID mean", "lower"),
    ("kid_std", "KID std over subsets", "-"),
    ("classifier_score", "classifier score (max 10)", "higher"),
    ("coverage_kl", "class KL to test set (nats)", "lower"),
    ("classes_at_1pct", "classes with >= 1% of samples", "higher"),
    ("precision", "precision (k=3)", "higher"),
    ("recall", "recall (k=3)", "higher"),
    ("density", "density (k=5, ~1 for real)", "higher"),
    ("coverage", "coverage (k=5)", "higher"),
    ("is_mean", "Inception Score", "higher"),
    ("is_std", "Inception Score std (splits)", "-"),
)


def format_table(result: dict[str, float]) -> str:
    """The metrics in ``result`` as a text table: samples, real-data floor (``-`` if none), which way is better."""
    lines = [f"{'metric':<31} {'samples':>10} {'real data':>10}  better", "-" * 62]
    for key, label, better in _ROWS:
        if key in result:
            floor = result.get("real_" + key)
            shown = f"{floor:>10.4g}" if floor is not None else f"{'-':>10}"
            lines.append(f"{label:<31} {result[key]:>10.4g} {shown}  {better}")
    return "\n".join(lines)


def format_class_accuracy(result: dict[str, float]) -> str:
    """:func:`~torchgan_lite.metrics.classes.class_accuracy`'s figures as two lines: overall, worst, each class."""
    classes = sorted(int(k.rsplit("_", 1)[1]) for k in result if k.startswith("accuracy_"))
    worst = min(classes, key=lambda c: result[f"accuracy_{c}"])
    per = ", ".join(f"{c}: {100 * result[f'accuracy_{c}']:.1f}" for c in classes)
    return (f"class accuracy {100 * result['accuracy']:.1f} % (worst: digit {worst}, "
            f"{100 * result['min_class_accuracy']:.1f} %)\nper digit (%): {per}")


def build_parser() -> Parser:
    """The command line's options; ``--help`` is plain text (the module docstring is for Sphinx)."""
    p = Parser(
        prog="torchgan-lite-evaluate",
        description="Score a saved generator: Frechet distance, KID, precision/recall (and the MNIST "
                    "classifier's scores, density/coverage, or the Inception Score), each beside its real-data "
                    "floor (the same metric for n other real images: the best a generator can reach at this n). "
                    "The generator is rebuilt from the checkpoint (its EMA weights if it holds them) and sampled "
                    "with noise seeded by --seed.",
        epilog="Examples: torchgan-lite-evaluate runs/mnist_mlp/checkpoint.pt --n 10000 --json metrics.json; "
               "torchgan-lite-evaluate ckpt.pt --data cifar10 --features inception --n 50000 "
               "(also: python -m torchgan_lite.evaluate). Metrics and protocols: docs/evaluation.md.")
    p.add_argument("checkpoint", type=path_arg, metavar="CHECKPOINT",
                   help="a checkpoint written by torchgan-lite-train, GANTrainer.save_checkpoint or ModelCheckpoint")
    p.add_argument("--data", default=None, metavar="SOURCE",
                   help="the real images: a folder, a set name (mnist, cifar10, ...; see --data-split) or a .pt "
                        "file holding an image tensor (N, C, H, W); loaded at the generator's size "
                        "(default: MNIST, for 1x28x28 generators; required otherwise)")
    p.add_argument("--data-split", default=None, metavar="SPLIT",
                   help="the split of a named set (default: train, the convention of published FIDs)")
    p.add_argument("--features", default=None, metavar="EXTRACTOR",
                   help="mnist, inception, dinov2, clip (torch-fidelity's; pip install 'torchgan_lite[fid]'), "
                        "another torch-fidelity extractor name, or PATH of a TorchScript module mapping "
                        "(N, C, H, W) images in [-1, 1] to (N, D) features (default: mnist for 1x28x28 "
                        "generators, else inception)")
    p.add_argument("--n", type=positive_int, default=10000, metavar="N",
                   help="samples to score, and real images compared with (default: %(default)s)")
    p.add_argument("--json", type=output_file, default=None, metavar="FILE",
                   help="also write the metrics, their floors and the protocol to this JSON file (default: none)")
    p.add_argument("--device", default="cpu", metavar="DEVICE", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    p.add_argument("--data-root", type=path_arg, default=None, metavar="DIR",
                   help="folder holding MNIST/raw/ and the named sets (default: $TORCHGAN_LITE_DATA, else the "
                        "user cache folder)")
    p.add_argument("--seed", type=seed, default=0, metavar="S",
                   help="seeds the noise, the real subsets and the KID subsets (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=500, metavar="B",
                   help="images per generator and feature-extractor call (default: %(default)s; "
                        "torch-fidelity's extractors take 64 at a time, its own default)")
    p.add_argument("--no-ema", action="store_true",
                   help="score the trained weights even if the checkpoint holds an EMA of them")
    return p


def _sample_shape(ckpt: dict[str, Any], generator: torch.nn.Module) -> tuple[int, ...]:
    info = ckpt.get("trainer")
    if isinstance(info, dict) and isinstance(info.get("sample_shape"), (list, tuple)):
        return tuple(int(s) for s in info["sample_shape"])
    from torchgan_lite.nets.sampling import sample_images

    return tuple(sample_images(generator, 1, seed=0).shape[1:])


def _load_real(args: Any, shape: tuple[int, ...]) -> tuple[torch.Tensor, str, str]:
    """The real images (uint8 or float), a key for the cache, and how they were loaded (for the protocol)."""
    c, h, w = shape
    source = "mnist" if args.data is None else args.data
    path = Path(source)
    if path.suffix in (".pt", ".pth") and path.is_file():
        x = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"expected a saved image tensor (N, C, H, W), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if tuple(x.shape[1:]) != shape:
            raise ValueError(f"it holds images of shape {tuple(x.shape[1:])}, but the generator makes {shape}: "
                             "save the real images at the generator's size")
        how = f"the tensor file {source}, as saved"
    else:
        from torchgan_lite.data.sources import load_images

        given = [f"--data {source}"] + [f"{flag} {value}" for flag, value in
                                        (("--data-split", args.data_split), ("--data-root", args.data_root))
                                        if value is not None]
        try:  # one line naming every option that chose the images
            images = load_images(source, image_size=h if h == w else None, channels=c, subset=args.data_split,
                                 root=args.data_root)
        except (ValueError, TypeError, OSError) as err:
            raise CLIError(f"{', '.join(given)}: {error_line(err)}") from err
        x, how = images.images, f"{images.source}, loaded by load_images(image_size={h}, channels={c})"
        if tuple(x.shape[1:]) != shape:
            raise ValueError(f"it gives images of shape {tuple(x.shape[1:])}, but the generator makes {shape}")
    digest = hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()
    return x, f"{how}; sha256 {digest}", how


def _mnist(args: Any, generator: torch.nn.Module,
           n: int) -> tuple[dict[str, float], dict[str, Any], dict[str, float] | None]:
    """The MNIST protocol's figures, its protocol, and a conditional generator's class accuracy."""
    from torchgan_lite.metrics.classifier import CLASSIFIER_SHA256
    from torchgan_lite.metrics.evaluator import SampleSource, evaluate_mnist
    from torchgan_lite.nets.sampling import sample_images

    scored: SampleSource = generator
    per_digit = None
    if getattr(generator, "num_classes", None) is not None:
        from torchgan_lite.metrics.classes import generator_class_accuracy

        meta: Any = generator  # a registered conditional generator: int num_classes and latent_dim
        classes, latent = int(meta.num_classes), int(meta.latent_dim)
        per_digit = generator_class_accuracy(generator, latent, num_classes=classes, per_class=max(1, n // classes),
                                             seed=args.seed, batch_size=args.batch_size, device=args.device)
        # Balanced labels on the same seeded noise bank: the samples MetricsCallback scores during training.
        scored = sample_images(generator, n, seed=args.seed, batch_size=args.batch_size)  # (n, 1, 28, 28)
    where = contextlib.nullcontext() if args.data_root is None else about_option("--data-root", args.data_root)
    with where:  # MNIST not found there: the line names the option
        result = evaluate_mnist(scored, n=n, batch_size=args.batch_size, data_root=args.data_root,
                                device=args.device, seed=args.seed)
    protocol = {"n_fake": n, "n_real": 10000, "real_source": "the MNIST test set (10,000 images)",
                "features": {"name": "mnist", "fingerprint": CLASSIFIER_SHA256, "input_shape": [1, 28, 28]},
                "resize": "none", "floor": f"{n} MNIST training images drawn with seed {args.seed}",
                "kid": {"subsets": 100, "subset_size": min(1000, n)}, "precision_recall": {"k": 3}, "seed": args.seed}
    return result, protocol, per_digit


def _generic(args: Any, generator: torch.nn.Module, shape: tuple[int, ...],
             features: str) -> tuple[dict[str, float], dict[str, Any]]:
    """FD and friends through ``features`` (a path, ``mnist``, or a torch-fidelity name) against ``--data``."""
    from torchgan_lite.metrics import fidelity

    with about_option("--data", args.data or "mnist"):
        real, key, how = _load_real(args, shape)
    if args.n > real.shape[0]:
        raise CLIError(f"--n {args.n} is more than the {real.shape[0]} real images of --data "
                       f"{args.data or 'mnist'}: pass --n {real.shape[0]} or fewer")
    if fidelity.is_fidelity_name(features):
        try:
            ev: Any = fidelity.FidelityEvaluator(real, features, source=key, n=args.n, device=args.device,
                                                 seed=args.seed)
            result = ev.evaluate(generator, with_floor=True)
        except (fidelity.WeightsUnavailableError, ImportError) as err:
            raise CLIError(str(err)) from None
    else:
        from torchgan_lite.metrics.features import as_extractor
        from torchgan_lite.metrics.images import ImageEvaluator

        with about_option("--features", features):
            extractor = as_extractor(features, args.device)
        extractor.check_images(shape)  # its message says what it takes and how to pass --features
        ev = ImageEvaluator(real, extractor, source=key, n=args.n, batch_size=args.batch_size, device=args.device,
                            seed=args.seed)
        result = ev.evaluate(generator, with_floor=True)
    return result, {**ev.protocol, "real_loaded_from": how}


@entry_point
def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Command line entry point; returns the exit status (0 done, 2 a mistake, said in one ``error:`` line)."""
    args = build_parser().parse_args(argv)
    out = out if out is not None else sys.stdout

    from torchgan_lite.checkpoints.export import generator_from_checkpoint, generator_state
    from torchgan_lite.checkpoints.format import load_checkpoint

    with about_option("--device", repr(args.device)):
        args.device = resolve_device(args.device)
    ckpt = load_checkpoint(args.checkpoint)
    source = f"checkpoint {args.checkpoint}"
    generator = generator_from_checkpoint(ckpt, device=args.device, use_ema=not args.no_ema, source=source)
    which = generator_state(ckpt, source, use_ema=not args.no_ema)[1]
    shape = _sample_shape(ckpt, generator)
    mnist_like = shape == (1, 28, 28)
    features = args.features or ("mnist" if mnist_like else "inception")
    per_digit = None
    if mnist_like and features == "mnist" and args.data in (None, "mnist") and args.data_split is None:
        result, protocol, per_digit = _mnist(args, generator, args.n)
    elif len(shape) != 3:
        raise CLIError(f"{source}: the generator makes samples of shape {shape}, not images (C, H, W)")
    else:
        if args.data is None and not mnist_like:
            raise CLIError(f"--data is required for a generator of {shape[0]}x{shape[1]}x{shape[2]} images: the "
                           "real images to compare with (a folder, a set name such as cifar10, or a .pt tensor)")
        result, protocol = _generic(args, generator, shape, features)
    tr = ckpt.get("trainer", {})
    print(f"{args.checkpoint}: epoch {tr.get('epoch', '?')}, step {tr.get('step', '?')}, {which} weights; "
          f"n={args.n}, seed={args.seed}", file=out)
    feats = protocol.get("features", {})
    print(f"features: {feats.get('name')}; real: {protocol.get('real_loaded_from', protocol.get('real_source'))}"
          f"{'; ' + protocol['real_subset'] if 'real_subset' in protocol else ''}; floor: {protocol.get('floor')}",
          file=out)
    print(format_table(result), file=out)
    if per_digit is not None:
        print(format_class_accuracy(per_digit), file=out)
    if args.json is not None:
        meta = {"checkpoint": str(args.checkpoint), "epoch": tr.get("epoch"), "step": tr.get("step"),
                "weights": which, "n": args.n, "seed": args.seed, "features": features, "data": args.data}
        extra = {} if per_digit is None else {"class_accuracy": per_digit}
        text = json.dumps({**meta, "protocol": protocol, "metrics": result, **extra}, indent=2) + "\n"
        with about_option("--json", args.json), atomic_open(args.json, "w", what="write the metrics") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
