"""`interlace-hf publish`: one pruned (maybe fine-tuned) variant per drop ratio, each pushed, gathered in a Hub
collection; resumable through `publish_state.json`. Checks first (arguments, config, token, repo names); `--dry-run`
stops there."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..args import PublishArgs
from ..checkpoint import choose_format, load_model, num_deepstack_features, original_num_layers, read_model_config
from ..plan import Plan
from ..utils.fileio import write_json_atomic
from .prune import dry_run_report, prune_with_card
from .push import push_checkpoint, push_summary

logger = logging.getLogger(__name__)

PUBLISH_STATE = "publish_state.json"


def run_publish(args: PublishArgs) -> dict:
    """`interlace-hf publish`: one pruned (maybe fine-tuned) variant per ratio, pushed, gathered in a collection.

    Progress is kept in `{work_dir}/publish_state.json` (repo ids, what is done, the collection slug), so a rerun
    skips finished variants and updates the same collection.
    """
    from ..hub import check_push_access
    from ..tables import load_similarity_tables

    args.validate()
    config = read_model_config(args.model, local_only=args.dry_run)
    tables = load_similarity_tables(args.similarities)
    variants = _plan_variants(args, config, tables)
    title = args.collection_title or f"INTERLACE {Path(args.model.rstrip('/')).name}"
    if args.dry_run:
        for v in variants:
            print(f"{v['repo_id']}: {v['plan'].describe()} [{v['format']}] -> {v['dir']}"
                  f"{' + fine-tune (' + args.train_config + ')' if args.train_config else ''}")
        print(f"collection: {title!r} in {args.namespace}")
        print(dry_run_report(args.model, config, variants[0]["plan"], variants[0]["format"], variants[0]["dir"],
                             variants[0]["repo_id"], tables))
        return {"variants": variants, "dry_run": True}

    api = check_push_access(f"{args.namespace}/x", args.token)  # before any expensive work
    state_file = Path(args.work_dir) / PUBLISH_STATE
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    state.setdefault("variants", {})
    for v in variants:
        record = state["variants"].setdefault(v["repo_id"], {"ratio": v["ratio"], "pushed": False})
        if record["pushed"]:
            print(f"{v['repo_id']}: already published, skipping")
            continue
        directory = _build_variant(args, v, tables)
        report = push_checkpoint(api, directory, v["repo_id"], private=args.private)
        print(push_summary(report))
        record.update(pushed=True, directory=str(directory), plan=v["plan"].to_dict())
        write_json_atomic(state_file, state, indent=2)
    slug = _gather_collection(api, args, title, variants, state, state_file)
    print(f"collection: https://huggingface.co/collections/{slug} ({len(variants)} variants)")
    return {"variants": variants, "collection_slug": slug}


def _plan_variants(args: PublishArgs, config: dict, tables) -> list[dict]:
    """One variant per ratio: its plan, repo id, format and work directory; ratios that drop the same number of
    layers (identical models under different names) are refused."""
    from ..selection import num_to_drop, select_layers

    depth = original_num_layers(config)
    if tables.num_layers != depth:
        raise ValueError(f"the similarities describe a {tables.num_layers}-layer model, {args.model!r} has {depth}.")
    by_count: dict[int, list[float]] = {}
    for ratio in args.ratios:
        by_count.setdefault(num_to_drop(depth, drop_ratio=ratio), []).append(ratio)
    same = {n: r for n, r in by_count.items() if len(r) > 1}
    if same:
        details = "; ".join(f"{', '.join(f'{x:g}' for x in r)} all drop {n} of {depth} layers" for n, r in same.items())
        raise ValueError(f"--ratios {details}: they would publish identical models under different names. Keep one "
                         "ratio per number of dropped layers.")
    base_name = Path(args.model.rstrip("/")).name
    variants = []
    for ratio in args.ratios:
        plan = select_layers(tables, args.strategy, drop_ratio=ratio)
        name = args.name_template.format(base=base_name, pc=int(round(ratio * 100)), ratio=ratio,
                                         strategy=args.strategy)
        fmt = choose_format(args.format, list(plan.kept_layers), num_deepstack_features(config))
        variants.append({"ratio": ratio, "plan": plan, "repo_id": f"{args.namespace}/{name}", "format": fmt,
                         "dir": str(Path(args.work_dir) / name)})
    return variants


def _gather_collection(api, args: PublishArgs, title: str, variants: list[dict], state: dict, state_file: Path) -> str:
    """Create the collection once (its slug kept in the state file), then add every variant (idempotent)."""
    from ..hub import with_retries

    slug = state.get("collection_slug")
    if slug is None:
        collection = with_retries(lambda: api.create_collection(title, namespace=args.namespace, private=args.private,
                                                                exists_ok=True,
                                                                description="INTERLACE layer-pruned variants"),
                                  what="create_collection")
        slug = state["collection_slug"] = collection.slug
        write_json_atomic(state_file, state, indent=2)
    for v in variants:
        with_retries(lambda repo=v["repo_id"]: api.add_collection_item(slug, repo, "model", exists_ok=True,
                                                                        note=f"{int(round(v['ratio'] * 100))}% drop"),
                     what="add_collection_item")
    return slug


def _build_variant(args: PublishArgs, variant: dict, tables) -> Path:
    """Prune (and fine-tune) one variant into its directory, unless a finished one is already there."""

    directory = Path(variant["dir"])
    plan: Plan = variant["plan"]
    if not ((directory / "plan.json").is_file() and Plan.load(directory) == plan):
        prune_with_card(load_model(args.model), plan, args.model, directory, tables, format=variant["format"],
                        overwrite=True)
    if not args.train_config:
        return directory
    trained = directory.with_name(directory.name + "-ft")
    if not (trained / "interlace_train.json").is_file():
        from ..train import parse_train_args, run_training

        train_args, sft_config, recipe = parse_train_args(
            ["--config", args.train_config, "--model", str(directory), "--output_dir", str(trained)])
        run_training(train_args, sft_config, recipe)
    return trained
