"""Tests of aadlib.training: the window pipeline, splits, early stopping, resuming, saving."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest

from aadlib.features import LogMelSet, Scaler
from aadlib.models import build_cnn_ae, build_dense_ae
from aadlib.training import (
    TrainConfig,
    WindowDataset,
    fit_autoencoder,
    load_model,
    paper_config,
    save_model,
    split_clips,
)


def _indexed_logmels(lengths, n_mels=128):
    """Frames whose first bin holds the global frame number, the rest noise."""
    total = sum(lengths)
    frames = np.random.default_rng(0).standard_normal((total, n_mels)).astype(np.float32)
    frames[:, 0] = np.arange(total)
    arrays, start = [], 0
    for n in lengths:
        arrays.append(frames[start : start + n])
        start += n
    return LogMelSet.from_arrays(arrays, [f"clip{i}.wav" for i in range(len(lengths))])


def _naive_windows(logmels, kind, hop, clips=None):
    clips = range(len(logmels)) if clips is None else clips
    width = 5 if kind == "dense" else 32
    out = []
    for c in clips:
        clip = logmels.clip(c)
        for t in range(0, len(clip) - width + 1, hop):
            if kind == "dense":
                out.append(np.concatenate([clip[t + k] for k in range(width)]))
            else:
                out.append(clip[t : t + width][..., None])
    return np.array(out)


def _collect(ds):
    batches = [ds[i] for i in range(len(ds))]
    xs = [b[0] if isinstance(b, tuple) else b for b in batches]
    return batches, np.concatenate(xs)


# --------------------------------------------------------------------------------------
# WindowDataset
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("hop", [1, 2, 3])
def test_dense_batches_equal_naive_windows(hop):
    logmels = _indexed_logmels([12, 4, 9, 5])
    ds = WindowDataset(logmels, "dense", hop=hop, batch_size=4)
    batches, x = _collect(ds)
    expected = _naive_windows(logmels, "dense", hop)
    assert x.dtype == np.float32
    assert x.shape == (len(expected), 640)
    np.testing.assert_array_equal(x, expected)
    assert len(ds) == int(np.ceil(len(expected) / 4))
    for inputs, targets in batches:
        assert inputs is targets or np.array_equal(inputs, targets)
        assert len(inputs) <= 4
    # Window order and clip ownership.
    per_clip = [0 if n < 5 else (n - 5) // hop + 1 for n in (12, 4, 9, 5)]
    np.testing.assert_array_equal(ds.windows_per_clip, per_clip)
    np.testing.assert_array_equal(ds.clip_of_window, np.repeat(np.arange(4), per_clip))


def test_cnn_batches_equal_naive_windows():
    logmels = _indexed_logmels([40, 31, 35], n_mels=128)
    ds = WindowDataset(logmels, "cnn", hop=3, batch_size=2, targets=False)
    batches, x = _collect(ds)
    assert all(not isinstance(b, tuple) for b in batches)
    expected = _naive_windows(logmels, "cnn", 3)
    assert x.shape == (len(expected), 32, 128, 1) == (3 + 0 + 2, 32, 128, 1)
    np.testing.assert_array_equal(x, expected)


def test_scaler_is_applied_to_batches():
    logmels = _indexed_logmels([36, 33])
    scaler = Scaler(np.linspace(-1, 1, 128).astype(np.float32), np.full(128, 2.0, np.float32))
    ds = WindowDataset(logmels, "cnn", hop=2, batch_size=3, scaler=scaler, targets=False)
    _, x = _collect(ds)
    expected = (_naive_windows(logmels, "cnn", 2) - scaler.mean[:, None]) / 2.0
    np.testing.assert_allclose(x, expected, rtol=1e-6, atol=1e-6)
    # The frames themselves are not normalised in place.
    np.testing.assert_array_equal(logmels.frames[:, 0], np.arange(69))


def test_shuffle_covers_each_window_once_per_epoch():
    logmels = _indexed_logmels([30, 17, 25])
    plain = WindowDataset(logmels, "dense", hop=1, batch_size=8, targets=False)
    _, x_plain = _collect(plain)
    starts = x_plain[:, 0]  # first bin of the first frame = the window's start frame
    ds = WindowDataset(logmels, "dense", hop=1, batch_size=8, shuffle=True, seed=3)
    orders = []
    for _ in range(3):
        _, x = _collect(ds)
        assert len(x) == len(x_plain)
        np.testing.assert_array_equal(np.sort(x[:, 0]), np.sort(starts))  # each window once
        assert len(np.unique(x[:, 0])) == len(x)
        # The rows are still whole windows: each equals the naive window of its start.
        by_start = {row[0]: row for row in x_plain}
        for row in x[:5]:
            np.testing.assert_array_equal(row, by_start[row[0]])
        orders.append(x[:, 0].copy())
        ds.on_epoch_end()
    assert not np.array_equal(orders[0], starts)  # shuffled
    assert not np.array_equal(orders[0], orders[1])  # reshuffled each epoch
    # The same seed gives the same order.
    again = WindowDataset(logmels, "dense", hop=1, batch_size=8, shuffle=True, seed=3)
    np.testing.assert_array_equal(_collect(again)[1][:, 0], orders[0])


def test_clips_selection_copies_nothing():
    logmels = _indexed_logmels([10, 20, 15, 8])
    ds = WindowDataset(logmels, "dense", hop=1, batch_size=5, clips=[2, 0], targets=False)
    assert ds.logmels is logmels
    assert ds.logmels.frames is logmels.frames
    _, x = _collect(ds)
    np.testing.assert_array_equal(x, _naive_windows(logmels, "dense", 1, clips=[2, 0]))
    np.testing.assert_array_equal(ds.windows_per_clip, [11, 6])
    np.testing.assert_array_equal(ds.clip_of_window, np.repeat([0, 1], [11, 6]))


def test_window_dataset_unknown_kind():
    with pytest.raises(ValueError, match="unknown model kind"):
        WindowDataset(_indexed_logmels([10]), "rnn")


def test_window_dataset_all_clips_too_short():
    ds = WindowDataset(_indexed_logmels([3, 4]), "dense")
    assert len(ds) == 0
    np.testing.assert_array_equal(ds.windows_per_clip, [0, 0])


# --------------------------------------------------------------------------------------
# Splits and configuration
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "fraction", "n_val"),
    [(100, 0.1, 10), (20, 0.1, 2), (7, 0.1, 1), (5, 0.5, 2), (2, 0.9, 1)],
)
def test_split_clips_proportions(n, fraction, n_val):
    train, val = split_clips(n, fraction, seed=0)
    assert len(val) == n_val
    assert len(train) == n - n_val
    assert set(train).isdisjoint(val)
    assert sorted([*train, *val]) == list(range(n))
    assert list(train) == sorted(train) and list(val) == sorted(val)


def test_split_clips_without_validation():
    train, val = split_clips(10, 0.0)
    assert list(train) == list(range(10)) and len(val) == 0


def test_split_clips_deterministic_and_seeded():
    a = split_clips(100, 0.1, seed=5)
    b = split_clips(100, 0.1, seed=5)
    c = split_clips(100, 0.1, seed=6)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1])
    # Random, not the last clips.
    assert list(a[1]) != list(range(90, 100))


def test_split_is_by_clip():
    logmels = _indexed_logmels([12] * 10)
    train, val = split_clips(len(logmels), 0.2, seed=1)
    _, x_train = _collect(WindowDataset(logmels, "dense", clips=train, targets=False))
    _, x_val = _collect(WindowDataset(logmels, "dense", clips=val, targets=False))
    # Every frame of every window lies in a clip of its own side.
    owner = np.repeat(np.arange(10), 12)
    frames_train = x_train.reshape(len(x_train), 5, 128)[:, :, 0].astype(int)
    frames_val = x_val.reshape(len(x_val), 5, 128)[:, :, 0].astype(int)
    assert set(owner[frames_train].ravel()) == set(train)
    assert set(owner[frames_val].ravel()) == set(val)


def test_paper_config():
    dense, cnn = paper_config("dense"), paper_config("cnn")
    assert dense.batch_size == 512
    assert cnn.batch_size == 64
    for config in (dense, cnn):
        assert config.learning_rate == 1e-3
        assert config.patience == 10
        assert config.epochs == 100
        assert config.validation_fraction == 0.1
        assert config.min_delta == 0.0
    changed = paper_config("cnn", epochs=3, patience=1)
    assert (changed.epochs, changed.patience, changed.batch_size) == (3, 1, 64)
    assert TrainConfig().as_dict()["learning_rate"] == 1e-3
    with pytest.raises(ValueError, match="unknown model kind"):
        paper_config("rnn")


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


def _toy_logmels(n_clips=10, n_frames=30, seed=0):
    """Frames on a 2-D subspace of 128 bins: easy for an autoencoder to learn."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((2, 128))
    arrays = [
        (rng.standard_normal((n_frames, 2)) @ basis).astype(np.float32) for _ in range(n_clips)
    ]
    return LogMelSet.from_arrays(arrays, [f"c{i}.wav" for i in range(n_clips)])


def _small_model(seed=0):
    keras.utils.set_random_seed(seed)
    return build_dense_ae(hidden_units=32, n_hidden=1)


def _config(**changes):
    return paper_config("dense", **{"batch_size": 32, **changes})


def _weights_equal(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_fit_reduces_training_loss():
    history = fit_autoencoder(
        _small_model(), _toy_logmels(20, 60), "dense", _config(epochs=3, batch_size=16), verbose=0
    )
    assert list(history.epoch) == [1, 2, 3]
    assert {"epoch", "loss", "val_loss", "seconds"} <= set(history.columns)
    assert history.loss.iloc[-1] < 0.8 * history.loss.iloc[0]
    assert np.all(np.isfinite(history.val_loss))


def test_fit_needs_windows():
    with pytest.raises(ValueError, match="no dense training windows"):
        fit_autoencoder(_small_model(), _indexed_logmels([3, 4, 2]), "dense", _config(epochs=1))


def test_early_stopping_stops_and_restores_best(tmp_path):
    run_dir = tmp_path / "run"
    model = _small_model()
    config = _config(epochs=6, patience=1, min_delta=1e9)  # nothing after epoch 1 improves
    history = fit_autoencoder(model, _toy_logmels(), "dense", config, run_dir=run_dir, verbose=0)
    assert list(history.epoch) == [1, 2]  # patience + 1 epochs
    state = json.loads((run_dir / "state.json").read_text())
    assert state["stopped"] is True and state["epoch"] == 2 and state["best_epoch"] == 0
    best = _small_model(seed=1)
    best.load_weights(run_dir / "best.weights.h5")
    assert _weights_equal(model.get_weights(), best.get_weights())
    last = load_model(run_dir / "last.keras")  # the weights after epoch 2
    assert not _weights_equal(model.get_weights(), last.get_weights())


def test_stopped_run_called_again_trains_nothing(tmp_path):
    run_dir = tmp_path / "run"
    config = _config(epochs=6, patience=1, min_delta=1e9)
    history = fit_autoencoder(
        _small_model(), _toy_logmels(), "dense", config, run_dir=run_dir, verbose=0
    )
    stamps = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    # Called again, even with more epochs: nothing trains, the best weights come back.
    model = _small_model(seed=2)
    again = fit_autoencoder(
        model,
        _toy_logmels(),
        "dense",
        _config(epochs=10, patience=1, min_delta=1e9),
        run_dir=run_dir,
        verbose=0,
    )
    pd.testing.assert_frame_equal(again, history)
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == stamps
    best = _small_model(seed=1)
    best.load_weights(run_dir / "best.weights.h5")
    assert _weights_equal(model.get_weights(), best.get_weights())


def test_early_stopping_without_run_dir_restores_best():
    model = _small_model()
    config = _config(epochs=6, patience=2, min_delta=1e9)
    history = fit_autoencoder(model, _toy_logmels(), "dense", config, verbose=0)
    assert len(history) == 3
    # The restored weights score the validation clips as epoch 1 did, not as epoch 3.
    train, val = split_clips(10, 0.1, seed=0)
    ds = WindowDataset(_toy_logmels(), "dense", clips=val, batch_size=32)
    loss = model.evaluate(ds, verbose=0)
    assert loss == pytest.approx(history.val_loss.iloc[0], rel=1e-4)


def test_resume_continues_where_it_stopped(tmp_path):
    run_dir = tmp_path / "run"
    logmels = _toy_logmels()
    first = fit_autoencoder(
        _small_model(),
        logmels,
        "dense",
        _config(epochs=2, patience=50),
        run_dir=run_dir,
        verbose=0,
    )
    assert list(first.epoch) == [1, 2]
    # A new session: a fresh model and the same run folder, with the full epoch budget.
    model = _small_model(seed=7)
    second = fit_autoencoder(
        model, logmels, "dense", _config(epochs=4, patience=50), run_dir=run_dir, verbose=0
    )
    assert list(second.epoch) == [1, 2, 3, 4]
    pd.testing.assert_frame_equal(second.iloc[:2].reset_index(drop=True), first)
    # Adam's step counter went on from the checkpoint: 4 epochs of steps, not 2.
    train, _ = split_clips(len(logmels), 0.1, seed=0)
    steps = int(np.ceil(len(train) * (30 - 5 + 1) / 32))
    resumed = load_model(run_dir / "last.keras", compile=True)
    assert int(resumed.optimizer.iterations.numpy()) == 4 * steps
    state = json.loads((run_dir / "state.json").read_text())
    assert state["epoch"] == 4 and len(state["history"]) == 4


def test_finished_run_called_again_trains_nothing(tmp_path):
    run_dir = tmp_path / "run"
    logmels = _toy_logmels()
    second = fit_autoencoder(
        _small_model(),
        logmels,
        "dense",
        _config(epochs=2, patience=50),
        run_dir=run_dir,
        verbose=0,
    )
    assert list(second.epoch) == [1, 2]
    # A finished run called again trains nothing and ends with the best weights.
    stamps = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    third_model = _small_model(seed=8)
    third = fit_autoencoder(
        third_model, logmels, "dense", _config(epochs=2, patience=50), run_dir=run_dir, verbose=0
    )
    pd.testing.assert_frame_equal(third, second)
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == stamps
    best = _small_model(seed=9)
    best.load_weights(run_dir / "best.weights.h5")
    assert _weights_equal(third_model.get_weights(), best.get_weights())


# --------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model.h5", "model", "model.keras.tmp", "weights.weights.h5"])
def test_save_model_requires_keras_suffix(tmp_path, name):
    with pytest.raises(ValueError, match=".keras"):
        save_model(_small_model(), tmp_path / name)
    assert not any(tmp_path.iterdir())


def test_load_model_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="train it first"):
        load_model(tmp_path / "nothing.keras")


@pytest.mark.parametrize("kind", ["dense", "cnn"])
def test_models_round_trip(tmp_path, kind):
    keras.utils.set_random_seed(0)
    model = build_dense_ae() if kind == "dense" else build_cnn_ae()
    shape = (4, 640) if kind == "dense" else (4, 32, 128, 1)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    path = save_model(model, tmp_path / "sub" / f"{kind}.keras")
    assert path.exists()
    assert [p.name for p in path.parent.iterdir()] == [f"{kind}.keras"]  # no temporary left
    loaded = load_model(path)
    assert loaded.name == model.name
    assert loaded.count_params() == model.count_params()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_load_model_uses_safe_mode(tmp_path):
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ValueError, match="safe_mode"):
        load_model(path)
    # The file itself is fine: only safe mode refuses it.
    unsafe = keras.saving.load_model(path, safe_mode=False)
    np.testing.assert_allclose(unsafe.predict(np.ones((1, 4)), verbose=0), 2.0)


class _RecordingDataset(WindowDataset):
    """A WindowDataset that records which batches were asked for, in order."""

    requested: list = []

    def __getitem__(self, index):
        if self.shuffle:
            type(self).requested.append(index)
        return super().__getitem__(index)


def test_fit_takes_batches_in_the_datasets_order(monkeypatch):
    # Keras permutes a PyDataset's batches unless told not to; ours are shuffled already,
    # block by block, and a random batch order would read a new block for every batch.
    import aadlib.training as training

    monkeypatch.setattr(training, "WindowDataset", _RecordingDataset)
    _RecordingDataset.requested = []
    logmels = _toy_logmels(20, 60)
    fit_autoencoder(_small_model(), logmels, "dense", _config(epochs=2, batch_size=16), verbose=0)
    train, _ = split_clips(len(logmels), 0.1, seed=0)
    n_batches = int(np.ceil(len(train) * (60 - 5 + 1) / 16))
    # Keras may first peek at a batch or two for their shapes; then two epochs in order.
    assert _RecordingDataset.requested[-2 * n_batches :] == 2 * list(range(n_batches))
