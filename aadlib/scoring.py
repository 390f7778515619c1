"""Running a model on clips: reconstruction errors, clip scores and error maps.

Chapters 3 and 4 explain how a clip is scored; every later chapter scores through here.

The anomaly score of a clip is the mean, over its input windows (Dense AE vectors or
CNN AE patches), of each window's mean squared reconstruction error (paper, Section 2.3).
This is the one module that runs a trained model on audio features.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from . import paper
from .batches import WindowBatches
from .features import LogMelSet, Scaler, frame_windows

__all__ = [
    "TrainedModel",
    "ClipTooShortError",
    "reconstruction_errors",
    "score_clips",
    "clip_windows",
    "window_errors",
    "error_map",
]


class ClipTooShortError(ValueError):
    """A clip holds fewer frames than one input window of the model."""


# One compiled error function per model, kept as long as the model lives.
_ERROR_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _WindowErrors:
    """The MSE of each window of a batch and its reconstruction by a model.

    A callable object rather than a closure: TensorFlow counts the traces of closures that
    share their code as retracing of one function and warns after a few models.
    """

    def __init__(self, model, n_axes: int):
        # A weak reference, so the cached function does not keep its model alive.
        self.model = weakref.ref(model)
        self.axes = list(range(1, n_axes))

    def __call__(self, x):
        squared = tf.math.squared_difference(x, self.model()(x, training=False))
        return tf.reduce_mean(squared, axis=self.axes)


def _errors_function(model):
    """A ``tf.function`` returning the MSE of each window of a batch and its reconstruction.

    Compiled once per model (the batch dimension is left open, so the last, shorter batch
    does not retrace): on a CPU this is about 1.2x faster than calling the model eagerly,
    and the reconstructions never leave the device.
    """
    function = _ERROR_FUNCTIONS.get(model)
    if function is None:
        shape = [None, *model.input_shape[1:]]
        function = tf.function(
            _WindowErrors(model, len(shape)),
            input_signature=[tf.TensorSpec(shape, tf.float32)],
        )
        _ERROR_FUNCTIONS[model] = function
    return function


def reconstruction_errors(model, inputs: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Mean squared error of each input vector or patch and its reconstruction. Chapter 4."""
    inputs = np.asarray(inputs, dtype=np.float32)
    errors = _errors_function(model)
    out = np.empty(len(inputs), dtype=np.float64)
    for start in range(0, len(inputs), batch_size):
        out[start : start + batch_size] = errors(inputs[start : start + batch_size]).numpy()
    return out


def _too_short(kind: str, names: list[str], n: int) -> ClipTooShortError:
    spec = paper.model_spec(kind)
    seconds = spec.window_frames * paper.HOP_LENGTH / paper.SAMPLE_RATE
    shown = ", ".join(names[:3]) + (f" and {n - 3} more" if n > 3 else "")
    return ClipTooShortError(
        f"{n} clip(s) are shorter than one {spec.title} window of {spec.window_frames} "
        f"frames ({seconds:.2f} s at {paper.SAMPLE_RATE} Hz) and cannot be scored: {shown}. "
        "Remove them or pad them to that length."
    )


def score_clips(
    model,
    logmels: LogMelSet,
    kind: str,
    hop: int = 1,
    batch_size: int | None = None,
    scaler=None,
) -> np.ndarray:
    """Anomaly score of each clip: the mean over its windows of the windows' MSE. Chapter 3.

    Windows of many clips share each batch, so short clips do not leave the
    accelerator idle. Scores come back in the order of ``logmels``.

    Raises
    ------
    ClipTooShortError
        A clip is too short for a single window; the message names it.
    """
    batch_size = batch_size or paper.model_spec(kind).score_batch
    windows = WindowBatches(logmels, kind, hop, batch_size, targets=False, scaler=scaler)
    empty = np.flatnonzero(windows.windows_per_clip == 0)
    if len(empty):
        raise _too_short(kind, [str(logmels.paths[i]) for i in empty], len(empty))
    window_errors = _errors_function(model)
    errors = np.empty(len(windows.starts), dtype=np.float64)
    for b in range(len(windows)):
        errors[b * batch_size : (b + 1) * batch_size] = window_errors(windows.batch(b)).numpy()
    sums = np.bincount(windows.clip_of_window, weights=errors, minlength=len(logmels))
    return sums / windows.windows_per_clip


@dataclass
class TrainedModel:
    """A trained autoencoder with what scoring needs: a detector like every other. Chapters 3 to 7.

    It has the interface of :class:`aadlib.detectors.Detector` (``family``, ``names``,
    ``scores``), so the pipeline fits, scores, saves and reuses it as it does the others;
    its test clips are scored every ``score_hop`` frames in batches of ``score_batch``
    (``None``: the paper's, :data:`aadlib.paper.MODELS`).
    """

    kind: str
    machine_type: str
    model: keras.Model
    scaler: Scaler | None
    history: pd.DataFrame
    run_dir: Path
    #: Seconds the training took (when it was trained, not when it was loaded).
    seconds: float
    #: Whether the model was loaded from an earlier run rather than trained now.
    reused: bool = False
    score_hop: int | None = None
    score_batch: int | None = None

    @property
    def family(self) -> str:
        return self.kind

    @property
    def names(self) -> tuple[str, ...]:
        return (self.kind,)

    @property
    def fit_seconds(self) -> float:
        return self.seconds

    def scores(self, logmels: LogMelSet, machine_ids=None) -> dict[str, np.ndarray]:
        """``{kind: each clip's score}`` (:func:`score_clips`; the IDs play no part)."""
        hop = self.score_hop or paper.model_spec(self.kind).hop
        scores = score_clips(self.model, logmels, self.kind, hop, self.score_batch, self.scaler)
        return {self.kind: scores}


def clip_windows(trained: TrainedModel, logmel: np.ndarray, hop: int = 1) -> np.ndarray:
    """One clip's model inputs, normalised as the model was trained. Chapters 3, 4.

    Dense vectors ``(n, 640)`` or CNN patches ``(n, 32, 128, 1)``.
    """
    if trained.scaler is not None:
        logmel = trained.scaler.transform(logmel)
    spec = paper.model_spec(trained.kind)
    windows = np.ascontiguousarray(frame_windows(logmel, spec.window_frames, hop))
    return windows[..., None] if spec.patches else windows.reshape(len(windows), -1)


def window_errors(trained: TrainedModel, logmel: np.ndarray, hop: int = 1) -> np.ndarray:
    """Reconstruction MSE of each window of one clip, in time order. Chapters 3, 4.

    Their mean is the clip's anomaly score (at the same hop).
    """
    inputs = clip_windows(trained, logmel, hop)
    if not len(inputs):
        raise _too_short(trained.kind, ["this clip"], 1)
    return reconstruction_errors(trained.model, inputs, paper.model_spec(trained.kind).score_batch)


def error_map(trained: TrainedModel, logmel: np.ndarray, hop: int = 1) -> np.ndarray:
    """Squared reconstruction error per frame and mel bin, ``(n_frames, n_mels)``. Chapter 4.

    Each window's squared error is spread back onto the frames it covers and averaged
    over the windows that cover each frame, showing *where* in time and frequency a
    model fails to rebuild a clip.
    """
    inputs = clip_windows(trained, logmel, hop)
    spec = paper.model_spec(trained.kind)
    recon = np.asarray(trained.model.predict(inputs, batch_size=spec.score_batch, verbose=0))
    width = spec.window_frames
    squared = ((inputs - recon) ** 2).reshape(len(inputs), width, logmel.shape[1])
    total = np.zeros(logmel.shape, dtype=np.float64)
    count = np.zeros(len(logmel), dtype=np.int64)
    for i, window in enumerate(squared):
        total[i * hop : i * hop + width] += window
        count[i * hop : i * hop + width] += 1
    covered = count > 0
    total[covered] /= count[covered, None]
    return total.astype(np.float32)
