"""CIFAR-10 sources -> one cached uint8 array file -> seeded stratified splits (+ a synthetic set for tests).

The readers of each source layout are in sources.py (types in splits.py); this module caches what they return.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets

from sweeper.errors import DatasetMissing, UserError, warn
from sweeper.locks import locked
from sweeper.schema.spec import Cell
from sweeper.settings import get_settings
from sweeper.training.sources import read_source
from sweeper.training.splits import CLASSES, CifarData, Split, as_split, digest  # noqa: F401 - re-exported

CACHE_NAME = "cifar10.npz"
_CACHE_VERSION = 1


# --- the cache ------------------------------------------------------------------------------


def _missing_message(data_dir: Path) -> str:
    return (
        f"No prepared CIFAR-10 at {(data_dir / CACHE_NAME).resolve()}. "
        "Run `sweeper data prepare --from PATH`, where PATH is a cifar-10-batches-py folder, "
        "an ImageFolder tree (train/<class>/*.jpg + test/<class>/...) or its .tar.gz "
        "(such as the shared datasets/cifar10-jpeg.tar.gz), or `sweeper data prepare --download` where the "
        "internet is reachable. The data directory is --data-dir, else SWEEPER_DATA_DIR, else ./data."
    )


def _write_cache(cache: Path, train: Split, test: Split, source: str) -> None:
    """Write to a temp file in the same folder and rename, so a crash never leaves a half-written cache;
    under a lock on the folder, so the temp files of a killed `prepare` can be removed first."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    with locked(cache.parent):
        for stale in cache.parent.glob(f".{cache.name}.*.tmp"):  # no live writer: we hold the lock
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=f".{cache.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                # uncompressed: loading is then a plain read, about a second for 60k images
                np.savez(
                    f, version=np.array(_CACHE_VERSION), source=np.array(source), digest=np.array(digest(train, test)),
                    train_images=train.images.numpy(), train_labels=train.labels.numpy(),
                    test_images=test.images.numpy(), test_labels=test.labels.numpy(),
                )  # fmt: skip
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
            os.replace(tmp, cache)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def cache_problem(cache: Path) -> str | None:
    """What is wrong with an existing cache file (truncated, corrupt, inconsistent), or None when it is sound.

    Reads every array: the zip format checks each member's CRC-32 once it is read to its end, and a cache
    written since the digest was stored is held against it too. About a second for the full set.
    """
    try:
        with np.load(cache) as archive:
            if int(archive["version"]) != _CACHE_VERSION:
                return f"cache format {int(archive['version'])}, expected {_CACHE_VERSION}"
            arrays = {key: archive[key] for key in archive.files}
        train = as_split(arrays["train_images"], arrays["train_labels"])
        test = as_split(arrays["test_images"], arrays["test_labels"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        return f"{type(e).__name__}: {e}"
    for name, split in (("train", train), ("test", test)):
        if split.images.shape[1:] != (3, 32, 32) or len(split.images) != len(split.labels):
            return f"its {name} images have shape {tuple(split.images.shape)} for {len(split.labels)} labels"
    if "digest" in arrays and str(arrays["digest"]) != digest(train, test):
        return "its images do not match the digest stored with them"
    return None


def prepare(
    data_dir: Path | str, source: Path | str | None = None, download: bool = False, *, force: bool = False,
    progress: bool = True,
) -> Path:  # fmt: skip
    """Build the cache in data_dir from source (or a download) once; return its path."""
    data_dir = Path(data_dir).expanduser()
    cache = data_dir / CACHE_NAME
    if cache.is_file() and not force:
        problem = cache_problem(cache)
        if problem is None:
            return cache
        if source is None and not download:
            raise UserError(
                f"the CIFAR-10 cache {cache} is damaged ({problem}); rebuild it with "
                "`sweeper data prepare --from PATH` (or `--download`), which replaces it."
            )
        warn(f"the CIFAR-10 cache {cache} is damaged ({problem}); rebuilding it")
    _check_writable(data_dir)  # before minutes of reading, and before a download lands there
    if source is not None:
        train, test, description = read_source(source, progress=progress)
    elif download:
        datasets.CIFAR10(root=str(data_dir), download=True)  # fetches and checks cifar-10-python.tar.gz
        train, test, description = read_source(data_dir / "cifar-10-batches-py", progress=progress)
    else:
        raise DatasetMissing(_missing_message(data_dir))
    try:
        _write_cache(cache, train, test, description)
    except OSError as e:  # full disk, read-only mount: _write_cache removed its temp file
        raise UserError(f"cannot write the CIFAR-10 cache {cache} ({e.strerror or e}).") from None
    return cache


def _check_writable(data_dir: Path) -> None:
    """A UserError unless data_dir is, or can be created as, a folder this process can write (creates nothing)."""
    existing = data_dir.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(
            f"cannot use {data_dir} as the data directory: {existing} is a file, not a folder. "
            "Pass another --data-dir (or SWEEPER_DATA_DIR)."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"cannot write the data directory {data_dir}: {existing} is read-only for this user. "
            "Pass a writable --data-dir (or SWEEPER_DATA_DIR)."
        )


def _read_cache(data_dir: Path | str, *keys: str) -> list[np.ndarray]:
    """Named arrays from the cache, or DatasetMissing / a UserError saying how to rebuild it."""
    data_dir = Path(data_dir).expanduser()
    cache = data_dir / CACHE_NAME
    if not cache.is_file():
        raise DatasetMissing(_missing_message(data_dir))
    try:
        with np.load(cache) as archive:
            if int(archive["version"]) != _CACHE_VERSION:
                raise ValueError(f"cache format {int(archive['version'])}, expected {_CACHE_VERSION}")
            return [archive[key] for key in keys]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise UserError(f"{cache} is unreadable ({e}); delete it and run `sweeper data prepare` again.") from e


def load_cached(data_dir: Path | str) -> tuple[Split, Split]:
    """The prepared (full train, test) splits; DatasetMissing says how to prepare them."""
    train_x, train_y, test_x, test_y = _read_cache(
        data_dir, "train_images", "train_labels", "test_images", "test_labels"
    )
    return as_split(train_x, train_y), as_split(test_x, test_y)


def cached_source(data_dir: Path | str) -> str:
    """Where the cache came from, e.g. 'CIFAR-10 (JPEG) from ...', for run metadata."""
    return str(_read_cache(data_dir, "source")[0])


# What in-memory splits passed to a sweep (tests) are called: they never came from a prepared cache.
IN_MEMORY = "synthetic (splits passed in memory)"


class DataCache:
    """The full train/test tensors, loaded once, and the splits each distinct data config asks for."""

    def __init__(self, base: tuple[Split, Split] | None = None, source: str = IN_MEMORY):
        self._base = base
        self._source = source if base is not None else ""
        self._digest = ""
        self._splits: dict[tuple, CifarData] = {}

    def for_cell(self, cell: Cell) -> CifarData:
        """Train/val/test of a cell; the split is fixed (seed 0) so seeds vary only the training."""
        d = cell.config.data
        key = (d.val_size, d.train_size, d.test_size)
        if key not in self._splits:
            if self._base is None:
                self._base = load_cached(get_settings().data_dir)
                self._source = cached_source(get_settings().data_dir)
            train, test = self._base
            self._digest = self._digest or digest(train, test)  # ~0.1 s per GB, once per process
            self._splits[key] = make_splits(
                train, test, val_size=d.val_size, train_size=d.train_size, test_size=d.test_size, seed=0,
                source=self._source,
            )  # fmt: skip
            self._splits[key].digest = self._digest
        return self._splits[key]


# --- splits ---------------------------------------------------------------------------------


def _allocate(available: np.ndarray, n: int, what: str) -> np.ndarray:
    """Split n over classes in proportion to what each has (largest remainder), or raise if too few."""
    if n < 0 or n > available.sum():
        raise UserError(f"{what}={n} but only {int(available.sum())} images are available.")
    exact = n * available / max(available.sum(), 1)
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def _class_perms(labels: torch.Tensor, seed: int) -> list[torch.Tensor]:
    """Per class, that class's indices in a seeded random order."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in range(len(CLASSES)):
        idx = torch.nonzero(labels == c).flatten()
        out.append(idx[torch.randperm(len(idx), generator=g)])
    return out


def _take(split: Split, perms: list[torch.Tensor], starts: np.ndarray, counts: np.ndarray) -> Split:
    idx = torch.cat([p[s : s + n] for p, s, n in zip(perms, starts, counts)]).sort().values
    return Split(split.images[idx].contiguous(), split.labels[idx].clone())


def make_splits(
    train: Split,
    test: Split,
    *,
    val_size: int,
    train_size: int | None,
    test_size: int | None,
    seed: int,
    source: str = "unknown",
) -> CifarData:
    """Seeded stratified val held out of train first, then stratified train and test subsets."""
    perms = _class_perms(train.labels, seed)
    available = np.array([len(p) for p in perms])
    # val is cut first and from the front of each class's order, so it never depends on train_size
    n_val = _allocate(available, val_size, "val_size")
    left = available - n_val
    n_train = left if train_size is None else _allocate(left, train_size, f"train_size (after val_size={val_size})")
    test_perms = _class_perms(test.labels, seed + 1)
    test_avail = np.array([len(p) for p in test_perms])
    n_test = test_avail if test_size is None else _allocate(test_avail, test_size, "test_size")
    return CifarData(
        train=_take(train, perms, n_val, n_train),
        val=_take(train, perms, np.zeros_like(n_val), n_val),
        test=_take(test, test_perms, np.zeros_like(n_test), n_test),
        source=source,
    )


def synthetic(n_train: int = 512, n_test: int = 256, seed: int = 0) -> tuple[Split, Split]:
    """A small learnable CIFAR-shaped dataset: one colour template per class plus noise."""
    g = torch.Generator().manual_seed(seed)
    k = len(CLASSES)
    # A flat class colour plus a coarse, left-right symmetric pattern: learnable in a few steps,
    # and still learnable under the weak crop/flip augmentation.
    colour = torch.rand(k, 3, 1, 1, generator=g).expand(k, 3, 32, 32)
    half = torch.rand(k, 3, 4, 2, generator=g)
    pattern = torch.nn.functional.interpolate(torch.cat([half, half.flip(-1)], -1), size=32, mode="bilinear")
    templates = 40 + 180 * (0.5 * colour + 0.5 * pattern)

    def make(n: int) -> Split:
        labels = (torch.arange(n) % k)[torch.randperm(n, generator=g)]
        noise = 25 * torch.randn(n, 3, 32, 32, generator=g)
        images = (templates[labels] + noise).round().clamp(0, 255).to(torch.uint8).contiguous()
        return Split(images, labels.to(torch.int64))

    return make(n_train), make(n_test)
