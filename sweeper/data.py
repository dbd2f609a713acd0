"""CIFAR-10 sources -> one cached uint8 array file -> seeded stratified splits (+ a synthetic set for tests)."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
import torch

from sweeper.errors import DatasetMissing, UserError

if TYPE_CHECKING:
    from rich.progress import Progress

CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CACHE_NAME = "cifar10.npz"
_CACHE_VERSION = 1
_BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
_LAYOUTS = (
    "a cifar-10-batches-py folder (or its parent, or cifar-10-python.tar.gz), "
    "an ImageFolder tree train/<class>/*.jpg|png + test/<class>/..., or a .tar.gz of that tree"
)

# One image of an ImageFolder source before decoding: (split, label, display name, bytes or file path).
_Entry = tuple[str, int, str, "bytes | Path"]


@dataclass
class Split:
    """Images as uint8 [N,3,32,32] contiguous NCHW, labels as int64 [N]."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class CifarData:
    """The three splits one run trains, selects and reports on."""

    train: Split
    val: Split
    test: Split
    source: str = "unknown"


# --- reading sources ------------------------------------------------------------------------


def _split(images: np.ndarray, labels: np.ndarray) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels.astype(np.int64)))


def _from_batches(blobs: dict[str, bytes], where: str) -> tuple[Split, Split]:
    """Unpickle torchvision's data_batch_1..5 + test_batch (latin1, as torchvision does)."""
    missing = [name for name in _BATCHES if name not in blobs]
    if missing:
        raise UserError(f"{where}: the CIFAR-10 batches {', '.join(missing)} are missing; expected {_LAYOUTS}.")
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"train": [], "test": []}
    for name in _BATCHES:
        try:
            entry = pickle.loads(blobs[name], encoding="latin1")
            data = np.asarray(entry["data"], dtype=np.uint8)
            labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
        except Exception as e:  # a corrupt pickle can raise almost anything
            raise UserError(f"{where}/{name}: not a CIFAR-10 batch ({type(e).__name__}: {e}).") from e
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
            raise UserError(f"{where}/{name}: expected 'data' of shape [N, 3072], got {data.shape}.")
        parts["test" if name == "test_batch" else "train"].append((data.reshape(-1, 3, 32, 32), labels))
    train, test = ((np.concatenate([d for d, _ in v]), np.concatenate([l for _, l in v])) for v in parts.values())
    return _split(*train), _split(*test)


def _image_entry(parts: tuple[str, ...], where: str) -> tuple[str, int] | None:
    """(split, label) for <top>/?{train,test}/<class>/<image>, None for files outside that layout."""
    if len(parts) not in (3, 4) or parts[-3] not in ("train", "test"):
        return None
    if parts[-1].startswith(".") or PurePosixPath(parts[-1]).suffix.lower() not in _IMAGE_SUFFIXES:
        return None
    if parts[-2] not in CLASSES:
        raise UserError(
            f"{where}: class folder '{parts[-2]}' is not a CIFAR-10 class; expected one of {', '.join(CLASSES)}."
        )
    return parts[-3], CLASSES.index(parts[-2])


def _keep(counts: dict[tuple[str, int], int], key: tuple[str, int], max_per_class: int | None) -> bool:
    """Count one more image of (split, label) unless that class already has max_per_class."""
    if max_per_class is not None and counts.get(key, 0) >= max_per_class:
        return False
    counts[key] = counts.get(key, 0) + 1
    return True


def _scan_tar(path: Path, max_per_class: int | None, bar: Progress) -> tuple[dict[str, bytes], list[_Entry]]:
    """One streaming pass over an archive, keeping batch pickles and ImageFolder images (no extraction)."""
    blobs: dict[str, bytes] = {}
    entries: list[_Entry] = []
    counts: dict[tuple[str, int], int] = {}
    task = bar.add_task(f"Reading {path.name}", total=path.stat().st_size)
    with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
        for member in tar:
            bar.update(task, completed=raw.tell())
            parts = PurePosixPath(member.name).parts
            if not member.isfile():
                continue
            if len(parts) >= 2 and parts[-2] == "cifar-10-batches-py" and parts[-1] in _BATCHES:
                blobs[parts[-1]] = tar.extractfile(member).read()
            elif (key := _image_entry(parts, f"{path}:{member.name}")) and _keep(counts, key, max_per_class):
                entries.append((*key, member.name, tar.extractfile(member).read()))
    bar.update(task, completed=path.stat().st_size)
    return blobs, entries


def _scan_folder(path: Path, max_per_class: int | None) -> list[_Entry]:
    """Image files at <path>/[<top>/]{train,test}/<class>/, the first max_per_class per class by name."""
    entries: list[_Entry] = []
    counts: dict[tuple[str, int], int] = {}
    # two fixed depths, not rglob: a wrong PATH such as a home folder must fail fast, not crawl
    for file in sorted([*path.glob("*/*/*"), *path.glob("*/*/*/*")]):
        parts = file.relative_to(path).parts
        if (key := _image_entry(parts, str(file.parent))) and file.is_file() and _keep(counts, key, max_per_class):
            entries.append((*key, "/".join(parts), file))
    return entries


def _decode(entries: list[_Entry], where: str, bar: Progress) -> tuple[Split, Split]:
    """Decode images with Pillow into uint8 NCHW, ordered by (split, label, name) whatever the source order."""
    for split in ("train", "test"):
        found = {label for s, label, _, _ in entries if s == split}
        if missing := [CLASSES[i] for i in range(len(CLASSES)) if i not in found]:
            raise UserError(f"{where}: no {split} images for {', '.join(missing)}; expected {_LAYOUTS}.")
    from PIL import Image

    entries = sorted(entries, key=lambda e: e[:3])
    pixels = np.empty((len(entries), 32 * 32 * 3), dtype=np.uint8)
    task = bar.add_task(f"Decoding {len(entries):,} images", total=len(entries))
    for i, (_, _, name, payload) in enumerate(entries):
        if i % 1000 == 0:  # a rich update per image would cost as much as the decode itself
            bar.update(task, completed=i)
        try:
            with Image.open(io.BytesIO(payload) if isinstance(payload, bytes) else payload) as image:
                if image.size != (32, 32):
                    raise UserError(f"{where}: {name} is {image.size[0]}x{image.size[1]}; CIFAR-10 images are 32x32.")
                pixels[i] = np.frombuffer(image.convert("RGB").tobytes(), dtype=np.uint8)
        except (OSError, ValueError) as e:  # PIL.UnidentifiedImageError is an OSError
            raise UserError(f"{where}: cannot decode {name} ({e}).") from e
    bar.update(task, completed=len(entries))
    images = pixels.reshape(-1, 32, 32, 3).transpose(0, 3, 1, 2)
    labels = np.array([e[1] for e in entries], dtype=np.int64)
    is_train = np.array([e[0] == "train" for e in entries])
    return _split(images[is_train], labels[is_train]), _split(images[~is_train], labels[~is_train])


def read_source(
    source: Path | str, *, max_per_class: int | None = None, progress: bool = True
) -> tuple[Split, Split, str]:
    """Read any supported CIFAR-10 source into (train, test, description); max_per_class caps ImageFolder reads."""
    from rich.console import Console
    from rich.progress import Progress

    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(f"{path} does not exist; expected {_LAYOUTS}.")
    if path.is_dir():
        for batches in (path, path / "cifar-10-batches-py"):
            if (batches / "data_batch_1").is_file():
                blobs = {n: (batches / n).read_bytes() for n in _BATCHES if (batches / n).is_file()}
                return (*_from_batches(blobs, str(batches)), f"CIFAR-10 batches from {batches}")
        if (path / "cifar-10-python.tar.gz").is_file():
            path = path / "cifar-10-python.tar.gz"
    elif not tarfile.is_tarfile(path):
        raise UserError(f"{path} is neither a folder nor a tar archive; expected {_LAYOUTS}.")
    # stderr, so that a CLI command's stdout stays clean for its result
    with Progress(console=Console(stderr=True), disable=not progress) as bar:
        if path.is_dir():
            entries = _scan_folder(path, max_per_class)
        else:
            blobs, entries = _scan_tar(path, max_per_class, bar)
            if blobs and not entries:
                return (*_from_batches(blobs, str(path)), f"CIFAR-10 batches from {path}")
        if not entries:
            raise UserError(f"{path} holds no CIFAR-10 layout; expected {_LAYOUTS}.")
        train, test = _decode(entries, str(path), bar)
    # the README asks results from re-encoded JPEGs to say so
    kind = "CIFAR-10 (JPEG)" if any(e[2].lower().endswith((".jpg", ".jpeg")) for e in entries) else "CIFAR-10"
    return train, test, f"{kind} from {path}"


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
    """Write to a temp file in the same folder and rename, so a crash never leaves a half-written cache."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=f".{cache.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            # uncompressed: loading is then a plain read, about a second for 60k images
            np.savez(
                f, version=np.array(_CACHE_VERSION), source=np.array(source),
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


def prepare(
    data_dir: Path | str, source: Path | str | None = None, download: bool = False, *, force: bool = False,
    progress: bool = True,
) -> Path:  # fmt: skip
    """Build the cache in data_dir from source (or a download) once; return its path."""
    data_dir = Path(data_dir).expanduser()
    cache = data_dir / CACHE_NAME
    if cache.is_file() and not force:
        return cache
    if source is not None:
        train, test, description = read_source(source, progress=progress)
    elif download:
        from torchvision.datasets import CIFAR10

        CIFAR10(root=str(data_dir), download=True)  # fetches and checks cifar-10-python.tar.gz
        train, test, description = read_source(data_dir / "cifar-10-batches-py", progress=progress)
    else:
        raise DatasetMissing(_missing_message(data_dir))
    _write_cache(cache, train, test, description)
    return cache


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
    train_x, train_y, test_x, test_y = _read_cache(data_dir, "train_images", "train_labels", "test_images", "test_labels")
    return _split(train_x, train_y), _split(test_x, test_y)


def cached_source(data_dir: Path | str) -> str:
    """Where the cache came from, e.g. 'CIFAR-10 (JPEG) from ...', for run metadata."""
    return str(_read_cache(data_dir, "source")[0])


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
