"""Measure the cost model behind `make demo` on this CPU, and size the demo's profile from it.

`make demo` must finish in 5 minutes (install excluded) on both CPU kinds our machines come as.
Its time is: `sweeper data prepare` + `sweeper run` (process start and store, then per cell its
fixed work and its FLOPs at the sustained rate) + `sweeper table`. This script measures each term
here, side by side in one run (two tiny sweeps for the fixed costs, then the profile itself for the
rate, which so includes evaluation and the cells' figures and exported models), then prints:

  * the measured constants, to compare with `sweeper.training.cost.CPU_KINDS` for this CPU kind;
  * the estimate for the spec's profile, and the largest `data.train_size` (a multiple of the
    batch) that keeps the whole demo inside the budget with the profile's other settings.

    .venv/bin/python benchmarks/demo_budget.py                          # activations, quick
    .venv/bin/python benchmarks/demo_budget.py --budget 300 --steps 12

Needs the prepared cache (`sweeper data prepare`, or `make data`) and the shared lossless archive
for the prepare term. Run it on an idle machine: another process halves every rate.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from sweeper.schema.spec import Spec, load_spec, parse_spec
from sweeper.training.cost import (
    DEMO_BUDGET_SECONDS,
    CpuKind,
    host_cpu_kind,
    model_cost,
    row_configs,
    run_seconds,
    sweep_cost,
)
from sweeper.training.data import load_cached

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "datasets" / "cifar-10-python.tar.gz"
SWEEPER = [str(Path(sys.executable).parent / "sweeper")]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def tiny_spec(spec_path: Path, profile: str, rows: int, out: Path) -> Path:
    """The spec with its first `rows` rows and a profile of two batches for one epoch: fixed costs only."""
    raw = yaml.safe_load(spec_path.read_text())
    raw["name"] = f"budget{rows}"
    raw["rows"] = raw["rows"][:rows]
    tiny = dict(raw["profiles"][profile])
    tiny.update({"epochs": 1, "data.train_size": 256, "data.val_size": 100, "data.test_size": 100})
    raw["profiles"] = {"tiny": tiny}
    path = out / f"budget{rows}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=ROOT / "experiments" / "activations.yaml")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--budget", type=float, default=DEMO_BUDGET_SECONDS, help="seconds the demo may take")
    parser.add_argument("--margin", type=float, default=0.25, help="share of the budget kept free")
    parser.add_argument("--steps", type=int, default=12, help="training batches per rate measurement")
    args = parser.parse_args()
    data_dir = Path(os.environ.get("SWEEPER_DATA_DIR", ROOT / "data"))
    spec = load_spec(args.spec)
    config = row_configs(spec, args.profile)[0][1]
    train_split, _ = load_cached(data_dir)

    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, kind here: {host_cpu_kind().name}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        env = {**os.environ, "SWEEPER_DATA_DIR": str(data_dir)}
        prepare = timed([*SWEEPER, "data", "prepare", "--from", str(ARCHIVE), "--data-dir", str(out / "d")], env)
        one, three = (tiny_spec(args.spec, args.profile, n, out) for n in (1, 3))
        uri = f"sqlite:///{out}/store/mlflow.db"
        run = [*SWEEPER, "run", "--tracking-uri"]
        t1 = timed([*run, uri + "1", "--profile", "tiny", str(one)], env)
        t3 = timed([*run, uri + "3", "--profile", "tiny", str(three)], env)
        full = timed([*run, uri + "full", "--profile", args.profile, str(args.spec)], env)
        table = timed([*SWEEPER, "table", spec.name, "--profile", args.profile, "--tracking-uri", uri + "full"], env)
    cost = sweep_cost(spec, args.profile)
    cell = (t3 - t1) / 2  # two batches of training per tiny cell: fixed work, to a second
    setup = t1 - cell
    rate = cost.flops / 1e9 / (full - setup - cost.cells * cell)
    print(f"measured: sweeper run {setup:.1f} s setup + {cell:.1f} s per cell, the profile's {cost.cells} cells at")
    print(
        f"          {rate:.0f} GFLOP/s (evaluation, figures and all; {model_cost(config).flops / 1e6:.0f} MFLOP/image);"
    )
    print(
        f"          prepare {prepare:.1f} s, run {full:.1f} s, table {table:.1f} s: make demo {prepare + full + table:.0f} s"
    )
    kind = CpuKind("measured here", rate, cell, setup)
    extra = prepare + table

    def demo_seconds(train_size: int | None) -> float:
        tuned = spec if train_size is None else spec_with_train_size(args.spec, args.profile, train_size)
        return extra + run_seconds(sweep_cost(tuned, args.profile), kind)

    print(f"the model's fit of it: {demo_seconds(None):.0f} s (budget {args.budget:.0f} s)")
    batch, target = config.data.batch_size, args.budget * (1 - args.margin)
    size = batch
    while demo_seconds(size + batch) <= target:
        size += batch
    print(
        f"largest data.train_size inside {target:.0f} s here ({args.margin:.0%} kept for slower or busier machines): {size}"
        f" (the profile has {config.data.train_size})"
    )


def spec_with_train_size(path: Path, profile: str, size: int) -> Spec:
    """The spec with its profile's training-set size replaced, validated as `load_spec` would."""
    raw = yaml.safe_load(path.read_text())
    raw["profiles"][profile]["data.train_size"] = size
    return parse_spec(yaml.safe_dump(raw), path)


if __name__ == "__main__":
    main()
