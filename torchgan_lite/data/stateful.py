"""StatefulLoader: any map-style ``Dataset`` (one too big for memory) batched by torchdata's
``StatefulDataLoader``, with the trainer's loader protocol, so a checkpoint keeps its position.

It offers what the trainer asks of :class:`~torchgan_lite.TensorLoader` (``state_dict``,
``check_state_dict``, ``load_state_dict``, ``len``, ``global_batch_size``, ``world_size``,
``reset``), and yields batches the same way: on the training device, uint8 images converted
there to float in [-1, 1], optionally flipped left-right per sample. Its sampler draws the
epoch's permutation from the loader's ``torch.Generator`` exactly as ``TensorLoader`` does and
shards it over ranks the same way, so over the same data and generator both yield the same
batches. A mid-epoch resume from :meth:`StatefulLoader.state_dict` (also after
``torch.save``/``torch.load(weights_only=True)``) yields exactly the batches an uninterrupted
run would, with worker processes too.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterator, Sized
from typing import Any

import torch
from torch.utils.data import Dataset, IterableDataset, Sampler

from torchgan_lite.data.tensor_loader import flip_mask, hflip_batch, to_unit_range
from torchgan_lite.utils.checks import check_bool, check_int, describe

__all__ = ["EpochSampler", "StatefulLoader"]

_KIND = "torchgan_lite.StatefulLoader/1"


def _derived_seed(generator: torch.Generator, purpose: str) -> int:
    """A seed for a generator beside ``generator``, from its seed and ``purpose`` (``generator`` is not advanced)."""
    digest = hashlib.sha256(f"{generator.initial_seed()}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 2


class _EpochIterator(Iterator[int]):
    """One epoch of :class:`EpochSampler`, stateful (torchdata saves and restores it).

    The permutation is drawn on the first ``next()``, not when the iterator is made: a
    ``DataLoader`` with workers makes (and drops) one iterator more than it uses.
    """

    def __init__(self, sampler: EpochSampler) -> None:
        self.sampler = sampler
        self.generator_state: torch.Tensor | None = None  # the generator before this epoch's permutation
        self.order: torch.Tensor | None = None  # (len(sampler),) this rank's indices
        self.yielded = 0

    def __iter__(self) -> _EpochIterator:
        return self

    def _draw(self) -> torch.Tensor:
        if self.order is None:
            self.generator_state = self.sampler.generator.get_state()
            self.order = self.sampler.epoch_order()
        return self.order

    def __next__(self) -> int:
        order = self._draw()
        if self.yielded >= len(order):
            raise StopIteration
        self.yielded += 1
        return int(order[self.yielded - 1])

    def state_dict(self) -> dict[str, Any]:
        self._draw()
        return {"generator": self.generator_state, "yielded": self.yielded}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.generator.set_state(state["generator"])
        self.order = None
        self._draw()  # the saved epoch's permutation, drawn again
        self.yielded = int(state["yielded"])


class EpochSampler(Sampler[int]):
    """Indices of one epoch: a permutation from ``generator`` (or ``0..N-1``), this rank's share of it.

    For global batch ``i`` rank ``r`` takes positions ``[i*B*W + r*B, i*B*W + (r+1)*B)`` of the
    permutation, as :class:`~torchgan_lite.TensorLoader` does; with ``drop_last`` the tail that
    fills no global batch is left out.
    """

    def __init__(self, num_samples: int, batch_size: int, shuffle: bool, drop_last: bool,
                 generator: torch.Generator, rank: int = 0, world_size: int = 1) -> None:
        self.num_samples, self.batch_size, self.shuffle, self.drop_last = num_samples, batch_size, shuffle, drop_last
        self.generator, self.rank, self.world_size = generator, rank, world_size

    def epoch_order(self) -> torch.Tensor:
        """This rank's indices for a new epoch (draws the permutation from the generator)."""
        n, b, w, r = self.num_samples, self.batch_size, self.world_size, self.rank
        perm = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        if w == 1:
            return perm[: (n // b) * b] if self.drop_last else perm
        batches = n // (b * w)
        return perm[: batches * b * w].view(batches, w, b)[:, r].reshape(-1)  # (batches * B,)

    def __len__(self) -> int:
        n, b, w = self.num_samples, self.batch_size, self.world_size
        if w > 1:
            return (n // (b * w)) * b
        return (n // b) * b if self.drop_last else n

    def __iter__(self) -> Iterator[int]:
        return _EpochIterator(self)


class StatefulLoader:
    """Batches of a map-style ``Dataset`` through ``torchdata.stateful_dataloader.StatefulDataLoader``.

    Args:
        dataset: A map-style ``torch.utils.data.Dataset`` (``__len__`` and ``__getitem__``), e.g.
            :class:`~torchgan_lite.ImageFolderDataset`; items are tensors or ``(image, label)``.
        batch_size: Samples per batch (per rank).
        shuffle: A new permutation every epoch, drawn from ``generator``.
        drop_last: Drop the last incomplete batch (required with ``world_size > 1``).
        generator: A CPU ``torch.Generator``; None: one seeded from torch's global RNG.
        num_workers: Worker processes decoding items (0: in this process).
        device: Where batches are put; None: where the dataset's items are (the CPU).
        hflip: Mirror each image left-right with probability 1/2, drawn in this process from a
            generator seeded from ``generator`` (its state is saved with the position).
        dtype: The floating dtype uint8 images are converted to.
        rank: This process's index; None: the default process group's rank, else 0.
        world_size: Number of processes; None: the default group's size, else 1.
        pin_memory: Page-locked batches for a fast copy to the GPU; None: when ``device`` is CUDA.
        collate_fn: As for ``DataLoader`` (default: ``default_collate``).
        persistent_workers: Keep the workers between epochs.
        prefetch_factor: Batches each worker loads ahead (``num_workers > 0`` only).
        worker_init_fn: Called in each worker with its id.
        multiprocessing_context: As for ``DataLoader`` (``"spawn"``, ``"forkserver"``...).
    """

    def __init__(self, dataset: Dataset[Any], batch_size: int = 128, shuffle: bool = True, drop_last: bool = True,
                 generator: torch.Generator | None = None, *, num_workers: int = 0,
                 device: torch.device | str | None = None, hflip: bool = False, dtype: torch.dtype = torch.float32,
                 rank: int | None = None, world_size: int | None = None, pin_memory: bool | None = None,
                 collate_fn: Callable[[list[Any]], Any] | None = None, persistent_workers: bool = False,
                 prefetch_factor: int | None = None, worker_init_fn: Callable[[int], None] | None = None,
                 multiprocessing_context: Any = None) -> None:
        if isinstance(dataset, IterableDataset) or not isinstance(dataset, Sized) \
                or not callable(getattr(dataset, "__getitem__", None)):
            raise TypeError(f"dataset must be a map-style torch.utils.data.Dataset (with __len__ and __getitem__), "
                            f"got {describe(dataset)}")
        n = len(dataset)
        check_int("batch_size", batch_size, 1)
        check_int("num_workers", num_workers, 0)
        for name, flag in (("shuffle", shuffle), ("drop_last", drop_last), ("hflip", hflip),
                           ("persistent_workers", persistent_workers)):
            check_bool(name, flag)
        if generator is not None and (not isinstance(generator, torch.Generator) or generator.device.type != "cpu"):
            raise TypeError(f"generator must be a CPU torch.Generator or None, got {describe(generator)}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype, got {describe(dtype)}")
        if rank is None or world_size is None:
            from torchgan_lite.utils.distributed import rank_and_world

            group_rank, group_world = rank_and_world()
            rank = group_rank if rank is None else rank
            world_size = group_world if world_size is None else world_size
        check_int("world_size", world_size, 1)
        check_int("rank", rank, 0)
        if rank >= world_size:
            raise ValueError(f"rank must be < world_size, got rank={rank}, world_size={world_size}")
        if world_size > 1 and not drop_last:
            raise ValueError("drop_last=False is not supported with world_size > 1: every rank must get full "
                             "batches of the same size")
        if n == 0 or (drop_last and batch_size * world_size > n):
            raise ValueError(f"batch_size={batch_size} x world_size={world_size} is larger than the dataset ({n} "
                             "items) with drop_last=True: no batch would ever be produced")
        try:
            from torchdata.stateful_dataloader import StatefulDataLoader
        except ImportError as err:  # pragma: no cover - a declared dependency
            raise ImportError("StatefulLoader needs torchdata (pip install 'torchdata>=0.11,<0.12')") from err
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.generator, self.rank, self.world_size, self.hflip, self.dtype = generator, rank, world_size, hflip, dtype
        self.device = None if device is None else torch.device(device)
        # Two more generators seeded from the first: the flips (drawn here, as batches are yielded) and
        # torchdata's worker seeds, so that neither this loader nor its workers draw from torch's global RNG.
        # Derived from its seed without drawing from it, so the permutations are TensorLoader's.
        self._flip_generator, worker_generator = torch.Generator(), torch.Generator()
        self._flip_generator.manual_seed(_derived_seed(generator, "hflip"))
        worker_generator.manual_seed(_derived_seed(generator, "workers"))
        self.sampler = EpochSampler(n, batch_size, shuffle, drop_last, generator, rank, world_size)
        pin = self.device is not None and self.device.type == "cuda" if pin_memory is None else pin_memory
        with warnings.catch_warnings():  # torchdata 0.11 calls torch.set_vital, deprecated in torch 2.14
            warnings.filterwarnings("ignore", message=".*set_vital.* is deprecated")
            self.loader = StatefulDataLoader(
                dataset, batch_size=batch_size, sampler=self.sampler, drop_last=drop_last, num_workers=num_workers,
                collate_fn=collate_fn, pin_memory=bool(pin), persistent_workers=persistent_workers,
                prefetch_factor=prefetch_factor, worker_init_fn=worker_init_fn, generator=worker_generator,
                multiprocessing_context=multiprocessing_context)
        self._iterator: Iterator[Any] | None = None  # the open epoch, continued by the next iter()
        self._pos = 0  # batches served from it
        self._resumed = False  # load_state_dict restored a mid-epoch position: the next iter() continues it
        self.epochs_started = 0

    @property
    def num_samples(self) -> int:
        """Items in the dataset."""
        return self.sampler.num_samples

    @property
    def global_batch_size(self) -> int:
        """Items per step over all ranks: ``batch_size * world_size``."""
        return self.batch_size * self.world_size

    @property
    def position(self) -> int:
        """Batches already served in the current epoch (0 between epochs)."""
        return self._pos if self._mid_epoch() or self._resumed else 0

    def __len__(self) -> int:
        """Batches per epoch (for this rank)."""
        return len(self.loader)

    def reset(self) -> None:
        """Forget the open epoch: the next ``iter()`` starts a new one."""
        self.loader.load_state_dict({})  # drops torchdata's iterator (and a restored position)
        self._iterator = None
        self._pos, self._resumed = 0, False

    def _prepare(self, batch: Any) -> Any:
        """``batch`` on the device; its images flipped and converted as configured."""
        parts = list(batch) if isinstance(batch, (tuple, list)) else [batch]
        if self.device is not None:
            parts = [p.to(self.device, non_blocking=True) if isinstance(p, torch.Tensor) else p for p in parts]
        images = parts[0]
        if isinstance(images, torch.Tensor):
            if self.hflip:
                images = hflip_batch(images, flip_mask(images.shape[0], self._flip_generator))
            if images.dtype == torch.uint8:
                images = to_unit_range(images, self.dtype)
            parts[0] = images
        return tuple(parts) if isinstance(batch, (tuple, list)) else parts[0]

    def __iter__(self) -> Iterator[Any]:
        if self._iterator is None or self._pos >= len(self):  # a new epoch (or the one load_state_dict restored)
            resumed = self._resumed
            self._iterator = iter(self.loader)  # a fresh epoch unless a mid-epoch state was loaded
            self._resumed = False
            if not resumed:
                self._pos = 0
                self.epochs_started += 1
        iterator = self._iterator
        for batch in iterator:
            self._pos += 1
            yield self._prepare(batch)
        if self._iterator is iterator:  # the epoch is complete: the next iter() starts a new one
            self._iterator = None
            self._pos = 0

    def _mid_epoch(self) -> bool:
        return self._iterator is not None and 0 < self._pos < len(self)

    def state_dict(self) -> dict[str, Any]:
        """The position, for an exact resume: torchdata's state mid-epoch, the generators' always."""
        return {
            "kind": _KIND,
            "loader": self.loader.state_dict() if self._mid_epoch() else None,
            "generator": self.generator.get_state(),  # between epochs: where the next permutation is drawn from
            "flip_generator": self._flip_generator.get_state(),
            "hflip": self.hflip,
            "pos": self._pos if self._mid_epoch() else 0,
            "epochs_started": self.epochs_started,
            "num_samples": self.num_samples,
            "global_batch_size": self.global_batch_size,
        }

    def check_state_dict(self, state: object) -> None:
        """Raise ``ValueError`` unless ``state`` is a :meth:`state_dict` of a loader like this one."""
        if not isinstance(state, dict) or state.get("kind") != _KIND:
            got = "a TensorLoader's" if isinstance(state, dict) and "perm" in state else "something else"
            raise ValueError(f"load_state_dict expects a StatefulLoader.state_dict(), got {got}")
        if state["num_samples"] != self.num_samples or state["global_batch_size"] != self.global_batch_size:
            raise ValueError(f"loader state is for {state['num_samples']} items in global batches of "
                             f"{state['global_batch_size']}, but this loader has {self.num_samples} items in global "
                             f"batches of {self.global_batch_size} (batch_size x world_size)")
        if bool(state["hflip"]) != self.hflip:
            raise ValueError(f"loader state was saved with hflip={state['hflip']} but this loader has "
                             f"hflip={self.hflip}: build the loader as the saved run did")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned: the next ``iter()`` continues from the batch after it."""
        self.check_state_dict(state)
        self._flip_generator.set_state(state["flip_generator"])
        self.epochs_started = int(state["epochs_started"])
        self._iterator = None
        if state["loader"] is None:  # between epochs: the next iter() draws the next permutation
            self.loader.load_state_dict({})
            self.generator.set_state(state["generator"])
            self._pos, self._resumed = 0, False
        else:  # mid-epoch: torchdata restores the epoch's permutation and skips what was served
            self.loader.load_state_dict(state["loader"])
            self._pos, self._resumed = int(state["pos"]), True
