"""LoRA through peft for the selective fine-tune: adapters on the plan's tuned layers only, merged into a plain pruned
checkpoint at the end.

The adapters go where full fine-tuning would train: the tuned layers, addressed by their positions in the PRUNED
stack (`layers_to_transform`; original layer 9 may sit at position 7 once layers below it are dropped), on the seven
text projections by default. The merge works on a full state dict (gathered first under ZeRO-3, where no rank holds a
whole weight), so one path serves a single GPU, DDP and ZeRO-3; it computes what peft's `merge_and_unload` computes
(`W + scaling * B @ A`, in float32, cast back to the weight's dtype).
"""

from __future__ import annotations

import copy
import logging

from .checkpoint import current_kept_layers
from .plan import Plan

logger = logging.getLogger(__name__)

# The attention and MLP projections of a Qwen3-VL text decoder layer (the vision tower names its own differently).
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTER_DIR = "adapter"


def lora_config(*, r: int = 16, lora_alpha: int = 32, lora_dropout: float = 0.05,
                target_modules: list[str] | None = None):
    """A `peft.LoraConfig` from TRL's `ModelConfig` names (as `trl.get_peft_config` builds it); the layers it applies
    to are set by `config_for_plan`."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, bias="none", task_type="CAUSAL_LM",
                      target_modules=list(target_modules or DEFAULT_LORA_TARGETS))


def tuned_positions(plan: Plan, kept: list[int]) -> list[int]:
    """The tuned layers' positions in the pruned stack (what `layers_to_transform` indexes)."""
    return [kept.index(original) for original in plan.tuned_layers]


def config_for_plan(peft_config, plan: Plan, model):
    """A copy of `peft_config` restricted to the plan's tuned layers of `model` (a pruned Qwen3-VL).

    Only what merges exactly into a plain checkpoint is accepted: LoRA without DoRA, bias training, trained extra
    modules or parameter targeting.
    """
    from peft import LoraConfig

    if not isinstance(peft_config, LoraConfig):
        raise ValueError(f"only LoRA is supported (a peft.LoraConfig), got {type(peft_config).__name__}: the output "
                         "must merge into a plain pruned checkpoint.")
    unsupported = [name for name, bad in (("use_dora", peft_config.use_dora), ("bias", peft_config.bias != "none"),
                                          ("modules_to_save", bool(peft_config.modules_to_save)),
                                          ("target_parameters", bool(getattr(peft_config, "target_parameters", None))))
                   if bad]
    if unsupported:
        raise ValueError(f"LoRA settings {unsupported} are not supported here: the adapters are merged into the tuned "
                         "layers' projections at the end, and only plain LoRA merges exactly.")
    if not plan.tuned_layers:
        raise ValueError(f"the plan ({plan.strategy}) tunes no layers, so LoRA has nowhere to go; choose a strategy "
                         "with tuned layers (interlace, ...) or --tune_baselines.")
    positions = tuned_positions(plan, current_kept_layers(model.config))
    given = peft_config.layers_to_transform
    if given is not None and sorted([given] if isinstance(given, int) else given) != sorted(positions):
        raise ValueError(f"layers_to_transform={given} disagrees with the plan, whose tuned layers "
                         f"{list(plan.tuned_layers)} sit at positions {positions} of the pruned stack; leave it unset.")
    config = copy.deepcopy(peft_config)
    config.layers_to_transform = positions
    config.layers_pattern = "layers"  # language_model.layers.N (the vision tower's are `blocks`)
    if config.target_modules is None:
        config.target_modules = set(DEFAULT_LORA_TARGETS)
    return config


def adapter_layers(peft_model) -> dict[str, object]:
    """The LoRA-wrapped modules of a `PeftModel`, by name."""
    from peft.tuners.lora import LoraLayer

    return {name: module for name, module in peft_model.named_modules() if isinstance(module, LoraLayer)}


def check_adapter_placement(peft_model, plan: Plan, kept: list[int]) -> list[str]:
    """The wrapped modules' names; an error unless every one lies in a tuned layer and every tuned layer has one."""
    import re

    names = list(adapter_layers(peft_model))
    positions = set(tuned_positions(plan, kept))
    found = set()
    for name in names:
        match = re.search(r"language_model\.layers\.(\d+)\.", name)
        if match is None or int(match.group(1)) not in positions:
            raise ValueError(f"a LoRA adapter landed on {name}, outside the tuned layers (positions "
                             f"{sorted(positions)}); narrow --lora_target_modules.")
        found.add(int(match.group(1)))
    if found != positions:
        raise ValueError(f"--lora_target_modules matched nothing in the tuned layers at positions "
                         f"{sorted(positions - found)}; use the text projections ({', '.join(DEFAULT_LORA_TARGETS)}).")
    return names


def merged_state_dict(peft_model, state_dict: dict, adapter: str = "default") -> dict:
    """The plain model's state dict from a `PeftModel`'s full one: every LoRA pair merged into its base weight
    (`W + scaling * B @ A`, as `merge_and_unload`), the adapter tensors dropped, peft's prefixes removed.

    `state_dict` is keyed like `peft_model.state_dict()` (`base_model.model.` ... `.base_layer.weight`); under ZeRO-3
    it is the gathered one (`accelerator.get_state_dict`), which only the main process holds.
    """
    prefix = "base_model.model."
    merged = {}
    for name, module in adapter_layers(peft_model).items():
        if module.use_dora.get(adapter, False):  # config_for_plan refuses DoRA; a model wrapped elsewhere may have it
            raise ValueError(f"{name}: DoRA adapters are not merged here.")
        base = state_dict[f"{name}.base_layer.weight"]
        a = state_dict[f"{name}.lora_A.{adapter}.weight"].float()
        b = state_dict[f"{name}.lora_B.{adapter}.weight"].float()
        delta = (b @ a) * module.scaling[adapter]
        if module.fan_in_fan_out:
            delta = delta.T
        merged[f"{name}.base_layer.weight"] = (base.float() + delta.to(base.device)).to(base.dtype)
    plain = {}
    for key, tensor in state_dict.items():
        if ".lora_" in key:
            continue
        tensor = merged.get(key, tensor)
        plain[key.removeprefix(prefix).replace(".base_layer.", ".")] = tensor
    return plain
