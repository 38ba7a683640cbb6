"""The comparison table (the paper's Table 1 shape: relative performance per strategy and drop ratio, with standard
errors) and the labels it uses."""

from __future__ import annotations

import math


def ratio_label(ratio: float) -> str:
    return f"{round(100 * ratio):02d}pc"


def accuracy_stderr(per_type: dict[str, float], counts: dict[str, int]) -> float:
    """Binomial standard error of the mean over task types: sqrt(sum p(1-p)/n) / T."""
    variance = sum(p * (1 - p) / counts[kind] for kind, p in per_type.items() if counts.get(kind))
    return math.sqrt(variance) / len(per_type)


def format_compare_table(results: dict) -> str:
    """The paper's table: method, drop ratio, fine-tuned, speed-up (the counted-FLOP ideal; the measured TTFT too when
    `compare` ran a bench), accuracy, relative performance.

    Accuracy is the mean exact match over task types, in percent, ± one binomial standard error. The last column is
    each row's paired difference from the INTERLACE row of the same ratio and fine-tune state (`vs_interlace`).
    """
    measured = any("ttft_speedup" in row for row in results["rows"])
    lines = ["| Method | Drop ratio | Fine-tuned | FLOP speed-up | " + ("TTFT speed-up (measured) | " if measured else "")
             + "Accuracy | Relative performance | vs INTERLACE, paired (points, 95% CI) |",
             "|---|---|---|---|" + ("---|" if measured else "") + "---|---|---|"]
    for row in results["rows"]:
        relative = "n/a" if row["relative"] is None else f"{100 * row['relative']:.1f}%"
        stderr = row.get("accuracy_stderr")
        accuracy = f"{100 * row['accuracy']:.1f}" + ("" if stderr is None else f" ± {100 * stderr:.1f}")
        versus = row.get("vs_interlace")
        paired = "" if versus is None else \
            f"{100 * versus['mean']:+.1f} ({100 * versus['low']:+.1f} .. {100 * versus['high']:+.1f})"
        ttft = f"{row['ttft_speedup']:.2f}x | " if measured else ""
        lines.append(f"| {row['method']} | {100 * row['drop_ratio']:.0f}% | {'yes' if row['fine_tuned'] else 'no'} | "
                     f"{row.get('flop_speedup', 1.0):.2f}x | {ttft}{accuracy} | {relative} | {paired} |")
    return "\n".join(lines)


def paired_bootstrap(a: list[list[float]], b: list[list[float]], tasks: list[str], *, resamples: int = 2000,
                     seed: int = 0) -> dict:
    """The difference in accuracy (mean over task types of the exact-match rate) of `a` over `b`, paired: both are
    scored on the same questions (`tasks` gives each one's type) for the same seeds (`a[s][q]`, `b[s][q]`).

    The interval resamples the seeds and, within each task type, the questions, with replacement, and takes the 2.5th
    and 97.5th percentiles of the mean difference.

    Returns:
        `{"mean", "low", "high", "per_seed"}` (differences in accuracy, not percent).
    """
    import numpy as np

    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if diff.ndim != 2 or diff.shape[1] != len(tasks):
        raise ValueError(f"expected seeds x {len(tasks)} questions of scores, got shape {diff.shape}.")
    kinds = np.asarray(tasks)
    groups = [np.flatnonzero(kinds == kind) for kind in sorted(set(tasks))]
    per_seed = np.mean([diff[:, g].mean(axis=1) for g in groups], axis=0)
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    for i in range(resamples):
        seeds = rng.integers(0, diff.shape[0], diff.shape[0])
        stats[i] = np.mean([diff[np.ix_(seeds, g[rng.integers(0, len(g), len(g))])].mean() for g in groups])
    low, high = np.percentile(stats, [2.5, 97.5])
    return {"mean": float(per_seed.mean()), "low": float(low), "high": float(high),
            "per_seed": [float(x) for x in per_seed]}


def format_recovery_table(results: dict) -> str:
    """Relative performance of each recovery method (mean over seeds, each seed's value), and its paired difference
    from SFT with the bootstrap's 95% interval, in points of relative performance."""
    seeds = results["settings"]["seeds"]
    lines = [f"| Method | Relative performance, mean of {len(seeds)} seeds | per seed | vs SFT (points) | 95% CI | "
             "fine-tune time (s, mean) |", "|---|---|---|---|---|---|"]
    for entry in results["summary"]:
        relative = entry["relative"]
        per_seed = ", ".join(f"{100 * r:.1f}" for r in relative)
        versus = entry.get("vs_sft")
        delta = "(reference)" if versus is None else f"{100 * versus['mean']:+.1f}"
        interval = "" if versus is None else f"{100 * versus['low']:+.1f} .. {100 * versus['high']:+.1f}"
        seconds = [s for s in entry["seconds"] if s is not None]
        time = f"{sum(seconds) / len(seconds):.0f}" if seconds and entry["method"] != "none" else ""
        lines.append(f"| {entry['label']} | {100 * sum(relative) / len(relative):.1f}% | {per_seed} | {delta} | "
                     f"{interval} | {time} |")
    return "\n".join(lines)
