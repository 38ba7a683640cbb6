"""Configuration of a layer-pruned Qwen3-VL that remembers which original decoder layers it kept.

This file is shipped next to the weights of every `interlace`-format checkpoint (remote code), so it imports
only transformers: a checkpoint loads with `trust_remote_code=True` where interlace-hf is not installed.
"""

from transformers.models.qwen3_vl.configuration_qwen3_vl import (
    Qwen3VLConfig,
    Qwen3VLTextConfig,
    Qwen3VLVisionConfig,
)


def deepstack_injection_positions(kept_layers, num_features):
    """Where each deepstack feature goes in the pruned decoder stack.

    The dense model adds deepstack feature `j` to the residual stream right after original decoder layer `j`.
    In the pruned stack that point of the stream is right after the last surviving layer with original index
    `<= j`, i.e. after position `p = #{kept <= j} - 1`; `p == -1` means "before the first layer" (every layer
    up to `j` was dropped).

    Returns:
        a list of `num_features` positions in the pruned stack, each in `-1 .. len(kept_layers) - 1`.
    """
    positions = []
    for j in range(num_features):
        positions.append(sum(1 for layer in kept_layers if layer <= j) - 1)
    return positions


class InterlaceQwen3VLTextConfig(Qwen3VLTextConfig):
    """`Qwen3VLTextConfig` plus the original indices of the decoder layers that survive.

    Args:
        kept_layers: original (pre-pruning) index of each decoder layer, in order; `len == num_hidden_layers`.
            `None` means nothing was dropped.
        original_num_hidden_layers: depth of the dense model the layers come from.
    """

    model_type = "interlace_qwen3_vl_text"
    base_config_key = "text_config"

    kept_layers: list[int] | None = None
    original_num_hidden_layers: int | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.kept_layers is None:
            return
        kept = [int(i) for i in self.kept_layers]
        original = self.original_num_hidden_layers
        if original is None:
            raise ValueError("`original_num_hidden_layers` is required when `kept_layers` is set.")
        if len(kept) != self.num_hidden_layers:
            raise ValueError(
                f"`kept_layers` has {len(kept)} entries but `num_hidden_layers` is {self.num_hidden_layers}; "
                "they must match (one original index per surviving decoder layer)."
            )
        if kept != sorted(set(kept)) or any(not 0 <= i < original for i in kept):
            raise ValueError(
                f"`kept_layers` must be strictly increasing indices in 0..{original - 1}, got {kept}."
            )
        self.kept_layers = kept

    def deepstack_positions(self, num_features):
        kept = self.kept_layers if self.kept_layers is not None else list(range(self.num_hidden_layers))
        return deepstack_injection_positions(kept, num_features)


class InterlaceQwen3VLConfig(Qwen3VLConfig):
    """`Qwen3VLConfig` of a layer-pruned model.

    Args:
        interlace: provenance, the same block the `standard` export writes into a stock `config.json`:
            `kept_layers`, `dropped_layers`, `original_num_hidden_layers`, `plan`, `base_model`,
            `base_model_revision`, `interlace_hf_version`, `format`.
    """

    model_type = "interlace_qwen3_vl"
    sub_configs_defaults = {
        "vision_config": Qwen3VLVisionConfig,
        "text_config": InterlaceQwen3VLTextConfig,
    }

    interlace: dict | None = None

    def __post_init__(self, **kwargs):
        # A text config read from a stock checkpoint carries the stock model_type; ours takes over.
        if isinstance(self.text_config, dict):
            self.text_config = {**self.text_config, "model_type": InterlaceQwen3VLTextConfig.model_type}
        super().__post_init__(**kwargs)

    @property
    def kept_layers(self):
        return self.text_config.kept_layers

    @property
    def original_num_hidden_layers(self):
        return self.text_config.original_num_hidden_layers


__all__ = ["InterlaceQwen3VLConfig", "InterlaceQwen3VLTextConfig", "deepstack_injection_positions"]
