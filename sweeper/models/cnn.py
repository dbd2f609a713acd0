"""Plain convolutional networks of report 000: the baseline (Table 1) and its width/depth variants."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from sweeper.models.activations import Activation
from sweeper.models.registry import register_model


def _conv_bn_act(cin: int, cout: int, activation: Activation) -> list[nn.Module]:
    # Conv bias kept (PyTorch's default) as in the report's Keras-style table, although the
    # BatchNorm after it makes it redundant; the parameter counts below include it.
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), activation()]


def _dense_head(cin: int, hidden: int, fc_dropout: float, num_classes: int, activation: Activation) -> list[nn.Module]:
    # Activation before BatchNorm1d, in the order of report 000 Table 1.
    return [
        nn.Linear(cin, hidden),
        activation(),
        nn.BatchNorm1d(hidden),
        nn.Dropout(fc_dropout),
        nn.Linear(hidden, num_classes),
    ]


@register_model
def baseline_cnn(
    *, activation: Activation = nn.ReLU, num_classes: int = 10, dropout: float = 0.25, fc_dropout: float = 0.5
) -> nn.Module:
    """The baseline CNN of report 000, Table 1 (four conv+BN layers, a 256-unit dense layer)."""
    layers = [
        *_conv_bn_act(3, 32, activation), nn.MaxPool2d(2),  # 16x16
        *_conv_bn_act(32, 64, activation), nn.MaxPool2d(2), nn.Dropout(dropout),  # 8x8
        *_conv_bn_act(64, 128, activation), nn.MaxPool2d(2),  # 4x4
        *_conv_bn_act(128, 128, activation), nn.Dropout(dropout),
        nn.Flatten(),  # 4*4*128 = 2048
        *_dense_head(4 * 4 * 128, 256, fc_dropout, num_classes, activation),
    ]  # fmt: skip
    return nn.Sequential(*layers)


@register_model
def plain_cnn(
    *,
    activation: Activation = nn.ReLU,
    num_classes: int = 10,
    stem: int = 32,
    widths: Sequence[int] = (64, 128, 128),
    dropout: float = 0.25,
    fc_dropout: float = 0.5,
    hidden: int = 256,
) -> nn.Module:
    """A stem conv, one conv+pool stage per width, global average pool, the baseline's dense head."""
    layers = _conv_bn_act(3, stem, activation)
    cin = stem
    for width in widths:
        layers += [*_conv_bn_act(cin, width, activation), nn.MaxPool2d(2)]
        cin = width
    # One spatial dropout at the end of the trunk, where the baseline puts its last one; the
    # global pool keeps the head's size independent of depth (5 stages still fit 32x32).
    layers += [nn.Dropout(dropout), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    layers += _dense_head(cin, hidden, fc_dropout, num_classes, activation)
    return nn.Sequential(*layers)
