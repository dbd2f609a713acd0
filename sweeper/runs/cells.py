"""Which run stands for a cell, and in what state: the one answer that run, status, table, plot,
report and analyze share.

A cell is its config's id, whatever profile trained it: a cell one profile finished counts in every
profile that contains it (a profile that only adds seeds trains the new seeds alone, and its table
shows them all). The profile tag of a run says which sweep started it, never whether it counts.
Runs are shaped like MLflow's Run (info.status, data.tags), newest first, from MlflowClient or
runs.db's reader; nothing here imports MLflow, so `sweeper table` stays fast.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sweeper.runs import process
from sweeper.schema.spec import Cell
from sweeper.vocab import Tag, profile_tag


@dataclass
class Pick:
    """The run that stands for one cell: its state, and whether it comes from an older spec version."""

    cell: Cell
    state: str  # finished | running | failed | pruned | interrupted | missing
    run: Any = None
    older: bool = False


def run_state(run: Any) -> str:
    """A run's state as the table shows it; a KILLED run tagged as pruned was stopped by the pruner."""
    status, tags = run.info.status, run.data.tags
    if status == "KILLED":
        pruned = tags.get(Tag.STATE) == "pruned" or Tag.PRUNED in tags
        return "pruned" if pruned else "interrupted"
    if status == "RUNNING" and process.died_here(tags.get(Tag.WORKER, "")):
        return "interrupted"  # its process here died (kill -9, its store went away): as `status` counts it
    return {"FINISHED": "finished", "FAILED": "failed"}.get(status, "running")


def standing(runs: Iterable[Any]) -> dict[str, Any]:
    """cell id -> the run that stands for it, from runs of every profile: its newest FINISHED run, else its newest."""
    out: dict[str, Any] = {}
    for run in runs:  # newest first
        cid = run.data.tags.get(Tag.CELL, "")
        held = out.get(cid)
        if held is None or (held.info.status != "FINISHED" and run.info.status == "FINISHED"):
            out[cid] = run
    return out


def finished(runs: Iterable[Any]) -> dict[str, Any]:
    """cell id -> the FINISHED run that stands for it (cells without one left out)."""
    return {cid: run for cid, run in standing(runs).items() if run.info.status == "FINISHED"}


def pick_runs(cells: list[Cell], runs: list[Any], profile: str | None = None, all_versions: bool = False) -> list[Pick]:
    """The run standing for each cell, else missing; with all_versions a cell without a finished run of
    its own takes the newest finished run of an older version of its row (label and seed) in this profile."""
    stand = standing(runs)
    older: dict[tuple[str, str], Any] = {}
    if all_versions:
        for run in runs:
            tags = run.data.tags
            if tags.get(Tag.PROFILE) == profile_tag(profile) and run.info.status == "FINISHED":
                older.setdefault((tags.get(Tag.ROW, ""), tags.get(Tag.SEED, "")), run)
    picks = []
    for cell in cells:
        own, old = stand.get(cell.id), older.get((cell.label, str(cell.seed)))
        if own is not None and own.info.status == "FINISHED":
            picks.append(Pick(cell, "finished", own))
        elif old is not None:
            picks.append(Pick(cell, "finished", old, older=True))
        else:
            picks.append(Pick(cell, run_state(own) if own is not None else "missing", own))
    return picks
