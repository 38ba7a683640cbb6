"""`interlace-hf testbed train OUT`: train the testbed model from scratch on the synthetic set (resumable from its last
checkpoint), then its held-out accuracy next to the majority-answer baseline, in `OUT/testbed.json`."""

from __future__ import annotations

import json
import logging
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from ..args import TestbedTrainArgs
from ..utils.fileio import atomic_output_dir, check_output_dir, write_json_atomic
from ..version import package_versions
from .model import (
    HELDOUT_SEED_OFFSET,
    RESULTS_FORMAT,
    SHAPE_IMAGE_SIZE,
    SIZES,
    TESTBED_FILE,
    TRAIN_SEED_OFFSET,
    build_testbed_init,
    command_line,
    ensure_synthetic,
    evaluate_accuracy,
    majority_baseline,
    seen_in_training,
    unseen_accuracy,
)

logger = logging.getLogger(__name__)


def resolved_train_settings(args: TestbedTrainArgs) -> dict:
    size = SIZES[args.size]
    steps = args.steps or size.steps
    batch_size = args.batch_size or size.batch_size
    return {"size": args.size, "seed": args.seed, "steps": steps, "batch_size": batch_size,
            "learning_rate": args.learning_rate or size.learning_rate, "tasks": list(args.tasks or size.tasks),
            # one pass over fresh samples, as in pretraining: every training question is seen once
            "num_train": steps * batch_size, "num_eval": args.num_eval or size.num_eval,
            "unseen_heldout": size.unseen_heldout, "image_size": args.image_size or size.image_size}


def _same_settings(made: dict | None, settings: dict) -> bool:
    """Whether an earlier training used `settings` (one made before `image_size` was a setting drew at
    `SHAPE_IMAGE_SIZE`)."""
    return made is not None and {"image_size": SHAPE_IMAGE_SIZE, **made} == settings


def train_testbed(args: TestbedTrainArgs) -> dict:
    """Train the testbed model from scratch (resumable) and report its held-out accuracy.

    Returns:
        the report also written to `OUTPUT_DIR/testbed.json`.
    """
    args.validate()
    out = Path(args.output_dir)
    settings = resolved_train_settings(args)
    previous = _check_output_dir(args, out, settings)
    if previous is not None:
        return previous
    from ..utils.runtime import resolve_device

    device = resolve_device(args.device)
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    logger.info("[data] %d training and %d held-out questions", settings["num_train"], settings["num_eval"])
    tasks = settings["tasks"]
    image_size = settings["image_size"]
    train = ensure_synthetic(out / "data" / "train", settings["num_train"], args.seed + TRAIN_SEED_OFFSET, tasks,
                             image_size=image_size)
    heldout = ensure_synthetic(out / "data" / "heldout", settings["num_eval"], args.seed + HELDOUT_SEED_OFFSET, tasks,
                               exclude=train if settings["unseen_heldout"] else None, image_size=image_size)
    data_seconds = time.perf_counter() - start

    logger.info("[train] %s: %d steps x %d on %s", args.size, settings["steps"], settings["batch_size"], device)
    start = time.perf_counter()
    model_dir = out / "model"
    log_history = _train_model(args, settings, train, out / "checkpoints", model_dir, device)
    # The trainer's own figure, so a rerun that finds the model already trained reports the training, not the check.
    train_seconds = next((e["train_runtime"] for e in log_history if "train_runtime" in e), time.perf_counter() - start)

    logger.info("[eval] held-out accuracy")
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
    write_json_atomic(out / TESTBED_FILE, report)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return report


def _check_output_dir(args: TestbedTrainArgs, out: Path, settings: dict) -> dict | None:
    """The earlier report when OUTPUT_DIR already holds this training (nothing to do); refuses other settings and
    foreign directories; with --overwrite, removes an earlier testbed."""
    report_path = out / TESTBED_FILE
    previous = json.loads(report_path.read_text()) if report_path.is_file() else None
    if previous is not None and not args.overwrite:
        if not _same_settings(previous.get("settings"), settings):
            raise ValueError(f"{out} holds a testbed trained with {previous.get('settings')}; pass the same settings, "
                             "--overwrite to retrain, or a new OUTPUT_DIR.")
        logger.info("%s: already trained (held-out accuracy %.3f); nothing to do", out,
                    previous["accuracy"]["accuracy"])
        return previous
    if args.overwrite and out.exists():
        check_output_dir(out, overwrite=True, flag="OUTPUT_DIR")
        shutil.rmtree(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"OUTPUT_DIR {str(out)!r} is a file; pass a directory path.")
    if out.is_dir() and any(out.iterdir()) and not (out / "data").is_dir():
        raise ValueError(f"OUTPUT_DIR {str(out)!r} is not empty and is not a testbed; choose a new directory or pass "
                         "--overwrite.")
    return None


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
        if not _same_settings({k: made[k] for k in settings if k in made}, settings):
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
        logger.info("[train] resuming from %s", resume)
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
