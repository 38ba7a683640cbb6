"""Model classes of layer-pruned Qwen3-VL checkpoints and their registration with the transformers Auto classes.

`configuration_interlace_qwen3_vl.py` and `modeling_interlace_qwen3_vl.py` are also written next to the weights of
every `interlace`-format checkpoint, so they import only torch and transformers.
"""

from .configuration_interlace_qwen3_vl import (
    InterlaceQwen3VLConfig,
    InterlaceQwen3VLTextConfig,
    deepstack_injection_positions,
)
from .modeling_interlace_qwen3_vl import (
    InterlaceQwen3VLForConditionalGeneration,
    InterlaceQwen3VLModel,
    InterlaceQwen3VLTextModel,
)

_REGISTERED = False

# Written into the `auto_map` of every Interlace config, beside what `register_for_auto_class` adds on save
# (AutoConfig, AutoModelForImageTextToText): `AutoModel.from_pretrained(dir, trust_remote_code=True)` gives the bare
# model, as it does for a stock Qwen3-VL checkpoint.
AUTO_MAP_EXTRA = {"AutoModel": f"{InterlaceQwen3VLModel.__module__.rsplit('.', 1)[-1]}.InterlaceQwen3VLModel"}


def register_auto_classes() -> None:
    """Make AutoConfig / AutoModel / AutoModelForImageTextToText know the Interlace classes (idempotent).

    Also marks the classes for `auto_map` + code export, so `save_pretrained` writes a checkpoint that loads with
    `trust_remote_code=True` where interlace-hf is not installed.
    """
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

    AutoConfig.register(InterlaceQwen3VLConfig.model_type, InterlaceQwen3VLConfig, exist_ok=True)
    AutoConfig.register(InterlaceQwen3VLTextConfig.model_type, InterlaceQwen3VLTextConfig, exist_ok=True)
    AutoModel.register(InterlaceQwen3VLConfig, InterlaceQwen3VLModel, exist_ok=True)
    AutoModel.register(InterlaceQwen3VLTextConfig, InterlaceQwen3VLTextModel, exist_ok=True)
    AutoModelForImageTextToText.register(
        InterlaceQwen3VLConfig, InterlaceQwen3VLForConditionalGeneration, exist_ok=True
    )
    InterlaceQwen3VLConfig.register_for_auto_class()
    InterlaceQwen3VLForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
    _REGISTERED = True


__all__ = [
    "AUTO_MAP_EXTRA",
    "InterlaceQwen3VLConfig",
    "InterlaceQwen3VLForConditionalGeneration",
    "InterlaceQwen3VLModel",
    "InterlaceQwen3VLTextConfig",
    "InterlaceQwen3VLTextModel",
    "deepstack_injection_positions",
    "register_auto_classes",
]
