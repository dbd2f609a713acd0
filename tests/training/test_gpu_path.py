"""The GPU path's rules, proven on a CPU: true timings, a cell's own GPU, TF32, numbering, SLURM devices."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import types

import helpers
import pytest
import torch

from sweeper.runs import checkpoints
from sweeper.sweep.slurm import task_device
from sweeper.training import device as D
from sweeper.training import memory
from sweeper.training import train as T
from sweeper.training.data import make_splits
from sweeper.training.precision import native_precisions, tf32_applies
from sweeper.vocab import Tag


@pytest.fixture(scope="module")
def data(synthetic_data):
    return make_splits(*synthetic_data, val_size=50, train_size=200, test_size=100, seed=0)


def test_epoch_clock_stops_after_the_device_finished(data, monkeypatch):
    """A device that finishes its queued work 100 s after Python queued it: the rates must include those 100 s."""
    offset = [0.0]
    syncs = []

    def device_finishes(device):  # stands for torch.cuda.synchronize: the queued steps take 100 s to run
        syncs.append(device)
        offset[0] += 100.0

    monkeypatch.setattr(T, "synchronize", device_finishes)
    monkeypatch.setattr(T, "time", types.SimpleNamespace(perf_counter=lambda: time.perf_counter() + offset[0]))
    result = T.train(helpers.cfg(epochs=2), data, device="cpu")
    assert len(syncs) == 2, "one sync an epoch, never one a step"
    for h in result.history:
        assert h["epoch_time"] >= 100.0
        assert h["images_per_s"] <= 192 / 100.0, "the rate counts the time the device took, not the time to queue"


A100 = D.GpuFacts("NVIDIA A100-SXM4-80GB", "1f2e3d4c-aaaa-bbbb-cccc-000000000001", "0000:3b:00.0", (8, 0), 80 << 30, 3)


def test_gpu_tags_name_the_cells_own_gpu_and_series():
    tags = D.gpu_tags(A100, {"CUDA_VISIBLE_DEVICES": "3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    assert tags[Tag.DEVICE_NAME] == "NVIDIA A100-SXM4-80GB"
    assert tags[Tag.GPU_UUID] == "GPU-1f2e3d4c-aaaa-bbbb-cccc-000000000001", "nvidia-smi's spelling"
    assert tags[Tag.GPU_PCI] == "0000:3b:00.0"
    assert tags[Tag.GPU_MASK] == "3" and tags[Tag.GPU_ORDER] == "PCI_BUS_ID"
    assert tags[Tag.GPU_METRICS] == "gpu_3", "MLflow's system metrics series of this GPU"
    unknown = D.gpu_tags(D.GpuFacts("Tesla T4", None, None, (7, 5), 16 << 30), {})
    assert Tag.GPU_UUID not in unknown and Tag.GPU_METRICS not in unknown
    assert unknown[Tag.GPU_MASK].startswith("(unset") and unknown[Tag.GPU_ORDER] == "FASTEST_FIRST"
    mig = D.gpu_tags(D.GpuFacts("A100 MIG 1g.10gb", "MIG-abc", None, (8, 0), 10 << 30), {})
    assert mig[Tag.GPU_UUID] == "MIG-abc"


@pytest.mark.parametrize(
    "precision,device_type,capability,on",
    [
        ("tf32", "cuda", (8, 0), True),  # A100
        ("tf32", "cuda", (9, 0), True),  # H100
        ("tf32", "cuda", (8, 9), True),  # L4
        ("tf32", "cuda", (7, 5), False),  # T4: torch takes the flag and computes IEEE fp32
        ("tf32", "cuda", (7, 0), False),  # V100
        ("fp32", "cuda", (9, 0), False),
        ("tf32", "cpu", None, False),
        ("tf32", "mps", None, False),
    ],
)
def test_tf32_is_on_only_where_the_gpu_has_it(precision, device_type, capability, on):
    assert tf32_applies(precision, device_type, capability) is on


def test_one_gpu_numbering_set_early(monkeypatch):
    env = {k: v for k, v in os.environ.items() if k != "CUDA_DEVICE_ORDER"}
    code = "import os, sweeper.cli; print(os.environ['CUDA_DEVICE_ORDER'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PCI_BUS_ID", "the CLI numbers GPUs as its workers and nvidia-smi do"
    assert D.pci_bus_order({"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}) == "FASTEST_FIRST", "a user's order is kept"
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    D.pick_device("cpu")
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID", "library callers get the same numbering"


def test_cpu_only_slurm_tasks_train_on_the_cpu():
    assert task_device("auto", 0) == "cpu"
    assert task_device("cpu", 0) == "cpu" and task_device("auto", 1) == "cuda"


def test_fp16_scaler_fits_a_summed_loss_at_batch_2000(data):
    """The fast recipe's summed loss at batch 2,000: the scaler the loop builds must not overflow at its first steps."""
    cfg = helpers.cfg(**{"loss.reduction": "sum", "data.batch_size": 2000})
    parts = T.setup(cfg, data.train.images, torch.device("cpu"), "fp16", 1)
    first_loss = torch.tensor(math.log(10) * 2000)  # cross-entropy of an untrained 10-class net, summed
    scaled = parts.scaler.scale(first_loss)
    assert torch.isfinite(scaled.half()), f"scale {parts.scaler.get_scale()} overflows fp16 on the first loss"
    assert parts.scaler.get_scale() >= 2.0, "still a scale: fp16 gradients of small losses must not underflow"
    mean = T.setup(helpers.cfg(), data.train.images, torch.device("cpu"), "fp16", 1)
    assert mean.scaler.get_scale() == 2.0**16, "a mean loss keeps torch's default"


def muon_config():
    return helpers.cfg(**{"optimizer.name": "muon", "optimizer.lr": 0.05, "optimizer.momentum": 0.9, "epochs": 2})


def test_muon_newton_schulz_precision_is_this_devices_on_resume(data):
    """A checkpoint from a GPU that chose the other Newton-Schulz dtype: the resumed run uses this device's choice."""
    cfg = muon_config()
    saved = {}

    def keep(metrics, checkpoint):
        saved.update(checkpoint())

    T.train(cfg.model_copy(update={"epochs": 1}), data, device="cpu", on_epoch=keep)
    here = {g["precision"] for g in saved["optimizer"]["param_groups"]}
    assert len(here) == 1
    other = "fp32" if here == {"bf16"} else "bf16"
    for group in saved["optimizer"]["param_groups"]:
        group["precision"] = other  # as an A100 (bf16) or a V100 (fp32) wrote it
    seen = set()
    T.train(
        cfg,
        data,
        device="cpu",
        resume=saved,
        on_step=lambda s: seen.update(g["precision"] for g in s.optimizer.param_groups),
    )
    assert seen == here, f"resumed with {seen}, the checkpoint's GPU choice, not this device's {here}"


def test_checkpoints_copy_the_best_weights_once_per_improvement(data, monkeypatch):
    """Validation never improves after epoch 1: epochs 2 and 3 hand the writer the host copy it already has."""
    monkeypatch.setattr(T, "evaluate", lambda *a, **k: {"loss": 1.0, "acc": 0.5})
    copier = checkpoints.HostCopier(torch.device("cpu"))
    states, counts = [], []

    def ship(metrics, checkpoint):
        state = checkpoint()
        states.append(copier(state))
        counts.append((copier.copied, len(list(_tensors(state)))))

    T.train(helpers.cfg(epochs=3), data, device="cpu", on_epoch=ship)
    assert [s["best"]["epoch"] for s in states] == [1, 1, 1]
    assert states[1]["best_state"] is states[0]["best_state"] is states[2]["best_state"], "not handed new best weights"
    best_tensors = len(states[0]["best_state"])
    assert counts[0][0] == counts[0][1], "the first checkpoint copies everything"
    assert all(copied == total - best_tensors for copied, total in counts[1:]), counts
    model = states[0]["model"]
    live = dict(T.build_model(helpers.cfg()).state_dict())
    assert all(model[k].data_ptr() != live[k].data_ptr() for k in live), "copies, not references"


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict):
        for v in tree.values():
            yield from _tensors(v)
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from _tensors(v)


def test_resume_through_host_copies_is_bit_exact(data):
    cfg = helpers.cfg(epochs=2)
    copier = checkpoints.HostCopier(torch.device("cpu"))
    saved = {}

    def keep(metrics, checkpoint):
        if metrics["epoch"] == 1:
            saved.update(copier(checkpoint()))

    full = T.train(cfg, data, device="cpu", on_epoch=keep)
    resumed = T.train(cfg, data, device="cpu", resume=saved)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_peak_memory_estimate_follows_batch_precision_and_optimizer():
    fp32 = memory.estimate(helpers.cfg(**{"data.batch_size": 64}))
    double = memory.estimate(helpers.cfg(**{"data.batch_size": 128}))
    half = memory.estimate(helpers.cfg(**{"data.batch_size": 64, "precision": "bf16"}))
    sgd = memory.estimate(helpers.cfg(**{"data.batch_size": 64, "optimizer.name": "sgd", "optimizer.momentum": 0.0}))
    assert fp32 and double and half and sgd
    assert fp32.activations > 0 and double.activations == pytest.approx(2 * fp32.activations, rel=0.01)
    assert half.activations < 0.6 * fp32.activations, "autocast saves half-width activations"
    params = sum(p.numel() for p in T.build_model(helpers.cfg()).parameters())
    assert fp32.optimizer == 2 * 4 * params and sgd.optimizer == 0, "Adam's two moments; plain SGD none"
    big = memory.estimate(helpers.cfg(**{"model": {"name": "densenet201"}, "data.batch_size": 256}))
    assert big is not None and big.total > 4 * memory.GiB, "DenseNet-201 at batch 256 is GiBs, not MiBs"


def test_validate_prints_each_rows_peak_memory(write_spec):
    from sweeper.schema.spec import load_spec
    from sweeper.training.report import validation_lines

    path = write_spec()
    lines = validation_lines(path, load_spec(path))
    assert any("peak GPU memory at batch" in line for line in lines[2:]), lines


def test_too_big_for_the_gpu_warns_and_a_measured_peak_that_does_not_fit_is_refused():
    est = memory.MemoryEstimate(weights=1 << 30, optimizer=2 << 30, activations=12 << 30, data=0)
    warning = memory.too_big_warning("DenseNet-201 s0", est, "Tesla T4", 15 << 30)
    assert warning is not None and "DenseNet-201 s0" in warning and "Tesla T4" in warning and "16 GiB" in warning
    assert memory.too_big_warning("small", memory.MemoryEstimate(1 << 20, 0, 1 << 20, 0), "Tesla T4", 15 << 30) is None
    refusal = memory.admit(
        "Baseline CNN s1", need=3 * memory.GiB, free=2 * memory.GiB, total=16 * memory.GiB, gpu="Tesla T4"
    )
    assert refusal is not None and "Baseline CNN s1" in refusal
    assert "3.00 GiB" in refusal and "2.00 GiB free" in refusal and "16 GiB" in refusal
    assert memory.admit("ok", need=1 * memory.GiB, free=2 * memory.GiB, total=16 * memory.GiB, gpu="T4") is None


def test_cells_on_a_cpu_skip_the_gpu_memory_checks():
    memory.check_cell("any", helpers.cfg(), torch.device("cpu"))  # nothing to free, nothing to refuse
    assert memory.record_peak(helpers.cfg(), torch.device("cpu")) is None


def test_gpu_estimates_have_a_launch_floor_per_step_and_count_tta_views():
    from sweeper.training import cost

    small = helpers.cfg(epochs=10, **{"data.batch_size": 32, "data.train_size": 50_000 - 50})
    terms = cost.cell_terms(small)
    steps = 10 * (49_950 // 32)
    assert terms.train_floor == pytest.approx(
        steps * (3 * cost.model_cost(small).layers + cost.STEP_EXTRA_KERNELS) * cost.LAUNCH_SECONDS
    )
    fast_gpu = terms.seconds(1000.0)
    assert fast_gpu >= terms.train_floor > terms.train_flops / 1e15, "a tiny CNN is launch-bound, not FLOP-bound"
    assert terms.seconds(1000.0) == pytest.approx(terms.seconds(100.0)), (
        "a faster GPU does not help a launch-bound cell"
    )
    plain, tta = (
        cost.cell_flops(small),
        cost.cell_flops(
            helpers.cfg(
                epochs=10, tta=True, tta_translate=True, **{"data.batch_size": 32, "data.train_size": 50_000 - 50}
            )
        ),
    )
    f = cost.model_cost(small).flops
    assert tta - plain == pytest.approx(5 * f * cost.evaluated_images(small)), "six views: five more forward passes"
    assert set(cost.GPU_KINDS) == {"T4", "V100", "A100", "H100", "L4"}


def test_list_estimates_each_gpu_kind_or_a_measured_rate(tmp_path, write_spec):
    from sweeper.training.report import describe, summarize

    summary = summarize(write_spec())
    kinds = describe(summary)
    assert all(all(k in line for k in ("T4", "V100", "A100", "H100", "L4")) for line in kinds if "PFLOP" in line)
    measured = describe(summary, gpu_tflops=12.5)
    assert any("at 12.5 TFLOP/s" in line for line in measured) and not any("T4" in line for line in measured)


def test_gpu_checks_table_of_known_gpus_is_its_own_not_the_codes_rule(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import gpu_more

    assert gpu_more.known_gpu("NVIDIA A10G")[0] == "A10", "the longest fragment wins: an A10G is no A100"
    assert gpu_more.known_gpu("Tesla T4")[2:] == (False, False) and gpu_more.known_gpu("Tesla V100-SXM2-16GB")[2:] == (
        False,
        False,
    )
    assert gpu_more.known_gpu("NVIDIA H100 80GB HBM3")[1:] == ((9, 0), True, True)
    assert gpu_more.known_gpu("Some Future GPU") is None
    for _, capability, bf16, tf32 in gpu_more.KNOWN_GPUS:  # the table and the code's rule agree on every entry
        assert tf32_applies("tf32", "cuda", capability) is tf32
        assert ("bf16" in native_precisions("cuda", capability)) is bf16


def test_a_worker_refuses_a_cell_whose_measured_peak_does_not_fit_what_other_workers_left(monkeypatch, capsys):
    """The GPU's answers given as data: an earlier cell of the same shape peaked at 3 GiB; now 2 GiB are free."""
    gib = memory.GiB
    free = [2 * gib]
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: 3 * gib)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free[0], 16 * gib))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    monkeypatch.setattr(memory, "_MEASURED", {})
    gpu, cell = torch.device("cuda"), helpers.cfg(**{"data.batch_size": 64})
    assert memory.record_peak(cell, gpu) == 3 * gib
    with pytest.raises(
        MemoryError, match=r"Baseline s1: not started.*3\.00 GiB.*Tesla T4 has 2\.00 GiB free of 16 GiB"
    ):
        memory.check_cell("Baseline s1", cell, gpu)
    free[0] = 4 * gib
    memory.check_cell("Baseline s1", cell, gpu)  # fits now: no refusal
    other = helpers.cfg(**{"data.batch_size": 32})  # another shape, not measured yet: the estimate decides, and fits
    memory.check_cell("Other s0", other, gpu)
    assert "warning" not in capsys.readouterr().err
    huge = helpers.cfg(**{"model": {"name": "densenet201"}, "data.batch_size": 4096})
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (16 * gib, 16 * gib))
    memory.check_cell("DenseNet s0", huge, gpu)
    assert "DenseNet s0: estimated peak training memory" in capsys.readouterr().err
