"""Layer-pruned Qwen3-VL with exact skip semantics, deepstack included.

The decoder layers are the stock `Qwen3VLTextDecoderLayer`s that survived pruning, renumbered 0..n-1 (so the KV
cache and `DynamicCache(config=...)` line up). The one thing a plain renumbered checkpoint gets wrong is deepstack:
the dense model adds deepstack feature `j` after original layer `j` (j = 0, 1, 2). When such a layer is dropped, this
model adds its feature at the same point of the residual stream: after the last surviving earlier layer, or before
the first layer. The additions are the very same tensor operations, in the same order, as in the dense model.

Shipped next to the weights (remote code): imports only torch and transformers, and its config relatively.
"""

from torch import nn
from transformers import GenerationMixin
from transformers.models.auto import AutoModel
from transformers.models.qwen3_vl.modeling_qwen3_vl import (
    Qwen3VLForConditionalGeneration,
    Qwen3VLModel,
    Qwen3VLPreTrainedModel,
    Qwen3VLTextModel,
)

from .configuration_interlace_qwen3_vl import InterlaceQwen3VLConfig, InterlaceQwen3VLTextConfig


class InterlaceQwen3VLTextModel(Qwen3VLTextModel):
    config_class = InterlaceQwen3VLTextConfig
    config: InterlaceQwen3VLTextConfig

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        inputs_embeds=None,
        use_cache=None,
        visual_pos_masks=None,
        deepstack_visual_embeds=None,
        **kwargs,
    ):
        # The KV cache (`cache` in transformers >= 5.24, `past_key_values` before) and everything else we do not touch
        # pass through in **kwargs under whatever name the caller used.
        if deepstack_visual_embeds is not None:
            positions = self.config.deepstack_positions(len(deepstack_visual_embeds))
            if positions != list(range(len(deepstack_visual_embeds))):
                # Regroup the features by the position they are added after. The stock loop adds entry `p` of the
                # list after layer `p`; our `_deepstack_process` accepts a list of features (added one by one, as
                # the dense model would) or None (nothing to add there).
                before_first = [f for f, p in zip(deepstack_visual_embeds, positions) if p < 0]
                grouped = [[] for _ in range(max(positions) + 1)]
                for feature, position in zip(deepstack_visual_embeds, positions):
                    if position >= 0:
                        grouped[position].append(feature)
                deepstack_visual_embeds = [group or None for group in grouped] or None
                if before_first:
                    if inputs_embeds is None:
                        inputs_embeds = self.embed_tokens(input_ids)
                        input_ids = None
                    inputs_embeds = self._deepstack_process(inputs_embeds, visual_pos_masks, before_first)
        return super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            visual_pos_masks=visual_pos_masks,
            deepstack_visual_embeds=deepstack_visual_embeds,
            **kwargs,
        )

    def _deepstack_process(self, hidden_states, visual_pos_masks, visual_embeds):
        if visual_embeds is None:
            return hidden_states
        if isinstance(visual_embeds, (list, tuple)):
            for feature in visual_embeds:
                hidden_states = super()._deepstack_process(hidden_states, visual_pos_masks, feature)
            return hidden_states
        return super()._deepstack_process(hidden_states, visual_pos_masks, visual_embeds)


class InterlaceQwen3VLModel(Qwen3VLModel):
    config_class = InterlaceQwen3VLConfig
    config: InterlaceQwen3VLConfig

    def __init__(self, config: InterlaceQwen3VLConfig):
        # Qwen3VLModel.__init__ builds the text model through AutoModel, which does not know our text config in an
        # environment without interlace-hf; build it directly instead.
        Qwen3VLPreTrainedModel.__init__(self, config)
        self.visual = AutoModel.from_config(config.vision_config)
        self.language_model = InterlaceQwen3VLTextModel(config.text_config)
        self.rope_deltas = None
        self.post_init()


class InterlaceQwen3VLForConditionalGeneration(Qwen3VLForConditionalGeneration, GenerationMixin):
    # GenerationMixin is also a direct base (it already is one of Qwen3VLForConditionalGeneration's): transformers
    # checks `__bases__` for it to decide that a remote-code class can generate.
    config_class = InterlaceQwen3VLConfig
    config: InterlaceQwen3VLConfig

    def __init__(self, config: InterlaceQwen3VLConfig):
        Qwen3VLPreTrainedModel.__init__(self, config)
        self.model = InterlaceQwen3VLModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()


__all__ = ["InterlaceQwen3VLForConditionalGeneration", "InterlaceQwen3VLModel", "InterlaceQwen3VLTextModel"]
