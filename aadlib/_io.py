"""Atomic writes: a file appears whole under its name, or not at all.

Every file aadlib writes goes through :func:`write_atomic`.
"""

from __future__ import annotations

import contextlib
import logging
import os
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


def write_atomic(path: str | Path, writer) -> Path:
    """Call ``writer(temporary_path)``, then rename the result to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        writer(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a table as CSV, atomically."""
    return write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def write_npy(path: str | Path, array: np.ndarray) -> Path:
    def writer(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)

    return write_atomic(path, writer)


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
