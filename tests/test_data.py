"""TensorLoader and the MNIST reader."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchgan_lite import TensorLoader
from torchgan_lite.data import mnist as data


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), b=st.integers(1, 70), drop_last=st.booleans(), shuffle=st.booleans())
def test_loader_covers_each_row_once_per_epoch(n, b, drop_last, shuffle):
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    if drop_last and b > n:
        with pytest.raises(ValueError, match="batch_size"):
            TensorLoader(x, batch_size=b, drop_last=drop_last)
        return
    loader = TensorLoader(x, batch_size=b, shuffle=shuffle, drop_last=drop_last)
    batches = list(loader)
    assert len(batches) == len(loader) == (n // b if drop_last else -(-n // b))
    seen = torch.cat(batches).squeeze(1).long().tolist()
    assert len(seen) == len(set(seen))  # no row twice
    if not drop_last:
        assert sorted(seen) == list(range(n))
    assert all(len(bt) == b for bt in batches[: n // b])


def test_loader_reshuffles_and_is_reproducible():
    x = torch.arange(100, dtype=torch.float32)
    a = TensorLoader(x, batch_size=10, generator=torch.Generator().manual_seed(0))
    b = TensorLoader(x, batch_size=10, generator=torch.Generator().manual_seed(0))
    e1, e2 = torch.cat(list(a)), torch.cat(list(a))
    assert not torch.equal(e1, e2)  # a new permutation each epoch
    assert torch.equal(e1, torch.cat(list(b))) and torch.equal(e2, torch.cat(list(b)))


def test_loader_resumes_mid_epoch_and_state_roundtrips():
    x = torch.arange(50, dtype=torch.float32)
    ref = TensorLoader(x, batch_size=5, generator=torch.Generator().manual_seed(1))
    full = [bt.clone() for bt in ref] + [bt.clone() for bt in ref]
    loader = TensorLoader(x, batch_size=5, generator=torch.Generator().manual_seed(1))
    got = []
    for i, bt in enumerate(loader):
        got.append(bt)
        if i == 3:
            break
    assert loader.position == 4
    saved = loader.state_dict()
    other = TensorLoader(x, batch_size=5, generator=torch.Generator().manual_seed(99))
    other.load_state_dict(saved)
    got += list(other) + list(other)
    assert all(torch.equal(a, b) for a, b in zip(got, full)) and len(got) == len(full)


def test_loader_batches_several_tensors_together():
    x = torch.arange(12, dtype=torch.float32)
    y = torch.arange(12) * 10
    for xb, yb in TensorLoader(x, y, batch_size=4):
        assert torch.equal(yb, xb.long() * 10)


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        ((), {}, TypeError, "at least one tensor"),
        ((torch.zeros(0, 3),), {}, ValueError, "empty"),
        ((torch.zeros(10, 3),), {"batch_size": 0}, ValueError, "batch_size"),
        ((torch.zeros(10, 3),), {"batch_size": 2.0}, TypeError, "batch_size"),
        ((torch.zeros(10, 3), torch.zeros(9)), {}, ValueError, "rows"),
        (([1, 2, 3],), {}, TypeError, "torch.Tensor"),
    ],
)
def test_loader_rejects_bad_input(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        TensorLoader(*args, **kwargs)


def test_data_root_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv(data.DATA_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data.resolve_data_root(None) == (tmp_path / "cache" / "torchgan_lite", True)
    monkeypatch.setenv(data.DATA_ENV_VAR, str(tmp_path))
    assert data.resolve_data_root(None) == (tmp_path, False)
    assert data.resolve_data_root("/elsewhere") == (data.Path("/elsewhere"), False)


def test_missing_mnist_says_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.setenv(data.DATA_ENV_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}.*TORCHGAN_LITE_DATA"):
        data.mnist()


@pytest.mark.mnist
def test_real_mnist_matches_torchvision_transforms(mnist_dir):
    import torchvision.transforms as T
    from torchvision.datasets import MNIST

    x = data.mnist(mnist_dir)
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.float32
    assert x.min() == -1.0 and x.max() == 1.0
    ds = MNIST(str(mnist_dir), train=True, transform=T.Compose([T.ToTensor(), T.Normalize(0.5, 0.5)]))
    for i in (0, 1234, 59999):
        torch.testing.assert_close(x[i], ds[i][0], atol=1e-6, rtol=0)
    test, labels = data.mnist_with_labels(mnist_dir, train=False)
    assert test.shape == (10000, 1, 28, 28) and labels.shape == (10000,) and int(labels.max()) == 9
    assert abs(float((x + 1).mean() / 2) - 0.1307) < 1e-3  # the documented pixel mean
