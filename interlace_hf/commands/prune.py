"""`interlace-hf prune`: checks -> plan -> load -> surgery -> save (with its card, staged) -> push.

Order of work: validate the arguments, read the base config, check the Hub token and the repo access (when
pushing), choose the plan; only then load weights, prune, write and upload. `--dry-run` stops after the cheap part
and prints what would be written and pushed: no directory, no network, no token.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..args import PruneArgs
from ..card import format_bytes
from ..checkpoint import (
    PROCESSOR_FILE_PATTERNS,
    choose_format,
    load_model,
    num_deepstack_features,
    original_num_layers,
    read_model_config,
    resolve_checkpoint,
    safetensors_tensor_bytes,
)
from ..plan import Plan
from .push import push_checkpoint, push_summary

logger = logging.getLogger(__name__)


def prune_with_card(model, plan: Plan, base_model: str, output_dir, tables=None, **save_kwargs) -> Path:
    """Prune a loaded base model and write it with its similarity profile and model card, all staged together
    (`save_kwargs` go to `save_pruned`)."""
    from ..card import write_card_files
    from ..surgery import prune_and_save

    name = Path(output_dir).name
    return prune_and_save(model, plan, base_model, output_dir, **save_kwargs,
                          on_staged=lambda staging: write_card_files(staging, plan, tables, model_name=name))


def _choose_plan(args, config: dict, depth: int):
    """The plan of a prune (None for sleb, which needs the model) and the similarity tables behind it."""
    from ..plan import parse_layer_list
    from ..planning import plan_from_args

    if args.plan is not None:
        plan, tables = Plan.load(args.plan), None
    elif args.drop_layers is not None:
        plan, tables = Plan.from_dropped(depth, parse_layer_list(args.drop_layers, "--drop-layers")), None
    elif args.strategy != "sleb":
        plan, tables = plan_from_args(args, num_layers=depth)
        tables = tables if tables is not None and tables.pack_sizes else None
    else:
        return None, None
    if plan.num_layers != depth:
        raise ValueError(
            f"the plan is for a {plan.num_layers}-layer model but {args.model!r} has {depth} decoder layers; "
            f"make the plan with num_layers={depth}."
        )
    return plan, tables


def run_prune(args: PruneArgs) -> Path | None:
    """`interlace-hf prune`: returns the output directory (None for a dry run)."""
    from ..utils.fileio import check_output_dir
    from ..hub import check_push_access

    args.validate()
    config = read_model_config(args.model, args.model_revision, local_only=args.dry_run)
    depth = original_num_layers(config)
    if not args.dry_run:
        check_output_dir(args.output_dir, args.overwrite)
    api = None
    if args.push_to_hub and not args.dry_run:
        api = check_push_access(args.push_to_hub, args.token)  # before any expensive work
    plan, tables = _choose_plan(args, config, depth)
    features = num_deepstack_features(config)
    chosen = choose_format(args.format, list(plan.kept_layers), features, args.force) if plan else None
    if args.dry_run:
        print(dry_run_report(args.model, config, plan, chosen, args.output_dir, args.push_to_hub, tables,
                             revision=args.model_revision))
        return None

    from ..planning import plan_from_args

    start = time.perf_counter()
    model = load_model(args.model, revision=args.model_revision, dtype=args.dtype)
    if plan is None:
        plan, _ = plan_from_args(args, num_layers=depth, model=model)
        chosen = choose_format(args.format, list(plan.kept_layers), features, args.force)
    print(f"plan: {plan.describe()}")
    params_before = sum(p.numel() for p in model.parameters())
    out = prune_with_card(model, plan, args.model, args.output_dir, tables, revision=args.model_revision,
                          format=chosen, force=args.force, overwrite=args.overwrite, max_shard_size=args.max_shard_size)
    params_after = sum(p.numel() for p in model.parameters())
    print(
        f"wrote {chosen} checkpoint to {out}: {plan.num_layers} -> {plan.num_kept} decoder layers, "
        f"{params_before / 1e6:.2f}M -> {params_after / 1e6:.2f}M parameters ({time.perf_counter() - start:.1f}s)"
    )
    if api is not None:
        report = push_checkpoint(api, out, args.push_to_hub, private=args.private, revision=args.revision,
                                 create_pr=args.create_pr, commit_message=args.commit_message)
        print(push_summary(report))
    return out


def _estimated_files(model: str, config: dict, plan: Plan | None, revision: str | None) -> list[tuple[str, int | None]]:
    """The files a prune would write, with sizes estimated from the base's safetensors headers (no weights read)."""

    try:
        base = resolve_checkpoint(model, revision, local_only=True)
    except (ValueError, OSError):
        base = None
    weights = None
    if base is not None and plan is not None and list(base.glob("*.safetensors")):

        kept_positions = set(range(plan.num_layers)) - set(plan.dropped_layers)
        weights = 0
        for name, nbytes in safetensors_tensor_bytes(base).items():
            marker = ".language_model.layers."
            if marker in name and int(name.split(marker, 1)[1].split(".", 1)[0]) not in kept_positions:
                continue
            weights += nbytes
    files = [("model*.safetensors (sharded at 5GB)", weights), ("config.json", None), ("plan.json", None),
             ("README.md (model card)", None)]
    if base is not None:
        files += [(name, (base / name).stat().st_size) for name in PROCESSOR_FILE_PATTERNS if (base / name).is_file()]
    return files


def dry_run_report(model, config, plan, chosen, output_dir, repo_id, tables, revision=None) -> str:
    from ..card import CardContext, render_model_card

    lines = ["dry run: nothing is written, downloaded or pushed", f"base model: {model}"]
    if plan is None:
        lines.append("plan: chosen by SLEB with the loaded model at run time")
    else:
        lines.append(f"plan: {plan.describe()}")
        lines.append(f"format: {chosen}")
    lines.append(f"would write {output_dir}/:")
    for name, size in _estimated_files(model, config, plan, revision):
        lines.append(f"  {name}  {format_bytes(size)}")
    if tables is not None:
        lines.append("  similarity_profile.png")
    if repo_id:
        lines.append(f"would push to https://huggingface.co/{repo_id}")
    if plan is not None:
        means = tables.means if tables is not None else None
        card = render_model_card(CardContext(plan=plan, model_name=repo_id or Path(output_dir).name, base_model=model,
                                             checkpoint_format=chosen, similarity_means=means))
        lines += ["", "model card:", card]
    return "\n".join(lines)
