"""Per-step curves of several runs -> bands (lowest and highest value per step), as plain arrays.

Report 002 fig. 5 shades, per step, the gap between the lowest and the highest training loss over
the learning rates of one model; Santurkar et al. shade the range of each probe the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

History = list[tuple[int, float]]  # (step, value), as MLflow stores a metric


@dataclass
class Band:
    """Per step, the lowest and highest value over a group's runs, and their median."""

    group: str
    steps: np.ndarray
    low: np.ndarray
    high: np.ndarray
    mid: np.ndarray
    runs: int


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (shorter at the start), so a noisy per-step loss reads as a curve."""
    if window <= 1 or len(values) == 0:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(idx - window, 0)
    return (sums[idx] - sums[start]) / (idx - start)


def _matrix(histories: list[History], steps: np.ndarray, window: int) -> np.ndarray:
    """[runs, steps] with NaN where a run has no value (a run that stopped early)."""
    out = np.full((len(histories), len(steps)), np.nan)
    where = {s: i for i, s in enumerate(steps)}
    for r, history in enumerate(histories):
        if not history:
            continue
        hs, hv = zip(*sorted(history))
        out[r, [where[s] for s in hs]] = smooth(np.asarray(hv, dtype=float), window)
    return out


def band(group: str, lows: list[History], highs: list[History] | None = None, window: int = 1) -> Band:
    """The band of a group: min over runs of `lows`, max over runs of `highs` (default: the same curves)."""
    highs = lows if highs is None else highs
    steps = np.array(sorted({s for h in (*lows, *highs) for s, _ in h}), dtype=int)
    lo, hi = _matrix(lows, steps, window), _matrix(highs, steps, window)
    keep = ~(np.isnan(lo).all(0) | np.isnan(hi).all(0))
    lo, hi, steps = lo[:, keep], hi[:, keep], steps[keep]
    mid = np.nanmedian(np.concatenate([lo, hi]), axis=0) if len(steps) else np.array([])
    return Band(group, steps, np.nanmin(lo, axis=0), np.nanmax(hi, axis=0), mid, runs=len(lows))
