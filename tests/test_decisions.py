"""Thresholds from normal scores, decisions and their costs (aadlib.decisions), and the
held-out normal scores that thresholds are fitted on (aadlib.pipeline, chapter 6)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats
from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score

from aadlib import decisions


def gamma_sample(n, shape=4.0, scale=0.25, seed=0):
    return np.random.default_rng(seed).gamma(shape, scale, size=n)


# ------------------------------------------------------------------ thresholds


def test_gamma_fit_is_the_maximum_likelihood_gamma_from_zero():
    x = gamma_sample(40)
    shape, loc, scale = decisions.gamma_fit(x)
    assert loc == 0
    # The likelihood equations of a gamma starting at 0: shape * scale is the mean, and
    # log(shape) - digamma(shape) = log(mean) - mean(log x).
    assert shape * scale == pytest.approx(x.mean(), rel=1e-6)
    assert np.log(shape) - special.digamma(shape) == pytest.approx(
        np.log(x.mean()) - np.log(x).mean(), rel=1e-5
    )


def test_gamma_threshold_is_the_fitted_quantile_and_recovers_a_known_distribution():
    x = gamma_sample(40, seed=1)
    shape, _, scale = decisions.gamma_fit(x)
    assert decisions.gamma_threshold(x, 0.9) == pytest.approx(
        stats.gamma.ppf(0.9, shape, scale=scale)
    )
    many = gamma_sample(20_000, shape=3.0, scale=2.0, seed=2)
    assert decisions.gamma_threshold(many, 0.9) == pytest.approx(
        stats.gamma.ppf(0.9, 3.0, scale=2.0), rel=0.02
    )


def test_gamma_threshold_with_a_free_location_is_the_dcase_baselines_rule():
    # The baselines: scipy.stats.gamma.fit with every parameter free, then ppf(0.9).
    x = gamma_sample(60, seed=3) + 1.0
    shape, loc, scale = stats.gamma.fit(x)
    expected = stats.gamma.ppf(0.9, shape, loc=loc, scale=scale)
    assert decisions.gamma_threshold(x, 0.9, fixed_loc=None) == pytest.approx(expected, rel=1e-4)


def test_percentile_threshold_is_the_empirical_quantile():
    assert decisions.percentile_threshold(np.arange(11.0), 0.9) == pytest.approx(9.0)
    x = gamma_sample(37, seed=4)
    assert decisions.percentile_threshold(x, 0.8) == pytest.approx(np.percentile(x, 80))
    assert decisions.fit_threshold(x, "percentile", 0.8) == decisions.percentile_threshold(x, 0.8)


@pytest.mark.parametrize(
    "scores, message",
    [
        ([0.5, 0.6, 0.7], "at least 5"),
        ([0.5] * 8, "the same"),
        ([0.0, 0.2, 0.3, 0.4, 0.5], "above it"),
        ([0.2, 0.3, np.nan, 0.4, 0.5, 0.6], "missing"),
    ],
)
def test_gamma_fit_refuses_what_it_cannot_fit(scores, message):
    with pytest.raises(ValueError, match=message):
        decisions.gamma_threshold(scores)


def test_bad_rule_or_quantile_is_refused():
    with pytest.raises(ValueError, match="rule"):
        decisions.fit_threshold(gamma_sample(10), "median")
    with pytest.raises(ValueError, match="quantile"):
        decisions.percentile_threshold(gamma_sample(10), 90)


# ------------------------------------------------------------------ decisions


def test_confusion_counts_match_scikit_learn():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, size=200)
    scores = rng.normal(size=200) + y
    result = decisions.confusion(y, scores, 0.4)
    flagged = scores > 0.4
    tn, fp, fn, tp = confusion_matrix(y, flagged).ravel()
    assert (result.tp, result.fp, result.tn, result.fn) == (tp, fp, tn, fn)
    assert result.tpr == pytest.approx(recall_score(y, flagged))
    assert result.recall == result.tpr
    assert result.fpr == pytest.approx(fp / (fp + tn))
    assert result.precision == pytest.approx(precision_score(y, flagged))
    assert result.f1 == pytest.approx(f1_score(y, flagged))
    matrix = result.matrix()
    assert matrix.loc["normal clip", "flagged"] == fp
    assert matrix.loc["anomalous clip", "passed"] == fn


def test_a_score_equal_to_the_threshold_is_passed_and_labels_may_be_names():
    result = decisions.confusion(["normal", "anomaly", "anomaly"], [1.0, 1.0, 2.0], 1.0)
    assert (result.tp, result.fp, result.tn, result.fn) == (1, 0, 1, 1)


def test_nothing_flagged_has_no_precision_and_zero_f1():
    result = decisions.confusion([0, 1, 1], [0.1, 0.2, 0.3], 5.0)
    assert np.isnan(result.precision)
    assert result.f1 == 0.0 and result.tpr == 0.0 and result.fpr == 0.0


def test_oracle_threshold_is_the_best_f1_over_every_possible_decision():
    rng = np.random.default_rng(6)
    y = np.repeat([0, 1], 60)
    scores = np.round(rng.normal(size=120) + 1.2 * y, 1)  # rounded: ties included
    best = decisions.oracle_threshold(y, scores)
    # Every decision "score > t" is reached by t at a score value or below the lowest.
    candidates = np.concatenate([[scores.min() - 1], np.unique(scores)])
    brute = max(f1_score(y, scores > t) for t in candidates)
    assert best.f1 == pytest.approx(brute)
    assert best.f1 == pytest.approx(f1_score(y, scores > best.threshold))


def test_oracle_threshold_separates_separable_scores():
    best = decisions.oracle_threshold([0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.9])
    assert best.f1 == 1.0 and 0.3 < best.threshold < 0.7
    youden = decisions.oracle_threshold([0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.9], "youden")
    assert youden.tpr - youden.fpr == 1.0


# ------------------------------------------------------------------ reference lines


def test_flagging_every_clip_has_the_f1_of_its_anomaly_share():
    y = np.array([0] * 30 + [1] * 10)
    everything = decisions.flag_all(y)
    assert (everything.tp, everything.fp, everything.tn, everything.fn) == (10, 30, 0, 0)
    assert everything.tpr == 1.0 and everything.fpr == 1.0
    assert everything.f1 == pytest.approx(f1_score(y, np.ones_like(y)))
    assert everything.f1 == pytest.approx(decisions.flag_all_f1(0.25))
    np.testing.assert_allclose(decisions.flag_all_f1([0.0, 0.5, 1.0]), [0.0, 2 / 3, 1.0])
    with pytest.raises(ValueError, match="between 0 and 1"):
        decisions.flag_all_f1(1.5)


def test_reference_lines_at_the_edges_all_normal_all_anomalous_and_ties():
    normal_only = decisions.reference_lines([0, 0, 0], [0.1, 0.2, 0.2]).set_index("decision")
    assert normal_only.loc[decisions.FLAG_ALL, "f1"] == 0.0
    assert normal_only.loc[decisions.FLAG_ALL, "fpr"] == 1.0
    best = normal_only.loc[decisions.HINDSIGHT]
    assert best.fp == 0 and best.tn == 3  # nothing to find: the best raises no alarm
    anomalous_only = decisions.reference_lines([1, 1], [0.3, 0.3]).set_index("decision")
    assert anomalous_only.loc[decisions.FLAG_ALL, "f1"] == 1.0
    assert anomalous_only.loc[decisions.HINDSIGHT, "f1"] == 1.0
    # Tied scores across the labels: no threshold splits them, and hindsight cannot beat
    # flagging both; it is never worse than the floor.
    tied = decisions.reference_lines([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]).set_index("decision")
    assert tied.loc[decisions.HINDSIGHT, "f1"] >= tied.loc[decisions.FLAG_ALL, "f1"]
    assert tied.loc[decisions.HINDSIGHT, "f1"] == pytest.approx(
        max(
            f1_score([0, 1, 0, 1], np.array([0.5, 0.5, 0.2, 0.9]) > t) for t in (0.1, 0.2, 0.5, 0.9)
        )
    )
    with pytest.raises(ValueError, match="both"):
        decisions.oracle_threshold([0, 0], [0.1, 0.2], "youden")
    with pytest.raises(ValueError, match="clips"):
        decisions.flag_all([])


def test_rate_interval_is_the_wilson_interval():
    low, high = decisions.rate_interval(9, 90)
    # Wilson's closed form at 95 %: (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)
    z, n, p = stats.norm.ppf(0.975), 90, 0.1
    centre, half = p + z**2 / (2 * n), z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert (low, high) == pytest.approx(
        ((centre - half) / (1 + z**2 / n), (centre + half) / (1 + z**2 / n))
    )
    assert decisions.rate_interval(0, 90)[0] == pytest.approx(0.0, abs=1e-12)
    assert decisions.rate_interval(90, 90)[1] == pytest.approx(1.0)
    assert np.subtract(*decisions.rate_interval(90, 900)[::-1]) < high - low  # more clips, narrower
    with pytest.raises(ValueError, match="count"):
        decisions.rate_interval(5, 0)


def labelled_scores(seed=11):
    rng = np.random.default_rng(seed)
    scores = pd.DataFrame(
        {
            "machine_type": "fan",
            "machine_id": np.repeat([0, 2], 60),
            "label": np.tile(np.repeat(["normal", "anomaly"], [40, 20]), 2),
        }
    )
    scores["score"] = rng.gamma(4, 0.25, size=len(scores)) + (scores.label == "anomaly") * 0.7
    return scores


def test_decision_table_carries_the_fpr_interval_and_both_reference_lines():
    scores = labelled_scores()
    thresholds = pd.DataFrame(
        {"machine_type": "fan", "machine_id": [0, 2], "threshold": [1.3, 1.6]}
    )
    table = decisions.decision_table(scores, thresholds, oracle=True)
    assert (table.fpr_low <= table.fpr).all() and (table.fpr <= table.fpr_high).all()
    np.testing.assert_allclose(table.flag_all_f1, decisions.flag_all_f1(20 / 60))
    assert (table.oracle_f1 >= table.flag_all_f1).all()
    references = decisions.reference_table(scores)
    assert len(references) == 4 and set(references.decision) == {
        decisions.FLAG_ALL,
        decisions.HINDSIGHT,
    }
    hindsight = references[references.decision == decisions.HINDSIGHT].set_index("machine_id")
    np.testing.assert_allclose(hindsight.f1, table.set_index("machine_id").oracle_f1)


def test_summarize_decisions_pools_the_clips_and_averages_the_distance():
    scores = labelled_scores()
    thresholds = pd.DataFrame(
        {"machine_type": "fan", "machine_id": [0, 2], "threshold": [1.3, 9.0]}
    )
    table = decisions.decision_table(scores, thresholds)
    line = decisions.summarize_decisions(table, target_fpr=0.1)
    assert line.fpr == pytest.approx(table.fp.sum() / 80)
    assert (line.fpr_low, line.fpr_high) == pytest.approx(
        decisions.rate_interval(table.fp.sum(), 80)
    )
    assert line.fpr_distance == pytest.approx((table.fpr - 0.1).abs().mean())
    assert line.f1 == pytest.approx(table.f1.mean()) and line.n_ids == 2
    everything = decisions.reference_table(scores)
    floor = decisions.summarize_decisions(
        everything[everything.decision == decisions.FLAG_ALL], 0.1
    )
    assert floor.fpr == 1.0 and floor.tpr == 1.0 and floor.fpr_distance == pytest.approx(0.9)
    no_threshold = table.assign(fpr=np.nan)
    with pytest.raises(ValueError, match="no machine ID"):
        decisions.summarize_decisions(no_threshold)


def test_cost_slope_decides_between_flagging_every_clip_and_none():
    # Anomalous scores exactly like the normal ones: the ROC curve is the diagonal, slope 1.
    # Below a slope of 1 the least-cost threshold flags every clip, above it none.
    normal = anomalous = np.linspace(0.1, 1.0, 10)
    for cost_miss, flagged in ((500.0, 1.0), (50.0, 0.0)):
        slope = decisions.cost_slope(1.0, cost_miss, 0.01)
        assert (slope < 1) == (flagged == 1.0)
        pick = decisions.cost_threshold(
            normal,
            anomalous,
            cost_false_alarm=1.0,
            cost_miss=cost_miss,
            prior=0.01,
            fpr_model="empirical",
        )
        assert pick.fpr == flagged and pick.tpr == flagged
    assert decisions.cost_slope(2.0, 100.0, 0.2) == pytest.approx(2.0 * 0.8 / (100.0 * 0.2))
    with pytest.raises(ValueError, match="prior"):
        decisions.cost_slope(1.0, 10.0, 0.0)


def test_cost_references_bracket_every_threshold_on_the_same_clips():
    scores = labelled_scores()
    clips = scores[scores.machine_id == 0]
    costs = dict(cost_false_alarm=1.0, cost_miss=30.0, prior=0.05)
    lines = decisions.cost_references(clips.label, clips.score, **costs).set_index("decision")
    assert lines.loc[decisions.FLAG_ALL, "cost"] == pytest.approx(1.0 * 0.95)
    assert lines.loc["flag no clip", "cost"] == pytest.approx(30.0 * 0.05)
    y = (clips.label == "anomaly").to_numpy()
    for t in np.unique(clips.score):  # every decision on these clips costs at least the best
        c = decisions.confusion(y, clips.score, t)
        assert (
            decisions.expected_cost(c.fpr, c.tpr, **costs)
            >= lines.loc[decisions.HINDSIGHT, "cost"] - 1e-12
        )
    assert decisions.expected_cost(0.1, 0.8, **costs) == pytest.approx(0.95 * 0.1 + 1.5 * 0.2)


def test_cost_table_counts_each_cost_of_a_miss_by_hand():
    clips = labelled_scores()
    clips = clips[clips.machine_id == 0]
    normal_reference = gamma_sample(40, seed=3)
    costs = dict(cost_false_alarm=2.0, prior=0.05)
    table = decisions.cost_table(
        normal_reference, clips.label, clips.score, cost_misses=(5.0, 50.0, 500.0), **costs
    )
    assert list(table.index) == [5.0, 50.0, 500.0]
    checks = 24 * 60 * 60 / 10
    anomalous = clips.label.eq("anomaly").to_numpy()
    for cost_miss, row in table.iterrows():
        flagged = clips.score.to_numpy() > row.threshold
        fpr, tpr = flagged[~anomalous].mean(), flagged[anomalous].mean()
        assert row.tpr == pytest.approx(tpr)
        assert row.false_alarms_per_day == pytest.approx(row.fpr_gamma * checks)
        on_clips = (2.0 * 0.95 * fpr + cost_miss * 0.05 * (1 - tpr)) * checks
        assert row.cost_per_day_on_clips == pytest.approx(on_clips)
        assert row.flag_all_cost_per_day == pytest.approx(2.0 * 0.95 * checks)
        # Hindsight picks the best threshold on these very clips: nothing undercuts it there.
        assert row.hindsight_cost_per_day <= row.cost_per_day_on_clips + 1e-9
    # The dearer a miss, the lower (or no higher) the least-cost threshold.
    assert table.threshold.is_monotonic_decreasing
    with pytest.raises(ValueError, match="labels but"):
        decisions.cost_table(
            normal_reference, clips.label[:5], clips.score, cost_misses=(5.0,), **costs
        )


def test_alarm_budget_table_sets_each_ids_threshold_from_its_gamma_and_counts_the_test():
    test = labelled_scores()
    reference = pd.DataFrame({"machine_type": "fan", "machine_id": np.repeat([0, 2], 40)}).assign(
        score=np.concatenate([gamma_sample(40, seed=5), gamma_sample(40, seed=6) * 1.2])
    )
    table = decisions.alarm_budget_table(reference, test, (864, 10))
    assert list(table.index) == [864, 10, decisions.FLAG_ALL, decisions.HINDSIGHT]
    assert table.fpr_allowed[864] == pytest.approx(0.1) and table.fpr_allowed[10] == pytest.approx(
        10 / 8640
    )
    for per_day in (864, 10):  # by hand: each ID's gamma quantile, then the shares above it
        fprs, tprs, thresholds = [], [], []
        for machine_id in (0, 2):
            own = reference[reference.machine_id == machine_id].score
            threshold = decisions.gamma_threshold(own, 1 - per_day / 8640)
            clips = test[test.machine_id == machine_id]
            flagged = clips.score > threshold
            fprs.append(flagged[clips.label == "normal"].mean())
            tprs.append(flagged[clips.label == "anomaly"].mean())
            thresholds.append(threshold)
        assert table.mean_threshold[per_day] == pytest.approx(np.mean(thresholds))
        assert table.test_fpr[per_day] == pytest.approx(np.mean(fprs))
        assert table.test_tpr[per_day] == pytest.approx(np.mean(tprs))
        assert table.test_false_alarms_per_day[per_day] == pytest.approx(np.mean(fprs) * 8640)
    assert table.mean_threshold[10] > table.mean_threshold[864]  # fewer alarms, higher threshold
    flag_all = table.loc[decisions.FLAG_ALL]
    assert flag_all.test_fpr == 1 and flag_all.test_tpr == 1 and pd.isna(flag_all.mean_threshold)
    assert flag_all.test_false_alarms_per_day == pytest.approx(8640)


def test_false_alarms_per_day_of_a_machine_checked_every_ten_seconds():
    assert decisions.false_alarms_per_day(0.1) == pytest.approx(864.0)  # 8640 checks a day
    assert decisions.false_alarms_per_day(0.01, seconds_between_checks=60) == pytest.approx(14.4)
    assert decisions.fpr_for_alarms_per_day(1.0) == pytest.approx(1 / 8640)
    np.testing.assert_allclose(
        decisions.fpr_for_alarms_per_day(decisions.false_alarms_per_day([0.0, 0.05, 1.0])),
        [0.0, 0.05, 1.0],
    )
    with pytest.raises(ValueError):
        decisions.false_alarms_per_day(0.1, seconds_between_checks=0)


def test_precision_at_prevalence_by_counting():
    # 10,000 checks, 1 % of them of a faulty machine: 100 faults, 9,900 healthy checks.
    # At TPR 0.8 and FPR 0.05: 80 true alarms and 495 false ones.
    assert decisions.precision_at_prevalence(0.8, 0.05, 0.01) == pytest.approx(80 / (80 + 495))
    assert decisions.precision_at_prevalence(0.8, 0.2, 0.5) == pytest.approx(0.8)
    with pytest.raises(ValueError):
        decisions.precision_at_prevalence(0.8, 0.05, 0.0)


def test_cost_curve_by_hand():
    normal, anomaly = [1.0, 2.0, 3.0, 4.0], [2.5, 5.0]
    curve = decisions.cost_curve(
        normal, anomaly, cost_false_alarm=1, cost_miss=10, prior=0.1, fpr_model="empirical"
    )
    row = curve[(curve.threshold > 2.0) & (curve.threshold < 2.5)].iloc[0]
    # Above the threshold: normal 3, 4 (FPR 2/4) and both anomalies (TPR 1).
    assert (row.fpr, row.tpr) == (0.5, 1.0)
    assert row.cost == pytest.approx(1 * 0.9 * 0.5 + 10 * 0.1 * 0.0)
    assert curve.threshold.is_monotonic_increasing
    assert curve.fpr.iloc[0] == curve.tpr.iloc[0] == 1.0
    assert curve.fpr.iloc[-1] == curve.tpr.iloc[-1] == 0.0


def test_cost_threshold_follows_the_costs():
    normal, anomaly = [1.0, 2.0, 3.0, 4.0], [2.5, 5.0]
    common = dict(cost_false_alarm=1, fpr_model="empirical")
    cheap_misses = decisions.cost_threshold(normal, anomaly, cost_miss=1, prior=0.01, **common)
    assert cheap_misses.fpr == 0.0  # alarms cost more than the rare misses save
    dear_misses = decisions.cost_threshold(normal, anomaly, cost_miss=1000, prior=0.1, **common)
    assert dear_misses.tpr == 1.0
    assert 2.0 < dear_misses.threshold < 2.5  # the highest threshold that catches both


def test_cost_curve_with_a_gamma_model_of_the_normal_scores():
    normal = gamma_sample(30, seed=10)
    anomaly = gamma_sample(20, seed=11) + 0.7
    costs = dict(cost_false_alarm=1.0, cost_miss=50.0, prior=0.02)
    curve = decisions.cost_curve(normal, anomaly, **costs)
    shape, _, scale = decisions.gamma_fit(normal)
    np.testing.assert_allclose(curve.fpr, stats.gamma.sf(curve.threshold, shape, scale=scale))
    # No threshold on a fine grid does better than the best candidate.
    grid = np.linspace(0.0, anomaly.max() + 1, 4001)
    fpr = stats.gamma.sf(grid, shape, scale=scale)
    tpr = (anomaly[None, :] > grid[:, None]).mean(axis=1)
    grid_cost = 1.0 * 0.98 * fpr + 50.0 * 0.02 * (1 - tpr)
    best = decisions.cost_threshold(normal, anomaly, **costs)
    assert best.cost <= grid_cost.min() + 1e-12
    assert best.cost == pytest.approx(curve.cost.min())


# ------------------------------------------------------------------ the trap


def test_thresholds_from_the_training_clips_themselves_flag_new_normal_clips():
    """A detector that memorises its training data scores those clips too low."""
    rng = np.random.default_rng(7)
    train, new = rng.normal(size=(150, 3)), rng.normal(size=(2000, 3))

    def knn_score(points, exclude_self=False):
        distances = np.linalg.norm(points[:, None, :] - train[None, :, :], axis=2)
        if exclude_self:  # leave-one-out: a point's own copy is not its neighbour
            np.fill_diagonal(distances, np.inf)
        return np.sort(distances, axis=1)[:, :3].mean(axis=1)

    in_sample = decisions.gamma_threshold(knn_score(train))
    held_out = decisions.gamma_threshold(knn_score(train, exclude_self=True))
    new_scores = knn_score(new)
    all_normal = np.zeros(len(new), dtype=int)
    fpr_in_sample = decisions.confusion(all_normal, new_scores, in_sample).fpr
    fpr_held_out = decisions.confusion(all_normal, new_scores, held_out).fpr
    assert in_sample < held_out
    assert fpr_in_sample > 0.25  # the intended rate is 0.10
    assert 0.04 < fpr_held_out < 0.18


# ------------------------------------------------------------------ tables


def reference_table():
    rows = []
    for machine_id, offset in ((0, 0.0), (2, 1.0)):
        for score in gamma_sample(30, seed=machine_id) + offset:
            rows.append({"machine_type": "fan", "machine_id": machine_id, "score": score})
    return pd.DataFrame(rows)


def test_thresholds_per_id_and_per_type():
    reference = reference_table()
    per_id = decisions.fit_thresholds(reference, per="id")
    assert list(per_id.machine_id) == [0, 2]
    for machine_id, row in per_id.set_index("machine_id").iterrows():
        own = reference[reference.machine_id == machine_id].score
        assert row.threshold == pytest.approx(decisions.gamma_threshold(own))
        assert row.fitted_on == "ID" and row.n_reference == 30
    per_type = decisions.fit_thresholds(reference, "percentile", per="type")
    assert per_type.threshold.nunique() == 1
    assert per_type.threshold.iloc[0] == pytest.approx(np.quantile(reference.score, 0.9))
    assert set(per_type.n_reference) == {60}
    assert (decisions.fit_thresholds(reference, per="auto").fitted_on == "ID").all()
    auto = decisions.fit_thresholds(reference, per="auto", min_per_id=31)
    assert (auto.fitted_on == "type").all()


def test_an_id_without_reference_clips_gets_its_types_threshold_or_none():
    reference = reference_table()
    machines = pd.DataFrame({"machine_type": "fan", "machine_id": [0, 2, 6]})
    per_type = decisions.fit_thresholds(reference, per="type", machines=machines)
    assert list(per_type.machine_id) == [0, 2, 6] and per_type.threshold.nunique() == 1
    auto = decisions.fit_thresholds(reference, per="auto", machines=machines)
    assert (auto.fitted_on == "type").all()  # ID 6 has no clips: the type's threshold
    per_id = decisions.fit_thresholds(reference, per="id", machines=machines).set_index(
        "machine_id"
    )
    assert np.isnan(per_id.threshold[6]) and per_id.n_reference[6] == 0


def test_too_few_reference_clips_give_no_threshold_and_say_so():
    reference = reference_table().groupby("machine_id").head(3)
    table = decisions.fit_thresholds(reference, per="id")
    assert table.threshold.isna().all()
    assert table.fitted_on.str.contains("too few").all()
    pooled = decisions.fit_thresholds(reference, per="type")  # 6 clips: enough together
    assert pooled.threshold.notna().all()


def test_decision_table_counts_each_id_at_its_threshold():
    rng = np.random.default_rng(8)
    scores = pd.DataFrame(
        {
            "model": "dense",
            "machine_type": "fan",
            "machine_id": np.repeat([0, 2, 4], 40),
            "label": np.tile(np.repeat(["normal", "anomaly"], 20), 3),
        }
    )
    scores["score"] = rng.gamma(4, 0.25, size=len(scores)) + (scores.label == "anomaly") * 0.8
    thresholds = pd.DataFrame(
        {"machine_type": "fan", "machine_id": [0, 2], "threshold": [1.2, 1.5], "note": "x"}
    )
    table = decisions.decision_table(scores, thresholds, oracle=True)
    assert list(table.machine_id) == [0, 2, 4] and len(table) == 3
    for row in table[table.machine_id != 4].itertuples():
        clips = scores[scores.machine_id == row.machine_id]
        y = (clips.label == "anomaly").to_numpy()
        flagged = clips.score.to_numpy() > row.threshold
        assert (row.tp, row.fp) == ((flagged & y).sum(), (flagged & ~y).sum())
        assert row.f1 == pytest.approx(f1_score(y, flagged))
        assert row.false_alarms_per_day == pytest.approx(row.fpr * 8640)
        assert row.oracle_f1 >= row.f1
        assert row.note == "x" and row.n_normal == row.n_anomaly == 20
    no_threshold = table[table.machine_id == 4].iloc[0]
    assert np.isnan(no_threshold.threshold) and np.isnan(no_threshold.f1)


def test_decide_gives_each_clip_its_outcome():
    scores = pd.DataFrame(
        {
            "machine_type": "fan",
            "machine_id": [0, 0, 0, 0, 2, 6],
            "label": ["normal", "normal", "anomaly", "anomaly", "normal", "normal"],
            "score": [0.5, 1.5, 0.9, 2.0, 3.0, 1.0],
        }
    )
    thresholds = pd.DataFrame({"machine_type": "fan", "machine_id": [0, 2], "threshold": [1, 2]})
    decided = decisions.decide(scores, thresholds)
    expected = ["passed", "false alarm", "missed", "detected", "false alarm"]
    assert list(decided.outcome[:5]) == expected
    assert pd.isna(decided.outcome.iloc[5])  # ID 6 has no threshold
    np.testing.assert_allclose(decided.margin[:5], [-0.5, 0.5, -0.1, 1.0, 1.0])
    assert np.isnan(decided.margin.iloc[5])


def test_decision_table_refuses_two_thresholds_for_one_id():
    scores = pd.DataFrame(
        {"machine_type": "fan", "machine_id": [0, 0], "label": ["normal", "anomaly"], "score": 1}
    )
    thresholds = pd.DataFrame({"machine_type": "fan", "machine_id": [0, 0], "threshold": [1, 2]})
    with pytest.raises(ValueError, match="one row per"):
        decisions.decision_table(scores, thresholds)


def test_threshold_spread_of_an_order_statistic_follows_the_beta_law():
    # The 10th smallest of 11 scores (the 0.9 quantile, no interpolation) leaves above it
    # a share of the distribution that is Beta(2, 10), whatever the distribution.
    spread = decisions.threshold_spread(
        gamma_sample(200, seed=9), sizes=[11, 101], rule="percentile", n_draws=4000, level=0.8
    )
    small = spread.set_index("n").loc[11]
    law = stats.beta(2, 10)
    assert small.fpr_median == pytest.approx(law.median(), abs=0.01)
    assert small.fpr_low == pytest.approx(law.ppf(0.1), abs=0.01)
    assert small.fpr_high == pytest.approx(law.ppf(0.9), abs=0.015)
    width = spread.fpr_high - spread.fpr_low
    assert width.iloc[1] < width.iloc[0] / 2  # ten times the clips: a much tighter threshold
    np.testing.assert_allclose(spread.target_fpr, 0.1)


def test_decisions_do_not_load_tensorflow():
    code = (
        "import sys, aadlib.decisions\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ held-out scores


@pytest.mark.slow
def test_training_clips_are_marked_as_the_training_run_split_them(tiny):
    from aadlib import pipeline, training

    trained = pipeline.train_machine_type("valve", "dense", tiny, verbose=0)
    clips = pipeline.score_training_clips(trained, tiny)
    table, _ = pipeline.load_features(tiny, "valve", "train", "normal", progress=False)
    assert list(clips.path) == list(table.path)
    config = training.paper_config("dense", seed=tiny.seed)
    _, held_out = training.split_clips(len(table), config.validation_fraction, tiny.seed)
    assert set(clips.index[clips.role == "validation"]) == set(held_out)
    assert (clips.score > 0).all() and (clips.label == "normal").all()
    validation = pipeline.validation_scores(tiny, ["valve"], ["dense"])
    np.testing.assert_allclose(validation.score, clips[clips.role == "validation"].score)


@pytest.mark.slow
def test_out_of_fold_scores_cover_every_clip_once_and_are_reused(tiny):
    from aadlib import pipeline

    first = pipeline.out_of_fold_scores("valve", "dense", tiny, folds=3)
    table, _ = pipeline.load_features(tiny, "valve", "train", "normal", progress=False)
    assert sorted(map(str, first.path)) == sorted(map(str, table.path))
    per_id = first.groupby(["machine_id", "fold"]).size().unstack()
    assert per_id.shape[1] == 3 and (per_id.max(axis=1) - per_id.min(axis=1) <= 1).all()
    assert (first.role == "out_of_fold").all() and (first.score > 0).all()
    saved = tiny.results / "dense" / "valve" / "out_of_fold" / "scores.csv"
    written = saved.stat().st_mtime_ns
    again = pipeline.out_of_fold_scores("valve", "dense", tiny, folds=3)
    np.testing.assert_allclose(again.score, first.score)
    assert saved.stat().st_mtime_ns == written, "reused, not computed and written again"
    # Scores changed since they were written are not trusted: they are computed again.
    changed = pd.read_csv(saved)
    changed.loc[0, "score"] = 1e9
    changed.to_csv(saved, index=False)
    assert (pipeline.out_of_fold_scores("valve", "dense", tiny, folds=3).score < 1e6).all()
    with pytest.raises(ValueError, match="folds"):
        pipeline.out_of_fold_scores("valve", "dense", tiny, folds=50)


@pytest.mark.slow
def test_unseen_normal_clips_follow_the_set_and_are_scored_by_the_model(tiny):
    from aadlib import pipeline

    trained = pipeline.train_machine_type("valve", "dense", tiny, verbose=0)
    unseen = pipeline.unseen_normal_scores(trained, tiny, per_id=2)
    table, _ = pipeline.load_features(tiny, "valve", "train", "normal", progress=False)
    per_id = table.groupby("machine_id").size()
    assert sorted(unseen.machine_id.unique()) == sorted(per_id.index)
    for machine_id, clips in unseen.groupby("machine_id"):
        # The clips after the set's own: a larger synthetic set holds them, this one does not.
        assert sorted(clips["index"]) == [per_id[machine_id], per_id[machine_id] + 1]
    assert (unseen.score > 0).all() and (unseen.role == "unseen").all()
    again = pipeline.unseen_normal_scores(trained, tiny, per_id=2)
    np.testing.assert_allclose(again.score, unseen.score)
    real = dataclasses.replace(tiny, data="real")
    with pytest.raises(ValueError, match="synthetic"):
        pipeline.unseen_normal_scores(trained, real, per_id=2)
