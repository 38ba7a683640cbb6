import json
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlace_hf.plan import Plan, parse_layer_list


def test_roles_and_kept_layers():
    plan = Plan(num_layers=12, dropped_layers=(7, 3), tuned_layers=(4,), anchor_layers=(5,), strategy="interlace")
    assert plan.dropped_layers == (3, 7)  # sorted
    assert plan.kept_layers == (0, 1, 2, 4, 5, 6, 8, 9, 10, 11)
    assert plan.frozen_layers == (0, 1, 2, 6, 8, 9, 10, 11)
    assert plan.roles()[3:8] == ["drop", "tune", "anchor", "frozen", "drop"]
    assert plan.new_index(4) == 3
    assert plan.effective_drop_ratio == pytest.approx(2 / 12)


def test_json_round_trip_has_plan_keys_at_top_level(tmp_path):
    plan = Plan(12, (1, 9), (2,), (3,), "interlace", 0.15, metadata={"seed": 42})
    path = plan.save(tmp_path)
    data = json.loads(path.read_text())
    assert path.name == "plan.json"
    for key in ("dropped_layers", "tuned_layers", "anchor_layers", "kept_layers", "num_layers", "strategy", "drop_ratio"):
        assert key in data
    assert data["kept_layers"] == [0, 2, 3, 4, 5, 6, 7, 8, 10, 11]
    loaded = Plan.load(path)
    assert loaded == plan and loaded.metadata == {"seed": 42}
    assert not list(tmp_path.glob(".plan-*"))  # no temporary file left behind


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_layers=0, dropped_layers=()), "`num_layers` must be a positive integer"),
        (dict(num_layers=12, dropped_layers=(12,)), r"`dropped_layers` has out-of-range layer indices \[12\].*0..11"),
        (dict(num_layers=12, dropped_layers=(-1,)), "`dropped_layers` has out-of-range"),
        (dict(num_layers=12, dropped_layers=(1,), tuned_layers=(99,)), "`tuned_layers` has out-of-range"),
        (dict(num_layers=12, dropped_layers=(3, 3)), r"`dropped_layers` lists layers \[3\] more than once"),
        (dict(num_layers=12, dropped_layers=(3,), tuned_layers=(3,)), r"\[3\] are in both `dropped_layers` and `tuned_layers`"),
        (dict(num_layers=12, dropped_layers=(3,), anchor_layers=(3,)), "both `dropped_layers` and `anchor_layers`"),
        (dict(num_layers=12, dropped_layers=(), tuned_layers=(4,), anchor_layers=(4,)), "both `tuned_layers` and `anchor_layers`"),
        (dict(num_layers=3, dropped_layers=(0, 1, 2)), "drops all 3 layers; keep at least one"),
        (dict(num_layers=12, dropped_layers=(1.5,)), "must hold integer layer indices"),
        (dict(num_layers=12, dropped_layers=(True,)), "must hold integer layer indices"),
        (dict(num_layers=12, dropped_layers="3,7"), "must be a list of layer indices"),
        (dict(num_layers=12, dropped_layers=(1,), drop_ratio=1.0), r"`drop_ratio` must be in \[0, 1\)"),
        (dict(num_layers=12, dropped_layers=(1,), drop_ratio="0.25"), "`drop_ratio` must be a number"),
        (dict(num_layers=12, dropped_layers=(1,), strategy=""), "`strategy` must be a non-empty string"),
    ],
)
def test_validation_errors_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Plan(**kwargs)


def test_from_dict_errors(tmp_path):
    with pytest.raises(ValueError, match=r"unknown plan keys \['droped_layers'\]"):
        Plan.from_dict({"num_layers": 12, "droped_layers": [3]})
    with pytest.raises(ValueError, match=r"missing the keys \['dropped_layers'\]"):
        Plan.from_dict({"num_layers": 12})
    with pytest.raises(ValueError, match="`kept_layers` .* does not match"):
        Plan.from_dict({"num_layers": 4, "dropped_layers": [1], "kept_layers": [0, 1, 2]})
    with pytest.raises(ValueError, match="must be a JSON object"):
        Plan.from_dict([1, 2])
    with pytest.raises(ValueError, match="not valid JSON"):
        Plan.from_json("{nope")
    with pytest.raises(ValueError, match="does not exist"):
        Plan.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"num_layers": 4, "dropped_layers": [9]}))
    with pytest.raises(ValueError, match=r"bad.json: `dropped_layers` has out-of-range"):
        Plan.load(bad)
    with pytest.raises(ValueError, match="is dropped by this plan"):
        Plan(4, (1,)).new_index(1)


def test_parse_layer_list():
    assert parse_layer_list("3,7") == (3, 7)
    assert parse_layer_list("3-5, 9") == (3, 4, 5, 9)
    with pytest.raises(ValueError, match="`--drop-layers` got 'a,3'"):
        parse_layer_list("a,3")
    with pytest.raises(ValueError, match="names no layers"):
        parse_layer_list(" , ")
    with pytest.raises(ValueError, match="is not a layer index or range"):
        parse_layer_list("5-3")


@st.composite
def plans(draw):
    n = draw(st.integers(min_value=1, max_value=48))
    roles = draw(st.lists(st.sampled_from("dtaf"), min_size=n, max_size=n))
    if all(r == "d" for r in roles):
        roles[draw(st.integers(0, n - 1))] = "f"
    pick = lambda r: tuple(i for i, role in enumerate(roles) if role == r)  # noqa: E731
    ratio = draw(st.none() | st.floats(min_value=0, max_value=0.99))
    return Plan(n, pick("d"), pick("t"), pick("a"), draw(st.sampled_from(["interlace", "manual"])), ratio)


@given(plans())
def test_plan_invariants(plan):
    assert sorted(plan.kept_layers + plan.dropped_layers) == list(range(plan.num_layers))
    assert set(plan.tuned_layers) | set(plan.anchor_layers) | set(plan.frozen_layers) == set(plan.kept_layers)
    assert len(plan.kept_layers) >= 1
    assert [plan.new_index(i) for i in plan.kept_layers] == list(range(plan.num_kept))
    assert Plan.from_json(plan.to_json()) == plan


def test_pure_modules_import_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import interlace_hf.plan, interlace_hf.args, interlace_hf.commands.cli\n"
        "from interlace_hf.commands.cli import build_parser; build_parser()\n"
        "print('ok')\n"
    )
    env_code = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": ""}
    )
    assert env_code.returncode == 0, env_code.stderr
    assert env_code.stdout.strip() == "ok"
