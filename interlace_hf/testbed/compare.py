"""An offline retention testbed: a small Qwen3-VL trained here, then pruned by every strategy and compared.

Real Qwen3-VL weights cannot be downloaded everywhere, and a randomly initialised model answers nothing, so the
paper's comparison (relative performance after dropping layers, with and without the short fine-tune) cannot be
measured on the tiny demo model. This module makes a model that *does* answer: the real Qwen3-VL classes (DeepStack
included) at small width, trained from scratch on `interlace_hf.datasets.synthetic`'s checkable questions.

    interlace-hf testbed train OUT [--size small|base] [--steps N] [--seed S]
    interlace-hf testbed compare OUT --drop-ratios 0.10 0.25 [--strategies interlace ... sleb]

`train` writes `OUT/model` (a normal checkpoint), `OUT/data/{train,heldout}` and `OUT/testbed.json` (held-out
accuracy per task type next to the majority-answer baseline). `compare` runs, for every drop ratio and strategy, the
whole method through the toolkit's own stages (similarity -> selection -> prune -> the INTERLACE fine-tune -> eval),
plus Dense and Dense-FT rows and a TTFT benchmark, and writes `OUT/compare/results.{json,md}`. Both are resumable:
a rerun continues the training from its last checkpoint and skips every finished row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..args import TestbedCompareArgs, TestbedTrainArgs
from ..utils.fileio import atomic_output_dir, check_output_dir, write_json_atomic
from ..version import package_versions

logger = logging.getLogger(__name__)

TESTBED_FILE = "testbed.json"
RESULTS_FORMAT = "interlace-hf-testbed/1"
TRAIN_SEED_OFFSET = 1_000  # data seeds: train, held-out and fine-tune sets never share a generator stream
HELDOUT_SEED_OFFSET = 2_000
FINETUNE_SEED_OFFSET = 3_000


@dataclass(frozen=True)
class TestbedSize:
    """The shape and training budget of one testbed size (the text model is Qwen3-VL's, at small width)."""

    text_layers: int
    hidden_size: int
    vision_hidden_size: int
    vision_depth: int
    steps: int
    batch_size: int
    learning_rate: float
    tasks: tuple[str, ...]

    @property
    def head_dim(self) -> int:
        return 32 if self.hidden_size >= 64 else 16


# What a 2-core CPU can teach a model from scratch in minutes: reading the word in `text` images and the printed
# number in `bar_value` charts stayed at chance after 300-1000 steps of every setting tried (docs/results-testbed.md),
# so `small` trains on the four visual-reasoning types; `base` (GPU) trains on all six.
SMALL_TASKS = ("count", "colour", "shape", "bar_tallest")
ALL_TASKS = ("count", "colour", "shape", "bar_tallest", "bar_value", "text")

SIZES = {
    # 12 text layers, ~3M parameters: minutes on a 2-core CPU.
    "small": TestbedSize(text_layers=12, hidden_size=128, vision_hidden_size=64, vision_depth=4, steps=1500,
                         batch_size=16, learning_rate=1e-3, tasks=SMALL_TASKS),
    # 24 text layers, ~20M parameters: for a GPU (hours on a CPU).
    "base": TestbedSize(text_layers=24, hidden_size=256, vision_hidden_size=128, vision_depth=6, steps=6000,
                        batch_size=32, learning_rate=1e-3, tasks=ALL_TASKS),
    # For tests: the structure, not the quality.
    "tiny": TestbedSize(text_layers=12, hidden_size=32, vision_hidden_size=16, vision_depth=4, steps=8,
                        batch_size=4, learning_rate=2e-3, tasks=SMALL_TASKS),
}

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
# Strategies whose own plan tunes nothing: for their fine-tuned rows each dropped layer's next survivor is tuned
# (`tune_baselines`), so every method gets a comparable trainable budget.
BASELINES_WITHOUT_TUNED = ("shortgpt", "angular", "sleb")


# ----------------------------------------------------------------------------------------------------------- model

def testbed_config(size: TestbedSize, tokenizer):
    """A Qwen3-VL config of `size`: the tiny model's structure (3 DeepStack features, M-RoPE, untied head), wider."""
    from ..testing.tiny import tiny_config

    config = tiny_config(size.text_layers, tokenizer)
    text, vision = config.text_config, config.vision_config
    text.hidden_size = size.hidden_size
    text.intermediate_size = 3 * size.hidden_size
    text.head_dim = size.head_dim
    text.num_attention_heads = max(2, size.hidden_size // size.head_dim)
    text.num_key_value_heads = max(1, text.num_attention_heads // 2)
    quarter = size.head_dim // 4  # M-RoPE sections (time, height, width) sum to head_dim / 2
    text.rope_parameters["mrope_section"] = [quarter, quarter // 2, quarter // 2]
    vision.hidden_size = size.vision_hidden_size
    vision.intermediate_size = 2 * size.vision_hidden_size
    vision.num_heads = max(2, size.vision_hidden_size // 32)
    vision.depth = size.vision_depth
    vision.out_hidden_size = size.hidden_size
    vision.deepstack_visual_indexes = [size.vision_depth - 3, size.vision_depth - 2, size.vision_depth - 1]
    return config


def build_testbed_init(size: TestbedSize, seed: int):
    """A randomly initialised testbed model and its processor (the tiny tokenizer and image processor)."""
    from ..testing.tiny import build_tiny_processor, init_qwen3_vl

    processor = build_tiny_processor()
    return init_qwen3_vl(testbed_config(size, processor.tokenizer), processor.tokenizer, seed), processor


# ------------------------------------------------------------------------------------------------------------ data

def _manifest(directory: Path) -> Path:
    return directory / "synthetic.json"


def ensure_synthetic(directory: Path, num: int, seed: int, tasks) -> Path:
    """The synthetic set at `directory` (made once, atomically; a set of another size or seed is an error)."""
    from ..datasets.synthetic import make_synthetic

    manifest = _manifest(directory)
    stamp = directory / "made_with.json"
    wanted = {"num": num, "seed": seed, "tasks": list(tasks)}
    if manifest.is_file():
        made = json.loads(stamp.read_text()) if stamp.is_file() else None
        if made != wanted:
            raise ValueError(f"{directory} holds a synthetic set made with {made}, not {wanted}; this directory "
                             "belongs to another run: pass the same settings, or a new OUTPUT_DIR / --overwrite.")
        return manifest
    make_synthetic(directory, num=num, seed=seed, overwrite=True, tasks=tasks)
    stamp.write_text(json.dumps(wanted) + "\n")
    return manifest


def _record_keys(manifest: Path) -> list[tuple[str, str]]:
    """(image sha256, question) of each record: what makes two questions the same question."""
    records = json.loads(manifest.read_text())
    keys = []
    for record in records:
        digest = hashlib.sha256((manifest.parent / record["image"]).read_bytes()).hexdigest()
        keys.append((digest, record["conversations"][0]["value"]))
    return keys


def majority_baseline(train_manifest: Path, heldout_manifest: Path) -> dict[str, float]:
    """Per task type, the held-out accuracy of always giving the training set's most frequent answer ("chance")."""
    from ..evaluation.metrics import score

    answers: dict[str, Counter] = {}
    for record in json.loads(train_manifest.read_text()):
        answers.setdefault(record["task"], Counter())[record["conversations"][1]["value"]] += 1
    hits: dict[str, list[float]] = {}
    for record in json.loads(heldout_manifest.read_text()):
        common = answers.get(record["task"])
        guess = common.most_common(1)[0][0] if common else ""
        hits.setdefault(record["task"], []).append(score("exact_match", guess, [record["conversations"][1]["value"]]))
    return {task: sum(v) / len(v) for task, v in sorted(hits.items())}


def seen_in_training(train_manifest: Path, heldout_manifest: Path) -> list[bool]:
    """For each held-out question, whether it also occurs in training (same image bytes, same question)."""
    seen = set(_record_keys(train_manifest))
    return [key in seen for key in _record_keys(heldout_manifest)]


# ------------------------------------------------------------------------------------------------------- evaluation

def evaluate_accuracy(model_dir: Path | str, heldout: Path, *, device: str = "auto", batch_size: int = 32,
                      item_scores: bool = False) -> dict:
    """Greedy answers to the held-out questions: exact match per task type and their mean (`accuracy`).

    With `item_scores`, also `scores`: each question's score, in the manifest's order.
    """
    from ..evaluation.evaluate import evaluate_model

    result = evaluate_model(str(model_dir), ["synthetic"], data={"synthetic": str(heldout)}, batch_size=batch_size,
                            max_new_tokens=8, device=device, prompt_suffix="", progress=False,
                            save_predictions=item_scores)
    task = result["tasks"]["synthetic"]
    per_type = {kind: entry["score"] for kind, entry in task["per_type"].items()}
    # The mean over task types (each type a "benchmark"), so the mix of the held-out draw does not weigh them.
    accuracy = {"accuracy": sum(per_type.values()) / len(per_type), "per_type": per_type, "n": task["n"]}
    if item_scores:
        accuracy["scores"] = [entry["score"] for entry in task["predictions"]]
    return accuracy


def unseen_accuracy(heldout_manifest: Path, seen: list[bool], scores: list[float]) -> dict:
    """The accuracy on the held-out questions not `seen` in training (per task type and their mean)."""
    records = json.loads(heldout_manifest.read_text())
    groups: dict[str, list[float]] = {}
    for was_seen, record, value in zip(seen, records, scores):
        if not was_seen:
            groups.setdefault(record["task"], []).append(value)
    per_type = {kind: sum(v) / len(v) for kind, v in sorted(groups.items())}
    return {"accuracy": sum(per_type.values()) / len(per_type) if per_type else None, "per_type": per_type,
            "n": sum(len(v) for v in groups.values())}


# --------------------------------------------------------------------------------------------------------- training

def resolved_train_settings(args: TestbedTrainArgs) -> dict:
    size = SIZES[args.size]
    steps = args.steps or size.steps
    batch_size = args.batch_size or size.batch_size
    return {"size": args.size, "seed": args.seed, "steps": steps, "batch_size": batch_size,
            "learning_rate": args.learning_rate or size.learning_rate, "tasks": list(args.tasks or size.tasks),
            # one pass over fresh samples, as in pretraining: every training question is seen once
            "num_train": steps * batch_size, "num_eval": args.num_eval}


def train_testbed(args: TestbedTrainArgs) -> dict:
    """Train the testbed model from scratch (resumable) and report its held-out accuracy.

    Returns:
        the report also written to `OUTPUT_DIR/testbed.json`.
    """
    args.validate()
    out = Path(args.output_dir)
    settings = resolved_train_settings(args)
    report_path = out / TESTBED_FILE
    previous = json.loads(report_path.read_text()) if report_path.is_file() else None
    if previous is not None and not args.overwrite:
        if previous.get("settings") != settings:
            raise ValueError(f"{out} holds a testbed trained with {previous.get('settings')}; pass the same settings, "
                             "--overwrite to retrain, or a new OUTPUT_DIR.")
        print(f"{out}: already trained (held-out accuracy {previous['accuracy']['accuracy']:.3f}); nothing to do")
        return previous
    if args.overwrite and out.exists():
        check_output_dir(out, overwrite=True, flag="OUTPUT_DIR")
        shutil.rmtree(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"OUTPUT_DIR {str(out)!r} is a file; pass a directory path.")
    if out.is_dir() and any(out.iterdir()) and not (out / "data").is_dir():
        raise ValueError(f"OUTPUT_DIR {str(out)!r} is not empty and is not a testbed; choose a new directory or pass "
                         "--overwrite.")
    from ..utils.runtime import resolve_device

    device = resolve_device(args.device)
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    print(f"[data] {settings['num_train']} training and {settings['num_eval']} held-out questions")
    tasks = settings["tasks"]
    train = ensure_synthetic(out / "data" / "train", settings["num_train"], args.seed + TRAIN_SEED_OFFSET, tasks)
    heldout = ensure_synthetic(out / "data" / "heldout", settings["num_eval"], args.seed + HELDOUT_SEED_OFFSET, tasks)
    data_seconds = time.perf_counter() - start

    print(f"[train] {args.size}: {settings['steps']} steps x {settings['batch_size']} on {device}")
    start = time.perf_counter()
    model_dir = out / "model"
    log_history = _train_model(args, settings, train, out / "checkpoints", model_dir, device)
    # The trainer's own figure, so a rerun that finds the model already trained reports the training, not the check.
    train_seconds = next((e["train_runtime"] for e in log_history if "train_runtime" in e), time.perf_counter() - start)

    print("[eval] held-out accuracy")
    accuracy = evaluate_accuracy(model_dir, heldout, device=device, item_scores=True)
    seen = seen_in_training(train, heldout)  # hashes every training image: once
    unseen = unseen_accuracy(heldout, seen, accuracy.pop("scores"))
    chance = majority_baseline(train, heldout)
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    import torch

    report = {
        "format": RESULTS_FORMAT,
        "settings": settings,
        "model": _model_summary(model_dir),
        "accuracy": accuracy,
        "chance": {"per_type": chance, "accuracy": sum(chance.values()) / len(chance),
                   "definition": "always the training set's most frequent answer of the task type"},
        "heldout_overlap": sum(seen) / len(seen),
        "unseen_accuracy": unseen,
        "final_train_loss": losses[-1] if losses else None,
        "seconds": {"data": round(data_seconds, 1), "train": round(train_seconds, 1)},
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "threads": torch.get_num_threads(),
        "versions": package_versions("torch", "transformers", "trl"),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command_line("train", args, always=("size", "seed")),
    }
    write_json_atomic(report_path, report)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    print(format_train_report(report))
    return report


def _model_summary(model_dir: Path) -> dict:
    config = json.loads((model_dir / "config.json").read_text())
    from ..checkpoint import safetensors_parameter_counts

    parameters = sum(safetensors_parameter_counts(model_dir).values())
    return {"text_layers": config["text_config"]["num_hidden_layers"],
            "hidden_size": config["text_config"]["hidden_size"],
            "vision_depth": config["vision_config"]["depth"],
            "deepstack_visual_indexes": config["vision_config"]["deepstack_visual_indexes"],
            "parameters": parameters}


def _train_model(args: TestbedTrainArgs, settings: dict, train_manifest: Path, checkpoints: Path, model_dir: Path,
                 device: str) -> list[dict]:
    """All parameters trainable, TRL's SFTTrainer (answer tokens only), one pass over the training set."""
    if (model_dir / "config.json").is_file():
        provenance = model_dir / "interlace_testbed.json"
        made = json.loads(provenance.read_text()) if provenance.is_file() else {}
        if {k: made.get(k) for k in settings} != settings:
            raise ValueError(f"{model_dir} was trained with other settings ({made}); pass those settings, --overwrite "
                             "to retrain, or a new OUTPUT_DIR.")
        state = model_dir / "trainer_state.json"
        return json.loads(state.read_text())["log_history"] if state.is_file() else []
    import torch
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    from ..args import TrainArgs
    from ..train import build_train_dataset

    dataset, _ = build_train_dataset(TrainArgs(model="testbed", dataset=str(train_manifest)))
    model, processor = build_testbed_init(SIZES[args.size], args.seed)
    steps = settings["steps"]
    config = SFTConfig(
        output_dir=str(checkpoints),
        max_steps=steps,
        per_device_train_batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        weight_decay=0.01,
        adam_beta2=0.98,
        max_grad_norm=1.0,
        seed=args.seed,
        data_seed=args.seed,
        logging_steps=max(1, steps // 20),
        save_steps=max(1, steps // 10),
        save_total_limit=1,
        report_to="none",
        assistant_only_loss=True,
        max_length=None,
        bf16=bool(device.startswith("cuda") and torch.cuda.is_bf16_supported()),
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(model, args=config, train_dataset=dataset, processing_class=processor)
    resume = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if resume:
        print(f"[train] resuming from {resume}")
    trainer.train(resume_from_checkpoint=resume)
    with atomic_output_dir(model_dir, overwrite=True, flag="OUTPUT_DIR/model") as staging:
        trainer.model.save_pretrained(staging)
        processor.save_pretrained(staging)
        trainer.state.save_to_json(str(staging / "trainer_state.json"))
        provenance = {"builder": "interlace_hf.testbed.compare", **settings}
        (staging / "interlace_testbed.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return trainer.state.log_history


def format_train_report(report: dict) -> str:
    accuracy, chance = report["accuracy"], report["chance"]["per_type"]
    lines = [
        "",
        f"testbed ({report['settings']['size']}, seed {report['settings']['seed']}): "
        f"{report['model']['text_layers']} text layers, {report['model']['parameters'] / 1e6:.2f}M parameters, "
        f"trained {report['settings']['steps']} steps in {report['seconds']['train']:.0f}s on {report['device']}",
        "",
        "| task type | held-out accuracy | on questions not seen in training | majority-answer baseline |",
        "|---|---|---|---|",
    ]
    unseen = report["unseen_accuracy"]

    def fmt(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    for kind, value in accuracy["per_type"].items():
        lines.append(f"| {kind} | {value:.3f} | {fmt(unseen['per_type'].get(kind))} | {fmt(chance.get(kind))} |")
    lines.append(f"| **mean** | **{accuracy['accuracy']:.3f}** | {fmt(unseen['accuracy'])} | "
                 f"{report['chance']['accuracy']:.3f} |")
    lines.append(f"\n{100 * report['heldout_overlap']:.1f}% of the {accuracy['n']} held-out questions also occur in "
                 f"training (same image bytes, same question): the synthetic world is small; the third column leaves "
                 f"them out ({unseen['n']} questions).")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------- compare

def _pc(ratio: float) -> str:
    return f"{round(100 * ratio):02d}pc"


class Comparison:
    """Runs every row of the table through the toolkit's stages; each row's result is cached as it finishes."""

    def __init__(self, args: TestbedCompareArgs):
        args.validate()
        self.args = args
        self.out = Path(args.output_dir)
        report = self.out / TESTBED_FILE
        if not report.is_file() or not (self.out / "model" / "config.json").is_file():
            raise ValueError(f"{str(self.out)!r} is not a trained testbed (no {TESTBED_FILE} / model); run "
                             f"`interlace-hf testbed train {self.out}` first.")
        self.testbed = json.loads(report.read_text())
        self.model_dir = self.out / "model"
        self.heldout = _manifest(self.out / "data" / "heldout")
        self.results_dir = Path(args.results_dir) if args.results_dir else self.out / "compare"
        self.num_layers = self.testbed["model"]["text_layers"]
        for ratio in args.drop_ratios:
            if math.floor(self.num_layers * ratio + 1e-9) < 1:
                raise ValueError(f"--drop-ratios {ratio}: {self.num_layers} x {ratio} rounds down to 0 layers; use a "
                                 f"ratio of at least {1 / self.num_layers:.3f}.")
        from ..utils.runtime import resolve_device

        self.device = resolve_device(args.device)
        self.ft_lr = args.finetune_learning_rate or self.testbed["settings"]["learning_rate"] / 10
        self.num_finetune = max(args.finetune_batch_size,
                                round(args.finetune_fraction * self.testbed["settings"]["num_train"]))

    # --- shared inputs
    def finetune_data(self) -> Path:
        return ensure_synthetic(self.results_dir / "data" / "finetune", self.num_finetune,
                                self.args.seed + FINETUNE_SEED_OFFSET, self.testbed["settings"]["tasks"])

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
        from ..similarity import run_similarity

        directory = self.results_dir / "similarity"
        if not (directory / "similarity_summary.json").is_file():
            run_similarity(SimilarityArgs(model=str(self.model_dir), data=str(self.finetune_data()),
                                          output_dir=str(directory), sample_fraction=self.calibration_fraction,
                                          seed=self.args.seed, batch_size=16, device=self.device, overwrite=True))
        return load_similarity_tables(directory)

    # --- plans and models
    def plan(self, strategy: str, ratio: float):
        from ..plan import Plan
        from ..selection import select_layers

        path = self.results_dir / "plans" / f"{_pc(ratio)}-{strategy}.json"
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
            plan = select_layers(self.similarities(), strategy, drop_ratio=ratio, seed=self.args.seed,
                                 tune_baselines=strategy in BASELINES_WITHOUT_TUNED)
        path.parent.mkdir(parents=True, exist_ok=True)
        plan.save(path)
        return plan

    def pruned(self, strategy: str, ratio: float) -> Path:
        from ..checkpoint import load_model
        from ..surgery import prune_and_save

        directory = self.results_dir / "models" / _pc(ratio) / strategy
        if not (directory / "plan.json").is_file():
            plan = self.plan(strategy, ratio)
            prune_and_save(load_model(str(self.model_dir)), plan, str(self.model_dir), directory, overwrite=True)
        return directory

    def finetuned(self, model: Path, name: str, plan_file: Path | None = None) -> Path:
        """The INTERLACE fine-tune (`train.run_training`, `InterlaceSFTTrainer`) of `model`'s tuned layers."""
        import torch

        from ..args import TrainArgs
        from ..train import run_training
        from ..trainer import InterlaceSFTConfig

        directory = self.results_dir / "finetuned" / name
        if (directory / "interlace_train.json").is_file():
            return directory
        train_args = TrainArgs(model=str(model), dataset=str(self.finetune_data()),
                               plan=str(plan_file) if plan_file else None)
        config = InterlaceSFTConfig(
            output_dir=str(directory), learning_rate=self.ft_lr, per_device_train_batch_size=self.args.finetune_batch_size,
            gradient_accumulation_steps=1, num_train_epochs=1.0, seed=self.args.seed, data_seed=self.args.seed,
            save_strategy="no", logging_steps=5, report_to="none", disable_tqdm=True,
            use_cpu=self.device == "cpu", bf16=bool(self.device.startswith("cuda") and torch.cuda.is_bf16_supported()),
            # the testbed was trained at its own image sizes; keep them (they are inside the paper's bounds anyway)
            min_pixels=32 * 32, max_pixels=128 * 128,
        )
        run_training(train_args, config)
        return directory

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
            return json.loads(path.read_text())
        start = time.perf_counter()
        result = compute()
        result["seconds"] = round(time.perf_counter() - start, 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, result)
        return result

    def _eval_row(self, model_dir: Path, method: str, ratio: float, finetuned: bool, plan=None) -> dict:
        result = evaluate_accuracy(model_dir, self.heldout, device=self.device)
        name = "Dense-FT" if method == "dense" and finetuned else METHOD_NAMES[method]
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
        finetune = not a.no_finetune
        work = [("dense", 0.0)] + [(s, r) for r in a.drop_ratios for s in a.strategies]
        rows: list[dict] = []
        bar = tqdm(total=len(work) * (2 if finetune else 1), desc="testbed compare", unit="row")
        for strategy, ratio in work:
            key = "dense" if strategy == "dense" else f"{_pc(ratio)}-{strategy}"
            bar.set_postfix_str(key)
            if strategy == "dense":
                model, plan = self.model_dir, None
            else:
                model = self.pruned(strategy, ratio)
                plan = self.plan(strategy, ratio)
            rows.append(self.row(key, lambda: self._eval_row(model, strategy, ratio, False, plan)))
            bar.update()
            if finetune:
                plan_file = self.dense_plan_file() if strategy == "dense" else None

                def tuned_row():
                    directory = self.finetuned(model, key, plan_file)
                    row = self._eval_row(directory, strategy, ratio, True, plan)
                    shutil.rmtree(directory, ignore_errors=True)  # the row is what matters; weights add up fast
                    return row

                rows.append(self.row(f"{key}-ft", tuned_row))
                bar.update()
        bar.close()
        speedups = self.bench()
        dense = rows[0]["accuracy"]
        counts = Counter(record["task"] for record in json.loads(self.heldout.read_text()))
        for row in rows:
            row["accuracy_stderr"] = accuracy_stderr(row["per_type"], counts)
            row["relative"] = row["accuracy"] / dense if dense > 0 else None
            row["ttft_speedup"] = 1.0 if row["strategy"] == "dense" else speedups[(row["drop_ratio"], row["strategy"])]
        results = {
            "format": RESULTS_FORMAT,
            "testbed": {k: self.testbed[k] for k in ("settings", "model", "accuracy", "chance")},
            "settings": {**dataclasses.asdict(a), "finetune_learning_rate": self.ft_lr,
                         "finetune_samples": self.num_finetune, "device": self.device},
            "rows": rows,
            "bench": {_pc(r): str(self.results_dir / f"bench-{_pc(r)}.json") for r in a.drop_ratios},
            "versions": package_versions("torch", "transformers", "trl"),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command_line("compare", a, always=("drop_ratios", "strategies")),
        }
        write_json_atomic(self.results_dir / "results.json", results)
        markdown = format_compare_table(results)
        (self.results_dir / "results.md").write_text(markdown + "\n")
        print(markdown)
        return results

    def bench(self) -> dict[tuple[float, str], float]:
        """TTFT of every pruned model against the dense one, measured interleaved in one run per drop ratio."""
        from ..benchmark.bench import run_bench

        speedups = {}
        for ratio in self.args.drop_ratios:
            path = self.results_dir / f"bench-{_pc(ratio)}.json"
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


def accuracy_stderr(per_type: dict[str, float], counts: dict[str, int]) -> float:
    """Binomial standard error of the mean over task types: sqrt(sum p(1-p)/n) / T."""
    variance = sum(p * (1 - p) / counts[kind] for kind, p in per_type.items() if counts.get(kind))
    return math.sqrt(variance) / len(per_type)


def command_line(command: str, args, always: tuple[str, ...] = ()) -> str:
    """The `interlace-hf testbed COMMAND ...` line for `args`: OUTPUT_DIR, the `always` flags, then every other flag
    whose value is not its default."""
    defaults = type(args)(output_dir="")
    words = ["interlace-hf", "testbed", command, args.output_dir]
    for f in dataclasses.fields(args):
        value = getattr(args, f.name)
        if f.name == "output_dir" or value is None or value is False:
            continue
        if f.name in always or value != getattr(defaults, f.name):
            words.append("--" + f.name.replace("_", "-"))
            if isinstance(value, list):
                words += map(str, value)
            elif value is not True:
                words.append(str(value))
    return " ".join(words)


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


def run_compare(args: TestbedCompareArgs) -> dict:
    return Comparison(args).run()
