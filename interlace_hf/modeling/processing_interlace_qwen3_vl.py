"""An image-only Qwen3-VL processor (no video processor, so no torchvision needed).

Shipped next to checkpoints whose processor it is (remote code: `auto_map` in `processor_config.json`), so
`AutoProcessor.from_pretrained(dir, trust_remote_code=True)` builds it where interlace-hf is not installed.
Imports only transformers.
"""

from transformers import Qwen3VLProcessor


class InterlaceQwen3VLProcessor(Qwen3VLProcessor):
    """A `Qwen3VLProcessor` for images and text only; it has no video processor.

    Its `__init__` names only `image_processor` and `tokenizer`, which is how `ProcessorMixin` finds
    the sub-processors to load and save, so no video processor is ever loaded or written.

    Args:
        image_processor ([`Qwen2VLImageProcessor`] or [`Qwen2VLImageProcessorPil`], *optional*):
            Turns images into `pixel_values` and `image_grid_thw`.
        tokenizer ([`Qwen2TokenizerFast`], *optional*):
            Must know `<|image_pad|>`, `<|video_pad|>`, `<|vision_start|>` and `<|vision_end|>`.
        chat_template (`str`, *optional*):
            Jinja template for `apply_chat_template`.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=None,
            chat_template=chat_template,
            **kwargs,
        )

    def __call__(self, images=None, text=None, videos=None, audio=None, **kwargs):
        # Without this check the stock code would skip the videos (there is no video processor) and
        # fail later on a count of <|video_pad|> tokens.
        if videos is not None:
            raise ValueError(
                "InterlaceQwen3VLProcessor handles images and text only, but `videos` were given. "
                "Pass the frames as images, or load the stock Qwen3VLProcessor (it needs torchvision)."
            )
        return super().__call__(images=images, text=text, audio=audio, **kwargs)


__all__ = ["InterlaceQwen3VLProcessor"]
