"""A synthetic image question-answer set made locally: drawn shapes with checkable answers, in the LLaVA-style JSON
the rest of the toolkit reads. For tests and the embedded demo (no download). No torch.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from .fileio import atomic_output_dir

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 70, 220), "yellow": (235, 200, 20)}
MANIFEST = "synthetic.json"


def _draw(draw, shape: str, box: tuple[int, int, int, int], fill) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)


def make_record(rng: random.Random, index: int, image_dir: Path, image_size: int = 64) -> dict:
    """One image with 1-4 non-overlapping shapes and one question about it (colour, count or shape)."""
    from PIL import Image, ImageDraw

    count = rng.randint(1, 4)
    cells = rng.sample(range(4), count)  # a 2x2 grid keeps shapes apart
    objects = [(rng.choice(SHAPES), rng.choice(list(COLOURS)), cell) for cell in cells]
    image = Image.new("RGB", (image_size, image_size), "white")
    draw = ImageDraw.Draw(image)
    half = image_size // 2
    for shape, colour, cell in objects:
        x, y = (cell % 2) * half, (cell // 2) * half
        _draw(draw, shape, (x + 4, y + 4, x + half - 4, y + half - 4), COLOURS[colour])
    name = f"{index:06d}.png"
    image.save(image_dir / name)
    kind = rng.choice(("count", "colour", "shape"))
    shape, colour, _ = objects[0]
    if kind == "count":
        question, answer = "How many shapes are in the picture?", str(count)
    elif kind == "colour":
        question = f"What colour is the {shape}?"
        answer = ", ".join(sorted({c for s, c, _ in objects if s == shape}))
    else:
        question = f"What shape is {colour}?"
        answer = ", ".join(sorted({s for s, c, _ in objects if c == colour}))
    return {
        "id": f"synthetic-{index:06d}",
        "image": f"images/{name}",
        "task": kind,
        "conversations": [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}],
    }


def make_synthetic(output_dir: str | Path, num: int = 200, seed: int = 0, image_size: int = 64,
                   overwrite: bool = False) -> Path:
    """Write `num` records (images + `synthetic.json`) to `output_dir`, atomically; the same seed gives the same set."""
    if num < 1:
        raise ValueError(f"--num must be >= 1, got {num}.")
    if image_size < 32:
        raise ValueError(f"--image-size must be >= 32 pixels, got {image_size}.")
    rng = random.Random(seed)
    with atomic_output_dir(output_dir, overwrite, flag="OUT") as staging:
        (staging / "images").mkdir()
        records = [make_record(rng, i, staging / "images", image_size) for i in range(num)]
        (staging / MANIFEST).write_text(json.dumps(records, indent=1))
    return Path(output_dir) / MANIFEST
