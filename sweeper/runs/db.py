"""Read-only access to the runs in a database MLflow writes (sqlite, PostgreSQL), without importing MLflow.

`sweeper table` only reads runs, their tags, params and latest metrics, yet `import mlflow` and
opening a store through MlflowClient (schema checks) cost ~3 s of a ~4 s command. This module
reads MLflow's own tables with SQLAlchemy Core instead and returns records shaped like MLflow's
`Run` (`.info.run_id`, `.info.status`, `.data.tags`, ...), selected and ordered as
`MlflowClient.search_runs` does (active runs only, newest start_time first, then run id).

It only trusts a schema it was checked against: `open_reader` returns None (use MlflowClient) for other
URIs, an alembic revision not in CHECKED, workspaces, or `SWEEPER_TABLE_READER=mlflow`; anything
unexpected later (a missing table or column, a deleted experiment) raises `Unsupported`, and the
caller reads through MlflowClient instead. Never a wrong table: at worst the slower path.
"""

from __future__ import annotations

import math
import os
import sqlite3
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from sweeper.runs import artifacts
from sweeper.settings import CONNECT_TIMEOUT
from sweeper.vocab import Tag

# alembic revisions whose experiments/runs/tags/params/latest_metrics tables this module was checked
# against (MLflow 3.17: mlflow/store/tracking/dbmodels/models.py). MLflow refuses any store not at its
# own head revision, so a new MLflow means: check the models, then add its head here
# (tests/tables/test_table_speed_path.py fails until then).
CHECKED = frozenset({"dc11669786a5"})
ENV = "SWEEPER_TABLE_READER"  # "mlflow" forces the MlflowClient path (benchmarks compare the two)
MAX_EXPERIMENTS = 1000  # MlflowClient.search_experiments' default page


class Unsupported(Exception):
    """This store cannot be read here with certainty: read it through MlflowClient instead."""


@dataclass(slots=True)
class RunInfo:
    """The RunInfo fields tables read."""

    run_id: str
    experiment_id: str
    run_name: str | None
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str
    artifact_uri: str | None


@dataclass(slots=True)
class RunData:
    """Tags, params, and the latest value of each metric (NaN where MLflow stored NaN)."""

    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]


@dataclass(slots=True)
class Run:
    """A run as MLflow's search_runs returns it, minus inputs and outputs."""

    info: RunInfo
    data: RunData


def open_reader(uri: str) -> Reader | None:
    """A reader for a sqlite or PostgreSQL tracking URI at a checked schema revision, else None."""
    workspaces = os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").lower() in ("1", "true")  # scoped queries
    if os.environ.get(ENV, "").lower() == "mlflow" or workspaces:
        return None
    try:
        engine = _engine(uri)
        if engine is None:
            return None
        reader = Reader(uri, engine)
        version = reader.rows(reader.t.alembic_version.select())
        e = reader.t.experiments  # MlflowClient refuses a store with workspaces unless they are enabled
        scoped = reader.rows(sa.select(e.c.experiment_id).where(e.c.workspace != "default").limit(1))
    except (Unsupported, ImportError):  # no alembic_version table, no driver, no server
        return None
    if len(version) != 1 or version[0][0] not in CHECKED or scoped:
        reader.close()
        return None
    return reader


def _engine(uri: str) -> Any:
    """A SQLAlchemy engine on the store's database, or None when MLflow should handle the URI."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme == "sqlite":
        path = uri.removeprefix("sqlite:///")
        # in-memory, query strings, %-escapes: MLflow's and SQLAlchemy's readings might differ
        if path == uri or not path or path == ":memory:" or any(c in path for c in "?%#"):
            return None
        db = Path(path).resolve()
        if not db.is_file():  # MLflow creates a missing store; that is a write, not ours to do
            return None
        location = f"file:{urllib.parse.quote(str(db))}?mode=ro"
        return sa.create_engine("sqlite://", creator=lambda: sqlite3.connect(location, uri=True))
    if scheme == "postgresql" or scheme.startswith("postgresql+"):
        # the driver is imported here: a missing one is an ImportError
        return sa.create_engine(uri, connect_args={"connect_timeout": CONNECT_TIMEOUT})
    return None


class _Tables:
    """Just the columns read, as lightweight Core tables: no reflection, no ORM."""

    def __init__(self) -> None:
        def table(name: str, *columns: str) -> Any:
            return sa.table(name, *(sa.column(c) for c in columns))

        self.alembic_version = table("alembic_version", "version_num")
        self.experiments = table(
            "experiments", "experiment_id", "name", "lifecycle_stage", "creation_time", "workspace"
        )
        self.runs = table(
            "runs",
            "run_uuid",
            "name",
            "status",
            "start_time",
            "end_time",
            "lifecycle_stage",
            "artifact_uri",
            "experiment_id",
        )
        self.tags = table("tags", "key", "value", "run_uuid")
        self.params = table("params", "key", "value", "run_uuid")
        self.latest_metrics = table("latest_metrics", "key", "value", "is_nan", "run_uuid")


class Reader:
    """Queries on one store: experiment lookup, run search, and the text of a local artifact."""

    def __init__(self, uri: str, engine: Any) -> None:
        self.uri, self.engine, self.t = uri, engine, _Tables()

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def rows(self, statement: Any) -> list[Any]:
        """All rows of a statement; any database error (a missing table or column) is Unsupported."""
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(statement))
        except sa.exc.SQLAlchemyError as exc:
            raise Unsupported(f"{type(exc).__name__}: {exc}") from None

    def experiment_id(self, name: str) -> str | None:
        """The id of the experiment of that name; a deleted one is Unsupported (MLflow restores it)."""
        e = self.t.experiments
        found = self.rows(sa.select(e.c.experiment_id, e.c.lifecycle_stage).where(e.c.name == name))
        if not found:
            return None
        if len(found) > 1 or found[0].lifecycle_stage != "active":
            raise Unsupported(f"experiment '{name}': {len(found)} rows, stage {found[0].lifecycle_stage}")
        return str(found[0].experiment_id)

    def experiment_names(self) -> list[str]:
        """Active experiments' names in search_experiments' default order (newest first, then id)."""
        e = self.t.experiments
        query = (
            sa.select(e.c.name)
            .where(e.c.lifecycle_stage == "active")
            .order_by(e.c.creation_time.desc(), e.c.experiment_id)
            .limit(MAX_EXPERIMENTS)
        )
        return [row.name for row in self.rows(query)]

    def search(self, exp_id: str, role: str, profile: str | None = None) -> list[Run]:
        """Active runs tagged with this role (and profile), newest first: search_runs with those tag filters."""
        r, tags = self.t.runs, self.t.tags

        def tagged(key: str, value: str) -> Any:
            return sa.select(tags.c.run_uuid).where(tags.c.key == key, tags.c.value == value)

        chosen = sa.select(r.c.run_uuid).where(
            r.c.experiment_id == int(exp_id),
            r.c.lifecycle_stage == "active",
            r.c.run_uuid.in_(tagged(Tag.ROLE, role)),
            *([r.c.run_uuid.in_(tagged(Tag.PROFILE, profile))] if profile is not None else []),
        )
        # search_runs' order: start_time DESC with NULLs last, then run id as the tie-breaker
        heads = self.rows(
            r.select()
            .where(r.c.run_uuid.in_(chosen))
            .order_by(r.c.start_time.is_(None), r.c.start_time.desc(), r.c.run_uuid)
        )
        runs = {
            h.run_uuid: Run(
                RunInfo(
                    h.run_uuid,
                    str(exp_id),
                    h.name,
                    h.status,
                    h.start_time,
                    h.end_time,
                    h.lifecycle_stage,
                    h.artifact_uri,
                ),
                RunData({}, {}, {}),
            )
            for h in heads
        }
        p, m = self.t.params, self.t.latest_metrics
        for field, query in (
            ("tags", sa.select(tags.c.run_uuid, tags.c.key, tags.c.value)),
            ("params", sa.select(p.c.run_uuid, p.c.key, p.c.value)),
            ("metrics", sa.select(m.c.run_uuid, m.c.key, m.c.value, m.c.is_nan)),
        ):
            for run_id, key, value, *nan in self.rows(query.where(query.selected_columns[0].in_(chosen))):
                run = runs.get(run_id)  # None: created by a live sweep after `heads`, left out as a moment earlier
                if run is not None:
                    getattr(run.data, field)[key] = value if not nan else math.nan if nan[0] else float(value)
        for run in runs.values():  # MLflow shows the runName tag when the name column is empty
            run.info.run_name = run.info.run_name or run.data.tags.get("mlflow.runName")
        return list(runs.values())

    def text_artifact(self, run: Run, path: str) -> str:
        """The text of a run's artifact: read in place when local, else downloaded through MLflow."""
        local = artifacts.local_path(f"{(run.info.artifact_uri or '').rstrip('/')}/{path}")
        if local is not None and local.is_file():
            return local.read_text()
        # Remote artifacts (or a missing file, and MLflow's error for it): only here is MLflow's ~3 s import paid.
        from sweeper.runs import tracking

        return tracking.read_text_artifact(tracking.open_store(self.uri), run.info.run_id, path)
