"""`interlace-hf testbed oracle OUT`: how much room a selection rule has. Many drop sets of one size are scored on
the held-out questions, and each method's drop set is placed in that distribution (its percentile).

Each drop set is applied in memory (`surgery.prune_model` on a copy of the dense model: the exact surgery the
checkpoints get, nothing saved). The score is per question and teacher-forced, one forward pass per batch instead of a
generation loop:
- `loglik`: the log-likelihood of the reference answer (its tokens and the end of the turn);
- `exact`: 1 when every one of those tokens is the model's top choice, i.e. greedy decoding would produce exactly the
  answer and stop.
Accuracy is the mean over task types of `exact`, as `compare` reports it. The sets are drawn uniformly without
repetition (seeded); with `--samples` at least the number of possible sets, every set is scored.
"""

from __future__ import annotations

import json
import logging
import math
import random
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path

from ..args import TestbedOracleArgs
from ..utils.fileio import write_json_atomic
from ..version import package_versions
from ..selection import num_to_drop
from .model import (answer_batches, answer_scores, command_line, manifest_path, per_type_accuracy, read_testbed,
                    testbed_processor)
from .report import ratio_label, relative_performance

logger = logging.getLogger(__name__)

ORACLE_FORMAT = "interlace-hf-testbed-oracle/1"


def draw_drop_sets(num_layers: int, num_drop: int, samples: int, seed: int) -> list[tuple[int, ...]]:
    """`samples` distinct sorted drop sets of `num_drop` of `num_layers` layers, drawn uniformly (seeded); every set
    when there are no more than `samples`."""
    total = math.comb(num_layers, num_drop)
    if total <= samples:
        return list(combinations(range(num_layers), num_drop))
    rng = random.Random(seed)
    drawn: set[tuple[int, ...]] = set()
    while len(drawn) < samples:
        drawn.add(tuple(sorted(rng.sample(range(num_layers), num_drop))))
    return sorted(drawn)


def percentile(value: float, distribution: list[float]) -> float:
    """The share of `distribution` strictly below `value`, plus half the share equal to it (mid-rank), in %."""
    below = sum(x < value for x in distribution)
    equal = sum(x == value for x in distribution)
    return 100 * (below + equal / 2) / len(distribution)


class Oracle:
    def __init__(self, args: TestbedOracleArgs):
        args.validate()
        self.args = args
        self.out = Path(args.output_dir)
        self.num_layers = read_testbed(self.out)["model"]["text_layers"]
        self.num_drop = num_to_drop(self.num_layers, drop_ratio=args.drop_ratio)
        self.results_dir = Path(args.results_dir) if args.results_dir else self.out / "oracle"

    def method_sets(self) -> dict[str, list[int]]:
        """The drop sets of the plans `compare` chose at this ratio (OUT/compare/plans), by strategy."""
        plans = self.out / "compare" / "plans"
        found = {}
        for path in sorted(plans.glob(f"{ratio_label(self.args.drop_ratio)}-*.json")) if plans.is_dir() else []:
            found[path.stem.split("-", 1)[1]] = json.loads(path.read_text())["dropped_layers"]
        return found

    def run(self) -> dict:
        import copy

        from tqdm.auto import tqdm

        from ..checkpoint import load_model
        from ..plan import Plan
        from ..surgery import prune_model

        a = self.args
        self.results_dir.mkdir(parents=True, exist_ok=True)
        model_dir = self.out / "model"
        dense = load_model(str(model_dir), dtype="float32").eval()
        batches, tasks = answer_batches(manifest_path(self.out / "data" / "heldout"), testbed_processor(model_dir),
                                        batch_size=a.batch_size, limit=a.num_questions)
        num_questions = len(tasks)

        cache_path = self.results_dir / f"scores-{ratio_label(a.drop_ratio)}.json"
        cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
        sets = draw_drop_sets(self.num_layers, self.num_drop, a.samples, a.seed)
        methods = self.method_sets()
        wanted = list(dict.fromkeys([(), *sets, *(tuple(s) for s in methods.values())]))
        def key(drop) -> str:
            return ",".join(map(str, drop))

        for drop in tqdm(wanted, desc="testbed oracle", unit="set"):
            if "per_type" in cache.get(key(drop), {}):  # (entries from before per-type scores are scored again)
                continue
            model = dense
            if drop:
                model = prune_model(copy.deepcopy(dense), Plan(self.num_layers, dropped_layers=drop,
                                                               strategy="manual"))
            logliks, exact = answer_scores(model, batches)
            types = per_type_accuracy(tasks, exact)
            cache[key(drop)] = {"accuracy": sum(types.values()) / len(types), "per_type": types,
                                "loglik": sum(logliks) / len(logliks)}
            write_json_atomic(cache_path, cache)  # resumable: a rerun skips every scored set

        base = cache[""]

        def relative(drop) -> float:  # the paper's: the mean over task types of accuracy / the dense model's
            return relative_performance(cache[key(drop)]["per_type"], base["per_type"]) or 0.0

        distribution = sorted(relative(s) for s in sets)
        best = max(sets, key=lambda s: (cache[key(s)]["accuracy"], cache[key(s)]["loglik"]))
        quantiles = {str(q): distribution[min(len(distribution) - 1, int(q / 100 * len(distribution)))]
                     for q in (0, 10, 25, 50, 75, 90, 100)}
        results = {
            "format": ORACLE_FORMAT,
            "drop_ratio": a.drop_ratio, "num_layers": self.num_layers, "num_drop": self.num_drop,
            "possible_sets": math.comb(self.num_layers, self.num_drop), "scored_sets": len(sets),
            "questions": num_questions, "dense": base,
            "relative_quantiles": quantiles,
            "best": {"dropped_layers": list(best), "relative": relative(best)},
            "methods": {name: {"dropped_layers": list(drop), "relative": relative(drop),
                               "loglik": cache[key(drop)]["loglik"],
                               "percentile": percentile(relative(drop), distribution)}
                        for name, drop in methods.items()},
            "sets": [{"dropped_layers": list(s), **cache[key(s)]} for s in sets],
            "versions": package_versions("torch", "transformers", "trl"),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command_line("oracle", a),
        }
        write_json_atomic(self.results_dir / f"oracle-{ratio_label(a.drop_ratio)}.json", results)
        return results


def format_oracle(results: dict) -> str:
    """The distribution of relative performance over the scored drop sets, and where each method's set falls."""
    lines = [f"{results['num_drop']} of {results['num_layers']} layers dropped: {results['scored_sets']} of "
             f"{results['possible_sets']} possible drop sets scored on {results['questions']} held-out questions "
             "(teacher-forced exact match; relative to the dense model, no fine-tune)",
             "quantiles: " + ", ".join(f"{q}%: {100 * v:.1f}" for q, v in results["relative_quantiles"].items()),
             f"best scored set: {results['best']['dropped_layers']} ({100 * results['best']['relative']:.1f}%)"]
    if results["methods"]:
        lines += ["", "| Method | dropped | relative | percentile among the scored sets |", "|---|---|---|---|"]
        for name, entry in sorted(results["methods"].items(), key=lambda item: -item[1]["relative"]):
            lines.append(f"| {name} | {', '.join(map(str, entry['dropped_layers']))} | "
                         f"{100 * entry['relative']:.1f}% | {entry['percentile']:.0f} |")
    return "\n".join(lines)


def run_oracle(args: TestbedOracleArgs) -> dict:
    return Oracle(args).run()
