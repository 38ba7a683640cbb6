"""A synthetic image question-answer set made locally, with exactly checkable answers, in the LLaVA-style JSON the
rest of the toolkit reads. For tests and the embedded demo (no download). No torch.

Task types (each record's `task` field):
- `count`, `colour`, `shape`: 1-4 drawn shapes in a 2x2 grid ("How many shapes ...", "What colour is the circle?").
- `bar_tallest`, `bar_value`: a bar chart of 3-5 bars labelled A, B, ... with distinct integer values 1-10, each
  value printed above its bar ("Which bar is tallest?", "What is the value of bar B?").
- `text`: one lowercase word rendered in black ("What word is written in the image?").

Compositional types (two steps each; opt-in through `tasks`, so the default draw and every seeded set stay as they
were):
- `count_colour`: count only the shapes of one colour ("How many red shapes are in the picture?"; 0 when none is).
- `relation`: find a shape, then its neighbour in the grid, then that neighbour's colour ("What colour is the shape
  right of the circle?"); the shape asked about is the only one of its kind in the picture.
- `bar_second`: order the bars, then name the second ("Which bar is second tallest?").
- `bar_compare`: find two bars, then compare them ("Is bar A taller than bar C?", yes or no).
- `colour_unique`, `shape_unique`: `colour` and `shape` asked about a shape (a colour) that occurs once in the
  picture, so the answer is one word: find it, then read its colour (its shape).
- `neighbour_shape`: find a shape by its colour, then its neighbour in the grid, then that neighbour's shape ("What
  shape is right of the red shape?"); the colour asked about occurs once in the picture (`relation` the other way
  round: it finds by colour and reads a shape).
- `neighbour_colour`: the same, reading the neighbour's colour ("What colour is the shape right of the red shape?");
  colour only, so it needs no shape reading (which 64-pixel pictures make hard; docs/results-testbed.md).
- `cell_colour`: find a cell by its place, then read its colour ("What colour is the shape in the top left?"); the
  one-step question that names each cell's colour and place, which the others build on.

Shape images are `image_size` square; charts are `max(image_size, 128)` square and text images
`max(image_size, 128)` x half that, so their labels stay legible. Labels and words use PIL's default font.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

from ..utils.fileio import atomic_output_dir
from ..testing.tiny import TINY_COLOURS, TINY_OBJECTS, TINY_SHAPES

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 70, 220), "yellow": (235, 200, 20)}
MANIFEST = "synthetic.json"

SHAPE_TASKS = ("count", "colour", "shape")
CHART_TASKS = ("bar_tallest", "bar_value")
TEXT_TASKS = ("text",)
TASKS = SHAPE_TASKS + CHART_TASKS + TEXT_TASKS  # the default draw
COMPOSITIONAL_TASKS = ("count_colour", "relation", "bar_second", "bar_compare", "colour_unique", "shape_unique",
                       "neighbour_shape", "neighbour_colour", "cell_colour")
# the compositional types drawn in the shapes grid
GRID_COMPOSITIONAL_TASKS = ("count_colour", "relation", "colour_unique", "shape_unique", "neighbour_shape",
                            "neighbour_colour", "cell_colour")
ALL_TASK_TYPES = TASKS + COMPOSITIONAL_TASKS

# Bar charts: one bar colour (nothing else in the chart has it), values 1..MAX_BAR_VALUE, bars labelled A, B, ...
BAR_COLOUR = (40, 70, 220)
BAR_LABELS = "ABCDE"
MAX_BAR_VALUE = 10
MIN_LEGIBLE_SIZE = 128
# Words of the synthetic world (the tiny tokenizer's lists), one word each, so the answer is one token run.
WORDS = tuple(sorted({w for w in TINY_OBJECTS + TINY_COLOURS + TINY_SHAPES if w.isalpha()}))


def _draw(draw, shape: str, box: tuple[int, int, int, int], fill) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: the fixed-size bitmap font
        return ImageFont.load_default()


def _grid_objects(rng: random.Random, least: int = 1) -> list[tuple[str, str, int]]:
    """`least`-4 (shape, colour, cell) in a 2x2 grid (cells 0 1 / 2 3), which keeps shapes apart."""
    count = rng.randint(least, 4)
    cells = rng.sample(range(4), count)
    return [(rng.choice(SHAPES), rng.choice(list(COLOURS)), cell) for cell in cells]


def _draw_grid(objects, image_size: int):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (image_size, image_size), "white")
    draw = ImageDraw.Draw(image)
    half = image_size // 2
    for shape, colour, cell in objects:
        x, y = (cell % 2) * half, (cell // 2) * half
        _draw(draw, shape, (x + 4, y + 4, x + half - 4, y + half - 4), COLOURS[colour])
    return image


def _shapes_record(rng: random.Random, kind: str, image_size: int):
    """1-4 non-overlapping shapes and one question about them (colour, count or shape)."""
    objects = _grid_objects(rng)
    count = len(objects)
    image = _draw_grid(objects, image_size)
    shape, colour, _ = objects[0]
    if kind == "count":
        question, answer = "How many shapes are in the picture?", str(count)
    elif kind == "colour":
        question = f"What colour is the {shape}?"
        answer = ", ".join(sorted({c for s, c, _ in objects if s == shape}))
    else:
        question = f"What shape is {colour}?"
        answer = ", ".join(sorted({s for s, c, _ in objects if c == colour}))
    return image, question, answer


# Grid neighbours: cell -> the cell in that direction (cells 0 1 / 2 3); and each cell's place.
_NEIGHBOURS = {"right of": {0: 1, 2: 3}, "left of": {1: 0, 3: 2}, "below": {0: 2, 1: 3}, "above": {2: 0, 3: 1}}
CELL_PLACES = ("top left", "top right", "bottom left", "bottom right")
# The neighbour questions: (what finds the asked shape, what is read off its neighbour; indexes of (shape, colour)),
# and the question. `relation` finds a unique shape and reads its neighbour's colour; `neighbour_shape`
# (`neighbour_colour`) finds a unique colour and reads its neighbour's shape (colour).
_NEIGHBOUR_QUESTIONS = {"relation": (0, 1, "What colour is the shape {direction} the {key}?"),
                        "neighbour_shape": (1, 0, "What shape is {direction} the {key} shape?"),
                        "neighbour_colour": (1, 1, "What colour is the shape {direction} the {key} shape?")}


def _compositional_shapes_record(rng: random.Random, kind: str, image_size: int):
    """A two-step question about 1-4 (or, for the `neighbour_*` types and `relation`, 2-4) shapes: count by colour, a
    neighbour's colour (shape), or the colour (shape) of the one shape of a kind (of a colour); or the colour in a
    place (`cell_colour`)."""
    if kind == "cell_colour":
        objects = _grid_objects(rng)
        _, colour, cell = rng.choice(objects)
        return _draw_grid(objects, image_size), f"What colour is the shape in the {CELL_PLACES[cell]}?", colour
    if kind in ("colour_unique", "shape_unique"):
        while True:  # a picture where the asked shape (colour) occurs once
            objects = _grid_objects(rng)
            by = [shape if kind == "colour_unique" else colour for shape, colour, _ in objects]
            unique = [(shape, colour) for shape, colour, _ in objects
                      if by.count(shape if kind == "colour_unique" else colour) == 1]
            if unique:
                shape, colour = rng.choice(unique)
                question = f"What colour is the {shape}?" if kind == "colour_unique" else f"What shape is {colour}?"
                return _draw_grid(objects, image_size), question, colour if kind == "colour_unique" else shape
    if kind == "count_colour":
        objects = _grid_objects(rng)
        present = [c for _, c, _ in objects]
        colour = rng.choice(present) if rng.random() < 0.8 else rng.choice(list(COLOURS))  # 0 sometimes
        answer = str(present.count(colour))
        return _draw_grid(objects, image_size), f"How many {colour} shapes are in the picture?", answer
    find, read, template = _NEIGHBOUR_QUESTIONS[kind]  # an object is (shape, colour, cell)
    while True:  # a picture where some shape (colour) is unique and has a neighbour
        objects = _grid_objects(rng, least=2)
        by_cell = {cell: (shape, colour) for shape, colour, cell in objects}
        keys = [obj[find] for obj in objects]
        choices = [(obj[find], direction, by_cell[neighbours[obj[2]]][read])
                   for obj in objects if keys.count(obj[find]) == 1
                   for direction, neighbours in _NEIGHBOURS.items() if neighbours.get(obj[2]) in by_cell]
        if choices:
            key, direction, answer = rng.choice(choices)
            return _draw_grid(objects, image_size), template.format(direction=direction, key=key), answer


def bar_chart_geometry(side: int, num_bars: int) -> dict:
    """Where a bar chart's parts go; shared by the drawing and by checks that read values back from pixels.

    Returns `unit` (pixels per value), `baseline` (y of the bars' bottom edge, exclusive) and `slots`
    (each bar's `(x0, x1)`, left to right in label order).
    """
    label_band = max(14, side // 8)  # labels under the axis
    value_band = max(14, side // 8)  # numbers above the bars
    baseline = side - label_band
    unit = (baseline - value_band) // MAX_BAR_VALUE
    slot = (side - 8) // num_bars
    bar = max(4, slot * 3 // 5)
    slots = [(4 + i * slot + (slot - bar) // 2, 4 + i * slot + (slot - bar) // 2 + bar) for i in range(num_bars)]
    return {"unit": unit, "baseline": baseline, "slots": slots}


def draw_bar_chart(values: Sequence[int], side: int = MIN_LEGIBLE_SIZE):
    """A white `side` x `side` bar chart: bar i (label `BAR_LABELS[i]`) is `values[i] * unit` pixels tall."""
    from PIL import Image, ImageDraw

    geometry = bar_chart_geometry(side, len(values))
    unit, baseline = geometry["unit"], geometry["baseline"]
    image = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(image)
    font = _font(max(10, side // 10))
    draw.line([(2, baseline), (side - 3, baseline)], fill="black", width=1)  # the axis, just under the bars
    for label, value, (x0, x1) in zip(BAR_LABELS, values, geometry["slots"]):
        top = baseline - value * unit
        draw.rectangle([x0, top, x1 - 1, baseline - 1], fill=BAR_COLOUR)
        centre = (x0 + x1) / 2
        draw.text((centre, top - 2), str(value), fill="black", font=font, anchor="ms")
        draw.text((centre, baseline + 3), label, fill="black", font=font, anchor="mt")
    return image


def _chart_record(rng: random.Random, kind: str, image_size: int):
    num_bars = rng.randint(3, len(BAR_LABELS))
    values = rng.sample(range(1, MAX_BAR_VALUE + 1), num_bars)  # distinct: one tallest bar, no ties
    image = draw_bar_chart(values, max(image_size, MIN_LEGIBLE_SIZE))
    if kind == "bar_tallest":
        return image, "Which bar is tallest?", BAR_LABELS[values.index(max(values))]
    if kind == "bar_second":
        return image, "Which bar is second tallest?", BAR_LABELS[values.index(sorted(values)[-2])]
    if kind == "bar_compare":
        first, second = rng.sample(range(num_bars), 2)
        question = f"Is bar {BAR_LABELS[first]} taller than bar {BAR_LABELS[second]}?"
        return image, question, "yes" if values[first] > values[second] else "no"
    asked = rng.randrange(num_bars)
    return image, f"What is the value of bar {BAR_LABELS[asked]}?", str(values[asked])


def draw_word(word: str, width: int = MIN_LEGIBLE_SIZE):
    """`word` in black, centred on a white `width` x `width // 2` image, in the largest default-font size that fits."""
    from PIL import Image, ImageDraw

    height = width // 2
    size = max(10, width // 5)
    font = _font(size)
    while size > 10 and font.getbbox(word)[2] > width - 12:
        size -= 2
        font = _font(size)
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).text((width / 2, height / 2), word, fill="black", font=font, anchor="mm")
    return image


def _text_record(rng: random.Random, kind: str, image_size: int):
    word = rng.choice(WORDS)
    return draw_word(word, max(image_size, MIN_LEGIBLE_SIZE)), "What word is written in the image?", word


def record_key(image_bytes: bytes, question: str) -> tuple[str, str]:
    """What makes two questions the same question: (sha256 of the image file, the question as the record holds it)."""
    import hashlib

    return hashlib.sha256(image_bytes).hexdigest(), question


def manifest_keys(manifest: str | Path) -> list[tuple[str, str]]:
    """The `record_key` of each record of a synthetic set's manifest, in order."""
    manifest = Path(manifest)
    return [record_key((manifest.parent / r["image"]).read_bytes(), r["conversations"][0]["value"])
            for r in json.loads(manifest.read_text())]


def make_record(rng: random.Random, index: int, image_dir: Path, image_size: int = 64,
                tasks: Sequence[str] = TASKS, exclude: set | None = None) -> dict | None:
    """One image and one question about it, of a task type drawn from `tasks`; the image goes to `image_dir`.
    None (and no file) when its `record_key` is in `exclude`."""
    kind = rng.choice(list(tasks))
    if kind in SHAPE_TASKS:
        image, question, answer = _shapes_record(rng, kind, image_size)
    elif kind in GRID_COMPOSITIONAL_TASKS:
        image, question, answer = _compositional_shapes_record(rng, kind, image_size)
    elif kind in CHART_TASKS + ("bar_second", "bar_compare"):
        image, question, answer = _chart_record(rng, kind, image_size)
    else:
        image, question, answer = _text_record(rng, kind, image_size)
    name = f"{index:06d}.png"
    if exclude:
        import io

        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        if record_key(buffer.getvalue(), f"<image>\n{question}") in exclude:
            return None
        (image_dir / name).write_bytes(buffer.getvalue())
    else:
        image.save(image_dir / name)
    return {
        "id": f"synthetic-{index:06d}",
        "image": f"images/{name}",
        "task": kind,
        "conversations": [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}],
    }


def make_synthetic(output_dir: str | Path, num: int = 200, seed: int = 0, image_size: int = 64,
                   overwrite: bool = False, tasks: Sequence[str] | None = None,
                   exclude: str | Path | Sequence[str | Path] | None = None) -> Path:
    """Write `num` records (images + `synthetic.json`) to `output_dir`, atomically; the same seed gives the same set.

    Args:
        output_dir: directory to create (must be new or empty unless `overwrite`).
        num: number of records.
        seed: random seed; the same seed (and `tasks`) gives byte-identical files.
        image_size: side of the shape images; charts and text use at least 128 pixels.
        overwrite: replace a non-empty `output_dir`.
        tasks: task types to draw from, each record picking one uniformly (default: all of `TASKS`).
        exclude: another set's manifest (or several); no question of it (same image bytes, same question) is drawn
            here, so a held-out set shares nothing with the training set. Draws that repeat one are discarded and
            drawn again.

    Returns:
        the path of the manifest, `output_dir/synthetic.json`.
    """
    if num < 1:
        raise ValueError(f"--num must be >= 1, got {num}.")
    if image_size < 32:
        raise ValueError(f"--image-size must be >= 32 pixels, got {image_size}.")
    tasks = TASKS if tasks is None else tuple(dict.fromkeys(tasks))
    unknown = [task for task in tasks if task not in ALL_TASK_TYPES]
    if unknown or not tasks:
        raise ValueError(f"--tasks {list(tasks)} must be a non-empty subset of {list(ALL_TASK_TYPES)}; unknown: "
                         f"{unknown}.")
    rng = random.Random(seed)
    if exclude is None:
        excluded = None
    else:
        excluded = {key for manifest in ([exclude] if isinstance(exclude, (str, Path)) else exclude)
                    for key in manifest_keys(manifest)}
    with atomic_output_dir(output_dir, overwrite, flag="OUT") as staging:
        (staging / "images").mkdir()
        records, draws = [], 0
        while len(records) < num:
            draws += 1
            if excluded and draws > 100 * num:
                raise ValueError(f"could not draw {num} questions outside {exclude} in {draws - 1} tries: the task "
                                 "types' world is too small for that many unseen questions; ask for fewer.")
            record = make_record(rng, len(records), staging / "images", image_size, tasks, excluded)
            if record is not None:
                records.append(record)
        (staging / MANIFEST).write_text(json.dumps(records, indent=1))
    return Path(output_dir) / MANIFEST
