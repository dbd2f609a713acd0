"""runs/cells.py: which run stands for a cell, whatever profile ran it (in-process, no store)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import yaml
from conftest import TINY_SPEC

from sweeper.runs import cells
from sweeper.schema.spec import expand, parse_spec


def run(cell: str, status: str, profile: str = "default", **tags: str) -> SimpleNamespace:
    tags = {"sweeper.cell": cell, "sweeper.profile": profile, **tags}
    return SimpleNamespace(
        info=SimpleNamespace(status=status, run_id=f"{cell}-{status}"), data=SimpleNamespace(tags=tags)
    )


def test_a_finished_run_of_another_profile_stands_for_the_cell():
    text = yaml.safe_dump({**TINY_SPEC, "profiles": {"more": {"seeds": [0, 1]}}})
    spec = parse_spec(text, Path("spec.yaml"))
    more = expand(spec, "more")
    assert {c.id for c in expand(spec)} < {c.id for c in more}, "seed 0 is the same cell in both profiles"
    done = [run(c.id, "FINISHED") for c in expand(spec)]  # the default profile finished seed 0
    picks = cells.pick_runs(more, done, "more")
    assert [p.state for p in picks] == ["finished" if c.seed == 0 else "missing" for c in more]
    assert set(cells.finished(done)) == {c.id for c in expand(spec)}


def test_the_newest_finished_run_stands_else_the_newest():
    newest_first = [
        run("a", "KILLED", "quick", **{"sweeper.state": "pruned"}),
        run("a", "FINISHED"),
        run("b", "FAILED"),
    ]
    stand = cells.standing(newest_first)
    assert stand["a"].info.status == "FINISHED" and stand["b"].info.status == "FAILED"
    assert cells.run_state(newest_first[0]) == "pruned" and cells.run_state(run("c", "KILLED")) == "interrupted"
    assert cells.run_state(run("c", "RUNNING")) == "running"
