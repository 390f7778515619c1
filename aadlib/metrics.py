"""AUC and the two pAUCs of the anomaly scores of a machine ID's test clips.

Chapter 3 explains them; chapter 5 and later compare models with them. NumPy, SciPy and
scikit-learn only: computing a metric never loads TensorFlow.

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

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from .paper import MAX_FPR

__all__ = [
    "auc",
    "pauc_mcclish",
    "pauc_dcase",
    "PAUC_DEFINITIONS",
    "pauc_function",
]

PAUC_DEFINITIONS = ("mcclish", "dcase")


def _check_labels(y_true) -> np.ndarray:
    y_true = np.asarray(y_true).astype(int)
    if len(np.unique(y_true)) != 2:
        raise ValueError("AUC needs both normal (0) and anomalous (1) clips among the labels")
    return y_true


def auc(y_true, scores) -> float:
    """Area under the ROC curve (anomaly = positive class, 1). Chapter 3."""
    return float(roc_auc_score(_check_labels(y_true), scores))


def pauc_mcclish(y_true, scores, max_fpr: float = MAX_FPR) -> float:
    """scikit-learn's standardised partial AUC over FPR in [0, max_fpr] (0.5 = chance).

    Chapter 3.
    """
    return float(roc_auc_score(_check_labels(y_true), scores, max_fpr=max_fpr))


def pauc_dcase(y_true, scores, max_fpr: float = MAX_FPR) -> float:
    """DCASE 2020 Task 2 pAUC: area under the ROC over FPR in [0, max_fpr], / max_fpr. Chapter 3."""
    fpr, tpr, _ = roc_curve(_check_labels(y_true), scores)
    stop = np.searchsorted(fpr, max_fpr, side="right")
    x = np.concatenate([fpr[:stop], [max_fpr]])
    y = np.concatenate([tpr[:stop], [np.interp(max_fpr, fpr, tpr)]])
    return float(np.trapezoid(y, x) / max_fpr)


def pauc_function(definition: str):
    """:func:`pauc_mcclish` or :func:`pauc_dcase` by name (``"mcclish"``, ``"dcase"``)."""
    if definition not in PAUC_DEFINITIONS:
        raise ValueError(f"pauc must be one of {PAUC_DEFINITIONS}, not {definition!r}")
    return pauc_mcclish if definition == "mcclish" else pauc_dcase
