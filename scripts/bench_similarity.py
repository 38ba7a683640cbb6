#!/usr/bin/env python
"""Benchmark of `interlace-hf similarity` (not a test): in one run, on the same samples,

- time of the one-pass similarity / time of plain forward passes (goal: <= 1.10), interleaved repeats, medians;
- peak memory of the similarity pass / of the naive `output_hidden_states=True` approach (the paper's code, which
  keeps every layer's hidden states), each measured in its own child process (CUDA: max allocated; CPU: peak RSS
  above the level before the pass, sampled every 0.2 ms).

- with --padding: the share of padding in the batches of a FineVision-like length mix, in sample order vs with length
  bucketing (what `interlace-hf similarity` does by default), at several batch sizes (no model: token counts only).

- with --throughput CONFIG: the pass on a random-weight model of a shipped config (qwen3-vl-8b) or a config.json,
  built on the device: samples/s over synthetic records, peak memory, and the projected time for the paper's 24K
  samples (the GPU check runs it on the 8B shape in bf16).

- with --flush-cost: the cost of one flush of partial results against the number of samples scored so far, at the
  paper's scale (36 layers -> 105 blocks of 1-3 layers), today's append-only log vs re-serialising every score
  (what the pass did before): it must stay flat as the run grows.

Usage:
    python scripts/bench_similarity.py                      # the tiny model, built on the fly
    python scripts/bench_similarity.py --flush-cost         # flush cost vs samples (no model)
    python scripts/bench_similarity.py --padding            # padding with and without length bucketing (no model)
    python scripts/bench_similarity.py --throughput qwen3-vl-8b --records 256 --batch-size 8 --image-size 448
    python scripts/bench_similarity.py --model DIR --data calib.json --batch-size 4 --image-size 448
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from interlace_hf.benchmark.measure import PeakMemory
from interlace_hf.benchmark.models import benchmark_model


def _setup(model_dir: str, data: str, num_records: int, device: str):
    import torch

    import interlace_hf

    interlace_hf.register()
    from interlace_hf.data import load_records
    from interlace_hf.checkpoint import load_model
    from interlace_hf.processing import load_processor

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = load_model(model_dir, dtype=dtype, device_map=device if device != "cpu" else None).eval()
    processor = load_processor(model_dir)
    records = load_records(data)[0][:num_records]
    return model, processor, records


def _naive(model, processor, records, batch_size, pack_sizes):
    """The paper's approach: all hidden states of the batch at once, then the block similarities."""
    import torch
    import torch.nn.functional as F

    from interlace_hf.similarity import build_batch

    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(records), batch_size):
            inputs = build_batch(processor, records[start : start + batch_size]).to(device)
            hidden = model(**inputs, output_hidden_states=True, use_cache=False).hidden_states
            mask = inputs["attention_mask"].bool()
            for k in pack_sizes:
                for i in range(len(hidden) - k):
                    cos = F.cosine_similarity(hidden[i].float(), hidden[i + k].float(), dim=-1)
                    ((cos * mask).sum(1) / mask.sum(1)).tolist()


def child(args) -> None:
    """Measure one method's peak memory in a fresh process and print it as JSON."""
    from interlace_hf.similarity import compute_similarities

    model, processor, records = _setup(args.model, args.data, args.records, args.device)
    pack_sizes = (1, 2, 3)
    with PeakMemory(args.device) as peak:
        if args.child == "similarity":
            compute_similarities(model, processor, records, pack_sizes=pack_sizes, batch_size=args.batch_size,
                                 progress=False)
        else:
            _naive(model, processor, records, args.batch_size, pack_sizes)
    print(json.dumps({"peak_bytes": peak.peak}))


def flush_cost(num_layers: int = 36, batch_size: int = 8, checkpoints=(1_000, 4_000, 12_000, 24_000)) -> None:
    """Seconds per flush after N samples: the append-only batches log (one batch's line, then fsync) vs one JSON of
    every score so far (the former progress file), on scores shaped like the paper's run."""
    import json
    import os
    import random

    blocks = [(k, i) for k in (1, 2, 3) for i in range(num_layers - k + 1)]
    rng = random.Random(0)
    workdir = Path(tempfile.mkdtemp(prefix="flush-cost-"))
    log = open(workdir / "similarity_progress.jsonl", "a")
    scores = {k: {i: [] for kk, i in blocks if kk == k} for k in (1, 2, 3)}
    done = 0
    print(f"{len(blocks)} blocks, batch {batch_size}: seconds per flush")
    print(f"{'samples':>8}  {'append + fsync':>15}  {'rewrite all':>12}  ratio")
    for target in checkpoints:
        while done < target:
            batch = {k: {i: [rng.random() for _ in range(batch_size)] for i in scores[k]} for k in scores}
            for k, per_block in batch.items():
                for i, values in per_block.items():
                    scores[k][i].extend(values)
            positions = list(range(done, done + batch_size))
            log.write(json.dumps({"done": done + batch_size, "positions": positions, "scores": batch}) + "\n")
            done += batch_size
        log.flush()
        os.fsync(log.fileno())  # the earlier batches were flushed at earlier flushes
        start = time.perf_counter()
        log.write(json.dumps({"done": done, "positions": positions, "scores": batch}) + "\n")  # since the last flush
        log.flush()
        os.fsync(log.fileno())
        append_s = time.perf_counter() - start
        start = time.perf_counter()
        (workdir / "progress.json").write_text(json.dumps({"done": done, "scores": scores}))
        rewrite_s = time.perf_counter() - start
        print(f"{done:>8}  {append_s:>15.4f}  {rewrite_s:>12.3f}  {rewrite_s / append_s:>6.0f}x")
    log.close()


def padding(num: int = 24_000, seed: int = 0, batch_sizes=(4, 8, 16, 32), max_pixels: int = 1024 * 1024) -> None:
    """Padding of a length mix like FineVision's: image sides log-uniform in 224..1344 px with aspect ratios in
    0.5..2, 0-3 images a sample (mostly 1), questions log-uniform in 16..512 tokens; image tokens as Qwen3-VL's
    processor makes them (16 px patches, 2x2 merge, at most `max_pixels`). An approximation of the real mix, which
    needs the dataset: `record_lengths` gives the real one."""
    import math
    import random

    from interlace_hf.similarity import bucketed_order, padding_fraction
    from interlace_hf.testing.tiny import build_tiny_processor

    image_processor = build_tiny_processor().image_processor
    size = {"patch_size": 16, "merge_size": 2, "min_pixels": 32 * 32 * 4, "max_pixels": max_pixels}
    rng = random.Random(seed)

    def log_uniform(low, high):
        return math.exp(rng.uniform(math.log(low), math.log(high)))

    lengths = []
    for _ in range(num):
        tokens = int(log_uniform(16, 512)) + 20  # the question, and the chat template around it
        for _ in range(rng.choices([0, 1, 2, 3], weights=[5, 80, 10, 5])[0]):
            side, aspect = log_uniform(224, 1344), log_uniform(0.5, 2.0)
            width, height = int(side * math.sqrt(aspect)), int(side / math.sqrt(aspect))
            tokens += image_processor.get_number_of_image_patches(height, width, size) // 4
        lengths.append(tokens)
    ordered = sorted(lengths)
    print(f"{num} samples: tokens median {ordered[num // 2]}, 10th-90th percentile {ordered[num // 10]}-"
          f"{ordered[9 * num // 10]}, max {ordered[-1]} (max_pixels {max_pixels})")
    print(f"{'batch':>5}  {'padding in sample order':>23}  {'bucketed':>8}  computed tokens, bucketed / in sample order")
    in_order, bucketed = list(range(num)), bucketed_order(lengths)
    for batch_size in batch_sizes:
        plain, sorted_ = padding_fraction(lengths, in_order, batch_size), padding_fraction(lengths, bucketed, batch_size)
        print(f"{batch_size:>5}  {100 * plain:>22.1f}%  {100 * sorted_:>7.1f}%  {(1 - plain) / (1 - sorted_):.2f}")


def throughput(config: str, records: int, batch_size: int, image_size: int, device: str, output: str | None,
               dtype: str = "auto") -> dict:
    """samples/s of `compute_similarities` (length bucketing on) on a random-weight model of `config`."""
    import platform
    from datetime import datetime, timezone

    import torch

    from interlace_hf.benchmark.models import build_random_qwen3_vl, load_config_dict, random_processor
    from interlace_hf.data import load_records
    from interlace_hf.similarity import compute_similarities, record_lengths
    from interlace_hf.utils.fileio import write_json_atomic
    from interlace_hf.utils.runtime import resolve_dtype
    from interlace_hf.version import package_versions

    processor, config_dict = random_processor(load_config_dict(config))
    processor.image_processor.size = {"shortest_edge": 32 * 32, "longest_edge": image_size * image_size}
    torch_dtype = resolve_dtype(dtype, device)
    model = build_random_qwen3_vl(config_dict, device=device, dtype=torch_dtype)
    data = _synthetic_calibration(Path(tempfile.mkdtemp(prefix="throughput-")), records, image_size)
    samples = load_records(str(data))[0][:records]
    lengths = record_lengths(processor, samples)
    compute_similarities(model, processor, samples[:batch_size], batch_size=batch_size, progress=False)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    compute_similarities(model, processor, samples, batch_size=batch_size, lengths=lengths, progress=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {
        "config": config, "layers": config_dict["text_config"]["num_hidden_layers"], "records": len(samples),
        "batch_size": batch_size, "image_size": image_size, "tokens_per_sample_median": sorted(lengths)[len(lengths) // 2],
        "dtype": str(torch_dtype).removeprefix("torch."), "seconds": seconds, "samples_per_s": len(samples) / seconds,
        "projected_hours_24k": 24_000 / (len(samples) / seconds) / 3600,
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if device.startswith("cuda") else None,
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU {platform.machine()}",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions("torch", "transformers"),
        "command": "python scripts/bench_similarity.py " + " ".join(sys.argv[1:]),
    }
    print(f"{config}: {len(samples)} samples x {image_size}px, batch {batch_size}, {result['dtype']} on "
          f"{result['device']}: {result['samples_per_s']:.2f} samples/s ({seconds:.1f} s, one timed pass after a "
          f"warm-up batch); 24K samples: {result['projected_hours_24k']:.2f} h"
          + (f"; peak memory {result['peak_memory_bytes'] / 2**30:.1f} GiB" if result["peak_memory_bytes"] else ""))
    if output:
        write_json_atomic(Path(output), result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="Qwen3-VL directory (default: a 12-layer tiny model built on the fly)")
    parser.add_argument("--data", help="LLaVA-style .json (default: a synthetic one)")
    parser.add_argument("--records", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=224, help="side of the synthetic images")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hidden-size", type=int, default=0,
                        help="build a random wider model (text hidden size, head_dim 64) instead of the tiny one")
    parser.add_argument("--num-layers", type=int, default=12, help="decoder layers of the built model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--flush-cost", action="store_true", help="only measure the flush cost vs samples")
    parser.add_argument("--padding", action="store_true", help="only the padding with and without length bucketing")
    parser.add_argument("--throughput", metavar="CONFIG",
                        help="samples/s on a random-weight model of a shipped config (qwen3-vl-8b) or a config.json")
    parser.add_argument("--dtype", default="auto", help="--throughput: auto (bf16 on a GPU), float32, bfloat16")
    parser.add_argument("--output", help="--throughput: results JSON")
    parser.add_argument("--child", choices=["similarity", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flush_cost:
        flush_cost()
        return
    if args.padding:
        padding()
        return
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.child:
        child(args)
        return
    if args.throughput:
        throughput(args.throughput, args.records, args.batch_size, args.image_size, args.device, args.output,
                   args.dtype)
        return

    workdir = Path(tempfile.mkdtemp(prefix="bench-similarity-"))
    if args.model is None:
        args.model = str(benchmark_model(workdir / "model", args.hidden_size, args.num_layers, args.image_size))
    if args.data is None:
        args.data = str(_synthetic_calibration(workdir / "calib", args.records, args.image_size))

    import torch

    from interlace_hf.similarity import build_batch, compute_similarities

    model, processor, records = _setup(args.model, args.data, args.records, args.device)
    device = next(model.parameters()).device

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def plain():
        with torch.inference_mode():
            for start in range(0, len(records), args.batch_size):
                inputs = build_batch(processor, records[start : start + args.batch_size]).to(device)
                model(**inputs, use_cache=False)

    def ours():
        compute_similarities(model, processor, records, batch_size=args.batch_size, progress=False)

    plain(), ours()  # warm-up
    times = {"plain": [], "similarity": []}
    for _ in range(args.repeats):
        for name, fn in (("plain", plain), ("similarity", ours)):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}

    peaks = {}
    for method in ("similarity", "naive"):
        cmd = [sys.executable, __file__, "--child", method, "--model", args.model, "--data", args.data,
               "--records", str(args.records), "--batch-size", str(args.batch_size), "--device", args.device]
        result = subprocess.run(cmd, capture_output=True, text=True, check=True)
        peaks[method] = json.loads(result.stdout.strip().splitlines()[-1])["peak_bytes"]

    layers = len(model.model.language_model.layers)
    print(f"model: {args.model} ({layers} layers) | device: {args.device} | records: {len(records)} | "
          f"batch: {args.batch_size} | image: {args.image_size}px | repeats: {args.repeats}")
    print(f"plain forward passes      median {medians['plain'] * 1000:8.1f} ms")
    print(f"similarity (1,2,3 packs)  median {medians['similarity'] * 1000:8.1f} ms")
    print(f"time ratio similarity / plain forward: {medians['similarity'] / medians['plain']:.3f}  (goal <= 1.10)")
    print(f"peak memory above the loaded model: similarity {peaks['similarity'] / 2**20:.1f} MiB, "
          f"naive output_hidden_states {peaks['naive'] / 2**20:.1f} MiB")
    ratio = peaks["similarity"] / peaks["naive"] if peaks["naive"] else float("nan")
    print(f"memory ratio similarity / naive: {ratio:.3f}")


def _synthetic_calibration(directory: Path, num_records: int, image_size: int) -> Path:
    from PIL import Image, ImageDraw

    directory.mkdir(parents=True, exist_ok=True)
    items = []
    for n in range(num_records):
        image = Image.new("RGB", (image_size, image_size), "white")
        ImageDraw.Draw(image).ellipse([image_size // 8, image_size // 8, image_size // 2, image_size // 2],
                                      fill=["red", "green", "blue"][n % 3])
        image.save(directory / f"{n}.png")
        items.append({"image": f"{n}.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat colour is the circle? " + "Explain. " * (n % 5)},
            {"from": "gpt", "value": "red"}]})
    path = directory / "calib.json"
    path.write_text(json.dumps(items))
    return path


if __name__ == "__main__":
    main()
