"""Log-mel energies (MFECs), Dense AE frame stacks, CNN AE patches and the per-bin scaler.

Chapter: ``notebooks/02_features.ipynb``.

Arrays are time-major throughout: a clip's log-mel spectrogram has shape
``(n_frames, n_mels)``, a Dense AE vector is 5 consecutive frames flattened to
640 values, and a CNN AE patch is ``(32, 128)`` (frames x mel bins).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
from joblib import Parallel, delayed
from numpy.lib.stride_tricks import sliding_window_view
from tqdm import tqdm

from ._io import write_atomic, write_npy

__all__ = [
    "FeatureParams",
    "log_mel",
    "mel_filterbank",
    "frame_windows",
    "stack_frames",
    "dense_vectors",
    "cnn_patches",
    "Scaler",
    "LogMelSet",
    "clip_log_mel",
    "extract_logmels",
    "cache_key",
]


@dataclass(frozen=True)
class FeatureParams:
    """Parameters of the log-mel front end, as in the paper (Section 2.2).

    ``power=1.0`` takes the magnitude spectrum, as the paper says and as the
    authors' CNN code does; their Dense code used ``power=2.0``. The energy in
    dB is ``20 / power * log10(S + eps)`` either way.
    """

    sr: int = 16_000
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 128
    power: float = 1.0
    eps: float = float(np.finfo(np.float32).eps)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


_FILTERBANKS: dict[tuple, np.ndarray] = {}


def mel_filterbank(params: FeatureParams = FeatureParams()) -> np.ndarray:
    """librosa's default (Slaney) mel filters, ``(n_mels, 1 + n_fft // 2)``, cached."""
    key = (params.sr, params.n_fft, params.n_mels)
    if key not in _FILTERBANKS:
        _FILTERBANKS[key] = librosa.filters.mel(
            sr=params.sr, n_fft=params.n_fft, n_mels=params.n_mels
        ).astype(np.float32)
    return _FILTERBANKS[key]


def log_mel(y: np.ndarray, params: FeatureParams = FeatureParams()) -> np.ndarray:
    """Log-mel energies of a waveform, ``(n_frames, n_mels)`` ``float32`` in dB.

    The STFT is librosa's (centred frames, Hann window), so a 10 s clip at 16 kHz
    gives 313 frames. The edges are padded by reflection, librosa's default before
    version 0.10 and so what the authors' code and the real data's published
    statistics used.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"log_mel expects a 1-D waveform, got shape {y.shape}")
    spec = np.abs(
        librosa.stft(
            y, n_fft=params.n_fft, hop_length=params.hop_length, center=True, pad_mode="reflect"
        )
    )
    if params.power != 1.0:
        spec = spec**params.power
    mel = mel_filterbank(params) @ spec
    out = (20.0 / params.power) * np.log10(mel + params.eps)
    return np.ascontiguousarray(out.T, dtype=np.float32)


def frame_windows(logmel: np.ndarray, n_frames: int, hop: int = 1) -> np.ndarray:
    """Windows of ``n_frames`` consecutive frames, one every ``hop`` frames.

    Returns a read-only strided view ``(n_windows, n_frames, n_mels)`` when the input
    is C-contiguous, so no frame is copied; no window when the clip is too short.
    """
    logmel = np.ascontiguousarray(logmel)
    n, n_mels = logmel.shape
    if n < n_frames:
        return np.empty((0, n_frames, n_mels), dtype=logmel.dtype)
    return sliding_window_view(logmel, (n_frames, n_mels))[::hop, 0]


def stack_frames(logmel: np.ndarray, n_frames: int = 5, hop: int = 1) -> np.ndarray:
    """Concatenate ``n_frames`` consecutive frames into one vector, every ``hop`` frames.

    Returns a read-only strided view ``(n_vectors, n_frames * n_mels)`` when the
    input is C-contiguous, so no frame is copied. Vector ``t`` is
    ``[frame t, frame t+1, ..., frame t+n_frames-1]``.
    """
    windows = frame_windows(logmel, n_frames, hop)
    return windows.reshape(len(windows), n_frames * windows.shape[2])


def dense_vectors(
    logmel: np.ndarray,
    n_frames: int = 5,
    hop: int = 1,
    block: tuple[int, int] | None = None,
) -> np.ndarray:
    """Dense AE input vectors (640 values for 5 frames of 128 mels).

    Parameters
    ----------
    logmel
        ``(n_frames, n_mels)`` log-mel energies of one clip.
    hop
        Frames between consecutive vectors (1 = every vector, as the paper).
    block
        ``(block_frames, block_hop)``: the paper buffers audio into 1 s blocks with
        50 % overlap and stacks frames inside each block. ``(32, 16)`` reproduces
        that on the spectrogram (32 frames ~ 1 s at hop 512); ``None`` stacks across
        the whole clip. Overlapping blocks repeat most vectors twice, so the clip
        score barely changes; the option is there for exactness.
    """
    if block is None:
        return stack_frames(logmel, n_frames, hop)
    block_frames, block_hop = block
    starts = range(0, max(len(logmel) - block_frames, 0) + 1, block_hop)
    parts = [stack_frames(logmel[s : s + block_frames], n_frames, hop) for s in starts]
    return np.concatenate(parts) if parts else stack_frames(logmel[:0], n_frames)


def cnn_patches(logmel: np.ndarray, n_frames: int = 32, hop: int = 3) -> np.ndarray:
    """CNN AE patches of ``n_frames`` frames taken every ``hop`` frames.

    Returns a read-only strided view ``(n_patches, n_frames, n_mels)``; the authors'
    code takes a patch every 3 frames (about 100 ms).
    """
    return frame_windows(logmel, n_frames, hop)


@dataclass
class Scaler:
    """Per-mel-bin z-normalisation with training-set mean and standard deviation.

    Saved as a plain ``.npz`` of two arrays (never a pickle), so a scaler from
    elsewhere can be loaded safely.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, logmels) -> Scaler:
        """Fit on an iterable of ``(n_frames, n_mels)`` arrays, in one streaming pass."""
        count, total, total_sq = 0, None, None
        for lm in logmels:
            lm = np.asarray(lm, dtype=np.float64)
            if total is None:
                total = np.zeros(lm.shape[1])
                total_sq = np.zeros(lm.shape[1])
            count += lm.shape[0]
            total += lm.sum(axis=0)
            total_sq += (lm**2).sum(axis=0)
        if not count:
            raise ValueError("Scaler.fit needs at least one frame of training data")
        mean = total / count
        var = np.maximum(total_sq / count - mean**2, 0.0)
        std = np.sqrt(var)
        # A constant bin would divide by zero; leave it centred but unscaled.
        std[std < 1e-6] = 1.0
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def transform(self, logmel: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``(logmel - mean) / std`` in float32; into ``out`` (may be ``logmel``) if given."""
        if out is None:
            return ((logmel - self.mean) / self.std).astype(np.float32)
        np.subtract(logmel, self.mean, out=out)
        return np.divide(out, self.std, out=out)

    def save(self, path: str | Path) -> Path:
        """Write ``mean`` and ``std`` to an ``.npz`` file, atomically."""
        return write_atomic(path, lambda tmp: np.savez(tmp, mean=self.mean, std=self.std))

    @classmethod
    def load(cls, path: str | Path) -> Scaler:
        with np.load(Path(path), allow_pickle=False) as arrays:
            return cls(arrays["mean"].astype(np.float32), arrays["std"].astype(np.float32))


# --------------------------------------------------------------------------------------
# Many clips: parallel extraction into one frame array, cached on disk.
# --------------------------------------------------------------------------------------


@dataclass
class LogMelSet:
    """The log-mel spectrograms of many clips, stored as one ``(total_frames, n_mels)`` array.

    Clip ``i`` is ``frames[offsets[i]:offsets[i + 1]]``. Keeping one contiguous array
    (memory-mapped when read from the cache) lets training gather windows by index
    without materialising every stacked vector or patch.

    Frames memory-mapped from a cache file stay out of the process's resident memory
    as far as possible: iterating over the clips releases the pages it has read every
    :attr:`release_bytes` bytes (:meth:`release_memory`; the operating system keeps
    them in its file cache), and :meth:`read_clips` copies clips with plain file reads.
    """

    frames: np.ndarray
    offsets: np.ndarray
    paths: list[str]

    #: Bytes of memory-mapped frames a pass over the clips reads between two releases.
    release_bytes = 32 * 2**20

    def __len__(self) -> int:
        return len(self.paths)

    def clip(self, i: int) -> np.ndarray:
        return self.frames[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self):
        mapped = self._mapping() is not None
        row_bytes = self.frames.itemsize * max(self.frames.shape[1], 1)
        since_release = 0
        for i in range(len(self)):
            yield self.clip(i)
            if mapped:
                since_release += int(self.offsets[i + 1] - self.offsets[i]) * row_bytes
                if since_release >= self.release_bytes:
                    self.release_memory()
                    since_release = 0
        if mapped and since_release:
            self.release_memory()

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def subset(self, indices) -> LogMelSet:
        """A new set holding the given clips, in that order (copies their frames)."""
        indices = np.asarray(indices, dtype=int)
        parts = [self.clip(i) for i in indices]
        lengths = np.array([len(p) for p in parts], dtype=np.int64)
        frames = np.concatenate(parts) if parts else self.frames[:0].copy()
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return LogMelSet(frames, offsets, [self.paths[i] for i in indices])

    @classmethod
    def from_arrays(cls, arrays, paths) -> LogMelSet:
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        n_mels = arrays[0].shape[1] if len(arrays) else 0
        frames = np.empty((int(offsets[-1]), n_mels), dtype=np.float32)
        for a, start in zip(arrays, offsets[:-1]):
            frames[start : start + len(a)] = a
        return cls(frames, offsets, [str(p) for p in paths])

    # -- memory-mapped frames ------------------------------------------------------------

    def _mapping(self):
        """``(memmap, path, byte offset)`` when the frames are a shared file mapping, else None."""
        import mmap

        frames = self.frames
        if not isinstance(frames, np.ndarray) or not frames.flags.c_contiguous:
            return None
        root = frames
        while isinstance(root.base, np.ndarray):
            root = root.base
        if not (
            isinstance(root, np.memmap)
            and isinstance(root.base, mmap.mmap)
            and root.filename is not None
            and root.mode in ("r", "r+", "w+")
        ):
            return None
        start = root.offset + (frames.ctypes.data - root.ctypes.data)
        return root, root.filename, int(start)

    def release_memory(self) -> bool:
        """Drop memory-mapped frames from this process's resident memory.

        The pages stay in the operating system's file cache, so reading them again is
        cheap; arrays taken from the frames stay valid. Returns whether anything was
        released (False for frames held in memory, which this cannot shrink).
        """
        import mmap

        mapping = self._mapping()
        if mapping is None or not hasattr(mmap, "MADV_DONTNEED"):
            return False
        try:
            mapping[0].base.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            return False
        return True

    def read_clips(self, clips, out: np.ndarray | None = None, each=None) -> np.ndarray:
        """The frames of several clips, one after the other, in one new array (or ``out``).

        For memory-mapped frames this reads the cache file (``os.preadv``), so the clips
        never count towards the process's resident memory; otherwise it copies them.
        ``out`` must be C-contiguous with room for every frame of the clips. ``each``, if
        given, is called with each clip's frames in ``out`` right after they are read, to
        change them in place while they are still in the CPU's cache.
        """
        clips = np.asarray(clips, dtype=np.int64)
        lengths = self.offsets[clips + 1] - self.offsets[clips]
        total = int(lengths.sum())
        if out is None:
            out = np.empty((total, self.frames.shape[1]), dtype=self.frames.dtype)
        mapping = self._mapping()
        fd = None
        if mapping is not None and hasattr(os, "preadv") and out.dtype == self.frames.dtype:
            fd = os.open(mapping[1], os.O_RDONLY)
        try:
            row_bytes = self.frames.itemsize * self.frames.shape[1]
            position = 0
            for clip, length in zip(clips, lengths):
                begin = int(self.offsets[clip])
                target = out[position : position + length]
                if fd is None:
                    target[...] = self.frames[begin : begin + length]
                else:
                    view, done = memoryview(target).cast("B"), 0
                    while done < len(view):
                        got = os.preadv(fd, [view[done:]], mapping[2] + begin * row_bytes + done)
                        if got <= 0:
                            raise OSError(f"{mapping[1]}: unexpected end of the feature cache")
                        done += got
                if each is not None:
                    each(target)
                position += int(length)
        finally:
            if fd is not None:
                os.close(fd)
        return out


def clip_log_mel(path: str | Path, params: FeatureParams = FeatureParams()) -> np.ndarray:
    """Load one clip (see :func:`aadlib.data.load_clip`) and return its log-mel energies."""
    from .data import load_clip

    return log_mel(load_clip(path, params.sr), params)


def cache_key(paths, params: FeatureParams = FeatureParams()) -> str:
    """A key that changes when the feature parameters or any file (name, size, mtime) change.

    The feature code counts as a parameter: the key also covers librosa's version and
    the source of :func:`log_mel`, so a cache written by other code is not reused.
    """
    import inspect

    try:
        code = inspect.getsource(log_mel)
    except (OSError, TypeError):
        code = ""
    digest = hashlib.sha256(json.dumps(params.as_dict(), sort_keys=True).encode())
    digest.update(f"{librosa.__version__}\n{code}\n".encode())
    for p in paths:
        st = os.stat(p)
        digest.update(f"{os.fspath(p)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _extract_chunk(
    paths: list,
    params: FeatureParams,
    target: tuple[str, int] | None = None,
    starts=None,
    lengths=None,
) -> list:
    """Log-mel arrays of some clips: one worker's share of :func:`extract_logmels`.

    With ``target`` (``(file, byte offset of row 0)`` of a ``.npy`` file with room for
    every frame), each clip of the expected frame count ``lengths[i]`` is written in
    place at row ``starts[i]`` and only the frame counts come back, so no array crosses
    the process boundary; a clip of another length is not written (the caller checks).
    """
    if target is None:
        return [clip_log_mel(p, params) for p in paths]
    filename, data_offset = target
    counts = []
    with open(filename, "r+b", buffering=0) as fh:
        for path, start, length in zip(paths, starts, lengths):
            array = np.ascontiguousarray(clip_log_mel(path, params), dtype=np.float32)
            counts.append(len(array))
            if len(array) == length:
                fh.seek(data_offset + int(start) * array.shape[1] * array.itemsize)
                fh.write(memoryview(array).cast("B"))
    return counts


def extract_logmels(
    paths,
    params: FeatureParams = FeatureParams(),
    *,
    n_jobs: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    desc: str = "log-mel",
) -> LogMelSet:
    """Log-mel energies of many clips, in parallel, optionally cached on disk.

    Parameters
    ----------
    paths
        Clip files, in the order the result keeps.
    n_jobs
        Workers (``None``: every core; 1: in this process, one clip after another).
        Up to 4 workers are threads of this process: they start at once and share the
        loaded libraries, and decoding, FFT, matrix product and logarithm release the
        GIL. More workers are processes, which scale further but take seconds to start.
    cache_dir
        Folder for the cache. The key covers the parameters and every file's path,
        size and modification time, so a changed file or parameter recomputes.
        A cached set is memory-mapped, not read into memory.

    Each clip's frame count follows from its header, so the frame array is allocated
    once and every clip lands in place: with a cache, the workers write straight into
    the cache file (no array is sent back, nothing is held in memory) and the result is
    mapped from that file; without one, each clip is copied once into the result.
    """
    import contextlib

    import soundfile as sf

    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("extract_logmels needs at least one clip")
    cache_files = None
    if cache_dir is not None:
        key = cache_key(paths, params)
        cache_dir = Path(cache_dir)
        cache_files = (cache_dir / f"{key}.frames.npy", cache_dir / f"{key}.offsets.npy")
        if all(f.exists() for f in cache_files):
            frames = np.load(cache_files[0], mmap_mode="r", allow_pickle=False)
            offsets = np.load(cache_files[1], allow_pickle=False)
            return LogMelSet(frames, offsets, [str(p) for p in paths])

    n_jobs = max(1, min(n_jobs or os.cpu_count() or 1, len(paths)))
    chunk = max(1, min(32, len(paths) // (4 * n_jobs) or 1))
    chunks = [range(i, min(i + chunk, len(paths))) for i in range(0, len(paths), chunk)]

    def expected_counts():
        # Frames of a centred STFT: 1 + samples // hop. None when a header is unusual;
        # the general path below then reports the problem (or copes with it).
        counts = []
        for path in paths:
            try:
                with sf.SoundFile(path) as f:
                    if f.samplerate != params.sr or f.channels != 1 or f.frames <= 0:
                        return None
                    padded = f.frames + 2 * (params.n_fft // 2) - params.n_fft
                    counts.append(1 + padded // params.hop_length)
            except Exception:  # noqa: BLE001 - the workers raise the precise AudioError
                return None
        return np.array(counts, dtype=np.int64)

    def run(target=None, starts=None, counts=None):
        """Yield ``(clip indices, result)`` per chunk, in order."""
        bar = tqdm(total=len(paths), desc=desc, unit="clip", disable=not progress, leave=False)

        def args(part):
            if target is None:
                return [paths[i] for i in part], params
            window = slice(part.start, part.stop)
            return [paths[i] for i in part], params, target, starts[window], counts[window]

        threads = 1 < n_jobs <= 4
        if n_jobs == 1:
            results = (_extract_chunk(*args(part)) for part in chunks)
        else:
            results = Parallel(
                n_jobs=n_jobs, backend="threading" if threads else "loky", return_as="generator"
            )(delayed(_extract_chunk)(*args(part)) for part in chunks)
        limits = contextlib.nullcontext()
        if threads:  # one BLAS thread per worker thread, as in worker processes
            with contextlib.suppress(ImportError):
                from threadpoolctl import threadpool_limits

                limits = threadpool_limits(1)
        try:
            with limits:
                for part, result in zip(chunks, results):
                    yield part, result
                    bar.update(len(part))
        finally:
            bar.close()

    def from_arrays():
        arrays: list[np.ndarray] = []
        for _, result in run():
            arrays.extend(result)
        return LogMelSet.from_arrays(arrays, paths)

    counts = expected_counts()
    offsets = None if counts is None else np.concatenate([[0], np.cumsum(counts)])
    n_mels = params.n_mels
    if cache_files is None:
        if offsets is None:
            return from_arrays()
        frames = np.empty((int(offsets[-1]), n_mels), dtype=np.float32)
        matched = True
        for part, arrays in run():
            for i, array in zip(part, arrays):
                if array.shape != (counts[i], n_mels):
                    matched = False
                    break
                frames[offsets[i] : offsets[i + 1]] = array
        if not matched:
            return from_arrays()
        return LogMelSet(frames, offsets, [str(p) for p in paths])

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".tmp-{os.getpid()}-{cache_files[0].name}"
    try:
        if offsets is not None:
            room = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.float32, shape=(int(offsets[-1]), n_mels)
            )
            target = (str(tmp), int(room.offset))
            del room
            written = [n for _, part_counts in run(target, offsets, counts) for n in part_counts]
            if np.array_equal(written, counts):
                tmp.replace(cache_files[0])
        if offsets is None or tmp.exists():
            logmels = from_arrays()
            offsets = logmels.offsets
            write_npy(cache_files[0], logmels.frames)
    finally:
        tmp.unlink(missing_ok=True)
    write_npy(cache_files[1], offsets.astype(np.int64))
    frames = np.load(cache_files[0], mmap_mode="r", allow_pickle=False)
    # A plain array view of the mapping: the frames live in the cache file, not in memory.
    return LogMelSet(np.asarray(frames), offsets.astype(np.int64), [str(p) for p in paths])
