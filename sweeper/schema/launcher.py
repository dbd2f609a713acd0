"""The spec's `launcher:` block: how `sweeper run --launcher slurm` asks SLURM for workers.

Command-line flags win over the block; `profiles:` inside it override it per profile (a quick
profile may want fewer workers or a shorter time limit).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from sweeper.schema.config import Strict


class SlurmSettings(Strict):
    """Per-worker SLURM resources; every field optional so that a profile changes only what it names."""

    workers: int | None = Field(None, ge=1, le=10_000)
    gpus_per_worker: int | None = Field(None, ge=0, le=64)
    cpus_per_worker: int | None = Field(None, ge=1, le=1024)
    partition: str | None = None
    time: str | None = Field(None, pattern=r"^(\d+-)?\d+(:\d+){0,2}$")  # SLURM's MM, HH:MM:SS, D-HH[:MM[:SS]]
    requeue: bool | None = None
    options: dict[str, str] = Field(default_factory=dict)  # any other sbatch option, e.g. {account: proj}


class Launcher(SlurmSettings):
    """`launcher:` in a spec: SLURM settings, and per-profile overrides of them."""

    profiles: dict[str, SlurmSettings] = Field(default_factory=dict)

    def resolved(self, profile: str | None) -> dict[str, Any]:
        """The settings for one profile: the block's, then the profile's on top (set fields only)."""
        base = self.model_dump(exclude={"profiles"}, exclude_none=True)
        over = self.profiles[profile].model_dump(exclude_none=True) if profile in self.profiles else {}
        return {**base, **over, "options": {**base.get("options", {}), **over.get("options", {})}}
