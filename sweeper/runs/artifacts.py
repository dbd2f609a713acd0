"""Text artifacts of runs on a local store, read and written in place (as MLflow's local repository would),
so `sweeper table` on a sqlite store never imports MLflow; a remote store's go through MLflow."""

from __future__ import annotations

import urllib.parse
import urllib.request
from pathlib import Path

from sweeper.errors import warn


def local_path(uri: str) -> Path | None:
    """The file a file:// URI or a plain path names (as MLflow's local_file_uri_to_path), else None."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(urllib.request.url2pathname(parsed.path))
    if not parsed.scheme and uri:
        return Path(urllib.request.url2pathname(uri))
    return None


def write_text_artifact(artifact_uri: str, path: str, text: str) -> bool:
    """Write a run's text artifact in place when its artifact store is a local folder, as MLflow's local
    repository would copy it (atomically: a reader sees the old file or the new one); False when remote."""
    local = local_path(f"{artifact_uri.rstrip('/')}/{path}") if artifact_uri else None
    if local is None:
        return False
    local.parent.mkdir(parents=True, exist_ok=True)
    partial = local.with_name(f".{local.name}.partial")
    partial.write_text(text)
    partial.replace(local)
    return True


def publish_text(tracking_uri: str | None, run_id: str, artifact_uri: str, path: str, text: str) -> None:
    """Store `text` as the run's artifact `path`: in place in a local artifact folder, else through MLflow
    (imported only then); a store that refuses is a warning, the caller has the text anyway."""
    try:
        if write_text_artifact(artifact_uri, path, text):
            return
        from sweeper.runs import tracking

        tracking.log_text(tracking.open_store(tracking_uri), run_id, text, path)
    except Exception as exc:  # noqa: BLE001 - a read-only store still gets its table printed
        warn(f"{path} not logged to run {run_id}: {type(exc).__name__}: {exc}")
