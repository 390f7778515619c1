"""Tests of aadlib.metrics: AUC, the two pAUCs, result tables and clip scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from aadlib import features
from aadlib.data import MACHINE_TYPES
from aadlib.features import LogMelSet, Scaler
from aadlib.metrics import (
    PAUC_DEFINITIONS,
    auc,
    pauc_dcase,
    pauc_mcclish,
    per_id_table,
    reconstruction_errors,
    score_clips,
    table2_layout,
)
from aadlib.models import build_cnn_ae, build_dense_ae

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
# Per-ID tables
# --------------------------------------------------------------------------------------


def _scores_frame(seed=0, with_model=False):
    rng = np.random.default_rng(seed)
    rows = []
    # Types given out of the paper's order, IDs 10 and 2 to catch a text sort.
    groups = [("valve", 10), ("valve", 2), ("fan", 4), ("ToyCar", 1), ("ToyCar", 3)]
    models = ["dense", "cnn"] if with_model else [None]
    for model in models:
        for mtype, mid in groups:
            n_normal, n_anomaly = 6 + mid, 4 + mid % 3
            for label, n in (("normal", n_normal), ("anomaly", n_anomaly)):
                for _ in range(n):
                    row = {
                        "machine_type": mtype,
                        "machine_id": mid,
                        "label": label,
                        "score": rng.standard_normal() + (0.8 if label == "anomaly" else 0),
                    }
                    if model:
                        row["model"] = model
                    rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # any row order


@pytest.mark.parametrize("pauc", ["mcclish", "dcase"])
def test_per_id_table_values(pauc):
    scores = _scores_frame()
    table = per_id_table(scores, pauc=pauc)
    assert list(table.columns) == [
        "machine_type",
        "machine_id",
        "auc",
        "pauc",
        "n_normal",
        "n_anomaly",
    ]
    # Types in MACHINE_TYPES order, IDs ascending (numerically), then the average row.
    assert list(zip(table.machine_type, table.machine_id, strict=True)) == [
        ("ToyCar", "1"),
        ("ToyCar", "3"),
        ("ToyCar", "average"),
        ("fan", "4"),
        ("fan", "average"),
        ("valve", "2"),
        ("valve", "10"),
        ("valve", "average"),
    ]
    for row in table.itertuples():
        if row.machine_id == "average":
            continue
        part = scores[
            (scores.machine_type == row.machine_type) & (scores.machine_id == int(row.machine_id))
        ]
        y = (part.label == "anomaly").astype(int).to_numpy()
        assert row.auc == pytest.approx(100 * roc_auc_score(y, part.score))
        if pauc == "mcclish":
            expected = 100 * roc_auc_score(y, part.score, max_fpr=0.1)
        else:
            expected = 100 * pauc_dcase(y, part.score.to_numpy())
        assert row.pauc == pytest.approx(expected)
        assert row.n_normal == (y == 0).sum()
        assert row.n_anomaly == (y == 1).sum()
    per_id = table[table.machine_id != "average"]
    for mtype, rows in per_id.groupby("machine_type"):
        avg = table[(table.machine_type == mtype) & (table.machine_id == "average")].iloc[0]
        assert avg.auc == pytest.approx(rows.auc.mean())
        assert avg.pauc == pytest.approx(rows.pauc.mean())
        assert avg.n_normal == rows.n_normal.sum()
        assert avg.n_anomaly == rows.n_anomaly.sum()


def test_per_id_table_pauc_definitions_differ():
    scores = _scores_frame(seed=3)
    mcclish = per_id_table(scores, pauc="mcclish")
    dcase = per_id_table(scores, pauc="dcase")
    np.testing.assert_allclose(mcclish.auc, dcase.auc)
    assert not np.allclose(mcclish.pauc, dcase.pauc)


def test_per_id_table_rejects_unknown_pauc():
    with pytest.raises(ValueError, match="pauc"):
        per_id_table(_scores_frame(), pauc="sklearn")


def test_per_id_table_with_models():
    scores = _scores_frame(seed=1, with_model=True)
    table = per_id_table(scores)
    assert list(table.columns[:3]) == ["model", "machine_type", "machine_id"]
    assert len(table) == 2 * 8
    for model in ("dense", "cnn"):
        part = table[table.model == model]
        types = list(dict.fromkeys(part.machine_type))
        assert types == [t for t in MACHINE_TYPES if t in types]
        alone = per_id_table(scores[scores.model == model].drop(columns="model"))
        np.testing.assert_allclose(part.auc.to_numpy(), alone.auc.to_numpy())
        np.testing.assert_allclose(part.pauc.to_numpy(), alone.pauc.to_numpy())


def test_table2_layout_shape_and_values():
    table = per_id_table(_scores_frame(seed=2, with_model=True))
    wide = table2_layout(table)
    assert wide.shape == (8, 4)  # 5 IDs + 3 averages; 2 models x (AUC, pAUC)
    assert set(wide.columns) == {
        ("dense", "AUC"),
        ("dense", "pAUC"),
        ("cnn", "AUC"),
        ("cnn", "pAUC"),
    }
    assert list(wide.index.names) == ["machine_type", "machine_id"]
    assert list(wide.index.get_level_values(0)) == [
        "ToyCar",
        "ToyCar",
        "ToyCar",
        "fan",
        "fan",
        "valve",
        "valve",
        "valve",
    ]
    for row in table.itertuples():
        key = (row.machine_type, row.machine_id)
        assert wide.loc[key, (row.model, "AUC")] == pytest.approx(row.auc)
        assert wide.loc[key, (row.model, "pAUC")] == pytest.approx(row.pauc)


def test_table2_layout_needs_model_column():
    with pytest.raises(ValueError, match="model"):
        table2_layout(per_id_table(_scores_frame()))


# --------------------------------------------------------------------------------------
# Clip scores
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_dense():
    return build_dense_ae(hidden_units=16, n_hidden=1)


@pytest.fixture(scope="module")
def cnn_model():
    return build_cnn_ae()


def _logmels(lengths, seed=0, loc=-40.0, scale=8.0):
    rng = np.random.default_rng(seed)
    arrays = [(loc + scale * rng.standard_normal((n, 128))).astype(np.float32) for n in lengths]
    return LogMelSet.from_arrays(arrays, [f"clip{i}.wav" for i in range(len(lengths))])


def _naive_scores(model, logmels, kind, hop):
    out = []
    for i in range(len(logmels)):
        clip = np.asarray(logmels.clip(i))
        if kind == "dense":
            x = features.dense_vectors(clip, hop=hop)
        else:
            x = features.cnn_patches(clip, hop=hop)[..., None]
        x = np.asarray(x, dtype=np.float64)
        recon = model.predict(x.astype(np.float32), verbose=0)
        per_window = ((x - recon) ** 2).reshape(len(x), -1).mean(axis=1)
        out.append(per_window.mean())
    return np.array(out)


@pytest.mark.parametrize("hop", [1, 3])
def test_score_clips_dense_equals_naive_loop(small_dense, hop):
    logmels = _logmels([5, 12, 30, 9])
    got = score_clips(small_dense, logmels, "dense", hop=hop, batch_size=7)
    expected = _naive_scores(small_dense, logmels, "dense", hop)
    assert got.shape == (4,)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_score_clips_cnn_equals_naive_loop(cnn_model):
    logmels = _logmels([32, 40, 50], seed=1, loc=0.0, scale=1.0)
    got = score_clips(cnn_model, logmels, "cnn", hop=3, batch_size=4)
    expected = _naive_scores(cnn_model, logmels, "cnn", 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_score_clips_batch_size_does_not_matter(small_dense):
    logmels = _logmels([20, 7, 33], seed=2)
    a = score_clips(small_dense, logmels, "dense", batch_size=5)
    b = score_clips(small_dense, logmels, "dense", batch_size=512)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_score_clips_order_follows_logmels(small_dense):
    logmels = _logmels([10, 15, 20], seed=3)
    forward = score_clips(small_dense, logmels, "dense")
    backward = score_clips(small_dense, logmels.subset([2, 1, 0]), "dense")
    np.testing.assert_allclose(backward, forward[::-1], rtol=1e-6)


@pytest.mark.parametrize(("kind", "short"), [("dense", 4), ("cnn", 31)])
def test_score_clips_too_short_clip_is_named(small_dense, cnn_model, kind, short):
    model = small_dense if kind == "dense" else cnn_model
    logmels = _logmels([40, short, 40], seed=4)
    with pytest.raises(ValueError, match="shorter than one") as info:
        score_clips(model, logmels, kind)
    assert "clip1.wav" in str(info.value)
    assert "clip0.wav" not in str(info.value)


def test_score_clips_with_scaler_equals_normalised_frames(cnn_model):
    logmels = _logmels([35, 41], seed=5)
    scaler = Scaler.fit(logmels)
    assert not np.allclose(scaler.mean, 0)
    normalised = LogMelSet(scaler.transform(logmels.frames), logmels.offsets, logmels.paths)
    with_scaler = score_clips(cnn_model, logmels, "cnn", hop=3, scaler=scaler)
    pre = score_clips(cnn_model, normalised, "cnn", hop=3)
    np.testing.assert_allclose(with_scaler, pre, rtol=1e-5)
    # and the scaler really changed the input.
    raw = score_clips(cnn_model, logmels, "cnn", hop=3)
    assert not np.allclose(raw, with_scaler)


def test_reconstruction_errors_equal_numpy(small_dense):
    x = np.random.default_rng(6).standard_normal((9, 640)).astype(np.float32)
    recon = small_dense.predict(x, verbose=0)
    expected = ((x.astype(np.float64) - recon) ** 2).mean(axis=1)
    np.testing.assert_allclose(reconstruction_errors(small_dense, x), expected, rtol=1e-5)


def test_reconstruction_errors_in_batches_and_freed_with_the_model():
    import gc
    import weakref

    from aadlib import metrics
    from aadlib.models import build_dense_ae

    model = build_dense_ae(hidden_units=16, n_hidden=1)
    x = np.random.default_rng(7).standard_normal((37, 640)).astype(np.float32)
    whole = reconstruction_errors(model, x, batch_size=64)
    # Batches of 10 leave a last batch of 7: the same numbers, no retracing error.
    np.testing.assert_allclose(reconstruction_errors(model, x, batch_size=10), whole, rtol=1e-6)
    assert model in metrics._ERROR_FUNCTIONS
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None  # the cached compiled function does not keep its model alive


def test_scoring_many_models_does_not_warn_of_retracing():
    # Chapter 5 scores twelve models; TensorFlow warns when "one" function retraces often.
    import io
    import logging

    import tensorflow as tf

    from aadlib.models import build_dense_ae

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    tf.get_logger().addHandler(handler)
    try:
        x = np.random.default_rng(8).standard_normal((10, 640)).astype(np.float32)
        for _ in range(8):
            reconstruction_errors(build_dense_ae(hidden_units=16, n_hidden=1), x)
    finally:
        tf.get_logger().removeHandler(handler)
    assert "retracing" not in stream.getvalue()
