"""The benchmark's prompt: a drawn square image of `image_size` pixels (not downscaled) and a question of about
`prompt_tokens` tokens, through the chat template and the processor; with its token counts."""

from __future__ import annotations

from ..processing import sample_inputs


_FILLER = ("Describe the picture in detail: which shapes are in it, what colour is each shape, where is it placed, "
           "how large is it, and which shape is next to the red square or the blue circle? ")


def _fit_processor(processor, image_size: int, vision_config: dict | None = None) -> None:
    """Let the processor take an `image_size` image as it is (Qwen's processor downscales above max_pixels)."""
    image_processor = processor.image_processor
    if vision_config is not None:
        image_processor.patch_size = vision_config.get("patch_size", 16)
        image_processor.merge_size = vision_config.get("spatial_merge_size", 2)
        image_processor.temporal_patch_size = vision_config.get("temporal_patch_size", 2)
    factor = image_processor.patch_size * image_processor.merge_size
    side = max(factor, round(image_size / factor) * factor)
    size = dict(image_processor.size) if image_processor.size else {}
    low, high = size.get("shortest_edge") or side * side, size.get("longest_edge") or side * side
    image_processor.size = {"shortest_edge": min(low, side * side), "longest_edge": max(high, side * side)}


def build_prompt(processor, image_size: int, prompt_tokens: int, vision_config: dict | None = None):
    """The benchmark's inputs: a drawn `image_size` x `image_size` image and a question of about `prompt_tokens`
    tokens, through the chat template and the processor.

    Returns:
        `(inputs, info)`: the processor's tensors, and the token counts (`question_tokens`, `text_tokens` = every
        non-image token of the prompt, template included, `image_tokens`, `sequence_length`, `image_grid_thw`).
    """
    _fit_processor(processor, image_size, vision_config)
    tokenizer = processor.tokenizer
    words = (_FILLER * (prompt_tokens // 8 + 2)).split()

    def count(n: int) -> int:
        return len(tokenizer(" ".join(words[:n]), add_special_tokens=False)["input_ids"])

    while count(len(words)) <= prompt_tokens:
        words += _FILLER.split()
    low, high = 0, len(words)  # the largest n with count(n) <= prompt_tokens
    while low < high:
        mid = (low + high + 1) // 2
        if count(mid) <= prompt_tokens:
            low = mid
        else:
            high = mid - 1
    question = " ".join(words[:low])
    inputs = sample_inputs(processor, question=question, image_size=image_size)
    ids = inputs["input_ids"][0]
    image_tokens = int((ids == tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum())
    info = {
        "image_size": image_size,
        "image_grid_thw": [int(v) for v in inputs["image_grid_thw"][0]],
        "question_tokens": count(low),
        "text_tokens": int(ids.numel()) - image_tokens,
        "image_tokens": image_tokens,
        "sequence_length": int(ids.numel()),
    }
    return inputs, info
