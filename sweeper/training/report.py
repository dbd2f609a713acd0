"""What `sweeper validate` and `sweeper list` say about specs: each row's changes from base with its
parameter count, and each profile's cost; the commands only print these lines."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sweeper.errors import UserError
from sweeper.schema.checks import differences
from sweeper.schema.config import TrainConfig
from sweeper.schema.spec import Spec, expand, load_spec
from sweeper.training import memory
from sweeper.training.cost import (
    GPU_KINDS,
    ModelCost,
    SweepCost,
    host_cpu_kind,
    model_cost,
    row_configs,
    row_models,
    sweep_cost,
)


def validation_lines(path: Path, spec: Spec) -> list[str]:
    """A valid spec as `validate` prints it: its shape, the base config and each row's changes from it;
    a network that fails on one image (meta device), or returns no 10 logits, is a UserError naming the spec."""
    with _naming(path):
        return _validation_lines(path, spec)


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Prefix a UserError raised by the cost model (it runs the user's network) with the spec's path."""
    try:
        yield
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def _validation_lines(path: Path, spec: Spec) -> list[str]:
    profiles = ", ".join(spec.profiles) or "none"
    if spec.search is not None:
        s = spec.search
        budget = f"{s.budget() or 'unbounded'} trials" + (f", {s.timeout:g} s per worker" if s.timeout else "")
        row_models(spec)  # each network at the space's edges, run once on the meta device
        return [
            f"ok {path}: {spec.name}, {s.sampler} search over {', '.join(s.params)}: {budget}, pruner "
            f"{s.pruner.name}, {', '.join(f'{o.direction} {o.metric}' for o in s.objectives())}; profiles: {profiles}"
        ]
    cells, base = expand(spec), spec.base_config()
    rows = len(cells) // len(spec.seeds)
    lines = [
        f"ok {path}: {spec.name}, {len(cells)} cells ({rows} rows x {len(spec.seeds)} seeds), profiles: {profiles}",
        f"  base: {base.model.name}, {base.activation}, {base.optimizer.name} lr={base.optimizer.lr:g}, {base.epochs} epochs",
    ]
    for label, _ in spec.row_overrides():
        cell = next(c for c in cells if c.label == label)
        changed = ", ".join(f"{k}={v}" for k, v in differences(base, cell.config).items()) or "as base"
        lines.append(f"  {label}: {changed}{_peak(cell.config)}, {model_cost(cell.config).params:,} params")
    return lines


@dataclass(frozen=True)
class SpecSummary:
    """One spec as `sweeper list` shows it: its networks and the cost of each profile."""

    path: Path
    spec: Spec
    models: tuple[ModelCost, ...]  # the distinct networks, in row order
    costs: tuple[SweepCost, ...]  # the spec's own settings first, then each profile


def summarize(path: str | Path) -> SpecSummary:
    """Load a spec and cost every profile of it."""
    spec = load_spec(path)
    with _naming(Path(path)):
        models = tuple(dict.fromkeys(cost for _, cost in row_models(spec)))
        costs = tuple(sweep_cost(spec, profile) for profile in [None, *spec.profiles])
    return SpecSummary(Path(path), spec, models, costs)


def survey(directory: str | Path) -> list[tuple[Path, SpecSummary | UserError]]:
    """Every spec file in a folder, summarised, or the error that stops it from loading."""
    folder = Path(directory)
    paths = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []
    if not paths:
        what = "holds no *.yaml spec files" if folder.is_dir() else "is not a folder"
        raise UserError(f"{folder} {what}; `sweeper list` reads a folder of specs such as experiments/.")
    out: list[tuple[Path, SpecSummary | UserError]] = []
    for path in paths:
        try:
            out.append((path, summarize(path)))
        except UserError as exc:
            out.append((path, exc))
    return out


def describe(summary: SpecSummary, gpu_tflops: float | None = None, cpu_gflops: float | None = None) -> list[str]:
    """The lines `sweeper list` prints for one spec."""
    spec, seeds = summary.spec, summary.spec.seeds
    if spec.search is not None:
        trials = spec.search.budget() or "time-bounded"
        shape = f"{spec.search.sampler} search over {', '.join(spec.search.params)}, {trials} trials"
    else:
        rows = len(spec.row_overrides())
        shape = f"{_plural(rows, 'row')} x {_plural(len(seeds), 'seed')} {seeds}"
    nets = "; ".join(f"{m.name} {m.params:,} params {m.flops / 1e9:.3g} GFLOPs/image" for m in summary.models)
    lines = [f"{spec.name} ({summary.path}): {shape}", f"  models: {nets}"]
    lines += [f"  {c.profile}: {cost_text(c, gpu_tflops, cpu_gflops)}" for c in summary.costs]
    lines.append(f"  peak GPU memory (estimated, per row):{_peaks(summary)}")
    return lines


def cost_text(c: SweepCost, gpu_tflops: float | None = None, cpu_gflops: float | None = None) -> str:
    """One profile's cost as `sweeper list` prints it: cells, epochs, images, FLOPs, time per GPU kind and here."""
    kind = host_cpu_kind()
    cpu = cpu_gflops or kind.gflops
    epochs = "/".join(str(e) for e in c.epochs)
    return (
        f"{_plural(c.cells, 'cell')} x {epochs} epoch{'s' * (c.epochs != (1,))}, "
        f"{_count(c.train_images)} training images, {'at most ' if c.bound else ''}{c.flops / 1e15:.3g} PFLOP"
        f" -> {_gpu_estimates(c, gpu_tflops)},"
        f" CPU {_duration(c.cpu_hours(cpu, kind.cell_seconds))} at {cpu:g} GFLOP/s ({kind.name})"
    )


def full_cost(spec: Spec) -> str:
    """What the spec's own settings (its full profile) cost, as `sweeper list` says it."""
    return cost_text(sweep_cost(spec, None))


def _gpu_estimates(cost: SweepCost, tflops: float | None) -> str:
    """'GPU T4 2.1 h, V100 55 min, ...' at each kind's assumed rate, or one time at a measured `tflops`."""
    if tflops:
        return f"GPU {_duration(cost.gpu_hours(tflops))} at {tflops:g} TFLOP/s"
    return "GPU " + ", ".join(f"{k.name} {_duration(cost.gpu_hours(k.tflops))}" for k in GPU_KINDS.values())


def _peak(config: TrainConfig) -> str:
    """', ~2.1 GiB peak GPU memory at batch 256, bf16' (the cell's estimated training memory), or ''."""
    est = memory.estimate(config)
    if est is None:
        return ""
    half = "fp16/bf16" if config.precision == "auto" else config.precision
    return f", ~{est.gib()} peak GPU memory at batch {config.data.batch_size}, {half}"


def _peaks(summary: SpecSummary) -> str:
    """Each row's estimated peak at the spec's own settings, largest first where there are many."""
    rows = [(label, memory.estimate(config)) for label, config in row_configs(summary.spec)]
    known = sorted(((e.total, label, e.gib()) for label, e in rows if e is not None), reverse=True)
    shown = "; ".join(f"{label} {gib}" for _, label, gib in known[:4])
    more = f"; {len(known) - 4} more below" if len(known) > 4 else ""
    return f" {shown}{more}" if known else " unknown (the network does not run on the meta device)"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _count(n: int) -> str:
    return f"{n / 1e6:.3g}M" if n >= 1e6 else f"{n / 1e3:.3g}k" if n >= 1e3 else str(n)


def _duration(hours: float) -> str:
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.0f} min"
    return f"{hours:.3g} h" if hours < 48 else f"{hours / 24:.3g} days"
