"""Colour digits: the RGB 32x32 image set the recipes are measured on, made from real MNIST.

No colour image set can be downloaded on the machines this project is measured on (no
internet but PyPI), so the RGB recipes of docs/recipes.md train on this one, which any
machine with MNIST can make bit for bit. Each image is one real MNIST training digit
(the first ``n`` of the training set, in its order), upscaled 28 -> 32 (bilinear), its
strokes painted in one colour and its background in another, both drawn per image from a
``torch.Generator`` seeded with ``seed``:

- foreground: hue uniform in [0, 1), saturation in [0.5, 1], value in [0.75, 1];
- background: hue the foreground's plus [0.25, 0.75) turns (never a neighbour on the colour
  wheel), saturation in [0.3, 1], value in [0.15, 0.6];
- a pair whose luma (ITU-R 601: 0.299 R + 0.587 G + 0.114 B) differs by less than 0.25 is
  drawn again, so the digit is brighter than its background in grey too (the score of
  ``benchmarks/recipes_images.py`` reads the luma).

Pixel = background + alpha * (foreground - background), alpha the digit's ink in [0, 1].
So the set has 10 classes and a colour variation a GAN must learn (two colours per image,
tied by the hue offset), but it is not a natural-image set: its figures say how a recipe
does on RGB data, not how it does on CIFAR-10.

    TORCHGAN_LITE_DATA=/work/shared/data python benchmarks/make_colour_digits.py     # runs/colour_digits/

writes ``<out>/<digit>/<index>.png`` (``index``: the digit's position in MNIST's training
set), which :func:`torchgan_lite.load_images` reads as 10 classes named ``"0"``-``"9"``, and
``<out>/manifest.json`` with the options.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from torchgan_lite import mnist_with_labels
from torchgan_lite.utils.checks import check_int, check_path

__all__ = ["BACKGROUND", "FOREGROUND", "MIN_LUMA_GAP", "colour_digits", "draw_colours", "luma", "main",
           "write_folder"]

#: (hue, saturation, value) ranges of the strokes' colour; the hue is uniform over the wheel.
FOREGROUND = {"hue": (0.0, 1.0), "saturation": (0.5, 1.0), "value": (0.75, 1.0)}
#: The background's: its hue is the foreground's plus ``hue_offset`` turns.
BACKGROUND = {"hue_offset": (0.25, 0.75), "saturation": (0.3, 1.0), "value": (0.15, 0.6)}
#: The least luma by which the strokes are brighter than the background.
MIN_LUMA_GAP = 0.25
IMAGE_SIZE = 32


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of colours ``(..., 3)`` in [0, 1]: ``(...)``."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype, device=rgb.device)
    return rgb @ weights


def _uniform(n: int, bounds: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(n, generator=gen, dtype=torch.float64)  # (n,)


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # the standard library's conversion, one colour at a time: (n,) x3 -> (n, 3)
    return torch.tensor([colorsys.hsv_to_rgb(*c) for c in zip(h.tolist(), s.tolist(), v.tolist())],
                        dtype=torch.float64).reshape(-1, 3)


def draw_colours(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` (foreground, background) colour pairs ``(n, 3)``, ``(n, 3)`` in [0, 1], float64.

    Pairs whose luma gap is under :data:`MIN_LUMA_GAP` are drawn again (from ``gen``, in order),
    so the result depends on ``gen``'s seed alone.
    """
    check_int("n", n, 0)
    fg = torch.empty(n, 3, dtype=torch.float64)
    bg = torch.empty(n, 3, dtype=torch.float64)
    todo = torch.arange(n)
    while todo.numel():
        m = todo.numel()
        hue = _uniform(m, FOREGROUND["hue"], gen)
        f = _hsv_to_rgb(hue, _uniform(m, FOREGROUND["saturation"], gen), _uniform(m, FOREGROUND["value"], gen))
        bg_hue = (hue + _uniform(m, BACKGROUND["hue_offset"], gen)) % 1.0
        b = _hsv_to_rgb(bg_hue, _uniform(m, BACKGROUND["saturation"], gen), _uniform(m, BACKGROUND["value"], gen))
        ok = luma(f) - luma(b) >= MIN_LUMA_GAP  # (m,)
        fg[todo[ok]], bg[todo[ok]] = f[ok], b[ok]
        todo = todo[~ok]
    return fg, bg


def colour_digits(digits: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Paint MNIST digits: ``(N, 1, 28, 28)`` in [-1, 1] -> uint8 ``(N, 3, 32, 32)``.

    Args:
        digits: Grey digits, white (1) ink on black (-1), as :func:`torchgan_lite.mnist` gives them.
        seed: Seeds the colours (one ``torch.Generator``; the global RNG is untouched).
    """
    if not isinstance(digits, torch.Tensor) or digits.dim() != 4 or digits.shape[1] != 1:
        raise ValueError(f"digits must be a (N, 1, H, W) tensor, got "
                         f"{tuple(digits.shape) if isinstance(digits, torch.Tensor) else type(digits).__name__}")
    check_int("seed", seed, 0)
    fg, bg = draw_colours(digits.shape[0], torch.Generator().manual_seed(seed))  # (N, 3) each
    ink = F.interpolate(digits.double().add(1).div(2), size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                        align_corners=False).clamp(0, 1)  # (N, 1, 32, 32) in [0, 1]
    rgb = bg[:, :, None, None] + ink * (fg - bg)[:, :, None, None]  # (N, 3, 32, 32) in [0, 1]
    return rgb.mul(255).round().clamp(0, 255).to(torch.uint8)


def write_folder(images: torch.Tensor, labels: torch.Tensor, out: str | Path, indices: torch.Tensor | None = None,
                 manifest: dict[str, object] | None = None) -> Path:
    """Write uint8 ``(N, 3, H, W)`` images as ``out/<label>/<index>.png`` (index zero-padded to 5 digits).

    Args:
        images: The images.
        labels: Their classes ``(N,)``: the sub-folder of each.
        out: The folder (created); existing files of the same names are overwritten.
        indices: The number in each file's name; None: ``0 .. N-1``.
        manifest: Written as ``out/manifest.json`` when given.
    """
    folder = check_path("out", out)
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    indices = torch.arange(images.shape[0]) if indices is None else indices
    for digit in sorted(set(labels.tolist())):
        (folder / str(digit)).mkdir(parents=True, exist_ok=True)
    pixels = images.permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, 3)
    for pixel, label, index in zip(pixels, labels.tolist(), indices.tolist()):
        Image.fromarray(pixel, mode="RGB").save(folder / str(label) / f"{index:05d}.png")
    if manifest is not None:
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/colour_digits"), help="folder (default: %(default)s)")
    p.add_argument("-n", "--n", type=int, default=20000,
                   help="images: the first N MNIST training digits (default: %(default)s; at most 60000)")
    p.add_argument("--seed", type=int, default=0, help="seeds the colours (default: %(default)s)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 1 <= args.n <= 60000:
        sys.exit(f"error: --n must lie in [1, 60000] (MNIST's training digits), got {args.n}")
    if args.seed < 0:
        sys.exit(f"error: --seed must be >= 0, got {args.seed}")
    digits, labels = mnist_with_labels()  # (60000, 1, 28, 28) in [-1, 1], (60000,)
    digits, labels = digits[: args.n], labels[: args.n]
    images = colour_digits(digits, seed=args.seed)  # (n, 3, 32, 32) uint8
    manifest = {"what": "MNIST training digits 0..n-1, upscaled to 32x32, strokes and background coloured "
                        "(benchmarks/make_colour_digits.py)", "n": args.n, "seed": args.seed,
                "image_size": IMAGE_SIZE, "foreground_hsv": FOREGROUND, "background_hsv": BACKGROUND,
                "min_luma_gap": MIN_LUMA_GAP}
    folder = write_folder(images, labels, args.out, manifest=manifest)
    print(f"wrote {args.n} images of 3x{IMAGE_SIZE}x{IMAGE_SIZE} in 10 class folders under {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
