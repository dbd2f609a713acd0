"""Launchers behind one interface: `run`, `status` and `logs` ask the launcher the spec or `--launcher` names.
A third launcher is one module: here a file of the user's, which trains through the same worker a SLURM
task or a local process runs, and reports its one worker."""

from __future__ import annotations

import pytest
import yaml
from conftest import TINY_SPEC
from mlflow import MlflowClient
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.errors import UserError
from sweeper.schema.launcher import LocalSettings, SlurmSettings, resolve
from sweeper.schema.spec import load_spec
from sweeper.sweep.launchers import parse_options, watched

runner = CliRunner()

THIRD = '''
from pathlib import Path

from sweeper import sweep
from sweeper.sweep.launchers import Launched, WorkerState


class InThread:
    """A launcher in one file: one worker, here, writing its own log."""

    def launch(self, request):
        log = Path(request.spec_path).with_name("third-0.log")
        report = sweep.worker(request.spec_path, request.profile, storage=request.storage,
                              tracking_uri=request.tracking_uri, device=request.device, index=0)
        log.write_text(f"{request.settings.greeting}: {len(report.finished)} finished\\n")
        return Launched(submitted=["third-0"], logs=log)

    def states(self, spec_name, tracking_uri):
        return [WorkerState("third-0", "COMPLETED", "here")]

    def logs(self, spec_name, tracking_uri, worker=None):
        return sorted(Path(".").glob("**/third-*.log"))
'''


def test_a_third_launcher_is_one_module(tmp_path, data_dir, monkeypatch):
    (tmp_path / "third.py").write_text(THIRD)
    spec = {**TINY_SPEC, "launcher": {"name": "third.py:InThread", "greeting": "hello"}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["run", str(path), "-p", "quick", "--tracking-uri", uri, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "submitted 1 third.py:InThread workers: third-0" in result.output
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id], "tags.`sweeper.role` = 'cell'")
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
    result = runner.invoke(app, ["status", str(path), "-p", "quick", "--tracking-uri", uri])
    assert result.exit_code == 0 and "done 2" in result.output and "third-0: COMPLETED (here)" in result.output
    result = runner.invoke(app, ["logs", str(path), "--tracking-uri", uri])
    assert result.exit_code == 0 and "hello: 2 finished" in result.output


def test_settings_come_from_the_spec_its_profile_and_the_command_line(write_spec):
    block = {"name": "slurm", "workers": 4, "partition": "gpu", "profiles": {"quick": {"workers": 1}}}
    spec = load_spec(write_spec(launcher=block))
    settings = resolve(spec.launcher, "quick", None, parse_options(["time=30", "options.account=proj", "requeue=true"]))
    assert isinstance(settings, SlurmSettings)
    assert (settings.workers, settings.partition, settings.time, settings.requeue) == (1, "gpu", "30", True)
    assert settings.options == {"account": "proj"}
    here = resolve(spec.launcher, None, "local", {"workers": 2})
    assert isinstance(here, LocalSettings) and here.workers == 2, "another launcher takes none of the block's settings"
    with pytest.raises(UserError, match="launcher 'local': .*gpus_per_worker"):
        resolve(None, None, "local", {"gpus_per_worker": 1})
    with pytest.raises(UserError, match="not key=value"):
        parse_options(["partition"])
    with pytest.raises(UserError, match="'options' was given a value of its own"):
        parse_options(["options=x", "options.account=y"])
    assert parse_options(["partition=[gpu", "x=*y"]) == {"partition": "[gpu", "x": "*y"}, (
        "not YAML: the text as written"
    )
    flags = parse_options(["options.exclusive=true", "options.comment=#x", "options.nodes=2"])
    assert resolve(spec.launcher, None, "slurm", flags).options == {"exclusive": "true", "comment": "#x", "nodes": "2"}


def test_a_block_written_before_launchers_had_names_is_slurms_and_local_stays_the_default(write_spec):
    block = {"workers": 8, "gpus_per_worker": 1, "partition": "gpu", "profiles": {"quick": {"workers": 2}}}
    spec = load_spec(write_spec(launcher=block))  # validates, as it did when the block held SLURM's settings alone
    assert isinstance(resolve(spec.launcher, None, None, {}), LocalSettings), "`sweeper run` still runs here"
    slurm = resolve(spec.launcher, "quick", "slurm", {})
    assert isinstance(slurm, SlurmSettings) and (slurm.workers, slurm.partition, slurm.gpus_per_worker) == (2, "gpu", 1)
    assert isinstance(resolve(load_spec(write_spec(launcher={"workers": 3})).launcher, None, None, {}), LocalSettings)


def test_status_and_logs_look_at_every_launcher_unless_one_is_named(write_spec):
    # a sweep run with `--launcher slurm` from a spec without a launcher block: `status` alone finds its array
    assert watched(load_spec(write_spec()).launcher, None, None) == ["local", "slurm"]
    assert watched(load_spec(write_spec()).launcher, None, "slurm") == ["slurm"]
    named = load_spec(write_spec(launcher={"name": "slurm", "partition": "gpu"})).launcher
    assert watched(named, None, None) == ["slurm", "local"]


def test_an_unknown_launcher_is_a_user_error(write_spec):
    result = runner.invoke(app, ["run", str(write_spec()), "--launcher", "slrum"])
    assert result.exit_code == 2 and "Did you mean 'slurm'" in result.output
