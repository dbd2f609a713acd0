"""DenseNet-BC 121/169/201/264 of report 002, on torchvision's DenseNet class, for 32x32 inputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.densenet import DenseNet

from sweeper.models.activations import Activation, swap_relus
from sweeper.models.registry import register_model
from sweeper.schema.config import DenseNet as DenseNetConfig


class _DenseNet(DenseNet):
    """torchvision's DenseNet with its final functional relu made a module, so it can be swapped."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.relu5 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of images."""
        out = self.relu5(self.features(x))
        out = F.adaptive_avg_pool2d(out, (1, 1))
        return self.classifier(torch.flatten(out, 1))


def _densenet(
    block_config: tuple[int, int, int, int], activation: Activation, num_classes: int,
    growth_rate: int, init_features: int, dropout: float,
) -> nn.Module:  # fmt: skip
    model = _DenseNet(
        growth_rate=growth_rate, block_config=block_config, num_init_features=init_features,
        bn_size=4, drop_rate=dropout, num_classes=num_classes,
    )  # fmt: skip
    # Report 002's table says "7x7 conv, stride 2" but its 32x32 output and its parameter counts
    # say otherwise: a 3x3/1 stem without pool0 gives 3.97M/10.29M/17.40M (121/201/264) as the
    # report prints, where the 7x7 stem would give 3.98M/10.29M/17.41M.
    model.features.conv0 = nn.Conv2d(3, init_features, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.features.conv0.weight)  # torchvision's init for its convs
    model.features.pool0 = nn.Identity()
    return swap_relus(model, activation)


# Defaults live in the spec schema (sweeper.schema.config.DenseNet), written once.
_DEFAULTS = {k: DenseNetConfig.model_fields[k].default for k in ("growth_rate", "init_features", "dropout")}
_BLOCKS = {  # name: (dense layers per block, the parameter count at the defaults)
    "densenet121": ((6, 12, 24, 16), "3.97M params"),
    "densenet169": ((6, 12, 32, 32), "7.11M params (not in the report)"),
    "densenet201": ((6, 12, 48, 32), "10.29M params"),
    "densenet264": ((6, 12, 64, 48), "17.40M params"),
}


def _register(name: str, blocks: tuple[int, int, int, int], params: str) -> None:
    def build(
        *, activation: Activation = nn.ReLU, num_classes: int = 10, growth_rate: int = _DEFAULTS["growth_rate"],
        init_features: int = _DEFAULTS["init_features"], dropout: float = _DEFAULTS["dropout"],
    ) -> nn.Module:  # fmt: skip
        return _densenet(blocks, activation, num_classes, growth_rate, init_features, dropout)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"DenseNet-{name.removeprefix('densenet')} (blocks {','.join(map(str, blocks))}), k=24: {params}."
    globals()[name] = register_model(build)  # importable as sweeper.models.densenet:NAME, the catalogue's target


for _name, (_blocks, _params) in _BLOCKS.items():
    _register(_name, _blocks, _params)
