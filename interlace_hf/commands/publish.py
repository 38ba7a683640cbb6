"""The `prune`, `push` and `publish` commands: surgery -> save -> card -> push, with the checks first.

Order of work in every command: validate the arguments, read the base config, check the Hub token and the repo
access (when pushing), choose the plan; only then load weights, prune, write and upload. `--dry-run` stops after
the cheap part and prints what would be written and pushed: no directory, no network, no token.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ..args import PruneArgs, PublishArgs, PushArgs
from ..plan import Plan

logger = logging.getLogger(__name__)

PUBLISH_STATE = "publish_state.json"


def _human(size: int | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


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


def _deepstack_count(config: dict) -> int:
    return len(config.get("vision_config", {}).get("deepstack_visual_indexes", []) or [])


def run_prune(args: PruneArgs) -> Path | None:
    """`interlace-hf prune`: returns the output directory (None for a dry run)."""
    from ..checkpoint import choose_format
    from ..utils.fileio import check_output_dir
    from ..hub import check_push_access, original_depth, read_model_config

    args.validate()
    config = read_model_config(args.model, args.model_revision, local_only=args.dry_run)
    depth = original_depth(config)
    if not args.dry_run:
        check_output_dir(args.output_dir, args.overwrite)
    api = None
    if args.push_to_hub and not args.dry_run:
        api = check_push_access(args.push_to_hub, args.token)  # before any expensive work
    plan, tables = _choose_plan(args, config, depth)
    chosen = choose_format(args.format, list(plan.kept_layers), _deepstack_count(config), args.force) if plan else None
    if args.dry_run:
        print(dry_run_report(args.model, config, plan, chosen, args.output_dir, args.push_to_hub, tables,
                             revision=args.model_revision))
        return None

    from ..checkpoint import load_model, prune_and_save
    from ..planning import plan_from_args

    start = time.perf_counter()
    model = load_model(args.model, revision=args.model_revision, dtype=args.dtype)
    if plan is None:
        plan, _ = plan_from_args(args, num_layers=depth, model=model)
        chosen = choose_format(args.format, list(plan.kept_layers), _deepstack_count(config), args.force)
    print(f"plan: {plan.describe()}")
    params_before = sum(p.numel() for p in model.parameters())
    out = prune_and_save(model, plan, args.model, args.output_dir, revision=args.model_revision, format=chosen,
                         force=args.force, overwrite=args.overwrite, similarity_tables=tables,
                         max_shard_size=args.max_shard_size)
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


def push_checkpoint(api, directory, repo_id: str, **kwargs) -> dict:
    """Render the card for its Hub name, then upload (only what is missing or changed)."""
    from ..card import write_model_card
    from ..hub import push_directory

    write_model_card(directory, model_name=repo_id)
    return push_directory(api, directory, repo_id, **kwargs)


def push_summary(report: dict) -> str:
    where = report["pr_url"] or f"https://huggingface.co/{report['repo_id']}"
    return (f"pushed to {report['repo_id']}: {len(report['uploaded'])} files uploaded, {len(report['skipped'])} "
            f"already there ({len(report['commits'])} commits) -> {where}")


def run_push(args: PushArgs) -> dict | None:
    """`interlace-hf push DIR --repo-id R`."""
    from ..hub import check_push_access, files_to_upload

    directory = Path(args.directory)
    if not (directory / "config.json").is_file() or not (directory / "plan.json").is_file():
        raise ValueError(f"{str(directory)!r} is not a pruned checkpoint (config.json and plan.json are missing); "
                         "pass the --output-dir of `interlace-hf prune` or `interlace-hf train`.")
    if not args.repo_id:
        raise ValueError("--repo-id is required: the Hub repo to push to, e.g. my-org/Interlace-Qwen3-VL-8B-25pc.")
    from ..args import validate_repo_id

    validate_repo_id(args.repo_id, "--repo-id")
    if args.dry_run:
        from ..card import card_context_from_checkpoint, render_model_card

        files = files_to_upload(directory)
        lines = [f"would push {len(files)} files ({_human(sum(f.stat().st_size for f in files))}) to {args.repo_id}"
                 f"{' (private)' if args.private else ''}:"]
        lines += [f"  {f.relative_to(directory)}  {_human(f.stat().st_size)}" for f in files]
        lines += ["", "model card:", render_model_card(card_context_from_checkpoint(directory, model_name=args.repo_id))]
        print("\n".join(lines))
        return None
    api = check_push_access(args.repo_id, args.token)
    report = push_checkpoint(api, directory, args.repo_id, private=args.private, revision=args.revision,
                             create_pr=args.create_pr, commit_message=args.commit_message)
    print(push_summary(report))
    return report


def _estimated_files(model: str, config: dict, plan: Plan | None, revision: str | None) -> list[tuple[str, int | None]]:
    """The files a prune would write, with sizes estimated from the base's safetensors headers (no weights read)."""
    from ..hub import PROCESSOR_FILE_PATTERNS, resolve_checkpoint

    try:
        base = resolve_checkpoint(model, revision, local_only=True)
    except (ValueError, OSError):
        base = None
    weights = None
    if base is not None and plan is not None and list(base.glob("*.safetensors")):
        from ..card import safetensors_tensor_bytes

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
        lines.append(f"  {name}  {_human(size)}")
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


def run_publish(args: PublishArgs) -> dict:
    """`interlace-hf publish`: one pruned (maybe fine-tuned) variant per ratio, pushed, gathered in a collection.

    Progress is kept in `{work_dir}/publish_state.json` (repo ids, what is done, the collection slug), so a rerun
    skips finished variants and updates the same collection.
    """
    from ..checkpoint import choose_format
    from ..hub import check_push_access, original_depth, read_model_config
    from ..selection import load_similarity_tables, select_layers

    args.validate()
    config = read_model_config(args.model, local_only=args.dry_run)
    depth = original_depth(config)
    tables = load_similarity_tables(args.similarities)
    if tables.num_layers != depth:
        raise ValueError(f"the similarities describe a {tables.num_layers}-layer model, {args.model!r} has {depth}.")
    base_name = Path(args.model.rstrip("/")).name
    from ..selection import num_to_drop

    by_count: dict[int, list[float]] = {}
    for ratio in args.ratios:
        by_count.setdefault(num_to_drop(depth, drop_ratio=ratio), []).append(ratio)
    same = {n: r for n, r in by_count.items() if len(r) > 1}
    if same:
        details = "; ".join(f"{', '.join(f'{x:g}' for x in r)} all drop {n} of {depth} layers" for n, r in same.items())
        raise ValueError(f"--ratios {details}: they would publish identical models under different names. Keep one "
                         "ratio per number of dropped layers.")
    variants = []
    for ratio in args.ratios:
        plan = select_layers(tables, args.strategy, drop_ratio=ratio)
        pc = int(round(ratio * 100))
        name = args.name_template.format(base=base_name, pc=pc, ratio=ratio, strategy=args.strategy)
        fmt = choose_format(args.format, list(plan.kept_layers), _deepstack_count(config))
        variants.append({"ratio": ratio, "plan": plan, "repo_id": f"{args.namespace}/{name}", "format": fmt,
                         "dir": str(Path(args.work_dir) / name)})
    title = args.collection_title or f"INTERLACE {base_name}"
    if args.dry_run:
        for v in variants:
            print(f"{v['repo_id']}: {v['plan'].describe()} [{v['format']}] -> {v['dir']}"
                  f"{' + fine-tune (' + args.train_config + ')' if args.train_config else ''}")
        print(f"collection: {title!r} in {args.namespace}")
        print(dry_run_report(args.model, config, variants[0]["plan"], variants[0]["format"], variants[0]["dir"],
                             variants[0]["repo_id"], tables))
        return {"variants": variants, "dry_run": True}

    api = check_push_access(f"{args.namespace}/x", args.token)  # before any expensive work
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    state_file = work / PUBLISH_STATE
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    state.setdefault("variants", {})

    def save_state():
        tmp = state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(state_file)

    for v in variants:
        record = state["variants"].setdefault(v["repo_id"], {"ratio": v["ratio"], "pushed": False})
        if record["pushed"]:
            print(f"{v['repo_id']}: already published, skipping")
            continue
        directory = _build_variant(args, v, tables)
        report = push_checkpoint(api, directory, v["repo_id"], private=args.private)
        print(push_summary(report))
        record.update(pushed=True, directory=str(directory), plan=v["plan"].to_dict())
        save_state()

    from ..hub import with_retries

    slug = state.get("collection_slug")
    if slug is None:
        collection = with_retries(lambda: api.create_collection(title, namespace=args.namespace, private=args.private,
                                                                exists_ok=True,
                                                                description="INTERLACE layer-pruned variants"),
                                  what="create_collection")
        slug = collection.slug
        state["collection_slug"] = slug
        save_state()
    for v in variants:
        with_retries(lambda repo=v["repo_id"]: api.add_collection_item(slug, repo, "model", exists_ok=True,
                                                                        note=f"{int(round(v['ratio'] * 100))}% drop"),
                     what="add_collection_item")
    print(f"collection: https://huggingface.co/collections/{slug} ({len(variants)} variants)")
    return {"variants": variants, "collection_slug": slug}


def _build_variant(args: PublishArgs, variant: dict, tables) -> Path:
    """Prune (and fine-tune) one variant into its directory, unless a finished one is already there."""
    from ..checkpoint import load_model, prune_and_save

    directory = Path(variant["dir"])
    plan: Plan = variant["plan"]
    if not ((directory / "plan.json").is_file() and Plan.load(directory) == plan):
        prune_and_save(load_model(args.model), plan, args.model, directory, format=variant["format"],
                       overwrite=True, similarity_tables=tables)
    if not args.train_config:
        return directory
    trained = directory.with_name(directory.name + "-ft")
    if not (trained / "interlace_train.json").is_file():
        from ..train import parse_train_args, run_training

        train_args, sft_config, recipe = parse_train_args(
            ["--config", args.train_config, "--model", str(directory), "--output_dir", str(trained)])
        run_training(train_args, sft_config, recipe)
    return trained
