"""Answers: batched, greedy, left-padded generation with the chat template, at one image resolution for the base
and the pruned model alike. Shared with the lmms-eval plugin."""

from __future__ import annotations

from collections.abc import Sequence


def _load_images(images: Sequence) -> list:
    from ..data import Record

    return Record(images=list(images)).load_images()


def prompt_messages(question: str, num_images: int, suffix: str = "") -> list[dict]:
    """The chat of one question: a user turn with the images first, then the text (as in calibration and training)."""
    content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": question + suffix}]
    return [{"role": "user", "content": content}]


def _strip_answer(text: str) -> str:
    if "</think>" in text:  # a thinking model's reasoning is not its answer
        text = text.rsplit("</think>", 1)[1]
    return text.strip()


def greedy_generation_config(model, max_new_tokens: int, pad_token_id: int | None = None):
    """The model's generation config with sampling switched off (greedy, one beam) and `max_new_tokens` set."""
    import copy

    config = copy.deepcopy(model.generation_config)
    config.do_sample, config.num_beams, config.max_new_tokens = False, 1, max_new_tokens
    config.temperature = config.top_p = config.top_k = None
    if config.pad_token_id is None:
        config.pad_token_id = pad_token_id if pad_token_id is not None else config.eos_token_id
    return config


def generate_answers(model, processor, prompts: Sequence[tuple[list[dict], Sequence]], *, batch_size: int = 8,
                     max_new_tokens: int = 16, progress: bool = True, desc: str = "generating",
                     generation_config=None) -> list[str]:
    """Greedy answers to chats, `batch_size` at a time, left-padded; only the new tokens are decoded.

    Args:
        model: a loaded Qwen3-VL (dense or pruned), in eval mode.
        processor: its processor.
        prompts: `(messages, images)` per question; images as paths, PIL images or `{"bytes": ...}`.
        batch_size: questions per `generate` call.
        max_new_tokens: answer length limit.
        progress: show a progress bar.
        desc: the progress bar's label.
        generation_config: use this `GenerationConfig` instead of greedy decoding with `max_new_tokens` (its
            `stop_strings`, if any, end each answer early; they stay in the returned text).
    """
    import torch
    from tqdm import tqdm

    device = next(model.parameters()).device
    config = generation_config or greedy_generation_config(model, max_new_tokens, processor.tokenizer.pad_token_id)
    extra = {"tokenizer": processor.tokenizer} if getattr(config, "stop_strings", None) else {}
    answers: list[str] = []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not progress):
        batch = prompts[start:start + batch_size]
        texts = [processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                 for messages, _ in batch]
        images = [image for _, item_images in batch for image in _load_images(item_images)]
        inputs = processor(text=texts, images=images or None, padding=True, padding_side="left",
                           return_tensors="pt").to(device)
        with torch.inference_mode():
            output = model.generate(**inputs, generation_config=config, **extra)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        answers += [_strip_answer(text) for text in processor.batch_decode(new_tokens, skip_special_tokens=True)]
    return answers


def image_resolution(model_path: str, revision: str | None = None, *, min_pixels: int | None = None,
                     max_pixels: int | None = None, processor=None) -> dict[str, int]:
    """The image resolution bounds to evaluate at: the ones given, the rest from `model_path`'s processor (or from
    `processor`, when it is already loaded)."""
    if min_pixels is None or max_pixels is None:
        if processor is None:
            from ..processing import load_processor

            processor = load_processor(model_path, revision=revision)
        size = processor.image_processor.size or {}
        min_pixels = size.get("shortest_edge") if min_pixels is None else min_pixels
        max_pixels = size.get("longest_edge") if max_pixels is None else max_pixels
    if min_pixels is None or max_pixels is None or not 1 <= min_pixels <= max_pixels:
        raise ValueError(f"--min-pixels ({min_pixels}) must be >= 1 and <= --max-pixels ({max_pixels}).")
    return {"min_pixels": int(min_pixels), "max_pixels": int(max_pixels)}
