"""Device-resident data: MNIST read once into one tensor, and a loader that batches it.

The tutorial this library replaces converts every image from PIL and normalises it
one at a time, every epoch (about 2.3 s an epoch on a 2-core CPU before any
training happens). Here the whole training set is decoded once into a single
``(N, 1, 28, 28)`` float32 tensor in [-1, 1], moved to the training device, and
:class:`TensorLoader` serves batches from it with one ``randperm`` per epoch and
an ``index_select`` per batch: no transforms, no worker processes, no copies
from host to device inside the loop.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from torchgan_lite.utils.paths import user_cache_dir

__all__ = ["DATA_ENV_VAR", "default_cache_dir", "mnist", "mnist_with_labels", "resolve_data_root"]

DATA_ENV_VAR = "TORCHGAN_LITE_DATA"
_MNIST_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def default_cache_dir() -> Path:
    """The user cache folder MNIST is downloaded into: ``$XDG_CACHE_HOME/torchgan_lite``, else
    ``~/.cache/torchgan_lite`` (the same folder whatever the working directory)."""
    return user_cache_dir()


def resolve_data_root(root: str | os.PathLike[str] | None = None) -> tuple[Path, bool]:
    """Pick the folder MNIST is read from.

    Args:
        root: An explicit folder. Wins over everything else.

    Returns:
        ``(folder, download)``: the argument if given, else ``$TORCHGAN_LITE_DATA``,
        else :func:`default_cache_dir`; ``download`` is True only for the cache
        folder, the one place the library may write.
    """
    if root is not None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a path (str or os.PathLike) or None, got {type(root).__name__}")
        return Path(root), False
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env), False
    return default_cache_dir(), True


def _load_mnist(root: str | os.PathLike[str] | None, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Read MNIST as uint8 images ``(N, 28, 28)`` and int64 labels ``(N,)``."""
    if not isinstance(train, bool):
        raise TypeError(f"train must be a bool, got {train!r}")
    folder, download = resolve_data_root(root)
    raw = folder / "MNIST" / "raw"
    present = all((raw / name).exists() or (raw / (name + ".gz")).exists() for name in _MNIST_FILES[train])
    if not present and not download:
        source = "the root argument" if root is not None else f"${DATA_ENV_VAR}"
        raise FileNotFoundError(
            f"MNIST not found: looked for {raw}/{_MNIST_FILES[train][0]} (folder from {source}). "
            f"Point root=... or ${DATA_ENV_VAR} at a folder holding MNIST/raw/ in torchvision's layout, "
            f"or unset both to download into {default_cache_dir()}."
        )
    from torchvision.datasets import MNIST  # imported late: torchvision is only needed here

    try:
        ds = MNIST(root=str(folder), train=train, download=download)
    except RuntimeError as err:  # torchvision's "Dataset not found" or a failed download
        raise FileNotFoundError(
            f"MNIST could not be read or downloaded into {folder}: {err}. "
            f"Set ${DATA_ENV_VAR} or pass root=... to a folder holding MNIST/raw/."
        ) from err
    return ds.data, ds.targets


def _to_unit_range(images_u8: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    # ToTensor() then Normalize(0.5, 0.5), done once for the whole set: x / 255 * 2 - 1.
    x = images_u8.to(device=device, dtype=torch.float32).unsqueeze(1)  # (N, 1, 28, 28)
    return x.div_(127.5).sub_(1.0)


def mnist(
    root: str | os.PathLike[str] | None = None, train: bool = True, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """MNIST images as one float32 tensor ``(N, 1, 28, 28)`` in [-1, 1] on ``device``.

    Equal to torchvision's ``ToTensor()`` then ``Normalize(0.5, 0.5)`` image by image,
    computed once for the whole set.

    Args:
        root: Folder holding ``MNIST/raw/`` (torchvision's layout). ``None``: the
            environment variable ``TORCHGAN_LITE_DATA``, else a download into
            :func:`default_cache_dir` (``~/.cache/torchgan_lite``).
        train: The 60,000 training images (True) or the 10,000 test images (False).
        device: Where the tensor lives; put it on the training device once.

    Raises:
        FileNotFoundError: the data is not where it was looked for (the message says
            where, and how to point the library at it).
    """
    images, _ = _load_mnist(root, train)
    return _to_unit_range(images, device)


def mnist_with_labels(
    root: str | os.PathLike[str] | None = None, train: bool = True, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`mnist`, plus the int64 labels ``(N,)`` on the same device."""
    images, labels = _load_mnist(root, train)
    return _to_unit_range(images, device), labels.to(device=device, dtype=torch.int64)
