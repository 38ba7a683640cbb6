"""Timing and memory: TTFT, prefill and decode speed of several models in interleaved rounds, and the peak memory of
one `generate` call (CUDA max allocated, or sampled RSS on CPU); the device and versions a run records."""

from __future__ import annotations

import gc
import logging
import os
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from ..utils.runtime import DTYPES

logger = logging.getLogger(__name__)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory above the level at entry: CUDA max allocated, or sampled RSS on CPU."""

    def __init__(self, device: str):
        self.device = device
        self.peak = 0

    def __enter__(self):
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            self.start = _rss_bytes()
            self._stop = threading.Event()
            self._max = self.start
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self._max = max(self._max, _rss_bytes())
            time.sleep(0.0002)

    def __exit__(self, *exc):
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.start
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self._max, _rss_bytes()) - self.start


def torch_device_of(device: str):
    import torch

    from ..utils.runtime import resolve_device

    return torch.device(resolve_device(device))


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {name} ({torch.get_num_threads()} threads)"


def run_versions(device) -> dict[str, str]:
    import torch

    from ..version import package_versions

    cuda = {"cuda": str(torch.version.cuda)} if device.type == "cuda" else {}
    return {**package_versions("torch", "transformers"), **cuda}


def _generation_config(tokenizer, new_tokens: int):
    from transformers import GenerationConfig

    return GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, use_cache=True,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def _timed_generate(model, inputs: dict, generation_config, device) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    output = model.generate(**inputs, generation_config=generation_config)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    expected = inputs["input_ids"].shape[1] + generation_config.max_new_tokens
    if output.shape[1] != expected:
        raise RuntimeError(f"generate returned {output.shape[1]} tokens, expected {expected}; the timing is invalid.")
    return seconds


def _release_freed_memory() -> None:
    """Hand memory freed by earlier calls back to the OS (glibc), so that the RSS peak of the next call counts all of
    its allocations, not only those the allocator could not serve from what it kept."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _median(samples: list) -> float | None:
    valid = [s for s in samples if s is not None]
    return statistics.median(valid) if valid else None


def safe_ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def _timed_prefill(model, inputs: dict, device) -> float:
    """One forward pass over the prompt (KV cache on, logits of the last position only) and its greedy token."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    with torch.inference_mode():
        model(**inputs, use_cache=True, logits_to_keep=1).logits[:, -1].argmax(-1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure_models(models: list[tuple[str, Any]], inputs: dict, tokenizer, *, new_tokens: int, repeats: int,
                   warmup: int, device, memory: bool = True, progress: bool = True) -> list[dict]:
    """TTFT, decode speed and (with `memory`) peak memory of each `(name, model)`, in interleaved rounds.

    Returns one dict per model: `ttft_ms`, `prefill_ms`, `decode_tokens_per_s` (each `{"median", "samples"}`) and,
    with `memory`,
    `peak_extra_bytes` (above the level at entry of a `generate(new_tokens)` call) and `peak_memory_bytes`
    (weights + that peak).
    """
    import torch

    inputs = {key: value.to(device) for key, value in inputs.items()}
    first = _generation_config(tokenizer, 1)
    full = _generation_config(tokenizer, new_tokens)
    ttft = {name: [] for name, _ in models}
    prefill = {name: [] for name, _ in models}
    decode = {name: [] for name, _ in models}
    from tqdm.auto import tqdm

    rounds = tqdm(range(warmup + repeats), desc=f"bench: {len(models)} model(s), {warmup} warm-up + {repeats} rounds",
                  unit="round", disable=not progress)
    for round_index in rounds:
        # The order turns by one each round, so no model always runs first or right after the same other model.
        shift = round_index % len(models)
        for name, model in models[shift:] + models[:shift]:
            t_first = _timed_generate(model, inputs, first, device)
            t_prefill = _timed_prefill(model, inputs, device)
            t_full = _timed_generate(model, inputs, full, device)
            if round_index >= warmup:
                ttft[name].append(1000 * t_first)
                prefill[name].append(1000 * t_prefill)
                # A noisy pair of calls (a cold first call) can make the difference negative: no sample then.
                decode[name].append((new_tokens - 1) / (t_full - t_first) if t_full > t_first else None)
        warm = " (warm-up)" if round_index < warmup else ""
        logger.debug("round %d/%d done%s", round_index + 1, warmup + repeats, warm)
    for name, _ in models:
        if min(ttft[name]) > 0 and max(ttft[name]) / min(ttft[name]) > 1.5:
            logger.warning("the TTFT samples of %s range from %.1f to %.1f ms: the machine was busy or not warm; "
                           "take the numbers with care, or rerun with more --repeats / --warmup",
                           name, min(ttft[name]), max(ttft[name]))
    results = []
    for name, model in models:
        row = {
            "ttft_ms": {"median": statistics.median(ttft[name]), "samples": ttft[name]},
            "prefill_ms": {"median": statistics.median(prefill[name]), "samples": prefill[name]},
            "decode_tokens_per_s": {"median": _median(decode[name]), "samples": decode[name]},
        }
        if memory:
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            else:
                _release_freed_memory()
            with PeakMemory(str(device)) as peak:
                _timed_generate(model, inputs, full, device)
            weights = sum(p.numel() * p.element_size() for p in model.parameters())
            row["peak_extra_bytes"] = int(peak.peak)
            row["peak_memory_bytes"] = int(weights + peak.peak)
        results.append(row)
    return results


ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")


def check_attn_implementation(name: str | None) -> None:
    """Refuse an attention kernel transformers cannot use here, before any model is built."""
    if name is None:
        return
    if name not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"--attn-implementation must be one of {', '.join(ATTN_IMPLEMENTATIONS)}, got {name!r}.")
    if name == "flash_attention_2":
        from transformers.utils import is_flash_attn_2_available

        if not is_flash_attn_2_available():
            raise ValueError("--attn-implementation flash_attention_2 needs the flash-attn package and a CUDA GPU it "
                             "supports (`pip install flash-attn --no-build-isolation`); use sdpa (the default) or eager.")


def validate_settings(image_size, prompt_tokens, new_tokens, repeats, warmup, dtype) -> None:
    for name, flag, value, low in (
        ("image_size", "--image-size", image_size, 32),
        ("prompt_tokens", "--prompt-tokens", prompt_tokens, 1),
        ("new_tokens", "--new-tokens", new_tokens, 2),
        ("repeats", "--repeats", repeats, 1),
        ("warmup", "--warmup", warmup, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            why = {
                "image_size": "a Qwen3-VL image is at least one 32x32 merged patch",
                "new_tokens": "the decode speed is measured over the tokens after the first",
                "repeats": "each model must be measured at least once",
            }.get(name, "")
            raise ValueError(f"{flag} must be an integer >= {low}, got {value!r}" + (f" ({why})." if why else "."))
    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}.")
