"""Calibration and training data: load records, sample them, turn them into chat messages. No torch.

Two input formats, as in the paper's tooling:
- LLaVA-style JSON: a list of `{"image": path | [paths] (optional), "conversations": [{"from": "human" | "gpt",
  "value": ...}, ...]}`; `<image>` placeholders are stripped (images always go first).
- FineVision-style datasets: `images` (list of images) + `texts` (list of `{"user": ..., "assistant": ...}`),
  from a local directory (`save_to_disk` or data files) or a Hub id, through `datasets`.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_IMAGE_PLACEHOLDER = re.compile(r"\s*<image>\s*")


@dataclass
class Record:
    """One sample: its images (paths or PIL images) and conversation turns as (user, assistant) pairs."""

    images: list[Any] = field(default_factory=list)
    turns: list[tuple[str, str | None]] = field(default_factory=list)

    def prompt_messages(self) -> list[dict]:
        """The first user turn only, images first, then its text (the paper's calibration prompt)."""
        user = self.turns[0][0] if self.turns else ""
        content = [{"type": "image"} for _ in self.images] + [{"type": "text", "text": user}]
        return [{"role": "user", "content": content}]

    def load_images(self) -> list:
        """The record's images as RGB PIL images (paths are opened here, lazily)."""
        from PIL import Image

        out = []
        for image in self.images:
            try:
                if isinstance(image, (str, Path)):
                    with Image.open(image) as opened:
                        out.append(opened.convert("RGB"))
                elif isinstance(image, dict):  # datasets' Image(decode=False): bytes, or a path
                    import io

                    source = io.BytesIO(image["bytes"]) if image.get("bytes") is not None else image["path"]
                    with Image.open(source) as opened:
                        out.append(opened.convert("RGB"))
                else:
                    out.append(image.convert("RGB"))
            except OSError as err:  # missing, truncated or not an image (PIL's UnidentifiedImageError is an OSError)
                raise ValueError(image_error(image, err)) from None
        return out


def image_error(image, err: BaseException) -> str:
    """The message for an image that cannot be read: which one, why, and what to do. Data errors stop the run (no
    record is skipped silently)."""
    name = image.get("path") or "an embedded image" if isinstance(image, dict) else image
    return (f"image {str(name)!r} cannot be read ({type(err).__name__}: {err}); fix the file, or remove the record "
            "that names it from the data.")


def verified_image_size(image, verify: bool = True) -> tuple[int, int]:
    """(width, height) of an image (a path, a PIL image, or datasets' undecoded dict) without decoding its pixels; with
    `verify`, a file is also checked whole (`PIL.Image.verify`: structure and checksums), else only its header is
    read. A missing, truncated or non-image file raises PIL's OSError / SyntaxError."""
    import io

    from PIL import Image

    if isinstance(image, dict):
        source = io.BytesIO(image["bytes"]) if image.get("bytes") is not None else image.get("path")
    elif isinstance(image, (str, Path)):
        source = image
    else:
        return image.size
    with Image.open(source) as opened:
        size = opened.size
        if verify:
            opened.verify()
    return size


def image_sizes(images, *, verify: bool = True) -> list[tuple[int, int]]:
    """(width, height) of each image (`verified_image_size`, each file checked whole with `verify`); one that cannot
    be read (missing, truncated, not an image: PIL raises OSError or SyntaxError) stops the run, named."""
    sizes = []
    for image in images:
        try:
            sizes.append(verified_image_size(image, verify=verify))
        except (OSError, SyntaxError) as err:
            raise ValueError(image_error(image, err)) from None
    return sizes


def check_images(records, flag: str = "--data", indices=None) -> None:
    """Check every image file of `records` whole (`image_sizes`): a missing, truncated or non-image file stops the
    run here, named, before any model is loaded. `indices` are the records' numbers in the data (for a sample), as
    the message gives them."""
    for index, record in zip(indices if indices is not None else range(len(records)), records):
        try:
            image_sizes([image for image in record.images if isinstance(image, (str, Path))])
        except ValueError as err:
            raise ValueError(f"{flag}: record {index}: {err}") from None


def strip_image_placeholders(text: str) -> str:
    return _IMAGE_PLACEHOLDER.sub(" ", text).strip() if "<image>" in text else text


def _llava_record(item: dict, base_dir: Path, index: int, source: str) -> Record:
    if not isinstance(item, dict) or "conversations" not in item:
        raise ValueError(f"{source}: record {index} has no `conversations`; expected LLaVA-style records.")
    images = item.get("image") or []
    if isinstance(images, str):
        images = [images]
    resolved = []
    for image in images:
        path = Path(image)
        # Relative to the JSON file's folder (as LLaVA data is laid out), unless only the working directory has it.
        if not path.is_absolute() and ((base_dir / path).exists() or not path.exists()):
            path = base_dir / path
        resolved.append(str(path))
    turns: list[tuple[str, str | None]] = []
    user = None
    for message in item["conversations"]:
        role, value = message.get("from"), message.get("value", "")
        if role in ("human", "user"):
            user = strip_image_placeholders(value)
        elif role in ("gpt", "assistant") and user is not None:
            turns.append((user, value))
            user = None
    if user is not None:
        turns.append((user, None))
    if not turns:
        raise ValueError(f"{source}: record {index} has no human turn.")
    return Record(images=resolved, turns=turns)


def finevision_record(row: dict, index: int, source: str) -> Record:
    texts = row.get("texts")
    if not texts:
        raise ValueError(f"{source}: row {index} has no `texts`; expected FineVision-style rows (images + texts).")
    images = row.get("images") or []
    turns = [(strip_image_placeholders(t.get("user", "")), t.get("assistant")) for t in texts]
    return Record(images=list(images), turns=turns)


def load_records(data: str, *, split: str = "train", subset: str | None = None,
                 flag: str = "--data") -> tuple[list[Record], str]:
    """Read a calibration / training set.

    Args:
        data: a LLaVA-style `.json` file, a local dataset directory, or a Hub dataset id.
        split: dataset split (datasets only).
        subset: dataset configuration, e.g. a FineVision subset name (datasets only).
        flag: the option the data came from, as error messages name it (`--data`, `--dataset`).

    Returns:
        the records and a short dataset name (for output file names).
    """
    path = Path(data).expanduser()
    if path.suffix == ".json":
        if not path.is_file():
            raise ValueError(f"{flag} {data!r} does not exist; pass a LLaVA-style .json file, a dataset dir or Hub id.")
        try:
            items = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{flag} {data!r} is not valid JSON ({err}).") from None
        if not isinstance(items, list):
            raise ValueError(f"{flag} {data!r} must hold a JSON list of LLaVA-style records.")
        records = [_llava_record(item, path.parent, i, str(path)) for i, item in enumerate(items)]
        missing = [(i, image) for i, record in enumerate(records) for image in record.images
                   if not Path(image).is_file()]
        if missing:  # checked here, before any model is loaded: stop, naming them, rather than skip silently
            shown = "; ".join(f"record {i}: {image}" for i, image in missing[:5])
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise ValueError(f"{flag} {data!r}: {len(missing)} image file(s) do not exist: {shown}{more}. Fix the "
                             "paths (relative paths are resolved against the JSON file's folder), or remove those "
                             "records.")
        return records, path.stem
    dataset = _load_dataset(data, split=split, subset=subset, flag=flag)
    if "texts" not in dataset.column_names:
        raise ValueError(
            f"{flag} {data!r} has columns {dataset.column_names}; expected FineVision-style `images` + `texts` "
            "(or pass a LLaVA-style .json file)."
        )
    name = Path(data.rstrip("/")).name + (f"-{subset}" if subset else "")
    return DatasetRecords(dataset, data), name


class DatasetRecords(Sequence):
    """FineVision-style rows as `Record`s, read when accessed: sampling 24K of a dataset's rows reads only those, and
    their images stay undecoded bytes until `Record.load_images` (datasets' `Image(decode=False)`)."""

    def __init__(self, dataset, source: str):
        import datasets

        feature = dataset.features.get("images")
        image_list = isinstance(feature, datasets.List) and isinstance(feature.feature, datasets.Image)
        if image_list and feature.feature.decode:
            dataset = dataset.cast_column("images", datasets.List(datasets.Image(decode=False)))  # no data rewritten
        self.dataset, self.source = dataset, source

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        return finevision_record(self.dataset[int(index)], int(index), self.source)


def _load_dataset(data: str, *, split: str, subset: str | None, flag: str = "--data"):
    import datasets

    path = Path(data).expanduser()
    if path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "state.json").is_file()):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                split_flag = "--dataset_split" if flag == "--dataset" else "--split"
                raise ValueError(f"{flag} {data!r} has splits {list(loaded)}, not {split!r}; pass {split_flag}.")
            loaded = loaded[split]
        return loaded
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {data!r} is a file but not a .json; pass a LLaVA-style .json or a dataset dir.")
    if not path.exists() and (data.startswith((".", "/", "~")) or data.count("/") > 1):
        raise ValueError(f"{flag} {data!r} does not exist (and it is not a Hub dataset id of the form org/name).")
    return datasets.load_dataset(data, subset, split=split)


def sample_indices(num_records: int, fraction: float, seed: int) -> list[int]:
    """A seeded random subset of `fraction` of the records (at least one), in sampled order."""
    if not 0 < fraction <= 1:
        raise ValueError(f"--sample-fraction must be in (0, 1], got {fraction}.")
    if num_records == 0:
        raise ValueError("the calibration data has no records.")
    count = max(1, int(num_records * fraction + 1e-9))
    return random.Random(seed).sample(range(num_records), count)
