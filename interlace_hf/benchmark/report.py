"""The benchmark's report: the results as a text table (speed-ups with their range and the FLOP ideal), the
`bench_results.json` a pruned checkpoint's card shows, and the command line that reproduces a run."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from ..card import BENCH_FILE, format_bytes, format_parameters
from ..utils.fileio import write_json_atomic

RESULTS_FORMAT = 1


def bench_command(models: list[str], **settings) -> str:
    """The `interlace-hf bench` command line that reproduces a run (flags that are off or None are left out)."""
    parts = ["interlace-hf", "bench", *[str(m) for m in models]]
    for key, value in settings.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts += [flag, *[str(v) for v in value]]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def write_bench_results(model_dir: str | os.PathLike, base_row: dict, row: dict, results: dict) -> Path:
    """Write a pruned checkpoint's `bench_results.json`: what its model card shows (`card.py`), plus the details.
    With `--pairwise`, the base numbers are those of the run the checkpoint was timed in."""
    from ..card import speedup_claim

    base_row = {**base_row, **row.get("pair_base", {})}
    record = {
        "base_ttft_ms": base_row["ttft_ms"]["median"],
        "ttft_ms": row["ttft_ms"]["median"],
        "speedup": row["speedup"]["ttft"],
        "device": results["device"],
        "dtype": results["dtype"],
        "date": results["date"],
        "command": results["command"],
        "base_model": base_row["source"],
        "ideal_speedup": row["ideal_speedup"],
        "base_ttft_samples": base_row["ttft_ms"]["samples"],
        "ttft_samples": row["ttft_ms"]["samples"],
        "speedup_claim": speedup_claim(base_row["ttft_ms"]["samples"], row["ttft_ms"]["samples"],
                                       row["ideal_speedup"]),
        "base_decode_tokens_per_s": base_row["decode_tokens_per_s"]["median"],
        "decode_tokens_per_s": row["decode_tokens_per_s"]["median"],
        "decode_speedup": row["speedup"]["decode"],
        "peak_memory_bytes": row.get("peak_memory_bytes"),
        "base_peak_memory_bytes": base_row.get("peak_memory_bytes"),
        "prompt": results["prompt"],
        "settings": results["settings"],
        "versions": results["versions"],
    }
    return write_json_atomic(Path(model_dir) / BENCH_FILE, record)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else spec.format(value)


def _ttft_speedup_cell(base_samples: list, row: dict) -> str:
    """The TTFT speed-up with its range over the rounds, or `noisy` when it may not be quoted (`card.speedup_claim`)."""
    from ..card import speedup_claim

    claim = speedup_claim(base_samples, row["ttft_ms"]["samples"])
    if claim["median"] is None:
        return "-"
    if not claim["quotable"]:
        return f"{claim['median']:.2f}x noisy"
    return f"{claim['median']:.2f}x ({claim['low']:.2f}-{claim['high']:.2f})"


def _base_ttft(results: dict, row: dict) -> list:
    """The base TTFT samples a model's speed-up is against: its own run's base with --pairwise, else the first model's."""
    return row.get("pair_base", results["models"][0])["ttft_ms"]["samples"]


def format_bench_table(results: dict) -> str:
    """The results as a text table: medians, and each model's speed-up against the first (measured and ideal)."""
    header = ("model", "layers", "params", "TTFT ms", "speed-up", "prefill ms", "speed-up", "ideal", "decode tok/s",
              "speed-up", "peak mem")
    rows = [header]
    for row in results["models"]:
        rows.append((
            row["name"], str(row["layers"]), format_parameters(row["parameters"]),
            f"{row['ttft_ms']['median']:.1f}", _ttft_speedup_cell(_base_ttft(results, row), row),
            f"{row['prefill_ms']['median']:.1f}", f"{row['speedup']['prefill']:.2f}x", f"{row['ideal_speedup']:.2f}x",
            _fmt(row["decode_tokens_per_s"]["median"], "{:.1f}"), _fmt(row["speedup"]["decode"], "{:.2f}x"),
            format_bytes(row.get("peak_memory_bytes")),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in rows]
    prompt, settings = results["prompt"], results["settings"]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("")
    lines.append(f"{results['device']}, {results['dtype']}; prompt: {prompt['image_size']}px image "
                 f"({prompt['image_tokens']} tokens) + {prompt['text_tokens']} text tokens; {settings['new_tokens']} "
                 f"new tokens; medians of {settings['repeats']} interleaved rounds after {settings['warmup']} warm-up")
    if settings.get("pairwise"):
        lines.append("pairwise: each pruned model was timed against the base in its own interleaved run (base + one "
                     "model in memory); its speed-ups are against that run's base, the base row shows the first run")
    if any("noisy" in _ttft_speedup_cell(_base_ttft(results, row), row) for row in results["models"]):
        lines.append("noisy: fewer than 3 rounds, or a model's TTFT (or the per-round ratio) varied more than 1.25x; "
                     "such a speed-up is not a measurement to quote (rerun with more --repeats / --warmup on an idle "
                     "machine)")
    stock = results.get("stock_vs_interlace")
    if stock:
        for variant in stock["variants"]:
            lines.append(f"Interlace vs stock Qwen3-VL, {stock['num_layers']} layers ({variant['name']}, dropped "
                         f"{variant['dropped_layers']}): TTFT ratio {variant['ttft_ratio']:.3f}, prefill ratio "
                         f"{variant['prefill_ratio']:.3f}, decode ratio "
                         f"{_fmt(variant['decode_ratio'], '{:.3f}')} (1.0 = no overhead)")
    for path in results.get("model_results_written") or []:
        lines.append(f"wrote {path}")
    return "\n".join(lines)
