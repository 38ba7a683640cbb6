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

The parts: `models` (what runs), `prompt`, `measure` (timing, memory), `stock` (the class's own cost), `report`.
"""

from __future__ import annotations

import gc
import logging
from datetime import datetime, timezone
from pathlib import Path

from ..utils.fileio import write_json_atomic
from ..utils.runtime import resolve_dtype
from .measure import (
    check_attn_implementation,
    device_name,
    measure_models,
    run_versions,
    safe_ratio,
    torch_device_of,
    validate_settings,
)
from .models import (
    build_random_qwen3_vl,
    check_memory_for,
    load_config_dict,
    model_row,
    random_processor,
    random_variants,
    shared_weight_copy,
    shipped_configs,
)
from .prompt import build_prompt
from .report import RESULTS_FORMAT, bench_command, write_bench_results
from .stock import stock_vs_interlace

logger = logging.getLogger(__name__)



# --- configs ---------------------------------------------------------------------------------------------------------
# --- what to measure -------------------------------------------------------------------------------------------------
# --- the prompt ------------------------------------------------------------------------------------------------------
# --- models ----------------------------------------------------------------------------------------------------------
# --- measuring -------------------------------------------------------------------------------------------------------
# --- stock vs Interlace ----------------------------------------------------------------------------------------------
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
    attn_implementation: str | None = None,
    pairwise: bool = False,
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
        attn_implementation: the attention kernel of every model (`sdpa`, `eager`, `flash_attention_2`); default:
            transformers' choice (sdpa).
        pairwise: checkpoints only: keep the base and one pruned model in memory at a time. Each pruned model is timed
            against the base in its own interleaved run, and its speed-ups are against that run's base (for 8B
            checkpoints on an 80 GB GPU: base + one variant, not base + four).

    Returns:
        The results dict that is also written to `output` (see docs/benchmarks.md for the fields).
    """
    validate_settings(image_size, prompt_tokens, new_tokens, repeats, warmup, dtype)
    check_attn_implementation(attn_implementation)
    models = [str(m) for m in (models or [])]
    plans = [str(p) for p in (plans or [])]
    _check_flags(config, plans, random_weights, write_model_results)
    if pairwise and random_weights:
        raise ValueError("--pairwise keeps two checkpoints in memory at a time; --random-weights variants share the "
                         "base's weights already (memory for one model). Drop --pairwise.")
    if command is None:
        command = bench_command(models + plans, image_size=image_size, prompt_tokens=prompt_tokens,
                                new_tokens=new_tokens, repeats=repeats, warmup=warmup, dtype=dtype, device=device,
                                random_weights=random_weights, config=config, output=output,
                                compare_stock=compare_stock, write_model_results=write_model_results,
                                attn_implementation=attn_implementation, pairwise=pairwise)
    # Everything that can be refused from the arguments and config files is, before a weight is built or loaded.
    if random_weights:
        if config is None:
            if not models:
                raise ValueError("--random-weights needs --config CONFIG.json (or a shipped name: "
                                 f"{', '.join(shipped_configs())}).")
            config, models = models[0], models[1:]
        base_config = load_config_dict(config)
        variants = random_variants(models + plans, int(base_config["text_config"]["num_hidden_layers"]))
    else:
        base_config = _check_checkpoint_list(models, write_model_results, compare_stock)
    torch_device = torch_device_of(device)

    if random_weights:  # the tiny tokenizer's special-token ids go into the config the models are built from
        processor, base_config = random_processor(base_config)
    else:
        from .. import register
        from ..processing import load_processor

        register()
        processor = load_processor(models[0])
    inputs, prompt = build_prompt(processor, image_size, prompt_tokens, base_config["vision_config"])
    common = dict(new_tokens=new_tokens, repeats=repeats, warmup=warmup, device=torch_device)
    if pairwise and len(models) > 2:  # checkpoints only (refused with random weights above)
        results_models = _measure_pairwise(models, inputs, processor.tokenizer, prompt, image_size, dtype,
                                           attn_implementation, **common)
    else:
        if random_weights:
            loaded, sources = _random_weight_models(base_config, variants, str(config), torch_device, dtype,
                                                    attn_implementation)
        else:
            loaded, sources = _checkpoint_models(models, torch_device, dtype, attn_implementation)
        rows = measure_models(loaded, inputs, processor.tokenizer, **common)
        results_models = _model_results(_described(loaded, sources), rows, prompt, image_size)
        del loaded, rows
    gc.collect()
    dtypes = sorted({row["dtype"] for row in results_models})
    if len(dtypes) > 1:
        logger.warning("the models run in different dtypes (%s): their speeds are not comparable; pass --dtype",
                       ", ".join(dtypes))
    results = {
        "format": RESULTS_FORMAT,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "device": device_name(torch_device),
        "device_type": torch_device.type,
        "dtype": dtypes[0] if len(dtypes) == 1 else "mixed: " + ", ".join(dtypes),
        "versions": run_versions(torch_device),
        "settings": {"image_size": image_size, "prompt_tokens": prompt_tokens, "new_tokens": new_tokens,
                     "repeats": repeats, "warmup": warmup, "random_weights": random_weights,
                     "config": str(config) if random_weights else None, "compare_stock": compare_stock,
                     "attn_implementation": attn_implementation, "pairwise": pairwise and len(results_models) > 2},
        "prompt": prompt,
        "models": results_models,
        "ideal_speedups": {row["name"]: row["ideal_speedup"] for row in results_models},
        "stock_vs_interlace": None,
        "model_results_written": [],
    }
    if compare_stock:
        results["stock_vs_interlace"] = stock_vs_interlace(
            base_config, image_size=image_size, prompt_tokens=prompt_tokens, new_tokens=new_tokens,
            repeats=repeats, warmup=warmup, dtype=dtype if dtype != "auto" else results_models[0]["dtype"],
            device=device)
    if write_model_results:
        for model_dir, row in zip(models[1:], results_models[1:]):
            results["model_results_written"].append(str(write_bench_results(model_dir, results_models[0], row,
                                                                            results)))
    if output:
        write_json_atomic(Path(output), results)
    return results


def _check_flags(config, plans, random_weights: bool, write_model_results: bool) -> None:
    if config is not None and not random_weights:
        raise ValueError("--config names the model to build with random weights; pass --random-weights too, or list "
                         "checkpoint directories instead.")
    if plans and not random_weights:
        raise ValueError("--plans are applied to a model built with --random-weights; for checkpoints, prune them "
                         "with `interlace-hf prune` and list the pruned directories.")
    if random_weights and write_model_results:
        raise ValueError("--write-model-results writes measured speed into pruned checkpoints; with --random-weights "
                         "there are none. Drop one of the two flags.")


def _check_checkpoint_list(models: list[str], write_model_results: bool, compare_stock: bool) -> dict:
    """Check the checkpoints to compare from their config files; returns the first one's config."""
    if not models:
        raise ValueError("list the models to benchmark: the base first, e.g. `interlace-hf bench BASE PRUNED`.")
    if len(set(models)) != len(models):
        raise ValueError(f"the models to benchmark repeat: {models}; list each once.")
    configs = _check_checkpoints(models, write_model_results)
    depths = [int(c["text_config"]["num_hidden_layers"]) for c in configs]
    deeper = [f"{m} ({d} layers)" for m, d in zip(models[1:], depths[1:]) if d > depths[0]]
    if deeper:
        logger.warning("speed-ups are measured against the FIRST model, %s (%d layers), and %s %s more layers: "
                       "a deeper model will show as slower than this 'base'. List the dense base first.",
                       models[0], depths[0], ", ".join(deeper), "has" if len(deeper) == 1 else "have")
    if compare_stock and (configs[0].get("model_type") != "qwen3_vl" or "interlace" in configs[0]):
        raise ValueError(f"--compare-stock builds random models from the first model's config, which must be a "
                         f"dense Qwen3-VL; {models[0]!r} is a pruned checkpoint. List the dense base first.")
    return configs[0]


def _random_weight_models(base_config: dict, variants, config_name: str, torch_device, dtype: str,
                          attn_implementation: str | None = None):
    """The base built with random weights on the device, and each variant pruned from a copy sharing its weights."""
    from ..surgery import prune_model

    torch_dtype = resolve_dtype(dtype, str(torch_device))
    check_memory_for(base_config, torch_dtype, torch_device)
    base = build_random_qwen3_vl(base_config, device=torch_device, dtype=torch_dtype,
                                 attn_implementation=attn_implementation)
    loaded = [(name, base if plan is None else prune_model(shared_weight_copy(base), plan, base_model=config_name))
              for name, plan in variants]
    sources = [config_name if plan is None else f"{config_name} pruned by {plan.describe()}" for _, plan in variants]
    return loaded, sources


def _checkpoint_models(models: list[str], torch_device, dtype: str, attn_implementation: str | None = None):
    return [(m, _load_checkpoint(m, torch_device, dtype, attn_implementation)) for m in models], list(models)


def _load_checkpoint(model: str, torch_device, dtype: str, attn_implementation: str | None):
    from ..checkpoint import load_model

    device_map = str(torch_device) if torch_device.type == "cuda" else None
    return load_model(model, dtype=dtype, device_map=device_map, attn_implementation=attn_implementation).eval()


def _measure_pairwise(models: list[str], inputs, tokenizer, prompt: dict, image_size: int, dtype: str,
                      attn_implementation: str | None, *, device, **measure) -> list[dict]:
    """The base and one pruned checkpoint in memory at a time: one interleaved run per pruned model. The base row
    holds the first run's samples; each pruned row's speed-ups (and `pair_base`) are against its own run's base."""
    base = _load_checkpoint(models[0], device, dtype, attn_implementation)
    results = None
    for model_name in models[1:]:
        variant = _load_checkpoint(model_name, device, dtype, attn_implementation)
        loaded = [(models[0], base), (model_name, variant)]
        pair = _model_results(_described(loaded, [models[0], model_name]), measure_models(
            loaded, inputs, tokenizer, device=device, **measure), prompt, image_size)
        pair[1]["pair_base"] = {key: pair[0][key] for key in ("ttft_ms", "prefill_ms", "decode_tokens_per_s")}
        results = [pair[0]] if results is None else results
        results.append(pair[1])
        del variant, loaded
        gc.collect()
        if device.type == "cuda":
            import torch

            torch.cuda.empty_cache()
    return results


def _described(loaded, sources) -> list[tuple[str, str, dict, dict]]:
    """(name, source, what the model is, its config) of each loaded model: what the results keep of it."""
    return [(name, source, model_row(model), model.config.to_dict()) for (name, model), source in zip(loaded, sources)]


def _model_results(described, rows, prompt: dict, image_size: int) -> list[dict]:
    """One row per model: what it is, what was measured, its counted FLOPs, and its speed-ups against the first."""
    from .flops import prefill_flops

    base_flops = None
    results = []
    for (name, source, description, config), row in zip(described, rows):
        flops = prefill_flops(config, prompt["text_tokens"], image_size)
        if flops["image_tokens"] != prompt["image_tokens"]:
            logger.warning("the processor made %d image tokens, the FLOP count assumes %d",
                           prompt["image_tokens"], flops["image_tokens"])
        base_flops = base_flops or flops["total"]
        results.append({"name": name, "source": source, **description, **row,
                        "prefill_flops": flops["total"], "ideal_speedup": base_flops / flops["total"]})
    base = results[0]
    for row in results:
        row["speedup"] = {
            "ttft": base["ttft_ms"]["median"] / row["ttft_ms"]["median"],
            "prefill": base["prefill_ms"]["median"] / row["prefill_ms"]["median"],
            "decode": safe_ratio(row["decode_tokens_per_s"]["median"], base["decode_tokens_per_s"]["median"]),
        }
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


# --- report ----------------------------------------------------------------------------------------------------------
