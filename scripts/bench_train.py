#!/usr/bin/env python
"""Benchmark of the INTERLACE fine-tune (not a test): in one run, on the same data and the same pruned model, step time
and peak memory of INTERLACE training (only the plan's tuned layers, the paper's SFT) vs the same with distillation
from the dense model (`kd`: KL on the answer tokens + hidden states), vs LoRA on the tuned layers (`lora`, rank 16 on
the seven projections), vs full fine-tuning (every parameter), each next to its IDEAL step time.

The ideal is the measured forward pass (no gradients, same batch, same model) times the counted FLOPs of a training
step over those of a forward (`interlace_hf.benchmark.flops.training_step_flops`): INTERLACE's backward stops at the
lowest tuned layer (tuned layers ~2x a forward, frozen layers above them ~1x, nothing below; with LoRA the tuned
layers' frozen weights ~1x), full fine-tuning backpropagates through everything (~2x); activation checkpointing adds
one recompute of what it covers; distillation adds the dense teacher's forward (no head) and the KL's three
vocabulary projections over the answer positions. Peak memory is measured above the loaded models: the teacher's
weights (`kd`) are reported beside it. measured / ideal says how much of the
step is overhead beyond the arithmetic that has to be done.

Precision, as the trainer does it: the weights are loaded in --dtype; what trains is held in fp32 (master weights) and,
on a GPU, computed under bf16 autocast. Full fine-tuning therefore holds every parameter in fp32 (the standard AMP
recipe). Each mode runs in its own child process (clean peak memory), the modes alternate, and each step time is the
median over the steps after 2 warm-up steps. The ratios are given with their spread over the repeats.

Usage:
    python scripts/bench_train.py                                    # the tiny model on the CPU
    python scripts/bench_train.py --hidden-size 1024 --num-layers 16   # a wider random model
    python scripts/bench_train.py --config qwen3-vl-8b --dtype bfloat16 --image-size 448   # full-size shapes, random
    python scripts/bench_train.py --model DIR --data train.json      # any dense Qwen3-VL checkpoint
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


def _load(args, device: str):
    """(pruned model, processor, config dict of the pruned model) for the child."""
    import torch

    from interlace_hf.plan import Plan
    from interlace_hf.surgery import prune_model

    plan = Plan.load(args.plan)
    dtype = {"auto": torch.bfloat16 if device == "cuda" else torch.float32, "bfloat16": torch.bfloat16,
             "float32": torch.float32, "float16": torch.float16}[args.dtype]
    if args.config:
        from interlace_hf.benchmark.bench import _random_processor
        from interlace_hf.benchmark.models import build_random_qwen3_vl, load_config_dict

        processor, config = _random_processor(load_config_dict(args.config))
        model = build_random_qwen3_vl(config, device=device, dtype=dtype)
    else:
        from interlace_hf.checkpoint import load_model
        from interlace_hf.processing import load_processor

        model = load_model(args.model, dtype=dtype)
        processor = load_processor(args.model)
        if device == "cuda":
            model.to(device)
    processor.image_processor.size = {"shortest_edge": 32 * 32, "longest_edge": args.image_size ** 2}
    teacher = None
    if args.mode == "kd":  # the dense model, before pruning, as the teacher
        import copy

        teacher = copy.deepcopy(model).eval().requires_grad_(False)
    model = prune_model(model, plan)
    return model.train(), processor, plan, teacher


def child(args) -> None:
    import torch
    from transformers import TrainerCallback

    from interlace_hf.args import TrainArgs
    from interlace_hf.benchmark.measure import PeakMemory
    from interlace_hf.benchmark.flops import training_step_flops
    from interlace_hf.train import build_train_dataset
    from interlace_hf.trainer import InterlaceSFTConfig, InterlaceSFTTrainer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, processor, plan, teacher = _load(args, device)
    dataset, _ = build_train_dataset(TrainArgs(model="x", dataset=args.data,
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
        max_steps=args.steps + 2, save_strategy="no", logging_steps=1000, report_to="none", warmup_steps=0,
        learning_rate=args.learning_rate, max_pixels=args.image_size ** 2, min_pixels=32 * 32,
        dataloader_pin_memory=False, activation_checkpointing=True, use_cpu=device == "cpu",
        bf16=device == "cuda", disable_tqdm=True,
    )
    timer = StepTimes()
    kept = list(plan.kept_layers)
    tuned_positions = [kept.index(i) for i in plan.tuned_layers]
    prefixes = tuple(f"model.language_model.layers.{p}." for p in tuned_positions)
    if args.mode in ("interlace", "kd", "lora"):
        from interlace_hf.adapters import lora_config

        if args.mode == "kd":  # both terms on: the most a distillation step costs
            config.distill_alpha, config.distill_hidden = 1.0, 1.0
        trainer = InterlaceSFTTrainer(model, plan, args=config, train_dataset=dataset, processing_class=processor,
                                      callbacks=[timer], teacher_model=teacher,
                                      peft_config=lora_config() if args.mode == "lora" else None)
    else:  # full fine-tuning of the same pruned model: every parameter trains, held in fp32 (AMP)
        from trl import SFTTrainer

        model.float().requires_grad_(True)
        trainer = SFTTrainer(model, args=config, train_dataset=dataset, processing_class=processor, callbacks=[timer])
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    before = {n: p.detach().float().clone() for n, p in model.named_parameters()
              if n.startswith(prefixes) and p.requires_grad}  # with LoRA: the adapters

    # The measured forward: same batch size, no gradients, the training context (autocast on a GPU).
    batch = trainer.data_collator([dataset[i] for i in range(args.batch_size)])
    batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
    labels = batch.pop("labels")
    forwards = []
    with torch.no_grad(), trainer.autocast_smart_context_manager():
        for _ in range(3 + args.steps):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(**batch, use_cache=False)
            if device == "cuda":
                torch.cuda.synchronize()
            forwards.append(time.perf_counter() - start)
    image_tokens = int((batch["mm_token_type_ids"] == 1).sum()) // args.batch_size if "mm_token_type_ids" in batch \
        else 0
    text_tokens = int(batch["attention_mask"].sum()) // args.batch_size - image_tokens
    head_positions = int((labels != -100).sum()) // args.batch_size if device == "cuda" else None
    flops = training_step_flops(model.config.to_dict(), tuned_positions=tuned_positions,
                                num_text_tokens=max(text_tokens, 0), image_size=args.image_size,
                                full=args.mode == "full", head_positions=head_positions, adapters=args.mode == "lora",
                                teacher_config=teacher.config.to_dict() if teacher is not None else None)
    result = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "trainable": trainable,
              "forward_s": statistics.median(forwards[3:]), "flops": flops, "oom": False,
              "teacher_bytes": sum(p.numel() * p.element_size() for p in teacher.parameters()) if teacher else 0}
    try:
        with PeakMemory(device) as peak:
            trainer.train()
    except torch.cuda.OutOfMemoryError as err:
        print(json.dumps({**result, "oom": True, "error": str(err).splitlines()[0]}))
        return
    moved = total = 0
    for name, param in model.named_parameters():
        if name in before:
            moved += int((param.detach().float() != before[name]).sum())
            total += param.numel()
    result.update(step_s=statistics.median(timer.times[2:]), peak_bytes=peak.peak,
                  tuned_moved_fraction=moved / total if total else None,
                  tuned_dtype=str(next(p for n, p in model.named_parameters() if n in before).dtype))
    print(json.dumps(result))


MODES = ("interlace", "kd", "lora", "full")


def _spread(values: list[float]) -> str:
    return f"{min(values):.3f}..{max(values):.3f}" if len(values) > 1 else "one run, no spread"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a dense Qwen3-VL directory (default: built on the fly)")
    parser.add_argument("--config", help="random weights from a config: qwen3-vl-8b, qwen3-vl-4b or a config.json")
    parser.add_argument("--data", help="LLaVA-style .json (default: the synthetic set)")
    parser.add_argument("--hidden-size", type=int, default=0, help="build a random wider model instead of the tiny one")
    parser.add_argument("--num-layers", type=int, default=12)
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32", "float16"],
                        help="weights at load (auto: bf16 on a GPU, fp32 on a CPU)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-5, help="(the paper's) for the moved-weights check")
    parser.add_argument("--steps", type=int, default=8, help="timed steps (after 2 warm-up steps)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each mode")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES,
                        help="interlace (the paper's SFT), kd (+ distillation), lora (LoRA on the tuned layers), full")
    parser.add_argument("--output", help="write the results as JSON here")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        child(args)
        return

    from interlace_hf.tables import SimilarityTables
    from interlace_hf.selection import select_layers
    from interlace_hf.datasets.synthetic import SHAPE_TASKS, make_synthetic

    workdir = Path(tempfile.mkdtemp(prefix="bench-train-"))
    if args.config:
        from interlace_hf.benchmark.models import load_config_dict

        config = load_config_dict(args.config)
    else:
        if args.model is None:
            from interlace_hf.benchmark.models import benchmark_model

            args.model = str(benchmark_model(workdir / "model", args.hidden_size, args.num_layers, args.image_size))
        config = json.loads((Path(args.model) / "config.json").read_text())
    if args.data is None:
        args.data = str(make_synthetic(workdir / "data", num=args.batch_size * (args.steps + 2), seed=0,
                                       image_size=args.image_size, tasks=SHAPE_TASKS))  # uniform image sizes
    num_layers = config["text_config"]["num_hidden_layers"]
    # A 25% plan with as many tuned layers as dropped ones, as INTERLACE has (seeded; the lowest tuned layer decides
    # how far the backward pass goes).
    plan = select_layers(SimilarityTables(num_layers, {}), "random", drop_ratio=0.25, seed=0)
    plan_path = plan.save(workdir / "plan.json")

    results: dict[str, list[dict]] = {m: [] for m in args.modes}
    for _ in range(args.repeats):
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--mode", mode, "--plan", str(plan_path), "--data", args.data,
                   "--image-size", str(args.image_size), "--batch-size", str(args.batch_size), "--steps",
                   str(args.steps), "--dtype", args.dtype, "--learning-rate", str(args.learning_rate)]
            cmd += ["--config", args.config] if args.config else ["--model", args.model]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"{mode} run failed:\n{out.stderr[-3000:]}")
            results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))

    source = args.config or args.model
    device = results[args.modes[0]][0]["device"]
    print(f"model: {source} ({num_layers} layers, pruned to {plan.num_kept}) | device: {device} | dtype {args.dtype} "
          f"| batch {args.batch_size} | image {args.image_size} px | {args.steps} timed steps x {args.repeats} runs")
    print(f"plan: {plan.describe()}")
    summary: dict[str, dict] = {}
    for mode, runs in results.items():
        if any(r["oom"] for r in runs):
            summary[mode] = {"oom": True, "error": next(r["error"] for r in runs if r["oom"]),
                             "trainable": runs[0]["trainable"]}
            print(f"{mode:9s}: trainable {runs[0]['trainable'] / 1e6:9.2f}M | OUT OF MEMORY")
            continue
        flops = runs[0]["flops"]
        factor = flops["total"] / flops["forward"]
        steps = [r["step_s"] for r in runs]
        ideals = [r["forward_s"] * factor for r in runs]
        summary[mode] = {
            "trainable": runs[0]["trainable"], "step_s": statistics.median(steps), "step_s_runs": steps,
            "forward_s": statistics.median(r["forward_s"] for r in runs), "ideal_flops_over_forward": factor,
            "ideal_step_s": statistics.median(ideals), "measured_over_ideal": [s / i for s, i in zip(steps, ideals)],
            "peak_bytes": statistics.median(r["peak_bytes"] for r in runs), "flops": flops,
            "tuned_moved_fraction": runs[0].get("tuned_moved_fraction"), "tuned_dtype": runs[0].get("tuned_dtype"),
        }
        row = summary[mode]
        print(f"{mode:9s}: trainable {row['trainable'] / 1e6:9.2f}M | step {row['step_s'] * 1000:9.1f} ms | ideal "
              f"{row['ideal_step_s'] * 1000:9.1f} ms (forward x {factor:.2f}) | measured/ideal "
              f"{statistics.median(row['measured_over_ideal']):.2f} ({_spread(row['measured_over_ideal'])}) | peak "
              f"memory {row['peak_bytes'] / 2**20:9.1f} MiB")
        if runs[0]["teacher_bytes"]:
            row["teacher_bytes"] = runs[0]["teacher_bytes"]
            print(f"           + the teacher's weights, loaded before: {row['teacher_bytes'] / 2**20:.1f} MiB")
        if mode != "full":
            print(f"           tuned weights moved at lr {args.learning_rate:g}: "
                  f"{100 * row['tuned_moved_fraction']:.1f}% (held in {row['tuned_dtype']})")
    ratios = {}
    ok = [m for m in args.modes if m in summary and not summary[m].get("oom")]
    # Each mode against the paper's SFT (interlace); the paper's SFT against full fine-tuning.
    pairs = [(m, "interlace") for m in ("kd", "lora") if m in ok] + [("interlace", "full")] * ("full" in ok)
    for a, b in pairs if "interlace" in ok else []:
        step_ratios = [x["step_s"] / y["step_s"] for x, y in zip(results[a], results[b])]
        memory_ratios = [x["peak_bytes"] / y["peak_bytes"] for x, y in zip(results[a], results[b])]
        ideal_ratio = (summary[a]["flops"]["total"] / summary[a]["flops"]["forward"]) / \
            (summary[b]["flops"]["total"] / summary[b]["flops"]["forward"])
        ratios.update({f"step_{a}_over_{b}": step_ratios, f"memory_{a}_over_{b}": memory_ratios,
                       f"ideal_step_{a}_over_{b}": ideal_ratio})
        print(f"step time   {a:>9s} / {b}: {statistics.median(step_ratios):.3f} (spread {_spread(step_ratios)}; "
              f"FLOP ideal {ideal_ratio:.3f})")
        print(f"peak memory {a:>9s} / {b}: {statistics.median(memory_ratios):.3f} (spread "
              f"{_spread(memory_ratios)})")
    if args.output:
        import datetime
        import platform

        import torch
        import transformers
        import trl

        report = {"command": "python scripts/bench_train.py " + " ".join(sys.argv[1:]),
                  "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  "device": device, "host": platform.node(),
                  "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                               "trl": trl.__version__},
                  "model": source, "num_layers": num_layers, "plan": json.loads(plan.to_json()),
                  "settings": {k: getattr(args, k) for k in ("dtype", "image_size", "batch_size", "steps", "repeats",
                                                             "learning_rate")},
                  "modes": summary, "ratios": ratios, "runs": results}
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
