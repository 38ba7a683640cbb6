"""Atomic output directories: a crash never leaves a half-written directory that looks complete. Pure: no torch."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool = False, flag: str = "--output-dir") -> Path:
    """Refuse an output path that is a file, or a non-empty directory unless `overwrite`."""
    output_dir = Path(output_dir).expanduser().resolve()
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"{flag} {str(output_dir)!r} is a file; pass a directory path.")
    existing = output_dir
    while not existing.exists():  # the nearest ancestor that exists must be a writable directory
        existing = existing.parent
    if existing != output_dir and not existing.is_dir():
        raise ValueError(f"{flag} {str(output_dir)!r} cannot be made: {str(existing)!r} is a file, not a directory.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {str(output_dir)!r} cannot be written: {str(existing)!r} is not writable by this "
                         "user; choose a directory you can write to.")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise ValueError(
            f"{flag} {str(output_dir)!r} already exists and is not empty; choose a new directory or pass "
            "--overwrite (overwrite=True) to replace it."
        )
    return output_dir


@contextmanager
def atomic_output_dir(output_dir: str | os.PathLike, overwrite: bool = False, flag: str = "--output-dir"):
    """Yield a hidden staging sibling of `output_dir` that is renamed onto it only when the block succeeds.

    The staging directory is on the same filesystem (the rename is atomic) and made with a plain `mkdir`, not
    `tempfile.mkdtemp`, whose 0o700 mode would stay on the published directory. On an exception it is removed.
    An existing `output_dir` (with `overwrite`) is moved aside first, so the path always holds a complete result.
    Without `overwrite`, a non-empty `output_dir` that appeared while the block ran (a second run into the same new
    path) is refused at the rename, and this run's result is discarded: the first to finish keeps the path.
    """
    output_dir = check_output_dir(output_dir, overwrite, flag)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(output_dir)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging = output_dir.parent / f".{output_dir.name}.partial-{tag}"
    staging.mkdir()
    try:
        yield staging
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        if _is_disk_full(err):
            free = shutil.disk_usage(output_dir.parent).free
            raise ValueError(f"the disk holding {str(output_dir)!r} is full ({free / 2**30:.1f} GiB free): nothing of "
                             "this run was kept; free space (or choose another disk) and run again.") from None
        raise
    retired = None
    if output_dir.exists():
        if not overwrite and (not output_dir.is_dir() or any(output_dir.iterdir())):
            # It appeared while this ran (another run into the same new path): keep theirs, never replace silently.
            shutil.rmtree(staging, ignore_errors=True)
            raise ValueError(
                f"{flag} {str(output_dir)!r} appeared while this run was writing (another run into the same path?); "
                "it was left as it is and nothing of this run was kept: choose a new directory, or pass --overwrite "
                "to replace it."
            )
        retired = output_dir.parent / f".{output_dir.name}.old-{tag}"
        os.replace(output_dir, retired)
    os.replace(staging, output_dir)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def _is_disk_full(err: BaseException) -> bool:
    # OSError(ENOSPC) from Python writes; libraries that write in native code (safetensors) raise their own type
    # with the C library's message.
    return (isinstance(err, OSError) and err.errno == errno.ENOSPC) or "No space left on device" in str(err)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_staging(output_dir: str | os.PathLike) -> list[Path]:
    """Remove the hidden staging / retired siblings of `output_dir` (`.NAME.partial-PID-*`, `.NAME.old-PID-*`) left by
    processes that no longer run (a killed run's staging can hold tens of GB at 8B scale). Returns what was removed."""
    output_dir = Path(output_dir)
    removed = []
    if not output_dir.parent.is_dir():
        return removed
    for kind in ("partial", "old"):
        for path in output_dir.parent.glob(f".{output_dir.name}.{kind}-*"):
            pid = path.name.rsplit(f".{kind}-", 1)[1].split("-", 1)[0]
            if pid.isdigit() and not _process_alive(int(pid)) and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    if removed:
        logger.warning("removed %d staging director%s left by killed runs: %s", len(removed),
                       "y" if len(removed) == 1 else "ies", ", ".join(p.name for p in removed))
    return removed


def write_json_atomic(path: str | os.PathLike, data, indent: int | None = 2) -> Path:
    """Write `data` as JSON to `path` through a temporary sibling, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        temporary.write_text(json.dumps(data, indent=indent) + "\n")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path
