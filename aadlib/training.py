"""Training with the paper's schedule, resumable checkpoints, saving and loading models.

Chapters 3 and 4.

The paper (Section 2.3): Adam with learning rate 0.001, MSE loss, at most 100 epochs,
10 % of the training data held out for validation, early stopping after 10 epochs
without improvement of the validation loss, keeping the best weights; batch size
512 for the Dense AE and 64 for the CNN AE (:data:`aadlib.paper.MODELS`).

Inputs are never materialised: :class:`aadlib.batches.WindowBatches` gathers each batch
from the clips' log-mel frames and feeds it to Keras as a ``tf.data`` pipeline.

How fast the steps run (several batches per compiled call, XLA, prefetching to the GPU,
mixed precision) is a profile's :class:`aadlib.profiles.Acceleration` (chapter 5).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from . import models, paper
from ._fastio import file_digest
from ._storage import write_atomic, write_text
from .batches import WindowBatches
from .features import LogMelSet, Scaler
from .profiles import Acceleration

__all__ = [
    "learning_status",
    "recent_gain",
    "TrainConfig",
    "paper_config",
    "split_clips",
    "training_windows",
    "run_record",
    "model_identity",
    "gpu_visible",
    "EarlyStopping",
    "fit_autoencoder",
    "build_optimizer",
    "clear_checkpoints",
    "ModelFileError",
    "save_model",
    "load_model",
    "load_history",
    "write_run_summary",
    "read_run_summary",
]

log = logging.getLogger(__name__)


class _NoRetracingNotes(logging.Filter):
    """Drop TensorFlow's "triggered tf.function retracing" notes: each model trained in one
    process compiles its own step functions, which TensorFlow counts as retracing of one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_NoRetracingNotes())


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; the defaults are the paper's (batch size set per model). Chapter 3."""

    epochs: int = paper.MAX_EPOCHS
    batch_size: int = paper.MODELS["dense"].batch_size
    learning_rate: float = paper.LEARNING_RATE
    validation_fraction: float = paper.VALIDATION_FRACTION
    #: Epochs without improvement before stopping; ``None``: no early stopping (the last
    #: epoch's weights are kept, as the DCASE baseline does).
    patience: int | None = paper.PATIENCE
    min_delta: float = 0.0
    seed: int = 0
    #: Cap on training (and validation) batches per epoch; ``None``: every window.
    steps_per_epoch: int | None = None

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, not {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be at least 1 (or None), not {self.patience}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be at least 1, not {self.steps_per_epoch}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction must be in [0, 1), not {self.validation_fraction}"
            )

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def paper_config(kind: str, **changes) -> TrainConfig:
    """The paper's settings for a model kind (its batch size, epochs, patience). Chapters 3, 4."""
    spec = paper.model_spec(kind)
    config = TrainConfig(batch_size=spec.batch_size, epochs=spec.epochs, patience=spec.patience)
    return dataclasses.replace(config, **changes)


def split_clips(n_clips: int, validation_fraction: float, seed: int = 0):
    """Indices of training and validation clips: a seeded random ``validation_fraction``.

    The split is by clip, as the authors' CNN code does, so windows of one clip
    never straddle training and validation. Chapter 3.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_clips)
    n_val = int(round(n_clips * validation_fraction))
    if validation_fraction > 0:
        n_val = min(max(n_val, 1), n_clips - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def training_windows(
    logmels: LogMelSet, kind: str, config: TrainConfig, *, hop: int = 1, scaler=None
) -> tuple[WindowBatches, WindowBatches | None]:
    """The training and validation windows :func:`fit_autoencoder` trains on.

    The clips are split with :func:`split_clips`; the training windows are shuffled
    with ``config.seed``. The validation set is ``None`` without validation clips.
    """
    train_idx, val_idx = split_clips(len(logmels), config.validation_fraction, config.seed)
    common = dict(kind=kind, hop=hop, batch_size=config.batch_size, scaler=scaler)
    train_set = WindowBatches(logmels, clips=train_idx, shuffle=True, seed=config.seed, **common)
    if len(train_set) == 0:
        raise ValueError(
            f"no {kind} training windows: every clip is shorter than "
            f"{train_set.width} frames; use longer clips."
        )
    val_set = WindowBatches(logmels, clips=val_idx, **common) if len(val_idx) else None
    return train_set, val_set


class ModelFileError(ValueError):
    """A saved model, checkpoint or training record cannot be read; the message says which."""


#: Seconds of training between two checkpoints. An interrupted session loses about this
#: much (or one epoch, where an epoch takes longer); writing a checkpoint after every
#: one-second epoch of the quick profile took a quarter of its training time.
CHECKPOINT_SECONDS = 30.0


class EarlyStopping(keras.callbacks.Callback):
    """Early stopping on the validation loss, the one mechanism of every trained model
    (the autoencoders and chapter 7's ID classifiers).

    One row per epoch goes into :attr:`history`, with the epoch's seconds. Without a
    ``run_dir`` it keeps the best weights in memory. With one, it survives an interrupted
    session: at the end of the first epoch that ends ``every`` seconds (default
    :data:`CHECKPOINT_SECONDS`) or more after the last checkpoint, it writes, each atomically
    and in this order, the model with its optimizer state (``epoch-<N>.keras``), the best
    weights when they improved since (``best-<N>.weights.h5``), and last the state
    (``state.json``) that names both files.
    A kill at any moment leaves a state whose files exist and belong to it; files the
    state no longer names are removed after it is written. At the end of training the
    best weights are restored, as Keras' ``EarlyStopping(restore_best_weights=True)``
    does; without ``patience`` every epoch runs and the last weights stay.
    """

    def __init__(
        self,
        patience: int | None,
        min_delta: float = 0.0,
        run_dir: Path | None = None,
        record: dict | None = None,
        state: dict | None = None,
        every: float | None = None,
    ):
        super().__init__()
        self.patience, self.min_delta = patience, min_delta
        self.run_dir, self.record = run_dir, record or {}
        self.every = CHECKPOINT_SECONDS if every is None else every
        state = state or {}
        self.best = state.get("best", math.inf)
        self.best_epoch = state.get("best_epoch", -1)
        self.best_file = state.get("best_file")
        self._best_written = self.best_epoch  # the epoch whose weights best_file holds
        self.wait = state.get("wait", 0)
        self.history: list[dict] = state.get("history", [])
        self.best_weights = None
        self._epoch_start = 0.0
        self._last_write = time.perf_counter()

    def on_train_begin(self, logs=None):
        self._last_write = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        row = {"epoch": epoch + 1, "seconds": time.perf_counter() - self._epoch_start}
        row.update({k: float(v) for k, v in logs.items()})
        self.history.append(row)
        current = logs.get("val_loss", logs.get("loss"))
        improved = current < self.best - self.min_delta
        if improved:
            self.best, self.best_epoch, self.wait = float(current), epoch, 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.patience is not None and self.wait >= self.patience:
                self.model.stop_training = True
        if self.run_dir is not None and time.perf_counter() - self._last_write >= self.every:
            self._write(epoch)

    def _write(self, epoch: int) -> None:
        model_file = f"epoch-{epoch + 1:04d}.keras"
        weights = 4 * self.model.count_params()  # float32 weights; Adam keeps two more
        write_atomic(self.run_dir / model_file, self.model.save, 3 * weights)
        if self.best_epoch != self._best_written:
            self.best_file = f"best-{self.best_epoch + 1:04d}.weights.h5"
            write_atomic(self.run_dir / self.best_file, self._save_best_weights, weights)
            self._best_written = self.best_epoch
        state = {
            "record": self.record,
            "epoch": epoch + 1,
            "model_file": model_file,
            "best_file": self.best_file,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "stopped": bool(self.model.stop_training),
            "history": self.history,
        }
        write_text(self.run_dir / _STATE_FILE, json.dumps(state, indent=1))
        keep = {model_file, self.best_file, _STATE_FILE}
        for path in self.run_dir.iterdir():
            if path.name.startswith(("epoch-", "best-")) and path.name not in keep:
                path.unlink(missing_ok=True)
        self._last_write = time.perf_counter()

    def _save_best_weights(self, path: Path) -> None:
        """Save the best epoch's weights, which an earlier epoch than the current may hold."""
        current = self.model.get_weights()
        self.model.set_weights(self.best_weights)
        try:
            self.model.save_weights(path)
        finally:
            self.model.set_weights(current)

    def restore_best(self) -> None:
        """Put the best epoch's weights back (nothing to do without early stopping)."""
        if self.patience is None:
            return  # no early stopping: the last epoch's weights are the result
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        elif self.run_dir is not None and self.best_file is not None:
            self.model.load_weights(self.run_dir / self.best_file)


_STATE_FILE = "state.json"


def _checkpoint_state(run_dir: Path, record: dict) -> dict | None:
    """The checkpoint to resume from, or ``None``: none, another run's, or damaged.

    A checkpoint is resumed only when it was written for the same record (data, settings,
    seed, code version; a larger epoch budget continues it); otherwise it is discarded,
    with a message that says why.
    """
    state_file = run_dir / _STATE_FILE
    if not state_file.exists():
        return None
    try:
        state = json.loads(state_file.read_text())
        needed = [state["model_file"]] + ([state["best_file"]] if state.get("best_file") else [])
        missing = [name for name in needed if not (run_dir / name).is_file()]
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("training checkpoint %s is damaged (%s); training afresh", state_file, err)
        return None
    if missing:
        log.warning(
            "training checkpoint %s names missing files (%s); training afresh",
            state_file,
            ", ".join(missing),
        )
        return None
    saved = _resumable(state.get("record") or {})
    wanted = _resumable(record)
    if saved != wanted:
        log.warning(
            "training checkpoint in %s was made with other %s; training afresh",
            run_dir,
            ", ".join(_differences(saved, wanted)) or "settings",
        )
        return None
    return state


def _differences(a: dict, b: dict) -> list[str]:
    """The keys whose values differ; inside ``config``, the settings' own names."""
    names = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key):
            continue
        if key == "config":
            names += _differences(a.get(key) or {}, b.get(key) or {})
        else:
            names.append(key)
    return names


def _resumable(record: dict) -> dict:
    """What must match for a checkpoint to be resumed: all but the epoch budget.

    More epochs for a run that stopped at its cap continue it; that is not another run.
    """
    record = model_identity(record)
    config = {k: v for k, v in record.get("config", {}).items() if k != "epochs"}
    return {**record, "config": config}


#: Scoring settings that records of earlier versions kept among the model's settings:
#: they do not make another model, so they are left out when records are compared.
_SCORING_SETTINGS = ("score_hop",)


def model_identity(record: dict) -> dict:
    """A run record without scoring settings: two records of the same trained model are equal.

    Scoring (the hop between scored windows, the batch size) does not change a trained
    model; changing it re-scores with the same model. Chapter 5.
    """
    model = record.get("model") if isinstance(record, dict) else None
    if isinstance(model, dict):
        kept = {k: v for k, v in model.items() if k not in _SCORING_SETTINGS}
        record = {**record, "model": kept}
    return record


def clear_checkpoints(run_dir: Path) -> None:
    """Remove the checkpoint files of :func:`fit_autoencoder` from ``run_dir`` (only those)."""
    for path in run_dir.iterdir():
        if path.name == _STATE_FILE or path.name.startswith(("epoch-", "best-")):
            path.unlink(missing_ok=True)


def run_record(
    kind: str,
    hop: int,
    config: TrainConfig,
    identity: dict | None = None,
    precision: str = "float32",
) -> dict:
    """What identifies a training run: ``identity`` (data, model settings...) and the schedule.

    A checkpoint or a saved model is reused only for an equal record. ``precision``, the
    one speed setting that changes the numbers (:class:`aadlib.profiles.Acceleration`), is
    part of it unless it is float32 (so records written before it existed still match).
    """
    record = {**(identity or {}), "kind": kind, "hop": hop, "config": config.as_dict()}
    if precision != "float32":
        record["precision"] = precision
    return record


def gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU (where the ``"auto"`` speed settings differ). Chapter 5."""
    return bool(tf.config.list_physical_devices("GPU"))


def _precision_of(model: keras.Model) -> str:
    return model.dtype_policy.name


def _execution_steps(wanted: int, counts: list[int]) -> int:
    """The most batches per compiled call, up to ``wanted``, that divide every count.

    Keras runs a call's batches to the end unless the data runs out, so where an epoch
    is a set number of batches (a cap, a repeated dataset) a call must not cross it.
    """
    for steps in range(max(1, wanted), 0, -1):
        if all(count % steps == 0 for count in counts):
            return steps
    return 1


def _prefetched(dataset: tf.data.Dataset, repeat: bool) -> tf.data.Dataset:
    """``dataset`` copied ahead to the first GPU (the CPU where there is none).

    The copy loses the dataset's known length; an epoch then ends where the data does
    (Keras warns that the input "ran out of data": it is the end of the epoch), or, with
    ``repeat``, after its number of batches.
    """
    gpus = tf.config.list_logical_devices("GPU")
    device = gpus[0].name if gpus else "/cpu:0"
    dataset = dataset.repeat() if repeat else dataset
    return dataset.apply(tf.data.experimental.prefetch_to_device(device, 2))


def fit_autoencoder(
    model: keras.Model,
    logmels: LogMelSet,
    kind: str,
    config: TrainConfig,
    *,
    hop: int = 1,
    scaler: Scaler | None = None,
    run_dir: str | Path | None = None,
    record: dict | None = None,
    verbose: int | str = "auto",
    acceleration: Acceleration | None = None,
) -> pd.DataFrame:
    """Train an autoencoder on normal clips with early stopping; return the history.

    With ``run_dir``, training is checkpointed there (every :data:`CHECKPOINT_SECONDS`,
    at the end of an epoch) and a later call with the same folder resumes from the last
    checkpoint (an interrupted Colab session loses about that much, or one epoch),
    provided the checkpoint was written for the same :func:`run_record` (``record`` says
    what else identifies the run: data, model settings, code version). The model ends
    with the best validation weights.
    ``scaler`` z-normalises each batch. ``acceleration`` (default
    :class:`aadlib.profiles.Acceleration`'s, decided for this machine) sets how the steps
    run: batches per compiled call, XLA, prefetching to the GPU; none of them changes
    the result beyond float rounding. Chapters 3 to 5.

    Returns
    -------
    pandas.DataFrame
        One row per epoch: ``epoch``, ``loss``, ``val_loss``, ``seconds``.
    """
    run_dir = Path(run_dir) if run_dir is not None else None
    speed = (acceleration or Acceleration()).on(gpu_visible())
    record = run_record(kind, hop, config, record, precision=_precision_of(model))
    state = _resumable_state(run_dir, record)
    train_set, val_set = training_windows(logmels, kind, config, hop=hop, scaler=scaler)
    plan = _epoch_plan(train_set, val_set, config, speed)
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="mse",
        jit_compile=speed.jit_compile,
        steps_per_execution=plan.per_call,
    )
    build_optimizer(model)
    if state is not None:
        _resume_from(model, run_dir / state["model_file"])
        done, budget = state["epoch"], config.epochs
        log.info(
            "%s: resuming the interrupted training after epoch %d of %d", run_dir, done, budget
        )
    stopper = EarlyStopping(config.patience, config.min_delta, run_dir, record, state)
    stopper.set_model(model)  # also when no epoch is left to run
    done = state["epoch"] if state else 0
    finished = state is not None and (state.get("stopped") or done >= config.epochs)
    if not finished:
        _fit_epochs(model, stopper, train_set, val_set, plan, config.epochs, done, speed, verbose)
    stopper.restore_best()
    return pd.DataFrame(stopper.history)


class _EpochPlan(NamedTuple):
    steps: int | None  # training steps per epoch (None: the whole set)
    val_steps: int | None
    per_call: int  # batches per compiled call
    repeat: bool  # whether the datasets repeat (an epoch is then its number of steps)


def _fit_epochs(model, stopper, train_set, val_set, plan: _EpochPlan, epochs, done, speed, verbose):
    """Train from epoch ``done`` to ``epochs`` (or until ``stopper`` stops it)."""
    # Each pass over the training dataset is an epoch, in the order that the seed and the
    # epoch's number give, so a resumed run sees the same order as an unbroken one.
    train_data = train_set.as_tf_dataset(first_epoch=done)
    val_data = val_set.as_tf_dataset() if val_set is not None else None
    if speed.prefetch_to_device:
        train_data = _prefetched(train_data, plan.repeat)
        val_data = _prefetched(val_data, plan.repeat) if val_data is not None else None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Your input ran out of data", UserWarning)
        model.fit(
            train_data,
            validation_data=val_data,
            epochs=epochs,
            initial_epoch=done,
            steps_per_epoch=plan.steps,
            validation_steps=plan.val_steps,
            callbacks=[stopper],
            verbose=verbose,
            shuffle=False,
        )


def _resumable_state(run_dir: Path | None, record: dict) -> dict | None:
    """The checkpoint state to resume from in ``run_dir`` (created if missing), or
    ``None``, after clearing any checkpoint that cannot be resumed."""
    if run_dir is None:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    state = _checkpoint_state(run_dir, record)
    if state is None:
        clear_checkpoints(run_dir)
    return state


def _epoch_plan(train_set, val_set, config: TrainConfig, speed: Acceleration) -> _EpochPlan:
    """How each epoch runs: its training and validation steps, batches per call."""
    cap = config.steps_per_epoch
    steps = min(cap, len(train_set)) if cap else None
    val_steps = min(cap, len(val_set)) if cap and val_set is not None else None
    per_call = _execution_steps(
        speed.steps_per_execution, [n for n in (steps, val_steps) if n is not None]
    )
    # Copied to the device, the datasets lose their length. Several steps per call stop
    # cleanly where the data ends; one step per call would count a step too many, so
    # then the datasets repeat and an epoch is its number of batches.
    repeat = speed.prefetch_to_device and (cap is not None or per_call == 1)
    if repeat:
        steps = steps or len(train_set)
        val_steps = val_steps or (len(val_set) if val_set is not None else None)
    return _EpochPlan(steps, val_steps, per_call, repeat)


def build_optimizer(model: keras.Model) -> None:
    """Create the compiled ``model``'s optimizer variables now, before ``fit``.

    Left to ``fit``, they are created inside the first trace of the training step, which
    TensorFlow then traces a second time: about 2 s more per model on a CPU, the larger
    part of a short run's start. The values are the same (zeros) either way.
    """
    model.optimizer.build(model.trainable_variables)


def _resume_from(model: keras.Model, checkpoint: Path) -> None:
    """Copy weights and Adam's moments from the last checkpoint into ``model``."""
    # Loaded under the model's policy, a mixed-float16 checkpoint gets its loss scale back.
    with models.computing_in(model.dtype_policy.name):
        resumed = load_model(checkpoint, compile=True)
    model.set_weights(resumed.get_weights())
    saved = resumed.optimizer.variables
    if len(saved) != len(model.optimizer.variables):
        raise ModelFileError(f"{checkpoint}: optimizer state does not match this model")
    for variable, value in zip(model.optimizer.variables, saved):
        variable.assign(value)


def save_model(model: keras.Model, path: str | Path) -> Path:
    """Save in Keras' native ``.keras`` format, atomically."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: models are saved in the native format, with suffix .keras")
    return write_atomic(path, model.save, 4 * model.count_params())


def load_model(path: str | Path, compile: bool = False) -> keras.Model:
    """Load a ``.keras`` model in safe mode (no arbitrary code runs while loading).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ModelFileError
        The file is not a readable Keras model (truncated, overwritten, another format).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no saved model here; train it first (aadlib train).")
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except ValueError as err:
        if "safe_mode" in str(err):
            raise ModelFileError(
                f"{path}: refused in safe mode (safe_mode=True): the file holds code that "
                "would run while loading. Load only models you trust, with "
                "keras.saving.load_model(path, safe_mode=False)"
            ) from err
        raise ModelFileError(
            f"{path}: the saved model is damaged or not a Keras model ({err}); delete its "
            "folder and train again"
        ) from err
    except (zipfile.BadZipFile, OSError, KeyError, TypeError) as err:
        raise ModelFileError(
            f"{path}: the saved model is damaged or not a Keras model "
            f"({type(err).__name__}); delete its folder and train again"
        ) from err


#: What a saved run's folder holds besides its files: what identifies the run, written last.
RUN_SUMMARY = "run.json"


def write_run_summary(folder: Path, record: dict, files, **details) -> Path:
    """Write ``run.json`` into a saved run's folder, after the run's ``files``.

    It holds ``record`` (what identifies the run), ``details``, and a checksum of each of
    ``files``, so that :func:`read_run_summary` accepts the folder only as it was written.
    A folder without it holds no finished run.
    """
    summary = {
        "record": record,
        **details,
        "files": {name: file_digest(folder / name) for name in files},
    }
    return write_text(folder / RUN_SUMMARY, json.dumps(summary, indent=1))


def read_run_summary(folder: Path, record: dict, identity=None) -> dict | None:
    """The summary of the run saved in ``folder`` for ``record``; ``None`` when it holds none.

    ``identity`` maps a saved record to what is compared with ``record`` (default: all of
    it). Raises :class:`ModelFileError` when ``run.json`` cannot be read, or a file it lists
    is gone or changed since it was written (the message names the file).
    """
    run_file = folder / RUN_SUMMARY
    if not run_file.exists():
        return None
    try:
        summary = json.loads(run_file.read_text())
    except OSError as err:
        raise ModelFileError(f"{RUN_SUMMARY} cannot be read: {err}") from err
    except ValueError as err:
        raise ModelFileError(f"{RUN_SUMMARY} is not valid JSON: {err}") from err
    if not isinstance(summary, dict) or not isinstance(summary.get("files"), dict):
        raise ModelFileError(f"{RUN_SUMMARY} does not hold a run summary")
    saved = summary.get("record") or {}
    if (identity(saved) if identity else saved) != record:
        return None
    gone = [name for name in summary["files"] if not (folder / name).is_file()]
    if gone:
        raise ModelFileError(f"{', '.join(gone)} gone since it was written")
    changed = [n for n, digest in summary["files"].items() if file_digest(folder / n) != digest]
    if changed:
        raise ModelFileError(f"{', '.join(changed)} changed since it was written")
    return summary


def learning_status(history: pd.DataFrame, window: int = 3, tolerance: float = 0.02) -> str:
    """Whether a training run had finished learning, from its validation loss.

    Chapters 3, 4, 5, 7, 9: the one criterion for every trained model of the book, the
    autoencoders and the ID classifiers alike. ``"improving"`` when the best validation
    loss of the last ``window`` epochs is lower, by ``tolerance`` (relative) or more, than
    the best before them (the epochs up to the window's first one included);
    ``"plateau"`` otherwise; ``"too short"`` when the run has fewer than ``window`` epochs
    to judge from, or when no later epoch beat its first (a loss that jumped up after the
    first epoch and was still coming back down has reached no level yet). On a loss that
    falls every epoch this is the fall over the last ``window`` epochs; on a noisy loss, a
    dip that does not beat the best so far is no improvement.
    """
    gain = recent_gain(history, window)
    loss = history["val_loss"] if "val_loss" in history else history["loss"]
    if gain is None or loss.iloc[1:].min() > loss.iloc[0]:
        return "too short"
    return "improving" if gain >= tolerance else "plateau"


def recent_gain(history: pd.DataFrame, window: int = 3) -> float | None:
    """How much the last ``window`` epochs improved the validation loss, as a fraction.

    Chapter 4. The best loss of those epochs against the best up to their first one: the
    quantity :func:`learning_status` compares with its tolerance. ``None`` for a run of
    fewer than ``window`` epochs.
    """
    loss = history["val_loss"] if "val_loss" in history else history["loss"]
    if len(loss) < window:
        return None
    best_before = loss.iloc[: len(loss) - window + 1].min()
    return float((best_before - loss.iloc[-window:].min()) / abs(best_before))


def load_history(path: str | Path) -> pd.DataFrame:
    """Read a training history written by :func:`aadlib.pipeline.train_machine_type`."""
    path = Path(path)
    try:
        history = pd.read_csv(path)
    except (OSError, ValueError) as err:  # pandas' EmptyDataError and ParserError included
        raise ModelFileError(
            f"{path}: the training history is damaged ({type(err).__name__}); delete the "
            "model's folder and train again"
        ) from err
    columns = {"epoch", "loss"}
    if (
        history.empty
        or not columns <= set(history.columns)
        or history[list(columns)].isna().any(axis=None)
    ):
        raise ModelFileError(
            f"{path}: the training history has no epochs; delete the model's folder and train again"
        )
    return history
