"""An epoch's augmentation parameters as one tensor: drawn on the CPU, moved in one copy, sliced per batch.

`AugmentPlan` packs named per-sample rows (int or float32, one value or a few per sample) into a
single int32 [rows, n] buffer, floats by their bits, so `.to(device)` is one transfer and every field
is a view. Where an op runs on a group of samples at a time (AutoAugment's families), the grouping
is computed here on the CPU for each planned batch: an order row (batch-local sample indices sorted
by group), its inverse and host-side offsets, so a step slices by Python ints and never asks the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch


@dataclass(frozen=True)
class Field:
    """Where a named row sits in the buffer: first row, how many values per sample, whether float32."""

    row: int
    width: int
    is_float: bool


@dataclass(frozen=True)
class PlanSlice:
    """The parameters of some samples of a plan, on the plan's device; `bounds` when it is one planned batch."""

    buffer: torch.Tensor
    fields: dict[str, Field]
    stages: tuple[str, ...] = ()
    bounds: list[list[int]] | None = None

    def __getitem__(self, name: str) -> torch.Tensor:
        """A field as [b] (one value per sample) or [b, width], int32 or float32; a view of the buffer."""
        f = self.fields[name]
        rows = self.buffer[f.row] if f.width == 1 else self.buffer[f.row : f.row + f.width].t()
        return rows.view(torch.float32) if f.is_float else rows

    def take(self, index: torch.Tensor) -> PlanSlice:
        """The samples at `index` (int32 or int64, on the plan's device), all fields in one gather."""
        return PlanSlice(self.buffer.index_select(1, index), self.fields)

    def part(self, start: int, stop: int) -> PlanSlice:
        """Samples start:stop of this slice, a view."""
        return PlanSlice(self.buffer[:, start:stop], self.fields)

    def groups(self, stage: int) -> list[tuple[int, int, int]]:
        """(group, start, stop) of each non-empty group of a stage, in the stage's order; planned batches only."""
        assert self.bounds is not None, "only a planned batch is grouped"
        bounds = self.bounds[stage]
        return [(g, a, b) for g, (a, b) in enumerate(zip(bounds, bounds[1:])) if b > a]


@dataclass(frozen=True)
class AugmentPlan:
    """One epoch's per-sample augmentation parameters for a preset, for samples 0..n-1 in batches of `batch_size`.

    `stages` name the int rows that group each planned batch, one stage after another: row
    `order<s>` sorts stage s - 1's order (the samples, for s = 0) by stage s's group, and `unsort`
    maps the last order back to the samples. `bounds[k][s]` are batch k's group bounds in stage s.
    """

    preset: str
    n: int
    size: tuple[int, int]
    batch_size: int
    buffer: torch.Tensor
    fields: dict[str, Field]
    stages: tuple[str, ...] = ()
    bounds: list[list[list[int]]] = field(default_factory=list)

    @property
    def device(self) -> torch.device:
        """Where the parameters are."""
        return self.buffer.device

    def to(self, device: torch.device | str) -> AugmentPlan:
        """The plan on another device, in one copy."""
        return replace(self, buffer=self.buffer.to(device))

    def slice(self, start: int, stop: int) -> PlanSlice:
        """Samples start:stop, with their grouping when that is exactly one planned batch."""
        if not 0 <= start <= stop <= self.n:
            raise ValueError(f"samples {start}:{stop} are outside this plan's {self.n}")
        k, planned = divmod(start, self.batch_size)
        one_batch = bool(self.stages) and planned == 0 and stop == min(start + self.batch_size, self.n)
        return PlanSlice(self.buffer[:, start:stop], self.fields, self.stages, self.bounds[k] if one_batch else None)


def pack(
    preset: str,
    n: int,
    size: tuple[int, int],
    rows: dict[str, torch.Tensor],
    batch_size: int | None = None,
    stages: tuple[str, ...] = (),
    groups: int = 0,
) -> AugmentPlan:
    """A plan for n images of `size` from CPU rows ([n] or [n, width] each), grouped by `stages` (values 0..groups-1)."""
    batch_size = batch_size or max(n, 1)
    rows = dict(rows)
    bounds: list[list[list[int]]] = []
    if stages:
        orders, rows["unsort"], bounds = _group(rows, stages, groups, batch_size)
        rows |= {f"order{s}": order for s, order in enumerate(orders)}
    fields, parts, at = {}, [], 0
    for name, values in rows.items():
        values = values.reshape(n, math.prod(values.shape[1:]))
        is_float = values.is_floating_point()
        parts.append((values.float().view(torch.int32) if is_float else values.to(torch.int32)).t())
        fields[name] = Field(at, values.shape[1], is_float)
        at += values.shape[1]
    buffer = torch.cat(parts).contiguous() if parts else torch.zeros(0, n, dtype=torch.int32)
    return AugmentPlan(preset, n, size, batch_size, buffer, fields, stages, bounds)


def _group(
    rows: dict[str, torch.Tensor], stages: tuple[str, ...], groups: int, batch_size: int
) -> tuple[list[torch.Tensor], torch.Tensor, list[list[list[int]]]]:
    """Each stage's batch-local order, the final unsort, and per batch each stage's cumulative group sizes."""
    n = len(rows[stages[0]])
    batch = torch.arange(n) // batch_size
    start = batch * batch_size
    sample = torch.arange(n)  # the sample at each position, as the stages reorder each batch
    orders, sizes = [], []
    for stage in stages:
        key = batch * groups + rows[stage][sample].long()  # batch first: the order stays batch by batch
        order = torch.argsort(key, stable=True)
        orders.append(order - start)
        sample = sample[order]
        batches = -(-n // batch_size)
        sizes.append(torch.bincount(key, minlength=batches * groups).view(batches, groups).cumsum(1))
    unsort = torch.empty(n, dtype=torch.long)
    unsort[sample] = torch.arange(n) - start
    zero = torch.zeros(len(sizes[0]), 1, dtype=torch.long)
    bounds = torch.stack([torch.cat([zero, size], dim=1) for size in sizes], dim=1)  # [batches, stages, groups + 1]
    return orders, unsort, bounds.tolist()
