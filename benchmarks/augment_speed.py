"""Augmentation speed: the per-image torchvision path against sweeper's batched plans, images/s per preset.

  per-image  autoaugment/strong as the old `_per_image` path ran them: the batch's crop and flip as
             one tensor op, then AutoAugment(CIFAR10), or ColorJitter + RandomAffine + RandomErasing,
             as torchvision v2 transforms image by image on one thread (what its DataLoader workers
             did); weak/translate never had a per-image path: v2 RandomCrop + RandomHorizontalFlip
             per image, as a torchvision data pipeline does.
  batched    `draw_plan` for the samples timed (on the CPU), one copy to the device, then `apply`
             batch by batch; drawing and the copy are inside the clock, as they are in an epoch.

On a CPU both run on one thread (torch.set_num_threads(1)) and are timed by the process's CPU time,
so the rates are per core even on a shared machine; rounds alternate between the two, each side's
best round is reported, and the ratio of the two. On a GPU the clock is wall time.

    .venv/bin/python benchmarks/augment_speed.py                            # CPU, batch 256
    .venv/bin/python benchmarks/augment_speed.py --seconds 0.5 --rounds 3
    .venv/bin/python benchmarks/augment_speed.py --device cuda --batch 256  # batched, on a GPU

`measure(preset, device, batch, seconds)` is the batched clock, for a GPU check script to call.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torchvision.transforms import v2

from sweeper.training.augment import AUGMENTS, PAD, PADS, apply, draw_plan

GPU_TARGET = 50_000  # images/s per preset at batch 256 on a GPU
BATCHES_PER_PLAN = 16  # a plan covers this many batches: an epoch's draw, amortised as in training


def _images(n: int, device: str | torch.device) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8).to(
        device
    )


def _clock(device: torch.device) -> Callable[[], float]:
    """On a CPU the process's CPU time: images per core-second, whatever else shares the machine."""
    return time.process_time if device.type == "cpu" else time.perf_counter


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(preset: str, device: str | torch.device = "cpu", batch: int = 256, seconds: float = 1.0) -> float:
    """Images/s of the batched path: plans of BATCHES_PER_PLAN batches drawn, moved and applied, for ~seconds."""
    device = torch.device(device)
    n = batch * BATCHES_PER_PLAN
    images, generator = _images(n, device), torch.Generator().manual_seed(1)

    def epoch() -> None:
        plan = draw_plan(preset, n, generator, batch).to(device)
        for start in range(0, n, batch):
            apply(images[start : start + batch], plan, start, start + batch)

    epoch()  # warm-up: first-call allocations, CUDA kernels loaded
    _sync(device)
    clock = _clock(device)
    done, began = 0, clock()
    while clock() - began < seconds:
        epoch()
        done += n
    _sync(device)
    return done / (clock() - began)


def per_image_pipeline(preset: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """What the per-image path ran on each [3,32,32] uint8 image: v2 transforms (crop and flip for weak/translate)."""
    if preset == "autoaugment":
        return v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    if preset == "strong":
        return v2.Compose(
            [
                v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
                v2.RandomAffine(degrees=15, translate=(0.1, 0.1)),
                v2.RandomErasing(p=0.25, value=0),
            ]
        )
    return v2.Compose([v2.RandomCrop(32, padding=PADS.get(preset, PAD)), v2.RandomHorizontalFlip()])


def measure_per_image(preset: str, seconds: float = 1.0) -> float:
    """Images/s of the per-image path on the CPU (the caller sets the thread count).

    autoaugment/strong as the old `augment._per_image` ran them: the batch's crop and flip batched,
    then the v2 pipeline image by image; weak/translate had no per-image path: v2 crop and flip per image.
    """
    transform, images = per_image_pipeline(preset), _images(256, "cpu")
    batched_crop = preset in ("autoaugment", "strong")
    crop = draw_plan("weak", len(images), torch.Generator().manual_seed(2))  # the crop and flip only

    def batch() -> None:
        x = apply(images, crop) if batched_crop else images
        torch.stack([transform(image) for image in x])

    batch()  # warm-up
    clock = _clock(torch.device("cpu"))
    done, began = 0, clock()
    while clock() - began < seconds:
        batch()
        done += len(images)
    return done / (clock() - began)


def cpu_model() -> str:
    """The CPU's model name, as lscpu prints it."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def compare_on_cpu(presets: list[str], batch: int, seconds: float, rounds: int) -> list[tuple[str, float, float]]:
    """(preset, best per-image img/s, best batched img/s) on one thread, in alternating rounds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = []
        for preset in presets:
            per_image = batched = 0.0
            for _ in range(rounds):
                if preset != "none":  # nothing to do per image: no baseline
                    per_image = max(per_image, measure_per_image(preset, seconds))
                batched = max(batched, measure(preset, "cpu", batch, seconds))
            rows.append((preset, per_image, batched))
        return rows
    finally:
        torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> None:
    """Parse the options, time, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--presets", nargs="+", default=list(AUGMENTS.names), choices=AUGMENTS.names)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type != "cpu":
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
        print(f"{name}, batch {args.batch}: batched images/s")
        for preset in args.presets:
            rate = max(measure(preset, device, args.batch, args.seconds) for _ in range(args.rounds))
            verdict = "ok" if rate >= GPU_TARGET else f"below the {GPU_TARGET:,} target"
            print(f"  {preset:<12} {rate:>12,.0f}  {verdict}")
        return
    print(f"{cpu_model()}, one thread, batch {args.batch}, best of {args.rounds} x {args.seconds:g} s")
    print(f"  {'preset':<12} {'per-image':>12} {'batched':>12} {'ratio':>8}")
    for preset, per_image, batched in compare_on_cpu(args.presets, args.batch, args.seconds, args.rounds):
        ratio = f"{batched / per_image:7.1f}x" if per_image else "-"
        base = f"{per_image:12,.0f}" if per_image else f"{'-':>12}"
        print(f"  {preset:<12} {base} {batched:12,.0f} {ratio:>8}")


if __name__ == "__main__":
    main()
