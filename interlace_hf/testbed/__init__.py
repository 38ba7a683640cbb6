"""`interlace-hf testbed`: an offline retention testbed: a small Qwen3-VL trained here, then pruned by every
strategy and compared.

Real Qwen3-VL weights cannot be downloaded everywhere, and a randomly initialised model answers nothing, so the
paper's comparison (relative performance after dropping layers, with and without the short fine-tune) cannot be
measured on the tiny demo model. The testbed makes a model that *does* answer: the real Qwen3-VL classes (DeepStack
included) at small width, trained from scratch on `interlace_hf.datasets.synthetic`'s checkable questions.

    interlace-hf testbed train OUT [--size small|base] [--steps N] [--seed S]
    interlace-hf testbed compare OUT --drop-ratios 0.10 0.25 [--strategies interlace ... sleb]
    interlace-hf testbed recovery OUT [--seeds 0 1 2] [--methods sft kd_logit kd_hidden kd_both lora]
    interlace-hf testbed oracle OUT [--drop-ratio 0.25] [--samples 200]
    interlace-hf testbed summary OUT --results T0 T1 T2   (one compared testbed per seed)

`train` writes `OUT/model` (a normal checkpoint), `OUT/data/{train,heldout}` and `OUT/testbed.json` (held-out
accuracy per task type next to the majority-answer baseline). `compare` runs, for every drop ratio and strategy, the
whole method through the toolkit's own stages (similarity -> selection -> prune -> the INTERLACE fine-tune -> eval),
plus Dense and Dense-FT rows and a TTFT benchmark, and writes `OUT/compare/results.{json,md}`. Both are resumable:
a rerun continues the training from its last checkpoint and skips every finished row.

Modules: `model` (sizes, data, accuracy), `train`, `compare`, `recovery` (SFT vs distillation vs LoRA, paired),
`oracle` (many drop sets scored in memory; each method's percentile), `summary` (over training seeds), `report`.
"""
