"""A search's answer: its best trial (or, with several objectives, its Pareto front), printed with a
`rows:` entry ready to paste into a spec, and logged on the sweep's parent run (runs/best.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from rich.console import Console

from sweeper.runs import best as best_run
from sweeper.schema.spec import load_spec
from sweeper.secrets import mask_uri
from sweeper.sweep.study import Sweep, open_sweep, storage_url
from sweeper.vocab import Attr


@dataclass
class Best:
    """One best trial: its number, objective values by metric, sampled params and MLflow run."""

    number: int
    values: dict[str, float]
    params: dict[str, Any]
    run_id: str | None

    def row(self) -> str:
        """A spec `rows:` entry that trains this configuration as a fixed row."""
        entry = {"label": f"trial {self.number}", **self.params}
        return "- " + yaml.safe_dump(entry, default_flow_style=True, sort_keys=False, width=10_000).strip()


def best_trials(sw: Sweep) -> list[Best]:
    """The best trial of a search (one objective), or its Pareto front (several); empty before any completed."""
    if sw.spec.search is None:
        return []
    complete = sw.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return []
    trials = sw.study.best_trials if len(sw.study.directions) > 1 else [sw.study.best_trial]
    metrics = sw.spec.search.metrics()
    return [
        Best(
            t.number, dict(zip(metrics, t.values)), sw.spec.search.decoded(t.params), t.user_attrs.get(Attr.MLFLOW_RUN)
        )
        for t in sorted(trials, key=lambda t: t.number)
    ]


def announce(
    spec_path: str | Path,
    profile: str | None,
    tracking_uri: str | None,
    console: Console,
    storage: str | None = None,
) -> list[Best]:
    """Print a search's best trial(s) with a `rows:` entry, and log the best on the parent run; rows and grids: nothing."""
    if load_spec(spec_path).search is None:
        return []
    sw = open_sweep(spec_path, profile, storage=storage, tracking_uri=tracking_uri)
    found = best_trials(sw)
    if not found:
        return found
    say = lambda text: console.print(text, highlight=False, soft_wrap=True, markup=False)  # noqa: E731
    front = len(found) > 1 or len(sw.study.directions) > 1
    say(
        f"{'Pareto front' if front else 'best trial'} of study {sw.name} ({mask_uri(storage_url(storage, sw.store.uri))}):"
    )
    for b in found:
        values = ", ".join(f"{k} {v:.4g}" for k, v in b.values.items())
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in b.params.items())
        say(f"  trial {b.number}: {values}; {params}; MLflow run {b.run_id or '?'}")
    say("rows: entries to train them as fixed rows (paste under `rows:` of a spec):")
    for b in found:
        say("  " + b.row())
    parent = best_run.parent_run(sw.store, sw.exp_id, sw.profile)
    if parent is not None and not front:
        b = found[0]
        logged = {"value": next(iter(b.values.values())), "trial": float(b.number), **b.values}
        best_run.log_best(sw.store, parent, {k: v for k, v in logged.items() if math.isfinite(v)}, b.params)
    return found
