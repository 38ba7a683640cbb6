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

import json
import logging
import os
import shutil
from pathlib import Path

from ..utils.fileio import write_json_atomic
from ..version import package_versions
from .sampling import quota_of, take_first, take_random
from .sources import DOMAINS, Subset, count_rows, list_subsets, open_subset, resolve_source, select_subsets
from .writer import (
    MANIFEST,
    PARTS,
    SETTINGS,
    SUMMARY,
    PrepareSummary,
    SubsetSummary,
    SubsetWriter,
    images_dir_name,
    read_part,
    write_part,
)

__all__ = ["DOMAINS", "PrepareSummary", "SubsetSummary", "list_subsets", "prepare_dataset"]

logger = logging.getLogger(__name__)

SAMPLINGS = ("first", "random")


def _prepare_subset(output_dir: Path, subset: Subset, *, fraction: float, sampling: str, seed: int,
                    max_images: int, progress: bool) -> dict:
    from tqdm import tqdm

    name = subset.name
    if subset.count is None:
        logger.warning("%s: the metadata has no row count; counting it by streaming.", name)
        subset.count, subset.count_source = count_rows(subset, progress), "stream"
    quota = quota_of(subset.count, fraction)
    directory = images_dir_name(name)
    writer = SubsetWriter(output_dir, name, directory, max_images, subset.format)
    with tqdm(total=quota, desc=name, unit="rec", disable=not progress) as bar:
        if sampling == "first":
            records = take_first(subset, writer, quota, bar)
        else:
            records = take_random(subset, writer, quota, seed, bar)
    if len(records) < quota:
        logger.warning("%s: kept %d of a quota of %d (the subset ran out of eligible records).",
                       name, len(records), quota)
    part = writer.part(subset, quota, records)
    write_part(output_dir, directory, part)
    return part


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
    source = resolve_source(dataset)
    names = select_subsets(source, subsets)
    output_dir = Path(output_dir).expanduser().resolve()
    dataset = source.alias or dataset  # `ChartQA` and `chartqa` are one prepare
    settings = _settings(dataset, source.location, split, fraction, sampling, seed, max_images, names)
    state = _output_state(output_dir, settings, overwrite)
    if state == "done":
        logger.info("%s already holds this prepare; nothing to do.", output_dir)
        shutil.rmtree(output_dir / PARTS, ignore_errors=True)
        return PrepareSummary.from_dict(json.loads((output_dir / SUMMARY).read_text()), output_dir)
    done = {name: read_part(output_dir / PARTS / f"{images_dir_name(name)}.json", name) if state == "resume"
            else None for name in names}
    pending = [name for name in names if done[name] is None]
    # the first subset to do is opened before anything is written or removed: a wrong --split or unknown columns
    # fail here
    opened = {pending[0]: open_subset(source, pending[0], split)} if pending else {}
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
            subset = opened.pop(name, None) or open_subset(source, name, split)
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


