"""How long `sweeper table` takes on a store with many finished runs (target: under 2 s for 1,000).

Fills a fresh sqlite store with N finished child runs (100 rows x N/100 seeds) carrying the tags,
params and metrics a real cell logs, written through MlflowClient (create_run, one log_batch,
set_terminated per run), then times, best of 3, in wall and CPU seconds (CPU is the figure to
compare on a shared machine):
  - cli:    `sweeper table bench` as a user runs it (process start, imports, build, render),
            and how much of it is importing MLflow and opening the store, whatever the store holds;
  - build:  tables.build + render in process, and its search_runs query alone, with the garbage
            collector paused (as build does) and running (side by side, in the same run).

    .venv/bin/python benchmarks/table_speed.py                 # 1,000 runs
    .venv/bin/python benchmarks/table_speed.py --runs 1000 10000
"""

from __future__ import annotations

import argparse
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from sweeper import table_runs, tables, tracking
from sweeper.config import flatten
from sweeper.spec import expand, load_spec


def make_spec(rows: int, seeds: int) -> dict:
    """An ablation of `rows` learning rates at `seeds` seeds, with a Table 3-sized metric layout."""
    return {
        "name": "bench",
        "title": "Table speed benchmark",
        "base": {"model": {"name": "resnet_basic"}, "epochs": 30},
        "seeds": list(range(seeds)),
        "rows": [{"label": f"lr-{i:04d}", "optimizer.lr": round(1e-4 * (i + 1), 8)} for i in range(rows)],
        "table": {"columns": [{"key": "label", "header": "Row"}, {"key": "optimizer.lr", "header": "LR", "format": "sci"}],
                  "metrics": [{"key": "train_loss", "header": "Train. Loss", "format": "loss"},
                              {"key": "val_loss", "header": "Val. Loss", "format": "loss"},
                              {"key": "test_acc", "header": "Test Accuracy (%)", "format": "percent"},
                              {"key": "params", "header": "Size", "format": "params", "best": "none"}]},
    }


def fill(uri: str, spec_path: Path) -> float:
    """Log one finished run per cell as a sweep would; returns the seconds it took."""
    from mlflow.entities import Metric, Param

    spec = load_spec(spec_path)
    store = tracking.open_store(uri)
    exp = tracking.experiment_id(store, spec.name)
    parent = tracking.sweep_run(store, exp, spec, None, spec_path.read_text())
    env = tracking.environment_tags()
    tick = time.perf_counter()
    for cell in expand(spec):
        tags = {"mlflow.parentRunId": parent, "sweeper.role": "cell", "sweeper.spec": spec.name,
                "sweeper.row": cell.label, "sweeper.row_index": str(cell.row), "sweeper.seed": str(cell.seed),
                "sweeper.profile": "default", "sweeper.cell": cell.id, **env}
        run_id = store.client.create_run(exp, tags=tags, run_name=f"{cell.label} seed={cell.seed}").info.run_id
        now, acc = int(time.time() * 1000), 0.8 + 0.001 * cell.row + 0.0005 * cell.seed
        values = {"train_loss": 1 - acc, "val_loss": 1.1 - acc, "train_acc": acc, "val_acc": acc, "test_acc": acc,
                  "test_acc_best": acc, "best_val_acc": acc, "best_epoch": 30, "params": 1_266_986, "lr": 1e-4,
                  "epoch_time": 12.5, "images_per_s": 4000.0, "train_time": 375.0}
        params = {"label": cell.label, **flatten(cell.config.model_dump(mode="json"))}
        store.client.log_batch(run_id, metrics=[Metric(k, float(v), now, 30) for k, v in values.items()],
                               params=[Param(k, str(v)) for k, v in params.items()])
        store.client.set_terminated(run_id)
    tracking.end_run(store, parent)
    return time.perf_counter() - tick


def timed(fn, repeat: int = 3) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of each of `repeat` calls; CPU counts this process and its children.

    CPU time is the figure to compare on a shared machine: wall time grows with everyone's load.
    """
    out = []
    for _ in range(repeat):
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        tick, cpu = time.perf_counter(), time.process_time()
        fn()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        child = after.ru_utime + after.ru_stime - kids.ru_utime - kids.ru_stime
        out.append((time.perf_counter() - tick, time.process_time() - cpu + child))
    return out


def measure(n: int, folder: Path) -> dict[str, float]:
    """Fill a store with n runs and time the table on it."""
    uri = f"sqlite:///{folder / f'store{n}' / 'mlflow.db'}"
    spec_path = folder / f"bench{n}.yaml"
    spec_path.write_text(yaml.safe_dump(make_spec(100, n // 100), sort_keys=False))
    reuse = (folder / f"store{n}" / "mlflow.db").is_file()  # --dir keeps filled stores between runs
    fill_s = math.nan if reuse else fill(uri, spec_path)
    store = tracking.open_store(uri)
    exp = tracking.experiment_id(store, "bench", create=False)
    build = timed(lambda: tables.render(tables.build("bench", tracking_uri=uri)))
    search = timed(lambda: table_runs.cell_runs(store, exp, None))
    where = "tags.`sweeper.role` = 'cell' and tags.`sweeper.profile` = 'default'"
    search_gc = timed(lambda: tracking.search(store, exp, where))  # the same query, the collector running
    exe = Path(sys.executable).with_name("sweeper")
    cli = timed(lambda: subprocess.run([str(exe), "table", "bench", "--tracking-uri", uri],
                                       check=True, capture_output=True), repeat=3)
    opening = f"import sweeper.cli; from sweeper import tables, tracking; tracking.open_store('{uri}')"
    startup = timed(lambda: subprocess.run([sys.executable, "-c", opening], check=True, capture_output=True), repeat=2)
    runs = {"build": build, "search": search, "search_gc": search_gc, "cli": cli, "startup": startup}
    best = {k: min(v) for k, v in runs.items()}
    return {"runs": n, "fill_s": fill_s, **{f"{k}_{w}": best[k][i] for k in best for i, w in enumerate(("wall", "cpu"))}}


def main() -> None:
    """Run the benchmark for each requested store size and print one line per size."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, nargs="+", default=[1000], help="store sizes (multiples of 100)")
    parser.add_argument("--dir", type=Path, help="keep the filled stores here and reuse them next time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.runs:
            r = measure(n, args.dir or Path(tmp))
            print(f"{r['runs']:>6} runs (filled in {r['fill_s']:.0f} s, {r['runs'] / r['fill_s']:.0f} runs/s), "
                  "best of 3, wall / CPU seconds:", flush=True)
            for key, what in (("cli", "`sweeper table bench` (process start, imports, build, render)"),
                              ("startup", "  of which imports and opening the store (mlflow, sqlalchemy)"),
                              ("build", "tables.build + render in process"),
                              ("search", "  of which the search_runs query (table_runs.cell_runs)"),
                              ("search_gc", "  the same query without pausing the garbage collector")):
                print(f"    {what:<66} {r[key + '_wall']:6.2f} / {r[key + '_cpu']:5.2f}", flush=True)


if __name__ == "__main__":
    main()
