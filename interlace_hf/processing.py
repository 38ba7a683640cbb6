"""An image-only Qwen3-VL processor, and a loader that never hands back a bare tokenizer.

The stock `Qwen3VLProcessor` always builds a video processor, and every Qwen3-VL video processor
needs torchvision. Where torchvision is missing (or cannot be imported, as with PyPI's CUDA build
next to a CPU torch) the stock processor cannot be built, and `AutoProcessor.from_pretrained`
quietly returns a tokenizer instead. A tokenizer then produces no `pixel_values`,
`image_grid_thw` or `mm_token_type_ids`, and Qwen3-VL fails far from the cause.

`InterlaceQwen3VLProcessor` is the stock processor without the video half: same image-token
expansion, same `mm_token_type_ids`, same chat-template handling. It works with whichever
Qwen2-VL image processor backend loads (`Qwen2VLImageProcessor` with torchvision,
`Qwen2VLImageProcessorPil` without).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from transformers import AutoProcessor, PreTrainedConfig
from transformers.processing_utils import ProcessorMixin
from transformers.utils import is_torchvision_available

from .modeling.processing_interlace_qwen3_vl import InterlaceQwen3VLProcessor


logger = logging.getLogger(__name__)

# Processor classes whose checkpoints `load_processor` may rebuild as an image-only processor.
_QWEN3_VL_PROCESSOR_NAMES = ("Qwen3VLProcessor", "InterlaceQwen3VLProcessor")

# Files that may name the processor class, in the order AutoProcessor reads them.
_PROCESSOR_CLASS_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")


class _InterlaceProcessorRegistryKey(PreTrainedConfig):
    """Never instantiated: the key under which `InterlaceQwen3VLProcessor` sits in AutoProcessor's mapping.

    `AutoProcessor.from_pretrained` reads `processor_class` from `processor_config.json` and resolves
    the name with `processor_class_from_name`, which looks first through the library's own processors
    and then through the classes registered with `AutoProcessor.register(config_class, processor_class)`,
    matching on `__name__`. Registration needs a config class as the key. Keying on the stock
    `Qwen3VLConfig` would make every stock `qwen3_vl` checkpoint that names no `processor_class` load
    as our class (without `exist_ok`, `register` even skips transformers' own config classes
    silently), so the key is this private class. It has a model type no `config.json` uses and is
    not registered with `AutoConfig`, so no model config ever maps to it: only the lookup by name
    reaches our processor.
    """

    model_type = "interlace_qwen3_vl_processor_key"


def register_processor() -> None:
    """Let `AutoProcessor.from_pretrained` resolve `"processor_class": "InterlaceQwen3VLProcessor"`.

    Safe to call any number of times. Stock checkpoints are unaffected: their `processor_class`
    (`Qwen3VLProcessor`) and their `qwen3_vl` model type still resolve to the stock class.
    """
    # exist_ok: registering again just rewrites the same entry.
    AutoProcessor.register(_InterlaceProcessorRegistryKey, InterlaceQwen3VLProcessor, exist_ok=True)
    # Saving the processor also writes its code and `auto_map` (remote code), so that where interlace-hf is not
    # installed `AutoProcessor.from_pretrained(dir, trust_remote_code=True)` builds it instead of a bare tokenizer.
    InterlaceQwen3VLProcessor.register_for_auto_class("AutoProcessor")


def _declared_processor_class(path_or_repo_id: str | Path, revision: str | None, hub_kwargs: dict) -> str | None:
    """The `processor_class` a checkpoint names, read from the first file that names one."""
    from transformers.utils import cached_file

    for filename in _PROCESSOR_CLASS_FILES:
        resolved = cached_file(
            str(path_or_repo_id),
            filename,
            revision=revision,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            _raise_exceptions_for_gated_repo=False,
            **hub_kwargs,
        )
        if resolved is None:
            continue
        with open(resolved, encoding="utf-8") as handle:
            processor_class = json.load(handle).get("processor_class")
        if processor_class:
            return processor_class
    return None


def _is_real_processor(processor: Any) -> bool:
    return (
        isinstance(processor, ProcessorMixin)
        and getattr(processor, "image_processor", None) is not None
        and getattr(processor, "tokenizer", None) is not None
    )


def load_processor(path_or_repo_id: str | Path, revision: str | None = None, **kwargs) -> ProcessorMixin:
    """Load the processor of a Qwen3-VL checkpoint: a processor with an image processor, never a bare tokenizer.

    Tries `AutoProcessor` first (after `register_processor()`), so stock checkpoints on a machine with
    torchvision get the stock `Qwen3VLProcessor`. If that yields no real processor and the checkpoint
    declares a Qwen3-VL processor, it builds an [`InterlaceQwen3VLProcessor`] from the checkpoint's image
    processor, tokenizer and chat template instead (the case of a stock checkpoint without torchvision).

    Args:
        path_or_repo_id (`str` or `Path`):
            A local checkpoint directory or a Hub model id.
        revision (`str`, *optional*):
            Branch, tag or commit on the Hub.
        **kwargs:
            Passed to `from_pretrained` (for example `cache_dir`, `token`, `local_files_only`).

    Returns:
        A `ProcessorMixin` with `.image_processor` and `.tokenizer`.

    Raises:
        `ValueError`: when the checkpoint has no image processor or no Qwen3-VL processor class.
    """
    register_processor()
    source = str(path_or_repo_id)
    load_kwargs = dict(kwargs)
    if revision is not None:
        load_kwargs["revision"] = revision

    auto_error: Exception | None = None
    try:
        processor = AutoProcessor.from_pretrained(source, **load_kwargs)
    except Exception as error:  # noqa: BLE001 - a failed stock load is one of the cases we repair below
        processor, auto_error = None, error
    if _is_real_processor(processor):
        return processor

    hub_kwargs = {k: kwargs[k] for k in ("cache_dir", "token", "local_files_only", "subfolder") if k in kwargs}
    declared = _declared_processor_class(source, revision, hub_kwargs)
    found = (
        f"AutoProcessor raised {type(auto_error).__name__}: {auto_error}"
        if auto_error is not None
        else f"AutoProcessor returned a {type(processor).__name__}"
    )

    if declared in _QWEN3_VL_PROCESSOR_NAMES:
        if declared == "Qwen3VLProcessor" and not is_torchvision_available():
            logger.info(
                "The stock Qwen3VLProcessor of %s needs torchvision for its video processor; "
                "loading it as the image-only InterlaceQwen3VLProcessor instead.",
                source,
            )
        else:
            logger.warning(
                "%s declares %s but %s; loading it as the image-only InterlaceQwen3VLProcessor instead.",
                source,
                declared,
                found,
            )
        try:
            processor = InterlaceQwen3VLProcessor.from_pretrained(source, **load_kwargs)
        except Exception as error:  # noqa: BLE001 - re-raised below with what was found
            raise ValueError(
                f"Could not load a processor for {source!r}: {found}, and rebuilding it as "
                f"InterlaceQwen3VLProcessor failed with {type(error).__name__}: {error}. The checkpoint needs "
                "an image processor config (processor_config.json or preprocessor_config.json), tokenizer "
                "files and a chat template; copy them from the base Qwen3-VL checkpoint."
            ) from error
        if _is_real_processor(processor):
            return processor

    raise ValueError(
        f"Could not load an image+text processor for {source!r}: {found} (declared processor_class: "
        f"{declared!r}), and a Qwen3-VL model needs an image processor too. Save the processor next to the "
        "model with `load_processor(<base checkpoint>).save_pretrained(<dir>)`, or copy the base Qwen3-VL "
        "checkpoint's processor_config.json / preprocessor_config.json, tokenizer files and chat template "
        "into the directory."
    )


def sample_inputs(processor, question: str = "What shapes and colours are in the picture?", image_size: int = 224):
    """A one-image prompt with a drawn picture (no download)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (image_size, image_size), "white")
    draw = ImageDraw.Draw(image)
    s = image_size
    draw.rectangle([s // 8, s // 8, s // 2, s // 2], fill="red")
    draw.ellipse([s // 2, s // 2, 7 * s // 8, 7 * s // 8], fill="blue")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return dict(processor(text=[text], images=[[image]], return_tensors="pt"))


def prompt_lengths(processor, texts: list[str], image_sizes: list[list[tuple[int, int]]], *,
                   min_pixels: int | None = None, max_pixels: int | None = None, batch_size: int = 256) -> list[int]:
    """The number of tokens each prompt becomes through `processor`, counted without processing any pixel.

    Args:
        texts: each prompt through the chat template (one image placeholder per image).
        image_sizes: each prompt's images as (width, height).
        min_pixels, max_pixels: the resolution the images are processed at (default: the processor's).

    Each image's single placeholder token becomes its number of image tokens at that resolution (what the
    processor's `smart_resize` gives: patches / merge_size**2).
    """
    image_processor, tokenizer = processor.image_processor, processor.tokenizer
    size_kwargs = {key: value for key, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels))
                   if value is not None}
    merge = image_processor.merge_size
    lengths = []
    for start in range(0, len(texts), batch_size):
        ids = tokenizer(texts[start:start + batch_size], add_special_tokens=False)["input_ids"]
        for tokens, sizes in zip(ids, image_sizes[start:start + batch_size]):
            extra = sum(image_processor.get_number_of_image_patches(height, width, size_kwargs) // merge**2 - 1
                        for width, height in sizes)
            lengths.append(len(tokens) + extra)
    return lengths
