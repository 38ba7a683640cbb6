"""Speed and memory measurement helpers shared by the benchmark scripts (benchmarks, not tests)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory above the level at entry: CUDA max allocated, or sampled RSS on CPU."""

    def __init__(self, device: str):
        self.device = device
        self.peak = 0

    def __enter__(self):
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            self.start = _rss_bytes()
            self._stop = threading.Event()
            self._max = self.start
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self._max = max(self._max, _rss_bytes())
            time.sleep(0.0002)

    def __exit__(self, *exc):
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.start
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self._max, _rss_bytes()) - self.start


def build_random_model(directory: Path, hidden: int, layers: int, image_side: int) -> Path:
    """The tiny model's structure at a real width (random weights), with images up to `image_side` pixels."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    from interlace_hf.tiny import build_tiny_processor, tiny_config

    processor = build_tiny_processor()
    processor.image_processor.size = {"shortest_edge": 32 * 32, "longest_edge": image_side * image_side}
    config = tiny_config(layers, processor.tokenizer)
    text = config.text_config
    text.hidden_size, text.intermediate_size, text.head_dim = hidden, 3 * hidden, 64
    text.num_attention_heads, text.num_key_value_heads = hidden // 64, max(1, hidden // 256)
    text.rope_parameters["mrope_section"] = [16, 8, 8]
    config.vision_config.out_hidden_size = hidden
    torch.manual_seed(0)
    Qwen3VLForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory




def benchmark_model(directory: Path, hidden_size: int = 0, num_layers: int = 12, image_side: int = 224) -> Path:
    """The model a benchmark runs on when none is given: the tiny one, or (`hidden_size`) a wider random one."""
    if hidden_size:
        return build_random_model(directory, hidden_size, num_layers, image_side)
    from .tiny import build_tiny_model

    return build_tiny_model(directory, num_layers=num_layers)
