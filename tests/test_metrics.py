"""Tests of aadlib.metrics: AUC and the two pAUCs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from aadlib import metrics
from aadlib.metrics import PAUC_DEFINITIONS, auc, pauc_dcase, pauc_mcclish

# --------------------------------------------------------------------------------------
# AUC and pAUC
# --------------------------------------------------------------------------------------


def _random_case(n=300, shift=0.7, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    scores = rng.standard_normal(n) + shift * y
    return y, scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_equals_sklearn(seed):
    y, s = _random_case(seed=seed)
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    # Boolean labels work the same.
    assert auc(y.astype(bool), s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pauc_mcclish_equals_sklearn_max_fpr(seed):
    y, s = _random_case(seed=seed)
    assert pauc_mcclish(y, s) == pytest.approx(roc_auc_score(y, s, max_fpr=0.1), abs=1e-12)
    assert pauc_mcclish(y, s, max_fpr=0.3) == pytest.approx(
        roc_auc_score(y, s, max_fpr=0.3), abs=1e-12
    )


def test_pauc_dcase_perfect_separation():
    y = np.array([0, 0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.8, 0.9])
    assert pauc_dcase(y, s) == pytest.approx(1.0)
    assert auc(y, s) == pytest.approx(1.0)
    assert pauc_mcclish(y, s) == pytest.approx(1.0)


def test_pauc_dcase_inverted_scores():
    y = np.array([0, 0, 0, 0, 1, 1])
    s = -np.array([0.1, 0.2, 0.3, 0.4, 0.8, 0.9])
    assert pauc_dcase(y, s) == pytest.approx(0.0, abs=1e-12)
    assert auc(y, s) == pytest.approx(0.0, abs=1e-12)


def test_pauc_dcase_random_is_chance():
    rng = np.random.default_rng(7)
    n = 20_000
    y = np.r_[np.zeros(n, int), np.ones(n, int)]
    s = rng.standard_normal(2 * n)
    # A random detector follows the diagonal: area over [0, 0.1] is 0.1^2 / 2 = 0.005.
    assert pauc_dcase(y, s) == pytest.approx(0.05, abs=0.01)
    assert pauc_mcclish(y, s) == pytest.approx(0.5, abs=0.03)


def test_pauc_dcase_hand_computed_step_roc():
    # 20 normals, 4 anomalies. Descending scores: A(10) N(9) A(8) N(7) A(5) ... so the ROC is
    # (0,0) -> (0,.25) -> (.05,.25) -> (.05,.5) -> (.1,.5) -> (.1,.75) -> ...
    # Area over FPR [0, 0.1]: 0.05*0.25 + 0.05*0.5 = 0.0375; divided by 0.1: 0.375.
    anomalies = [10.0, 8.0, 5.0, 1.0]
    normals = [9.0, 7.0] + [3.0 - 0.1 * i for i in range(18)]
    y = np.r_[np.ones(4, int), np.zeros(20, int)]
    s = np.r_[anomalies, normals]
    assert pauc_dcase(y, s) == pytest.approx(0.375, abs=1e-12)


def test_pauc_dcase_hand_computed_interpolated_roc():
    # 2 anomalies (10, 8) and 8 normals (one at 8, the others at 1). Tied scores at 8 make
    # a diagonal ROC segment from (0, 0.5) to (0.125, 1). At FPR 0.1 it is at
    # TPR 0.5 + 0.5 * 0.1 / 0.125 = 0.9; the trapezoid over [0, 0.1] is (0.5 + 0.9) / 2 * 0.1
    # = 0.07, so the DCASE pAUC is 0.7.
    y = np.r_[np.ones(2, int), np.zeros(8, int)]
    s = np.r_[[10.0, 8.0], [8.0], np.ones(7)]
    assert pauc_dcase(y, s) == pytest.approx(0.7, abs=1e-12)
    # Full AUC by hand: P(anomaly > normal) + 0.5 P(tie) = (8 + 7 + 0.5) / 16.
    assert auc(y, s) == pytest.approx(15.5 / 16)


def test_pauc_dcase_other_max_fpr():
    # Same ROC as above; over [0, 0.05]: TPR rises 0.5 -> 0.7, area (0.5+0.7)/2*0.05 = 0.03.
    y = np.r_[np.ones(2, int), np.zeros(8, int)]
    s = np.r_[[10.0, 8.0], [8.0], np.ones(7)]
    assert pauc_dcase(y, s, max_fpr=0.05) == pytest.approx(0.03 / 0.05, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("max_fpr", [0.1, 0.25])
def test_mcclish_is_standardised_dcase(seed, max_fpr):
    y, s = _random_case(n=200, shift=0.5 * seed, seed=seed)
    area = pauc_dcase(y, s, max_fpr=max_fpr) * max_fpr
    min_area = max_fpr**2 / 2
    max_area = max_fpr
    mcclish = 0.5 * (1 + (area - min_area) / (max_area - min_area))
    assert mcclish == pytest.approx(roc_auc_score(y, s, max_fpr=max_fpr), abs=1e-9)
    assert mcclish == pytest.approx(pauc_mcclish(y, s, max_fpr=max_fpr), abs=1e-9)


@pytest.mark.parametrize("fn", [auc, pauc_mcclish, pauc_dcase])
@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1]])
def test_one_label_only_is_an_error(fn, labels):
    with pytest.raises(ValueError, match="both normal"):
        fn(np.array(labels), np.array([0.1, 0.2, 0.3]))


def test_pauc_definitions():
    assert PAUC_DEFINITIONS == ("mcclish", "dcase")


# --------------------------------------------------------------------------------------
# ROC areas of many score sets at once, the bootstrap
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_roc_areas_equal_sklearn_with_and_without_ties(seed):
    from aadlib.metrics import mcclish, roc_areas

    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 80))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    scores = rng.standard_normal(n) + y
    if seed % 3 == 0:
        scores = np.round(scores, 1)  # ties between and within labels
    if seed % 4 == 0:
        scores = rng.integers(0, 3, n).astype(float)  # a detector with three values
    area, partial = roc_areas(y, scores)
    assert area[0] == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert mcclish(partial[0]) == pytest.approx(roc_auc_score(y, scores, max_fpr=0.1), abs=1e-12)
    assert partial[0] / 0.1 == pytest.approx(pauc_dcase(y, scores), abs=1e-12)


def test_roc_areas_of_many_rows_equal_each_row_alone():
    from aadlib.metrics import roc_areas

    y, _ = _random_case(50, seed=1)
    rows = np.random.default_rng(2).standard_normal((7, 50)) + y
    area, partial = roc_areas(y, rows)
    for i, row in enumerate(rows):
        assert area[i] == pytest.approx(roc_auc_score(y, row), abs=1e-12)
        assert partial[i] == pytest.approx(0.1 * pauc_dcase(y, row), abs=1e-12)


def test_bootstrap_keeps_each_ids_labels_and_is_seeded():
    from aadlib.metrics import bootstrap, interval

    y, scores = _random_case(120, seed=3)
    a = bootstrap(y, scores, n_boot=300, seed=5)
    b = bootstrap(y, scores, n_boot=300, seed=5)
    c = bootstrap(y, scores, n_boot=300, seed=6)
    for key in ("auc", "pauc_mcclish", "pauc_dcase"):
        assert a[key].shape == (300,)
        np.testing.assert_array_equal(a[key], b[key])
        assert not np.array_equal(a[key], c[key])
    low, high = interval(a["auc"])
    assert low < auc(y, scores) < high
    assert 0.05 < high - low < 0.25  # about 4 standard errors of an AUC on 120 clips


def test_bootstrap_interval_narrows_with_more_clips():
    from aadlib.metrics import bootstrap, interval

    widths = []
    for n in (40, 160, 640):
        y, scores = _random_case(n, seed=4)
        low, high = interval(bootstrap(y, scores, n_boot=400, seed=0)["auc"])
        widths.append(high - low)
    assert widths[0] > 1.5 * widths[1] > 2.0 * widths[2]  # about 1/sqrt(n)


def test_bootstrap_interval_covers_the_true_auc_about_95_percent_of_the_time():
    # Test sets drawn from two normal distributions with a known AUC: the 95 % interval
    # of each must contain it in roughly 95 % of the draws.
    from scipy.stats import norm

    from aadlib.metrics import bootstrap, interval

    shift = 1.0
    true_auc = norm.cdf(shift / np.sqrt(2))
    rng = np.random.default_rng(7)
    covered = 0
    draws = 200
    for i in range(draws):
        y = np.repeat([0, 1], 50)
        scores = rng.standard_normal(100) + shift * y
        low, high = interval(bootstrap(y, scores, n_boot=300, seed=i)["auc"])
        covered += low <= true_auc <= high
    assert 0.88 <= covered / draws <= 0.99


def test_bootstrap_of_two_detectors_uses_the_same_resamples():
    from aadlib.metrics import bootstrap

    y, scores = _random_case(100, seed=8)
    both = bootstrap(y, np.stack([scores, scores + 0.0]), n_boot=200, seed=1)
    assert both["auc"].shape == (2, 200)
    np.testing.assert_array_equal(both["auc"][0], both["auc"][1])  # same clips, same AUC


@pytest.mark.parametrize("seed", range(3))
def test_standardise_turns_the_plain_partial_area_into_each_definitions_pauc(seed):
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(40), np.ones(30)]
    scores = rng.normal(size=70) + y
    _, partial = metrics.roc_areas(y, scores)
    assert metrics.standardise(partial, "mcclish")[0] == pytest.approx(pauc_mcclish(y, scores))
    assert metrics.standardise(partial, "dcase")[0] == pytest.approx(pauc_dcase(y, scores))
    with pytest.raises(ValueError, match="mcclish"):
        metrics.standardise(partial, "mean")
