"""Sweep throughput: cells per minute with 1 worker and with 2 worker processes, side by side in one run.

The same grid of small cells (plain_cnn, a 2,000-image CIFAR-10 subset, 2 epochs by default) is
swept end to end as a user runs it, into a fresh MLflow store and study each time:

  1 worker    `sweeper run SPEC` (in-process, all CPU threads)
  2 workers   `sweeper run SPEC --jobs 2` (two `sweeper worker` processes, half the threads each,
              claiming cells through the local sqlite study; their start-up is counted)

Rounds alternate which goes first, because the machine may be shared; the ratio is taken per
round and the median reported. The prepared CIFAR-10 cache (SWEEPER_DATA_DIR or ./data) is used
when present, else the synthetic set.

    .venv/bin/python benchmarks/sweep_throughput.py                       # 8 cells x 1 round
    .venv/bin/python benchmarks/sweep_throughput.py --cells 12 --epochs 1 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console

from sweeper import sweep
from sweeper.settings import get_settings
from sweeper.training.data import CACHE_NAME, _write_cache, synthetic

ACTIVATIONS = ["relu", "gelu", "elu", "silu", "mish", "leaky_relu"]


def spec_for(cells: int, epochs: int, train_size: int) -> dict:
    """A grid of `cells` small cells: activations x two learning rates."""
    if cells % 2 or not 2 <= cells <= 2 * len(ACTIVATIONS):
        raise SystemExit(f"--cells must be even, 2 to {2 * len(ACTIVATIONS)}")
    grid = {"activation": ACTIVATIONS[: cells // 2], "optimizer.lr": [1e-3, 3e-3]}
    return {
        "name": "throughput",
        "base": {
            "model": {"name": "plain_cnn", "stem": 16, "widths": [32, 64], "hidden": 64},
            "data": {
                "augment": "weak",
                "batch_size": 128,
                "eval_batch_size": 500,
                "val_size": 500,
                "train_size": train_size,
                "test_size": 1000,
            },
            "optimizer": {"name": "adam", "lr": 1e-3},
            "epochs": epochs,
            "precision": "fp32",
        },
        "grid": grid,
        "table": {"metrics": [{"key": "test_acc", "header": "Test Accuracy (%)", "format": "percent"}]},
    }


def data_dir(tmp: Path) -> tuple[Path, str]:
    """The prepared CIFAR-10 cache if there is one, else a synthetic cache in tmp."""
    real = get_settings().data_dir
    if (real / CACHE_NAME).is_file():
        return real.resolve(), "CIFAR-10 cache"
    _write_cache(tmp / "data" / CACHE_NAME, *synthetic(n_train=6000, n_test=1000), "synthetic")
    return tmp / "data", "synthetic"


def sweep_once(spec_path: Path, workdir: Path, jobs: int) -> tuple[int, float]:
    """(cells trained, seconds) of one whole sweep into a fresh store."""
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    tick = time.perf_counter()
    report = sweep.run(spec_path, tracking_uri=uri, device="cpu", console=Console(quiet=True), jobs=jobs)
    seconds = time.perf_counter() - tick
    if report.failed:
        raise SystemExit(f"{jobs} worker(s): cells failed: {report.failed}")
    return len(report.finished), seconds


def main() -> None:
    """Alternate 1- and 2-worker sweeps of the same grid; print cells/minute and the ratio."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-size", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folder, source = data_dir(tmp)
        os.environ["SWEEPER_DATA_DIR"] = str(folder)  # the worker processes read it too
        spec_path = tmp / "throughput.yaml"
        spec_path.write_text(yaml.safe_dump(spec_for(args.cells, args.epochs, args.train_size), sort_keys=False))
        print(
            f"{args.cells} cells of plain_cnn, {args.epochs} epochs on {args.train_size} images ({source}), "
            f"{os.cpu_count()} CPUs, {args.rounds} round(s)"
        )
        rates: dict[int, list[float]] = {1: [], 2: []}
        ratios = []
        for rnd in range(args.rounds):
            order = (1, 2) if rnd % 2 == 0 else (2, 1)
            for jobs in order:
                cells, seconds = sweep_once(spec_path, tmp / f"r{rnd}-j{jobs}", jobs)
                rates[jobs].append(60 * cells / seconds)
                print(
                    f"  round {rnd + 1}: {jobs} worker(s): {cells} cells in {seconds:6.1f} s = {rates[jobs][-1]:5.2f} cells/min"
                )
            ratios.append(rates[2][-1] / rates[1][-1])
        print(
            f"median: 1 worker {statistics.median(rates[1]):.2f} cells/min, 2 workers {statistics.median(rates[2]):.2f} "
            f"cells/min, ratio 2/1 = {statistics.median(ratios):.2f}x"
        )


if __name__ == "__main__":
    main()
