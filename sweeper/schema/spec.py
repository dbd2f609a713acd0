"""The YAML spec of one ablation table: load strictly, fail fast with file:line, expand to cells.

Imports no torch, so `sweeper validate` is instant.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from sweeper.errors import UserError
from sweeper.schema.config import Strict, TrainConfig, fields_at, kind_tags, merge, unflatten
from sweeper.schema.launcher import Launcher
from sweeper.schema.search import SEARCH_TAGS, Search

NumberFormat = Literal["percent", "loss", "params", "float", "int", "sci"]


class Column(Strict):
    """An identifying column: `label`, `row` (1-based number), a dotted config key or `metrics.KEY`."""

    key: str
    header: str
    format: NumberFormat | None = None
    # value -> text, e.g. {l1: "L1, {loss.penalty_weight:sci}"}; {dotted.key[:format]} fills in config values
    show: dict[str | bool | int | float, str] = Field(default_factory=dict)


class Metric(Strict):
    """A metric column: an MLflow metric key, its header and how to print it."""

    key: str
    header: str
    format: NumberFormat = "float"
    best: Literal["max", "min", "none"] | None = None
    mark: Literal["bold", "star"] = "bold"  # report 002 marks the best value with `*`

    def goal(self) -> str:
        """Which end is best: explicit, else from the format (losses low, the rest high)."""
        if self.best:
            return self.best
        return "min" if self.format == "loss" or "loss" in self.key else "max"


class TableSpec(Strict):
    """How `sweeper table` lays the report's table out."""

    columns: list[Column] = Field(default_factory=lambda: [Column(key="label", header="Configuration")])
    metrics: list[Metric] = Field(min_length=1)
    sort: str | None = None  # a metric key: rows best-first by it; default: spec order
    alpha: float = Field(0.05, gt=0.0, lt=0.5)  # level of the Welch test against the best row
    # The least deviation from a row's `reported` value still counted as reproduced, in the metric's
    # printed units (points for percent): one number for every metric, or per metric key. See `floor`.
    tolerance: float | dict[str, float] | None = None

    @model_validator(mode="after")
    def _sort_names_a_metric(self) -> TableSpec:
        keys = [m.key for m in self.metrics]
        if self.sort is not None and self.sort not in keys:
            raise ValueError(f"table.sort '{self.sort}' is not one of the table's metrics ({', '.join(keys)})")
        tol = self.tolerance
        unknown = sorted(set(tol) - set(keys)) if isinstance(tol, dict) else []
        if unknown:
            raise ValueError(
                f"table.tolerance names {', '.join(unknown)}, not among the table's metrics ({', '.join(keys)})"
            )
        if any(v < 0 for v in (tol.values() if isinstance(tol, dict) else [tol] if tol is not None else [])):
            raise ValueError("table.tolerance must not be negative")
        return self

    def floor(self, metric: Metric, reported: float) -> float:
        """The tolerance floor for a metric, printed units: the spec's, else 1 point for a percent
        metric and 5% of the reported value for any other (a report prints one run; seeds vary)."""
        tol = self.tolerance
        given = tol.get(metric.key) if isinstance(tol, dict) else tol
        if given is not None:
            return given
        return 1.0 if metric.format == "percent" else 0.05 * abs(reported)


# Row keys that are not config overrides: they never change a cell's config, so never its id.
RESERVED_ROW_KEYS = ("label", "reported")


class Spec(Strict):
    """One ablation table: a fixed base config, the rows (or grid) that vary it, seeds, profiles."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    title: str = ""
    source: str = ""
    base: dict[str, Any]
    seeds: list[int] = Field(default=[0], min_length=1)
    rows: list[dict[str, Any]] | None = None
    grid: dict[str, list[Any]] | None = None
    search: Search | None = None  # an Optuna search instead of fixed rows
    table: TableSpec
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    launcher: Launcher | None = None  # SLURM settings for `sweeper run --launcher slurm`

    @field_validator("rows")
    @classmethod
    def _rows_have_labels(cls, rows: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        labels = [row.get("label") for row in rows or []]
        if any(not isinstance(label, str) or not label for label in labels):
            raise ValueError("every row needs a non-empty `label`")
        dupes = sorted({str(label) for label in labels if labels.count(label) > 1})
        if dupes:
            raise ValueError(f"row labels must be unique; repeated: {', '.join(dupes)}")
        return rows

    @model_validator(mode="after")
    def _one_axis(self) -> Spec:
        if [self.rows, self.grid, self.search].count(None) != 2:
            raise ValueError(
                "give exactly one of `rows` (one per table row), `grid` (a cartesian product) "
                "or `search` (an Optuna search)"
            )
        if self.search is not None and len(self.seeds) != 1:
            raise ValueError("a search trains one seed per trial: give a single seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must be unique")
        self._check_reported()
        return self

    def _check_reported(self) -> None:
        """A row's `reported:` maps table metric keys to the numbers the report printed, as fractions/raw values."""
        keys = [m.key for m in self.table.metrics]
        for row in self.rows or []:
            given = row.get("reported", {})
            if not isinstance(given, dict):
                raise ValueError(
                    f"row '{row['label']}': `reported` maps metric keys to numbers, e.g. {{test_acc: 0.8235}}"
                )
            for key, value in given.items():
                if key not in keys:
                    raise ValueError(
                        f"row '{row['label']}': reported '{key}' is not one of the table's metrics ({', '.join(keys)})"
                    )
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"row '{row['label']}': reported {key} must be a number, not {value!r}")

    def reported(self) -> dict[str, dict[str, float]]:
        """The report's printed values by row label (rows without any left out)."""
        return {
            row["label"]: {k: float(v) for k, v in row["reported"].items()}
            for row in self.rows or []
            if row.get("reported")
        }

    def row_overrides(self) -> list[tuple[str, dict[str, Any]]]:
        """(label, dotted overrides) for each table row, in table order."""
        if self.rows is not None:
            return [(row["label"], {k: v for k, v in row.items() if k not in RESERVED_ROW_KEYS}) for row in self.rows]
        if self.search is not None:
            return []  # search trials are sampled, not listed: see trial_cell
        keys = list(self.grid or {})
        grid = self.grid or {}
        combos = itertools.product(*(grid[k] for k in keys)) if keys else [()]
        return [(", ".join(f"{k}={v}" for k, v in zip(keys, c)), dict(zip(keys, c))) for c in combos]


@dataclass(frozen=True)
class Cell:
    """One training run of the sweep: a table row at one seed, fully resolved."""

    row: int
    label: str
    seed: int
    config: TrainConfig

    @property
    def id(self) -> str:
        """Stable hash of the resolved config: the same cell gets the same id on every machine."""
        return config_hash(self.config)


def config_hash(config: TrainConfig) -> str:
    """First 12 hex digits of the sha256 of the canonical JSON of a config."""
    blob = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# --- loading --------------------------------------------------------------------------------


def load_spec(path: str | Path) -> Spec:
    """Read, validate and dry-expand a spec file; any problem is a UserError with file:line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such spec file. Specs live under experiments/, e.g. experiments/activations.yaml.")
    return parse_spec(path.read_text(), path)


def parse_spec(text: str, path: Path) -> Spec:
    """Validate spec text (`path` names it in messages) and every cell of every profile."""
    try:
        raw = yaml.safe_load(text)
        tree = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a spec is a YAML mapping with name, base, rows or grid, and table.")
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as exc:
        raise UserError(_explain(path, tree, exc, lambda loc: [loc])) from None
    try:
        TrainConfig.model_validate(unflatten(spec.base))
    except (ValidationError, ValueError) as exc:
        if not isinstance(exc, ValidationError):
            raise UserError(f"{path}: base: {exc}") from None
        raise UserError(_explain(path, tree, exc, lambda loc: [("base", *loc)], context="base")) from None
    for profile in [None, *spec.profiles]:
        expand(spec, profile, path=path, tree=tree)
    return spec


def expand(spec: Spec, profile: str | None = None, *, path: Path | None = None, tree: Any = None) -> list[Cell]:
    """One resolved, validated Cell per (row, seed), rows in table order, seeds inner."""
    if profile is not None and profile not in spec.profiles:
        known = ", ".join(spec.profiles) or "none"
        raise UserError(f"spec '{spec.name}' has no profile '{profile}' (its profiles: {known}).")
    where = path or Path(f"<spec {spec.name}>")
    try:
        prof = unflatten(spec.profiles.get(profile, {})) if profile else {}
        rows = [(label, unflatten(over)) for label, over in spec.row_overrides()]
    except ValueError as exc:
        raise UserError(f"{where}: {exc}") from None
    if spec.search is not None:  # trials are sampled later; every edge of every range must validate now
        for over in spec.search.edge_overrides():
            trial_cell(spec, profile, over, where=where, tree=tree)
        return []
    cells = []
    for index, (label, over) in enumerate(rows):
        for seed in spec.seeds:
            resolved = merge(merge(merge(unflatten(spec.base), over), prof), {"seed": seed})
            try:
                config = TrainConfig.model_validate(resolved)
            except ValidationError as exc:

                def candidates(loc: tuple, i: int = index) -> list[tuple]:
                    return _cell_locations(spec, i, profile, loc)

                raise UserError(_explain(where, tree, exc, candidates, context=f"row '{label}'")) from None
            cells.append(Cell(row=index, label=label, seed=seed, config=config))
    return cells


def trial_cell(
    spec: Spec,
    profile: str | None,
    params: dict[str, Any],
    number: int = 0,
    *,
    where: Path | None = None,
    tree: Any = None,
) -> Cell:
    """The cell of one search trial: base + sampled dotted overrides + profile, validated like a row."""
    where = where or Path(f"<spec {spec.name}>")
    label = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    prof = unflatten(spec.profiles.get(profile, {})) if profile else {}
    try:
        resolved = merge(merge(merge(unflatten(spec.base), unflatten(params)), prof), {"seed": spec.seeds[0]})
        config = TrainConfig.model_validate(resolved)
    except ValidationError as exc:

        def candidates(loc: tuple) -> list[tuple]:
            dotted = ".".join(str(p) for p in loc)
            hits = [("search", "params", k) for k in params if dotted == k or dotted.startswith(k + ".")]
            return [*hits, ("base", *loc)]

        raise UserError(_explain(where, tree, exc, candidates, context=f"search trial {label}")) from None
    except ValueError as exc:
        raise UserError(f"{where}: search.params: {exc}") from None
    return Cell(row=number, label=label, seed=spec.seeds[0], config=config)


# --- error messages -------------------------------------------------------------------------


def _cell_locations(spec: Spec, row: int, profile: str | None, loc: tuple) -> list[tuple]:
    """Where in the YAML a cell field may have come from, most specific first."""
    dotted = ".".join(str(p) for p in loc)
    out: list[tuple] = []
    sources: list[tuple[tuple, dict[str, Any]]] = []
    if profile:
        sources.append((("profiles", profile), spec.profiles[profile]))
    if spec.rows is not None:
        sources.append((("rows", row), spec.rows[row]))
    else:
        sources.append((("grid",), spec.grid or {}))
    for prefix, block in sources:
        for key in sorted(block, key=len, reverse=True):
            if dotted == key or dotted.startswith(key + "."):
                rest = tuple(dotted[len(key) + 1 :].split(".")) if dotted != key else ()
                out.append((*prefix, key, *rest))
            elif key.startswith(dotted + "."):  # the error is on a block a dotted key sets inside
                out.append((*prefix, key))
    out.append(("base", *loc))
    return out


def _line_of(tree: Any, loc: tuple) -> int | None:
    """1-based YAML line of the deepest node along loc that exists."""
    node, line = tree, None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(part)), None)
            if node is None:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return line
    return node.start_mark.line + 1 if node is not None else line


def _suggest(err: Any, root: type) -> str:
    """'did you mean' text for unknown keys and names."""
    bad: Any
    if err["type"] == "extra_forbidden":
        bad, options = str(err["loc"][-1]), fields_at(root, err["loc"][:-1])
    else:
        ctx = err.get("ctx") or {}
        bad = ctx.get("tag", err.get("input"))
        raw = str(ctx.get("expected_tags") or ctx.get("expected") or "")
        options = [o.strip().strip("'") for o in raw.replace(" or ", ",").split(",") if o.strip()]
    if not options or not isinstance(bad, str):
        return ""
    close = difflib.get_close_matches(bad, options, n=3, cutoff=0.4)
    return f". Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _explain(path: Path, tree: Any, exc: ValidationError, candidates: Any, context: str = "") -> str:
    """One paragraph: every problem with file:line, the field path and what is allowed."""
    lines, tags = [], kind_tags() | SEARCH_TAGS
    root = TrainConfig if context else Spec
    for err in exc.errors():
        # Discriminated unions put the tag into error locations; the YAML has no such level.
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in tags))
        where = next((c for c in candidates(loc) if tree is not None and _line_of(tree, c)), candidates(loc)[0])
        line = _line_of(tree, where) if tree is not None else None
        field = ".".join(str(p) for p in where) or "(top level)"
        msg = err["msg"] + _suggest(err, root)
        lines.append(f"{path}{f':{line}' if line else ''}: {field}: {msg}")
    head = f"{path}: invalid spec" + (f" ({context})" if context else "")
    return head + ":\n  " + "\n  ".join(lines)
