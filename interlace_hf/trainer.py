"""Step 3: the selective fine-tune. A TRL `SFTTrainer` subclass that trains exactly the plan's tuned layers.

Everything else is frozen on the parameter itself (`requires_grad=False`) before the trainer (and DeepSpeed) build
the optimizer, so frozen parameters get no gradient buffers and no optimizer state: vision tower, deepstack mergers,
merger, embeddings, final norm, anchors, the other layers and `lm_head`. (The paper's code froze `lm_head` by setting
an attribute on the module, which does nothing; with untied embeddings it silently trained the whole head.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from trl import SFTConfig, SFTTrainer

from .plan import PLAN_FILE, Plan
from .surgery import current_kept_layers

logger = logging.getLogger(__name__)

# The paper's fine-tuning hyperparameters.
PAPER_DEFAULTS = {
    "learning_rate": 1e-5,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.03,
    "per_device_train_batch_size": 16,
    "gradient_accumulation_steps": 2,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "num_train_epochs": 1.0,
    "optim": "adamw_torch",
}


@dataclass(kw_only=True)
class InterlaceSFTConfig(SFTConfig):
    """`SFTConfig` with the paper's defaults (AdamW, lr 1e-5, cosine with 3% warmup, batch 16 x 2 accumulation,
    weight decay 0, max grad norm 1.0, bf16 where supported, 1 epoch) and assistant-only loss.

    Args:
        tune_merger: also train the vision merger (off in the paper).
        tune_lm_head: also train `lm_head` (off in the paper; with tied embeddings this trains the embeddings too).
        max_pixels, min_pixels: image resolution bounds given to the processor (the paper's 50176 and 784).
    """

    learning_rate: float = field(default=1e-5, metadata={"help": "peak learning rate (paper: 1e-5)"})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "learning-rate schedule (paper: cosine)"})
    warmup_steps: float = field(default=0.03, metadata={"help": "warmup steps, or a ratio in [0, 1) (paper: 0.03)"})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "per-device batch size (paper: 16)"})
    gradient_accumulation_steps: int = field(default=2, metadata={"help": "accumulation steps (paper: 2)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (paper: 0)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (paper: 1.0)"})
    num_train_epochs: float = field(default=1.0, metadata={"help": "epochs (paper: 1)"})
    optim: str = field(default="adamw_torch", metadata={"help": "optimizer (paper: AdamW)"})
    bf16: bool | None = field(default=None, metadata={"help": "bf16 mixed precision; default: where the GPU has it"})
    assistant_only_loss: bool = field(default=True, metadata={"help": "loss on the assistant's answer tokens only"})
    activation_checkpointing_kwargs: dict[str, Any] | str | None = field(
        default_factory=lambda: {"use_reentrant": False},
        metadata={"help": "non-reentrant checkpointing: gradients reach tuned layers behind frozen embeddings"},
    )
    max_length: int | None = field(default=None, metadata={"help": "truncate sequences (None: keep image tokens)"})
    report_to: None | str | list[str] = field(default="none", metadata={"help": "where to log (none, tensorboard, ...)"})
    tune_merger: bool = field(default=False, metadata={"help": "also train the vision merger"})
    tune_lm_head: bool = field(default=False, metadata={"help": "also train lm_head"})
    max_pixels: int = field(default=50176, metadata={"help": "max image pixels for the processor (paper: 50176)"})
    min_pixels: int = field(default=784, metadata={"help": "min image pixels for the processor (paper: 784)"})

    def __post_init__(self):
        if self.bf16 is None:
            self.bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        if self.min_pixels < 1 or self.max_pixels < self.min_pixels:
            raise ValueError(
                f"--min-pixels ({self.min_pixels}) must be >= 1 and <= --max-pixels ({self.max_pixels})."
            )
        super().__post_init__()


def _count(param) -> int:
    # Under ZeRO-3 a partitioned parameter reports 0 elements locally; ds_numel is its full size.
    return getattr(param, "ds_numel", None) or param.numel()


def freeze_for_plan(model, plan: Plan, *, tune_merger: bool = False, tune_lm_head: bool = False) -> tuple[int, int]:
    """Set `requires_grad` so that exactly the plan's tuned decoder layers train (plus the optional extras).

    Returns:
        (trainable, total) parameter counts.
    """
    kept = current_kept_layers(model.config)
    if list(plan.kept_layers) != kept:
        raise ValueError(
            f"the plan keeps original layers {list(plan.kept_layers)} but the model holds {kept}; prune the model "
            "with this plan first (or pass the plan it was pruned with)."
        )
    if not plan.tuned_layers and not (tune_merger or tune_lm_head):
        raise ValueError(
            f"the plan ({plan.strategy}) tunes no layers, so there is nothing to train; choose a strategy with tuned "
            "layers (interlace, interlace_oa, interlace_tn, ...) or --tune-baselines."
        )
    model.requires_grad_(False)
    layers = model.model.language_model.layers
    for original in plan.tuned_layers:
        layers[kept.index(original)].requires_grad_(True)
    if tune_merger:
        model.model.visual.merger.requires_grad_(True)
    if tune_lm_head:
        # The parameter itself: setting an attribute on the module (as the paper's code did) changes nothing.
        model.lm_head.weight.requires_grad_(True)
        if model.lm_head.weight is model.get_input_embeddings().weight:
            logger.warning("lm_head is tied to the input embeddings: --tune-lm-head trains the embeddings too.")
    trainable = sum(_count(p) for p in model.parameters() if p.requires_grad)
    total = sum(_count(p) for p in model.parameters())
    return trainable, total


class InterlaceSFTTrainer(SFTTrainer):
    """`SFTTrainer` for INTERLACE's selective fine-tune.

    Args:
        model: a pruned Qwen3-VL (from `prune_model` or a pruned checkpoint).
        plan: the plan it was pruned with; its `tuned_layers` are the ones that train.
        args: an `InterlaceSFTConfig` (the paper's defaults).
        **kwargs: everything `SFTTrainer` takes (`train_dataset`, `processing_class`, ...).
    """

    _tag_names = ["trl", "sft", "interlace", "layer-pruning"]
    _name = "INTERLACE"

    def __init__(self, model, plan: Plan, args: InterlaceSFTConfig | None = None, **kwargs):
        from .modeling import register_auto_classes

        register_auto_classes()  # checkpoints keep the Interlace classes' code and auto_map
        if isinstance(model, str):
            raise ValueError("InterlaceSFTTrainer needs the loaded, pruned model (see interlace_hf.train.load_for_training).")
        args = args or InterlaceSFTConfig(output_dir="interlace-sft")
        self.plan = plan
        # Before SFTTrainer / accelerate / DeepSpeed see the model: the optimizer is built from these flags.
        trainable, total = freeze_for_plan(model, plan, tune_merger=args.tune_merger, tune_lm_head=args.tune_lm_head)
        super().__init__(model, args=args, **kwargs)
        logger.warning(
            "INTERLACE fine-tune: trainable %s / %s parameters (%.2f%%): tuned layers %s%s%s",
            f"{trainable:,}", f"{total:,}", 100 * trainable / max(total, 1), list(plan.tuned_layers),
            " + merger" if args.tune_merger else "", " + lm_head" if args.tune_lm_head else "",
        )

    def _save(self, output_dir: str | None = None, state_dict=None):
        # transformers pickles the TrainingArguments into training_args.bin, hub_token included, and pushes it with
        # the model: keep the token out of every file (it stays in memory for the upload itself).
        token, self.args.hub_token = self.args.hub_token, None
        try:
            super()._save(output_dir, state_dict=state_dict)
        finally:
            self.args.hub_token = token
        output_dir = output_dir or self.args.output_dir
        self.plan.save(f"{output_dir}/{PLAN_FILE}")

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None, tags=None, **kwargs):
        """Our card (what was dropped / tuned, the scores, usage for the format, the recipe), not TRL's default."""
        if not self.is_world_process_zero():
            return
        from pathlib import Path

        from .card import write_model_card

        if not (Path(self.args.output_dir) / "config.json").is_file():
            return  # TRL calls this at each checkpoint too; the card is written once the model is saved there
        name = self.args.hub_model_id or model_name or Path(self.args.output_dir).name  # the Hub name when pushing
        write_model_card(self.args.output_dir, model_name=name, trained=self.state.global_step > 0,
                         datasets=[dataset_name] if dataset_name and "/" in dataset_name else None)
