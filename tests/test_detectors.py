"""Detectors beside the autoencoders: Gaussians, mixtures, the ID classifier, ensembles."""

from __future__ import annotations

import dataclasses
import inspect
import re

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from scipy.spatial.distance import mahalanobis
from scipy.stats import rankdata
from sklearn.covariance import ledoit_wolf

from aadlib import data, detectors, pipeline, profiles, published, tables, training, wording
from aadlib.batches import WindowBatches
from aadlib.features import LogMelSet, stack_frames

N_MELS = 128


def _clips(means, n_frames=40, seed=0, spread=1.0):
    """One clip per entry of ``means`` (a per-bin mean profile), Gaussian frames around it."""
    rng = np.random.default_rng(seed)
    arrays = [m + spread * rng.standard_normal((n_frames, N_MELS)) for m in means]
    return LogMelSet.from_arrays([a.astype(np.float32) for a in arrays], range(len(arrays)))


def _profile(machine_id: int) -> np.ndarray:
    """A mel profile with a bump whose place depends on the machine ID."""
    profile = np.zeros(N_MELS)
    profile[10 + 25 * machine_id : 16 + 25 * machine_id] = 8.0
    return profile


# --------------------------------------------------------------------------------------
# Gaussians
# --------------------------------------------------------------------------------------


def test_clip_statistics_are_each_bins_mean_and_std():
    logmels = _clips([np.zeros(N_MELS), np.ones(N_MELS)], seed=1)
    stats = detectors.clip_statistics(logmels)
    assert stats.shape == (2, 2 * N_MELS)
    for i in range(2):
        clip = logmels.clip(i).astype(np.float64)
        np.testing.assert_allclose(stats[i, :N_MELS], clip.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(stats[i, N_MELS:], clip.std(axis=0), rtol=1e-6)


def test_mahalanobis_distance_matches_scipy():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    covariance = a @ a.T + 0.5 * np.eye(6)
    precision = np.linalg.inv(covariance)
    mean = rng.standard_normal(6)
    x = rng.standard_normal((5, 6))
    expected = [mahalanobis(row, mean, precision) for row in x]
    np.testing.assert_allclose(detectors.mahalanobis_distances(x, mean, precision), expected)


def test_fit_gaussian_is_ledoit_wolf_on_standardised_features():
    rng = np.random.default_rng(1)
    # Fewer samples than dimensions, features on different scales, as clip statistics.
    x = rng.standard_normal((12, 30)) * np.linspace(0.5, 20, 30) + 40
    fit = detectors.fit_gaussian(x)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    covariance, shrinkage = ledoit_wolf(z)
    assert fit.shrinkage == pytest.approx(shrinkage)
    assert 0 < fit.shrinkage < 1
    np.testing.assert_allclose(fit.precision, np.linalg.inv(covariance), rtol=1e-6)
    probe = rng.standard_normal((3, 30)) * 5 + 40
    zp = (probe - x.mean(axis=0)) / x.std(axis=0)
    expected = [mahalanobis(row, z.mean(axis=0), np.linalg.inv(covariance)) for row in zp]
    np.testing.assert_allclose(fit.distances(probe), expected, rtol=1e-6)


def test_mahalanobis_detector_models_each_id_apart():
    train = _clips([_profile(i % 2) for i in range(16)], seed=2)
    train_ids = np.array([i % 2 for i in range(16)])
    detector = detectors.MahalanobisDetector().fit(train, train_ids)
    assert set(detector.gaussians) == {0, 1}
    test = _clips([_profile(0), _profile(0) + 3.0, _profile(1)], seed=3)
    scores = detector.score(test, [0, 0, 1])
    assert scores[1] > 3 * scores[0]  # a louder clip is far from ID 0's Gaussian
    # A normal clip of ID 1 is close to ID 1's Gaussian and far from ID 0's.
    as_other = detector.score(_clips([_profile(1)], seed=3), [0])
    assert as_other[0] > 3 * scores[2]
    with pytest.raises(ValueError, match="not in the training clips"):
        detector.score(test, [0, 0, 7])


# --------------------------------------------------------------------------------------
# PCA + GMM
# --------------------------------------------------------------------------------------

GMM = detectors.GmmSettings(
    fit_hop=2, score_hop=2, pca_components=4, mixture_components=2, max_vectors=500
)


def test_gmm_scores_out_of_distribution_clips_higher():
    train = _clips([_profile(0)] * 8, seed=4)
    detector = detectors.GmmDetector(GMM).fit(train, np.zeros(8))
    test = _clips([_profile(0), _profile(0), _profile(1), _profile(0) * 2], seed=5)
    scores = detector.score(test, np.zeros(4))
    assert max(scores[:2]) < min(scores[2:])


def test_gmm_score_is_the_mean_negative_log_likelihood_of_a_clips_vectors():
    train = _clips([_profile(1)] * 6, seed=6)
    detector = detectors.GmmDetector(GMM).fit(train, np.ones(6))
    test = _clips([_profile(1)], seed=7)
    pca, mixture = detector.models[1]
    vectors = stack_frames(test.clip(0), 5, GMM.score_hop)
    expected = -mixture.score_samples(pca.transform(vectors)).mean()
    assert detector.score(test, [1])[0] == pytest.approx(expected)


def test_gmm_training_vectors_are_a_capped_sample_of_the_ids_vectors():
    settings = dataclasses.replace(GMM, max_vectors=25)
    train = _clips([_profile(0)] * 4, n_frames=30, seed=8)
    detector = detectors.GmmDetector(settings)
    clips = np.arange(4)
    vectors = detector._training_vectors(train, clips, np.random.default_rng(0))
    every = np.concatenate([stack_frames(train.clip(c), 5, settings.fit_hop) for c in clips])
    assert vectors.shape == (25, 5 * N_MELS) and len(every) > 25
    assert all(any(np.array_equal(v, w) for w in every) for v in vectors)
    assert len({v.tobytes() for v in vectors}) == 25  # drawn without replacement


# --------------------------------------------------------------------------------------
# The ID classifier
# --------------------------------------------------------------------------------------


def test_split_by_id_holds_out_part_of_every_id():
    ids = np.array([0] * 10 + [1] * 5 + [2] * 2)
    train, val = detectors.split_by_id(ids, 0.2, seed=3)
    assert set(train).isdisjoint(val) and sorted([*train, *val]) == list(range(len(ids)))
    assert {int(i): int((ids[val] == i).sum()) for i in (0, 1, 2)} == {0: 2, 1: 1, 2: 1}
    again = detectors.split_by_id(ids, 0.2, seed=3)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], val)


def test_labelled_batches_carry_the_ids_of_their_patches_clips():
    # Each clip's frames hold its ID code, so a patch's mean says which clip it came from.
    codes = np.array([0, 1, 2, 1, 0, 2, 2])
    arrays = [np.full((40 + 3 * i, N_MELS), float(c), np.float32) for i, c in enumerate(codes)]
    logmels = LogMelSet.from_arrays(arrays, range(len(arrays)))
    windows = WindowBatches(
        logmels, "cnn", hop=2, batch_size=5, shuffle=True, seed=1, targets=False
    )
    # The private batch builder: the classifier's fit hides its batches from the outside.
    dataset = detectors._labelled_dataset(windows, codes)
    for _ in range(2):  # two epochs, two different orders
        seen = 0
        for x, y in dataset:
            np.testing.assert_array_equal(x.numpy().mean(axis=(1, 2, 3)), y.numpy())
            seen += len(y)
        assert seen == len(windows.starts)


def _toy_ids(n_per_id=8, seed=0, n_frames=48):
    ids = np.repeat([0, 1, 2], n_per_id)
    return _clips([_profile(i) for i in ids], n_frames=n_frames, seed=seed), ids


TOY = detectors.IdClassifierSettings(
    epochs=6,
    patience=None,
    train_hop=2,
    score_hop=4,
    batch_size=16,
    learning_rate=3e-3,
    validation_fraction=0.25,
    filters=(4, 8),
    embedding_units=8,
    bn_momentum=0.9,
)


@pytest.fixture(scope="module")
def toy_classifier():
    train, ids = _toy_ids()
    return detectors.IdClassifierDetector(TOY, seed=0).fit(train, ids)


@pytest.mark.slow
def test_id_classifier_learns_a_separable_toy_problem(toy_classifier):
    test, ids = _toy_ids(n_per_id=3, seed=11)
    predicted = [toy_classifier.probabilities(test.clip(i)).mean(axis=0).argmax() for i in range(9)]
    assert np.mean(np.array(predicted) == ids) >= 8 / 9
    history = toy_classifier.history
    assert {"loss", "val_loss", "val_accuracy", "seconds"} <= set(history.columns)
    assert history.loc[history.epoch == toy_classifier.best_epoch, "val_loss"].item() == (
        history.val_loss.min()
    )


@pytest.mark.slow
def test_id_classifier_score_is_minus_log_p_of_the_own_id(toy_classifier):
    test, ids = _toy_ids(n_per_id=2, seed=12)
    scores = toy_classifier.scores(test, ids)
    for i in range(len(ids)):
        probabilities = toy_classifier.probabilities(test.clip(i), hop=TOY.score_hop)
        expected = -np.log(probabilities[:, ids[i]]).mean()
        assert scores["id-classifier"][i] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    # A clip of ID 0 that sounds like ID 1 loses its ID cue: a high score, both ways.
    disturbed = _clips([_profile(1)], n_frames=48, seed=13)
    odd = toy_classifier.scores(disturbed, [0])
    normal = scores["id-classifier"][ids == 0]
    assert odd["id-classifier"][0] > normal.max()
    assert odd["id-embedding"][0] > scores["id-embedding"][ids == 0].max()


@pytest.mark.slow
def test_id_classifier_saves_and_loads_for_its_record_only(toy_classifier, tmp_path):
    record = {"data": "abc", "seed": 0}
    toy_classifier.save(tmp_path, record)
    assert detectors.IdClassifierDetector.load(tmp_path, {"data": "other"}, TOY) is None
    loaded = detectors.IdClassifierDetector.load(tmp_path, record, TOY)
    assert loaded.reused and not toy_classifier.reused
    test, ids = _toy_ids(n_per_id=2, seed=14)
    for name, values in toy_classifier.scores(test, ids).items():
        np.testing.assert_allclose(loaded.scores(test, ids)[name], values, rtol=1e-5)
    (tmp_path / "scaler.npz").write_bytes(b"tampered")
    with pytest.raises(training.ModelFileError, match="scaler.npz"):
        detectors.IdClassifierDetector.load(tmp_path, record, TOY)
    (tmp_path / "history.csv").unlink()
    with pytest.raises(training.ModelFileError, match="history.csv gone"):
        detectors.IdClassifierDetector.load(tmp_path, record, TOY)


def test_id_classifier_model_keeps_the_frequency_axis():
    model = detectors.build_id_classifier(4, filters=(4, 8), embedding_units=8)
    assert model.output_shape == (None, 4)
    assert model.get_layer("frequency_profile").output.shape[1] == (N_MELS // 4) * 8
    with pytest.raises(ValueError, match="two machine IDs"):
        detectors.build_id_classifier(1)


def test_no_fit_accepts_test_data_or_labels():
    for cls in (
        detectors.MahalanobisDetector,
        detectors.GmmDetector,
        detectors.IdClassifierDetector,
    ):
        parameters = list(inspect.signature(cls.fit).parameters)
        assert parameters[:3] == ["self", "logmels", "machine_ids"]
        assert not [p for p in parameters if re.search("label|test|anomal|y_true", p)]


# --------------------------------------------------------------------------------------
# Ensembles
# --------------------------------------------------------------------------------------


def _scores_table(values: dict[str, list[float]], ids, labels) -> pd.DataFrame:
    rows = []
    for model, scores in values.items():
        for index, (machine_id, label, score) in enumerate(zip(ids, labels, scores)):
            rows.append(("pump", machine_id, label, index, f"clip{index}.wav", score, model))
    return pd.DataFrame(
        rows, columns=["machine_type", "machine_id", "label", "index", "path", "score", "model"]
    )


def test_rank_average_averages_the_ranks_within_each_id():
    ids = [0, 0, 0, 0, 2, 2, 2]
    labels = ["normal", "anomaly", "normal", "anomaly", "normal", "anomaly", "anomaly"]
    a = [0.1, 5.0, 0.3, 0.3, 10.0, 20.0, 30.0]
    b = [-3.0, -1.0, -2.0, -4.0, 100.0, 50.0, 75.0]
    combined = detectors.rank_average(_scores_table({"a": a, "b": b}, ids, labels), "a", "b")
    assert set(combined.model) == {"a + b"} and len(combined) == len(ids)
    expected = []
    for group in ([0, 1, 2, 3], [4, 5, 6]):
        ra = rankdata(np.array(a)[group]) / len(group)
        rb = rankdata(np.array(b)[group]) / len(group)
        expected += list((ra + rb) / 2)
    np.testing.assert_allclose(combined.sort_values("index").score, expected)


def test_rank_average_uses_no_label_and_keeps_a_detectors_order():
    ids = [1] * 6
    labels = ["normal"] * 3 + ["anomaly"] * 3
    a = [0.2, 0.1, 0.5, 0.9, 0.4, 0.7]
    table = _scores_table({"a": a, "a_cubed": list(np.power(a, 3) * 1e3)}, ids, labels)
    combined = detectors.rank_average(table, "a", "a_cubed", name="same")
    # A monotone transform has the same ranks: the ensemble orders clips as ``a`` does.
    assert list(np.argsort(combined.score.to_numpy())) == list(np.argsort(a))
    flipped = table.assign(label=table.label.map({"normal": "anomaly", "anomaly": "normal"}))
    flipped_scores = detectors.rank_average(flipped, "a", "a_cubed", name="same").score
    np.testing.assert_array_equal(flipped_scores.to_numpy(), combined.score.to_numpy())
    per_id = tables.per_id_table(pd.concat([table, combined]))
    assert per_id.loc[per_id.model == "same", "auc"].iloc[0] == pytest.approx(
        per_id.loc[per_id.model == "a", "auc"].iloc[0]
    )


def test_rank_average_refuses_different_clips():
    table = _scores_table({"a": [1.0, 2.0]}, [0, 0], ["normal", "anomaly"])
    other = _scores_table({"b": [1.0]}, [0], ["normal"])
    with pytest.raises(ValueError, match="same clips"):
        detectors.rank_average(pd.concat([table, other]), "a", "b")


def test_ensembles_are_every_pair():
    values = {m: list(np.random.default_rng(i).random(4)) for i, m in enumerate("xyz")}
    table = _scores_table(values, [0] * 4, ["normal", "anomaly"] * 2)
    assert set(detectors.ensembles(table, "xyz").model) == {"x + y", "x + z", "y + z"}


def _averages(values: dict[tuple[str, str], float]) -> pd.DataFrame:
    """A per_id_table-like frame of per-type averages, with intervals of +-2 points."""
    rows = [
        {
            "model": model,
            "machine_type": machine_type,
            "machine_id": "average",
            "auc": v,
            "auc_low": v - 2,
            "auc_high": v + 2,
        }
        for (model, machine_type), v in values.items()
    ]
    return pd.DataFrame(rows)


def test_ensemble_gains_compare_an_ensemble_with_its_better_member():
    per_id = _averages(
        {
            ("a", "pump"): 80.0,
            ("b", "pump"): 70.0,
            ("a + b", "pump"): 78.0,
            ("a", "fan"): 60.0,
            ("b", "fan"): 62.0,
            ("a + b", "fan"): 66.0,
        }
    )
    gains = detectors.ensemble_gains(per_id).set_index("machine_type")
    assert gains.loc["pump", "gap"] == pytest.approx(10) and gains.loc["pump", "gain"] == -2
    assert gains.loc["fan", "gap"] == pytest.approx(2) and gains.loc["fan", "gain"] == 4
    assert (gains[["first", "second"]].to_numpy() == ["a", "b"]).all()


def test_gains_by_gap_splits_the_ensembles_at_the_median_gap():
    gains = pd.DataFrame({"gap": [0.5, 1.0, 3.0, 4.0, 8.0], "gain": [1.0, -0.5, 2.0, -1.0, -3.0]})
    by_gap = detectors.gains_by_gap(gains)
    assert list(by_gap.index) == ["close", "far"]
    assert by_gap.loc["close", "gap_up_to"] == 3.0 and by_gap.loc["far", "gap_up_to"] == 8.0
    assert list(by_gap.cases) == [3, 2]
    assert by_gap.loc["close", "better_share"] == pytest.approx(2 / 3)
    assert by_gap.loc["close", "mean_gain"] == pytest.approx(2.5 / 3)
    assert by_gap.loc["far", "better_share"] == 0 and by_gap.loc["far", "mean_gain"] == -2.0


def test_summary_table_shows_intervals_per_type_and_the_mean():
    per_id = _averages({("x", "valve"): 81.25, ("x", "fan"): 70.0, ("y", "fan"): 50.0})
    table = tables.summary_table(per_id, models=["y", "x"])
    assert list(table.index) == ["y", "x"] and list(table.columns) == ["fan", "valve", "mean"]
    assert table.loc["x", "valve"] == "81.2 [79.2,\u00a083.2]"
    assert table.loc["x", "mean"] == "75.6" and pd.isna(table.loc["y", "valve"])
    # With rows over all types (per_id_table(..., overall=True)) the mean has its interval.
    over_types = pd.DataFrame(
        [{"model": "x", "machine_type": tables.OVERALL, "machine_id": "average", "auc": 75.625,
          "auc_low": 73.0, "auc_high": 78.5}]
    )  # fmt: skip
    table = tables.summary_table(pd.concat([per_id, over_types]), models=["y", "x"])
    assert list(table.columns) == ["fan", "valve", "mean"]
    assert table.loc["x", "mean"] == "75.6 [73.0,\u00a078.5]" and table.loc["y", "mean"] == "50.0"


def test_noise_counts_and_difference_table_read_paired_comparisons():
    def comparison(diffs):
        return pd.DataFrame(
            [
                {
                    "machine_type": t,
                    "machine_id": "average",
                    "auc_diff": d,
                    "auc_diff_low": d - 1,
                    "auc_diff_high": d + 1,
                    "beyond_noise": abs(d) > 1,
                }
                for t, d in diffs.items()
            ]
        )

    comparisons = {"m": comparison({"fan": 3.0, "pump": -2.0, "valve": 0.5, "all types": -1.5})}
    counts = tables.noise_counts(comparisons)
    assert counts.loc["m"].to_dict() == {
        "better": 1,
        "worse": 1,
        "within_noise": 1,
        "undecided": 0,
        "types": 3,
        "overall": "worse",
    }
    table = tables.difference_table(comparisons)
    assert list(table.columns) == ["fan", "pump", "valve", "all types"]
    assert table.loc["m", "fan"] == "+3.0 [+2.0, +4.0] *"
    assert table.loc["m", "valve"] == "+0.5 [-0.5, +1.5]"
    without = tables.noise_counts({"m": comparison({"fan": 0.0})})
    assert without.loc["m", "overall"] == "" and without.loc["m", "within_noise"] == 1


def _decreasing_then(extra, start=1.0, n=8):
    """A history whose validation loss falls by a fifth each epoch, then ``extra``."""
    loss = [start * 0.8**k for k in range(n)] + list(extra)
    return pd.DataFrame(
        {
            "epoch": np.arange(1, len(loss) + 1),
            "loss": loss,
            "accuracy": np.linspace(0.3, 1.0, len(loss)),
            "val_loss": loss,
            "val_accuracy": np.linspace(0.3, 0.5, len(loss)),
        }
    )


def _with_history(history) -> detectors.IdClassifierDetector:
    detector = detectors.IdClassifierDetector(TOY)
    detector.history, detector.ids = history, np.arange(3)
    return detector


def test_id_classifier_status_is_the_autoencoders_criterion_on_its_history():
    still_falling = _with_history(_decreasing_then([]))
    levelled = _with_history(_decreasing_then([0.8**7] * 4))
    for detector in (still_falling, levelled):
        assert detector.status == training.learning_status(detector.history)
    assert still_falling.status == "improving" and levelled.status == "plateau"
    # A noisy validation loss that bounces back without beating its best has stopped.
    bounced = _with_history(_decreasing_then([0.5, 0.4, 0.3], n=8))
    assert bounced.status == "plateau"
    table = detectors.training_table({"fan": still_falling, "pump": levelled})
    assert table.loc["fan", "status"] == "improving" and table.loc["pump", "status"] == "plateau"
    assert table.loc["pump", "epochs_run"] == 12 and table.loc["pump", "epoch_cap"] == TOY.epochs
    kept = levelled.history.loc[levelled.history.epoch == levelled.best_epoch].iloc[0]
    assert table.loc["pump", "train_accuracy"] == kept.accuracy


def test_learning_status_is_the_fall_of_the_best_loss_over_the_last_epochs():
    assert training.learning_status(pd.DataFrame({"val_loss": [1.0, 0.9, 0.8, 0.7]})) == "improving"
    assert training.learning_status(pd.DataFrame({"val_loss": [1.0, 0.7, 0.7, 0.695]})) == "plateau"
    # Rising, then falling back to just under the best by less than the tolerance.
    assert training.learning_status(pd.DataFrame({"val_loss": [0.5, 0.9, 0.8, 0.495]})) == "plateau"
    assert (
        training.learning_status(pd.DataFrame({"val_loss": [0.5, 0.9, 0.8, 0.45]})) == "improving"
    )
    assert training.learning_status(pd.DataFrame({"loss": [1.0, 0.5]})) == "too short"
    # Never beat its first epoch: a jump after it, still on its way back (a real Dense AE
    # run with a noisy validation loss, stopped by a patience of 3).
    jumped = pd.DataFrame({"val_loss": [0.768, 4.10, 1.61, 0.804]})
    assert training.learning_status(jumped) == "too short"
    assert pipeline.learning_status is training.learning_status


def test_an_id_classifier_that_stopped_improving_makes_its_comparisons_undecided():
    fitted = {
        "fan": _with_history(_decreasing_then([])),
        "pump": _with_history(_decreasing_then([0.8**7] * 4)),
    }
    statuses = detectors.learning_statuses(fitted, [("mahalanobis", "id-embedding")])
    improving = statuses[statuses.status == "improving"]
    assert set(improving.machine_type) == {"fan"}
    assert set(improving.model) == {"id-classifier", "id-embedding", "mahalanobis + id-embedding"}
    rng = np.random.default_rng(0)
    rows = []
    for machine_type in ("fan", "pump"):
        for index in range(40):
            label = "anomaly" if index % 2 else "normal"
            for model in ("id-classifier", "dense"):
                score = rng.normal() + (2.0 if label == "anomaly" else 0.0)
                rows.append(
                    {
                        "model": model,
                        "machine_type": machine_type,
                        "machine_id": 0,
                        "label": label,
                        "index": index,
                        "score": score,
                    }
                )
    scores = pd.DataFrame(rows)
    comparison = tables.compare_models(
        scores, "id-classifier", "dense", n_boot=50, training=statuses
    )
    table = tables.difference_table({"id-classifier": comparison})
    assert table.loc["id-classifier", "fan"].endswith(" undecided")
    assert not table.loc["id-classifier", "pump"].endswith(" undecided")
    counts = tables.noise_counts({"id-classifier": comparison})
    assert counts.loc["id-classifier", "undecided"] == 1
    assert counts.loc["id-classifier", ["better", "worse", "within_noise"]].sum() == 1
    assert counts.loc["id-classifier", "overall"] == (
        "undecided: the ID classifier stopped before its plateau"
    )
    assert wording.title("dense") == "Dense AE" and wording.title("x + y") == "x + y"


def test_identity_findings_separate_unlearned_ids_from_kept_and_blurred_identities():
    table = pd.DataFrame(
        {
            "chance": [0.25, 0.25, 1 / 3],
            "normal clips": [0.80, 0.80, 0.36],
            "anomalous clips": [0.50, 0.78, 0.20],
            "normal n": [360, 360, 270],
            "anomalous n": [360, 360, 270],
        },
        index=pd.Index(["fan", "valve", "ToyConveyor"], name="machine_type"),
    )
    findings = detectors.identity_findings(table)
    assert findings.to_dict() == {
        "fan": "identity blurred",
        "valve": "identity kept",
        "ToyConveyor": "not told apart",
    }
    # The same shares on a handful of clips are within the noise of chance.
    few = detectors.identity_findings(table.assign(**{"normal n": 2, "anomalous n": 2}))
    assert set(few) == {"not told apart"}


def test_paper_averages_are_the_mean_of_table_2s_type_averages_printed_and_corrected():
    paper = published.paper_averages().set_index("model")
    assert list(paper.index) == ["baseline", "dense", "cnn"]
    for suffix, consistent in (("", False), ("_corrected", True)):
        wide = published.table2(consistent=consistent)
        averages = wide[wide.machine_id == "average"]
        for kind in paper.index:
            for metric in ("auc", "pauc"):
                expected = averages[f"{kind}_{metric}"].mean()
                assert paper.loc[kind, f"{metric}{suffix}"] == pytest.approx(expected)
    # The pump erratum moves the CNN AE's AUC only: printed and corrected differ there alone.
    moved = paper.auc_corrected - paper.auc
    (erratum,) = [e for e in published.PAPER_ERRATA if e["table"] == "table2"]
    shift = (erratum["consistent"] - erratum["printed"]) / 6
    assert moved["cnn"] == pytest.approx(shift) and (moved.drop("cnn") == 0).all()


# --------------------------------------------------------------------------------------
# Published figures, settings
# --------------------------------------------------------------------------------------


def test_published_results_are_labelled_real_data_with_known_references():
    table = published.published_results()
    assert list(table.columns) == [
        "system",
        "reference",
        "family",
        "data",
        "auc",
        "pauc",
        "pauc_definition",
        "notes",
    ]
    assert table.data.str.contains("real DCASE 2020").all()
    assert table[["auc", "pauc"]].apply(lambda c: c.between(50, 100)).all(axis=None)
    bibliography = (ROOT / "book" / "references.bib").read_text()
    for key in table.reference:
        assert f"{{{key}," in bibliography
    assert set(table.pauc_definition) <= {"mcclish", "dcase", "unstated"}


def test_settings_for_unknown_profiles_are_the_full_ones():
    assert detectors.settings_for("full-synthetic") == detectors.SETTINGS["full"]
    assert detectors.settings_for(profiles.PROFILES["quick"]) == detectors.SETTINGS["quick"]
    with pytest.raises(ValueError, match="unknown detector"):
        detectors.make_detector("isolation-forest")


# --------------------------------------------------------------------------------------
# The pipeline: run_detector and the autoencoders' saved scores
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_run_detector_gives_scores_tables_can_read(tiny):
    runs = [pipeline.run_detector(tiny, f, ["valve"]) for f in detectors.DETECTORS]
    scores = pd.concat([r.scores for r in runs], ignore_index=True)
    assert set(scores.model) == set(detectors.score_names())
    per_id = tables.per_id_table(scores, ci=True, n_boot=50)
    assert {"auc_low", "auc_high"} <= set(per_id.columns)
    assert not tables.compare_models(scores, "mahalanobis", "gmm", n_boot=50).empty
    timings = pd.concat([r.timings for r in runs])
    assert (timings.fit_seconds > 0).all() and (timings.score_seconds > 0).all()
    assert (tiny.results / "id-classifier" / "valve" / "model.keras").is_file()
    accuracy = pipeline.id_accuracy_table(tiny, runs[2].fitted)
    assert list(accuracy.columns) == [
        "chance",
        "normal clips",
        "anomalous clips",
        "normal n",
        "anomalous n",
    ]
    assert accuracy.loc["valve", "chance"] == 1 / 4
    shares = accuracy[["normal clips", "anomalous clips"]]
    assert shares.apply(lambda c: c.between(0, 1)).all(axis=None)
    test_clips = data.list_clips(tiny.data_root, "valve", "test")
    assert accuracy.loc["valve", "normal n"] == (test_clips.label == "normal").sum()
    assert accuracy.loc["valve", "anomalous n"] == (test_clips.label != "normal").sum()
    fits = detectors.gaussian_table(runs[0].fitted)
    assert len(fits) == 4 and (fits.training_clips == 6).all()
    again = pipeline.run_detector(tiny, "id-classifier", ["valve"])
    assert again.timings.reused.all() and not runs[2].timings.reused.any()
    np.testing.assert_allclose(again.scores.score, runs[2].scores.score, rtol=1e-5)


@pytest.mark.slow
def test_autoencoder_scores_are_reused_while_current(tiny, monkeypatch):
    first = pipeline.autoencoder_scores(tiny, ("dense",), ["valve"])
    assert set(first.model) == {"dense"}

    def no_training(*args, **kwargs):
        raise AssertionError("saved scores should have been reused")

    monkeypatch.setattr(pipeline, "train_machine_type", no_training)
    reused = pipeline.autoencoder_scores(tiny, ("dense",), ["valve"])
    pd.testing.assert_frame_equal(reused, first, check_dtype=False)
    # Another seed is another model: its scores are not those saved.
    with pytest.raises(AssertionError, match="reused"):
        pipeline.autoencoder_scores(tiny.replace(seed=5), ("dense",), ["valve"])


def test_id_classifier_rank_names_its_scores_places_and_unfinished_rivals():
    means = pd.Series(
        {"dense": 76.0, "mahalanobis": 75.0, "id-embedding": 72.0, "id-classifier": 55.0}
    )
    singles = ["dense", "mahalanobis", "id-classifier", "id-embedding"]
    done = pd.DataFrame({"model": ["dense"], "machine_type": ["fan"], "status": ["plateau"]})
    assert detectors.id_classifier_rank(means, singles, done) == (
        "its classifier score ranked 4th of 4 and its embedding distance 3rd"
    )
    stopped = pd.DataFrame(
        {
            "model": ["dense", "id-classifier", "id-embedding", "gmm"],
            "machine_type": ["fan", "pump", "pump", "fan"],
            "status": ["improving", "improving", "improving", "improving"],
        }
    )
    words = detectors.id_classifier_rank(means, singles, stopped)
    assert words.endswith(
        "(the Dense AE and the ID classifier stopped before their plateau on every type, "
        "so their places may change with longer training)"
    )
    # A model finished on some types only is counted, not said to have stopped everywhere.
    mixed = pd.concat(
        [
            stopped,
            pd.DataFrame({"model": ["dense"], "machine_type": ["pump"], "status": ["plateau"]}),
        ]
    )
    words = detectors.id_classifier_rank(means, singles, mixed)
    assert words.endswith(
        "(the Dense AE stopped before its plateau on 1 of 2 types, the ID classifier on every "
        "type, so their places may change with longer training)"
    )
