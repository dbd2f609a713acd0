"""What only a GPU can show, in one script under 8 minutes on one GPU; CI runs it with `--device cpu`
so that it cannot rot (about a minute or two there: the heavy parts shrink or say they are skipped).

    .venv/bin/python benchmarks/gpu_check.py                 # on the GPU (cuda, else mps, else cpu)
    .venv/bin/python benchmarks/gpu_check.py --device cpu    # the same checks, small, on the CPU

Checks (each prints what it measured; any failure exits 1):
- resume: a cell with dropout killed after an epoch and resumed through a checkpoint file equals
  the uninterrupted cell bit for bit (deterministic algorithms; the device RNG is in the checkpoint);
- cross-device: a checkpoint written on the device resumes on the CPU and the reverse, optimizer
  state re-laid to each parameter's strides, the first fused step equal to the unfused one;
- checkpoints: a real sweep's last.pt and best.pt load on a machine without the GPU (CPU tensors);
- precision: what `precision: auto` picks for this device, against a table of known GPUs (bf16 and
  TF32 where the datasheet says so, not the code's own capability rule), and the `sweeper.tf32` tag;
- quick profiles: one epoch of every spec's quick profile (first row) on the device, with images/s
  (synced: read after the device finished the epoch);
- augmentation: every preset batched on the device at batch 256 (a GPU must reach 50,000 images/s);
- syncs: training steps with `strong` augmentation + EMA + weight penalty, with `autoaugment`, and the
  fast recipe (Muon), each in bf16 and forced fp16, counted with torch.cuda.set_sync_debug_mode: none
  may wait for the device, except fp16's one a step with an optimizer without a fused kernel; the
  syncs `deterministic: true` adds are counted and printed;
- large networks: ResNet-50 and DenseNet-201 train a few steps at batch 256, peak memory against
  the CPU estimate (training/memory.py);
- compile: `compile: true` trains one small epoch (GPU only);
- packing: cells per hour at 1, 2 and 4 workers on one GPU for the baseline CNN and the Table 2
  ResNet, without MPS and with it where the daemon starts (GPU only).
"""

from __future__ import annotations

import argparse
import copy
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_more  # noqa: E402

from sweeper.catalogue import AUGMENTS  # noqa: E402
from sweeper.runs import checkpoints  # noqa: E402
from sweeper.schema.config import TrainConfig  # noqa: E402
from sweeper.schema.dotted import merge, unflatten  # noqa: E402
from sweeper.schema.spec import expand, load_spec  # noqa: E402
from sweeper.training.augment import normalize  # noqa: E402
from sweeper.training.data import CifarData, make_splits, synthetic  # noqa: E402
from sweeper.training.device import input_format, pick_device  # noqa: E402
from sweeper.training.precision import device_precisions, pick_precision  # noqa: E402
from sweeper.training.train import resume_from, setup, train  # noqa: E402

DROPOUT_CELL = {
    "model": {"name": "baseline_cnn", "dropout": 0.25, "fc_dropout": 0.5},  # dropout draws from the device RNG
    "data": {"augment": "weak", "batch_size": 64, "val_size": 64, "train_size": 512, "test_size": 128},
    "optimizer": {"name": "adam", "lr": 1e-3},
    "epochs": 3,
    "deterministic": True,
}
Check = tuple[str, bool, str]


def config(**changes: object) -> TrainConfig:
    return TrainConfig.model_validate(merge(DROPOUT_CELL, unflatten(changes)))


def data_for(cfg: TrainConfig, pool: tuple) -> CifarData:
    d = cfg.data
    return make_splits(*pool, val_size=d.val_size, train_size=d.train_size, test_size=d.test_size, seed=0)


def through_a_file(state: dict, device: torch.device) -> dict:
    """The checkpoint as a resumed run reads it: the runner's host copy (pinned and asynchronous on CUDA, one
    wait), torch.save, weights_only load."""
    buffer = io.BytesIO()
    torch.save(checkpoints.to_cpu(checkpoints.HostCopier(device)(state)), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def killed_after(epoch: int, cfg: TrainConfig, data: CifarData, device: torch.device) -> dict:
    saved: dict = {}

    def stop(metrics: dict, checkpoint: Callable[[], dict]) -> None:
        if metrics["epoch"] == epoch:
            saved.update(through_a_file(checkpoint(), device))
            raise KeyboardInterrupt

    try:
        train(cfg, data, device=device, on_epoch=stop)
    except KeyboardInterrupt:
        return saved
    raise AssertionError("the run was not interrupted")


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> tuple[bool, float]:
    worst = max(
        (x.float() - y.float()).abs().max().item() for x, y in zip(a.state_dict().values(), b.state_dict().values())
    )
    return worst == 0.0, worst


def check_resume(device: torch.device, pool: tuple) -> Check:
    cfg = config()
    data = data_for(cfg, pool)
    full = train(cfg, data, device=device)
    state = killed_after(1, cfg, data, device)
    resumed = train(cfg, data, device=device, resume=state)
    equal, worst = same_weights(full.model, resumed.model)
    return (
        "killed + resumed == uninterrupted (dropout)",
        equal,
        f"max |diff| {worst:.3g}, rng saved for {state['device_type']}",
    )


def first_step_matches(state: dict, cfg: TrainConfig, data: CifarData, device: torch.device) -> tuple[bool, float]:
    """Resume `state` as train() does (fused Adam) and take one step; a plain per-tensor Adam loaded with
    the same state takes the same step: equal weights mean every moment met its own weight."""
    x = normalize(data.train.images[:64].to(device), cfg.data.normalize).contiguous(
        memory_format=input_format(cfg, device)
    )
    y = data.train.labels[:64].to(device)
    parts = setup(cfg, data.train.images.to(device), device, "fp32", 1)
    resume_from(copy.deepcopy(state), parts, torch.Generator(), device)
    plain_model = copy.deepcopy(parts.model)
    plain = torch.optim.Adam(plain_model.parameters(), lr=cfg.optimizer.lr, foreach=False, fused=False)
    plain.load_state_dict(copy.deepcopy(state["optimizer"]))
    for group in plain.param_groups:  # the saved groups say fused=True: loading them would undo the reference
        group.update(fused=False, foreach=False)
    for model, optimizer in ((parts.model, parts.optimizer), (plain_model, plain)):
        model.train()
        torch.manual_seed(0)  # the same dropout masks for both
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return same_weights(parts.model, plain_model)


def other_layouts(tree: object) -> object:
    """Every 4-D tensor in the other memory format: the state as a device with other layouts saved it."""
    if isinstance(tree, torch.Tensor) and tree.ndim == 4:
        last = tree.is_contiguous(memory_format=torch.channels_last) and not tree.is_contiguous()
        return tree.contiguous() if last else tree.contiguous(memory_format=torch.channels_last)
    if isinstance(tree, dict):
        return {k: other_layouts(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [other_layouts(v) for v in tree]
    return tree


def check_cross_device(device: torch.device, pool: tuple) -> list[Check]:
    cfg = config(deterministic=False, epochs=2)
    data = data_for(cfg, pool)
    out = []
    cpu = torch.device("cpu")
    pairs = [(device, cpu), (cpu, device)] if device.type != "cpu" else [(cpu, cpu)]
    for source, target in pairs:
        state = killed_after(1, cfg, data, source)
        if source == target:  # on a CPU-only machine: the optimizer state in a GPU's layouts
            state["optimizer"] = other_layouts(state["optimizer"])
        equal, worst = first_step_matches(state, cfg, data, target)
        name = f"resume {source.type} -> {target.type}" + (" (GPU layouts)" if source == target else "")
        out.append((name, equal or worst < 1e-6, f"fused vs plain Adam after resume: max |diff| {worst:.3g}"))
    return out


def check_checkpoint_files(device: torch.device, pool: tuple) -> Check:
    """A real sweep on the device; its last.pt and best.pt open on a CPU-only machine."""
    import mlflow
    import yaml

    from sweeper.sweep import run

    spec = {
        "name": "gpu-check",
        "base": {**DROPOUT_CELL, "epochs": 1},
        "rows": [{"label": "one"}],
        "table": {"metrics": [{"key": "test_acc", "header": "acc"}]},
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(yaml.safe_dump(spec))
        uri = f"sqlite:///{tmp}/mlflow.db"
        run(path, tracking_uri=uri, device=str(device), data=pool)
        client = mlflow.MlflowClient(uri)
        (cell,) = client.search_runs(
            [client.get_experiment_by_name("gpu-check").experiment_id], "tags.`sweeper.role` = 'cell'"
        )
        devices = set()
        for name in ("last.pt", "best.pt"):
            local = client.download_artifacts(cell.info.run_id, f"checkpoints/{name}", tmp)
            state = torch.load(local, weights_only=True)  # no map_location: as on a laptop
            devices |= {t.device.type for t in _tensors(state)}
    return "checkpoints hold CPU tensors", devices == {"cpu"}, f"tensor devices in last.pt/best.pt: {sorted(devices)}"


def _tensors(tree: object) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for v in tree.values() for t in _tensors(v)]
    if isinstance(tree, (list, tuple)):
        return [t for v in tree for t in _tensors(v)]
    return []


def check_precision(device: torch.device) -> Check:
    """On a GPU: against the table of known GPUs (gpu_more.KNOWN_GPUS); elsewhere auto must pick a native precision."""
    if device.type == "cuda":
        return gpu_more.check_precision_table(device)
    native = device_precisions(device)
    auto = pick_precision("auto", device)
    return "precision auto", auto in native, f"{device.type}: native {sorted(native)}, auto -> {auto}"


def check_quick_profiles(device: torch.device, pool: tuple, cap: int | None) -> list[Check]:
    out = []
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        spec = load_spec(path)
        if "quick" not in spec.profiles or spec.search is not None:
            continue
        cell = expand(spec, "quick")[0]
        d = cell.config.data
        sizes = {
            "val_size": min(d.val_size, 256),
            "test_size": 256,
            "train_size": min(d.train_size or 50_000, cap or 10**9),
        }
        cfg = cell.config.model_copy(update={"epochs": 1, "data": d.model_copy(update=sizes)})
        tick = time.perf_counter()
        try:
            result = train(cfg, data_for(cfg, pool), device=device)
        except Exception as exc:  # noqa: BLE001 - report every spec, then fail
            out.append((f"quick {spec.name}", False, f"{type(exc).__name__}: {exc}"))
            continue
        h = result.history[0]
        out.append(
            (
                f"quick {spec.name}",
                torch.isfinite(torch.tensor(h["train_loss"])).item(),
                f"{cfg.model.name}, {result.precision}, {h['images_per_s']:.0f} images/s (synced), "
                f"{time.perf_counter() - tick:.1f} s",
            )
        )
    return out


AUGMENT_TARGET = 50_000  # images/s per preset on a GPU at batch 256


def check_augmentation(device: torch.device) -> list[Check]:
    from augment_speed import measure

    out = []
    for preset in AUGMENTS.names:
        rate = measure(preset, device, batch=256, seconds=1.0 if device.type != "cpu" else 0.2)
        ok = device.type == "cpu" or rate >= AUGMENT_TARGET
        target = f" (target {AUGMENT_TARGET:,})" if device.type != "cpu" else " (no target on a CPU)"
        out.append((f"augment {preset}", ok, f"{rate:,.0f} images/s at batch 256{target}"))
    return out


def fast_recipe(pool_size: int) -> TrainConfig:
    """experiments/fast.yaml's recipe (Muon, altflip, groups), at a batch the check's images fill."""
    cfg = expand(load_spec(ROOT / "experiments" / "fast.yaml"))[0].config
    data = cfg.data.model_copy(update={"batch_size": min(500, pool_size // 4), "val_size": 64, "test_size": 128})
    return cfg.model_copy(update={"data": data, "epochs": 1})


def check_syncs(device: torch.device, pool: tuple) -> list[Check]:
    """Steps of the strong+EMA+L2, autoaugment and fast-recipe configs in bf16 and forced fp16 (gpu_more.check_syncs)."""
    strong = config(**{"data.augment": "strong", "ema_decay": 0.99, "loss.penalty": "l2", "deterministic": False})
    auto = config(**{"data.augment": "autoaugment", "deterministic": False})
    configs = {"strong+EMA+L2": strong, "autoaugment": auto, "fast recipe": fast_recipe(len(pool[0]))}
    return gpu_more.check_syncs(device, pool, configs)


def check_deterministic(device: torch.device, pool: tuple) -> Check:
    """The fast recipe's network in deterministic mode (its global max pool has no deterministic CUDA backward as
    AdaptiveMaxPool2d), after a non-deterministic run in the same process (cuBLAS reads its workspace setting once)."""
    cfg = fast_recipe(len(pool[0]))
    data = data_for(cfg, pool)
    try:
        first = train(cfg, data, device=device)
        again = train(cfg.model_copy(update={"deterministic": True}), data, device=device)
    except Exception as exc:  # noqa: BLE001 - the check reports what broke
        return "deterministic fast_net", False, f"{type(exc).__name__}: {str(exc)[:200]}"
    return (
        "deterministic fast_net",
        True,
        f"{100 * first.summary['test_acc']:.1f}% then {100 * again.summary['test_acc']:.1f}%",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cuda, cuda:N, mps, cpu or auto")
    parser.add_argument("--images", type=int, default=None, help="cap on the quick profiles' training images")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    cap = args.images if args.images is not None else (256 if device.type == "cpu" else None)
    pool = synthetic(n_train=12_000 if device.type != "cpu" else 3_000, n_test=512, seed=0)
    print(f"gpu_check on {device} (torch {torch.__version__}, CUDA build {torch.version.cuda})", flush=True)
    checks: list[Check] = []
    for step in (
        lambda: [check_precision(device)],
        lambda: [check_resume(device, pool)],
        lambda: check_cross_device(device, pool),
        lambda: [check_checkpoint_files(device, pool)],
        lambda: check_quick_profiles(device, pool, cap),
        lambda: check_augmentation(device),
        lambda: check_syncs(device, pool),
        lambda: [check_deterministic(device, pool)],
        lambda: gpu_more.check_big_models(device, pool),
        lambda: [gpu_more.check_compile(device, pool)],
        lambda: gpu_more.check_packing(device),
    ):
        for name, ok, detail in step():
            checks.append((name, ok, detail))
            print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    failed = [name for name, ok, _ in checks if not ok]
    print(
        f"{len(checks) - len(failed)} of {len(checks)} checks passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
