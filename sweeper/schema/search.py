"""The `search:` section of a spec: sampler, typed ranges on dotted keys, budget, pruner, objective.

Pure schema (no torch, no optuna), so `sweeper validate` stays instant; sweeper.sweep turns it into an
Optuna study. Parameter names are the dotted config keys, end to end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, Union

from pydantic import Field, model_validator

from sweeper.catalogue import METRICS, PRUNERS, SAMPLERS
from sweeper.schema.choices import name_of, tagged_union
from sweeper.schema.config import Strict

# What a trial may return (a summary metric) and what a pruner may watch (an epoch metric, compared
# across trials at the same epoch), from the catalogue of metrics.
SUMMARY_METRICS = tuple(m.name for m in METRICS if m.objective and m.when == "summary")
EPOCH_METRICS = tuple(m.name for m in METRICS if m.objective and m.when == "epoch")


class FloatParam(Strict):
    """A float in [low, high], optionally on a log scale or in steps."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _valid_range(self) -> FloatParam:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("give either log or step, not both")
        return self

    def bounds(self) -> list[Any]:
        """The values a sample can take at the edges (what validation checks)."""
        return [self.low, self.high]


class IntParam(Strict):
    """An integer in [low, high] (both included), in steps or on a log scale."""

    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _valid_range(self) -> IntParam:
        if not self.low <= self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("a log-scale int range needs low >= 1 and step 1")
        return self

    def bounds(self) -> list[Any]:
        """Every value for small ranges (grids), else the edges."""
        values = list(range(self.low, self.high + 1, self.step))
        return values if len(values) <= 64 else [values[0], values[-1]]


class CategoricalParam(Strict):
    """One of a list of values: names, numbers, booleans, or lists of numbers (e.g. a network's widths)."""

    type: Literal["categorical"]
    choices: list[str | bool | int | float | list[int | float]] = Field(min_length=1)

    def bounds(self) -> list[Any]:
        """Every choice."""
        return list(self.choices)

    def encoded(self) -> list[Any]:
        """The choices as Optuna stores them: a list as its text ("[32, 64, 128]"), the rest as they are."""
        return [str(c) if isinstance(c, list) else c for c in self.choices]

    def decode(self, value: Any) -> Any:
        """A choice back from Optuna's (or MLflow's) text of it."""
        return next((c for c in self.choices if isinstance(c, list) and str(c) == value), value)


Param = Annotated[Union[FloatParam, IntParam, CategoricalParam], Field(discriminator="type")]


class NoPruner(Strict):
    """Every trial trains to the end."""

    name: Literal["none"] = "none"


class MedianPruner(Strict):
    """Stop a trial whose epoch metric is worse than the median of earlier trials at that epoch."""

    name: Literal["median"]
    n_startup_trials: int = Field(3, ge=0, description="trials that always finish first")
    n_warmup_steps: int = Field(1, ge=0, description="epochs before a trial may be pruned")


class SuccessiveHalvingPruner(Strict):
    """Asynchronous successive halving over epochs."""

    name: Literal["successive_halving"]
    min_resource: int = Field(1, ge=1, description="epochs every trial gets")
    reduction_factor: int = Field(3, ge=2)


class HyperbandPruner(Strict):
    """Hyperband: several successive-halving brackets over epochs."""

    name: Literal["hyperband"]
    min_resource: int = Field(1, ge=1)
    reduction_factor: int = Field(3, ge=2)


PRUNER_BLOCKS: dict[str, type[Strict]] = {
    "none": NoPruner,
    "median": MedianPruner,
    "successive_halving": SuccessiveHalvingPruner,
    "hyperband": HyperbandPruner,
}
if TYPE_CHECKING:  # what mypy can read; pydantic gets the catalogue's tagged union
    PrunerSpec: TypeAlias = Union[NoPruner, MedianPruner, SuccessiveHalvingPruner, HyperbandPruner]
else:
    PrunerSpec = tagged_union(PRUNERS, lambda name: PRUNER_BLOCKS[name], default="none")
# pydantic puts these union tags into error locations; the YAML has no such level.
SEARCH_TAGS = {"float", "int", "categorical", *PRUNERS.names}


class Objective(Strict):
    """What a trial returns (a summary metric), which way is better, and what the pruner watches."""

    metric: Literal[SUMMARY_METRICS] = "best_val_acc"  # type: ignore[valid-type]
    direction: Literal["maximize", "minimize"] = "maximize"
    report: Literal[EPOCH_METRICS] | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _report_agrees(self) -> Objective:
        report = self.epoch_metric()
        if ("loss" in report) != (self.direction == "minimize"):
            raise ValueError(
                f"the pruner watches '{report}', which cannot go the objective's way "
                f"({self.direction}); pick a report metric that does"
            )
        return self

    def epoch_metric(self) -> str:
        """The per-epoch metric fed to the pruner (val_acc when maximizing, val_loss when minimizing)."""
        return self.report or ("val_acc" if self.direction == "maximize" else "val_loss")


class Search(Strict):
    """An Optuna search in place of rows: each trial samples the params and trains one cell per seed."""

    sampler: name_of(SAMPLERS) = "tpe"  # type: ignore[valid-type]
    # Optuna's samplers seed numpy's RandomState, which takes 0 <= seed < 2**32
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="sampler seed (offset per worker when parallel)")
    params: dict[str, Param] = Field(min_length=1)
    n_trials: int | None = Field(None, ge=1, description="trials in the whole study, over all workers")
    timeout: float | None = Field(None, gt=0, description="seconds each worker keeps starting trials")
    pruner: PrunerSpec = NoPruner()
    # One objective, or several (a multi-objective study whose answer is its Pareto front).
    objective: Objective | list[Objective] = Objective()

    @model_validator(mode="after")
    def _consistent(self) -> Search:
        objectives = self.objectives()
        if not objectives or len({o.metric for o in objectives}) != len(objectives):
            raise ValueError("objective: give one objective, or a list of objectives on different metrics")
        if len(objectives) > 1 and self.pruner.name != "none":
            raise ValueError("Optuna prunes single-objective searches only: drop the pruner or keep one objective")
        if len(objectives) > 1 and self.sampler == "cmaes":
            raise ValueError("CMA-ES optimises one objective: use tpe, random or grid for several")
        kinds = {key: p.type for key, p in self.params.items()}
        if self.sampler == "grid":
            floats = [k for k, t in kinds.items() if t == "float"]
            if floats:
                raise ValueError(
                    f"the grid sampler needs int or categorical params; {', '.join(floats)} is a float range"
                )
        elif self.n_trials is None and self.timeout is None:
            raise ValueError("give a budget: n_trials, timeout (seconds) or both")
        if self.sampler == "cmaes":
            cats = [k for k, t in kinds.items() if t == "categorical"]
            if cats:
                raise ValueError(f"CMA-ES samples numbers only; {', '.join(cats)} is categorical (use tpe)")
        return self

    def grid_space(self) -> dict[str, list[Any]]:
        """Every value of every param (grid sampler only)."""
        return {
            k: p.encoded() if p.type == "categorical" else list(range(int(p.low), int(p.high) + 1, int(p.step or 1)))
            for k, p in self.params.items()
        }

    def objectives(self) -> list[Objective]:
        """The objectives, in order (one value per objective in each trial)."""
        return list(self.objective) if isinstance(self.objective, list) else [self.objective]

    def primary(self) -> Objective:
        """The first objective: what the pruner watches and what orders the table."""
        return self.objectives()[0]

    def metrics(self) -> list[str]:
        """The objectives' metric names, in order."""
        return [o.metric for o in self.objectives()]

    def decoded(self, params: dict[str, Any]) -> dict[str, Any]:
        """Sampled params as the config takes them (a list choice back from Optuna's text)."""
        return {k: _decode(self.params.get(k), v) for k, v in params.items()}

    def budget(self) -> int | None:
        """Trials in the study: n_trials, else the grid's size (grid sampler), else unbounded."""
        if self.n_trials is not None or self.sampler != "grid":
            return self.n_trials
        size = 1
        for values in self.grid_space().values():
            size *= len(values)
        return size

    def edge_overrides(self) -> list[dict[str, Any]]:
        """Dotted overrides at every param's edges: if these validate, every sample does."""
        return [{key: value} for key, param in self.params.items() for value in param.bounds()]


def _decode(param: Any, value: Any) -> Any:
    """One sampled value as the config takes it."""
    return param.decode(value) if isinstance(param, CategoricalParam) else value
