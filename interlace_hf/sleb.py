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


def build_loss_batches(processor, records: list[Record], batch_size: int = 1) -> list[dict]:
    """Tokenized first turns (prompt + answer) with labels on the text tokens (padding and image tokens masked)."""
    batches = []
    image_token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
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
        inputs["labels"] = labels
        batches.append(inputs)
    return batches


@torch.inference_mode()
def calibration_loss(model, batches: list[dict]) -> float:
    """Token-weighted mean next-token loss over the batches."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        tokens = int((batch["labels"][:, 1:] != -100).sum())
        loss = model(**batch, use_cache=False).loss
        total += float(loss) * tokens
        count += tokens
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

    batches = build_loss_batches(processor, records, batch_size)
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
    tuned = []
    if tune_baselines:
        for layer in sorted(dropped):
            nxt = next((j for j in range(layer + 1, num_layers) if j not in dropped and j not in tuned), None)
            if nxt is not None:
                tuned.append(nxt)
    return Plan(
        num_layers=num_layers,
        dropped_layers=tuple(dropped),
        tuned_layers=tuple(tuned),
        strategy="sleb",
        drop_ratio=drop_ratio,
        metadata={"num_drop": num_drop, "protected_layers": sorted(protected), "removal_order": history},
    )


def run_sleb(args, protected_layers=(), *, model=None) -> Plan:
    """`--strategy sleb` from `SelectionArgs`: sample the calibration data, load the model if needed, select."""
    from .data import load_records, sample_indices
    from .export import load_model
    from .processing import load_processor
    from .selection import num_to_drop

    records, _ = load_records(args.data)
    samples = [records[i] for i in sample_indices(len(records), args.sample_fraction, args.seed)]
    if model is None:
        model = load_model(args.model)
    processor = load_processor(args.model)
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
