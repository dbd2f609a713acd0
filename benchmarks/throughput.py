"""Training throughput: the usual PyTorch loop against sweeper's trainer and against the model's own
ceiling, side by side in one process, on one device.

For the baseline CNN (report 000, Table 1), the Table 2 ResNet of report 000 (stem 32, widths
64/128/128, blocks 2/2/2), ResNet-18 and DenseNet-121, batch 128, an augmentation preset (`strong`
by default: colour jitter, rotation + shift, random erasing), Adam 1e-3, on the same uint8 images:

  reference  the loop as users write it: a Dataset over the images with the preset as PIL/torchvision
             transforms per image, ToTensor, Normalize; a DataLoader (shuffle, 2 worker processes);
             eager fp32 NCHW forward, backward, step on the device.
  sweeper    `sweeper.training.train.train` with its defaults: uint8 images on the device, the preset batched
             there, channels_last, automatic precision; its `images_per_s` times the training loop
             only, as the reference's clock does (no model building, no evaluation).
  ceiling    the same model, precision, memory format and fused Adam on random normalised tensors
             already on the device: forward, backward and step only, what no data path can beat.
             On a GPU the goal is sweeper >= 0.9 of it with `strong` on.

Both are warmed up first; then each round times N steps of each, alternating which goes first,
because the machine may be shared: the ratio is taken per round and the median reported.

    .venv/bin/python benchmarks/throughput.py                      # two report models, 10 steps x 3 rounds
    .venv/bin/python benchmarks/throughput.py --device cuda --models baseline resnet resnet18 densenet121
    .venv/bin/python benchmarks/throughput.py --models resnet --steps 20 --rounds 5
    .venv/bin/python benchmarks/throughput.py --contend 1 --threads auto 2 1   # a busy machine

`--contend N` keeps N CPU-bound processes (a Python busy loop each) running through the whole
measurement, as a second job on a shared machine would; `--threads` times sweeper's trainer at
each intra-op thread setting (SWEEPER_THREADS: "auto" = the cores other processes leave idle).
The reference loop keeps torch's default, as users' scripts do.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from sweeper.catalogue import AUGMENTS, NORMALIZATIONS
from sweeper.errors import DatasetMissing
from sweeper.models import create_model
from sweeper.schema.config import TrainConfig
from sweeper.training.data import CifarData, Split, load_cached, synthetic
from sweeper.training.device import input_format, pick_device, to_device
from sweeper.training.optim import build_optimizer
from sweeper.training.precision import autocast, pick_precision
from sweeper.training.train import build_model, train

BATCH = 128
DEFAULT_THREADS = torch.get_num_threads()
MODELS = {
    "baseline": {"name": "baseline_cnn"},
    "resnet": {"name": "resnet_basic", "stem": 32, "widths": [64, 128, 128], "blocks": [2, 2, 2]},
    "resnet18": {"name": "resnet18"},
    "densenet121": {"name": "densenet121"},
}


class PilCifar(Dataset):
    """CIFAR images as PIL images through a torchvision transform, as torchvision.datasets.CIFAR10 does."""

    def __init__(self, split: Split, transform) -> None:
        self.images = split.images.permute(0, 2, 3, 1).numpy()  # HWC uint8, what PIL reads
        self.labels = split.labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def pil_transform(preset: str):
    """The preset as the per-image torchvision pipeline users write (PIL in, normalised tensor out)."""
    from torchvision import transforms as T

    info = NORMALIZATIONS.get("cifar10")
    crop = (
        [T.RandomCrop(32, padding=2 if preset == "translate" else 4), T.RandomHorizontalFlip()]
        if preset != "none"
        else []
    )
    extra = {
        "autoaugment": [T.AutoAugment(T.AutoAugmentPolicy.CIFAR10)],
        "strong": [T.ColorJitter(0.2, 0.2, 0.2), T.RandomAffine(15, translate=(0.1, 0.1))],
    }.get(preset, [])
    erase = [T.RandomErasing(p=0.25, value=0)] if preset == "strong" else []
    return T.Compose([*crop, *extra, T.ToTensor(), T.Normalize(info.mean, info.std), *erase])


def reference(model_spec: dict, split: Split, device: torch.device, preset: str):
    """A `run(steps) -> seconds` for the usual loop on `device`; its DataLoader stays up between calls."""
    transform = pil_transform(preset)
    loader = DataLoader(
        PilCifar(split, transform),
        batch_size=BATCH,
        shuffle=True,
        num_workers=2,
        drop_last=True,
        persistent_workers=True,
    )
    batches = itertools.chain.from_iterable(itertools.repeat(loader))  # epoch after epoch
    model = create_model(model_spec["name"], **{k: v for k, v in model_spec.items() if k != "name"}).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def run(steps: int) -> float:
        tick = time.perf_counter()
        for x, y in itertools.islice(batches, steps):
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        _sync(device)
        return time.perf_counter() - tick

    return run


def ceiling(model_spec: dict, device: torch.device, precision: str):
    """A `run(steps) -> seconds` of forward, backward and step on random tensors already on the device."""
    cfg = config(model_spec, "none")
    model = to_device(build_model(cfg), cfg, device).train()
    optimizer = build_optimizer(cfg, model)
    fmt = input_format(cfg, device)
    x = torch.randn(BATCH, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(10, (BATCH,), device=device)

    def run(steps: int) -> float:
        tick = time.perf_counter()
        for _ in range(steps):
            with autocast(device, precision):
                loss = F.cross_entropy(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _sync(device)
        return time.perf_counter() - tick

    return run


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def config(model_spec: dict, preset: str) -> TrainConfig:
    """sweeper's config for a model and preset: its defaults, batch 128, Adam 1e-3, one epoch."""
    return TrainConfig.model_validate({
        "model": model_spec, "data": {"augment": preset, "normalize": "cifar10", "batch_size": BATCH},
        "optimizer": {"name": "adam", "lr": 1e-3}, "epochs": 1,
    })  # fmt: skip


def sweeper_trainer(model_spec: dict, split: Split, device: torch.device, preset: str):
    """A `run(steps) -> seconds` that trains one epoch of `steps` batches with sweeper.training.train."""
    cfg = config(model_spec, preset)
    empty = Split(split.images[:0], split.labels[:0])

    def run(steps: int) -> float:
        n = steps * BATCH
        data = CifarData(
            Split(split.images[:n], split.labels[:n]), val=empty, test=Split(split.images[:10], split.labels[:10])
        )
        images_per_s = train(cfg, data, device=device).history[0]["images_per_s"]
        return n / images_per_s

    return run, pick_precision(cfg.precision, device)


def images(data_dir: Path, n: int) -> tuple[Split, str]:
    """The first n prepared CIFAR-10 training images, or synthetic ones where none are prepared."""
    try:
        train_split, _ = load_cached(data_dir)
        return Split(train_split.images[:n], train_split.labels[:n]), "CIFAR-10"
    except DatasetMissing:
        train_split, _ = synthetic(n_train=n, n_test=10)
        return train_split, "synthetic (no prepared CIFAR-10)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=["baseline", "resnet"])
    parser.add_argument("--augment", choices=list(AUGMENTS.names), default="strong", help="the augmentation preset")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per side per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--contend", type=int, default=0, help="competing CPU-bound processes to run meanwhile")
    parser.add_argument("--threads", nargs="+", default=["auto"], help="sweeper thread settings to time (auto or N)")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("SWEEPER_DATA_DIR", "data")))
    args = parser.parse_args()

    device = pick_device(args.device)
    busy = "while True:\n    pass\n"
    hogs = [subprocess.Popen([sys.executable, "-c", busy]) for _ in range(args.contend)]
    try:
        measure(args, device)
    finally:
        for hog in hogs:
            hog.kill()


def measure(args: argparse.Namespace, device: torch.device) -> None:
    """Time the reference loop and sweeper's trainer (at each thread setting), round by round."""
    split, source = images(args.data_dir, max(args.steps, 2) * BATCH * 2)
    print(
        f"{source}, batch {BATCH}, {args.augment} augmentation, {args.steps} steps x {args.rounds} rounds, "
        f"device {device}, torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}"
    )
    cpu = " ".join(_cpu_model().split())
    print(f"CPU: {cpu}; {args.contend} competing process(es)")
    for name in args.models:
        ref = reference(MODELS[name], split, device, args.augment)
        ours, precision = sweeper_trainer(MODELS[name], split, device, args.augment)
        sides = [("ref", ref)] + [(f"sweeper[{t}]", _with_threads(ours, t)) for t in args.threads]
        sides.append(("ceiling", _with_threads(ceiling(MODELS[name], device, precision), args.threads[0])))
        for _, run in sides:
            run(2)  # warm-up: worker start, oneDNN primitive creation
        rows = []
        for r in range(args.rounds):
            order = sides[:: 1 if r % 2 == 0 else -1]  # alternate who goes first: the machine may be shared
            seconds = {label: run(args.steps) for label, run in order}
            rows.append({k: args.steps * BATCH / v for k, v in seconds.items()})
            shown = "   ".join(
                f"{k} {v:7.1f} img/s ({v / rows[-1]['ref']:.2f}x)" for k, v in rows[-1].items() if k != "ref"
            )
            print(f"  {name} round {r + 1}: reference {rows[-1]['ref']:7.1f} img/s   {shown}")
        for label, _ in sides[1:-1]:
            ratio = statistics.median(row[label] / row["ref"] for row in rows)
            of_ceiling = statistics.median(row[label] / row["ceiling"] for row in rows)
            print(
                f"{name}: reference (fp32 NCHW, PIL + DataLoader x2) {statistics.median(r['ref'] for r in rows):.1f} img/s, "
                f"{label} ({precision}, channels_last) {statistics.median(r[label] for r in rows):.1f} img/s, "
                f"median ratio {ratio:.2f}x; ceiling {statistics.median(r['ceiling'] for r in rows):.1f} img/s, "
                f"sweeper at {of_ceiling:.2f} of it   (load {os.getloadavg()[0]:.1f})"
            )


def _with_threads(run, setting: str):
    """`run` with SWEEPER_THREADS set to `setting` while it trains (the trainer reads it at each start)."""

    def timed(steps: int) -> float:
        os.environ["SWEEPER_THREADS"] = setting
        try:
            return run(steps)
        finally:
            os.environ.pop("SWEEPER_THREADS", None)
            torch.set_num_threads(DEFAULT_THREADS)  # the reference keeps torch's default

    return timed


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            flags = Path("/proc/cpuinfo").read_text()
            kind = (
                "AVX-512 BF16"
                if "avx512_bf16" in flags
                else "AVX-512"
                if "avx512f" in flags
                else "AVX2"
                if "avx2" in flags
                else "no AVX2"
            )
            return f"{line.split(':', 1)[1].strip()} ({kind})"
    return "unknown"


if __name__ == "__main__":
    main()
