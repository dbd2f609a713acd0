"""Environment facts only: where the store, the data and the device are. Nothing about experiments."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Seconds to wait for a database server: a down one must fail in seconds (MLflow alone retries ~2 min).
CONNECT_TIMEOUT = 5


class Settings(BaseSettings):
    """Read from SWEEPER_* variables (and MLFLOW_TRACKING_URI), else sensible local defaults."""

    model_config = SettingsConfigDict(env_prefix="SWEEPER_", extra="ignore")

    # MLflow's own variable wins so that a shared server works with no sweeper-specific setup.
    tracking_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "SWEEPER_TRACKING_URI")
    )
    store_dir: Path = Path("mlruns")
    data_dir: Path = Path("data")
    device: str = "auto"
    # The sweep's Optuna storage when --storage is not given: how workers get a URL with a password
    # without it showing on their command line (`ps` shows argv to every user of the machine).
    storage: str | None = None
    # Intra-op CPU threads: "auto" uses the cores other processes leave idle (re-checked each long
    # epoch), so a busy machine slows training by the cores it lost rather than many times over;
    # a number fixes it (`sweeper worker --threads`, one share per local worker).
    threads: str = Field(default="auto", pattern=r"^(auto|[1-9][0-9]*)$")
    # Each cell's figures as PNG beside the HTML (a headless Chromium renders them, a second or two a
    # cell): SWEEPER_PNG=0 keeps them HTML only, e.g. on servers without Chromium or for sweeps of many
    # tiny cells.
    png: bool = True

    def resolved_tracking_uri(self, override: str | None = None) -> str:
        """The tracking URI to use: explicit override, then the environment, then the local sqlite store."""
        if override:
            return override
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.store_dir / 'mlflow.db').resolve()}"

    def artifact_root(self) -> Path:
        """Where a local store keeps artifacts (MLflow 3.13+ refuses a bare ./mlruns file store)."""
        return (self.store_dir / "artifacts").resolve()


def get_settings() -> Settings:
    """Fresh settings each call, so tests and CLI flags can change the environment in between."""
    return Settings()
