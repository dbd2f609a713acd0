"""How long `sweeper table` takes on a store with many finished runs (target: under 2 s for 1,000).

Fills a fresh sqlite store with N finished child runs (100 rows x N/100 seeds) carrying the tags,
params and metrics a real cell logs, written through MlflowClient (create_run, one log_batch,
set_terminated per run), then times both ways of reading it side by side, rounds interleaved,
best of 3, in wall and CPU seconds (CPU is the figure to compare on a shared machine):
  - fast:   runs_db, MLflow's tables read with SQLAlchemy Core, no `import mlflow` (the default
            for sqlite:// and postgresql:// stores);
  - mlflow: MlflowClient.search_runs, as every other store is read (SWEEPER_TABLE_READER=mlflow);
for: `sweeper table bench` as a user runs it (process start to printed table), the same process
with imports and store opening only, tables.build + render in process, and the run query alone.

    .venv/bin/python benchmarks/table_speed.py                 # 1,000 runs
    .venv/bin/python benchmarks/table_speed.py --runs 1000 10000 --dir /tmp/table-bench
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from sweeper import tables
from sweeper.runs import cellrun, tracking
from sweeper.runs import db as runs_db
from sweeper.schema.dotted import flatten
from sweeper.schema.spec import expand, load_spec
from sweeper.tables import runs as table_runs


def make_spec(rows: int, seeds: int) -> dict:
    """An ablation of `rows` learning rates at `seeds` seeds, with a Table 3-sized metric layout."""
    return {
        "name": "bench",
        "title": "Table speed benchmark",
        "base": {"model": {"name": "resnet_basic"}, "epochs": 30},
        "seeds": list(range(seeds)),
        "rows": [{"label": f"lr-{i:04d}", "optimizer.lr": round(1e-4 * (i + 1), 8)} for i in range(rows)],
        "table": {
            "columns": [{"key": "label", "header": "Row"}, {"key": "optimizer.lr", "header": "LR", "format": "sci"}],
            "metrics": [
                {"key": "train_loss", "header": "Train. Loss", "format": "loss"},
                {"key": "val_loss", "header": "Val. Loss", "format": "loss"},
                {"key": "test_acc", "header": "Test Accuracy (%)", "format": "percent"},
                {"key": "params", "header": "Size", "format": "params", "best": "none"},
            ],
        },
    }


def fill(uri: str, spec_path: Path) -> float:
    """Log one finished run per cell as a sweep would; returns the seconds it took."""
    from mlflow.entities import Metric, Param

    spec = load_spec(spec_path)
    store = tracking.open_store(uri)
    exp = tracking.experiment_id(store, spec.name)
    parent = tracking.sweep_run(store, exp, spec, None, spec_path.read_text())
    env = cellrun.environment_tags()
    tick = time.perf_counter()
    for cell in expand(spec):
        tags = {
            "mlflow.parentRunId": parent,
            "sweeper.role": "cell",
            "sweeper.spec": spec.name,
            "sweeper.row": cell.label,
            "sweeper.row_index": str(cell.row),
            "sweeper.seed": str(cell.seed),
            "sweeper.profile": "default",
            "sweeper.cell": cell.id,
            **env,
        }
        run_id = store.client.create_run(exp, tags=tags, run_name=f"{cell.label} seed={cell.seed}").info.run_id
        now, acc = int(time.time() * 1000), 0.8 + 0.001 * cell.row + 0.0005 * cell.seed
        values = {
            "train_loss": 1 - acc,
            "val_loss": 1.1 - acc,
            "train_acc": acc,
            "val_acc": acc,
            "test_acc": acc,
            "test_acc_best": acc,
            "best_val_acc": acc,
            "best_epoch": 30,
            "params": 1_266_986,
            "lr": 1e-4,
            "epoch_time": 12.5,
            "images_per_s": 4000.0,
            "train_time": 375.0,
        }
        params = {"label": cell.label, **flatten(cell.config.model_dump(mode="json"))}
        store.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 30) for k, v in values.items()],
            params=[Param(k, str(v)) for k, v in params.items()],
        )
        store.client.set_terminated(run_id)
    tracking.end_run(store, parent)
    return time.perf_counter() - tick


READERS = ("fast", "mlflow")


def cpu_wall(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of one call; CPU counts this process and its children."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    tick, cpu = time.perf_counter(), time.process_time()
    fn()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = after.ru_utime + after.ru_stime - kids.ru_utime - kids.ru_stime
    return time.perf_counter() - tick, time.process_time() - cpu + child


def best_of(fns: dict[str, object], repeat: int = 3) -> dict[str, tuple[float, float]]:
    """Best (wall, CPU) of each fn over `repeat` rounds, the fns interleaved within a round."""
    seen: dict[str, list[tuple[float, float]]] = {k: [] for k in fns}
    for _ in range(repeat):
        for key, fn in fns.items():
            seen[key].append(cpu_wall(fn))
    return {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in seen.items()}


def reader(name: str) -> None:
    """Select the reader in this process and the commands it starts."""
    os.environ[runs_db.ENV] = "mlflow" if name == "mlflow" else "fast"


def measure(n: int, folder: Path) -> tuple[float, dict[str, tuple[float, float]]]:
    """Fill a store with n runs (unless --dir kept one; seconds it took) and time every step with both readers."""
    uri = f"sqlite:///{folder / f'store{n}' / 'mlflow.db'}"
    spec_path = folder / f"bench{n}.yaml"
    spec_path.write_text(yaml.safe_dump(make_spec(100, n // 100), sort_keys=False))
    reuse = (folder / f"store{n}" / "mlflow.db").is_file()
    fill_s = math.nan if reuse else fill(uri, spec_path)
    exe = Path(sys.executable).with_name("sweeper")
    opening = (
        "import sweeper.cli; from sweeper import table_runs, tables; "
        f"table_runs.read_runs('{uri}', lambda runs: runs.experiment_id('bench'))"
    )
    texts = {}

    def cli(name: str):
        def run() -> None:
            reader(name)
            texts[name] = subprocess.run(
                [str(exe), "table", "bench", "--tracking-uri", uri], check=True, capture_output=True, text=True
            ).stdout

        return run

    def step(name: str, fn):
        return lambda: (reader(name), fn())

    def query(runs: table_runs.Runs) -> list:
        return table_runs.cell_runs(runs, runs.experiment_id("bench"))

    fns = {}
    for name in READERS:
        fns[f"cli_{name}"] = cli(name)
        fns[f"startup_{name}"] = step(name, lambda: subprocess.run([sys.executable, "-c", opening], check=True))
        fns[f"build_{name}"] = step(name, lambda: tables.render(tables.build("bench", tracking_uri=uri)))
        fns[f"search_{name}"] = step(name, lambda: table_runs.read_runs(uri, query))
    best = best_of(fns)
    if texts["fast"] != texts["mlflow"]:
        raise SystemExit("the two readers printed different tables")
    return fill_s, best


def main() -> None:
    """Run the benchmark for each requested store size and print one block per size."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, nargs="+", default=[1000], help="store sizes (multiples of 100)")
    parser.add_argument("--dir", type=Path, help="keep the filled stores here and reuse them next time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.runs:
            fill_s, r = measure(n, args.dir or Path(tmp))
            print(
                f"{n:>6} runs (filled in {fill_s:.0f} s, {n / fill_s:.0f} runs/s), best of 3, wall / CPU seconds:",
                flush=True,
            )
            print(f"    {'':<62} {'fast (runs_db)':<16}   mlflow (SWEEPER_TABLE_READER=mlflow)", flush=True)
            for key, what in (
                ("cli", "`sweeper table bench` (process start to printed table)"),
                ("startup", "  of which process start, imports, opening the store"),
                ("build", "tables.build + render in process"),
                ("search", "  of which reading the cell runs (table_runs.cell_runs)"),
            ):
                cells = "   ".join(f"{r[f'{key}_{name}'][0]:6.2f} / {r[f'{key}_{name}'][1]:5.2f}" for name in READERS)
                print(f"    {what:<62} {cells}", flush=True)


if __name__ == "__main__":
    main()
