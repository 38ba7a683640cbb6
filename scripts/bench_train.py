#!/usr/bin/env python
"""Benchmark of the INTERLACE fine-tune (not a test): in one run, on the same data and the same pruned model,
step time and peak memory of INTERLACE training (only the plan's tuned layers) vs full fine-tuning (every
parameter). Goals: time <= 0.8x, peak memory <= 0.5x. Each mode runs in its own child process (clean peak memory),
the modes alternate, and the step time is the median over the steps after warm-up.

Usage:
    python scripts/bench_train.py                                    # the tiny model on the CPU
    python scripts/bench_train.py --hidden-size 1024 --num-layers 16   # a wider random model
    python scripts/bench_train.py --model DIR --data train.json      # any Qwen3-VL (GPU: CUDA memory)
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


def child(args) -> None:
    import torch
    from transformers import TrainerCallback

    import interlace_hf  # noqa: F401
    from interlace_hf.args import TrainArgs
    from interlace_hf.bench import PeakMemory
    from interlace_hf.export import load_model
    from interlace_hf.plan import Plan
    from interlace_hf.processing import load_processor
    from interlace_hf.surgery import prune_model
    from interlace_hf.train import build_train_dataset
    from interlace_hf.trainer import InterlaceSFTConfig, InterlaceSFTTrainer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    plan = Plan.load(args.plan)
    model = prune_model(load_model(args.model, dtype=torch.bfloat16 if device == "cuda" else torch.float32), plan)
    if device == "cuda":
        model.to(device)
    processor = load_processor(args.model)
    dataset, _ = build_train_dataset(TrainArgs(model=args.model, dataset=args.data,
                                               max_train_samples=args.batch_size * (args.steps + 2)))

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times, self._start = [], None

        def on_step_begin(self, *a, **k):
            if device == "cuda":
                torch.cuda.synchronize()
            self._start = time.perf_counter()

        def on_step_end(self, *a, **k):
            if device == "cuda":
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self._start)

    config = InterlaceSFTConfig(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,
        max_steps=args.steps + 2, save_strategy="no", logging_steps=1000, report_to="none",
        max_pixels=args.image_size ** 2, min_pixels=32 * 32, dataloader_pin_memory=False,
        activation_checkpointing=True, use_cpu=device == "cpu",
    )
    timer = StepTimes()
    if args.mode == "interlace":
        trainer = InterlaceSFTTrainer(model, plan, args=config, train_dataset=dataset, processing_class=processor,
                                      callbacks=[timer])
    else:  # full fine-tuning of the same pruned model: every parameter trains
        from trl import SFTTrainer

        model.requires_grad_(True)
        trainer = SFTTrainer(model, args=config, train_dataset=dataset, processing_class=processor, callbacks=[timer])
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    with PeakMemory(device) as peak:
        trainer.train()
    print(json.dumps({"step_s": statistics.median(timer.times[2:]), "peak_bytes": peak.peak, "trainable": trainable,
                      "device": device}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a dense Qwen3-VL directory (default: built on the fly)")
    parser.add_argument("--data", help="LLaVA-style .json (default: the synthetic set)")
    parser.add_argument("--hidden-size", type=int, default=0, help="build a random wider model instead of the tiny one")
    parser.add_argument("--num-layers", type=int, default=12)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8, help="timed steps (after 2 warm-up steps)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each mode")
    parser.add_argument("--mode", choices=["interlace", "full"], help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        child(args)
        return

    from interlace_hf.selection import SimilarityTables, select_layers
    from interlace_hf.synthetic import SHAPE_TASKS, make_synthetic

    workdir = Path(tempfile.mkdtemp(prefix="bench-train-"))
    if args.model is None:
        from interlace_hf.bench import benchmark_model

        args.model = str(benchmark_model(workdir / "model", args.hidden_size, args.num_layers, args.image_size))
    if args.data is None:
        args.data = str(make_synthetic(workdir / "data", num=args.batch_size * (args.steps + 2), seed=0,
                                       image_size=args.image_size, tasks=SHAPE_TASKS))  # uniform image sizes
    config = json.loads((Path(args.model) / "config.json").read_text())
    num_layers = config["text_config"]["num_hidden_layers"]
    # A 25% plan with as many tuned layers as dropped ones, as INTERLACE has (which layers does not matter for speed).
    plan = select_layers(SimilarityTables(num_layers, {}), "random", drop_ratio=0.25, seed=0)
    plan_path = plan.save(workdir / "plan.json")

    results = {"interlace": [], "full": []}
    for _ in range(args.repeats):
        for mode in ("interlace", "full"):
            cmd = [sys.executable, __file__, "--mode", mode, "--plan", str(plan_path), "--model", args.model,
                   "--data", args.data, "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
                   "--steps", str(args.steps)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"{mode} run failed:\n{out.stderr[-3000:]}")
            results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    step = {m: statistics.median(r["step_s"] for r in rs) for m, rs in results.items()}
    peak = {m: statistics.median(r["peak_bytes"] for r in rs) for m, rs in results.items()}
    trainable = {m: rs[0]["trainable"] for m, rs in results.items()}
    print(f"model: {args.model} ({num_layers} layers, pruned to {plan.num_kept}) | device: {results['full'][0]['device']} "
          f"| batch {args.batch_size} | {args.steps} timed steps x {args.repeats} runs per mode")
    print(f"plan: {plan.describe()}")
    for mode in ("interlace", "full"):
        print(f"{mode:9s}: trainable {trainable[mode] / 1e6:8.2f}M | step {step[mode] * 1000:8.1f} ms | "
              f"peak memory {peak[mode] / 2**20:8.1f} MiB")
    print(f"step time  interlace / full: {step['interlace'] / step['full']:.3f}  (goal <= 0.8)")
    print(f"peak memory interlace / full: {peak['interlace'] / peak['full']:.3f}  (goal <= 0.5)")


if __name__ == "__main__":
    main()
