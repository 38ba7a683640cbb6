"""Does the Interlace model class cost time? The same depth as a stock Qwen3-VL, random weights, timed side by side."""

from __future__ import annotations

import logging

from ..utils.runtime import resolve_dtype
from .measure import device_name, measure_models, safe_ratio, torch_device_of, validate_settings
from .models import (
    build_random_qwen3_vl,
    load_config_dict,
    random_processor,
    shared_weight_copy,
    spaced_plan,
)
from .prompt import build_prompt

logger = logging.getLogger(__name__)


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
    validate_settings(image_size, prompt_tokens, new_tokens, repeats, warmup, dtype)
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

    torch_device = torch_device_of(device)
    torch_dtype = resolve_dtype(dtype, str(torch_device))
    processor, config = random_processor(config)
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
            "decode_ratio": safe_ratio(stock["decode_tokens_per_s"]["median"], row["decode_tokens_per_s"]["median"]),
        }
        if variant["ttft_ratio"] > 1.05:
            logger.warning("the Interlace model (%s) took %.1f%% longer to the first token than a stock Qwen3-VL "
                           "of the same depth", name, 100 * (variant["ttft_ratio"] - 1))
        variants.append(variant)
    return {"num_layers": n, "base_layers": depth, "device": device_name(torch_device),
            "dtype": str(torch_dtype).removeprefix("torch."), "prompt": info, "stock": stock, "variants": variants}
