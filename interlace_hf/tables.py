"""The similarity file format: per-sample block similarities on disk -> `SimilarityTables` of means.

`interlace-hf similarity` writes one JSON file per pack size, `{"<block start>": [one similarity per sample, ...]}`
(the paper's format, named by `similarity_file_name`), and a summary (`SUMMARY_FILE`). This module reads them (ours
and the paper's, which lack the last block) into the mean tables that `selection` works on. Pure Python, no torch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

SUMMARY_FILE = "similarity_summary.json"


PACK_FILE_SUFFIX = "_hidden_state_similarities.json"


_PACK_FILE_RE = re.compile(r"^.+_pack(\d+)" + re.escape(PACK_FILE_SUFFIX) + "$")


@dataclass(frozen=True)
class SimilarityTables:
    """Mean block similarities of one model on one calibration set.

    Args:
        num_layers: number of decoder layers of the model.
        means: pack size `k` -> one mean similarity per block start `i = 0 .. num_layers - k` (so
            `num_layers - k + 1` entries); `None` marks a block that was not measured (files written by the paper's
            code lack the last block). May be empty: the `random` strategy needs no similarities.
        sources: pack size -> the file it was read from (provenance only; not compared).
    """

    num_layers: int
    means: dict[int, list[float | None]]
    sources: dict[int, str] = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if isinstance(self.num_layers, bool) or not isinstance(self.num_layers, int) or self.num_layers < 1:
            raise ValueError(f"`num_layers` must be a positive integer, got {self.num_layers!r}.")
        if not isinstance(self.means, dict):
            raise ValueError(f"`means` must map pack sizes to lists of block scores, got {type(self.means).__name__}.")
        for k in self.means:
            if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.num_layers:
                raise ValueError(
                    f"`means` has pack size {k!r}; pack sizes are integers in 1..num_layers ({self.num_layers})."
                )
        means: dict[int, list[float | None]] = {}
        for k in sorted(self.means):
            values = self.means[k]
            expected = self.num_layers - k + 1
            if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) != expected:
                got = len(values) if hasattr(values, "__len__") else type(values).__name__
                raise ValueError(
                    f"`means[{k}]` must hold {expected} block scores (block starts 0..{expected - 1} of a "
                    f"{self.num_layers}-layer model), got {got}."
                )
            out: list[float | None] = []
            for i, value in enumerate(values):
                if value is not None and (isinstance(value, bool) or not is_finite_number(value)):
                    raise ValueError(f"`means[{k}][{i}]` must be a finite number or None, got {value!r}.")
                out.append(None if value is None else float(value))
            means[k] = out
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "sources", {int(k): str(v) for k, v in dict(self.sources).items()})

    @property
    def pack_sizes(self) -> tuple[int, ...]:
        return tuple(sorted(self.means))

    def score(self, k: int, i: int) -> float | None:
        """Mean similarity of the `k`-layer block starting at layer `i`; `None` if unmeasured or past the last layer."""
        if k not in self.means:
            raise ValueError(
                f"pack size {k} is not loaded (loaded: {list(self.pack_sizes)}); compute it with "
                f"`interlace-hf similarity --pack-sizes {pack_sizes_hint(k)}`."
            )
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.num_layers:
            raise ValueError(f"layer {i!r} is out of range for a {self.num_layers}-layer model.")
        scores = self.means[k]
        return scores[i] if i < len(scores) else None


def is_finite_number(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def pack_sizes_hint(*extra: int) -> str:
    return " ".join(str(k) for k in sorted({1, 2, 3, *extra}))


def load_similarity_tables(
    directory: str | os.PathLike | None = None,
    *,
    pack_paths: dict[int, str | os.PathLike] | None = None,
    num_layers: int | None = None,
) -> SimilarityTables:
    """Read the per-sample similarity files of `interlace-hf similarity` (or of the paper's code) into mean tables.

    Args:
        directory: a directory holding `{model}_{data}_pack{k}_hidden_state_similarities.json` files (one per pack
            size) and, when written by interlace-hf, `similarity_summary.json`.
        pack_paths: pack size -> file (`--hs-pack1-path` ...). Overrides the directory's file for that pack size.
        num_layers: the model's number of decoder layers. Default: from `similarity_summary.json` (in `directory`,
            or beside the `pack_paths` files), else `len` of the pack-1 file's keys, which is right for
            interlace-hf files only: pass it for files written by the paper's code, which lack the last block.

    Each file is `{"<block start>": [one similarity per sample, ...], ...}` with keys `0, 1, ...`; the table holds
    the mean per block. A file may cover every block (`num_layers - k + 1` keys, interlace-hf) or all but the last
    (`num_layers - k` keys, the paper's code); the missing block's score is `None`.
    """
    if directory is None and not pack_paths:
        raise ValueError(
            "no similarity files given: pass the output directory of `interlace-hf similarity` or one file per pack "
            "size (--hs-pack1-path, --hs-pack2-path, --hs-pack3-path)."
        )
    files: dict[int, Path] = {}
    summary_dir: Path | None = None
    if directory is not None:
        summary_dir = Path(directory).expanduser()
        files.update(_find_pack_files(summary_dir, skip=set(pack_paths or ())))
    for k, path in (pack_paths or {}).items():
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"`pack_paths` keys are pack sizes (1, 2, 3, ...), got {k!r}.")
        path = Path(path).expanduser()
        if not path.is_file():
            raise ValueError(f"--hs-pack{k}-path {str(path)!r} does not exist; pass the pack-{k} similarity file.")
        files[k] = path
    if summary_dir is None:
        parents = {path.parent for path in files.values()}
        summary_dir = parents.pop() if len(parents) == 1 else None

    block_means = {k: _read_pack_file(path) for k, path in sorted(files.items())}

    origin = "the `num_layers` argument"
    if num_layers is None and summary_dir is not None:
        num_layers, origin = _num_layers_from_summary(summary_dir), str(summary_dir / SUMMARY_FILE)
    if num_layers is None:
        k = min(block_means)
        num_layers = len(block_means[k]) + k - 1
        origin = f"the {len(block_means[k])} keys of {files[k]}"
        logger.warning(
            "num_layers not given and no %s found: assuming %d layers from %s. That holds for files written by "
            "interlace-hf, which cover every block; files written by the paper's code lack the last block, so pass "
            "num_layers (--num-layers) for them.",
            SUMMARY_FILE,
            num_layers,
            origin,
        )
    elif isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"`num_layers` must be a positive integer, got {num_layers!r}.")

    means: dict[int, list[float | None]] = {}
    for k, scores in block_means.items():
        full = num_layers - k + 1
        if len(scores) == full:
            means[k] = scores
        elif len(scores) == full - 1:  # the paper's format: its loop runs range(num_layers - k), missing the last block
            means[k] = [*scores, None]
        else:
            raise ValueError(
                f"{files[k]}: pack size {k} has {len(scores)} blocks, but a {num_layers}-layer model has {full} "
                f"(or {full - 1} in the paper's format); num_layers={num_layers} came from {origin}. "
                "Check that every file comes from the same model, pass the model's num_layers (--num-layers), or "
                "recompute with `interlace-hf similarity`."
            )
    return SimilarityTables(num_layers, means, sources={k: str(path) for k, path in files.items()})


def _find_pack_files(directory: Path, skip: set[int]) -> dict[int, Path]:
    if not directory.is_dir():
        raise ValueError(
            f"similarity directory {str(directory)!r} does not exist; pass the output directory of "
            "`interlace-hf similarity`."
        )
    found: dict[int, list[Path]] = {}
    for path in sorted(directory.glob(f"*_pack*{PACK_FILE_SUFFIX}")):
        match = _PACK_FILE_RE.match(path.name)
        if match and path.is_file():
            found.setdefault(int(match.group(1)), []).append(path)
    if not found and not skip:
        raise ValueError(
            f"no `*_pack<k>{PACK_FILE_SUFFIX}` files in {str(directory)!r}; compute them with "
            "`interlace-hf similarity --model M --data D --output-dir DIR`."
        )
    ambiguous = {k: paths for k, paths in found.items() if len(paths) > 1 and k not in skip}
    if ambiguous:
        listing = "; ".join(f"pack {k}: {', '.join(p.name for p in paths)}" for k, paths in sorted(ambiguous.items()))
        raise ValueError(
            f"{str(directory)!r} holds several similarity files for one pack size (different models or data?): "
            f"{listing}. Pass explicit paths instead (--hs-pack1-path, --hs-pack2-path, ... / `pack_paths`)."
        )
    return {k: paths[0] for k, paths in found.items() if k not in skip}


def _read_pack_file(path: Path) -> list[float]:
    """Mean similarity per block start, in block order."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{path}: cannot read the similarity file ({err}); recompute it with `interlace-hf similarity`."
        ) from None
    if not isinstance(data, dict) or not data:
        raise ValueError(
            f'{path}: a similarity file is a non-empty JSON object {{"<block start>": [similarity per sample, ...]}}; '
            "recompute it with `interlace-hf similarity`."
        )
    starts = {}
    for key in data:
        if not (isinstance(key, str) and key.isdigit()):
            raise ValueError(f'{path}: key {key!r} is not a block start index; keys are "0", "1", ...')
        starts[int(key)] = key
    if sorted(starts) != list(range(len(starts))):
        missing = sorted(set(range(max(starts) + 1)) - set(starts))
        raise ValueError(
            f"{path}: block starts must be consecutive from 0, but {missing} are missing; the file is incomplete, "
            "recompute it with `interlace-hf similarity`."
        )
    means = []
    for i in range(len(starts)):
        samples = data[starts[i]]
        if not isinstance(samples, list) or not samples:
            raise ValueError(
                f"{path}: block {i} must hold a non-empty list of per-sample similarities, got {samples!r}."
            )
        bad = [s for s in samples if isinstance(s, bool) or not is_finite_number(s)]
        if bad:
            raise ValueError(
                f"{path}: block {i} has non-finite or non-numeric similarities {bad[:3]}; a NaN usually means an "
                "overflow in half precision: recompute with `interlace-hf similarity` (e.g. in bfloat16 or float32)."
            )
        means.append(math.fsum(samples) / len(samples))
    return means


def _num_layers_from_summary(directory: Path) -> int | None:
    path = directory / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text()).get("num_layers")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
        raise ValueError(f"{path}: cannot read `num_layers` ({err}); pass num_layers (--num-layers).") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{path}: `num_layers` must be a positive integer, got {value!r}; pass --num-layers.")
    return value


def similarity_file_name(model_name: str, dataset_name: str, pack_size: int) -> str:
    return f"{model_name}_{dataset_name}_pack{pack_size}_hidden_state_similarities.json"
