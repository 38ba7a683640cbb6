"""`interlace-hf testbed recovery OUT`: one plan, several ways to recover from the pruning, compared pairwise.

For every seed, the whole pipeline runs once through `compare`'s stages (calibration and fine-tune data drawn with
that seed, similarities, the plan, the pruned checkpoint); then each recovery method fine-tunes that same pruned model
on the same data with the same budget (one epoch, batch 8, the trainer seeded alike):

- `sft`: the paper's supervised fine-tune of the tuned layers;
- `kd_logit`, `kd_hidden`, `kd_both`: the same plus distillation from the dense testbed model (the KL on the answer
  tokens, the hidden-state loss after each tuned layer, or both, each at weight 1);
- `lora`: LoRA on the tuned layers' projections instead of the layers themselves, merged at the end.

Every model answers the same held-out questions (scored as `compare --scoring` does: teacher-forced by default, with
each answer's log-likelihood, in `scores.json`), so each method's difference from SFT is paired, question by question
and seed by seed. Its confidence interval comes from a bootstrap that resamples both the seeds and the questions
(within each task type, as the accuracy is the mean over task types). Each finished row is cached; a rerun skips it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path

from ..args import TestbedCompareArgs, TestbedRecoveryArgs
from ..utils.fileio import write_json_atomic
from ..version import package_versions
from .compare import LORA_RATE_FACTOR, Comparison, method_settings
from .model import command_line, manifest_path, read_testbed
from .report import format_recovery_table, paired_bootstrap, ratio_label, relative_performance, relative_scale

logger = logging.getLogger(__name__)

RECOVERY_FORMAT = "interlace-hf-testbed-recovery/1"
METHOD_LABELS = {"none": "no fine-tune", "sft": "SFT (the paper's)", "kd_logit": "SFT + KD logits",
                 "kd_hidden": "SFT + KD hidden states", "kd_both": "SFT + KD logits + hidden", "lora": "LoRA (merged)"}


class Recovery:
    """Runs every (seed, method) row; each row's result (with every question's score) is cached as it finishes."""

    def __init__(self, args: TestbedRecoveryArgs):
        args.validate()
        self.args = args
        self.out = Path(args.output_dir)
        read_testbed(self.out)  # an error before any work when it is not one
        self.results_dir = Path(args.results_dir) if args.results_dir else self.out / "recovery"
        self.heldout = manifest_path(self.out / "data" / "heldout")

    def comparison(self, seed: int):
        a = self.args
        return Comparison(TestbedCompareArgs(
            output_dir=a.output_dir, drop_ratios=[a.drop_ratio], strategies=[a.strategy], seed=seed,
            finetune_fraction=a.finetune_fraction, finetune_learning_rate=a.finetune_learning_rate,
            finetune_batch_size=a.finetune_batch_size, device=a.device, scoring=a.scoring,
            results_dir=str(self.results_dir / f"seed-{seed}")))

    def run(self) -> dict:
        from tqdm.auto import tqdm

        a = self.args
        self.results_dir.mkdir(parents=True, exist_ok=True)
        rows: list[dict] = []
        bar = tqdm(total=len(a.seeds) * (len(a.methods) + 1), desc="testbed recovery", unit="row")
        dense = None
        for seed in a.seeds:
            comparison = self.comparison(seed)
            device = comparison.device
            if dense is None:
                dense = comparison.row("dense", lambda: comparison.evaluate(comparison.model_dir, self.heldout))
            model = comparison.pruned(a.strategy, a.drop_ratio)
            plan = comparison.plan(a.strategy, a.drop_ratio)
            key = f"{ratio_label(a.drop_ratio)}-{a.strategy}"
            for method in ["none", *a.methods]:
                bar.set_postfix_str(f"seed {seed}: {method}")

                def compute(method=method):
                    if method == "none":
                        return comparison.evaluate(model, self.heldout)
                    train_options, config_options = method_settings(
                        method, str(comparison.model_dir), distill_temperature=a.distill_temperature, lora_r=a.lora_r)
                    lr = (a.lora_learning_rate or LORA_RATE_FACTOR * comparison.ft_lr) if method == "lora" else None
                    directory = comparison.finetuned(model, f"{key}-{method}", learning_rate=lr,
                                                     train_options=train_options, config_options=config_options)
                    row = comparison.evaluate(directory, self.heldout)
                    row["learning_rate"] = lr or comparison.ft_lr
                    shutil.rmtree(directory, ignore_errors=True)  # the scores are what matters
                    return row

                row = comparison.row(f"{key}-{method}", compute)
                rows.append({"seed": seed, "method": method, "dropped_layers": list(plan.dropped_layers),
                             "tuned_layers": list(plan.tuned_layers), **row})
                bar.update()
        bar.close()
        results = self.summarise(dense, rows, device)
        write_json_atomic(self.results_dir / "scores.json", {  # every question's score, as `compare` keeps them
            "tasks": [record["task"] for record in json.loads(self.heldout.read_text())],
            "rows": [{k: r[k] for k in ("seed", "method", "scores", "logliks") if k in r} for r in rows]})
        write_json_atomic(self.results_dir / "results.json", results)
        (self.results_dir / "results.md").write_text(format_recovery_table(results) + "\n")
        return results

    def summarise(self, dense: dict, rows: list[dict], device: str) -> dict:
        a = self.args
        tasks = [record["task"] for record in json.loads(self.heldout.read_text())]
        by = {(r["seed"], r["method"]): r for r in rows}
        summary = []
        for method in ["none", *a.methods]:
            mine = [by[(s, method)] for s in a.seeds]
            entry = {"method": method, "label": METHOD_LABELS[method],
                     "relative": [relative_performance(r["per_type"], dense["per_type"]) for r in mine],
                     "seconds": [r.get("seconds") for r in mine]}
            if method != "sft":
                sft = [by[(s, "sft")]["scores"] for s in a.seeds]
                entry["vs_sft"] = paired_bootstrap([r["scores"] for r in mine], sft, tasks, resamples=a.bootstrap,
                                                   seed=0, scale=relative_scale(dense["per_type"]))
            summary.append(entry)
        return {
            "format": RECOVERY_FORMAT,
            "dense_accuracy": dense["accuracy"],
            "settings": {**dataclasses.asdict(a), "device": device},
            "summary": summary,
            "rows": [{k: v for k, v in r.items() if k not in ("scores", "logliks")} for r in rows],
            "versions": package_versions("torch", "transformers", "trl", "peft"),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command_line("recovery", a, always=("methods", "seeds")),
        }


def run_recovery(args: TestbedRecoveryArgs) -> dict:
    return Recovery(args).run()
