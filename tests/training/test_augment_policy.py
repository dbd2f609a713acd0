"""The drawn augmentation parameters against torchvision's own sampling: AutoAugment's policy, and the
`strong` preset's ColorJitter, RandomAffine and RandomErasing; and proof that the checks have power."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from scipy import stats
from torchvision.transforms import v2

from sweeper.training import augment_policy as policy
from sweeper.training.augment import SIZE, draw_params


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def two_sample_chi2(ours: Counter, theirs: Counter) -> float:
    """p-value that two samples of categories come from one distribution."""
    keys = sorted(set(ours) | set(theirs), key=str)
    return stats.chi2_contingency([[ours[k] for k in keys], [theirs[k] for k in keys]])[1]


@pytest.fixture(scope="module")
def torchvision_autoaugment() -> dict[str, Counter]:
    """AutoAugment(CIFAR10)'s own sampling, 6000 images: the (op, signed magnitude) applied, ops per image."""
    auto = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    applied: list[list[tuple[str, float]]] = []

    def record(image, op, m, *args, **kwargs):
        applied[-1].append((op, math.copysign(1, m) * round(abs(m), 4)))  # copysign: Color's -0.0 counts as signed
        return image

    auto._apply_image_or_video_transform = record
    image = torch.zeros(3, 32, 32, dtype=torch.uint8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for _ in range(6000):
            applied.append([])
            auto(image)
    return {"ops": Counter(op for ops_ in applied for op in ops_), "count": Counter(len(a) for a in applied)}


def autoaugment_counts(draws: dict[str, torch.Tensor]) -> dict[str, Counter]:
    """Our draws as the same (op, signed magnitude) and ops-per-image counts."""
    keys = []  # for row 4 * policy + 2 * slot + negative
    for pair in policy.CIFAR10_POLICY:
        for op, _, bin_ in pair:
            m = round(policy.magnitude(op, bin_, SIZE), 4)
            keys += [(op, m), (op, -m if op in policy.SIGNED else m)]
    rows = draws["policy"][:, None] * 4 + torch.tensor([0, 2]) + draws["negative"].long()
    found: Counter = Counter()
    for key, count in zip(keys, torch.bincount(rows[draws["applied"]], minlength=len(keys)).tolist()):
        found[key] += count
    return {"ops": found, "count": Counter(draws["applied"].sum(1).tolist())}


def test_autoaugment_policy_is_sampled_as_torchvision_samples_it(torchvision_autoaugment) -> None:
    ours = autoaugment_counts(draw_params("autoaugment", 40000, generator(12)))
    assert set(ours["ops"]) == set(torchvision_autoaugment["ops"])  # every op, magnitude and sign
    for key in ("ops", "count"):
        assert two_sample_chi2(ours[key], torchvision_autoaugment[key]) > 1e-3, key


def test_a_wrong_autoaugment_policy_fails_the_check(torchvision_autoaugment) -> None:
    """The check has power: each op applied with probability 1 - p, or signs never drawn, fail."""
    draws = draw_params("autoaugment", 40000, generator(12))
    inverted = autoaugment_counts(draws | {"applied": ~draws["applied"]})
    unsigned = autoaugment_counts(draws | {"negative": torch.zeros_like(draws["negative"])})
    assert two_sample_chi2(inverted["ops"], torchvision_autoaugment["ops"]) < 1e-6
    assert two_sample_chi2(unsigned["ops"], torchvision_autoaugment["ops"]) < 1e-6


@pytest.fixture(scope="module")
def torchvision_strong() -> dict[str, list]:
    """ColorJitter, RandomAffine and RandomErasing's own `make_params`, 4000 images."""
    jitter = v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2)
    affine = v2.RandomAffine(degrees=15, translate=(0.1, 0.1))
    erasing = v2.RandomErasing(p=0.25, value=0)
    inputs = [torch.zeros(3, 32, 32, dtype=torch.uint8)]
    drawn: dict[str, list] = {key: [] for key in ("order", "b", "c", "s", "angle", "tx", "ty", "erased", "h", "w", "i")}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        for _ in range(4000):
            p = jitter.make_params(inputs)
            drawn["order"].append(tuple(int(k) for k in p["fn_idx"] if k < 3))  # hue is off: the order of the rest
            for key in "bcs":
                drawn[key].append(p[{"b": "brightness", "c": "contrast", "s": "saturation"}[key] + "_factor"])
            p = affine.make_params(inputs)
            drawn["angle"].append(p["angle"])
            drawn["tx"].append(p["translate"][0]), drawn["ty"].append(p["translate"][1])
            coin = bool(torch.rand(1) < erasing.p)  # RandomErasing's own coin, then its box
            p = erasing.make_params(inputs)
            drawn["erased"].append(coin and p["v"] is not None)
            if drawn["erased"][-1]:
                drawn["h"].append(p["h"]), drawn["w"].append(p["w"]), drawn["i"].append(p["i"])
    return drawn


def strong_mismatches(d: dict[str, torch.Tensor], theirs: dict[str, list]) -> list[str]:
    """The parameters whose sample differs from torchvision's (p < 1e-3)."""
    erased = d["h"] > 0
    p = {"order": two_sample_chi2(Counter(tuple(o) for o in d["order"].tolist()), Counter(theirs["order"]))}
    p |= {key: stats.ks_2samp(d["factor"][:, k].numpy(), theirs[key]).pvalue for k, key in enumerate("bcs")}
    p["angle"] = stats.ks_2samp(d["angle"].numpy(), theirs["angle"]).pvalue
    p |= {key: two_sample_chi2(Counter(d[key].tolist()), Counter(theirs[key])) for key in ("tx", "ty")}
    p["erased"] = two_sample_chi2(Counter(erased.tolist()), Counter(theirs["erased"]))
    p |= {key: stats.ks_2samp(d[key][erased].numpy(), theirs[key]).pvalue for key in "hwi"}
    return [key for key, value in p.items() if value < 1e-3]


def test_strong_parameters_are_sampled_as_torchvision_samples_them(torchvision_strong) -> None:
    d = draw_params("strong", 40000, generator(13))
    assert strong_mismatches(d, torchvision_strong) == []
    assert len(set(tuple(o) for o in d["order"].tolist())) == 6
    assert 0.8 <= d["factor"].min() and d["factor"].max() <= 1.2


def test_wrong_strong_parameters_fail_the_check(torchvision_strong) -> None:
    """The checks have power: factors from 0.75..1.25, a fixed jitter order, boxes 10% smaller, all fail."""
    d = draw_params("strong", 40000, generator(13))
    wide = d | {"factor": (d["factor"] - 1) * 1.25 + 1}
    fixed = d | {"order": torch.arange(3).expand(40000, 3)}
    small = d | {"h": (d["h"] * 0.9).round().long(), "w": (d["w"] * 0.9).round().long()}
    assert set(strong_mismatches(wide, torchvision_strong)) == {"b", "c", "s"}
    assert strong_mismatches(fixed, torchvision_strong) == ["order"]
    assert {"h", "w"} <= set(strong_mismatches(small, torchvision_strong))
