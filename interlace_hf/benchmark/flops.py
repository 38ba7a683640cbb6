"""Counted FLOPs of one Qwen3-VL prefill (time to first token) and parameter counts, from a config alone.

Pure: no torch.

A FLOP here is one multiply or one add: a matrix product of an (n x k) by a (k x m) matrix costs 2*n*k*m FLOPs
(n*k*m multiply-accumulates, times 2). Only matrix products are counted; norms, activations, rotary embeddings,
softmax, residual and deepstack additions, the learned position-embedding interpolation and the embedding lookup
are O(tokens x width) and left out (under 1% of the total for the real models). Biases are left out too.

Shapes (names as in the config):

    one image of side s (pixels), patch p, spatial merge m, temporal patch T, C input channels:
        s' = max(p*m, round(s / (p*m)) * (p*m))    the processor's rounding; the image is not otherwise resized
                                                   (`interlace-hf bench` raises the processor's max_pixels)
        P  = (s' / p)^2                             patches (the single image is one temporal step)
        V  = P / m^2                                visual tokens the decoder sees
    vision encoder (width d_v, MLP width i_v, depth D, out width d_out, |deepstack| = number of deepstack indexes):
        patch embed          2 * P * (C*T*p*p) * d_v
        per block            qkv 2*P*d_v*3d_v + proj 2*P*d_v*d_v              (attention projections)
                             QK^T 2*P*P*d_v + AV 2*P*P*d_v                   (full attention over the image's patches)
                             fc1 + fc2 2 * 2*P*d_v*i_v                        (MLP)
        merger               2*V*(m^2 d_v)*(m^2 d_v) + 2*V*(m^2 d_v)*d_out
        deepstack mergers    |deepstack| * merger (same shapes)
    text decoder over the whole prompt of S = text tokens + V tokens (width d, H query heads, H_kv key/value heads,
    head_dim h, MLP width I, L layers), per layer:
        q, o                 2*S*d*(H*h) each
        k, v                 2*S*d*(H_kv*h) each                              (GQA: only H_kv heads are projected)
        QK^T, AV             2*(H*h) * S(S+1)/2 each                          (causal: only the S(S+1)/2 pairs j <= i,
                                                                               about half of S^2, are counted)
        gate, up, down       3 * 2*S*d*I
    lm_head                  2*d*vocab, for the last position only (the first token needs one row of logits)

The decoder term is the only one that depends on the number of layers, so a pruned model's ideal speed-up is
prefill(L layers) / prefill(L' layers) < L / L'. Attention kernels that compute the full S x S score matrix
(the math / eager paths) do up to twice the counted attention-score work.
"""

from __future__ import annotations

import copy


def _get(section: dict, key: str, default=None):
    value = section.get(key, default)
    if value is None:
        raise ValueError(f"the config has no `{key}` (in {section.get('model_type', 'the config')}); "
                         "pass a Qwen3-VL config.json (with text_config and vision_config).")
    return value


def _sections(config: dict) -> tuple[dict, dict]:
    if not isinstance(config, dict) or "text_config" not in config or "vision_config" not in config:
        raise ValueError("expected a Qwen3-VL config dict with `text_config` and `vision_config` (a config.json, or "
                         "`PretrainedConfig.to_dict()`).")
    return config["text_config"], config["vision_config"]


def _text_shapes(text: dict) -> dict:
    d = int(_get(text, "hidden_size"))
    heads = int(_get(text, "num_attention_heads"))
    return {
        "d": d,
        "heads": heads,
        "kv_heads": int(text.get("num_key_value_heads") or heads),
        "head_dim": int(text.get("head_dim") or d // heads),
        "intermediate": int(_get(text, "intermediate_size")),
        "layers": int(_get(text, "num_hidden_layers")),
        "vocab": int(_get(text, "vocab_size")),
        "attention_bias": bool(text.get("attention_bias", False)),
    }


def _vision_shapes(vision: dict) -> dict:
    return {
        "d": int(_get(vision, "hidden_size")),
        "intermediate": int(_get(vision, "intermediate_size")),
        "depth": int(_get(vision, "depth")),
        "out": int(_get(vision, "out_hidden_size")),
        "patch": int(vision.get("patch_size", 16)),
        "merge": int(vision.get("spatial_merge_size", 2)),
        "temporal": int(vision.get("temporal_patch_size", 2)),
        "channels": int(vision.get("in_channels", 3)),
        "deepstack": len(vision.get("deepstack_visual_indexes") or ()),
        "position_embeddings": int(vision.get("num_position_embeddings", 0)),
    }


def image_patches(vision_config: dict, image_size: int) -> int:
    """Patches of one square `image_size`-pixel image, after the processor's rounding to a multiple of patch*merge."""
    v = _vision_shapes(vision_config)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"`image_size` must be a positive number of pixels, got {image_size!r}.")
    factor = v["patch"] * v["merge"]
    side = max(factor, round(image_size / factor) * factor)
    return (side // v["patch"]) ** 2


def image_tokens(vision_config: dict, image_size: int) -> int:
    """Visual tokens one square image of `image_size` pixels adds to the decoder's sequence."""
    return image_patches(vision_config, image_size) // _vision_shapes(vision_config)["merge"] ** 2


def prefill_flops(config: dict, num_text_tokens: int, image_size: int) -> dict:
    """Counted FLOPs of the prefill of one image + text prompt, broken down (see the module docstring).

    Args:
        config: a Qwen3-VL config dict (`config.json`, or `Qwen3VLConfig.to_dict()`); a pruned config counts its
            `text_config.num_hidden_layers` layers.
        num_text_tokens: tokens of the prompt that are not image tokens (chat template and question).
        image_size: side of the square image in pixels.

    Returns:
        a flat dict of ints: `vision_*` and `decoder_*` terms, `lm_head`, `total`, and the token counts
        (`image_patches`, `image_tokens`, `text_tokens`, `sequence_length`) and `num_layers` they were counted for.
    """
    if isinstance(num_text_tokens, bool) or not isinstance(num_text_tokens, int) or num_text_tokens < 0:
        raise ValueError(f"`num_text_tokens` must be a non-negative integer, got {num_text_tokens!r}.")
    text_config, vision_config = _sections(config)
    t, v = _text_shapes(text_config), _vision_shapes(vision_config)

    patches = image_patches(vision_config, image_size)
    visual = patches // v["merge"] ** 2
    dv, iv, depth = v["d"], v["intermediate"], v["depth"]
    merged = v["merge"] ** 2 * dv
    vision = {
        "vision_patch_embed": 2 * patches * (v["channels"] * v["temporal"] * v["patch"] ** 2) * dv,
        "vision_attention_proj": depth * (2 * patches * dv * 3 * dv + 2 * patches * dv * dv),
        "vision_attention_scores": depth * 2 * (2 * patches * patches * dv),
        "vision_mlp": depth * 2 * (2 * patches * dv * iv),
        "vision_mergers": (1 + v["deepstack"]) * (2 * visual * merged * merged + 2 * visual * merged * v["out"]),
    }
    vision["vision_total"] = sum(vision.values())

    seq = num_text_tokens + visual
    d, q_width, kv_width = t["d"], t["heads"] * t["head_dim"], t["kv_heads"] * t["head_dim"]
    causal_pairs = seq * (seq + 1) // 2
    per_layer = {
        "decoder_attention_proj": 2 * seq * d * q_width * 2 + 2 * seq * d * kv_width * 2,
        "decoder_attention_scores": 2 * (2 * q_width * causal_pairs),
        "decoder_mlp": 3 * (2 * seq * d * t["intermediate"]),
    }
    layers = t["layers"]
    decoder = {key: layers * value for key, value in per_layer.items()}
    decoder["decoder_per_layer"] = sum(per_layer.values())
    decoder["decoder_total"] = layers * decoder["decoder_per_layer"]
    lm_head = 2 * d * t["vocab"]
    return {
        **vision,
        **decoder,
        "lm_head": lm_head,
        "total": vision["vision_total"] + decoder["decoder_total"] + lm_head,
        "num_layers": layers,
        "image_patches": patches,
        "image_tokens": visual,
        "text_tokens": num_text_tokens,
        "sequence_length": seq,
    }


def with_num_layers(config: dict, num_layers: int) -> dict:
    """A copy of a Qwen3-VL config dict with `num_layers` decoder layers (every decoder layer has the same shapes)."""
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"`num_layers` must be a positive integer, got {num_layers!r}.")
    config = copy.deepcopy(config)
    _sections(config)[0]["num_hidden_layers"] = num_layers
    return config


def ideal_speedup(base_config: dict, pruned_num_layers: int, *, num_text_tokens: int = 64,
                  image_size: int = 448) -> float:
    """Base prefill FLOPs / pruned prefill FLOPs: the TTFT speed-up if time were proportional to counted FLOPs.

    Args:
        base_config: the dense model's Qwen3-VL config dict.
        pruned_num_layers: decoder layers left after pruning.
        num_text_tokens: non-image tokens of the prompt.
        image_size: side of the square image in pixels.
    """
    base = prefill_flops(base_config, num_text_tokens, image_size)["total"]
    pruned = prefill_flops(with_num_layers(base_config, pruned_num_layers), num_text_tokens, image_size)["total"]
    return base / pruned


def parameter_count(config: dict) -> dict:
    """Parameters of a Qwen3-VL built from `config`, counted from the shapes (biases and norms included).

    Returns:
        `vision`, `embed_tokens`, `decoder_per_layer`, `decoder_layers`, `final_norm`, `lm_head` (0 when tied to the
        embeddings), `text` (the language model with its lm_head) and `total`.
    """
    text_config, vision_config = _sections(config)
    t, v = _text_shapes(text_config), _vision_shapes(vision_config)
    dv, iv = v["d"], v["intermediate"]
    block = (
        2 * dv + 2 * dv                       # norm1, norm2 (LayerNorm weight + bias)
        + dv * 3 * dv + 3 * dv + dv * dv + dv  # qkv, proj (with biases)
        + dv * iv + iv + iv * dv + dv          # linear_fc1, linear_fc2 (with biases)
    )
    merged = v["merge"] ** 2 * dv
    merger_linears = merged * merged + merged + merged * v["out"] + v["out"]
    vision = (
        dv * v["channels"] * v["temporal"] * v["patch"] ** 2 + dv  # patch embed (Conv3d with bias)
        + v["position_embeddings"] * dv
        + v["depth"] * block
        + 2 * dv + merger_linears                     # final merger: LayerNorm over d_v
        + v["deepstack"] * (2 * merged + merger_linears)  # deepstack mergers: LayerNorm over m^2 d_v
    )
    d, hd = t["d"], t["head_dim"]
    q_width, kv_width = t["heads"] * hd, t["kv_heads"] * hd
    bias = (q_width + 2 * kv_width + d) if t["attention_bias"] else 0
    per_layer = (
        d * q_width + 2 * d * kv_width + q_width * d + bias  # q, k, v, o
        + 2 * hd                                         # q_norm, k_norm
        + 3 * d * t["intermediate"]                      # gate, up, down
        + 2 * d                                          # input / post-attention RMSNorm
    )
    tied = config.get("tie_word_embeddings")
    if tied is None:
        tied = text_config.get("tie_word_embeddings", False)
    embed = t["vocab"] * d
    lm_head = 0 if tied else t["vocab"] * d
    text = embed + t["layers"] * per_layer + d + lm_head
    return {
        "vision": vision,
        "embed_tokens": embed,
        "decoder_per_layer": per_layer,
        "decoder_layers": t["layers"] * per_layer,
        "final_norm": d,
        "lm_head": lm_head,
        "text": text,
        "total": vision + text,
    }


def training_step_flops(config: dict, *, tuned_positions, num_text_tokens: int, image_size: int,
                        activation_checkpointing: bool = True, full: bool = False,
                        head_positions: int | None = None, adapters: bool = False,
                        teacher_config: dict | None = None) -> dict:
    """Counted FLOPs of one training step on one image + text sample, the ideal a fine-tune's step is held against.

    Forward: everything (vision, every decoder layer, the head). Backward (~2x forward for a layer whose weights
    train: input and weight gradients; ~1x for a frozen layer the gradient only passes through):
    - INTERLACE (`full=False`): from the head down to the lowest tuned layer and no further; tuned layers 2x, the
      frozen layers above the lowest tuned one 1x, the frozen head 1x; the vision tower and the layers below: 0.
      With activation checkpointing, the layers from the lowest tuned one up are recomputed once (1x).
    - full fine-tune (`full=True`): everything 2x; with checkpointing, every decoder layer and vision block again.

    Args:
        config: a Qwen3-VL config dict of the model as trained (a pruned config for a pruned model).
        tuned_positions: positions of the tuned layers in that model's decoder stack (ignored with `full`).
        num_text_tokens, image_size: the sample (as in `prefill_flops`).
        head_positions: positions the head projects (default: every position; TRL's fused head on a GPU projects
            only the positions with a label).
        adapters: LoRA on the tuned layers: their frozen weights only pass the gradient on (1x, like a frozen
            layer); the adapters' own products are small and not counted.
        teacher_config: distillation from this dense model: its forward without the head (vision and every decoder
            layer), plus the KL's vocabulary projections at the `head_positions`: the teacher's and the student's
            forward and the student's backward through its (frozen) head, 3x.

    Returns:
        `{"forward", "recompute", "backward", "teacher", "total"}` (ints); `total / forward` is the step's ideal cost
        in forward passes of the student.
    """
    counted = prefill_flops(config, num_text_tokens, image_size)
    layer, layers = counted["decoder_per_layer"], counted["num_layers"]
    head = counted["lm_head"] * (counted["sequence_length"] if head_positions is None else head_positions)
    vision = counted["vision_total"]
    forward = vision + layers * layer + head
    if full:
        recompute = (layers * layer + vision) if activation_checkpointing else 0
        backward = 2 * forward
    else:
        tuned = sorted(set(tuned_positions))
        if not tuned or tuned[0] < 0 or tuned[-1] >= layers:
            raise ValueError(f"`tuned_positions` must be positions 0..{layers - 1} of the decoder stack, got "
                             f"{list(tuned_positions)!r}.")
        above = layers - tuned[0]  # the lowest tuned layer and everything above it
        recompute = above * layer if activation_checkpointing else 0
        trained = 1 if adapters else 2
        backward = head + (above - len(tuned)) * layer + trained * len(tuned) * layer
    teacher = 0
    if teacher_config is not None:
        dense = prefill_flops(teacher_config, num_text_tokens, image_size)
        positions = dense["sequence_length"] if head_positions is None else head_positions
        teacher = dense["vision_total"] + dense["num_layers"] * dense["decoder_per_layer"] + \
            3 * dense["lm_head"] * positions
    return {"forward": forward, "recompute": recompute, "backward": backward, "teacher": teacher,
            "total": forward + recompute + backward + teacher}
