"""The benchmark scripts still run: each one, for a moment, as a user starts it (speed is their business, not ours).

benchmarks/gpu_check.py runs in CI on its own (.ci/run); these are the others that take seconds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sweeper.catalogue import AUGMENTS

pytestmark = pytest.mark.server  # each benchmark script in its own process

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def bench(script: str, *args: str, cwd: Path) -> str:
    out = subprocess.run(
        [sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_augment_speed_prints_every_preset_with_its_ratio(tmp_path):
    text = bench("augment_speed.py", "--seconds", "0.02", "--rounds", "1", cwd=tmp_path)
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[2:]}
    assert set(rows) == set(AUGMENTS.names), text
    assert all(r[-1].endswith("x") for name, r in rows.items() if name != "none"), text


def test_throughput_times_the_usual_loop_sweeper_and_the_ceiling(tmp_path):
    args = ("--steps", "1", "--rounds", "1", "--models", "baseline", "--data-dir", str(tmp_path / "none"))
    text = bench("throughput.py", *args, cwd=tmp_path)
    assert text.startswith("synthetic (no prepared CIFAR-10)"), text
    (summary,) = [line for line in text.splitlines() if line.startswith("baseline:")]
    assert "reference" in summary and "sweeper[auto]" in summary and "of it" in summary, text
