"""Launchers: where a sweep's workers run. One interface (launch, states, logs), implementations chosen
by name in one place (catalogue.LAUNCHERS: local, slurm; or the user's `file.py:Class`), so `run`,
`status` and `logs` ask the launcher and know no launcher themselves.

Every worker is a `sweeper worker` claiming cells from the sweep's Optuna storage and logging to its
MLflow store; a launcher only decides where those processes run and how to watch them. Adding one is a
module with a class like `LocalLauncher` plus its catalogue entry (tests/sweep/test_launchers.py adds one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console

from sweeper.catalogue import LAUNCHERS
from sweeper.errors import UserError
from sweeper.schema import plugins
from sweeper.schema.launcher import resolve
from sweeper.schema.spec import load_spec
from sweeper.schema.targets import implementation
from sweeper.sweep.ledger import SweepReport
from sweeper.sweep.study import HEARTBEAT

ENV_STORAGE = "SWEEPER_STORAGE"


@dataclass
class Request:
    """What `sweeper run` asks a launcher for: the sweep, where it is stored, and the launcher's settings."""

    spec_path: Path
    profile: str | None
    settings: Any  # the launcher's validated settings (schema.launcher), spec block and --opt merged
    storage: str | None = None
    tracking_uri: str | None = None
    device: str = "auto"
    heartbeat: int = HEARTBEAT
    retry_failed: bool = False
    console: Console = field(default_factory=Console)
    data: Any = None  # (train, test) splits instead of the prepared data set: tests, in-process only


@dataclass
class Launched:
    """What a launch did: a sweep trained here (its report), or workers queued elsewhere (their ids)."""

    report: SweepReport | None = None
    submitted: list[str] = field(default_factory=list)
    logs: Path | None = None


@dataclass(frozen=True)
class WorkerState:
    """One worker as its launcher sees it (a SLURM array task, a local process)."""

    worker: str
    state: str
    where: str = ""


class Launcher(Protocol):
    """Runs a sweep's workers somewhere, and reports on them."""

    def launch(self, request: Request) -> Launched:
        """Start the workers (and, for a launcher that runs them here, wait for them); nothing is written
        before the request is checked."""

    def states(self, spec_name: str, tracking_uri: str | None) -> list[WorkerState]:
        """The workers this launcher started for a spec, as it last saw them."""

    def logs(self, spec_name: str, tracking_uri: str | None, worker: str | None = None) -> list[Path]:
        """The log files of those workers (one worker's with `worker`), oldest first."""


def launcher(name: str, spec_path: Path | None = None) -> Launcher:
    """The launcher called `name`: a catalogue name, or the user's `file.py:Class` (beside the spec)."""
    if spec_path is not None and name not in LAUNCHERS and plugins.is_reference(name):
        plugins.resolve(name, base_dir=spec_path.resolve().parent)
    cls = implementation(LAUNCHERS, name)
    try:
        return cls()
    except TypeError as exc:
        raise UserError(f"launcher {name!r} cannot be built without arguments: {exc}") from None


def watched(block: Any, profile: str | None, name: str | None) -> list[str]:
    """The launchers whose workers `status` and `logs` look for: the one `--launcher` names, else the spec's
    and every built-in one (a sweep submitted with `run --launcher slurm` is found without repeating it)."""
    chosen = resolve(block, profile, name, {}).name
    return [chosen] if name else list(dict.fromkeys([chosen, *LAUNCHERS.names]))


def settings_for(spec_path: Path, profile: str | None, name: str | None, options: dict[str, Any]) -> Any:
    """The launcher settings of a run: the spec's `launcher:` block for the profile, `--opt` on top."""
    return resolve(load_spec(spec_path).launcher, profile, name, options)


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """`--opt key=value` pairs as settings (values read as YAML scalars: 8, true; 4:00:00 and options.* stay text)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--opt '{pair}' is not key=value, e.g. --opt partition=gpu or --opt options.account=proj.")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value.strip()  # not a YAML scalar: the text as written
        *parents, leaf = key.strip().split(".")
        if isinstance(parsed, (dict, list)) or ":" in value or parents[:1] == ["options"]:
            parsed = value.strip()  # sbatch's own options are text: --opt options.exclusive=true passes "true"
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--opt '{pair}': '{part}' was given a value of its own, so it has no keys to set.")
        node[leaf] = parsed
    return out


def worker_environment(storage: str, tracking_uri: str) -> dict[str, str]:
    """What every worker reads its store and storage from: the environment, never argv (`ps` shows argv to
    every user of a machine, and these URLs may hold passwords). The one way secrets reach workers."""
    return {ENV_STORAGE: storage, "MLFLOW_TRACKING_URI": tracking_uri}
