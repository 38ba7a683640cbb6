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
    """The paper's table: method, drop ratio, fine-tuned, TTFT speed-up, accuracy, relative performance.

    Accuracy is the mean exact match over task types, in percent, ± one binomial standard error.
    """
    lines = ["| Method | Drop ratio | Fine-tuned | TTFT speed-up | Accuracy | Relative performance |",
             "|---|---|---|---|---|---|"]
    for row in results["rows"]:
        relative = "n/a" if row["relative"] is None else f"{100 * row['relative']:.1f}%"
        stderr = row.get("accuracy_stderr")
        accuracy = f"{100 * row['accuracy']:.1f}" + ("" if stderr is None else f" ± {100 * stderr:.1f}")
        lines.append(f"| {row['method']} | {100 * row['drop_ratio']:.0f}% | {'yes' if row['fine_tuned'] else 'no'} | "
                     f"{row['ttft_speedup']:.2f}x | {accuracy} | {relative} |")
    return "\n".join(lines)
