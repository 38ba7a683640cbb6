"""Rows -> `Example` (images, turns): the column conventions of FineVision and the domain sets (ChartQA, TextVQA,
ScienceQA), one converter each in `CONVERTERS`; images as file bytes; records as LLaVA-style dicts. Public: the
evaluation reads its tasks through the same converters. No torch."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from ..data import strip_image_placeholders

_PNG, _JPEG = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"


@dataclass
class Example:
    images: list
    turns: list[tuple[str, str]]


_FORMAT_COLUMNS = {
    "finevision": ("images", "texts"),
    "chartqa": ("image", "query", "label"),
    "scienceqa": ("image", "question", "choices", "answer"),
    "textvqa": ("image", "question", "answers"),
}


def detect_format(columns: Iterable[str]) -> str:
    """Which row convention a dataset follows, from its column names (`finevision`, `chartqa`, `scienceqa`,
    `textvqa`)."""
    columns = set(columns)
    if "texts" in columns:
        return "finevision"
    for name in ("chartqa", "scienceqa", "textvqa"):
        if set(_FORMAT_COLUMNS[name][1:]) <= columns:
            return name
    expected = "; ".join(f"{name}: {', '.join(cols)}" for name, cols in _FORMAT_COLUMNS.items())
    raise ValueError(f"columns {sorted(columns)} match no supported convention ({expected}).")


def _text(value) -> str:
    return "" if value is None else str(value)


def _finevision_example(row: dict) -> Example:
    turns = []
    for turn in row.get("texts") or []:
        user = strip_image_placeholders(_text(turn.get("user")))
        assistant = _text(turn.get("assistant"))
        if user.strip() or assistant.strip():
            turns.append((user, assistant))
    return Example(list(row.get("images") or []), turns)


def _single_image(row: dict) -> list:
    return [] if row.get("image") is None else [row["image"]]


def _chartqa_example(row: dict) -> Example:
    labels = row.get("label")
    label = labels[0] if isinstance(labels, (list, tuple)) and labels else labels
    return Example(_single_image(row), _qa(row.get("query"), label))


def _textvqa_example(row: dict) -> Example:
    # ten annotators per question: keep the most frequent non-empty answer, the earliest one on a tie
    answers = [a.strip() for a in row.get("answers") or [] if a and a.strip()]
    counts = Counter(answers)
    answer = max(dict.fromkeys(answers), key=counts.__getitem__) if answers else ""
    return Example(_single_image(row), _qa(row.get("question"), answer))


def _scienceqa_example(row: dict) -> Example:
    # the paper's format: the question, then "A) ..." per choice; the answer as "B) ..."
    choices, answer = list(row.get("choices") or []), row.get("answer")
    if not choices or not isinstance(answer, int) or not 0 <= answer < len(choices):
        return Example(_single_image(row), [])
    question = _text(row.get("question")) + "\n" + "\n".join(f"{chr(65 + i)}) {c}" for i, c in enumerate(choices))
    return Example(_single_image(row), _qa(question, f"{chr(65 + answer)}) {choices[answer]}"))


def _qa(question, answer) -> list[tuple[str, str]]:
    question, answer = strip_image_placeholders(_text(question)), _text(answer)
    return [(question, answer)] if question.strip() and answer.strip() else []


CONVERTERS = {
    "finevision": _finevision_example,
    "chartqa": _chartqa_example,
    "textvqa": _textvqa_example,
    "scienceqa": _scienceqa_example,
}


class BadImage(Exception):
    pass


def encode_image(value) -> tuple[bytes, str]:
    """An image as file bytes and suffix: PNG / JPEG bytes as stored, anything else decoded and saved as PNG."""
    from PIL import Image

    if hasattr(value, "save") and hasattr(value, "mode"):  # an already decoded PIL image
        return _png(value), ".png"
    data = None
    if isinstance(value, dict):
        data = value.get("bytes")
        if data is None and value.get("path"):
            value = value["path"]
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, str):
        import fsspec

        try:
            with fsspec.open(value, "rb") as handle:
                data = handle.read()
        except Exception as err:
            raise BadImage(f"cannot read {value!r}: {err}") from err
    if not data:
        raise BadImage(f"no image data in {type(value).__name__}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if data.startswith(_PNG) and image.format == "PNG":
                return data, ".png"
            if data.startswith(_JPEG) and image.format == "JPEG":
                return data, ".jpg"
            image.load()
            return _png(image), ".png"
    except Exception as err:
        raise BadImage(f"cannot decode an image: {err}") from err


def _png(image) -> bytes:
    if image.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def llava_item(record_id: str, image_paths: list[str], turns: list[tuple[str, str]]) -> dict:
    item: dict = {"id": record_id}
    if image_paths:
        item["image"] = image_paths[0] if len(image_paths) == 1 else image_paths
    conversations = []
    for k, (user, assistant) in enumerate(turns):
        prefix = "<image>\n" * len(image_paths) if k == 0 else ""
        conversations += [{"from": "human", "value": prefix + user}, {"from": "gpt", "value": assistant}]
    item["conversations"] = conversations
    return item
