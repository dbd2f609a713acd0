"""`sweeper validate` on hostile and mistaken specs: one clear paragraph, exit 2, every problem at once."""

from __future__ import annotations

import os
import time

import pytest
import yaml
from conftest import TINY_SPEC
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.errors import UserError
from sweeper.schema.spec import expand, load_spec

runner = CliRunner()


def validate(path) -> tuple[int, str]:
    result = runner.invoke(app, ["validate", str(path)])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


def test_random_bytes_are_a_clear_error(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_bytes(b"\xa7\x00\xff" + os.urandom(4093))
    code, out = validate(path)
    assert code == 2 and "not UTF-8 text" in out and "Traceback" not in out


@pytest.mark.parametrize(
    "text,message",
    [
        ("a: \x00b\n", "not valid YAML"),
        ("[" * 50000 + "\n", "nested too deeply|not valid YAML"),
        ("- 1\n", "a spec is a YAML mapping"),
        ("", "a spec is a YAML mapping"),
    ],
    ids=["nul", "deep", "list", "empty"],
)
def test_odd_text_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_spec(path)


def test_alias_bomb_is_refused_fast(tmp_path):
    lines = ["name: bomb", "a0: &a0 {" + ", ".join(f"k{j}: {j}" for j in range(10)) + "}"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} {{" + ", ".join(f"k{j}: *a{i - 1}" for j in range(10)) + "}")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join([*lines, "base: *a9"]) + "\n")
    t0 = time.monotonic()
    with pytest.raises(UserError, match="expands to more than"):
        load_spec(path)
    assert time.monotonic() - t0 < 5


def test_a_small_alias_is_still_fine(write_spec, tmp_path):
    text = write_spec().read_text().replace("base:\n", "base: &b\n", 1) + "extra_copy: *b\n"
    path = tmp_path / "alias.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match="extra_copy: Extra inputs"):  # aliases expand; the key is unknown
        load_spec(path)


def test_huge_file_is_refused(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("name: x\nbase: {" + ", ".join(f"k{i}: {i}" for i in range(150_000)) + "}\n")
    with pytest.raises(UserError, match="larger than"):
        load_spec(path)


def test_duplicate_keys_name_both_lines(write_spec, tmp_path):
    text = write_spec().read_text().replace("  epochs: 2\n", "  epochs: 1\n  epochs: 2\n")
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    first = text.splitlines().index("  epochs: 1") + 1
    with pytest.raises(
        UserError, match=rf"dup.yaml:{first + 1}: base.epochs: duplicate key \(first given on line {first}\)"
    ):
        load_spec(path)
    path.write_text(text.replace("  epochs: 1\n", "").replace("- label: ReLU\n", "- label: ReLU\n  label: X\n"))
    with pytest.raises(UserError, match=r"rows\.0\.label: duplicate key"):
        load_spec(path)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"rows": []}, r"rows: .*`rows` is empty"),
        ({"rows": None, "grid": {}}, r"grid: .*`grid` is empty"),
        ({"rows": None, "grid": {"activation": []}}, r"grid key\(s\) activation list no values"),
    ],
)
def test_a_spec_without_cells_is_an_error(write_spec, change, message):
    with pytest.raises(UserError, match=message):
        load_spec(write_spec(**change))


@pytest.mark.parametrize(
    "table,message",
    [
        (
            {"metrics": [{"key": "test_accc", "header": "A"}]},
            r"table\.metrics\.0\.key: 'test_accc' is not a metric.*'test_acc'",
        ),
        ({"metrics": [{"key": "beta_smooth", "header": "B"}]}, r"'beta_smooth'.*need a `probe:` block"),
        (
            {"columns": [{"key": "optimizer.lrr", "header": "x"}], "metrics": [{"key": "test_acc", "header": "A"}]},
            r"table\.columns\.0\.key: 'optimizer\.lrr' is not a config key.*'optimizer\.lr'",
        ),
        (
            {"columns": [{"key": "metrics.parms", "header": "x"}], "metrics": [{"key": "test_acc", "header": "A"}]},
            r"'metrics\.parms' is not a metric.*'metrics\.params'",
        ),
    ],
)
def test_table_keys_nothing_logs_are_errors(write_spec, table, message):
    with pytest.raises(UserError, match=message):
        load_spec(write_spec(table=table))


def test_table_keys_that_exist_pass(write_spec):
    table = {
        "columns": [
            {"key": "label", "header": "L"},
            {"key": "tta", "header": "T"},
            {"key": "metrics.params", "header": "P"},
        ],
        "metrics": [{"key": "train_time", "header": "s"}, {"key": "val_loss", "header": "v"}],
    }
    load_spec(write_spec(table=table))
    probe = {**TINY_SPEC["base"], "probe": {"every": 5}}
    load_spec(write_spec(base=probe, table={"metrics": [{"key": "beta_smooth", "header": "B"}]}, name="p.yaml"))


@pytest.mark.parametrize(
    "row,message",
    [
        (
            {"optimizer.momentum": 0.5},
            r"rows\.1\.optimizer\.momentum: optimizer\.momentum=0\.5 has no effect here: only optimizer\.name sgd",
        ),
        ({"loss.gamma": 3.0}, r"loss\.gamma=3\.0 has no effect here: only loss\.name focal"),
        (
            {"loss.penalty_weight": 0.1},
            r"loss\.penalty_weight=0\.1 has no effect here: only loss\.penalty l1 or l2 uses it",
        ),
        (
            {"loss.name": "focal", "loss.label_smoothing": 0.1},
            r"loss\.label_smoothing=0\.1 has no effect here: only loss\.name cross_entropy uses it",
        ),
    ],
)
def test_settings_without_effect_are_rejected(write_spec, row, message):
    rows = [TINY_SPEC["rows"][0], {"label": "x", **row}]
    with pytest.raises(UserError, match=message):
        load_spec(write_spec(rows=rows))


def test_settings_at_default_or_off_pass_and_keep_the_cell_id(write_spec):
    plain = expand(load_spec(write_spec(rows=[{"label": "a"}], name="a.yaml")))[0]
    spelt = {"label": "a", "optimizer.momentum": 0.9, "loss.gamma": 2.0, "loss.penalty_weight": 0.0001}
    same = expand(load_spec(write_spec(rows=[spelt], name="b.yaml")))[0]
    assert same.id == plain.id
    load_spec(write_spec(rows=[{"label": "a", "loss.penalty_weight": 0.0, "optimizer.momentum": 0.0}], name="c.yaml"))
    sgd = {"label": "a", "optimizer.name": "sgd", "optimizer.momentum": 0.5}
    assert expand(load_spec(write_spec(rows=[sgd], name="d.yaml")))[0].config.optimizer.momentum == 0.5


def test_all_problems_in_one_pass(tmp_path):
    spec = yaml.safe_load(yaml.safe_dump(TINY_SPEC))
    spec["name"] = "bad name!"
    spec["base"]["model"]["name"] = "plain_cnnn"
    spec["base"]["batch_size"] = 64
    spec["rows"][1] |= {"activation": "gelux", "optimizer.lrr": 3}
    spec["table"]["metrics"][0]["key"] = "test_accc"
    spec["table"]["bogus"] = 1
    spec["profiles"]["quick"]["epochs"] = 0
    path = tmp_path / "seven.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(UserError) as info:
        load_spec(path)
    text = str(info.value)
    for needle in (
        "name: String should match",
        "base.model.name: 'plain_cnnn' is not a known model. Did you mean 'plain_cnn'",
        "base.batch_size: Extra inputs are not permitted. Did you mean 'data.batch_size'?",
        "rows.1.activation",
        "rows.1.optimizer.lrr",
        "'test_accc' is not a metric",
        "table.bogus",
        "profiles.quick.epochs",
    ):
        assert needle in text, needle
    assert "(8 problems)" in text


def test_suggestions_search_nested_keys_and_bare_kind_names(write_spec):
    with pytest.raises(UserError, match=r"rows\.0\.batch_size: Extra inputs.*Did you mean 'data\.batch_size'"):
        load_spec(write_spec(rows=[{"label": "a", "batch_size": 8}]))
    with pytest.raises(UserError, match=r"epochs: Extra inputs.*Did you mean 'base\.epochs'"):
        load_spec(write_spec(epochs=3))
    with pytest.raises(UserError, match=r"base\.scheduler: .*write `scheduler: \{name: plateau\}`"):
        load_spec(write_spec(base={**TINY_SPEC["base"], "scheduler": "plateau"}))


def test_profiles_may_set_seeds(write_spec):
    spec = load_spec(write_spec(seeds=[0, 1, 2], profiles={"quick": {"epochs": 1, "seeds": [7]}}))
    assert [c.seed for c in expand(spec)] == [0, 1, 2, 0, 1, 2]
    assert [c.seed for c in expand(spec, "quick")] == [7, 7]
    assert all(c.config.epochs == 1 for c in expand(spec, "quick"))
    with pytest.raises(UserError, match=r"profiles\.quick\.seeds must be a non-empty list"):
        load_spec(write_spec(profiles={"quick": {"seeds": []}}, name="bad.yaml"))


def test_validate_prints_each_rows_changes_from_base(write_spec):
    code, out = validate(write_spec(rows=[{"label": "Same"}, {"label": "Fast", "optimizer.lr": 0.01}]))
    assert code == 0, out
    assert "Same: as base, " in out and "Fast: optimizer.lr=0.01, " in out


def test_schema_lists_every_key_with_type_default_and_meaning():
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    out = result.output
    assert "optimizer.momentum: float; >= 0.0, < 1.0; default 0.9  -- optimizers with momentum (sgd, muon)" in out
    assert "scheduler.patience: int; >= 0; default 3" in out
    assert "data.augment: one of none, weak, translate, autoaugment, strong, altflip; default 'none'" in out
    assert "table.metrics[].key: str; required" in out
    assert "profiles:" in out and "seeds" in out
