"""Augmentation presets: exact crop/flip geometry, per-sample randomness, seeding, plans, normalisation,
and each preset against torchvision's own pipeline on the same draws."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from sweeper.catalogue import AUGMENTS, NORMALIZATIONS
from sweeper.errors import UserError
from sweeper.training import augment_policy as policy
from sweeper.training.augment import (
    PAD,
    SIZE,
    _normalize_constants,
    apply,
    augment_batch,
    draw_params,
    draw_plan,
    normalize,
    plan_from_params,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def noise_batch(b: int = 64, seed: int = 0) -> torch.Tensor:
    # random pixels make every 32x32 window of the padded image unique, so the offset is recoverable
    return torch.randint(1, 256, (b, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def recover(original: torch.Tensor, out: torch.Tensor) -> list[tuple[int, int, bool]]:
    """All (dy, dx, flipped) whose window of the zero-padded original equals out exactly."""
    padded = F.pad(original, (PAD, PAD, PAD, PAD))
    hits = []
    for dy in range(2 * PAD + 1):
        for dx in range(2 * PAD + 1):
            window = padded[:, dy : dy + 32, dx : dx + 32]
            hits += [(dy, dx, False)] * torch.equal(window, out) + [(dy, dx, True)] * torch.equal(window.flip(-1), out)
    return hits


@pytest.mark.parametrize("device", DEVICES)
def test_weak_is_a_padded_window_per_sample(device: str) -> None:
    x = noise_batch().to(device)
    out = augment_batch(x, "weak", torch.Generator().manual_seed(1))
    found = []
    for original, augmented in zip(x.cpu(), out.cpu()):
        hits = recover(original, augmented)
        assert len(hits) == 1, hits
        found.append(hits[0])
    # per-sample randomness: many different offsets, and both flipped and unflipped samples
    assert len({(dy, dx) for dy, dx, _ in found}) > 10
    assert {flip for _, _, flip in found} == {True, False}


def test_translate_shifts_by_at_most_two_pixels() -> None:
    x = noise_batch()
    out = augment_batch(x, "translate", torch.Generator().manual_seed(3))
    found = [hits[0] for o, a in zip(x, out) if len(hits := recover(o, a)) == 1]
    assert len(found) == len(x), "every sample is one window of the padded image"
    shifts = {(dy - PAD, dx - PAD) for dy, dx, _ in found}
    assert max(max(abs(dy), abs(dx)) for dy, dx in shifts) == 2 and len(shifts) > 10
    assert {flip for _, _, flip in found} == {True, False}


def test_flip_is_an_exact_mirror() -> None:
    x = noise_batch(256)
    out = augment_batch(x, "weak", torch.Generator().manual_seed(2))
    centred = [i for i, (o, a) in enumerate(zip(x, out)) if recover(o, a)[0][:2] == (PAD, PAD)]
    assert centred  # 256 samples, 1/81 each: a centred crop is all but certain
    for i in centred:
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))


@pytest.mark.parametrize("preset", AUGMENTS.names)
@pytest.mark.parametrize("device", DEVICES)
def test_dtype_shape_device_and_seeding(preset: str, device: str) -> None:
    x = noise_batch(16).to(device)
    first = augment_batch(x, preset, torch.Generator().manual_seed(3))
    again = augment_batch(x, preset, torch.Generator().manual_seed(3))
    assert first.dtype == torch.uint8 and first.shape == x.shape and first.device == x.device
    assert torch.equal(first, again)
    if preset != "none":
        other = augment_batch(x, preset, torch.Generator().manual_seed(4))
        assert not torch.equal(first, other)


@pytest.mark.parametrize("preset", ["weak", "autoaugment", "strong"])
def test_generator_leaves_global_rng_alone(preset: str) -> None:
    state = torch.get_rng_state()
    augment_batch(noise_batch(8), preset, torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.get_rng_state())


def test_consecutive_batches_differ() -> None:
    g = torch.Generator().manual_seed(0)
    x = noise_batch(8)
    assert not torch.equal(augment_batch(x, "strong", g), augment_batch(x, "strong", g))


def test_none_returns_input_unchanged() -> None:
    x = noise_batch(4)
    assert augment_batch(x, "none") is x


def test_channels_last_is_kept() -> None:
    x = noise_batch(8).contiguous(memory_format=torch.channels_last)
    for preset in AUGMENTS.names:
        assert augment_batch(x, preset).is_contiguous(memory_format=torch.channels_last)
    assert normalize(x, "cifar10").is_contiguous(memory_format=torch.channels_last)


def test_normalize_known_pixels() -> None:
    x = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    half = normalize(x, "half")
    assert half.dtype == torch.float32 and half.shape == x.shape
    assert torch.allclose(half[0, :, 0, 0], torch.tensor([-1.0, 1.0, 51 / 255 * 2 - 1]))
    mean, std = NORMALIZATIONS.get("cifar10").mean, NORMALIZATIONS.get("cifar10").std
    expected = torch.tensor([(v / 255 - m) / s for v, m, s in zip((0, 255, 51), mean, std)])
    assert torch.allclose(normalize(x, "cifar10")[1, :, 1, 1], expected, atol=1e-6)
    assert normalize(x, "half", torch.bfloat16).dtype == torch.bfloat16


def test_unknown_presets_are_user_errors() -> None:
    with pytest.raises(UserError, match="weak"):
        augment_batch(noise_batch(2), "medium")
    with pytest.raises(UserError, match="cifar10"):
        normalize(noise_batch(2), "imagenet")


# --- plans: drawn once per epoch, sliced per batch ----------------------------------------------


@pytest.mark.parametrize("preset", AUGMENTS.names)
def test_a_plan_gives_the_same_images_in_any_batches(preset: str) -> None:
    x = noise_batch(100)
    plan = draw_plan(preset, 100, torch.Generator().manual_seed(5), batch_size=32)
    planned = torch.cat([apply(x[a : a + 32], plan, a, min(a + 32, 100)) for a in range(0, 100, 32)])
    uneven = torch.cat([apply(x[a : a + 25], plan, a, a + 25) for a in range(0, 100, 25)])  # ungrouped path
    assert torch.equal(planned, uneven) and torch.equal(planned, apply(x, plan))
    # the grouping is bookkeeping: the same draws planned for another batch size give the same images
    other = draw_plan(preset, 100, torch.Generator().manual_seed(5), batch_size=50)
    assert torch.equal(planned, torch.cat([apply(x[:50], other, 0, 50), apply(x[50:], other, 50, 100)]))


class CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("preset", ["weak", "autoaugment", "strong"])
def test_a_plan_moves_in_one_copy(preset: str) -> None:
    plan = draw_plan(preset, 1000, torch.Generator().manual_seed(0), batch_size=64)
    with CountOps() as seen:
        moved = plan.to("meta")
    assert seen.names == ["_to_copy"] and moved.device == torch.device("meta")


def test_apply_refuses_a_plan_elsewhere_or_a_wrong_slice() -> None:
    plan = draw_plan("weak", 10, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="meta"):
        apply(noise_batch(10), plan.to("meta"))
    with pytest.raises(ValueError, match="outside"):
        apply(noise_batch(4), plan, 8, 12)
    with pytest.raises(ValueError, match="uint8"):
        apply(noise_batch(4), plan, 0, 5)
    with pytest.raises(ValueError, match="32x32"):
        apply(noise_batch(4)[..., :24, :24], plan, 0, 4)


@pytest.mark.parametrize("preset", AUGMENTS.names)
def test_other_image_sizes_draw_their_own_plans(preset: str) -> None:
    x = noise_batch(8)[..., :24, :28].contiguous()
    out = augment_batch(x, preset, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8


def test_autoaugment_is_torchvisions_policy_on_the_same_draws() -> None:
    """Our batch against AutoAugment's own ops applied image by image after the same crop and flip."""
    n = 96
    x = noise_batch(n, seed=7)
    draws = draw_params("autoaugment", n, torch.Generator().manual_seed(8))
    ours = apply(x, plan_from_params("autoaugment", n, draws, batch_size=40))
    cropped = apply(x, plan_from_params("weak", n, draws))
    auto = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    for i, image in enumerate(cropped):
        for slot, (op, _, bin_) in enumerate(policy.CIFAR10_POLICY[int(draws["policy"][i])]):
            if draws["applied"][i, slot]:
                m = policy.magnitude(op, bin_, SIZE) * (-1 if draws["negative"][i, slot] and op in policy.SIGNED else 1)
                image = auto._apply_image_or_video_transform(image, op, m, auto.interpolation, auto._fill)
        assert torch.equal(ours[i], image), (i, policy.CIFAR10_POLICY[int(draws["policy"][i])], draws["applied"][i])


def test_strong_is_torchvisions_pipeline_on_the_same_draws() -> None:
    """ColorJitter's ops in each sample's order, RandomAffine's warp, RandomErasing's box, image by image."""
    n = 96
    x = noise_batch(n, seed=9)
    d = draw_params("strong", n, torch.Generator().manual_seed(10))
    ours = apply(x, plan_from_params("strong", n, d))
    cropped = apply(x, plan_from_params("weak", n, d))
    jitter = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    zero = torch.zeros(1, 1, 1)
    for i, image in enumerate(cropped):
        for k in d["order"][i].tolist():
            image = jitter[k](image, float(d["factor"][i, k]))
        translate = [int(d["tx"][i]), int(d["ty"][i])]
        image = TF.affine(image, angle=float(d["angle"][i]), translate=translate, scale=1.0, shear=[0.0, 0.0], fill=0)
        if d["h"][i] > 0:
            image = TF.erase(image, int(d["i"][i]), int(d["j"][i]), int(d["h"][i]), int(d["w"][i]), zero)
        assert torch.equal(ours[i], image), i


def test_normalize_builds_its_constants_once_per_device() -> None:
    x = noise_batch(4)
    normalize(x, "cifar10")
    before = _normalize_constants.cache_info()
    normalize(x, "cifar10", torch.bfloat16)
    after = _normalize_constants.cache_info()
    assert after.misses == before.misses and after.hits == before.hits + 1


@pytest.mark.parametrize("preset", AUGMENTS.names)
def test_empty_and_single_image_batches(preset: str) -> None:
    for n in (0, 1):
        x = noise_batch(n) if n else torch.zeros(0, 3, 32, 32, dtype=torch.uint8)
        assert augment_batch(x, preset, torch.Generator().manual_seed(0)).shape == x.shape
