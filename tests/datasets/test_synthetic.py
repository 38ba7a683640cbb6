import json

import pytest
from PIL import Image

from interlace_hf.commands.cli import main
from interlace_hf.data import load_records
from interlace_hf.datasets.synthetic import (
    BAR_COLOUR,
    BAR_LABELS,
    COLOURS,
    MIN_LEGIBLE_SIZE,
    COMPOSITIONAL_TASKS,
    TASKS,
    WORDS,
    bar_chart_geometry,
    draw_word,
    make_synthetic,
)


def read_grid(image: Image.Image) -> dict[int, tuple[str, str]]:
    """cell (0 1 / 2 3) -> (shape, colour) of a shapes image, from its pixels: a square fills its box (the cell less
    4 pixels each side; 24x24 at 64 pixels), a circle about 79% of it, a triangle about half."""
    found = {}
    half = image.width // 2
    for cell in range(4):
        x, y = (cell % 2) * half, (cell // 2) * half
        colours = {colour: count for count, colour in image.crop((x, y, x + half, y + half)).getcolors(65536)}
        count, colour = max((colours.get(rgb, 0), name) for name, rgb in COLOURS.items())
        if count:
            fill = count / (half - 8) ** 2
            found[cell] = ("square" if fill > 0.95 else "circle" if fill > 0.65 else "triangle", colour)
    return found


def read_shapes(image: Image.Image) -> list[tuple[str, str]]:
    """(shape, colour) per filled cell, in cell order."""
    return list(read_grid(image).values())


def read_bars(image: Image.Image) -> list[int]:
    """Bar values from a chart's pixels: each bar's height in `BAR_COLOUR` pixels over the unit height."""
    side = image.width
    row = [image.getpixel((x, bar_chart_geometry(side, 3)["baseline"] - 1)) for x in range(side)]
    num_bars = sum(1 for x in range(1, side) if row[x] == BAR_COLOUR and row[x - 1] != BAR_COLOUR)
    geometry = bar_chart_geometry(side, num_bars)
    values = []
    for x0, x1 in geometry["slots"]:
        column = [image.getpixel(((x0 + x1) // 2, y)) for y in range(side)]
        height = sum(pixel == BAR_COLOUR for pixel in column)
        assert height % geometry["unit"] == 0
        values.append(height // geometry["unit"])
    return values


def test_synthetic_set_is_deterministic_and_answers_are_checkable(tmp_path):
    a = make_synthetic(tmp_path / "a", num=60, seed=5)
    b = make_synthetic(tmp_path / "b", num=60, seed=5)
    c = make_synthetic(tmp_path / "c", num=60, seed=6)
    assert a.read_text() == b.read_text() and a.read_text() != c.read_text()
    for n in range(60):
        assert (tmp_path / f"a/images/{n:06d}.png").read_bytes() == (tmp_path / f"b/images/{n:06d}.png").read_bytes()
    items = json.loads(a.read_text())
    records, name = load_records(str(a))
    assert name == "synthetic" and len(records) == 60
    assert {item["task"] for item in items} == set(TASKS)
    for item, record in zip(items, records):
        question, answer = record.turns[0]
        assert answer == item["conversations"][1]["value"] and answer and "<image>" not in question
        image = record.load_images()[0]
        task = item["task"]
        if task in ("count", "colour", "shape"):
            assert image.size == (64, 64)
            objects = read_shapes(image)
            if task == "count":
                assert int(answer) == len(objects)
            elif task == "colour":
                shape = question.removeprefix("What colour is the ").removesuffix("?")
                assert answer == ", ".join(sorted({c for s, c in objects if s == shape}))
            else:
                colour = question.removeprefix("What shape is ").removesuffix("?")
                assert answer == ", ".join(sorted({s for s, c in objects if c == colour}))
        elif task in ("bar_tallest", "bar_value"):
            assert image.size == (MIN_LEGIBLE_SIZE, MIN_LEGIBLE_SIZE)
            values = read_bars(image)
            assert 3 <= len(values) <= len(BAR_LABELS) and len(set(values)) == len(values)  # no ties
            if task == "bar_tallest":
                assert question == "Which bar is tallest?" and answer == BAR_LABELS[values.index(max(values))]
            else:
                label = question.removeprefix("What is the value of bar ").removesuffix("?")
                assert answer == str(values[BAR_LABELS.index(label)])
        else:
            assert task == "text" and question == "What word is written in the image?" and answer in WORDS
            assert image.tobytes() == draw_word(answer, image.width).tobytes()  # the image shows exactly that word
            assert image.tobytes() != draw_word(WORDS[WORDS.index(answer) - 1], image.width).tobytes()


def test_task_selection_and_sizes(tmp_path):
    path = make_synthetic(tmp_path / "charts", num=12, seed=1, image_size=200, tasks=["bar_value", "text"])
    items = json.loads(path.read_text())
    assert {item["task"] for item in items} == {"bar_value", "text"}
    sizes = {item["task"]: Image.open(tmp_path / "charts" / item["image"]).size for item in items}
    assert sizes == {"bar_value": (200, 200), "text": (200, 100)}
    shapes = json.loads(make_synthetic(tmp_path / "shapes", num=20, seed=1, tasks=["count"]).read_text())
    assert {item["task"] for item in shapes} == {"count"}
    # the default set is the same as asking for every task
    all_tasks = make_synthetic(tmp_path / "all", num=10, seed=2, tasks=list(TASKS))
    assert all_tasks.read_text() == make_synthetic(tmp_path / "default", num=10, seed=2).read_text()
    with pytest.raises(ValueError, match=r"--tasks \['pie'\] must be a non-empty subset of .*unknown: \['pie'\]"):
        make_synthetic(tmp_path / "bad", num=1, tasks=["pie"])
    with pytest.raises(ValueError, match="--tasks"):
        make_synthetic(tmp_path / "bad", num=1, tasks=[])
    assert not (tmp_path / "bad").exists()


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


def test_data_cli_prepare_on_a_local_copy(tmp_path, capsys):
    """`interlace-hf data prepare` wiring: flags reach prepare_dataset and the manifest loads for training."""
    import datasets

    from interlace_hf.data import load_records

    rows = {"images": [[Image.new("RGB", (32, 32), "red")]] * 10,
            "texts": [[{"user": f"q{i}", "assistant": f"a{i}"}] for i in range(10)]}
    features = datasets.Features({"images": datasets.List(datasets.Image()),
                                  "texts": datasets.List({"user": datasets.Value("string"),
                                                          "assistant": datasets.Value("string")})})
    local = tmp_path / "fv"
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(local / "subset_a"))
    out = tmp_path / "prepared"
    assert main(["data", "prepare", "--dataset", str(local), "--fraction", "0.3", "--output-dir", str(out)]) == 0
    assert "wrote 3 records (3 images) from 1 subsets" in capsys.readouterr().out
    records, _ = load_records(str(out / "train.json"))
    assert [r.turns[0] for r in records] == [("q0", "a0"), ("q1", "a1"), ("q2", "a2")]
    assert main(["data", "prepare", "--dataset", str(local), "--fraction", "0", "--output-dir", str(tmp_path / "x")]) == 2
    assert "fraction" in capsys.readouterr().err


@pytest.mark.parametrize("image_size", [64, 128])
def test_compositional_tasks_answer_what_the_pixels_show(tmp_path, image_size):
    """The two-step task types, read back from the images: count by colour (0 included), a unique shape's neighbour's
    colour, a unique colour's neighbour's shape (colour), the colour in a place, the second tallest bar, which of two
    bars is taller, and the colour (shape) of a shape (colour) that occurs once; opt-in, so the default draw is
    unchanged."""
    path = make_synthetic(tmp_path / "comp", num=140, seed=3, tasks=list(COMPOSITIONAL_TASKS), image_size=image_size)
    items = json.loads(path.read_text())
    assert {item["task"] for item in items} == set(COMPOSITIONAL_TASKS)
    records, _ = load_records(str(path))
    zero = 0
    offsets = {"right of": 1, "left of": -1, "below": 2, "above": -2}
    for item, record in zip(items, records):
        question, answer = record.turns[0]
        image = record.load_images()[0]
        if item["task"] == "count_colour":
            colour = question.removeprefix("How many ").removesuffix(" shapes are in the picture?")
            assert int(answer) == sum(c == colour for _, c in read_shapes(image))
            zero += answer == "0"
        elif item["task"] in ("relation", "neighbour_shape", "neighbour_colour"):  # find by shape or colour, read
            grid = read_grid(image)
            find, read = {"relation": (0, 1), "neighbour_shape": (1, 0), "neighbour_colour": (1, 1)}[item["task"]]
            words = question.removeprefix("What colour is the shape ").removeprefix("What shape is ")
            direction, key = words.removesuffix("?").removesuffix(" shape").rsplit(" the ", 1)
            cells = [cell for cell, obj in grid.items() if obj[find] == key]
            assert len(cells) == 1  # the shape (colour) asked about is unique in the picture
            assert grid[cells[0] + offsets[direction]][read] == answer
        elif item["task"] == "cell_colour":
            place = question.removeprefix("What colour is the shape in the ").removesuffix("?")
            assert read_grid(image)[["top left", "top right", "bottom left", "bottom right"].index(place)][1] == answer
        elif item["task"] in ("colour_unique", "shape_unique"):  # one answer: the asked shape (colour) occurs once
            shapes = read_shapes(image)
            if item["task"] == "colour_unique":
                shape = question.removeprefix("What colour is the ").removesuffix("?")
                assert [c for s, c in shapes if s == shape] == [answer]
            else:
                colour = question.removeprefix("What shape is ").removesuffix("?")
                assert [s for s, c in shapes if c == colour] == [answer]
        else:
            assert image.width == max(image_size, 128)  # charts stay legible at any shape size
            values = read_bars(image)
            if item["task"] == "bar_second":
                assert answer == BAR_LABELS[values.index(sorted(values)[-2])]
            else:
                first, second = question.removeprefix("Is bar ").removesuffix("?").split(" taller than bar ")
                taller = values[BAR_LABELS.index(first)] > values[BAR_LABELS.index(second)]
                assert answer == ("yes" if taller else "no") and first != second
    assert zero > 0  # colours that are absent are asked about too


def test_a_held_out_set_shares_no_question_with_training(tmp_path):
    """`exclude`: a set drawn against another's manifest holds none of its (image bytes, question) pairs; without it
    the small world repeats questions. The other records are drawn exactly as without `exclude`."""
    from interlace_hf.datasets.synthetic import manifest_keys

    train = make_synthetic(tmp_path / "train", num=300, seed=1, tasks=["count", "colour"])
    plain = make_synthetic(tmp_path / "plain", num=100, seed=2, tasks=["count", "colour"])
    assert set(manifest_keys(plain)) & set(manifest_keys(train))  # the world is small: repeats happen
    held = make_synthetic(tmp_path / "held", num=100, seed=2, tasks=["count", "colour"], exclude=train)
    assert len(json.loads(held.read_text())) == 100 and not set(manifest_keys(held)) & set(manifest_keys(train))
    assert len(list((tmp_path / "held" / "images").iterdir())) == 100  # no file left by a discarded draw
    # `text` has one question per word (72): a set holding them all leaves none unseen
    words = make_synthetic(tmp_path / "words", num=1000, seed=1, tasks=["text"])
    assert len(set(manifest_keys(words))) == 72
    with pytest.raises(ValueError, match="could not draw 2 questions outside"):
        make_synthetic(tmp_path / "none", num=2, seed=3, tasks=["text"], exclude=words)
    assert not (tmp_path / "none").exists()
