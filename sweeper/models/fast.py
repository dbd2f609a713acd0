"""The `fast` recipe's network, built from the ideas of the fast CIFAR-10 training records.

- The first layer whitens 2x2 patches: its filters are fitted once to the training images
  (`fit_data`, called by the trainer before the first epoch) and then frozen, so the first
  trained layer sees decorrelated, unit-variance inputs from step one.
- Three blocks of conv -> max-pool -> BatchNorm -> act -> conv -> BatchNorm -> act; the pool
  comes before the BatchNorm so that both run on a quarter of the pixels.
- Convs start as identities on the channels they carry over (Dirac init), so the untrained net
  passes its input through and early steps are not spent undoing random mixing.
- A global max-pool and a bias-free linear head whose logits are scaled down.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sweeper.models.activations import Activation
from sweeper.models.registry import register_model

PATCH = 2
WHITEN_EPS = 5e-4  # keeps the near-empty directions of the patch covariance from being blown up
BN_MOMENTUM = 0.4  # running statistics that keep up with a run of a few epochs
LOGIT_SCALE = 1 / 9  # small initial logits: the softmax starts soft instead of saturating on noise
BIAS_LR_SCALE = 64.0  # BatchNorm biases (the units' thresholds) learn this much faster than weights


class PatchWhitening(nn.Module):
    """A frozen conv whose filters map PATCHxPATCH patches to whitened coordinates, each with both signs."""

    def __init__(self, patch: int = PATCH) -> None:
        super().__init__()
        dim = 3 * patch * patch
        # The bias lives outside the conv: with it inside, autograd runs the conv's weight-gradient
        # kernel just to sum the bias gradient, which cost a third of a CPU step.
        self.conv = nn.Conv2d(3, 2 * dim, patch, bias=False)
        self.conv.weight.requires_grad_(False)  # fitted to the data, not learned
        self.bias = nn.Parameter(torch.zeros(2 * dim))

    @torch.no_grad()
    def fit(self, images: Tensor) -> None:
        """Set the filters to the inverse square root of the images' patch covariance (zero-mean outputs)."""
        p = self.conv.kernel_size[0]
        # On the CPU in float64, whatever the model's device: MPS has neither float64 nor `eigh`,
        # and a 12x12 eigendecomposition gains nothing from a GPU.
        images = images.detach().to("cpu", torch.float64)
        # rows ordered (channel, dy, dx), as a conv weight flattens
        patches = images.unfold(2, p, 1).unfold(3, p, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 3 * p * p)
        eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(patches.T))
        filters = eigenvectors.T / (eigenvalues + WHITEN_EPS).sqrt()[:, None]
        filters = torch.cat([filters, -filters])  # both signs: the activation after it keeps each half
        self.conv.weight.copy_(filters.view_as(self.conv.weight))  # copy_ casts and moves to the weight
        self.bias.copy_(-(filters @ patches.mean(0)))

    def forward(self, x: Tensor) -> Tensor:
        """Whitened patch coordinates, one pixel smaller on each side than the input."""
        out = self.conv(x)
        return out + self.bias.to(out.dtype).view(1, -1, 1, 1)  # stay in autocast's dtype


def _conv(cin: int, cout: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)  # the BatchNorm after it has the bias
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(cin, cout), : min(cin, cout)])
    return conv


def _scale_bias_grad(grad: Tensor) -> Tensor:
    return grad * BIAS_LR_SCALE


def _bn(channels: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)
    bn.weight.requires_grad_(False)  # a learned scale adds nothing the next layer cannot learn
    # A larger learning rate for the biases alone, without a parameter group in the optimizer
    # config: SGD's step on a scaled gradient is the step of a scaled learning rate.
    bn.bias.register_hook(_scale_bias_grad)
    return bn


def _block(cin: int, cout: int, activation: Activation) -> nn.Sequential:
    return nn.Sequential(
        _conv(cin, cout), nn.MaxPool2d(2), _bn(cout), activation(),
        _conv(cout, cout), _bn(cout), activation(),
    )  # fmt: skip


class FastNet(nn.Module):
    """Patch whitening, one block per width, global max-pool, scaled linear head."""

    def __init__(self, widths: Sequence[int], activation: Activation, num_classes: int) -> None:
        super().__init__()
        self.whiten = PatchWhitening()
        self.act = activation()
        blocks, cin = [], self.whiten.conv.out_channels
        for width in widths:
            blocks.append(_block(cin, width, activation))
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(cin, num_classes, bias=False)

    def fit_data(self, images: Tensor) -> None:
        """Fit the whitening layer to a sample of normalised training images (the trainer's setup hook)."""
        self.whiten.fit(images)

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of normalised images."""
        x = self.blocks(self.act(self.whiten(x)))
        return self.head(torch.flatten(self.pool(x), 1)) * LOGIT_SCALE


@register_model
def fast_net(
    *, activation: Activation = nn.GELU, num_classes: int = 10, widths: Sequence[int] = (64, 256, 256)
) -> nn.Module:
    """The `fast` recipe's network (experiments/fast.yaml), tuned for time to accuracy."""
    return FastNet(list(widths), activation, num_classes)
