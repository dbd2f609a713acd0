"""Which spec file an experiment belongs to: two specs that share a `name:` would silently share one
experiment, one study and one table, so a sweep whose experiment came from another spec file (another
path and other content) is refused. A spec edited in place, or copied elsewhere unchanged, runs on; a
spec whose old file is gone (moved) takes the experiment over."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sweeper.errors import UserError, warn
from sweeper.runs import tracking
from sweeper.vocab import Tag


def claim(store: tracking.Store, exp_id: str, name: str, spec_path: Path) -> None:
    """Record `spec_path` as the experiment's spec, or a UserError when another live spec file owns it."""
    path = spec_path.resolve()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    tags = store.client.get_experiment(exp_id).tags
    owner, owned_digest = tags.get(Tag.SPEC_FILE), tags.get(Tag.SPEC_DIGEST)
    if owner and owner != str(path) and owned_digest != digest:
        if Path(owner).is_file():
            raise UserError(
                f"{spec_path}: its name '{name}' is already the MLflow experiment of another spec, {owner}, "
                f"whose content differs; both would share one experiment, study and table. Give this spec "
                f"its own `name:` (e.g. '{name}_{path.stem}'), or delete the other file if it is an old copy."
            )
        warn(f"experiment '{name}' was run from {owner}, which is gone: it now belongs to {path}")
    if owner != str(path) or owned_digest != digest:
        store.client.set_experiment_tag(exp_id, Tag.SPEC_FILE, str(path))
        store.client.set_experiment_tag(exp_id, Tag.SPEC_DIGEST, digest)
