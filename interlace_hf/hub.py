"""The only module that talks to the Hugging Face Hub (or reads a checkpoint's files). No torch."""

from __future__ import annotations

import json
from pathlib import Path

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
    "LICENSE",
)

SUPPORTED_MODEL_TYPES = ("qwen3_vl", "interlace_qwen3_vl")


def resolve_checkpoint(model: str, revision: str | None = None, *, files_only: bool = False) -> Path:
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
    return Path(snapshot_download(model, revision=revision, allow_patterns=patterns))


def read_model_config(model: str, revision: str | None = None) -> dict:
    """The raw config.json of a local directory or Hub id (cheap: no weights)."""
    path = Path(model).expanduser()
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ValueError(f"{str(path)!r} has no config.json; pass a Qwen3-VL model directory or Hub id.")
    else:
        config_file = resolve_checkpoint(model, revision, files_only=True) / "config.json"
    config = json.loads(config_file.read_text())
    if config.get("model_type") not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"interlace-hf prunes Qwen3-VL models (model_type {' or '.join(SUPPORTED_MODEL_TYPES)}, e.g. "
            f"Qwen/Qwen3-VL-8B-Instruct); {model!r} has model_type {config.get('model_type')!r}."
        )
    return config




def original_depth(config: dict) -> int:
    """Decoder layers of the dense model a (possibly pruned) Qwen3-VL config.json comes from."""
    text = config["text_config"]
    block = config.get("interlace") or {}
    return int(block.get("original_num_hidden_layers") or text.get("original_num_hidden_layers") or text["num_hidden_layers"])
