"""Bridges to evaluation harnesses that download their benchmarks at run time. Neither harness is a dependency:

- `lmms_eval_plugin`: the lmms-eval model `interlace` (`lmms-eval --model interlace --model_args pretrained=...`),
  registered through the `lmms_eval.models` entry point; lmms-eval itself is imported only when the model is used.
- `vlmevalkit`: writes VLMEvalKit's `run.py --config` JSON for a base model and its pruned versions.

See docs/evaluation.md.
"""
