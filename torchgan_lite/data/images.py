"""Images from a folder, decoded once with Pillow into one uint8 tensor, or on the fly for sets too big for memory.

- :class:`ImageSet`: what :func:`~torchgan_lite.load_images` returns: uint8 images ``(N, C, H, W)``,
  int64 labels ``(N,)`` or None, the class names and a description of the source.
- :func:`list_images`: the files of a folder and their classes, as torchvision's ``ImageFolder``
  finds them (the first-level sub-folders, sorted, are the classes; the files inside each are
  walked recursively in sorted order); a folder with images at its top level only is one
  unlabelled set.
- :func:`decode_image`: one image to a uint8 array, every image the same way: modes converted to
  grey ``L`` or ``RGB`` (transparency composited over a black or white background, 16-bit scaled
  to 8), the short side resized to ``image_size`` with Lanczos filtering and the centre cropped
  square, in one resampling.
- :class:`ImageFolderDataset`: a map-style ``Dataset`` doing the same per item, for
  :class:`~torchgan_lite.StatefulLoader`.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from torchgan_lite.data.tensor_loader import TensorLoader
from torchgan_lite.utils.checks import check_int, check_path, describe

__all__ = ["BACKGROUNDS", "IMAGE_EXTENSIONS", "RESIZE_METHOD", "ImageFolderDataset", "ImageSet", "check_options",
           "decode_image", "decode_items", "list_images", "open_image_file"]

IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".webp")  # matched case-insensitively
BACKGROUNDS = ("black", "white")  # what transparent pixels are composited over
RESIZE_METHOD = "lanczos3-box-centre-draft2"  # names the resampling below; part of the cache key
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_MAX_LISTED = 5  # file names quoted in a warning or an error

ItemOpener = Callable[[Any], Image.Image]


@dataclass(eq=False)
class ImageSet:
    """Decoded images held as uint8, converted to [-1, 1] per batch on the device by :class:`TensorLoader`.

    Attributes:
        images: uint8 ``(N, C, H, W)`` with ``C`` 1 (grey) or 3 (RGB).
        labels: int64 ``(N,)`` class indices into ``classes``, or None for an unlabelled set.
        classes: The class names (index order); empty when unlabelled.
        source: Where the images came from, in words (a folder, a named set and its split).
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    classes: list[str] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise TypeError(f"images must be a uint8 tensor (N, C, H, W), got {describe(self.images)}")
        if self.labels is not None and (not isinstance(self.labels, torch.Tensor) or self.labels.dtype != torch.int64
                                        or tuple(self.labels.shape) != (self.images.shape[0],)):
            raise TypeError(f"labels must be None or an int64 tensor ({self.images.shape[0]},), "
                            f"got {describe(self.labels)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image: the generator's ``out_shape``."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def to(self, device: torch.device | str) -> ImageSet:
        """This set with its tensors on ``device`` (once, before training)."""
        labels = None if self.labels is None else self.labels.to(device)
        return ImageSet(self.images.to(device), labels, list(self.classes), self.source)

    def loader(self, batch_size: int = 128, *, with_labels: bool = False, **kwargs: Any) -> TensorLoader:
        """A :class:`TensorLoader` over these images (and labels when ``with_labels``); ``kwargs`` go to it
        (``shuffle``, ``drop_last``, ``generator``, ``hflip``...)."""
        if with_labels:
            if self.labels is None:
                raise ValueError(f"with_labels=True but {self.source or 'this set'} has no labels (one folder of "
                                 "images, no class sub-folders)")
            return TensorLoader(self.images, self.labels, batch_size=batch_size, **kwargs)
        return TensorLoader(self.images, batch_size=batch_size, **kwargs)


# --------------------------------------------------------------------------- finding the files


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _walk_images(folder: str) -> list[Path]:
    # torchvision's make_dataset order: sorted(os.walk(...)), then sorted file names in each folder.
    return [Path(root, name) for root, _, names in sorted(os.walk(folder, followlinks=True))
            for name in sorted(names) if _is_image(name)]


def list_images(root: str | os.PathLike[str]) -> tuple[list[Path], list[int] | None, list[str]]:
    """The image files of a folder, in order, with their class indices and the class names.

    Classes are the first-level sub-folders, sorted by name, exactly as ``ImageFolder`` finds
    them; the files under each are found recursively in ``ImageFolder``'s order. Images lying
    beside class folders at the top level are left out (as ``ImageFolder`` does) with a warning.
    A folder whose sub-folders hold no images is one unlabelled set of its top-level images.

    Returns:
        ``(files, labels, classes)``; ``labels`` is None (and ``classes`` empty) when unlabelled.

    Raises:
        ValueError: ``root`` is not a folder, holds no images, or a class folder holds none.
    """
    folder = check_path("source", root)
    if not folder.is_dir():
        raise ValueError(f"source {str(folder)!r} is not a folder" + (" (it is a file)" if folder.exists() else ""))
    entries = sorted(os.scandir(folder), key=lambda e: e.name)
    classes = sorted(e.name for e in entries if e.is_dir())
    top = sorted(Path(e.path) for e in entries if e.is_file() and _is_image(e.name))
    per_class = {name: _walk_images(os.path.join(folder, name)) for name in classes}
    if not any(per_class.values()):
        if not top:
            raise ValueError(f"source folder {str(folder)!r} holds no images: looked for "
                             f"{', '.join(IMAGE_EXTENSIONS)} (any case) in it and its sub-folders")
        return top, None, []
    empty = [name for name in classes if not per_class[name]]
    if empty:
        raise ValueError(f"source folder {str(folder)!r}: class folder(s) {', '.join(map(repr, empty))} hold no "
                         f"images ({', '.join(IMAGE_EXTENSIONS)}): remove them or add images")
    if top:
        warnings.warn(f"{len(top)} image(s) at the top of {folder} (e.g. {top[0].name}) are not in a class "
                      "folder and are left out, as torchvision's ImageFolder does", stacklevel=3)
    files = [f for name in classes for f in per_class[name]]
    labels = [i for i, name in enumerate(classes) for _ in per_class[name]]
    return files, labels, classes


# --------------------------------------------------------------------------- decoding one image


def _to_8bit_grey(img: Image.Image) -> Image.Image:
    a = np.asarray(img)
    if img.mode == "F":  # (H, W) float32, taken as 0..255
        out = np.clip(np.rint(a), 0, 255)
    else:  # 16-bit (or 32-bit int holding 16-bit values): 0..65535 -> 0..255, rounded
        out = (np.clip(a.astype(np.int64), 0, 65535) * 255 + 32767) // 65535
    return Image.fromarray(out.astype(np.uint8))  # uint8 (H, W): mode L


def _composite(img: Image.Image, grey: bool, background: str) -> Image.Image:
    mode = "L" if grey else "RGB"
    colour = 0 if background == "black" else 255
    rgba = img.convert("LA" if grey else "RGBA")
    base = Image.new(mode, rgba.size, colour if grey else (colour,) * 3)
    base.paste(rgba.convert(mode), mask=rgba.getchannel("A"))
    return base


def _base_image(img: Image.Image, background: str) -> tuple[Image.Image, str | None]:
    """``img`` as 8-bit ``L`` or ``RGB``; and the conversion in words (None when none was needed)."""
    mode = img.mode
    transparent = mode in ("LA", "La", "RGBA", "RGBa", "PA") or "transparency" in img.info
    if mode in ("L", "RGB") and not transparent:
        return img, None
    if transparent:
        grey = mode in ("L", "LA", "La")
        out = _composite(img, grey, background)
        what = f"{mode}->{'L' if grey else 'RGB'} (over {background})"
    elif mode.startswith("I") or mode == "F":
        return _to_8bit_grey(img), f"{mode}->L (scaled to 8 bits)"
    elif mode == "1":
        return img.convert("L"), "1->L"
    else:  # P, CMYK, YCbCr, HSV, LAB, RGBX...
        out, what = img.convert("RGB"), f"{mode}->RGB"
    if mode in ("P", "PA"):
        a = np.asarray(out)  # (H, W, 3)
        if (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all():  # a grey palette
            return out.getchannel("R"), what.replace("->RGB", "->L (grey palette)", 1)
    return out, what


def _fit(img: Image.Image, image_size: int) -> tuple[Image.Image, bool]:
    """Short side to ``image_size`` and the centre square, in one Lanczos resampling; ``True`` if enlarged."""
    w, h = img.size
    s = min(w, h)
    if (w, h) == (image_size, image_size):
        return img, False
    box = ((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2)  # the centred square, in source pixels
    out = img.resize((image_size, image_size), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    return out, s < image_size


def decode_image(img: Image.Image, image_size: int | None = None, channels: int | None = None,
                 background: str = "black") -> tuple[np.ndarray, str | None, bool]:
    """One opened image as uint8 ``(H, W)`` (grey) or ``(H, W, 3)``, converted as every image of a set is.

    Args:
        img: An opened Pillow image (not yet loaded: a JPEG is then decoded at a reduced scale
            when that still leaves at least twice ``image_size``).
        image_size: Resize the short side to it and crop the centre square; None keeps the size.
        channels: 1 converts colour to grey (ITU-R 601 luma, as Pillow's ``L``); 3 keeps colour
            (grey is widened by the caller); None keeps what the image is.
        background: ``"black"`` or ``"white"``: what transparent pixels become.

    Returns:
        ``(array, conversion, enlarged)``: the pixels, the mode conversion in words or None, and
        whether the image was smaller than ``image_size`` and was upscaled.
    """
    if image_size is not None and img.format == "JPEG":
        w, h = img.size
        k = 2 * image_size / min(w, h)
        if k < 1:
            img.draft(img.mode, (math.ceil(w * k), math.ceil(h * k)))
    img.load()
    img, what = _base_image(img, background)
    if channels == 1 and img.mode == "RGB":
        img, what = img.convert("L"), f"{what or 'RGB'}->L (luma)"
    enlarged = False
    if image_size is not None:
        img, enlarged = _fit(img, image_size)
    return np.array(img, dtype=np.uint8), what, enlarged  # a writable copy: torch.from_numpy shares it


# --------------------------------------------------------------------------- decoding a set


def open_image_file(path: Path) -> Image.Image:
    """``path`` opened (lazily: the header only) with Pillow."""
    return Image.open(path)


def _decode_item(opener: ItemOpener, item: Any, image_size: int | None, channels: int | None,
                 background: str) -> tuple[np.ndarray, str | None, bool] | str:
    """Decode one item, or return why it could not be read (a corrupt or truncated file, an unknown mode)."""
    try:
        with opener(item) as img:
            return decode_image(img, image_size, channels, background)
    except Exception as err:  # any failure of an untrusted file is reported by name, not raised
        return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _default_threads() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def decode_items(items: Sequence[Any], names: Sequence[str], opener: ItemOpener, *, image_size: int | None,
                 channels: int | None, background: str, on_error: str, num_threads: int | None,
                 describe_source: str, stacklevel: int = 2) -> tuple[torch.Tensor, list[int], list[str]]:
    """Decode ``items`` into one uint8 tensor ``(N, C, H, W)``; Pillow releases the GIL, so threads decode in parallel.

    Returns:
        ``(images, kept, notes)``: the images, the indices of ``items`` they came from (all but the
        unreadable ones) and the warnings already issued, in words, so a cached load can repeat them.
    """
    threads = _default_threads() if num_threads is None else num_threads
    decode = functools.partial(_decode_item, opener, image_size=image_size, channels=channels, background=background)
    if threads > 1 and len(items) > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            results = list(pool.map(decode, items, chunksize=16))
    else:
        results = [decode(item) for item in items]
    failed = [(names[i], r) for i, r in enumerate(results) if isinstance(r, str)]
    if failed and on_error == "raise":
        name, why = failed[0]
        more = f" ({len(failed) - 1} more unreadable)" if len(failed) > 1 else ""
        raise ValueError(f"cannot read image {name}: {why}{more}; fix or remove it, or pass on_error='skip'")
    decoded = [(i, r) for i, r in enumerate(results) if not isinstance(r, str)]
    if not decoded:
        raise ValueError(f"none of the {len(items)} images of {describe_source} could be read "
                         f"(e.g. {failed[0][0]}: {failed[0][1]})")
    notes: list[str] = []
    if failed:
        listed = ", ".join(name for name, _ in failed[:_MAX_LISTED]) + (", ..." if len(failed) > _MAX_LISTED else "")
        notes.append(f"skipped {len(failed)} unreadable image(s) of {describe_source}: {listed} "
                     f"(first: {failed[0][1]}); pass on_error='raise' to refuse instead")
    grey = sum(1 for _, (a, _, _) in decoded if a.ndim == 2)
    c = channels if channels is not None else (1 if grey == len(decoded) else 3)
    conversions = Counter(what for _, (_, what, _) in decoded if what)
    if c == 3 and grey:
        conversions["L->RGB (grey repeated: the set has colour images)"] += grey
    if conversions:
        notes.append(f"converted image modes in {describe_source}: "
                     + ", ".join(f"{what}: {n}" for what, n in sorted(conversions.items())))
    enlarged = sum(1 for _, (_, _, e) in decoded if e)
    if enlarged:
        notes.append(f"{enlarged} image(s) of {describe_source} are smaller than image_size={image_size} and were "
                     "upscaled (blurrier than the rest)")
    sizes = Counter(a.shape[:2] for _, (a, _, _) in decoded)
    if len(sizes) > 1:
        example: dict[tuple[int, ...], str] = {}
        for i, (a, _, _) in decoded:
            example.setdefault(a.shape[:2], names[i])
        listed = "; ".join(f"{hw[0]}x{hw[1]} (HxW): {n} image(s), e.g. {example[hw]}"
                           for hw, n in sizes.most_common(_MAX_LISTED))
        raise ValueError(f"the images of {describe_source} differ in size ({listed}): pass image_size=N "
                         "(--image-size N) to resize them all to N x N (short side resized, centre cropped)")
    h, w = next(iter(sizes))
    out = torch.empty((len(decoded), c, h, w), dtype=torch.uint8)  # (N, C, H, W)
    for j, (_, (a, _, _)) in enumerate(decoded):
        t = torch.from_numpy(a)
        out[j] = t if a.ndim == 2 else t.permute(2, 0, 1)  # (H, W) broadcasts over C; (H, W, 3) -> (3, H, W)
    for note in notes:  # each said once, ``stacklevel`` frames above the caller (as the caller counts)
        warnings.warn(note, stacklevel=stacklevel + 1)
    return out, [i for i, _ in decoded], notes


# --------------------------------------------------------------------------- decoding on the fly


class ImageFolderDataset(Dataset[Any]):
    """A folder of images decoded item by item (same order, classes and conversion as :func:`load_images`).

    For folders too big to hold in memory: wrap it in :class:`~torchgan_lite.StatefulLoader`
    (workers decode in parallel; its position is checkpointed). Items are uint8 ``(C, H, W)``
    tensors, or ``(image, label)`` when the folder has class sub-folders.

    Args:
        root: The folder (see :func:`list_images` for its layout).
        image_size: Short side resized to it and the centre cropped square. None: every image must
            already have the size of the first (an item of another size raises ``ValueError``).
        channels: 1 (grey) or 3 (RGB, the default: colour images are kept, grey ones repeated).
        background: ``"black"`` or ``"white"`` behind transparent pixels.

    Raises:
        ValueError: at construction, bad arguments or a folder with no images; on an item, an
            unreadable image (named) or one of another size when ``image_size`` is None.
    """

    def __init__(self, root: str | os.PathLike[str], image_size: int | None = None, channels: int = 3,
                 background: str = "black") -> None:
        check_options(image_size, channels, background)
        self.files, labels, self.classes = list_images(root)
        self.labels = labels
        self.image_size = image_size
        self.channels = channels
        self.background = background
        self._size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, int]:
        path = self.files[index]
        result = _decode_item(open_image_file, path, self.image_size, self.channels, self.background)
        if isinstance(result, str):
            raise ValueError(f"cannot read image {path}: {result}")
        a = result[0]
        if self.image_size is None:
            if self._size is None:
                self._size = a.shape[:2]
            elif a.shape[:2] != self._size:
                raise ValueError(f"image {path} is {a.shape[0]}x{a.shape[1]} (HxW) but the folder's images are "
                                 f"{self._size[0]}x{self._size[1]}: pass image_size=N (--image-size N) to resize "
                                 "them all")
        t = torch.from_numpy(a)
        img = t.expand(self.channels, *a.shape) if a.ndim == 2 else t.permute(2, 0, 1)  # (C, H, W)
        img = img.contiguous()
        return img if self.labels is None else (img, self.labels[index])


def check_options(image_size: object, channels: object, background: object) -> None:
    """Refuse a bad ``image_size`` (a positive int or None), ``channels`` (1, 3 or None) or ``background``."""
    if image_size is not None:
        check_int("image_size", image_size, 1)
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise ValueError(f"channels must be 1 (grey), 3 (RGB) or None (from the images), got {describe(channels)}")
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(map(repr, BACKGROUNDS))}, got {describe(background)}")
