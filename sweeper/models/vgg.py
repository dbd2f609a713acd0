"""VGG-A (configuration A) of report 002 on torchvision's feature builder, for 32x32 inputs."""

from __future__ import annotations

from torch import nn
from torchvision.models import vgg

from sweeper.models.activations import Activation, swap_relus
from sweeper.models.registry import register_model


def _fc(cin: int, cout: int, batch_norm: bool, activation: Activation, dropout: float) -> list[nn.Module]:
    norm = [nn.BatchNorm1d(cout)] if batch_norm else []
    return [nn.Linear(cin, cout), *norm, activation(), nn.Dropout(dropout)]


@register_model
def vgg_a(
    *, activation: Activation = nn.ReLU, num_classes: int = 10, batch_norm: bool = False, dropout: float = 0.0
) -> nn.Module:
    """VGG-A with 512-unit classifier layers: 9,750,922 params, 9,758,474 with BatchNorm."""
    # torchvision's VGG class is not used: its 7x7 adaptive pool and 4096-unit classifier are
    # meant for 224x224 (and would allocate 100M+ parameters only to be thrown away). Five
    # max-pools take 32x32 down to 1x1, so the features flatten to 512.
    features = swap_relus(vgg.make_layers(vgg.cfgs["A"], batch_norm=batch_norm), activation)
    return nn.Sequential(
        features,
        nn.Flatten(),
        *_fc(512, 512, batch_norm, activation, dropout),
        *_fc(512, 512, batch_norm, activation, dropout),
        nn.Linear(512, num_classes),
    )
