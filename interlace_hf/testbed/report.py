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
    each row's paired difference from the INTERLACE row of the same ratio and fine-tune state (`vs_interlace`), in
    points of relative performance; a fine-tuned row then gives its learning rate (chosen on the validation split
    when several were tried) and the parameters it trained.
    """
    measured = any("ttft_speedup" in row for row in results["rows"])
    lines = ["| Method | Drop ratio | Fine-tuned | FLOP speed-up | " + ("TTFT speed-up (measured) | " if measured else "")
             + "Accuracy | Relative performance | vs INTERLACE, paired (points, 95% CI) | Fine-tune lr | "
               "Trained parameters |",
             "|---|---|---|---|" + ("---|" if measured else "") + "---|---|---|---|---|"]
    for row in results["rows"]:
        relative = "n/a" if row["relative"] is None else f"{100 * row['relative']:.1f}%"
        stderr = row.get("accuracy_stderr")
        accuracy = f"{100 * row['accuracy']:.1f}" + ("" if stderr is None else f" ± {100 * stderr:.1f}")
        versus = row.get("vs_interlace")
        paired = "" if versus is None else \
            f"{100 * versus['mean']:+.1f} ({100 * versus['low']:+.1f} .. {100 * versus['high']:+.1f})"
        ttft = f"{row['ttft_speedup']:.2f}x | " if measured else ""
        rate = f"{row['learning_rate']:g}" if row.get("learning_rate") else ""
        trained = f"{row['trainable_parameters'] / 1e6:.2f}M" if row.get("trainable_parameters") else ""
        lines.append(f"| {row['method']} | {100 * row['drop_ratio']:.0f}% | {'yes' if row['fine_tuned'] else 'no'} | "
                     f"{row.get('flop_speedup', 1.0):.2f}x | {ttft}{accuracy} | {relative} | {paired} | {rate} | "
                     f"{trained} |")
    return "\n".join(lines)


def relative_performance(per_type: dict[str, float], dense_per_type: dict[str, float]) -> float | None:
    """The paper's relative performance of a row: the mean over task types of its accuracy / the dense model's
    (`evaluation.metrics.relative_performance`; types the dense model scores 0 on are left out)."""
    from ..evaluation.metrics import relative_performance as paper_relative

    return paper_relative(per_type, dense_per_type)[0]


def relative_scale(dense_per_type: dict[str, float]) -> dict[str, float]:
    """Per task type, 1 / the dense model's accuracy: `paired_bootstrap(..., scale=)` then gives differences in
    relative performance (the mean of per-type ratios), not in accuracy."""
    return {kind: 1.0 / p for kind, p in dense_per_type.items() if p > 0}


def paired_bootstrap(a: list[list[float]], b: list[list[float]], tasks: list[str], *, resamples: int = 2000,
                     seed: int = 0, scale: dict[str, float] | None = None) -> dict:
    """The difference in accuracy (mean over task types of the exact-match rate) of `a` over `b`, paired: both are
    scored on the same questions (`tasks` gives each one's type) for the same seeds (`a[s][q]`, `b[s][q]`).

    The interval resamples the seeds and, within each task type, the questions, with replacement, and takes the 2.5th
    and 97.5th percentiles of the mean difference. With `scale` (task type -> factor, `relative_scale`), each type's
    difference is multiplied by its factor and types without one are left out: differences in relative performance.

    Returns:
        `{"mean", "low", "high", "per_seed"}` (differences in accuracy, or relative performance; not percent).
    """
    import numpy as np

    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if diff.ndim != 2 or diff.shape[1] != len(tasks):
        raise ValueError(f"expected seeds x {len(tasks)} questions of scores, got shape {diff.shape}.")
    kinds = np.asarray(tasks)
    types = sorted(set(tasks) if scale is None else set(tasks) & set(scale))
    if not types:
        raise ValueError("no task type to compare: `scale` names none of the questions' types.")
    if scale is not None:
        diff = diff * np.asarray([scale.get(kind, 0.0) for kind in tasks])
    groups = [np.flatnonzero(kinds == kind) for kind in types]
    per_seed = np.mean([diff[:, g].mean(axis=1) for g in groups], axis=0)
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    for i in range(resamples):
        seeds = rng.integers(0, diff.shape[0], diff.shape[0])
        stats[i] = np.mean([diff[np.ix_(seeds, g[rng.integers(0, len(g), len(g))])].mean() for g in groups])
    low, high = np.percentile(stats, [2.5, 97.5])
    return {"mean": float(per_seed.mean()), "low": float(low), "high": float(high),
            "per_seed": [float(x) for x in per_seed]}


def seed_bootstrap(pairs: list[tuple[list[float], list[float], list[str], dict[str, float]]], *, resamples: int = 2000,
                   seed: int = 0) -> dict:
    """The paired difference in relative performance of `a` over `b`, over training seeds that each have their own
    held-out questions: `pairs` holds, per seed, `(a_scores, b_scores, tasks, scale)` (`scale`: `relative_scale` of
    that seed's dense model).

    A seed's difference is the mean over task types of scale x the mean per-question difference; the estimate is
    their mean over seeds. The interval resamples the seeds, then within each drawn seed and task type its questions,
    with replacement (a two-level bootstrap: seed-to-seed and question-to-question variation both count), and takes
    the 2.5th and 97.5th percentiles.

    Returns:
        `{"mean", "low", "high", "per_seed"}` (differences in relative performance, not percent).
    """
    import numpy as np

    if not pairs:
        raise ValueError("no seed to compare.")
    seeds = []
    for a, b, tasks, scale in pairs:
        diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
        if diff.shape != (len(tasks),):
            raise ValueError(f"expected {len(tasks)} scores per row, got shape {diff.shape}.")
        kinds = np.asarray(tasks)
        groups = [scale[kind] * diff[kinds == kind] for kind in sorted(set(tasks) & set(scale))]
        if not groups:
            raise ValueError("no task type to compare: `scale` names none of the questions' types.")
        seeds.append(groups)
    per_seed = [float(np.mean([g.mean() for g in groups])) for groups in seeds]
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    for i in range(resamples):
        drawn = rng.integers(0, len(seeds), len(seeds))
        stats[i] = np.mean([np.mean([g[rng.integers(0, len(g), len(g))].mean() for g in seeds[s]]) for s in drawn])
    low, high = np.percentile(stats, [2.5, 97.5])
    return {"mean": float(np.mean(per_seed)), "low": float(low), "high": float(high), "per_seed": per_seed}


def format_summary_table(summary: dict) -> str:
    """The comparison over training seeds: per row, the mean relative performance and each seed's, the paired
    difference from INTERLACE and (fine-tuned rows) the recovery, each with its two-level bootstrap 95% interval."""
    def interval(stats: dict | None) -> str:
        return "" if stats is None else \
            f"{100 * stats['mean']:+.1f} ({100 * stats['low']:+.1f} .. {100 * stats['high']:+.1f})"

    seeds = summary["seeds"]
    lines = [f"| Method | Drop ratio | Fine-tuned | FLOP speed-up | Relative performance, mean of {len(seeds)} seeds | "
             "per seed | vs INTERLACE, paired (points, 95% CI) | Recovery by the fine-tune (points, 95% CI) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        per_seed = ", ".join("n/a" if r is None else f"{100 * r:.1f}" for r in row["relative_per_seed"])
        mean = "n/a" if row["relative"] is None else f"{100 * row['relative']:.1f}%"
        lines.append(f"| {row['method']} | {100 * row['drop_ratio']:.0f}% | {'yes' if row['fine_tuned'] else 'no'} | "
                     f"{row['flop_speedup']:.2f}x | {mean} | {per_seed} | {interval(row.get('vs_interlace'))} | "
                     f"{interval(row.get('recovery'))} |")
    return "\n".join(lines)


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
