"""The output of `interlace-hf data prepare`: images as files, records in `train.json`, the summary, and one part file
per finished subset so that an interrupted run resumes."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..utils.fileio import write_json_atomic
from .converters import CONVERTERS, BadImage, detect_format, encode_image, llava_item
from .sources import Subset

logger = logging.getLogger(__name__)


MANIFEST = "train.json"


SUMMARY = "summary.json"


PARTS = "parts"


SETTINGS = ".settings.json"  # a dot: no subset's part file can take this name


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


def write_part(output_dir: Path, directory: str, part: dict) -> None:
    """A finished subset's records and counts; its presence marks the subset done for a resumed run."""
    write_json_atomic(output_dir / PARTS / f"{directory}.json", part, indent=None)


def images_dir_name(subset: str) -> str:
    """The subset's directory under images/ and parts/: its name where that is a safe file name."""
    if _SAFE_NAME.fullmatch(subset):
        return subset
    cleaned = re.sub(r"[^A-Za-z0-9_.()+-]+", "_", subset).strip("._") or "subset"
    return f"{cleaned}-{hashlib.sha1(subset.encode()).hexdigest()[:8]}"


class SubsetWriter:
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
            encoded = [encode_image(image) for image in example.images]
        except BadImage as err:
            logger.debug("%s row %d: %s", self.subset, index, err)
            self.stats["skipped_bad_image"] += 1
            return None
        files = []
        for k, (data, suffix) in enumerate(encoded):
            path = self.image_dir / f"{index:07d}_{k}{suffix}"
            path.write_bytes(data)
            files.append(path)
        relative = [path.relative_to(self.output_dir).as_posix() for path in files]
        return llava_item(f"{self.subset}-{index}", relative, example.turns), files

    def part(self, subset: Subset, quota: int, records: list[dict]) -> dict:
        if not any(self.image_dir.iterdir()):
            self.image_dir.rmdir()
        stats = SubsetSummary(
            name=self.subset, format=self.format or "unknown", images_dir=f"images/{self.directory}",
            available=subset.count, count_source=subset.count_source, quota=quota, kept=len(records),
            images=sum(len(image_list(r)) for r in records), examined=self.stats["examined"],
            skipped_too_many_images=self.stats["skipped_too_many_images"],
            skipped_no_text=self.stats["skipped_no_text"], skipped_no_image=self.stats["skipped_no_image"],
            skipped_bad_image=self.stats["skipped_bad_image"],
        )
        return {"subset": self.subset, "stats": asdict(stats), "records": records}


def image_list(record: dict) -> list[str]:
    image = record.get("image")
    return [] if image is None else [image] if isinstance(image, str) else list(image)


def read_part(path: Path, name: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        part = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return part if part.get("subset") == name else None
