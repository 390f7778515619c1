"""Atomic writes: a file appears whole under its name, or not at all.

Every file aadlib writes goes through :func:`write_atomic`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

log = logging.getLogger("aadlib")

#: Name of the lock file that a run holds in a folder it writes (a data set, a results
#: folder, a cache entry), so that a second run on the same folder waits.
LOCK_NAME = ".aadlib.lock"

#: How the names of files being written start; a killed process may leave some behind.
TEMPORARY_PREFIX = ".tmp-"


def temporary_path(path: Path) -> Path:
    """Where ``path`` is written before it is renamed: ``.tmp-<pid>-<name>`` beside it."""
    # Keep the suffix: Keras and NumPy pick the format from it.
    return path.with_name(f"{TEMPORARY_PREFIX}{os.getpid()}-{path.name}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files that dead processes left in ``folder``; return them.

    A file of a process that still runs (another run writing now) is left alone.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.glob(f"{TEMPORARY_PREFIX}*"):
        pid = path.name[len(TEMPORARY_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class DiskFullError(OSError):
    """No space was left for a file; the message names the folder and the space needed."""

    def __str__(self) -> str:
        return str(self.strerror)


def _megabytes(n_bytes: int) -> str:
    return f"{max(n_bytes, 0) / 1e6:,.1f} MB"


def is_disk_full(err: BaseException) -> bool:
    """Whether an error says that the disk (or a quota) is full."""
    return isinstance(err, OSError) and (
        err.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(err)
    )


def disk_full(path: Path, needed: int | None = None, written: int = 0) -> DiskFullError:
    """The error of a write of ``path`` that found no space: folder, space needed, remedy."""
    folder = path.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = 0
    if needed is not None:
        need = f"{path.name} needs {_megabytes(needed)}"
    else:
        need = f"{path.name} needs more than the {_megabytes(max(written, free))} it could write"
    return DiskFullError(
        errno.ENOSPC,
        f"{folder}: no space left on device ({need}, {_megabytes(free)} free); nothing partial "
        "was kept. Free space there, or choose a folder on a disk with room (--results, "
        "--data-root or AADLIB_HOME), then run again",
    )


def write_atomic(path: str | Path, writer, size: int | None = None) -> Path:
    """Call ``writer(temporary_path)``, then rename the result to ``path``.

    A full disk leaves no partial file and raises :class:`DiskFullError`, which names the
    folder and the space the file needs (``size`` bytes, where the caller knows it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        writer(tmp)
        tmp.replace(path)
    except Exception as err:
        if not is_disk_full(err) or isinstance(err, DiskFullError):
            raise
        written = tmp.stat().st_size if tmp.exists() else 0
        tmp.unlink(missing_ok=True)  # free what it took before measuring what is free
        raise disk_full(path, size, written) from err
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_bytes(data), len(data))


def write_text(path: str | Path, text: str) -> Path:
    data = text.encode("utf-8")
    return write_atomic(path, lambda tmp: tmp.write_bytes(data), len(data))


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a table as CSV, atomically."""
    return write_text(path, frame.to_csv(index=False))


def write_npy(path: str | Path, array: np.ndarray) -> Path:
    def writer(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)

    return write_atomic(path, writer, array.nbytes + 128)


@contextlib.contextmanager
def exclusive(
    folder: str | Path, what: str, lock_name: str = LOCK_NAME, timeout: float | None = None
):
    """Hold the lock of ``folder`` while the block runs; wait for another run that holds it.

    ``what`` names the work in the message a waiting run prints. ``timeout`` (seconds,
    default ``AADLIB_LOCK_TIMEOUT`` or no limit) bounds the wait; past it a
    :class:`TimeoutError` says which lock another run holds. The lock is the operating
    system's (released when a process dies), so a file left by a killed run locks nothing.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / lock_name
    if timeout is None:
        timeout = float(os.environ.get("AADLIB_LOCK_TIMEOUT", "-1"))
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("another aadlib run is %s (%s is locked); waiting for it", what, path)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise TimeoutError(
                f"{path}: another aadlib run is still {what}; run again when it has finished"
            ) from None
    try:
        yield
    finally:
        lock.release()


def read_json_object(path: Path) -> dict | None:
    """The JSON object in ``path``, or ``None`` where the file is missing, unreadable, not
    JSON or holds something other than an object (a record to compute again, not trust)."""
    try:
        content = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None
