"""Environment facts only: where the store, the data and the device are. Nothing about experiments."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
