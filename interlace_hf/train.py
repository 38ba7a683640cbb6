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

from .args import TrainArgs, read_recipe_file

logger = logging.getLogger(__name__)

RECIPE_FILE = "interlace_recipe.yaml"
TRAIN_INFO_FILE = "interlace_train.json"  # written last: its presence means the run finished


# What a trained model's provenance always records (with the values that ran), besides every `TrainArgs` field and
# every key the recipe or the command line set.
RECORDED_SFT_KEYS = (
    "output_dir", "learning_rate", "lr_scheduler_type", "warmup_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "weight_decay", "max_grad_norm", "num_train_epochs", "max_steps", "optim", "bf16",
    "fp16", "assistant_only_loss", "activation_checkpointing", "max_length", "tune_merger", "tune_lm_head",
    "max_pixels", "min_pixels", "seed",
)
# Keys that do not change what is trained: a rerun that differs only in these resumes the same run.
OPERATIONAL_KEYS = frozenset({
    "output_dir", "overwrite", "report_to", "run_name", "disable_tqdm", "resume_from_checkpoint", "use_cpu",
    "logging_steps", "logging_strategy", "logging_dir", "logging_first_step", "save_steps", "save_strategy",
    "save_total_limit", "save_only_model", "push_to_hub", "hub_model_id", "hub_strategy", "hub_private_repo",
    "hub_revision", "hub_always_push", "dataloader_num_workers", "dataloader_pin_memory",
    "dataloader_persistent_workers", "dataloader_prefetch_factor", "ddp_timeout",
})


@dataclasses.dataclass(frozen=True)
class RecipeSource:
    """Where a training run's settings came from: the recipe file (if any) and the keys it or the command line set."""

    path: str | None = None
    keys: tuple[str, ...] = ()


def _given_flags(argv: list[str], names: set[str]) -> list[str]:
    """Field names set on the command line (`--learning_rate 2e-5`, `--learning-rate=2e-5`, `--bf16`)."""
    given = []
    for token in argv:
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0].replace("-", "_")
            if name in names:
                given.append(name)
    return given


def _apply_recipe_conventions(recipe: dict, path: Path) -> dict:
    """TRL's recipe conventions: an `env:` block sets environment variables; TRL's argument names are aliases."""
    import os

    from .args import TRL_ALIASES

    recipe = dict(recipe)
    env = recipe.pop("env", None)
    if env is not None:
        if not isinstance(env, dict):
            raise ValueError(f"{path}: `env:` must be a mapping of environment variables to values.")
        for key, value in env.items():
            os.environ[str(key)] = str(value)
    for alias, name in TRL_ALIASES.items():
        if alias in recipe:
            if name in recipe:
                raise ValueError(f"{path}: both `{alias}` (TRL's name) and `{name}` are set; keep one.")
            recipe[name] = recipe.pop(alias)
    return recipe


def parse_train_args(argv: list[str] | None = None):
    """Parse `--config recipe.yaml` plus command-line overrides, with TRL's conventions (`trl.TrlParser`): an
    `env:` block, TRL's argument names as aliases (`model_name_or_path`, `dataset_name`, ...).

    Returns:
        (TrainArgs, InterlaceSFTConfig, RecipeSource): the source says which keys the recipe and the command line set,
        so that the provenance records them with the values that ran.
    """
    from transformers import HfArgumentParser

    from .args import TRL_ALIASES
    from .trainer import InterlaceSFTConfig

    class Parser(HfArgumentParser):
        def error(self, message):  # a ValueError the command prints, not argparse's exit
            raise ValueError(message)

    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    parser = Parser((TrainArgs, InterlaceSFTConfig), prog="interlace-hf train")
    parser.add_argument("--config", default=None, help="a YAML recipe (keys = these flags' names)")
    allowed = {f.name for cls in (TrainArgs, InterlaceSFTConfig) for f in dataclasses.fields(cls)}
    recipe_keys: list[str] = []
    if known.config:
        path = Path(known.config)
        if not path.is_file():
            raise ValueError(f"--config {known.config!r} does not exist; pass a recipe YAML (see recipes/).")
        recipe = _apply_recipe_conventions(read_recipe_file(path), path)
        unknown = sorted(set(recipe) - allowed)
        if unknown:
            raise ValueError(
                f"{path}: unknown recipe keys {unknown}; keys are the argument names of `interlace-hf train --help` "
                "(model, dataset, plan, learning_rate, ...)."
            )
        # Strings go through argparse's type conversion (PyYAML reads 1e-5 as a string); others are used as is.
        parser.set_defaults(**recipe)
        recipe_keys = list(recipe)
    try:
        train_args, sft_config = parser.parse_args_into_dataclasses(args=rest)[:2]
    except ValueError as err:
        if "not used by the HfArgumentParser" in str(err):
            import difflib

            import ast

            try:
                unused = ast.literal_eval(str(err).split(": ", 1)[1])
            except (ValueError, SyntaxError, IndexError):
                unused = rest
            flags = [t for t in unused if isinstance(t, str) and t.startswith("--")]
            hints = [f"{f} (did you mean --{m[0]}?)" if (m := difflib.get_close_matches(
                f[2:].split("=")[0].replace("-", "_"), sorted(allowed), n=1)) else f for f in flags]
            raise ValueError(f"unknown arguments {', '.join(hints) or unused}; see `interlace-hf train --help`.") from None
        from_recipe = [k for k in recipe_keys if f"--{k}" in str(err) or f"--{k.replace('_', '-')}" in str(err)]
        if known.config and from_recipe:
            raise ValueError(f"{known.config}: `{from_recipe[0]}`: {err}") from None
        raise
    names = allowed | set(TRL_ALIASES)
    given = [TRL_ALIASES.get(k, k) for k in _given_flags(rest, names)]
    keys = tuple(dict.fromkeys([*recipe_keys, *given]))
    return train_args, sft_config, RecipeSource(known.config, keys)


def _plain(value):
    """A YAML-safe form of an argument value (enums by value, tuples as lists)."""
    import enum

    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def effective_recipe(train_args: TrainArgs, sft_config, source: RecipeSource | None = None) -> dict:
    """The values this run uses, as a recipe: every `TrainArgs` field, the keys that matter to the result, and every
    key the recipe or the command line set. Secrets (any `*token*` key) are never included."""
    source = source or RecipeSource()
    values = {f.name: getattr(train_args, f.name) for f in dataclasses.fields(train_args)}
    for key in (*RECORDED_SFT_KEYS, *source.keys):
        if key not in values and hasattr(sft_config, key):
            values[key] = getattr(sft_config, key)
    # `overwrite` is an instruction for this invocation, not a setting: a rerun of the recipe must not replace the run.
    return {k: _plain(v) for k, v in values.items() if "token" not in k and k != "overwrite"}


def recipe_text(recipe: dict, source: RecipeSource | None = None) -> str:
    import yaml

    origin = f"the recipe {source.path} with the command line's overrides" if source and source.path else \
        "the arguments given"
    return (f"# interlace-hf train: the values this model was trained with ({origin}).\n"
            f"# Rerun: interlace-hf train --config {RECIPE_FILE}\n" + yaml.safe_dump(recipe, sort_keys=False))


def training_settings(recipe: dict) -> dict:
    """What must match for a rerun to resume the same run (the recipe without operational keys)."""
    return {k: v for k, v in recipe.items() if k not in OPERATIONAL_KEYS}


def _inputs_inside(output_dir: Path, train_args: TrainArgs) -> list[str]:
    """The local inputs (model, plan, similarities, dataset) that live inside `output_dir`."""
    root = output_dir.resolve()
    inside = []
    for name in ("model", "plan", "similarities", "dataset"):
        value = getattr(train_args, name)
        if value and Path(value).expanduser().exists():
            path = Path(value).expanduser().resolve()
            if path == root or root in path.parents:
                inside.append(f"--{name} {value}")
    return inside


def check_train_output_dir(output_dir: Path, recipe: dict, overwrite: bool, train_args: TrainArgs | None = None) -> str:
    """Decide what to do with `output_dir`, before anything expensive: `"fresh"`, `"resume"` or `"done"`.

    An empty or missing directory is fresh. One holding this run's own `interlace_recipe.yaml` with the same settings
    resumes (or is done, when `interlace_train.json`, written last, is there). Anything else is refused unless
    `overwrite`, which empties it.
    """
    import yaml

    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"--output_dir {str(output_dir)!r} is a file; pass a directory path.")
    if not output_dir.is_dir() or not any(output_dir.iterdir()):
        return "fresh"
    if overwrite:
        inside = _inputs_inside(output_dir, train_args) if train_args is not None else []
        if inside:
            raise ValueError(f"--overwrite would delete {', '.join(inside)}, which is inside --output_dir "
                             f"{str(output_dir)!r}; choose another --output_dir.")
        return "overwrite"
    recorded = output_dir / RECIPE_FILE
    previous = None
    if recorded.is_file():
        try:
            previous = yaml.safe_load(recorded.read_text())
        except yaml.YAMLError:
            previous = None
    if not isinstance(previous, dict):
        raise ValueError(
            f"--output_dir {str(output_dir)!r} is not empty and holds no interlace-hf training run; choose a new "
            "directory, or pass --overwrite to replace its contents."
        )
    now = training_settings(yaml.safe_load(yaml.safe_dump(recipe, sort_keys=False)))
    before = training_settings(previous)
    changed = sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k))
    if changed:
        details = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:6])
        raise ValueError(
            f"--output_dir {str(output_dir)!r} holds a training run with other settings ({details}); pass the same "
            "settings to resume it, a new --output_dir, or --overwrite to replace it."
        )
    return "done" if (output_dir / TRAIN_INFO_FILE).is_file() else "resume"


MODEL_INIT_KEYS = ("dtype", "torch_dtype", "attn_implementation")


def model_init_options(train_args: TrainArgs, model_init_kwargs) -> dict:
    """TRL's `model_init_kwargs` (`dtype`, `attn_implementation`), applied when interlace-hf loads the model (TRL
    ignores them, with a warning, for a model it is given); a `dtype` there must agree with `--dtype`."""
    kwargs = dict(model_init_kwargs or {})
    unknown = sorted(set(kwargs) - set(MODEL_INIT_KEYS))
    if unknown:
        raise ValueError(f"model_init_kwargs: {unknown} are not supported here; interlace-hf loads the model with "
                         f"{list(MODEL_INIT_KEYS)} (and --dtype).")
    dtype = kwargs.pop("dtype", None) or kwargs.pop("torch_dtype", None)
    if dtype is not None:
        dtype = str(dtype).removeprefix("torch.")
        if train_args.dtype not in ("auto", dtype):
            raise ValueError(f"model_init_kwargs dtype {dtype!r} disagrees with --dtype {train_args.dtype!r}; set one.")
        train_args.dtype = dtype
        train_args.validate()
    return {"attn_implementation": kwargs.get("attn_implementation")}


def resolve_teacher(train_args: TrainArgs) -> str | None:
    """The dense model to distil from: `--teacher PATH_OR_ID`, or `base` for the base_model the pruned checkpoint
    records in its config. Checked (a Qwen3-VL, not itself pruned) before any weight is loaded."""
    from .checkpoint import read_model_config

    if not train_args.teacher:
        return None
    teacher = train_args.teacher
    if teacher == "base":
        block = read_model_config(train_args.model, train_args.revision).get("interlace") or {}
        teacher = block.get("base_model") or (train_args.model if not block else None)
        if not teacher:
            raise ValueError(f"--teacher base: {train_args.model!r} records no base_model; pass the dense model's "
                             "directory or Hub id as --teacher.")
    if read_model_config(teacher).get("interlace"):
        raise ValueError(f"--teacher {teacher!r} is itself a pruned checkpoint; distil from the dense model it was "
                         "pruned from.")
    return teacher


def peft_config_from_args(train_args: TrainArgs):
    """The `peft.LoraConfig` of `--use_peft --lora_r ...` (None without `--use_peft`); the trainer restricts it to the
    plan's tuned layers."""
    if not train_args.use_peft:
        return None
    from .adapters import lora_config

    return lora_config(r=train_args.lora_r, lora_alpha=train_args.lora_alpha, lora_dropout=train_args.lora_dropout,
                       target_modules=train_args.lora_target_modules)


def load_for_training(train_args: TrainArgs, seed: int, attn_implementation: str | None = None):
    """The pruned model and its plan: a pruned checkpoint as is, or a base model pruned in memory first."""
    from .checkpoint import load_model
    from .checkpoint import read_model_config, resolve_checkpoint
    from .plan import Plan
    from .planning import plan_from_args
    from .checkpoint import current_kept_layers
    from .surgery import prune_model

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
    model = load_model(train_args.model, revision=train_args.revision, dtype=train_args.dtype,
                       attn_implementation=attn_implementation)
    if current_kept_layers(model.config) != list(plan.kept_layers):
        prune_model(model, plan, base_model=train_args.model)
    return model, plan


def build_train_dataset(train_args: TrainArgs):
    """A `datasets.Dataset` with `images` (list of images) and `messages` (the conversation) for TRL's collator.

    From a dataset (FineVision-style rows), the images are not decoded or re-encoded here: the rows are mapped to
    messages (an on-disk, memory-mapped dataset) and each image is decoded when the collator reads its batch.
    """
    import datasets

    from .data import DatasetRecords, load_records

    records, name = load_records(train_args.dataset, split=train_args.dataset_split, subset=train_args.dataset_subset,
                                 flag="--dataset")
    if isinstance(records, DatasetRecords):
        dataset = _dataset_from_rows(records, train_args.max_train_samples)
    else:
        if train_args.max_train_samples is not None:
            records = records[: train_args.max_train_samples]
        kept = [(messages, record) for record in records if (messages := _messages(record)) is not None]
        features = datasets.Features(
            {"images": datasets.List(datasets.Image()),
             "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})}
        )
        dataset = datasets.Dataset.from_dict(
            {"images": [[str(i) if isinstance(i, (str, Path)) else i for i in r.images] for _, r in kept],
             "messages": [m for m, _ in kept]}, features=features)
    if len(dataset) == 0:
        raise ValueError(f"--dataset {train_args.dataset!r} has no record with an assistant answer to train on.")
    return dataset, name


def _messages(record) -> list[dict] | None:
    """The record's conversation as chat messages; None when it ends without an answer (nothing to learn)."""
    turns = []
    for user, assistant in record.turns:
        turns.append({"role": "user", "content": user})
        if assistant is not None:
            turns.append({"role": "assistant", "content": assistant})
    return turns if turns and turns[-1]["role"] == "assistant" else None


def _dataset_from_rows(records, limit: int | None):
    import datasets

    from .data import finevision_record

    dataset = records.dataset
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    columns = [c for c in dataset.column_names if c != "images"]
    source = records.source  # what the mapped function holds (datasets hashes it for its cache): a string, no dataset
    dataset = dataset.map(lambda row: {"messages": _messages(finevision_record(row, 0, source)) or []},
                          remove_columns=columns, desc="messages")
    dataset = dataset.filter(lambda messages: len(messages) > 0, input_columns="messages", desc="answers")
    return dataset.cast_column("images", datasets.List(datasets.Image()))  # decoded when a batch is read


def sample_lengths(dataset, processor, *, min_pixels: int, max_pixels: int, batch_size: int = 256) -> list[int]:
    """The number of tokens each training sample becomes (chat template + image tokens at the training resolution),
    counted without processing any pixels: the text through the tokenizer, each image from its size alone."""
    import datasets
    from trl.data_utils import prepare_multimodal_messages

    from .data import image_sizes
    from .processing import prompt_lengths

    raw = dataset.cast_column("images", datasets.List(datasets.Image(decode=False)))
    lengths = []
    for start in range(0, len(raw), batch_size):
        batch = raw[start:start + batch_size]
        texts, sizes = [], []
        for messages, images in zip(batch["messages"], batch["images"]):
            texts.append(processor.apply_chat_template(prepare_multimodal_messages(messages, images=images),
                                                       tokenize=False))
            # each file checked whole: a truncated image stops the run before the model loads
            sizes.append(image_sizes(images))
        lengths += prompt_lengths(processor, texts, sizes, min_pixels=min_pixels, max_pixels=max_pixels,
                                  batch_size=batch_size)
    return lengths


def drop_long_samples(dataset, processor, max_length: int | None, *, min_pixels: int, max_pixels: int):
    """Drop the samples over `max_length` tokens (never truncate: a cut through image tokens breaks the sample).

    Returns:
        (dataset, number dropped, longest length seen)
    """
    if max_length is None:
        return dataset, 0, None
    lengths = sample_lengths(dataset, processor, min_pixels=min_pixels, max_pixels=max_pixels)
    keep = [i for i, n in enumerate(lengths) if n <= max_length]
    dropped = len(lengths) - len(keep)
    if dropped:
        logger.warning("dropped %d of %d training samples longer than max_length=%d tokens (longest: %d)", dropped,
                       len(lengths), max_length, max(lengths))
    if not keep:
        raise ValueError(
            f"every training sample is longer than --max_length {max_length} tokens (shortest: {min(lengths)}); raise "
            "--max_length, or lower --max_pixels (fewer image tokens)."
        )
    return (dataset.select(keep) if dropped else dataset), dropped, max(lengths)


def _training_processor(processor, min_pixels: int, max_pixels: int):
    """A copy of the processor at the training resolution (for the collator only; the saved files stay the base's)."""
    import copy

    processor = copy.deepcopy(processor)
    processor.image_processor.size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    return processor


def _move_into(staging: Path, output_dir: Path, last: str) -> None:
    """Move every file of `staging` into `output_dir` (same filesystem: each a rename), `last` at the end."""
    import os
    import shutil

    names = sorted(p.name for p in staging.iterdir() if p.name != last) + [last]
    for name in names:
        target = output_dir / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(staging / name, target)
    staging.rmdir()


def run_training(train_args: TrainArgs, sft_config, source: RecipeSource | None = None):
    """Load (and prune if needed), freeze per the plan, train, and write the model with its plan, the base's
    processor files, the card and the recipe with the values that ran.

    The output directory is checked first: a new or empty one starts a run; one holding this run's own recipe with
    the same settings resumes from its last checkpoint (or is left as it is when it finished); anything else is
    refused unless `overwrite`. The final model is written to a staging sibling and moved in, `interlace_train.json`
    last: its presence means the run finished.

    Returns:
        the trainer, or None when `output_dir` already held this run, finished.
    """
    import shutil

    from transformers.trainer_utils import get_last_checkpoint

    from .checkpoint import resolve_checkpoint
    from .processing import load_processor
    from .trainer import InterlaceSFTTrainer

    train_args.validate()
    init = model_init_options(train_args, sft_config.model_init_kwargs)
    recipe = effective_recipe(train_args, sft_config, source)
    sft_config.model_init_kwargs = None  # applied at load (above); TRL would only warn that it ignores them
    output_dir = Path(sft_config.output_dir).expanduser()
    state = check_train_output_dir(output_dir, recipe, train_args.overwrite, train_args)
    if state == "done":
        logger.warning("%s already holds this training run, finished; nothing to do (pass --overwrite to retrain).",
                       output_dir)
        return None
    dataset, dataset_name = build_train_dataset(train_args)  # data errors before the model is loaded
    processor = load_processor(train_args.model, revision=train_args.revision)
    processor_source = resolve_checkpoint(train_args.model, train_args.revision, files_only=True)
    dataset, _, _ = drop_long_samples(dataset, processor, sft_config.max_length, min_pixels=sft_config.min_pixels,
                                      max_pixels=sft_config.max_pixels)
    teacher_path = resolve_teacher(train_args)  # checked before any weight is loaded
    model, plan = load_for_training(train_args, sft_config.seed, init["attn_implementation"])
    teacher = None
    if teacher_path is not None:
        from .checkpoint import load_model

        teacher = load_model(teacher_path, dtype=str(model.dtype).removeprefix("torch."),
                             attn_implementation=init["attn_implementation"])
    text = recipe_text(recipe, source)
    with sft_config.main_process_first(desc="output directory", local=False):
        if sft_config.should_save:
            if state == "overwrite":
                shutil.rmtree(output_dir)
            output_dir.mkdir(parents=True, exist_ok=True)
            (output_dir / RECIPE_FILE).write_text(text)  # marks the directory as this run's, for a resume
    trainer = InterlaceSFTTrainer(model, plan, args=sft_config, train_dataset=dataset,
                                  processing_class=_training_processor(processor, sft_config.min_pixels,
                                                                       sft_config.max_pixels),
                                  processor_source=processor_source, provenance={RECIPE_FILE: text},
                                  teacher_model=teacher, peft_config=peft_config_from_args(train_args))
    resume = sft_config.resume_from_checkpoint
    if resume is None and state == "resume":
        resume = get_last_checkpoint(str(output_dir))  # an interrupted run continues where it stopped
        if resume:
            logger.warning("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=resume)
    staging = output_dir.parent / f".{output_dir.name}.final-partial"
    if sft_config.should_save and staging.exists():
        shutil.rmtree(staging)  # left by a run killed while saving
    # Every rank (DeepSpeed gathers the shards); LoRA adapters are merged. The upload is push_final's, below.
    if trainer.uses_peft:
        trainer.save_merged(str(staging))
    else:
        trainer.save_model(str(staging), _internal_call=True)
    from .adapters import ADAPTER_DIR, DEFAULT_LORA_TARGETS

    if train_args.save_adapter:
        trainer.save_adapter(staging / ADAPTER_DIR)
    if sft_config.should_save:
        info = dataclasses.asdict(train_args)
        from .trainer import count_parameters

        info["trainable_parameters"] = count_parameters(trainer.model)[0]  # (under LoRA: the adapters')
        if train_args.use_peft:  # what the card says of the adapters
            info["lora"] = {"r": train_args.lora_r, "alpha": train_args.lora_alpha, "dropout": train_args.lora_dropout,
                            "target_modules": list(train_args.lora_target_modules or DEFAULT_LORA_TARGETS),
                            "merged": True, "adapter": ADAPTER_DIR if train_args.save_adapter else None}
        if teacher is not None:  # what the card says of the distillation
            info["distillation"] = {"teacher": teacher_path, "kl_weight": sft_config.distill_alpha,
                                    "temperature": sft_config.distill_temperature,
                                    "hidden_weight": sft_config.distill_hidden}
        (staging / TRAIN_INFO_FILE).write_text(json.dumps(info, indent=2))
        trainer.write_card(staging, model_name=sft_config.hub_model_id or output_dir.name,
                           dataset_name=dataset_name)
        _move_into(staging, output_dir, last=TRAIN_INFO_FILE)
    trainer.accelerator.wait_for_everyone()
    if sft_config.push_to_hub:
        trainer.push_final()
    return trainer


if __name__ == "__main__":
    # `accelerate launch -m interlace_hf.train` runs the command layer's entry point (it prints; this module does not).
    import runpy

    runpy.run_module("interlace_hf.commands.train", run_name="__main__", alter_sys=True)
