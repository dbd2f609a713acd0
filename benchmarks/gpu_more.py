"""benchmarks/gpu_check.py's checks of the GPU path that issue 33 added: the precision against a table of
known GPUs, the syncs of every precision and augmentation, large networks' peak memory, compile, and
packing several workers on one GPU. Each returns (name, ok, detail) lines; on a CPU each stays short
or says why it is skipped.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from sweeper.catalogue import OPTIMIZERS
from sweeper.schema.config import TrainConfig
from sweeper.schema.spec import expand, load_spec
from sweeper.training import memory
from sweeper.training.batches import epoch_batches
from sweeper.training.data import make_splits, synthetic
from sweeper.training.device import input_format, synchronize
from sweeper.training.precision import pick_precision, tf32_enabled
from sweeper.training.train import setup, train, train_step

ROOT = Path(__file__).resolve().parents[1]
Check = tuple[str, bool, str]

# What NVIDIA's datasheets say, written independently of the code's rule (capability >= 8.0):
# (name fragment, compute capability, bf16 in hardware, TF32 in hardware).
KNOWN_GPUS = [
    ("P100", (6, 0), False, False),
    ("V100", (7, 0), False, False),
    ("T4", (7, 5), False, False),
    ("RTX 2080", (7, 5), False, False),
    ("A100", (8, 0), True, True),
    ("A30", (8, 0), True, True),
    ("A10", (8, 6), True, True),
    ("RTX 3090", (8, 6), True, True),
    ("A40", (8, 6), True, True),
    ("L4", (8, 9), True, True),
    ("L40", (8, 9), True, True),
    ("RTX 4090", (8, 9), True, True),
    ("H100", (9, 0), True, True),
    ("H200", (9, 0), True, True),
    ("GH200", (9, 0), True, True),
    ("B200", (10, 0), True, True),
]


def known_gpu(name: str) -> tuple[str, tuple[int, int], bool, bool] | None:
    """The table's entry for a device name (the longest matching fragment), None when the GPU is not in it."""
    hits = [entry for entry in KNOWN_GPUS if entry[0].lower() in name.lower()]
    return max(hits, key=lambda e: len(e[0])) if hits else None


def check_precision_table(device: torch.device) -> Check:
    """`auto` picks bf16 exactly where the table says the GPU has it; `sweeper.tf32` says on exactly where it has TF32."""
    if device.type != "cuda":
        return "precision vs known GPUs", True, f"skipped on {device.type} (the table lists NVIDIA GPUs)"
    name, capability = torch.cuda.get_device_name(device), torch.cuda.get_device_capability(device)
    entry = known_gpu(name)
    if entry is None:
        return "precision vs known GPUs", True, f"{name} ({capability}) is not in the table: add it"
    _, table_cap, bf16, tf32 = entry
    auto = pick_precision("auto", device)
    ok = capability == table_cap and (auto == "bf16") == bf16 and tf32_enabled("tf32", device) == tf32
    detail = (
        f"{name}: capability {capability} (table {table_cap}), auto -> {auto} (table: bf16 {'yes' if bf16 else 'no'}), "
        f"tf32 tag {'on' if tf32_enabled('tf32', device) else 'off'} (table: {'yes' if tf32 else 'no'})"
    )
    return "precision vs known GPUs", ok, detail


def count_syncs(cfg: TrainConfig, device: torch.device, pool: tuple, precision: str, steps: int = 3) -> list[str]:
    """The host-device syncs of `steps` training steps after a warm-up one (torch.cuda's sync debugger)."""
    d = cfg.data
    data = make_splits(*pool, val_size=d.val_size, train_size=d.train_size, test_size=d.test_size, seed=0)
    n = len(data.train.labels) // cfg.data.batch_size
    train_x, train_y = data.train.images.to(device), data.train.labels.to(device)
    parts = setup(cfg, train_x, device, precision, n)
    batches = epoch_batches(cfg, train_x, train_y, torch.Generator().manual_seed(0), n, input_format(cfg, device))
    x, y = next(batches)
    train_step(parts, x, y, device, precision, False)  # kernels, cuDNN autotuning
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for x, y in itertools.islice(batches, steps):
                train_step(parts, x, y, device, precision, False)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]


def check_syncs(device: torch.device, pool: tuple, configs: dict[str, TrainConfig]) -> list[Check]:
    """Each config in bf16 and in forced fp16: no sync a step, except fp16's one with an optimizer without a fused
    kernel (GradScaler reads found_inf back); deterministic mode's syncs are counted and printed."""
    if device.type != "cuda":
        return [("syncs per step", True, "skipped off CUDA (tests/training/test_step_path.py checks the data path)")]
    out = []
    for (name, cfg), precision in itertools.product(configs.items(), ("bf16", "fp16")):
        fused = cfg.optimizer.name in OPTIMIZERS and OPTIMIZERS.get(cfg.optimizer.name).fused
        allowed = 0 if precision != "fp16" or fused else 3  # one a step, 3 steps
        try:
            syncs = count_syncs(cfg, device, pool, precision)
        except Exception as exc:  # noqa: BLE001 - report every config
            out.append((f"syncs {name} {precision}", False, f"{type(exc).__name__}: {str(exc)[:200]}"))
            continue
        detail = f"{len(syncs)} syncs in 3 steps (allowed {allowed})" + (f": {syncs[0]}" if syncs else "")
        out.append((f"syncs {name} {precision}", len(syncs) <= allowed, detail))
    cfg = next(iter(configs.values())).model_copy(update={"deterministic": True})
    syncs = count_syncs(cfg, device, pool, "bf16")
    out.append(("syncs deterministic (counted, documented)", True, f"{len(syncs)} syncs in 3 steps"))
    return out


def check_big_models(device: torch.device, pool: tuple) -> list[Check]:
    """ResNet-50 and DenseNet-201 train a few steps at batch 256, peak memory against the estimate (CPU: built, not stepped)."""
    gpu = device.type == "cuda"
    batch, steps = (256, 3) if gpu else (2, 1)
    out = []
    for model in ("resnet50", "densenet201"):
        cfg = TrainConfig.model_validate(
            {
                "model": {"name": model},
                "data": {"augment": "weak", "batch_size": batch, "val_size": 0, "train_size": max(64, batch * steps)},
                "optimizer": {"name": "adam", "lr": 1e-3},
                "epochs": 1,
            }
        )
        precision = pick_precision("auto", device) if gpu else "fp32"
        at_256 = cfg.data.model_copy(update={"batch_size": 256})
        est = memory.estimate(cfg.model_copy(update={"precision": precision if gpu else "auto", "data": at_256}))
        reps = -(-batch * steps // len(pool[0].labels))  # the pool may be smaller than batch x steps
        train_x = pool[0].images.repeat(reps, 1, 1, 1)[: batch * steps].to(device)
        train_y = pool[0].labels.repeat(reps)[: batch * steps].to(device)
        if gpu:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        tick = time.perf_counter()
        try:
            parts = setup(cfg, train_x, device, precision, steps)
            gen = torch.Generator().manual_seed(0)
            for x, y in epoch_batches(cfg, train_x, train_y, gen, steps, input_format(cfg, device), 1):
                if gpu:  # on a CPU the batches are drawn, the steps skipped: a DenseNet-201 step takes many seconds
                    train_step(parts, x, y, device, precision, False)
            synchronize(device)
        except Exception as exc:  # noqa: BLE001 - an OOM here is what the check is for
            out.append((f"{model} at batch {batch}", False, f"{type(exc).__name__}: {str(exc)[:200]}"))
            continue
        seconds = time.perf_counter() - tick
        est_text = est.gib() if est is not None else "no estimate"
        if gpu:
            peak = torch.cuda.max_memory_allocated(device)
            ratio = f", estimate/measured {est.total / peak:.2f}" if est is not None and peak else ""
            detail = f"{precision}, peak {peak / memory.GiB:.2f} GiB allocated, estimate {est_text}{ratio}"
        else:
            detail = f"built and batched in {seconds:.1f} s, steps skipped on CPU; GPU estimate at batch 256 {est_text}"
        out.append((f"{model} at batch {batch}", True, detail))
        del parts
    return out


def check_compile(device: torch.device, pool: tuple) -> Check:
    """`compile: true` trains one small epoch (skipped on CPUs: compiling there takes minutes)."""
    if device.type != "cuda":
        return "compile: true", True, "skipped on CPU (inductor's C++ compile takes minutes here); runs on a GPU"
    spec = load_spec(ROOT / "experiments" / "baseline.yaml")
    base = expand(spec, "quick")[0].config
    data_cfg = base.data.model_copy(update={"train_size": 4096, "val_size": 256, "test_size": 256})
    cfg = base.model_copy(update={"compile": True, "epochs": 1, "data": data_cfg})
    d = cfg.data
    data = make_splits(*pool, val_size=d.val_size, train_size=d.train_size, test_size=d.test_size, seed=0)
    tick = time.perf_counter()
    try:
        result = train(cfg, data, device=device)
    except Exception as exc:  # noqa: BLE001
        return "compile: true", False, f"{type(exc).__name__}: {str(exc)[:200]}"
    h = result.history[0]
    return (
        "compile: true",
        True,
        f"{h['images_per_s']:.0f} images/s (synced), {time.perf_counter() - tick:.0f} s with compile",
    )


# --- packing: cells per hour at 1, 2 and 4 workers on one GPU ------------------------------------

PACK_SECONDS = 2.0  # each worker's timed phase (12 runs of 1-4 workers fit the check's 8 minutes)
PACK_SPECS = {"baseline CNN": "baseline.yaml", "Table 2 ResNet": "activations.yaml"}


def pack_worker(spec_file: str, folder: str, index: int, device_name: str = "cuda") -> None:
    """One packed worker: warm up, wait for the start file, train for PACK_SECONDS, write its images and seconds."""
    device = torch.device(device_name)
    cfg = expand(load_spec(ROOT / "experiments" / spec_file))[0].config
    pool = synthetic(n_train=4096, n_test=64, seed=index)
    precision = pick_precision("auto", device)
    x_all, y_all = pool[0].images.to(device), pool[0].labels.to(device)
    steps = len(y_all) // cfg.data.batch_size
    parts = setup(cfg, x_all, device, precision, steps)
    fmt, gen = input_format(cfg, device), torch.Generator().manual_seed(index)
    batches = itertools.cycle(list(epoch_batches(cfg, x_all, y_all, gen, steps, fmt, 1)))
    for x, y in itertools.islice(batches, 3):
        train_step(parts, x, y, device, precision, False)
    synchronize(device)
    Path(folder, f"ready{index}").touch()
    while not Path(folder, "go").exists():
        time.sleep(0.01)
    images, tick = 0, time.perf_counter()
    while time.perf_counter() - tick < PACK_SECONDS:
        for x, y in itertools.islice(batches, 5):
            train_step(parts, x, y, device, precision, False)
            images += len(y)
        synchronize(device)
    Path(folder, f"done{index}.json").write_text(json.dumps({"images": images, "seconds": time.perf_counter() - tick}))


def _pack_run(spec_file: str, workers: int, env: dict[str, str], device: str = "cuda") -> float:
    """Images/s of `workers` processes training at once on this GPU."""
    with tempfile.TemporaryDirectory() as folder:
        paths = f"sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'benchmarks')!r}]"
        code = f"import sys; {paths}; import gpu_more; gpu_more.pack_worker"
        logs = [Path(folder, f"worker{i}.log") for i in range(workers)]
        procs = []
        for i in range(workers):
            with logs[i].open("w") as log:  # a file, not a pipe: a chatty worker cannot block on a full pipe
                cmd = [sys.executable, "-c", f"{code}({spec_file!r}, {folder!r}, {i}, {device!r})"]
                procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 120
        while sum(Path(folder, f"ready{i}").exists() for i in range(workers)) < workers:
            if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in procs):
                for p in procs:
                    p.kill()
                tail = next((log.read_text()[-300:] for log, p in zip(logs, procs) if p.poll()), "")
                raise RuntimeError(tail or "the workers never got ready")
            time.sleep(0.05)
        Path(folder, "go").touch()
        for p in procs:
            p.wait(timeout=120)
        results = [json.loads(Path(folder, f"done{i}.json").read_text()) for i in range(workers)]
    return sum(r["images"] / r["seconds"] for r in results)


def _start_mps(folder: str) -> dict[str, str] | None:
    """Start an MPS control daemon with its pipes in `folder`; the environment its clients need, or None."""
    if shutil.which("nvidia-cuda-mps-control") is None:
        return None
    env = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": folder, "CUDA_MPS_LOG_DIRECTORY": folder}
    started = subprocess.run(["nvidia-cuda-mps-control", "-d"], env=env, capture_output=True, timeout=30)
    return env if started.returncode == 0 else None


def _stop_mps(env: dict[str, str]) -> None:
    subprocess.run(["nvidia-cuda-mps-control"], input=b"quit\n", env=env, capture_output=True, timeout=30)


def check_packing(device: torch.device) -> list[Check]:
    """Cells per hour (a default-profile cell's training images) at 1, 2 and 4 workers on one GPU, without and with MPS."""
    if device.type != "cuda":
        return [("packing", True, "skipped off CUDA (tests/sweep/test_workers.py checks the masks and claims)")]
    mask = os.environ.get("CUDA_VISIBLE_DEVICES", str(device.index or 0)).split(",")[device.index or 0]
    plain = {**os.environ, "CUDA_VISIBLE_DEVICES": mask}
    out = []
    with tempfile.TemporaryDirectory() as pipes:
        mps = _start_mps(pipes)
        modes = [("no MPS", plain)] + ([("MPS", {**mps, "CUDA_VISIBLE_DEVICES": mask})] if mps else [])
        try:
            for (label, spec_file), (mode, env) in itertools.product(PACK_SPECS.items(), modes):
                cfg = expand(load_spec(ROOT / "experiments" / spec_file))[0].config
                cell_images = cfg.epochs * (50_000 - cfg.data.val_size)
                rates = {}
                try:
                    for workers in (1, 2, 4):
                        rates[workers] = _pack_run(spec_file, workers, env)
                except Exception as exc:  # noqa: BLE001 - report, then go on
                    # a daemon that starts but cannot serve (a container, another MPS server on the GPU) is a skip
                    why = f"{type(exc).__name__}: {str(exc)[:300]}"
                    out.append((f"packing {label}, {mode}", mode == "MPS", why))
                    continue
                per_hour = ", ".join(f"{k} workers {3600 * r / cell_images:.1f}" for k, r in rates.items())
                gain = rates[max(rates)] / rates[1]
                out.append((f"packing {label}, {mode}", True, f"cells/hour: {per_hour} ({gain:.2f}x at 4)"))
        finally:
            if mps:
                _stop_mps(mps)
    if not mps:
        out.append(("packing with MPS", True, "skipped: nvidia-cuda-mps-control is missing or would not start here"))
    return out
