"""TensorLoader: batches of a device-resident tensor, one ``randperm`` an epoch, with an exact
position (``state_dict``) for mid-epoch resume. uint8 images are held as they are (a quarter of
float32's memory) and converted to float in [-1, 1] batch by batch on the device; an optional
random horizontal flip per sample is drawn from the loader's own generator.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from torchgan_lite.utils.checks import check_bool, check_int, describe

__all__ = ["TensorLoader", "flip_mask", "hflip_batch", "to_unit_range"]


def to_unit_range(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images (any shape) as ``dtype`` in [-1, 1]: ``x / 127.5 - 1``, computed where they are.

    The same operations as :func:`torchgan_lite.mnist` (``ToTensor()`` then ``Normalize(0.5, 0.5)``),
    so MNIST batches converted here are bitwise those of the float set.
    """
    return images.to(dtype=dtype).div_(127.5).sub_(1.0)


def flip_mask(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` fair coin flips (bool ``(n,)``, on the CPU) drawn from ``generator``."""
    return torch.rand(n, generator=generator) < 0.5


def hflip_batch(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``images`` ``(B, ..., W)`` with the samples where ``mask`` (bool ``(B,)``) is True mirrored left-right."""
    mask = mask.to(images.device, non_blocking=True).view(-1, *([1] * (images.dim() - 1)))  # (B, 1, ..., 1)
    return torch.where(mask, images.flip(-1), images)


class TensorLoader:
    """Batches tensors that already live on the training device.

    One random permutation per epoch (drawn on the CPU from this loader's own
    ``torch.Generator``, so the order does not depend on the device or on other
    random draws), then one ``index_select`` per batch. Several tensors with the
    same first dimension (images and labels) are batched together and yielded as a
    tuple; a single tensor is yielded as a tensor.

    When the first tensor (the images) is uint8 it stays uint8 on the device and each
    batch is converted there to ``dtype`` in [-1, 1] (``x / 127.5 - 1``, exactly as
    :func:`~torchgan_lite.mnist` converts the whole set); float tensors are yielded as
    they are. Other tensors (labels) are never converted.

    The loader is *stateful*: it remembers the epoch's permutation and how many
    batches it has served, so iteration that stops part way through an epoch (a
    ``break``, ``max_steps``, a checkpoint) continues from the next batch on the
    next ``iter()``. :meth:`state_dict`/:meth:`load_state_dict` save and restore
    that position; :meth:`reset` starts a fresh epoch.

    Args:
        *tensors: One or more tensors with equal first dimension ``N``.
        batch_size: Samples per batch (the recipe's 128).
        shuffle: Draw a new permutation every epoch (else keep the order).
        drop_last: Drop the last incomplete batch (the recipe does: 468 batches).
        generator: A CPU ``torch.Generator`` for the permutations. ``None``: a new
            one seeded from torch's global RNG, so ``torch.manual_seed`` fixes it.
        rank: This process's index for data-parallel training. None: the default
            process group's rank when one is initialised, else 0.
        world_size: Number of processes. None: the default group's size, else 1.
            With ``world_size`` W, every rank draws the same permutation (seed the
            ranks alike) and, for global batch ``i``, rank r takes rows
            ``[i*B*W + r*B, i*B*W + (r+1)*B)`` of it: the W ranks together see exactly
            the batches of one process with batch size ``B*W``.
        hflip: Mirror each image left-right with probability 1/2 (the images need a
            width dimension: ``(N, ..., W)`` with at least 3 dimensions). The flips of an
            epoch are drawn with its permutation from ``generator``, so a mid-epoch resume
            from :meth:`state_dict` repeats them exactly.
        dtype: The floating dtype uint8 images are converted to (ignored for float images).
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        batch_size: int = 128,
        shuffle: bool = True,
        drop_last: bool = True,
        generator: torch.Generator | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        hflip: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if not tensors:
            raise TypeError("TensorLoader needs at least one tensor, got none")
        for i, t in enumerate(tensors):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"tensors[{i}] must be a torch.Tensor, got {type(t).__name__}")
            if t.dim() < 1:
                raise ValueError(f"tensors[{i}] must have a batch dimension, got a 0-d tensor")
        n = tensors[0].shape[0]
        for i, t in enumerate(tensors[1:], start=1):
            if t.shape[0] != n:
                raise ValueError(f"tensors[{i}] has {t.shape[0]} rows but tensors[0] has {n}: they must match")
            if t.device != tensors[0].device:
                raise ValueError(f"tensors[{i}] is on {t.device} but tensors[0] is on {tensors[0].device}")
        check_int("batch_size", batch_size, 1)
        if n == 0:
            raise ValueError("TensorLoader got an empty dataset (0 rows): nothing to train on")
        if drop_last and batch_size > n:
            raise ValueError(
                f"batch_size={batch_size} is larger than the dataset ({n} rows) with drop_last=True: "
                "no batch would ever be produced"
            )
        for flag_name, flag in (("shuffle", shuffle), ("drop_last", drop_last)):
            if not isinstance(flag, bool):
                raise TypeError(f"{flag_name} must be a bool, got {flag!r}")
        check_bool("hflip", hflip)
        if hflip and tensors[0].dim() < 3:
            raise ValueError(f"hflip=True needs images with a width dimension (N, ..., W), got tensors[0] of shape "
                             f"{tuple(tensors[0].shape)}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype, got {describe(dtype)}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(f"generator must be a CPU torch.Generator, got one on {generator.device}")
        if rank is None or world_size is None:
            from torchgan_lite.utils.distributed import rank_and_world

            group_rank, group_world = rank_and_world()
            rank = group_rank if rank is None else rank
            world_size = group_world if world_size is None else world_size
        for name, value in (("rank", rank), ("world_size", world_size)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int or None, got {value!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need world_size >= 1 and 0 <= rank < world_size, got rank={rank}, "
                             f"world_size={world_size}")
        if world_size > 1 and not drop_last:
            raise ValueError("drop_last=False is not supported with world_size > 1: every rank must get full "
                             "batches of the same size")
        if drop_last and batch_size * world_size > n:
            raise ValueError(f"batch_size={batch_size} x world_size={world_size} is larger than the dataset "
                             f"({n} rows): no batch would ever be produced")
        self.rank = rank
        self.world_size = world_size
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.hflip = hflip
        self.dtype = dtype
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        self.generator = generator
        self._perm: torch.Tensor | None = None  # (N,) int64 on the data's device
        self._flip: torch.Tensor | None = None  # (N,) bool on the data's device: flip the epoch's i-th sample
        self._pos = 0  # batches served from the current permutation
        self.epochs_started = 0

    @property
    def device(self) -> torch.device:
        """The device the batches live on."""
        return self.tensors[0].device

    @property
    def num_samples(self) -> int:
        """Rows in the dataset."""
        return int(self.tensors[0].shape[0])

    @property
    def global_batch_size(self) -> int:
        """Rows per step over all ranks: ``batch_size * world_size``."""
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        """Batches per epoch (for this rank; every rank has the same number)."""
        n, b = self.num_samples, self.global_batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    @property
    def position(self) -> int:
        """Batches already served in the current epoch (0 between epochs)."""
        return self._pos if self._perm is not None else 0

    def _new_epoch(self) -> None:
        n = self.num_samples
        if self.shuffle:
            perm = torch.randperm(n, generator=self.generator)
        else:
            perm = torch.arange(n)
        flip = flip_mask(n, self.generator) if self.hflip else None  # drawn after the permutation
        self._perm = perm.to(self.device, non_blocking=True)
        self._flip = None if flip is None else flip.to(self.device, non_blocking=True)
        self._pos = 0
        self.epochs_started += 1

    def reset(self) -> None:
        """Forget the current epoch's position: the next ``iter()`` starts a new epoch."""
        self._perm = None
        self._flip = None
        self._pos = 0

    def peek(self) -> Any:
        """The first ``batch_size`` rows as one batch, converted as iteration would (unflipped).

        Draws no permutation and leaves the position as it is: what ``GANTrainer.fit`` checks
        when it has nothing left to train.
        """
        idx = torch.arange(min(self.batch_size, self.num_samples), device=self.device)  # (B,)
        saved, self._flip = self._flip, None
        try:
            return self._batch(idx, 0)
        finally:
            self._flip = saved

    def _batch(self, idx: torch.Tensor, start: int) -> Any:
        """The rows ``idx`` of every tensor; the images flipped and converted as configured."""
        images = self.tensors[0].index_select(0, idx)  # (B, ...)
        if self._flip is not None:
            images = hflip_batch(images, self._flip[start : start + idx.shape[0]])
        if images.dtype == torch.uint8:
            images = to_unit_range(images, self.dtype)
        if len(self.tensors) == 1:
            return images
        return (images, *(t.index_select(0, idx) for t in self.tensors[1:]))

    def __iter__(self) -> Iterator[Any]:
        if self._perm is None or self._pos >= len(self):
            self._new_epoch()
        perm = self._perm
        assert perm is not None
        b, gb, r, nb = self.batch_size, self.global_batch_size, self.rank, len(self)
        while self._pos < nb:
            i = self._pos
            start = i * gb + r * b
            idx = perm[start : start + b]  # (B,) a view, no copy
            self._pos = i + 1
            yield self._batch(idx, start)
        self._perm = None  # the epoch is complete: the next iter() draws a new permutation
        self._flip = None

    def state_dict(self) -> dict[str, Any]:
        """Position, permutation and generator state, for an exact resume."""
        return {
            "generator": self.generator.get_state(),
            "perm": None if self._perm is None else self._perm.cpu(),
            "flip": None if self._flip is None else self._flip.cpu(),
            "hflip": self.hflip,
            "pos": self._pos,
            "epochs_started": self.epochs_started,
            "num_samples": self.num_samples,
            "global_batch_size": self.global_batch_size,
        }

    def check_state_dict(self, state: object) -> None:
        """Raise ``ValueError`` unless ``state`` is a :meth:`state_dict` of a loader like this one."""
        if not isinstance(state, dict) or not {"generator", "num_samples", "global_batch_size"} <= set(state):
            raise ValueError("load_state_dict expects a TensorLoader.state_dict(), got something else")
        if state["num_samples"] != self.num_samples or state["global_batch_size"] != self.global_batch_size:
            raise ValueError(
                f"loader state is for {state['num_samples']} rows in global batches of "
                f"{state['global_batch_size']}, but this loader has {self.num_samples} rows in global batches of "
                f"{self.global_batch_size} (batch_size x world_size)"
            )
        saved_hflip = bool(state.get("hflip", False))  # states from before hflip existed had none
        if saved_hflip != self.hflip:
            raise ValueError(f"loader state was saved with hflip={saved_hflip} but this loader has hflip={self.hflip}: "
                             "build the loader as the saved run did")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, on a loader over the same data."""
        self.check_state_dict(state)
        self.generator.set_state(state["generator"])
        perm = state["perm"]
        self._perm = None if perm is None else perm.to(self.device)
        flip = state.get("flip")
        self._flip = None if flip is None else flip.to(self.device, torch.bool)
        self._pos = int(state["pos"])
        self.epochs_started = int(state["epochs_started"])
