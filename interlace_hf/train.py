"""`interlace-hf train` / `accelerate launch -m interlace_hf.train`: the selective fine-tune from a YAML recipe.

    interlace-hf train --config recipes/tiny.yaml [--learning-rate 2e-5 ...]
    accelerate launch --config_file recipes/accelerate/zero3.yaml -m interlace_hf.train --config recipes/X.yaml

A recipe's keys are the fields of `args.TrainArgs` (model, plan, data) and of `trainer.InterlaceSFTConfig` (TRL's
`SFTConfig` with the paper's defaults); flags on the command line override the recipe. Unknown keys are an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from .args import TrainArgs

logger = logging.getLogger(__name__)

RECIPE_FILE = "interlace_recipe.yaml"


def parse_train_args(argv: list[str] | None = None):
    """Parse `--config recipe.yaml` plus command-line overrides into (TrainArgs, InterlaceSFTConfig, recipe text)."""
    import yaml
    from transformers import HfArgumentParser

    from .trainer import InterlaceSFTConfig

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    parser = HfArgumentParser((TrainArgs, InterlaceSFTConfig), prog="interlace-hf train")
    parser.add_argument("--config", default=None, help="a YAML recipe (keys = these flags' names)")
    recipe_text = None
    if known.config:
        path = Path(known.config)
        if not path.is_file():
            raise ValueError(f"--config {known.config!r} does not exist; pass a recipe YAML (see recipes/).")
        recipe_text = path.read_text()
        recipe = yaml.safe_load(recipe_text) or {}
        if not isinstance(recipe, dict):
            raise ValueError(f"{path}: a recipe is a mapping of argument names to values.")
        allowed = {f.name for cls in (TrainArgs, InterlaceSFTConfig) for f in dataclasses.fields(cls)}
        unknown = sorted(set(recipe) - allowed)
        if unknown:
            raise ValueError(
                f"{path}: unknown recipe keys {unknown}; keys are the argument names of `interlace-hf train --help` "
                "(model, dataset, plan, learning_rate, ...)."
            )
        # Strings go through argparse's type conversion (PyYAML reads 1e-5 as a string); others are used as is.
        parser.set_defaults(**recipe)
    train_args, sft_config = parser.parse_args_into_dataclasses(args=rest)[:2]
    return train_args, sft_config, recipe_text


def load_for_training(train_args: TrainArgs, seed: int):
    """The pruned model and its plan: a pruned checkpoint as is, or a base model pruned in memory first."""
    from .export import load_model
    from .hub import read_model_config, resolve_checkpoint
    from .plan import Plan
    from .selection import plan_from_args
    from .surgery import current_kept_layers, prune_model

    config = read_model_config(train_args.model, train_args.revision)
    pruned = bool(config.get("interlace"))
    plan = Plan.load(train_args.plan) if train_args.plan else None
    if plan is None and pruned:
        local = resolve_checkpoint(train_args.model, train_args.revision, files_only=False)
        if not (local / "plan.json").is_file():
            raise ValueError(f"{train_args.model!r} is pruned but has no plan.json; pass --plan plan.json.")
        plan = Plan.load(local / "plan.json")
    if plan is None and train_args.strategy is None:
        raise ValueError(
            f"{train_args.model!r} is a dense model: pass --plan plan.json, or --strategy S --drop-ratio R "
            "--similarities DIR, to prune it before training."
        )
    if plan is None:
        depth = config["text_config"]["num_hidden_layers"]
        plan, _ = plan_from_args(train_args.selection_args(seed), num_layers=depth)
    model = load_model(train_args.model, revision=train_args.revision)
    if current_kept_layers(model.config) != list(plan.kept_layers):
        prune_model(model, plan, base_model=train_args.model)
    return model, plan


def build_train_dataset(train_args: TrainArgs):
    """A `datasets.Dataset` with `images` (list of images) and `messages` (the conversation) for TRL's collator."""
    import datasets

    from .data import load_records

    records, name = load_records(train_args.dataset, split=train_args.dataset_split, subset=train_args.dataset_subset)
    if train_args.max_train_samples is not None:
        records = records[: train_args.max_train_samples]
    messages, images = [], []
    for record in records:
        turns = []
        for user, assistant in record.turns:
            turns.append({"role": "user", "content": user})
            if assistant is not None:
                turns.append({"role": "assistant", "content": assistant})
        if turns[-1]["role"] != "assistant":
            continue  # nothing to learn from a record without an answer
        messages.append(turns)
        images.append([str(i) if isinstance(i, (str, Path)) else i for i in record.images])
    if not messages:
        raise ValueError(f"--dataset {train_args.dataset!r} has no record with an assistant answer to train on.")
    features = datasets.Features(
        {"images": datasets.List(datasets.Image()),
         "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})}
    )
    return datasets.Dataset.from_dict({"images": images, "messages": messages}, features=features), name


def run_training(train_args: TrainArgs, sft_config, recipe_text: str | None = None):
    """Load (and prune if needed), freeze per the plan, train, save the model, plan, processor, card and recipe."""
    from transformers.trainer_utils import get_last_checkpoint

    from .processing import load_processor
    from .trainer import InterlaceSFTTrainer

    train_args.validate()
    dataset, dataset_name = build_train_dataset(train_args)  # data errors before the model is loaded
    model, plan = load_for_training(train_args, sft_config.seed)
    processor = load_processor(train_args.model, revision=train_args.revision)
    processor.image_processor.size = {"shortest_edge": sft_config.min_pixels, "longest_edge": sft_config.max_pixels}
    trainer = InterlaceSFTTrainer(model, plan, args=sft_config, train_dataset=dataset, processing_class=processor)
    resume = sft_config.resume_from_checkpoint
    if resume is None and Path(sft_config.output_dir).is_dir():
        resume = get_last_checkpoint(sft_config.output_dir)  # an interrupted run continues where it stopped
        if resume:
            logger.warning("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(sft_config.output_dir)
    if trainer.is_world_process_zero():
        processor.save_pretrained(sft_config.output_dir)
        if recipe_text is not None:
            Path(sft_config.output_dir, RECIPE_FILE).write_text(recipe_text)
        Path(sft_config.output_dir, "interlace_train.json").write_text(
            json.dumps({k: v for k, v in dataclasses.asdict(train_args).items()}, indent=2)
        )
        trainer.create_model_card(dataset_name=dataset_name)
    return trainer


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        train_args, sft_config, recipe_text = parse_train_args(argv)
        trainer = run_training(train_args, sft_config, recipe_text)
    except ValueError as err:
        print(f"interlace-hf train: error: {err}", file=sys.stderr)
        return 2
    state = trainer.state
    print(f"trained {state.global_step} steps; checkpoint in {sft_config.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
