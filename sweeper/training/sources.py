"""CIFAR-10 as it arrives -> uint8 (train, test) splits: torchvision's pickled batches, an
ImageFolder tree, or a .tar.gz of either, read in one streaming pass without extraction.

data.py caches what these readers return (splits.py holds the types); nothing here knows about the cache.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import warnings
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import Progress

from sweeper.errors import UserError
from sweeper.training.splits import CLASSES, Split, as_split

_BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
_LAYOUTS = (
    "a cifar-10-batches-py folder (or its parent, or cifar-10-python.tar.gz), "
    "an ImageFolder tree train/<class>/*.jpg|png + test/<class>/..., or a .tar.gz of that tree"
)

# One image of an ImageFolder source before decoding: (split, label, display name, bytes or file path).
_Entry = tuple[str, int, str, "bytes | Path"]


# The globals a genuine CIFAR-10 batch pickle names (python2's numpy.core, numpy 2's numpy._core, and
# python3 protocol 2-5 forms of ndarray and bytes), and nothing else: any other global could run code.
_BATCH_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }
)


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler for batch files of unknown origin: refuses every global a CIFAR-10 batch does not use."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _BATCH_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}, which a CIFAR-10 batch never holds")
        with warnings.catch_warnings():  # numpy 2 warns on the numpy.core name that python2 pickles use
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def _load_batch(blob: bytes) -> dict:
    """One batch pickle (python2's, hence latin1, as torchvision reads it) through the restricted unpickler."""
    entry = _BatchUnpickler(io.BytesIO(blob), encoding="latin1").load()
    if not isinstance(entry, dict):
        raise pickle.UnpicklingError(f"a {type(entry).__name__}, not a dict")
    return entry


def _from_batches(blobs: dict[str, bytes], where: str) -> tuple[Split, Split]:
    """Unpickle torchvision's data_batch_1..5 + test_batch, allowing only what such a batch holds."""
    missing = [name for name in _BATCHES if name not in blobs]
    if missing:
        raise UserError(f"{where}: the CIFAR-10 batches {', '.join(missing)} are missing; expected {_LAYOUTS}.")
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"train": [], "test": []}
    for name in _BATCHES:
        try:
            entry = _load_batch(blobs[name])
            data = np.asarray(entry["data"], dtype=np.uint8)
            labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
        except Exception as e:  # a corrupt pickle can raise almost anything
            raise UserError(f"{where}/{name}: not a CIFAR-10 batch ({type(e).__name__}: {e}).") from e
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
            raise UserError(f"{where}/{name}: expected 'data' of shape [N, 3072], got {data.shape}.")
        parts["test" if name == "test_batch" else "train"].append((data.reshape(-1, 3, 32, 32), labels))
    train, test = (
        (np.concatenate([d for d, _ in v]), np.concatenate([labels for _, labels in v])) for v in parts.values()
    )
    return as_split(*train), as_split(*test)


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


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    assert f is not None, member.name  # regular files only (checked by the caller)
    return f.read()


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
                blobs[parts[-1]] = _read_member(tar, member)
            elif (key := _image_entry(parts, f"{path}:{member.name}")) and _keep(counts, key, max_per_class):
                entries.append((*key, member.name, _read_member(tar, member)))
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
    return as_split(images[is_train], labels[is_train]), as_split(images[~is_train], labels[~is_train])


def read_source(
    source: Path | str, *, max_per_class: int | None = None, progress: bool = True
) -> tuple[Split, Split, str]:
    """Read any supported CIFAR-10 source into (train, test, description); max_per_class caps ImageFolder reads."""
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
            try:
                blobs, entries = _scan_tar(path, max_per_class, bar)
            except (tarfile.TarError, EOFError, zlib.error, OSError) as e:  # truncated or corrupt download
                raise UserError(
                    f"{path} is damaged ({type(e).__name__}: {e}): it may be truncated; download or copy it again."
                ) from None
            if blobs and not entries:
                return (*_from_batches(blobs, str(path)), f"CIFAR-10 batches from {path}")
        if not entries:
            raise UserError(f"{path} holds no CIFAR-10 layout; expected {_LAYOUTS}.")
        train, test = _decode(entries, str(path), bar)
    # the README asks results from re-encoded JPEGs to say so
    kind = "CIFAR-10 (JPEG)" if any(e[2].lower().endswith((".jpg", ".jpeg")) for e in entries) else "CIFAR-10"
    return train, test, f"{kind} from {path}"
