"""Clip scores, AUC and the two pAUCs, and Table-2-shaped result tables.

Chapters: ``notebooks/03_dense_autoencoder.ipynb`` (scores, ROC) and
``notebooks/05_reproducing_the_tables.ipynb`` (tables).

Two definitions of pAUC at a false-positive rate of at most 0.1 are in use:

- **McClish-standardised** (:func:`pauc_mcclish`): scikit-learn's
  ``roc_auc_score(max_fpr=0.1)``. The partial area is rescaled so that a random
  detector scores 0.5 and a perfect one 1.0. The paper's Table 2 used this one.
- **DCASE** (:func:`pauc_dcase`): the DCASE 2020 Task 2 definition, the plain area
  under the ROC curve over FPR in [0, 0.1], divided by 0.1. A random detector scores
  0.05, a perfect one 1.0.

Both are computed from the same ROC curve; every table names the one it shows.
"""

from __future__ import annotations

import weakref

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve

from .features import LogMelSet
from .training import WindowDataset

__all__ = [
    "reconstruction_errors",
    "score_clips",
    "auc",
    "pauc_mcclish",
    "pauc_dcase",
    "PAUC_DEFINITIONS",
    "per_id_table",
    "table2_layout",
]

MAX_FPR = 0.1
PAUC_DEFINITIONS = ("mcclish", "dcase")


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
        import tensorflow as tf

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
        import tensorflow as tf

        shape = [None, *model.input_shape[1:]]
        function = tf.function(
            _WindowErrors(model, len(shape)),
            input_signature=[tf.TensorSpec(shape, tf.float32)],
        )
        _ERROR_FUNCTIONS[model] = function
    return function


def reconstruction_errors(model, inputs: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Mean squared error of each input vector or patch and its reconstruction."""
    inputs = np.asarray(inputs, dtype=np.float32)
    errors = _errors_function(model)
    out = np.empty(len(inputs), dtype=np.float64)
    for start in range(0, len(inputs), batch_size):
        out[start : start + batch_size] = errors(inputs[start : start + batch_size]).numpy()
    return out


def score_clips(
    model,
    logmels: LogMelSet,
    kind: str,
    hop: int = 1,
    batch_size: int = 512,
    scaler=None,
) -> np.ndarray:
    """Anomaly score of each clip: the mean over its windows of the windows' MSE.

    Windows of many clips share each batch, so short clips do not leave the
    accelerator idle. Scores come back in the order of ``logmels``.

    Raises
    ------
    ValueError
        A clip is too short for a single window; the message names it.
    """
    windows = WindowDataset(logmels, kind, hop, batch_size, targets=False, scaler=scaler)
    empty = np.flatnonzero(windows.windows_per_clip == 0)
    if len(empty):
        from .windows import WINDOW_FRAMES

        names = ", ".join(str(logmels.paths[i]) for i in empty[:3])
        raise ValueError(
            f"{len(empty)} clip(s) are shorter than one {kind} window of "
            f"{WINDOW_FRAMES[kind]} frames ({WINDOW_FRAMES[kind] * 512 / 16000:.2f} s at "
            f"16 kHz) and cannot be scored: {names}. Remove them or pad them to that length."
        )
    window_errors = _errors_function(model)
    errors = np.empty(len(windows.starts), dtype=np.float64)
    for b in range(len(windows)):
        errors[b * batch_size : (b + 1) * batch_size] = window_errors(windows[b]).numpy()
    sums = np.bincount(windows.clip_of_window, weights=errors, minlength=len(logmels))
    return sums / windows.windows_per_clip


def _check_labels(y_true) -> np.ndarray:
    y_true = np.asarray(y_true).astype(int)
    if len(np.unique(y_true)) != 2:
        raise ValueError("AUC needs both normal (0) and anomalous (1) clips among the labels")
    return y_true


def auc(y_true, scores) -> float:
    """Area under the ROC curve (anomaly = positive class, 1)."""
    return float(roc_auc_score(_check_labels(y_true), scores))


def pauc_mcclish(y_true, scores, max_fpr: float = MAX_FPR) -> float:
    """scikit-learn's standardised partial AUC over FPR in [0, max_fpr] (0.5 = chance)."""
    return float(roc_auc_score(_check_labels(y_true), scores, max_fpr=max_fpr))


def pauc_dcase(y_true, scores, max_fpr: float = MAX_FPR) -> float:
    """DCASE 2020 Task 2 pAUC: area under the ROC over FPR in [0, max_fpr], / max_fpr."""
    fpr, tpr, _ = roc_curve(_check_labels(y_true), scores)
    stop = np.searchsorted(fpr, max_fpr, side="right")
    x = np.concatenate([fpr[:stop], [max_fpr]])
    y = np.concatenate([tpr[:stop], [np.interp(max_fpr, fpr, tpr)]])
    return float(np.trapezoid(y, x) / max_fpr)


def per_id_table(scores: pd.DataFrame, pauc: str = "mcclish") -> pd.DataFrame:
    """AUC and pAUC (%) per machine type and ID from a table of clip scores.

    Parameters
    ----------
    scores
        One row per test clip with ``machine_type``, ``machine_id``, ``label``
        (``"normal"``/``"anomaly"``), ``score`` and optionally ``model``.
    pauc
        ``"mcclish"`` (as the paper's table) or ``"dcase"``.

    Returns
    -------
    pandas.DataFrame
        Columns ``model`` (when given), ``machine_type``, ``machine_id``, ``auc``, ``pauc``,
        ``n_normal``, ``n_anomaly``; ``machine_id`` ``"average"`` rows hold the per-type mean
        over IDs, as in the paper's Table 2.
    """
    if pauc not in PAUC_DEFINITIONS:
        raise ValueError(f"pauc must be one of {PAUC_DEFINITIONS}")
    pauc_fn = pauc_mcclish if pauc == "mcclish" else pauc_dcase
    keys = [k for k in ("model", "machine_type") if k in scores.columns]
    rows = []
    for group_key, group in scores.groupby(keys + ["machine_id"], sort=True):
        y = (group["label"] == "anomaly").to_numpy()
        row = dict(zip(keys + ["machine_id"], group_key))
        row.update(
            auc=100 * auc(y, group["score"]),
            pauc=100 * pauc_fn(y, group["score"]),
            n_normal=int((~y).sum()),
            n_anomaly=int(y.sum()),
        )
        rows.append(row)
    per_id = pd.DataFrame(rows)
    per_id["machine_id"] = per_id["machine_id"].astype(int).astype(str)
    averages = (
        per_id.groupby(keys, sort=False)[["auc", "pauc", "n_normal", "n_anomaly"]]
        .agg({"auc": "mean", "pauc": "mean", "n_normal": "sum", "n_anomaly": "sum"})
        .reset_index()
        .assign(machine_id="average")
    )
    table = pd.concat([per_id, averages], ignore_index=True)
    order = {t: i for i, t in enumerate(_type_order(table["machine_type"]))}
    table["_type"] = table["machine_type"].map(order)
    table["_avg"] = table["machine_id"] == "average"
    table["_id"] = pd.to_numeric(table["machine_id"], errors="coerce")
    table = table.sort_values(keys[:-1] + ["_type", "_avg", "_id"]).drop(
        columns=["_type", "_avg", "_id"]
    )
    return table.reset_index(drop=True)


def _type_order(types) -> list[str]:
    from .data import MACHINE_TYPES

    present = list(dict.fromkeys(types))
    return [t for t in MACHINE_TYPES if t in present] + [
        t for t in present if t not in MACHINE_TYPES
    ]


def table2_layout(per_id: pd.DataFrame) -> pd.DataFrame:
    """Pivot per-model results into the paper's Table 2 shape.

    Rows are (machine type, machine ID or ``average``); columns are
    (model, ``AUC``/``pAUC``), in percent.
    """
    if "model" not in per_id.columns:
        raise ValueError("table2_layout needs a 'model' column (dense, cnn, ...)")
    wide = per_id.pivot_table(
        index=["machine_type", "machine_id"], columns="model", values=["auc", "pauc"], sort=False
    )
    wide = wide.swaplevel(0, 1, axis=1).sort_index(axis=1, level=0, sort_remaining=False)
    wide = wide.rename(columns={"auc": "AUC", "pauc": "pAUC"}, level=1)
    return wide.reindex(
        pd.MultiIndex.from_frame(per_id[["machine_type", "machine_id"]].drop_duplicates())
    )
