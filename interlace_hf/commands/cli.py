"""The `interlace-hf` command line. Thin: parses flags (from the dataclasses in `args.py`) and calls the stages.

Nothing heavy is imported at module level, so `interlace-hf --help` answers without importing torch.
"""

from __future__ import annotations

import argparse
import sys
import time

from ..args import (
    BenchArgs,
    EvalArgs,
    PlanArgs,
    PrepareArgs,
    PruneArgs,
    PublishArgs,
    PushArgs,
    SimilarityArgs,
    SyntheticArgs,
    TestbedCompareArgs,
    TestbedOracleArgs,
    TestbedSummaryArgs,
    TestbedRecoveryArgs,
    TestbedTrainArgs,
    TinyArgs,
    VerifyArgs,
    add_dataclass_arguments,
    from_namespace,
)
from ..version import __version__
from . import configure_logging


def _cmd_tiny(ns: argparse.Namespace) -> int:
    args = from_namespace(TinyArgs, ns)
    from ..testing.tiny import build_tiny_model

    start = time.perf_counter()
    path = build_tiny_model(args.output_dir, num_layers=args.num_layers, seed=args.seed, overwrite=args.overwrite)
    print(f"wrote a tiny Qwen3-VL ({args.num_layers} text layers, seed {args.seed}) to {path} "
          f"in {time.perf_counter() - start:.1f}s")
    return 0


def _cmd_prune(ns: argparse.Namespace) -> int:
    from .prune import run_prune

    run_prune(from_namespace(PruneArgs, ns))
    return 0


def _cmd_push(ns: argparse.Namespace) -> int:
    from .push import run_push

    run_push(from_namespace(PushArgs, ns))
    return 0


def _cmd_publish(ns: argparse.Namespace) -> int:
    from .publish import run_publish

    run_publish(from_namespace(PublishArgs, ns))
    return 0


def _cmd_plan(ns: argparse.Namespace) -> int:
    args = from_namespace(PlanArgs, ns)
    args.validate_selection(args.model)
    from pathlib import Path

    from ..planning import plan_from_args

    depth = None
    if args.model is not None:
        from ..checkpoint import original_num_layers, read_model_config

        depth = original_num_layers(read_model_config(args.model))
    if args.plot:
        from ..layermap import require_matplotlib

        require_matplotlib()
    plan, tables = plan_from_args(args, num_layers=depth)
    path = plan.save(Path(args.output))
    if tables is not None and tables.pack_sizes:
        from ..layermap import render_layer_map

        print(render_layer_map(plan, tables))
    else:
        print(plan.describe())
    print(f"wrote {path}")
    if args.plot:
        if tables is None or not tables.pack_sizes:
            raise ValueError("--plot draws the similarity profile: pass --similarities DIR too.")
        from ..layermap import plot_similarity_profile

        print(f"wrote {plot_similarity_profile(plan, tables, args.plot)}")
    return 0


def _cmd_data_synthetic(ns: argparse.Namespace) -> int:
    args = from_namespace(SyntheticArgs, ns)
    from ..datasets.synthetic import make_synthetic

    path = make_synthetic(args.output_dir, num=args.num, seed=args.seed, image_size=args.image_size,
                          overwrite=args.overwrite, tasks=args.tasks)
    print(f"wrote {args.num} synthetic records to {path}")
    return 0


def _cmd_data_prepare(ns: argparse.Namespace) -> int:
    args = from_namespace(PrepareArgs, ns)
    if not args.output_dir:
        raise ValueError("--output-dir is required: the directory the prepared data is written to.")
    from ..datasets.prepare import prepare_dataset

    start = time.perf_counter()
    summary = prepare_dataset(args.dataset, args.output_dir, fraction=args.fraction, sampling=args.sampling,
                              seed=args.seed, max_images=args.max_images, subsets=args.subsets, split=args.split,
                              overwrite=args.overwrite)
    print(f"wrote {summary.records} records ({summary.images} images) from {len(summary.subsets)} subsets to "
          f"{summary.manifest} in {time.perf_counter() - start:.1f}s (per-subset counts in summary.json)")
    if summary.short_subsets:
        print(f"warning: these subsets ran out before their quota: {', '.join(summary.short_subsets)}")
    return 0


def _cmd_bench(ns: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..benchmark.report import format_bench_table
    from ..benchmark.bench import run_bench

    a = from_namespace(BenchArgs, ns)
    kwargs = asdict(a)
    models = kwargs.pop("models")
    result = run_bench(models, command="interlace-hf " + " ".join(sys.argv[1:]), **kwargs)
    print(format_bench_table(result))
    return 0


def _cmd_eval(ns: argparse.Namespace) -> int:
    a = from_namespace(EvalArgs, ns)
    from ..evaluation.evaluate import format_results, run_eval
    from ..evaluation.tasks import parse_metric_option, parse_task_mapping

    result = run_eval(a.model, a.base, a.tasks, a.output, data=parse_task_mapping(a.data, "--data"),
                      metric=parse_metric_option(a.metric), split=a.split, batch_size=a.batch_size,
                      max_new_tokens=a.max_new_tokens, limit=a.limit, dtype=a.dtype, device=a.device,
                      revision=a.revision, base_revision=a.base_revision, prompt_suffix=a.prompt_suffix,
                      save_predictions=a.save_predictions, write_card_results=not a.no_card_results,
                      min_pixels=a.min_pixels, max_pixels=a.max_pixels)
    print(format_results(result))
    return 0


def _cmd_run(ns: argparse.Namespace) -> int:
    from .pipeline import run_pipeline

    overrides = {k: v for k, v in (("output_dir", ns.output_dir), ("model", ns.model)) if v}
    run_pipeline(ns.config, overrides)
    return 0


def _cmd_verify(ns: argparse.Namespace) -> int:
    args = from_namespace(VerifyArgs, ns)
    from ..verify import verify_pruned

    result = verify_pruned(args.base, args.pruned, image_size=args.image_size, new_tokens=args.new_tokens,
                           dtype=args.dtype, device=args.device)
    print(f"format:              {result.format}")
    print(f"decoder layers:      {result.base_layers} -> {result.pruned_layers}")
    print(f"parameters:          {result.base_parameters / 1e6:.2f}M -> {result.pruned_parameters / 1e6:.2f}M")
    print(f"max |logit diff|:    {result.max_abs_logit_diff:.3g} (vs. the base with the dropped layers bypassed)")
    print(f"same greedy tokens:  {result.same_greedy_tokens}")
    print(f"pruned model says:   {result.pruned_answer!r}")
    if result.exact:
        print("EXACT")
    elif result.fine_tuned:
        print("DIFFERENT, as expected: this checkpoint was fine-tuned (interlace_train.json), so its tuned layers no "
              "longer hold the base's weights. verify checks a pruned checkpoint before its fine-tune (the run's "
              "`pruned/` directory, or `interlace-hf prune`'s output).")
    else:
        print("MISMATCH: the pruned model does not compute the base with layers skipped")
    return 0 if result.exact or result.fine_tuned else 1


def _cmd_similarity(ns: argparse.Namespace) -> int:
    args = from_namespace(SimilarityArgs, ns)
    from ..similarity import run_similarity

    start = time.perf_counter()
    result = run_similarity(args)
    print(f"scored {result.num_samples} samples x {result.num_layers} layers in {time.perf_counter() - start:.1f}s")
    for k, path in (result.files or {}).items():
        means = result.means()[k]
        top = sorted(range(len(means)), key=lambda i: -means[i])[:3]
        print(f"pack {k}: {path}  (most redundant blocks: {', '.join(f'{i} ({means[i]:.4f})' for i in top)})")
    return 0


def _cmd_testbed_train(ns: argparse.Namespace) -> int:
    from ..testbed.train import format_train_report, train_testbed

    print(format_train_report(train_testbed(from_namespace(TestbedTrainArgs, ns))))
    return 0


def _cmd_testbed_compare(ns: argparse.Namespace) -> int:
    from ..testbed.compare import run_compare
    from ..testbed.report import format_compare_table

    print(format_compare_table(run_compare(from_namespace(TestbedCompareArgs, ns))))
    return 0


def _cmd_testbed_recovery(ns: argparse.Namespace) -> int:
    from ..testbed.recovery import run_recovery
    from ..testbed.report import format_recovery_table

    args = from_namespace(TestbedRecoveryArgs, ns)
    results = run_recovery(args)
    print(f"{args.strategy} at {100 * args.drop_ratio:.0f}% drop; relative performance = accuracy / the dense "
          f"model's ({100 * results['dense_accuracy']:.1f}%):")
    print(format_recovery_table(results))
    return 0


def _cmd_testbed_oracle(ns: argparse.Namespace) -> int:
    from ..testbed.oracle import format_oracle, run_oracle

    print(format_oracle(run_oracle(from_namespace(TestbedOracleArgs, ns))))
    return 0


def _cmd_testbed_summary(ns: argparse.Namespace) -> int:
    from ..testbed.report import format_summary_table
    from ..testbed.summary import run_summary

    summary = run_summary(from_namespace(TestbedSummaryArgs, ns))
    seeds = ", ".join(f"model {s['model']} / compare {s['compare']}" for s in summary["seeds"])
    print(f"{len(summary['seeds'])} seeds ({seeds}); relative performance = the mean over task types of accuracy / "
          "the dense model's:")
    print(format_summary_table(summary))
    return 0


def _add_command(subparsers, name: str, args_class: type, func) -> None:
    """One subcommand: its flags are the fields of `args_class`, its help the class docstring."""
    summary = args_class.__doc__.split(":", 1)[1].strip()
    command = subparsers.add_parser(name, help=summary, description=args_class.__doc__)
    add_dataclass_arguments(command, args_class)
    command.set_defaults(func=func)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interlace-hf",
        description="INTERLACE layer pruning and efficient adaptation for Qwen3-VL (CVPR 2026).",
    )
    parser.add_argument("--version", action="version", version=f"interlace-hf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_command(sub, "tiny", TinyArgs, _cmd_tiny)
    data = sub.add_parser("data", help="calibration and training data", description="calibration and training data")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    _add_command(data_sub, "prepare", PrepareArgs, _cmd_data_prepare)
    _add_command(data_sub, "synthetic", SyntheticArgs, _cmd_data_synthetic)
    _add_command(sub, "similarity", SimilarityArgs, _cmd_similarity)
    _add_command(sub, "plan", PlanArgs, _cmd_plan)
    _add_command(sub, "prune", PruneArgs, _cmd_prune)
    _add_command(sub, "push", PushArgs, _cmd_push)
    _add_command(sub, "publish", PublishArgs, _cmd_publish)
    _add_command(sub, "bench", BenchArgs, _cmd_bench)
    _add_command(sub, "eval", EvalArgs, _cmd_eval)
    _add_command(sub, "verify", VerifyArgs, _cmd_verify)
    testbed = sub.add_parser("testbed", help="train a small Qwen3-VL here and measure every strategy's retention",
                             description="an offline retention testbed: train a small Qwen3-VL on synthetic VQA, "
                                         "then compare every strategy with and without the fine-tune")
    testbed_sub = testbed.add_subparsers(dest="testbed_command", metavar="TESTBED_COMMAND", required=True)
    _add_command(testbed_sub, "train", TestbedTrainArgs, _cmd_testbed_train)
    _add_command(testbed_sub, "compare", TestbedCompareArgs, _cmd_testbed_compare)
    _add_command(testbed_sub, "recovery", TestbedRecoveryArgs, _cmd_testbed_recovery)
    _add_command(testbed_sub, "oracle", TestbedOracleArgs, _cmd_testbed_oracle)
    _add_command(testbed_sub, "summary", TestbedSummaryArgs, _cmd_testbed_summary)
    run = sub.add_parser("run", help="the whole method from one recipe: data -> ... -> card (-> push)",
                         description="the whole method from one recipe, resumable stage by stage")
    run.add_argument("--config", required=True, help="a run recipe (see recipes/run/)")
    run.add_argument("--output-dir", "--output_dir", default=None, help="override the recipe's output_dir")
    run.add_argument("--model", default=None, help="override the recipe's model")
    run.set_defaults(func=_cmd_run)
    # `train` parses its own flags (TrainArgs + the trainer's SFTConfig fields, which import torch): see main().
    sub.add_parser("train", add_help=False, help="fine-tune the plan's tuned layers from a YAML recipe (--config)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:
        from .train import main as train_main

        return train_main(argv[1:])
    parser = build_parser()
    ns = parser.parse_args(argv)
    configure_logging(ns.verbose)
    if not getattr(ns, "func", None):
        parser.print_help()
        return 2
    try:
        return ns.func(ns)
    except ValueError as err:
        print(f"interlace-hf {ns.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        # A Hub or network failure that outlived the retries: say so plainly, and how to finish the job.
        if not type(err).__module__.startswith(("huggingface_hub", "httpx")):
            raise
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        pushing = ns.command in ("push", "publish") or bool(getattr(ns, "push_to_hub", None))
        hint = ("Run the same command again to finish: files already on the Hub are skipped." if pushing else
                "Check the model / dataset id, your access to it (HF_TOKEN or `hf auth login`) and the network "
                "(HF_ENDPOINT, or HF_HUB_OFFLINE=1 to use only the local cache), then run the command again.")
        print(f"interlace-hf {ns.command}: Hub error after retries: {first_line}\n{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
