"""Sampling one subset: the paper's first eligible records (`take_first`) or a seeded uniform sample of the eligible
records (`take_random`), each subset's quota `max(1, int(count * fraction))`."""

from __future__ import annotations

import hashlib

from .sources import Subset, iterate_rows
from .writer import SubsetWriter


def quota_of(count: int, fraction: float) -> int:
    # the paper's max(1, int(count * fraction)); the epsilon keeps e.g. 2900 * 0.01 = 28.999... at 29
    return max(1, int(count * fraction + 1e-9))


def _subset_seed(seed: int, subset: str) -> int:
    """A seed of its own per subset: adding or removing a subset leaves the others' samples unchanged."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{subset}".encode()).digest()[:8], "little")


def take_first(subset: Subset, writer: SubsetWriter, quota: int, bar) -> list[dict]:
    """The first `quota` eligible rows in the subset's order (the paper's sampling)."""
    records = []
    with iterate_rows(subset.open_stream()) as rows:
        for index, row in enumerate(rows):
            converted = writer.convert(index, row)
            if converted is not None:
                records.append(converted[0])
                bar.update(1)
                if len(records) >= quota:
                    break
    return records


def take_random(subset: Subset, writer: SubsetWriter, quota: int, seed: int, bar) -> list[dict]:
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
        with iterate_rows(subset.open_stream()) as rows:
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
