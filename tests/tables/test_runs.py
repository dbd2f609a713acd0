"""runs_db, the table's read path that needs no `import mlflow`, against MlflowClient on the same stores.

One real sweep on synthetic data fills a sqlite store with a finished cell, a failed one, a deleted
run and a second spec version; every table and every pick must come out identical through both
readers (SWEEPER_TABLE_READER=mlflow forces the MlflowClient one). The same on a real PostgreSQL.
"""

from __future__ import annotations

import math
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DIVERGES, TINY_SPEC
from mlflow import MlflowClient
from rich.console import Console
from test_tables import GOLDEN, TABLE3, log_known, table3_outcomes, write

from sweeper import sweep, tables
from sweeper.runs import db as runs_db
from sweeper.schema.spec import expand
from sweeper.tables import runs as table_runs

SMALL = {**TINY_SPEC["base"], "data": {**TINY_SPEC["base"]["data"], "train_size": 64, "val_size": 20, "test_size": 20}}
ROWS = [
    {"label": "ReLU", "activation": "relu"},
    {**DIVERGES, "data.batch_size": 2},
]


@pytest.fixture(scope="module")
def swept(tmp_path_factory, synthetic_data) -> dict:
    """v1 (2 rows x 2 seeds) trained for real, one finished run deleted, then v2 (new ReLU lr, 3 seeds) logged."""
    tmp = tmp_path_factory.mktemp("swept")
    uri = f"sqlite:///{tmp / 'store' / 'mlflow.db'}"
    v1 = write(tmp, {**TINY_SPEC, "base": SMALL, "seeds": [0, 1], "rows": ROWS}, "v1.yaml")
    report = sweep.run(v1, "quick", tracking_uri=uri, device="cpu", data=synthetic_data, console=Console(quiet=True))
    assert len(report.finished) == 2 and len(report.failed) == 2
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny").experiment_id
    deleted = client.search_runs([exp], "tags.`sweeper.row` = 'ReLU' and tags.`sweeper.seed` = '1'")[0].info.run_id
    client.delete_run(deleted)
    rows = [{**ROWS[0], "optimizer.lr": 2.0e-3}, ROWS[1]]
    v2 = write(tmp, {**TINY_SPEC, "base": SMALL, "seeds": [0, 1, 2], "rows": rows}, "v2.yaml")
    log_known(uri, v2, {("ReLU", 2): {"test_acc": 0.42, "history": [0.3, 0.42]}}, profile="quick")
    return {"uri": uri, "v1": v1, "v2": v2, "deleted": deleted, "exp": exp, "tmp": tmp}


def shape(run) -> tuple:
    """Everything a table may read of a run, NaN made comparable."""
    i, d = run.info, run.data
    metrics = {k: "nan" if math.isnan(v) else v for k, v in d.metrics.items()}
    return (
        i.run_id,
        i.experiment_id,
        i.run_name,
        i.status,
        i.start_time,
        i.end_time,
        i.lifecycle_stage,
        i.artifact_uri,
        d.tags,
        d.params,
        metrics,
    )


def picks(uri: str, name: str, profile: str | None, all_versions: bool) -> list[tuple]:
    """(cell, state, run id, older) of every cell, read by whichever reader read_runs chooses."""

    def read(runs: table_runs.Runs) -> list[tuple]:
        spec, prof, _ = table_runs.resolve(name, runs, profile)
        found = table_runs.cell_runs(runs, runs.experiment_id(spec.name))
        chosen = table_runs.pick_runs(expand(spec, prof), found, prof, all_versions)
        return [(type(runs).__name__, p.cell.id, p.state, p.run and p.run.info.run_id, p.older) for p in chosen]

    return table_runs.read_runs(uri, read)


QUERIES = [("tiny", None, False), ("tiny", "quick", True), ("v1", "quick", False), ("v2", "quick", True)]


def test_fast_and_mlflow_readers_give_the_same_runs_picks_and_tables(swept, monkeypatch):
    uri = swept["uri"]
    reader = runs_db.open_reader(uri)
    assert isinstance(reader, runs_db.Reader)
    store_runs = table_runs.read_runs(
        uri, lambda r: {role: [shape(x) for x in r.search(swept["exp"], role)] for role in ("cell", "sweep")}
    )
    queries = [(str(swept.get(n, n)), p, a) for n, p, a in QUERIES]
    fast = [(picks(uri, *q), tables.render(tables.build(q[0], q[1], uri, all_versions=q[2]))) for q in queries]
    monkeypatch.setenv(runs_db.ENV, "mlflow")
    assert runs_db.open_reader(uri) is None
    slow_runs = table_runs.read_runs(
        uri, lambda r: {role: [shape(x) for x in r.search(swept["exp"], role)] for role in ("cell", "sweep")}
    )
    slow = [(picks(uri, *q), tables.render(tables.build(q[0], q[1], uri, all_versions=q[2]))) for q in queries]
    assert store_runs == slow_runs and len(store_runs["cell"]) == 4 and len(store_runs["sweep"]) == 1
    assert swept["deleted"] not in {r[0] for r in store_runs["cell"]}
    for (fast_picks, fast_text), (slow_picks, slow_text) in zip(fast, slow):
        assert {p[0] for p in fast_picks} == {"Reader"} and {p[0] for p in slow_picks} == {"MlflowRuns"}
        assert [p[1:] for p in fast_picks] == [p[1:] for p in slow_picks]
        assert fast_text == slow_text
    by_name, all_versions, v1, _ = (text for _, text in fast)
    assert "| ReLU | **42.00 (n=1/3)** |" in by_name and "| diverges | failed/missing |" in by_name, (
        "the name reads the v2 spec"
    )
    assert "ReLU: seed 0 missing, seed 1 missing" in by_name
    assert "Includes runs of older spec versions (--all-versions): ReLU seed 0 (cell " in all_versions
    assert "ReLU: seed 1 missing" in all_versions, "the deleted v1 run of seed 1 does not count"
    assert "ReLU: seed 1 missing" in v1 and "(n=1/2)" in v1


def test_sweeper_table_on_sqlite_never_imports_mlflow(swept, tmp_path):
    uri, v2 = swept["uri"], str(swept["v2"])
    built = tables.build(v2, "quick", uri)
    expected = tables.render(built)
    tables.publish(built, uri)  # the parent run's summary is current, as a sweep leaves it: nothing to write
    doc = tmp_path / "report.md"
    doc.write_text(expected)
    for args, out in (
        (["table", v2, "-p", "quick"], expected),
        (["table", "tiny", "--check", str(doc)], f"{doc}: the table of 'tiny' matches the runs.\n"),
    ):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "sweeper", *args, "--tracking-uri", uri],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout == out
        imported = {
            line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")
        }
        assert "sweeper.tables" in imported and "sqlalchemy" in imported
        assert not {m for m in imported if m.split(".")[0] == "mlflow"}, "the sqlite table path imported mlflow"


def copy_store(swept: dict, tmp_path: Path) -> tuple[str, sqlite3.Connection]:
    db = tmp_path / "mlflow.db"
    shutil.copy(Path(swept["uri"].removeprefix("sqlite:///")), db)
    return f"sqlite:///{db}", sqlite3.connect(db)


def test_unchecked_schemas_and_deleted_experiments_go_through_mlflow(swept, tmp_path):
    from mlflow.store.db.utils import _get_latest_schema_revision

    assert _get_latest_schema_revision() in runs_db.CHECKED, "new MLflow: check its dbmodels, then add its head"
    uri, db = copy_store(swept, tmp_path)
    with db:
        db.execute("UPDATE experiments SET workspace = 'team'")  # MlflowClient refuses it without workspaces
    assert runs_db.open_reader(uri) is None
    with db:
        db.execute("UPDATE experiments SET workspace = 'default'")
        db.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    assert runs_db.open_reader(uri) is None
    with db:
        db.execute(f"UPDATE alembic_version SET version_num = '{next(iter(runs_db.CHECKED))}'")
        db.execute("ALTER TABLE latest_metrics RENAME COLUMN is_nan TO nan_flag")
    reader = runs_db.open_reader(uri)
    with pytest.raises(runs_db.Unsupported, match="is_nan"):
        reader.search(swept["exp"], "cell")
    (tmp_path / "other").mkdir()
    uri, _ = copy_store(swept, tmp_path / "other")
    MlflowClient(uri).delete_experiment(swept["exp"])
    with pytest.raises(runs_db.Unsupported, match="deleted"):
        runs_db.open_reader(uri).experiment_id("tiny")
    text = tables.render(tables.build("tiny", tracking_uri=uri))  # MLflow restores it, as before
    assert "| ReLU | **42.00 (n=1/3)** |" in text


def test_postgresql_store_reads_the_same_without_mlflow(postgres_url, tmp_path, monkeypatch):  # noqa: F811
    uri = "postgresql+psycopg://" + postgres_url.split("://", 1)[1]
    MlflowClient(uri).create_experiment("table3", artifact_location=(tmp_path / "artifacts").as_uri())
    log_known(uri, write(tmp_path, TABLE3), table3_outcomes())
    assert {p[0] for p in picks(uri, "table3", None, False)} == {"Reader"}, "read without MLflow, no fallback"
    fast = tables.render(tables.build("table3", tracking_uri=uri))
    assert fast == (GOLDEN / "table3.md").read_text()
    monkeypatch.setenv(runs_db.ENV, "mlflow")
    assert tables.render(tables.build("table3", tracking_uri=uri)) == fast
