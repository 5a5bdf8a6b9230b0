"""What a training run trains on, by default: its data (``--data``) and its networks (``--arch``).

Both are seams of :func:`torchgan_lite.cli.run.run`: a test or a script of its own passes
other ones (:data:`DataSource`, :data:`NetworkBuilder`).

- :func:`default_data`: ``--data mnist`` (at its own 1x28x28) is read as it always was
  (:func:`torchgan_lite.mnist`: one float tensor in [-1, 1], the reference recipe's numbers);
  every other source goes through :func:`torchgan_lite.load_images` (a folder of images or
  a set by name, decoded once and cached, uint8 images converted per batch by the loader).
- :func:`build_networks`: ``--arch mlp|dcgan|resnet`` at the images' shape, conditional on the
  data's classes with ``--conditional``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from torchgan_lite.cli.common import CLIError, about_option
from torchgan_lite.cli.options import NUM_CLASSES, is_named_set
from torchgan_lite.data import mnist
from torchgan_lite.data.images import ImageFolderDataset
from torchgan_lite.data.sources import load_images
from torchgan_lite.nets.conditional import conditional_mlp_discriminator, conditional_mlp_generator
from torchgan_lite.nets.dcgan import IMAGE_SIZES, dcgan_discriminator, dcgan_generator
from torchgan_lite.nets.mlp import mlp_discriminator, mlp_generator
from torchgan_lite.nets.resnet import RESNET_IMAGE_SIZES, resnet_discriminator, resnet_generator

__all__ = ["DataSource", "NetworkBuilder", "TrainingData", "build_networks", "default_data", "load_mnist"]


@dataclass(frozen=True)
class TrainingData:
    """The training set, on the CPU (the run moves it to the training device once).

    Attributes:
        images: ``(N, C, H, W)``: floats in [-1, 1], or uint8 (the loader converts each batch to [-1, 1]).
        labels: int64 classes ``(N,)``, or None for an unlabelled set.
        classes: The class names, in index order (empty: unnamed).
        source: Where the images came from, in words (for ``run.json`` and the metrics' cache).
        dataset: ``--stream``: the map-style data set the images are decoded from as they are batched
            (items ``(C, H, W)`` uint8, or ``(image, label)``); ``images`` then holds its first image
            only, for the shape. None: ``images`` is the whole set.
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    classes: tuple[str, ...] = ()
    source: str = ""
    dataset: Dataset[Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dim() != 4:
            raise TypeError(f"images must be a tensor (N, C, H, W), got "
                            f"{tuple(self.images.shape) if isinstance(self.images, torch.Tensor) else self.images!r}")
        if self.labels is not None and (self.labels.dtype != torch.int64 or tuple(self.labels.shape) != (len(self),)):
            raise TypeError(f"labels must be None or int64 ({len(self)},), got {self.labels.dtype} "
                            f"{tuple(self.labels.shape)}")

    def __len__(self) -> int:
        """How many training images (the data set's, when streamed)."""
        return len(self.dataset) if self.dataset is not None else int(self.images.shape[0])  # type: ignore[arg-type]

    def real_images(self, n: int) -> torch.Tensor:
        """Up to ``n`` training images ``(n, C, H, W)`` spread evenly over the set (streamed: decoded now)."""
        total = len(self)
        index = torch.linspace(0, total - 1, min(n, total)).round().long().unique()  # (<= n,)
        if self.dataset is None:
            return self.images[index]
        items = [self.dataset[int(i)] for i in index]
        return torch.stack([item[0] if isinstance(item, tuple) else item for item in items])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int | None:
        """The classes of a labelled set (its names, else the largest label + 1); None when unlabelled."""
        if self.labels is None:
            return None
        return len(self.classes) if self.classes else int(self.labels.max()) + 1


#: ``data(args) -> TrainingData``.
DataSource = Callable[[argparse.Namespace], TrainingData]
#: ``networks(args, image_shape (C, H, W), num_classes or None) -> (generator, discriminator)``.
NetworkBuilder = Callable[[argparse.Namespace, tuple[int, int, int], "int | None"], tuple[nn.Module, nn.Module]]


def load_mnist(data_root: Path | None, conditional: bool,
               device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor | None]:
    """MNIST's training set on ``device``: images ``(60000, 1, 28, 28)`` in [-1, 1], and labels ``(60000,)``."""
    if conditional:
        images, labels = mnist.mnist_with_labels(data_root, device=device)
        return images, labels
    return mnist.mnist(data_root, device=device), None


def default_data(args: argparse.Namespace) -> TrainingData:
    """The default :data:`DataSource`: ``--data`` (with ``--data-root``, ``--image-size``, ``--channels``)."""
    if getattr(args, "stream", False):
        return _streamed(args)
    flag, value = ("--data-root", args.data_root) if args.data_root is not None else ("--data", args.data)
    if args.data == "mnist" and args.image_size in (None, 28) and args.channels in (None, 1):
        with about_option(flag, value):  # FileNotFoundError: MNIST is not where it was looked for
            images, labels = load_mnist(args.data_root, args.conditional)
        return TrainingData(images, labels, tuple(str(c) for c in range(NUM_CLASSES)), "MNIST (train)")
    named = is_named_set(args.data)
    download = named and mnist.resolve_data_root(args.data_root)[1]  # only into the user cache folder
    with about_option(flag, value):
        found = load_images(args.data, args.image_size, args.channels, root=args.data_root if named else None,
                            download=download)
    return TrainingData(found.images, found.labels, tuple(found.classes), found.source)


def _streamed(args: argparse.Namespace) -> TrainingData:
    """``--stream``: the folder as an :class:`~torchgan_lite.ImageFolderDataset`, decoded as it is batched."""
    with about_option("--data", args.data):
        dataset = ImageFolderDataset(args.data, args.image_size, args.channels or 3)
        first = dataset[0]
    image = first[0] if isinstance(first, tuple) else first  # (C, H, W) uint8
    labels = None if dataset.labels is None else torch.as_tensor(dataset.labels, dtype=torch.int64)
    return TrainingData(image[None], labels, tuple(dataset.classes), f"folder {args.data} (streamed)", dataset)


def _square_size(shape: tuple[int, int, int], arch: str, sizes: tuple[int, ...]) -> int:
    _, h, w = shape
    if h != w or h not in sizes:
        raise CLIError(f"--arch {arch} builds square images of {', '.join(map(str, sizes))} pixels; these are "
                       f"{h}x{w}: give --image-size {min(sizes, key=lambda s: abs(s - max(h, w)))} (each image's "
                       "short side is resized to it and the centre cropped)")
    return h


def build_networks(args: argparse.Namespace, shape: tuple[int, int, int],
                   num_classes: int | None) -> tuple[nn.Module, nn.Module]:
    """The default :data:`NetworkBuilder`: ``--arch`` (and ``--norm``) for images of ``shape``.

    ``mlp`` on MNIST's 1x28x28 is the reference recipe's pair: G 100-256-512-1024-784 (Tanh),
    D 784-1024-512-256-1 (a logit; the sigmoid is in the loss).
    """
    channels = shape[0]
    if args.arch == "dcgan":
        size = _square_size(shape, "dcgan", tuple(sorted(IMAGE_SIZES)))
        norm = None if args.norm == "none" else args.norm
        return (dcgan_generator(image_size=size, channels=channels, norm=norm, num_classes=num_classes),
                dcgan_discriminator(image_size=size, channels=channels, norm=norm, num_classes=num_classes))
    if args.arch == "resnet":
        size = _square_size(shape, "resnet", RESNET_IMAGE_SIZES)
        return (resnet_generator(image_size=size, channels=channels, num_classes=num_classes),
                resnet_discriminator(image_size=size, channels=channels, num_classes=num_classes))
    if num_classes is not None:
        return (conditional_mlp_generator(num_classes, out_shape=shape),
                conditional_mlp_discriminator(num_classes, in_shape=shape))
    return mlp_generator(out_shape=shape), mlp_discriminator(in_shape=shape)
