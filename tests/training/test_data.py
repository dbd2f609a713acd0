"""CIFAR-10 sources, the cache, splits and the synthetic set, on tiny hand-made datasets."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import need
from helpers import write_batches
from PIL import Image

from sweeper.errors import DatasetMissing, UserError
from sweeper.training import data
from sweeper.training.data import CLASSES, Split, load_cached, make_splits, prepare, synthetic
from sweeper.training.sources import read_source
from sweeper.training.splits import dataset_name

SHARED = Path(__file__).resolve().parents[2].parent / "shared/datasets"
REAL_ARCHIVE = SHARED / "cifar10-jpeg.tar.gz"
LOSSLESS = SHARED / "cifar-10-python.tar.gz"
N_TRAIN, N_TEST = 6, 3


def pixels(split: str, label: int, i: int) -> np.ndarray:
    """A distinct, reproducible HWC image per (split, label, index)."""
    rng = np.random.default_rng([split == "train", label, i])
    return rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """10 classes x (6 train + 3 test) PNGs under one top-level folder, like the shared archive."""
    root = tmp_path / "tree" / "cifar10-png"
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(pixels(split, label, i)).save(root / split / name / f"{i:04d}.png")
    return tmp_path / "tree"


def make_tar(folder: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        for child in sorted(folder.iterdir()):
            tar.add(child, arcname=child.name)
    return dest


def check_tree_splits(train: Split, test: Split) -> None:
    assert train.images.shape == (10 * N_TRAIN, 3, 32, 32) and test.images.shape == (10 * N_TEST, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.images.is_contiguous() and test.images.is_contiguous()
    assert train.labels.tolist() == [c for c in range(10) for _ in range(N_TRAIN)]
    # PNG is lossless: every pixel comes back exactly, in (label, file name) order
    expected = np.stack([pixels("train", c, i) for c in range(10) for i in range(N_TRAIN)]).transpose(0, 3, 1, 2)
    assert np.array_equal(train.images.numpy(), expected)
    assert np.array_equal(test.images[-1].numpy(), pixels("test", 9, N_TEST - 1).transpose(2, 0, 1))


@pytest.mark.parametrize("as_tar", [False, True])
@pytest.mark.parametrize("top_folder", [True, False])
def test_image_folder_and_its_tarball(image_tree: Path, tmp_path: Path, as_tar: bool, top_folder: bool) -> None:
    tree = image_tree if top_folder else image_tree / "cifar10-png"  # with or without cifar10-png/ on top
    source = make_tar(tree, tmp_path / "tree.tar.gz") if as_tar else tree
    cache = prepare(tmp_path / "cache", source, progress=as_tar)  # draw the bar once, to stderr
    assert cache.name == "cifar10.npz" and list(cache.parent.iterdir()) == [cache]  # no temp files left
    check_tree_splits(*load_cached(tmp_path / "cache"))
    assert data.cached_source(tmp_path / "cache") == f"CIFAR-10 from {source}"


def test_max_per_class_reads_part_of_an_archive(image_tree: Path, tmp_path: Path) -> None:
    train, test, _ = read_source(make_tar(image_tree, tmp_path / "t.tgz"), max_per_class=2, progress=False)
    assert train.labels.bincount().tolist() == [2] * 10 and test.labels.bincount().tolist() == [2] * 10


@pytest.mark.parametrize("form", ["folder", "parent", "tarball"])
def test_torchvision_batches(tmp_path: Path, form: str) -> None:
    written = write_batches(tmp_path / "src" / "cifar-10-batches-py")
    source = {
        "folder": tmp_path / "src" / "cifar-10-batches-py",
        "parent": tmp_path / "src",
        "tarball": make_tar(tmp_path / "src", tmp_path / "cifar-10-python.tar.gz"),
    }[form]
    prepare(tmp_path / "cache", source, progress=False)
    train, test = load_cached(tmp_path / "cache")
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    assert np.array_equal(train.images[4:8].reshape(4, -1).numpy(), written["data_batch_2"][0])
    assert train.labels[:4].tolist() == written["data_batch_1"][1]
    assert test.labels.tolist() == written["test_batch"][1]


def test_download_goes_through_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    calls = []

    def fake_cifar10(root: str, download: bool) -> None:  # what torchvision leaves behind, offline
        calls.append((root, download))
        write_batches(Path(root) / "cifar-10-batches-py")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_cifar10)
    cache = prepare(tmp_path / "cache", download=True, progress=False)
    assert calls == [(str(tmp_path / "cache"), True)]
    assert load_cached(cache.parent)[0].images.shape == (20, 3, 32, 32)


def test_prepared_cache_is_reused(image_tree: Path, tmp_path: Path) -> None:
    cache = prepare(tmp_path / "cache", image_tree, progress=False)
    stamp = cache.stat().st_mtime_ns
    os.utime(cache, ns=(stamp - 10**9, stamp - 10**9))  # so a rewrite could not hide in the same tick
    # a missing source proves nothing is read again
    assert prepare(tmp_path / "cache", tmp_path / "gone", progress=False) == cache
    assert cache.stat().st_mtime_ns == stamp - 10**9


@pytest.mark.parametrize("damage", ["truncated", "flipped byte"])
def test_a_damaged_cache_is_found_and_rebuilt(image_tree: Path, tmp_path: Path, damage: str, capsys) -> None:
    cache = prepare(tmp_path / "cache", image_tree, progress=False)
    good = cache.read_bytes()
    if damage == "truncated":
        cache.write_bytes(good[: len(good) // 2])
    else:  # one pixel in the middle of the train images: only the CRC-32s and the digest can tell
        at = good.index(b"train_images.npy") + len(good) // 4
        cache.write_bytes(good[:at] + bytes([good[at] ^ 0xFF]) + good[at + 1 :])
    with pytest.raises(UserError, match="is damaged.*sweeper data prepare --from PATH"):
        prepare(tmp_path / "cache")  # no source to rebuild from: say so, leave the file
    assert prepare(tmp_path / "cache", image_tree, progress=False) == cache
    assert "is damaged" in capsys.readouterr().err
    assert data.cache_problem(cache) is None
    check_tree_splits(*load_cached(cache.parent))


def test_a_killed_prepare_leaves_no_temp_file_behind_the_next(image_tree: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    folder.mkdir()
    stale = folder / f".{data.CACHE_NAME}.abc123.tmp"  # what mkstemp named the file of a prepare killed mid-write
    stale.write_bytes(b"half a cache")
    prepare(folder, image_tree, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == [data.CACHE_NAME]


def test_missing_dataset_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(DatasetMissing, match="sweeper data prepare --from PATH") as info:
        load_cached(tmp_path / "nowhere")
    assert "--download" in str(info.value) and str(tmp_path / "nowhere") in str(info.value)
    with pytest.raises(DatasetMissing):
        prepare(tmp_path / "nowhere")


def test_bad_sources_are_user_errors(image_tree: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        prepare(tmp_path / "c", tmp_path / "missing", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no CIFAR-10 layout"):
        prepare(tmp_path / "c", tmp_path / "empty", progress=False)
    root = image_tree / "cifar10-png"
    (root / "train" / "airplane" / "0000.png").rename(root / "train" / "zebra.png")
    (root / "train" / "zebra").mkdir()
    (root / "train" / "zebra.png").rename(root / "train" / "zebra" / "0000.png")
    with pytest.raises(UserError, match="'zebra' is not a CIFAR-10 class"):
        prepare(tmp_path / "c", image_tree, progress=False)
    (root / "train" / "zebra" / "0000.png").unlink()
    Image.new("RGB", (64, 64)).save(root / "train" / "cat" / "big.png")
    with pytest.raises(UserError, match="64x64"):
        prepare(tmp_path / "c", image_tree, progress=False)
    assert not (tmp_path / "c").exists()  # failures leave no cache behind


def labelled(n_per_class: int) -> Split:
    labels = torch.arange(10).repeat_interleave(n_per_class)
    images = torch.arange(len(labels)).view(-1, 1, 1, 1).expand(-1, 3, 32, 32).to(torch.uint8)
    return Split(images.contiguous(), labels)


def ids(split: Split) -> set[int]:
    return set(split.images[:, 0, 0, 0].tolist())


def test_splits_are_stratified_disjoint_and_seeded() -> None:
    train, test = labelled(20), labelled(10)
    d = make_splits(train, test, val_size=50, train_size=100, test_size=30, seed=7)
    assert (len(d.train), len(d.val), len(d.test)) == (100, 50, 30)
    assert d.val.labels.bincount().tolist() == [5] * 10 and d.train.labels.bincount().tolist() == [10] * 10
    assert d.test.labels.bincount().tolist() == [3] * 10
    assert not ids(d.train) & ids(d.val)
    assert torch.equal(d.train.labels, train.labels[d.train.images[:, 0, 0, 0].long()])  # labels travel with images
    again = make_splits(train, test, val_size=50, train_size=100, test_size=30, seed=7)
    assert torch.equal(d.train.images, again.train.images) and torch.equal(d.test.images, again.test.images)
    other = make_splits(train, test, val_size=50, train_size=100, test_size=30, seed=8)
    assert ids(other.val) != ids(d.val)


def test_val_does_not_depend_on_train_size() -> None:
    train, test = labelled(20), labelled(10)
    full = make_splits(train, test, val_size=30, train_size=None, test_size=None, seed=1)
    quick = make_splits(train, test, val_size=30, train_size=20, test_size=10, seed=1)
    assert ids(full.val) == ids(quick.val) and len(full.train) == 170 and len(full.test) == 100
    assert ids(quick.train) <= ids(full.train)
    empty = make_splits(train, test, val_size=0, train_size=None, test_size=None, seed=1)
    assert len(empty.val) == 0 and empty.val.images.shape == (0, 3, 32, 32) and len(empty.train) == 200


def test_split_sizes_beyond_the_data_are_user_errors() -> None:
    train, test = labelled(5), labelled(2)
    with pytest.raises(UserError, match="train_size"):
        make_splits(train, test, val_size=10, train_size=41, test_size=None, seed=0)
    with pytest.raises(UserError, match="test_size"):
        make_splits(train, test, val_size=10, train_size=None, test_size=21, seed=0)


def test_synthetic_is_deterministic_and_learnable() -> None:
    train, test = synthetic(512, 256, seed=3)
    assert train.images.shape == (512, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.bincount().tolist() == [52] * 2 + [51] * 8
    assert torch.equal(train.images, synthetic(512, 256, seed=3)[0].images)
    assert not torch.equal(train.images, synthetic(512, 256, seed=4)[0].images)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(),
        torch.nn.Linear(128, 10),
    )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(30):
        idx = torch.arange(step * 64, step * 64 + 64) % 512
        loss = torch.nn.functional.cross_entropy(model(train.images[idx].float() / 255), train.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    accuracy = (model(test.images.float() / 255).argmax(1) == test.labels).float().mean().item()
    assert accuracy > 0.5


def test_the_original_archive_is_the_full_lossless_cifar10() -> None:
    """make demo's default source: all 60,000 images in the official order, named plain 'CIFAR-10'."""
    need(LOSSLESS.is_file(), f"{LOSSLESS} is missing (the shared original CIFAR-10)")
    train, test, description = read_source(LOSSLESS, progress=False)
    assert dataset_name(description) == "CIFAR-10"
    assert train.images.shape == (50000, 3, 32, 32) and test.images.shape == (10000, 3, 32, 32)
    assert train.labels.bincount().tolist() == [5000] * 10 and test.labels.bincount().tolist() == [1000] * 10
    # the official order: the first training image is a frog (6), the first test image a cat (3)
    assert train.labels[:5].tolist() == [6, 9, 9, 4, 1] and test.labels[:5].tolist() == [3, 8, 8, 0, 6]


def test_part_of_the_real_archive() -> None:
    need(REAL_ARCHIVE.is_file(), f"{REAL_ARCHIVE} is missing (the shared CIFAR-10 JPEG archive)")
    train, test, description = read_source(REAL_ARCHIVE, max_per_class=30, progress=False)
    assert dataset_name(description) == "CIFAR-10 (JPEG)"
    assert train.images.shape == (300, 3, 32, 32) and test.images.shape == (300, 3, 32, 32)
    assert train.labels.tolist() == [c for c in range(10) for _ in range(30)]
    assert test.labels.bincount().tolist() == [30] * 10
    # real photos, not blank decodes: every image has contrast, and the classes differ on average
    flat = train.images.float().flatten(1)
    assert (flat.std(1) > 5).all()
    means = torch.stack([flat[train.labels == c].mean() for c in range(10)])
    assert means.std() > 1
