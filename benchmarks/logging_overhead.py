"""Per-epoch logging cost against the local store and against a real MLflow server, side by side.

What sweeper does at the end of every epoch (runner.train_cell's epoch loop -> cellrun.CellLogger.log_epoch):
on the training thread, snapshot the resumable state (model, optimizer, scheduler, RNG, history,
best weights) and queue it; on the background worker, write the checkpoint atomically, upload it
(and best.pt when the epoch is the best), then log the epoch's metrics in one batched request.

Compared with a measured epoch of the quick activations model (experiments/activations.yaml,
profile quick, its first row) trained here, and reported per store as medians over the rounds:

  blocking  time the training thread spends logging an epoch: the overhead training pays; wall
            clock, and CPU time of the process (a fairer measure on a shared machine)
  shipped   time until the epoch is stored (checkpoint + metrics), overlapping the next epoch
  metrics   one synchronous batched metrics request alone

Ratios divide by the last trained epoch's wall time (train + validation), and the CPU ratio by
that epoch's CPU time. Both stores are measured in the same rounds, alternating which goes first
(the machine may be shared). The server is a real `mlflow server` (sweeper.server) on a free
loopback port.

    .venv/bin/python benchmarks/logging_overhead.py                 # real CIFAR if prepared, else synthetic
    .venv/bin/python benchmarks/logging_overhead.py --rounds 30 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sweeper.errors import DatasetMissing
from sweeper.runs import cellrun, checkpoints, server, tracking
from sweeper.schema.spec import expand, load_spec
from sweeper.settings import get_settings
from sweeper.training import state as training_state
from sweeper.training.data import load_cached, make_splits, synthetic
from sweeper.training.device import pick_device
from sweeper.training.train import train

SPEC = Path(__file__).resolve().parents[1] / "experiments" / "activations.yaml"


def measure_epoch(
    device: str, epochs: int, train_size: int | None
) -> tuple[float, float, dict[str, float], dict[str, Any], str]:
    """Train the quick activations cell; its last epoch's wall and CPU time, metrics and full checkpoint."""
    cell = expand(load_spec(SPEC), "quick")[0]
    changes = {
        "epochs": epochs,
        "data": {**cell.config.data.model_dump(), **({"train_size": train_size} if train_size else {})},
    }
    cfg = cell.config.model_validate({**cell.config.model_dump(), **changes})
    try:
        base, source = load_cached(get_settings().data_dir), "CIFAR-10 cache"
    except DatasetMissing:
        base, source = (
            synthetic(n_train=cfg.data.train_size + cfg.data.val_size, n_test=cfg.data.test_size),
            "synthetic",
        )
    d = cfg.data
    data = make_splits(*base, val_size=d.val_size, train_size=d.train_size, test_size=d.test_size, seed=0)
    last: dict[str, Any] = {"mark": time.process_time()}

    def keep(metrics: dict[str, float], checkpoint) -> None:
        last["cpu"] = time.process_time() - last["mark"]  # this epoch's CPU time, all threads
        last.update(metrics=metrics, state=checkpoints.snapshot(training_state.checkpoint(checkpoint(), cell.id, {})))
        last["mark"] = time.process_time()

    train(cfg, data, device=pick_device(device), on_epoch=keep)
    what = f"{cell.label} ({cfg.model.name}, {d.train_size} images), {source}"
    return last["metrics"]["epoch_time"], last["cpu"], last["metrics"], last["state"], what


def one_epoch(
    log: cellrun.CellLogger, step: int, metrics: dict[str, float], state: dict[str, Any]
) -> tuple[float, float, float]:
    """(blocking wall, blocking CPU, shipped wall) seconds of logging one epoch as the runner does."""
    tick, cpu = time.perf_counter(), time.process_time()
    snap = checkpoints.snapshot(state)
    log.log_epoch({**metrics, "epoch": step}, snap, best=step % 3 == 1)
    blocking, blocking_cpu = time.perf_counter() - tick, time.process_time() - cpu
    log.flush()
    return blocking, blocking_cpu, time.perf_counter() - tick


def metrics_request(log: cellrun.CellLogger, step: int, metrics: dict[str, float]) -> float:
    """Seconds of one synchronous batched metrics request."""
    tick = time.perf_counter()
    tracking.log_metrics(log.store, log.run_id, metrics, step)
    return time.perf_counter() - tick


def main() -> None:
    """Measure an epoch, then log `rounds` epochs to each store, and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=2, help="epochs trained; the last one's time is the reference")
    parser.add_argument("--train-size", type=int, help="train on fewer images than the quick profile (a dry run)")
    args = parser.parse_args()

    epoch_s, epoch_cpu, metrics, state, what = measure_epoch(args.device, args.epochs, args.train_size)
    size_mb = sum(t.numel() * t.element_size() for t in _tensors(state)) / 1e6
    print(
        f"epoch of {what} on {args.device}: {epoch_s:.2f} s wall, {epoch_cpu:.2f} s CPU; "
        f"checkpoint {size_mb:.1f} MB of tensors"
    )

    with tempfile.TemporaryDirectory() as tmp:
        running = server.start(Path(tmp) / "server", workers=2)
        try:
            loggers = {}
            for name, uri in (("local sqlite", f"sqlite:///{tmp}/local/mlflow.db"), ("mlflow server", running.url)):
                store = tracking.open_store(uri)
                run_id = store.client.create_run(tracking.experiment_id(store, "logging-overhead")).info.run_id
                loggers[name] = cellrun.CellLogger(store, run_id)
            keys = ("blocking", "blocking_cpu", "shipped", "metrics")
            times: dict[str, dict[str, list[float]]] = {n: {k: [] for k in keys} for n in loggers}
            names = list(loggers)
            for step in range(1, args.rounds + 1):
                for name in names if step % 2 else names[::-1]:
                    measured = (
                        *one_epoch(loggers[name], step, metrics, state),
                        metrics_request(loggers[name], 10_000 + step, metrics),
                    )
                    for key, value in zip(keys, measured):
                        times[name][key].append(value)
            for log in loggers.values():
                log.close()
        finally:
            running.stop()

    print(
        f"\n{args.rounds} epochs logged to each store; medians, and their ratio to the epoch "
        f"({epoch_s:.2f} s wall; the CPU column to its {epoch_cpu:.2f} s CPU)\n"
    )
    heads = ("blocking wall", "blocking CPU", "shipped (bg)", "metrics req.")
    print(f"{'store':<14}" + "".join(f" {h:>20}" for h in heads))
    for name, t in times.items():
        cells = []
        for key in keys:
            value = statistics.median(t[key])
            cells.append(
                f"{1000 * value:8.1f} ms {100 * value / (epoch_cpu if key == 'blocking_cpu' else epoch_s):7.3f}%"
            )
        print(f"{name:<14}" + "".join(f" {c:>20}" for c in cells))


def _tensors(obj: Any) -> list:
    import torch

    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    return []


if __name__ == "__main__":
    main()
