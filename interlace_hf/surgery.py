"""Apply a `Plan` to a loaded Qwen3-VL: remove the dropped decoder layers, renumber, fix the config.

The surgery works in place and copies no weights: the surviving layers are moved into a new `ModuleList`, the
dropped ones lose their last reference and are freed, and the modules are re-classed to the Interlace subclasses
(which add no parameters) so that deepstack features keep their place in the residual stream.
"""

from __future__ import annotations

import gc
import logging

from torch import nn

from .modeling import (
    AUTO_MAP_EXTRA,
    InterlaceQwen3VLConfig,
    InterlaceQwen3VLForConditionalGeneration,
    InterlaceQwen3VLModel,
    InterlaceQwen3VLTextModel,
)
from .checkpoint import check_supported, current_kept_layers, original_num_layers, resolve_checkpoint, save_pruned
from .plan import Plan
from .version import __version__

logger = logging.getLogger(__name__)


# Per-layer config lists (one entry per decoder layer): sliced with the layers.
_PER_LAYER_KEYS = ("layer_types", "no_rope_layers", "sliding_window_layers", "attention_chunk_sizes")
# Config lists of layer indices: remapped to the new indices (indices of dropped layers disappear).
_LAYER_INDEX_KEYS = ("mlp_only_layers", "full_attention_layers", "swa_layers")


def interlace_block(plan: Plan, base_model: str | None = None, base_model_revision: str | None = None) -> dict:
    """The provenance block written into every pruned checkpoint's config."""
    return {
        "kept_layers": list(plan.kept_layers),
        "dropped_layers": list(plan.dropped_layers),
        "original_num_hidden_layers": plan.num_layers,
        "plan": plan.to_dict(),
        "base_model": base_model,
        "base_model_revision": base_model_revision,
        "interlace_hf_version": __version__,
    }


def _slice_layer_lists(text_config: dict, keep_positions: list[int]) -> dict:
    """A copy of a text config dict with every per-layer list cut down to the surviving layers."""
    text_config = dict(text_config)
    old_n = text_config["num_hidden_layers"]
    new_index = {old: new for new, old in enumerate(keep_positions)}
    for key in _PER_LAYER_KEYS:
        values = text_config.get(key)
        if isinstance(values, (list, tuple)) and len(values) == old_n:
            text_config[key] = [values[p] for p in keep_positions]
    for key in _LAYER_INDEX_KEYS:
        values = text_config.get(key)
        if isinstance(values, (list, tuple)):
            text_config[key] = [new_index[v] for v in values if v in new_index]
    text_config["num_hidden_layers"] = len(keep_positions)
    return text_config


def validate_plan_for_model(model, plan: Plan) -> list[int]:
    """Check `plan` fits `model` and return the positions (in the model as it is now) of the layers to keep."""
    check_supported(model.config)
    original = original_num_layers(model.config)
    if plan.num_layers != original:
        raise ValueError(
            f"the plan is for a {plan.num_layers}-layer model but this model has {original} decoder layers "
            f"(original indices); make the plan with num_layers={original}."
        )
    kept_now = current_kept_layers(model.config)
    missing = [i for i in plan.kept_layers if i not in kept_now]
    if missing:
        raise ValueError(
            f"the plan keeps layers {missing}, which this model already dropped (it holds original layers "
            f"{kept_now}); prune from the dense base model instead, or drop those layers in the plan too."
        )
    return [kept_now.index(i) for i in plan.kept_layers]


def bypass_layers(model, positions) -> list:
    """Make the decoder layers at `positions` return their input unchanged (a reversible, virtual drop).

    Deepstack features are still added after the bypassed position, so this computes exactly what `prune_model`
    would. Returns the hook handles; `handle.remove()` restores the layer.
    """
    layers = model.model.language_model.layers
    handles = []
    for position in positions:
        handles.append(
            layers[position].register_forward_hook(
                lambda module, args, kwargs, output: args[0] if args else kwargs["hidden_states"], with_kwargs=True
            )
        )
    return handles


def prune_model(model, plan: Plan, *, base_model: str | None = None, base_model_revision: str | None = None):
    """Remove the plan's dropped decoder layers from a loaded Qwen3-VL, in place.

    Args:
        model: a `Qwen3VLForConditionalGeneration` (dense or already pruned by interlace-hf).
        plan: the plan, in ORIGINAL layer indices.
        base_model: Hub id or path of the dense model, recorded in the config.
        base_model_revision: commit of the dense model, recorded in the config.

    Returns:
        the same model object, now an `InterlaceQwen3VLForConditionalGeneration` whose config records the
        surviving layers; its outputs equal the dense model's with the dropped layers skipped.
    """
    if not hasattr(model, "model") or not hasattr(getattr(model, "model"), "language_model"):
        raise ValueError(
            f"prune_model expects a Qwen3VLForConditionalGeneration, got {type(model).__name__}; load the model "
            "with AutoModelForImageTextToText.from_pretrained."
        )
    keep_positions = validate_plan_for_model(model, plan)
    if base_model is None:
        base_model = (getattr(model.config, "interlace", None) or {}).get("base_model") or getattr(
            model.config, "_name_or_path", None
        )
    if base_model_revision is None:
        base_model_revision = (getattr(model.config, "interlace", None) or {}).get("base_model_revision") or getattr(
            model.config, "_commit_hash", None
        )

    old_config = model.config
    config_dict = old_config.to_dict()
    config_dict.pop("model_type", None)
    config_dict.pop("auto_map", None)
    config_dict["architectures"] = [InterlaceQwen3VLForConditionalGeneration.__name__]
    config_dict["interlace"] = interlace_block(plan, base_model, base_model_revision)
    text = _slice_layer_lists(config_dict["text_config"], keep_positions)
    text.pop("model_type", None)
    text["kept_layers"] = list(plan.kept_layers)
    text["original_num_hidden_layers"] = plan.num_layers
    config_dict["text_config"] = text
    new_config = InterlaceQwen3VLConfig(**config_dict)
    new_config.auto_map = dict(AUTO_MAP_EXTRA)
    new_config._name_or_path = old_config._name_or_path
    new_config._attn_implementation = old_config._attn_implementation
    if hasattr(old_config, "_commit_hash"):
        new_config._commit_hash = old_config._commit_hash
    new_config.dtype = old_config.dtype

    text_model = model.model.language_model
    old_layers = text_model.layers
    new_layers = nn.ModuleList([old_layers[p] for p in keep_positions])
    for new_idx, layer in enumerate(new_layers):
        layer.self_attn.layer_idx = new_idx
        if hasattr(layer, "layer_idx"):
            layer.layer_idx = new_idx
    text_model.layers = new_layers
    del old_layers

    # Same modules, Interlace classes (no new parameters): no copy of any weight.
    model.__class__ = InterlaceQwen3VLForConditionalGeneration
    model.model.__class__ = InterlaceQwen3VLModel
    text_model.__class__ = InterlaceQwen3VLTextModel
    # Every module that held the old config (or one of its parts) holds the new one: the attention layers read
    # `config._attn_implementation` at each call, so `set_attn_implementation` must reach them, and nothing may keep
    # the old `num_hidden_layers`.
    replacements = {id(old_config): new_config, id(old_config.text_config): new_config.text_config,
                    id(old_config.vision_config): new_config.vision_config}
    for module in model.modules():
        held = getattr(module, "config", None)
        if held is not None and id(held) in replacements:
            module.config = replacements[id(held)]
    gc.collect()
    logger.info("pruned: %s", plan.describe())
    return model


def prune_and_save(model, plan: Plan, base_model: str, output_dir, *, revision: str | None = None, **save_kwargs):
    """Prune a loaded base model with `plan` and write it, with the base's processor / tokenizer files, to `output_dir`.

    `save_kwargs` go to `save_pruned` (`format`, `force`, `overwrite`, `on_staged`, `max_shard_size`).
    """
    prune_model(model, plan, base_model=base_model)
    source = resolve_checkpoint(base_model, revision, files_only=True)
    return save_pruned(model, plan, output_dir, processor_source=source, **save_kwargs)
