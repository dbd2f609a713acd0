"""The YAML spec of one ablation table: load strictly, fail fast with file:line, expand to cells.

Imports no torch, so `sweeper validate` is instant.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from sweeper.errors import UserError
from sweeper.schema import usercode
from sweeper.schema.checks import inert_settings, table_problems
from sweeper.schema.config import Strict, TrainConfig
from sweeper.schema.dotted import merge, unflatten
from sweeper.schema.explain import CONTEXT, cell_locations, explain, line_of, paragraph, problem
from sweeper.schema.ids import config_hash
from sweeper.schema.launcher import LauncherSpec
from sweeper.schema.search import Search
from sweeper.schema.table import TableSpec
from sweeper.schema.yamlio import load_yaml, read_spec_text

# Row keys that are not config overrides: they never change a cell's config, so never its id.
RESERVED_ROW_KEYS = ("label", "reported")
# A profile's keys that are not config overrides: they never reach a cell's config, so never its id.
PROFILE_KEYS = ("seeds", "smoke")


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
    launcher: LauncherSpec | None = None  # which launcher runs the workers, and its settings

    @field_validator("rows")
    @classmethod
    def _rows_have_labels(cls, rows: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        labels = [row.get("label") for row in rows or []]
        if rows is not None and not rows:
            raise ValueError("`rows` is empty: a table needs at least one row (`- {label: ...}`)")
        if any(not isinstance(label, str) or not label for label in labels):
            raise ValueError("every row needs a non-empty `label`")
        dupes = sorted({str(label) for label in labels if labels.count(label) > 1})
        if dupes:
            raise ValueError(f"row labels must be unique; repeated: {', '.join(dupes)}")
        return rows

    @field_validator("grid")
    @classmethod
    def _grid_has_cells(cls, grid: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        if grid is not None and not grid:
            raise ValueError("`grid` is empty: give at least one dotted key with a list of values")
        empty = [key for key, values in (grid or {}).items() if not values]
        if empty:
            raise ValueError(f"grid key(s) {', '.join(empty)} list no values, so the grid has no cells")
        return grid

    @field_validator("profiles")
    @classmethod
    def _profile_seeds(cls, profiles: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, profile in profiles.items():
            seeds = profile.get("seeds", [0])
            ok = isinstance(seeds, list) and seeds and all(type(s) is int and s >= 0 for s in seeds)
            if not ok or len(set(seeds)) != len(seeds):
                raise ValueError(f"profiles.{name}.seeds must be a non-empty list of unique integers >= 0")
            if not isinstance(profile.get("smoke", False), bool):
                raise ValueError(f"profiles.{name}.smoke must be true or false")
        return profiles

    def seeds_for(self, profile: str | None) -> list[int]:
        """The seeds of a profile: its own `seeds:` if it sets them, else the spec's."""
        return list(self.profiles.get(profile or "", {}).get("seeds", self.seeds))

    def profile_overrides(self, profile: str | None) -> dict[str, Any]:
        """A profile's config overrides, nested (its `seeds` and `smoke` are not part of the config)."""
        return unflatten({k: v for k, v in self.profiles.get(profile or "", {}).items() if k not in PROFILE_KEYS})

    def is_smoke(self, profile: str | None) -> bool:
        """Whether a profile is a smoke test (`smoke: true`): it checks the sweep runs, not the report's numbers."""
        return bool(self.profiles.get(profile or "", {}).get("smoke", False))

    @model_validator(mode="after")
    def _one_axis(self) -> Spec:
        if [self.rows, self.grid, self.search].count(None) != 2:
            raise ValueError(
                "give exactly one of `rows` (one per table row), `grid` (a cartesian product) "
                "or `search` (an Optuna search)"
            )
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

    def base_config(self) -> TrainConfig:
        """The base block as a config at the first seed (what rows are told apart from)."""
        return TrainConfig.model_validate(merge(unflatten(self.base), {"seed": self.seeds[0]}))

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

    @property
    def name(self) -> str:
        """How people see the cell: its row label and seed (the run's name, progress lines, status)."""
        return f"{self.label} seed={self.seed}"


# --- loading --------------------------------------------------------------------------------

# Stand-ins for top-level fields that failed to validate, so that the rest of the spec (base,
# rows, profiles) is still checked and every mistake is reported in one pass.
_STAND_INS: dict[str, Any] = {
    "name": "spec",
    "title": "",
    "source": "",
    "seeds": [0],
    "profiles": {},
    "table": {"metrics": [{"key": "test_acc", "header": "-"}]},
}


def load_spec(path: str | Path) -> Spec:
    """Read, validate and dry-expand a spec file; any problem is a UserError with file:line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such spec file. Specs live under experiments/, e.g. experiments/activations.yaml.")
    return parse_spec(read_spec_text(path), path)


def parse_spec(text: str, path: Path, strict: bool = True) -> Spec:
    """Validate spec text (`path` names it in messages) and every cell of every profile; every problem
    is reported at once. `strict` adds the checks an older logged spec may fail (duplicate keys,
    settings with no effect, table keys nothing logs): tables re-read logged specs without them."""
    raw, tree, problems = load_yaml(text, path)
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a spec is a YAML mapping with name, base, rows or grid, and table.")
    problems = problems if strict else []
    spec, replaced = _validate_spec(raw, path, tree, problems)
    base_problems: list[str] = []
    base = raw.get("base")
    if isinstance(base, dict):
        try:
            TrainConfig.model_validate(unflatten(base))
        except ValidationError as exc:
            base_problems = explain(path, tree, exc, lambda loc: [("base", *loc)], TrainConfig)
        except ValueError as exc:
            base_problems = [f"{path}:{line_of(tree, ('base',))}: base: {exc}"]
    problems += base_problems
    if spec is not None and not replaced & {"base", "rows", "grid", "search"}:
        configs: list[TrainConfig] = []
        for profile in [None, *spec.profiles]:
            cells, lines = _expand(spec, profile, path, tree, strict)
            problems += [line for line in lines if line.partition(CONTEXT)[0] not in base_problems]
            configs += [c.config for c in cells] if profile is None else []
        if strict and "table" not in replaced:
            columns, metrics = [c.key for c in spec.table.columns], [m.key for m in spec.table.metrics]
            for loc, msg in table_problems(columns, metrics, configs):
                problems.append(problem(path, tree, [loc], msg))
    if problems:
        raise UserError(paragraph(path, problems))
    assert spec is not None
    return spec


def _validate_spec(raw: dict[str, Any], path: Path, tree: Any, problems: list[str]) -> tuple[Spec | None, set[str]]:
    """The Spec, else one with the failing parts left out or stood in for (and the fields stood in for),
    so that the rest is still checked."""
    try:
        return Spec.model_validate(raw), set()
    except ValidationError as exc:
        problems += explain(path, tree, exc, lambda loc: [loc], Spec)
        errors = exc.errors()
    if any(not e["loc"] for e in errors):  # a whole-spec rule failed: nothing sound to check the cells against
        return None, set()
    patched, replaced = dict(raw), set()
    for top in {str(e["loc"][0]) for e in errors}:
        bad = {e["loc"][1] for e in errors if e["loc"][0] == top and len(e["loc"]) > 1}
        if isinstance(raw[top], dict) and bad:  # e.g. an unknown key inside `table`: check the rest
            patched[top] = {k: v for k, v in raw[top].items() if k not in bad}
            continue
        patched.pop(top)
        if top in _STAND_INS:
            patched[top] = _STAND_INS[top]
        replaced.add(top)
    try:
        return Spec.model_validate(patched), replaced
    except ValidationError:
        replaced |= {str(e["loc"][0]) for e in errors}
    for top in replaced:
        patched.pop(top, None)
        if top in _STAND_INS:
            patched[top] = _STAND_INS[top]
    if replaced & {"rows", "grid", "search", "base"}:
        patched = {k: v for k, v in patched.items() if k not in ("rows", "grid", "search")}
        patched |= {"rows": [{"label": "-"}], "base": {}}
    try:
        return Spec.model_validate(patched), replaced
    except ValidationError:
        return None, replaced


def expand(spec: Spec, profile: str | None = None, *, path: Path | None = None, tree: Any = None) -> list[Cell]:
    """One resolved, validated Cell per (row, seed), rows in table order, seeds inner."""
    where = path or Path(f"<spec {spec.name}>")
    cells, problems = _expand(spec, profile, where, tree)
    if problems:
        raise UserError(paragraph(where, problems))
    return cells


def _expand(
    spec: Spec, profile: str | None, where: Path, tree: Any, strict: bool = False
) -> tuple[list[Cell], list[str]]:
    """(cells, problems) of one profile; a search's cells are those at the edges of its ranges."""
    if profile is not None and profile not in spec.profiles:
        known = ", ".join(spec.profiles) or "none"
        raise UserError(f"spec '{spec.name}' has no profile '{profile}' (its profiles: {known}).")
    try:
        prof = spec.profile_overrides(profile)
        rows = [(label, unflatten(over)) for label, over in spec.row_overrides()]
    except ValueError as exc:
        return [], [f"{where}: {exc}"]
    if spec.search is not None:  # trials are sampled later; every edge of every range must validate now
        results = [_trial(spec, profile, over, 0, where, tree, strict) for over in spec.search.edge_overrides()]
        return [c for c, _ in results if c], [line for _, lines in results for line in lines]
    cells, problems = [], []
    for index, (label, over) in enumerate(rows):
        context = f"row '{label}'" + (f", profile '{profile}'" if profile else "")

        def candidates(loc: tuple, i: int = index) -> list[tuple]:
            return cell_locations(spec, i, profile, loc)

        own = ("rows", index) if spec.rows is not None else ("grid",)
        for seed in spec.seeds_for(profile):
            resolved = merge(merge(merge(unflatten(spec.base), over), prof), {"seed": seed})
            try:
                config = TrainConfig.model_validate(resolved)
            except ValidationError as exc:
                problems += explain(where, tree, exc, candidates, TrainConfig, context, own)
                break  # the other seeds fail alike
            if strict:
                for loc, msg in semantic_problems(config, where):
                    problems.append(problem(where, tree, candidates(loc), msg, context, own))
            cells.append(Cell(row=index, label=label, seed=seed, config=config))
    return cells, problems


def semantic_problems(config: TrainConfig, where: Path) -> list[tuple[tuple, str]]:
    """Problems of a config that validated: settings with no effect, and the user's code it names (loaded
    from beside the spec file, so loading such a spec runs that code)."""
    found = [(tuple(key.split(".")), msg) for key, msg in inert_settings(config)]
    return found + usercode.check(config, where.parent)


def trial_cell(
    spec: Spec,
    profile: str | None,
    params: dict[str, Any],
    number: int = 0,
    *,
    where: Path | None = None,
    tree: Any = None,
    seed: int | None = None,
) -> Cell:
    """The cell of one search trial: base + sampled dotted overrides + profile, validated like a row; at the
    profile's first seed unless `seed` is given."""
    where = where or Path(f"<spec {spec.name}>")
    cell, problems = _trial(spec, profile, params, number, where, tree, seed=seed)
    if cell is None:
        raise UserError(paragraph(where, problems))
    return cell


def trial_group(spec: Spec, profile: str | None, params: dict[str, Any], number: int = 0) -> list[Cell]:
    """A search trial's cells, one per seed of the profile (the first is trial_cell's: its id never moves)."""
    first = trial_cell(spec, profile, params, number)
    seeds = spec.seeds_for(profile)[1:]
    return [first, *(trial_cell(spec, profile, params, number, seed=s) for s in seeds)]


def _trial(
    spec: Spec,
    profile: str | None,
    params: dict[str, Any],
    number: int,
    where: Path,
    tree: Any,
    strict: bool = False,
    seed: int | None = None,
) -> tuple[Cell | None, list[str]]:
    """(the trial's cell or None, problems)."""
    label = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    seed = spec.seeds_for(profile)[0] if seed is None else seed

    def candidates(loc: tuple) -> list[tuple]:
        dotted = ".".join(str(p) for p in loc)
        hits = [("search", "params", k) for k in params if dotted == k or dotted.startswith(k + ".")]
        return [*hits, *(cell_locations(spec, 0, profile, loc)[:-1] if profile else []), ("base", *loc)]

    try:
        resolved = merge(
            merge(merge(unflatten(spec.base), unflatten(params)), spec.profile_overrides(profile)), {"seed": seed}
        )
        config = TrainConfig.model_validate(resolved)
    except ValidationError as exc:
        return None, explain(where, tree, exc, candidates, TrainConfig, f"search trial {label}")
    except ValueError as exc:
        return None, [f"{where}: search.params: {exc}"]
    problems = []
    if strict:
        for loc, msg in semantic_problems(config, where):
            problems.append(problem(where, tree, candidates(loc), msg, f"search trial {label}"))
    return Cell(row=number, label=label, seed=seed, config=config), problems
