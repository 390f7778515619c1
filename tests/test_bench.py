"""The fast paths give the reference pipeline's numbers; the benchmark runs end to end.

No timing is asserted here: ``aadlib bench`` measures speed and memory. These tests check
that what it times computes the same thing as ``benchmarks/reference_pipeline.py``.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest

from aadlib import bench, metrics, models
from aadlib.features import FeatureParams, LogMelSet, Scaler, extract_logmels, stack_frames
from aadlib.training import WindowDataset

ref = bench.load_reference()

SECONDS = 1.5  # 47 frames: 43 Dense vectors, 6 CNN patches at hop 3


def _wav(path, seed, seconds=SECONDS, make_wav=None):
    return make_wav(path, seconds=seconds, freq=300 + 150 * seed, seed=seed)


@pytest.fixture
def clips(tmp_path, make_wav):
    return [
        _wav(tmp_path / "clips" / f"normal_id_01_{i:08d}.wav", i, make_wav=make_wav)
        for i in range(5)
    ]


@pytest.fixture
def features(clips):
    """Our features (in memory) and the reference's, for the same clips."""
    return extract_logmels(clips, n_jobs=1, progress=False), ref.reference_extract(clips)


# --------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("cached", [False, True])
def test_features_equal_reference(tmp_path, make_wav, n_jobs, cached):
    # Clips of different lengths, so that every clip must land at its own offset.
    paths = [
        _wav(tmp_path / "c" / f"normal_id_01_{i:08d}.wav", i, 1.1 + 0.37 * i, make_wav)
        for i in range(6)
    ]
    cache = tmp_path / "cache" if cached else None
    ours = extract_logmels(paths, n_jobs=n_jobs, cache_dir=cache, progress=False)
    theirs = ref.reference_extract(paths)
    assert len(ours) == len(theirs)
    for i, expected in enumerate(theirs):
        assert ours.clip(i).shape == expected.shape
        assert ours.clip(i).dtype == np.float32
        assert np.max(np.abs(ours.clip(i) - expected)) < 1e-3  # dB
    if cached:  # the second run reads the same numbers back, memory-mapped
        again = extract_logmels(paths, n_jobs=n_jobs, cache_dir=cache, progress=False)
        assert again._mapping() is not None
        np.testing.assert_array_equal(again.frames, ours.frames)
        np.testing.assert_array_equal(again.offsets, ours.offsets)


def test_cache_key_follows_file_list(clips):
    from aadlib.features import cache_key

    assert cache_key(clips) != cache_key(clips[:-1])
    assert cache_key(clips) != cache_key(clips, FeatureParams(n_mels=64))


# --------------------------------------------------------------------------------------
# Training input: vectors, patches and batches
# --------------------------------------------------------------------------------------


def _batches(ds) -> np.ndarray:
    parts = [ds[i] for i in range(len(ds))]
    return np.concatenate([p[0] if isinstance(p, tuple) else p for p in parts])


def test_dense_vectors_equal_materialised(features):
    ours, theirs = features
    expected = ref.reference_dense_vectors(theirs)
    assert expected.dtype == np.float64
    x = _batches(WindowDataset(ours, "dense", hop=1, batch_size=64, targets=False))
    assert x.dtype == np.float32 and x.shape == expected.shape
    np.testing.assert_array_equal(x.astype(np.float64), expected)
    np.testing.assert_array_equal(
        np.concatenate([stack_frames(lm) for lm in ours]).astype(np.float64), expected
    )


@pytest.mark.parametrize("scaled", [False, True])
def test_cnn_patches_equal_materialised(features, scaled):
    ours, theirs = features
    scaler = Scaler.fit(ours) if scaled else None
    source = [scaler.transform(lm) for lm in theirs] if scaled else theirs
    expected = ref.materialise_patches(source, 32, 3)
    ds = WindowDataset(ours, "cnn", hop=3, batch_size=4, targets=False, scaler=scaler)
    x = _batches(ds)
    assert x.shape == (*expected.shape, 1)
    np.testing.assert_array_equal(x[..., 0].astype(np.float64), expected)


def _reference_windows(ds: WindowDataset, logmels: LogMelSet) -> np.ndarray:
    """``(clip, start)`` of each window of ``ds`` in its current order."""
    rows = ds._plan[0]
    clip = ds.clips[ds.clip_of_window[rows]]
    return np.stack([clip, ds.starts[rows] - logmels.offsets[clip]], axis=1)


def _check_against_generator(logmels, kind, hop, batch, scaler, epochs=2):
    common = dict(hop=hop, batch_size=batch, shuffle=True, seed=7, scaler=scaler)
    ds = WindowDataset(logmels, kind, **common)
    fed = WindowDataset(logmels, kind, **common).as_tf_dataset()  # what fit trains on
    stacked = ref.stack_clips([np.asarray(c) for c in logmels], scaler)
    for _ in range(epochs):
        windows = _reference_windows(ds, logmels)
        generator = ref.ReferenceGenerator(stacked, kind, batch, windows=windows)
        assert len(generator) == len(ds)
        for i, (x_fed, _) in enumerate(fed):  # one pass: one epoch
            x, y = ds[i]
            expected, _ = generator[i]
            assert x is y or np.array_equal(x, y)
            assert x.dtype == np.float32
            np.testing.assert_array_equal(x.astype(np.float64), expected)
            np.testing.assert_array_equal(x_fed.numpy().astype(np.float64), expected)
        assert i == len(ds) - 1
        # Each window once per epoch.
        keys = windows[:, 0] * 10_000 + windows[:, 1]
        assert len(np.unique(keys)) == len(keys) == len(ds.starts)
        ds.on_epoch_end()
    return ds


@pytest.mark.parametrize("kind,hop,batch", [("dense", 1, 64), ("cnn", 3, 4)])
def test_batches_equal_reference_generator(features, kind, hop, batch):
    ours, _ = features
    scaler = Scaler.fit(ours) if kind == "cnn" else None
    ds = _check_against_generator(ours, kind, hop, batch, scaler)
    assert ds._one_block  # small sets: one block, a shuffle of all windows


@pytest.mark.parametrize("kind,hop,batch", [("dense", 1, 50), ("cnn", 3, 4)])
def test_streamed_batches_equal_reference_generator(clips, tmp_path, monkeypatch, kind, hop, batch):
    # Memory-mapped frames cut into blocks of two clips: read block by block.
    logmels = extract_logmels(clips, n_jobs=1, cache_dir=tmp_path / "cache", progress=False)
    assert logmels._mapping() is not None
    monkeypatch.setattr(WindowDataset, "block_bytes", 2 * 47 * 128 * 4)
    reads = []
    original = LogMelSet.read_clips
    monkeypatch.setattr(
        LogMelSet, "read_clips", lambda self, *a, **k: reads.append(1) or original(self, *a, **k)
    )
    scaler = Scaler.fit(logmels) if kind == "cnn" else None
    ds = _check_against_generator(logmels, kind, hop, batch, scaler)
    assert not ds._one_block and len(ds._plan[1]) == 3
    # Each block is read from the file (NumPy batches into one reused buffer; the tf.data
    # pipeline reads each of its blocks once an epoch).
    assert len(ds._buffer) >= 2 * 47 and len(reads) >= 2 * 3 * 2
    # Unshuffled (validation, scoring): the plain order, whatever the blocks.
    plain = _batches(
        WindowDataset(logmels, kind, hop=hop, batch_size=batch, targets=False, scaler=scaler)
    )
    stacked = ref.stack_clips([np.asarray(c) for c in logmels], scaler)
    generator = ref.ReferenceGenerator(stacked, kind, batch, hop=hop)
    expected = np.concatenate([generator[i][0] for i in range(len(generator))])
    np.testing.assert_array_equal(plain.astype(np.float64), expected)


def test_iterating_a_mapped_set_releases_memory(clips, tmp_path, monkeypatch):
    logmels = extract_logmels(clips, n_jobs=1, cache_dir=tmp_path / "cache", progress=False)
    monkeypatch.setattr(LogMelSet, "release_bytes", 47 * 128 * 4)
    assert logmels.release_memory()  # a real madvise on the mapping
    calls = []
    original = LogMelSet.release_memory
    monkeypatch.setattr(LogMelSet, "release_memory", lambda self: calls.append(1) or original(self))
    total = sum(float(np.sum(c, dtype=np.float64)) for c in logmels)
    assert len(calls) >= len(clips) - 1
    assert total == pytest.approx(float(np.sum(np.asarray(logmels.frames), dtype=np.float64)))
    # Reading clips by file gives the mapped numbers.
    out = logmels.read_clips([3, 1])
    np.testing.assert_array_equal(out, np.concatenate([logmels.clip(3), logmels.clip(1)]))
    in_memory = LogMelSet.from_arrays(list(logmels), logmels.paths)
    assert not in_memory.release_memory()
    np.testing.assert_array_equal(in_memory.read_clips([3, 1]), out)


# --------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,hop", [("dense", 1), ("cnn", 3)])
def test_scores_equal_reference(features, kind, hop):
    import keras

    ours, theirs = features
    keras.utils.set_random_seed(0)
    model = models.build_model(kind)
    scaler = Scaler.fit(ours) if kind == "cnn" else None
    fast = metrics.score_clips(model, ours, kind, hop=hop, batch_size=64, scaler=scaler)
    slow = ref.reference_scores(model, theirs, kind, hop=hop, scaler=scaler)
    np.testing.assert_allclose(fast, slow, rtol=1e-5)


# --------------------------------------------------------------------------------------
# The benchmark itself
# --------------------------------------------------------------------------------------


@pytest.fixture
def data_root(tmp_path, make_wav):
    root = tmp_path / "data"
    for i in range(6):
        _wav(root / "ToyCar" / "train" / f"normal_id_01_{i:08d}.wav", i, make_wav=make_wav)
    for label in ("normal", "anomaly"):
        for i in range(2):
            name = f"{label}_id_01_{i:08d}.wav"
            _wav(
                root / "ToyCar" / "test" / name,
                10 + i + 5 * (label == "anomaly"),
                make_wav=make_wav,
            )
    return root


def test_reference_is_importable_by_path():
    assert bench.REFERENCE_FILE.exists()
    assert ref.__name__ == "aadlib_reference_pipeline"
    assert bench.load_reference() is ref


def test_run_task_in_a_child_process(clips, tmp_path):
    result = bench.run_task(
        "extract_ours",
        {"paths": [str(p) for p in clips], "cache_dir": str(tmp_path / "c")},
        tmp_path / "work",
    )
    assert result["clips"] == len(clips)
    assert result["peak_rss_mb"] > 0 and result["tree_peak_rss_mb"] > 0
    assert len(list((tmp_path / "c").glob("*.frames.npy"))) == 1


def test_bench_end_to_end(data_root, tmp_path, capsys):
    out = tmp_path / "bench.csv"
    args = argparse.Namespace(
        profile="full-synthetic",
        data_root=data_root,
        results=tmp_path / "results",
        types=["ToyCar"],
        out=out,
        skip_book=True,
        prepare=False,
        isolate=False,
        input_rounds=1,
        input_batches=2,
        train_steps=1,
        val_steps=1,
        ref_mem_clips=3,
        ref_train_steps=1,
        memory_steps=3,
        score_clips=2,
        batch={"dense": 64, "cnn": 8},  # small batches: a quick run on the CPU
    )
    assert bench.main(args) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == bench.COLUMNS
    whats = list(table.what)
    expected = [
        "feature extraction",
        "features, max abs difference",
        "features, second run",
        "dense input pipeline",
        "dense input, NumPy batches",
        "dense training, peak RSS",
        "dense input time",
        "cnn input pipeline",
        "cnn input, NumPy batches",
        "cnn training, peak RSS",
        "cnn input time",
        "dense scoring",
        "cnn scoring",
        "book",
    ]
    assert len(whats) == len(expected)
    for what, start in zip(whats, expected):
        assert start in what
    diff = table.set_index("what").loc[whats[1], "ours"]
    assert float(diff) < 1e-3
    assert (table.loc[:12, "ours"].astype(float) > 0).all() or float(diff) == 0
    printed = capsys.readouterr().out
    assert "what" in printed and "ratio" in printed and str(out) in printed
    assert "skipped" in table.iloc[-1].note


def test_settings_accept_a_number_for_every_kind():
    settings = bench.BenchSettings(argparse.Namespace(train_steps=7, score_clips=None))
    assert settings.train_steps == {"dense": 7, "cnn": 7}
    assert settings.score_clips == bench.BenchSettings.defaults["score_clips"]
    assert settings.isolate and settings.prepare


def test_window_dataset_pickles(features):
    import pickle

    ours, _ = features
    ds = WindowDataset(ours, "dense", batch_size=16, shuffle=True)
    first = ds[0][0]
    again = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(again[0][0], first)
