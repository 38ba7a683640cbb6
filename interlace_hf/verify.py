"""Check a pruned checkpoint against its base: the pruned model must compute what the base computes with the
dropped layers skipped (bypassed by forward hooks), on an image + text prompt, logits and greedy tokens alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .processing import sample_inputs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifyResult:
    base_layers: int
    pruned_layers: int
    base_parameters: int
    pruned_parameters: int
    max_abs_logit_diff: float
    same_greedy_tokens: bool
    pruned_answer: str
    format: str
    fine_tuned: bool = False  # the checkpoint was fine-tuned: its tuned layers differ from the base by design

    @property
    def exact(self) -> bool:
        return self.same_greedy_tokens and self.max_abs_logit_diff <= 1e-4


def verify_pruned(base: str, pruned: str, *, image_size: int = 224, new_tokens: int = 8, dtype: str = "float32"):
    """Load `base` and `pruned`, compare them on one image prompt, return a `VerifyResult`."""
    import json
    from pathlib import Path

    from .checkpoint import load_model
    from .plan import Plan
    from .processing import load_processor
    from .surgery import bypass_layers

    from .checkpoint import read_model_config

    for path in (base, pruned):
        read_model_config(path)  # a wrong path or another model: named, before anything is loaded
    if not (Path(pruned) / "plan.json").is_file():
        raise ValueError(f"PRUNED {pruned!r} has no plan.json, so it is not a checkpoint written by interlace-hf "
                         "(prune, train or run); pass the pruned checkpoint directory as the second argument.")
    plan = Plan.load(Path(pruned))
    config = json.loads((Path(pruned) / "config.json").read_text())
    fmt = (config.get("interlace") or {}).get("format", "?")
    fine_tuned = (Path(pruned) / "interlace_train.json").is_file()
    base_model = load_model(base, dtype=dtype).eval()
    pruned_model = load_model(pruned, dtype=dtype).eval()
    if base_model.config.text_config.num_hidden_layers != plan.num_layers:
        raise ValueError(
            f"{pruned!r} was pruned from a {plan.num_layers}-layer model but {base!r} has "
            f"{base_model.config.text_config.num_hidden_layers} layers; pass the dense base it was pruned from."
        )
    processor = load_processor(pruned)
    inputs = sample_inputs(processor, image_size=image_size)
    bypass_layers(base_model, plan.dropped_layers)
    with torch.no_grad():
        expected = base_model(**inputs).logits.float()
        actual = pruned_model(**inputs).logits.float()
    kwargs = dict(max_new_tokens=new_tokens, do_sample=False)
    expected_tokens = base_model.generate(**inputs, **kwargs)
    actual_tokens = pruned_model.generate(**inputs, **kwargs)
    prompt_len = inputs["input_ids"].shape[1]
    return VerifyResult(
        base_layers=base_model.config.text_config.num_hidden_layers,
        pruned_layers=pruned_model.config.text_config.num_hidden_layers,
        base_parameters=sum(p.numel() for p in base_model.parameters()),
        pruned_parameters=sum(p.numel() for p in pruned_model.parameters()),
        max_abs_logit_diff=float((expected - actual).abs().max()),
        same_greedy_tokens=torch.equal(expected_tokens, actual_tokens),
        pruned_answer=processor.batch_decode(actual_tokens[:, prompt_len:], skip_special_tokens=True)[0],
        format=fmt,
        fine_tuned=fine_tuned,
    )
