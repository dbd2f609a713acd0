"""Spec validation: good specs expand to cells, bad ones fail with file:line, field and hints."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY_SPEC

from sweeper.errors import UserError
from sweeper.schema.spec import expand, load_spec

EXPERIMENTS = sorted((Path(__file__).resolve().parents[2] / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_shipped_specs_validate(path):
    spec = load_spec(path)
    assert expand(spec) or spec.search is not None, "a spec must have at least one cell (a search samples its own)"
    assert "quick" in spec.profiles, "every shipped spec has a quick profile"


def test_rows_times_seeds_and_overrides(write_spec):
    spec = load_spec(write_spec(seeds=[0, 1, 2]))
    cells = expand(spec)
    assert [(c.label, c.seed) for c in cells] == [(r, s) for r in ("ReLU", "GELU") for s in (0, 1, 2)]
    assert {c.config.activation for c in cells} == {"relu", "gelu"}
    assert len({c.id for c in cells}) == 6, "every cell has its own hash"
    assert expand(spec)[0].id == cells[0].id, "the hash is stable"


def test_profile_overrides_every_cell_and_changes_the_hash(write_spec):
    spec = load_spec(write_spec())
    full, quick = expand(spec), expand(spec, "quick")
    assert all(c.config.epochs == 1 for c in quick)
    assert all(c.config.epochs == 2 for c in full)
    assert {c.id for c in full}.isdisjoint(c.id for c in quick)
    with pytest.raises(UserError, match="no profile 'fast'.*quick"):
        expand(spec, "fast")


def test_dotted_and_nested_overrides_agree(write_spec):
    dotted = load_spec(write_spec(rows=[{"label": "a", "optimizer.lr": 0.1, "data.batch_size": 32}], name="a.yaml"))
    nested = load_spec(
        write_spec(rows=[{"label": "a", "optimizer": {"lr": 0.1}, "data": {"batch_size": 32}}], name="b.yaml")
    )
    a, b = expand(dotted)[0], expand(nested)[0]
    assert a.id == b.id and a.config.optimizer.lr == 0.1 and a.config.optimizer.name == "adam"
    assert a.config.data.train_size == 300, "a nested override keeps the sibling keys"


def test_switching_model_kind_replaces_the_block(write_spec):
    spec = load_spec(write_spec(rows=[{"label": "vgg", "model": {"name": "vgg_a", "batch_norm": True}}]))
    cfg = expand(spec)[0].config
    assert cfg.model.name == "vgg_a" and cfg.model.batch_norm is True


def test_grid_is_a_cartesian_product(write_spec):
    spec = load_spec(write_spec(rows=None, grid={"optimizer.lr": [0.1, 0.01], "activation": ["relu", "gelu", "elu"]}))
    cells = expand(spec)
    assert len(cells) == 6
    assert cells[0].label == "optimizer.lr=0.1, activation=relu"


BAD = [
    ({"rows": [{"label": "x", "activation": "gelux"}]}, r"rows\.0\.activation.*Did you mean 'gelu'"),
    ({"rows": [{"label": "x", "optimizer.lrr": 0.1}]}, r"rows\.0\.optimizer\.lrr: Extra inputs.*Did you mean 'lr'"),
    ({"rows": [{"label": "x", "model.name": "resnet_basik"}]}, r"rows\.0\.model.*Did you mean 'resnet_basic'"),
    ({"rows": [{"label": "x", "optimizer.lr": -1}]}, r"rows\.0\.optimizer\.lr: Input should be greater than 0"),
    ({"rows": [{"label": "x"}], "epochs": 3}, r"epochs: Extra inputs"),
    ({"rows": [{"activation": "relu"}]}, r"every row needs a non-empty `label`"),
    ({"rows": [{"label": "a"}, {"label": "a"}]}, r"unique; repeated: a"),
    ({"grid": {"activation": ["relu"]}}, r"exactly one of `rows`"),
    (
        {"profiles": {"quick": {"data.batch_size": 0}}},
        r"profiles\.quick\.data\.batch_size: Input should be greater than or equal to 1",
    ),
    ({"base": {**TINY_SPEC["base"], "optimizer": {"name": "sgdd"}}}, r"base\.optimizer\.name.*Did you mean 'sgd'"),
    ({"table": {"metrics": []}}, r"table\.metrics"),
]


@pytest.mark.parametrize("change,message", BAD)
def test_bad_specs_name_file_line_and_field(write_spec, change, message):
    path = write_spec(**change)
    with pytest.raises(UserError, match=message) as info:
        load_spec(path)
    assert f"{path}:" in str(info.value)
    assert any(f"{path}:{n}:" in str(info.value) for n in range(1, 60)), "names the YAML line"


def test_line_number_points_at_the_offending_row(tmp_path):
    path = tmp_path / "s.yaml"
    import yaml

    text = yaml.safe_dump(TINY_SPEC, sort_keys=False).replace("activation: gelu", "activation: tanh")
    path.write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "activation: tanh" in ln)
    with pytest.raises(UserError, match=rf"{path}:{line}: rows\.1\.activation"):
        load_spec(path)


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_spec(bad)
    with pytest.raises(UserError, match="no such spec file"):
        load_spec(tmp_path / "nope.yaml")
