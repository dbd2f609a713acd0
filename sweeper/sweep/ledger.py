"""A sweep's bookkeeping as plain data: each cell's state, what to enqueue, what a run did.

Works on the trials sweeper.sweep reads from the study (their state name, number, params and user
attributes) and on the set of cells MLflow has FINISHED, which always wins. No optuna import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sweeper.runs import process
from sweeper.schema.spec import Cell, Spec
from sweeper.vocab import Attr

KEEP = (Attr.CELL, Attr.LABEL, Attr.SEED, Attr.EPOCHS)  # what identifies a trial's cell


@dataclass
class SweepReport:
    """What one `sweeper run` (or worker) did, cells named 'label seed=N'."""

    spec: str
    total: int
    skipped: int = 0
    finished: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)


@dataclass
class Snapshot:
    """Every cell's state (done, running, failed, pruned, left) and what each busy worker does."""

    states: dict[str, str]
    names: dict[str, str]
    last: dict[str, int] = field(default_factory=dict)  # newest trial number per cell
    extra_left: int | None = 0  # search trials not sampled yet (None: bounded by time only)
    active: list[tuple[str, str, int, int]] = field(default_factory=list)  # worker, cell, epoch, epochs

    def count(self, state: str) -> int:
        """Cells in one state ('left' includes trials a search has yet to sample)."""
        n = sum(1 for s in self.states.values() if s == state)
        return n + (self.extra_left or 0) if state == "left" else n

    @property
    def total(self) -> int:
        """Cells known so far plus the search trials still to come."""
        return len(self.states) + (self.extra_left or 0)

    def pending(self) -> int:
        """Cells left or running (a search bounded by time alone counts only those it has sampled)."""
        return self.count("left") + self.count("running")

    def idle(self) -> bool:
        """Nothing to train and nothing running: a worker may stop."""
        return not self.pending() and self.extra_left is not None


def cell_attrs(cell: Cell) -> dict[str, Any]:
    """The user attrs that tie a trial to its cell."""
    return dict(zip(KEEP, (cell.id, cell.label, cell.seed, cell.config.epochs)))


def by_cell(trials: list[Any]) -> dict[str, list[Any]]:
    """Trials per cell id, oldest first; skipped trials (twin or empty claims) are left out."""
    out: dict[str, list] = {}
    for t in trials:
        if Attr.SKIP not in t.user_attrs and Attr.CELL in t.user_attrs:
            out.setdefault(t.user_attrs[Attr.CELL], []).append(t)
    return out


def cell_state(trials: list[Any]) -> str:
    """new, done, pruned, running, waiting, interrupted, or failed (raised, or its workers kept dying)."""
    states = {t.state.name for t in trials}
    for state, name in (("COMPLETE", "done"), ("PRUNED", "pruned"), ("RUNNING", "running"), ("WAITING", "waiting")):
        if state in states:
            return name
    if not trials:
        return "new"
    return "interrupted" if trials[-1].user_attrs.get(Attr.INTERRUPTED) else "failed"


def snapshot(spec: Spec, cells: list[Cell], trials: list[Any], done: set[str]) -> Snapshot:
    """Every cell's state; MLflow's finished cells are done whatever the study says."""
    grouped = by_cell(trials)
    show = {"new": "left", "waiting": "left", "interrupted": "left"}
    if spec.search is None:
        names = {c.id: c.name for c in cells}
    else:
        names = {cid: f"{ts[0].user_attrs.get(Attr.LABEL, cid)} seed={spec.seeds[0]}" for cid, ts in grouped.items()}
    states = {
        cid: "done" if cid in done else show.get(s := _state_without_run(grouped.get(cid, [])), s) for cid in names
    }
    for cid, state in states.items():  # a dead worker's trial stays RUNNING until its heartbeat times out:
        if state == "running" and all(_died_here(t) for t in grouped[cid] if t.state.name == "RUNNING"):
            states[cid] = "left"  # interrupted, so the next worker trains it (and counts it)
    snap = Snapshot(states, names, {cid: ts[-1].number for cid, ts in grouped.items()})
    if spec.search is not None:
        budget = spec.search.budget()
        snap.extra_left = None if budget is None else max(0, budget - len(names))
    for cid, ts in grouped.items():
        for t in ts:
            if t.state.name == "RUNNING" and cid in names and states[cid] == "running":
                snap.active.append(
                    (
                        t.user_attrs.get(Attr.WORKER, "?"),
                        names[cid],
                        t.user_attrs.get(Attr.EPOCH, 0),
                        t.user_attrs.get(Attr.EPOCHS, 0),
                    )
                )
    return snap


def _died_here(trial: Any) -> bool:
    """Whether a trial's worker was a process of this machine that is gone (killed, crashed)."""
    return process.died_here(str(trial.user_attrs.get(Attr.WORKER, "")))


def to_enqueue(
    spec: Spec, cells: list[Cell], trials: list[Any], done: set[str], retry_failed: bool
) -> list[tuple[dict, dict]]:
    """(params, user attrs) of the trials to enqueue: new and interrupted cells, failed ones on request."""
    grouped = by_cell(trials)
    wanted = {"new", "interrupted"} | ({"failed"} if retry_failed else set())
    if spec.search is None:
        todo: list[tuple[str, dict[str, Any], dict[str, Any]]] = [(c.id, {}, cell_attrs(c)) for c in cells]
    else:  # a search re-runs only trials it already sampled; new ones are sampled by the workers
        todo = [
            (cid, ts[-1].params, {k: ts[-1].user_attrs[k] for k in KEEP if k in ts[-1].user_attrs})
            for cid, ts in grouped.items()
        ]
    return [
        (params, attrs)
        for cid, params, attrs in todo
        if cid not in done and _state_without_run(grouped.get(cid, [])) in wanted
    ]


def _state_without_run(trials: list[Any]) -> str:
    """The state of a cell with no finished MLflow run: a complete trial whose run is gone is new again."""
    state = cell_state(trials)
    # The study can outlive its runs (runs deleted in the UI, a fresh MLflow store beside an old
    # optuna.db): MLflow is the record, so such a cell is trained again rather than reported done.
    return "new" if state == "done" else state


def budget_used(trials: list[Any]) -> int:
    """Distinct cells a search has tried (retries and skipped claims not counted twice)."""
    return len({t.user_attrs.get(Attr.CELL, f"#{t.number}") for t in trials if Attr.SKIP not in t.user_attrs})


def report(spec: Spec, before: Snapshot, after: Snapshot) -> SweepReport:
    """What changed between two snapshots, in cell order."""
    out = SweepReport(spec=spec.name, total=after.total, skipped=before.count("done"))
    lists = {"done": out.finished, "failed": out.failed, "pruned": out.pruned}
    for cid, state in after.states.items():
        if state in lists and (before.states.get(cid) != state or before.last.get(cid) != after.last.get(cid)):
            lists[state].append(after.names[cid])
    return out
