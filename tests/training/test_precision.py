"""What a run computes with, kept across resumes and devices: precision, optimizer state layouts, TF32,
determinism. GPU behaviour reproduced on the CPU where it can be (layouts, scaler state, flags);
benchmarks/gpu_check.py checks the rest on a GPU."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from sweeper.schema.config import TrainConfig
from sweeper.schema.dotted import merge, unflatten
from sweeper.training.device import match_param_layouts
from sweeper.training.precision import (
    choose_precision,
    native_precisions,
    needs_grad_scaler,
    resolve_precision,
)
from sweeper.training.train import train

BASE = {
    # widths >= 8: every conv after the first runs channels_last on the CPU, the first NCHW
    "model": {"name": "plain_cnn", "stem": 8, "widths": [16, 16], "hidden": 16},
    "data": {"augment": "weak", "batch_size": 32, "val_size": 20, "train_size": 96, "test_size": 40},
    "optimizer": {"name": "adam", "lr": 3e-3},  # fused Adam: the kernel that walks raw pointers
    "epochs": 2,
    "precision": "fp32",
}


def cfg(**changes) -> TrainConfig:
    return TrainConfig.model_validate(merge(BASE, unflatten(changes)))


def first_epoch_state(config: TrainConfig, data) -> dict:
    """The checkpoint after epoch 1 of `config`, as a killed run leaves it."""
    saved: dict = {}

    def keep(metrics, checkpoint):
        saved.update(copy.deepcopy(checkpoint()))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, data, device="cpu", on_epoch=keep)
    return saved


def flip_layouts(tree):
    """Every 4-D tensor in the other memory format: the state as a device with other layouts saved it."""
    if torch.is_tensor(tree) and tree.ndim == 4:
        cl = tree.is_contiguous(memory_format=torch.channels_last) and not tree.is_contiguous()
        return tree.contiguous() if cl else tree.contiguous(memory_format=torch.channels_last)
    if isinstance(tree, dict):
        return {k: flip_layouts(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [flip_layouts(v) for v in tree]
    return tree


def test_optimizer_state_from_a_device_with_other_layouts_resumes_exactly(small):
    # CUDA -> CPU: on CUDA every conv is channels_last, on the CPU the first is NCHW. The CPU's fused
    # Adam pairs each moment with the wrong weight when their strides differ, silently.
    config = cfg()
    full = train(config, small, device="cpu")
    state = first_epoch_state(config, small)
    state["optimizer"] = flip_layouts(state["optimizer"])
    resumed = train(config, small, device="cpu", resume=state)
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after a resume with another device's layouts"


def test_state_tensors_take_their_parameters_strides():
    conv = torch.nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(conv.parameters(), lr=0.1)
    conv(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    opt.load_state_dict(flip_layouts(opt.state_dict()))
    assert opt.state[conv.weight]["exp_avg"].stride() != conv.weight.stride(), "load keeps the saved strides"
    assert match_param_layouts(opt) == 2  # exp_avg and exp_avg_sq of the weight; the bias is 1-D
    for key in ("exp_avg", "exp_avg_sq"):
        assert opt.state[conv.weight][key].stride() == conv.weight.stride()


def test_auto_is_resolved_once_and_kept_by_a_resume(small, monkeypatch):
    # The checkpoint says the run began in fp32; here `auto` picks bf16 (as on AVX-512 BF16 hosts, so
    # the test means the same on every CPU), and re-resolving it would switch precision halfway.
    state = first_epoch_state(cfg(), small)
    assert state["precision"] == "fp32" and state["device_type"] == "cpu"
    monkeypatch.setattr("sweeper.training.precision.cpu_has_bf16", lambda: True)
    assert train(cfg(precision="auto", epochs=1), small, device="cpu").precision == "bf16", "a new run takes bf16"
    resumed = train(cfg(precision="auto"), small, device="cpu", resume=state)
    assert resumed.precision == "fp32"


def test_a_checkpoint_from_before_numerics_were_stored_still_resumes(small):
    # last.pt files written by earlier versions have no precision, device type or device generator
    full = train(cfg(), small, device="cpu")
    state = first_epoch_state(cfg(), small)
    for key in ("precision", "device_type", "device_rng"):
        del state[key]
    resumed = train(cfg(), small, device="cpu", resume=state)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]


def test_a_resume_keeps_a_native_precision_and_converts_one_the_device_lacks():
    ampere, turing = native_precisions("cuda", (8, 0)), native_precisions("cuda", (7, 5))
    assert resolve_precision("auto", "cuda", ampere, stored="bf16").precision == "bf16"
    kept = resolve_precision("auto", "cpu", native_precisions("cpu", cpu_bf16=True), "bf16", "cuda")
    assert kept.precision == "bf16" and kept.converted is None
    moved = resolve_precision("auto", "cuda", turing, stored="bf16", stored_device="cuda")
    assert moved.precision == "fp16" and "bf16 -> fp16" in (moved.converted or "")
    to_cpu = resolve_precision("auto", "cpu", native_precisions("cpu", cpu_bf16=False), "fp16", "cuda")
    assert to_cpu.precision == "fp32" and "resumed on cpu" in (to_cpu.converted or "")
    assert resolve_precision("fp16", "cpu", {"fp32"}, stored="bf16").precision == "fp16", "an explicit choice wins"


def test_a_disabled_scalers_empty_state_does_not_break_an_fp16_resume(small):
    # A run that began in bf16 (scaler off, state {}) and resumes where auto means fp16.
    state = first_epoch_state(cfg(precision="fp16"), small)
    state["scaler"] = {}
    resumed = train(cfg(precision="fp16"), small, device="cpu", resume=state)
    assert math.isfinite(resumed.history[-1]["train_loss"])


def test_bf16_is_chosen_only_where_the_hardware_has_it():
    for capability, expected in [((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")]:
        native = native_precisions("cuda", capability)
        assert choose_precision("auto", "cuda", native) == expected, capability
    assert needs_grad_scaler("fp16") and not needs_grad_scaler("bf16") and not needs_grad_scaler("fp32")
    assert choose_precision("auto", "cpu", native_precisions("cpu", cpu_bf16=False)) == "fp32"
    assert choose_precision("auto", "cpu", native_precisions("cpu", cpu_bf16=True)) == "bf16"
    assert choose_precision("auto", "mps", native_precisions("mps")) == "fp32"
    assert choose_precision("fp16", "cpu", set()) == "fp16", "an explicit choice is kept"


def numerics_seen(config: TrainConfig, data) -> dict:
    seen = {}

    def look(step):
        seen.update(
            matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
            cudnn_tf32=torch.backends.cudnn.allow_tf32,
            benchmark=torch.backends.cudnn.benchmark,
            deterministic=torch.are_deterministic_algorithms_enabled(),
        )

    train(config, data, device="cpu", on_step=look)
    return seen


def test_fp32_means_ieee_fp32_and_tf32_and_determinism_are_named(small):
    before = (torch.backends.cudnn.allow_tf32, torch.are_deterministic_algorithms_enabled())
    one = cfg(epochs=1)
    assert numerics_seen(one, small) == dict(matmul_tf32=False, cudnn_tf32=False, benchmark=True, deterministic=False)
    # tf32 asks for TF32, which only CUDA has: on the CPU the flags stay off
    assert numerics_seen(cfg(epochs=1, precision="tf32"), small)["cudnn_tf32"] is False
    strict = numerics_seen(cfg(epochs=1, deterministic=True), small)
    assert strict["deterministic"] and not strict["benchmark"]
    assert (torch.backends.cudnn.allow_tf32, torch.are_deterministic_algorithms_enabled()) == before, "restored"
