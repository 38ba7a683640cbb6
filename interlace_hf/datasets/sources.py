"""Where the data is: a Hub dataset id, a local copy (one of several layouts) or a domain name, and its subsets (one
per FineVision config); for one subset, its size and a stream of its rows (images left undecoded). No torch."""

from __future__ import annotations

import difflib
import gc
import logging
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..hub import HUB_ID
from .converters import detect_format

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Source:
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


def resolve_source(dataset: str) -> Source:
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
        return Source(dataset, hub_id, "hub", (alias,), alias=alias)
    return Source(dataset, hub_id, "hub", tuple(configs))


def _resolve_local(dataset: str, path: Path) -> Source:
    if not path.is_dir():
        hint = " (a LLaVA-style .json is already a manifest: train or calibrate on it directly)"
        raise ValueError(f"--dataset {dataset!r} is a file{hint if path.suffix == '.json' else ''}; pass a dataset "
                         f"directory, a Hub dataset id or one of {'|'.join(DOMAINS)}.")
    location = str(path)
    if _is_saved_dataset(path):
        loaded = _load_from_disk(path)
        subsets = ("default",) if not hasattr(loaded, "keys") or _is_split_dict(loaded) else tuple(loaded)
        return Source(dataset, location, "disk", subsets)
    configs = _readme_configs(path)
    if configs is not None:
        declared, present = configs
        return Source(dataset, location, "repo", tuple(present), declared=tuple(declared))
    subdirs = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
                     and (_is_saved_dataset(p) or _has_data_files(p)))
    if subdirs and not set(subdirs) & _DATA_DIR_NAMES:  # `data/`, `train/`: one dataset's files, not subsets
        return Source(dataset, location, "subdirs", tuple(subdirs))
    if _has_data_files(path):
        return Source(dataset, location, "files", ("default",))
    raise _not_found(dataset, f" ({location} holds no data files, saved dataset or dataset README)")


def list_subsets(dataset: str) -> list[str]:
    """The subsets `prepare_dataset` can take from `dataset`, in its order.

    Args:
        dataset: a Hub dataset id, a local copy (see docs/data.md for the layouts) or chartqa|textvqa|scienceqa.

    Returns:
        FineVision-style config names (`datasets.get_dataset_config_names` for Hub datasets and local repo copies;
        sub-directory names or DatasetDict keys for the other local layouts; the domain name for a domain set).
    """
    return list(resolve_source(dataset).subsets)


def select_subsets(source: Source, subsets: Iterable[str] | None) -> list[str]:
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


@dataclass
class Subset:
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


def _missing_split(source: Source, subset: str, split: str, splits: Iterable[str]) -> ValueError:
    return ValueError(f"--split {split!r}: subset {subset!r} of {source.dataset!r} has splits "
                      f"{sorted(map(str, splits))}; pass one of them with --split.")


def open_subset(source: Source, subset: str, split: str) -> Subset:
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
        return Subset(subset, table.num_rows, "metadata", lambda: table.to_iterable_dataset().decode(False),
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
    return Subset(subset, count, count_source, open_stream, _subset_format(source, subset, columns))


def _subset_format(source: Source, subset: str, columns: list[str] | None) -> str | None:
    if not columns:
        return None
    try:
        return detect_format(columns)
    except ValueError as err:
        raise ValueError(f"--dataset {source.dataset!r}, subset {subset!r}: {err}") from None


@contextmanager
def iterate_rows(stream):
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


def count_rows(subset: Subset, progress: bool) -> int:
    from tqdm import tqdm

    stream = subset.open_stream()
    columns = [c for c in (stream.column_names or []) if c not in ("images", "image")]
    if columns:  # skip the image bytes where the format allows
        stream = stream.select_columns(columns[:1])
    count = 0
    with iterate_rows(stream) as rows:
        for _ in tqdm(rows, desc=f"counting {subset.name}", unit="row", disable=not progress):
            count += 1
    return count
