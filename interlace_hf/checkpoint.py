"""Checkpoints on disk: resolve (local directory or Hub id), read (config.json, safetensors headers), inspect a loaded
config, load a Qwen3-VL, and write pruned checkpoints in the `interlace` or `standard` format, atomically.

Torch is imported only when a model is loaded or saved. Writing a checkpoint does not render its card: the commands
do that (`card.write_card_files`) through `save_pruned(..., on_staged=...)`.

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
import struct
from collections.abc import Callable
from pathlib import Path

from .plan import PLAN_FILE, Plan
from .utils.fileio import atomic_output_dir

logger = logging.getLogger(__name__)

FORMATS = ("auto", "interlace", "standard")


# --- reading ---------------------------------------------------------------------------------------------------------
# Files of a base checkpoint that travel with a pruned one (processor, tokenizer, chat template, generation).
PROCESSOR_FILE_PATTERNS = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.json",
    "chat_template.jinja",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "generation_config.json",
    "processing_interlace_qwen3_vl.py",  # the image-only processor's code, where the base ships it (tiny models)
    "LICENSE",
)


SUPPORTED_MODEL_TYPES = ("qwen3_vl", "interlace_qwen3_vl")


def resolve_checkpoint(model: str, revision: str | None = None, *, files_only: bool = False,
                       local_only: bool = False) -> Path:
    """A local directory for `model` (a directory, or a Hub id downloaded through the usual cache).

    With `files_only`, only the processor / tokenizer / generation files are fetched.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{str(path)!r} is a directory without a config.json; pass a model directory or Hub id.")
        return path
    if path.exists():
        raise ValueError(f"{str(path)!r} is a file; pass a model directory or a Hub id like Qwen/Qwen3-VL-8B-Instruct.")
    if model.count("/") > 1 or model.startswith((".", "/", "~")):
        raise ValueError(f"model directory {model!r} does not exist (and it is not a Hub id of the form org/name).")
    from huggingface_hub import snapshot_download

    patterns = list(PROCESSOR_FILE_PATTERNS) + ["config.json"] if files_only else None
    if local_only:
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(model, revision=revision, allow_patterns=patterns, local_files_only=True))
        except LocalEntryNotFoundError:
            raise ValueError(
                f"{model!r} is not in the local Hub cache, and --dry-run reads nothing from the network; pass a local "
                "model directory, or download it once (`hf download ...`)."
            ) from None
    return Path(snapshot_download(model, revision=revision, allow_patterns=patterns))


def read_model_config(model: str, revision: str | None = None, *, local_only: bool = False) -> dict:
    """The raw config.json of a local directory or Hub id (cheap: no weights)."""
    path = Path(model).expanduser()
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ValueError(f"{str(path)!r} has no config.json; pass a Qwen3-VL model directory or Hub id.")
    else:
        config_file = resolve_checkpoint(model, revision, files_only=True, local_only=local_only) / "config.json"
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        where = f" (line {err.lineno}, column {err.colno})" if isinstance(err, json.JSONDecodeError) else ""
        raise ValueError(f"{config_file} is not valid JSON{where}: the file is damaged or truncated; download it again "
                         "(`hf download MODEL`) or re-save the checkpoint.") from None
    if not isinstance(config, dict) or config.get("model_type") not in SUPPORTED_MODEL_TYPES:
        config = config if isinstance(config, dict) else {}
        raise ValueError(
            f"interlace-hf prunes Qwen3-VL models (model_type {' or '.join(SUPPORTED_MODEL_TYPES)}, e.g. "
            f"Qwen/Qwen3-VL-8B-Instruct); {model!r} has model_type {config.get('model_type')!r}."
        )
    return config


def read_safetensors_header(path: str | Path) -> dict:
    """The header of one safetensors file (tensor name -> dtype, shape, data offsets), checked against the file's size:
    a header that does not parse, or a file shorter than its header says, is named. Cheap: no weights, no torch."""
    path = Path(path)
    size = path.stat().st_size
    problem = None
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > size - 8:
                problem = f"its header claims {length} bytes but the file has {size}"
            else:
                header = json.loads(handle.read(length))
                end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
                if 8 + length + end > size:
                    problem = f"it holds {size} bytes but its tensors need {8 + length + end}"
    except (struct.error, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        problem = f"its header does not parse ({type(err).__name__})"
    if problem:
        raise ValueError(f"{path} is damaged or truncated ({problem}); download it again (`hf download MODEL`) "
                         "or re-save the checkpoint.")
    header.pop("__metadata__", None)
    return header


def check_weight_files(directory: str | Path) -> None:
    """Refuse a local checkpoint whose safetensors files are damaged, naming the file, before any weight is read."""
    directory = Path(directory)
    if directory.is_dir():
        for path in sorted(directory.glob("*.safetensors")):
            read_safetensors_header(path)


def _safetensors_headers(directory: str | Path):
    for path in sorted(Path(directory).glob("*.safetensors")):
        yield from read_safetensors_header(path).items()


def safetensors_parameter_counts(directory: str | Path) -> dict[str, int]:
    """Tensor name -> element count, read from the safetensors headers only (no weights, no torch)."""
    counts: dict[str, int] = {}
    for name, info in _safetensors_headers(directory):
        n = 1
        for dim in info["shape"]:
            n *= dim
        counts[name] = n
    return counts


def safetensors_tensor_bytes(directory: str | Path) -> dict[str, int]:
    """Tensor name -> size in bytes (from the headers' data offsets)."""
    return {name: info["data_offsets"][1] - info["data_offsets"][0] for name, info in _safetensors_headers(directory)}


def parameter_counts(directory: str | Path, plan: Plan) -> tuple[int, int]:
    """(before, after) parameter counts of a pruned checkpoint: after from its headers, before by adding back the
    dropped layers (every decoder layer of Qwen3-VL has the same shapes)."""
    counts = safetensors_parameter_counts(directory)
    after = sum(counts.values())
    per_layer: dict[str, int] = {}
    for name, n in counts.items():
        marker = ".language_model.layers."
        if marker in name:
            index = name.split(marker, 1)[1].split(".", 1)[0]
            per_layer[index] = per_layer.get(index, 0) + n
    layer_size = max(per_layer.values()) if per_layer else 0
    return after + layer_size * len(plan.dropped_layers), after


# --- a loaded model's config ------------------------------------------------------------------------------------------
def check_supported(config) -> None:
    """Raise a clear error for a model that is not a Qwen3-VL."""
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"interlace-hf prunes Qwen3-VL models (model_type {' or '.join(SUPPORTED_MODEL_TYPES)}, e.g. "
            f"Qwen/Qwen3-VL-8B-Instruct); this model has model_type {model_type!r}."
        )


def current_kept_layers(config) -> list[int]:
    """Original indices of the decoder layers a (possibly already pruned) model holds now."""
    text_config = config.text_config
    kept = getattr(text_config, "kept_layers", None)
    if kept is None:
        block = getattr(config, "interlace", None) or {}
        kept = block.get("kept_layers")
    return list(kept) if kept is not None else list(range(text_config.num_hidden_layers))


def original_num_layers(config) -> int:
    """Decoder layers of the dense model a (possibly pruned) Qwen3-VL comes from; `config` is a loaded config or the
    dict of its config.json."""
    def field(obj, key):
        return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)

    text_config = field(config, "text_config")
    original = field(text_config, "original_num_hidden_layers") or (field(config, "interlace") or {}).get(
        "original_num_hidden_layers")
    return int(original) if original is not None else int(field(text_config, "num_hidden_layers"))


def num_deepstack_features(config) -> int:
    """How many deepstack visual features the vision tower adds (3 for Qwen3-VL); a loaded config or a config.json
    dict."""
    vision = config.get("vision_config", {}) if isinstance(config, dict) else config.vision_config
    indexes = vision.get("deepstack_visual_indexes") if isinstance(vision, dict) else getattr(
        vision, "deepstack_visual_indexes", None)
    return len(indexes or ())


def standard_format_is_exact(kept_layers, num_features: int) -> bool:
    """True when a plain renumbered `qwen3_vl` checkpoint computes what the pruned model computes.

    The stock model adds deepstack feature `j` after the layer at POSITION `j`; that is right only when every
    original layer `0..num_features-1` survived.
    """
    from .modeling.configuration_interlace_qwen3_vl import deepstack_injection_positions

    return deepstack_injection_positions(kept_layers, num_features) == list(range(num_features))


# --- loading ---------------------------------------------------------------------------------------------------------

def load_model(model: str, revision: str | None = None, dtype: str = "auto", device_map: str | None = None,
               attn_implementation: str | None = None):
    """Load a dense or pruned Qwen3-VL for surgery, with a clear error for anything else."""
    from . import register

    register()
    read_model_config(model, revision)  # fails fast, before any weight is read
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
    on_staged: Callable[[Path], None] | None = None,
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
        on_staged: called with the staging directory once weights, processor files and plan are in it, before it
            becomes `output_dir` (the prune command writes the model card there, so a crash leaves no checkpoint
            without its card).

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
        if on_staged is not None:
            on_staged(tmp)
    logger.info("wrote %s checkpoint to %s", chosen, output_dir)
    return Path(output_dir)


