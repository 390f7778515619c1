"""Tests of aadlib.scoring: reconstruction errors and clip scores, against plain loops."""

from __future__ import annotations

import numpy as np
import pytest

from aadlib import features, scoring
from aadlib.features import LogMelSet, Scaler
from aadlib.models import build_cnn_ae, build_dense_ae
from aadlib.scoring import reconstruction_errors, score_clips

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

    model = build_dense_ae(hidden_units=16, n_hidden=1)
    x = np.random.default_rng(7).standard_normal((37, 640)).astype(np.float32)
    whole = reconstruction_errors(model, x, batch_size=64)
    # Batches of 10 leave a last batch of 7: the same numbers, no retracing error.
    np.testing.assert_allclose(reconstruction_errors(model, x, batch_size=10), whole, rtol=1e-6)
    assert model in scoring._ERROR_FUNCTIONS
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None  # the cached compiled function does not keep its model alive


def test_scoring_many_models_does_not_warn_of_retracing():
    # Chapter 5 scores twelve models; TensorFlow warns when "one" function retraces often.
    import io
    import logging

    import tensorflow as tf

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
