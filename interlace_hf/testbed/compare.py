"""`interlace-hf testbed compare OUT`: for every drop ratio and strategy, the whole method through the toolkit's own
stages (similarity -> selection -> prune -> the INTERLACE fine-tune -> scoring), plus Dense, Dense-FT and INTERLACE +
KD / + LoRA rows, into `OUT/compare/results.{json,md}` (and every question's score in `scores.json`).

Each fine-tuned row tries every rate of `--finetune-lr-grid` and is reported at the one that scores best on a
validation split drawn apart from the held-out questions. Rows are scored teacher-forced by default (exact match and
the answer's log-likelihood per question; `--scoring greedy` generates instead). Every finished row is cached in
`OUT/compare/rows/` and skipped on a rerun."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from ..args import TestbedCompareArgs
from ..utils.fileio import write_json_atomic
from ..version import package_versions
from .model import (
    FINETUNE_SEED_OFFSET,
    RESULTS_FORMAT,
    SHAPE_IMAGE_SIZE,
    SIZES,
    VALIDATION_SEED_OFFSET,
    answer_batches,
    command_line,
    ensure_synthetic,
    evaluate_accuracy,
    manifest_path,
    read_testbed,
    score_answers,
    testbed_processor,
)
from .report import accuracy_stderr, format_compare_table, ratio_label, relative_performance

logger = logging.getLogger(__name__)

METHOD_NAMES = {
    "dense": "Dense",
    "interlace": "INTERLACE",
    "interlace_oa": "INTERLACE-OA",
    "interlace_tn": "INTERLACE-TN",
    "consecutive": "Consecutive",
    "random": "Random",
    "shortgpt": "ShortGPT",
    "angular": "Angular",
    "sleb": "SLEB",
}
RECOVERY_NAMES = {"kd_logit": "KD logits", "kd_hidden": "KD hidden states", "kd_both": "KD", "lora": "LoRA"}


def method_name(strategy: str) -> str:
    """The table's name of a strategy, or of a recovery row ("interlace+kd_both" -> "INTERLACE + KD")."""
    base, _, method = strategy.partition("+")
    return METHOD_NAMES[base] + (f" + {RECOVERY_NAMES[method]}" if method else "")


# Strategies whose own plan tunes nothing: for their fine-tuned rows each dropped layer's next survivor is tuned
# (`tune_baselines`), so every method gets a comparable trainable budget.
BASELINES_WITHOUT_TUNED = ("shortgpt", "angular", "sleb")


# ----------------------------------------------------------------------------------------------------------- model

# ------------------------------------------------------------------------------------------------------------ data

# ------------------------------------------------------------------------------------------------------- evaluation

# --------------------------------------------------------------------------------------------------------- training

# ---------------------------------------------------------------------------------------------------------- compare

class Comparison:
    """Runs every row of the table through the toolkit's stages; each row's result is cached as it finishes."""

    def __init__(self, args: TestbedCompareArgs):
        args.validate()
        self.args = args
        self.out = Path(args.output_dir)
        self.testbed = read_testbed(self.out)
        self.model_dir = self.out / "model"
        self.heldout = manifest_path(self.out / "data" / "heldout")
        self.results_dir = Path(args.results_dir) if args.results_dir else self.out / "compare"
        self.num_layers = self.testbed["model"]["text_layers"]
        for ratio in args.drop_ratios:
            if math.floor(self.num_layers * ratio + 1e-9) < 1:
                raise ValueError(f"--drop-ratios {ratio}: {self.num_layers} x {ratio} rounds down to 0 layers; use a "
                                 f"ratio of at least {1 / self.num_layers:.3f}.")
        from ..utils.runtime import resolve_device

        self.device = resolve_device(args.device)
        self.ft_lr = args.finetune_learning_rate or self.testbed["settings"]["learning_rate"] / 10
        self._collated: dict[Path, tuple[list[dict], list[str]]] = {}
        self.num_finetune = max(args.finetune_batch_size,
                                round(self.finetune_fraction * self.testbed["settings"]["num_train"]))

    # --- shared inputs
    @property
    def finetune_fraction(self) -> float:
        size = SIZES.get(self.testbed["settings"]["size"])
        return self.args.finetune_fraction or (size.finetune_fraction if size else 0.01)

    @property
    def image_size(self) -> int:
        """The testbed's shape pictures' side: the fine-tune and validation sets are drawn like its training set."""
        return self.testbed["settings"].get("image_size", SHAPE_IMAGE_SIZE)

    @property
    def unseen(self) -> bool:
        """The testbed holds out only questions it never trained on; the fine-tune and validation sets then keep
        clear of the held-out questions too."""
        return bool(self.testbed["settings"].get("unseen_heldout"))

    def finetune_data(self) -> Path:
        exclude = [self.heldout, self.validation_data()] if self.unseen else None
        return ensure_synthetic(self.results_dir / "data" / "finetune", self.num_finetune,
                                self.args.seed + FINETUNE_SEED_OFFSET, self.testbed["settings"]["tasks"],
                                exclude=exclude, image_size=self.image_size)

    def validation_data(self) -> Path:
        """The split each fine-tuned row's learning rate is chosen on: never the held-out (test) questions and, for
        an unseen testbed, never a training question either, like the held-out set."""
        exclude = [self.heldout] + ([manifest_path(self.out / "data" / "train")] if self.unseen else [])
        return ensure_synthetic(self.results_dir / "data" / "validation", self.args.validation_questions,
                                self.args.seed + VALIDATION_SEED_OFFSET, self.testbed["settings"]["tasks"],
                                exclude=exclude, image_size=self.image_size)

    @property
    def learning_rates(self) -> list[float]:
        """The fine-tune rates a fine-tuned row tries: the fixed one, or the grid."""
        a = self.args
        return [a.finetune_learning_rate] if a.finetune_learning_rate else list(dict.fromkeys(a.finetune_lr_grid))

    @property
    def calibration_fraction(self) -> float:
        return min(1.0, self.args.calibration_samples / self.num_finetune)

    def calibration_records(self):
        """SLEB's calibration sample: the same seeded draw `run_similarity` takes (`data.sample_indices`)."""
        from ..data import load_records, sample_indices

        records, _ = load_records(self.finetune_data())
        return [records[i] for i in sample_indices(len(records), self.calibration_fraction, self.args.seed)]

    def similarities(self):
        from ..args import SimilarityArgs
        from ..tables import load_similarity_tables
        from ..selection import num_to_drop
        from ..similarity import run_similarity

        directory = self.results_dir / "similarity"
        # pack sizes 1-3 (INTERLACE), and Angular's block of n layers at every ratio (6 of 24 at 25%)
        packs = sorted({1, 2, 3, *(num_to_drop(self.num_layers, drop_ratio=r) for r in self.args.drop_ratios)})
        if (directory / "similarity_summary.json").is_file():
            tables = load_similarity_tables(directory)
            if set(packs) <= set(tables.pack_sizes):
                return tables
        run_similarity(SimilarityArgs(model=str(self.model_dir), data=str(self.finetune_data()),
                                      output_dir=str(directory), sample_fraction=self.calibration_fraction,
                                      seed=self.args.seed, batch_size=16, device=self.device, pack_sizes=packs,
                                      overwrite=True))
        return load_similarity_tables(directory)

    # --- plans and models
    def plan(self, strategy: str, ratio: float, draw: int = 0):
        """The plan of `strategy` at `ratio`; `draw` > 0 is another seeded draw of `random` (seed + draw)."""
        from ..plan import Plan
        from ..selection import select_layers

        path = self.results_dir / "plans" / f"{ratio_label(ratio)}-{strategy}{f'-{draw}' if draw else ''}.json"
        if path.is_file():
            return Plan.load(path)
        if strategy == "sleb":
            from ..checkpoint import load_model
            from ..processing import load_processor
            from ..selection import num_to_drop
            from ..sleb import select_sleb

            model = load_model(str(self.model_dir))
            plan = select_sleb(model, load_processor(str(self.model_dir)), self.calibration_records(),
                               num_to_drop(self.num_layers, drop_ratio=ratio), batch_size=16, drop_ratio=ratio,
                               # the testbed model learned answers only; its loss on prompt tokens means nothing
                               tune_baselines=True, answer_only=self.args.sleb_loss == "answers")
            del model
        else:
            plan = select_layers(self.similarities(), strategy, drop_ratio=ratio, seed=self.args.seed + draw,
                                 tune_baselines=strategy in BASELINES_WITHOUT_TUNED)
        path.parent.mkdir(parents=True, exist_ok=True)
        plan.save(path)
        return plan

    def pruned(self, strategy: str, ratio: float, draw: int = 0) -> Path:
        from ..checkpoint import load_model
        from ..surgery import prune_and_save

        directory = self.results_dir / "models" / ratio_label(ratio) / f"{strategy}{f'-{draw}' if draw else ''}"
        if not (directory / "plan.json").is_file():
            plan = self.plan(strategy, ratio, draw)
            prune_and_save(load_model(str(self.model_dir)), plan, str(self.model_dir), directory, overwrite=True)
        return directory

    def finetuned(self, model: Path, name: str, plan_file: Path | None = None, *, learning_rate: float | None = None,
                  train_options: dict | None = None, config_options: dict | None = None) -> Path:
        """The INTERLACE fine-tune (`train.run_training`, `InterlaceSFTTrainer`) of `model`'s tuned layers.

        `train_options` / `config_options` are further `TrainArgs` / `InterlaceSFTConfig` fields (a teacher, LoRA,
        distillation weights); `learning_rate` replaces the comparison's fine-tune rate."""
        import torch

        from ..args import TrainArgs
        from ..train import run_training
        from ..trainer import InterlaceSFTConfig

        directory = self.results_dir / "finetuned" / name
        if (directory / "interlace_train.json").is_file():
            return directory
        train_args = TrainArgs(model=str(model), dataset=str(self.finetune_data()),
                               plan=str(plan_file) if plan_file else None, **(train_options or {}))
        config = InterlaceSFTConfig(
            output_dir=str(directory), learning_rate=learning_rate or self.ft_lr, per_device_train_batch_size=self.args.finetune_batch_size,
            gradient_accumulation_steps=1, num_train_epochs=1.0, seed=self.args.seed, data_seed=self.args.seed,
            save_strategy="no", logging_steps=5, report_to="none", disable_tqdm=True,
            use_cpu=self.device == "cpu", bf16=bool(self.device.startswith("cuda") and torch.cuda.is_bf16_supported()),
            # the testbed was trained at its own image sizes; keep them (they are inside the paper's bounds anyway)
            min_pixels=32 * 32, max_pixels=128 * 128, **(config_options or {}),
        )
        run_training(train_args, config)
        return directory

    def recovery_options(self, method: str) -> tuple[dict, dict, float]:
        """(`TrainArgs` fields, `InterlaceSFTConfig` fields, factor on the fine-tune rates) of a recovery method
        (`testbed recovery`'s; "" is the paper's SFT)."""
        if not method:
            return {}, {}, 1.0
        train_options, config_options = method_settings(method, str(self.model_dir))
        return train_options, config_options, LORA_RATE_FACTOR if method == "lora" else 1.0

    def rates(self, method: str = "") -> list[float]:
        return [self.recovery_options(method)[2] * lr for lr in self.learning_rates]

    def _finetuned_name(self, key: str, lr: float) -> str:
        return f"{key}-lr{lr:g}" if len(self.learning_rates) > 1 else key

    def choose_learning_rate(self, model: Path, key: str, plan_file: Path | None,
                             method: str = "") -> tuple[float, dict[str, float]]:
        """The fine-tune rate of row `key`: of `rates(method)`, the one whose fine-tuned model scores best on the
        validation split (ties: the smaller rate), and every rate's validation accuracy. One rate: no search."""
        rates = self.rates(method)
        if len(rates) == 1:
            return rates[0], {}
        train_options, config_options, _ = self.recovery_options(method)
        validation = {}
        for lr in rates:
            name = self._finetuned_name(key, lr)
            row = self.row(f"{name}-validation", lambda: {"learning_rate": lr, **self.evaluate(
                self.finetuned(model, name, plan_file, learning_rate=lr, train_options=train_options,
                               config_options=config_options), self.validation_data())})
            validation[f"{lr:g}"] = row["accuracy"]
        best = max(rates, key=lambda lr: (validation[f"{lr:g}"], -lr))
        logger.info("%s: fine-tune learning rate %g (validation accuracy %s)", key, best,
                    ", ".join(f"{lr} {acc:.3f}" for lr, acc in validation.items()))
        return best, validation

    def _tuned_row(self, model: Path, key: str, strategy: str, ratio: float, plan, plan_file: Path | None,
                   method: str, rate: float, validation: dict) -> dict:
        """The fine-tuned row of `key` at the chosen `rate`; every fine-tuned model of the row is deleted after."""
        train_options, config_options, _ = self.recovery_options(method)
        directory = self.finetuned(model, self._finetuned_name(key, rate), plan_file, learning_rate=rate,
                                   train_options=train_options, config_options=config_options)
        row = self._eval_row(directory, strategy, ratio, True, plan)
        row.update(trainable_parameters=trainable_parameters(directory), learning_rate=rate,
                   validation_accuracy=validation)
        for lr in self.rates(method):  # the row is what matters; weights add up fast
            shutil.rmtree(self.results_dir / "finetuned" / self._finetuned_name(key, lr), ignore_errors=True)
        return row

    def dense_plan_file(self) -> Path:
        """Dense-FT: no layer dropped, every text decoder layer tuned (the budget of a plain fine-tune)."""
        from ..plan import Plan

        path = self.results_dir / "plans" / "dense-ft.json"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            Plan(num_layers=self.num_layers, dropped_layers=(), tuned_layers=tuple(range(self.num_layers)),
                 strategy="dense", drop_ratio=0.0).save(path)
        return path

    # --- rows
    def row(self, key: str, compute) -> dict:
        path = self.results_dir / "rows" / f"{key}.json"
        if path.is_file():
            cached = json.loads(path.read_text())
            if cached.get("scoring", self.args.scoring) == self.args.scoring:
                return cached
            logger.info("%s was scored %s; scoring it %s again", key, cached["scoring"], self.args.scoring)
        start = time.perf_counter()
        result = compute()
        result["seconds"] = round(time.perf_counter() - start, 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, result)
        return result

    def evaluate(self, model_dir: Path, manifest: Path) -> dict:
        """`--scoring`: teacher-forced (`score_answers`: exact match and log-likelihood per question) or greedy
        (`evaluate_accuracy`, the generation of `interlace-hf eval`)."""
        if self.args.scoring == "greedy":
            result = evaluate_accuracy(model_dir, manifest, device=self.device, item_scores=True)
        else:
            if manifest not in self._collated:  # the questions are collated once; every model of the run reuses them
                self._collated[manifest] = answer_batches(manifest, testbed_processor(self.model_dir))
            result = score_answers(model_dir, manifest, device=self.device, batches=self._collated[manifest])
        return {**result, "scoring": self.args.scoring}

    def _eval_row(self, model_dir: Path, method: str, ratio: float, finetuned: bool, plan=None) -> dict:
        result = self.evaluate(model_dir, self.heldout)
        name = "Dense-FT" if method == "dense" and finetuned else method_name(method)
        row = {"method": name, "strategy": method, "drop_ratio": ratio, "fine_tuned": finetuned,
               **result}
        if plan is not None:
            row.update(dropped_layers=list(plan.dropped_layers), tuned_layers=list(plan.tuned_layers),
                       anchor_layers=list(plan.anchor_layers), layers=plan.num_kept)
        return row

    def run(self) -> dict:
        from tqdm.auto import tqdm

        a = self.args
        self.results_dir.mkdir(parents=True, exist_ok=True)
        tuned_ratios = set() if a.no_finetune else set(a.finetune_ratios or a.drop_ratios)
        # INTERLACE's further recovery rows ("interlace+kd_both", ...): fine-tuned only
        recovery = [m for m in a.recovery_methods if m != "none"] if "interlace" in a.strategies else []
        work = [("dense", 0.0)] + [(s, r) for r in a.drop_ratios for s in [
            *a.strategies, *(f"interlace+{m}" for m in recovery if r in tuned_ratios)]]
        rows: list[dict] = []
        bar = tqdm(total=sum(("+" not in s) + (r in tuned_ratios or (s == "dense" and bool(tuned_ratios)))
                             for s, r in work), desc="testbed compare", unit="row")
        for strategy, ratio in work:
            finetune = ratio in tuned_ratios or (strategy == "dense" and bool(tuned_ratios))
            bar.set_postfix_str(f"{strategy} {ratio_label(ratio)}")
            base, _, method = strategy.partition("+")
            draws = range(a.random_draws if base == "random" else 1)  # Random: the mean of several draws
            plain, tuned = [], []
            for draw in draws:
                key = "dense" if base == "dense" else f"{ratio_label(ratio)}-{base}{f'-{draw}' if draw else ''}"
                if base == "dense":
                    model, plan = self.model_dir, None
                else:
                    model = self.pruned(base, ratio, draw)
                    plan = self.plan(base, ratio, draw)
                if not method:
                    plain.append(self.row(key, lambda: self._eval_row(model, strategy, ratio, False, plan)))
                if finetune:
                    plan_file = self.dense_plan_file() if base == "dense" else None
                    tuned_key = f"{key}-{method}" if method else key
                    if draw == 0:  # the rate is chosen per method and ratio, on the first draw
                        rate, validation = self.choose_learning_rate(model, tuned_key, plan_file, method)
                    tuned.append(self.row(f"{tuned_key}-ft", lambda: self._tuned_row(
                        model, tuned_key, strategy, ratio, plan, plan_file, method, rate, validation)))
            for done in (plain, tuned):
                if done:
                    rows.append(mean_of_draws(done))
                    bar.update()
        bar.close()
        speedups = self.bench() if self.args.bench_repeats else {}
        flop = self.flop_speedups()
        dense = rows[0]["per_type"]
        counts = Counter(record["task"] for record in json.loads(self.heldout.read_text()))
        for row in rows:
            row["accuracy_stderr"] = accuracy_stderr(row["per_type"], counts)
            row["relative"] = relative_performance(row["per_type"], dense)
            row["flop_speedup"] = 1.0 if row["strategy"] == "dense" else flop[row["drop_ratio"]]
            if speedups:
                row["ttft_speedup"] = 1.0 if row["strategy"] == "dense" else \
                    speedups[(row["drop_ratio"], row["strategy"].partition("+")[0])]
        self.pair_with_interlace(rows, dense)
        # every row's per-question scores, for `testbed summary` (over training seeds); results.json stays small
        write_json_atomic(self.results_dir / "scores.json", {
            "tasks": [record["task"] for record in json.loads(self.heldout.read_text())],
            "rows": [{k: row[k] for k in ("strategy", "drop_ratio", "fine_tuned", "scores", "logliks") if k in row}
                     for row in rows if "scores" in row]})
        rows = [{k: v for k, v in row.items() if k not in ("scores", "logliks")} for row in rows]
        results = {
            "format": RESULTS_FORMAT,
            "testbed": {k: self.testbed[k] for k in ("settings", "model", "accuracy", "chance")},
            "settings": {**dataclasses.asdict(a), "finetune_learning_rates": self.learning_rates,
                         "finetune_fraction": self.finetune_fraction, "finetune_samples": self.num_finetune,
                         "device": self.device},
            "rows": rows,
            "bench": {ratio_label(r): str(self.results_dir / f"bench-{ratio_label(r)}.json") for r in a.drop_ratios},
            "versions": package_versions("torch", "transformers", "trl"),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command_line("compare", a, always=("drop_ratios", "strategies")),
        }
        write_json_atomic(self.results_dir / "results.json", results)
        markdown = format_compare_table(results)
        (self.results_dir / "results.md").write_text(markdown + "\n")
        return results

    def pair_with_interlace(self, rows: list[dict], dense: dict[str, float]) -> None:
        """For every row with the same drop ratio and fine-tune state as an INTERLACE row, its difference from it in
        relative performance (`dense`: the dense model's per-type accuracy), paired over the held-out questions, with
        a bootstrap 95% interval (`vs_interlace`); rows cached before per-question scores were kept get none."""
        from .report import paired_bootstrap, relative_scale

        tasks = [record["task"] for record in json.loads(self.heldout.read_text())]
        reference = {(r["drop_ratio"], r["fine_tuned"]): r for r in rows if r["strategy"] == "interlace"}
        for row in rows:
            ours = reference.get((row["drop_ratio"], row["fine_tuned"]))
            if ours is None or row is ours or "scores" not in row or "scores" not in ours or not any(dense.values()):
                continue
            stats = paired_bootstrap([row["scores"]], [ours["scores"]], tasks, resamples=2000, seed=self.args.seed,
                                     scale=relative_scale(dense))
            row["vs_interlace"] = {k: stats[k] for k in ("mean", "low", "high")}

    def flop_speedups(self) -> dict[float, float]:
        """Per drop ratio, the counted-FLOP ideal of the time-to-first-token speed-up (a 448-pixel image and 64 question
        tokens, as `interlace-hf bench` measures): what the quality table shows. Measured TTFT belongs to `bench`."""
        from ..benchmark.flops import ideal_speedup
        from ..selection import num_to_drop

        config = json.loads((self.model_dir / "config.json").read_text())
        return {ratio: ideal_speedup(config, self.num_layers - num_to_drop(self.num_layers, drop_ratio=ratio),
                                     num_text_tokens=64, image_size=448) for ratio in self.args.drop_ratios}

    def bench(self) -> dict[tuple[float, str], float]:
        """TTFT of every pruned model against the dense one, measured interleaved in one run per drop ratio."""
        from ..benchmark.bench import run_bench

        speedups = {}
        for ratio in self.args.drop_ratios:
            path = self.results_dir / f"bench-{ratio_label(ratio)}.json"
            models = [str(self.pruned(s, ratio)) for s in self.args.strategies]
            if path.is_file():
                results = json.loads(path.read_text())
            else:
                # A 448-pixel image and 64 question tokens, as `interlace-hf bench` measures: the decoder layers,
                # not fixed per-call costs, then dominate the time to first token (weights' values do not matter).
                results = run_bench([str(self.model_dir)] + models, image_size=448, prompt_tokens=64, new_tokens=2,
                                    repeats=self.args.bench_repeats, warmup=2, device=self.device, output=str(path))
            by_name = {row["name"]: row["speedup"]["ttft"] for row in results["models"]}
            for strategy, model in zip(self.args.strategies, models):
                speedups[(ratio, strategy)] = by_name[model]
        return speedups


def method_settings(method: str, teacher: str, *, distill_temperature: float = 1.0,
                    lora_r: int = 16) -> tuple[dict, dict]:
    """(`TrainArgs` fields, `InterlaceSFTConfig` fields) of a recovery method; `teacher`: the dense model."""
    distill = {"kd_logit": (1.0, 0.0), "kd_hidden": (0.0, 1.0), "kd_both": (1.0, 1.0)}
    if method == "sft":
        return {}, {}
    if method in distill:
        alpha, hidden = distill[method]
        return ({"teacher": teacher},
                {"distill_alpha": alpha, "distill_hidden": hidden, "distill_temperature": distill_temperature})
    if method == "lora":
        return {"use_peft": True, "lora_r": lora_r, "lora_alpha": 2 * lora_r, "lora_dropout": 0.05}, {}
    raise ValueError(f"unknown recovery method {method!r}")


# LoRA trains adapters from zero: it wants about ten times the rate of a full fine-tune of the same layers
LORA_RATE_FACTOR = 10


def trainable_parameters(directory: Path) -> int:
    """The parameters a fine-tuned checkpoint trained: as its training recorded them (under LoRA, the adapters'),
    else those of its plan's tuned layers (from the headers)."""
    from ..checkpoint import safetensors_parameter_counts
    from ..plan import Plan
    from ..train import TRAIN_INFO_FILE

    recorded = json.loads((directory / TRAIN_INFO_FILE).read_text()).get("trainable_parameters")
    if recorded:
        return recorded

    plan = Plan.load(directory / "plan.json")
    kept = list(plan.kept_layers)
    prefixes = tuple(f".language_model.layers.{kept.index(t)}." for t in plan.tuned_layers)
    return sum(n for name, n in safetensors_parameter_counts(directory).items() if any(p in name for p in prefixes))


def mean_of_draws(rows: list[dict]) -> dict:
    """One row from the rows of several draws of a strategy: accuracy, per-type accuracy and per-question scores
    (and log-likelihoods) averaged; the draws' dropped layers and accuracies listed (`draws`). A single row is
    returned as it is."""
    if len(rows) == 1:
        return rows[0]
    first = rows[0]
    mean = {**first, "accuracy": sum(r["accuracy"] for r in rows) / len(rows),
            "per_type": {t: sum(r["per_type"][t] for r in rows) / len(rows) for t in first["per_type"]},
            "draws": [{"dropped_layers": r.get("dropped_layers"), "accuracy": r["accuracy"]} for r in rows]}
    for key in ("scores", "logliks"):
        if all(key in r for r in rows):
            mean[key] = [sum(values) / len(rows) for values in zip(*(r[key] for r in rows))]
        else:
            mean.pop(key, None)
    return mean


def run_compare(args: TestbedCompareArgs) -> dict:
    return Comparison(args).run()
