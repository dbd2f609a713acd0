"""The hardware a run asks for is the hardware it gets: device names, GPU masks for workers, SLURM
tasks, the compose worker, host-to-device copies and `sweeper doctor`. Device masks and choices
are plain data, so the GPU cases are checked here without a GPU."""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from conftest import need
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.cli.sweep import device_list
from sweeper.errors import UserError
from sweeper.sweep import workers
from sweeper.sweep.slurm import task_device
from sweeper.training.device import check_cuda_index, non_blocking, pick_device
from sweeper.training.doctor import Facts, Gpu, advice, describe, has_kernels

ROOT = Path(__file__).resolve().parents[2]


def masks(plan) -> list[str]:
    return [env["CUDA_VISIBLE_DEVICES"] for env, _, _ in plan]


def test_devices_map_through_the_parents_mask():
    # `--devices 0,1` under CUDA_VISIBLE_DEVICES=2,3 means physical GPUs 2 and 3
    plan = workers.assignments(None, [0, 1], "auto", gpu_count=2, environ={"CUDA_VISIBLE_DEVICES": "2,3"})
    assert masks(plan) == ["2", "3"]
    assert all(device == "cuda" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" for env, device, _ in plan)
    uuids = "GPU-1b2f5e6a-0000-0000-0000-000000000001,MIG-4c1e4b1f-0000-0000-0000-000000000002"
    plan = workers.assignments(None, [1], "cuda", gpu_count=2, environ={"CUDA_VISIBLE_DEVICES": uuids})
    assert masks(plan) == [uuids.split(",")[1]], "UUID and MIG entries pass through whole"
    # no parent mask: the numbers are the machine's, in nvidia-smi's (PCI bus) order
    plan = workers.assignments(None, "all", "auto", gpu_count=3, environ={})
    assert masks(plan) == ["0", "1", "2"]
    ordered = workers.assignments(None, [0], "auto", gpu_count=1, environ={"CUDA_DEVICE_ORDER": "FASTEST_FIRST"})
    assert ordered[0][0]["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST", "a parent's own order is kept"
    # more workers than GPUs share them round robin
    assert masks(workers.assignments(4, [0, 1], "auto", gpu_count=2, environ={"CUDA_VISIBLE_DEVICES": "5,7"})) == [
        "5",
        "7",
        "5",
        "7",
    ]


def test_a_mask_ends_where_cuda_stops_reading_it():
    assert workers.visible_gpus({"CUDA_VISIBLE_DEVICES": "3, 1,-1,0"}) == ["3", "1"]
    assert workers.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert workers.visible_gpus({}) is None


def test_gpus_that_are_not_there_are_refused():
    with pytest.raises(UserError, match=r"--devices 0,2 asks for CUDA GPUs \[2\], but torch sees 2"):
        workers.assignments(None, [0, 2], "auto", gpu_count=2, environ={"CUDA_VISIBLE_DEVICES": "4,5"})
    with pytest.raises(UserError, match="--devices all"):
        workers.assignments(None, "all", "auto", gpu_count=0, environ={})
    with pytest.raises(UserError, match="cuda:7.*sees 2 GPU"):
        check_cuda_index(torch.device("cuda:7"), 2)
    check_cuda_index(torch.device("cuda:1"), 2)
    assert device_list("all") == "all" and device_list("0, 2") == [0, 2]


@pytest.mark.skipif(platform.system() == "Darwin", reason="MPS may exist on macOS")
def test_mps_on_a_machine_without_metal_is_a_clear_error():
    with pytest.raises(UserError, match="Apple's GPU"):
        pick_device("mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_clear_error_naming_doctor():
    with pytest.raises(UserError, match="sweeper doctor"):
        pick_device("cuda:7")


def test_cpu_workers_split_the_threads(monkeypatch):
    monkeypatch.setattr(workers, "cpu_count", lambda: 16)
    plan = workers.assignments(3, None, "cpu", gpu_count=0)
    assert [(env["OMP_NUM_THREADS"], device, threads) for env, device, threads in plan] == [("5", "cpu", 5)] * 3


def test_slurm_tasks_with_gpus_train_on_cuda(capsys):
    assert task_device("auto", 1) == "cuda", "a broken driver must fail loudly, not train on one CPU core"
    assert task_device("auto", 0) == "cpu", "a CPU task must not pick up a GPU of the node it was not given"
    assert task_device("cuda", 2) == "cuda"
    assert "1 of its GPUs stay idle" in capsys.readouterr().err
    with pytest.raises(UserError, match="--opt gpus_per_worker=1"):
        task_device("cuda", 0)
    with pytest.raises(UserError, match="--device is 'cpu'"):
        task_device("cpu", 1)


def test_copies_are_asynchronous_towards_cuda_only():
    assert non_blocking(torch.device("cuda")) and non_blocking(torch.device("cuda:1"))
    assert not non_blocking(torch.device("mps")) and not non_blocking(torch.device("cpu"))


def test_the_compose_worker_uses_each_gpu_once(tmp_path):
    need(shutil.which("docker-compose"), "docker-compose not installed (apt-get install docker-compose)")
    env = {**os.environ, "POSTGRES_PASSWORD": "placeholder"}
    out = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    worker = yaml.safe_load(out)["services"]["worker"]
    gpus = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert str(gpus["count"]) == "all" and "replicas" not in worker.get("deploy", {})
    assert worker["shm_size"], "loader workers need more than Docker's 64 MB /dev/shm"
    command = shlex.split(worker["command"]) if isinstance(worker["command"], str) else worker["command"]
    assert command[:2] == ["sweeper", "run"]
    devices = device_list(command[command.index("--devices") + 1])
    # what the container's `sweeper run` starts on a 4-GPU host: one worker per GPU, each its own
    plan = workers.assignments(None, devices, "auto", gpu_count=4, environ={})
    assert masks(plan) == ["0", "1", "2", "3"]
    launch = workers.Launch(
        Path(command[2]), "spec", None, "postgresql://x", "http://mlflow:5000", "auto", 10, tmp_path
    )
    lines = [workers.command(launch, i, device, threads) for i, (_, device, threads) in enumerate(plan)]
    assert all(line[3:5] == ["worker", command[2]] and line[line.index("--device") + 1] == "cuda" for line in lines)


def facts(**changes) -> Facts:
    base = dict(
        python="3.12.1",
        torch="2.14.1+cu130",
        cuda_build="13.0",
        arch_list=("sm_75", "sm_80", "sm_86", "sm_90"),
        driver=None,
        cuda_available=False,
        cuda_error=None,
        cpu="Some CPU",
        cpu_cores=2,
    )
    return Facts(**{**base, **changes})


def test_doctor_warns_when_a_driver_is_there_but_cuda_is_not():
    (warning,) = advice(facts(driver="550.54", cuda_error="RuntimeError: driver too old"))
    assert "550.54" in warning and "CUDA 13.0" in warning and "driver 580 or newer" in warning
    assert "download.pytorch.org/whl/cu" in warning
    (cpu_build,) = advice(facts(driver="550.54", cuda_build=None, arch_list=()))
    assert "CPU-only build" in cpu_build
    assert advice(facts()) == [], "no driver, no GPU: nothing to warn about"


def test_doctor_holds_torch_against_the_supported_range_and_the_driver_against_the_build():
    assert advice(facts(torch="2.13.0+cpu", cuda_build=None, arch_list=(), torch_range=">=2.11")) == []
    (old,) = advice(facts(torch="2.9.1+cu128", cuda_build="12.8", torch_range=">=2.11"))
    assert "torch 2.9.1+cu128 is outside the range" in old and "torch>=2.11" in old
    assert "sweeper supports torch>=2.11" in describe(facts(torch_range=">=2.11"))[1]
    # a CUDA 13 build on a 550 driver: CUDA unusable, and the warning says the driver is the reason
    (unusable,) = advice(facts(driver="550.54.15", torch_range=">=2.11"))
    assert "needs driver 580 or newer (this one is too old)" in unusable
    assert advice(facts(driver="580.65", cuda_available=True, torch_range=">=2.11")) == []


def test_doctor_reads_the_range_from_the_installed_package():
    from importlib.metadata import requires

    from sweeper.training.doctor import in_range, supported_torch

    declared = [r for r in requires("sweeper") or [] if r.startswith("torch>") or r.startswith("torch=")]
    assert supported_torch() and declared == [f"torch{supported_torch()}"]
    assert in_range(torch.__version__, supported_torch() or ""), "the torch the suite runs on is in range"
    assert in_range("2.15.0.dev20261201+cu130", ">=2.11") and not in_range("2.10.0", ">=2.11")


def test_doctor_names_each_gpus_capability_kernels_and_precision():
    volta = Gpu(0, "Tesla V100", (7, 0), 16.0)
    a100 = Gpu(1, "A100", (8, 0), 80.0)
    f = facts(driver="580.1", cuda_available=True, gpus=(volta, a100))
    lines = describe(f)
    assert any("cuda:0: Tesla V100, compute capability 7.0" in line and "auto -> fp16" in line for line in lines)
    assert any("cuda:1: A100" in line and "auto -> bf16" in line for line in lines)
    (warning,) = advice(f)
    assert "sm_70" in warning and "no kernels" in warning
    assert has_kernels((8, 9), ("sm_80", "sm_86")), "a cubin runs on later minors of its major"
    assert has_kernels((12, 0), ("sm_80", "compute_90")), "PTX is compiled for any later GPU"
    assert not has_kernels((6, 1), ("sm_75", "sm_80"))
    assert has_kernels((9, 0), ("sm_80", "sm_90a")) and has_kernels((10, 0), ("compute_90a",)), "suffixed archs"


def test_sweeper_doctor_runs_here():
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert f"torch {torch.__version__}" in result.output and "precision auto -> " in result.output
    assert "--device auto -> " in result.output
