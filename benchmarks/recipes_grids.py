"""Put the sample grids of several recipe runs side by side, at equal epochs, in one labelled PNG.

The grids are those ``recipes_ablation.py --run-dir DIR`` writes: the same 64 noise vectors
for every run, so each cell of one grid shows the same z as that cell of the others.

    python benchmarks/recipes_grids.py runs/recipes --epoch 20 \\
        --runs reference_seed0:trained improved_seed0 improved-r1_seed0 --out docs/img/recipes_epoch20.png

Each ``--runs`` entry is a run folder, optionally ``:trained`` for the trained weights'
grid instead of the EMA's (runs without an EMA have only the one grid).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw

LABEL_H = 16  # pixels above each grid for its name
GAP = 8  # pixels between grids


def grid_path(run_dir: Path, entry: str, epoch: int) -> tuple[Path, str]:
    """The PNG of one ``--runs`` entry at ``epoch``, and its label."""
    name, _, which = entry.partition(":")
    if which not in ("", "trained"):
        raise ValueError(f"a --runs entry is RUN or RUN:trained, got {entry!r}")
    trained = run_dir / name / f"epoch{epoch:03d}_trained.png"
    path = trained if which == "trained" else run_dir / name / f"epoch{epoch:03d}.png"
    if not path.is_file():
        raise FileNotFoundError(f"no grid {path} (was the run scored at epoch {epoch}?)")
    ema = which == "" and trained.is_file()  # the plain grid of a run with an EMA shows the EMA
    tag = " (EMA)" if ema else " (trained)" if which == "trained" else ""
    return path, f"{name}{tag}, epoch {epoch}"


def side_by_side(images: list[Image.Image], labels: list[str]) -> Image.Image:
    """One grey image: each grid under its label, left to right."""
    width = sum(im.width for im in images) + GAP * (len(images) - 1)
    height = max(im.height for im in images) + LABEL_H
    out = Image.new("L", (width, height), color=255)
    draw = ImageDraw.Draw(out)
    x = 0
    for im, label in zip(images, labels):
        draw.text((x + 2, 2), label, fill=0)
        out.paste(im.convert("L"), (x, LABEL_H))
        x += im.width + GAP
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=Path, help="the --run-dir of recipes_ablation.py")
    p.add_argument("--epoch", type=int, required=True, help="the scored epoch whose grids to show")
    p.add_argument("--runs", nargs="+", required=True, help="run folders, each optionally :trained")
    p.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = p.parse_args(argv)
    try:
        found = [grid_path(args.run_dir, entry, args.epoch) for entry in args.runs]
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    images = [Image.open(path) for path, _ in found]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    side_by_side(images, [label for _, label in found]).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
