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
    """A frozen conv whose filters map PATCHxPATCH patches to whitened coordinates, each with both signs.

    `centred`: the patches' covariance, and a bias that makes the outputs zero-mean; else (the 94%
    record's way) their uncentred second moment, and a random bias that training moves.
    """

    def __init__(self, patch: int = PATCH, centred: bool = True) -> None:
        super().__init__()
        dim = 3 * patch * patch
        # The bias lives outside the conv: with it inside, autograd runs the conv's weight-gradient
        # kernel just to sum the bias gradient, which cost a third of a CPU step.
        self.conv = nn.Conv2d(3, 2 * dim, patch, bias=False)
        self.conv.weight.requires_grad_(False)  # fitted to the data, not learned
        self.centred = centred
        bias = torch.zeros(2 * dim) if centred else torch.empty(2 * dim).uniform_(-(dim**-0.5), dim**-0.5)
        self.bias = nn.Parameter(bias)  # uncentred: a conv bias's default init, U(+-1/sqrt(fan_in))

    @torch.no_grad()
    def fit(self, images: Tensor) -> None:
        """Set the filters to the inverse square root of the images' patch covariance (zero-mean outputs)."""
        p = self.conv.kernel_size[0]
        # On the CPU in float64, whatever the model's device: MPS has neither float64 nor `eigh`,
        # and a 12x12 eigendecomposition gains nothing from a GPU.
        images = images.detach().to("cpu", torch.float64)
        # rows ordered (channel, dy, dx), as a conv weight flattens
        patches = images.unfold(2, p, 1).unfold(3, p, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 3 * p * p)
        moment = torch.cov(patches.T) if self.centred else patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(moment)
        filters = eigenvectors.T / (eigenvalues + WHITEN_EPS).sqrt()[:, None]
        filters = torch.cat([filters, -filters])  # both signs: the activation after it keeps each half
        self.conv.weight.copy_(filters.view_as(self.conv.weight))  # copy_ casts and moves to the weight
        if self.centred:
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


class _ScaledGrad:
    """A gradient hook multiplying by a constant (a picklable stand-in for a lambda)."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def __call__(self, grad: Tensor) -> Tensor:
        return grad * self.scale


def _bn(channels: int, eps: float, bias_lr_scale: float) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels, eps=eps, momentum=BN_MOMENTUM)
    bn.weight.requires_grad_(False)  # a learned scale adds nothing the next layer cannot learn
    # A larger learning rate for the biases alone, without a parameter group in the optimizer
    # config: SGD's step on a scaled gradient is the step of a scaled learning rate. (With
    # `optimizer.groups.norm_biases` the group's lr says it instead: bias_lr_scale 1.)
    if bias_lr_scale != 1:
        bn.bias.register_hook(_ScaledGrad(bias_lr_scale))
    return bn


def _block(cin: int, cout: int, activation: Activation, eps: float, scale: float) -> nn.Sequential:
    return nn.Sequential(
        _conv(cin, cout), nn.MaxPool2d(2), _bn(cout, eps, scale), activation(),
        _conv(cout, cout), _bn(cout, eps, scale), activation(),
    )  # fmt: skip


class FastNet(nn.Module):
    """Patch whitening, one block per width, global max-pool, scaled linear head.

    `head`: "ninth" scales the logits of a default-initialised head by 1/9; "unit" (the 94% record's)
    gives the head unit-std weights and divides by the width: the same function at init, another
    parametrisation for the optimizer.
    """

    def __init__(
        self, widths: Sequence[int], activation: Activation, num_classes: int, *,
        whitening: str = "centred", bn_eps: float = 1e-5, head: str = "ninth", bias_lr_scale: float = BIAS_LR_SCALE,
    ) -> None:  # fmt: skip
        super().__init__()
        self.whiten = PatchWhitening(centred=whitening == "centred")
        self.act = activation()
        blocks, cin = [], self.whiten.conv.out_channels
        for width in widths:
            blocks.append(_block(cin, width, activation, bn_eps, bias_lr_scale))
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, num_classes, bias=False)
        self.logit_scale = LOGIT_SCALE if head == "ninth" else 1 / cin
        if head == "unit":
            with torch.no_grad():
                self.head.weight.div_(self.head.weight.std())

    def fit_data(self, images: Tensor) -> None:
        """Fit the whitening layer to a sample of normalised training images (the trainer's setup hook)."""
        self.whiten.fit(images)

    def param_groups(self) -> dict[str, list[Tensor]]:
        """The parameters by role, for `optimizer.groups`: conv filters, the head, BatchNorm biases, the whitening bias."""
        convs: list[Tensor] = [m.weight for m in self.blocks.modules() if isinstance(m, nn.Conv2d)]
        biases: list[Tensor] = [m.bias for m in self.blocks.modules() if isinstance(m, nn.BatchNorm2d)]
        return {"filters": convs, "head": [self.head.weight], "norm_biases": biases, "whiten_bias": [self.whiten.bias]}

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of normalised images."""
        x = self.blocks(self.act(self.whiten(x)))
        # a global max as a reduction: AdaptiveMaxPool2d's CUDA backward refuses deterministic mode
        return self.head(x.amax(dim=(2, 3))) * self.logit_scale


@register_model
def fast_net(
    *,
    activation: Activation = nn.GELU,
    num_classes: int = 10,
    widths: Sequence[int] = (64, 256, 256),
    whitening: str = "centred",
    bn_eps: float = 1e-5,
    head: str = "ninth",
    bias_lr_scale: float = BIAS_LR_SCALE,
) -> nn.Module:
    """The `fast` recipe's network (experiments/fast.yaml), tuned for time to accuracy."""
    return FastNet(
        list(widths),
        activation,
        num_classes,
        whitening=whitening,
        bn_eps=bn_eps,
        head=head,
        bias_lr_scale=bias_lr_scale,
    )
