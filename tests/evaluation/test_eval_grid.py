"""Settings, their keys, and grid expansion."""

from __future__ import annotations

import pytest

from evaluation.grid import Grid, GridError, Setting, load_grid


def test_setting_key_lists_non_defaults():
    assert Setting().key == "protocol=open"
    assert Setting(batch_size=1, order_seed=2).key == "protocol=open,batch_size=1,order_seed=2"
    assert Setting(protocol="choice", distractors="nearest").key == "protocol=choice,distractors=nearest"


def test_generation_and_replicate_keys():
    exact = Setting(mapping="exact", batch_size=4)
    shuffled = Setting(order_seed=1)

    assert exact.generation_key() == "protocol=open,batch_size=4"
    assert exact.replicate_key() == "protocol=open,mapping=exact"
    assert shuffled.replicate_key() == Setting(batch_size=64).replicate_key()


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"protocol": "open", "distractors": "random"}, "only applies to the choice protocol"),
        ({"protocol": "open", "closed_candidates": 10}, "only applies to the closed protocol"),
        ({"protocol": "choice", "mapping": "exact"}, "re-maps free-text answers"),
        ({"protocol": "open", "encoder": "all-MiniLM-L6-v2"}, "only applies to mapping=embedding"),
    ],
)
def test_invalid_combinations_rejected(fields, message):
    with pytest.raises(ValueError, match=message):
        Setting(**fields)


def test_vary_one_axis_at_a_time():
    grid = Grid(
        base={"protocol": "open", "mapping": "exact", "batch_size": 4},
        vary={"distractors": ["random"], "encoder": ["all-MiniLM-L6-v2"], "batch_size": [4, 16]},
    )
    keys = [setting.key for setting in grid.expand()]

    # Distractors imply the choice protocol, which drops the base's free-text mapping;
    # an encoder implies embedding mapping; batch_size 4 repeats the base and is listed once.
    assert keys == [
        "protocol=open,mapping=exact,batch_size=4",
        "protocol=choice,distractors=random,batch_size=4",
        "protocol=open,mapping=embedding,encoder=all-MiniLM-L6-v2,batch_size=4",
        "protocol=open,mapping=exact,batch_size=16",
    ]


def test_product_crosses_axes():
    grid = Grid(base={}, vary={"batch_size": [1, 2], "order_seed": [1, 2]}, product=True)
    assert len(grid.expand()) == 5


def test_bundled_grids_load():
    audit = load_grid("audit").expand()
    protocols = {setting.protocol for setting in audit}

    assert protocols == {"open", "multilabel", "closed", "choice"}
    assert {setting.batch_size for setting in audit} == {1, 4, 8, 16, 64}
    assert {setting.distractors for setting in audit if setting.protocol == "choice"} == {"random", "nearest", "confusion"}
    assert all(setting.protocol == "open" for setting in load_grid("supervised").expand())


def test_invalid_grid_file(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("base: {protocol: sideways}\n", encoding="utf-8")
    with pytest.raises(GridError, match="invalid setting"):
        load_grid(path).expand()
    with pytest.raises(GridError, match="cannot read grid file"):
        load_grid(tmp_path / "missing.yaml")
