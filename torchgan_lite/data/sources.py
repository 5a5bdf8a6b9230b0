"""``load_images``: a folder of images or a torchvision data set by name, as one uint8 :class:`ImageSet`.

A folder is decoded once (:mod:`torchgan_lite.data.images`) and cached on disk, keyed by its
sorted file list with sizes and modification times and by the options; a second load reads
the cache (seconds), a changed folder is decoded again, and a damaged cache file (truncated,
or content that fails its sha256) is rebuilt with a warning. The cache file is written to a
temporary name and renamed into place. Named sets come through torchvision's dataset classes from
``$TORCHGAN_LITE_DATA`` (else ``~/.cache/torchgan_lite``), as :func:`~torchgan_lite.mnist` finds MNIST.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from torchgan_lite.data.images import (
    RESIZE_METHOD,
    ImageSet,
    check_options,
    decode_items,
    list_images,
    open_image_file,
)
from torchgan_lite.data.mnist import DATA_ENV_VAR, default_cache_dir, resolve_data_root
from torchgan_lite.utils.atomic import atomic_open
from torchgan_lite.utils.checks import check_int, check_path, describe
from torchgan_lite.utils.paths import CACHE_ENV_VAR, cache_dir

__all__ = ["CACHE_FORMAT", "NAMED_SETS", "load_images"]

CACHE_FORMAT = "torchgan_lite.images/1"  # bump when the decoding or the file changes: old caches are rebuilt


@dataclass(frozen=True)
class _Named:
    cls: str  # the torchvision.datasets class
    splits: tuple[str, ...]  # the first is the default
    layout: str  # what torchvision expects under the root, for the "not found" message
    by_train_flag: bool = False  # the class takes train=bool rather than split=str


NAMED_SETS: dict[str, _Named] = {
    "mnist": _Named("MNIST", ("train", "test"), "MNIST/raw/", True),
    "fashion-mnist": _Named("FashionMNIST", ("train", "test"), "FashionMNIST/raw/", True),
    "cifar10": _Named("CIFAR10", ("train", "test"), "cifar-10-batches-py/", True),
    "cifar100": _Named("CIFAR100", ("train", "test"), "cifar-100-python/", True),
    "svhn": _Named("SVHN", ("train", "test", "extra"), "train_32x32.mat (test_32x32.mat, extra_32x32.mat)"),
    "celeba": _Named("CelebA", ("train", "valid", "test", "all"), "celeba/img_align_celeba/ and its .txt files"),
    "stl10": _Named("STL10", ("train", "test", "unlabeled", "train+unlabeled"), "stl10_binary/"),
}


def load_images(source: str | os.PathLike[str], image_size: int | None = None, channels: int | None = None, *,
                subset: str | None = None, limit: int | None = None, cache_dir: str | os.PathLike[str] | None = None,
                on_error: str = "skip", download: bool = False, root: str | os.PathLike[str] | None = None,
                background: str = "black", num_threads: int | None = None) -> ImageSet:
    """Turn an image source into uint8 images ``(N, C, H, W)`` for :class:`~torchgan_lite.TensorLoader`.

    Hold the result on the training device once (``ImageSet.to(device)``); the loader converts
    each batch there to float in [-1, 1] (``ImageSet.loader(...)``).

    Args:
        source: A folder of images (``.png .jpg .jpeg .webp .bmp``, any case; the first-level
            sub-folders, sorted, are the classes, as torchvision's ``ImageFolder``; images only at
            the top: unlabelled) or a set name: ``mnist``, ``fashion-mnist``, ``cifar10``,
            ``cifar100``, ``svhn``, ``celeba``, ``stl10`` (any case). A name (a ``str``) always
            means the set: write ``./mnist`` or pass a ``Path`` for a folder so named.
        image_size: Resize every image's short side to it (Lanczos, antialiased) and crop the centre
            square; smaller images are upscaled, with one warning counting them. None: keep the
            size, which every image must share.
        channels: 1 (grey, ITU-R 601 luma) or 3 (RGB; grey repeated); None: 1 if every image is
            grey, else 3. Modes are converted once, said in one warning with counts: transparency
            is composited over ``background``, 16-bit scaled to 8 bits, palettes, CMYK... to RGB.
        subset: A named set's split (default ``train``; e.g. ``test``, SVHN's ``extra``, STL-10's
            ``unlabeled``). Must be None for a folder.
        limit: Keep only this many images, evenly spaced over the set (every class kept), e.g.
            for a quick try.
        cache_dir: Where a folder's (and CelebA's) decoded images are cached; None:
            ``$TORCHGAN_LITE_CACHE/images``, else ``~/.cache/torchgan_lite/images``. The other named
            sets are arrays already and are not cached.
        on_error: ``"skip"`` (default): leave out unreadable or truncated images, with one warning
            naming and counting them; ``"raise"``: refuse with ``ValueError`` naming the first.
        download: Let torchvision download a named set that is missing.
        root: The folder named sets are read from (and downloaded into); None: ``$TORCHGAN_LITE_DATA``,
            else ``~/.cache/torchgan_lite``.
        background: ``"black"`` (default) or ``"white"``: what transparent pixels become.
        num_threads: Decoding threads (Pillow decodes outside the GIL); None: the CPUs, at most 8.

    Raises:
        ValueError: a source that is neither a folder nor a known name (the names are listed), a
            folder without images, an unreadable image with ``on_error="raise"``, images of
            different sizes without ``image_size``, or a bad argument (named).
        FileNotFoundError: a named set that is not under its root and cannot be downloaded (the
            message says where it looked and how to get it).
    """
    check_options(image_size, channels, background)
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {describe(on_error)}")
    if limit is not None:
        check_int("limit", limit, 1)
    if num_threads is not None:
        check_int("num_threads", num_threads, 1)
    if not isinstance(download, bool):
        raise TypeError(f"download must be a bool, got {describe(download)}")
    if isinstance(source, str) and _set_name(source) in NAMED_SETS:
        return _load_named(_set_name(source), image_size, channels, subset, limit, download, root, background,
                           num_threads, cache_dir, on_error)
    folder = check_path("source", source)
    if not folder.exists():
        raise ValueError(f"source {str(source)!r} is neither a folder nor a known data set name "
                         f"({', '.join(NAMED_SETS)})")
    if subset is not None:
        raise ValueError(f"subset={subset!r} selects a split of a named data set; a folder has none (pass "
                         "subset=None, or point source at the split's folder)")
    files, labels, classes = list_images(folder)
    picked = _spread(len(files), limit)
    files = [files[i] for i in picked]
    labels = None if labels is None else [labels[i] for i in picked]
    options = {"image_size": image_size, "channels": channels, "background": background, "limit": limit}
    cache = _cache_path(cache_dir, folder.resolve(), options)
    return _cached_decode(cache, folder, files, labels, classes, options, on_error, num_threads)


def _set_name(text: str) -> str:
    return text.strip().lower().replace("_", "-")


def _spread(n: int, limit: int | None) -> list[int]:
    """``limit`` indices evenly spaced over ``range(n)`` (all of them when ``limit`` is None or >= n)."""
    if limit is None or limit >= n:
        return list(range(n))
    return [i * n // limit for i in range(limit)]


# --------------------------------------------------------------------------- the cache


def _cache_path(folder: str | os.PathLike[str] | None, source: Path, options: dict[str, Any]) -> Path:
    base = check_path("cache_dir", folder) if folder is not None else cache_dir() / "images"
    ident = hashlib.sha256(json.dumps([str(source), options], sort_keys=True).encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", source.name)[:40] or "root"
    return base / f"{stem}-{ident}.pt"


def _fingerprint(root: Path, files: list[Path], options: dict[str, Any]) -> str:
    """sha256 of the sorted file list (relative names, sizes, mtimes) and the options: any change changes it."""
    h = hashlib.sha256(json.dumps({"format": CACHE_FORMAT, "resize": RESIZE_METHOD, **options}, sort_keys=True)
                       .encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _checksum(images: torch.Tensor, labels: torch.Tensor | None) -> str:
    h = hashlib.sha256(images.contiguous().numpy().data.cast("B"))
    if labels is not None:
        h.update(labels.contiguous().numpy().data.cast("B"))
    return h.hexdigest()


def _read_cache(path: Path, key: str, stacklevel: int) -> dict[str, Any] | None:
    """The cached entry for ``key``, or None (absent, stale, or damaged: rebuilt, with a warning when damaged)."""
    if not path.is_file():
        return None
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT:
            return None  # another version's cache: rebuilt quietly
        if entry.get("key") != key:
            return None  # the folder or the options changed
        if _checksum(entry["images"], entry["labels"]) != entry["checksum"]:
            raise ValueError("its checksum does not match its content")
        return entry
    except Exception as err:  # a truncated or corrupt file: torch.load raises many kinds
        warnings.warn(f"the image cache {path} is damaged ({type(err).__name__}: {err}); decoding the images again "
                      "and rewriting it", stacklevel=stacklevel)
        return None


def _write_cache(path: Path, entry: dict[str, Any], stacklevel: int) -> None:
    """Write ``entry`` atomically (:func:`~torchgan_lite.utils.atomic.atomic_open`): a reader (another
    process loading the same folder) sees the old file or the new one, never a torn one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as f:
            torch.save(entry, f)
    except OSError as err:  # the images are decoded: a cache that cannot be written is no reason to stop
        warnings.warn(f"cannot write the image cache {path}: {err}; the images are not cached (pass "
                      f"cache_dir=... or set ${CACHE_ENV_VAR} to a writable folder)", stacklevel=stacklevel)


def _cached_decode(cache: Path, folder: Path, files: list[Path], labels: list[int] | None, classes: list[str],
                   options: dict[str, Any], on_error: str, num_threads: int | None, stacklevel: int = 3) -> ImageSet:
    """Decode ``files`` or read them from ``cache``; warnings are issued ``stacklevel`` frames up (the user's call)."""
    where = f"folder {folder}"
    key = _fingerprint(folder, files, options)
    entry = _read_cache(cache, key, stacklevel + 1)
    if entry is not None:
        if entry["skipped"] and on_error == "raise":
            raise ValueError(f"cannot read image {folder / entry['skipped'][0]} (found unreadable when this folder "
                             "was cached); fix or remove it, or pass on_error='skip'")
        for note in entry["notes"]:
            warnings.warn(note, stacklevel=stacklevel)
        return ImageSet(entry["images"], entry["labels"], list(entry["classes"]), entry["source"])
    names = [str(f) for f in files]
    images, kept, notes = decode_items(files, names, open_image_file, image_size=options["image_size"],
                                       channels=options["channels"], background=options["background"],
                                       on_error=on_error, num_threads=num_threads, describe_source=where,
                                       stacklevel=stacklevel)
    label_t = None if labels is None else torch.tensor([labels[i] for i in kept], dtype=torch.int64)
    kept_set = set(kept)
    skipped = [files[i].relative_to(folder).as_posix() for i in range(len(files)) if i not in kept_set]
    source = f"{where} ({len(kept)} images" + (f", {len(classes)} classes)" if classes else ", unlabelled)")
    _write_cache(cache, {"format": CACHE_FORMAT, "key": key, "images": images, "labels": label_t,
                         "classes": classes, "source": source, "notes": notes, "skipped": skipped,
                         "checksum": _checksum(images, label_t)}, stacklevel + 1)
    return ImageSet(images, label_t, classes, source)


# --------------------------------------------------------------------------- named sets


def _torchvision_set(name: str, spec: _Named, split: str, folder: Path, download: bool, from_where: str) -> Any:
    import torchvision.datasets  # imported late: only named sets need it

    cls = getattr(torchvision.datasets, spec.cls)
    kwargs: dict[str, Any] = {"train": split == "train"} if spec.by_train_flag else {"split": split}
    if name == "celeba":
        kwargs["target_type"] = []  # the images only: no attribute targets are read
    how = (f"from Python, pass download=True to fetch it into {folder}; torchgan-lite-train fetches it by "
           f"itself into the user cache folder ({default_cache_dir()}) when neither --data-root nor "
           f"${DATA_ENV_VAR} is set; or point ${DATA_ENV_VAR} or root=... (--data-root) at a folder holding "
           f"{spec.layout} in torchvision's layout")
    # Not found: torchvision's RuntimeError; a failed download: URLError, HTTPError, BadZipFile, gdown's errors...
    expected: tuple[type[Exception], ...] = (Exception,) if download else (RuntimeError, OSError)
    try:
        return cls(root=str(folder), download=download, **kwargs)
    except expected as err:
        if download:
            raise FileNotFoundError(f"{name} ({split}) could not be downloaded into {folder} ({from_where}): "
                                    f"{type(err).__name__}: {err}. Download it by hand into {folder} "
                                    f"({spec.layout}) or point ${DATA_ENV_VAR} or root=... (--data-root) at a "
                                    "copy") from err
        raise FileNotFoundError(f"{name} ({split}) not found in {folder} ({from_where}): looked for "
                                f"{folder / spec.layout.split(' ')[0]}; {how}") from err


def _arrays(name: str, ds: Any) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
    """A torchvision set's own arrays: uint8 ``(N, C, H, W)``, labels ``(N,)`` or None, class names."""
    if name in ("mnist", "fashion-mnist"):
        images = torch.as_tensor(ds.data).unsqueeze(1)  # (N, 28, 28) -> (N, 1, 28, 28)
        return images, torch.as_tensor(ds.targets, dtype=torch.int64), list(ds.classes)
    if name in ("cifar10", "cifar100"):
        images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2)  # (N, H, W, 3) -> (N, 3, H, W)
        return images.contiguous(), torch.as_tensor(ds.targets, dtype=torch.int64), list(ds.classes)
    labels = torch.as_tensor(np.asarray(ds.labels), dtype=torch.int64)
    classes = list(getattr(ds, "classes", [])) or [str(i) for i in range(10)]  # SVHN has no names: its digits
    images = torch.from_numpy(np.ascontiguousarray(ds.data))  # (N, 3, H, W)
    return images, (None if bool((labels < 0).any()) else labels), classes  # STL-10's unlabeled split: -1


def _load_named(name: str, image_size: int | None, channels: int | None, subset: str | None, limit: int | None,
                download: bool, root: str | os.PathLike[str] | None, background: str, num_threads: int | None,
                cache_folder: str | os.PathLike[str] | None, on_error: str) -> ImageSet:
    spec = NAMED_SETS[name]
    split = spec.splits[0] if subset is None else subset
    if split not in spec.splits:
        raise ValueError(f"subset={subset!r} is not a split of {name}: choose one of {', '.join(spec.splits)}")
    folder, _ = resolve_data_root(root)
    from_where = "the root argument" if root is not None else (
        f"${DATA_ENV_VAR}" if os.environ.get(DATA_ENV_VAR) else "the default folder")
    ds = _torchvision_set(name, spec, split, folder, download, from_where)
    source = f"{name} ({split}) from {folder}"
    if name == "celeba":  # JPEG files: decoded (and cached) as a folder is
        img_dir = Path(ds.root) / ds.base_folder / "img_align_celeba"
        files = [img_dir / f for f in ds.filename]
        files = [files[i] for i in _spread(len(files), limit)]
        options = {"image_size": image_size, "channels": channels, "background": background, "limit": limit,
                   "split": split}
        cache = _cache_path(cache_folder, img_dir.resolve(), options)
        got = _cached_decode(cache, img_dir, files, None, [], options, on_error, num_threads, stacklevel=4)
        return ImageSet(got.images, None, [], f"{source} ({len(got)} images, unlabelled)")
    images, labels, classes = _arrays(name, ds)
    picked = _spread(images.shape[0], limit)
    if len(picked) < images.shape[0]:
        index = torch.tensor(picked, dtype=torch.int64)
        images, labels = images.index_select(0, index), None if labels is None else labels.index_select(0, index)
    native_c, h, w = images.shape[1:]
    if (image_size is None or (h, w) == (image_size, image_size)) and channels in (None, native_c):
        return ImageSet(images.contiguous(), labels, classes, source)  # the set's own pixels, untouched
    items = list(range(images.shape[0]))
    hwc = images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C): Pillow's layout, a view

    def opener(i: int) -> Image.Image:
        return Image.fromarray(hwc[i, :, :, 0] if native_c == 1 else hwc[i])  # uint8 (H, W): L; (H, W, 3): RGB

    out, _, _ = decode_items(items, [f"{source}[{i}]" for i in items], opener, image_size=image_size,
                             channels=channels, background=background, on_error="raise", num_threads=num_threads,
                             describe_source=source, stacklevel=3)
    return ImageSet(out, labels, classes, source)
