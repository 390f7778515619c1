"""The reference pipeline: features and training input the way the original authors' code does it.

The benchmark (``benchmarks/bench.py``, ``make bench``) times this against the library's
fast path in the same run, and ``tests/test_reference_equivalence.py`` checks that both
give the same numbers. It follows the public code of the paper's authors (and the DCASE
2020 Task 2 baseline it grew from):

* **Features**: per file, ``librosa.load`` then ``librosa.feature.melspectrogram`` then
  ``20 / power * log10(mel + eps)``, one clip after the other in a single process.
* **Dense AE input**: every 640-value vector (5 consecutive frames) of every clip written
  into one ``float64`` array (``numpy.zeros`` and a loop over the 5 frame offsets per
  clip, then ``numpy.concatenate``), materialised in memory before training.
* **CNN AE input**: the clips' log-mel arrays stacked into one ``float64`` array
  ``(n_clips, n_frames, n_mels)`` (normalised beforehand), and a ``keras.utils.Sequence``
  style generator that crops each 32-frame patch of a batch one by one in a Python loop.
  :func:`materialise_patches` also builds the array of every patch, for the memory figure.
* **Feeding Keras**: ``fit`` receives the generator as Keras 3 receives any
  ``keras.utils.PyDataset`` (one worker, no multiprocessing): a
  ``tf.data.Dataset.from_generator`` over its batches, prefetched (:func:`keras_feed`).
* **Scoring**: per test clip, ``model.predict`` on that clip's vectors or patches and the
  mean of their squared errors.

Two details pin down what the authors' environment did implicitly: ``pad_mode="reflect"``
is librosa's default before version 0.10 (what their code ran with), and ``eps`` is the
library's (:class:`aadlib.features.FeatureParams`, float32 epsilon) rather than
``sys.float_info.epsilon``, so that both pipelines compute the same quantity; the latter
only matters for bins below -130 dB.
"""

from __future__ import annotations

import math

import librosa
import numpy as np

from aadlib.features import FeatureParams

__all__ = [
    "reference_log_mel",
    "reference_extract",
    "reference_dense_vectors",
    "materialise_patches",
    "stack_clips",
    "window_list",
    "ReferenceGenerator",
    "keras_feed",
    "reference_scores",
]


def reference_log_mel(path, params: FeatureParams = FeatureParams()) -> np.ndarray:
    """One clip's log-mel energies, ``(n_frames, n_mels)``, as the authors compute them."""
    y, sr = librosa.load(path, sr=None, mono=False)
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=sr,
        n_fft=params.n_fft,
        hop_length=params.hop_length,
        n_mels=params.n_mels,
        power=params.power,
        pad_mode="reflect",
    )
    log_mel = 20.0 / params.power * np.log10(mel + params.eps)
    return log_mel.T


def reference_extract(paths, params: FeatureParams = FeatureParams()) -> list[np.ndarray]:
    """Log-mel energies of many clips: a plain loop in one process, no cache."""
    return [reference_log_mel(p, params) for p in paths]


def _clip_vectors(log_mel: np.ndarray, frames: int) -> np.ndarray:
    n_frames, n_mels = log_mel.shape
    size = n_frames - frames + 1
    if size < 1:
        return np.empty((0, n_mels * frames))
    vectors = np.zeros((size, n_mels * frames))
    for t in range(frames):
        vectors[:, n_mels * t : n_mels * (t + 1)] = log_mel[t : t + size]
    return vectors


def reference_dense_vectors(log_mels, frames: int = 5) -> np.ndarray:
    """Every Dense AE vector of every clip, stacked into one ``float64`` array."""
    return np.concatenate([_clip_vectors(lm, frames) for lm in log_mels])


def materialise_patches(log_mels, width: int = 32, hop: int = 3) -> np.ndarray:
    """Every CNN AE patch of every clip, ``(n_patches, width, n_mels)`` ``float64``."""
    crops = []
    for lm in log_mels:
        for start in range(0, len(lm) - width + 1, hop):
            crops.append(lm[start : start + width])
    patches = np.empty((len(crops), width, log_mels[0].shape[1]))
    for i, crop in enumerate(crops):
        patches[i] = crop
    return patches


def stack_clips(log_mels, scaler=None) -> np.ndarray:
    """The clips' log-mel arrays in one ``float64`` array ``(n_clips, n_frames, n_mels)``.

    With ``scaler`` (an :class:`aadlib.features.Scaler`) each clip is normalised first,
    as the authors' CNN code does when it writes its feature file. All clips must have
    the same number of frames (as in every machine type of the data set).
    """
    lengths = {len(lm) for lm in log_mels}
    if len(lengths) != 1:
        raise ValueError(f"stack_clips needs clips of one length, got {sorted(lengths)}")
    stacked = np.empty((len(log_mels), lengths.pop(), log_mels[0].shape[1]))
    for i, lm in enumerate(log_mels):
        stacked[i] = lm if scaler is None else (lm - scaler.mean) / scaler.std
    return stacked


def window_list(n_clips: int, n_frames: int, width: int, hop: int = 1) -> np.ndarray:
    """``(clip, start)`` of every window, clip by clip: the authors' window order."""
    starts = np.arange(0, n_frames - width + 1, hop)
    return np.stack([np.repeat(np.arange(n_clips), len(starts)), np.tile(starts, n_clips)], axis=1)


class ReferenceGenerator:
    """Batches cropped one window at a time from the stacked clips, in a Python loop.

    Parameters
    ----------
    stacked
        ``(n_clips, n_frames, n_mels)`` from :func:`stack_clips`.
    kind
        ``"dense"`` (5 frames flattened to 640 values) or ``"cnn"`` (32 x 128 x 1).
    windows
        ``(n_windows, 2)`` array of ``(clip, start)``, in the order to yield them
        (default: :func:`window_list` with ``hop``, shuffled when ``shuffle``).
    """

    def __init__(
        self,
        stacked: np.ndarray,
        kind: str,
        batch_size: int = 512,
        hop: int = 1,
        windows=None,
        shuffle: bool = False,
        seed: int = 0,
    ):
        if kind not in ("dense", "cnn"):
            raise ValueError(f"unknown model kind {kind!r}")
        self.data, self.kind, self.batch_size = stacked, kind, batch_size
        self.width = 5 if kind == "dense" else 32
        if windows is None:
            windows = window_list(len(stacked), stacked.shape[1], self.width, hop)
            if shuffle:
                np.random.default_rng(seed).shuffle(windows)
        self.windows = np.asarray(windows)
        self.clip_index, self.start_index = self.windows[:, 0], self.windows[:, 1]

    def __len__(self) -> int:
        return math.ceil(len(self.windows) / self.batch_size)

    def __getitem__(self, index: int):
        clips = self.clip_index[index * self.batch_size : (index + 1) * self.batch_size]
        starts = self.start_index[index * self.batch_size : (index + 1) * self.batch_size]
        x = np.empty((len(clips), self.width, self.data.shape[2]))
        # The authors' loop: take the clip, clamp the start, crop, copy; one window a time.
        for i, (clip, start) in enumerate(zip(clips, starts)):
            frames = self.data[clip,]
            length, _ = frames.shape
            start = min(start, length - self.width)
            x[i,] = frames[start : start + self.width, :]
        if self.kind == "dense":
            x = x.reshape(len(clips), -1)
        else:
            x = x.reshape(len(clips), self.width, self.data.shape[2], 1)
        return x, x


def keras_feed(generator):
    """The generator's batches as ``fit`` receives them: a ``tf.data.Dataset``.

    This is what Keras 3 does with a ``keras.utils.PyDataset`` given to ``fit`` with one
    worker (``PyDatasetAdapter.get_tf_dataset``): the signature comes from the first
    batch, then ``tf.data.Dataset.from_generator`` calls ``generator[i]`` for each batch
    in turn, and the dataset is prefetched. Each pass over it is one epoch.
    """
    import tensorflow as tf

    def spec(array):
        return tf.TensorSpec((None, *array.shape[1:]), tf.as_dtype(array.dtype))

    first = generator[0]
    signature = tuple(spec(a) for a in first) if isinstance(first, tuple) else spec(first)

    def batches():
        for i in range(len(generator)):
            yield generator[i]

    dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
    return dataset.prefetch(tf.data.AUTOTUNE)


def reference_scores(model, log_mels, kind: str, hop: int = 1, scaler=None) -> np.ndarray:
    """Anomaly score per clip: ``model.predict`` on each clip's windows, one clip at a time."""
    scores = np.empty(len(log_mels))
    for i, lm in enumerate(log_mels):
        if kind == "dense":
            x = _clip_vectors(lm, 5)[::hop]
        else:
            if scaler is not None:
                lm = (lm - scaler.mean) / scaler.std
            x = materialise_patches([lm], 32, hop)[..., None]
        x = x.astype(np.float32)
        recon = model.predict(x, verbose=0)
        scores[i] = np.mean(np.square(x - recon))
    return scores
