"""Installing sweeper beside a torch the user already has: pip must keep it, and the lock must pin what make uses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCH_STACK = re.compile(r"^(torch|torchvision)==")


def fake_distribution(site: Path, name: str, version: str) -> None:
    """An installed distribution as pip sees one: its metadata (the code stays the suite's torch)."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text("")


@pytest.fixture
def venv_with_own_torch(tmp_path: Path) -> Path:
    """A venv that has torch 2.11.0 and torchvision 0.26.0 (a CUDA image's), and sees the suite's other packages.

    The other packages come through a .pth line, so pip finds every dependency but torch already
    installed and needs no index: what it would change is exactly what sweeper's requirements force.
    """
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "suite.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    fake_distribution(site, "torch", "2.11.0")
    fake_distribution(site, "torchvision", "0.26.0")
    return python


def metadata_wheel(folder: Path) -> Path:
    """sweeper as pip resolves it: a wheel carrying pyproject's name, version and requirements.

    Built here rather than by the build backend, so the test needs no setuptools of a given age (a venv's
    bundled one has no bdist_wheel) and no index: what pip decides comes from the requirements alone.
    """
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name, version = project["name"], project["version"]
    info = f"{name}-{version}.dist-info"
    requires = "".join(f"Requires-Dist: {line}\n" for line in project["dependencies"])
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as whl:
        whl.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{requires}")
        whl.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        whl.writestr(f"{info}/RECORD", "")
    return wheel


def test_installing_sweeper_keeps_the_torch_that_is_there(venv_with_own_torch: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    # no index, no find-links, no config: nothing but the environment decides
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}
    done = subprocess.run(
        [venv_with_own_torch, "-m", "pip", "install", "--dry-run", "--no-index"]
        + ["--report", str(report), "-q", str(metadata_wheel(tmp_path))],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, f"pip would not install sweeper beside torch 2.11:\n{done.stderr[-2000:]}"
    installs = [i["metadata"]["name"] for i in json.loads(report.read_text())["install"]]
    assert installs == ["sweeper"], f"installing sweeper would also install {installs}"
    version = subprocess.run(
        [venv_with_own_torch, "-c", "import importlib.metadata as m; print(m.version('torch'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == "2.11.0"


def test_the_lock_pins_what_the_ranges_allow() -> None:
    """requirements.lock pins every dependency exactly, and its torch lies in pyproject's range."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name as canon

    lock = [line for line in (ROOT / "requirements.lock").read_text().splitlines() if line and line[0] != "#"]
    assert lock and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[^=\s]+", line) for line in lock), "exact pins only"
    pins = {canon(Requirement(line).name): Requirement(line) for line in lock}
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [line for group in project["optional-dependencies"].values() for line in group]
    for line in project["dependencies"] + extras:
        req = Requirement(line)
        assert canon(req.name) in pins, f"{req.name} is not in requirements.lock (make lock)"
        pinned = next(iter(pins[canon(req.name)].specifier)).version
        assert req.specifier.contains(pinned, prereleases=True), f"lock's {req.name}=={pinned} is outside {req}"
    assert not any(s.operator == "==" for name in ("torch", "torchvision") for s in _declared(project, name))


def _declared(project: dict, name: str) -> list:
    from packaging.requirements import Requirement

    return [s for line in project["dependencies"] if (r := Requirement(line)).name == name for s in r.specifier]
