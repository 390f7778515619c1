"""Tests of aadlib.explain: the true difference, the scoring rule, the explanations."""

from __future__ import annotations

import json

import keras
import librosa
import numpy as np
import pandas as pd
import pytest
from conftest import write_wav
from scipy.spatial.distance import mahalanobis
from scipy.stats import binomtest

from aadlib import detectors, explain, metrics, profiles, soundmodel
from aadlib.scoring import TrainedModel

# --------------------------------------------------------------------------------------
# The truth: anomalous clip against its clean twin
# --------------------------------------------------------------------------------------

TYPE, ID = "fan", 0


def _first_anomaly(kind: str, min_severity: float) -> int:
    for index in range(500):
        planted = soundmodel.planted_anomaly(TYPE, ID, index)
        if planted["kind"] == kind and planted["severity"] >= min_severity:
            return index
    raise AssertionError(f"no {kind} clip of severity {min_severity} in 500")


@pytest.fixture(scope="module")
def tone_twin():
    """The first strong extra_tone clip of one ID (the type's envelope is calibrated once)."""
    return explain.clean_twin(TYPE, ID, _first_anomaly("extra_tone", 0.8))


def _mel_bin(freq_hz: float) -> int:
    """The mel band whose centre is closest to a frequency, from librosa's own mel scale."""
    centres = librosa.mel_frequencies(n_mels=128 + 2, fmax=8000.0)[1:-1]
    return int(np.argmin(np.abs(centres - freq_hz)))


def test_true_difference_peaks_at_the_planted_tone(tone_twin):
    params = json.loads(json.dumps(tone_twin.info["params"]))
    difference = tone_twin.difference()
    assert difference.shape == tone_twin.log_mels()[0].shape
    per_bin = difference.mean(axis=0)
    tone_bins = [_mel_bin(params["freq_hz"]), _mel_bin(2 * params["freq_hz"])]
    peak = int(np.argmax(per_bin))
    assert min(abs(peak - b) for b in tone_bins) <= 2
    # A steady tone changes every moment of the clip, not a few.
    per_frame = explain.truth_profiles(difference)["time"]
    assert np.nanmean(per_frame >= 0.25 * np.nanmax(per_frame)) > 0.9


def test_truth_profiles_leave_out_the_padded_frames():
    difference = np.ones((10, 4))
    difference[0] = difference[-1] = 100.0  # frames whose STFT window reaches past the clip
    profiles_ = explain.truth_profiles(difference)
    assert np.isnan(profiles_["time"][[0, -1]]).all()
    np.testing.assert_allclose(profiles_["time"][1:-1], 1.0)
    np.testing.assert_allclose(profiles_["frequency"], 1.0)


def test_true_difference_is_the_twin_difference_and_zero_without_anomaly(tone_twin):
    got = explain.true_difference(TYPE, ID, tone_twin.index)
    np.testing.assert_array_equal(got, tone_twin.difference())
    # The clean twin is the anomalous clip's sound: the two differ only by the anomaly,
    # so the same render twice differs by exactly nothing.
    clean_again, _ = soundmodel.synthesize_clip(
        TYPE, ID, "anomaly", tone_twin.index, split="test", plant=False
    )
    np.testing.assert_array_equal(clean_again, tone_twin.clean)
    assert np.any(tone_twin.anomalous != tone_twin.clean)


def test_clean_twin_checks_the_file_it_is_given(tone_twin, tmp_path):
    good = write_wav(tmp_path / "good.wav", data=tone_twin.anomalous)
    explain.clean_twin(TYPE, ID, tone_twin.index, path=good)  # no error
    other = write_wav(tmp_path / "other.wav", data=tone_twin.clean)
    with pytest.raises(ValueError, match="another generator version or seed"):
        explain.clean_twin(TYPE, ID, tone_twin.index, path=other)


# --------------------------------------------------------------------------------------
# The scoring rule
# --------------------------------------------------------------------------------------


def test_collapse_averages_over_the_other_axis_and_skips_nan():
    values = np.arange(12.0).reshape(4, 3)
    values[3] = np.nan
    np.testing.assert_allclose(explain.collapse(values, "frequency"), [3.0, 4.0, 5.0])
    np.testing.assert_allclose(explain.collapse(values, "time")[:3], [1.0, 4.0, 7.0])
    assert np.isnan(explain.collapse(values, "time")[3])
    with pytest.raises(ValueError, match="axis"):
        explain.collapse(values, "space")


def test_hit_by_construction():
    truth = np.zeros(20)
    truth[5:9] = [2.0, 4.0, 3.0, 1.0]  # positions 5, 6, 7 are at least half of 4
    explanation = np.zeros(20)
    for top, expected in [(5, True), (7, True), (8, False), (15, False)]:
        explanation[:] = 0.0
        explanation[top] = 1.0
        assert metrics.hit(explanation, truth) is expected
    explanation[:] = 0.0
    explanation[8] = 1.0
    assert metrics.hit(explanation, truth, threshold=0.25)  # 1.0 >= 0.25 * 4


def test_hit_ignores_uncovered_positions_and_breaks_ties_in_the_middle():
    truth = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 9.0])
    explanation = np.array([5.0, 5.0, 5.0, 5.0, 5.0, np.nan])  # the big one uncovered
    # Without position 5 the maximum is 1 at position 2, the middle of the tie.
    assert metrics.hit(explanation, truth)
    assert metrics.random_hit_rate(truth, explanation=explanation) == pytest.approx(1 / 5)
    with pytest.raises(ValueError, match="zero everywhere"):
        metrics.hit(np.ones(4), np.zeros(4))
    with pytest.raises(ValueError, match="same length"):
        metrics.hit(np.ones(4), np.ones(5))


def test_random_reference_is_the_hit_rate_of_random_explanations():
    rng = np.random.default_rng(0)
    truth = rng.gamma(1.0, size=64)
    exact = metrics.random_hit_rate(truth)
    assert exact == pytest.approx(np.mean(truth >= 0.5 * truth.max()))
    n = 4000
    hits = sum(metrics.hit(rng.standard_normal(64), truth) for _ in range(n))
    low, high = binomtest(hits, n).proportion_ci(0.999)
    assert low <= exact <= high


def test_wilson_interval_matches_scipy():
    for hits, n in [(0, 10), (3, 10), (10, 10), (37, 120)]:
        expected = binomtest(hits, n).proportion_ci(0.95, method="wilson")
        got = metrics.wilson_interval(hits, n)
        assert got == pytest.approx((expected.low, expected.high), abs=1e-9)
    assert all(np.isnan(metrics.wilson_interval(0, 0)))


# --------------------------------------------------------------------------------------
# Explanations
# --------------------------------------------------------------------------------------


def test_mahalanobis_contributions_sum_to_the_squared_distance():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 6))
    covariance = a @ a.T + 0.5 * np.eye(6)
    precision = np.linalg.inv(covariance)
    mean = rng.standard_normal(6)
    x = rng.standard_normal((3, 6))
    terms = explain.mahalanobis_contributions(x, mean, precision)
    for row, t in zip(x, terms, strict=True):
        assert t.sum() == pytest.approx(mahalanobis(row, mean, precision) ** 2)
    groups = np.array([0, 1, 2, 0, 1, 2])  # e.g. the mean and the std of three bins
    grouped = explain.mahalanobis_contributions(x[0], mean, precision, groups)
    assert grouped.shape == (3,)
    assert grouped[0] == pytest.approx(terms[0][0] + terms[0][3])
    assert grouped.sum() == pytest.approx(terms[0].sum())


def test_mahalanobis_contributions_blame_the_deviating_feature():
    # Independent features: the contribution of feature i is its squared z-score.
    std = np.array([1.0, 2.0, 0.5, 1.0])
    x = np.array([0.0, 2.0, 0.0, 3.0])
    terms = explain.mahalanobis_contributions(x, np.zeros(4), np.diag(1 / std**2))
    np.testing.assert_allclose(terms, [0.0, 1.0, 0.0, 9.0])


def _band_energy_score(bins: slice, frames: slice = slice(None)):
    def score(stack):
        return stack[:, frames, bins].mean(axis=(1, 2))

    return score


def test_occlusion_finds_a_planted_band_in_frequency_and_time():
    rng = np.random.default_rng(2)
    normal = rng.normal(-40.0, 1.0, (100, 64)).astype(np.float32)
    clip = normal.copy()
    clip[30:50, 20:28] += 20.0  # the anomaly: bins 20-27, frames 30-49
    score = _band_energy_score(slice(20, 28), slice(30, 50))
    per_bin = explain.occlusion(score, clip, band_width=4, fill=normal.mean(axis=0))
    assert per_bin.shape == (64,)
    assert 20 <= int(np.argmax(per_bin)) < 28
    assert np.allclose(per_bin[:16], 0.0) and np.allclose(per_bin[32:], 0.0)
    per_frame = explain.occlusion(score, clip, band_width=10, fill=normal, axis="time")
    assert per_frame.shape == (100,)
    assert 30 <= int(np.argmax(per_frame)) < 50
    # Replacing the anomalous band by normal sound removes the whole excess.
    full = explain.occlusion(score, clip, band_width=64, fill=normal)
    assert full[0] == pytest.approx(20.0, rel=1e-3)


def test_occlusion_checks_the_score_function_and_the_fill():
    clip = np.zeros((10, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="one score per spectrogram"):
        explain.occlusion(lambda stack: np.zeros(2), clip, 2, np.zeros(8))
    with pytest.raises(ValueError, match="fill must be"):
        explain.occlusion(lambda stack: np.zeros(len(stack)), clip, 2, np.zeros(7))


def _zero_model(kind: str) -> TrainedModel:
    """An 'autoencoder' that rebuilds every input as zeros: its error is the input squared."""
    shape = (5 * 128,) if kind != "cnn" else (32, 128, 1)
    model = keras.Sequential([keras.Input(shape), keras.layers.Rescaling(0.0)])
    return TrainedModel(kind, TYPE, model, None, pd.DataFrame(), None, 0.0)


@pytest.mark.parametrize("kind, hop", [("dense", 1), ("cnn", 16)])
def test_error_map_explanation_subtracts_the_normal_reference(kind, hop):
    rng = np.random.default_rng(3)
    logmel = rng.standard_normal((100, 128)).astype(np.float32)
    by_frame, by_bin = rng.random(90), rng.random(128)
    reference = explain.NormalReference(by_frame, by_bin)
    got = explain.error_map_explanation(_zero_model(kind), logmel, reference, hop)
    expected = logmel.astype(np.float64) ** 2 - reference.error_map(100)
    # CNN patches every 16 frames from 0 to 64 cover frames 0-95 only.
    covered = 100 if kind == "dense" else 96
    np.testing.assert_allclose(got[:covered], expected[:covered], rtol=1e-5, atol=1e-5)
    assert np.all(np.isnan(got[covered:]))


def test_normal_reference_map_is_the_additive_fit():
    by_frame = np.array([1.0, 2.0, np.nan])
    by_bin = np.array([0.5, 1.5])
    reference = explain.NormalReference(by_frame, by_bin)
    got = reference.error_map(4)
    # row mean + column mean - grand mean (grand mean of the bins: 1.0); frames beyond
    # the reference (and uncovered ones) take the mean over frames, 1.5.
    expected = np.array([[0.5, 1.5], [1.5, 2.5], [1.0, 2.0], [1.0, 2.0]])
    np.testing.assert_allclose(got[[0, 1, 3]], expected[[0, 1, 3]])


def test_normal_clips_are_held_out_training_clips(data_root, tmp_path):
    profile = profiles.resolve("tiny", home=tmp_path / "home", data_root=data_root)
    clips = explain.normal_clips(profile, "ToyCar", n_clips=5)
    assert 1 <= len(clips) <= 5
    assert len(set(clips)) == len(clips)
    assert all(p.parent.name == "train" and p.name.startswith("normal_") for p in clips)
    assert clips == explain.normal_clips(profile, "ToyCar", n_clips=5)


# --------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------


def _anomalies() -> pd.DataFrame:
    rows = []
    for mtype in ("fan", "pump", "valve"):
        for index in range(12):
            kind = ("extra_tone", "knocks")[index % 2]
            rows.append(
                {
                    "machine_type": mtype,
                    "machine_id": 0,
                    "file": f"test/anomaly_id_00_{index:08d}.wav",
                    "kind": kind,
                    "severity": 0.5,
                }
            )
    return pd.DataFrame(rows)


def test_sample_anomalies_takes_each_kind_from_every_type():
    chosen = explain.sample_anomalies(_anomalies(), per_kind=4, seed=1)
    assert chosen.groupby("kind").size().to_dict() == {"extra_tone": 4, "knocks": 4}
    for _, part in chosen.groupby("kind"):
        assert set(part.machine_type) == {"fan", "pump", "valve"}
    assert set(chosen["index"][chosen.kind == "knocks"] % 2) == {1}
    again = explain.sample_anomalies(_anomalies(), per_kind=4, seed=1)
    pd.testing.assert_frame_equal(chosen, again)
    everything = explain.sample_anomalies(_anomalies(), per_kind=100)
    assert len(everything) == len(_anomalies())


def test_hit_rates_count_hits_and_average_the_random_rate():
    results = pd.DataFrame(
        {
            "kind": ["a", "a", "a", "b"],
            "method": ["m"] * 4,
            "axis": ["frequency"] * 4,
            "hit": [True, False, True, True],
            "random": [0.1, 0.2, 0.3, 0.5],
        }
    )
    rates = explain.hit_rates(results).set_index("kind")
    assert rates.loc["a", "n"] == 3 and rates.loc["a", "hits"] == 2
    assert rates.loc["a", "random"] == pytest.approx(0.2)
    assert rates.loc["all kinds", "n"] == 4
    assert rates.loc["all kinds", "rate"] == pytest.approx(0.75)
    low, high = metrics.wilson_interval(2, 3)
    assert (rates.loc["a", "low"], rates.loc["a", "high"]) == pytest.approx((low, high))
    assert rates.loc["a", "beyond_random"] == (low > 0.2)
    table = explain.hit_rate_table(rates.reset_index(), "frequency")
    assert list(table.index) == ["a", "b", "all kinds"]
    assert list(table.columns) == ["m", "random", "n"]
    with pytest.raises(ValueError, match="time"):
        explain.hit_rate_table(rates.reset_index(), "time")


def test_bin_contributions_of_the_detector_sum_to_its_squared_score():
    rng = np.random.default_rng(4)
    train = [rng.normal(-40.0, 3.0, (40, 16)).astype(np.float32) for _ in range(12)]
    detector = detectors.MahalanobisDetector().fit(train, np.zeros(12, dtype=int))
    clip = rng.normal(-40.0, 3.0, (40, 16)).astype(np.float32)
    clip[:, 5] += 12.0  # one loud bin
    per_bin = explain.bin_contributions(detector, clip, 0)
    assert per_bin.shape == (16,)
    score = detector.score([clip], [0])[0]
    assert per_bin.sum() == pytest.approx(score**2, rel=1e-9)
    assert int(np.argmax(per_bin)) == 5
    with pytest.raises(ValueError, match="no Gaussian for machine ID 3"):
        explain.bin_contributions(detector, clip, 3)


def test_scorers_score_a_stack_like_the_detector_and_the_model():
    rng = np.random.default_rng(5)
    stack = rng.standard_normal((3, 40, 128)).astype(np.float32)
    ae = explain.autoencoder_scorer(_zero_model("dense"), hop=5)
    # The zero model's window error is the mean square of the window's values; windows
    # every 5 frames of 5 frames tile the first 40 frames exactly.
    np.testing.assert_allclose(ae(0, stack), (stack.astype(np.float64) ** 2).mean(axis=(1, 2)))
    train = [rng.standard_normal((40, 128)).astype(np.float32) for _ in range(6)]
    detector = detectors.MahalanobisDetector().fit(train, np.full(6, 2))
    got = explain.detector_scorer(detector)(2, stack)
    np.testing.assert_allclose(got, detector.score(list(stack), [2, 2, 2]))


def _explained(kind: str, index: int, top_bin: int, severity: float = 0.5):
    truth = np.zeros(10)
    truth[3:5] = [2.0, 1.5]  # bins 3 and 4 are the anomaly
    explanation = np.zeros(10)
    explanation[top_bin] = 1.0
    return explain.ExplainedClip(
        "fan", 0, index, kind, severity, {"frequency": truth}, {"m": {"frequency": explanation}}
    )


def test_evaluate_scores_each_explanation_against_its_truth():
    explained = [_explained("extra_tone", 0, 3), _explained("knocks", 1, 8)]
    results = explain.evaluate(explained)
    assert list(results["hit"]) == [True, False]
    assert list(results["top"]) == [3, 8]
    np.testing.assert_allclose(results["random"], [0.2, 0.2])
    # A looser rule counts more bins as the anomaly: a random bin hits more often.
    loose = explain.evaluate(explained, threshold=0.1)
    assert (loose["random"] >= results["random"]).all()


def test_choose_examples_picks_clips_by_what_they_show():
    explained = [
        _explained("extra_tone", 0, 8, severity=0.9),  # missed
        _explained("extra_tone", 1, 4, severity=0.2),  # hit
        _explained("knocks", 2, 9, severity=0.7),  # missed, less severe
        _explained("amplitude_modulation", 3, 3, severity=0.4),
        _explained("amplitude_modulation", 4, 3, severity=0.6),
    ]
    chosen = explain.choose_examples(explain.evaluate(explained)).set_index("role")
    assert chosen.loc["explained", "index"] == 1
    assert chosen.loc["missed", "index"] == 0  # the most severe of the missed clips
    assert chosen.loc["amplitude modulation", "index"] == 4


def test_hit_rates_mark_methods_below_random():
    results = pd.DataFrame(
        {
            "kind": ["a"] * 40,
            "method": ["m"] * 40,
            "axis": ["frequency"] * 40,
            "hit": [False] * 38 + [True] * 2,
            "random": [0.6] * 40,
        }
    )
    rates = explain.hit_rates(results).set_index("kind")
    assert rates.loc["a", "below_random"] and not rates.loc["a", "beyond_random"]
    table = explain.hit_rate_table(rates.reset_index(), "frequency")
    assert table.loc["a", "m"].endswith(" v")
    # A method within the noise of random is marked neither way.
    results["hit"] = [True] * 24 + [False] * 16
    rates = explain.hit_rates(results).set_index("kind")
    assert not rates.loc["a", "below_random"] and not rates.loc["a", "beyond_random"]
    cell = explain.hit_rate_table(rates.reset_index(), "frequency").loc["a", "m"]
    assert not cell.endswith(("*", " v"))


def test_where_methods_point_finds_a_favourite_stretch_away_from_the_anomaly():
    # The anomaly fills bins 3 and 4; the method always points at bin 8 or 9.
    explained = [_explained("extra_tone", i, 8 + i % 2) for i in range(6)]
    explained.append(_explained("extra_tone", 6, 3))
    row = explain.where_methods_point(explained, parts=5).iloc[0]
    assert row["n"] == 7 and row["favourite"] == "8:9"
    assert row["favourite_share"] == pytest.approx(6 / 7)
    # At the top: the truth of bin 3 (its maximum) once, nothing six times.
    assert row["truth_at_top"] == pytest.approx(1 / 7)
    assert row["truth_at_random"] == pytest.approx((2.0 + 1.5) / 10 / 2.0)
    assert row["relevant_at_favourite"] == 0.0
