"""Batches of model input windows, gathered from log-mel frames, for training and scoring.

Chapters 3 and 4 (how training sees the data); the scoring of every chapter reads its
batches from here too.

No window is stored anywhere but in its batch: a Dense AE vector or a CNN AE patch is
gathered by index from the clips' frames when its batch is made. Memory stays bounded
whatever the size of the data set, where materialising every patch of the real ToyCar
set would take 14 GB.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from . import _fastio, paper
from .features import LogMelSet, frame_windows

__all__ = ["WindowBatches", "EpochPlan"]


@dataclass(frozen=True)
class EpochPlan:
    """The order in which one epoch visits the windows.

    Attributes
    ----------
    order
        Window indices, in the order the epoch's batches hold them.
    blocks
        Clip positions (into :attr:`WindowBatches.clips`) of each block, in visiting order.
    bounds
        Where each block's windows begin and end in ``order``.
    """

    order: np.ndarray
    blocks: list[np.ndarray]
    bounds: np.ndarray

    def block_of(self, index: int) -> int:
        """The block that holds position ``index`` of the order."""
        return int(np.searchsorted(self.bounds, index, side="right")) - 1


class WindowBatches:
    """Batches of Dense AE vectors or CNN AE patches gathered from log-mel frames.

    Parameters
    ----------
    logmels
        The clips' frames (:class:`aadlib.features.LogMelSet`).
    kind
        A model kind of :data:`aadlib.paper.MODELS`; it sets the window width and the
        input shape (vectors for the dense models, ``(32, 128, 1)`` patches for the CNN).
    hop
        Frames between window starts within a clip.
    batch_size
        Windows per batch (default: the kind's training batch size).
    shuffle
        Shuffle the windows, in a new order each epoch (training); otherwise clip order
        is kept and :attr:`clip_of_window` tells which clip each window belongs to.
    seed
        Seed of the shuffle; the order of epoch ``e`` depends only on the seed and ``e``.
    targets
        Yield ``(x, x)`` pairs for ``fit``; ``False`` yields ``x`` alone.
    clips
        Indices of the clips to use (default: all). Selecting clips copies nothing.
    scaler
        A :class:`aadlib.features.Scaler` applied as frames are read (the CNN AE's
        z-normalisation), so no normalised copy of all the frames is kept.

    Notes
    -----
    Windows are visited block by block, a block being the windows of clips that hold at
    most :attr:`block_bytes` of frames. Each block is read into memory once (file reads
    for frames mapped from the feature cache, so they never count towards the process's
    resident memory) and, with a ``scaler``, normalised there clip by clip: a frame
    belongs to up to 32 patches, so this is cheaper than normalising every batch, with
    the same numbers. With ``shuffle``, each epoch permutes the clips, cuts them into
    blocks and shuffles the windows within each block (a shuffle buffer of a few hundred
    clips); when all the frames fit in one block, as in the quick profile, that is a
    shuffle of all the windows.

    Two outputs share that block reader: :meth:`batch` gives NumPy batches (scoring,
    tests), and :meth:`as_tf_dataset` the same batches as a ``tf.data`` pipeline that
    hands each block to TensorFlow once and gathers its batches in TensorFlow's own
    threads: that is what :func:`aadlib.training.fit_autoencoder` trains on.
    """

    #: Most bytes of frames in one block (see Notes).
    block_bytes = 32 * 2**20

    def __init__(
        self,
        logmels: LogMelSet,
        kind: str,
        hop: int = 1,
        batch_size: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        targets: bool = True,
        clips=None,
        scaler=None,
    ):
        spec = paper.model_spec(kind)
        if int(hop) < 1:
            raise ValueError(f"hop must be a positive number of frames, not {hop}")
        self.logmels, self.kind, self.hop = logmels, kind, int(hop)
        self.batch_size = int(batch_size or spec.batch_size)
        self.shuffle, self.seed, self.targets, self.scaler = shuffle, seed, targets, scaler
        self.width, self.patches = spec.window_frames, spec.patches
        self.clips = np.arange(len(logmels)) if clips is None else np.asarray(clips, dtype=int)
        lengths = np.asarray(logmels.lengths, dtype=np.int64)[self.clips]
        #: Windows of each clip (in the order of ``clips``).
        self.windows_per_clip = np.where(lengths < self.width, 0, (lengths - self.width) // hop + 1)
        #: For each window, its clip's position in ``clips``.
        self.clip_of_window = np.repeat(np.arange(len(self.clips)), self.windows_per_clip)
        first_window = np.concatenate([[0], np.cumsum(self.windows_per_clip)])
        within = np.arange(len(self.clip_of_window)) - first_window[self.clip_of_window]
        #: For each window, the row of its first frame in ``logmels.frames``.
        self.starts = logmels.offsets[self.clips][self.clip_of_window] + self.hop * within

        self._first_window = first_window
        self._clip_frames = lengths
        self._n_mels = logmels.frames.shape[1]
        self._row_bytes = logmels.frames.itemsize * self._n_mels
        self._with_windows = np.flatnonzero(self.windows_per_clip)
        self.one_block = bool(
            lengths[self._with_windows].sum() * self._row_bytes <= self.block_bytes
        )
        self._plans: dict[int, EpochPlan] = {}
        self._cached_block = None  # the NumPy batches' last block (see _numpy_block)

    # -- the order of an epoch ------------------------------------------------------------

    def __len__(self) -> int:
        """Batches per epoch."""
        return math.ceil(len(self.starts) / self.batch_size)

    def plan(self, epoch: int = 0) -> EpochPlan:
        """The order of epoch ``epoch``: a function of the seed and the epoch alone."""
        if not self.shuffle:
            epoch = 0
        if epoch not in self._plans:
            if len(self._plans) > 2:  # keep the plans of the epochs in use, not all of them
                self._plans.pop(next(iter(self._plans)))
            self._plans[epoch] = self._make_plan(epoch)
        return self._plans[epoch]

    def _make_plan(self, epoch: int) -> EpochPlan:
        if not self.shuffle:
            blocks = self._cut(self._with_windows)
            return EpochPlan(np.arange(len(self.starts)), blocks, self._bounds(blocks))
        rng = np.random.default_rng([self.seed, epoch])
        if self.one_block:
            blocks = [self._with_windows]
            return EpochPlan(rng.permutation(len(self.starts)), blocks, self._bounds(blocks))
        positions = rng.permutation(self._with_windows)
        counts = self.windows_per_clip[positions]
        first = np.repeat(self._first_window[positions] - (np.cumsum(counts) - counts), counts)
        order = first + np.arange(counts.sum(), dtype=np.int64)
        blocks = self._cut(positions)
        bounds = self._bounds(blocks)
        for start, stop in zip(bounds[:-1], bounds[1:]):
            rng.shuffle(order[start:stop])
        return EpochPlan(order, blocks, bounds)

    def _cut(self, positions: np.ndarray) -> list[np.ndarray]:
        """Split clip positions, in order, into blocks of about ``block_bytes`` of frames."""
        if self.one_block or not len(positions):
            return [positions]
        sizes = self._clip_frames[positions] * self._row_bytes
        block = (np.cumsum(sizes) - sizes) // self.block_bytes
        return np.split(positions, np.flatnonzero(np.diff(block)) + 1)

    def _bounds(self, blocks: list[np.ndarray]) -> np.ndarray:
        sizes = [int(self.windows_per_clip[b].sum()) for b in blocks]
        return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    # -- the one block reader -------------------------------------------------------------

    def _read_block(self, plan: EpochPlan, block: int, out: np.ndarray):
        """Read block ``block`` of ``plan`` into ``out``.

        Returns the block's windows (a strided view of its frames) and, in the epoch's
        order, where each of its windows starts among those frames.
        """
        positions = plan.blocks[block]
        clip_ids = self.clips[positions]
        lengths = self._clip_frames[positions]
        each = None if self.scaler is None else self._normalise_in_place
        frames = self.logmels.read_clips(clip_ids, out=out[: int(lengths.sum())], each=each)
        shift = np.zeros(len(self.clips), dtype=np.int64)
        shift[positions] = np.cumsum(lengths) - lengths - self.logmels.offsets[clip_ids]
        rows = plan.order[plan.bounds[block] : plan.bounds[block + 1]]
        local = self.starts[rows] + shift[self.clip_of_window[rows]]
        return frames, frame_windows(frames, self.width), local

    def _normalise_in_place(self, frames: np.ndarray) -> None:
        """Apply the scaler to one clip's frames just read (still in the CPU's cache)."""
        self.scaler.transform(frames, out=frames)

    def _block_rows(self, plan: EpochPlan, block: int) -> int:
        return int(self._clip_frames[plan.blocks[block]].sum())

    def _shape(self, windows: np.ndarray):
        """``(n, width, n_mels)`` windows as the model's input, with the target if asked."""
        x = windows[..., None] if self.patches else windows.reshape(len(windows), -1)
        return (x, x) if self.targets else x

    # -- NumPy batches --------------------------------------------------------------------

    def batch(self, index: int, epoch: int = 0):
        """Batch ``index`` of epoch ``epoch`` as NumPy arrays."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        plan = self.plan(epoch)
        lo = index * self.batch_size
        hi = min(lo + self.batch_size, len(self.starts))
        parts = []
        for block in range(plan.block_of(lo), plan.block_of(hi - 1) + 1):
            begin = int(plan.bounds[block])
            windows, local = self._numpy_block(plan, epoch, block)
            parts.append(windows[local[max(lo, begin) - begin : hi - begin]])
        return self._shape(parts[0] if len(parts) == 1 else np.concatenate(parts))

    def __getitem__(self, index: int):
        return self.batch(index)

    def _numpy_block(self, plan: EpochPlan, epoch: int, block: int):
        """A block for the NumPy batches, kept in one reused buffer until another is needed."""
        cached = self._cached_block
        if cached is not None and cached[0] == (epoch, block):
            return cached[1], cached[2]
        rows = self._block_rows(plan, block)
        buffer = None if cached is None else cached[3]
        if buffer is None or len(buffer) < rows:
            buffer = np.empty(
                (max(rows, self.block_bytes // self._row_bytes), self._n_mels), np.float32
            )
        _, windows, local = self._read_block(plan, block, buffer)
        self._cached_block = ((epoch, block), windows, local, buffer)
        return windows, local

    # -- tf.data --------------------------------------------------------------------------

    def as_tf_dataset(self, first_epoch: int = 0) -> tf.data.Dataset:
        """The same batches as :meth:`batch`, as a ``tf.data.Dataset``. Chapters 3, 4.

        Each pass over the dataset is one epoch: the first pass is epoch ``first_epoch``
        (a resumed training starts where it stopped), the next pass the epoch after it.
        Python hands TensorFlow one block of frames at a time (the next is read while the
        current one is served) and TensorFlow gathers the batches from it in parallel
        threads, in order. Fed to ``fit``, this costs a fraction of a millisecond a batch,
        where Keras's ``PyDataset`` adapter calls Python for every batch and copies it.
        """
        offsets = tf.range(self.width, dtype=tf.int32)
        n_mels, width, patches = self._n_mels, self.width, self.patches

        def batches_of(frames, starts):
            def gather(batch_starts):
                x = tf.gather(frames, batch_starts[:, None] + offsets)
                x = x[..., None] if patches else tf.reshape(x, (-1, width * n_mels))
                return (x, x) if self.targets else x

            rows = tf.data.Dataset.from_tensor_slices(starts)
            return rows.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

        epochs = itertools.count(first_epoch)
        signature = (
            tf.TensorSpec((None, n_mels), tf.float32),
            tf.TensorSpec((None, None), tf.int32),
        )
        pieces = tf.data.Dataset.from_generator(
            lambda: self._pieces(next(epochs)), output_signature=signature
        )
        dataset = pieces.prefetch(1).flat_map(batches_of)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(self)))
        return dataset.prefetch(tf.data.AUTOTUNE)

    def _pieces(self, epoch: int):
        """Epoch ``epoch`` as ``(frames, starts)`` pieces: row ``j`` of ``starts`` is a batch.

        A block's whole batches share one piece holding its frames. A batch that spans
        blocks, or the epoch's last, shorter batch, is gathered here and sent as a piece
        of its own (its windows laid end to end).
        """
        plan = self.plan(epoch)
        size = self.batch_size
        pending: list[np.ndarray] = []  # windows of a batch begun in an earlier block

        def loose(parts):
            windows = np.concatenate(parts)
            starts = self.width * np.arange(len(windows), dtype=np.int32)
            return windows.reshape(-1, self._n_mels), starts[None]

        for block in range(len(plan.blocks)):
            # A new aligned buffer per block: TensorFlow keeps it without copying.
            out = _fastio.aligned_empty(self._block_rows(plan, block), self._n_mels)
            frames, windows, local = self._read_block(plan, block, out)
            local = local.astype(np.int32)
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
