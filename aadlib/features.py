"""Log-mel energies (MFECs), the models' input windows, the per-bin scaler, the feature cache.

Chapter 2 explains every function here; chapters 3 to 5 use the cache through
:mod:`aadlib.pipeline`.

Arrays are time-major throughout: a clip's log-mel spectrogram has shape
``(n_frames, n_mels)``, a Dense AE vector is 5 consecutive frames flattened to
640 values, and a CNN AE patch is ``(32, 128)`` (frames x mel bins).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
from joblib import Parallel, delayed
from numpy.lib.stride_tricks import sliding_window_view
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from . import _fastio, paper
from ._storage import exclusive, remove_stale_temporaries, write_atomic, write_npy, write_text
from .data import AudioError, AudioErrors, load_clip

__all__ = [
    "FeatureParams",
    "params_for",
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
    "FeatureCacheError",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureParams:
    """Parameters of the log-mel front end; the defaults are the paper's (Section 2.2).

    ``power=1.0`` takes the magnitude spectrum, as the paper says and as the
    authors' CNN code does; their Dense code and the DCASE baseline used ``power=2.0``.
    The energy in dB is ``20 / power * log10(S + eps)`` either way. Chapter 2.
    ``mono`` is :func:`aadlib.data.load_clip`'s: how clips with several channels are
    mixed down (``"refuse"``, ``"first"``, ``"mean"``).
    """

    sr: int = paper.SAMPLE_RATE
    n_fft: int = paper.N_FFT
    hop_length: int = paper.HOP_LENGTH
    n_mels: int = paper.N_MELS
    power: float = paper.POWER
    eps: float = float(np.finfo(np.float32).eps)
    mono: str = "refuse"

    def as_dict(self) -> dict:
        values = dataclasses.asdict(self)
        if values["mono"] == "refuse":  # the records and cache keys of mono data stay as they were
            del values["mono"]
        return values


def params_for(kind: str) -> FeatureParams:
    """The feature parameters a model kind reads (its spectrum power). Chapters 3, 5."""
    return FeatureParams(power=paper.model_spec(kind).feature_power)


_FILTERBANKS: dict[tuple, np.ndarray] = {}


def mel_filterbank(params: FeatureParams = FeatureParams()) -> np.ndarray:
    """librosa's default (Slaney) mel filters, ``(n_mels, 1 + n_fft // 2)``, cached. Chapter 2."""
    key = (params.sr, params.n_fft, params.n_mels)
    if key not in _FILTERBANKS:
        _FILTERBANKS[key] = librosa.filters.mel(
            sr=params.sr, n_fft=params.n_fft, n_mels=params.n_mels
        ).astype(np.float32)
    return _FILTERBANKS[key]


def log_mel(y: np.ndarray, params: FeatureParams = FeatureParams()) -> np.ndarray:
    """Log-mel energies of a waveform, ``(n_frames, n_mels)`` ``float32`` in dB. Chapter 2.

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
    """Windows of ``n_frames`` consecutive frames, one every ``hop`` frames. Chapter 2.

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
    ``[frame t, frame t+1, ..., frame t+n_frames-1]``. Chapter 2.
    """
    windows = frame_windows(logmel, n_frames, hop)
    return windows.reshape(len(windows), n_frames * windows.shape[2])


def dense_vectors(
    logmel: np.ndarray,
    n_frames: int = paper.MODELS["dense"].window_frames,
    hop: int = 1,
    block: tuple[int, int] | None = None,
) -> np.ndarray:
    """Dense AE input vectors (640 values for 5 frames of 128 mels). Chapter 2.

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


def cnn_patches(
    logmel: np.ndarray,
    n_frames: int = paper.MODELS["cnn"].window_frames,
    hop: int = paper.MODELS["cnn"].hop,
) -> np.ndarray:
    """CNN AE patches of ``n_frames`` frames taken every ``hop`` frames. Chapter 2.

    Returns a read-only strided view ``(n_patches, n_frames, n_mels)``; the authors'
    code takes a patch every 3 frames (about 100 ms).
    """
    return frame_windows(logmel, n_frames, hop)


@dataclass
class Scaler:
    """Per-mel-bin z-normalisation with training-set mean and standard deviation. Chapter 2.

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
        """Read a scaler saved by :meth:`save`; a damaged file raises :class:`ValueError`."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as arrays:
                mean = arrays["mean"].astype(np.float32)
                std = arrays["std"].astype(np.float32)
        except FileNotFoundError:
            raise
        except Exception as err:  # zipfile, KeyError, ValueError: all mean a damaged file
            raise ValueError(
                f"{path}: the scaler file is damaged ({type(err).__name__}: {err}); delete "
                "the model's folder and train again"
            ) from err
        if mean.shape != std.shape or mean.ndim != 1 or not np.all(np.isfinite(mean + std)):
            raise ValueError(
                f"{path}: the scaler file holds no valid statistics; delete the model's "
                "folder and train again"
            )
        return cls(mean, std)


# --------------------------------------------------------------------------------------
# Many clips: one frame array, extracted in parallel, cached on disk.
# --------------------------------------------------------------------------------------


@dataclass
class LogMelSet:
    """The log-mel spectrograms of many clips, stored as one ``(total_frames, n_mels)`` array.

    Clip ``i`` is ``frames[offsets[i]:offsets[i + 1]]``. Keeping one contiguous array
    (memory-mapped when read from the cache) lets training gather windows by index
    without materialising every stacked vector or patch. Chapter 2.

    Frames memory-mapped from the cache stay out of the process's resident memory as far
    as possible: a pass over the clips releases the pages it has read every
    :attr:`release_bytes` bytes, and :meth:`read_clips` copies clips with file reads.
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
        mapped = self.is_mapped
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

    @property
    def is_mapped(self) -> bool:
        """Whether the frames live in a memory-mapped cache file."""
        return _fastio.mapped_file(self.frames) is not None

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

    def release_memory(self) -> bool:
        """Drop memory-mapped frames from this process's resident memory (see the notes).

        Returns whether anything was released (False for frames held in memory).
        """
        return _fastio.release(self.frames)

    def read_clips(self, clips, out: np.ndarray | None = None, each=None) -> np.ndarray:
        """The frames of several clips, one after the other, in one new array (or ``out``).

        ``out`` must be C-contiguous with room for every frame of the clips. ``each``, if
        given, is called with each clip's frames in ``out`` right after they are read, to
        change them in place while they are still in the CPU's cache.
        """
        clips = np.asarray(clips, dtype=np.int64)
        lengths = self.offsets[clips + 1] - self.offsets[clips]
        if out is None:
            out = np.empty((int(lengths.sum()), self.frames.shape[1]), dtype=self.frames.dtype)
        return _fastio.read_rows(self.frames, self.offsets[clips], lengths, out, each)


def clip_log_mel(path: str | Path, params: FeatureParams = FeatureParams()) -> np.ndarray:
    """Load one clip (see :func:`aadlib.data.load_clip`) and return its log-mel energies.

    Chapters 1, 2, 3, 4, 10.
    """
    return log_mel(load_clip(path, params.sr, mono=params.mono), params)


def cache_key(paths, params: FeatureParams = FeatureParams()) -> str:
    """A key that changes when the feature parameters or any file (name, size, mtime) change.

    The feature code counts as a parameter: the key also covers librosa's version and
    the source of :func:`log_mel`, so a cache written by other code is not reused.
    """
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


class FeatureCacheError(ValueError):
    """A feature cache entry does not match what was written; it is rebuilt."""


@dataclass(frozen=True)
class _CacheEntry:
    """One cached frame set: ``<key>.frames.npy``, ``<key>.offsets.npy`` and a record.

    The record (``<key>.json``) is written last and holds each file's size and xxHash,
    so an entry is used only when both files are exactly what was written.
    """

    folder: Path
    key: str

    @property
    def frames_file(self) -> Path:
        return self.folder / f"{self.key}.frames.npy"

    @property
    def offsets_file(self) -> Path:
        return self.folder / f"{self.key}.offsets.npy"

    @property
    def record_file(self) -> Path:
        return self.folder / f"{self.key}.json"

    def files(self) -> tuple[Path, Path, Path]:
        return self.frames_file, self.offsets_file, self.record_file

    def load(self, n_clips: int, n_mels: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The mapped frames and the offsets; ``None`` when there is no complete entry.

        Raises :class:`FeatureCacheError` when the entry exists but is damaged.
        """
        if not all(f.exists() for f in self.files()):
            return None
        try:
            record = json.loads(self.record_file.read_text())
            for name in ("frames", "offsets"):
                path = getattr(self, f"{name}_file")
                if path.stat().st_size != record[name]["bytes"]:
                    raise FeatureCacheError(f"{path.name} has the wrong size")
                if _fastio.file_digest(path) != record[name]["xxh3"]:
                    raise FeatureCacheError(f"{path.name} does not match its checksum")
            offsets = np.load(self.offsets_file, allow_pickle=False)
            frames = np.load(self.frames_file, mmap_mode="r", allow_pickle=False)
        except FeatureCacheError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise FeatureCacheError(f"unreadable ({type(err).__name__}: {err})") from err
        valid = (
            offsets.shape == (n_clips + 1,)
            and offsets[0] == 0
            and np.all(np.diff(offsets) >= 0)
            and frames.ndim == 2
            and frames.shape == (int(offsets[-1]), n_mels)
        )
        if not valid:
            raise FeatureCacheError("its frames and offsets do not fit this clip list")
        return np.asarray(frames), offsets.astype(np.int64)

    def commit(self, offsets: np.ndarray) -> None:
        """Write the offsets, then the record that makes the entry valid."""
        write_npy(self.offsets_file, offsets.astype(np.int64))
        record = {
            name: {"bytes": path.stat().st_size, "xxh3": _fastio.file_digest(path)}
            for name, path in (("frames", self.frames_file), ("offsets", self.offsets_file))
        }
        write_text(self.record_file, json.dumps(record, indent=1))

    def remove(self) -> None:
        for path in self.files():
            path.unlink(missing_ok=True)


def _expected_frames(paths: list[Path], params: FeatureParams) -> np.ndarray | None:
    """Frames each clip gives (``1 + samples // hop`` for a centred STFT), from headers.

    ``None`` when a header is unusual (another rate, several channels, unreadable): the
    general path then reports the problem with :func:`aadlib.data.load_clip`'s message.
    """
    counts = []
    for path in paths:
        try:
            with sf.SoundFile(path) as f:
                if f.samplerate != params.sr or f.channels != 1 or f.frames <= 0:
                    return None
                padded = f.frames + 2 * (params.n_fft // 2) - params.n_fft
                counts.append(1 + padded // params.hop_length)
        except (sf.LibsndfileError, RuntimeError, OSError):
            return None
    return np.array(counts, dtype=np.int64)


def _log_mel_or_error(path, params):
    try:
        return clip_log_mel(path, params)
    except AudioError as err:  # collected, so that every bad clip is reported at once
        return err


def _extract_chunk(paths, params, target=None, starts=None) -> list:
    """Log-mel arrays of some clips: one worker's share of :func:`extract_logmels`.

    A clip that cannot be used gives its :class:`aadlib.data.AudioError` instead. With
    ``target`` (see :func:`aadlib._fastio.npy_with_room`), clips are written in place at
    rows ``starts`` and only their frame counts come back (see the module notes).
    """
    results = [_log_mel_or_error(p, params) for p in paths]
    if target is None:
        return results
    arrays = [(s, a) for s, a in zip(starts, results) if isinstance(a, np.ndarray)]
    expected = dict(zip(starts[:-1], np.diff(starts)))
    _fastio.write_rows(target, [(s, a) for s, a in arrays if len(a) == expected[s]])
    return [r if isinstance(r, AudioError) else len(r) for r in results]


def _results(run) -> list:
    """Every clip's result from :func:`_run_parallel`; bad clips raise together at the end."""
    results = [r for _, part in run for r in part]
    errors = [r for r in results if isinstance(r, AudioError)]
    if errors:
        raise AudioErrors(errors)
    return results


def _run_parallel(paths, params, n_jobs, progress, desc, target=None, offsets=None):
    """Yield each chunk's clip indices and results, in order, with a progress bar.

    Up to 4 workers are threads of this process: they start at once and share the loaded
    libraries, and decoding, FFT, matrix product and logarithm release the GIL. More
    workers are processes, which scale further but take seconds to start.
    """
    chunk = max(1, min(32, len(paths) // (4 * n_jobs) or 1))
    parts = [range(i, min(i + chunk, len(paths))) for i in range(0, len(paths), chunk)]

    def args(part):
        if target is None:
            return [paths[i] for i in part], params
        return [paths[i] for i in part], params, target, offsets[part.start : part.stop + 1]

    threads = n_jobs <= 4
    if n_jobs == 1:
        results = (_extract_chunk(*args(part)) for part in parts)
    else:
        backend = "threading" if threads else "loky"
        results = Parallel(n_jobs=n_jobs, backend=backend, return_as="generator")(
            delayed(_extract_chunk)(*args(part)) for part in parts
        )
    # One BLAS thread per worker thread, as in worker processes.
    limits = threadpool_limits(1) if threads and n_jobs > 1 else contextlib.nullcontext()
    with limits, tqdm(total=len(paths), desc=desc, unit="clip", disable=not progress) as bar:
        for part, result in zip(parts, results):
            yield part, result
            bar.update(len(part))


def _extract_in_memory(paths, params, n_jobs, progress, desc) -> LogMelSet:
    arrays = _results(_run_parallel(paths, params, n_jobs, progress, desc))
    return LogMelSet.from_arrays(arrays, paths)


class _HeadersDisagree(Exception):
    """A clip gave another number of frames than its header promised."""


def _extract_into_cache(paths, params, n_jobs, progress, desc, entry: _CacheEntry) -> None:
    """Compute every clip into the entry's frames file (in place when the headers allow)."""
    counts = _expected_frames(paths, params)
    if counts is not None:
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

        def fill(tmp: Path) -> None:
            target = _fastio.npy_with_room(tmp, int(offsets[-1]), params.n_mels)
            run = _run_parallel(paths, params, n_jobs, progress, desc, target, offsets)
            if not np.array_equal(_results(run), counts):
                raise _HeadersDisagree

        try:
            write_atomic(entry.frames_file, fill, 4 * int(offsets[-1]) * params.n_mels + 128)
            entry.commit(offsets)
            return
        except _HeadersDisagree:
            pass
    # Some clip is not what its header promised: gather the arrays, then write them.
    logmels = _extract_in_memory(paths, params, n_jobs, progress, desc)
    write_npy(entry.frames_file, logmels.frames)
    entry.commit(logmels.offsets)


def extract_logmels(
    paths,
    params: FeatureParams = FeatureParams(),
    *,
    n_jobs: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    desc: str = "log-mel",
) -> LogMelSet:
    """Log-mel energies of many clips, in parallel, optionally cached on disk. Chapter 2.

    Parameters
    ----------
    paths
        Clip files, in the order the result keeps.
    n_jobs
        Workers (``None``: every core; 1: in this process, one clip after another).
    cache_dir
        Folder for the cache. The key covers the parameters and every file's path,
        size and modification time, so a changed file or parameter recomputes. A cached
        set is checked against the checksums written with it and memory-mapped, not read
        into memory; a damaged entry is rebuilt, with a warning that names it.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("extract_logmels needs at least one clip")
    n_jobs = max(1, min(n_jobs or os.cpu_count() or 1, len(paths)))
    if cache_dir is None:
        return _extract_in_memory(paths, params, n_jobs, progress, desc)

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(cache_dir)
    entry = _CacheEntry(cache_dir, cache_key(paths, params))
    # One run extracts an entry; another that needs it at the same time waits, then reads it.
    with exclusive(cache_dir, f"extracting {desc} features", lock_name=f".{entry.key}.lock"):
        try:
            cached = entry.load(len(paths), params.n_mels)
        except FeatureCacheError as err:
            log.warning("feature cache %s is damaged (%s); rebuilding it", entry.frames_file, err)
            cached = None
        if cached is None:
            entry.remove()
            _extract_into_cache(paths, params, n_jobs, progress, desc, entry)
            cached = entry.load(len(paths), params.n_mels)
    frames, offsets = cached
    return LogMelSet(frames, offsets, [str(p) for p in paths])
