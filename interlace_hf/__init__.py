"""interlace-hf: INTERLACE layer pruning and efficient adaptation for Qwen3-VL (CVPR 2026), for Hugging Face.

The data flow is the module list:
    data -> similarity -> selection (plan) -> surgery (pruned model) -> fine-tuning -> save / card / push -> eval

`import interlace_hf` is cheap and imports no torch: the pure core (plan, selection, card, args) works without it.
The Interlace model classes and the image-only processor are registered with the transformers Auto classes when
the model side is first used: by `interlace_hf.register()`, by every interlace-hf loader (`load_model`,
`load_processor`, the commands), or on first access to a model / processor class through this package. After
that, `AutoModelForImageTextToText.from_pretrained` and `AutoProcessor.from_pretrained` load our checkpoints with
no remote code. (Without interlace-hf, `trust_remote_code=True` does the same: the code ships with them.)
"""

from .version import __version__

_LAZY = {
    "Plan": ".plan",
    "prune_model": ".surgery",
    "save_pruned": ".checkpoint",
    "load_model": ".checkpoint",
    "build_tiny_model": ".testing.tiny",
    "load_processor": ".processing",
    "InterlaceQwen3VLConfig": ".modeling",
    "InterlaceQwen3VLForConditionalGeneration": ".modeling",
    "InterlaceQwen3VLProcessor": ".processing",
}
# Names whose use means the model side is in play: reaching them registers the Auto classes first.
_REGISTERING = {"prune_model", "save_pruned", "load_model", "load_processor", "InterlaceQwen3VLConfig",
                "InterlaceQwen3VLForConditionalGeneration", "InterlaceQwen3VLProcessor"}


def register() -> None:
    """Register the Interlace classes with transformers' Auto classes (idempotent; imports torch)."""
    from .modeling import register_auto_classes
    from .processing import register_processor

    register_auto_classes()
    register_processor()


def __getattr__(name):
    if name in _LAZY:
        import importlib

        if name in _REGISTERING:
            register()
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["__version__", "register", *_LAZY]
