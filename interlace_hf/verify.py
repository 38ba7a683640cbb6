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


def verify_pruned(base: str, pruned: str, *, image_size: int = 224, new_tokens: int = 8, dtype: str = "float32",
                  device: str = "cpu"):
    """Compare `pruned` with `base` (its dropped layers bypassed) on one image prompt; return a `VerifyResult`.

    One model is in memory at a time: the base runs first and its logits and greedy tokens are kept (on the CPU), then
    it is freed and the pruned model runs. An 8B check in float32 needs one model's memory (~35 GB), not two.
    """
    import gc
    import json
    from pathlib import Path

    from .checkpoint import read_model_config
    from .plan import Plan
    from .processing import load_processor
    from .utils.runtime import resolve_device

    device = resolve_device(device)  # a CUDA device on a machine without one: refused before anything is loaded
    for path in (base, pruned):
        read_model_config(path)  # a wrong path or another model: named, before anything is loaded
    if not (Path(pruned) / "plan.json").is_file():
        raise ValueError(f"PRUNED {pruned!r} has no plan.json, so it is not a checkpoint written by interlace-hf "
                         "(prune, train or run); pass the pruned checkpoint directory as the second argument.")
    plan = Plan.load(Path(pruned))
    config = json.loads((Path(pruned) / "config.json").read_text())
    fmt = (config.get("interlace") or {}).get("format", "?")
    processor = load_processor(pruned)
    inputs = sample_inputs(processor, image_size=image_size)
    expected = _run(base, inputs, new_tokens, dtype, device, bypass=plan)
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    actual = _run(pruned, inputs, new_tokens, dtype, device)
    prompt_len = inputs["input_ids"].shape[1]
    return VerifyResult(
        base_layers=expected["layers"],
        pruned_layers=actual["layers"],
        base_parameters=expected["parameters"],
        pruned_parameters=actual["parameters"],
        max_abs_logit_diff=float((expected["logits"] - actual["logits"]).abs().max()),
        same_greedy_tokens=torch.equal(expected["tokens"], actual["tokens"]),
        pruned_answer=processor.batch_decode(actual["tokens"][:, prompt_len:], skip_special_tokens=True)[0],
        format=fmt,
        fine_tuned=(Path(pruned) / "interlace_train.json").is_file(),
    )


def _run(path: str, inputs: dict, new_tokens: int, dtype: str, device: str, bypass=None) -> dict:
    """Load one model, run the prompt (logits, greedy tokens), and return the results on the CPU; the model goes."""
    from .checkpoint import load_model
    from .surgery import bypass_layers

    model = load_model(path, dtype=dtype, device_map=device if device != "cpu" else None).eval()
    layers = model.config.text_config.num_hidden_layers
    if bypass is not None:
        if layers != bypass.num_layers:
            raise ValueError(f"the pruned checkpoint was pruned from a {bypass.num_layers}-layer model but {path!r} "
                             f"has {layers} layers; pass the dense base it was pruned from.")
        bypass_layers(model, bypass.dropped_layers)
    on_device = {key: value.to(model.device) for key, value in inputs.items()}
    with torch.no_grad():
        logits = model(**on_device).logits.float().cpu()
        tokens = model.generate(**on_device, max_new_tokens=new_tokens, do_sample=False).cpu()
    return {"logits": logits, "tokens": tokens, "layers": layers,
            "parameters": sum(p.numel() for p in model.parameters())}
