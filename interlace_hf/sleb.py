"""SLEB baseline (Song et al., 2024, "SLEB: Streamlining LLMs through Redundancy Verification and Elimination of
Transformer Blocks"): remove, one at a time, the decoder layer whose removal raises the calibration loss least.

Unlike the similarity-based strategies this needs the model and data, so it lives outside the pure `selection`
module. Layers are removed virtually (forward hooks that pass the input through, deepstack additions kept), so each
candidate costs one evaluation and nothing is copied.
"""

from __future__ import annotations

import logging

import torch

from .data import Record
from .plan import Plan
from .surgery import bypass_layers

logger = logging.getLogger(__name__)


def build_loss_batches(processor, records: list[Record], batch_size: int = 1, answer_only: bool = False) -> list[dict]:
    """Tokenized first turns (prompt + answer) with labels on the text tokens (padding and image tokens masked).

    With `answer_only`, only the answer and its end-of-turn token are labelled (the loss an answer-only SFT model
    was trained on); by default every text token is, as SLEB scores a language model's perplexity.
    """
    batches = []
    image_token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    end_id = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        texts, images = [], []
        for record in chunk:
            user, answer = record.turns[0]
            messages = record.prompt_messages()
            if answer:
                messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
            texts.append(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=not answer))
            images.extend(record.load_images())
        inputs = dict(processor(text=texts, images=images or None, padding=True, return_tensors="pt"))
        labels = inputs["input_ids"].clone()
        labels[inputs["attention_mask"] == 0] = -100
        labels[labels == image_token_id] = -100
        if answer_only:
            for row, record in enumerate(chunk):
                _keep_answer_only(processor, record, labels[row], inputs["attention_mask"][row], end_id)
        inputs["labels"] = labels
        batches.append(inputs)
    return batches


def _keep_answer_only(processor, record: Record, labels: torch.Tensor, attention_mask: torch.Tensor,
                      end_id: int) -> None:
    """Mask (in place) every label but the answer's tokens and the `<|im_end|>` closing it."""
    prompt = processor.apply_chat_template(record.prompt_messages(), tokenize=False, add_generation_prompt=True)
    images = record.load_images()
    prompt_length = processor(text=[prompt], images=images or None, return_tensors="pt")["input_ids"].shape[1]
    positions = attention_mask.nonzero().flatten()
    first = int(positions[0])
    ends = (labels == end_id).nonzero().flatten()
    last = int(ends[-1]) if len(ends) else int(positions[-1])
    labels[: first + prompt_length] = -100
    labels[last + 1 :] = -100


@torch.inference_mode()
def calibration_loss(model, batches: list[dict]) -> float:
    """Token-weighted mean next-token loss over the batches (what the model's own `loss` gives). The vocabulary
    projection runs only where there is a label: on Qwen3-VL's 152K vocabulary, logits at every position would cost
    more memory than the rest of the pass (600 MB a 1000-token sample in float32)."""
    import torch.nn.functional as F

    device = next(model.parameters()).device
    head = model.lm_head
    total, count = 0.0, 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        labels = batch.pop("labels")
        hidden = model.model(**batch, use_cache=False).last_hidden_state
        targets = labels[:, 1:].to(hidden.device)
        keep = targets != -100
        logits = head(hidden[:, :-1][keep].to(head.weight.device))
        total += float(F.cross_entropy(logits.float(), targets[keep].to(logits.device), reduction="sum"))
        count += int(keep.sum())
    return total / max(count, 1)


def select_sleb(
    model,
    processor,
    records: list[Record],
    num_drop: int,
    *,
    protected_layers=(),
    batch_size: int = 1,
    drop_ratio: float | None = None,
    tune_baselines: bool = False,
    answer_only: bool = False,
    progress: bool = True,
) -> Plan:
    """Greedy SLEB: `num_drop` rounds, each removing the layer whose removal gives the lowest calibration loss.

    Args:
        model: a dense Qwen3-VL.
        processor: its processor.
        records: calibration samples (their first turn, with the answer when there is one).
        num_drop: layers to remove.
        protected_layers: layers never removed.
        tune_baselines: also mark, for each dropped layer, the next surviving layer as tuned (for a fair comparison
            with INTERLACE's fine-tune); off by default, as in the SLEB paper.
        answer_only: score the loss on the answers only (see `build_loss_batches`); off by default, as in SLEB.
    """
    num_layers = len(model.model.language_model.layers)
    protected = set(protected_layers)
    candidates = [i for i in range(num_layers) if i not in protected]
    if num_drop < 0 or num_drop >= num_layers:
        raise ValueError(f"sleb: cannot drop {num_drop} of {num_layers} layers; use 0..{num_layers - 1}.")
    if num_drop > len(candidates):
        raise ValueError(
            f"sleb: {num_drop} layers to drop but only {len(candidates)} are not protected; lower --drop-ratio / "
            "--num-drop or protect fewer layers (--protect)."
        )
    from tqdm.auto import tqdm

    from .selection import neighbors_of

    evaluations = sum(len(candidates) - r for r in range(num_drop))
    logger.warning("sleb: %d rounds, %d evaluations x %d calibration samples = %d sample forward passes%s",
                   num_drop, evaluations, len(records), evaluations * len(records),
                   "" if len(records) <= 128 else " (SLEB used 128 samples: --calibration-samples caps them)")
    batches = build_loss_batches(processor, records, batch_size, answer_only=answer_only)
    was_training = model.training
    model.eval()
    dropped: list[int] = []
    history = []
    bar = tqdm(total=sum(len(candidates) - r for r in range(num_drop)), desc="sleb", unit="eval", disable=not progress)
    try:
        for _ in range(num_drop):
            best_layer, best_loss = None, float("inf")
            for layer in candidates:
                if layer in dropped:
                    continue
                handles = bypass_layers(model, dropped + [layer])
                try:
                    loss = calibration_loss(model, batches)
                finally:
                    for handle in handles:
                        handle.remove()
                bar.update(1)
                if loss < best_loss:  # strict: ties keep the lower index
                    best_layer, best_loss = layer, loss
            dropped.append(best_layer)
            history.append({"dropped": best_layer, "loss": best_loss})
            logger.info("sleb: drop layer %d (calibration loss %.4f)", best_layer, best_loss)
    finally:
        bar.close()
        model.train(was_training)
    # The same neighbours as shortgpt / angular: the next survivor, or the one before past the end of the model.
    tuned = neighbors_of(dropped, num_layers) if tune_baselines else []
    return Plan(
        num_layers=num_layers,
        dropped_layers=tuple(dropped),
        tuned_layers=tuple(tuned),
        strategy="sleb",
        drop_ratio=drop_ratio,
        metadata={"num_drop": num_drop, "protected_layers": sorted(protected), "removal_order": history,
                  "loss_on": "answers" if answer_only else "all text tokens"},
    )


def run_sleb(args, protected_layers=(), *, model=None) -> Plan:
    """`--strategy sleb` from `SelectionArgs`: sample the calibration data, load the model if needed, select."""
    from .data import check_images, load_records, sample_indices
    from .checkpoint import load_model
    from .processing import load_processor
    from .utils.runtime import resolve_device, resolve_dtype
    from .selection import num_to_drop

    device = resolve_device(getattr(args, "device", "auto"))
    records, _ = load_records(args.data)
    indices = sample_indices(len(records), args.sample_fraction, args.seed)
    cap = getattr(args, "calibration_samples", None)
    if cap:  # a seeded random sample already: its first `cap` records are one too
        indices = indices[:cap]
    samples = [records[i] for i in indices]
    check_images(samples, indices=indices)  # before the model is loaded
    if model is None:
        dtype = resolve_dtype(getattr(args, "dtype", "auto"), device)
        model = load_model(args.model, dtype=dtype, device_map=device if device != "cpu" else None)
    processor = load_processor(args.model)
    max_pixels = getattr(args, "sleb_max_pixels", None)
    if max_pixels:  # SLEB's ~L^2/2 evaluations each run every calibration image: a bounded resolution
        size = dict(processor.image_processor.size or {})
        longest = min(size.get("longest_edge") or max_pixels, max_pixels)
        processor.image_processor.size = {"shortest_edge": min(size.get("shortest_edge") or longest, longest),
                                          "longest_edge": longest}
    num_layers = len(model.model.language_model.layers)
    n = num_to_drop(num_layers, drop_ratio=args.drop_ratio, num_drop=args.num_drop)
    return select_sleb(
        model,
        processor,
        samples,
        n,
        protected_layers=protected_layers,
        batch_size=getattr(args, "batch_size", 1),
        drop_ratio=args.drop_ratio,
        tune_baselines=args.tune_baselines,
    )
