"""Batched augmentation ops against torchvision's functional ops, image by image, on the same parameters;
and the apply path's promise: no tensor off the batch's device, no value read back to the host."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from sweeper.catalogue import AUGMENTS
from sweeper.training import augment_ops as ops
from sweeper.training import augment_policy as policy
from sweeper.training.augment import PAD, SIZE, apply, draw_plan, plan_from_params

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# AutoAugment's signed magnitudes of the blend ops, as the float64 factors 1 + m it passes on
AUTOAUGMENT_FACTORS = [1.0 + s * float(m) for m in torch.linspace(0.0, 0.9, 10) for s in (1, -1)]


def images(n: int = 24, seed: int = 0) -> torch.Tensor:
    """Noise, plus the edge cases: a narrow range, a constant image, two values, grey (r == g == b)."""
    noise = torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    narrow = noise[:4] // 4 + 60
    flat = torch.full((2, 3, 32, 32), 77, dtype=torch.uint8)
    two = torch.where(noise[:2] > 128, 200, 30).to(torch.uint8)
    grey = noise[:2, :1].expand(2, 3, 32, 32).contiguous()
    return torch.cat([noise, narrow, flat, two, grey])


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_matches(ours: torch.Tensor, theirs: torch.Tensor, exact: bool = True, levels: int = 1) -> None:
    """Equal; or (exact=False) differing on at most 0.1% of the values, by at most `levels`."""
    ours = ours.cpu()
    assert ours.dtype == theirs.dtype == torch.uint8 and ours.shape == theirs.shape
    if exact:
        differ = (ours != theirs).nonzero()[:5].tolist()
        assert torch.equal(ours, theirs), f"first differing (image, channel, row, col): {differ}"
        return
    diff = (ours.int() - theirs.int()).abs()
    assert diff.max() <= levels and (diff > 0).float().mean() <= 1e-3


# --- each op against torchvision's functional op, same parameters ----------------------------------
# torchvision runs on the CPU: the expected images are the same whatever device ours run on. Off the
# CPU, blends may round one level apart and a warp may pick the neighbouring pixel, rarely.


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["brightness", "contrast", "saturation"])
def test_colour_blends_match_torchvision(name: str, device: str) -> None:
    x = images()
    n = len(x)
    drawn = torch.empty(n // 2).uniform_(0.0, 2.0, generator=generator(1))  # float32, as ColorJitter's
    auto = torch.tensor(AUTOAUGMENT_FACTORS, dtype=torch.float64)[
        torch.randint(20, (n - n // 2,), generator=generator(2))
    ]
    reference = getattr(TF, f"adjust_{name}")
    for factor, part in ((drawn, x[: n // 2]), (auto, x[n // 2 :])):
        ours = getattr(ops, name)(part.to(device), factor.to(device))
        theirs = torch.stack([reference(img, float(f)) for img, f in zip(part, factor)])
        # exact on the CPU, where addcmul and torchvision's add_(alpha) are both one fused multiply-add
        assert_matches(ours, theirs, exact=device == "cpu")


@pytest.mark.parametrize("device", DEVICES)
def test_sharpness_matches_torchvision(device: str) -> None:
    x = images()
    drawn = torch.empty(len(x) - 20).uniform_(0.0, 2.0, generator=generator(3)).double()
    factor = torch.cat([drawn, torch.tensor(AUTOAUGMENT_FACTORS)])
    ours = ops.sharpness(x.to(device), (1.0 - factor).float().to(device))
    theirs = torch.stack([TF.adjust_sharpness(img, float(f)) for img, f in zip(x, factor)])
    assert_matches(ours, theirs, exact=device == "cpu")


@pytest.mark.parametrize("device", DEVICES)
def test_table_ops_match_torchvision_exactly(device: str) -> None:
    x = images()
    n, on = len(x), x.to(device)
    assert_matches(ops.invert(on), TF.invert(x))
    assert_matches(ops.autocontrast(on), torch.stack([TF.autocontrast(img) for img in x]))
    assert_matches(ops.equalize(on), torch.stack([TF.equalize(img) for img in x]))
    # solarize: drawn thresholds, and AutoAugment's 255 * m (one is 170.0000051: float32 rounds it to 170)
    drawn = torch.empty(n).uniform_(0.0, 256.0, generator=generator(4)).double()
    auto = 255.0 * torch.linspace(1.0, 0.0, 10).double()
    threshold = torch.where(torch.arange(n) % 2 == 0, drawn, auto[torch.arange(n) % 10])
    theirs = torch.stack([TF.solarize(img, float(t)) for img, t in zip(x, threshold)])
    assert_matches(ops.solarize(on, threshold.to(device)), theirs)
    bits = torch.arange(n) % 9
    theirs = torch.stack([TF.posterize(img, int(b)) for img, b in zip(x, bits)])
    assert_matches(ops.posterize(on, bits.to(device)), theirs)


@pytest.mark.parametrize("device", DEVICES)
def test_table_ops_leave_disabled_samples(device: str) -> None:
    x = images()
    enabled = torch.arange(len(x)) % 3 == 0
    for op, reference in ((ops.autocontrast, TF.autocontrast), (ops.equalize, TF.equalize)):
        expected = torch.stack([reference(img) if on else img for img, on in zip(x, enabled)])
        assert_matches(op(x.to(device), enabled.to(device)), expected)


@pytest.mark.parametrize("device", DEVICES)
def test_affine_warp_matches_torchvision(device: str) -> None:
    x = images()
    n = len(x)
    angle = torch.empty(n).uniform_(-15.0, 15.0, generator=generator(5))
    tx, ty = torch.randint(-3, 4, (2, n), generator=generator(6))
    zero = torch.zeros(n)
    theta = ops.affine_theta(angle, (tx, ty), (zero, zero), (0.0, 0.0), SIZE).to(device)
    theirs = [
        TF.affine(img, angle=float(a), translate=[int(i), int(j)], scale=1.0, shear=[0.0, 0.0], fill=0)
        for img, a, i, j in zip(x, angle, tx, ty)
    ]
    assert_matches(ops.warp(x.to(device), theta), torch.stack(theirs), exact=device == "cpu", levels=255)
    # shears about the top-left corner, as AutoAugment's ShearX/Y
    shear = torch.empty(2, n).uniform_(-20.0, 20.0, generator=generator(7))
    theta = ops.affine_theta(zero, (zero, zero), (shear[0], shear[1]), (-16.0, -16.0), SIZE).to(device)
    theirs = [
        TF.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=[float(a), float(b)], center=[0, 0])
        for img, a, b in zip(x, *shear)
    ]
    assert_matches(ops.warp(x.to(device), theta), torch.stack(theirs), exact=device == "cpu", levels=255)


def test_sampling_grids_are_torchvisions_to_the_last_bits() -> None:
    """The grid's three float ops reproduce torchvision's matrix and bmm, for rotations and shears.

    Bit for bit where the CPU's bmm adds unfused (an AMD EPYC host); within two float32 ulps of a
    coordinate where it fuses multiply-adds (MKL on AVX-512/AMX Xeons): far below a pixel's 1/16.
    """
    from torchvision.transforms.v2.functional._geometry import _affine_grid, _get_inverse_affine_matrix

    n = 512
    angle = torch.empty(n).uniform_(-180.0, 180.0, generator=generator(17))
    shift = torch.randint(-5, 6, (2, n), generator=generator(18))
    shear = torch.empty(2, n).uniform_(-30.0, 30.0, generator=generator(19))
    center = (-16.0, -16.0)
    ours = ops._grid(ops.affine_theta(angle, (shift[0], shift[1]), (shear[0], shear[1]), center, SIZE), 32, 32)
    for i in range(n):
        args = (
            float(angle[i]),
            [float(shift[0, i]), float(shift[1, i])],
            1.0,
            [float(shear[0, i]), float(shear[1, i])],
        )
        matrix = torch.tensor(_get_inverse_affine_matrix(list(center), *args)).view(1, 2, 3)
        theirs = _affine_grid(matrix, 32, 32, 32, 32)
        torch.testing.assert_close(ours[i : i + 1], theirs, rtol=0, atol=2 * torch.finfo(torch.float32).eps * 4)


@pytest.mark.parametrize("device", DEVICES)
def test_erase_and_crop_flip_match_torchvision_exactly(device: str) -> None:
    x = images()
    n = len(x)
    h, w = torch.randint(0, 20, (2, n), generator=generator(8))
    i, j = torch.randint(0, 12, (2, n), generator=generator(9))
    zero = torch.zeros(1, 1, 1)
    theirs = [
        TF.erase(img, int(a), int(b), int(c), int(d), zero) if c > 0 and d > 0 else img
        for img, a, b, c, d in zip(x, i, j, h, w)
    ]
    assert_matches(ops.erase(x.to(device), *(v.to(device) for v in (i, j, h, w))), torch.stack(theirs))
    dy, dx = torch.randint(0, 2 * PAD + 1, (2, n), generator=generator(10))
    flip = torch.randint(0, 2, (n,), generator=generator(11))
    theirs = [TF.crop(TF.pad(img, [PAD]), int(a), int(b), 32, 32) for img, a, b in zip(x, dy, dx)]
    theirs = [TF.horizontal_flip(img) if f else img for img, f in zip(theirs, flip)]
    assert_matches(ops.crop_flip(x.to(device), *(v.to(device) for v in (dy, dx, flip)), PAD), torch.stack(theirs))


@pytest.mark.parametrize("device", DEVICES)
def test_every_autoaugment_op_matches_torchvision(device: str) -> None:
    """Each of the policy's 50 ops, at its magnitude, both signs, through the plan, on 6 images each."""
    x = images()[[0, 1, 24, 28, 30, 32]]
    k = len(x)
    variants = [(p, slot, neg) for p in range(25) for slot in (0, 1) for neg in (False, True)]
    n = len(variants) * k
    draws = {"dy": torch.full((n,), PAD), "dx": torch.full((n,), PAD), "flip": torch.zeros(n, dtype=torch.long)}
    draws["policy"] = torch.tensor([p for p, _, _ in variants]).repeat_interleave(k)
    slot = torch.tensor([s for _, s, _ in variants]).repeat_interleave(k)
    draws["applied"] = torch.stack([slot == 0, slot == 1], dim=1)
    draws["negative"] = torch.tensor([neg for *_, neg in variants]).repeat_interleave(k)[:, None].expand(n, 2)
    ours = apply(x.repeat(len(variants), 1, 1, 1).to(device), plan_from_params("autoaugment", n, draws).to(device))
    auto = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    theirs = []
    for p, s, neg in variants:
        op, _, bin_ = policy.CIFAR10_POLICY[p][s]
        m = policy.magnitude(op, bin_, SIZE) * (-1 if neg and op in policy.SIGNED else 1)
        theirs += [auto._apply_image_or_video_transform(img, op, m, auto.interpolation, auto._fill) for img in x]
    assert_matches(ours, torch.stack(theirs), exact=device == "cpu", levels=255)


# --- the apply path: on the batch's device only, never reading back -------------------------------

FORBIDDEN = {"_local_scalar_dense", "item", "nonzero", "masked_select", "_unique2", "unique_dim", "unique_consecutive"}


class Recorder(TorchDispatchMode):
    """Records every op's name and the devices of the tensors it returns."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()
        self.devices: set[torch.device] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.add(func.overloadpacket.__name__)
        self.devices |= {t.device for t in tree_leaves(out) if isinstance(t, torch.Tensor)}
        return out


@pytest.mark.parametrize("preset", AUGMENTS.names)
@pytest.mark.parametrize("device", ["meta", *DEVICES])
def test_apply_stays_on_the_batch_device_without_syncs(preset: str, device: str) -> None:
    """On `meta` any read of a value back to the host raises; every tensor made must be on the batch's device."""
    plan = draw_plan(preset, 96, generator(16), batch_size=64).to(device)
    x = torch.empty(64, 3, 32, 32, dtype=torch.uint8, device=device)
    if device != "meta":
        x = images(52)[:64].repeat(2, 1, 1, 1)[:64].to(device)
    with Recorder() as seen:
        apply(x, plan, 0, 64)  # a planned batch: grouped ops
        apply(x[:30], plan, 64, 94)  # not a planned batch: every family on every sample
    assert seen.devices <= {torch.device(device)}, seen.devices
    assert not seen.ops & FORBIDDEN, seen.ops & FORBIDDEN


def test_reflect_padded_crops_match_f_pad_reflect():
    # altflip pads by mirroring the border, as the 94% record does (zeros would draw a black frame)
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    dy, dx = torch.randint(0, 5, (2, 16), generator=torch.Generator().manual_seed(6))
    flip = torch.arange(16) % 2
    out = ops.crop_flip(x, dy, dx, flip, 2, reflect=True)
    padded = torch.nn.functional.pad(x.float(), (2, 2, 2, 2), mode="reflect").to(torch.uint8)
    for i in range(16):
        window = padded[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
        assert torch.equal(out[i], window.flip(-1) if flip[i] else window), i
