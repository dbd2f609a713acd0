"""Time to accuracy: issue 8's 15-epoch recipe against experiments/fast.yaml's 8-epoch one, side by side in one
process on one seed, on the prepared CIFAR-10 (all 50,000 training images, the 10,000 test images).

    .venv/bin/python benchmarks/time_to_accuracy.py                 # both recipes, seed 0, ~1 hour on a 2-core CPU
    .venv/bin/python benchmarks/time_to_accuracy.py --subset 10000  # a slow CPU: 10,000 training images

Each recipe trains through sweeper's own loop (`sweeper.training.train.train`, as `sweeper run` does,
without MLflow); the clock covers everything a run does after the data is loaded: building the network,
fitting its whitening layer, training, and the test evaluation with its test-time views. It prints both
wall times and accuracies, their ratio, the FLOPs of each run and the CPU (as `lscpu` names it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sweeper.schema.config import TrainConfig  # noqa: E402
from sweeper.schema.spec import expand, load_spec  # noqa: E402
from sweeper.training.cost import cell_flops  # noqa: E402
from sweeper.training.data import load_cached, make_splits  # noqa: E402
from sweeper.training.train import train  # noqa: E402

# Issue 8's recipe, as experiments/fast.yaml held it before issue 25 (94.13% on the lossless set, seed 0).
OLD = {
    "model": {"name": "fast_net", "widths": [64, 256, 256]},
    "activation": "gelu",
    "data": {"augment": "translate", "normalize": "cifar10", "batch_size": 512, "eval_batch_size": 1000, "val_size": 0},
    "optimizer": {"name": "sgd", "lr": 0.75, "momentum": 0.85, "nesterov": True, "weight_decay": 1.3e-3},
    "scheduler": {"name": "onecycle", "warmup_fraction": 0.25, "start_factor": 0.2, "end_factor": 0.05},
    "loss": {"name": "cross_entropy", "label_smoothing": 0.2},
    "ema_decay": 0.98,
    "tta": True,
    "epochs": 15,
}


def cpu_name() -> str:
    """The CPU as lscpu names it, with its vector extensions that matter here."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")
    flags = out.lower()
    kind = "AVX-512 BF16" if "avx512_bf16" in flags else "AVX-512" if "avx512f" in flags else "AVX2"
    return f"{name} ({kind}), {os.cpu_count()} CPUs"


def timed(label: str, cfg: TrainConfig, data) -> tuple[float, float]:
    """(wall seconds, test accuracy) of one run."""
    tick = time.perf_counter()
    result = train(cfg, data, device="cpu")
    seconds = time.perf_counter() - tick
    print(f"  {label}: {100 * result.summary['test_acc']:.2f}% in {seconds:.0f} s ({cfg.epochs} epochs)", flush=True)
    return seconds, result.summary["test_acc"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subset", type=int, default=None, help="training images (default: all 50,000)")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("SWEEPER_DATA_DIR", "data")))
    args = parser.parse_args(argv)

    new = expand(load_spec(ROOT / "experiments" / "fast.yaml"))[0].config.model_copy(update={"seed": args.seed})
    old = TrainConfig.model_validate({**OLD, "seed": args.seed})
    sizes = {"train_size": args.subset} if args.subset else {}
    new = new.model_copy(update={"data": new.data.model_copy(update=sizes)})
    old = old.model_copy(update={"data": old.data.model_copy(update=sizes)})
    train_split, test_split = load_cached(args.data_dir)
    data = make_splits(train_split, test_split, val_size=0, train_size=args.subset, test_size=None, seed=0)
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"data: {len(data.train):,} training images, {len(data.test):,} test images, seed {args.seed}", flush=True)
    results = {}
    for label, cfg in (("issue 8 (SGD + EMA, batch 512)", old), ("fast.yaml (Muon, batch 2000)", new)):
        results[label] = (*timed(label, cfg, data), cell_flops(cfg))
    (old_s, old_acc, old_f), (new_s, new_acc, new_f) = results.values()
    print(
        f"old {100 * old_acc:.2f}% in {old_s:.0f} s ({old.epochs} epochs, {old_f / 1e15:.2f} PFLOP); "
        f"new {100 * new_acc:.2f}% in {new_s:.0f} s ({new.epochs} epochs, {new_f / 1e15:.2f} PFLOP); "
        f"the new recipe is {old_s / new_s:.2f}x faster ({old_f / new_f:.2f}x fewer FLOPs), "
        f"{100 * (new_acc - old_acc):+.2f} points"
    )


if __name__ == "__main__":
    main()
