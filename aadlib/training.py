"""Training with the paper's schedule, a streaming input pipeline, resumable checkpoints.

Chapters: ``notebooks/03_dense_autoencoder.ipynb`` and
``notebooks/04_conv_autoencoder.ipynb``.

The paper (Section 2.3): Adam with learning rate 0.001, MSE loss, at most 100 epochs,
10 % of the training data held out for validation, early stopping after 10 epochs
without improvement of the validation loss, keeping the best weights; batch size
512 for the Dense AE and 64 for the CNN AE.

Inputs are never materialised: :class:`WindowDataset` gathers each batch of
5-frame vectors or 32-frame patches from the clips' log-mel frames by index.
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
from .features import LogMelSet

__all__ = [
    "TrainConfig",
    "paper_config",
    "WindowDataset",
    "split_clips",
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

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def paper_config(kind: str, **changes) -> TrainConfig:
    """The paper's settings for ``"dense"`` (batch 512) or ``"cnn"`` (batch 64)."""
    batch = {"dense": 512, "cnn": 64}
    if kind not in batch:
        raise ValueError(f"unknown model kind {kind!r}; choose 'dense' or 'cnn'")
    return dataclasses.replace(TrainConfig(batch_size=batch[kind]), **changes)


# Window geometry of each model: frames per window and the input layout.
WINDOW_FRAMES = {"dense": 5, "cnn": 32}


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
        A :class:`aadlib.features.Scaler` applied to each batch (the CNN AE's
        z-normalisation), so no normalised copy of the frames is kept.
    """

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
        self._order = np.arange(len(self.starts))
        if shuffle:
            self._rng.shuffle(self._order)
        self._offsets = np.arange(self.width, dtype=np.int64)

    def __len__(self) -> int:
        return math.ceil(len(self.starts) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        frames = self.logmels.frames[self.starts[rows, None] + self._offsets]
        frames = np.asarray(frames, dtype=np.float32)
        if self.scaler is not None:
            frames = self.scaler.transform(frames)
        if self.kind == "dense":
            x = frames.reshape(len(rows), -1)
        else:
            x = frames[..., None]
        return (x, x) if self.targets else x

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self._rng.shuffle(self._order)


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

    train_idx, val_idx = split_clips(len(logmels), config.validation_fraction, config.seed)
    common = dict(kind=kind, hop=hop, batch_size=config.batch_size, scaler=scaler)
    train_set = WindowDataset(logmels, clips=train_idx, shuffle=True, seed=config.seed, **common)
    if len(train_set) == 0:
        raise ValueError(
            f"no {kind} training windows: every clip is shorter than "
            f"{WINDOW_FRAMES[kind]} frames; use longer clips."
        )
    val_set = WindowDataset(logmels, clips=val_idx, **common) if len(val_idx) else None

    stopper = ResumableEarlyStopping(run_dir, config.patience, config.min_delta, state)
    stopper.set_model(model)  # also when no epoch is left to run
    done = state["epoch"] if state else 0
    for _ in range(done):  # replay the shuffles, so a resumed run sees the same order
        train_set.on_epoch_end()
    finished = state is not None and (state.get("stopped") or done >= config.epochs)
    if not finished:
        model.fit(
            train_set,
            validation_data=val_set,
            epochs=config.epochs,
            initial_epoch=done,
            callbacks=[stopper],
            verbose=verbose,
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
