"""Step 3: the selective fine-tune. A TRL `SFTTrainer` subclass that trains exactly the plan's tuned layers.

Everything else is frozen on the parameter itself (`requires_grad=False`) before the trainer (and DeepSpeed) build
the optimizer, so frozen parameters get no gradient buffers and no optimizer state: vision tower, deepstack mergers,
merger, embeddings, final norm, anchors, the other layers and `lm_head`. (The paper's code froze `lm_head` by setting
an attribute on the module, which does nothing; with untied embeddings it silently trained the whole head.)

At real scale three more things matter, and the trainer takes care of each:
- **fp32 master weights.** A bfloat16 weight cannot hold an AdamW update of ~1e-5 (half a bf16 ulp of a 0.02 weight
  is ~6e-5), so without DeepSpeed (which keeps fp32 masters itself) the parameters that train are held in fp32 while
  the frozen majority stays in the loaded dtype; hooks cast at their boundaries, autocast still computes in bf16, and
  the saved model is in the loaded dtype again (`checkpoint-*` folders keep the fp32 masters, for an exact resume).
- **Backward stops at the lowest tuned layer.** Its input is cut from the graph (a fresh leaf), so nothing below it
  (vision tower, embeddings, frozen layers) stores activations for, or runs, a backward pass.
- **Checkpointing that works under ZeRO-3.** Non-reentrant activation checkpointing with frozen parameters fails on
  2+ ZeRO-3 ranks with DeepSpeed releases before DeepSpeed#8148 (transformers#47254, DeepSpeed#4332); the reentrant
  variant, which works with every release, is chosen there by default (the cut makes the tuned layers' input require
  grad, which reentrant checkpointing needs).
"""

from __future__ import annotations

import copy
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import SFTConfig, SFTTrainer

from .plan import PLAN_FILE, Plan
from .checkpoint import current_kept_layers

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
        default=None,
        metadata={"help": "torch checkpoint kwargs; default: reentrant under DeepSpeed ZeRO-3 (non-reentrant fails "
                          "there with frozen layers), non-reentrant otherwise"},
    )
    max_length: int | None = field(
        default=8192,
        metadata={"help": "samples longer than this (image tokens included) are dropped before training, never "
                          "truncated (paper: 8192); None keeps every sample"},
    )
    report_to: None | str | list[str] = field(default="none", metadata={"help": "where to log (none, tensorboard, ...)"})
    tune_merger: bool = field(default=False, metadata={"help": "also train the vision merger"})
    tune_lm_head: bool = field(default=False, metadata={"help": "also train lm_head"})
    max_pixels: int = field(default=50176, metadata={"help": "max image pixels for the processor (paper: 50176)"})
    min_pixels: int = field(default=784, metadata={"help": "min image pixels for the processor (paper: 784)"})
    distill_alpha: float = field(default=1.0, metadata={
        "help": "with a teacher: weight of the KL divergence from the teacher's next-token distribution on the answer "
                "tokens (default: both terms at 1, the best point estimate on the testbed; see "
                "docs/results-testbed.md)"})
    distill_temperature: float = field(default=1.0, metadata={"help": "with a teacher: softmax temperature of the KL"})
    distill_hidden: float = field(default=1.0, metadata={
        "help": "with a teacher: weight of the hidden-state loss (1 - cosine) after each tuned layer, against the "
                "teacher's state at the same point of the dense stack"})

    def __post_init__(self):
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"--max_length must be >= 1 (or None to keep every sample), got {self.max_length}.")
        if self.bf16 is None:
            self.bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        if self.distill_alpha < 0 or self.distill_hidden < 0 or self.distill_temperature <= 0:
            raise ValueError(f"--distill_alpha ({self.distill_alpha}) and --distill_hidden ({self.distill_hidden}) must "
                             f"be >= 0 and --distill_temperature ({self.distill_temperature}) > 0.")
        if self.min_pixels < 1 or self.max_pixels < self.min_pixels:
            raise ValueError(
                f"--min-pixels ({self.min_pixels}) must be >= 1 and <= --max-pixels ({self.max_pixels})."
            )
        super().__post_init__()

    # transformers pickles the arguments into training_args.bin (in every checkpoint, and in the output directory it
    # pushes during training); the Hub token must never be in that file. Copies keep it: it is needed to upload.
    def __getstate__(self):
        state = self.__dict__.copy()
        state["hub_token"] = None
        return state

    def __deepcopy__(self, memo):
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts. Under ZeRO-3 a partitioned parameter reports 0 elements locally; its
    `ds_numel` is the full size."""
    sizes = [(p.requires_grad, getattr(p, "ds_numel", None) or p.numel()) for p in model.parameters()]
    return sum(n for trains, n in sizes if trains), sum(n for _, n in sizes)


def trainable_modules(model, plan: Plan, *, tune_merger: bool = False, tune_lm_head: bool = False) -> dict:
    """The modules that train, by name: the plan's tuned decoder layers (named by original index), and the merger /
    `lm_head` when asked for."""
    kept = current_kept_layers(model.config)
    layers = model.model.language_model.layers
    modules = {f"layer {original}": layers[kept.index(original)] for original in plan.tuned_layers}
    if tune_merger:
        modules["merger"] = model.model.visual.merger
    if tune_lm_head:
        modules["lm_head"] = model.lm_head
    return modules


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
    for name, module in trainable_modules(model, plan, tune_merger=tune_merger, tune_lm_head=tune_lm_head).items():
        if name == "lm_head":
            # The parameter itself: setting an attribute on the module (as the paper's code did) changes nothing.
            module.weight.requires_grad_(True)
            if module.weight is model.get_input_embeddings().weight:
                logger.warning("lm_head is tied to the input embeddings: --tune-lm-head trains the embeddings too.")
        else:
            module.requires_grad_(True)
    return count_parameters(model)


# ---- fp32 master weights for what trains -------------------------------------------------------------------------

HALF_DTYPES = (torch.bfloat16, torch.float16)


def _cast_floating(value, dtype: torch.dtype):
    """`value` with every floating-point tensor in it (also inside tuples / lists / dicts) cast to `dtype`."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() and value.dtype != dtype else value
    if isinstance(value, (tuple, list)):
        return type(value)(_cast_floating(v, dtype) for v in value)
    if isinstance(value, dict):
        return {k: _cast_floating(v, dtype) for k, v in value.items()}
    return value


def upcast_trainable(model, modules: dict) -> dict[str, torch.dtype]:
    """Hold the trainable parameters of `modules` in float32 (master weights) when they were loaded in bf16 / fp16.

    The frozen rest of the model keeps its dtype. Each upcast module gets hooks that cast its floating-point inputs to
    float32 and its output back to the loaded dtype, so its neighbours see what they saw before (under autocast the
    matrix products still run in bf16). For `lm_head`, TRL's fused head reads `lm_head.weight` directly, so the final
    norm's output is cast instead.

    Returns:
        module name -> the dtype it was loaded in, for the modules that were upcast (empty when none was).
    """
    upcast = {}
    for name, module in modules.items():
        params = [p for p in module.parameters() if p.requires_grad]
        if not params or params[0].dtype not in HALF_DTYPES:
            continue
        loaded = params[0].dtype
        for param in params:
            param.data = param.data.float()
        upcast[name] = loaded
        if name == "lm_head":
            model.model.language_model.norm.register_forward_hook(
                lambda mod, args, output: _cast_floating(output, torch.float32))
            embeddings = model.get_input_embeddings()
            if embeddings.weight is module.weight:  # tied: the embeddings now hold fp32 too; their output stays as is
                embeddings.register_forward_hook(lambda mod, args, output, dtype=loaded: _cast_floating(output, dtype))
            continue
        module.register_forward_pre_hook(
            lambda mod, args, kwargs: (_cast_floating(args, torch.float32), _cast_floating(kwargs, torch.float32)),
            with_kwargs=True)
        module.register_forward_hook(lambda mod, args, output, dtype=loaded: _cast_floating(output, dtype))
    return upcast


def downcast_state_dict(model, upcast: dict[str, torch.dtype], modules: dict) -> dict:
    """The model's state dict with the upcast modules' tensors back in their loaded dtype (what is saved)."""
    names = {id(p): dtype for name, dtype in upcast.items() for p in modules[name].parameters()}
    by_name = {n: names[id(p)] for n, p in model.named_parameters() if id(p) in names}
    return {n: (t.to(by_name[n]) if n in by_name else t) for n, t in model.state_dict().items()}


# ---- backward stops at the lowest tuned layer ----------------------------------------------------------------------

def lowest_trainable_position(model, plan: Plan, *, tune_merger: bool = False) -> int | None:
    """The position (in the pruned stack) of the lowest tuned decoder layer, or None when the backward pass must go
    further down (the merger trains) or no decoder layer trains."""
    if tune_merger or not plan.tuned_layers:
        return None
    return current_kept_layers(model.config).index(min(plan.tuned_layers))


def _cut_input(module, args, kwargs):
    # A fresh leaf: the backward pass ends here. requires_grad so that reentrant checkpointing of this layer (and of
    # every layer above) still computes gradients: it only does so for segments whose inputs require grad.
    if args:
        hidden = args[0].detach().requires_grad_(torch.is_grad_enabled() and module.training)
        return (hidden, *args[1:]), kwargs
    hidden = kwargs["hidden_states"].detach().requires_grad_(torch.is_grad_enabled() and module.training)
    return args, {**kwargs, "hidden_states": hidden}


class StopBackwardBelow(TrainerCallback):
    """Cut the graph at the input of the lowest tuned layer, and undo what activation checkpointing set up below it.

    transformers (5.23+) calls `enable_input_require_grads()` when it enables activation checkpointing, so the
    embeddings' output requires grad and every frozen layer below the first tuned one builds a graph, stores
    checkpoints and runs a backward pass for nothing. At `on_train_begin` (after checkpointing is enabled) this
    removes those hooks and turns checkpointing off for the modules below the cut, which no longer need it. The cut
    is in place while training runs (`on_train_begin` .. `on_train_end`), not after.
    """

    def __init__(self, model, position: int):
        self.model, self.position = model, position  # the model itself (under peft, the base the adapters are in)
        self.layers = model.model.language_model.layers
        self.handle = None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.handle is None:
            self.handle = self.layers[self.position].register_forward_pre_hook(_cut_input, with_kwargs=True)
        self.model.disable_input_require_grads()
        for module in [*self.layers[: self.position], self.model.model.visual]:
            for sub in module.modules():
                if getattr(sub, "gradient_checkpointing", False):
                    sub.gradient_checkpointing = False

    def on_train_end(self, args, state, control, **kwargs):
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


def resolve_checkpointing_kwargs(requested: dict | None, zero3: bool) -> dict:
    """Activation checkpointing kwargs: the user's, with `use_reentrant` chosen when unset: reentrant under DeepSpeed
    ZeRO-3, non-reentrant elsewhere (PyTorch's recommendation).

    Non-reentrant checkpointing with frozen parameters fails on 2+ ZeRO-3 ranks in DeepSpeed releases without
    DeepSpeed#8148 (merged July 2026; 0.19.8 has it): "Recomputed values ... have different metadata"
    (transformers#47254, DeepSpeed#4332). Reentrant works with every release, so it is the default there; an explicit
    `use_reentrant=False` is kept, with a warning.
    """
    kwargs = dict(requested or {})
    if "use_reentrant" not in kwargs:
        kwargs["use_reentrant"] = zero3
    elif zero3 and kwargs["use_reentrant"] is False:
        logger.warning(
            "use_reentrant=False under DeepSpeed ZeRO-3 with frozen layers fails on 2+ ranks with DeepSpeed releases "
            "older than the fix of DeepSpeed#8148 (\"Recomputed values ... have different metadata\"); unset it to "
            "get reentrant checkpointing, which works with every release.")
    return kwargs


# ---- distillation from the dense model ------------------------------------------------------------------------------

def hidden_match_points(plan: Plan, kept: list[int]) -> list[tuple[int, int | None]]:
    """Where the student's hidden state is matched to the teacher's: for each tuned layer at position `p` of the
    pruned stack, the input of the next kept layer (position `p + 1`) against the teacher's input of that same
    original layer, `kept[p + 1]`. The tuned layer must stand in for the dropped layers between it and the next kept
    one, so the point to match is where the dense stack has run them too. After the last kept layer, `None`: the
    final (normed) states are matched.

    Returns:
        `(student position, teacher original layer)` pairs; the position is that of the layer whose input is taken.
    """
    points = []
    for original in plan.tuned_layers:
        p = kept.index(original)
        points.append((p + 1, kept[p + 1]) if p + 1 < len(kept) else (len(kept), None))
    return points


class _States:
    """Forward hooks that keep the input of given decoder layers and the final normed state of one forward."""

    def __init__(self, language_model, layer_inputs: list[int]):
        self.language_model, self.layer_inputs = language_model, layer_inputs
        self.inputs: dict[int, torch.Tensor] = {}
        self.final: torch.Tensor | None = None
        self._handles = []

    def __enter__(self):
        layers = self.language_model.layers
        for i in self.layer_inputs:
            self._handles.append(layers[i].register_forward_pre_hook(self._keep(i), with_kwargs=True))
        self._handles.append(self.language_model.norm.register_forward_hook(self._keep_final))
        return self

    def _keep(self, i):
        def hook(module, args, kwargs):
            self.inputs[i] = args[0] if args else kwargs["hidden_states"]

        return hook

    def _keep_final(self, module, args, output):
        self.final = output

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def distillation_kl(student_hidden, teacher_hidden, student_head, teacher_head, temperature: float,
                    chunk: int = 1024) -> torch.Tensor:
    """Sum over positions of KL(teacher || student) of the next-token distributions at `temperature` (times T^2, as
    Hinton et al.), from final hidden states of the answer positions only; the vocabulary projection runs `chunk`
    positions at a time, so teacher and student logits over a 152K vocabulary never exist for the whole batch."""
    import torch.nn.functional as F

    total = student_hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, student_hidden.shape[0], chunk):
        student_logits = student_head(student_hidden[start:start + chunk]).float() / temperature
        with torch.no_grad():
            teacher_logits = teacher_head(teacher_hidden[start:start + chunk].to(teacher_head.weight.device))
            teacher_logp = F.log_softmax(teacher_logits.float().to(student_logits.device) / temperature, dim=-1)
        total = total + F.kl_div(F.log_softmax(student_logits, dim=-1), teacher_logp, log_target=True,
                                 reduction="sum")
    return total * temperature**2


class InterlaceSFTTrainer(SFTTrainer):
    """`SFTTrainer` for INTERLACE's selective fine-tune.

    Args:
        model: a pruned Qwen3-VL (from `prune_model` or a pruned checkpoint).
        plan: the plan it was pruned with; its `tuned_layers` are the ones that train.
        args: an `InterlaceSFTConfig` (the paper's defaults).
        processor_source: a checkpoint directory whose processor / tokenizer files are copied, byte for byte, into
            every saved model (the base's). Without it the training processor is saved (TRL's behaviour).
        provenance: file name -> text, written next to every saved model (the recipe with the values that ran).
        teacher_model: the dense model to distil from (frozen, eval mode, on the student's devices; under DeepSpeed
            sharded like the student through TRL's `prepare_deepspeed`). Its next-token distribution on the answer
            tokens (`distill_alpha`) and its hidden states after each tuned layer's block (`distill_hidden`) are
            added to the SFT loss.
        **kwargs: everything `SFTTrainer` takes (`train_dataset`, `processing_class`, ...).
    """

    _tag_names = ["trl", "sft", "interlace", "layer-pruning"]
    _name = "INTERLACE"

    def __init__(self, model, plan: Plan, args: InterlaceSFTConfig | None = None, *,
                 processor_source: str | Path | None = None, provenance: dict[str, str] | None = None,
                 teacher_model=None, peft_config=None, **kwargs):
        from .modeling import register_auto_classes

        register_auto_classes()  # checkpoints keep the Interlace classes' code and auto_map
        if isinstance(model, str):
            raise ValueError("InterlaceSFTTrainer needs the loaded, pruned model (see interlace_hf.train.load_for_training).")
        args = args or InterlaceSFTConfig(output_dir="interlace-sft")
        self.plan = plan
        self.processor_source = Path(processor_source) if processor_source is not None else None
        self.provenance = dict(provenance or {})
        extras = dict(tune_merger=args.tune_merger, tune_lm_head=args.tune_lm_head)
        # Before SFTTrainer / accelerate / DeepSpeed see the model: the optimizer is built from these flags.
        trainable, total = freeze_for_plan(model, plan, **extras)
        if peft_config is not None:
            from .adapters import config_for_plan

            if args.tune_merger or args.tune_lm_head:
                raise ValueError("--use_peft puts LoRA adapters on the tuned layers only; --tune_merger / "
                                 "--tune_lm_head need full fine-tuning (drop --use_peft, or those flags).")
            peft_config = config_for_plan(peft_config, plan, model)
            if args.learning_rate <= PAPER_DEFAULTS["learning_rate"]:
                logger.warning("--use_peft at learning rate %g (the paper's rate for training the layers themselves): "
                               "LoRA adapters usually need about 10x more (TRL's LoRA guidance; the testbed comparison "
                               "ran LoRA at 10x the SFT rate); set --learning_rate.", args.learning_rate)
            if args.push_to_hub and str(getattr(args.hub_strategy, "value", args.hub_strategy)) != "end":
                # A checkpoint holds the adapter only; the repo gets the merged model once, at the end.
                logger.warning("--use_peft: the model is pushed once, merged, when training ends (hub_strategy "
                               "'end'); checkpoints hold the adapter only and are not pushed.")
                from transformers.trainer_utils import HubStrategy

                args.hub_strategy = HubStrategy.END
        self.student = model  # the model itself: under peft, the base inside the PeftModel (adapters injected)
        cut = lowest_trainable_position(model, plan, tune_merger=args.tune_merger)
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if cut is not None:
            callbacks.append(StopBackwardBelow(model, cut))
        super().__init__(model, args=args, callbacks=callbacks, peft_config=peft_config, **kwargs)
        self.uses_peft = peft_config is not None
        if self.uses_peft:
            from .adapters import check_adapter_placement

            check_adapter_placement(self.accelerator.unwrap_model(self.model), plan,
                                    current_kept_layers(model.config))
            trainable, total = count_parameters(self.model)  # the adapters, after wrapping
        from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

        zero3 = bool(self.is_deepspeed_enabled and is_deepspeed_zero3_enabled())
        if self.args.activation_checkpointing:
            self.args.activation_checkpointing_kwargs = resolve_checkpointing_kwargs(
                self.args.activation_checkpointing_kwargs, zero3)
        self._trainable_modules = trainable_modules(model, plan, **extras)
        self._upcast: dict[str, torch.dtype] = {}
        # DeepSpeed keeps fp32 masters of what trains itself; peft holds the adapters in fp32 (autocast_adapter_dtype)
        if not self.is_deepspeed_enabled and not self.uses_peft:
            half = {n for n, m in self._trainable_modules.items()
                    if any(p.requires_grad and p.dtype in HALF_DTYPES for p in m.parameters())}
            if half and self.is_fsdp_enabled:
                raise ValueError(
                    "FSDP shards each unit as one flat tensor of one dtype, so the trained layers cannot hold fp32 master "
                    "weights next to bf16 frozen ones: load the model in float32 (--dtype float32) and let FSDP's "
                    "mixed precision compute in bf16, or use DeepSpeed ZeRO-3 (recipes/accelerate/zero3.yaml).")
            self._upcast = upcast_trainable(self.model, self._trainable_modules)
        self.teacher = self._prepare_teacher(teacher_model) if teacher_model is not None else None
        logger.warning(
            "INTERLACE fine-tune: trainable %s / %s parameters (%.2f%%): %stuned layers %s%s%s; backward stops at %s; "
            "checkpointing %s; master weights %s",
            f"{trainable:,}", f"{total:,}", 100 * trainable / max(total, 1),
            f"LoRA r={peft_config.r} on {sorted(peft_config.target_modules)} of the " if self.uses_peft else "",
            list(plan.tuned_layers),
            " + merger" if args.tune_merger else "", " + lm_head" if args.tune_lm_head else "",
            f"original layer {min(plan.tuned_layers)}" if cut is not None else
            ("the inputs (the merger trains)" if args.tune_merger else "the inputs (no decoder layer trains)"),
            self.args.activation_checkpointing_kwargs if self.args.activation_checkpointing else "off",
            "fp32 (upcast from " + ", ".join(sorted({str(d).removeprefix("torch.") for d in self._upcast.values()})) + ")"
            if self._upcast else ("kept by DeepSpeed" if self.is_deepspeed_enabled else
                                  "adapters in fp32 (peft)" if self.uses_peft else "as loaded (fp32)"),
        )

    def _prepare_teacher(self, teacher):
        """Check, freeze and place the teacher; decide the hidden-state match points."""
        layers = len(teacher.model.language_model.layers)
        if layers != self.plan.num_layers:
            raise ValueError(f"the teacher has {layers} decoder layers but the plan was made for {self.plan.num_layers}; "
                             "distil from the dense model the student was pruned from (--teacher base).")
        teacher.eval().requires_grad_(False)
        if self.is_deepspeed_enabled:
            from trl.models.utils import prepare_deepspeed

            prepared = prepare_deepspeed(teacher, self.accelerator)  # ZeRO-3: sharded like the student
        elif self.is_fsdp_enabled:
            from trl.models.utils import prepare_fsdp

            prepared = prepare_fsdp(teacher, self.accelerator)
        else:
            prepared = teacher.to(self.accelerator.device)
        self._teacher_module = teacher
        self._match_points = hidden_match_points(self.plan, current_kept_layers(self.student.config))
        logger.warning("distilling from the dense model: KL x %g at T=%g on the answer tokens, hidden states x %g at "
                       "%s", self.args.distill_alpha, self.args.distill_temperature, self.args.distill_hidden,
                       [f"student input {p} ~ teacher input {t}" if t is not None else "final states"
                        for p, t in self._match_points])
        return prepared

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The SFT loss, plus (with a teacher, while training) the distillation terms, normalised like it: the KL by
        the same token count (`num_items_in_batch` over the accumulated batch), the hidden-state loss per micro-batch
        divided by the accumulation steps."""
        if self.teacher is None or not self.model.training or return_outputs:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        import torch.nn.functional as F

        args = self.args
        points = self._match_points if args.distill_hidden else []
        student_language = self.student.model.language_model
        with _States(student_language, [p for p, t in points if t is not None]) as student:
            loss = super().compute_loss(model, inputs, num_items_in_batch=num_items_in_batch)
        teacher = self._teacher_module
        with torch.no_grad(), _States(teacher.model.language_model, [t for _, t in points if t is not None]) as dense:
            teacher.model(**{k: v for k, v in inputs.items() if k != "labels"})  # no LM head: no 152K logits
        answer = inputs["labels"][:, 1:] != -100
        if args.distill_alpha:
            kl_sum = distillation_kl(student.final[:, :-1][answer], dense.final[:, :-1][answer], self.student.lm_head,
                                     teacher.lm_head, args.distill_temperature)
            tokens = num_items_in_batch if num_items_in_batch is not None else answer.sum()
            kl = kl_sum / torch.as_tensor(tokens, device=kl_sum.device).clamp(min=1)
            if args.average_tokens_across_devices and num_items_in_batch is not None:
                kl = kl * self.accelerator.num_processes  # as the SFT loss: DDP averages the gradients
            loss = loss + args.distill_alpha * kl.to(loss.dtype)
            self._metrics["train"]["distill_kl"].append(float(kl_sum.detach()) / max(int(answer.sum()), 1))
        if points:
            mask = inputs["attention_mask"].bool()
            terms = []
            for p, t in points:
                mine, theirs = (student.inputs[p], dense.inputs[t]) if t is not None else (student.final, dense.final)
                cosine = F.cosine_similarity(mine.float(), theirs.float().to(mine.device), dim=-1)
                terms.append((1 - cosine)[mask].mean())
            hidden = torch.stack(terms).mean()
            steps = self.current_gradient_accumulation_steps if num_items_in_batch is not None else 1
            loss = loss + args.distill_hidden * hidden.to(loss.dtype) / steps
            self._metrics["train"]["distill_hidden"].append(float(hidden.detach()))
        return loss

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save the model (every rank calls this; under ZeRO-3 the shards are gathered). With LoRA, the adapters are
        merged into a plain pruned checkpoint; the trainer's own `checkpoint-*` saves keep the adapter (a resume)."""
        if self.uses_peft and not _internal_call:
            self.save_merged(output_dir)
            if self.args.push_to_hub:
                # Not Trainer.push_to_hub: it saves (the adapter, under peft) into output_dir before uploading it.
                if Path(output_dir or self.args.output_dir).resolve() != Path(self.args.output_dir).resolve():
                    logger.warning("push_to_hub uploads output_dir (%s), not %s.", self.args.output_dir, output_dir)
                self.create_model_card()
                self.push_final()
            return
        super().save_model(output_dir, _internal_call=_internal_call)

    def _full_state_dict(self) -> dict:
        """The whole model's state dict on the main process (gathered under ZeRO-3, where every rank must call this)."""
        if self.is_deepspeed_enabled:
            try:
                return self.accelerator.get_state_dict(self.deepspeed)
            except ValueError as err:
                raise ValueError(f"{err}: merging the LoRA adapters needs the full weights; set "
                                 "zero3_save_16bit_model: true (recipes/accelerate/zero3.yaml does).") from None
        return self.accelerator.get_state_dict(self.model)

    def save_merged(self, output_dir: str | None = None) -> None:
        """The LoRA adapters merged into the tuned layers, saved as a plain pruned checkpoint (same format and
        `auto_map` as the model trained, with plan, processor and recipe); the model in memory keeps its adapters."""
        from .adapters import merged_state_dict

        output_dir = output_dir or self.args.output_dir
        state_dict = self._full_state_dict()
        if not self.args.should_save:
            return
        merged = merged_state_dict(self.accelerator.unwrap_model(self.model), state_dict)
        self.student.save_pretrained(output_dir, state_dict=merged)
        if self.processor_source is None and self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)  # else write_provenance copies the base's files
        self.write_provenance(output_dir)

    def save_adapter(self, output_dir: str | Path) -> None:
        """The LoRA adapter alone (peft's format, for the pruned model before training); every rank calls this."""
        if not self.uses_peft:
            raise ValueError("there is no adapter to save: this run does not use --use_peft.")
        super().save_model(str(output_dir), _internal_call=True)  # a PeftModel saves its adapter

    def _save(self, output_dir: str | None = None, state_dict=None):
        output_dir = output_dir or self.args.output_dir
        # A checkpoint-* folder keeps the fp32 masters (an exact resume); the model itself is saved in its dtype.
        if state_dict is None and self._upcast and not Path(output_dir).name.startswith(PREFIX_CHECKPOINT_DIR):
            state_dict = downcast_state_dict(self.model, self._upcast, self._trainable_modules)
        processing_class = self.processing_class
        if self.processor_source is not None:
            self.processing_class = None  # the base's files are copied below instead of the training processor's
        try:
            super()._save(output_dir, state_dict=state_dict)
        finally:
            self.processing_class = processing_class
        if self.args.should_save:
            self.write_provenance(output_dir)

    def write_provenance(self, directory: str | Path) -> None:
        """The plan, the base's processor files and the recipe files, next to a saved model."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.plan.save(directory / PLAN_FILE)
        if self.processor_source is not None:
            from .checkpoint import copy_processor_files

            copy_processor_files(self.processor_source, directory)
        for name, text in self.provenance.items():
            (directory / name).write_text(text)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        # transformers copies the weights from the checkpoint into output_dir and uploads output_dir: make it a
        # complete model first (plan, processor, recipe, card), so every pushed revision loads and says what it is.
        if str(getattr(self.args.hub_strategy, "value", self.args.hub_strategy)) == "end":
            return  # transformers pushes nothing from checkpoints then
        if self.is_world_process_zero():
            self.write_provenance(self.args.output_dir)
            for name in ("config.json", "generation_config.json", *(p.name for p in Path(checkpoint_folder).glob("*.py"))):
                if (Path(checkpoint_folder) / name).is_file():
                    shutil.copy2(Path(checkpoint_folder) / name, Path(self.args.output_dir) / name)
            self.create_model_card()
        processing_class = self.processing_class
        if self.processor_source is not None:
            self.processing_class = None
        try:
            super()._push_from_checkpoint(checkpoint_folder)
        finally:
            self.processing_class = processing_class

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None, tags=None, **kwargs):
        """Our card (what was dropped / tuned, the scores, usage for the format, the recipe), not TRL's default.

        Written into `output_dir` once it holds a model (TRL also calls this before each checkpoint save, when it may
        not yet); the plan is the trainer's own, written first.
        """
        if not self.is_world_process_zero() or not (Path(self.args.output_dir) / "config.json").is_file():
            return
        self.write_card(self.args.output_dir, model_name=model_name, dataset_name=dataset_name, tags=tags)

    def write_card(self, directory: str | Path, *, model_name: str | None = None, dataset_name: str | None = None,
                   tags=None) -> Path:
        """Render the model card into `directory` (a saved model): the plan, the recipe, and the trainer's tags."""
        from .card import write_model_card

        directory = Path(directory)
        self.plan.save(directory / PLAN_FILE)
        if isinstance(tags, str):
            tags = [tags]
        extra_tags = list(dict.fromkeys([*self._tag_names, *(getattr(self.model, "model_tags", None) or []),
                                         *(tags or [])]))
        name = self.args.hub_model_id or model_name or Path(self.args.output_dir).name  # the Hub name when pushing
        return write_model_card(directory, model_name=name, trained=self.state.global_step > 0,
                                datasets=[dataset_name] if dataset_name and "/" in dataset_name else None,
                                extra_tags=extra_tags)

    def push_final(self) -> dict | None:
        """Upload the finished `output_dir` (model, plan, processor, recipe, card; no checkpoints) to the Hub repo
        the trainer pushed to during training, after any upload still in flight. Retried, and files already there are
        skipped (`hub.push_directory`)."""
        self._finish_current_push()
        if not self.is_world_process_zero():
            return None
        from huggingface_hub import HfApi

        from .hub import push_directory

        result = push_directory(HfApi(token=self.args.hub_token), self.args.output_dir, self.hub_model_id,
                                private=bool(self.args.hub_private_repo), revision=self.args.hub_revision,
                                commit_message="End of training (interlace-hf)")
        logger.warning("pushed %s: %d files uploaded, %d unchanged", self.hub_model_id, len(result["uploaded"]),
                       len(result["skipped"]))
        return result
