"""Low-level I/O behind the feature cache and the training batches. Private.

Each trick here exists because the benchmark (``benchmarks/bench.py``) measured that it
pays at the real data set's size; the public modules call these functions and read as
if the frames were plain arrays.

- **Memory-mapped frames are read with ``os.preadv``** (:func:`read_rows`): copying
  clips out of a mapping would make every page of the 700 MB ToyCar cache count towards
  the process's resident memory; file reads land in a buffer the process reuses.
- **Pages of a mapping are released with ``madvise``** (:func:`release`) after a pass
  over the clips, so a streaming pass (fitting the scaler) stays small in memory. The
  pages stay in the operating system's file cache.
- **A mapping is found by walking ``.base``** (:func:`mapped_file`): slices and views of
  a ``numpy.memmap`` lose the file name, but their chain of bases leads back to it.
- **Blocks handed to TensorFlow are 64-byte aligned** (:func:`aligned_empty`):
  TensorFlow takes such an array without copying it and copies any other.
- **Extraction workers write each clip in place into the cache's ``.npy`` file**
  (:func:`npy_with_room`, :func:`write_rows`), so no array crosses a process boundary
  and nothing holds all frames in memory.
- **Cache files carry an xxHash digest** (:func:`file_digest`): read with plain file
  reads into one reused buffer (no mapping, so no resident pages), at several GB/s.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np
import xxhash

__all__: list[str] = []

_READ_CHUNK = 16 * 2**20


def mapped_file(array: np.ndarray) -> tuple[np.memmap, str, int] | None:
    """``(memmap, file name, byte offset of array[0])`` when ``array`` views a file mapping."""
    if not isinstance(array, np.ndarray) or not array.flags.c_contiguous:
        return None
    root = array
    while isinstance(root.base, np.ndarray):
        root = root.base
    if not (
        isinstance(root, np.memmap)
        and isinstance(root.base, mmap.mmap)
        and root.filename is not None
        and root.mode in ("r", "r+", "w+")
    ):
        return None
    start = root.offset + (array.ctypes.data - root.ctypes.data)
    return root, root.filename, int(start)


def release(array: np.ndarray) -> bool:
    """Drop the pages of the mapping behind ``array`` from this process's resident memory.

    Arrays taken from it stay valid (the pages are read again from the file cache when
    touched). Returns False when ``array`` is not a mapping (nothing to release).
    """
    mapping = mapped_file(array)
    if mapping is None or not hasattr(mmap, "MADV_DONTNEED"):
        return False
    try:
        mapping[0].base.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError):
        return False
    return True


def read_rows(frames: np.ndarray, starts, lengths, out: np.ndarray, each=None) -> np.ndarray:
    """Rows ``starts[i]:starts[i] + lengths[i]`` of ``frames``, one run after the other, in ``out``.

    From a file mapping the rows are read with ``os.preadv`` (see the module notes);
    otherwise they are copied. ``each`` is called with each run's rows in ``out`` right
    after they arrive, to change them in place while they are in the CPU's cache.
    """
    mapping = mapped_file(frames)
    fd = None
    if mapping is not None and hasattr(os, "preadv") and out.dtype == frames.dtype:
        fd = os.open(mapping[1], os.O_RDONLY)
    try:
        row_bytes = frames.itemsize * frames.shape[1]
        position = 0
        for begin, length in zip(starts, lengths):
            begin, length = int(begin), int(length)
            target = out[position : position + length]
            if fd is None:
                target[...] = frames[begin : begin + length]
            else:
                view, done = memoryview(target).cast("B"), 0
                while done < len(view):
                    got = os.preadv(fd, [view[done:]], mapping[2] + begin * row_bytes + done)
                    if got <= 0:
                        raise OSError(
                            f"{mapping[1]}: the feature cache file ends early; delete it "
                            "and run again to rebuild it"
                        )
                    done += got
            if each is not None:
                each(target)
            position += length
    finally:
        if fd is not None:
            os.close(fd)
    return out


def aligned_empty(rows: int, columns: int) -> np.ndarray:
    """A new ``(rows, columns)`` float32 array starting at a 64-byte boundary.

    Nothing may write to the array once it is handed to TensorFlow.
    """
    size = rows * columns * 4
    raw = np.empty(size + 64, dtype=np.uint8)
    skip = -raw.ctypes.data % 64
    return raw[skip : skip + size].view(np.float32).reshape(rows, columns)


def npy_with_room(path: Path, rows: int, columns: int) -> tuple[str, int]:
    """Create a float32 ``.npy`` file of ``(rows, columns)``; return its name and data offset."""
    room = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, columns))
    offset = int(room.offset)
    del room
    return str(path), offset


def write_rows(target: tuple[str, int], rows_and_arrays) -> None:
    """Write float32 arrays into the ``.npy`` file of ``target``: ``(first row, array)`` pairs."""
    filename, data_offset = target
    with open(filename, "r+b", buffering=0) as handle:
        for row, array in rows_and_arrays:
            array = np.ascontiguousarray(array, dtype=np.float32)
            handle.seek(data_offset + int(row) * array.shape[1] * array.itemsize)
            handle.write(memoryview(array).cast("B"))


def file_digest(path: str | Path) -> str:
    """xxHash (XXH3, 64 bits) of a file's bytes, as hex, read in chunks."""
    digest = xxhash.xxh3_64()
    buffer = bytearray(_READ_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            n = handle.readinto(buffer)
            if not n:
                break
            digest.update(view[:n])
    return digest.hexdigest()
