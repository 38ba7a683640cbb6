"""The models a benchmark runs: shipped full-size configs (`configs/`), random-weight Qwen3-VLs built from them on
the device, pruned variants sharing the base's weights (memory for one model), and the small models of the
benchmark scripts."""

from __future__ import annotations

import copy
import itertools
import json
import os
from pathlib import Path
from typing import Any

from .flops import parameter_count

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"


def build_random_model(directory: Path, hidden: int, layers: int, image_side: int) -> Path:
    """The tiny model's structure at a real width (random weights), with images up to `image_side` pixels."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    from interlace_hf.testing.tiny import build_tiny_processor, tiny_config

    processor = build_tiny_processor()
    processor.image_processor.size = {"shortest_edge": 32 * 32, "longest_edge": image_side * image_side}
    config = tiny_config(layers, processor.tokenizer)
    text = config.text_config
    text.hidden_size, text.intermediate_size, text.head_dim = hidden, 3 * hidden, 64
    text.num_attention_heads, text.num_key_value_heads = hidden // 64, max(1, hidden // 256)
    text.rope_parameters["mrope_section"] = [16, 8, 8]
    config.vision_config.out_hidden_size = hidden
    torch.manual_seed(0)
    Qwen3VLForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def benchmark_model(directory: Path, hidden_size: int = 0, num_layers: int = 12, image_side: int = 224) -> Path:
    """The model a benchmark runs on when none is given: the tiny one, or (`hidden_size`) a wider random one."""
    if hidden_size:
        return build_random_model(directory, hidden_size, num_layers, image_side)
    from ..testing.tiny import build_tiny_model

    return build_tiny_model(directory, num_layers=num_layers)


def shipped_configs() -> list[str]:
    """Names of the configs shipped in `interlace_hf/configs/` (`qwen3-vl-8b`, `qwen3-vl-4b`)."""
    return sorted(path.stem for path in CONFIGS_DIR.glob("*.json"))


def load_config_dict(config: str | os.PathLike) -> dict:
    """A Qwen3-VL config dict from a config.json, a model directory holding one, or the name of a shipped config."""
    from ..checkpoint import SUPPORTED_MODEL_TYPES

    path = Path(config).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        if str(config) not in shipped_configs():
            raise ValueError(
                f"--config {str(config)!r} is neither a config.json file nor a shipped config; pass the path of a "
                f"Qwen3-VL config.json or one of {', '.join(shipped_configs())}."
            )
        path = CONFIGS_DIR / f"{config}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--config {str(path)!r} is not a readable JSON file ({err}).") from None
    if not isinstance(data, dict) or data.get("model_type") not in SUPPORTED_MODEL_TYPES:
        model_type = data.get("model_type") if isinstance(data, dict) else None
        raise ValueError(
            f"--config {str(path)!r} has model_type {model_type!r}; interlace-hf benchmarks Qwen3-VL models "
            f"(model_type {' or '.join(SUPPORTED_MODEL_TYPES)}), e.g. --config qwen3-vl-8b."
        )
    if not isinstance(data.get("text_config"), dict) or not isinstance(data.get("vision_config"), dict):
        raise ValueError(
            f"--config {str(path)!r} needs a `text_config` and a `vision_config`, like a Qwen3-VL config.json."
        )
    return data


def _parse_ratio(entry: str) -> float | None:
    text = entry.strip().lower()
    scale = 1.0
    for suffix in ("pc", "%"):
        if text.endswith(suffix):
            text, scale = text[: -len(suffix)], 0.01
            break
    try:
        value = float(text) * scale
    except ValueError:
        return None
    return value


def spaced_plan(num_layers: int, drop_ratio: float | None = None, num_drop: int | None = None, seed: int = 0):
    """A plan that drops `floor(num_layers * drop_ratio)` (or `num_drop`) layers chosen at random among layers 3..
    (not the deepstack layers 0-2, which INTERLACE's plans on Qwen3-VL rarely drop); speed does not depend on which
    layers go. Uses the `random` strategy of `select_layers` with a fixed seed."""
    from ..tables import SimilarityTables
    from ..selection import num_to_drop, select_layers

    n = num_to_drop(num_layers, drop_ratio, num_drop)
    protected = range(3) if num_layers - 3 >= n else ()
    return select_layers(SimilarityTables(num_layers, {}), "random", drop_ratio=drop_ratio, num_drop=num_drop,
                         seed=seed, protected_layers=protected)


def random_variants(entries: list[str], num_layers: int) -> list[tuple[str, Any]]:
    """`(name, plan or None)` for each `--random-weights` model entry, the base first.

    Entries: `base`, a drop ratio (`0.25`, `25pc`, `25%`) or a plan.json made for a `num_layers`-layer model. The base
    is always measured, first, whether or not it is listed.
    """
    from ..plan import Plan

    variants: list[tuple[str, Any]] = [("base", None)]
    for entry in entries:
        entry = str(entry)
        if entry.strip().lower() == "base":
            continue
        path = Path(entry).expanduser()
        if path.suffix == ".json" or path.exists():
            plan = Plan.load(path)
            if plan.num_layers != num_layers:
                raise ValueError(
                    f"plan {entry!r} is for a {plan.num_layers}-layer model but the --config model has {num_layers} "
                    "decoder layers; pass a plan made for that config."
                )
            variants.append((entry, plan))
            continue
        ratio = _parse_ratio(entry)
        if ratio is None or not 0 < ratio < 1:
            raise ValueError(
                f"--random-weights model entries are `base`, a drop ratio in (0, 1) (0.25, 25pc or 25%) or a "
                f"plan.json; got {entry!r}."
            )
        variants.append((f"{100 * ratio:g}pc", spaced_plan(num_layers, ratio)))
    names = [name for name, _ in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"the models to benchmark repeat: {names}; list each drop ratio or plan once.")
    return variants


def available_memory(device) -> int | None:
    """Bytes free for new tensors on `device`: CUDA's free memory, or the OS's MemAvailable (None if unknown)."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_memory_for(config: dict, dtype, device) -> None:
    """Refuse, before building anything, a random-weight model that cannot fit: its weights (the variants share them)
    plus 10% for activations. The 8B shape needs ~35 GB in float32, ~17.5 GB in bfloat16."""
    import torch

    needed = int(parameter_count(config)["total"] * torch.empty((), dtype=dtype).element_size() * 1.1)
    free = available_memory(device)
    if free is not None and needed > free:
        raise ValueError(
            f"the random-weight model needs about {needed / 2**30:.1f} GiB on {device} ({dtype}) but only "
            f"{free / 2**30:.1f} GiB is free: use --dtype bfloat16 (half of float32), a smaller --config "
            "(qwen3-vl-4b), or a machine with more memory.")


def build_random_qwen3_vl(config: dict, *, device, dtype, seed: int = 0, attn_implementation: str | None = None):
    """A stock `Qwen3VLForConditionalGeneration` with random weights, built directly on `device` in `dtype`."""
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    if config.get("model_type") != "qwen3_vl":
        raise ValueError(
            f"--random-weights builds the dense model from its config; this config has model_type "
            f"{config.get('model_type')!r}. Pass the base model's config (model_type qwen3_vl)."
        )
    hf_config = Qwen3VLConfig.from_dict(copy.deepcopy(config))
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        model = Qwen3VLForConditionalGeneration._from_config(hf_config, dtype=dtype, **extra)
    return model.eval()


def shared_weight_copy(model):
    """A copy of `model` whose modules are new objects but whose parameters and buffers are the same tensors.

    `prune_model` on the copy renumbers and re-classes the copy's modules only; the original keeps working.
    """
    memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo)


def model_row(model) -> dict:
    from ..checkpoint import current_kept_layers, original_num_layers

    config = model.config
    params = list(model.parameters())
    kept = current_kept_layers(config)
    original = original_num_layers(config)
    row = {
        "class": type(model).__name__,
        "layers": int(config.text_config.num_hidden_layers),
        "original_layers": original,
        "dropped_layers": [i for i in range(original) if i not in kept],
        "parameters": sum(p.numel() for p in params),
        "weight_bytes": sum(p.numel() * p.element_size() for p in params),
        "dtype": str(params[0].dtype).removeprefix("torch."),
        "attn_implementation": {
            "text": getattr(config.text_config, "_attn_implementation", None),
            "vision": getattr(config.vision_config, "_attn_implementation", None),
        },
    }
    return row


def random_processor(config: dict):
    """The tiny processor, and a copy of `config` whose image / video / vision token ids are the tiny tokenizer's."""
    from ..testing.tiny import build_tiny_processor

    processor = build_tiny_processor()
    token_id = processor.tokenizer.convert_tokens_to_ids
    config = copy.deepcopy(config)
    config.update(image_token_id=token_id("<|image_pad|>"), video_token_id=token_id("<|video_pad|>"),
                  vision_start_token_id=token_id("<|vision_start|>"), vision_end_token_id=token_id("<|vision_end|>"))
    return processor, config
