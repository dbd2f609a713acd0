"""Your own model, activation, loss and optimizer by reference: checked when the spec loads, found by
worker processes, logged with its source and digest, and the worked example end to end."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY_SPEC
from mlflow import MlflowClient
from rich.console import Console
from typer.testing import CliRunner

from sweeper import sweep
from sweeper.cli import app
from sweeper.errors import UserError
from sweeper.schema.spec import expand, load_spec

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

NETS = """
from torch import nn


class Net(nn.Module):
    def __init__(self, width: int, num_classes: int = 10, activation=nn.ReLU):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), activation(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


def poly_loss(logits, target, epsilon: float = 1.0):
    ce = nn.functional.cross_entropy(logits, target, reduction="none")
    pt = (-ce).exp()
    return (ce + epsilon * (1 - pt)).mean()
"""


def spec_with(tmp_path: Path, files: dict[str, str], **base: object) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    body = {**TINY_SPEC, "base": {**TINY_SPEC["base"], **base}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def test_a_spec_naming_its_own_model_loss_and_activation_validates(tmp_path):
    path = spec_with(
        tmp_path,
        {"nets.py": NETS},
        model={"name": "nets.py:Net", "width": 8},
        loss={"name": "nets.py:poly_loss", "epsilon": 2.0},
    )
    cells = expand(load_spec(path))
    assert cells[0].config.model.model_extra == {"width": 8}
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "nets.py:Net" in result.output and "params" in result.output


@pytest.mark.parametrize(
    ("files", "model", "message"),
    [
        (
            {},
            {"name": "nowhere.py:Net", "width": 8},
            r"spec\.yaml:\d+: base\.model\.name: `nowhere\.py:Net`: there is no file",
        ),
        (
            {"nets.py": "import torch\nraise RuntimeError('no GPU here')\n"},
            {"name": "nets.py:Net", "width": 8},
            r"RuntimeError: no GPU here at .*nets\.py:2",
        ),
        ({"nets.py": NETS}, {"name": "nets.py:Net", "widht": 8}, r"takes no argument `widht`\. Did you mean 'width'\?"),
        ({"nets.py": NETS}, {"name": "nets.py:Net", "width": "wide"}, r"width"),
        ({"nets.py": NETS}, {"name": "nets.py:Nett", "width": 8}, r"defines no `Nett`\. Did you mean 'Net'\?"),
    ],
    ids=["bad path", "import error", "unknown argument", "wrong type", "missing name"],
)
def test_bad_references_are_spec_errors_with_file_and_line(tmp_path, files, model, message):
    path = spec_with(tmp_path, files, model=model)
    with pytest.raises(UserError, match=message):
        load_spec(path)
    result = runner.invoke(app, ["run", str(path), "--tracking-uri", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert not (tmp_path / "store").exists(), "nothing written"


def test_a_row_switches_between_its_own_loss_and_a_built_in_one(tmp_path):
    path = spec_with(tmp_path, {"nets.py": NETS}, loss={"name": "nets.py:poly_loss", "epsilon": 2.0})
    body = yaml.safe_load(path.read_text())
    body["rows"] = [
        {"label": "poly", "activation": "relu"},
        {"label": "ce", "loss.name": "cross_entropy", "loss.label_smoothing": 0.1},
    ]
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    poly, ce = (cell.config.loss for cell in expand(load_spec(path)))  # `epsilon` does not follow into the built-in
    assert (poly.name, poly.model_extra) == ("nets.py:poly_loss", {"epsilon": 2.0})
    assert (ce.name, ce.label_smoothing) == ("cross_entropy", 0.1) and not ce.model_extra


def test_an_activation_the_model_does_not_take_is_an_error(tmp_path):
    nets = "from torch import nn\ndef fixed(num_classes):\n    return nn.Sequential(nn.Flatten(), nn.Linear(3072, num_classes))\n"
    path = spec_with(tmp_path, {"nets.py": nets}, model={"name": "nets.py:fixed"}, activation="gelu")
    with pytest.raises(UserError, match="takes no `activation`, so activation 'gelu' would have no effect"):
        load_spec(path)


def test_a_worker_process_finds_the_file_and_logs_it(tmp_path, data_dir):
    path = spec_with(tmp_path, {"nets.py": NETS}, model={"name": "nets.py:Net", "width": 8}, epochs=1)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "SWEEPER_STORE_DIR": str(tmp_path / "store")}
    # one `sweeper worker` process, as `run --workers`, SLURM tasks and the compose worker start it, run
    # from another folder: it finds nets.py beside the spec
    cmd = [sys.executable, "-m", "sweeper", "worker", str(path), "--device", "cpu", "--threads", "1"]
    done = subprocess.run(cmd, cwd=tmp_path.parent, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id], "tags.`sweeper.role` = 'cell'")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    digest = runs[0].data.tags["sweeper.code.model"].rpartition("@")[2]
    assert runs[0].data.tags["sweeper.code.model"] == f"nets.py:Net@{digest}" and len(digest) == 12
    assert [a.path for a in client.list_artifacts(runs[0].info.run_id, "code")] == ["code/nets.py"]


def test_a_crash_in_the_users_code_fails_the_cell_with_its_line(tmp_path, store_uri, synthetic_data):
    code = NETS + "\n\ndef exploding(logits, target):\n    raise ValueError('exploded')  # the user's bug\n"
    path = spec_with(tmp_path, {"nets.py": code}, loss={"name": "nets.py:exploding"}, epochs=1)
    out = io.StringIO()
    report = sweep.run(
        path, tracking_uri=store_uri, device="cpu", data=synthetic_data, console=Console(file=out, width=400)
    )
    assert len(report.failed) == 2
    line = next(i for i, text in enumerate(code.splitlines(), 1) if "the user's bug" in text)
    where = f"ValueError: exploded at {tmp_path / 'nets.py'}:{line}"
    assert where in out.getvalue()
    client = MlflowClient(store_uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id], "tags.`sweeper.role` = 'cell'")
    assert [r.data.tags["sweeper.error"] for r in runs] == [where, where]


def test_the_worked_example_runs_end_to_end(tmp_path, data_dir):
    example = tmp_path / "own_model"
    shutil.copytree(ROOT / "examples" / "own_model", example)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    result = runner.invoke(
        app, ["run", str(example / "spec.yaml"), "-p", "quick", "--tracking-uri", uri, "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["table", "own_model", "-p", "quick", "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    assert "| ReLU |" in result.output and "| Swish (learned beta) |" in result.output
    assert "Code: nets.py:TinyNet (sha256 " in result.output


def test_rows_that_ran_different_versions_of_a_file_are_named():
    from sweeper.tables.build import code_notes

    tags = [[{"sweeper.code.model": "nets.py:Net@aaaaaaaaaaaa"}], [{"sweeper.code.model": "nets.py:Net@bbbbbbbbbbbb"}]]
    (note,) = code_notes(tags, ["ReLU", "GELU"])
    assert "different versions of nets.py:Net" in note and "aaaaaaaaaaaa: ReLU" in note and "bbbbbbbbbbbb: GELU" in note
