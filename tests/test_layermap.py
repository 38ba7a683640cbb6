"""The layer map (text) and the similarity profile plot."""

import sys

import pytest

from interlace_hf.layermap import layer_map_rows, plot_similarity_profile, render_layer_map
from interlace_hf.plan import Plan
from interlace_hf.selection import select_layers
from interlace_hf.tables import SimilarityTables
from test_selection import TABLES


# --- layer map ------------------------------------------------------------------------------------------------------
def test_layer_map_rows_and_text():
    plan = select_layers(TABLES, "interlace", num_drop=3)
    rows = layer_map_rows(plan, TABLES)
    assert [r["layer"] for r in rows] == list(range(9))
    assert [r["role"] for r in rows] == plan.roles()
    assert rows[4] == {"layer": 4, "role": "tune", "pack1": 0.75, "pack2": 0.6, "pack3": 0.95}
    assert rows[8]["pack2"] is None and rows[7]["pack3"] is None
    text = render_layer_map(plan, TABLES)
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "role", "pack1", "pack2", "pack3"]
    body = [line.split() for line in lines[2:11]]
    assert [int(cols[0]) for cols in body] == list(range(9))
    expected = {"drop": "DROP", "tune": "tune", "anchor": "anchor", "frozen": "frozen"}
    assert [cols[1] for cols in body] == [expected[r] for r in plan.roles()]
    assert body[8] == ["8", "tune", "0.5000", "-", "-"]
    assert text.rstrip().endswith(plan.describe())


def test_layer_map_extra_pack_and_mismatch():
    tables = SimilarityTables(4, {1: [0.1, 0.2, 0.3, 0.4], 4: [0.5]})
    plan = select_layers(tables, "shortgpt", num_drop=1)
    assert layer_map_rows(plan, tables)[0] == {
        "layer": 0, "role": "frozen", "pack1": 0.1, "pack2": None, "pack3": None, "pack4": 0.5
    }  # fmt: skip
    assert "pack4" in render_layer_map(plan, tables)
    with pytest.raises(ValueError, match="plan is for a 5-layer model but the similarity tables are for 4"):
        layer_map_rows(Plan(5, (1,)), tables)


def test_plot_writes_png(tmp_path):
    plan = select_layers(TABLES, "interlace", num_drop=3)
    path = plot_similarity_profile(plan, TABLES, tmp_path / "plots" / "profile.png")
    assert path == tmp_path / "plots" / "profile.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    assert [p.name for p in path.parent.iterdir()] == ["profile.png"]  # no temporary file left behind


def test_plot_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ValueError, match=r"needs matplotlib: `pip install interlace-hf\[plot\]`"):
        plot_similarity_profile(Plan(9, (1,)), TABLES, tmp_path / "x.png")
    assert not list(tmp_path.iterdir())
