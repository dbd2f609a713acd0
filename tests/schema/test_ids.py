"""Cell ids survive upgrades: the shipped specs' ids are pinned, and a field added with its default,
at any depth, moves none of them (finished cells are never trained again after an upgrade)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field, create_model

from sweeper.schema.config import DataSpec, OptimizerSpec, TrainConfig
from sweeper.schema.ids import config_hash, id_view
from sweeper.schema.spec import expand, load_spec

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((ROOT / "tests" / "golden" / "cell_ids.json").read_text())


def shipped_ids(validate: Any = TrainConfig.model_validate) -> dict[str, dict[str, dict[str, str]]]:
    """{spec file: {profile: {cell name: id}}} of every shipped spec, configs validated by `validate`."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        spec = load_spec(path)
        out[path.name] = {
            profile or "default": {
                f"{c.label} seed={c.seed}": config_hash(validate(c.config.model_dump())) for c in expand(spec, profile)
            }
            for profile in [None, *spec.profiles]
        }
    return out


def test_every_shipped_spec_and_profile_keeps_its_cell_ids():
    # If this fails, a change moved the ids of cells users have already trained: every finished cell
    # of every sweep would train again. New fields need nothing (ids.FROZEN_FIELDS); a changed
    # default of an existing field does move ids, rightly: the cell is another experiment.
    assert shipped_ids() == GOLDEN


def test_a_nested_field_added_with_its_default_moves_no_id():
    # optimizer.betas (two levels down) and data.crop (a new nested block) as a later version adds them
    Crop = create_model("Crop", pad=(int, 4), mode=(str, "zero"), __base__=DataSpec.__base__)  # noqa: N806
    Data = create_model("Data", crop=(Crop, Crop()), __base__=DataSpec)  # noqa: N806
    Optimizer = create_model(  # noqa: N806
        "Optimizer", betas=(tuple[float, float], Field((0.9, 0.999))), __base__=OptimizerSpec
    )
    Config = create_model(  # noqa: N806
        "Config",
        data=(Data, Data()),
        optimizer=(Optimizer, Optimizer()),
        label_noise=(float, 0.0),
        __base__=TrainConfig,
    )
    assert shipped_ids(Config.model_validate) == GOLDEN
    changed = Config.model_validate(
        {"model": {"name": "baseline_cnn"}, "epochs": 1, "optimizer": {"betas": (0.8, 0.9)}}
    )
    assert id_view(changed)["optimizer"]["betas"] == [0.8, 0.9], "a field set away from its default is hashed"
    assert config_hash(changed) != config_hash(
        TrainConfig.model_validate({"model": {"name": "baseline_cnn"}, "epochs": 1})
    )


@pytest.mark.parametrize(
    ("changes", "moves"), [({"tta": True}, True), ({"tta": False}, False), ({"deterministic": True}, True)]
)
def test_later_top_level_fields_count_only_away_from_their_default(changes, moves):
    base = {"model": {"name": "baseline_cnn"}, "epochs": 25}
    assert config_hash(TrainConfig.model_validate(base)) == "c4b1ba9a37a6"  # pinned since before these fields
    assert (config_hash(TrainConfig.model_validate(base | changes)) != "c4b1ba9a37a6") is moves


def test_a_user_models_arguments_are_part_of_its_id():
    one = TrainConfig.model_validate({"model": {"name": "nets.py:Net", "width": 8}, "epochs": 1})
    two = TrainConfig.model_validate({"model": {"name": "nets.py:Net", "width": 16}, "epochs": 1})
    assert id_view(one)["model"] == {"name": "nets.py:Net", "width": 8}
    assert config_hash(one) != config_hash(two)
