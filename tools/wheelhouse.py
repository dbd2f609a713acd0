"""Download every dependency of sweeper except torch and torchvision into one folder, for an offline install.

On a machine with no network that already has its own torch (a CUDA image, a cluster module):

    pip install --no-index --find-links wheelhouse -e .

The versions are requirements.lock's, so the node runs what CI tested. Runs with any Python that has
pip (no sweeper, no torch needed). `--python` and `--platform` fetch for another machine, e.g.
`--python 3.12 --platform manylinux_2_28_x86_64`; `--without numpy,scipy` leaves out what the target
already has.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The user's own torch stays: these and the CUDA libraries only torch needs are never downloaded
# (nvidia-cu*, nvidia-n*: cuBLAS, NCCL, ...; nvidia-ml-py is sweeper's own, for the GPU metrics).
TORCH_STACK = re.compile(r"^(torch|torchvision|triton|nvidia-[cn][\w.-]*|cuda-[\w.-]+)$")
# Older manylinux tags a wheel for `--platform manylinux_2_28_x86_64` may carry instead (pip matches exactly).
MANYLINUX = ("manylinux_2_27", "manylinux_2_24", "manylinux_2_17", "manylinux2014", "manylinux1")


def _name(requirement: str) -> str:
    """The canonical distribution name of a requirement line ('psycopg[binary]>=3.1' -> 'psycopg')."""
    return re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def runtime_requirements() -> list[str]:
    """pyproject.toml's [project] dependencies, torch and torchvision left out."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pip vendors the same parser
        from pip._vendor import tomli as tomllib  # type: ignore[no-redef]

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if not TORCH_STACK.match(_name(d))]


def lock_constraints() -> list[str]:
    """requirements.lock's pins, the torch stack left out (the target's torch decides those)."""
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#") and not TORCH_STACK.match(_name(line))]


def platforms(platform: str) -> list[str]:
    """The platform tags pip should accept for one requested manylinux tag (itself plus the older ones)."""
    match = re.match(r"(manylinux_\d+_\d+|manylinux\d+)_(\w+)$", platform)
    if not match:
        return [platform]
    return [platform, *(f"{tag}_{match.group(2)}" for tag in MANYLINUX if tag != match.group(1))]


def download(out: Path, python: str | None, platform: str | None, without: set[str]) -> list[Path]:
    """pip download the runtime requirements (and setuptools, to build sweeper itself) into out."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        reqs, cons = Path(tmp) / "requirements.txt", Path(tmp) / "constraints.txt"
        reqs.write_text("\n".join([*runtime_requirements(), "setuptools>=69"]) + "\n")
        cons.write_text("\n".join(lock_constraints()) + "\n")
        cmd = [sys.executable, "-m", "pip", "download", "-q", "-d", str(out), "-r", str(reqs), "-c", str(cons)]
        if python or platform:  # another machine's wheels: binary only, pip cannot build for it
            cmd += ["--only-binary=:all:"]
            cmd += ["--python-version", python] if python else []
            for tag in platforms(platform) if platform else []:
                cmd += ["--platform", tag]
        subprocess.run(cmd, check=True)
    left_out = [f for f in out.iterdir() if _name(f.name.split("-")[0]) in without]
    for f in left_out:
        f.unlink()
    return sorted(out.iterdir())


def main() -> None:
    """Parse the arguments, download, and say the folder's size and how to install from it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "wheelhouse")
    parser.add_argument("--python", help="target Python version, e.g. 3.12 (default: this one)")
    parser.add_argument("--platform", help="target platform tag, e.g. manylinux_2_28_x86_64 (default: this one)")
    parser.add_argument("--without", default="", help="comma-separated packages the target already has")
    args = parser.parse_args()
    without = {_name(n) for n in args.without.split(",") if n.strip()}
    files = download(args.out, args.python, args.platform, without)
    size = sum(f.stat().st_size for f in files)
    print(f"{args.out}: {len(files)} files, {size / 2**20:.1f} MiB (torch and torchvision not included)")
    if without:
        print(f"left out (the target has them): {', '.join(sorted(without))}")
    print(f"install beside the target's torch: pip install --no-index --find-links {args.out} -e .")


if __name__ == "__main__":
    main()
