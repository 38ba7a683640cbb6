"""`interlace-hf push DIR --repo-id R`: render the card for its Hub name, then upload only what is missing or changed
(`hub.push_directory`: retried, resumable). Also the push step of `prune`, `publish` and `run`."""

from __future__ import annotations

from pathlib import Path

from ..args import PushArgs
from ..card import format_bytes


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
        lines = [f"would push {len(files)} files ({format_bytes(sum(f.stat().st_size for f in files))}) to {args.repo_id}"
                 f"{' (private)' if args.private else ''}:"]
        lines += [f"  {f.relative_to(directory)}  {format_bytes(f.stat().st_size)}" for f in files]
        lines += ["", "model card:", render_model_card(card_context_from_checkpoint(directory, model_name=args.repo_id))]
        print("\n".join(lines))
        return None
    api = check_push_access(args.repo_id, args.token)
    report = push_checkpoint(api, directory, args.repo_id, private=args.private, revision=args.revision,
                             create_pr=args.create_pr, commit_message=args.commit_message)
    print(push_summary(report))
    return report
