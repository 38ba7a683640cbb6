"""Model cards for pruned (and fine-tuned) checkpoints, rendered offline from `model_cards/model_card.md.jinja`.

Pure: no torch, no network (writing a card never calls the Hub's YAML validator). `CardContext` holds what a card
says; `card_context_from_checkpoint` gathers it from a checkpoint directory (config.json, plan.json, the recipe,
safetensors headers for parameter counts, benchmark / evaluation results when they exist).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from .checkpoint import parameter_counts
from .plan import Plan
from .version import __version__

logger = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parent / "model_cards"
TEMPLATE = "model_card.md.jinja"
PROFILE_IMAGE = "similarity_profile.png"
BENCH_FILE = "bench_results.json"
EVAL_FILE = "eval_results.json"

CITATION = """@inproceedings{interlace2026,
  title     = {INTERLACE: Interleaved Layer Pruning and Efficient Adaptation in Large Vision-Language Models},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2026}
}"""

_ROLE_LABELS = {"drop": "**dropped**", "tune": "tuned", "anchor": "anchor (frozen)", "frozen": "frozen"}


@dataclass
class CardContext:
    """Everything a model card says. Only `plan`, `model_name` and `base_model` are required."""

    plan: Plan
    model_name: str
    base_model: str
    checkpoint_format: str = "interlace"
    license: str | None = None
    datasets: list[str] = field(default_factory=list)
    trained: bool = False
    params_before: int | None = None
    params_after: int | None = None
    similarity_means: dict[int, list[float | None]] | None = None  # pack size -> per-block means
    profile_image: str | None = None
    recipe: str | None = None
    bench: dict | None = None  # {"base_ttft_ms", "ttft_ms", "speedup", "device", "dtype", "date", "command"}
    eval: dict | None = None  # {"relative": 0.93, "tasks": {name: {"base": x, "pruned": y, "metric": m}}, "date"}
    versions: dict[str, str] = field(default_factory=lambda: {"interlace-hf": __version__})
    extra_tags: list[str] = field(default_factory=list)
    inexact_reason: str | None = None  # a `standard` checkpoint written with --force: not the pruned model
    distillation: dict | None = None  # {"teacher", "kl_weight", "temperature", "hidden_weight"} when distilled
    lora: dict | None = None  # {"r", "alpha", "dropout", "target_modules", "merged", "adapter"} when trained with LoRA


# A measured speed-up is quoted only when each model's samples stay within this max/min ratio, over at least
# `MIN_ROUNDS` interleaved rounds; otherwise a report says the measurement was too noisy to quote.
STABLE_SPREAD = 1.25
MIN_ROUNDS = 3


def speedup_claim(base_samples, samples, ideal: float | None = None) -> dict:
    """What may be said of a measured speed-up (pure).

    Args:
        base_samples, samples: per-round times (lower is faster) of the base and the pruned model, measured in the
            same interleaved rounds (sample i of each comes from round i).
        ideal: the FLOP-ideal speed-up, quoted beside the measurement.

    Returns:
        `{"quotable", "median", "low", "high", "rounds", "ideal", "reason", "text"}`: the median and range of the
        per-round ratios base / pruned; `quotable` only with at least `MIN_ROUNDS` rounds whose samples each stay
        within `STABLE_SPREAD` (max / min), and whose ratios do too; `text` is the phrase a card or report shows.
    """
    import statistics

    pairs = [(b, m) for b, m in zip(base_samples or [], samples or []) if b and m and b > 0 and m > 0]
    ratios = [b / m for b, m in pairs]
    claim = {"quotable": False, "median": None, "low": None, "high": None, "rounds": len(ratios), "ideal": ideal,
             "reason": None}
    ideal_text = f"FLOP ideal {ideal:.2f}x" if ideal else "no FLOP ideal"
    if ratios:
        claim.update(median=statistics.median(ratios), low=min(ratios), high=max(ratios))
    spreads = [max(x) / min(x) for x in (list(zip(*pairs))[0], list(zip(*pairs))[1])] if pairs else []
    if len(ratios) < MIN_ROUNDS:
        claim["reason"] = f"{len(ratios)} round(s) measured, fewer than {MIN_ROUNDS}: no spread to judge it by"
    elif max(spreads) > STABLE_SPREAD:
        claim["reason"] = (f"the samples varied {max(spreads):.2f}x between rounds (more than {STABLE_SPREAD}x): "
                           "the machine was busy or not warm")
    elif max(ratios) / min(ratios) > STABLE_SPREAD:
        # Each model steady on its own, but the rounds disagree on the ratio (e.g. 0.96x to 1.43x): no one figure.
        claim["reason"] = (f"the per-round speed-ups ranged {min(ratios):.2f}-{max(ratios):.2f}x (more than "
                           f"{STABLE_SPREAD}x apart)")
    else:
        claim["quotable"] = True
    if claim["quotable"]:
        claim["text"] = (f"{claim['median']:.2f}x faster (range {claim['low']:.2f}-{claim['high']:.2f}x over "
                         f"{len(ratios)} rounds; {ideal_text})")
    else:
        claim["text"] = f"speed-up not quoted: {claim['reason']} ({ideal_text})"
    return claim


def _is_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


def format_bytes(n: int | None) -> str:
    """A size as the Hub shows it (decimal units): 16.42 GB, 3.10 MB; `-` when unknown."""
    if n is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def format_parameters(n: int | None) -> str:
    """A parameter count as people write it: 0.75M, 8.77B."""
    if n is None:
        return "-"
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def metadata(ctx: CardContext) -> dict:
    """The card's YAML metadata (what the Hub indexes)."""
    family = "qwen3_vl"
    tags = list(dict.fromkeys(["interlace", "layer-pruning", "pruned", family, *ctx.extra_tags]))
    meta: dict = {"library_name": "transformers", "pipeline_tag": "image-text-to-text"}
    if ctx.license:
        meta["license"] = ctx.license
    if _is_hub_id(ctx.base_model):
        meta["base_model"] = ctx.base_model
        # The Hub knows four relations: adapter, merge, quantized, finetune. The weights here are a subset of the
        # base model's layers, re-indexed and (usually) partly trained further: a full set of derived weights, like
        # a fine-tune, not an adapter on top of the base, a merge of several models, or a lower-precision copy.
        meta["base_model_relation"] = "finetune"
    if ctx.datasets:
        meta["datasets"] = list(ctx.datasets)
    meta["tags"] = tags
    if ctx.eval and ctx.eval.get("tasks"):
        results = []
        for task, scores in ctx.eval["tasks"].items():
            results.append({
                "task": {"type": "image-text-to-text"},
                "dataset": {"name": task, "type": scores.get("dataset", task)},
                "metrics": [{"type": scores.get("metric", "accuracy"), "value": scores["pruned"]}],
            })
        meta["model-index"] = [{"name": ctx.model_name, "results": results}]
    return meta


def _to_yaml(data) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).strip()


def _layer_rows(ctx: CardContext) -> list[dict]:
    rows = []
    for layer in range(ctx.plan.num_layers):
        row = {"layer": layer, "role_label": _ROLE_LABELS[ctx.plan.role(layer)]}
        for k in (1, 2, 3):
            means = (ctx.similarity_means or {}).get(k)
            value = means[layer] if means is not None and layer < len(means) else None
            row[f"pack{k}"] = f"{value:.4f}" if value is not None else "-"
        rows.append(row)
    return rows


def _usage(ctx: CardContext) -> str:
    remote = ", trust_remote_code=True" if ctx.checkpoint_format == "interlace" else ""
    return f"""from transformers import AutoModelForImageTextToText, AutoProcessor

model_id = "{ctx.model_name}"
model = AutoModelForImageTextToText.from_pretrained(model_id, dtype="auto", device_map="auto"{remote})
processor = AutoProcessor.from_pretrained(model_id)

messages = [{{"role": "user", "content": [
    {{"type": "image", "url": "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/pipeline-cat-chonk.jpeg"}},
    {{"type": "text", "text": "Describe this image."}},
]}}]
inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                       return_tensors="pt").to(model.device)
output = model.generate(**inputs, max_new_tokens=64)
print(processor.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))"""


def render_model_card(ctx: CardContext) -> str:
    """The README.md text of a pruned checkpoint."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined, autoescape=False)
    bench = None
    if ctx.bench:
        b = ctx.bench
        claim = speedup_claim(b.get("base_ttft_samples"), b.get("ttft_samples"), b.get("ideal_speedup"))
        bench = {"base_ttft": f"{b['base_ttft_ms']:.1f} ms", "ttft": f"{b['ttft_ms']:.1f} ms",
                 "claim": f"**{claim['text']}**" if claim["quotable"] else claim["text"],
                 "device": b.get("device", "?"), "dtype": b.get("dtype", "?"),
                 "date": b.get("date", "?"), "command": b.get("command")}
    evaluation = None
    if ctx.eval:
        evaluation = {"relative": f"{100 * ctx.eval['relative']:.1f}%", "tasks": list(ctx.eval.get("tasks", {})),
                      "date": ctx.eval.get("date", "?")}
    base_url = f"https://huggingface.co/{ctx.base_model}" if _is_hub_id(ctx.base_model) else ctx.base_model
    text = env.get_template(TEMPLATE).render(
        metadata_yaml=_to_yaml(metadata(ctx)),
        model_name=ctx.model_name,
        base_model=ctx.base_model,
        base_url=base_url,
        num_dropped=len(ctx.plan.dropped_layers),
        layers_before=ctx.plan.num_layers,
        layers_after=ctx.plan.num_kept,
        params_before=format_parameters(ctx.params_before),
        params_after=format_parameters(ctx.params_after),
        plan=ctx.plan,
        trained=ctx.trained,
        datasets=ctx.datasets,
        bench=bench,
        eval=evaluation,
        profile_image=ctx.profile_image,
        layer_rows=_layer_rows(ctx),
        usage=_usage(ctx),
        format=ctx.checkpoint_format,
        inexact_reason=ctx.inexact_reason,
        distillation=ctx.distillation,
        lora=ctx.lora,
        deepstack_dropped=[i for i in ctx.plan.dropped_layers if i < 3],
        recipe=ctx.recipe.strip() if ctx.recipe else None,
        plan_json=ctx.plan.to_json().strip(),
        versions=ctx.versions,
        citation=CITATION,
    )
    return text


def card_context_from_checkpoint(directory: str | Path, *, model_name: str | None = None, license: str | None = None,
                                 similarity_means=None, trained: bool | None = None,
                                 datasets: list[str] | None = None, extra_tags: list[str] | None = None) -> CardContext:
    """Gather a `CardContext` from a pruned (maybe trained) checkpoint directory."""
    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text())
    block = config.get("interlace") or {}
    plan = Plan.load(directory)
    fmt = block.get("format") or ("interlace" if config.get("model_type", "").startswith("interlace") else "standard")
    before, after = parameter_counts(directory, plan)
    recipe = directory / "interlace_recipe.yaml"
    train_info = directory / "interlace_train.json"
    info = json.loads(train_info.read_text()) if train_info.is_file() else {}
    if datasets is None:
        datasets = [info["dataset"]] if info.get("dataset") and _is_hub_id(info["dataset"]) else []
    if similarity_means is None:
        similarity_means = _similarity_means_of(plan)
    versions = {"interlace-hf": block.get("interlace_hf_version", __version__)}
    if config.get("transformers_version"):
        versions["transformers"] = config["transformers_version"]
    return CardContext(
        plan=plan,
        model_name=model_name or directory.name,
        base_model=block.get("base_model") or "a Qwen3-VL model",
        checkpoint_format=fmt,
        license=license,
        datasets=datasets,
        trained=train_info.is_file() if trained is None else trained,
        params_before=before,
        params_after=after,
        similarity_means=similarity_means,
        profile_image=PROFILE_IMAGE if (directory / PROFILE_IMAGE).is_file() else None,
        recipe=recipe.read_text() if recipe.is_file() else None,
        bench=_read_json(directory / BENCH_FILE),
        eval=_read_json(directory / EVAL_FILE),
        versions=versions,
        extra_tags=list(extra_tags or []),
        inexact_reason=block.get("inexact_reason") if block.get("exact") is False else None,
        distillation=info.get("distillation"),
        lora=info.get("lora"),
    )


def _similarity_means_of(plan: Plan):
    """The per-block means behind a plan, when the similarity files it was made from are still there."""
    files = plan.metadata.get("similarity_files") or {}
    if not files or not all(Path(p).is_file() for p in files.values()):
        return None
    from .tables import load_similarity_tables

    try:
        tables = load_similarity_tables(pack_paths={int(k): p for k, p in files.items()}, num_layers=plan.num_layers)
    except ValueError:
        return None
    return tables.means


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def write_model_card(directory: str | Path, **kwargs) -> Path:
    """Render and write `README.md` into a checkpoint directory."""
    text = render_model_card(card_context_from_checkpoint(directory, **kwargs))
    path = Path(directory) / "README.md"
    path.write_text(text)
    return path


def write_card_files(directory: str | Path, plan: Plan, tables=None, *, model_name: str) -> Path:
    """The similarity profile (when matplotlib is there and similarities are known) and the model card, written into
    a checkpoint directory (a staging one, through `save_pruned(..., on_staged=...)`)."""
    directory = Path(directory)
    if tables is not None and tables.pack_sizes:
        from .layermap import plot_similarity_profile, require_matplotlib

        try:
            require_matplotlib()
            plot_similarity_profile(plan, tables, directory / PROFILE_IMAGE)
        except ValueError as err:
            logger.info("no similarity profile in the card: %s", err)
    return write_model_card(directory, model_name=model_name,
                            similarity_means=tables.means if tables is not None else None)
