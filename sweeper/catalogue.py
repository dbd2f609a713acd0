"""Every named choice of a spec, listed once: model families, activations, losses, optimizers, schedules,
augmentation presets, normalisations, precisions, metrics, samplers, pruners, table formats, launchers.

The schema builds its allowed values from these lists, the torch side finds each implementation
through the entry's `target` ("module:attr", the same door a spec's own `file.py:Attr` goes
through), the cost model and `sweeper list` read their costs here, and `sweeper schema` and the
error messages print them. Capabilities live with the entry (timm's OptimInfo: takes `fused`, has
momentum), so a check asks the entry instead of keeping a list of exceptions elsewhere.
Imports nothing heavy: `sweeper validate` stays instant.

Adding a choice is one entry here (plus its implementation where `target` points); tests/test_catalogue.py
fails when an implementation and its entry disagree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from sweeper.errors import did_you_mean

BRING_YOUR_OWN = "or your own as 'file.py:Name' (beside the spec) or 'package.module:Name'"


@dataclass(frozen=True)
class Choice:
    """One named choice: its name, what it is, and where its implementation lives (\"module:attr\")."""

    name: str
    help: str
    target: str = ""
    uses: frozenset[str] = frozenset()  # settings of its block it reads; others at non-defaults have no effect


DEFAULT_GROUPS = ("filters", "matrices", "vectors")  # parameters by shape: ndim > 2, == 2, < 2


@dataclass(frozen=True)
class ModelInfo(Choice):
    """A network: `family` is the schema block that holds its settings; `groups` name its parameter groups
    (`optimizer.groups`; the model's param_groups(), else by shape)."""

    family: str = ""
    groups: tuple[str, ...] = DEFAULT_GROUPS


@dataclass(frozen=True)
class OptimizerInfo(Choice):
    """An optimizer and what it can do."""

    fused: bool = False  # takes fused=True: one kernel per step instead of several small ops per tensor
    filters_only: bool = False  # optimises conv filters only (Muon): the other parameters go to SGD


@dataclass(frozen=True)
class ScheduleInfo(Choice):
    """A learning-rate schedule; `per_batch` ones step every batch, the rest every epoch. A `factor` schedule's
    target gives the lr multiplier per step, so a parameter group may follow it over fewer epochs
    (`optimizer.groups.NAME.train_epochs`); the others' targets build a torch scheduler."""

    per_batch: bool = False
    factor: bool = False


@dataclass(frozen=True)
class AugmentInfo(Choice):
    """An augmentation preset, batched on the training device; `cpu_us` is its measured cost per image
    on one CPU core (benchmarks/augment_speed.py), what `sweeper list` adds on CPUs."""

    cpu_us: float = 0.0


@dataclass(frozen=True)
class NormalizeInfo(Choice):
    """Per-channel mean and std of pixels in [0, 1]."""

    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class MetricInfo(Choice):
    """A metric a cell's run logs: every epoch, once at the end (summary) or per step (probes)."""

    when: Literal["epoch", "summary", "probe"] = "summary"
    goal: Literal["max", "min", "none"] = "max"
    objective: bool = False  # a search may optimise it (summary) or a pruner watch it (epoch)


E = TypeVar("E", bound=Choice)


@dataclass(frozen=True)
class Kind(Generic[E]):
    """One list of choices: what they are called in messages, where a spec sets them, the entries."""

    what: str  # "activation"
    key: str  # where a spec writes it: "activation", "optimizer.name"
    entries: tuple[E, ...]
    plugins: bool = False  # a spec may name its own implementation instead
    _index: dict[str, E] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {e.name: e for e in self.entries}
        if len(index) != len(self.entries):
            raise ValueError(f"{self.what}: a name is listed twice")
        object.__setattr__(self, "_index", index)

    def __iter__(self) -> Iterator[E]:
        return iter(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    @property
    def names(self) -> tuple[str, ...]:
        """The built-in names, in catalogue order."""
        return tuple(self._index)

    def get(self, name: str) -> E:
        """The entry of a built-in name (KeyError for anything else)."""
        return self._index[name]

    def unknown(self, name: Any) -> str:
        """The message for a name that is not a choice: the choices, the closest, and how to bring your own."""
        hint = did_you_mean(str(name), self.names)
        own = f", {BRING_YOUR_OWN}" if self.plugins else ""
        return f"{name!r} is not a known {self.what}.{hint} Choose one of {', '.join(self.names)}{own}."


def _nn(cls: str) -> str:
    return f"torch.nn:{cls}"


MODELS: Kind[ModelInfo] = Kind(
    "model",
    "model.name",
    (
        ModelInfo("baseline_cnn", "report 000's Table 1 CNN: four conv layers with BatchNorm, a 256-unit dense layer",
                  "sweeper.models.cnn:baseline_cnn", family="baseline_cnn"),
        ModelInfo("plain_cnn", "a stem conv plus one conv+pool stage per width, then the dense head",
                  "sweeper.models.cnn:plain_cnn", family="plain_cnn"),
        ModelInfo("resnet_basic", "CIFAR ResNet of BasicBlocks: stem width, stage widths, blocks per stage",
                  "sweeper.models.resnet:resnet_basic", family="resnet_basic"),
        ModelInfo("resnet18", "torchvision's ResNet-18 adapted to 32x32 inputs", "sweeper.models.resnet:resnet18",
                  family="torchvision_resnet"),
        ModelInfo("resnet50", "torchvision's ResNet-50 adapted to 32x32 inputs", "sweeper.models.resnet:resnet50",
                  family="torchvision_resnet"),
        ModelInfo("densenet121", "torchvision's DenseNet-121 (BC) adapted to 32x32 inputs",
                  "sweeper.models.densenet:densenet121", family="densenet"),
        ModelInfo("densenet169", "torchvision's DenseNet-169 (BC) adapted to 32x32 inputs",
                  "sweeper.models.densenet:densenet169", family="densenet"),
        ModelInfo("densenet201", "torchvision's DenseNet-201 (BC) adapted to 32x32 inputs",
                  "sweeper.models.densenet:densenet201", family="densenet"),
        ModelInfo("densenet264", "DenseNet-264 (BC) adapted to 32x32 inputs",
                  "sweeper.models.densenet:densenet264", family="densenet"),
        ModelInfo("vgg_a", "VGG-A (Simonyan & Zisserman's configuration A), with or without BatchNorm",
                  "sweeper.models.vgg:vgg_a", family="vgg"),
        ModelInfo("fast_net", "the `fast` recipe's network: patch-whitening stem, three conv-pool-BN blocks",
                  "sweeper.models.fast:fast_net", family="fast_net",
                  groups=("filters", "head", "norm_biases", "whiten_bias")),
    ),
    plugins=True,
)  # fmt: skip

ACTIVATIONS: Kind[Choice] = Kind(
    "activation",
    "activation",
    (
        Choice("relu", "max(0, x)", _nn("ReLU")),
        Choice("leaky_relu", "x, or 0.01x below 0 (PyTorch's default slope)", _nn("LeakyReLU")),
        Choice("elu", "x, or exp(x) - 1 below 0", _nn("ELU")),
        Choice("gelu", "x * Phi(x), exact", _nn("GELU")),
        Choice("silu", "x * sigmoid(x) (swish)", _nn("SiLU")),
        Choice("mish", "x * tanh(softplus(x))", _nn("Mish")),
        Choice("prelu", "leaky ReLU with one learned slope per module instance", _nn("PReLU")),
    ),
    plugins=True,
)

LOSSES: Kind[Choice] = Kind(
    "loss",
    "loss.name",
    (
        Choice("cross_entropy", "cross-entropy, optionally label-smoothed", "sweeper.training.recipe:cross_entropy",
               uses=frozenset({"label_smoothing"})),
        Choice("focal", "focal loss (Lin et al. 2017): cross-entropy down-weighting easy examples by (1-p)^gamma",
               "sweeper.training.recipe:focal_loss", uses=frozenset({"gamma"})),
    ),
    plugins=True,
)  # fmt: skip

PENALTIES: Kind[Choice] = Kind(
    "weight penalty",
    "loss.penalty",
    (
        Choice("none", "no penalty"),
        Choice("l1", "penalty_weight * sum |w| over weight matrices and filters", uses=frozenset({"penalty_weight"})),
        Choice("l2", "penalty_weight * sum w^2 over weight matrices and filters", uses=frozenset({"penalty_weight"})),
    ),
)

_MOMENTUM = frozenset({"momentum", "nesterov"})
OPTIMIZERS: Kind[OptimizerInfo] = Kind(
    "optimizer",
    "optimizer.name",
    (
        OptimizerInfo("sgd", "stochastic gradient descent with momentum (optionally Nesterov)", "torch.optim:SGD",
                      uses=_MOMENTUM, fused=True),
        OptimizerInfo("adam", "Adam (Kingma & Ba 2015), L2 weight decay", "torch.optim:Adam", fused=True),
        OptimizerInfo("adamw", "Adam with decoupled weight decay (Loshchilov & Hutter 2019)", "torch.optim:AdamW",
                      fused=True),
        OptimizerInfo("rmsprop", "RMSprop (Hinton 2012)", "torch.optim:RMSprop"),
        OptimizerInfo("muon", "Muon: momentum orthogonalised by Newton-Schulz, weights renormalised; conv "
                      "filters only, the other parameters take SGD with the same momentum",
                      "sweeper.training.muon:Muon", uses=_MOMENTUM, filters_only=True),
    ),
    plugins=True,
)  # fmt: skip

SCHEDULES: Kind[ScheduleInfo] = Kind(
    "learning-rate schedule",
    "scheduler.name",
    (
        ScheduleInfo("none", "a constant learning rate", "sweeper.training.optim:constant", factor=True),
        ScheduleInfo("step", "multiply the lr by gamma every step_size epochs", "sweeper.training.optim:step"),
        ScheduleInfo("cosine", "cosine annealing over all epochs, optional linear warm-up",
                     "sweeper.training.optim:cosine", factor=True),
        ScheduleInfo("plateau", "halve (factor) the lr when validation accuracy stalls for patience epochs",
                     "sweeper.training.optim:plateau"),
        ScheduleInfo("onecycle", "per batch: linear warm-up to lr, then linear decay to end_factor * lr",
                     "sweeper.training.optim:onecycle", per_batch=True, factor=True),
    ),
)  # fmt: skip

AUGMENTS: Kind[AugmentInfo] = Kind(
    "augmentation preset",
    "data.augment",
    (  # fmt: skip
        # cpu_us: benchmarks/augment_speed.py, one thread of a 2-core AMD EPYC (AVX-512), batch 256
        AugmentInfo("none", "the images as they are"),
        AugmentInfo(
            "weak", "random 32x32 crop of the image padded by 4 zero pixels, random horizontal flip", cpu_us=3.5
        ),
        AugmentInfo("translate", "random shift of at most 2 pixels (zero padding), random horizontal flip", cpu_us=3.4),
        AugmentInfo("autoaugment", "weak, then torchvision's AutoAugment CIFAR-10 policy, per sample", cpu_us=15.1),
        AugmentInfo(
            "strong", "weak, then colour jitter 0.2, rotation 15 deg + shift 10%, random erasing p=0.25", cpu_us=35.3
        ),
        AugmentInfo(
            "altflip",
            "shifts of at most 2 pixels with the border mirrored (reflect padding); flips alternate: a random half of "
            "the images mirrored in the first epoch, every image the other way the next (each seen both ways in any "
            "two epochs); the 94% record's",
            cpu_us=3.4,
        ),
    ),
)

NORMALIZATIONS: Kind[NormalizeInfo] = Kind(
    "normalisation",
    "data.normalize",
    (
        NormalizeInfo("half", "pixels to [-1, 1]", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        NormalizeInfo("cifar10", "CIFAR-10's channel means and the std values most CIFAR code copies",
                      mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010)),
        NormalizeInfo("cifar10_std", "CIFAR-10's channel means and its true standard deviations",
                      mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    ),
)  # fmt: skip

PRECISIONS: Kind[Choice] = Kind(
    "precision",
    "precision",
    (
        Choice("auto", "bf16 where native (compute capability 8.0+, AVX-512 BF16 CPUs), fp16 + loss scaling on "
               "older GPUs, else fp32; resolved once per run and kept across resumes"),
        Choice("fp32", "IEEE fp32 (no TF32 on Ampere+ GPUs)"),
        Choice("tf32", "fp32, with matmuls and convolutions as TF32 on Ampere+ GPUs"),
        Choice("bf16", "bf16 autocast"),
        Choice("fp16", "fp16 autocast with a gradient scaler"),
    ),
)  # fmt: skip

METRICS: Kind[MetricInfo] = Kind(
    "metric",
    "table.metrics.key",
    (
        MetricInfo("train_loss", "mean training loss of the epoch", when="epoch", goal="min", objective=True),
        MetricInfo("train_acc", "training accuracy of the epoch (augmented images)", when="epoch", objective=True),
        MetricInfo("val_loss", "validation cross-entropy after the epoch", when="epoch", goal="min", objective=True),
        MetricInfo("val_acc", "validation accuracy after the epoch", when="epoch", objective=True),
        MetricInfo("lr", "learning rate of the first parameter group at the epoch's end", when="epoch", goal="none"),
        MetricInfo("epoch_time", "seconds of the epoch, evaluation included", when="epoch", goal="min"),
        MetricInfo("images_per_s", "training images per second of the epoch", when="epoch"),
        MetricInfo("test_loss", "test cross-entropy of the last weights", goal="min", objective=True),
        MetricInfo("test_acc", "test accuracy of the last weights", objective=True),
        MetricInfo("test_acc_best", "test accuracy of the best validation epoch's weights", objective=True),
        MetricInfo("best_val_acc", "best validation accuracy over the epochs", objective=True),
        MetricInfo("best_epoch", "epoch of the best validation accuracy", goal="none"),
        MetricInfo("final_train_loss", "training loss of the last epoch", goal="min", objective=True),
        MetricInfo("final_train_acc", "training accuracy of the last epoch", objective=True),
        MetricInfo("final_val_loss", "validation loss of the last epoch", goal="min", objective=True),
        MetricInfo("params", "trainable parameters", goal="none", objective=True),
        MetricInfo("train_time", "seconds of training, resumed parts included", goal="min"),
        MetricInfo("step_loss", "training loss of every step (probe.step_loss)", when="probe", goal="min"),
        MetricInfo("probe_loss_min", "least loss along -g over the probe's step sizes", when="probe", goal="min"),
        MetricInfo("probe_loss_max", "largest loss along -g over the probe's step sizes", when="probe", goal="min"),
        MetricInfo("grad_pred_min", "least l2 distance of the gradient along -g to g", when="probe", goal="min"),
        MetricInfo("grad_pred_max", "largest l2 distance of the gradient along -g to g", when="probe", goal="min"),
        MetricInfo("grad_pred_mean", "mean l2 distance of the gradient along -g to g", when="probe", goal="min"),
        MetricInfo("beta_smooth", "effective beta-smoothness along -g", when="probe", goal="min"),
        MetricInfo("probe_grad_norm", "norm of the gradient g at the probe", when="probe", goal="none"),
    ),
)

SAMPLERS: Kind[Choice] = Kind(
    "sampler",
    "search.sampler",
    (
        Choice("tpe", "Optuna's tree-structured Parzen estimator (constant liar between workers)"),
        Choice("random", "independent uniform samples"),
        Choice("grid", "every combination of int and categorical params, once"),
        Choice("cmaes", "CMA-ES over numeric params"),
    ),
)

PRUNERS: Kind[Choice] = Kind(
    "pruner",
    "search.pruner.name",
    (
        Choice("none", "every trial trains to the end"),
        Choice("median", "stop a trial worse than the median of earlier trials at the same epoch"),
        Choice("successive_halving", "asynchronous successive halving over epochs"),
        Choice("hyperband", "several successive-halving brackets over epochs"),
    ),
)

TABLE_FORMATS: Kind[Choice] = Kind(
    "table format",
    "--format",
    (
        Choice("markdown", "a markdown table with its notes"),
        Choice("csv", "the cells only, comma-separated"),
        Choice("latex", "a booktabs table"),
        Choice("html", "an HTML table"),
    ),
)

LAUNCHERS: Kind[Choice] = Kind(
    "launcher",
    "launcher.name",
    (
        Choice("local", "worker processes on this machine (one per GPU, or a share of the CPU)",
               "sweeper.sweep.local:LocalLauncher"),
        Choice("slurm", "a SLURM job array of workers on a shared PostgreSQL study and MLflow server",
               "sweeper.sweep.slurm:SlurmLauncher"),
    ),
    plugins=True,
)  # fmt: skip

KINDS: tuple[Kind[Any], ...] = (
    MODELS, ACTIVATIONS, LOSSES, PENALTIES, OPTIMIZERS, SCHEDULES, AUGMENTS, NORMALIZATIONS, PRECISIONS,
    METRICS, SAMPLERS, PRUNERS, TABLE_FORMATS, LAUNCHERS,
)  # fmt: skip


def metric_names(*when: str) -> tuple[str, ...]:
    """The metrics logged at these times ("epoch", "summary", "probe"), in catalogue order."""
    return tuple(m.name for m in METRICS if m.when in when)
