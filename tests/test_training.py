"""Tests of aadlib.training: splits, early stopping, checkpoints and resuming, saving."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest
from helpers import collect_batches, dense_config, indexed_logmels, small_dense_model, toy_logmels

from aadlib.batches import WindowBatches
from aadlib.models import build_cnn_ae, build_dense_ae
from aadlib.training import (
    ModelFileError,
    TrainConfig,
    fit_autoencoder,
    load_history,
    load_model,
    paper_config,
    read_run_summary,
    save_model,
    split_clips,
    training_windows,
    write_run_summary,
)

pytestmark = pytest.mark.usefixtures("checkpoint_every_epoch")

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
    logmels = indexed_logmels([12] * 10)
    train, val = split_clips(len(logmels), 0.2, seed=1)
    _, x_train = collect_batches(WindowBatches(logmels, "dense", clips=train, targets=False))
    _, x_val = collect_batches(WindowBatches(logmels, "dense", clips=val, targets=False))
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


def _weights_equal(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_fit_reduces_training_loss():
    history = fit_autoencoder(
        small_dense_model(),
        toy_logmels(20, 60),
        "dense",
        dense_config(epochs=3, batch_size=16),
        verbose=0,
    )
    assert list(history.epoch) == [1, 2, 3]
    assert {"epoch", "loss", "val_loss", "seconds"} <= set(history.columns)
    assert history.loss.iloc[-1] < 0.8 * history.loss.iloc[0]
    assert np.all(np.isfinite(history.val_loss))


def test_the_training_step_is_traced_once_per_model():
    # Keras traces train_step each time TensorFlow builds the step's graph. Optimizer
    # variables created inside that first trace would make TensorFlow trace it again, a
    # second start-up cost for every model trained (fit_autoencoder creates them first).
    model = small_dense_model()
    traced = []
    step = model.train_step
    model.train_step = lambda data: traced.append(1) or step(data)
    history = fit_autoencoder(
        model, toy_logmels(20, 60), "dense", dense_config(epochs=3, batch_size=16), verbose=0
    )
    assert len(history) == 3
    assert len(traced) == 1


def test_fit_needs_windows():
    with pytest.raises(ValueError, match="no dense training windows"):
        fit_autoencoder(
            small_dense_model(), indexed_logmels([3, 4, 2]), "dense", dense_config(epochs=1)
        )


def test_early_stopping_stops_and_restores_best(tmp_path):
    run_dir = tmp_path / "run"
    model = small_dense_model()
    config = dense_config(epochs=6, patience=1, min_delta=1e9)  # nothing after epoch 1 improves
    history = fit_autoencoder(model, toy_logmels(), "dense", config, run_dir=run_dir, verbose=0)
    assert list(history.epoch) == [1, 2]  # patience + 1 epochs
    state = json.loads((run_dir / "state.json").read_text())
    assert state["stopped"] is True and state["epoch"] == 2 and state["best_epoch"] == 0
    best = small_dense_model(seed=1)
    best.load_weights(run_dir / state["best_file"])
    assert _weights_equal(model.get_weights(), best.get_weights())
    last = load_model(run_dir / state["model_file"])  # the weights after epoch 2
    assert not _weights_equal(model.get_weights(), last.get_weights())


def test_stopped_run_called_again_trains_nothing(tmp_path):
    run_dir = tmp_path / "run"
    config = dense_config(epochs=6, patience=1, min_delta=1e9)
    history = fit_autoencoder(
        small_dense_model(), toy_logmels(), "dense", config, run_dir=run_dir, verbose=0
    )
    stamps = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    # Called again, even with more epochs: nothing trains, the best weights come back.
    model = small_dense_model(seed=2)
    again = fit_autoencoder(
        model,
        toy_logmels(),
        "dense",
        dense_config(epochs=10, patience=1, min_delta=1e9),
        run_dir=run_dir,
        verbose=0,
    )
    pd.testing.assert_frame_equal(again, history)
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == stamps
    best = small_dense_model(seed=1)
    best.load_weights(run_dir / json.loads((run_dir / "state.json").read_text())["best_file"])
    assert _weights_equal(model.get_weights(), best.get_weights())


def test_early_stopping_without_run_dir_restores_best():
    model = small_dense_model()
    config = dense_config(epochs=6, patience=2, min_delta=1e9)
    history = fit_autoencoder(model, toy_logmels(), "dense", config, verbose=0)
    assert len(history) == 3
    # The restored weights score the validation clips as epoch 1 did, not as epoch 3.
    train, val = split_clips(10, 0.1, seed=0)
    ds = WindowBatches(toy_logmels(), "dense", clips=val, batch_size=32)
    loss = model.evaluate(ds.as_tf_dataset(), verbose=0)
    assert loss == pytest.approx(history.val_loss.iloc[0], rel=1e-4)


def test_resume_continues_where_it_stopped(tmp_path):
    run_dir = tmp_path / "run"
    logmels = toy_logmels()
    first = fit_autoencoder(
        small_dense_model(),
        logmels,
        "dense",
        dense_config(epochs=2, patience=50),
        run_dir=run_dir,
        verbose=0,
    )
    assert list(first.epoch) == [1, 2]
    # A new session: a fresh model and the same run folder, with the full epoch budget.
    model = small_dense_model(seed=7)
    second = fit_autoencoder(
        model, logmels, "dense", dense_config(epochs=4, patience=50), run_dir=run_dir, verbose=0
    )
    assert list(second.epoch) == [1, 2, 3, 4]
    pd.testing.assert_frame_equal(second.iloc[:2].reset_index(drop=True), first)
    # Adam's step counter went on from the checkpoint: 4 epochs of steps, not 2.
    train, _ = split_clips(len(logmels), 0.1, seed=0)
    steps = int(np.ceil(len(train) * (30 - 5 + 1) / 32))
    state = json.loads((run_dir / "state.json").read_text())
    resumed = load_model(run_dir / state["model_file"], compile=True)
    assert int(resumed.optimizer.iterations.numpy()) == 4 * steps
    assert state["epoch"] == 4 and len(state["history"]) == 4


def test_finished_run_called_again_trains_nothing(tmp_path):
    run_dir = tmp_path / "run"
    logmels = toy_logmels()
    second = fit_autoencoder(
        small_dense_model(),
        logmels,
        "dense",
        dense_config(epochs=2, patience=50),
        run_dir=run_dir,
        verbose=0,
    )
    assert list(second.epoch) == [1, 2]
    # A finished run called again trains nothing and ends with the best weights.
    stamps = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    third_model = small_dense_model(seed=8)
    third = fit_autoencoder(
        third_model,
        logmels,
        "dense",
        dense_config(epochs=2, patience=50),
        run_dir=run_dir,
        verbose=0,
    )
    pd.testing.assert_frame_equal(third, second)
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == stamps
    best = small_dense_model(seed=9)
    best.load_weights(run_dir / json.loads((run_dir / "state.json").read_text())["best_file"])
    assert _weights_equal(third_model.get_weights(), best.get_weights())


def _state(run_dir):
    return json.loads((run_dir / "state.json").read_text())


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"record": {"data": "other clips"}}, "data"),
        ({"config": {"seed": 1}}, "seed"),
        ({"config": {"learning_rate": 5e-4}}, "learning_rate"),
        ({"record": {"aadlib": "0.0.1"}}, "aadlib"),
    ],
    ids=["data", "seed", "settings", "code version"],
)
def test_checkpoint_of_another_run_is_not_resumed(tmp_path, caplog, change, named):
    # An interrupted run, then the data, the seed, a setting or the code changes: the
    # checkpoint must not be resumed (its weights were trained for something else).
    run_dir = tmp_path / "run"
    record = {"data": "these clips", "aadlib": "0.2.0"}
    first = fit_autoencoder(
        small_dense_model(),
        toy_logmels(),
        "dense",
        dense_config(epochs=2, patience=50),
        run_dir=run_dir,
        record=record,
        verbose=0,
    )
    assert _state(run_dir)["epoch"] == 2
    config = dense_config(epochs=3, patience=50, **change.get("config", {}))
    with caplog.at_level("WARNING", logger="aadlib"):
        again = fit_autoencoder(
            small_dense_model(seed=3),
            toy_logmels(),
            "dense",
            config,
            run_dir=run_dir,
            record={**record, **change.get("record", {})},
            verbose=0,
        )
    assert list(again.epoch) == [1, 2, 3]  # trained afresh, not epoch 3 on top of 2
    assert not again.iloc[:2].loss.equals(first.loss)
    (message,) = [r.getMessage() for r in caplog.records]
    assert f"made with other {named};" in message and "training afresh" in message


def test_more_epochs_resume_the_same_run(tmp_path, caplog):
    run_dir = tmp_path / "run"
    fit_autoencoder(
        small_dense_model(),
        toy_logmels(),
        "dense",
        dense_config(epochs=2, patience=50),
        run_dir=run_dir,
        verbose=0,
    )
    with caplog.at_level("WARNING", logger="aadlib"):
        more = fit_autoencoder(
            small_dense_model(seed=3),
            toy_logmels(),
            "dense",
            dense_config(epochs=3, patience=50),
            run_dir=run_dir,
            verbose=0,
        )
    assert list(more.epoch) == [1, 2, 3] and not caplog.records
    assert _state(run_dir)["epoch"] == 3


def test_a_kill_between_weights_and_state_leaves_a_consistent_checkpoint(tmp_path, monkeypatch):
    # Epoch 2's weights are written, then the process dies before its state: the state on
    # disk still names epoch 1's weights, so the resumed run repeats epoch 2 from them.
    import aadlib.training as training

    run_dir = tmp_path / "run"
    logmels = toy_logmels()
    original = training.write_text
    calls = []

    def dies_on_second_state(path, text):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(path, text)

    monkeypatch.setattr(training, "write_text", dies_on_second_state)
    with pytest.raises(KeyboardInterrupt):
        fit_autoencoder(
            small_dense_model(),
            logmels,
            "dense",
            dense_config(epochs=3, patience=50),
            run_dir=run_dir,
            verbose=0,
        )
    monkeypatch.setattr(training, "write_text", original)
    state = _state(run_dir)
    assert state["epoch"] == 1 and state["model_file"] == "epoch-0001.keras"
    assert (run_dir / "epoch-0002.keras").exists()  # written, but no state names it
    epoch_one = load_model(run_dir / state["model_file"], compile=True)
    steps = int(epoch_one.optimizer.iterations.numpy())
    resumed = fit_autoencoder(
        small_dense_model(seed=4),
        logmels,
        "dense",
        dense_config(epochs=3, patience=50),
        run_dir=run_dir,
        verbose=0,
    )
    assert list(resumed.epoch) == [1, 2, 3]
    final = load_model(run_dir / _state(run_dir)["model_file"], compile=True)
    assert int(final.optimizer.iterations.numpy()) == 3 * steps  # no epoch counted twice
    assert sorted(p.name for p in run_dir.glob("epoch-*")) == ["epoch-0003.keras"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: (d / "state.json").write_text("{broken"),
        lambda d: (d / "state.json").write_text(""),
        lambda d: (d / _state(d)["model_file"]).unlink(),
    ],
    ids=["broken json", "empty", "weights missing"],
)
def test_damaged_checkpoint_is_named_and_training_starts_afresh(tmp_path, caplog, damage):
    run_dir = tmp_path / "run"
    fit_autoencoder(
        small_dense_model(),
        toy_logmels(),
        "dense",
        dense_config(epochs=2, patience=50),
        run_dir=run_dir,
        verbose=0,
    )
    damage(run_dir)
    with caplog.at_level("WARNING", logger="aadlib"):
        again = fit_autoencoder(
            small_dense_model(seed=5),
            toy_logmels(),
            "dense",
            dense_config(epochs=2, patience=50),
            run_dir=run_dir,
            verbose=0,
        )
    assert list(again.epoch) == [1, 2]
    (message,) = [r.getMessage() for r in caplog.records]
    assert str(run_dir / "state.json") in message and "training afresh" in message


# --------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model.h5", "model", "model.keras.tmp", "weights.weights.h5"])
def test_save_model_requires_keras_suffix(tmp_path, name):
    with pytest.raises(ValueError, match=".keras"):
        save_model(small_dense_model(), tmp_path / name)
    assert not any(tmp_path.iterdir())


def test_load_model_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="train it first"):
        load_model(tmp_path / "nothing.keras")


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        lambda p: p.write_bytes(b""),
        lambda p: p.write_text("not a model"),
    ],
    ids=["truncated", "empty", "text"],
)
def test_damaged_model_file_is_named_with_the_remedy(tmp_path, damage):
    path = save_model(small_dense_model(), tmp_path / "model.keras")
    damage(path)
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert str(path) in str(info.value) and "train again" in str(info.value)


@pytest.mark.parametrize("content", ["", "epoch,loss\n", "epoch,loss\n1,0.5\n2,"])
def test_damaged_history_is_named(tmp_path, content):
    path = tmp_path / "history.csv"
    path.write_text(content)
    with pytest.raises(ModelFileError, match="history"):
        load_history(path)


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


def test_fit_trains_on_the_datasets_batches_in_order(monkeypatch):
    # Each pass over as_tf_dataset() is one epoch in the dataset's own seeded order:
    # Keras must not reorder the batches, and every epoch after the first is reshuffled.
    import tensorflow as tf

    seen = []
    original = WindowBatches.as_tf_dataset

    def recording(self, first_epoch=0):
        dataset = original(self, first_epoch)
        if not self.shuffle:  # validation
            return dataset

        def record(x, y):
            token = tf.numpy_function(lambda a: seen.append(a.copy()) or np.int32(0), [x], tf.int32)
            with tf.control_dependencies([token]):
                return tf.identity(x), y

        return dataset.map(record)

    monkeypatch.setattr(WindowBatches, "as_tf_dataset", recording)
    logmels = toy_logmels(20, 60)
    config = dense_config(epochs=2, batch_size=16)
    fit_autoencoder(small_dense_model(), logmels, "dense", config, verbose=0)
    expected, _ = training_windows(logmels, "dense", config)
    for epoch in range(2):
        batches = [expected.batch(i, epoch)[0] for i in range(len(expected))]
        got = seen[epoch * len(batches) : (epoch + 1) * len(batches)]
        assert len(got) == len(batches)
        for a, b in zip(got, batches):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(seen[0], seen[len(batches)])  # reshuffled


def test_recent_gain_is_what_the_learning_status_judges():
    from aadlib.training import learning_status, recent_gain

    falling = pd.DataFrame({"val_loss": [1.0, 0.9, 0.8, 0.7]})
    assert recent_gain(falling) == pytest.approx((0.9 - 0.7) / 0.9)
    assert learning_status(falling) == "improving"
    bounced = pd.DataFrame({"val_loss": [1.0, 0.5, 0.9, 0.6, 0.55]})  # no new best lately
    assert recent_gain(bounced) < 0 and learning_status(bounced) == "plateau"
    assert recent_gain(falling.head(2)) is None and learning_status(falling.head(2)) == "too short"


def test_checkpoints_are_spaced_in_time_and_hold_the_best_epoch(tmp_path, monkeypatch):
    # Checkpoints follow the clock, not every epoch: a checkpoint written after the best
    # epoch has passed must still hold that epoch's weights, not the current ones.
    import aadlib.training as training

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    model = small_dense_model()
    stopper = training.EarlyStopping(patience=5, run_dir=run_dir, every=3600.0)
    stopper.set_model(model)
    model.stop_training = False  # as Model.fit sets it
    stopper.on_train_begin()
    weights_at = {}
    for epoch, val_loss in enumerate([1.0, 0.5, 0.7]):
        model.set_weights([w + epoch for w in small_dense_model(seed=epoch).get_weights()])
        weights_at[epoch] = model.get_weights()
        if epoch == 2:
            stopper.every = 0.0  # the half hour has passed: this epoch's end writes
        stopper.on_epoch_begin(epoch)
        stopper.on_epoch_end(epoch, {"loss": val_loss, "val_loss": val_loss})
        written = sorted(p.name for p in run_dir.iterdir())
        assert written == (
            [] if epoch < 2 else ["best-0002.weights.h5", "epoch-0003.keras", "state.json"]
        )
    state = _state(run_dir)
    assert (
        state["epoch"] == 3
        and state["best_epoch"] == 1
        and state["best_file"] == "best-0002.weights.h5"
    )
    best = small_dense_model(seed=9)
    best.load_weights(run_dir / state["best_file"])
    for saved, expected in zip(best.get_weights(), weights_at[1]):
        np.testing.assert_array_equal(saved, expected)
    for current, expected in zip(model.get_weights(), weights_at[2]):  # training goes on as it was
        np.testing.assert_array_equal(current, expected)


def test_a_training_shorter_than_the_interval_writes_no_checkpoint(tmp_path, monkeypatch):
    import aadlib.training as training

    monkeypatch.setattr(training, "CHECKPOINT_SECONDS", 3600.0)
    run_dir = tmp_path / "run"
    history = fit_autoencoder(
        small_dense_model(),
        toy_logmels(),
        "dense",
        dense_config(epochs=3, patience=50),
        run_dir=run_dir,
        verbose=0,
    )
    assert list(history.epoch) == [1, 2, 3]
    assert not any(run_dir.iterdir())  # nothing to resume from, nothing written


def test_a_run_summary_accepts_its_folder_only_as_it_was_written(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\x01\x02")
    record = {"kind": "dense", "seed": 3}
    write_run_summary(tmp_path, record, ["weights.bin"], seconds=1.5)
    summary = read_run_summary(tmp_path, record)
    assert summary["seconds"] == 1.5 and list(summary["files"]) == ["weights.bin"]
    assert read_run_summary(tmp_path, {**record, "seed": 4}) is None
    seed_only = read_run_summary(tmp_path, {"seed": 3}, lambda r: {"seed": r["seed"]})
    assert seed_only is not None
    assert read_run_summary(tmp_path / "elsewhere", record) is None
    (tmp_path / "weights.bin").write_bytes(b"\x01\x03")
    with pytest.raises(ModelFileError, match="weights.bin changed since it was written"):
        read_run_summary(tmp_path, record)
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ModelFileError, match="weights.bin gone since it was written"):
        read_run_summary(tmp_path, record)
    (tmp_path / "run.json").write_text("{half")
    with pytest.raises(ModelFileError, match="run.json is not valid JSON"):
        read_run_summary(tmp_path, record)
