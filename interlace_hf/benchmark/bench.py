"""`interlace-hf bench`: speed and memory of a base Qwen3-VL and its pruned versions, measured in one run.

What is measured, for every model, on one image + text prompt (the same for all models):

- time to first token (TTFT): `generate(max_new_tokens=1)` on the prepared inputs: vision encoder, prefill of the
  whole prompt, lm_head and the first greedy token (CUDA synchronised before and after; processing the image and
  text into tensors is done once, before, and not timed);
- prefill time: one forward pass over the prompt (KV cache on, last position's logits) and its argmax: the TTFT
  without `generate`'s own per-call overhead, the number closest to what the FLOP count predicts;
- decode speed: `generate(max_new_tokens=N, min_new_tokens=N)`, greedy, KV cache, in
  `(N - 1) / (time of that call - TTFT of the same round)` tokens per second;
- peak memory: the model's weights plus the peak above the level at entry of one such `generate(N)` call, measured
  in its own pass after the timed rounds (CUDA: max allocated; CPU: sampled RSS, whose sampling thread would steal
  CPU time from a timed call);
- parameter count and decoder layers, and the ideal TTFT speed-up from counted FLOPs (`interlace_hf.benchmark.flops`).

Rounds are interleaved: after `warmup` discarded rounds, each of `repeats` rounds measures every model once, so a
drift of the machine (clocks, other load) hits all models alike. Medians are reported with every sample.

The models are checkpoints (directories or Hub ids), or, with `random_weights`, built from a config with random
weights and nothing downloaded: the base from the config, each pruned variant by `prune_model` on a structural copy
of that base that shares its weight tensors (memory for one model; which layers are dropped does not change the
speed). The tiny tokenizer stands in for Qwen's: its ids are a subset of the real vocabulary's range.

The module also keeps the helpers of the benchmark scripts (`PeakMemory`, `build_random_model`, `benchmark_model`).
"""

from __future__ import annotations

import copy
import gc
import itertools
import json
import logging
import os
import platform
import shlex
import statistics
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..card import BENCH_FILE, format_bytes, format_parameters
from ..utils.fileio import write_json_atomic
from .flops import parameter_count
from ..utils.runtime import DTYPES

logger = logging.getLogger(__name__)

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
RESULTS_FORMAT = 1


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


def build_random_model(directory: Path, hidden: int, layers: int, image_side: int) -> Path:
    """The tiny model's structure at a real width (random weights), with images up to `image_side` pixels."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    from interlace_hf.testing.tiny import build_tiny_processor, tiny_config

    processor = build_tiny_processor()
    processor.image_processor.size = {"shortest_edge": 32 * 32, "longest_edge": image_side * image_side}
    config = tiny_config(layers, processor.tokenizer)
    text = config.text_config
    text.hidden_size, text.intermediate_size, text.head_dim = hidden, 3 * hidden, 64
    text.num_attention_heads, text.num_key_value_heads = hidden // 64, max(1, hidden // 256)
    text.rope_parameters["mrope_section"] = [16, 8, 8]
    config.vision_config.out_hidden_size = hidden
    torch.manual_seed(0)
    Qwen3VLForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory




def benchmark_model(directory: Path, hidden_size: int = 0, num_layers: int = 12, image_side: int = 224) -> Path:
    """The model a benchmark runs on when none is given: the tiny one, or (`hidden_size`) a wider random one."""
    if hidden_size:
        return build_random_model(directory, hidden_size, num_layers, image_side)
    from ..testing.tiny import build_tiny_model

    return build_tiny_model(directory, num_layers=num_layers)


# --- configs ---------------------------------------------------------------------------------------------------------
def shipped_configs() -> list[str]:
    """Names of the configs shipped in `interlace_hf/configs/` (`qwen3-vl-8b`, `qwen3-vl-4b`)."""
    return sorted(path.stem for path in CONFIGS_DIR.glob("*.json"))


def load_config_dict(config: str | os.PathLike) -> dict:
    """A Qwen3-VL config dict from a config.json, a model directory holding one, or the name of a shipped config."""
    from ..checkpoint import SUPPORTED_MODEL_TYPES

    path = Path(config).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        if str(config) not in shipped_configs():
            raise ValueError(
                f"--config {str(config)!r} is neither a config.json file nor a shipped config; pass the path of a "
                f"Qwen3-VL config.json or one of {', '.join(shipped_configs())}."
            )
        path = CONFIGS_DIR / f"{config}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--config {str(path)!r} is not a readable JSON file ({err}).") from None
    if not isinstance(data, dict) or data.get("model_type") not in SUPPORTED_MODEL_TYPES:
        model_type = data.get("model_type") if isinstance(data, dict) else None
        raise ValueError(
            f"--config {str(path)!r} has model_type {model_type!r}; interlace-hf benchmarks Qwen3-VL models "
            f"(model_type {' or '.join(SUPPORTED_MODEL_TYPES)}), e.g. --config qwen3-vl-8b."
        )
    if not isinstance(data.get("text_config"), dict) or not isinstance(data.get("vision_config"), dict):
        raise ValueError(
            f"--config {str(path)!r} needs a `text_config` and a `vision_config`, like a Qwen3-VL config.json."
        )
    return data


# --- what to measure -------------------------------------------------------------------------------------------------
def _parse_ratio(entry: str) -> float | None:
    text = entry.strip().lower()
    scale = 1.0
    for suffix in ("pc", "%"):
        if text.endswith(suffix):
            text, scale = text[: -len(suffix)], 0.01
            break
    try:
        value = float(text) * scale
    except ValueError:
        return None
    return value


def spaced_plan(num_layers: int, drop_ratio: float | None = None, num_drop: int | None = None, seed: int = 0):
    """A plan that drops `floor(num_layers * drop_ratio)` (or `num_drop`) layers chosen at random among layers 3..
    (not the deepstack layers 0-2, which INTERLACE's plans on Qwen3-VL rarely drop); speed does not depend on which
    layers go. Uses the `random` strategy of `select_layers` with a fixed seed."""
    from ..tables import SimilarityTables
    from ..selection import num_to_drop, select_layers

    n = num_to_drop(num_layers, drop_ratio, num_drop)
    protected = range(3) if num_layers - 3 >= n else ()
    return select_layers(SimilarityTables(num_layers, {}), "random", drop_ratio=drop_ratio, num_drop=num_drop,
                         seed=seed, protected_layers=protected)


def random_variants(entries: list[str], num_layers: int) -> list[tuple[str, Any]]:
    """`(name, plan or None)` for each `--random-weights` model entry, the base first.

    Entries: `base`, a drop ratio (`0.25`, `25pc`, `25%`) or a plan.json made for a `num_layers`-layer model. The base
    is always measured, first, whether or not it is listed.
    """
    from ..plan import Plan

    variants: list[tuple[str, Any]] = [("base", None)]
    for entry in entries:
        entry = str(entry)
        if entry.strip().lower() == "base":
            continue
        path = Path(entry).expanduser()
        if path.suffix == ".json" or path.exists():
            plan = Plan.load(path)
            if plan.num_layers != num_layers:
                raise ValueError(
                    f"plan {entry!r} is for a {plan.num_layers}-layer model but the --config model has {num_layers} "
                    "decoder layers; pass a plan made for that config."
                )
            variants.append((entry, plan))
            continue
        ratio = _parse_ratio(entry)
        if ratio is None or not 0 < ratio < 1:
            raise ValueError(
                f"--random-weights model entries are `base`, a drop ratio in (0, 1) (0.25, 25pc or 25%) or a "
                f"plan.json; got {entry!r}."
            )
        variants.append((f"{100 * ratio:g}pc", spaced_plan(num_layers, ratio)))
    names = [name for name, _ in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"the models to benchmark repeat: {names}; list each drop ratio or plan once.")
    return variants


def _validate_settings(image_size, prompt_tokens, new_tokens, repeats, warmup, dtype) -> None:
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


def _resolve_device(device: str):
    import torch

    from ..utils.runtime import resolve_device

    return torch.device(resolve_device(device))


def _device_name(device) -> str:
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


def _versions(device) -> dict[str, str]:
    import torch

    from ..version import package_versions

    cuda = {"cuda": str(torch.version.cuda)} if device.type == "cuda" else {}
    return {**package_versions("torch", "transformers"), **cuda}


def bench_command(models: list[str], **settings) -> str:
    """The `interlace-hf bench` command line that reproduces a run (flags that are off or None are left out)."""
    parts = ["interlace-hf", "bench", *[str(m) for m in models]]
    for key, value in settings.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts += [flag, *[str(v) for v in value]]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


# --- the prompt ------------------------------------------------------------------------------------------------------
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
    from ..verify import sample_inputs

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


# --- models ----------------------------------------------------------------------------------------------------------
def _torch_dtype(dtype: str, device):
    from ..utils.runtime import resolve_dtype

    return resolve_dtype(dtype, str(device))


def available_memory(device) -> int | None:
    """Bytes free for new tensors on `device`: CUDA's free memory, or the OS's MemAvailable (None if unknown)."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_memory_for(config: dict, dtype, device) -> None:
    """Refuse, before building anything, a random-weight model that cannot fit: its weights (the variants share them)
    plus 10% for activations. The 8B shape needs ~35 GB in float32, ~17.5 GB in bfloat16."""
    import torch

    needed = int(parameter_count(config)["total"] * torch.empty((), dtype=dtype).element_size() * 1.1)
    free = available_memory(device)
    if free is not None and needed > free:
        raise ValueError(
            f"the random-weight model needs about {needed / 2**30:.1f} GiB on {device} ({dtype}) but only "
            f"{free / 2**30:.1f} GiB is free: use --dtype bfloat16 (half of float32), a smaller --config "
            "(qwen3-vl-4b), or a machine with more memory.")


def build_random_qwen3_vl(config: dict, *, device, dtype, seed: int = 0):
    """A stock `Qwen3VLForConditionalGeneration` with random weights, built directly on `device` in `dtype`."""
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    if config.get("model_type") != "qwen3_vl":
        raise ValueError(
            f"--random-weights builds the dense model from its config; this config has model_type "
            f"{config.get('model_type')!r}. Pass the base model's config (model_type qwen3_vl)."
        )
    hf_config = Qwen3VLConfig.from_dict(copy.deepcopy(config))
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        model = Qwen3VLForConditionalGeneration._from_config(hf_config, dtype=dtype)
    return model.eval()


def shared_weight_copy(model):
    """A copy of `model` whose modules are new objects but whose parameters and buffers are the same tensors.

    `prune_model` on the copy renumbers and re-classes the copy's modules only; the original keeps working.
    """
    memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo)


def _model_row(model) -> dict:
    from ..checkpoint import current_kept_layers, original_num_layers

    config = model.config
    params = list(model.parameters())
    kept = current_kept_layers(config)
    original = original_num_layers(config)
    row = {
        "class": type(model).__name__,
        "layers": int(config.text_config.num_hidden_layers),
        "original_layers": original,
        "dropped_layers": [i for i in range(original) if i not in kept],
        "parameters": sum(p.numel() for p in params),
        "weight_bytes": sum(p.numel() * p.element_size() for p in params),
        "dtype": str(params[0].dtype).removeprefix("torch."),
        "attn_implementation": {
            "text": getattr(config.text_config, "_attn_implementation", None),
            "vision": getattr(config.vision_config, "_attn_implementation", None),
        },
    }
    return row


# --- measuring -------------------------------------------------------------------------------------------------------
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


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
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
        logger.info("round %d/%d done%s", round_index + 1, warmup + repeats, warm)
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


# --- stock vs Interlace ----------------------------------------------------------------------------------------------
def stock_vs_interlace(config: dict | str, num_layers: int | None = None, *, image_size: int = 448,
                       prompt_tokens: int = 64, new_tokens: int = 32, repeats: int = 5, warmup: int = 1,
                       dtype: str = "auto", device: str = "auto") -> dict:
    """Does the Interlace model class cost time? Compare it with a stock Qwen3-VL of the same depth (random weights).

    Builds the config's dense L-layer model and prunes it (shared weights) to `num_layers` = N layers twice: once
    dropping no deepstack layer (the Interlace forward then does what the stock one does) and once dropping layer 1
    (deepstack features regrouped: the Interlace model's own code path). Both are timed against a stock
    `Qwen3VLForConditionalGeneration` built from the same config with N layers, rounds interleaved.

    Args:
        config: a Qwen3-VL config dict, config.json path or shipped config name (the dense model).
        num_layers: depth N of the compared models; default L - L // 4 (at least one layer dropped).
        image_size, prompt_tokens, new_tokens, repeats, warmup, dtype, device: as for `run_bench`.

    Returns:
        `{"num_layers", "base_layers", "stock": {...}, "variants": [{"name", "dropped_layers", "ttft_ms",
        "prefill_ms", "decode_tokens_per_s", "ttft_ratio", "prefill_ratio", "decode_ratio"}]}`; `ttft_ratio` =
        Interlace TTFT / stock TTFT (`prefill_ratio` likewise) and `decode_ratio` = stock tokens/s / Interlace
        tokens/s, so above 1 means the Interlace model is slower.
    """
    _validate_settings(image_size, prompt_tokens, new_tokens, repeats, warmup, dtype)
    config = load_config_dict(config) if not isinstance(config, dict) else config
    depth = int(config["text_config"]["num_hidden_layers"])
    n = depth - max(1, depth // 4) if num_layers is None else num_layers
    if isinstance(n, bool) or not isinstance(n, int) or not 3 <= n < depth:
        raise ValueError(
            f"the stock comparison needs a depth in 3..{depth - 1} for this {depth}-layer config (the compared models "
            f"keep layers 0-2 and drop at least one), got num_layers={n!r}."
        )
    from .flops import with_num_layers
    from ..plan import Plan
    from ..surgery import prune_model

    torch_device = _resolve_device(device)
    torch_dtype = _torch_dtype(dtype, torch_device)
    processor, config = _random_processor(config)
    inputs, info = build_prompt(processor, image_size, prompt_tokens, config["vision_config"])

    k = depth - n
    spaced = spaced_plan(depth, num_drop=k).dropped_layers
    rest = [i for i in spaced if i != 1][: k - 1]
    plans = {
        "interlace": Plan.from_dropped(depth, sorted(spaced)),
        "interlace-deepstack-regrouped": Plan.from_dropped(depth, sorted([1, *rest])),
    }
    dense = build_random_qwen3_vl(config, device=torch_device, dtype=torch_dtype)
    models = [("stock", build_random_qwen3_vl(with_num_layers(config, n), device=torch_device, dtype=torch_dtype))]
    for name, plan in plans.items():
        models.append((name, prune_model(shared_weight_copy(dense), plan)))
    measured = measure_models(models, inputs, processor.tokenizer, new_tokens=new_tokens, repeats=repeats,
                              warmup=warmup, device=torch_device, memory=False)
    stock = {"class": type(models[0][1]).__name__, **measured[0]}
    variants = []
    for (name, model), row in zip(models[1:], measured[1:]):
        variant = {
            "name": name,
            "class": type(model).__name__,
            "dropped_layers": list(plans[name].dropped_layers),
            **row,
            "ttft_ratio": row["ttft_ms"]["median"] / stock["ttft_ms"]["median"],
            "prefill_ratio": row["prefill_ms"]["median"] / stock["prefill_ms"]["median"],
            "decode_ratio": _ratio(stock["decode_tokens_per_s"]["median"], row["decode_tokens_per_s"]["median"]),
        }
        if variant["ttft_ratio"] > 1.05:
            logger.warning("the Interlace model (%s) took %.1f%% longer to the first token than a stock Qwen3-VL "
                           "of the same depth", name, 100 * (variant["ttft_ratio"] - 1))
        variants.append(variant)
    return {"num_layers": n, "base_layers": depth, "device": _device_name(torch_device),
            "dtype": str(torch_dtype).removeprefix("torch."), "prompt": info, "stock": stock, "variants": variants}


def _random_processor(config: dict):
    """The tiny processor, and a copy of `config` whose image / video / vision token ids are the tiny tokenizer's."""
    from ..testing.tiny import build_tiny_processor

    processor = build_tiny_processor()
    token_id = processor.tokenizer.convert_tokens_to_ids
    config = copy.deepcopy(config)
    config.update(image_token_id=token_id("<|image_pad|>"), video_token_id=token_id("<|video_pad|>"),
                  vision_start_token_id=token_id("<|vision_start|>"), vision_end_token_id=token_id("<|vision_end|>"))
    return processor, config


# --- the benchmark ---------------------------------------------------------------------------------------------------
def run_bench(
    models: list[str],
    *,
    image_size: int = 448,
    prompt_tokens: int = 64,
    new_tokens: int = 32,
    repeats: int = 5,
    warmup: int = 1,
    dtype: str = "auto",
    device: str = "auto",
    random_weights: bool = False,
    config: str | None = None,
    output: str | None = None,
    plans: list[str] | None = None,
    compare_stock: bool = False,
    write_model_results: bool = False,
    command: str | None = None,
) -> dict:
    """Measure a base Qwen3-VL and its pruned versions in one run (see the module docstring for what and how).

    Args:
        models: checkpoints (local directories or Hub ids), the base first: speed-ups are relative to `models[0]`.
            With `random_weights`: entries `base`, drop ratios (`0.25`, `25pc`, `25%`) or plan.json files; the base
            is always measured first, built from `config`.
        image_size: side of the square drawn image, in pixels (not downscaled: the processor's max_pixels is raised).
        prompt_tokens: about this many tokens of question text (chat template and image tokens come on top).
        new_tokens: tokens generated for the decode speed (>= 2).
        repeats: measured rounds (each measures every model once); medians are reported.
        warmup: rounds run first and discarded.
        dtype: `auto` (checkpoints: their own dtype; random weights: bfloat16 on CUDA, float32 on CPU), `float32`,
            `bfloat16` or `float16`.
        device: `auto` (CUDA when there is one), `cpu`, `cuda` or `cuda:N`.
        random_weights: build the models from `config` with random weights (nothing is downloaded).
        config: with `random_weights`, the base model's config.json or a shipped name (`qwen3-vl-8b`, `qwen3-vl-4b`).
            Without `config`, `models[0]` is taken as the config.
        output: where to write the results JSON.
        plans: more plan.json files for `random_weights` (the same as listing them in `models`).
        compare_stock: also time the Interlace class against a stock Qwen3-VL of the same depth (`stock_vs_interlace`
            on the base config, random weights) and add it as `stock_vs_interlace`.
        write_model_results: write `bench_results.json` (what the model card shows) into every pruned checkpoint
            directory after the first model. Off by default: a benchmark does not change checkpoints unless asked,
            and the card's "x faster" line is only right when `models[0]` is the base the checkpoint was pruned from.
        command: the command line to record; default: the equivalent `interlace-hf bench ...` line.

    Returns:
        The results dict that is also written to `output` (see docs/benchmarks.md for the fields).
    """
    from .flops import prefill_flops

    _validate_settings(image_size, prompt_tokens, new_tokens, repeats, warmup, dtype)
    models = [str(m) for m in (models or [])]
    plans = [str(p) for p in (plans or [])]
    if config is not None and not random_weights:
        raise ValueError("--config names the model to build with random weights; pass --random-weights too, or list "
                         "checkpoint directories instead.")
    if plans and not random_weights:
        raise ValueError("--plans are applied to a model built with --random-weights; for checkpoints, prune them "
                         "with `interlace-hf prune` and list the pruned directories.")
    if random_weights and write_model_results:
        raise ValueError("--write-model-results writes measured speed into pruned checkpoints; with --random-weights "
                         "there are none. Drop one of the two flags.")
    if command is None:
        command = bench_command(models + plans, image_size=image_size, prompt_tokens=prompt_tokens,
                                new_tokens=new_tokens, repeats=repeats, warmup=warmup, dtype=dtype, device=device,
                                random_weights=random_weights, config=config, output=output,
                                compare_stock=compare_stock, write_model_results=write_model_results)

    if random_weights:
        if config is None:
            if not models:
                raise ValueError("--random-weights needs --config CONFIG.json (or a shipped name: "
                                 f"{', '.join(shipped_configs())}).")
            config, models = models[0], models[1:]
        base_config = load_config_dict(config)
        variants = random_variants(models + plans, int(base_config["text_config"]["num_hidden_layers"]))
    else:
        if not models:
            raise ValueError("list the models to benchmark: the base first, e.g. `interlace-hf bench BASE PRUNED`.")
        if len(set(models)) != len(models):
            raise ValueError(f"the models to benchmark repeat: {models}; list each once.")
        checkpoint_configs = _check_checkpoints(models, write_model_results)
        depths = [int(c["text_config"]["num_hidden_layers"]) for c in checkpoint_configs]
        deeper = [f"{m} ({d} layers)" for m, d in zip(models[1:], depths[1:]) if d > depths[0]]
        if deeper:
            logger.warning("speed-ups are measured against the FIRST model, %s (%d layers), and %s %s more layers: "
                           "a deeper model will show as slower than this 'base'. List the dense base first.",
                           models[0], depths[0], ", ".join(deeper), "has" if len(deeper) == 1 else "have")
        if compare_stock and (checkpoint_configs[0].get("model_type") != "qwen3_vl"
                              or "interlace" in checkpoint_configs[0]):
            raise ValueError(f"--compare-stock builds random models from the first model's config, which must be a "
                             f"dense Qwen3-VL; {models[0]!r} is a pruned checkpoint. List the dense base first.")

    torch_device = _resolve_device(device)  # checked before anything is loaded
    if random_weights:
        torch_dtype = _torch_dtype(dtype, torch_device)
        check_memory_for(base_config, torch_dtype, torch_device)
        processor, base_config = _random_processor(base_config)
        inputs, prompt = build_prompt(processor, image_size, prompt_tokens, base_config["vision_config"])
        from ..surgery import prune_model

        base = build_random_qwen3_vl(base_config, device=torch_device, dtype=torch_dtype)
        loaded = [(name, base if plan is None else prune_model(shared_weight_copy(base), plan,
                                                                base_model=str(config)))
                  for name, plan in variants]
        del base  # the variants share its weights; `loaded` holds them all
        sources = [str(config) if plan is None else f"{config} pruned by {plan.describe()}" for _, plan in variants]
    else:
        from .. import register
        from ..checkpoint import load_model
        from ..processing import load_processor

        register()
        processor = load_processor(models[0])
        inputs, prompt = build_prompt(processor, image_size, prompt_tokens, checkpoint_configs[0]["vision_config"])
        device_map = str(torch_device) if torch_device.type == "cuda" else None
        loaded = [(m, load_model(m, dtype=dtype, device_map=device_map).eval()) for m in models]
        sources = list(models)

    rows = measure_models(loaded, inputs, processor.tokenizer, new_tokens=new_tokens, repeats=repeats, warmup=warmup,
                          device=torch_device)
    base_flops = None
    results_models = []
    for (name, model), source, row in zip(loaded, sources, rows):
        flops = prefill_flops(model.config.to_dict(), prompt["text_tokens"], image_size)
        if flops["image_tokens"] != prompt["image_tokens"]:
            logger.warning("the processor made %d image tokens, the FLOP count assumes %d",
                           prompt["image_tokens"], flops["image_tokens"])
        base_flops = base_flops or flops["total"]
        results_models.append({"name": name, "source": source, **_model_row(model), **row,
                               "prefill_flops": flops["total"], "ideal_speedup": base_flops / flops["total"]})
    base_row = results_models[0]
    for row in results_models:
        row["speedup"] = {
            "ttft": base_row["ttft_ms"]["median"] / row["ttft_ms"]["median"],
            "prefill": base_row["prefill_ms"]["median"] / row["prefill_ms"]["median"],
            "decode": _ratio(row["decode_tokens_per_s"]["median"], base_row["decode_tokens_per_s"]["median"]),
        }
    dtypes = sorted({row["dtype"] for row in results_models})
    if len(dtypes) > 1:
        logger.warning("the models run in different dtypes (%s): their speeds are not comparable; pass --dtype",
                       ", ".join(dtypes))
    results = {
        "format": RESULTS_FORMAT,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "device": _device_name(torch_device),
        "device_type": torch_device.type,
        "dtype": dtypes[0] if len(dtypes) == 1 else "mixed: " + ", ".join(dtypes),
        "versions": _versions(torch_device),
        "settings": {"image_size": image_size, "prompt_tokens": prompt_tokens, "new_tokens": new_tokens,
                     "repeats": repeats, "warmup": warmup, "random_weights": random_weights,
                     "config": str(config) if random_weights else None, "compare_stock": compare_stock},
        "prompt": prompt,
        "models": results_models,
        "ideal_speedups": {row["name"]: row["ideal_speedup"] for row in results_models},
        "stock_vs_interlace": None,
        "model_results_written": [],
    }
    del loaded, rows
    gc.collect()
    if compare_stock:
        stock_config = base_config if random_weights else checkpoint_configs[0]
        results["stock_vs_interlace"] = stock_vs_interlace(
            stock_config, image_size=image_size, prompt_tokens=prompt_tokens, new_tokens=new_tokens,
            repeats=repeats, warmup=warmup, dtype=dtype if dtype != "auto" else base_row["dtype"], device=device)
    if write_model_results:
        for model_dir, row in zip(models[1:], results_models[1:]):
            results["model_results_written"].append(str(write_bench_results(model_dir, base_row, row, results)))
    if output:
        write_json_atomic(Path(output), results)
    return results


def _check_checkpoints(models: list[str], write_model_results: bool) -> list[dict]:
    """Read every checkpoint's config.json (Qwen3-VL only) before loading any weights; check `write_model_results`."""
    from ..checkpoint import original_num_layers, read_model_config
    from ..plan import PLAN_FILE, Plan

    configs = [read_model_config(m) for m in models]
    if write_model_results:
        base_depth = int(configs[0]["text_config"]["num_hidden_layers"])
        if original_num_layers(configs[0]) != base_depth:
            raise ValueError(f"--write-model-results: the first model, {models[0]!r}, is itself pruned; list the dense "
                             "base model first, so the speed-up written into each checkpoint is against its base.")
        for model in models[1:]:
            plan_file = Path(model) / PLAN_FILE
            if not plan_file.is_file():
                raise ValueError(f"--write-model-results writes into pruned checkpoint directories, but {model!r} has "
                                 f"no {PLAN_FILE}; list only pruned checkpoints after the base, or drop the flag.")
            plan = Plan.load(plan_file)
            if plan.num_layers != base_depth:
                raise ValueError(f"{model!r} was pruned from a {plan.num_layers}-layer model but the first model, "
                                 f"{models[0]!r}, has {base_depth} layers; list the base it was pruned from first.")
    return configs


def write_bench_results(model_dir: str | os.PathLike, base_row: dict, row: dict, results: dict) -> Path:
    """Write a pruned checkpoint's `bench_results.json`: what its model card shows (`card.py`), plus the details."""
    from ..card import speedup_claim

    record = {
        "base_ttft_ms": base_row["ttft_ms"]["median"],
        "ttft_ms": row["ttft_ms"]["median"],
        "speedup": row["speedup"]["ttft"],
        "device": results["device"],
        "dtype": results["dtype"],
        "date": results["date"],
        "command": results["command"],
        "base_model": base_row["source"],
        "ideal_speedup": row["ideal_speedup"],
        "base_ttft_samples": base_row["ttft_ms"]["samples"],
        "ttft_samples": row["ttft_ms"]["samples"],
        "speedup_claim": speedup_claim(base_row["ttft_ms"]["samples"], row["ttft_ms"]["samples"],
                                       row["ideal_speedup"]),
        "base_decode_tokens_per_s": base_row["decode_tokens_per_s"]["median"],
        "decode_tokens_per_s": row["decode_tokens_per_s"]["median"],
        "decode_speedup": row["speedup"]["decode"],
        "peak_memory_bytes": row.get("peak_memory_bytes"),
        "base_peak_memory_bytes": base_row.get("peak_memory_bytes"),
        "prompt": results["prompt"],
        "settings": results["settings"],
        "versions": results["versions"],
    }
    return write_json_atomic(Path(model_dir) / BENCH_FILE, record)


# --- report ----------------------------------------------------------------------------------------------------------
def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else spec.format(value)


def _ttft_speedup_cell(base_samples: list, row: dict) -> str:
    """The TTFT speed-up with its range over the rounds, or `noisy` when it may not be quoted (`card.speedup_claim`)."""
    from ..card import speedup_claim

    claim = speedup_claim(base_samples, row["ttft_ms"]["samples"])
    if claim["median"] is None:
        return "-"
    if not claim["quotable"]:
        return f"{claim['median']:.2f}x noisy"
    return f"{claim['median']:.2f}x ({claim['low']:.2f}-{claim['high']:.2f})"


def format_bench_table(results: dict) -> str:
    """The results as a text table: medians, and each model's speed-up against the first (measured and ideal)."""
    header = ("model", "layers", "params", "TTFT ms", "speed-up", "prefill ms", "speed-up", "ideal", "decode tok/s",
              "speed-up", "peak mem")
    rows = [header]
    base_ttft = results["models"][0]["ttft_ms"]["samples"]
    for row in results["models"]:
        rows.append((
            row["name"], str(row["layers"]), format_parameters(row["parameters"]),
            f"{row['ttft_ms']['median']:.1f}", _ttft_speedup_cell(base_ttft, row),
            f"{row['prefill_ms']['median']:.1f}", f"{row['speedup']['prefill']:.2f}x", f"{row['ideal_speedup']:.2f}x",
            _fmt(row["decode_tokens_per_s"]["median"], "{:.1f}"), _fmt(row["speedup"]["decode"], "{:.2f}x"),
            format_bytes(row.get("peak_memory_bytes")),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in rows]
    prompt, settings = results["prompt"], results["settings"]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("")
    lines.append(f"{results['device']}, {results['dtype']}; prompt: {prompt['image_size']}px image "
                 f"({prompt['image_tokens']} tokens) + {prompt['text_tokens']} text tokens; {settings['new_tokens']} "
                 f"new tokens; medians of {settings['repeats']} interleaved rounds after {settings['warmup']} warm-up")
    if any("noisy" in _ttft_speedup_cell(results["models"][0]["ttft_ms"]["samples"], row) for row in results["models"]):
        lines.append("noisy: fewer than 3 rounds, or a model's TTFT (or the per-round ratio) varied more than 1.25x; "
                     "such a speed-up is not a measurement to quote (rerun with more --repeats / --warmup on an idle "
                     "machine)")
    stock = results.get("stock_vs_interlace")
    if stock:
        for variant in stock["variants"]:
            lines.append(f"Interlace vs stock Qwen3-VL, {stock['num_layers']} layers ({variant['name']}, dropped "
                         f"{variant['dropped_layers']}): TTFT ratio {variant['ttft_ratio']:.3f}, prefill ratio "
                         f"{variant['prefill_ratio']:.3f}, decode ratio "
                         f"{_fmt(variant['decode_ratio'], '{:.3f}')} (1.0 = no overhead)")
    for path in results.get("model_results_written") or []:
        lines.append(f"wrote {path}")
    return "\n".join(lines)
