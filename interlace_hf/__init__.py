"""interlace-hf: INTERLACE layer pruning and efficient adaptation for Qwen3-VL (CVPR 2026), for Hugging Face.

The data flow is the module list:
    data -> similarity -> selection (plan) -> surgery (pruned model) -> fine-tuning -> save / card / push -> eval

`import interlace_hf` registers the Interlace model classes and the image-only processor with the transformers
Auto classes, so `AutoModelForImageTextToText.from_pretrained` and `AutoProcessor.from_pretrained` load our
checkpoints. The `interlace-hf` command line defers that (it imports torch) until a command needs a model, so
`interlace-hf --help` stays fast.
"""

import os
import sys

from .version import __version__

_LAZY = {
    "Plan": ".plan",
    "prune_model": ".surgery",
    "save_pruned": ".export",
    "load_model": ".export",
    "build_tiny_model": ".tiny",
    "load_processor": ".processing",
    "InterlaceQwen3VLConfig": ".modeling",
    "InterlaceQwen3VLForConditionalGeneration": ".modeling",
    "InterlaceQwen3VLProcessor": ".processing",
}


def register() -> None:
    """Register the Interlace classes with transformers' Auto classes (idempotent)."""
    from .modeling import register_auto_classes
    from .processing import register_processor

    register_auto_classes()
    register_processor()


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _launched_as_cli() -> bool:
    # The console script (`interlace-hf ...`) and `python -m interlace_hf...` register on demand instead.
    return os.path.basename(sys.argv[0] if sys.argv else "") == "interlace-hf" or (sys.argv[:1] == ["-m"])


if not _launched_as_cli() and not os.environ.get("INTERLACE_HF_NO_REGISTER"):
    register()

__all__ = ["__version__", "register", *_LAZY]
