import math
import random
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interlace_hf.selection import SIMILARITY_STRATEGIES, STRATEGIES, num_to_drop, select_layers
from interlace_hf.tables import SimilarityTables

# A hand-written 9-layer model. Block start i of pack k covers layers i..i+k-1.
#   pack 3 ranking: 4 (.95), 2 (.90), 3 (.70), 1 (.60), 0 (.50), 5 (.40), 6 (.30)
#   pack 1 ranking: 5 (.90), 1 (.85), 2 (.85), 0 (.80), 4 (.75), 3 (.70), 7 (.65), 6 (.60), 8 (.50)
#   pack 2: only block 7 (layers 7, 8) stands out.
PACK1 = [0.80, 0.85, 0.85, 0.70, 0.75, 0.90, 0.60, 0.65, 0.50]
PACK2 = [0.70, 0.60, 0.60, 0.60, 0.60, 0.60, 0.60, 0.80]
PACK3 = [0.50, 0.60, 0.90, 0.70, 0.95, 0.40, 0.30]
TABLES = SimilarityTables(9, {1: PACK1, 2: PACK2, 3: PACK3})


def roles(plan):
    return plan.dropped_layers, plan.tuned_layers, plan.anchor_layers


# --- how many -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "num_layers, ratio, expected",
    [(36, 0.25, 9), (36, 0.10, 3), (36, 0.15, 5), (36, 0.20, 7), (12, 0.25, 3), (12, 0.1, 1), (20, 0.15, 3),
     (100, 0.29, 29), (28, 0.25, 7)],
)  # fmt: skip
def test_num_to_drop_floors(num_layers, ratio, expected):
    assert num_to_drop(num_layers, drop_ratio=ratio) == expected


def test_num_to_drop_count_and_errors():
    assert num_to_drop(36, num_drop=4) == 4
    with pytest.raises(ValueError, match="exactly one of --drop-ratio .* and --num-drop"):
        num_to_drop(36)
    with pytest.raises(ValueError, match="exactly one of --drop-ratio"):
        num_to_drop(36, drop_ratio=0.25, num_drop=9)
    for ratio in (0, 1, 1.5, -0.1, float("nan"), True, "0.25"):
        with pytest.raises(ValueError, match=r"--drop-ratio must be a number in \(0, 1\)"):
            num_to_drop(36, drop_ratio=ratio)
    for count in (0, 36, -1, 2.0, True):
        with pytest.raises(ValueError, match=r"--num-drop must be an integer in 1..35"):
            num_to_drop(36, num_drop=count)
    with pytest.raises(ValueError, match="drops no layer .* --num-drop 1"):
        num_to_drop(12, drop_ratio=0.05)


# --- interlace ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n, dropped, tuned, anchors, fallback",
    [
        (1, (5,), (4,), (6,), False),  # triplet 4-5-6: pack1[4] < pack1[5] -> drop 5
        (2, (1, 5), (2, 4), (3, 6), False),  # 2-4 and 3-5 overlap; triplet 1-2-3 has a pack-1 tie -> drop 1
        (3, (1, 5, 7), (2, 4, 8), (3, 6), True),  # no free triplet left: pair 7-8 by pack 2, pack1[7] > pack1[8]
    ],
)
def test_interlace_exact(n, dropped, tuned, anchors, fallback):
    plan = select_layers(TABLES, "interlace", num_drop=n)
    assert roles(plan) == (dropped, tuned, anchors)
    assert plan.strategy == "interlace" and plan.drop_ratio is None
    assert plan.metadata["num_drop"] == n
    assert plan.metadata["pack2_fallback"] is fallback
    assert plan.metadata["protected_layers"] == []
    assert [b["start"] for b in plan.metadata["blocks"]] == [4, 1, 7][:n]


def test_interlace_records_the_drop_ratio():
    plan = select_layers(TABLES, "interlace", drop_ratio=0.25)  # floor(2.25) = 2
    assert plan.dropped_layers == (1, 5) and plan.drop_ratio == 0.25 and plan.metadata["num_drop"] == 2


def test_interlace_ties_lower_start_first_and_pack1_tie_drops_first():
    flat = SimilarityTables(6, {1: [0.5] * 6, 3: [0.5] * 4})
    plan = select_layers(flat, "interlace", num_drop=2)
    assert roles(plan) == ((0, 3), (1, 4), (2, 5))


def test_interlace_oa_exact():
    assert roles(select_layers(TABLES, "interlace_oa", num_drop=2)) == ((1, 4), (2, 5), (3, 6))
    plan = select_layers(TABLES, "interlace_oa", num_drop=3)
    assert roles(plan) == ((1, 4, 7), (2, 5, 8), (3, 6))
    assert plan.metadata["pack2_fallback"] is True
    # OA never reads pack-1 scores.
    assert roles(select_layers(SimilarityTables(9, {3: PACK3}), "interlace_oa", num_drop=2)) == ((1, 4), (2, 5), (3, 6))


def test_interlace_protected_layers():
    # Protecting 5 swaps the choice of triplet 4-5-6: 4 is dropped and the protected 5 is tuned.
    assert roles(select_layers(TABLES, "interlace", num_drop=2, protected_layers=[5])) == ((1, 4), (2, 5), (3, 6))
    # Protecting both 4 and 5 skips triplet 4-5-6: 2-3-4 drops 2, then 5-6-7 would drop 5 but swaps to 6.
    plan = select_layers(TABLES, "interlace", num_drop=2, protected_layers=(4, 5))
    assert roles(plan) == ((2, 6), (3, 5), (4, 7))
    assert plan.metadata["protected_layers"] == [4, 5]
    # OA cannot swap: a triplet whose first layer is protected is skipped.
    assert roles(select_layers(TABLES, "interlace_oa", num_drop=2, protected_layers=[4])) == ((2, 5), (3, 6), (4, 7))


def test_interlace_not_enough_layers():
    with pytest.raises(ValueError, match=r"`interlace` found only 3 of the 4 layers to drop .* lower --drop-ratio"):
        select_layers(TABLES, "interlace", num_drop=4)
    with pytest.raises(ValueError, match=r"found only 2 of the 4 .* protect fewer layers \(--protect \[0, 2, 3, 4\]\)"):
        select_layers(TABLES, "interlace_oa", num_drop=4, protected_layers=[0, 2, 3, 4])
    # Without pack 2 the fallback cannot run; the error says how to get it.
    no_pairs = SimilarityTables(9, {1: PACK1, 3: PACK3})
    assert select_layers(no_pairs, "interlace", num_drop=2).dropped_layers == (1, 5)
    with pytest.raises(ValueError, match=r"found only 2 of the 3 .* pack-size 2 .* --pack-sizes 1 2 3"):
        select_layers(no_pairs, "interlace", num_drop=3)


def test_missing_pack_sizes_name_the_fix():
    with pytest.raises(ValueError, match=r"`interlace` needs pack-size 3 .* --pack-sizes 1 2 3"):
        select_layers(SimilarityTables(9, {1: PACK1}), "interlace", num_drop=1)
    with pytest.raises(ValueError, match=r"`interlace` needs pack-size 1 .* --hs-pack1-path"):
        select_layers(SimilarityTables(9, {3: PACK3}), "interlace", num_drop=1)
    for strategy in ("interlace_tn", "consecutive", "shortgpt"):
        with pytest.raises(ValueError, match=f"`{strategy}` needs pack-size 1"):
            select_layers(SimilarityTables(9, {3: PACK3}), strategy, num_drop=1)


# --- train-next -----------------------------------------------------------------------------------------------------
def test_interlace_tn_exact():
    assert roles(select_layers(TABLES, "interlace_tn", num_drop=3)) == ((1, 3, 5), (2, 4, 6), ())
    assert roles(select_layers(TABLES, "interlace_tn", num_drop=4)) == ((1, 3, 5, 7), (2, 4, 6, 8), ())
    with pytest.raises(ValueError, match="`interlace_tn` found only 4 of the 5"):
        select_layers(TABLES, "interlace_tn", num_drop=5)
    assert roles(select_layers(TABLES, "interlace_tn", num_drop=1, protected_layers=[5])) == ((1,), (2,), ())


def test_interlace_tn_never_tunes_past_the_last_layer():
    last_best = SimilarityTables(5, {1: [0.1, 0.2, 0.3, 0.4, 0.9]})
    assert roles(select_layers(last_best, "interlace_tn", num_drop=1)) == ((3,), (4,), ())


# --- random ---------------------------------------------------------------------------------------------------------
def test_random_is_seeded_locally_and_matches_the_papers_draw():
    state = random.getstate()
    try:
        random.seed(0)
        expected_next = random.Random(0).random()
        plan = select_layers(TABLES, "random", num_drop=2, seed=42)
        assert random.random() == expected_next  # the global RNG was not touched

        random.seed(42)  # the paper's draw: global RNG, drop then tune among the rest
        dropped = random.sample(list(range(9)), 2)
        tuned = random.sample([i for i in range(9) if i not in dropped], 2)
    finally:
        random.setstate(state)
    assert plan.dropped_layers == tuple(sorted(dropped)) and plan.tuned_layers == tuple(sorted(tuned))
    assert plan.metadata["seed"] == 42
    assert select_layers(TABLES, "random", num_drop=2, seed=42) == plan
    others = {roles(select_layers(TABLES, "random", num_drop=2, seed=s)) for s in range(10)}
    assert len(others) > 1


def test_random_needs_no_similarities_and_respects_protected():
    bare = SimilarityTables(9, {})
    for seed in range(20):
        plan = select_layers(bare, "random", num_drop=3, seed=seed, protected_layers=[0, 1, 2, 3])
        assert not set(plan.dropped_layers) & {0, 1, 2, 3}
        assert len(plan.tuned_layers) == 3
    # 2n > num_layers: every survivor is tuned.
    plan = select_layers(bare, "random", num_drop=5)
    assert len(plan.dropped_layers) == 5 and plan.tuned_layers == plan.kept_layers
    with pytest.raises(ValueError, match="`random` found only 1 of the 2 .*--protect"):
        select_layers(bare, "random", num_drop=2, protected_layers=range(8))


# --- consecutive ----------------------------------------------------------------------------------------------------
def test_consecutive_exact_and_shifted():
    plan = select_layers(TABLES, "consecutive", num_drop=2)
    assert roles(plan) == ((5, 6), (7, 8), ())
    # best layer 5, but 5..10 would not fit in 9 layers: the window shifts left to 3.
    plan = select_layers(TABLES, "consecutive", num_drop=3)
    assert roles(plan) == ((3, 4, 5), (6, 7, 8), ())
    assert plan.metadata["best_layer"] == 5 and plan.metadata["start"] == 3


def test_consecutive_at_the_end_of_the_model():
    last_best = SimilarityTables(9, {1: [0.1] * 8 + [0.9]})
    assert roles(select_layers(last_best, "consecutive", num_drop=2)) == ((5, 6), (7, 8), ())
    assert roles(select_layers(last_best, "consecutive", num_drop=1)) == ((7,), (8,), ())
    # 2n > num_layers: the window starts at 0 and the tuned part stops at the last layer.
    assert roles(select_layers(last_best, "consecutive", num_drop=5)) == ((0, 1, 2, 3, 4), (5, 6, 7, 8), ())


def test_consecutive_protected_moves_to_the_next_best_layer():
    # best 5 -> block 5-6 holds 6; next best 1 -> block 1-2.
    assert roles(select_layers(TABLES, "consecutive", num_drop=2, protected_layers=[6])) == ((1, 2), (3, 4), ())
    with pytest.raises(ValueError, match="`consecutive` found only 0 of the 5 .* holds a protected layer"):
        select_layers(TABLES, "consecutive", num_drop=5, protected_layers=[4])


# --- baselines ------------------------------------------------------------------------------------------------------
def test_shortgpt_exact():
    plan = select_layers(TABLES, "shortgpt", num_drop=3)
    assert roles(plan) == ((1, 2, 5), (), ())
    assert plan.metadata["tune_baselines"] is False
    assert roles(select_layers(TABLES, "shortgpt", num_drop=3, tune_baselines=True)) == ((1, 2, 5), (3, 4, 6), ())
    assert select_layers(TABLES, "shortgpt", num_drop=3, protected_layers=[1]).dropped_layers == (0, 2, 5)
    # One tuned survivor per dropped layer (the same budget as INTERLACE's): 2's next survivor, 3, is 1's, so 2
    # takes 4. A dropped last layer has no next survivor left: it takes the nearest free one before it.
    last_best = SimilarityTables(5, {1: [0.1, 0.2, 0.3, 0.8, 0.9]})
    assert roles(select_layers(last_best, "shortgpt", num_drop=2, tune_baselines=True)) == ((3, 4), (1, 2), ())


def test_shortgpt_skips_unmeasured_layers():
    paper_format = SimilarityTables(5, {1: [0.1, 0.2, 0.3, 0.8, None]})
    assert select_layers(paper_format, "shortgpt", num_drop=2).dropped_layers == (2, 3)
    with pytest.raises(ValueError, match="`shortgpt` found only 2 of the 3"):
        select_layers(paper_format, "shortgpt", num_drop=3, protected_layers=[0, 1])


def test_angular_exact():
    plan = select_layers(TABLES, "angular", num_drop=3)
    assert roles(plan) == ((4, 5, 6), (), ())
    assert plan.metadata["angular_distance"] == pytest.approx(math.acos(0.95) / math.pi)
    assert select_layers(TABLES, "angular", num_drop=3, tune_baselines=True).tuned_layers == (3, 7, 8)
    assert roles(select_layers(TABLES, "angular", num_drop=2, tune_baselines=True)) == ((7, 8), (5, 6), ())
    assert select_layers(TABLES, "angular", num_drop=1).dropped_layers == (5,)
    # protecting 5 rules out blocks 3, 4 and 5; the next best is 2-3-4.
    assert select_layers(TABLES, "angular", num_drop=3, protected_layers=[5]).dropped_layers == (2, 3, 4)
    ties = SimilarityTables(6, {2: [0.3, 0.9, 0.9, 0.2, 0.9]})
    assert select_layers(ties, "angular", num_drop=2).dropped_layers == (1, 2)


def test_angular_needs_pack_size_n():
    with pytest.raises(ValueError, match=r"needs pack-size 4 .* --pack-sizes 1 2 3 4`"):
        select_layers(TABLES, "angular", num_drop=4)
    with pytest.raises(ValueError, match="`angular` found only 0 of the 3"):
        select_layers(TABLES, "angular", num_drop=3, protected_layers=[2, 5, 8])


def test_strategy_errors():
    with pytest.raises(
        ValueError,
        match=r"`sleb` cannot be computed .*interlace_hf.sleb.select_sleb.* --strategy sleb --model M --data D",
    ):
        select_layers(TABLES, "sleb", num_drop=2)
    with pytest.raises(ValueError, match=r"unknown strategy 'interlace-oa'; choose one of \['interlace', "):
        select_layers(TABLES, "interlace-oa", num_drop=2)
    with pytest.raises(ValueError, match="--tune-baselines applies to `shortgpt` and `angular` only"):
        select_layers(TABLES, "interlace", num_drop=2, tune_baselines=True)
    with pytest.raises(ValueError, match=r"--protect lists 9, .*valid indices 0..8"):
        select_layers(TABLES, "interlace", num_drop=2, protected_layers=[9])
    with pytest.raises(ValueError, match="--protect must be a list"):
        select_layers(TABLES, "interlace", num_drop=2, protected_layers="3")
    with pytest.raises(ValueError, match="`similarities` must be a SimilarityTables"):
        select_layers({1: PACK1}, "interlace", num_drop=2)
    with pytest.raises(ValueError, match="--seed must be an integer"):
        select_layers(TABLES, "random", num_drop=2, seed="42")
    assert set(SIMILARITY_STRATEGIES) | {"sleb"} == set(STRATEGIES)


# --- invariants -----------------------------------------------------------------------------------------------------
@st.composite
def requests(draw):
    num_layers = draw(st.integers(min_value=3, max_value=20))
    strategy = draw(st.sampled_from(SIMILARITY_STRATEGIES))
    n = draw(st.integers(min_value=1, max_value=num_layers - 1))
    # A few distinct values make ties common; `paper` blanks the last block like the paper's files.
    value = st.sampled_from([0.1, 0.5, 0.5, 0.8, 0.9, 0.95]) | st.floats(-1, 1)
    paper = draw(st.booleans())
    packs = {1, 2, 3} | ({n} if strategy == "angular" else set())
    means = {}
    for k in sorted(packs):
        scores = draw(st.lists(value, min_size=num_layers - k + 1, max_size=num_layers - k + 1))
        means[k] = scores[:-1] + [None] if paper else scores
    protected = draw(st.sets(st.integers(0, num_layers - 1), max_size=num_layers // 3))
    tune = strategy in ("shortgpt", "angular") and draw(st.booleans())
    return SimilarityTables(num_layers, means), strategy, n, protected, tune


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), st.integers(0, 2**16))
def test_plan_invariants(request, seed):
    tables, strategy, n, protected, tune = request
    kwargs = {"num_drop": n, "seed": seed, "protected_layers": protected, "tune_baselines": tune}
    num_layers = tables.num_layers
    try:
        plan = select_layers(tables, strategy, **kwargs)
    except ValueError as err:
        assert f"`{strategy}` found only" in str(err)
        eligible = [i for i in range(num_layers) if i not in protected]
        if strategy == "random":
            assert n > len(eligible)
        if strategy == "shortgpt":
            assert n > len([i for i in eligible if tables.means[1][i] is not None])
        return
    assert plan == select_layers(tables, strategy, **kwargs)  # deterministic
    dropped, tuned, anchors = map(set, roles(plan))
    assert len(dropped) == n == plan.metadata["num_drop"]
    assert not dropped & tuned and not dropped & anchors and not tuned & anchors
    assert all(0 <= i < num_layers for i in dropped | tuned | anchors)
    assert not dropped & protected
    if tune:  # a tuned baseline gets INTERLACE's budget: one tuned layer per dropped one
        assert len(tuned) == min(n, num_layers - n)

    if strategy in ("interlace", "interlace_oa", "interlace_tn"):
        blocks = plan.metadata["blocks"]
        covered = [layer for b in blocks for layer in range(b["start"], b["start"] + max(b["pack"], 2))]
        assert len(covered) == len(set(covered))  # blocks never overlap
        assert {b["drop"] for b in blocks} == dropped and {b["tune"] for b in blocks} == tuned
        assert {b["anchor"] for b in blocks if b["anchor"] is not None} == anchors
        for b in blocks:
            start = b["start"]
            assert b["score"] is not None and b["score"] == tables.means[b["pack"]][start]
            if strategy == "interlace_tn":
                assert (b["drop"], b["tune"], b["anchor"]) == (start, start + 1, None)
                continue
            # Each triplet is {drop, tune} + anchor, contiguous; a pair has no anchor.
            assert {b["drop"], b["tune"]} == {start, start + 1}
            assert b["anchor"] == (start + 2 if b["pack"] == 3 else None)
            if strategy == "interlace_oa":
                assert b["drop"] == start
            elif start not in protected and start + 1 not in protected:
                s = tables.means[1]
                assert b["drop"] == (start + 1 if s[start] < s[start + 1] else start)
        packs = [b["pack"] for b in blocks]
        assert packs == sorted(packs, reverse=True)  # triplets first, then the pair fallback
        assert (2 in packs) == plan.metadata.get("pack2_fallback", False)
        for pack in set(packs):  # visited highest score first
            scores = [b["score"] for b in blocks if b["pack"] == pack]
            assert scores == sorted(scores, reverse=True)
    elif strategy == "random":
        assert len(tuned) == min(n, num_layers - n)
    elif strategy == "consecutive":
        start = plan.metadata["start"]
        assert dropped == set(range(start, start + n))
        assert tuned == set(range(start + n, min(start + 2 * n, num_layers)))
    elif strategy == "shortgpt":
        scores = tables.means[1]
        assert all(scores[i] is not None for i in dropped)
        rest = [scores[i] for i in range(num_layers) if i not in dropped | protected and scores[i] is not None]
        assert not rest or min(scores[i] for i in dropped) >= max(rest)
    elif strategy == "angular":
        start = plan.metadata["start"]
        assert dropped == set(range(start, start + n))
        assert tables.means[n][start] is not None
    if strategy in ("shortgpt", "angular"):
        assert bool(tuned) == tune
        assert all(i in plan.kept_layers for i in tuned)


# --- torch-free -----------------------------------------------------------------------------------------------------
def test_selection_and_layermap_import_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from interlace_hf.selection import select_layers; from interlace_hf.tables import SimilarityTables\n"
        "from interlace_hf.layermap import render_layer_map\n"
        "t = SimilarityTables(6, {1: [0.1, 0.9, 0.3, 0.4, 0.5, 0.6], 2: [0.5] * 5, 3: [0.2, 0.8, 0.3, 0.1]})\n"
        "plan = select_layers(t, 'interlace', num_drop=1)\n"
        "assert 'DROP' in render_layer_map(plan, t)\n"
        "print(plan.dropped_layers)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": ""},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1,)"
