"""Selection: per-block similarity tables -> a `Plan` of dropped, tuned and anchor layers.

Pure Python (no torch, no numpy): the tables are small (one mean per block start and pack size), and keeping this
stage free of heavy imports lets `interlace-hf plan` run anywhere and the tests use hand-written tables.

A *block* of pack size `k` starting at layer `i` is the layers `i .. i+k-1`; its score is the mean cosine similarity
between the hidden state entering layer `i` and the one leaving layer `i+k-1` (higher = more redundant).
See docs/selection.md for each strategy, the exact tie rules and the differences from the paper's code.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable

from .plan import Plan
from .tables import SimilarityTables, is_finite_number, pack_sizes_hint

logger = logging.getLogger(__name__)

STRATEGIES = ("interlace", "interlace_oa", "interlace_tn", "random", "consecutive", "shortgpt", "angular", "sleb")
# The strategies `select_layers` computes from similarity tables alone (`sleb` needs the model and data).
SIMILARITY_STRATEGIES = tuple(s for s in STRATEGIES if s != "sleb")

# `floor(num_layers * drop_ratio)` in floats can land just below an integer (0.29 * 100 == 28.999999999999996);
# a product within this many layers below an integer counts as that integer. Far below any real fraction of a layer.
_FLOOR_EPSILON = 1e-9


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
    if isinstance(drop_ratio, bool) or not is_finite_number(drop_ratio) or not 0 < drop_ratio < 1:
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
            f"`interlace-hf similarity --pack-sizes {pack_sizes_hint(k)}` (or pass --hs-pack{k}-path)."
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
                f"with `interlace-hf similarity --pack-sizes {pack_sizes_hint()}`",
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
            f"`interlace-hf similarity --pack-sizes {pack_sizes_hint(n)}` (or pass --hs-pack{n}-path)."
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
    """One tuned survivor per dropped layer, so a baseline tunes as many layers as INTERLACE drops and tunes.

    In ascending order, each dropped layer takes the nearest surviving layer after it that no earlier dropped layer
    took (before it, where none is left after it); adjacent drops (a block at the end, say) therefore take distinct
    neighbours instead of sharing one. Fewer than `len(dropped)` only when fewer layers survive.
    """
    gone = set(dropped)
    survivors = [j for j in range(num_layers) if j not in gone]
    tuned: set[int] = set()
    for layer in sorted(dropped):
        free = [j for j in survivors if j not in tuned]
        if not free:
            break
        after = [j for j in free if j > layer]
        tuned.add(after[0] if after else free[-1])
    return sorted(tuned)
