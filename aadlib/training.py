"""Training with the paper's schedule, a streaming input pipeline, resumable checkpoints.

Chapters: ``notebooks/03_dense_autoencoder.ipynb`` and
``notebooks/04_conv_autoencoder.ipynb``.

The paper (Section 2.3): Adam with learning rate 0.001, MSE loss, at most 100 epochs,
10 % of the training data held out for validation, early stopping after 10 epochs
without improvement of the validation loss, keeping the best weights; batch size
512 for the Dense AE and 64 for the CNN AE.

Inputs are never materialised: :class:`WindowDataset` gathers each batch of
5-frame vectors or 32-frame patches from the clips' log-mel frames by index, and feeds
them to Keras as a ``tf.data`` pipeline.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from ._io import write_atomic, write_text
from .features import LogMelSet, frame_windows
from .windows import PAPER_BATCH, WINDOW_FRAMES

__all__ = [
    "TrainConfig",
    "paper_config",
    "WindowDataset",
    "split_clips",
    "training_windows",
    "fit_autoencoder",
    "save_model",
    "load_model",
    "load_history",
]


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; the defaults are the paper's (batch size set per model)."""

    epochs: int = 100
    batch_size: int = 512
    learning_rate: float = 1e-3
    validation_fraction: float = 0.1
    patience: int = 10
    min_delta: float = 0.0
    seed: int = 0
    #: Cap on training (and validation) batches per epoch; ``None``: every window.
    steps_per_epoch: int | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def paper_config(kind: str, **changes) -> TrainConfig:
    """The paper's settings for ``"dense"`` (batch 512) or ``"cnn"`` (batch 64)."""
    if kind not in PAPER_BATCH:
        raise ValueError(f"unknown model kind {kind!r}; choose 'dense' or 'cnn'")
    return dataclasses.replace(TrainConfig(batch_size=PAPER_BATCH[kind]), **changes)


class WindowDataset(keras.utils.PyDataset):
    """Batches of Dense AE vectors or CNN AE patches gathered from log-mel frames.

    Parameters
    ----------
    logmels
        The clips' frames (:class:`aadlib.features.LogMelSet`), already normalised
        when the model expects it.
    kind
        ``"dense"``: 5 frames flattened to 640 values; ``"cnn"``: 32 x 128 x 1 patches.
    hop
        Frames between window starts within a clip.
    shuffle
        Shuffle windows each epoch (training); otherwise clip order is kept and
        :attr:`clip_of_window` tells which clip each window belongs to.
    targets
        Yield ``(x, x)`` pairs for ``fit``; ``False`` yields ``x`` alone for ``predict``.
    clips
        Indices of the clips to use (default: all). Selecting clips copies nothing.
    scaler
        A :class:`aadlib.features.Scaler` applied on the fly (the CNN AE's
        z-normalisation), so no normalised copy of all the frames is kept.

    Notes
    -----
    A batch is one vectorised gather from a strided view of the frames: no window is
    stored anywhere but in its batch. Memory stays bounded whatever the data set's size.
    The windows are visited block by block, a block being the windows of clips that
    hold at most :attr:`block_bytes` of frames. Each block is read into memory (plain
    file reads for frames memory-mapped from the feature cache, so they never count
    towards the process's resident memory) and, with a ``scaler``, normalised there
    once, clip by clip: a frame belongs to up to 32 patches, so this is cheaper than
    normalising every batch, with the same numbers. With ``shuffle``, each epoch
    permutes the clips, cuts them into blocks and shuffles the windows within each
    block (a shuffle buffer of a few hundred clips); when all the frames fit in one
    block, as in the quick and tiny profiles, that is a shuffle of all the windows.

    Indexing (``dataset[i]``, the :class:`keras.utils.PyDataset` protocol) gives NumPy
    batches. :meth:`as_tf_dataset` gives the same batches as a ``tf.data`` pipeline that
    hands each block to TensorFlow once and gathers its batches in TensorFlow's own
    threads: that is what :func:`fit_autoencoder` trains on.
    """

    #: Most bytes of frames in one block (see Notes).
    block_bytes = 32 * 2**20

    def __init__(
        self,
        logmels: LogMelSet,
        kind: str,
        hop: int = 1,
        batch_size: int = 512,
        shuffle: bool = False,
        seed: int = 0,
        targets: bool = True,
        clips=None,
        scaler=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kind not in WINDOW_FRAMES:
            raise ValueError(f"unknown model kind {kind!r}; choose 'dense' or 'cnn'")
        self.logmels, self.kind, self.batch_size = logmels, kind, batch_size
        self.shuffle, self.targets, self.scaler = shuffle, targets, scaler
        self.width = WINDOW_FRAMES[kind]
        self.clips = np.arange(len(logmels)) if clips is None else np.asarray(clips, dtype=int)
        starts, owners = [], []
        for position, clip in enumerate(self.clips):
            begin, length = logmels.offsets[clip], logmels.lengths[clip]
            n = 0 if length < self.width else (length - self.width) // hop + 1
            starts.append(begin + hop * np.arange(n, dtype=np.int64))
            owners.append(np.full(n, position, dtype=np.int64))
        self.starts = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        #: For each window, its clip's position in ``clips``.
        self.clip_of_window = np.concatenate(owners) if owners else np.zeros(0, np.int64)
        self.windows_per_clip = np.bincount(self.clip_of_window, minlength=len(self.clips))
        self._rng = np.random.default_rng(seed)

        frames = logmels.frames
        self._n_mels = frames.shape[1]
        self._row_bytes = frames.itemsize * self._n_mels
        self._clip_frames = np.asarray(logmels.lengths, dtype=np.int64)[self.clips]
        self._first_window = np.concatenate([[0], np.cumsum(self.windows_per_clip)])
        with_windows = np.flatnonzero(self.windows_per_clip)
        self._one_block = bool(
            self._clip_frames[with_windows].sum() * self._row_bytes <= self.block_bytes
        )
        self._lock = self._new_lock()
        self._clear()
        if shuffle and self._one_block:
            self._set_order(self._rng.permutation(len(self.starts)), [with_windows])
        elif shuffle:
            self._shuffle_blocks()
        else:
            self._set_order(np.arange(len(self.starts)), self._cut(with_windows))

    # -- the window order: blocks of clips ------------------------------------------------

    def _cut(self, positions: np.ndarray) -> list[np.ndarray]:
        """Split clip positions, in order, into blocks of about ``block_bytes`` of frames."""
        if self._one_block or not len(positions):
            return [positions]
        sizes = self._clip_frames[positions] * self._row_bytes
        block = (np.cumsum(sizes) - sizes) // self.block_bytes
        return np.split(positions, np.flatnonzero(np.diff(block)) + 1)

    def _set_order(self, order: np.ndarray, blocks: list[np.ndarray]) -> None:
        """Make ``order`` (window indices) and its ``blocks`` (clip positions) the epoch's.

        Each epoch gets new arrays, never changed afterwards, so that a pass over the
        data that is still running keeps the order it started with.
        """
        self._plan = (order, blocks, self._bounds(blocks))
        self._epoch += 1

    def _bounds(self, blocks: list[np.ndarray]) -> np.ndarray:
        """Where each block's windows begin and end in the epoch's order."""
        sizes = [int(self.windows_per_clip[b].sum()) for b in blocks]
        return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def _shuffle_blocks(self) -> None:
        positions = self._rng.permutation(np.flatnonzero(self.windows_per_clip))
        counts = self.windows_per_clip[positions]
        first = np.repeat(self._first_window[positions] - (np.cumsum(counts) - counts), counts)
        order = first + np.arange(counts.sum(), dtype=np.int64)
        blocks = self._cut(positions)
        bounds = self._bounds(blocks)
        for start, stop in zip(bounds[:-1], bounds[1:]):
            self._rng.shuffle(order[start:stop])
        self._set_order(order, blocks)

    def _next_epoch(self) -> None:
        if self._one_block:
            self._set_order(self._rng.permutation(self._plan[0]), self._plan[1])
        else:
            self._shuffle_blocks()

    # -- reading frames -------------------------------------------------------------------

    def _clear(self) -> None:
        self._epoch = self._passes = 0
        # The NumPy batches' block: its buffer, (clip positions, windows, shifts) of the
        # clips read into it, and ((epoch, block), window starts in this epoch's order).
        self._buffer = self._read = self._ordered = None

    def _read_block(self, positions: np.ndarray, out: np.ndarray | None = None):
        """The frames of the clips at ``positions``, one after the other, normalised.

        Returns the frames (in ``out`` when given) and, for every clip position, what
        to add to a window's start in the full frame array to find it in these frames.
        """
        clip_ids = self.clips[positions]
        lengths = self._clip_frames[positions]
        if out is not None:
            out = out[: int(lengths.sum())]
        each = None if self.scaler is None else self._normalise_in_place
        frames = self.logmels.read_clips(clip_ids, out=out, each=each)
        shift = np.zeros(len(self.clips), dtype=np.int64)
        shift[positions] = np.cumsum(lengths) - lengths - self.logmels.offsets[clip_ids]
        return frames, shift

    def _normalise_in_place(self, frames: np.ndarray) -> None:
        """Apply the scaler to one clip's frames just read (still in the CPU's cache)."""
        self.scaler.transform(frames, out=frames)

    def _local_starts(self, rows: np.ndarray, shift: np.ndarray) -> np.ndarray:
        """Where the windows ``rows`` start in the frames of their block."""
        return self.starts[rows] + shift[self.clip_of_window[rows]]

    def _block(self, block: int):
        """Frames of block ``block`` of this epoch and its windows' starts there, in order.

        The last block read stays in one reused buffer, for the NumPy batches.
        """
        key = (self._epoch, block)
        if self._ordered is None or self._ordered[0] != key:
            order, blocks, bounds = self._plan
            positions = blocks[block]
            # An unshuffled set's next epoch reads the same clips: keep what was read.
            if self._read is None or not np.array_equal(self._read[0], positions):
                total = int(self._clip_frames[positions].sum())
                if self._buffer is None or len(self._buffer) < total:
                    capacity = max(total, self.block_bytes // self._row_bytes)
                    self._buffer = np.empty((capacity, self._n_mels), dtype=np.float32)
                frames, shift = self._read_block(positions, out=self._buffer)
                self._read = (positions, frame_windows(frames, self.width), shift)
            rows = order[bounds[block] : bounds[block + 1]]
            self._ordered = (key, self._local_starts(rows, self._read[2]))
        return self._read[1], self._ordered[1]

    def _gather(self, lo: int, hi: int) -> np.ndarray:
        """Frames ``(hi - lo, width, n_mels)`` of the windows at ``lo:hi`` in the order."""
        with self._lock:
            bounds = self._plan[2]
            first = int(np.searchsorted(bounds, lo, side="right")) - 1
            last = int(np.searchsorted(bounds, hi - 1, side="right")) - 1
            parts = []
            for block in range(first, last + 1):
                begin = int(bounds[block])
                a = max(lo, begin) - begin
                b = min(hi, int(bounds[block + 1])) - begin
                windows, local = self._block(block)
                parts.append(windows[local[a:b]])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _shape_batch(self, frames: np.ndarray):
        """``(n, width, n_mels)`` frames as the model's input, with the target if asked."""
        x = frames.reshape(len(frames), -1) if self.kind == "dense" else frames[..., None]
        return (x, x) if self.targets else x

    # -- keras.utils.PyDataset ------------------------------------------------------------

    def __len__(self) -> int:
        return math.ceil(len(self.starts) / self.batch_size)

    def __getitem__(self, index: int):
        lo = index * self.batch_size
        hi = min(lo + self.batch_size, len(self.starts))
        return self._shape_batch(self._gather(lo, hi))

    def on_epoch_end(self) -> None:
        if self.shuffle:
            with self._lock:
                self._next_epoch()

    # -- tf.data --------------------------------------------------------------------------

    def as_tf_dataset(self):
        """The same batches as ``[self[i] for i in range(len(self))]``, as a ``tf.data.Dataset``.

        Each pass over the dataset is one epoch; with ``shuffle``, every pass after the
        first starts a new epoch's order (as :meth:`on_epoch_end` does). Python hands
        TensorFlow one block of frames at a time (the next one is read while the current
        one is served) and TensorFlow gathers the batches from it in parallel threads,
        in order. Fed to ``fit``, this costs a fraction of a millisecond a batch, where
        Keras's ``PyDataset`` adapter calls Python for every batch and copies it twice.
        """
        import tensorflow as tf

        offsets = tf.range(self.width, dtype=tf.int32)
        n_mels, width = self._n_mels, self.width

        def batches_of(frames, starts):
            def gather(batch_starts):
                x = tf.gather(frames, batch_starts[:, None] + offsets)
                if self.kind == "dense":
                    x = tf.reshape(x, (-1, width * n_mels))
                else:
                    x = x[..., None]
                return (x, x) if self.targets else x

            rows = tf.data.Dataset.from_tensor_slices(starts)
            return rows.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

        signature = (
            tf.TensorSpec((None, n_mels), tf.float32),
            tf.TensorSpec((None, None), tf.int32),
        )
        pieces = tf.data.Dataset.from_generator(self._pass, output_signature=signature)
        dataset = pieces.prefetch(1).flat_map(batches_of)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(self)))
        return dataset.prefetch(tf.data.AUTOTUNE)

    def _pass(self):
        """One epoch as ``(frames, starts)`` pieces: row ``j`` of ``starts`` is a batch.

        A block's whole batches share one piece holding its frames. A batch that spans
        blocks, or the epoch's last, shorter batch, is gathered here and sent as a piece
        of its own (its windows laid end to end).
        """
        with self._lock:
            if self._passes and self.shuffle:
                self._next_epoch()
            self._passes += 1
            order, blocks, bounds = self._plan
        size, width = self.batch_size, self.width
        pending = []  # windows of a batch begun in an earlier block

        def loose(parts):
            windows = np.concatenate(parts)
            starts = width * np.arange(len(windows), dtype=np.int32)
            return windows.reshape(-1, self._n_mels), starts[None]

        for block, positions in enumerate(blocks):
            begin, end = int(bounds[block]), int(bounds[block + 1])
            rows = int(self._clip_frames[positions].sum())
            frames, shift = self._read_block(positions, out=_aligned_frames(rows, self._n_mels))
            local = self._local_starts(order[begin:end], shift).astype(np.int32)
            windows = frame_windows(frames, width)
            done = 0
            if pending:
                done = min(size - sum(map(len, pending)), len(local))
                pending.append(windows[local[:done]])
                if sum(map(len, pending)) == size:
                    yield loose(pending)
                    pending = []
            whole = (len(local) - done) // size
            if whole:
                yield frames, local[done : done + whole * size].reshape(whole, size)
            done += whole * size
            if done < len(local):
                pending.append(windows[local[done:]])
        if pending:
            yield loose(pending)

    # -- pickling (Keras' multiprocessing workers) ---------------------------------------

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_lock"] = state["_buffer"] = state["_read"] = state["_ordered"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = self._new_lock()

    @staticmethod
    def _new_lock():
        import threading

        return threading.Lock()


def _aligned_frames(rows: int, n_mels: int) -> np.ndarray:
    """A new ``(rows, n_mels)`` float32 array at a 64-byte boundary.

    TensorFlow takes such an array from Python without copying it (others it copies),
    so a block handed to ``tf.data`` costs neither the copy nor the memory of a second
    block. Nothing may write to the array once it is handed over.
    """
    size = rows * n_mels * 4
    raw = np.empty(size + 64, dtype=np.uint8)
    skip = -raw.ctypes.data % 64
    return raw[skip : skip + size].view(np.float32).reshape(rows, n_mels)


def training_windows(
    logmels: LogMelSet, kind: str, config: TrainConfig, *, hop: int = 1, scaler=None
) -> tuple[WindowDataset, WindowDataset | None]:
    """The training and validation windows :func:`fit_autoencoder` trains on.

    The clips are split with :func:`split_clips`; the training windows are shuffled
    with ``config.seed``. The validation set is ``None`` without validation clips.
    """
    train_idx, val_idx = split_clips(len(logmels), config.validation_fraction, config.seed)
    common = dict(kind=kind, hop=hop, batch_size=config.batch_size, scaler=scaler)
    train_set = WindowDataset(logmels, clips=train_idx, shuffle=True, seed=config.seed, **common)
    if len(train_set) == 0:
        raise ValueError(
            f"no {kind} training windows: every clip is shorter than "
            f"{WINDOW_FRAMES[kind]} frames; use longer clips."
        )
    val_set = WindowDataset(logmels, clips=val_idx, **common) if len(val_idx) else None
    return train_set, val_set


def split_clips(n_clips: int, validation_fraction: float, seed: int = 0):
    """Indices of training and validation clips: a seeded random ``validation_fraction``.

    The split is by clip, as the authors' CNN code does, so windows of one clip
    never straddle training and validation.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_clips)
    n_val = int(round(n_clips * validation_fraction))
    if validation_fraction > 0:
        n_val = min(max(n_val, 1), n_clips - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class ResumableEarlyStopping(keras.callbacks.Callback):
    """Early stopping on the validation loss that survives an interrupted session.

    At each epoch's end it writes the model with its optimizer state
    (``last.keras``), the best weights so far (``best.weights.h5``) and its own
    state (``state.json``), each atomically. :func:`fit_autoencoder` reads them to
    continue where a run stopped. At the end of training the best weights are
    restored, as Keras' ``EarlyStopping(restore_best_weights=True)`` does.
    """

    def __init__(self, run_dir: Path | None, patience: int, min_delta: float, state=None):
        super().__init__()
        self.run_dir, self.patience, self.min_delta = run_dir, patience, min_delta
        state = state or {}
        self.best = state.get("best", math.inf)
        self.best_epoch = state.get("best_epoch", -1)
        self.wait = state.get("wait", 0)
        self.history: list[dict] = state.get("history", [])
        self.best_weights = None
        self._epoch_start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        row = {"epoch": epoch + 1, "seconds": time.perf_counter() - self._epoch_start}
        row.update({k: float(v) for k, v in logs.items()})
        self.history.append(row)
        current = logs.get("val_loss", logs.get("loss"))
        if current < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = float(current), epoch, 0
            self.best_weights = self.model.get_weights()
            if self.run_dir is not None:
                write_atomic(self.run_dir / "best.weights.h5", self.model.save_weights)
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True
        if self.run_dir is not None:
            write_atomic(self.run_dir / "last.keras", self.model.save)
            state = {
                "epoch": epoch + 1,
                "best": self.best,
                "best_epoch": self.best_epoch,
                "wait": self.wait,
                "stopped": bool(self.model.stop_training),
                "history": self.history,
            }
            write_text(self.run_dir / "state.json", json.dumps(state, indent=1))

    def restore_best(self) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        elif self.run_dir is not None and (self.run_dir / "best.weights.h5").exists():
            self.model.load_weights(self.run_dir / "best.weights.h5")


def fit_autoencoder(
    model: keras.Model,
    logmels: LogMelSet,
    kind: str,
    config: TrainConfig,
    *,
    hop: int = 1,
    scaler=None,
    run_dir: str | Path | None = None,
    verbose: int | str = "auto",
) -> pd.DataFrame:
    """Train an autoencoder on normal clips with early stopping; return the history.

    With ``run_dir``, every epoch is checkpointed there and a later call with the
    same folder resumes from the last finished epoch (an interrupted Colab session
    loses at most one epoch). The model ends with the best validation weights.
    ``scaler`` z-normalises each batch (the CNN AE); ``None`` feeds raw dB (the Dense AE).

    Returns
    -------
    pandas.DataFrame
        One row per epoch: ``epoch``, ``loss``, ``val_loss``, ``seconds``.
    """
    run_dir = Path(run_dir) if run_dir is not None else None
    state = None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        state = _read_state(run_dir)
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="mse",
        jit_compile=_use_xla(),
    )
    if state is not None:
        _resume_from(model, run_dir / "last.keras")

    train_set, val_set = training_windows(logmels, kind, config, hop=hop, scaler=scaler)

    stopper = ResumableEarlyStopping(run_dir, config.patience, config.min_delta, state)
    stopper.set_model(model)  # also when no epoch is left to run
    done = state["epoch"] if state else 0
    for _ in range(done):  # replay the shuffles, so a resumed run sees the same order
        train_set.on_epoch_end()
    finished = state is not None and (state.get("stopped") or done >= config.epochs)
    if not finished:
        cap = config.steps_per_epoch
        # Each pass over the training dataset is an epoch, shuffled block by block with
        # the seed (shuffle=False: Keras could not reorder a tf.data dataset anyway).
        model.fit(
            train_set.as_tf_dataset(),
            validation_data=val_set.as_tf_dataset() if val_set is not None else None,
            epochs=config.epochs,
            initial_epoch=done,
            steps_per_epoch=min(cap, len(train_set)) if cap else None,
            validation_steps=min(cap, len(val_set)) if cap and val_set is not None else None,
            callbacks=[stopper],
            verbose=verbose,
            shuffle=False,
        )
    stopper.restore_best()
    return pd.DataFrame(stopper.history)


def _use_xla() -> bool:
    """XLA on a GPU (faster steps); not on a CPU, where compiling costs more than it saves."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _resume_from(model: keras.Model, checkpoint: Path) -> None:
    """Copy weights and Adam's moments from the last checkpoint into ``model``."""
    resumed = load_model(checkpoint, compile=True)
    model.set_weights(resumed.get_weights())
    model.optimizer.build(model.trainable_variables)
    saved = resumed.optimizer.variables
    if len(saved) != len(model.optimizer.variables):
        raise ValueError(f"{checkpoint}: optimizer state does not match this model")
    for variable, value in zip(model.optimizer.variables, saved):
        variable.assign(value)


def _read_state(run_dir: Path) -> dict | None:
    state_file = run_dir / "state.json"
    if not (state_file.exists() and (run_dir / "last.keras").exists()):
        return None
    return json.loads(state_file.read_text())


def save_model(model: keras.Model, path: str | Path) -> Path:
    """Save in Keras' native ``.keras`` format, atomically."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: models are saved in the native format, with suffix .keras")
    return write_atomic(path, model.save)


def load_model(path: str | Path, compile: bool = False) -> keras.Model:
    """Load a ``.keras`` model in safe mode (no arbitrary code runs while loading)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no saved model here; train it first (aadlib train).")
    return keras.saving.load_model(path, compile=compile, safe_mode=True)


def load_history(path: str | Path) -> pd.DataFrame:
    """Read a training history written by :func:`aadlib.pipeline.train_machine_type`."""
    return pd.read_csv(path)
