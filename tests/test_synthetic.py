import json

import pytest
from PIL import Image

from interlace_hf.cli import main
from interlace_hf.data import load_records
from interlace_hf.synthetic import COLOURS, make_synthetic


def test_synthetic_set_is_deterministic_and_answers_are_checkable(tmp_path):
    a = make_synthetic(tmp_path / "a", num=30, seed=5)
    b = make_synthetic(tmp_path / "b", num=30, seed=5)
    c = make_synthetic(tmp_path / "c", num=30, seed=6)
    assert a.read_text() == b.read_text() and a.read_text() != c.read_text()
    assert (tmp_path / "a/images/000007.png").read_bytes() == (tmp_path / "b/images/000007.png").read_bytes()
    items = json.loads(a.read_text())
    records, name = load_records(str(a))
    assert name == "synthetic" and len(records) == 30
    for item, record in zip(items, records):
        answer = item["conversations"][1]["value"]
        image = record.load_images()[0]
        if item["task"] == "count":
            # count the shapes by their colours in the 2x2 grid cells
            cells = [image.crop((x, y, x + 32, y + 32)) for y in (0, 32) for x in (0, 32)]
            filled = sum(any(colour in COLOURS.values() for _, colour in cell.getcolors(4096)) for cell in cells)
            assert int(answer) == filled
        else:
            assert answer and "<image>" not in record.turns[0][0]
    assert {item["task"] for item in items} == {"count", "colour", "shape"}
    assert isinstance(image, Image.Image)


def test_synthetic_cli_and_bad_input(tmp_path, capsys):
    assert main(["data", "synthetic", str(tmp_path / "d"), "--num", "3"]) == 0
    assert len(json.loads((tmp_path / "d/synthetic.json").read_text())) == 3
    assert main(["data", "synthetic", str(tmp_path / "d"), "--num", "3"]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--num must be >= 1"):
        make_synthetic(tmp_path / "e", num=0)
    with pytest.raises(ValueError, match="--image-size must be >= 32"):
        make_synthetic(tmp_path / "e", num=1, image_size=8)
    assert not (tmp_path / "e").exists()
