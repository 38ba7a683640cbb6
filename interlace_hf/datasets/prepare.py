"""Training data for fine-tuning: `interlace-hf data prepare`. Streams a fraction of every subset of FineVision (or of
a domain set: ChartQA, TextVQA, ScienceQA) into images + a LLaVA-style `train.json`. No torch.

The paper fine-tunes on 1% of FineVision: the first `max(1, int(count * 0.01))` records of each subset, records with
more than 3 images skipped. Here the per-subset `count` comes from the dataset's own metadata (not a hand-kept
file), skipped records are replaced by the next ones so each subset meets its quota, and `sampling="random"` draws
a seeded uniform sample instead. See docs/data.md.

Output (`OUT`):
    train.json            the manifest: LLaVA-style records, loadable with `interlace_hf.data.load_records`
    summary.json          settings, per-subset counts, versions
    images/<subset>/...   one file per image (PNG or JPEG bytes as stored in the dataset, else re-encoded PNG)
    parts/                while running: one JSON per finished subset, so an interrupted run resumes
"""

from __future__ import annotations

import difflib
import gc
import hashlib
import io
import json
import logging
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data import strip_image_placeholders
from ..version import package_versions
from ..utils.fileio import write_json_atomic
from ..hub import HUB_ID

logger = logging.getLogger(__name__)

MANIFEST = "train.json"
SUMMARY = "summary.json"
PARTS = "parts"
SETTINGS = ".settings.json"  # a dot: no subset's part file can take this name
SAMPLINGS = ("first", "random")

# Domain names -> the Hub datasets the paper's `src/dataset_prep_domain.py` used. TextVQA: `facebook/textvqa` is a
# loading-script dataset that `datasets` >= 4 no longer runs; `lmms-lab/textvqa` has the same columns in parquet.
DOMAINS = {
    "chartqa": "HuggingFaceM4/ChartQA",
    "textvqa": "lmms-lab/textvqa",
    "scienceqa": "derek-thomas/ScienceQA",
}
_FOUND_HELP = "pass a Hub dataset id (org/name), a local path or one of " + "|".join(DOMAINS)
_SPLIT_NAMES = {"train", "test", "validation", "valid", "val", "dev", "eval", "evaluation"}
_DATA_DIR_NAMES = _SPLIT_NAMES | {"data"}
_DATA_SUFFIXES = (".parquet", ".arrow", ".jsonl", ".json", ".csv")
_PNG, _JPEG = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"
_SAFE_NAME = re.compile(r"[A-Za-z0-9_()+-][A-Za-z0-9_.()+-]*")


@dataclass(frozen=True)
class SubsetSummary:
    """What one subset contributed. `available` is the split's row count; `count_source` says where it came from:
    `metadata` (the dataset's DatasetInfo / saved Arrow table), `parquet-metadata` (the data files' footers) or
    `stream` (counted by streaming the subset, when neither has it). `examined` counts the rows looked at."""

    name: str
    format: str
    images_dir: str
    available: int
    count_source: str
    quota: int
    kept: int
    images: int
    examined: int
    skipped_too_many_images: int = 0
    skipped_no_text: int = 0
    skipped_no_image: int = 0
    skipped_bad_image: int = 0


@dataclass(frozen=True)
class PrepareSummary:
    """The result of `prepare_dataset`, as written to `OUT/summary.json` (`to_dict`)."""

    output_dir: Path
    dataset: str
    source: str
    layout: str
    split: str
    fraction: float
    sampling: str
    seed: int
    max_images: int
    subsets: tuple[SubsetSummary, ...]
    versions: dict = field(default_factory=dict)

    @property
    def manifest(self) -> Path:
        return self.output_dir / MANIFEST

    @property
    def records(self) -> int:
        return sum(s.kept for s in self.subsets)

    @property
    def images(self) -> int:
        return sum(s.images for s in self.subsets)

    @property
    def counted_while_streaming(self) -> list[str]:
        """Subsets whose size the metadata did not give, so they were counted by streaming them once."""
        return [s.name for s in self.subsets if s.count_source == "stream"]

    @property
    def short_subsets(self) -> list[str]:
        """Subsets that ended before their quota of eligible records was met."""
        return [s.name for s in self.subsets if s.kept < s.quota]

    def to_dict(self) -> dict:
        return {
            "manifest": MANIFEST,
            "dataset": self.dataset,
            "source": self.source,
            "layout": self.layout,
            "split": self.split,
            "fraction": self.fraction,
            "sampling": self.sampling,
            "seed": self.seed,
            "max_images": self.max_images,
            "records": self.records,
            "images": self.images,
            "counted_while_streaming": self.counted_while_streaming,
            "short_subsets": self.short_subsets,
            "subsets": {s.name: {k: v for k, v in asdict(s).items() if k != "name"} for s in self.subsets},
            "versions": self.versions,
        }

    @classmethod
    def from_dict(cls, data: dict, output_dir: str | Path) -> PrepareSummary:
        subsets = tuple(SubsetSummary(name=name, **stats) for name, stats in data["subsets"].items())
        keys = ("dataset", "source", "layout", "split", "fraction", "sampling", "seed", "max_images", "versions")
        return cls(output_dir=Path(output_dir), subsets=subsets, **{k: data[k] for k in keys})


# ---------------------------------------------------------------------------------------------------------------
# Where the data is: a Hub id, a local copy, or a domain name; one "subset" per FineVision config.
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """A resolved `dataset` argument. Layouts:
    `hub`: a Hub dataset, read with `datasets` (configs = subsets);
    `repo`: a local copy of a Hub dataset repo, README.md declaring `configs` (e.g. from `hf download`);
    `subdirs`: a directory with one sub-directory per subset, each holding data files or a `save_to_disk` dataset;
    `disk`: a `save_to_disk` DatasetDict with one entry per subset (or one saved dataset: subset `default`);
    `files`: a directory of data files that `datasets.load_dataset(path)` reads as one subset, `default`.
    """

    dataset: str
    location: str
    layout: str
    subsets: tuple[str, ...]
    declared: tuple[str, ...] = ()  # `repo`: configs declared in README.md, with or without local data
    alias: str | None = None


def _not_found(dataset: str, why: str = "") -> ValueError:
    return ValueError(f"--dataset {dataset!r} cannot be found{why}; {_FOUND_HELP}.")


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _has_data_files(path: Path) -> bool:
    return any(p.suffix in _DATA_SUFFIXES and p.is_file() and not p.name.startswith(".") for p in path.rglob("*"))


def _load_from_disk(path: Path):
    import datasets

    return datasets.load_from_disk(str(path))


def _is_split_dict(loaded) -> bool:
    import datasets

    return isinstance(loaded, datasets.DatasetDict) and set(loaded) <= _SPLIT_NAMES


def _readme_configs(root: Path) -> tuple[list[str], list[str]] | None:
    """(declared configs, configs whose data files are present) of a local dataset repo, None if none are declared."""
    readme = root / "README.md"
    if not readme.is_file():
        return None
    from huggingface_hub.repocard import metadata_load

    try:
        configs = (metadata_load(readme) or {}).get("configs")
    except Exception:  # a README without valid YAML metadata declares nothing
        return None
    if not configs:
        return None
    declared, present = [], []
    for config in configs:
        name = config.get("config_name", "default")
        declared.append(name)
        data_files = config.get("data_files")
        if data_files is None:
            patterns = [config.get("data_dir") or "."]
        else:
            items = data_files if isinstance(data_files, list) else [data_files]
            patterns = []
            for item in items:
                paths = item.get("path") if isinstance(item, dict) else item
                patterns += paths if isinstance(paths, list) else [paths]
        if any(next(iter(root.glob(pattern)), None) is not None for pattern in patterns):
            present.append(name)
    return declared, present


def _resolve(dataset: str) -> _Source:
    import datasets

    if not isinstance(dataset, str) or not dataset.strip():
        raise _not_found(str(dataset))
    alias = dataset.lower() if dataset.lower() in DOMAINS else None
    if alias is None:
        path = Path(dataset).expanduser()
        if path.exists():
            return _resolve_local(dataset, path.resolve())
        if not HUB_ID.fullmatch(dataset) or dataset.startswith((".", "/", "~")):
            raise _not_found(dataset, " (no such local path, and it is not a Hub id of the form org/name)")
    hub_id = DOMAINS[alias] if alias else dataset
    try:
        configs = datasets.get_dataset_config_names(hub_id)
    except (datasets.exceptions.DatasetNotFoundError, FileNotFoundError) as err:
        raise _not_found(dataset, f" on the Hub ({type(err).__name__}: {err})") from err
    except ConnectionError as err:
        raise ValueError(
            f"--dataset {dataset!r}: could not reach the Hub ({err}); check the network (or HF_HUB_OFFLINE), or "
            "pass a local copy of the dataset."
        ) from err
    if alias:  # a domain set is one subset named after it, whatever its (single) config is called
        return _Source(dataset, hub_id, "hub", (alias,), alias=alias)
    return _Source(dataset, hub_id, "hub", tuple(configs))


def _resolve_local(dataset: str, path: Path) -> _Source:
    if not path.is_dir():
        hint = " (a LLaVA-style .json is already a manifest: train or calibrate on it directly)"
        raise ValueError(f"--dataset {dataset!r} is a file{hint if path.suffix == '.json' else ''}; pass a dataset "
                         f"directory, a Hub dataset id or one of {'|'.join(DOMAINS)}.")
    location = str(path)
    if _is_saved_dataset(path):
        loaded = _load_from_disk(path)
        subsets = ("default",) if not hasattr(loaded, "keys") or _is_split_dict(loaded) else tuple(loaded)
        return _Source(dataset, location, "disk", subsets)
    configs = _readme_configs(path)
    if configs is not None:
        declared, present = configs
        return _Source(dataset, location, "repo", tuple(present), declared=tuple(declared))
    subdirs = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
                     and (_is_saved_dataset(p) or _has_data_files(p)))
    if subdirs and not set(subdirs) & _DATA_DIR_NAMES:  # `data/`, `train/`: one dataset's files, not subsets
        return _Source(dataset, location, "subdirs", tuple(subdirs))
    if _has_data_files(path):
        return _Source(dataset, location, "files", ("default",))
    raise _not_found(dataset, f" ({location} holds no data files, saved dataset or dataset README)")


def list_subsets(dataset: str) -> list[str]:
    """The subsets `prepare_dataset` can take from `dataset`, in its order.

    Args:
        dataset: a Hub dataset id, a local copy (see docs/data.md for the layouts) or chartqa|textvqa|scienceqa.

    Returns:
        FineVision-style config names (`datasets.get_dataset_config_names` for Hub datasets and local repo copies;
        sub-directory names or DatasetDict keys for the other local layouts; the domain name for a domain set).
    """
    return list(_resolve(dataset).subsets)


def _select_subsets(source: _Source, subsets: Iterable[str] | None) -> list[str]:
    if not subsets:
        if not source.subsets:
            raise ValueError(f"--dataset {source.dataset!r} has no subsets with data"
                             + (f" (README.md declares {list(source.declared)[:8]})" if source.declared else "") + ".")
        return list(source.subsets)
    if isinstance(subsets, str):
        subsets = [subsets]
    wanted = [name.strip() for item in subsets for name in str(item).split(",") if name.strip()]
    unknown = [name for name in dict.fromkeys(wanted) if name not in source.subsets]
    if unknown:
        missing_data = [name for name in unknown if name in source.declared]
        if missing_data:
            raise ValueError(f"--subsets {missing_data}: declared in {source.location}/README.md but their data files "
                             "are not there; download them first or choose other subsets.")
        available = list(source.subsets)
        close = [m for name in unknown for m in difflib.get_close_matches(name, available, n=1)]
        raise ValueError(
            f"--subsets: unknown subset(s) {unknown} of {source.dataset!r}"
            + (f" (did you mean {close}?)" if close else "")
            + f"; it has {len(available)}: {', '.join(available[:8])}{', ...' if len(available) > 8 else ''}."
        )
    return [name for name in source.subsets if name in wanted]  # the dataset's order: the manifest is stable


# ---------------------------------------------------------------------------------------------------------------
# One subset: its size and a stream of its rows (images left undecoded).
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _Subset:
    name: str
    count: int | None
    count_source: str | None
    open_stream: Callable[[], Any]  # -> datasets.IterableDataset, decoding off, in the dataset's order
    format: str | None = None  # known here when the features are; else detected from the first row


def _parquet_rows(files: list[str]) -> int | None:
    import fsspec
    import pyarrow.parquet as pq

    total = 0
    for url in files:
        with fsspec.open(url, "rb") as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    return total


def _missing_split(source: _Source, subset: str, split: str, splits: Iterable[str]) -> ValueError:
    return ValueError(f"--split {split!r}: subset {subset!r} of {source.dataset!r} has splits "
                      f"{sorted(map(str, splits))}; pass one of them with --split.")


def _open_subset(source: _Source, subset: str, split: str) -> _Subset:
    import datasets

    if source.layout in ("disk", "subdirs") and (
        source.layout == "disk" or _is_saved_dataset(Path(source.location) / subset)
    ):
        path = Path(source.location) if source.layout == "disk" else Path(source.location) / subset
        loaded = _load_from_disk(path)
        if isinstance(loaded, datasets.DatasetDict):
            if source.layout == "disk" and not _is_split_dict(loaded):
                loaded = loaded[subset]
            elif split not in loaded:
                raise _missing_split(source, subset, split, loaded)
            else:
                loaded = loaded[split]
        table = loaded
        return _Subset(subset, table.num_rows, "metadata", lambda: table.to_iterable_dataset().decode(False),
                       _subset_format(source, subset, table.column_names))

    if source.layout == "subdirs":
        path, kwargs = source.location, {"data_dir": subset}
    else:
        config = None if source.alias or source.layout == "files" else subset
        path, kwargs = source.location, {"name": config}
    builder = datasets.load_dataset_builder(path, **kwargs)
    count, count_source = None, None
    splits = builder.info.splits
    if splits:
        if split not in splits:
            raise _missing_split(source, subset, split, splits)
        if splits[split].num_examples:
            count, count_source = splits[split].num_examples, "metadata"
    data_files = builder.config.data_files
    if data_files and split not in data_files:
        raise _missing_split(source, subset, split, data_files)
    if count is None and data_files and all(str(f).endswith(".parquet") for f in data_files[split]):
        try:
            count, count_source = _parquet_rows([str(f) for f in data_files[split]]), "parquet-metadata"
        except Exception as err:  # unreadable footers: count by streaming instead
            logger.warning("%s: could not read the parquet footers (%s); counting by streaming.", subset, err)

    def open_stream():
        return datasets.load_dataset(path, split=split, streaming=True, **kwargs).decode(False)

    columns = list(builder.info.features) if builder.info.features else None
    return _Subset(subset, count, count_source, open_stream, _subset_format(source, subset, columns))


def _subset_format(source: _Source, subset: str, columns: list[str] | None) -> str | None:
    if not columns:
        return None
    try:
        return detect_format(columns)
    except ValueError as err:
        raise ValueError(f"--dataset {source.dataset!r}, subset {subset!r}: {err}") from None


@contextmanager
def _rows(stream):
    """Iterate a stream; when left before its end, close it and collect it at once: an abandoned Arrow parquet
    scanner left to interpreter teardown can abort the process at exit (huggingface/datasets#7566; seen here
    with pyarrow 26, where `datasets` no longer applies its own workaround)."""
    rows = iter(stream)
    try:
        yield rows
    finally:
        abandoned = getattr(rows, "gi_frame", True) is not None  # a finished generator has no frame
        if hasattr(rows, "close"):
            rows.close()
        del rows, stream
        if abandoned:
            gc.collect()


def _count_stream(subset: _Subset, progress: bool) -> int:
    from tqdm import tqdm

    stream = subset.open_stream()
    columns = [c for c in (stream.column_names or []) if c not in ("images", "image")]
    if columns:  # skip the image bytes where the format allows
        stream = stream.select_columns(columns[:1])
    count = 0
    with _rows(stream) as rows:
        for _ in tqdm(rows, desc=f"counting {subset.name}", unit="row", disable=not progress):
            count += 1
    return count


# ---------------------------------------------------------------------------------------------------------------
# Rows -> (images, turns): FineVision and the domain sets' column conventions.
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# Writing: images as files, records as LLaVA-style dicts, JSON atomically.
# ---------------------------------------------------------------------------------------------------------------


class _BadImage(Exception):
    pass


def _encode_image(value) -> tuple[bytes, str]:
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
            raise _BadImage(f"cannot read {value!r}: {err}") from err
    if not data:
        raise _BadImage(f"no image data in {type(value).__name__}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if data.startswith(_PNG) and image.format == "PNG":
                return data, ".png"
            if data.startswith(_JPEG) and image.format == "JPEG":
                return data, ".jpg"
            image.load()
            return _png(image), ".png"
    except Exception as err:
        raise _BadImage(f"cannot decode an image: {err}") from err


def _png(image) -> bytes:
    if image.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _llava_item(record_id: str, image_paths: list[str], turns: list[tuple[str, str]]) -> dict:
    item: dict = {"id": record_id}
    if image_paths:
        item["image"] = image_paths[0] if len(image_paths) == 1 else image_paths
    conversations = []
    for k, (user, assistant) in enumerate(turns):
        prefix = "<image>\n" * len(image_paths) if k == 0 else ""
        conversations += [{"from": "human", "value": prefix + user}, {"from": "gpt", "value": assistant}]
    item["conversations"] = conversations
    return item


def _write_part(output_dir: Path, directory: str, part: dict) -> None:
    """A finished subset's records and counts; its presence marks the subset done for a resumed run."""
    write_json_atomic(output_dir / PARTS / f"{directory}.json", part, indent=None)


def _images_dir_name(subset: str) -> str:
    """The subset's directory under images/ and parts/: its name where that is a safe file name."""
    if _SAFE_NAME.fullmatch(subset):
        return subset
    cleaned = re.sub(r"[^A-Za-z0-9_.()+-]+", "_", subset).strip("._") or "subset"
    return f"{cleaned}-{hashlib.sha1(subset.encode()).hexdigest()[:8]}"


# ---------------------------------------------------------------------------------------------------------------
# Sampling one subset.
# ---------------------------------------------------------------------------------------------------------------


def _quota(count: int, fraction: float) -> int:
    # the paper's max(1, int(count * fraction)); the epsilon keeps e.g. 2900 * 0.01 = 28.999... at 29
    return max(1, int(count * fraction + 1e-9))


def _subset_seed(seed: int, subset: str) -> int:
    """A seed of its own per subset: adding or removing a subset leaves the others' samples unchanged."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{subset}".encode()).digest()[:8], "little")


class _SubsetWriter:
    """Converts rows of one subset, writes their images, keeps the records and the counts."""

    def __init__(self, output_dir: Path, subset: str, directory: str, max_images: int, row_format: str | None):
        self.output_dir, self.subset, self.directory, self.max_images = output_dir, subset, directory, max_images
        self.image_dir = output_dir / "images" / directory
        if self.image_dir.exists():  # left over by an interrupted run: this subset starts again
            shutil.rmtree(self.image_dir)
        self.image_dir.mkdir(parents=True)
        self.stats: Counter = Counter()
        self.format = row_format

    def convert(self, index: int, row: dict) -> tuple[dict, list[Path]] | None:
        """The record for row `index` with its images written, or None (counted) when the row is skipped."""
        if self.format is None:
            try:
                self.format = detect_format(row)
            except ValueError as err:
                raise ValueError(f"subset {self.subset!r}: {err}") from None
        self.stats["examined"] += 1
        example = CONVERTERS[self.format](row)
        if len(example.images) > self.max_images:
            self.stats["skipped_too_many_images"] += 1
            return None
        if self.format != "finevision" and not example.images:
            self.stats["skipped_no_image"] += 1  # domain sets are visual QA: as in the paper, no image -> skip
            return None
        if not example.turns:
            self.stats["skipped_no_text"] += 1
            return None
        try:
            encoded = [_encode_image(image) for image in example.images]
        except _BadImage as err:
            logger.debug("%s row %d: %s", self.subset, index, err)
            self.stats["skipped_bad_image"] += 1
            return None
        files = []
        for k, (data, suffix) in enumerate(encoded):
            path = self.image_dir / f"{index:07d}_{k}{suffix}"
            path.write_bytes(data)
            files.append(path)
        relative = [path.relative_to(self.output_dir).as_posix() for path in files]
        return _llava_item(f"{self.subset}-{index}", relative, example.turns), files

    def part(self, subset: _Subset, quota: int, records: list[dict]) -> dict:
        if not any(self.image_dir.iterdir()):
            self.image_dir.rmdir()
        stats = SubsetSummary(
            name=self.subset, format=self.format or "unknown", images_dir=f"images/{self.directory}",
            available=subset.count, count_source=subset.count_source, quota=quota, kept=len(records),
            images=sum(len(_image_list(r)) for r in records), examined=self.stats["examined"],
            skipped_too_many_images=self.stats["skipped_too_many_images"],
            skipped_no_text=self.stats["skipped_no_text"], skipped_no_image=self.stats["skipped_no_image"],
            skipped_bad_image=self.stats["skipped_bad_image"],
        )
        return {"subset": self.subset, "stats": asdict(stats), "records": records}


def _image_list(record: dict) -> list[str]:
    image = record.get("image")
    return [] if image is None else [image] if isinstance(image, str) else list(image)


def _take_first(subset: _Subset, writer: _SubsetWriter, quota: int, bar) -> list[dict]:
    """The first `quota` eligible rows in the subset's order (the paper's sampling)."""
    records = []
    with _rows(subset.open_stream()) as rows:
        for index, row in enumerate(rows):
            converted = writer.convert(index, row)
            if converted is not None:
                records.append(converted[0])
                bar.update(1)
                if len(records) >= quota:
                    break
    return records


def _take_random(subset: _Subset, writer: _SubsetWriter, quota: int, seed: int, bar) -> list[dict]:
    """A uniform sample of `quota` eligible rows: the first eligible ones in a seeded permutation of the row indices.

    Each pass streams the subset up to its last candidate; the candidates are the next `need` permutation entries
    plus a margin for skipped rows, so one pass almost always suffices. Surplus candidates' images are removed.
    The result does not depend on the margin: it is always the `quota` lowest-ranked eligible rows.
    """
    import numpy as np

    permutation = np.random.default_rng(_subset_seed(seed, subset.name)).permutation(subset.count)
    chosen: dict[int, dict] = {}
    start, need = 0, quota
    while need > 0 and start < subset.count:
        size = min(subset.count - start, need + max(16, need // 8))
        rank = {int(index): start + r for r, index in enumerate(permutation[start:start + size])}
        start += size
        last = max(rank)
        hits, exhausted = [], True
        with _rows(subset.open_stream()) as rows:
            for index, row in enumerate(rows):
                if index >= last:
                    exhausted = False
                if index in rank:
                    converted = writer.convert(index, row)
                    if converted is not None:
                        hits.append((rank[index], index, *converted))
                        if bar.n < quota:
                            bar.update(1)
                if not exhausted:
                    break
        hits.sort(key=lambda hit: hit[0])
        for _, _, _, files in hits[need:]:
            for path in files:
                path.unlink()
        for _, index, record, _ in hits[:need]:
            chosen[index] = record
        need -= min(need, len(hits))
        if exhausted:  # fewer rows than the metadata said: no later pass can find more
            break
    return [chosen[index] for index in sorted(chosen)]


def _prepare_subset(output_dir: Path, subset: _Subset, *, fraction: float, sampling: str, seed: int,
                    max_images: int, progress: bool) -> dict:
    from tqdm import tqdm

    name = subset.name
    if subset.count is None:
        logger.warning("%s: the metadata has no row count; counting it by streaming.", name)
        subset.count, subset.count_source = _count_stream(subset, progress), "stream"
    quota = _quota(subset.count, fraction)
    directory = _images_dir_name(name)
    writer = _SubsetWriter(output_dir, name, directory, max_images, subset.format)
    with tqdm(total=quota, desc=name, unit="rec", disable=not progress) as bar:
        if sampling == "first":
            records = _take_first(subset, writer, quota, bar)
        else:
            records = _take_random(subset, writer, quota, seed, bar)
    if len(records) < quota:
        logger.warning("%s: kept %d of a quota of %d (the subset ran out of eligible records).",
                       name, len(records), quota)
    part = writer.part(subset, quota, records)
    _write_part(output_dir, directory, part)
    return part


# ---------------------------------------------------------------------------------------------------------------
# The stage.
# ---------------------------------------------------------------------------------------------------------------


def _settings(dataset, source, split, fraction, sampling, seed, max_images, subsets) -> dict:
    return {"dataset": dataset, "source": source, "split": split, "fraction": fraction, "sampling": sampling,
            "seed": seed, "max_images": max_images, "subsets": list(subsets)}


def _validate(fraction, sampling, seed, max_images, split) -> None:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"--fraction must be in (0, 1], got {fraction!r} (the paper used 0.01 of FineVision).")
    if sampling not in SAMPLINGS:
        raise ValueError(f"--sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"--seed must be an integer, got {seed!r}.")
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 0:
        raise ValueError(f"--max-images must be an integer >= 0, got {max_images!r} (0 keeps text-only records).")
    if not isinstance(split, str) or not split:
        raise ValueError(f"--split must be a split name such as 'train', got {split!r}.")


def _output_state(output_dir: Path, settings: dict, overwrite: bool) -> str:
    """`fresh`, `overwrite` (to be emptied), `resume` (same settings, interrupted) or `done` (same settings,
    finished); refuses anything else. Removes nothing itself."""
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"--output-dir {str(output_dir)!r} is a file; pass a directory path.")
    if not output_dir.is_dir() or not any(output_dir.iterdir()):
        return "fresh"
    if overwrite:
        return "overwrite"
    for state, path in (("done", output_dir / SUMMARY), ("resume", output_dir / PARTS / SETTINGS)):
        if path.is_file():
            try:
                recorded = json.loads(path.read_text())
            except json.JSONDecodeError:
                break
            if state == "done":  # summary.json lists the subsets with their counts
                recorded = {**recorded, "subsets": list(recorded.get("subsets") or ())}
            recorded = {key: recorded.get(key) for key in settings}
            if recorded == settings:
                return state
            differ = ", ".join(f"{k}={recorded[k]!r} (now {settings[k]!r})"
                               for k in settings if recorded[k] != settings[k])
            raise ValueError(
                f"--output-dir {str(output_dir)!r} holds a prepare with other settings ({differ}); resume it with "
                "the same settings, choose a new directory, or pass --overwrite (overwrite=True) to replace it."
            )
    raise ValueError(
        f"--output-dir {str(output_dir)!r} already exists and is not empty (and is not an interrupted prepare to "
        "resume); choose a new directory or pass --overwrite (overwrite=True) to replace it."
    )


def prepare_dataset(
    dataset: str,
    output_dir: str | os.PathLike,
    *,
    fraction: float = 0.01,
    sampling: str = "first",
    seed: int = 42,
    max_images: int = 3,
    subsets: list[str] | None = None,
    split: str = "train",
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareSummary:
    """Stream a fraction of every subset of a FineVision-style dataset (or a domain set) into images + `train.json`.

    Args:
        dataset: a Hub dataset id (`HuggingFaceM4/FineVision`), a local copy (layouts in docs/data.md), or one of
            `chartqa`, `textvqa`, `scienceqa` (their Hub datasets, see `DOMAINS`).
        output_dir: where to write `train.json`, `summary.json` and `images/`. An interrupted run resumes when
            called again with the same settings; other non-empty directories need `overwrite`.
        fraction: share of each subset to keep, in (0, 1]: `max(1, int(count * fraction))` records per subset,
            `count` read from the dataset's metadata (counted by streaming where it has none).
        sampling: `first` (the paper: the first eligible records of each subset) or `random` (a seeded uniform
            sample of the eligible records; reads each subset through).
        seed: seed of `random` sampling; each subset draws from its own seed derived from it and its name.
        max_images: records with more images are skipped (the paper: 3); 0 keeps only text-only records.
        subsets: subset names to take (default: all); see `list_subsets`.
        split: the split to read.
        overwrite: replace a non-empty `output_dir` that is not a resumable prepare with the same settings.
        progress: show a progress bar per subset.

    Returns:
        the summary, also written to `output_dir/summary.json`.
    """
    _validate(fraction, sampling, seed, max_images, split)
    source = _resolve(dataset)
    names = _select_subsets(source, subsets)
    output_dir = Path(output_dir).expanduser().resolve()
    dataset = source.alias or dataset  # `ChartQA` and `chartqa` are one prepare
    settings = _settings(dataset, source.location, split, fraction, sampling, seed, max_images, names)
    state = _output_state(output_dir, settings, overwrite)
    if state == "done":
        logger.info("%s already holds this prepare; nothing to do.", output_dir)
        shutil.rmtree(output_dir / PARTS, ignore_errors=True)
        return PrepareSummary.from_dict(json.loads((output_dir / SUMMARY).read_text()), output_dir)
    done = {name: _read_part(output_dir / PARTS / f"{_images_dir_name(name)}.json", name) if state == "resume"
            else None for name in names}
    pending = [name for name in names if done[name] is None]
    # the first subset to do is opened before anything is written or removed: a wrong --split or unknown columns
    # fail here
    opened = {pending[0]: _open_subset(source, pending[0], split)} if pending else {}
    if state == "overwrite":
        shutil.rmtree(output_dir)
    if state != "resume":
        write_json_atomic(output_dir / PARTS / SETTINGS, settings, indent=1)

    parts = []
    for name in names:
        part = done[name]
        if part is not None:
            logger.info("%s: done in an earlier run, skipped.", name)
        else:
            subset = opened.pop(name, None) or _open_subset(source, name, split)
            part = _prepare_subset(output_dir, subset, fraction=fraction, sampling=sampling, seed=seed,
                                   max_images=max_images, progress=progress)
        parts.append(part)

    summary = PrepareSummary(
        output_dir=output_dir, dataset=dataset, source=source.location, layout=source.layout, split=split,
        fraction=fraction, sampling=sampling, seed=seed, max_images=max_images,
        subsets=tuple(SubsetSummary(**part["stats"]) for part in parts),
        versions=package_versions("datasets", "huggingface_hub", "pillow", "numpy", "pyarrow"),
    )
    write_json_atomic(output_dir / MANIFEST, [record for part in parts for record in part["records"]], indent=1)
    write_json_atomic(output_dir / SUMMARY, summary.to_dict(), indent=1)  # written last: it marks the prepare finished
    shutil.rmtree(output_dir / PARTS, ignore_errors=True)
    if summary.counted_while_streaming:
        logger.warning("counted by streaming (no row count in the metadata): %s", summary.counted_while_streaming)
    return summary


def _read_part(path: Path, name: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        part = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return part if part.get("subset") == name else None
