"""Model cards for pruned (and fine-tuned) checkpoints, rendered offline from the plan. Pure: no torch."""

from __future__ import annotations

from .plan import Plan
from .version import __version__

CITATION = """@inproceedings{interlace2026,
  title     = {INTERLACE: Interleaved Layer Pruning and Efficient Adaptation in Large Vision-Language Models},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2026}
}"""


def _yaml_list(key: str, values) -> list[str]:
    return [f"{key}:"] + [f"- {v}" for v in values] if values else []


def render_model_card(
    plan: Plan,
    *,
    base_model: str | None,
    model_name: str,
    checkpoint_format: str = "interlace",
    datasets: list[str] | None = None,
    training: dict | None = None,
    tags: list[str] | None = None,
    license: str | None = None,
) -> str:
    """A README.md with Hub metadata, the layer roles, usage for the checkpoint's format, and the citation."""
    all_tags = ["interlace", "layer-pruning", "pruned", "qwen3_vl", *(tags or [])]
    meta = ["---", "library_name: transformers", "pipeline_tag: image-text-to-text"]
    if base_model:
        # The weights are a subset of the base model's, partly fine-tuned: a fine-tune of it, not an adapter.
        meta += [f"base_model: {base_model}", "base_model_relation: finetune"]
    if license:
        meta.append(f"license: {license}")
    meta += _yaml_list("datasets", datasets or [])
    meta += _yaml_list("tags", dict.fromkeys(all_tags))
    meta.append("---")
    remote = ", trust_remote_code=True" if checkpoint_format == "interlace" else ""
    rows = "\n".join(f"| {i} | {plan.role(i)} |" for i in range(plan.num_layers))
    body = f"""
# {model_name}

{base_model or "A Qwen3-VL model"} with {len(plan.dropped_layers)} of its {plan.num_layers} decoder layers removed by
interlace-hf ({plan.strategy}); {len(plan.tuned_layers)} layers were selected for fine-tuning and
{len(plan.anchor_layers)} kept frozen as anchors. Layer indices below are the original model's.

| layer | role |
|---|---|
{rows}

## Usage

```python
from transformers import AutoModelForImageTextToText, AutoProcessor

model = AutoModelForImageTextToText.from_pretrained("{model_name}"{remote})
processor = AutoProcessor.from_pretrained("{model_name}")
```
"""
    if training:
        body += "\n## Training\n\n" + "\n".join(f"- {k}: {v}" for k, v in training.items()) + "\n"
    body += f"\n## Plan\n\n```json\n{plan.to_json()}```\n\nMade with interlace-hf {__version__}.\n"
    body += f"\n## Citation\n\n```bibtex\n{CITATION}\n```\n"
    return "\n".join(meta) + "\n" + body
