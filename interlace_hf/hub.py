"""The only module that talks to the Hugging Face Hub: push access, retried and resumable uploads. No torch.

Reading a checkpoint (a local directory or a downloaded Hub snapshot) is `checkpoint`'s job."""

from __future__ import annotations

import re
from pathlib import Path

# A Hub repo id as it may appear where a local path could too (`org/name`), for telling the two apart.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")




# --- publishing ------------------------------------------------------------------------------------------------------
# The only place that writes to the Hub. Tokens come from the usual places (`--token`, HF_TOKEN, the login cache) and
# are passed to huggingface_hub, never printed, logged or written anywhere.

RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
TOKEN_HELP = "set HF_TOKEN, run `hf auth login`, or pass --token"


def _status(err) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def _is_transient(err: BaseException) -> bool:
    import httpx2  # huggingface_hub's HTTP client

    if isinstance(err, (httpx2.TransportError, ConnectionError, TimeoutError)):
        return True
    return _status(err) in RETRY_STATUSES


def with_retries(call, *, what: str, attempts: int = 6, base_delay: float = 1.0, sleep=None):
    """Run `call()`, retrying transient Hub errors (429, 5xx, dropped connections) with exponential backoff."""
    import logging
    import time

    sleep = sleep or time.sleep
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as err:  # noqa: BLE001 - classified below
            if attempt == attempts or not _is_transient(err):
                raise
            delay = base_delay * 2 ** (attempt - 1)
            retry_after = getattr(getattr(err, "response", None), "headers", {}).get("Retry-After")
            if retry_after and str(retry_after).isdigit():
                delay = max(delay, float(retry_after))
            logging.getLogger(__name__).warning(
                "%s: transient Hub error (%s), retry %d/%d in %.1fs", what, _status(err) or type(err).__name__,
                attempt, attempts - 1, delay)
            sleep(delay)


def check_push_access(repo_id: str, token: str | None = None):
    """Fail fast, before any expensive work: a valid token that may write to the repo's namespace.

    Returns:
        an `HfApi` bound to that token.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import get_token

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"--repo-id / --push-to-hub must be of the form namespace/name, got {repo_id!r}.")
    token = token or get_token()
    if not token:
        raise ValueError(f"pushing to the Hub needs a token with write access: {TOKEN_HELP}.")
    api = HfApi(token=token)
    try:
        me = with_retries(api.whoami, what="whoami")
    except HfHubHTTPError as err:
        if _status(err) == 401:
            raise ValueError(f"the Hub rejected the token (401 Unauthorized): {TOKEN_HELP} with a valid one.") from None
        raise
    namespace = repo_id.split("/")[0]
    allowed = {me.get("name")} | {org.get("name") for org in me.get("orgs", [])}
    if namespace not in allowed:
        raise ValueError(
            f"the token's user {me.get('name')!r} cannot write to {namespace!r} (it can write to "
            f"{sorted(n for n in allowed if n)}); choose a repo id in one of those namespaces."
        )
    role = ((me.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise ValueError(f"the token is read-only; pushing needs a token with write access: {TOKEN_HELP}.")
    return api


def git_blob_oid(path: Path) -> str:
    """The git blob id the Hub reports for a regular (non-LFS) file."""
    import hashlib

    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_to_upload(directory: Path) -> list[Path]:
    """The files of a checkpoint directory that belong on the Hub (no checkpoints, caches or hidden files)."""
    out = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if not path.is_file() or any(part.startswith(".") or part.startswith("checkpoint-") for part in rel.parts):
            continue
        if rel.parts[0] in ("runs", "__pycache__") or rel.name == "training_args.bin":
            continue
        out.append(path)
    return out


def push_directory(api, directory: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                   create_pr: bool = False, commit_message: str | None = None, attempts: int = 6) -> dict:
    """Upload a checkpoint directory; files already on the Hub with the same content are skipped.

    Each weight shard goes in a commit of its own and every request is retried on transient errors, so a rerun after
    a failure finishes the upload instead of starting over.

    Returns:
        {"repo_id", "uploaded": [...], "skipped": [...], "commits": [...], "pr_url": ...}
    """
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    directory = Path(directory)
    with_retries(lambda: api.create_repo(repo_id, private=private, exist_ok=True), what="create_repo",
                 attempts=attempts)
    if revision and revision != "main" and not create_pr:
        with_retries(lambda: api.create_branch(repo_id, branch=revision, exist_ok=True), what="create_branch",
                     attempts=attempts)
    local = {path.relative_to(directory).as_posix(): path for path in files_to_upload(directory)}
    try:
        remote_entries = with_retries(
            lambda: list(api.list_repo_tree(repo_id, revision=revision, recursive=True, expand=False)),
            what="list_repo_tree", attempts=attempts)
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError):
        remote_entries = []
    remote = {e.path: e for e in remote_entries if getattr(e, "blob_id", None) is not None}

    def same(rel: str, path: Path) -> bool:
        entry = remote.get(rel)
        if entry is None or entry.size != path.stat().st_size:
            return False
        if entry.lfs is not None:
            return entry.lfs.sha256 == _sha256(path)
        return entry.blob_id == git_blob_oid(path)

    todo = [rel for rel, path in local.items() if not same(rel, path)]
    skipped = sorted(set(local) - set(todo))
    # Weight shards (and any other large file) first, one per commit, so a failure loses at most one shard and a
    # rerun skips the shards already there; the small files together, last, so config and card land after the weights.
    large = [rel for rel in todo if rel.endswith(".safetensors") or local[rel].stat().st_size > 10 * 2**20]
    small = [rel for rel in todo if rel not in large]
    batches = [[rel] for rel in sorted(large)] + ([sorted(small)] if small else [])
    commits, pr_url = [], None
    message = commit_message or "Upload INTERLACE-pruned checkpoint (interlace-hf)"
    for batch in batches:
        operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(local[rel])) for rel in batch]
        info = with_retries(
            lambda ops=operations: api.create_commit(repo_id, operations=ops, commit_message=message,
                                                     revision=revision, create_pr=create_pr),
            what=f"upload {', '.join(batch)[:80]}", attempts=attempts)
        commits.append(info.oid)
        pr_url = getattr(info, "pr_url", None) or pr_url
        if create_pr and info.pr_revision:
            revision = info.pr_revision  # the next batches go to the same pull request
            create_pr = False
    return {"repo_id": repo_id, "uploaded": sorted(todo), "skipped": skipped, "commits": commits, "pr_url": pr_url}
