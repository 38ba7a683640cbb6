"""Load a base Qwen3-VL and write pruned checkpoints in the `interlace` or `standard` format, atomically.

- `interlace`: `InterlaceQwen3VLForConditionalGeneration` + its code (`auto_map`), exact in every case; loads with
  interlace-hf installed, or with `trust_remote_code=True` without it.
- `standard`: a stock `qwen3_vl` checkpoint, layers renumbered, provenance in an extra `interlace` block of
  `config.json`; loads everywhere with no remote code (vLLM, evaluation harnesses), but is exact only when no layer
  that receives deepstack features (original layers 0..2) was dropped.
- `auto`: `standard` when it is exact, otherwise `interlace`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from .utils.fileio import atomic_output_dir
from .plan import PLAN_FILE, Plan
from .hub import PROCESSOR_FILE_PATTERNS, read_model_config
from .surgery import check_supported, current_kept_layers, num_deepstack_features
from .surgery import standard_format_is_exact

logger = logging.getLogger(__name__)

FORMATS = ("auto", "interlace", "standard")

def load_model(model: str, revision: str | None = None, dtype: str = "auto", device_map: str | None = None,
               attn_implementation: str | None = None):
    """Load a dense or pruned Qwen3-VL for surgery, with a clear error for anything else."""
    from . import register

    register()
    read_model_config(model, revision)  # fails fast, before any weight is read
    from .hub import check_weight_files

    check_weight_files(model)  # a truncated local safetensors file is named, not a deep loader traceback
    from transformers import AutoModelForImageTextToText

    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    loaded = AutoModelForImageTextToText.from_pretrained(
        model, revision=revision, dtype=dtype, device_map=device_map, **extra
    )
    check_supported(loaded.config)
    return loaded


def choose_format(requested: str, kept_layers, num_features: int, force: bool = False) -> str:
    """Resolve `auto` and refuse an inexact `standard` export unless forced."""
    if requested not in FORMATS:
        raise ValueError(f"`--format` must be one of {list(FORMATS)}, got {requested!r}.")
    exact = standard_format_is_exact(kept_layers, num_features)
    if requested == "auto":
        return "standard" if exact else "interlace"
    if requested == "standard" and not exact and not force:
        dropped = [i for i in range(num_features) if i not in kept_layers]
        raise ValueError(
            f"`--format standard` would not be exact: the plan drops layer(s) {dropped}, after which the dense model "
            f"adds deepstack visual features, and a stock qwen3_vl checkpoint would add them after the wrong layer. "
            "Use `--format interlace` (or `auto`), or pass `--force` to write the approximate standard checkpoint."
        )
    return requested


def inexact_reason(kept_layers, num_features: int) -> str:
    """Why a `standard` checkpoint of these kept layers is not the pruned model (pure)."""
    dropped = [i for i in range(num_features) if i not in kept_layers]
    return (f"the plan drops layer(s) {dropped}, after which the dense model adds deepstack visual features; a stock "
            f"qwen3_vl adds them after the first {num_features} layers of the pruned stack instead, so this "
            "checkpoint's outputs differ from the pruned model's (use the interlace format for the exact model)")


def standard_config_dict(config: dict) -> dict:
    """The stock `qwen3_vl` config.json of an Interlace config.json (pure: dict in, dict out)."""
    config = json.loads(json.dumps(config))
    block = config.get("interlace") or {}
    config["model_type"] = "qwen3_vl"
    config["architectures"] = ["Qwen3VLForConditionalGeneration"]
    config.pop("auto_map", None)
    text = config["text_config"]
    text["model_type"] = "qwen3_vl_text"
    text.pop("kept_layers", None)
    text.pop("original_num_hidden_layers", None)
    config["interlace"] = {**block, "format": "standard"}
    return config


def copy_processor_files(source: Path, destination: Path) -> list[str]:
    """Copy the base checkpoint's processor / tokenizer / chat template / generation files."""
    copied = []
    for name in PROCESSOR_FILE_PATTERNS:
        src = source / name
        if src.is_file():
            shutil.copy2(src, destination / name)
            copied.append(name)
    return copied


def save_pruned(
    model,
    plan: Plan,
    output_dir: str | os.PathLike,
    *,
    format: str = "auto",
    force: bool = False,
    processor_source: str | os.PathLike | None = None,
    overwrite: bool = False,
    max_shard_size: str | int = "5GB",
    similarity_tables=None,
) -> Path:
    """Write a pruned model, its plan and the base's processor files to `output_dir`, atomically.

    Args:
        model: a model returned by `prune_model`.
        plan: the plan that was applied (written as `plan.json`).
        output_dir: where the checkpoint goes; must not exist or be empty unless `overwrite`.
        format: `auto`, `interlace` or `standard` (see the module docstring).
        force: write `standard` even where it is not exact.
        processor_source: a local checkpoint directory whose processor / tokenizer files are copied.
        overwrite: replace an existing non-empty `output_dir`.

    Returns:
        the output directory.
    """
    from .modeling import register_auto_classes

    register_auto_classes()  # marks the classes for auto_map + code export
    kept = current_kept_layers(model.config)
    if list(plan.kept_layers) != kept:
        raise ValueError(
            f"the model holds original layers {kept} but the plan keeps {list(plan.kept_layers)}; "
            "save the plan that was applied with prune_model."
        )
    features = num_deepstack_features(model.config)
    chosen = choose_format(format, kept, features, force=force)
    block = {**(model.config.interlace or {}), "format": chosen}
    block.pop("inexact_reason", None)
    if chosen == "standard" and not standard_format_is_exact(kept, features):
        block["exact"] = False
        block["inexact_reason"] = inexact_reason(kept, features)
        logger.warning("writing an INEXACT standard checkpoint (--force): %s", block["inexact_reason"])
    else:
        block["exact"] = True
    with atomic_output_dir(output_dir, overwrite=overwrite) as tmp:
        model.config.interlace = block
        model.save_pretrained(tmp, max_shard_size=max_shard_size)
        if chosen == "standard":
            config_file = tmp / "config.json"
            config_file.write_text(json.dumps(standard_config_dict(json.loads(config_file.read_text())), indent=2))
            for code_file in tmp.glob("*.py"):
                code_file.unlink()
        if processor_source is not None:
            copy_processor_files(Path(processor_source), tmp)
        plan.save(tmp / PLAN_FILE)
        _write_card(tmp, Path(output_dir).name, plan, similarity_tables)
    logger.info("wrote %s checkpoint to %s", chosen, output_dir)
    return Path(output_dir)


def prune_and_save(model, plan: Plan, base_model: str, output_dir, *, revision: str | None = None, **save_kwargs) -> Path:
    """Prune a loaded base model with `plan` and write it, with the base's processor / tokenizer files, to `output_dir`.

    `save_kwargs` go to `save_pruned` (`format`, `force`, `overwrite`, `similarity_tables`, `max_shard_size`).
    """
    from .hub import resolve_checkpoint
    from .surgery import prune_model

    prune_model(model, plan, base_model=base_model)
    source = resolve_checkpoint(base_model, revision, files_only=True)
    return save_pruned(model, plan, output_dir, processor_source=source, **save_kwargs)


def _write_card(directory: Path, model_name: str, plan: Plan, tables) -> None:
    """The similarity profile (when matplotlib is there) and the model card of a freshly written checkpoint."""
    from .card import PROFILE_IMAGE, write_model_card

    if tables is not None and tables.pack_sizes:
        try:
            from .layermap import plot_similarity_profile, require_matplotlib

            require_matplotlib()
            plot_similarity_profile(plan, tables, directory / PROFILE_IMAGE)
        except ValueError as err:
            logger.info("no similarity profile in the card: %s", err)
    write_model_card(directory, model_name=model_name, similarity_means=tables.means if tables is not None else None)
