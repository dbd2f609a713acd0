"""The resolved training configuration of one cell: strict pydantic models, no torch import.

Every name here is the dotted name used end to end: the YAML key `optimizer.lr` is the row
override key, the MLflow param and the table column.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

Activation = Literal["relu", "leaky_relu", "elu", "gelu", "silu", "mish", "prelu"]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
Width = Annotated[int, Field(ge=1, le=4096)]


class Strict(BaseModel):
    """Base of every spec model: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


# --- models: one kind per family, told apart by `name` -------------------------------------


class BaselineCNN(Strict):
    """Table 1 of report 000: four conv layers with BatchNorm, a 256-unit dense layer."""

    name: Literal["baseline_cnn"]
    dropout: Fraction = 0.25
    fc_dropout: Fraction = 0.5


class PlainCNN(Strict):
    """A stem conv plus one conv+pool stage per width, then the dense head."""

    name: Literal["plain_cnn"]
    stem: Width = 32
    widths: list[Width] = Field(default=[64, 128, 128], min_length=1, max_length=5)
    dropout: Fraction = 0.25
    fc_dropout: Fraction = 0.5
    hidden: Width = 256


class ResNetBasic(Strict):
    """CIFAR ResNet of BasicBlocks: stem width, stage widths, blocks per stage."""

    name: Literal["resnet_basic"]
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

    name: Literal["resnet18", "resnet50"]
    dropout: Fraction = 0.2


class DenseNet(Strict):
    """DenseNet-BC adapted to 32x32 inputs, dropout inside every dense layer."""

    name: Literal["densenet121", "densenet169", "densenet201", "densenet264"]
    growth_rate: Width = 24
    init_features: Width = 64
    dropout: Fraction = 0.2


class VGG(Strict):
    """VGG-A (configuration A of Simonyan & Zisserman) with or without BatchNorm."""

    name: Literal["vgg_a"]
    batch_norm: bool = False
    dropout: Fraction = 0.0


class FastNet(Strict):
    """The `fast` recipe's network: patch-whitening stem, three conv-pool-BN blocks, max-pool head."""

    name: Literal["fast_net"]
    widths: list[Width] = Field(default=[64, 256, 256], min_length=1, max_length=4)


ModelSpec = Annotated[
    Union[BaselineCNN, PlainCNN, ResNetBasic, TorchvisionResNet, DenseNet, VGG, FastNet],
    Field(discriminator="name"),
]


# --- data, optimisation ---------------------------------------------------------------------


class DataSpec(Strict):
    """Which images, how many, how they are augmented and batched."""

    augment: Literal["none", "weak", "translate", "autoaugment", "strong"] = "none"
    normalize: Literal["half", "cifar10"] = "half"
    batch_size: int = Field(128, ge=1, le=65536)
    eval_batch_size: int = Field(500, ge=1, le=65536)
    val_size: int = Field(5000, ge=0, le=45000, description="held out of the 50k training images")
    train_size: int | None = Field(None, ge=10, description="stratified subset of the rest; null = all")
    test_size: int | None = Field(None, ge=10, le=10000, description="stratified test subset; null = all")


class OptimizerSpec(Strict):
    """One flat model so that a row can switch `optimizer.name` and keep `optimizer.lr`."""

    name: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam"
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD only")
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> OptimizerSpec:
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer.name sgd with momentum > 0")
        return self


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


SchedulerSpec = Annotated[
    Union[NoSchedule, StepSchedule, CosineSchedule, PlateauSchedule, OneCycleSchedule], Field(discriminator="name")
]


class LossSpec(Strict):
    """Cross-entropy or focal loss, optional label smoothing and an L1/L2 weight penalty."""

    name: Literal["cross_entropy", "focal"] = "cross_entropy"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    gamma: float = Field(2.0, ge=0.0, le=10.0, description="focal loss only")
    penalty: Literal["none", "l1", "l2"] = "none"
    penalty_weight: float = Field(1e-4, ge=0.0, le=10.0)


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

    model: ModelSpec
    activation: Activation = "relu"
    data: DataSpec = DataSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    scheduler: SchedulerSpec = NoSchedule()
    loss: LossSpec = LossSpec()
    epochs: int = Field(ge=1, le=10000)
    seed: int = Field(0, ge=0)
    precision: Literal["auto", "fp32", "tf32", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 where native (Ampere+ GPUs, AVX-512 BF16 CPUs), fp16 + loss scaling on older GPUs, "
        "else fp32; fp32 is IEEE fp32 (no TF32); tf32 lets Ampere+ GPUs run fp32 matmuls/convs as TF32",
    )
    channels_last: bool = True
    probe: ProbeSpec | None = None
    compile: bool = Field(False, description="torch.compile the model; pays off on GPUs and long runs")
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0, description="per-step EMA of the weights, evaluated instead; 0 = off")
    tta: bool = Field(False, description="evaluate on each image and its mirror, averaging the logits")
    deterministic: bool = Field(
        False, description="deterministic algorithms, no cuDNN autotuning: bit-identical reruns on one GPU, slower"
    )

    @model_serializer(mode="wrap")
    def _omit_absent_probe(self, handler: Any) -> dict[str, Any]:
        # A config without probes dumps (and hashes) exactly as before the field existed, so
        # adding it did not change the id of any cell already trained; so do the later fields
        # at their defaults.
        data = handler(self)
        for key, default in (
            ("probe", None),
            ("compile", False),
            ("ema_decay", 0.0),
            ("tta", False),
            ("deterministic", False),
        ):
            if getattr(self, key) == default:
                data.pop(key, None)
        return data


# Fields whose value is "one of several kinds": switching the kind replaces the whole block.
KIND_FIELDS = ("model", "scheduler")


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {dotted.key: value}; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def unflatten(overrides: dict[str, Any]) -> dict[str, Any]:
    """{dotted.key: value} (or nested dicts, or a mix) -> nested dict."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        *parents, leaf = str(key).split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"'{key}' sets a field inside '{part}', which is not a block")
        if isinstance(value, dict):
            value = unflatten(value)
            if isinstance(node.get(leaf), dict):
                value = merge(node[leaf], value)
        node[leaf] = value
    return out


def merge(base: dict[str, Any], override: dict[str, Any], top: bool = True) -> dict[str, Any]:
    """Deep-merge override into base; a new `name` in a kind field replaces that block whole."""
    out = dict(base)
    for key, value in override.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            new_kind = top and key in KIND_FIELDS and value.get("name", old.get("name")) != old.get("name")
            out[key] = dict(value) if new_kind else merge(old, value, top=False)
        else:
            out[key] = value
    return out


def _members(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (Annotated, Union, Optional unwrapped)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _members(arg)]


def kind_tags() -> set[str]:
    """Every `name` tag of the kind fields: pydantic puts them in error locations."""
    tags: set[str] = set()
    for field in KIND_FIELDS:
        for member in _members(TrainConfig.model_fields[field].annotation):
            tags.update(get_args(member.model_fields["name"].annotation))
    return tags


def fields_at(root: type[BaseModel], loc: tuple) -> list[str]:
    """Valid keys of the block at a pydantic error location (tags pick the union member)."""
    models = [root]
    for part in loc:
        if not models:
            return []
        tagged = [m for m in models if part in _tag_values(m)]
        if tagged:
            models = tagged
            continue
        field = models[0].model_fields.get(str(part))
        models = _members(field.annotation) if field else []
    return sorted({name for m in models for name in m.model_fields})


def _tag_values(model: type[BaseModel]) -> tuple:
    field = model.model_fields.get("name")
    return get_args(field.annotation) if field else ()
