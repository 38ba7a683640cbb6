"""Tiny Qwen3-VL builders (model, tokenizer, processor), offline: the embedded default of `--model tiny` and the
test suite's fixture."""
