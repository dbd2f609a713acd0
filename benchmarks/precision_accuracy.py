"""Does automatic precision cost accuracy? fp32 against `precision: auto`, same seeds, same data.

Trains a quick-sized configuration on the prepared CIFAR-10 (a stratified subset, the spec's own
split code) once per (precision, seed) with sweeper's trainer and prints each test accuracy, the
mean per precision and the mean paired difference, plus images/s so the speed-up is seen beside it.
Default: the baseline CNN of report 000 (5,000 images, 3 epochs, Adam 1e-3, batch 128, no
augmentation) and the Table 2 ResNet of the activations quick profile (4,000 images, 4 epochs, Adam
1e-3, weak augmentation), seeds 0 1 2.

    .venv/bin/python benchmarks/precision_accuracy.py
    .venv/bin/python benchmarks/precision_accuracy.py --models baseline --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from sweeper.schema.config import TrainConfig
from sweeper.training.data import load_cached, make_splits
from sweeper.training.device import pick_device
from sweeper.training.precision import pick_precision
from sweeper.training.train import train

CONFIGS = {
    "baseline": ({"name": "baseline_cnn"}, "none", "half", 3, 5000),
    "resnet": (
        {"name": "resnet_basic", "stem": 32, "widths": [64, 128, 128], "blocks": [2, 2, 2]},
        "weak",
        "cifar10",
        4,
        4000,
    ),
}


def config(name: str, precision: str, seed: int) -> tuple[TrainConfig, int]:
    """The quick configuration of one model at one precision and seed, and its training-set size."""
    model, augment, norm, epochs, n = CONFIGS[name]
    cfg = TrainConfig.model_validate({
        "model": model, "seed": seed, "precision": precision, "epochs": epochs,
        "data": {"augment": augment, "normalize": norm, "batch_size": 128, "eval_batch_size": 500},
        "optimizer": {"name": "adam", "lr": 1e-3},
    })  # fmt: skip
    return cfg, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("SWEEPER_DATA_DIR", "data")))
    args = parser.parse_args()

    device = pick_device(args.device)
    full_train, full_test = load_cached(args.data_dir)
    auto = pick_precision("auto", device)
    print(f"device {device}: automatic precision resolves to {auto}; seeds {args.seeds}")
    for name in args.models:
        acc: dict[str, list[float]] = {"fp32": [], "auto": []}
        speed: dict[str, list[float]] = {"fp32": [], "auto": []}
        n = config(name, "auto", 0)[1]
        data = make_splits(full_train, full_test, val_size=1000, train_size=n, test_size=2000, seed=0)
        for seed in args.seeds:
            for precision in ("fp32", "auto"):  # side by side, seed by seed: load drifts hit both
                cfg, _ = config(name, precision, seed)
                result = train(cfg, data, device=device)
                acc[precision].append(result.summary["test_acc"])
                speed[precision].append(statistics.median(h["images_per_s"] for h in result.history))
                print(
                    f"  {name} seed {seed} {precision:>4}: test acc {100 * acc[precision][-1]:.2f}%  "
                    f"{speed[precision][-1]:.0f} img/s",
                    flush=True,
                )
        diffs = [a - f for a, f in zip(acc["auto"], acc["fp32"])]
        spread = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
        print(
            f"{name}: fp32 {100 * statistics.fmean(acc['fp32']):.2f}%, {auto} {100 * statistics.fmean(acc['auto']):.2f}% "
            f"(mean paired difference {100 * statistics.fmean(diffs):+.2f} points, sd {100 * spread:.2f}); "
            f"speed {statistics.fmean(speed['auto']) / statistics.fmean(speed['fp32']):.2f}x"
        )


if __name__ == "__main__":
    main()
