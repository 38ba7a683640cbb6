"""Selection: per-block similarity tables -> a `Plan` of dropped, tuned and anchor layers.

Pure Python (no torch, no numpy): the tables are small (one mean per block start and pack size), and keeping this
stage free of heavy imports lets `interlace-hf plan` run anywhere and the tests use hand-written tables.

A *block* of pack size `k` starting at layer `i` is the layers `i .. i+k-1`; its score is the mean cosine similarity
between the hidden state entering layer `i` and the one leaving layer `i+k-1` (higher = more redundant).
See docs/selection.md for each strategy, the exact tie rules and the differences from the paper's code.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .plan import Plan

logger = logging.getLogger(__name__)

STRATEGIES = ("interlace", "interlace_oa", "interlace_tn", "random", "consecutive", "shortgpt", "angular", "sleb")
# The strategies `select_layers` computes from similarity tables alone (`sleb` needs the model and data).
SIMILARITY_STRATEGIES = tuple(s for s in STRATEGIES if s != "sleb")

SUMMARY_FILE = "similarity_summary.json"
PACK_FILE_SUFFIX = "_hidden_state_similarities.json"
_PACK_FILE_RE = re.compile(r"^.+_pack(\d+)" + re.escape(PACK_FILE_SUFFIX) + "$")

# `floor(num_layers * drop_ratio)` in floats can land just below an integer (0.29 * 100 == 28.999999999999996);
# a product within this many layers below an integer counts as that integer. Far below any real fraction of a layer.
_FLOOR_EPSILON = 1e-9


# --- tables ---------------------------------------------------------------------------------------------------------
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
                if value is not None and (isinstance(value, bool) or not _is_finite_number(value)):
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
                f"`interlace-hf similarity --pack-sizes {_pack_sizes_hint(k)}`."
            )
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.num_layers:
            raise ValueError(f"layer {i!r} is out of range for a {self.num_layers}-layer model.")
        scores = self.means[k]
        return scores[i] if i < len(scores) else None


def _is_finite_number(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _pack_sizes_hint(*extra: int) -> str:
    return " ".join(str(k) for k in sorted({1, 2, 3, *extra}))


# --- loading --------------------------------------------------------------------------------------------------------
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
        bad = [s for s in samples if isinstance(s, bool) or not _is_finite_number(s)]
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


# --- how many -------------------------------------------------------------------------------------------------------
def num_to_drop(num_layers: int, drop_ratio: float | None = None, num_drop: int | None = None) -> int:
    """The number of layers to drop: `num_drop`, or `floor(num_layers * drop_ratio)`.

    The floor forgives float error just below an integer (1e-9 layers), so `0.29 * 100` drops 29, not 28, while
    `36 * 0.15 = 5.4` drops 5.

    Args:
        num_layers: decoder layers of the model.
        drop_ratio: fraction of layers to drop, in (0, 1) (`--drop-ratio`).
        num_drop: exact number of layers to drop, in 1..num_layers-1 (`--num-drop`). Give exactly one of the two.
    """
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"`num_layers` must be a positive integer, got {num_layers!r}.")
    if (drop_ratio is None) == (num_drop is None):
        raise ValueError(
            "give exactly one of --drop-ratio (a fraction, e.g. 0.25) and --num-drop (a layer count), "
            f"got drop_ratio={drop_ratio!r} and num_drop={num_drop!r}."
        )
    if num_drop is not None:
        if isinstance(num_drop, bool) or not isinstance(num_drop, int) or not 1 <= num_drop < num_layers:
            raise ValueError(
                f"--num-drop must be an integer in 1..{num_layers - 1} for a {num_layers}-layer model, got {num_drop!r}."
            )
        return num_drop
    if isinstance(drop_ratio, bool) or not _is_finite_number(drop_ratio) or not 0 < drop_ratio < 1:
        raise ValueError(
            f"--drop-ratio must be a number in (0, 1), e.g. 0.25 drops 25% of the layers, got {drop_ratio!r}."
        )
    n = math.floor(num_layers * drop_ratio + _FLOOR_EPSILON)
    if n < 1:
        raise ValueError(
            f"--drop-ratio {drop_ratio} of {num_layers} layers drops no layer (floor({num_layers * drop_ratio:g}) = 0); "
            f"use at least {1 / num_layers:.4f} or --num-drop 1."
        )
    return n


# --- selection ------------------------------------------------------------------------------------------------------
def select_layers(
    similarities: SimilarityTables,
    strategy: str,
    drop_ratio: float | None = None,
    num_drop: int | None = None,
    seed: int = 42,
    protected_layers: Iterable[int] = (),
    tune_baselines: bool = False,
) -> Plan:
    """Choose the layers to drop, fine-tune and freeze as anchors.

    Args:
        similarities: the model's mean block similarities (`load_similarity_tables`).
        strategy: one of `STRATEGIES`: `interlace`, `interlace_oa`, `interlace_tn`, `random`, `consecutive`,
            `shortgpt`, `angular` (`sleb` is computed from the model: `interlace_hf.sleb.select_sleb`).
        drop_ratio: fraction of layers to drop (floored); give this or `num_drop`.
        num_drop: number of layers to drop.
        seed: seed of the `random` strategy (a local RNG; the global one is untouched).
        protected_layers: layers never dropped (`--protect`); they may still be tuned or anchors.
        tune_baselines: for `shortgpt` and `angular`, also tune the surviving layer after each dropped layer
            (the layer before, for a drop at the end of the model). Without it those baselines tune nothing.

    Returns:
        A `Plan` whose metadata records `num_drop`, `protected_layers`, the chosen blocks and the similarity files.
    """
    if strategy == "sleb":
        raise ValueError(
            "strategy `sleb` cannot be computed from similarity tables: it evaluates the pruned model on calibration "
            "data. Use `interlace_hf.sleb.select_sleb` or `interlace-hf plan --strategy sleb --model M --data D`."
        )
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {list(STRATEGIES)}.")
    if not isinstance(similarities, SimilarityTables):
        raise ValueError(
            f"`similarities` must be a SimilarityTables (from `load_similarity_tables`), got {type(similarities).__name__}."
        )
    if tune_baselines and strategy not in ("shortgpt", "angular"):
        raise ValueError(
            f"--tune-baselines applies to `shortgpt` and `angular` only; `{strategy}` chooses its tuned layers itself. "
            "Drop the flag."
        )
    num_layers = similarities.num_layers
    n = num_to_drop(num_layers, drop_ratio, num_drop)
    protected = _check_protected(protected_layers, num_layers)
    metadata: dict = {"num_drop": n, "protected_layers": sorted(protected)}

    if strategy in ("interlace", "interlace_oa"):
        dropped, tuned, anchors, extra = _select_interlace(similarities, n, protected, strategy)
    elif strategy == "interlace_tn":
        dropped, tuned, anchors, extra = _select_train_next(similarities, n, protected)
    elif strategy == "random":
        dropped, tuned, anchors, extra = _select_random(num_layers, n, protected, seed)
    elif strategy == "consecutive":
        dropped, tuned, anchors, extra = _select_consecutive(similarities, n, protected)
    elif strategy == "shortgpt":
        dropped, tuned, anchors, extra = _select_shortgpt(similarities, n, protected)
    else:
        dropped, tuned, anchors, extra = _select_angular(similarities, n, protected)
    if strategy in ("shortgpt", "angular"):
        extra["tune_baselines"] = bool(tune_baselines)
        if tune_baselines:
            tuned = neighbors_of(dropped, num_layers)

    metadata.update(extra)
    if similarities.sources:
        metadata["similarity_files"] = {str(k): path for k, path in sorted(similarities.sources.items())}
    plan = Plan(
        num_layers=num_layers,
        dropped_layers=tuple(dropped),
        tuned_layers=tuple(tuned),
        anchor_layers=tuple(anchors),
        strategy=strategy,
        drop_ratio=drop_ratio,
        metadata=metadata,
    )
    logger.info("%s", plan.describe())
    return plan


def _check_protected(protected_layers: Iterable[int], num_layers: int) -> frozenset[int]:
    if protected_layers is None:
        return frozenset()
    if isinstance(protected_layers, (str, bytes)) or not hasattr(protected_layers, "__iter__"):
        raise ValueError(f"--protect must be a list of layer indices, got {protected_layers!r}.")
    out = set()
    for layer in protected_layers:
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < num_layers:
            raise ValueError(
                f"--protect lists {layer!r}, which is not a layer of this {num_layers}-layer model "
                f"(valid indices 0..{num_layers - 1})."
            )
        out.add(layer)
    return frozenset(out)


def _require(tables: SimilarityTables, k: int, strategy: str, why: str = "") -> list[float | None]:
    if k not in tables.means:
        raise ValueError(
            f"strategy `{strategy}` needs pack-size {k} similarities{why}, which are not loaded "
            f"(loaded: {list(tables.pack_sizes)}); compute them with "
            f"`interlace-hf similarity --pack-sizes {_pack_sizes_hint(k)}` (or pass --hs-pack{k}-path)."
        )
    return tables.means[k]


def _ranked(scores: list[float | None]) -> list[int]:
    """Block starts by score, highest first; ties: lower start first. Unmeasured (None) blocks are left out."""
    return sorted((i for i, s in enumerate(scores) if s is not None), key=lambda i: (-scores[i], i))


def _not_enough(strategy: str, found: int, n: int, num_layers: int, how: str, protected: frozenset[int]) -> ValueError:
    fix = "lower --drop-ratio / --num-drop"
    if protected:
        fix += f", or protect fewer layers (--protect {sorted(protected)})"
    return ValueError(
        f"`{strategy}` found only {found} of the {n} layers to drop in this {num_layers}-layer model ({how}); {fix}."
    )


def _select_interlace(tables: SimilarityTables, n: int, protected: frozenset[int], strategy: str):
    """INTERLACE triplets ranked by pack-3 similarity, then pairs ranked by pack-2 similarity.

    `interlace` drops the first two layers' more redundant one by pack-1 similarity (a tie drops the first);
    `interlace_oa` (ordered assignment) always drops the first. The other one is tuned, a triplet's third layer
    is the frozen anchor.
    """
    ordered = strategy == "interlace_oa"
    single = None if ordered else _require(tables, 1, strategy, " to choose the dropped layer of each triplet")
    triple = _require(tables, 3, strategy, " to rank triplets")
    assigned: set[int] = set()
    dropped: list[int] = []
    tuned: list[int] = []
    anchors: list[int] = []
    blocks: list[dict] = []

    def take(start: int, size: int, score: float) -> None:
        layers = range(start, start + size)
        if any(layer in assigned for layer in layers):
            return
        first, second = start, start + 1
        if ordered:
            drop, tune = first, second
        else:
            if single[first] is None or single[second] is None:  # cannot choose without both pack-1 scores
                return
            drop, tune = (second, first) if single[first] < single[second] else (first, second)
        if drop in protected:
            if ordered or tune in protected:
                return
            drop, tune = tune, drop
        assigned.update(layers)
        dropped.append(drop)
        tuned.append(tune)
        anchor = start + 2 if size == 3 else None
        if anchor is not None:
            anchors.append(anchor)
        blocks.append({"start": start, "pack": size, "score": score, "drop": drop, "tune": tune, "anchor": anchor})

    for start in _ranked(triple):
        if len(dropped) == n:
            break
        take(start, 3, triple[start])
    fallback = len(dropped) < n
    if fallback:
        if 2 not in tables.means:
            raise _not_enough(
                strategy,
                len(dropped),
                n,
                tables.num_layers,
                "non-overlapping triplets ran out, and the pair fallback needs pack-size 2 similarities: compute them "
                f"with `interlace-hf similarity --pack-sizes {_pack_sizes_hint()}`",
                protected,
            )
        double = tables.means[2]
        for start in _ranked(double):
            if len(dropped) == n:
                break
            take(start, 2, double[start])
    if len(dropped) < n:
        raise _not_enough(
            strategy, len(dropped), n, tables.num_layers, "non-overlapping triplets, then pairs", protected
        )
    return dropped, tuned, anchors, {"pack2_fallback": fallback, "blocks": blocks}


def _select_train_next(tables: SimilarityTables, n: int, protected: frozenset[int]):
    """INTERLACE-TN: single layers ranked by pack-1 similarity; drop the layer, tune the next one."""
    single = _require(tables, 1, "interlace_tn")
    assigned: set[int] = set()
    dropped: list[int] = []
    tuned: list[int] = []
    blocks: list[dict] = []
    for layer in _ranked(single):
        if len(dropped) == n:
            break
        following = layer + 1
        if following >= tables.num_layers or layer in protected or layer in assigned or following in assigned:
            continue
        assigned.update((layer, following))
        dropped.append(layer)
        tuned.append(following)
        blocks.append(
            {"start": layer, "pack": 1, "score": single[layer], "drop": layer, "tune": following, "anchor": None}
        )
    if len(dropped) < n:
        raise _not_enough(
            "interlace_tn", len(dropped), n, tables.num_layers, "non-overlapping (drop, next) pairs", protected
        )
    return dropped, tuned, [], {"blocks": blocks}


def _select_random(num_layers: int, n: int, protected: frozenset[int], seed: int):
    """Drop `n` random unprotected layers, then tune `n` random survivors (all of them when fewer than `n` survive).

    With no protected layers this makes the paper's choice for the same seed (same `sample` calls in the same order)
    without touching the global RNG.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"--seed must be an integer, got {seed!r}.")
    candidates = [i for i in range(num_layers) if i not in protected]
    if n > len(candidates):
        raise _not_enough("random", len(candidates), n, num_layers, f"{len(protected)} layers are protected", protected)
    rng = random.Random(seed)
    dropped = rng.sample(candidates, n)
    survivors = [i for i in range(num_layers) if i not in set(dropped)]
    tuned = rng.sample(survivors, min(n, len(survivors)))
    return dropped, tuned, [], {"seed": seed}


def _select_consecutive(tables: SimilarityTables, n: int, protected: frozenset[int]):
    """Drop `n` consecutive layers from the most redundant single layer, tune the `n` after them.

    The window of `2n` layers is shifted left until it fits in the model; when `2n > num_layers` it starts at
    layer 0 and the tuned part is cut at the last layer. With protected layers, the next most redundant layer
    whose (shifted) drop block holds no protected layer is used.
    """
    single = _require(tables, 1, "consecutive")
    num_layers = tables.num_layers
    for best in _ranked(single):
        start = min(best, max(num_layers - 2 * n, 0))
        dropped = list(range(start, start + n))
        if protected.intersection(dropped):
            continue
        tuned = list(range(start + n, min(start + 2 * n, num_layers)))
        return dropped, tuned, [], {"best_layer": best, "start": start}
    raise _not_enough("consecutive", 0, n, num_layers, f"every block of {n} layers holds a protected layer", protected)


def _select_shortgpt(tables: SimilarityTables, n: int, protected: frozenset[int]):
    """ShortGPT: drop the `n` layers of lowest Block Influence (1 - cosine similarity), i.e. highest pack-1 score."""
    single = _require(tables, 1, "shortgpt")
    dropped = [layer for layer in _ranked(single) if layer not in protected][:n]
    if len(dropped) < n:
        raise _not_enough(
            "shortgpt", len(dropped), n, tables.num_layers, "unprotected layers with a pack-1 score", protected
        )
    return dropped, [], [], {}


def _select_angular(tables: SimilarityTables, n: int, protected: frozenset[int]):
    """Gromov et al.: drop the `n` consecutive layers whose input and output are closest in angular distance."""
    if n not in tables.means:
        raise ValueError(
            f"strategy `angular` drops one block of {n} consecutive layers and needs pack-size {n} similarities, which "
            f"are not loaded (loaded: {list(tables.pack_sizes)}); rerun "
            f"`interlace-hf similarity --pack-sizes {_pack_sizes_hint(n)}` (or pass --hs-pack{n}-path)."
        )
    scores = tables.means[n]
    best: tuple[float, int] | None = None
    for start, sim in enumerate(scores):
        if sim is None or protected.intersection(range(start, start + n)):
            continue
        distance = math.acos(max(-1.0, min(1.0, sim))) / math.pi
        if best is None or distance < best[0]:  # strict: a tie keeps the lower start
            best = (distance, start)
    if best is None:
        raise _not_enough(
            "angular",
            0,
            n,
            tables.num_layers,
            f"no measured block of {n} layers avoids the protected layers",
            protected,
        )
    distance, start = best
    return list(range(start, start + n)), [], [], {"start": start, "angular_distance": distance}


def neighbors_of(dropped: list[int], num_layers: int) -> list[int]:
    """For each dropped layer, the next surviving layer (the previous one past the end of the model), deduplicated."""
    gone = set(dropped)
    tuned = set()
    for layer in dropped:
        after = next((j for j in range(layer + 1, num_layers) if j not in gone), None)
        if after is None:
            after = next(j for j in range(layer - 1, -1, -1) if j not in gone)  # a plan keeps at least one layer
        tuned.add(after)
    return sorted(tuned)
