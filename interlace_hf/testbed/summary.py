"""`interlace-hf testbed summary OUT --results T0 T1 T2`: the comparison over seeds.

Each result is one `testbed compare` run: a training seed (`testbed train --seed S`, the model) and a compare seed
(`compare --seed`, which draws the fine-tune and calibration data, Random's draws and the trainer's order), so the
model's seed and the rest can be varied separately; each pair must be another. Per row of the table (method, drop
ratio, fine-tuned or not) this gives the mean relative performance and each seed's, the paired difference from the
INTERLACE row and, for fine-tuned rows, the recovery (fine-tuned minus not, same method and ratio), each with a
two-level bootstrap 95% interval (`report.seed_bootstrap`: seeds, then questions within each seed and task type).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

from ..args import TestbedSummaryArgs
from ..utils.fileio import write_json_atomic
from ..version import package_versions
from .model import command_line
from .report import format_summary_table, relative_scale, seed_bootstrap

logger = logging.getLogger(__name__)

SUMMARY_FORMAT = "interlace-hf-testbed-summary/1"


# what makes two testbeds the same experiment, apart from their seed
_SAME_TESTBED = ("size", "steps", "batch_size", "learning_rate", "tasks", "num_eval", "unseen_heldout")


def _load(directory: Path) -> dict:
    """One seed's comparison (`directory` holds results.json, or is a testbed with `compare/`); an error naming the
    fix when there is none."""
    if not (directory / "results.json").is_file() and (directory / "compare" / "results.json").is_file():
        directory = directory / "compare"
    results_file, scores_file = directory / "results.json", directory / "scores.json"
    if not results_file.is_file() or not scores_file.is_file():
        raise ValueError(f"{directory} holds no finished comparison with per-question scores (results.json, "
                         "scores.json); run `interlace-hf testbed compare TESTBED` first and pass its output.")
    results, scores = json.loads(results_file.read_text()), json.loads(scores_file.read_text())
    by_key = {(r["strategy"], r["drop_ratio"], r["fine_tuned"]): r["scores"] for r in scores["rows"]}
    return {"directory": str(directory), "results": results, "tasks": scores["tasks"], "scores": by_key}


def run_summary(args: TestbedSummaryArgs) -> dict:
    args.validate()
    seeds = [_load(Path(d)) for d in args.results]
    pairs = [(s["results"]["testbed"]["settings"]["seed"], s["results"]["settings"]["seed"]) for s in seeds]
    if len(set(pairs)) < len(pairs):
        raise ValueError(f"--results: (training seed, compare seed) pairs {pairs} repeat; each result must vary the "
                         "model's seed (`testbed train --seed`) or the comparison's (`testbed compare --seed`).")
    settings = [{k: s["results"]["testbed"]["settings"].get(k) for k in _SAME_TESTBED} for s in seeds]
    if any(other != settings[0] for other in settings[1:]):
        raise ValueError(f"--results: the testbeds were trained with other settings than their seed ({settings}); "
                         "summarise one experiment at a time.")
    # the rows every seed has, in the first seed's order
    keys = [(r["strategy"], r["drop_ratio"], r["fine_tuned"]) for r in seeds[0]["results"]["rows"]]
    common = [k for k in keys if all(k in {(r["strategy"], r["drop_ratio"], r["fine_tuned"])
                                           for r in s["results"]["rows"]} for s in seeds)]
    missing = [k for k in keys if k not in common]
    if missing:
        logger.warning("rows left out (not in every seed's comparison): %s", missing)
    scales = [relative_scale(s["results"]["rows"][0]["per_type"]) for s in seeds]  # row 0: Dense

    def paired(a_key, b_key) -> dict | None:
        if not all(a_key in s["scores"] and b_key in s["scores"] for s in seeds) or not all(scales):
            return None  # (no scores kept, or a dense model that answers nothing: no relative performance)
        return seed_bootstrap([(s["scores"][a_key], s["scores"][b_key], s["tasks"], scale)
                               for s, scale in zip(seeds, scales)], resamples=args.bootstrap, seed=0)

    rows = []
    for key in common:
        strategy, ratio, fine_tuned = key
        per_seed = [next(r for r in s["results"]["rows"] if (r["strategy"], r["drop_ratio"], r["fine_tuned"]) == key)
                    for s in seeds]
        relative = [r["relative"] for r in per_seed]
        row = {"method": per_seed[0]["method"], "strategy": strategy, "drop_ratio": ratio, "fine_tuned": fine_tuned,
               "flop_speedup": per_seed[0].get("flop_speedup", 1.0),
               "relative": sum(relative) / len(relative) if None not in relative else None,
               "relative_per_seed": relative, "accuracy_per_seed": [r["accuracy"] for r in per_seed],
               "dropped_layers_per_seed": [r.get("dropped_layers") for r in per_seed]}
        if fine_tuned:
            row["learning_rate_per_seed"] = [r.get("learning_rate") for r in per_seed]
        if strategy not in ("dense", "interlace"):
            versus = paired(key, ("interlace", ratio, fine_tuned))
            if versus is not None:
                row["vs_interlace"] = versus
        if fine_tuned:  # (INTERLACE's KD / LoRA rows recover from INTERLACE's plain row)
            recovery = paired(key, (strategy.partition("+")[0], ratio, False))
            if recovery is not None:
                row["recovery"] = recovery
        rows.append(row)
    summary = {
        "format": SUMMARY_FORMAT,
        "seeds": [{"model": model, "compare": compare} for model, compare in pairs],
        "results": [s["directory"] for s in seeds],
        "dense_accuracy_per_seed": [s["results"]["rows"][0]["accuracy"] for s in seeds],
        "rows": rows,
        "settings": {"bootstrap": args.bootstrap},
        "versions": package_versions("torch", "transformers", "trl"),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command_line("summary", args, always=("results",)),
    }
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "summary.json", summary)
    (out / "summary.md").write_text(format_summary_table(summary) + "\n")
    return summary
