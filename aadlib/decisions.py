"""From anomaly scores to decisions: thresholds set on normal clips, and what they cost.

Chapter 6. A detector gives each clip a score; a monitoring system must say *alarm* or
*no alarm*. This module turns scores into decisions and counts what the decisions do.
NumPy, SciPy and pandas only: no TensorFlow.

Thresholds come from the scores of **normal clips only**, never from test labels:

- the *gamma rule* (:func:`gamma_threshold`): fit a gamma distribution to normal scores
  and take its 90th percentile, as the DCASE 2021 to 2023 Task 2 baselines do (with
  ``scipy.stats.gamma.fit``, location free, one fit per machine type: the 2021
  autoencoder baseline on the scores of all its training clips, the 2023 one on the
  losses of its training and validation batches);
- the *percentile rule* (:func:`percentile_threshold`): the empirical 90th percentile.

Either way the normal scores should come from clips the model did **not** train on: a
model can reconstruct its own training clips better than new ones (the more so, the
longer it trained), and a threshold fitted on them is then too low and flags more
normal clips than intended. Held-out validation clips or out-of-fold scores
(:mod:`aadlib.pipeline`) avoid that bias; how many there are sets how uncertain the
threshold is (:func:`threshold_spread`).

A clip is flagged as anomalous when its score is strictly above the threshold, as in
the DCASE baselines. :func:`oracle_threshold` and :func:`cost_curve` look at labelled
anomalies: on the test set they are what-if analyses, upper bounds that no deployed
system can reach, and the chapter labels them so.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .data import type_order
from .paper import model_order

__all__ = [
    "QUANTILE",
    "MIN_GAMMA_SCORES",
    "MIN_SCORES_PER_ID",
    "SECONDS_PER_DAY",
    "SECONDS_BETWEEN_CHECKS",
    "THRESHOLD_RULES",
    "gamma_fit",
    "gamma_threshold",
    "percentile_threshold",
    "fit_threshold",
    "Confusion",
    "confusion",
    "oracle_threshold",
    "FLAG_ALL",
    "HINDSIGHT",
    "flag_all",
    "flag_all_f1",
    "reference_lines",
    "rate_interval",
    "false_alarms_per_day",
    "fpr_for_alarms_per_day",
    "precision_at_prevalence",
    "expected_cost",
    "cost_curve",
    "cost_threshold",
    "cost_slope",
    "cost_references",
    "cost_table",
    "alarm_budget_table",
    "fit_thresholds",
    "decide",
    "decision_table",
    "reference_table",
    "summarize_decisions",
    "threshold_spread",
]

#: The share of normal scores below the threshold: 0.9 in the DCASE baselines, a
#: false-alarm rate of 10 % if the normal scores of new clips are like those fitted.
QUANTILE = 0.9
#: Fewest normal scores a gamma fit accepts; fewer give no threshold at all.
MIN_GAMMA_SCORES = 5
#: Fewest normal scores per machine ID for ``per="auto"`` to fit each ID on its own.
MIN_SCORES_PER_ID = 20
SECONDS_PER_DAY = 24 * 60 * 60
#: A machine checked every 10 s: one 10-second clip after another, monitored continuously.
SECONDS_BETWEEN_CHECKS = 10.0


def _scores(values, what: str = "normal scores") -> np.ndarray:
    scores = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"the {what} hold missing or infinite values")
    return scores


def _anomalous(y_true) -> np.ndarray:
    """Labels as booleans (anomaly = True): 0/1, booleans or "normal"/"anomaly" strings."""
    y = np.asarray(y_true).ravel()
    if y.dtype.kind in "OUS":
        unknown = set(np.unique(y)) - {"normal", "anomaly"}
        if unknown:
            raise ValueError(f"unknown label(s) {sorted(unknown)}: use 'normal' and 'anomaly'")
        return y == "anomaly"
    if not set(np.unique(y)) <= {0, 1}:
        raise ValueError("labels must be 0 (normal) and 1 (anomaly), booleans, or label names")
    return y.astype(bool)


# --------------------------------------------------------------------------------------
# Thresholds from normal scores
# --------------------------------------------------------------------------------------


def gamma_fit(normal_scores, fixed_loc: float | None = 0.0) -> tuple[float, float, float]:
    """Maximum-likelihood gamma distribution of normal scores: ``(shape, loc, scale)``.

    Chapter 6.

    Parameters
    ----------
    normal_scores
        Scores of normal clips (reconstruction errors: positive).
    fixed_loc
        The distribution's lower end. ``0.0`` (default): a two-parameter gamma starting
        at zero, as a mean squared error does; the fit is stable with few scores.
        ``None``: a free location, as the DCASE baselines fit it (``scipy.stats.gamma.fit``
        with every parameter free); it follows the scores more closely when there are
        many, and can be erratic when there are few.

    Raises
    ------
    ValueError
        Fewer than :data:`MIN_GAMMA_SCORES` scores, all scores equal, or a score at or
        below ``fixed_loc``.
    """
    scores = _scores(normal_scores)
    if len(scores) < MIN_GAMMA_SCORES:
        raise ValueError(
            f"a gamma fit needs at least {MIN_GAMMA_SCORES} normal scores, not {len(scores)}: "
            "pool the machine IDs of a type, or score more held-out normal clips"
        )
    if np.ptp(scores) == 0:
        raise ValueError("every normal score is the same: a gamma distribution cannot be fitted")
    if fixed_loc is not None and np.any(scores <= fixed_loc):
        raise ValueError(
            f"a gamma fit with its lower end at {fixed_loc} needs every score above it; "
            "use fixed_loc=None (a free location) for such scores"
        )
    # A free location makes SciPy's optimiser try impossible values on the way; its
    # warnings about them say nothing about the result.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        if fixed_loc is None:
            shape, loc, scale = stats.gamma.fit(scores)
        else:
            shape, loc, scale = stats.gamma.fit(scores, floc=fixed_loc)
    return float(shape), float(loc), float(scale)


def gamma_threshold(
    normal_scores, quantile: float = QUANTILE, fixed_loc: float | None = 0.0
) -> float:
    """The ``quantile`` of a gamma distribution fitted to normal scores. Chapter 6.

    The DCASE 2021 to 2023 baselines' rule (with ``quantile=0.9``); see
    :func:`gamma_fit` for ``fixed_loc`` and the errors.
    """
    _check_quantile(quantile)
    shape, loc, scale = gamma_fit(normal_scores, fixed_loc)
    return float(stats.gamma.ppf(quantile, shape, loc=loc, scale=scale))


def percentile_threshold(normal_scores, quantile: float = QUANTILE) -> float:
    """The empirical ``quantile`` of normal scores (linear interpolation). Chapter 6.

    No distribution assumed; with few scores it moves a lot from sample to sample
    (:func:`threshold_spread`).
    """
    _check_quantile(quantile)
    scores = _scores(normal_scores)
    if len(scores) < 2:
        raise ValueError(f"a percentile needs at least 2 normal scores, not {len(scores)}")
    return float(np.quantile(scores, quantile))


#: The rules :func:`fit_threshold` knows, by name.
THRESHOLD_RULES = {"gamma": gamma_threshold, "percentile": percentile_threshold}


def fit_threshold(normal_scores, rule: str = "gamma", quantile: float = QUANTILE) -> float:
    """A threshold from normal scores by a named rule, ``"gamma"`` or ``"percentile"``.

    Chapter 6.
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"rule must be one of {sorted(THRESHOLD_RULES)}, not {rule!r}")
    return THRESHOLD_RULES[rule](normal_scores, quantile)


def _check_quantile(quantile: float) -> None:
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be between 0 and 1 (exclusive), not {quantile}")


# --------------------------------------------------------------------------------------
# Decisions at a threshold
# --------------------------------------------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


@dataclass(frozen=True)
class Confusion:
    """Counts of the decisions at one threshold, and the rates computed from them.

    Chapter 6. ``tp``: anomalies flagged; ``fn``: anomalies missed; ``fp``: normal
    clips flagged (false alarms); ``tn``: normal clips passed. A rate whose denominator
    is zero (precision when nothing is flagged) is NaN.
    """

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def tpr(self) -> float:
        """Recall, the true-positive rate: the share of anomalies flagged."""
        return _ratio(self.tp, self.tp + self.fn)

    recall = tpr

    @property
    def fpr(self) -> float:
        """The false-positive rate: the share of normal clips flagged."""
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def precision(self) -> float:
        """The share of flagged clips that are anomalous."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def f1(self) -> float:
        """The harmonic mean of precision and recall, ``2 tp / (2 tp + fp + fn)``."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def as_dict(self) -> dict:
        """Threshold, the four counts, ``tpr``, ``fpr``, ``precision`` and ``f1``."""
        return {
            "threshold": self.threshold,
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
            "tpr": self.tpr,
            "fpr": self.fpr,
            "precision": self.precision,
            "f1": self.f1,
        }

    def matrix(self) -> pd.DataFrame:
        """The confusion matrix: true state in rows, decision in columns. Chapter 6."""
        return pd.DataFrame(
            [[self.tn, self.fp], [self.fn, self.tp]],
            index=pd.Index(["normal clip", "anomalous clip"], name="truth"),
            columns=pd.Index(["passed", "flagged"], name="decision"),
        )


def confusion(y_true, scores, threshold: float) -> Confusion:
    """The decisions ``score > threshold`` against the labels. Chapter 6.

    ``y_true`` holds 1 (or ``True``, or ``"anomaly"``) for anomalous clips.
    """
    y = _anomalous(y_true)
    scores = _scores(scores, "scores")
    if len(y) != len(scores):
        raise ValueError(f"{len(y)} labels but {len(scores)} scores")
    flagged = scores > threshold
    return Confusion(
        float(threshold),
        tp=int(np.sum(flagged & y)),
        fp=int(np.sum(flagged & ~y)),
        tn=int(np.sum(~flagged & ~y)),
        fn=int(np.sum(~flagged & y)),
    )


def _candidate_thresholds(scores: np.ndarray) -> np.ndarray:
    """One threshold per distinct decision: below every score, between neighbours, at the top."""
    values = np.unique(scores)
    between = (values[:-1] + values[1:]) / 2
    return np.concatenate([[np.nextafter(values[0], -np.inf)], between, [values[-1]]])


def _flag_counts(sorted_scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many of ``sorted_scores`` lie strictly above each threshold."""
    return len(sorted_scores) - np.searchsorted(sorted_scores, thresholds, side="right")


def oracle_threshold(y_true, scores, criterion: str = "f1") -> Confusion:
    """The threshold that is best on these very labels: an upper bound, not a method.

    Chapter 6. It looks at the labels it is judged on, which a deployed system never
    has; on the test set it shows how much a threshold set from normal clips leaves on
    the table. ``criterion``: ``"f1"`` (the largest F1) or ``"youden"`` (the largest
    TPR minus FPR). Among equally good thresholds the highest (fewest alarms) is taken.
    With anomalous clips only, flagging every clip is best; with normal clips only (F1
    undefined), flagging none is, and only for ``"f1"``.
    """
    if criterion not in ("f1", "youden"):
        raise ValueError(f"criterion must be 'f1' or 'youden', not {criterion!r}")
    y = _anomalous(y_true)
    scores = _scores(scores, "scores")
    if not len(y):
        raise ValueError("the oracle threshold needs clips")
    if criterion == "youden" and (y.all() or not y.any()):
        raise ValueError("the Youden threshold needs both normal and anomalous clips")
    thresholds = _candidate_thresholds(scores)
    if not y.any():  # no anomaly to find: the best decision raises no alarm
        return confusion(y, scores, thresholds[-1])
    tp = _flag_counts(np.sort(scores[y]), thresholds)
    fp = _flag_counts(np.sort(scores[~y]), thresholds)
    fn = y.sum() - tp
    if criterion == "f1":
        value = 2 * tp / (2 * tp + fp + fn)
    else:
        value = tp / y.sum() - fp / (~y).sum()
    best = np.flatnonzero(value == value.max())[-1]
    return confusion(y, scores, thresholds[best])


#: The names of the two reference lines of every decision table (:func:`reference_lines`).
FLAG_ALL = "flag every clip"
HINDSIGHT = "best threshold in hindsight (upper bound)"


def flag_all(y_true) -> Confusion:
    """The decisions of a monitor that flags every clip: TPR 1, FPR 1. Chapter 6.

    The floor that any threshold must beat: its F1 is ``2 p / (1 + p)`` for a share
    ``p`` of anomalous clips (:func:`flag_all_f1`), 0.67 with as many anomalous clips
    as normal ones, without any detector at all. Its threshold is minus infinity.
    """
    y = _anomalous(y_true)
    if not len(y):
        raise ValueError("flagging every clip needs clips to flag")
    return Confusion(float("-inf"), tp=int(y.sum()), fp=int((~y).sum()), tn=0, fn=0)


def flag_all_f1(anomaly_share):
    """The F1 of flagging every clip when a share ``anomaly_share`` is anomalous. Chapter 6.

    Precision is the share ``p`` itself and recall is 1, so F1 is ``2 p / (1 + p)``.
    Works on arrays too.
    """
    p = np.asarray(anomaly_share, dtype=np.float64)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("the share of anomalous clips must be between 0 and 1")
    return 2 * p / (1 + p)


def reference_lines(y_true, scores) -> pd.DataFrame:
    """The two reference lines of a decision table, for one set of labelled clips.

    Chapter 6. Rows :data:`FLAG_ALL` (:func:`flag_all`: the floor) and
    :data:`HINDSIGHT` (:func:`oracle_threshold` by F1 on these very labels: an upper
    bound no monitor can reach); columns ``decision`` and those of
    :meth:`Confusion.as_dict`. A threshold set from normal clips is worth something
    where its F1 lies above the first line; the second says how much was left.
    """
    rows = [
        {"decision": FLAG_ALL, **flag_all(y_true).as_dict()},
        {"decision": HINDSIGHT, **oracle_threshold(y_true, scores).as_dict()},
    ]
    return pd.DataFrame(rows)


def rate_interval(count, total, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a rate ``count / total`` (a share of clips). Chapter 6.

    SciPy's ``binomtest(...).proportion_ci(method="wilson")``: how far the rate measured on
    ``total`` clips may lie from the rate a threshold has on all clips like them. A test
    set with 90 normal clips per machine ID measures an FPR of 10 % only to within
    about 5 to 18 %.
    """
    count, total = int(count), int(total)
    if total <= 0 or not 0 <= count <= total:
        raise ValueError(f"a rate needs 0 <= count <= total and total > 0, not {count} of {total}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1 (exclusive), not {level}")
    ci = stats.binomtest(count, total).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def _rate_interval_or_nan(count, total) -> tuple[float, float]:
    """:func:`rate_interval`, or NaN twice when there are no clips to measure the rate on."""
    return rate_interval(count, total) if total else (np.nan, np.nan)


# --------------------------------------------------------------------------------------
# Operation: alarms per day, costs
# --------------------------------------------------------------------------------------


def false_alarms_per_day(fpr, seconds_between_checks: float = SECONDS_BETWEEN_CHECKS):
    """Expected false alarms per day of a normal machine checked every few seconds.

    Chapter 6. ``fpr * 86400 / seconds_between_checks``: each check of a healthy
    machine raises a false alarm with probability ``fpr``. Works on arrays too.
    """
    if seconds_between_checks <= 0:
        raise ValueError(f"seconds_between_checks must be positive, not {seconds_between_checks}")
    return np.asarray(fpr, dtype=np.float64) * SECONDS_PER_DAY / seconds_between_checks


def fpr_for_alarms_per_day(alarms_per_day, seconds_between_checks: float = SECONDS_BETWEEN_CHECKS):
    """The false-positive rate that gives ``alarms_per_day`` on a healthy machine. Chapter 6.

    The inverse of :func:`false_alarms_per_day`.
    """
    if seconds_between_checks <= 0:
        raise ValueError(f"seconds_between_checks must be positive, not {seconds_between_checks}")
    return np.asarray(alarms_per_day, dtype=np.float64) * seconds_between_checks / SECONDS_PER_DAY


def precision_at_prevalence(tpr, fpr, prevalence):
    """The precision of alarms when a share ``prevalence`` of checks meets a faulty machine.

    Chapter 6. ``tpr * prevalence / (tpr * prevalence + fpr * (1 - prevalence))``: a test
    set with as many anomalous clips as normal ones has a prevalence of one half, a
    machine in service one far smaller, and then most alarms are false even at a small
    FPR. Works on arrays too.
    """
    prevalence = np.asarray(prevalence, dtype=np.float64)
    if np.any((prevalence <= 0) | (prevalence >= 1)):
        raise ValueError("prevalence must be between 0 and 1 (exclusive)")
    true_alarms = np.asarray(tpr, dtype=np.float64) * prevalence
    false_alarms = np.asarray(fpr, dtype=np.float64) * (1 - prevalence)
    with np.errstate(invalid="ignore", divide="ignore"):
        return true_alarms / (true_alarms + false_alarms)


def _check_costs(cost_false_alarm: float, cost_miss: float, prior: float) -> None:
    if not 0.0 < prior < 1.0:
        raise ValueError(f"prior must be between 0 and 1 (exclusive), not {prior}")
    if cost_false_alarm < 0 or cost_miss < 0:
        raise ValueError("costs must not be negative")


def expected_cost(fpr, tpr, *, cost_false_alarm: float, cost_miss: float, prior: float):
    """Expected cost per check at a threshold of false-positive rate ``fpr`` and TPR ``tpr``.

    Chapter 6. ``cost_false_alarm * (1 - prior) * fpr + cost_miss * prior * (1 - tpr)``:
    a healthy machine (a share ``1 - prior`` of the checks) costs a false alarm when
    flagged, a faulty one (a share ``prior``) costs a miss when passed. Works on arrays.
    """
    _check_costs(cost_false_alarm, cost_miss, prior)
    fpr, tpr = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    return cost_false_alarm * (1 - prior) * fpr + cost_miss * prior * (1 - tpr)


def cost_curve(
    normal_scores,
    anomaly_scores,
    *,
    cost_false_alarm: float,
    cost_miss: float,
    prior: float,
    fpr_model: str = "gamma",
) -> pd.DataFrame:
    """Expected cost per check at every threshold where a decision changes. Chapter 6.

    The cost of a check is ``cost_false_alarm`` when a healthy machine is flagged and
    ``cost_miss`` when a faulty one is passed. With ``prior`` the share of checks at
    which the machine is faulty, the expected cost per check at threshold ``t`` is

        cost_false_alarm * (1 - prior) * FPR(t) + cost_miss * prior * (1 - TPR(t)),

    with TPR the share of ``anomaly_scores`` above ``t``, and FPR, with ``fpr_model``:

    - ``"gamma"`` (default): the tail above ``t`` of the gamma fitted to
      ``normal_scores`` (:func:`gamma_fit`), smooth and defined far beyond the few
      normal scores a held-out set has;
    - ``"empirical"``: the share of ``normal_scores`` above ``t``.

    The function takes the two samples and nothing else: which clips they are is the
    caller's choice and must be said. Normal scores can come from held-out normal clips;
    anomalous ones need labelled faults, so with the test set's anomalies the curve is a
    what-if, an upper bound, not a deployable choice.

    Returns
    -------
    pandas.DataFrame
        ``threshold``, ``fpr``, ``tpr``, ``cost`` (per check), by increasing threshold:
        with ``"gamma"``, one just below each anomalous score (the cheapest threshold
        that still flags it) and one that flags nothing; with ``"empirical"``, one
        below every score and one between each pair of neighbouring scores.
    """
    _check_costs(cost_false_alarm, cost_miss, prior)
    if fpr_model not in ("gamma", "empirical"):
        raise ValueError(f"fpr_model must be 'gamma' or 'empirical', not {fpr_model!r}")
    normal = np.sort(_scores(normal_scores))
    anomaly = np.sort(_scores(anomaly_scores, "anomaly scores"))
    if not len(normal) or not len(anomaly):
        raise ValueError("the cost curve needs normal and anomalous scores")
    thresholds, fpr = _candidates_and_fpr(normal, anomaly, fpr_model)
    tpr = _flag_counts(anomaly, thresholds) / len(anomaly)
    cost = expected_cost(
        fpr, tpr, cost_false_alarm=cost_false_alarm, cost_miss=cost_miss, prior=prior
    )
    return pd.DataFrame({"threshold": thresholds, "fpr": fpr, "tpr": tpr, "cost": cost})


def _candidates_and_fpr(normal: np.ndarray, anomaly: np.ndarray, fpr_model: str) -> tuple:
    """The candidate thresholds of :func:`cost_curve` (sorted scores given) and their FPR."""
    if fpr_model == "empirical":
        thresholds = _candidate_thresholds(np.concatenate([normal, anomaly]))
        return thresholds, _flag_counts(normal, thresholds) / len(normal)
    # FPR falls steadily as t rises, TPR only steps down where t passes an anomalous
    # score: the cheapest threshold of each step is at its top, just below the next
    # anomalous score; the last step (nothing flagged) ends where the FPR is nil.
    shape, loc, scale = gamma_fit(normal)
    top = max(anomaly[-1], stats.gamma.isf(1e-9, shape, loc=loc, scale=scale))
    below = np.nextafter(np.unique(anomaly), -np.inf)
    thresholds = np.concatenate([below, [top]])
    return thresholds, stats.gamma.sf(thresholds, shape, loc=loc, scale=scale)


def cost_threshold(
    normal_scores,
    anomaly_scores,
    *,
    cost_false_alarm: float,
    cost_miss: float,
    prior: float,
    fpr_model: str = "gamma",
) -> pd.Series:
    """The threshold of least expected cost on :func:`cost_curve`. Chapter 6.

    Returns the curve's row (``threshold``, ``fpr``, ``tpr``, ``cost``); among equal
    costs the highest threshold (fewest alarms) is taken.
    """
    curve = cost_curve(
        normal_scores,
        anomaly_scores,
        cost_false_alarm=cost_false_alarm,
        cost_miss=cost_miss,
        prior=prior,
        fpr_model=fpr_model,
    )
    cheapest = np.flatnonzero(np.isclose(curve["cost"], curve["cost"].min(), rtol=1e-12))
    return curve.iloc[cheapest[-1]]


def cost_slope(cost_false_alarm: float, cost_miss: float, prior: float) -> float:
    """Where the least expected cost lies on the ROC curve: its slope there. Chapter 6.

    Raising the threshold past a few clips trades ``cost_false_alarm * (1 - prior)`` per
    unit of FPR saved against ``cost_miss * prior`` per unit of TPR lost
    (:func:`cost_curve`'s model). The least-cost threshold is where the ROC curve's slope
    dTPR / dFPR falls to ``cost_false_alarm * (1 - prior) / (cost_miss * prior)``. A slope
    below 1 (a miss, weighted by the prior, dearer than a false alarm) pushes the
    threshold down, towards flagging every clip wherever the lowest anomalous scores
    sit among the normal ones; a slope far above 1 pushes it up, towards flagging none.
    """
    _check_costs(cost_false_alarm, cost_miss, prior)
    if cost_miss == 0:
        raise ValueError("the cost of a miss must be positive for the slope to exist")
    return cost_false_alarm * (1 - prior) / (cost_miss * prior)


def cost_references(
    y_true, scores, *, cost_false_alarm: float, cost_miss: float, prior: float
) -> pd.DataFrame:
    """The reference lines of a cost table: flag every clip, flag none, best in hindsight.

    Chapter 6. Expected cost per check (:func:`cost_curve`'s model) of :data:`FLAG_ALL`
    (``cost_false_alarm * (1 - prior)``), of ``"flag no clip"`` (``cost_miss * prior``)
    and of :data:`HINDSIGHT`, the least-cost threshold with the FPR and TPR counted on
    these very labelled clips (``fpr_model="empirical"``): an upper bound that looks at
    the labels it is judged on. Columns ``decision``, ``threshold``, ``fpr``, ``tpr``,
    ``cost``.
    """
    y = _anomalous(y_true)
    scores = _scores(scores, "scores")
    if len(y) != len(scores):
        raise ValueError(f"{len(y)} labels but {len(scores)} scores")
    costs = dict(cost_false_alarm=cost_false_alarm, cost_miss=cost_miss, prior=prior)
    best = cost_threshold(scores[~y], scores[y], fpr_model="empirical", **costs)
    rows = [
        {
            "decision": FLAG_ALL,
            "threshold": float("-inf"),
            "fpr": 1.0,
            "tpr": 1.0,
            "cost": float(expected_cost(1.0, 1.0, **costs)),
        },
        {
            "decision": "flag no clip",
            "threshold": float("inf"),
            "fpr": 0.0,
            "tpr": 0.0,
            "cost": float(expected_cost(0.0, 0.0, **costs)),
        },
        {"decision": HINDSIGHT, **best.to_dict()},
    ]
    return pd.DataFrame(rows)


def cost_table(
    normal_scores,
    y_true,
    scores,
    *,
    cost_misses,
    cost_false_alarm: float,
    prior: float,
    seconds_between_checks: float = SECONDS_BETWEEN_CHECKS,
) -> pd.DataFrame:
    """The least-cost threshold for each cost of a miss, and what it costs a day. Chapter 6.

    For each of ``cost_misses``, :func:`cost_threshold` takes the FPR from the gamma
    fitted to ``normal_scores`` and the TPR from the anomalous clips among the labelled
    ``y_true`` and ``scores``. Beside it, per day of checks every
    ``seconds_between_checks``: the false alarms by the gamma fit, the expected cost, the
    cost counted on the labelled clips at that threshold (:func:`expected_cost` of their
    :func:`confusion`), and :func:`cost_references`' cost of flagging every clip and least
    cost in hindsight on the same clips.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``cost_miss``: ``threshold``, ``fpr_gamma``, ``tpr``,
        ``false_alarms_per_day``, ``cost_per_day``, ``cost_per_day_on_clips``,
        ``flag_all_cost_per_day``, ``hindsight_cost_per_day`` and ``hindsight_fpr``.
    """
    y = _anomalous(y_true)
    scores = _scores(scores, "scores")
    if len(y) != len(scores):
        raise ValueError(f"{len(y)} labels but {len(scores)} scores")
    checks = float(false_alarms_per_day(1.0, seconds_between_checks))
    rows = []
    for cost_miss in cost_misses:
        costs = dict(cost_false_alarm=cost_false_alarm, cost_miss=cost_miss, prior=prior)
        pick = cost_threshold(normal_scores, scores[y], **costs)
        counted = confusion(y, scores, pick.threshold)
        lines = cost_references(y, scores, **costs).set_index("decision")
        rows.append(
            {
                "cost_miss": cost_miss,
                "threshold": pick.threshold,
                "fpr_gamma": pick.fpr,
                "tpr": pick.tpr,
                "false_alarms_per_day": pick.fpr * checks,
                "cost_per_day": pick.cost * checks,
                "cost_per_day_on_clips": checks
                * float(expected_cost(counted.fpr, counted.tpr, **costs)),
                "flag_all_cost_per_day": lines.loc[FLAG_ALL, "cost"] * checks,
                "hindsight_cost_per_day": lines.loc[HINDSIGHT, "cost"] * checks,
                "hindsight_fpr": lines.loc[HINDSIGHT, "fpr"],
            }
        )
    return pd.DataFrame(rows).set_index("cost_miss")


# --------------------------------------------------------------------------------------
# Tables: thresholds per machine ID, decisions per machine ID
# --------------------------------------------------------------------------------------


def _keys(table: pd.DataFrame) -> list[str]:
    return [k for k in ("model", "machine_type") if k in table.columns]


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    """Rows by model (the paper's order), machine type (the data set's order), ID."""
    types = {t: i for i, t in enumerate(type_order(table["machine_type"]))}
    helpers = {"_type": table["machine_type"].map(types)}
    if "model" in table.columns:
        helpers["_model"] = table["model"].map(model_order)
    order = [c for c in ("_model", "_type") if c in helpers] + ["machine_id"]
    return (
        table.assign(**helpers)
        .sort_values(order, kind="stable")
        .drop(columns=list(helpers))
        .reset_index(drop=True)
    )


def _with_int_ids(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(machine_id=table["machine_id"].astype(int))


def _unfitted(fitted: pd.DataFrame, rule: str) -> str:
    """Why no threshold was fitted, and what it needs (the ``fitted_on`` entry)."""
    need = MIN_GAMMA_SCORES if rule == "gamma" else 2
    if len(fitted) < need:
        return f"too few clips ({len(fitted)} of {need} needed)"
    return f"no fit ({len(fitted)} clips, every score equal or not positive)"


def fit_thresholds(
    reference: pd.DataFrame,
    rule: str = "gamma",
    quantile: float = QUANTILE,
    per: str = "id",
    *,
    machines: pd.DataFrame | None = None,
    min_per_id: int = MIN_SCORES_PER_ID,
) -> pd.DataFrame:
    """A threshold for every machine ID, from the scores of normal reference clips. Chapter 6.

    Parameters
    ----------
    reference
        Scores of normal clips that the model did not train on (held-out validation or
        out-of-fold clips): ``machine_type``, ``machine_id``, ``score`` and, optionally,
        ``model``. Never test clips: the thresholds are judged on those.
    rule, quantile
        See :func:`fit_threshold`.
    per
        ``"id"``: each machine ID from its own clips; ``"type"``: one threshold per
        machine type from all its IDs' clips (more clips, but IDs whose scores sit
        higher or lower than the others' get too many or too few alarms); ``"auto"``:
        per ID when every ID of the type has at least ``min_per_id`` clips, else per type.
    machines
        A table whose distinct (``model``,) ``machine_type`` and ``machine_id`` are the
        machines to set thresholds for (the test scores, say); default: those of
        ``reference``. An ID without reference clips gets its type's threshold with
        ``per="type"`` (or ``"auto"``), none with ``per="id"``.

    Returns
    -------
    pandas.DataFrame
        One row per machine: ``threshold``, ``rule``, ``quantile``, ``fitted_on``
        (``"ID"`` or ``"type"``) and ``n_reference`` (the clips fitted). Where the rule
        cannot be applied to so few clips (:data:`MIN_GAMMA_SCORES`), ``threshold`` is
        NaN and ``fitted_on`` says so.
    """
    _check_threshold_args(rule, quantile, per)
    reference = _with_int_ids(reference)
    keys = _keys(reference)
    machines = reference if machines is None else _with_int_ids(machines)
    if any(k not in machines.columns for k in keys):
        raise ValueError(f"machines need the reference's columns {keys} and machine_id")
    wanted = machines[keys + ["machine_id"]].drop_duplicates()
    rows = []
    for group_key, ids in wanted.groupby(keys, sort=False):
        group_key = group_key if isinstance(group_key, tuple) else (group_key,)
        group = reference
        for key, value in zip(keys, group_key):
            group = group[group[key] == value]
        counts = group.groupby("machine_id").size().reindex(ids["machine_id"], fill_value=0)
        by_id = per == "id" or (per == "auto" and counts.min() >= min_per_id)
        for machine_id in sorted(ids["machine_id"]):
            fitted = group[group["machine_id"] == machine_id] if by_id else group
            row = {**dict(zip(keys, group_key)), "machine_id": machine_id}
            rows.append(_threshold_row(row, fitted, rule, quantile, "ID" if by_id else "type"))
    return _sorted(pd.DataFrame(rows))


def _check_threshold_args(rule: str, quantile: float, per: str) -> None:
    if per not in ("id", "type", "auto"):
        raise ValueError(f"per must be 'id', 'type' or 'auto', not {per!r}")
    _check_quantile(quantile)
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"rule must be one of {sorted(THRESHOLD_RULES)}, not {rule!r}")


def _threshold_row(row: dict, fitted: pd.DataFrame, rule, quantile, fitted_on: str) -> dict:
    """``row`` with the threshold that ``rule`` sets on the ``fitted`` clips' scores."""
    try:
        value = fit_threshold(fitted["score"], rule, quantile)
    except ValueError:  # too few held-out clips (or all equal): say what it needs
        value, fitted_on = float("nan"), _unfitted(fitted, rule)
    return {
        **row,
        "threshold": value,
        "rule": rule,
        "quantile": quantile,
        "fitted_on": fitted_on,
        "n_reference": len(fitted),
    }


def decide(scores: pd.DataFrame, thresholds: pd.DataFrame) -> pd.DataFrame:
    """Each clip's decision at its machine ID's threshold. Chapter 6.

    Returns the scores table with ``threshold``, ``flagged`` (score above threshold),
    ``margin`` (score minus threshold: how far above or below) and ``outcome``:
    ``"detected"``, ``"missed"``, ``"false alarm"`` or ``"passed"``. Clips of an ID
    without a threshold get NaN and no outcome.
    """
    scores = _with_int_ids(scores)
    thresholds = _with_int_ids(thresholds)
    keys = [k for k in _keys(scores) if k in thresholds.columns] + ["machine_id"]
    table = scores.merge(
        _one_per_id(thresholds, keys, scores)[keys + ["threshold"]], on=keys, how="left"
    )
    anomalous = _anomalous(table["label"])
    flagged = (table["score"] > table["threshold"]).to_numpy()
    outcome = np.select(
        [anomalous & flagged, anomalous & ~flagged, ~anomalous & flagged],
        ["detected", "missed", "false alarm"],
        "passed",
    )
    known = table["threshold"].notna().to_numpy()
    return table.assign(
        flagged=flagged,
        margin=table["score"] - table["threshold"],
        outcome=np.where(known, outcome, None),
    )


def _one_per_id(thresholds: pd.DataFrame, keys: list[str], scores: pd.DataFrame):
    """``thresholds``, checked: the key columns, one row per ID, no column of the scores."""
    if "machine_type" not in thresholds.columns or "threshold" not in thresholds.columns:
        raise ValueError("thresholds need machine_type, machine_id and threshold columns")
    extra = [c for c in thresholds.columns if c not in keys and c in scores.columns]
    if extra or thresholds.duplicated(keys).any():
        raise ValueError(
            f"thresholds must hold one row per {', '.join(keys)}"
            + (f" and no column {extra} of the scores" if extra else "")
        )
    return thresholds


def decision_table(
    scores: pd.DataFrame,
    thresholds: pd.DataFrame,
    *,
    seconds_between_checks: float = SECONDS_BETWEEN_CHECKS,
    oracle: bool = False,
) -> pd.DataFrame:
    """Decisions on the test clips of every machine ID at its threshold. Chapter 6.

    Parameters
    ----------
    scores
        A scores table (one row per test clip: ``machine_type``, ``machine_id``,
        ``label``, ``score``, and ``model`` when there are several).
    thresholds
        One row per machine ID with ``threshold`` (:func:`fit_thresholds`; its other
        columns are carried along).
    seconds_between_checks
        For ``false_alarms_per_day`` (:func:`false_alarms_per_day`).
    oracle
        Add the two reference lines of the table: ``flag_all_f1``, the F1 of flagging
        every clip (:func:`flag_all`, the floor), and ``oracle_threshold`` and
        ``oracle_f1``, the threshold of largest F1 on these test labels, an upper bound
        (:func:`oracle_threshold`).

    Returns
    -------
    pandas.DataFrame
        One row per machine ID: the threshold's columns, ``n_normal``, ``n_anomaly``,
        ``tp``, ``fp``, ``tn``, ``fn``, ``tpr``, ``fpr`` with ``fpr_low`` and
        ``fpr_high`` (its 95 % Wilson interval from the ID's normal clips,
        :func:`rate_interval`), ``precision``, ``f1`` and ``false_alarms_per_day``. An ID
        without a threshold (NaN) gets NaN rates.
    """
    scores = _with_int_ids(scores)
    thresholds = _with_int_ids(thresholds)
    keys = [k for k in _keys(scores) if k in thresholds.columns] + ["machine_id"]
    thresholds = _one_per_id(thresholds, keys, scores)
    rows = []
    for group_key, clips in scores.groupby(_keys(scores) + ["machine_id"], sort=False):
        row = dict(zip(_keys(scores) + ["machine_id"], group_key))
        match = thresholds
        for key in keys:
            match = match[match[key] == row[key]]
        if len(match):
            row.update(match.iloc[0].drop(keys).to_dict())
        row.update(_id_decisions(clips, row.get("threshold", float("nan")), oracle))
        row["false_alarms_per_day"] = (
            float(false_alarms_per_day(row["fpr"], seconds_between_checks))
            if row["fpr"] is not None
            else None
        )
        rows.append(row)
    table = pd.DataFrame(rows)
    numeric = ["tpr", "fpr", "fpr_low", "fpr_high", "precision", "f1", "false_alarms_per_day"]
    numeric = [c for c in numeric + ["threshold"] if c in table]
    table[numeric] = table[numeric].astype(float)
    return _sorted(table)


def _id_decisions(clips: pd.DataFrame, value: float, oracle: bool) -> dict:
    """The counts, rates and FPR interval of one ID's clips at ``value``; the references."""
    y = _anomalous(clips["label"])
    row = {"n_normal": int((~y).sum()), "n_anomaly": int(y.sum())}
    if np.isfinite(value):
        counts = confusion(y, clips["score"], value).as_dict()
        del counts["threshold"]
        low, high = _rate_interval_or_nan(counts["fp"], row["n_normal"])
        counts.update(fpr_low=low, fpr_high=high)
    else:
        names = ("tp", "fp", "tn", "fn", "tpr", "fpr", "fpr_low", "fpr_high", "precision", "f1")
        counts = dict.fromkeys(names)
    row.update(counts)
    if oracle:
        best = oracle_threshold(y, clips["score"])
        row.update(oracle_threshold=best.threshold, oracle_f1=best.f1, flag_all_f1=flag_all(y).f1)
    return row


def reference_table(scores: pd.DataFrame) -> pd.DataFrame:
    """The two reference lines for every machine ID of a scores table. Chapter 6.

    One row per (``model``,) ``machine_type``, ``machine_id`` and ``decision``
    (:func:`reference_lines`: :data:`FLAG_ALL` and :data:`HINDSIGHT`), with the columns of
    :func:`decision_table` that apply (``n_normal``, ``n_anomaly``, the counts and rates,
    ``fpr_low`` and ``fpr_high``), so that :func:`summarize_decisions` treats them like
    the decisions at a threshold.
    """
    scores = _with_int_ids(scores)
    keys = _keys(scores) + ["machine_id"]
    parts = []
    for group_key, clips in scores.groupby(keys, sort=False):
        y = _anomalous(clips["label"])
        lines = reference_lines(y, clips["score"])
        lines["fpr_low"], lines["fpr_high"] = zip(
            *(_rate_interval_or_nan(fp, (~y).sum()) for fp in lines.fp)
        )
        for key, value in zip(keys, group_key):
            lines[key] = value
        parts.append(lines.assign(n_normal=int((~y).sum()), n_anomaly=int(y.sum())))
    table = pd.concat(parts, ignore_index=True)
    return _sorted(table)[keys + [c for c in table.columns if c not in keys]]


def summarize_decisions(table: pd.DataFrame, target_fpr: float | None = None) -> pd.Series:
    """One line for a decision table: its decisions over all its machine IDs. Chapter 6.

    ``fpr`` is the share of all the table's normal clips flagged, with its Wilson interval
    (``fpr_low``, ``fpr_high``, :func:`rate_interval`); ``tpr`` likewise for the
    anomalous clips; ``f1``, the mean of the IDs' F1 (the per-ID means the chapter
    quotes). With ``target_fpr``, ``fpr_distance`` is the mean over the IDs of
    ``|FPR - target_fpr|``. Rows without a threshold (NaN FPR) are left out; ``n_ids``
    counts those kept.
    """
    kept = table[table["fpr"].notna()]
    if kept.empty:
        raise ValueError("no machine ID of the table has decisions to summarise")
    fp, normal = int(kept["fp"].sum()), int(kept["n_normal"].sum())
    tp, anomalous = int(kept["tp"].sum()), int(kept["n_anomaly"].sum())
    low, high = rate_interval(fp, normal)
    line = {
        "n_ids": len(kept),
        "fpr": fp / normal,
        "fpr_low": low,
        "fpr_high": high,
        "tpr": tp / anomalous if anomalous else float("nan"),
        "f1": float(kept["f1"].astype(float).mean()),
    }
    if target_fpr is not None:
        line["fpr_distance"] = float((kept["fpr"].astype(float) - target_fpr).abs().mean())
    return pd.Series(line)


def threshold_spread(
    normal_scores,
    sizes=(5, 10, 20, 50, 100, 500),
    *,
    rule: str = "gamma",
    quantile: float = QUANTILE,
    n_draws: int = 500,
    level: float = 0.9,
    seed: int = 0,
) -> pd.DataFrame:
    """How much a threshold set from ``n`` normal clips varies, and the false alarms it gives.

    Chapter 6. A parametric simulation: a gamma distribution fitted to ``normal_scores``
    stands in for the true distribution of normal scores. For each ``n`` of ``sizes``,
    ``n_draws`` samples of ``n`` scores are drawn from it and ``rule`` sets a threshold
    from each; the false-positive rate that threshold would have is the gamma's tail
    beyond it. (The gamma rule is favoured here, since its model is the truth of the
    simulation; the percentile rule needs no model, and its spread holds for any
    distribution.)

    Returns
    -------
    pandas.DataFrame
        Per ``n``: ``threshold_low``, ``threshold_median``, ``threshold_high`` and
        ``fpr_low``, ``fpr_median``, ``fpr_high``, the central ``level`` range over the
        draws; ``target_fpr`` is ``1 - quantile``.
    """
    shape, loc, scale = gamma_fit(normal_scores)
    truth = stats.gamma(shape, loc=loc, scale=scale)
    rng = np.random.default_rng(seed)
    tail = (1 - level) / 2
    rows = []
    for n in sizes:
        draws = truth.rvs(size=(n_draws, int(n)), random_state=rng)
        values = np.array([fit_threshold(draw, rule, quantile) for draw in draws])
        fpr = truth.sf(values)
        low, mid, high = np.quantile(values, [tail, 0.5, 1 - tail])
        fpr_low, fpr_mid, fpr_high = np.quantile(fpr, [tail, 0.5, 1 - tail])
        rows.append(
            {
                "n": int(n),
                "threshold_low": low,
                "threshold_median": mid,
                "threshold_high": high,
                "fpr_low": fpr_low,
                "fpr_median": fpr_mid,
                "fpr_high": fpr_high,
                "target_fpr": 1 - quantile,
            }
        )
    return pd.DataFrame(rows)


def alarm_budget_table(
    reference: pd.DataFrame,
    test: pd.DataFrame,
    alarms_per_day=(864, 100, 10, 1),
    *,
    per: str = "id",
    seconds_between_checks: float = SECONDS_BETWEEN_CHECKS,
) -> pd.DataFrame:
    """What a threshold set for a number of false alarms a day does on the test. Chapter 6.

    For each of ``alarms_per_day``, :func:`fit_thresholds` puts each ID's threshold where
    the gamma fitted to its ``reference`` scores leaves the allowed FPR
    (:func:`fpr_for_alarms_per_day`) above it, and :func:`decision_table` judges the
    ``test`` clips against it. The last two rows are :func:`reference_table`'s lines
    (:data:`FLAG_ALL`, :data:`HINDSIGHT`), which allow nothing.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``alarms_per_day`` (then the two reference lines): ``fpr_allowed``,
        ``mean_threshold`` (over IDs), ``test_fpr`` and ``test_tpr`` (means over IDs)
        and ``test_false_alarms_per_day`` at that test FPR.
    """
    rows = []

    def judged(decisions: pd.DataFrame) -> dict:
        fpr = float(decisions["fpr"].mean())
        alarms = float(false_alarms_per_day(fpr, seconds_between_checks))
        return {
            "test_fpr": fpr,
            "test_tpr": float(decisions["tpr"].mean()),
            "test_false_alarms_per_day": alarms,
        }

    for per_day in alarms_per_day:
        allowed = float(fpr_for_alarms_per_day(per_day, seconds_between_checks))
        thresholds = fit_thresholds(reference, quantile=1 - allowed, per=per, machines=test)
        rows.append(
            {
                "alarms_per_day": per_day,
                "fpr_allowed": allowed,
                "mean_threshold": thresholds["threshold"].mean(),
            }
            | judged(decision_table(test, thresholds))
        )
    for decision, part in reference_table(test).groupby("decision", sort=False):
        rows.append({"alarms_per_day": decision} | judged(part))
    return pd.DataFrame(rows).set_index("alarms_per_day")
