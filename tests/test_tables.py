"""The similarity file format: our files and the paper's, read into mean tables; every malformed file named."""

import json

import pytest

from interlace_hf.selection import select_layers
from interlace_hf.tables import SimilarityTables, load_similarity_tables
from test_selection import PACK3, TABLES, roles


# --- loading --------------------------------------------------------------------------------------------------------
def write_pack_files(
    directory, num_layers, packs=(1, 2, 3), paper=False, model="Qwen3-VL-2B", data="coco", summary=True
):
    """Per-sample files `{block start: [sample sims]}`; block i of pack k has samples (i/10 + k/100) +- 0.01."""
    directory.mkdir(parents=True, exist_ok=True)
    for k in packs:
        blocks = num_layers - k + (0 if paper else 1)
        content = {str(i): [i / 10 + k / 100 - 0.01, i / 10 + k / 100 + 0.01] for i in range(blocks)}
        (directory / f"{model}_{data}_pack{k}_hidden_state_similarities.json").write_text(json.dumps(content))
    if summary:
        info = {"model": model, "data": data, "num_layers": num_layers, "pack_sizes": list(packs), "num_samples": 2}
        (directory / "similarity_summary.json").write_text(json.dumps(info))
    return directory


def test_load_our_format(tmp_path):
    write_pack_files(tmp_path, 6)
    tables = load_similarity_tables(tmp_path)
    assert tables.num_layers == 6 and tables.pack_sizes == (1, 2, 3)
    assert tables.means[3] == pytest.approx([0.03, 0.13, 0.23, 0.33])
    assert tables.score(1, 5) == pytest.approx(0.51) and tables.score(3, 4) is None
    plan = select_layers(tables, "interlace", num_drop=1)
    assert plan.metadata["similarity_files"]["1"].endswith("Qwen3-VL-2B_coco_pack1_hidden_state_similarities.json")


def test_load_infers_num_layers_without_summary(tmp_path, caplog):
    write_pack_files(tmp_path, 6, summary=False)
    with caplog.at_level("WARNING", logger="interlace_hf.selection"):
        assert load_similarity_tables(tmp_path).num_layers == 6
    assert "pass num_layers (--num-layers)" in caplog.text


def test_load_paper_format_missing_last_block(tmp_path):
    write_pack_files(tmp_path, 6, paper=True, summary=False)
    tables = load_similarity_tables(tmp_path, num_layers=6)
    assert tables.means[1][-1] is None and tables.means[3] == pytest.approx([0.03, 0.13, 0.23, None])
    # The highest pack-3 block (3-4-5) is the unmeasured one: it is not a candidate; 2-3-4 is.
    assert roles(select_layers(tables, "interlace", num_drop=1)) == ((3,), (2,), (4,))
    assert select_layers(tables, "shortgpt", num_drop=1).dropped_layers == (4,)


def test_load_explicit_paths(tmp_path):
    write_pack_files(tmp_path / "a", 6)
    write_pack_files(tmp_path / "a", 6, model="other")  # makes the directory ambiguous
    paths = {k: tmp_path / "a" / f"other_coco_pack{k}_hidden_state_similarities.json" for k in (1, 3)}
    tables = load_similarity_tables(pack_paths=paths)  # num_layers from the summary beside the files
    assert tables.num_layers == 6 and tables.pack_sizes == (1, 3)
    assert tables.sources[3] == str(paths[3])
    with pytest.raises(ValueError, match=r"several similarity files .* pack 2: .*--hs-pack1-path"):
        load_similarity_tables(tmp_path / "a", pack_paths=paths)  # pack 2 is still ambiguous
    all_paths = {**paths, 2: tmp_path / "a" / "other_coco_pack2_hidden_state_similarities.json"}
    assert load_similarity_tables(tmp_path / "a", pack_paths=all_paths).pack_sizes == (1, 2, 3)


def test_load_ambiguous_directory(tmp_path):
    write_pack_files(tmp_path, 6, model="A")
    write_pack_files(tmp_path, 6, model="B")
    with pytest.raises(ValueError, match=r"several similarity files for one pack size .*A_coco_pack1.*B_coco_pack1"):
        load_similarity_tables(tmp_path)


@pytest.mark.parametrize(
    "content, match",
    [
        ("{nope", "cannot read the similarity file"),
        ("[]", "non-empty JSON object"),
        ("{}", "non-empty JSON object"),
        (json.dumps({"0": [0.5], "2": [0.5]}), r"consecutive from 0, but \[1\] are missing"),
        (json.dumps({"x": [0.5]}), "key 'x' is not a block start index"),
        (json.dumps({"0": []}), "block 0 must hold a non-empty list"),
        (json.dumps({"0": 0.5}), "block 0 must hold a non-empty list"),
        (json.dumps({"0": [0.5, float("nan")]}), "block 0 has non-finite or non-numeric similarities"),
        (json.dumps({"0": ["0.5"]}), "non-finite or non-numeric"),
    ],
)
def test_load_malformed_files(tmp_path, content, match):
    path = tmp_path / "m_d_pack1_hidden_state_similarities.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=f"pack1_hidden_state_similarities.json: .*{match}"):
        load_similarity_tables(tmp_path, num_layers=1)


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="no similarity files given"):
        load_similarity_tables()
    with pytest.raises(ValueError, match="similarity directory .* does not exist"):
        load_similarity_tables(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"no `\*_pack<k>_hidden_state_similarities.json` files"):
        load_similarity_tables(tmp_path)
    with pytest.raises(ValueError, match=r"--hs-pack2-path .* does not exist"):
        load_similarity_tables(pack_paths={2: tmp_path / "nope.json"})
    write_pack_files(tmp_path / "d", 6)
    with pytest.raises(
        ValueError, match=r"pack1_.*: pack size 1 has 6 blocks, but a 8-layer model has 8 .*--num-layers"
    ):
        load_similarity_tables(tmp_path / "d", num_layers=8)
    (tmp_path / "d" / "similarity_summary.json").write_text(json.dumps({"num_layers": "6"}))
    with pytest.raises(ValueError, match="similarity_summary.json: `num_layers` must be a positive integer"):
        load_similarity_tables(tmp_path / "d")
    write_pack_files(tmp_path / "e", 6, packs=(1,))
    write_pack_files(tmp_path / "f", 7, packs=(2,), summary=False)
    mixed = {1: tmp_path / "e" / "Qwen3-VL-2B_coco_pack1_hidden_state_similarities.json",
             2: tmp_path / "f" / "Qwen3-VL-2B_coco_pack2_hidden_state_similarities.json"}  # fmt: skip
    with pytest.raises(ValueError, match="pack size 2 has 6 blocks, but a 6-layer model has 5"):
        load_similarity_tables(pack_paths=mixed, num_layers=6)


def test_tables_validation():
    with pytest.raises(ValueError, match=r"`means\[3\]` must hold 7 block scores"):
        SimilarityTables(9, {3: PACK3[:-1]})
    with pytest.raises(ValueError, match=r"`means\[1\]\[0\]` must be a finite number or None"):
        SimilarityTables(2, {1: [float("inf"), 0.5]})
    with pytest.raises(ValueError, match="pack size 0"):
        SimilarityTables(2, {0: [0.5, 0.5, 0.5]})
    with pytest.raises(ValueError, match="`num_layers` must be a positive integer"):
        SimilarityTables(0, {})
    with pytest.raises(ValueError, match=r"pack size 4 is not loaded .* --pack-sizes 1 2 3 4"):
        TABLES.score(4, 0)
    with pytest.raises(ValueError, match="layer 9 is out of range"):
        TABLES.score(1, 9)
