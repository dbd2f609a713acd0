"""The spec's `launcher:` block: which launcher runs the sweep's workers (`name`, from catalogue.LAUNCHERS,
or your own `file.py:Class`) and its settings. `sweeper run --launcher NAME --opt key=value` picks or
overrides them; `profiles:` inside the block override it per profile (a quick profile may want fewer
workers or a shorter time limit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeAlias, Union

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from sweeper.catalogue import LAUNCHERS
from sweeper.errors import UserError
from sweeper.schema.choices import tagged_union
from sweeper.schema.config import Custom, Strict
from sweeper.schema.plugins import is_reference


class LocalSettings(Strict):
    """Worker processes on this machine: one per GPU of `devices`, or `workers` sharing the CPU."""

    name: Literal["local"] = "local"
    workers: int | None = Field(None, ge=1, le=1024, description="worker processes; default one per GPU, else 1")
    devices: list[int] | Literal["all"] | None = Field(None, description="GPUs, numbered as this process sees them")


class SlurmResources(Strict):
    """Per-worker SLURM resources; every field optional so that a profile changes only what it names."""

    # `--opt time=30` arrives as a number; SLURM's times and options are text
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    workers: int | None = Field(None, ge=1, le=10_000)
    gpus_per_worker: int | None = Field(None, ge=0, le=64)
    cpus_per_worker: int | None = Field(None, ge=1, le=1024)
    partition: str | None = None
    time: str | None = Field(None, pattern=r"^(\d+-)?\d+(:\d+){0,2}$")  # SLURM's MM, HH:MM:SS, D-HH[:MM[:SS]]
    requeue: bool | None = None
    options: dict[str, str] = Field(default_factory=dict)  # any other sbatch option, e.g. {account: proj}


class SlurmSettings(SlurmResources):
    """A SLURM job array of workers (submitit), and per-profile overrides of its resources."""

    name: Literal["slurm"] = "slurm"
    profiles: dict[str, SlurmResources] = Field(default_factory=dict)


class CustomLauncher(Custom):
    """Your own launcher, `name: launchers.py:MyLauncher`: its other keys are its settings."""


SETTINGS: dict[str, type[Strict]] = {"local": LocalSettings, "slurm": SlurmSettings}
# Keys only SLURM's settings have: before the block named its launcher, it held SLURM's settings alone.
SLURM_ONLY = frozenset(SlurmSettings.model_fields) - frozenset(LocalSettings.model_fields)


def _unnamed(block: dict) -> str:
    """The launcher a block without `name` describes: SLURM's when it sets a SLURM-only key (a spec written
    before `name:` existed still validates; it stays the settings `--launcher slurm` uses), else local."""
    return "slurm" if SLURM_ONLY & block.keys() else "local"


if TYPE_CHECKING:  # what mypy can read; pydantic gets the catalogue's tagged union
    LauncherSpec: TypeAlias = Union[LocalSettings, SlurmSettings, CustomLauncher]
else:
    LauncherSpec = tagged_union(LAUNCHERS, lambda name: SETTINGS[name], CustomLauncher, default=_unnamed)


def resolve(block: Any, profile: str | None, name: str | None, options: dict[str, Any]) -> Any:
    """The settings a run uses: the spec's block (its profile's overrides on top) for the launcher `name`
    (default: the block's), then the command line's `--opt key=value` on top; a UserError names a bad key."""
    given: dict[str, Any] = block.model_dump(exclude_none=True) if block is not None else {}
    # a block that does not name its launcher (SLURM's settings, as specs wrote them before) leaves `local` the default
    named = block is not None and "name" in block.model_fields_set
    chosen = name or (given["name"] if named else "local")
    if chosen not in LAUNCHERS and not is_reference(chosen):
        raise UserError(LAUNCHERS.unknown(chosen))
    if given.get("name", chosen) != chosen:
        given = {}  # the spec describes another launcher: none of its settings apply
    over = given.pop("profiles", {}).get(profile or "", {})
    merged = {**given, **over, "name": chosen, **options}
    if "options" in given or "options" in over:
        merged["options"] = {**given.get("options", {}), **over.get("options", {}), **options.get("options", {})}
    try:
        return TypeAdapter(LauncherSpec).validate_python(merged)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'launcher'}: {e['msg']}" for e in exc.errors())
        raise UserError(f"launcher {chosen!r}: {problems} (from the spec's launcher: block and --opt).") from None
