"""Augmentation presets: exact crop/flip geometry, per-sample randomness, seeding, normalisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sweeper.errors import UserError
from sweeper.training.augment import AUGMENTS, NORMALIZE, PAD, augment_batch, normalize

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


@pytest.mark.parametrize("preset", AUGMENTS)
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
    for preset in AUGMENTS:
        assert augment_batch(x, preset).is_contiguous(memory_format=torch.channels_last)
    assert normalize(x, "cifar10").is_contiguous(memory_format=torch.channels_last)


def test_normalize_known_pixels() -> None:
    x = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    half = normalize(x, "half")
    assert half.dtype == torch.float32 and half.shape == x.shape
    assert torch.allclose(half[0, :, 0, 0], torch.tensor([-1.0, 1.0, 51 / 255 * 2 - 1]))
    mean, std = NORMALIZE["cifar10"]
    expected = torch.tensor([(v / 255 - m) / s for v, m, s in zip((0, 255, 51), mean, std)])
    assert torch.allclose(normalize(x, "cifar10")[1, :, 1, 1], expected, atol=1e-6)
    assert normalize(x, "half", torch.bfloat16).dtype == torch.bfloat16


def test_unknown_presets_are_user_errors() -> None:
    with pytest.raises(UserError, match="weak"):
        augment_batch(noise_batch(2), "medium")
    with pytest.raises(UserError, match="cifar10"):
        normalize(noise_batch(2), "imagenet")
