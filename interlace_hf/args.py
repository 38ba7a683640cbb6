"""Arguments of every stage: one dataclass each, whose fields are the CLI flags, the YAML recipe keys and the
Python keyword arguments (`output_dir` <-> `--output-dir` <-> `output_dir:`). Pure: no torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _flags(name: str) -> list[str]:
    """Both spellings of a field's flag, `--drop-ratio` and `--drop_ratio` (HfArgumentParser, and so TRL and
    `interlace-hf train`, accept both too): one convention for every command."""
    return [_flag(name)] + ([f"--{name}"] if "_" in name else [])


def read_recipe_file(path) -> dict:
    """A YAML recipe as a mapping; a syntax error names the file, the line and the column."""
    from pathlib import Path

    import yaml

    path = Path(path)
    try:
        recipe = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{path}: not valid YAML{where}: {problem}.") from None
    if recipe is None:
        return {}
    if not isinstance(recipe, dict):
        raise ValueError(f"{path}: a recipe is a mapping of argument names to values.")
    return recipe


_REPO_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")


def validate_repo_id(repo_id: str, flag: str) -> None:
    """A Hub model repo id, `namespace/name`, by the Hub's rules (letters, digits, `-`, `_`, `.`; no `--` or `..`;
    not starting or ending with `-` or `.`; at most 96 characters a part). Checked before anything runs."""
    parts = str(repo_id).split("/")
    bad = (len(parts) != 2 or not all(_REPO_PART.fullmatch(part) for part in parts)
           or "--" in repo_id or ".." in repo_id or repo_id.endswith(".git"))
    if bad:
        raise ValueError(f"{flag} {repo_id!r} is not a valid Hub repo id: use namespace/name with letters, digits, "
                         "'-', '_' or '.' (no '--' or '..', not starting or ending with '-' or '.'), e.g. "
                         "my-org/Interlace-Qwen3-VL-8B-25pc.")


@dataclass
class TinyArgs:
    """`interlace-hf tiny`: write the embedded default, a tiny randomly initialised Qwen3-VL with its processor."""

    output_dir: str = field(metadata={"positional": True, "help": "directory to write the tiny model to"})
    num_layers: int = field(default=12, metadata={"help": "number of text decoder layers (>= 4)"})
    seed: int = field(default=0, metadata={"help": "random seed; the same seed gives the same files"})
    overwrite: bool = field(default=False, metadata={"help": "replace a non-empty OUTPUT_DIR"})


STRATEGY_CHOICES = ["interlace", "interlace_oa", "interlace_tn", "random", "consecutive", "shortgpt", "angular", "sleb"]


@dataclass(kw_only=True)
class SelectionArgs:
    """How to choose the layers (step 2). Shared by `interlace-hf plan` and `interlace-hf prune`."""

    similarities: str | None = field(default=None, metadata={"help": "directory written by `interlace-hf similarity`"})
    hs_pack1_path: str | None = field(default=None, metadata={"help": "pack-1 similarity file (instead of a directory)"})
    hs_pack2_path: str | None = field(default=None, metadata={"help": "pack-2 similarity file"})
    hs_pack3_path: str | None = field(default=None, metadata={"help": "pack-3 similarity file"})
    strategy: str | None = field(default=None, metadata={"choices": STRATEGY_CHOICES, "help": "selection strategy"})
    drop_ratio: float | None = field(default=None, metadata={"help": "fraction of layers to drop, floor(L * r)"})
    num_drop: int | None = field(default=None, metadata={"help": "number of layers to drop (instead of a ratio)"})
    seed: int = field(default=42, metadata={"help": "seed (random strategy, SLEB sample)"})
    protect: str | None = field(default=None, metadata={"help": "layers never dropped, e.g. 0,1"})
    num_layers: int | None = field(default=None, metadata={"help": "depth of the model (for the paper's similarity files)"})
    tune_baselines: bool = field(default=False, metadata={"help": "shortgpt/angular/sleb: tune the layer after each drop"})
    data: str | None = field(default=None, metadata={"help": "sleb: calibration data (.json, dataset dir or Hub id)"})
    sample_fraction: float = field(default=0.1, metadata={"help": "sleb: fraction of the calibration records"})
    calibration_samples: int | None = field(default=128, metadata={
        "help": "sleb: at most this many of the sampled records (SLEB's 128; each of its ~L^2/2 evaluations runs "
                "the model on all of them); 0: no cap"})
    sleb_max_pixels: int | None = field(default=448 * 448, metadata={
        "help": "sleb: calibration images are resized to at most this many pixels (each of SLEB's ~L^2/2 evaluations "
                "runs them all; 0: the processor's own limit)"})
    device: str = field(default="auto", metadata={"help": "sleb: device of the calibration (auto, cpu, cuda, cuda:N)"})

    @property
    def pack_paths(self) -> dict[int, str]:
        paths = {1: self.hs_pack1_path, 2: self.hs_pack2_path, 3: self.hs_pack3_path}
        return {k: v for k, v in paths.items() if v}

    def selects(self) -> bool:
        return self.strategy is not None

    def validate_selection(self, model: str | None = None) -> None:
        if self.strategy is None:
            raise ValueError(f"--strategy is required: one of {', '.join(STRATEGY_CHOICES)}.")
        if self.strategy not in STRATEGY_CHOICES:
            raise ValueError(f"--strategy must be one of {', '.join(STRATEGY_CHOICES)}, got {self.strategy!r}.")
        if (self.drop_ratio is None) == (self.num_drop is None):
            raise ValueError("pass exactly one of --drop-ratio R (e.g. 0.25) or --num-drop N.")
        if self.similarities and self.pack_paths:
            raise ValueError("pass either --similarities DIR or --hs-pack{1,2,3}-path files, not both.")
        if self.strategy == "sleb":
            if not (model and self.data):
                raise ValueError("--strategy sleb removes layers by calibration loss: it needs --model M and --data D.")
            if self.calibration_samples is not None and self.calibration_samples < 0:
                raise ValueError(f"--calibration-samples must be >= 0 (0: no cap), got {self.calibration_samples}.")
            if self.sleb_max_pixels and self.sleb_max_pixels < 32 * 32:
                raise ValueError(f"--sleb-max-pixels must be at least {32 * 32} (one 32x32 merged patch) or 0 (the "
                                 f"processor's limit), got {self.sleb_max_pixels}.")
        elif self.strategy != "random" and not (self.similarities or self.pack_paths):
            raise ValueError(
                f"--strategy {self.strategy} needs similarity scores: pass --similarities DIR (from "
                "`interlace-hf similarity`) or --hs-pack1-path/--hs-pack2-path/--hs-pack3-path."
            )


@dataclass(kw_only=True)
class PlanArgs(SelectionArgs):
    """`interlace-hf plan`: choose which layers to drop, tune and freeze; write plan.json and print the layer map."""

    output: str = field(default="plan.json", metadata={"help": "where to write the plan"})
    plot: str | None = field(default=None, metadata={"help": "also draw the similarity profile with the roles (PNG)"})
    model: str | None = field(default=None, metadata={"help": "sleb (and depth for random): the model"})
    batch_size: int = field(default=1, metadata={"help": "sleb: samples per forward pass"})


@dataclass(kw_only=True)
class PruneArgs(SelectionArgs):
    """`interlace-hf prune`: drop decoder layers of a Qwen3-VL and write the pruned checkpoint."""

    model: str = field(metadata={"positional": True, "help": "base model: a local directory or a Hub id"})
    output_dir: str = field(default="", metadata={"help": "where to write the pruned checkpoint (required)"})
    drop_layers: str | None = field(default=None, metadata={"help": "original layer indices to drop, e.g. 3,7"})
    plan: str | None = field(default=None, metadata={"help": "a plan.json (from `interlace-hf plan`)"})
    format: str = field(
        default="auto",
        metadata={"choices": ["auto", "interlace", "standard"], "help": "checkpoint format (see README)"},
    )
    force: bool = field(default=False, metadata={"help": "write --format standard even where it is not exact"})
    model_revision: str | None = field(default=None, metadata={"help": "revision of the base model on the Hub"})
    dtype: str = field(default="auto", metadata={"help": "dtype to load and save in (auto keeps the checkpoint's)"})
    overwrite: bool = field(default=False, metadata={"help": "replace a non-empty --output-dir"})
    max_shard_size: str = field(default="5GB", metadata={"help": "largest safetensors shard, e.g. 5GB, 500MB"})
    push_to_hub: str | None = field(default=None, metadata={"help": "also push the result to this Hub repo id"})
    private: bool = field(default=False, metadata={"help": "create the Hub repo private"})
    revision: str | None = field(default=None, metadata={"help": "branch to push to (default: main)"})
    create_pr: bool = field(default=False, metadata={"help": "push as a pull request"})
    commit_message: str | None = field(default=None, metadata={"help": "commit message of the push"})
    token: str | None = field(default=None, metadata={"help": "Hub token (default: HF_TOKEN or the login cache)"})
    dry_run: bool = field(default=False, metadata={"help": "print what would be written and pushed; touch nothing"})

    def validate(self) -> None:
        if not self.output_dir:
            raise ValueError("`--output-dir` is required: the directory the pruned checkpoint is written to.")
        given = [flag for flag, value in (("--drop-layers", self.drop_layers), ("--plan", self.plan),
                                          ("--strategy", self.strategy)) if value is not None]
        if len(given) != 1:
            raise ValueError(
                "pass exactly one of `--drop-layers 3,7`, `--plan plan.json` or `--strategy S --drop-ratio R "
                f"--similarities DIR` to say what to drop (got {', '.join(given) or 'none'})."
            )
        if self.strategy is not None:
            self.validate_selection(self.model)
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"`--dtype` must be auto, float32, bfloat16 or float16, got {self.dtype!r}.")
        if self.push_to_hub:
            validate_repo_id(self.push_to_hub, "--push-to-hub")


@dataclass(kw_only=True)
class PushArgs:
    """`interlace-hf push`: publish a pruned (and maybe fine-tuned) checkpoint directory to the Hub."""

    directory: str = field(metadata={"positional": True, "help": "the checkpoint directory"})
    repo_id: str = field(default="", metadata={"help": "namespace/name of the Hub repo (required)"})
    private: bool = field(default=False, metadata={"help": "create the repo private"})
    revision: str | None = field(default=None, metadata={"help": "branch to push to (default: main)"})
    create_pr: bool = field(default=False, metadata={"help": "push as a pull request"})
    commit_message: str | None = field(default=None, metadata={"help": "commit message"})
    token: str | None = field(default=None, metadata={"help": "Hub token (default: HF_TOKEN or the login cache)"})
    dry_run: bool = field(default=False, metadata={"help": "print what would be pushed; touch nothing"})


@dataclass(kw_only=True)
class PublishArgs:
    """`interlace-hf publish`: prune (and fine-tune) a family of variants, push each, gather them in a collection."""

    model: str = field(default="", metadata={"help": "base model: a local directory or a Hub id (required)"})
    similarities: str = field(default="", metadata={"help": "directory from `interlace-hf similarity` (required)"})
    ratios: list[float] = field(default_factory=lambda: [0.10, 0.15, 0.20, 0.25],
                                metadata={"help": "drop ratios, one variant each"})
    namespace: str = field(default="", metadata={"help": "Hub user or organisation to publish under (required)"})
    strategy: str = field(default="interlace", metadata={"choices": STRATEGY_CHOICES, "help": "selection strategy"})
    name_template: str = field(default="Interlace-{base}-{pc}pc",
                               metadata={"help": "repo name; fields {base}, {pc}, {ratio}, {strategy}"})
    collection_title: str | None = field(default=None, metadata={"help": "collection title (default: from the base)"})
    train_config: str | None = field(default=None, metadata={"help": "a training recipe: fine-tune each variant"})
    work_dir: str = field(default="outputs/publish", metadata={"help": "where variants and the publish state live"})
    format: str = field(default="auto", metadata={"choices": ["auto", "interlace", "standard"],
                                                  "help": "checkpoint format"})
    private: bool = field(default=False, metadata={"help": "create the repos and the collection private"})
    token: str | None = field(default=None, metadata={"help": "Hub token (default: HF_TOKEN or the login cache)"})
    dry_run: bool = field(default=False, metadata={"help": "print what would be made and pushed; touch nothing"})

    def validate(self) -> None:
        missing = [_flag(n) for n in ("model", "similarities", "namespace") if not getattr(self, n)]
        if missing:
            raise ValueError(f"{', '.join(missing)} required: e.g. --model M --similarities DIR --namespace ORG.")
        if not self.ratios or any(not 0 < r < 1 for r in self.ratios):
            raise ValueError(f"--ratios must be drop ratios in (0, 1), e.g. 0.10 0.25; got {self.ratios}.")
        repeated = sorted({r for r in self.ratios if self.ratios.count(r) > 1})
        if repeated:
            raise ValueError(f"--ratios lists {repeated} more than once; list each ratio once (one repo each).")
        try:
            self.name_template.format(base="b", pc=10, ratio=0.1, strategy="s")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"--name-template {self.name_template!r} is not valid ({err}); fields: "
                             "{base}, {pc}, {ratio}, {strategy}.") from None


# TRL's script-argument names (`trl.ScriptArguments`, `trl.ModelConfig`) -> ours, for `interlace-hf train` recipes.
TRL_ALIASES = {"model_name_or_path": "model", "model_revision": "revision", "dataset_name": "dataset",
               "dataset_config": "dataset_subset", "dataset_train_split": "dataset_split"}


@dataclass(kw_only=True)
class TrainArgs:
    """`interlace-hf train`: the model and data of the selective fine-tune (the trainer's own settings are the
    fields of `InterlaceSFTConfig`, i.e. TRL's `SFTConfig` with the paper's defaults). The `seed` is the trainer's.

    TRL's names are accepted too, on the command line and in recipes: `model_name_or_path`, `model_revision`,
    `dataset_name`, `dataset_config`, `dataset_train_split` (see `TRL_ALIASES`)."""

    model: str = field(default="", metadata={"help": "a pruned checkpoint, or a base model with --plan / --strategy",
                                             "aliases": ["--model_name_or_path"]})
    revision: str | None = field(default=None, metadata={"help": "revision of the model on the Hub",
                                                         "aliases": ["--model_revision"]})
    plan: str | None = field(default=None, metadata={"help": "plan.json (default: the pruned checkpoint's own)"})
    similarities: str | None = field(default=None, metadata={"help": "base model: choose the plan from these"})
    strategy: str | None = field(default=None, metadata={"choices": STRATEGY_CHOICES, "help": "base model: strategy"})
    drop_ratio: float | None = field(default=None, metadata={"help": "base model: fraction of layers to drop"})
    num_drop: int | None = field(default=None, metadata={"help": "base model: number of layers to drop"})
    protect: str | None = field(default=None, metadata={"help": "base model: layers never dropped, e.g. 0,1"})
    tune_baselines: bool = field(default=False, metadata={"help": "baselines: tune the layer after each drop"})
    dataset: str = field(default="", metadata={"help": "training data: LLaVA .json, dataset directory or Hub id",
                                               "aliases": ["--dataset_name"]})
    dataset_subset: str | None = field(default=None, metadata={"help": "dataset configuration",
                                                               "aliases": ["--dataset_config"]})
    dataset_split: str = field(default="train", metadata={"help": "dataset split",
                                                          "aliases": ["--dataset_train_split"]})
    max_train_samples: int | None = field(default=None, metadata={"help": "use only the first N records"})
    teacher: str | None = field(default=None, metadata={
        "help": "distil from this dense model (directory or Hub id; `base`: the base_model the pruned checkpoint "
                "records); weights: --distill_alpha, --distill_hidden"})
    use_peft: bool = field(default=False, metadata={
        "help": "train LoRA adapters (peft) on the tuned layers instead of the layers themselves; the output is still "
                "a plain pruned checkpoint (adapters merged)"})
    lora_r: int = field(default=16, metadata={"help": "with --use_peft: LoRA rank (TRL's default)"})
    lora_alpha: int = field(default=32, metadata={"help": "with --use_peft: LoRA alpha; scaling = alpha / r"})
    lora_dropout: float = field(default=0.05, metadata={"help": "with --use_peft: dropout on the adapters' input"})
    lora_target_modules: list[str] | None = field(default=None, metadata={
        "help": "with --use_peft: the modules of each tuned layer that get adapters (default: the seven text "
                "projections q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)"})
    save_adapter: bool = field(default=False, metadata={
        "help": "with --use_peft: also keep the unmerged adapter in output_dir/adapter (peft format)"})
    dtype: str = field(default="auto", metadata={
        "choices": ["auto", "bfloat16", "float16", "float32"],
        "help": "dtype of the weights at load (auto: the checkpoint's); what trains is held in fp32 either way"})
    overwrite: bool = field(default=False, metadata={
        "help": "replace a non-empty output_dir that is not this run's own (an interrupted run with the same "
                "settings resumes without it)"})

    def validate(self) -> None:
        if self.dtype not in ("auto", "bfloat16", "float16", "float32"):
            raise ValueError(f"--dtype must be auto, bfloat16, float16 or float32, got {self.dtype!r}.")
        missing = [_flag(n) for n in ("model", "dataset") if not getattr(self, n)]
        if missing:
            raise ValueError(f"{', '.join(missing)} required (in the recipe or on the command line).")
        if self.plan and self.strategy:
            raise ValueError("pass either --plan plan.json or --strategy S (with --similarities), not both.")
        if self.strategy and (self.drop_ratio is None) == (self.num_drop is None):
            raise ValueError("with --strategy, pass exactly one of --drop-ratio R or --num-drop N.")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ValueError(f"--max-train-samples must be >= 1, got {self.max_train_samples}.")
        if isinstance(self.lora_target_modules, str):  # a recipe may give "q_proj,v_proj"
            self.lora_target_modules = [m.strip() for m in self.lora_target_modules.split(",") if m.strip()]
        if self.lora_r < 1 or self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1:
            raise ValueError(f"--lora_r ({self.lora_r}) must be >= 1, --lora_alpha ({self.lora_alpha}) > 0 and "
                             f"--lora_dropout ({self.lora_dropout}) in [0, 1).")
        if self.save_adapter and not self.use_peft:
            raise ValueError("--save_adapter keeps the LoRA adapter, which only --use_peft trains; add --use_peft.")
        if self.lora_target_modules is not None and not self.lora_target_modules:
            raise ValueError("--lora_target_modules is empty; name modules (e.g. q_proj v_proj) or leave it unset.")

    def selection_args(self, seed: int) -> SelectionArgs:
        return SelectionArgs(similarities=self.similarities, strategy=self.strategy, drop_ratio=self.drop_ratio,
                             num_drop=self.num_drop, seed=seed, protect=self.protect,
                             tune_baselines=self.tune_baselines)


@dataclass(kw_only=True)
class PrepareArgs:
    """`interlace-hf data prepare`: stream a fraction of every subset of FineVision (or a domain set) to local files."""

    dataset: str = field(default="HuggingFaceM4/FineVision",
                         metadata={"help": "Hub id, local copy, or chartqa|textvqa|scienceqa"})
    fraction: float = field(default=0.01, metadata={"help": "fraction of each subset to keep (paper: 0.01)"})
    output_dir: str = field(default="", metadata={"help": "where images + train.json + summary.json go (required)"})
    sampling: str = field(default="first", metadata={"choices": ["first", "random"],
                                                      "help": "first records (the paper's) or a seeded random sample"})
    seed: int = field(default=42, metadata={"help": "seed of --sampling random"})
    max_images: int = field(default=3, metadata={"help": "skip records with more images than this"})
    subsets: list[str] | None = field(default=None, metadata={"help": "only these subsets (default: all)"})
    split: str = field(default="train", metadata={"help": "dataset split"})
    overwrite: bool = field(default=False, metadata={"help": "start over in a non-empty --output-dir"})


@dataclass
class SyntheticArgs:
    """`interlace-hf data synthetic`: a synthetic image question-answer set (drawn shapes), LLaVA-style JSON."""

    output_dir: str = field(metadata={"positional": True, "help": "directory to write images + synthetic.json to"})
    num: int = field(default=200, metadata={"help": "number of records"})
    seed: int = field(default=0, metadata={"help": "random seed; the same seed gives the same set"})
    image_size: int = field(default=64, metadata={"help": "image side in pixels (shape tasks)"})
    tasks: list[str] | None = field(default=None, metadata={
        "help": "task types: count colour shape bar_tallest bar_value text (default: these six), and the "
                "two-step count_colour relation neighbour_shape neighbour_colour cell_colour colour_unique "
                "shape_unique bar_second bar_compare"})
    overwrite: bool = field(default=False, metadata={"help": "replace a non-empty OUTPUT_DIR"})


@dataclass
class BenchArgs:
    """`interlace-hf bench`: TTFT, decode speed and memory of a base and its pruned variants, in one interleaved run."""

    models: list[str] = field(metadata={"positional": True, "help": "BASE [PRUNED ...] (with --random-weights: "
                                        "base, ratios like 0.25 / 25pc, or plan.json files)"})
    image_size: int = field(default=448, metadata={"help": "image side in pixels"})
    prompt_tokens: int = field(default=64, metadata={"help": "text tokens in the prompt"})
    new_tokens: int = field(default=32, metadata={"help": "tokens to decode"})
    repeats: int = field(default=5, metadata={"help": "interleaved measured rounds"})
    warmup: int = field(default=1, metadata={"help": "warm-up rounds"})
    dtype: str = field(default="auto", metadata={"choices": ["auto", "float32", "bfloat16", "float16"],
                                                 "help": "dtype"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda"})
    random_weights: bool = field(default=False, metadata={"help": "build the models from a config, random weights"})
    config: str | None = field(default=None, metadata={"help": "config.json or qwen3-vl-8b / qwen3-vl-4b"})
    plans: list[str] | None = field(default=None, metadata={"help": "plan.json files for --random-weights variants"})
    compare_stock: bool = field(default=False, metadata={"help": "also time stock Qwen3-VL vs Interlace, same depth"})
    write_model_results: bool = field(default=False, metadata={"help": "write bench_results.json into pruned dirs"})
    output: str | None = field(default=None, metadata={"help": "results JSON"})
    attn_implementation: str | None = field(default=None, metadata={
        "choices": ["sdpa", "eager", "flash_attention_2"], "help": "attention kernel of every model (default: sdpa)"})
    pairwise: bool = field(default=False, metadata={
        "help": "checkpoints: keep the base and one pruned model in memory at a time (each timed against the base in "
                "its own interleaved run)"})


@dataclass
class EvalArgs:
    """`interlace-hf eval`: score a model on VQA tasks (greedy answers); with --base, the paper's relative performance."""

    model: str = field(metadata={"positional": True, "help": "the model to evaluate: a local directory or a Hub id"})
    base: str | None = field(default=None, metadata={"help": "the dense base: adds pruned/base ratios"})
    tasks: list[str] = field(default_factory=lambda: ["synthetic"],
                             metadata={"help": "synthetic chartqa textvqa scienceqa, or any name given in --data"})
    data: list[str] | None = field(default=None, metadata={"help": "TASK=PATH_OR_HUB_ID ..."})
    metric: list[str] | None = field(default=None, metadata={"help": "METRIC (all tasks) or TASK=METRIC ..."})
    split: str | None = field(default=None, metadata={"help": "dataset split"})
    batch_size: int = field(default=8, metadata={"help": "prompts per generate call"})
    max_new_tokens: int = field(default=16, metadata={"help": "answer length limit"})
    limit: int | None = field(default=None, metadata={"help": "at most N records per task"})
    dtype: str = field(default="auto", metadata={"help": "auto, float32, bfloat16"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda"})
    revision: str | None = field(default=None, metadata={"help": "revision of MODEL on the Hub"})
    base_revision: str | None = field(default=None, metadata={"help": "revision of --base on the Hub"})
    prompt_suffix: str | None = field(default=None, metadata={"help": "instruction after the question ('' for none)"})
    min_pixels: int | None = field(default=None, metadata={
        "help": "image resolution lower bound for BOTH models (default: the base's processor's)"})
    max_pixels: int | None = field(default=None, metadata={
        "help": "image resolution upper bound for BOTH models (default: the base's processor's)"})
    output: str | None = field(default=None, metadata={"help": "results JSON"})
    save_predictions: bool = field(default=False, metadata={"help": "keep every prediction in the JSON"})
    no_card_results: bool = field(default=False, metadata={"help": "do not write eval_results.json into MODEL"})


@dataclass
class VerifyArgs:
    """`interlace-hf verify`: check a pruned checkpoint computes what its base computes with the layers skipped."""

    base: str = field(metadata={"positional": True, "help": "the dense base model (directory or Hub id)"})
    pruned: str = field(metadata={"positional": True, "help": "the pruned checkpoint directory"})
    image_size: int = field(default=224, metadata={"help": "side of the drawn test image in pixels"})
    new_tokens: int = field(default=8, metadata={"help": "greedy tokens to compare"})
    dtype: str = field(default="float32", metadata={"help": "dtype to compare in"})
    device: str = field(default="cpu", metadata={"help": "where the models run, one at a time (cpu, auto, cuda, cuda:N)"})


@dataclass
class SimilarityArgs:
    """`interlace-hf similarity`: score the local redundancy of every 1/2/3-layer block on calibration data."""

    model: str = field(default="", metadata={"help": "Qwen3-VL model: a local directory or a Hub id (required)"})
    data: str = field(default="", metadata={"help": "LLaVA-style .json, a dataset directory or a Hub id (required)"})
    output_dir: str = field(default="", metadata={"help": "where the similarity files go (required)"})
    pack_sizes: list[int] = field(default_factory=lambda: [1, 2, 3], metadata={"help": "block sizes k to score"})
    sample_fraction: float = field(default=0.1, metadata={"help": "fraction of the records to sample"})
    seed: int = field(default=42, metadata={"help": "seed of the sample"})
    batch_size: int = field(default=1, metadata={"help": "samples per forward pass"})
    length_bucketing: bool = field(default=True, metadata={
        "help": "batch samples of similar length together: less padding, the same scores (--no-length-bucketing: "
                "in sample order)"})
    dtype: str = field(default="auto", metadata={"help": "auto (bf16 on a GPU that has it, else fp32), float32, bfloat16"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:1, ..."})
    subset: str | None = field(default=None, metadata={"help": "dataset configuration (e.g. a FineVision subset)"})
    split: str = field(default="train", metadata={"help": "dataset split"})
    overwrite: bool = field(default=False, metadata={"help": "start over in a non-empty --output-dir"})

    def validate(self) -> None:
        missing = [_flag(name) for name in ("model", "data", "output_dir") if not getattr(self, name)]
        if missing:
            raise ValueError(f"{', '.join(missing)} required: e.g. --model M --data D --output-dir OUT.")
        if not self.pack_sizes or any(k < 1 for k in self.pack_sizes):
            raise ValueError(f"--pack-sizes must be positive block sizes, e.g. 1 2 3; got {self.pack_sizes}.")
        if not 0 < self.sample_fraction <= 1:
            raise ValueError(f"--sample-fraction must be in (0, 1], got {self.sample_fraction}.")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}.")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"--dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}.")


def _base_type(annotation: Any) -> type:
    """`str | None` -> str, `int` -> int, `list[int]` stays."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per dataclass field (`positional` fields become positional arguments)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = dict(f.metadata)
        kind = _base_type(hints[f.name])
        kwargs: dict[str, Any] = {"help": meta.get("help")}
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        if meta.get("positional"):
            if typing.get_origin(kind) is list:
                (item,) = typing.get_args(kind)
                parser.add_argument(f.name, type=item, nargs="+", metavar=f.name.upper(), **kwargs)
            else:
                parser.add_argument(f.name, type=kind, metavar=f.name.upper(), **kwargs)
            continue
        if typing.get_origin(kind) is list:
            (item,) = typing.get_args(kind)
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
            shown = f" (default: {' '.join(map(str, default))})" if default else ""
            parser.add_argument(*_flags(f.name), dest=f.name, type=item, nargs="+", default=default,
                                help=f"{kwargs['help']}{shown}")
            continue
        if kind is bool:
            if f.default is True:  # on by default: `--no-NAME` turns it off
                parser.add_argument(*_flags(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=True,
                                    **kwargs)
            else:
                parser.add_argument(*_flags(f.name), dest=f.name, action="store_true", **kwargs)
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        if default not in (None, ""):
            kwargs["help"] = f"{kwargs['help']} (default: {default})"
        parser.add_argument(*_flags(f.name), dest=f.name, type=kind, default=default, **kwargs)


def from_namespace(cls: type, namespace: argparse.Namespace):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in vars(namespace).items() if k in names})


TESTBED_SIZES = ["small", "deep", "base", "tiny"]
TESTBED_STRATEGIES = ["interlace", "interlace_oa", "interlace_tn", "consecutive", "random", "shortgpt", "angular",
                      "sleb"]


@dataclass
class TestbedTrainArgs:
    """`interlace-hf testbed train`: train a small Qwen3-VL from scratch on synthetic VQA, to measure retention on."""

    __test__ = False  # not a pytest class

    output_dir: str = field(metadata={"positional": True, "help": "testbed directory (model, data, accuracy)"})
    size: str = field(default="small", metadata={"choices": TESTBED_SIZES,
                                                 "help": "small (12 layers, minutes on a CPU), deep (24 layers, "
                                                         "two-step tasks, unseen held-out; ~1 h), base (24 layers, "
                                                         "GPU), tiny (tests)"})
    steps: int | None = field(default=None, metadata={"help": "optimizer steps (default: the size's)"})
    seed: int = field(default=0, metadata={"help": "seed of the weights, the data and the order; same seed, same model"})
    batch_size: int | None = field(default=None, metadata={"help": "samples per step (default: the size's)"})
    learning_rate: float | None = field(default=None, metadata={"help": "peak learning rate (default: the size's)"})
    tasks: list[str] | None = field(default=None, metadata={
        "help": "synthetic task types (default: the size's; small: count colour shape bar_tallest, base: all six)"})
    num_eval: int | None = field(default=None, metadata={
        "help": "held-out questions to report the accuracy on (default: the size's; small 600, deep 3000)"})
    image_size: int | None = field(default=None, metadata={
        "help": "side of the shape pictures in pixels, a multiple of 32 (default: the size's, 64)"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when there is one), cpu, cuda"})
    overwrite: bool = field(default=False, metadata={"help": "start over in a non-empty OUTPUT_DIR"})

    def validate(self) -> None:
        if self.size not in TESTBED_SIZES:
            raise ValueError(f"--size must be one of {', '.join(TESTBED_SIZES)}, got {self.size!r}.")
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{_flag(name)} must be >= 1, got {value}.")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"--learning-rate must be > 0, got {self.learning_rate}.")
        if self.image_size is not None and (self.image_size < 32 or self.image_size % 32):
            raise ValueError(f"--image-size must be a multiple of 32 pixels (one image token is 32x32), got "
                             f"{self.image_size}.")
        if self.num_eval is not None and self.num_eval < 6:
            raise ValueError(f"--num-eval must be >= 6 (one question per task type at least), got {self.num_eval}.")
        from .datasets.synthetic import ALL_TASK_TYPES as known  # torch-free, like this module

        unknown = [t for t in self.tasks or [] if t not in known]
        if unknown or self.tasks == []:
            raise ValueError(f"--tasks {unknown or '(none)'}: choose task types from {' '.join(known)}.")


RECOVERY_METHODS = ["sft", "kd_logit", "kd_hidden", "kd_both", "lora"]


@dataclass
class TestbedCompareArgs:
    """`interlace-hf testbed compare`: every strategy with and without the fine-tune on a testbed model: the table."""

    __test__ = False  # not a pytest class

    output_dir: str = field(metadata={"positional": True, "help": "a directory written by `testbed train`"})
    drop_ratios: list[float] = field(default_factory=lambda: [0.25], metadata={"help": "fractions of layers to drop"})
    strategies: list[str] = field(default_factory=lambda: list(TESTBED_STRATEGIES),
                                  metadata={"help": " ".join(TESTBED_STRATEGIES)})
    finetune_fraction: float | None = field(default=None, metadata={
        "help": "fine-tune set size, a fraction of the training samples (default: the testbed size's: 1%, the "
                "paper's, for small; 2% for deep, about 1,300 questions)"})
    finetune_learning_rate: float | None = field(default=None, metadata={
        "help": "one fine-tune peak learning rate for every row (default: each row's own, chosen from "
                "--finetune-lr-grid on a validation split)"})
    finetune_lr_grid: list[float] = field(default_factory=lambda: [1e-4, 3e-4, 1e-3], metadata={
        "help": "the fine-tune learning rates each fine-tuned row tries; the one with the best accuracy on the "
                "validation split is reported on the held-out questions"})
    validation_questions: int = field(default=600, metadata={
        "help": "questions of the validation split the learning rate is chosen on (drawn apart from the training, "
                "held-out and fine-tune sets)"})
    finetune_batch_size: int = field(default=8, metadata={"help": "fine-tune samples per step"})
    calibration_samples: int = field(default=128, metadata={"help": "samples for the similarities and SLEB"})
    sleb_loss: str = field(default="all", metadata={
        "choices": ["answers", "all"],
        "help": "SLEB's calibration loss: all text tokens (SLEB's own), or the answers only (what the testbed model "
                "learned; an ablation)"})
    random_draws: int = field(default=10, metadata={
        "help": "Random's row is the mean of this many seeded draws (seed, seed + 1, ...)"})
    no_finetune: bool = field(default=False, metadata={"help": "only the rows without fine-tune"})
    finetune_ratios: list[float] | None = field(default=None, metadata={
        "help": "the drop ratios that also get fine-tuned rows (default: every one of --drop-ratios); e.g. 0.25 "
                "alone keeps a CPU run of 0.10 0.15 0.20 0.25 near an hour"})
    scoring: str = field(default="teacher-forced", metadata={
        "choices": ["teacher-forced", "greedy"],
        "help": "how rows are scored: teacher-forced (one forward pass per batch; exact match and each answer's "
                "log-likelihood) or greedy (the generation of `interlace-hf eval`; exact match only)"})
    recovery_methods: list[str] = field(default_factory=lambda: ["kd_both", "lora"], metadata={
        "help": "other ways to recover, each a further fine-tuned INTERLACE row (those of `testbed recovery`: "
                "kd_logit kd_hidden kd_both lora; `none` for no such row)"})
    bench_repeats: int = field(default=0, metadata={
        "help": "interleaved rounds of a measured TTFT run per ratio (0: none; the table gives the counted-FLOP "
                "speed-up, and measured speed belongs to `interlace-hf bench`)"})
    seed: int = field(default=0, metadata={"help": "seed of the fine-tune data, the random strategy and the trainer"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when there is one), cpu, cuda"})
    results_dir: str | None = field(default=None, metadata={"help": "where to write (default: OUTPUT_DIR/compare)"})

    def validate(self) -> None:
        unknown = [s for s in self.strategies if s not in TESTBED_STRATEGIES]
        if unknown or not self.strategies:
            raise ValueError(f"--strategies {unknown or '(none)'}: choose from {' '.join(TESTBED_STRATEGIES)}.")
        bad = [r for r in self.drop_ratios if not 0 < r < 1]
        if bad or not self.drop_ratios:
            raise ValueError(f"--drop-ratios must be fractions in (0, 1), e.g. 0.10 0.25; got {self.drop_ratios}.")
        if self.finetune_fraction is not None and not 0 < self.finetune_fraction <= 1:
            raise ValueError(f"--finetune-fraction must be in (0, 1], got {self.finetune_fraction}.")
        if self.finetune_learning_rate is not None and not self.finetune_learning_rate > 0:
            raise ValueError(f"--finetune-learning-rate must be > 0, got {self.finetune_learning_rate}.")
        if not self.finetune_lr_grid or not all(lr > 0 for lr in self.finetune_lr_grid):
            raise ValueError(f"--finetune-lr-grid must list learning rates > 0, e.g. 1e-4 3e-4 1e-3; got "
                             f"{self.finetune_lr_grid}.")
        if self.validation_questions < 6:
            raise ValueError(f"--validation-questions must be >= 6 (one per task type at least), got "
                             f"{self.validation_questions}.")
        if self.sleb_loss not in ("answers", "all"):
            raise ValueError(f"--sleb-loss must be `answers` or `all`, got {self.sleb_loss!r}.")
        stray = [r for r in self.finetune_ratios or [] if r not in self.drop_ratios]
        if stray:
            raise ValueError(f"--finetune-ratios {stray} are not among --drop-ratios {self.drop_ratios}.")
        if self.scoring not in ("teacher-forced", "greedy"):
            raise ValueError(f"--scoring must be `teacher-forced` or `greedy`, got {self.scoring!r}.")
        allowed = [m for m in RECOVERY_METHODS if m != "sft"]  # (SFT is the INTERLACE row itself)
        unknown = [m for m in self.recovery_methods if m not in (*allowed, "none")]
        if unknown:
            raise ValueError(f"--recovery-methods {unknown}: choose from {' '.join(allowed)}, or `none`.")
        if self.finetune_batch_size < 1 or self.calibration_samples < 1 or self.random_draws < 1 or \
                self.bench_repeats < 0:
            raise ValueError("--finetune-batch-size, --calibration-samples and --random-draws must be >= 1, "
                             "--bench-repeats >= 0.")


@dataclass
class TestbedRecoveryArgs:
    """`interlace-hf testbed recovery`: one plan, several ways to recover from the pruning (the paper's SFT, distillation
    from the dense model, LoRA), the same data and budget, over several seeds, compared pairwise against SFT."""

    __test__ = False  # not a pytest class

    output_dir: str = field(metadata={"positional": True, "help": "a directory written by `testbed train`"})
    methods: list[str] = field(default_factory=lambda: list(RECOVERY_METHODS), metadata={
        "help": "sft (the paper's), kd_logit (+ KL from the dense model), kd_hidden (+ hidden states), kd_both, "
                "lora (LoRA on the tuned layers, merged)"})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={
        "help": "seeds of the calibration and fine-tune data and of the trainer: each seed is a full pipeline run"})
    strategy: str = field(default="interlace", metadata={"choices": TESTBED_STRATEGIES, "help": "the layer choice"})
    drop_ratio: float = field(default=0.25, metadata={"help": "fraction of layers to drop"})
    finetune_fraction: float = field(default=0.01, metadata={"help": "fine-tune set size, a fraction of the training "
                                                                     "samples (paper: one percent)"})
    finetune_learning_rate: float | None = field(default=None, metadata={
        "help": "peak learning rate of SFT and the distillation runs (default: the testbed's training rate / 10)"})
    lora_learning_rate: float | None = field(default=None, metadata={
        "help": "peak learning rate of the LoRA run (default: 10x the fine-tune rate, TRL's LoRA guidance)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    distill_temperature: float = field(default=1.0, metadata={"help": "softmax temperature of the KL"})
    finetune_batch_size: int = field(default=8, metadata={"help": "fine-tune samples per step"})
    bootstrap: int = field(default=2000, metadata={"help": "bootstrap resamples of the paired differences"})
    scoring: str = field(default="teacher-forced", metadata={
        "choices": ["teacher-forced", "greedy"],
        "help": "how rows are scored, as in `testbed compare`: teacher-forced (exact match and each answer's "
                "log-likelihood) or greedy (exact match only)"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when there is one), cpu, cuda"})
    results_dir: str | None = field(default=None, metadata={"help": "where to write (default: OUTPUT_DIR/recovery)"})

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in RECOVERY_METHODS]
        if unknown or "sft" not in self.methods:
            raise ValueError(f"--methods {self.methods}: choose from {' '.join(RECOVERY_METHODS)}, sft included "
                             "(every other method is compared with it).")
        if self.strategy not in TESTBED_STRATEGIES:
            raise ValueError(f"--strategy must be one of {' '.join(TESTBED_STRATEGIES)}, got {self.strategy!r}.")
        if not 0 < self.drop_ratio < 1 or not 0 < self.finetune_fraction <= 1:
            raise ValueError(f"--drop-ratio ({self.drop_ratio}) must be in (0, 1) and --finetune-fraction "
                             f"({self.finetune_fraction}) in (0, 1].")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"--seeds must be distinct integers, e.g. 0 1 2; got {self.seeds}.")
        for name in ("finetune_learning_rate", "lora_learning_rate"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{_flag(name)} must be > 0, got {value}.")
        if self.lora_r < 1 or self.finetune_batch_size < 1 or self.bootstrap < 100 or self.distill_temperature <= 0:
            raise ValueError("--lora-r and --finetune-batch-size must be >= 1, --bootstrap >= 100 and "
                             "--distill-temperature > 0.")


@dataclass
class TestbedSummaryArgs:
    """`interlace-hf testbed summary`: the comparison over seeds (one `testbed compare` result per training seed, or
    per compare seed): mean relative performance, and paired two-level bootstrap intervals against INTERLACE and for
    each method's recovery by the fine-tune."""

    __test__ = False  # not a pytest class

    output_dir: str = field(metadata={"positional": True, "help": "where to write summary.{json,md}"})
    results: list[str] = field(default_factory=list, metadata={
        "help": "comparison directories (a testbed's `compare/`, or the testbed directory itself), one per seed"})
    bootstrap: int = field(default=2000, metadata={"help": "bootstrap resamples of the intervals"})

    def validate(self) -> None:
        if not self.results:
            raise ValueError("--results: give the comparisons to summarise, one per seed, e.g. --results "
                             "outputs/tb-0 outputs/tb-1 outputs/tb-2 (each compared with `testbed compare`).")
        if len(set(self.results)) < len(self.results):
            raise ValueError(f"--results lists a directory twice: {self.results}.")
        if self.bootstrap < 100:
            raise ValueError(f"--bootstrap must be >= 100 resamples, got {self.bootstrap}.")


@dataclass
class TestbedOracleArgs:
    """`interlace-hf testbed oracle`: score many drop sets of one size (no fine-tune, nothing saved) and place each
    method's set in that distribution."""

    __test__ = False  # not a pytest class

    output_dir: str = field(metadata={"positional": True, "help": "a directory written by `testbed train`"})
    drop_ratio: float = field(default=0.25, metadata={"help": "fraction of layers to drop"})
    samples: int = field(default=200, metadata={
        "help": "drop sets to score, drawn uniformly without repetition (all of them when there are no more)"})
    seed: int = field(default=0, metadata={"help": "seed of the draw"})
    num_questions: int | None = field(default=None, metadata={"help": "score only the first N held-out questions"})
    batch_size: int = field(default=32, metadata={"help": "questions per forward pass"})
    results_dir: str | None = field(default=None, metadata={"help": "where to write (default: OUTPUT_DIR/oracle)"})

    def validate(self) -> None:
        if not 0 < self.drop_ratio < 1:
            raise ValueError(f"--drop-ratio must be in (0, 1), got {self.drop_ratio}.")
        if self.samples < 1 or self.batch_size < 1 or (self.num_questions is not None and self.num_questions < 1):
            raise ValueError("--samples, --batch-size and --num-questions must be >= 1.")
