"""StatefulLoader (torchdata's StatefulDataLoader behind the trainer's loader protocol) and ImageFolderDataset:
exact mid-epoch resume, with and without workers, through torch.save/torch.load(weights_only=True) and a
trainer checkpoint."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import IterableDataset, TensorDataset

from torchgan_lite import GANTrainer, ImageFolderDataset, StatefulLoader, TensorLoader, load_images, seed_everything
from torchgan_lite.losses import adversarial as losses

from .conftest import tiny_models


def images(n: int = 50, shape: tuple[int, ...] = (1, 4, 4)) -> torch.Tensor:
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))


def stack_first(items: list[tuple[torch.Tensor, ...]]) -> torch.Tensor:
    return torch.stack([t[0] for t in items])


def make(dataset, seed: int = 3, **kwargs) -> StatefulLoader:
    kwargs.setdefault("batch_size", 8)
    return StatefulLoader(dataset, generator=torch.Generator().manual_seed(seed), **kwargs)


def roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def take(loader, total: int) -> list:
    """The first ``total`` batches over as many epochs as it takes, stopping mid-epoch (a ``break``)."""
    out: list = []
    while len(out) < total:
        for batch in loader:
            out.append(batch)
            if len(out) == total:
                break
    return out


def assert_same_batches(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        xs, ys = (x, y) if isinstance(x, tuple) else ((x,), (y,))
        assert len(xs) == len(ys) and all(torch.equal(p, q) for p, q in zip(xs, ys))


def test_same_batches_as_tensor_loader_for_the_same_generator():
    x = images()
    tensor_loader = TensorLoader(x, batch_size=8, generator=torch.Generator().manual_seed(3))
    stateful = make(TensorDataset(x), collate_fn=stack_first)
    assert len(stateful) == len(tensor_loader) == 6
    for _ in range(2):  # two epochs: two permutations
        a, b = list(tensor_loader), list(stateful)
        assert b[0].dtype == torch.float32  # uint8 converted per batch, as TensorLoader does
        assert_same_batches(a, b)


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("stop", [3, 6, 8])  # mid epoch 1; at its end; mid epoch 2
def test_mid_epoch_resume_is_exact_flips_included(num_workers, stop):
    data = TensorDataset(images(), torch.arange(50))
    whole = take(make(data, num_workers=num_workers, hflip=True), 18)  # 3 epochs of 6 batches
    first = make(data, num_workers=num_workers, hflip=True)
    served = take(first, stop)
    state = roundtrip(first.state_dict())
    resumed = make(data, seed=99, num_workers=num_workers, hflip=True)  # another seed: it all comes from the state
    resumed.load_state_dict(state)
    assert resumed.position == (stop % 6 if stop % 6 else 0)
    rest = take(resumed, 18 - stop)
    assert_same_batches(whole, served + rest)
    flips_seen = any(not torch.equal(b[0], (data.tensors[0][b[1]].float() / 127.5 - 1)) for b in whole)
    assert flips_seen  # hflip did flip something, so the flips were part of what was compared


def test_a_break_continues_the_epoch_and_a_finished_epoch_starts_the_next():
    data = TensorDataset(images(), torch.arange(50))
    ref = take(make(data), 12)
    loader = make(data)
    got = take(loader, 2)
    assert loader.position == 2
    got += take(loader, 4)  # the rest of epoch 1: a break after its last batch, as the trainer does
    assert loader.position == 0 and loader.epochs_started == 1
    got += take(loader, 6)
    assert_same_batches(ref, got)
    loader.reset()
    assert loader.position == 0


def test_state_is_checked_against_the_loader():
    data = TensorDataset(images())
    state = make(data).state_dict()
    with pytest.raises(ValueError, match="hflip"):
        make(data, hflip=True).load_state_dict(state)
    with pytest.raises(ValueError, match="global batches"):
        make(data, batch_size=4).load_state_dict(state)
    with pytest.raises(ValueError, match="TensorLoader"):
        make(data).load_state_dict(TensorLoader(images(), batch_size=8).state_dict())


def test_bad_arguments_are_refused_by_name():
    class Stream(IterableDataset):
        def __iter__(self):
            yield torch.zeros(1)

    data = TensorDataset(images())
    for kwargs, exc, name in [({"batch_size": 0}, ValueError, "batch_size"),
                              ({"batch_size": 51}, ValueError, "batch_size"),
                              ({"num_workers": -1}, ValueError, "num_workers"),
                              ({"hflip": "yes"}, TypeError, "hflip"),
                              ({"dtype": torch.int64}, TypeError, "dtype"),
                              ({"rank": 2, "world_size": 2}, ValueError, "rank"),
                              ({"world_size": 2, "rank": 0, "drop_last": False}, ValueError, "drop_last")]:
        with pytest.raises(exc, match=name):
            make(data, **kwargs)
    with pytest.raises(TypeError, match="dataset"):
        StatefulLoader(Stream())
    with pytest.raises(TypeError, match="generator"):
        StatefulLoader(data, generator=3)  # type: ignore[arg-type]


def test_ranks_take_tensor_loaders_shares():
    x = images(48)
    for rank in range(2):
        a = list(TensorLoader(x, batch_size=4, rank=rank, world_size=2, generator=torch.Generator().manual_seed(1)))
        b = list(StatefulLoader(TensorDataset(x), batch_size=4, rank=rank, world_size=2, collate_fn=stack_first,
                                generator=torch.Generator().manual_seed(1)))
        assert len(a) == len(b) == 6
        assert_same_batches(a, b)


# --------------------------------------------------------------------------- a folder decoded on the fly


def write_folder(root: Path, n: int = 6) -> None:
    rng = np.random.default_rng(1)
    for i in range(n):
        cls = root / ("a" if i % 2 else "b")
        cls.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(cls / f"{i}.png")


def test_image_folder_dataset_gives_load_images_pixels_and_labels(tmp_path):
    write_folder(tmp_path / "set")
    held = load_images(tmp_path / "set", 16, cache_dir=tmp_path / "cache")
    ds = ImageFolderDataset(tmp_path / "set", 16)
    assert len(ds) == len(held) and ds.classes == held.classes
    assert held.labels is not None
    for i in range(len(ds)):
        img, label = ds[i]
        assert img.dtype == torch.uint8 and torch.equal(img, held.images[i]) and label == held.labels[i]
    streamed = list(StatefulLoader(ds, batch_size=3, shuffle=False))
    in_memory = list(held.loader(3, with_labels=True, shuffle=False))
    assert_same_batches(in_memory, streamed)


def test_image_folder_dataset_names_bad_files_and_sizes(tmp_path):
    write_folder(tmp_path / "set", 2)
    (tmp_path / "set" / "a" / "broken.png").write_bytes(b"\x89PNG broken")
    ds = ImageFolderDataset(tmp_path / "set", 8)
    broken = next(i for i, f in enumerate(ds.files) if f.name == "broken.png")
    with pytest.raises(ValueError, match=r"broken\.png"):
        ds[broken]
    (tmp_path / "set" / "a" / "broken.png").unlink()
    Image.fromarray(np.zeros((10, 10, 3), dtype=np.uint8)).save(tmp_path / "set" / "b" / "z_small.png")
    native = ImageFolderDataset(tmp_path / "set")  # image_size=None: all must share the first size
    native[0]
    with pytest.raises(ValueError, match="image_size"):
        native[len(native) - 1]
    with pytest.raises(ValueError, match="channels"):
        ImageFolderDataset(tmp_path / "set", channels=2)


# --------------------------------------------------------------------------- through the trainer


def build_trainer() -> GANTrainer:
    """The one place these tests build a trainer (its constructor is being redesigned)."""
    torch.manual_seed(0)
    g, d = tiny_models(shape=(1, 4, 4))
    return GANTrainer(g, d, losses.NonSaturatingLoss(), device="cpu")


def test_a_trainer_checkpoint_resumes_a_stateful_loader_exactly(tmp_path):
    data = TensorDataset(images(40), torch.arange(40))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seed_everything(0)
        ref = build_trainer()
        ref.fit(make(data, hflip=True), epochs=3)  # 5 steps an epoch
        seed_everything(0)
        first = build_trainer()
        first.fit(make(data, hflip=True), epochs=3, max_steps=7)  # stops at step 2 of epoch 2
        first.save_checkpoint(tmp_path / "mid.pt")
        resumed = build_trainer()
        loader = make(data, seed=42, hflip=True)
        resumed.load_checkpoint(tmp_path / "mid.pt", data=loader)
        assert loader.position == 2
        resumed.fit(loader, epochs=3)
    finally:
        torch.set_num_threads(before)
    assert resumed.state.step == ref.state.step == 15
    for (name, p), q in zip(ref.generator.state_dict().items(), resumed.generator.state_dict().values()):
        assert torch.equal(p, q), name
    for p, q in zip(ref.discriminator.parameters(), resumed.discriminator.parameters()):
        assert torch.equal(p, q)
