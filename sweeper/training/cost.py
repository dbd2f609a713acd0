"""What a sweep costs before it runs: exact parameter counts, FLOPs per image, device-hours.

Models are built on the meta device (shapes only, no memory, no init time) and one 32x32 image is
pushed through torch's FlopCounterMode, which counts convolutions and matmuls (2 FLOPs per
multiply-add); elementwise ops, BatchNorm and the data path are left out. A training image costs
3x its forward pass (forward, then backward for inputs and weights). Hours are those FLOPs at an
assumed sustained rate, plus (on CPUs) the batched augmentation and a fixed cost per cell: estimates
to plan with, not predictions to the minute.

What `sweeper list` and `sweeper validate` print from these numbers is training/report.py's.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from sweeper.catalogue import AUGMENTS
from sweeper.errors import UserError
from sweeper.models import count_params
from sweeper.schema import plugins
from sweeper.schema.config import CIFAR_TRAIN_IMAGES, TrainConfig
from sweeper.schema.spec import Spec, expand, trial_cell
from sweeper.training.precision import cpu_has_bf16
from sweeper.training.splits import CLASSES
from sweeper.training.train import build_model
from sweeper.vocab import profile_tag

CIFAR_TEST_IMAGES = 10_000
# Ordinary eager PyTorch CIFAR training in bf16 on one A100/H100-class GPU sustains roughly
# 20-40 TFLOP/s on these networks (ResNet-18 at ~6k images/s); DenseNets run below it.
GPU_TFLOPS = 25.0
NUM_CLASSES = len(CLASSES)  # what build_model passes a network as num_classes
# Measured on the 2-core AVX-512 CPU this was written on, idle, bf16 autocast, channels_last:
# ~580 GFLOP/s for the Table 2 ResNet (313 images/s), ~530 for fast_net, ~190 for the small
# baseline CNN (benchmarks/throughput.py); DenseNets, memory-bound, run below it. A middle value:
CPU_GFLOPS = 300.0
# Fixed cost of a cell besides its FLOPs: building the network, the MLflow run, its figures and
# the exported model. Measured here, idle: 5-10 s a cell (12 tiny ResNet/DenseNet cells in 128 s).
GPU_CELL_SECONDS = 10.0
CPU_CELL_SECONDS = 10.0


@dataclass(frozen=True)
class GpuKind:
    """What one GPU model sustains on these small networks in eager PyTorch with mixed precision (fp16 on
    T4/V100, bf16 from Ampere): a fraction of the datasheet's tensor-core peak, as ordinary loops reach."""

    name: str
    tflops: float
    peak: float  # the datasheet's dense fp16/bf16 tensor-core peak, for the reader


# Assumed, not measured by us (no GPU here): about a tenth to a fifth of the peak, as published eager CIFAR
# trainings reach (ResNet-18 at ~6k images/s on an A100). `sweeper list --gpu-tflops` takes a measured rate.
GPU_KINDS = {
    "T4": GpuKind("T4", 8.0, 65.0),
    "V100": GpuKind("V100", 18.0, 125.0),
    "L4": GpuKind("L4", 15.0, 121.0),
    "A100": GpuKind("A100", GPU_TFLOPS, 312.0),
    "H100": GpuKind("H100", 45.0, 989.0),
}
# Small cells are launch-bound, not FLOP-bound: each op of a step is a kernel that Python queues in
# microseconds, whatever the GPU. A step costs at least its ops times this (forward, two backward
# kernels per layer, the optimizer's fused kernels and the batched augmentation).
LAUNCH_SECONDS = 10e-6
STEP_EXTRA_KERNELS = 40  # augmentation, loss, optimizer, EMA: per step, besides the layers


@dataclass(frozen=True)
class CellTerms:
    """One cell's GPU work: FLOPs and the launch-bound floor of its training steps and its evaluation."""

    train_flops: float
    train_floor: float  # seconds: steps x (kernels a step queues) x LAUNCH_SECONDS
    eval_flops: float
    eval_floor: float

    def seconds(self, tflops: float) -> float:
        """Seconds on a GPU at `tflops`: each part at its FLOP rate, or its launch floor where that is longer."""
        rate = tflops * 1e12
        return max(self.train_flops / rate, self.train_floor) + max(self.eval_flops / rate, self.eval_floor)


@dataclass(frozen=True)
class CpuKind:
    """What a 2-core CPU of one kind sustains, measured by benchmarks/demo_budget.py (idle machine).

    `gflops` is the rate on small networks such as the demo's (larger ones run faster: a safe side),
    `cell_seconds` a cell's fixed work, `setup_seconds` a `sweeper run` process's start and store.
    """

    name: str
    gflops: float
    cell_seconds: float
    setup_seconds: float


# The two kinds our machines come as. fp32: `benchmarks/demo_budget.py` on a 2-core AMD EPYC (AVX2,
# no AVX-512), idle, 2026-12-02: 27.2 s to start `sweeper run` on a new store, 3.8 s of fixed work
# a cell, 43 GFLOP/s end to end (evaluation, figures, export) on the demo's quarter-width ResNet;
# `make demo` took 209 s there. bf16: the AVX-512 BF16 host's small-network rate above (190), with
# the fp32 host's fixed costs (not measured there; it beats them, so the estimate errs long).
CPU_KINDS = {
    "fp32": CpuKind("2-core AVX2, fp32", gflops=43.0, cell_seconds=3.8, setup_seconds=27.2),
    "bf16": CpuKind("2-core AVX-512 BF16, bf16 autocast", gflops=190.0, cell_seconds=3.8, setup_seconds=27.2),
}
# What `make demo` spends besides `sweeper run`: `sweeper data prepare` from the lossless archive
# (11.2 s) and `sweeper table` (6.1 s), measured with the rates above; and the budget it must fit.
DEMO_EXTRA_SECONDS = 17.3
DEMO_BUDGET_SECONDS = 300.0


def host_cpu_kind() -> CpuKind:
    """This machine's kind: bf16 where the CPU computes it natively, else fp32."""
    return CPU_KINDS["bf16" if cpu_has_bf16() else "fp32"]


def run_seconds(cost: SweepCost, kind: CpuKind) -> float:
    """Wall seconds of `sweeper run` for a sweep on one idle CPU of `kind`: setup, FLOPs, per-cell work."""
    return kind.setup_seconds + cost.cpu_hours(kind.gflops, kind.cell_seconds) * 3600


@dataclass(frozen=True)
class ModelCost:
    """A network's size and the forward FLOPs of one 32x32 image."""

    name: str
    params: int
    flops: int
    layers: int = 0  # modules without children: about one kernel each in a forward pass


@dataclass(frozen=True)
class SweepCost:
    """The cost of one profile of a spec: every cell, every epoch, evaluation and augmentation included."""

    spec: str
    profile: str
    cells: int
    train_images: int  # images trained on, summed over cells and epochs
    flops: float
    augment_seconds: float = 0.0  # CPU time of the batched augmentation (on a GPU it is device work: a rounding error)
    epochs: tuple[int, ...] = ()  # the distinct epoch counts of its cells
    bound: bool = False  # an upper bound (a search before pruning), not an estimate of all cells
    terms: tuple[CellTerms, ...] = ()  # per cell, for the launch-bound floor (empty: FLOPs alone)

    def gpu_hours(self, tflops: float = GPU_TFLOPS, cell_seconds: float = GPU_CELL_SECONDS) -> float:
        """Hours on one GPU at `tflops` sustained (or each cell's launch-bound floor where longer), plus per-cell
        work; augmentation runs batched on the GPU beside the network (a few hundred elementwise operations per
        pixel against millions of FLOPs per image), not serially on the host as it once did."""
        work = sum(t.seconds(tflops) for t in self.terms) if self.terms else self.flops / (tflops * 1e12)
        return (work + self.cells * cell_seconds) / 3600

    def cpu_hours(self, gflops: float = CPU_GFLOPS, cell_seconds: float = CPU_CELL_SECONDS) -> float:
        """Hours on this machine's CPU at `gflops` sustained, plus the batched augmentation and per-cell work."""
        return (self.flops / (gflops * 1e9) + self.augment_seconds + self.cells * cell_seconds) / 3600


def model_cost(config: TrainConfig) -> ModelCost:
    """Parameter count and forward FLOPs per image of a config's network (cached per network)."""
    return _model_cost(config.model.model_dump_json(), config.activation)


@functools.cache
def _model_cost(model_json: str, activation: str) -> ModelCost:

    # the network depends on the model block and the activation only; the rest is a placeholder
    config = TrainConfig.model_validate({"model": json.loads(model_json), "activation": activation, "epochs": 1})
    what = f"model {config.model.name} with activation {activation}"
    try:
        with torch.device("meta"):
            model = build_model(config)
        model.eval()  # BatchNorm1d refuses a training batch of one image; the FLOPs are the same
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            out = model(torch.empty(1, 3, 32, 32, device="meta"))
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything: a spec error that says where
        raise UserError(
            f"{what}: building it and passing one 3x32x32 image through it (shapes only, on torch's meta device) "
            f"failed: {plugins.raised_in_user_code(exc)}. Fix that code; no cell trained."
        ) from None
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    if shape != (1, NUM_CLASSES):
        got = f"shape {list(shape)}" if shape is not None else f"a {type(out).__name__}"
        raise UserError(
            f"{what}: for a batch of one 3x32x32 image it returns {got}, but training needs logits of shape "
            f"[1, {NUM_CLASSES}] (one per CIFAR-10 class; a model that takes `num_classes` is given 10)."
        )
    layers = sum(1 for m in model.modules() if not any(m.children()))
    return ModelCost(config.model.name, count_params(model), counter.get_total_flops(), layers)


def images_per_epoch(config: TrainConfig) -> int:
    """Images the loop trains on per epoch (it drops the ragged last batch)."""
    d = config.data
    n = d.train_size if d.train_size is not None else CIFAR_TRAIN_IMAGES - d.val_size
    return n - n % d.batch_size if n >= d.batch_size else n


def tta_views(config: TrainConfig) -> int:
    """Forward passes per evaluated image: 1, 2 with `tta` (the mirror), 6 with `tta_translate`."""
    return 6 if config.tta_translate else 2 if config.tta else 1


def evaluated_images(config: TrainConfig) -> int:
    """Images evaluated over a run: validation every epoch, the test set twice (last and best weights)."""
    return config.epochs * config.data.val_size + 2 * (config.data.test_size or CIFAR_TEST_IMAGES)


def cell_flops(config: TrainConfig) -> float:
    """FLOPs of one run: training every epoch, evaluation at each test-time view."""
    f = model_cost(config).flops
    return config.epochs * 3 * f * images_per_epoch(config) + tta_views(config) * f * evaluated_images(config)


def cell_terms(config: TrainConfig) -> CellTerms:
    """A cell's FLOPs and launch floors, training and evaluation apart (`CellTerms.seconds` combines them)."""
    f, kernels = model_cost(config).flops, model_cost(config).layers
    steps = config.epochs * max(1, images_per_epoch(config) // config.data.batch_size)
    batches = -(-evaluated_images(config) // config.data.eval_batch_size) * tta_views(config)
    return CellTerms(
        train_flops=config.epochs * 3 * f * images_per_epoch(config),
        train_floor=steps * (3 * kernels + STEP_EXTRA_KERNELS) * LAUNCH_SECONDS,
        eval_flops=tta_views(config) * f * evaluated_images(config),
        eval_floor=batches * kernels * LAUNCH_SECONDS,
    )


def augment_seconds(config: TrainConfig) -> float:
    """CPU seconds one run spends on its batched augmentation (catalogue.AUGMENTS' measured cost per image)."""
    return config.epochs * images_per_epoch(config) * AUGMENTS.get(config.data.augment).cpu_us * 1e-6


def sweep_cost(spec: Spec, profile: str | None = None) -> SweepCost:
    """The cost of every cell of one profile of a spec (None: the spec's own settings).

    A search is costed as its trial budget at the costliest edge of its space, before pruning:
    an upper bound; with only a time budget, as one trial.
    """
    if spec.search is None:
        configs = [cell.config for cell in expand(spec, profile)]
    else:
        worst = max(_trial_configs(spec, profile), key=cell_flops)
        configs = [worst] * (spec.search.budget() or 1)
    return SweepCost(
        spec=spec.name,
        profile=profile_tag(profile),
        cells=len(configs),
        train_images=sum(c.epochs * images_per_epoch(c) for c in configs),
        flops=sum(cell_flops(c) for c in configs),
        augment_seconds=sum(augment_seconds(c) for c in configs),
        epochs=tuple(sorted({c.epochs for c in configs})),
        bound=spec.search is not None,
        terms=tuple(cell_terms(c) for c in configs),
    )


def _trial_configs(spec: Spec, profile: str | None) -> list[TrainConfig]:
    """The configs at every edge of a search space (what `expand` validates for a search)."""
    assert spec.search is not None
    return [trial_cell(spec, profile, over).config for over in spec.search.edge_overrides()]


def row_configs(spec: Spec, profile: str | None = None) -> list[tuple[str, TrainConfig]]:
    """(row label, config) of each table row at its first seed; a search's edge configs instead."""
    if spec.search is not None:
        return [(f"edge {i + 1}", c) for i, c in enumerate(_trial_configs(spec, profile))]
    firsts: dict[str, TrainConfig] = {}
    for cell in expand(spec, profile):
        firsts.setdefault(cell.label, cell.config)
    return list(firsts.items())


def row_models(spec: Spec, profile: str | None = None) -> list[tuple[str, ModelCost]]:
    """(row label, its network's cost) for each table row, in table order."""
    return [(label, model_cost(config)) for label, config in row_configs(spec, profile)]
