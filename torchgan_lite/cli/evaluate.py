"""Score a saved MNIST generator from the command line, every figure beside its real-data floor.

    python -m torchgan_lite.evaluate runs/mnist_mlp/checkpoint.pt --n 10000 --json metrics.json

The generator is rebuilt from the checkpoint as :func:`torchgan_lite.checkpoints.export.load_generator`
does (the EMA weights if the checkpoint holds them), sampled with noise seeded by ``--seed``
(a conditional generator with the balanced labels ``0, 1, ..., 9, 0, ...``, as
``MetricsCallback`` samples it), and scored by :func:`torchgan_lite.metrics.evaluator.evaluate_mnist`.
A conditional generator also gets its class accuracy, overall and per digit
(:func:`torchgan_lite.metrics.classes.generator_class_accuracy`, ``n / 10`` samples a digit).
The table's "real data" column is the same metric for ``n`` real training images against
the test set: the best a generator can be expected to reach at this ``n``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from torchgan_lite.utils.checks import positive_int

if TYPE_CHECKING:
    from torchgan_lite.metrics.evaluator import SampleSource

__all__ = ["format_class_accuracy", "format_table", "main"]

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
)


def format_table(result: dict[str, float]) -> str:
    """The metrics of ``evaluate_mnist`` as a text table: samples, real-data floor, which way is better."""
    lines = [f"{'metric':<31} {'samples':>10} {'real data':>10}  better", "-" * 62]
    for key, label, better in _ROWS:
        lines.append(f"{label:<31} {result[key]:>10.4g} {result['real_' + key]:>10.4g}  {better}")
    return "\n".join(lines)


def format_class_accuracy(result: dict[str, float]) -> str:
    """:func:`~torchgan_lite.metrics.classes.class_accuracy`'s figures as two lines: overall, worst, each class."""
    classes = sorted(int(k.rsplit("_", 1)[1]) for k in result if k.startswith("accuracy_"))
    worst = min(classes, key=lambda c: result[f"accuracy_{c}"])
    per = ", ".join(f"{c}: {100 * result[f'accuracy_{c}']:.1f}" for c in classes)
    return (f"class accuracy {100 * result['accuracy']:.1f} % (worst: digit {worst}, "
            f"{100 * result['min_class_accuracy']:.1f} %)\nper digit (%): {per}")


def _parser() -> argparse.ArgumentParser:
    """The command line's options; ``--help`` is plain text (the module docstring is for Sphinx)."""
    p = argparse.ArgumentParser(
        prog="torchgan-lite-evaluate",
        description="Score a saved MNIST generator: Frechet distance, KID, classifier score, class coverage, "
                    "precision and recall, each beside its real-data floor (the same metric for n real "
                    "training images against the test set: the best a generator can reach at this n). The "
                    "generator is rebuilt from the checkpoint (its EMA weights if it holds them) and sampled "
                    "with noise seeded by --seed.",
        epilog="Example: torchgan-lite-evaluate runs/mnist_mlp/checkpoint.pt --n 10000 --json metrics.json "
               "(also: python -m torchgan_lite.evaluate). Metrics are explained in docs/evaluation.md.")
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a checkpoint written by torchgan-lite-train, GANTrainer.save_checkpoint or ModelCheckpoint")
    p.add_argument("--n", type=positive_int, default=10000, metavar="N",
                   help="samples to score (default: %(default)s)")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="also write the metrics and their floors to this JSON file (default: none)")
    p.add_argument("--device", default="cpu", metavar="DEVICE",
                   help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="folder holding MNIST/raw/ (default: $TORCHGAN_LITE_DATA, else the user cache folder)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seeds the noise, the floor's subset and the KID subsets (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=500, metavar="B",
                   help="images per generator and feature-extractor call (default: %(default)s)")
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Command line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    out = out if out is not None else sys.stdout

    from torchgan_lite.checkpoints.export import generator_from_checkpoint, generator_state
    from torchgan_lite.checkpoints.format import load_checkpoint
    from torchgan_lite.metrics.evaluator import evaluate_mnist
    from torchgan_lite.nets.sampling import sample_images

    try:
        ckpt = load_checkpoint(args.checkpoint)
        source = f"checkpoint {args.checkpoint}"
        generator = generator_from_checkpoint(ckpt, device=args.device, source=source)
        which = generator_state(ckpt, source)[1]
        scored: SampleSource = generator
        per_digit: dict[str, float] | None = None
        if getattr(generator, "num_classes", None) is not None:
            from torchgan_lite.metrics.classes import generator_class_accuracy

            meta: Any = generator  # a registered conditional generator: int num_classes and latent_dim
            classes, latent = int(meta.num_classes), int(meta.latent_dim)
            per_digit = generator_class_accuracy(generator, latent, num_classes=classes,
                                                 per_class=max(1, args.n // classes), seed=args.seed,
                                                 batch_size=args.batch_size, device=args.device)
            # Balanced labels 0, 1, ..., num_classes - 1, 0, ... on the same seeded noise bank: the samples
            # MetricsCallback scores during training.
            scored = sample_images(generator, args.n, seed=args.seed, batch_size=args.batch_size)  # (n, 1, 28, 28)
        result = evaluate_mnist(scored, n=args.n, batch_size=args.batch_size, data_root=args.data_root,
                                device=args.device, seed=args.seed)
    except (FileNotFoundError, ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    tr = ckpt.get("trainer", {})
    print(f"{args.checkpoint}: epoch {tr.get('epoch', '?')}, step {tr.get('step', '?')}, {which} weights; "
          f"n={args.n}, seed={args.seed}", file=out)
    print(format_table(result), file=out)
    if per_digit is not None:
        print(format_class_accuracy(per_digit), file=out)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"checkpoint": str(args.checkpoint), "epoch": tr.get("epoch"), "step": tr.get("step"),
                "weights": which, "n": args.n, "seed": args.seed}
        extra = {} if per_digit is None else {"class_accuracy": per_digit}
        path.write_text(json.dumps({**meta, "metrics": result, **extra}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
