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

Chapter 8 scores explanations against a known truth with a hit rule (:func:`hit`), the
rate a random explanation would reach (:func:`random_hit_rate`) and Wilson intervals of
hit rates (:func:`wilson_interval`); they are here too.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from .paper import MAX_FPR

__all__ = [
    "HIT_THRESHOLD",
    "top_position",
    "hit",
    "random_hit_rate",
    "wilson_interval",
    "auc",
    "pauc_mcclish",
    "pauc_dcase",
    "PAUC_DEFINITIONS",
    "PAUC_DEFAULT",
    "pauc_function",
    "N_BOOT",
    "LEVEL",
    "roc_areas",
    "mcclish",
    "standardise",
    "bootstrap",
    "bootstrap_runs",
    "interval",
]

#: The pAUC definitions by name; the first is the default of every table, figure and
#: command (the paper's Table 2 prints McClish's).
PAUC_DEFINITIONS = ("mcclish", "dcase")
PAUC_DEFAULT = PAUC_DEFINITIONS[0]


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
    return _pauc(definition)[0]


def _pauc(definition: str):
    """A definition's pAUC of scores, and its standardisation of a plain partial area."""
    if definition not in PAUC_DEFINITIONS:
        raise ValueError(f"pauc must be one of {PAUC_DEFINITIONS}, not {definition!r}")
    return _PAUC[definition]


# --------------------------------------------------------------------------------------
# Uncertainty: the bootstrap over test clips, and paired comparisons of two detectors.
# --------------------------------------------------------------------------------------

#: Bootstrap resamples and confidence level of every interval the book shows.
N_BOOT = 1000
LEVEL = 0.95


def roc_areas(y_true, scores, max_fpr: float = MAX_FPR) -> tuple[np.ndarray, np.ndarray]:
    """Area under the ROC curve, and the plain area over FPR in [0, max_fpr], for many
    score vectors of the same clips at once.

    ``scores`` is ``(n_clips,)`` or ``(n_sets, n_clips)`` (one row per bootstrap resample,
    say); ``y_true`` is ``(n_clips,)`` or of the same shape. Tied scores are one ROC step,
    a diagonal segment, as in scikit-learn, so the results equal ``roc_auc_score`` and the
    partial area that :func:`pauc_dcase` integrates (``max_fpr`` times the DCASE pAUC).
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    labels = np.broadcast_to(np.asarray(y_true, dtype=bool), scores.shape)
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(scores, order, axis=1)
    positive = np.take_along_axis(labels, order, axis=1)
    n_pos = positive.sum(axis=1, keepdims=True)
    n_neg = scores.shape[1] - n_pos
    if np.any(n_pos == 0) or np.any(n_neg == 0):
        raise ValueError("AUC needs both normal (0) and anomalous (1) clips in every set")
    tpr = np.cumsum(positive, axis=1) / n_pos
    fpr = np.cumsum(~positive, axis=1) / n_neg
    # Within a run of tied scores, every point takes the run's last value: the curve then
    # crosses the run in one diagonal step, and the zero-width steps inside add nothing.
    index = np.arange(scores.shape[1])
    run_end = np.ones_like(ranked, dtype=bool)
    run_end[:, :-1] = ranked[:, :-1] != ranked[:, 1:]
    last = np.where(run_end, index, scores.shape[1])
    last = np.minimum.accumulate(last[:, ::-1], axis=1)[:, ::-1]
    tpr = np.concatenate([np.zeros((len(tpr), 1)), np.take_along_axis(tpr, last, axis=1)], axis=1)
    fpr = np.concatenate([np.zeros((len(fpr), 1)), np.take_along_axis(fpr, last, axis=1)], axis=1)
    x0, x1, y0, y1 = fpr[:, :-1], fpr[:, 1:], tpr[:, :-1], tpr[:, 1:]
    area = np.sum((x1 - x0) * (y0 + y1) / 2, axis=1)
    # Up to max_fpr: each segment cut where it crosses max_fpr, its height interpolated.
    stop = np.minimum(x1, max_fpr)
    width = np.clip(stop - x0, 0.0, None)
    slope = np.divide(y1 - y0, x1 - x0, out=np.zeros_like(y0), where=x1 > x0)
    partial = np.sum(width * (y0 + (y0 + slope * width)) / 2, axis=1)
    return area, partial


def mcclish(partial_area, max_fpr: float = MAX_FPR):
    """McClish's standardisation of a partial area over FPR [0, max_fpr] (0.5 = chance)."""
    low, high = max_fpr**2 / 2, max_fpr
    return 0.5 * (1 + (np.asarray(partial_area) - low) / (high - low))


#: Each pAUC definition (:data:`PAUC_DEFINITIONS`): its pAUC of scores, and its
#: standardisation of a plain partial area (:func:`standardise`).
_PAUC = {
    "mcclish": (pauc_mcclish, mcclish),
    "dcase": (pauc_dcase, lambda partial, max_fpr: np.asarray(partial) / max_fpr),
}


def standardise(partial_area, definition: str, max_fpr: float = MAX_FPR):
    """A plain partial area over FPR [0, max_fpr] as the pAUC of ``definition``.

    ``"mcclish"`` (:func:`mcclish`, chance 0.5) or ``"dcase"`` (divided by ``max_fpr``,
    chance 0.05); the one place where a table turns :func:`roc_areas` into a pAUC.
    """
    return _pauc(definition)[1](partial_area, max_fpr)


def _resample(y_true, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Clip indices of ``n_boot`` resamples, normal and anomalous clips drawn separately.

    Each resample keeps the machine ID's numbers of normal and anomalous clips, as the
    test set's design does; only which clips (and how often each) changes.
    """
    y_true = np.asarray(y_true, dtype=bool)
    parts = []
    for group in (np.flatnonzero(~y_true), np.flatnonzero(y_true)):
        parts.append(group[rng.integers(0, len(group), size=(n_boot, len(group)))])
    return np.concatenate(parts, axis=1)


def _empty_replicates() -> dict[str, list]:
    return {"auc": [], **{f"pauc_{definition}": [] for definition in PAUC_DEFINITIONS}}


def bootstrap(y_true, scores, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, np.ndarray]:
    """AUC and both pAUCs of ``n_boot`` resamples of one machine ID's test clips. Chapter 5.

    ``scores`` is ``(n_clips,)`` for one detector or ``(n_detectors, n_clips)`` for
    several scored on the same clips: every detector then sees the same resamples, which
    is what a paired comparison needs. Returns ``auc``, ``pauc_mcclish`` and ``pauc_dcase``
    arrays of shape ``(n_boot,)`` (or ``(n_detectors, n_boot)``), as fractions.
    """
    y_true = _check_labels(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    rows = np.atleast_2d(scores)
    picks = _resample(y_true, n_boot, np.random.default_rng(seed))
    out = _empty_replicates()
    for row in rows:
        area, partial = roc_areas(y_true[picks], row[picks])
        out["auc"].append(area)
        for definition in PAUC_DEFINITIONS:
            out[f"pauc_{definition}"].append(standardise(partial, definition))
    return {k: np.asarray(v) if scores.ndim == 2 else v[0] for k, v in out.items()}


def bootstrap_runs(y_true, runs, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, np.ndarray]:
    """AUC and both pAUCs of ``n_boot`` resamples of the test clips *and* of the training
    runs (seeds) of one or more detectors scored on the same clips. Chapter 5.

    ``runs`` holds one ``(n_runs, n_clips)`` array per detector (the scores of each of its
    training runs); detectors may have different numbers of runs. Each replicate draws
    the clips as :func:`bootstrap` does, the same for every detector, and for each
    detector as many runs as it has, with replacement; its value is the mean, over the
    drawn runs, of each run's area on the drawn clips. So an interval covers both the
    choice of test clips and the seed-to-seed spread of training; with one run per
    detector the replicates are :func:`bootstrap`'s. Returns ``auc``, ``pauc_mcclish`` and
    ``pauc_dcase`` arrays of shape ``(n_detectors, n_boot)``, as fractions.
    """
    y_true = _check_labels(y_true).astype(bool)
    runs = [np.atleast_2d(np.asarray(r, dtype=np.float64)) for r in runs]
    rng = np.random.default_rng(seed)
    picks = _resample(y_true, n_boot, rng)
    # One uniform draw per (replicate, run slot), shared by the detectors: detectors with
    # as many runs draw the same run indices.
    uniform = rng.random((n_boot, max(len(r) for r in runs)))
    out = _empty_replicates()
    for scores in runs:
        areas, partials = zip(*(roc_areas(y_true[picks], row[picks]) for row in scores))
        drawn = (uniform[:, : len(scores)] * len(scores)).astype(int).T  # (n_runs, n_boot)
        column = np.arange(n_boot)
        area = np.mean(np.asarray(areas)[drawn, column], axis=0)
        partial = np.mean(np.asarray(partials)[drawn, column], axis=0)
        out["auc"].append(area)
        for definition in PAUC_DEFINITIONS:
            out[f"pauc_{definition}"].append(standardise(partial, definition))
    return {k: np.asarray(v) for k, v in out.items()}


def interval(replicates, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates at ``level`` (default 95 %)."""
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


#: A position of an explanation counts as part of the anomaly where the true difference is
#: at least this fraction of its maximum (chapter 8).
HIT_THRESHOLD = 0.5


# --------------------------------------------------------------------------------------
# Explanations against the truth (chapter 8): the hit rule, its random rate, Wilson intervals
# --------------------------------------------------------------------------------------


def _positions(explanation, truth) -> tuple[np.ndarray, np.ndarray]:
    explanation = np.asarray(explanation, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if explanation.shape != truth.shape or explanation.ndim != 1:
        raise ValueError(
            f"explanation and truth must be 1-D of the same length, got shapes "
            f"{explanation.shape} and {truth.shape}"
        )
    valid = np.isfinite(explanation) & np.isfinite(truth)
    return explanation[valid], truth[valid]


def _relevant(truth: np.ndarray, threshold: float) -> np.ndarray:
    """Positions where the true difference is at least ``threshold`` of its maximum."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], not {threshold}")
    peak = truth.max() if len(truth) else 0.0
    if not peak > 0.0:
        raise ValueError("the true difference is zero everywhere: nothing to find")
    return truth >= threshold * peak


def top_position(explanation: np.ndarray) -> int:
    """Index of an explanation's highest value; ties go to the middle one of the tied
    positions (the rule of :func:`hit`). Chapter 8."""
    explanation = np.asarray(explanation, dtype=np.float64)
    best = np.flatnonzero(explanation == np.nanmax(explanation))
    return int(best[len(best) // 2])


def hit(explanation, truth, threshold: float = HIT_THRESHOLD) -> bool:
    """Whether an explanation's top-ranked position lies where the anomaly is. Chapter 8.

    Parameters
    ----------
    explanation, truth
        1-D arrays of the same length: one value per mel bin (or per frame). Positions
        where either is NaN (frames no model window covered, say) are left out.
    threshold
        The top position must have a true difference of at least ``threshold`` times the
        maximum true difference. Ties of the explanation go to the middle tied position.

    Raises
    ------
    ValueError
        The true difference is zero everywhere (a clip without anomaly).
    """
    explanation, truth = _positions(explanation, truth)
    relevant = _relevant(truth, threshold)
    return bool(relevant[top_position(explanation)])


def random_hit_rate(truth, threshold: float = HIT_THRESHOLD, explanation=None) -> float:
    """The hit probability of a random explanation: the share of relevant positions. Chapter 8.

    A random explanation ranks a position drawn uniformly on top, so it hits with
    probability the fraction of positions whose true difference is at least ``threshold``
    of the maximum. Given ``explanation``, only the positions it covers count (as in
    :func:`hit`).
    """
    truth = np.asarray(truth, dtype=np.float64)
    if explanation is not None:
        _, truth = _positions(explanation, truth)
    else:
        truth = truth[np.isfinite(truth)]
    return float(np.mean(_relevant(truth, threshold)))


def wilson_interval(hits: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for a proportion of ``hits`` out of ``n``. Chapter 8.

    Unlike the normal approximation it stays inside [0, 1] and is informative at 0 or
    ``n`` hits; ``(nan, nan)`` when ``n`` is 0.
    """
    if n <= 0:
        return math.nan, math.nan
    if not 0 <= hits <= n:
        raise ValueError(f"hits must be between 0 and n={n}, not {hits}")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = hits / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
