"""load_images: folders (modes, sizes, classes, bad files), the on-disk cache, named sets; TensorLoader's uint8
images and hflip. Every folder is written here with Pillow; nothing touches the network."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from torchgan_lite import ImageSet, TensorLoader, load_images, mnist, mnist_with_labels
from torchgan_lite.data import images as images_mod

RNG = np.random.default_rng(0)


def rgb(h: int = 32, w: int = 32) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def grey(h: int = 32, w: int = 32) -> np.ndarray:
    return RNG.integers(0, 256, (h, w), dtype=np.uint8)


def save(path: Path, array: np.ndarray | Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = array if isinstance(array, Image.Image) else Image.fromarray(array)
    img.save(path, **kwargs)
    return path


def load(*args, **kwargs) -> tuple[ImageSet, list[str]]:
    """load_images, with the warnings it issued (as text)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = load_images(*args, **kwargs)
    return got, [str(w.message) for w in caught]


@pytest.fixture
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")  # outside the image folders


# --------------------------------------------------------------------------- folders


def test_class_folders_give_imagefolders_classes_order_and_exact_pixels(tmp_path, cache):
    root = tmp_path / "set"
    written = {}
    for rel in ["cat/b.png", "cat/a.PNG", "cat/deep/er/c.png", "dog/z.png", "dog/y.bmp", "ant/x.webp"]:
        a = rgb()
        kwargs = {"lossless": True} if rel.endswith(".webp") else {}
        written[rel] = save(root / rel, a, **kwargs), a
    (root / "dog" / "notes.txt").write_text("not an image")
    got, said = load(root, cache_dir=cache)
    reference = torchvision.datasets.ImageFolder(str(root))
    assert got.classes == reference.classes == ["ant", "cat", "dog"]
    assert got.labels is not None and got.labels.tolist() == [t for _, t in reference.samples]
    assert got.images.dtype == torch.uint8 and got.image_shape == (3, 32, 32) and len(got) == 6
    by_path = {str(p): a for p, a in written.values()}
    for i, (path, _) in enumerate(reference.samples):  # lossless formats: the pixels as written
        assert torch.equal(got.images[i], torch.from_numpy(by_path[path]).permute(2, 0, 1))
    assert not said


def test_images_at_the_top_only_are_one_unlabelled_set_and_all_grey_is_one_channel(tmp_path, cache):
    arrays = [grey() for _ in range(3)]
    for i, a in enumerate(arrays):
        save(tmp_path / f"{i}.png", a)
    got, said = load(tmp_path, cache_dir=cache)
    assert got.labels is None and got.classes == [] and got.image_shape == (1, 32, 32)
    assert torch.equal(got.images[:, 0], torch.from_numpy(np.stack(arrays)))
    assert not said


def test_images_beside_class_folders_are_left_out_with_a_warning(tmp_path, cache):
    save(tmp_path / "a" / "1.png", rgb())
    save(tmp_path / "loose.png", rgb())
    got, said = load(tmp_path, cache_dir=cache)
    assert len(got) == 1 and got.classes == ["a"]
    assert any("loose.png" in s and "left out" in s for s in said)


def test_modes_are_converted_and_said_once_with_counts(tmp_path, cache):
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[:16, :, 3] = 255  # top half opaque, bottom half fully transparent
    save(tmp_path / "rgba.png", Image.fromarray(rgba, "RGBA"))
    save(tmp_path / "palette.png", Image.fromarray(rgb()).convert("P", palette=Image.Palette.ADAPTIVE))
    sixteen = np.zeros((32, 32), dtype=np.uint16)
    sixteen[:, 8:] = 65535
    sixteen[:, 16:] = 32896  # 128 * 257
    save(tmp_path / "sixteen.png", Image.fromarray(sixteen))
    save(tmp_path / "cmyk.jpg", Image.fromarray(rgb()).convert("CMYK"))
    save(tmp_path / "grey.png", grey())
    got, said = load(tmp_path, cache_dir=cache)
    assert got.image_shape == (3, 32, 32) and len(got) == 5
    conversions = [s for s in said if s.startswith("converted image modes")]
    assert len(conversions) == 1 and len(said) == 1
    for part in ("RGBA->RGB (over black): 1", "P->RGB: 1", "I;16->L (scaled to 8 bits): 1", "CMYK->RGB: 1",
                 "L->RGB (grey repeated: the set has colour images): 2"):
        assert part in conversions[0]
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    rgba_img = got.images[names.index("rgba.png")]
    assert (rgba_img[:, :16] == 200).all() and (rgba_img[:, 16:] == 0).all()  # transparent -> black
    s16 = got.images[names.index("sixteen.png")]
    assert (s16[:, :, :8] == 0).all() and (s16[:, :, 8:16] == 255).all() and (s16[:, :, 16:] == 128).all()
    assert torch.equal(s16[0], s16[1]) and torch.equal(s16[1], s16[2])  # grey repeated over RGB
    white, _ = load(tmp_path, cache_dir=cache, background="white")
    assert (white.images[names.index("rgba.png")][:, 16:] == 255).all()


def test_la_and_grey_palettes_stay_grey(tmp_path, cache):
    la = np.zeros((32, 32, 2), dtype=np.uint8)
    la[..., 0], la[..., 1] = 90, 255
    save(tmp_path / "la.png", Image.fromarray(la, "LA"))
    palette = Image.fromarray(grey(), "P")
    palette.putpalette([v for i in range(256) for v in (i, i, i)])  # a palette of greys only
    save(tmp_path / "greypal.png", palette)
    got, said = load(tmp_path, cache_dir=cache)
    assert got.image_shape[0] == 1
    assert (got.images[sorted(p.name for p in tmp_path.iterdir()).index("la.png")] == 90).all()
    assert len(said) == 1 and "LA->L (over black): 1" in said[0]


def test_resize_short_side_then_centre_crop_and_upscale_warning(tmp_path, cache):
    tall = np.zeros((80, 40, 3), dtype=np.uint8)  # (H, W): red at the top and bottom quarters, blue in between
    tall[:20, :, 0] = tall[60:, :, 0] = 255
    tall[20:60, :, 2] = 255
    save(tmp_path / "tall.png", tall)
    save(tmp_path / "small.png", rgb(8, 8))
    got, said = load(tmp_path, 16, cache_dir=cache)
    assert got.image_shape == (3, 16, 16)
    centre = got.images[1].int()[:, 2:-2]  # sorted: small.png, tall.png; the rows clear of the filter's reach
    assert (centre[2] >= 250).all() and (centre[0] <= 5).all()  # only the blue middle square is kept
    upscaled = [s for s in said if "upscaled" in s]
    assert len(upscaled) == 1 and upscaled[0].startswith("1 image(s)")


def test_resize_is_antialiased(tmp_path, cache):
    stripes = np.zeros((64, 64), dtype=np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes average to mid-grey; nearest neighbour would keep 0/255
    save(tmp_path / "s.png", stripes)
    got, _ = load(tmp_path, 16, cache_dir=cache)
    inner = got.images[0, 0, 2:-2, 2:-2].float()
    assert (inner - 127.5).abs().max() < 20


def test_sizes_must_match_without_image_size(tmp_path, cache):
    save(tmp_path / "a.png", rgb(32, 32))
    save(tmp_path / "b.png", rgb(24, 32))
    with pytest.raises(ValueError, match="image_size"):
        load_images(tmp_path, cache_dir=cache)


def test_channels_forced(tmp_path, cache):
    a = rgb()
    save(tmp_path / "c.png", a)
    got, said = load(tmp_path, channels=1, cache_dir=cache)
    expected = np.array(Image.fromarray(a).convert("L"))
    assert got.image_shape == (1, 32, 32) and torch.equal(got.images[0, 0], torch.from_numpy(expected))
    assert any("RGB->L (luma): 1" in s for s in said)
    (tmp_path / "c.png").unlink()
    save(tmp_path / "g.png", grey())
    three, _ = load(tmp_path, channels=3, cache_dir=cache)
    assert three.image_shape == (3, 32, 32) and torch.equal(three.images[0, 0], three.images[0, 2])


def test_unreadable_images_are_skipped_with_one_warning_or_refused(tmp_path, cache):
    for i in range(3):
        save(tmp_path / f"ok{i}.png", rgb())
    good = (tmp_path / "ok0.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "garbage.jpg").write_bytes(b"not a jpeg at all")
    got, said = load(tmp_path, cache_dir=cache)
    assert len(got) == 3
    skipped = [s for s in said if s.startswith("skipped")]
    assert len(skipped) == 1 and "skipped 2 " in skipped[0]
    assert "truncated.png" in skipped[0] and "garbage.jpg" in skipped[0]
    with pytest.raises(ValueError, match=r"garbage\.jpg"):
        load_images(tmp_path, cache_dir=tmp_path / "other_cache", on_error="raise")
    with pytest.raises(ValueError, match=r"garbage\.jpg"):  # a cache built with skips does not hide them
        load_images(tmp_path, cache_dir=cache, on_error="raise")
    _, again = load(tmp_path, cache_dir=cache)  # the cached load says it again
    assert any(s.startswith("skipped 2 ") for s in again)


def test_bad_sources_and_arguments_are_refused_by_name(tmp_path, cache):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"\.png"):
        load_images(empty, cache_dir=cache)
    (empty / "readme.txt").write_text("x")
    (empty / "sub").mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_images(empty, cache_dir=cache)
    with pytest.raises(ValueError, match="cifar10"):
        load_images(tmp_path / "nothing_here", cache_dir=cache)
    with pytest.raises(ValueError, match="cifar10"):
        load_images("imagenet-not-a-set", cache_dir=cache)
    with pytest.raises(ValueError, match="not a folder"):
        load_images(empty / "readme.txt", cache_dir=cache)
    save(tmp_path / "ok" / "a" / "1.png", rgb())
    (tmp_path / "ok" / "zz_empty_class").mkdir()
    with pytest.raises(ValueError, match="zz_empty_class"):
        load_images(tmp_path / "ok", cache_dir=cache)
    (tmp_path / "ok" / "zz_empty_class").rmdir()
    for kwargs, exc, name in [({"image_size": 0}, ValueError, "image_size"),
                              ({"image_size": "32"}, TypeError, "image_size"),
                              ({"image_size": 32.0}, TypeError, "image_size"),
                              ({"channels": 2}, ValueError, "channels"),
                              ({"channels": True}, ValueError, "channels"),
                              ({"on_error": "ignore"}, ValueError, "on_error"),
                              ({"background": "grey"}, ValueError, "background"),
                              ({"limit": 0}, ValueError, "limit"),
                              ({"num_threads": 0}, ValueError, "num_threads"),
                              ({"download": "yes"}, TypeError, "download"),
                              ({"subset": "test"}, ValueError, "subset")]:
        with pytest.raises(exc, match=name):
            load_images(tmp_path / "ok", cache_dir=cache, **kwargs)
    with pytest.raises(TypeError, match="source"):
        load_images(123, cache_dir=cache)  # type: ignore[arg-type]


def test_limit_spreads_over_the_classes_and_threads_change_nothing(tmp_path, cache):
    for c in "ab":
        for i in range(5):
            save(tmp_path / c / f"{i}.png", rgb())
    got, _ = load(tmp_path, limit=4, cache_dir=cache)
    assert len(got) == 4 and got.labels is not None and set(got.labels.tolist()) == {0, 1}
    one, _ = load(tmp_path, 16, cache_dir=cache / "c1", num_threads=1)
    three, _ = load(tmp_path, 16, cache_dir=cache / "c3", num_threads=3)
    assert torch.equal(one.images, three.images)


def test_image_set_checks_and_helpers(tmp_path, cache):
    with pytest.raises(TypeError, match="images"):
        ImageSet(torch.zeros(2, 1, 4, 4), None)
    with pytest.raises(TypeError, match="labels"):
        ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))
    s = ImageSet(torch.full((4, 1, 2, 2), 255, dtype=torch.uint8), torch.arange(4), ["a"] * 4, "test")
    batch, labels = next(iter(s.to("cpu").loader(2, with_labels=True, shuffle=False)))
    assert batch.dtype == torch.float32 and (batch == 1).all() and labels.tolist() == [0, 1]
    with pytest.raises(ValueError, match="with_labels"):
        ImageSet(s.images, None).loader(2, with_labels=True)


# --------------------------------------------------------------------------- the cache


@pytest.fixture
def count_decodes(monkeypatch):
    calls = [0]
    real = images_mod.decode_image

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(images_mod, "decode_image", counting)
    return calls


def test_second_load_reads_the_cache_and_a_changed_folder_is_decoded_again(tmp_path, cache, count_decodes):
    root = tmp_path / "set"
    for i in range(4):
        save(root / f"{i}.png", rgb())
    first, _ = load(root, 16, cache_dir=cache)
    assert count_decodes[0] == 4 and len(list(cache.glob("*.pt"))) == 1
    second, _ = load(root, 16, cache_dir=cache)
    assert count_decodes[0] == 4  # nothing decoded
    assert torch.equal(first.images, second.images) and second.source == first.source
    st = (root / "2.png").stat()
    os.utime(root / "2.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    load(root, 16, cache_dir=cache)
    assert count_decodes[0] == 8
    new = rgb()
    save(root / "2.png", new)  # new content
    changed, _ = load(root, 16, cache_dir=cache)
    assert count_decodes[0] == 12 and not torch.equal(changed.images[2], first.images[2])
    save(root / "9.png", rgb())  # a file added
    added, _ = load(root, 16, cache_dir=cache)
    assert len(added) == 5 and count_decodes[0] == 17
    load(root, 8, cache_dir=cache)  # other options: their own cache entry
    assert count_decodes[0] == 22
    load(root, 16, cache_dir=cache)
    assert count_decodes[0] == 22


def test_a_damaged_cache_is_rebuilt_with_a_warning(tmp_path, cache, count_decodes):
    for i in range(3):
        save(tmp_path / "set" / f"{i}.png", rgb())
    good, _ = load(tmp_path / "set", cache_dir=cache)
    (path,) = cache.glob("*.pt")
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # truncated
    again, said = load(tmp_path / "set", cache_dir=cache)
    assert count_decodes[0] == 6 and torch.equal(again.images, good.images)
    assert any("damaged" in s and str(path) in s for s in said)
    entry = torch.load(path, weights_only=True)  # rewritten whole
    entry["images"][0, 0, 0, 0] ^= 1  # a flipped bit in a valid file: only the checksum can tell
    buf = io.BytesIO()
    torch.save(entry, buf)
    path.write_bytes(buf.getvalue())
    third, said = load(tmp_path / "set", cache_dir=cache)
    assert count_decodes[0] == 9 and torch.equal(third.images, good.images)
    assert any("checksum" in s for s in said)


def test_cache_folder_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHGAN_LITE_CACHE", str(tmp_path / "envcache"))
    save(tmp_path / "set" / "a.png", rgb())
    load_images(tmp_path / "set")
    assert len(list((tmp_path / "envcache" / "images").glob("*.pt"))) == 1


def test_an_unwritable_cache_folder_only_warns(tmp_path):
    save(tmp_path / "set" / "a.png", rgb())
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would be")
    got, said = load(tmp_path / "set", cache_dir=blocker / "sub")
    assert len(got) == 1 and any("not cached" in s for s in said)


# --------------------------------------------------------------------------- named sets


class _FakeSet:
    """Stands in for a torchvision dataset class; records how it was built."""

    calls: ClassVar[list[dict]] = []

    def __init__(self, root, download=False, **kwargs):
        type(self).calls.append({"root": root, "download": download, **kwargs})
        self.data = np.stack([np.full((32, 32, 3), i, dtype=np.uint8) for i in range(6)])  # (N, H, W, 3)
        self.targets = [0, 1, 2, 0, 1, 2]
        self.classes = ["x", "y", "z"]


def test_a_named_set_is_built_by_torchvision_with_download_and_the_data_root(tmp_path, monkeypatch):
    _FakeSet.calls = []
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _FakeSet)
    monkeypatch.setenv("TORCHGAN_LITE_DATA", str(tmp_path / "data"))
    got = load_images("CIFAR10", download=True)
    assert _FakeSet.calls == [{"root": str(tmp_path / "data"), "download": True, "train": True}]
    assert got.image_shape == (3, 32, 32) and got.classes == ["x", "y", "z"]
    assert got.labels is not None and got.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert (got.images[4] == 4).all()  # (N, H, W, 3) became (N, 3, H, W) in order
    load_images("cifar10", subset="test")
    assert _FakeSet.calls[-1] == {"root": str(tmp_path / "data"), "download": False, "train": False}
    monkeypatch.delenv("TORCHGAN_LITE_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.warns(UserWarning, match=r"RGB->L \(luma\): 6"):
        small = load_images("cifar10", 16, channels=1, download=True)
    assert _FakeSet.calls[-1]["root"] == str(tmp_path / "xdg" / "torchgan_lite")
    assert small.image_shape == (1, 16, 16) and (small.images[3] == 3).all()
    with pytest.raises(ValueError, match="subset"):
        load_images("cifar10", subset="extra")


def test_a_missing_named_set_says_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
    class Missing:
        def __init__(self, root, download=False, **kwargs):
            raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")

    monkeypatch.setattr(torchvision.datasets, "SVHN", Missing)
    monkeypatch.setenv("TORCHGAN_LITE_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="download=True") as err:
        load_images("svhn")
    assert str(tmp_path) in str(err.value) and "TORCHGAN_LITE_DATA" in str(err.value)

    class Offline:
        def __init__(self, root, download=False, **kwargs):
            raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "SVHN", Offline)
    with pytest.raises(FileNotFoundError, match="could not be downloaded"):
        load_images("svhn", download=True)


def test_svhn_and_stl10_splits_and_unlabelled_sets(tmp_path, monkeypatch):
    seen = []

    class Split:
        def __init__(self, root, download=False, split="train"):
            seen.append(split)
            self.data = np.zeros((4, 3, 8, 8), dtype=np.uint8)  # (N, 3, H, W)
            self.labels = np.array([-1] * 4) if "unlabeled" in split else np.array([1, 2, 3, 0])

    monkeypatch.setattr(torchvision.datasets, "SVHN", Split)
    monkeypatch.setattr(torchvision.datasets, "STL10", Split)
    monkeypatch.setenv("TORCHGAN_LITE_DATA", str(tmp_path))
    svhn = load_images("svhn", subset="extra")
    assert seen[-1] == "extra" and svhn.classes == [str(i) for i in range(10)]
    assert svhn.labels is not None and svhn.labels.tolist() == [1, 2, 3, 0]
    stl = load_images("stl10", subset="unlabeled")
    assert seen[-1] == "unlabeled" and stl.labels is None


def test_celeba_is_decoded_from_its_files_and_cached(tmp_path, monkeypatch, cache, count_decodes):
    calls = []
    img_dir = tmp_path / "celeba" / "img_align_celeba"
    names = [f"{i:06d}.jpg" for i in range(1, 4)]
    for name in names:
        save(img_dir / name, rgb(50, 40))  # (H, W) = (50, 40): CelebA's portrait shape, smaller

    class FakeCelebA:
        base_folder = "celeba"

        def __init__(self, root, download=False, split="train", target_type="attr"):
            calls.append({"root": root, "download": download, "split": split, "target_type": target_type})
            self.root, self.filename = root, names

    monkeypatch.setattr(torchvision.datasets, "CelebA", FakeCelebA)
    got = load_images("celeba", 16, root=tmp_path, subset="all", cache_dir=cache)
    assert calls == [{"root": str(tmp_path), "download": False, "split": "all", "target_type": []}]
    assert got.image_shape == (3, 16, 16) and len(got) == 3 and got.labels is None
    assert count_decodes[0] == 3
    again = load_images("celeba", 16, root=tmp_path, subset="all", cache_dir=cache)
    assert count_decodes[0] == 3 and torch.equal(again.images, got.images)


@pytest.mark.mnist
def test_mnist_by_name_is_exactly_mnist(mnist_dir):
    got = load_images("mnist", root=mnist_dir)
    reference, labels = mnist_with_labels(mnist_dir)
    assert got.images.dtype == torch.uint8 and got.image_shape == (1, 28, 28)
    assert got.labels is not None and torch.equal(got.labels, labels)
    loader = TensorLoader(got.images, batch_size=10000, shuffle=False, drop_last=False)
    batches = list(loader)
    assert len(batches) == 6
    for i, batch in enumerate(batches):  # the loader's per-batch conversion is the set's, bitwise
        assert batch.dtype == torch.float32 and torch.equal(batch, reference[i * 10000 : (i + 1) * 10000])
    test = load_images("mnist", subset="test", root=mnist_dir)
    assert torch.equal(test.images.float().div_(127.5).sub_(1), mnist(mnist_dir, train=False))


# --------------------------------------------------------------------------- TensorLoader: uint8 and hflip


def test_uint8_images_become_float_batches_and_labels_stay(tmp_path):
    x = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    y = torch.arange(10)
    (batch, labels), = list(TensorLoader(x, y, batch_size=10, shuffle=False))
    assert batch.dtype == torch.float32 and torch.equal(batch, x.float() / 127.5 - 1)
    assert labels.dtype == torch.int64 and torch.equal(labels, y)
    assert batch.min() >= -1 and batch.max() <= 1
    as_double = next(iter(TensorLoader(x, batch_size=10, shuffle=False, dtype=torch.float64)))
    assert as_double.dtype == torch.float64
    f = torch.rand(10, 3, 4, 4)
    assert torch.equal(next(iter(TensorLoader(f, batch_size=10, shuffle=False))), f)  # floats as they are
    with pytest.raises(TypeError, match="dtype"):
        TensorLoader(x, batch_size=2, dtype=torch.int32)


def test_hflip_flips_about_half_the_samples_each_one_exactly():
    x = torch.randint(0, 256, (64, 1, 3, 5), dtype=torch.uint8)
    loader = TensorLoader(x, batch_size=64, shuffle=False, hflip=True, generator=torch.Generator().manual_seed(0))
    batch = next(iter(loader))
    expect = x.float() / 127.5 - 1
    flipped = [bool(torch.equal(batch[i], expect[i].flip(-1))) and not torch.equal(expect[i], expect[i].flip(-1))
               for i in range(64)]
    same = [bool(torch.equal(batch[i], expect[i])) for i in range(64)]
    assert all(a or b for a, b in zip(flipped, same))
    assert 16 <= sum(flipped) <= 48
    with pytest.raises(ValueError, match="hflip"):
        TensorLoader(torch.zeros(8, 4), batch_size=4, hflip=True)
    with pytest.raises(TypeError, match="hflip"):
        TensorLoader(x, batch_size=4, hflip=1)


@pytest.mark.parametrize("stop", [3, 7])  # inside the first epoch; inside the second
def test_hflip_resume_mid_epoch_is_exact(stop):
    x = torch.randint(0, 256, (40, 3, 4, 4), dtype=torch.uint8)
    y = torch.arange(40)

    def make(seed: int) -> TensorLoader:
        return TensorLoader(x, y, batch_size=8, hflip=True, generator=torch.Generator().manual_seed(seed))

    ref = make(0)
    whole = [b for _ in range(3) for b in ref]  # 3 epochs, 5 batches each
    run = make(0)
    served = []
    for _ in range(3):
        for b in run:
            served.append(b)
            if len(served) == stop:
                break
        if len(served) == stop:
            break
    buf = io.BytesIO()
    torch.save(run.state_dict(), buf)
    buf.seek(0)
    resumed = make(123)  # another seed: everything comes from the state
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    rest = []
    while len(served) + len(rest) < len(whole):
        rest.extend(resumed)
    for (a, la), (b, lb) in zip(whole, served + rest):
        assert torch.equal(a, b) and torch.equal(la, lb)
    plain = TensorLoader(x, y, batch_size=8)
    with pytest.raises(ValueError, match="hflip"):
        plain.load_state_dict(run.state_dict())
