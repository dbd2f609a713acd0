"""What `validate` can know before `run`: sizes against CIFAR-10's 50,000 training images, seeds against
what torch and numpy take, the user's network's output shape and errors (with file:line), and code
named from outside the spec's folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import TINY_SPEC
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.schema.config import SEED_MAX

runner = CliRunner()

NETS = """
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes: int = 10, activation=nn.ReLU, out: int = 0):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), activation(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, out or num_classes)

    def forward(self, x):
        return self.head(self.body(x))


class Broken(nn.Module):
    def forward(self, x):
        return x.view(3, -1, 7)  # a shape bug
"""


def write(tmp_path: Path, *, files: dict[str, str] | None = None, name: str = "spec.yaml", **top: object) -> Path:
    for file, text in (files or {}).items():
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / file).write_text(text)
    body = {**TINY_SPEC, **top}
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def base(**changes: object) -> dict:
    return {**TINY_SPEC["base"], **changes}


def validate(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["validate", *args])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


@pytest.mark.parametrize(
    "data,message",
    [
        ({"train_size": 100000, "val_size": 50}, "train_size can be at most 49,950"),
        ({"train_size": 10000, "val_size": 45000}, "train_size can be at most 5,000"),
    ],
    ids=["train", "train+val"],
)
def test_sizes_beyond_cifar_are_spec_errors(tmp_path, data, message):
    code, out = validate(str(write(tmp_path, base=base(data={**TINY_SPEC["base"]["data"], **data}))))
    assert code == 2 and message in out and "Traceback" not in out, out


def test_seeds_beyond_what_torch_takes_are_spec_errors(tmp_path):
    code, out = validate(str(write(tmp_path, seeds=[0, 2**64])))
    assert code == 2 and "seed" in out and "Traceback" not in out, out
    code, out = validate(str(write(tmp_path, seeds=[SEED_MAX])))
    assert code == 0, out


def test_sampler_seed_beyond_numpy_is_a_spec_error(tmp_path):
    search = {"sampler": "tpe", "seed": 2**32, "n_trials": 2, "params": {"optimizer.lr": {"low": 1e-3, "high": 1e-2}}}
    spec = {k: v for k, v in TINY_SPEC.items() if k != "rows"}
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({**spec, "search": search}, sort_keys=False))
    code, out = validate(str(path))
    assert code == 2 and "search.seed" in out and "Traceback" not in out, out


def test_a_model_with_nine_logits_is_a_spec_error(tmp_path):
    path = write(tmp_path, files={"nets.py": NETS}, base=base(model={"name": "nets.py:Net", "out": 9}))
    code, out = validate(str(path))
    assert code == 2 and "shape [1, 9]" in out and "[1, 10]" in out and str(path) in out, out


@pytest.mark.parametrize("command", ["validate", "list"])
def test_an_error_in_the_users_forward_names_its_line(tmp_path, command):
    path = write(tmp_path, files={"nets.py": NETS}, rows=[{"label": "broken", "activation": "nets.py:Broken"}])
    code, out = validate(str(path)) if command == "validate" else _list(tmp_path)
    assert code == 2 and "Traceback" not in out, out
    line = next(i for i, text in enumerate(NETS.splitlines(), 1) if "a shape bug" in text)
    assert f"{tmp_path / 'nets.py'}:{line}" in out and "RuntimeError" in out, out
    assert len(out.splitlines()) < 20


def _list(folder: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["list", str(folder)])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


def test_code_outside_the_specs_folder_is_warned_about(tmp_path, capfd):
    write(tmp_path, files={"nets.py": NETS}, name="unused.yaml")
    path = write(tmp_path / "specs", base=base(model={"name": "../nets.py:Net"}))
    code, out = validate(str(path))
    assert code == 0, out
    err = capfd.readouterr().err + out
    assert "outside the spec's folder" in err and str(tmp_path / "nets.py") in err
    inside = write(
        tmp_path / "specs",
        files={"lib/nets.py": NETS},
        name="inside.yaml",
        base=base(model={"name": "lib/nets.py:Net"}),
    )
    capfd.readouterr()
    code, out = validate(str(inside))
    assert code == 0 and "outside the spec's folder" not in capfd.readouterr().err + out
