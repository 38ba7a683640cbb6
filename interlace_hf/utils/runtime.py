"""Where a stage runs: the device and the dtype, resolved the same way by every command (similarity, eval, bench,
testbed, the lmms-eval plugin). Imports torch when called, not when imported."""

from __future__ import annotations

import re

_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_device(device: str) -> str:
    """`auto` -> `cuda` where torch sees a GPU, else `cpu`. `cpu`, `cuda`, `cuda:N` and `mps` are taken as given,
    except a CUDA device on a machine without one, which is refused (before any weight is loaded)."""
    import torch

    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ValueError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {device!r}.")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available here; pass --device cpu (or auto).")
    return device


def resolve_dtype(dtype: str, device: str):
    """`auto` -> bfloat16 on a CUDA device that supports it, else float32; or the named dtype."""
    import torch

    if dtype == "auto":
        if str(device).startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"--dtype must be auto, float32, bfloat16 or float16, got {dtype!r}.") from None
