"""The resolved training configuration of one cell: strict pydantic models, no torch import.

Every name here is the dotted name used end to end: the YAML key `optimizer.lr` is the row
override key, the MLflow param and the table column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal, TypeAlias, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sweeper.catalogue import (
    ACTIVATIONS,
    AUGMENTS,
    LOSSES,
    MODELS,
    NORMALIZATIONS,
    OPTIMIZERS,
    PENALTIES,
    PRECISIONS,
    SCHEDULES,
)
from sweeper.schema.choices import literal, name_of, tagged_union

CIFAR_TRAIN_IMAGES = 50_000  # validation is held out of these
# torch seeds generators with an unsigned 64-bit integer, and the run's flip stream draws from seed + 2**32
# (training/augment.py): a larger seed validates nowhere else and overflows in the middle of a cell.
SEED_MAX = 2**64 - 2**32 - 1
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
Width = Annotated[int, Field(ge=1, le=4096)]


class Strict(BaseModel):
    """Base of every spec model: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Custom(BaseModel):
    """A block naming the user's code (`name: file.py:Attr`): its other keys are that code's keyword arguments,
    checked against its signature when the spec is loaded."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="file.py:Attr beside the spec, or package.module:Attr")


# --- models: one block per family, the family picked by `name` -------------------------------


class BaselineCNN(Strict):
    """Table 1 of report 000: four conv layers with BatchNorm, a 256-unit dense layer."""

    name: literal(MODELS, "baseline_cnn")  # type: ignore[valid-type]
    dropout: Fraction = 0.25
    fc_dropout: Fraction = 0.5


class PlainCNN(Strict):
    """A stem conv plus one conv+pool stage per width, then the dense head."""

    name: literal(MODELS, "plain_cnn")  # type: ignore[valid-type]
    stem: Width = 32
    widths: list[Width] = Field(default=[64, 128, 128], min_length=1, max_length=5)
    dropout: Fraction = 0.25
    fc_dropout: Fraction = 0.5
    hidden: Width = 256


class ResNetBasic(Strict):
    """CIFAR ResNet of BasicBlocks: stem width, stage widths, blocks per stage."""

    name: literal(MODELS, "resnet_basic")  # type: ignore[valid-type]
    stem: Width = 32
    widths: list[Width] = Field(default=[64, 128, 128], min_length=1, max_length=5)
    blocks: list[Annotated[int, Field(ge=1, le=64)]] = Field(default=[2, 2, 2], min_length=1)
    dropout: Fraction = 0.0

    @model_validator(mode="after")
    def _stages_match(self) -> ResNetBasic:
        if len(self.widths) != len(self.blocks):
            raise ValueError(f"widths has {len(self.widths)} stages but blocks has {len(self.blocks)}")
        return self


class TorchvisionResNet(Strict):
    """ResNet-18/50 adapted to 32x32 inputs, dropout before the classifier."""

    name: literal(MODELS, "torchvision_resnet")  # type: ignore[valid-type]
    dropout: Fraction = 0.2


class DenseNet(Strict):
    """DenseNet-BC adapted to 32x32 inputs, dropout inside every dense layer."""

    name: literal(MODELS, "densenet")  # type: ignore[valid-type]
    growth_rate: Width = 24
    init_features: Width = 64
    dropout: Fraction = 0.2


class VGG(Strict):
    """VGG-A (configuration A of Simonyan & Zisserman) with or without BatchNorm."""

    name: literal(MODELS, "vgg")  # type: ignore[valid-type]
    batch_norm: bool = False
    dropout: Fraction = 0.0


class FastNet(Strict):
    """The `fast` recipe's network: patch-whitening stem, three conv-pool-BN blocks, max-pool head."""

    name: literal(MODELS, "fast_net")  # type: ignore[valid-type]
    widths: list[Width] = Field(default=[64, 256, 256], min_length=1, max_length=4)
    whitening: Literal["centred", "uncentred"] = Field(
        "centred",
        description="patch covariance and zero-mean outputs, or (the 94% record's) the uncentred moment and a trained random bias",
    )
    bn_eps: float = Field(1e-5, gt=0.0, le=1.0, description="BatchNorm epsilon (the 94% record: 1e-12)")
    head: Literal["ninth", "unit"] = Field(
        "ninth", description="logits x 1/9 of a default head, or (the record's) a unit-std head / width"
    )
    bias_lr_scale: float = Field(
        64.0, gt=0.0, description="BatchNorm biases' gradient multiplier; 1 when optimizer.groups sets their lr"
    )


# The settings block of each family (catalogue.MODELS names the family of every model).
FAMILIES: dict[str, type[Strict]] = {
    "baseline_cnn": BaselineCNN,
    "plain_cnn": PlainCNN,
    "resnet_basic": ResNetBasic,
    "torchvision_resnet": TorchvisionResNet,
    "densenet": DenseNet,
    "vgg": VGG,
    "fast_net": FastNet,
}


class CustomModel(Custom):
    """Your own network: `name: nets.py:MyNet` (a module or a function returning one); the other keys are its
    arguments. It is given `num_classes` and `activation` (a function returning a new activation module)
    when its signature takes them."""


if TYPE_CHECKING:  # what mypy can read; pydantic gets the catalogue's tagged union below
    ModelSpec: TypeAlias = Union[
        BaselineCNN, PlainCNN, ResNetBasic, TorchvisionResNet, DenseNet, VGG, FastNet, CustomModel
    ]
else:
    ModelSpec = tagged_union(MODELS, lambda name: FAMILIES[MODELS.get(name).family], CustomModel)


# --- data, optimisation ---------------------------------------------------------------------


class DataSpec(Strict):
    """Which images, how many, how they are augmented and batched."""

    augment: name_of(AUGMENTS) = "none"  # type: ignore[valid-type]
    normalize: name_of(NORMALIZATIONS) = "half"  # type: ignore[valid-type]
    batch_size: int = Field(128, ge=1, le=65536)
    eval_batch_size: int = Field(500, ge=1, le=65536)
    val_size: int = Field(5000, ge=0, le=45000, description="held out of the 50k training images")
    train_size: int | None = Field(None, ge=10, description="stratified subset of the rest; null = all")
    test_size: int | None = Field(None, ge=10, le=10000, description="stratified test subset; null = all")

    @model_validator(mode="after")
    def _sizes_fit_cifar(self) -> DataSpec:
        # CIFAR-10 has 50,000 training images: validation is held out of them, the training subset
        # drawn from the rest (a smaller custom dataset is still checked when it is loaded)
        if self.train_size is not None and self.train_size + self.val_size > CIFAR_TRAIN_IMAGES:
            room = CIFAR_TRAIN_IMAGES - self.val_size
            raise ValueError(
                f"train_size={self.train_size} with val_size={self.val_size} needs {self.train_size + self.val_size:,} "
                f"images, but CIFAR-10 has {CIFAR_TRAIN_IMAGES:,} training images: train_size can be at most {room:,} here"
            )
        return self


class GroupSpec(Strict):
    """One parameter group's settings (the model's groups: fast_net's filters, head, norm_biases, whiten_bias;
    any other model's filters, matrices, vectors); unset keys take the optimizer's."""

    lr: float | None = Field(None, gt=0.0, le=10.0)
    momentum: float | None = Field(None, ge=0.0, lt=1.0)
    weight_decay: float | None = Field(None, ge=0.0, le=1.0)
    train_epochs: int | None = Field(
        None,
        ge=1,
        description="train this group for the first N epochs only: its lr follows the schedule compressed "
        "into them, then stays 0 (the record's whitening bias: 3)",
    )


class OptimizerSpec(Strict):
    """One flat block for every built-in optimizer, so that a row can switch `optimizer.name` and keep `optimizer.lr`."""

    name: literal(OPTIMIZERS) = "adam"  # type: ignore[valid-type]
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="optimizers with momentum (sgd, muon)")
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    groups: dict[str, GroupSpec] = Field(
        default_factory=dict,
        description="per parameter group: lr, momentum, weight_decay, train_epochs (muon: filters)",
    )

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> OptimizerSpec:
        if self.nesterov and ("nesterov" not in OPTIMIZERS.get(self.name).uses or self.momentum == 0):
            with_it = ", ".join(e.name for e in OPTIMIZERS if "nesterov" in e.uses)
            raise ValueError(f"nesterov needs an optimizer with momentum ({with_it}) and momentum > 0")
        return self


class CustomOptimizer(Custom):
    """Your own optimizer: `name: opt.py:MyOpt`, a torch.optim.Optimizer class called as MyOpt(params, lr=...,
    weight_decay=..., **the other keys)."""

    lr: float = Field(1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)


if TYPE_CHECKING:
    OptimizerBlock: TypeAlias = Union[OptimizerSpec, CustomOptimizer]
else:
    OptimizerBlock = tagged_union(OPTIMIZERS, lambda name: OptimizerSpec, CustomOptimizer, default="adam")


class NoSchedule(Strict):
    """Constant learning rate."""

    name: Literal["none"] = "none"


class StepSchedule(Strict):
    """Multiply the lr by gamma every step_size epochs."""

    name: Literal["step"]
    step_size: int = Field(10, ge=1)
    gamma: float = Field(0.1, gt=0.0, le=1.0)


class CosineSchedule(Strict):
    """Cosine annealing over all epochs, with an optional linear warm-up."""

    name: Literal["cosine"]
    warmup_epochs: int = Field(0, ge=0)
    eta_min: float = Field(0.0, ge=0.0)


class PlateauSchedule(Strict):
    """ReduceLROnPlateau on validation accuracy."""

    name: Literal["plateau"]
    factor: float = Field(0.5, gt=0.0, lt=1.0)
    patience: int = Field(3, ge=0)


class OneCycleSchedule(Strict):
    """Per batch: linear warm-up from start_factor*lr to lr, then linear decay to end_factor*lr."""

    name: Literal["onecycle"]
    warmup_fraction: float = Field(0.25, ge=0.0, le=1.0, description="share of all steps spent warming up")
    start_factor: float = Field(0.2, ge=0.0, le=1.0)
    end_factor: float = Field(0.05, ge=0.0, le=1.0)


SCHEDULE_BLOCKS: dict[str, type[Strict]] = {
    "none": NoSchedule,
    "step": StepSchedule,
    "cosine": CosineSchedule,
    "plateau": PlateauSchedule,
    "onecycle": OneCycleSchedule,
}
if TYPE_CHECKING:
    SchedulerSpec: TypeAlias = Union[NoSchedule, StepSchedule, CosineSchedule, PlateauSchedule, OneCycleSchedule]
else:
    SchedulerSpec = tagged_union(SCHEDULES, lambda name: SCHEDULE_BLOCKS[name], default="none")


class LossSpec(Strict):
    """Cross-entropy or focal loss, optional label smoothing and an L1/L2 weight penalty."""

    name: literal(LOSSES) = "cross_entropy"  # type: ignore[valid-type]
    reduction: Literal["mean", "sum"] = Field(
        "mean", description="over the batch; sum scales gradients (and so SGD's lr) with the batch size"
    )
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    gamma: float = Field(2.0, ge=0.0, le=10.0, description="focal loss only")
    penalty: name_of(PENALTIES) = "none"  # type: ignore[valid-type]
    penalty_weight: float = Field(1e-4, ge=0.0, le=10.0)


class CustomLoss(Custom):
    """Your own loss: `name: losses.py:my_loss`, a function f(logits, target, **the other keys) -> scalar, or
    a class built with the other keys whose instances are called so; the weight penalty still applies."""

    penalty: name_of(PENALTIES) = "none"  # type: ignore[valid-type]
    penalty_weight: float = Field(1e-4, ge=0.0, le=10.0)


if TYPE_CHECKING:
    LossBlock: TypeAlias = Union[LossSpec, CustomLoss]
else:
    LossBlock = tagged_union(LOSSES, lambda name: LossSpec, CustomLoss, default="cross_entropy")


class ProbeSpec(Strict):
    """Santurkar et al. (2018) probes during training, and the per-step training loss (sweeper.analysis)."""

    every: int = Field(10, ge=1, description="probe every this many steps (step 1 included)")
    etas: list[Annotated[float, Field(gt=0.0, le=1e6)]] = Field(
        default=[0.25, 0.5, 1.0, 2.0, 4.0],
        min_length=1,
        max_length=32,
        description="step sizes along -g, as multiples of the current lr",
    )
    step_loss: bool = Field(True, description="log the training loss of every step as `step_loss`")


class TrainConfig(Strict):
    """Everything that determines one training run; its hash identifies the cell."""

    @model_validator(mode="after")
    def _groups_exist(self) -> TrainConfig:
        groups = getattr(self.optimizer, "groups", {})
        if groups and self.model.name in MODELS:
            known = MODELS.get(self.model.name).groups
            unknown = sorted(set(groups) - set(known))
            if unknown:
                raise ValueError(
                    f"optimizer.groups names {', '.join(unknown)}, but {self.model.name}'s parameter groups are {', '.join(known)}"
                )
        if groups and self.optimizer.name in OPTIMIZERS:
            info = OPTIMIZERS.get(self.optimizer.name)
            with_momentum = [n for n, g in groups.items() if g.momentum is not None]
            if with_momentum and "momentum" not in info.uses:
                raise ValueError(f"optimizer.groups.{with_momentum[0]}.momentum: {info.name} has no momentum")
            filters = groups.get("filters")
            if info.filters_only and filters is not None and filters.weight_decay:
                raise ValueError(
                    f"optimizer.groups.filters.weight_decay: {info.name} renormalises the filters, so weight decay has no effect there"
                )
        if any(g.train_epochs for g in groups.values()) and not SCHEDULES.get(self.scheduler.name).factor:
            raise ValueError(
                f"optimizer.groups.*.train_epochs needs a factor schedule (none, onecycle, cosine), not {self.scheduler.name}"
            )
        if self.tta_translate and not self.tta:
            raise ValueError("tta_translate adds views to tta: set tta: true too")
        return self

    model: ModelSpec
    activation: name_of(ACTIVATIONS) = "relu"  # type: ignore[valid-type]
    data: DataSpec = DataSpec()
    optimizer: OptimizerBlock = OptimizerSpec()
    scheduler: SchedulerSpec = NoSchedule()
    loss: LossBlock = LossSpec()
    epochs: int = Field(ge=1, le=10000)
    seed: int = Field(0, ge=0, le=SEED_MAX)
    precision: name_of(PRECISIONS) = "auto"  # type: ignore[valid-type]
    channels_last: bool = True
    probe: ProbeSpec | None = None
    compile: bool = Field(False, description="torch.compile the model; pays off on GPUs and long runs")
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0, description="per-step EMA of the weights, evaluated instead; 0 = off")
    tta: bool = Field(False, description="evaluate on each image and its mirror, averaging the logits")
    tta_translate: bool = Field(
        False,
        description="with tta: also each image shifted one pixel both ways diagonally (6 views, the 94% record's)",
    )
    deterministic: bool = Field(
        False, description="deterministic algorithms, no cuDNN autotuning: bit-identical reruns on one GPU, slower"
    )
