"""The library's fast paths give the numbers of the reference pipeline.

``benchmarks/reference_pipeline.py`` computes features, training input and scores the
way the paper's authors' code does; the benchmark (``benchmarks/bench.py``) times it
against the library. These tests check that what it times computes the same thing:
features within 1e-3 dB, vectors, patches and batches identical in the same window
order, scores equal to 1e-5. No timing is asserted here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from aadlib import models, paper
from aadlib.batches import WindowBatches
from aadlib.features import (
    LogMelSet,
    Scaler,
    extract_logmels,
    stack_frames,
)
from aadlib.scoring import score_clips

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import reference_pipeline as ref  # noqa: E402

SECONDS = 1.5  # 47 frames: 43 Dense vectors, 6 CNN patches at hop 3
FRAMES = 47


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


def _scaler(kind: str, logmels):
    """The scaler the kind's model reads its frames through (the paper's), or None."""
    return Scaler.fit(logmels) if paper.MODELS[kind].normalise else None


# --------------------------------------------------------------------------------------
# Features and their cache
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
        assert again.is_mapped
        np.testing.assert_array_equal(again.frames, ours.frames)
        np.testing.assert_array_equal(again.offsets, ours.offsets)


# --------------------------------------------------------------------------------------
# Training input: vectors, patches and batches
# --------------------------------------------------------------------------------------


def _batches(ds: WindowBatches, epoch: int = 0) -> np.ndarray:
    parts = [ds.batch(i, epoch) for i in range(len(ds))]
    return np.concatenate([p[0] if isinstance(p, tuple) else p for p in parts])


def test_dense_vectors_equal_materialised(features):
    ours, theirs = features
    expected = ref.reference_dense_vectors(theirs)
    assert expected.dtype == np.float64
    x = _batches(WindowBatches(ours, "dense", hop=1, batch_size=64, targets=False))
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
    ds = WindowBatches(ours, "cnn", hop=3, batch_size=4, targets=False, scaler=scaler)
    x = _batches(ds)
    assert x.shape == (*expected.shape, 1)
    np.testing.assert_array_equal(x[..., 0].astype(np.float64), expected)


def _reference_windows(ds: WindowBatches, logmels: LogMelSet, epoch: int) -> np.ndarray:
    """``(clip, start)`` of each window of ``ds`` in the order of epoch ``epoch``."""
    rows = ds.plan(epoch).order
    clip = ds.clips[ds.clip_of_window[rows]]
    return np.stack([clip, ds.starts[rows] - logmels.offsets[clip]], axis=1)


def _check_against_generator(logmels, kind, hop, batch, scaler, epochs=2):
    common = dict(hop=hop, batch_size=batch, shuffle=True, seed=7, scaler=scaler)
    ds = WindowBatches(logmels, kind, **common)
    fed = WindowBatches(logmels, kind, **common).as_tf_dataset()  # what fit trains on
    stacked = ref.stack_clips([np.asarray(c) for c in logmels], scaler)
    for epoch in range(epochs):
        windows = _reference_windows(ds, logmels, epoch)
        generator = ref.ReferenceGenerator(stacked, kind, batch, windows=windows)
        assert len(generator) == len(ds)
        for i, (x_fed, _) in enumerate(fed):  # one pass: the next epoch
            x, y = ds.batch(i, epoch)
            expected, _ = generator[i]
            assert x is y or np.array_equal(x, y)
            assert x.dtype == np.float32
            np.testing.assert_array_equal(x.astype(np.float64), expected)
            np.testing.assert_array_equal(x_fed.numpy().astype(np.float64), expected)
        assert i == len(ds) - 1
        # Each window once per epoch.
        keys = windows[:, 0] * 10_000 + windows[:, 1]
        assert len(np.unique(keys)) == len(keys) == len(ds.starts)
    # Each epoch in its own order.
    assert not np.array_equal(ds.plan(0).order, ds.plan(1).order)
    return ds


@pytest.mark.parametrize("kind,hop,batch", [("dense", 1, 64), ("cnn", 3, 4)])
def test_batches_equal_reference_generator(features, kind, hop, batch):
    ours, _ = features
    ds = _check_against_generator(ours, kind, hop, batch, _scaler(kind, ours))
    assert ds.one_block  # small sets: one block, a shuffle of all windows


@pytest.mark.parametrize("kind,hop,batch", [("dense", 1, 50), ("cnn", 3, 4)])
def test_streamed_batches_equal_reference_generator(clips, tmp_path, monkeypatch, kind, hop, batch):
    # Memory-mapped frames cut into blocks of two clips: read block by block.
    logmels = extract_logmels(clips, n_jobs=1, cache_dir=tmp_path / "cache", progress=False)
    assert logmels.is_mapped
    monkeypatch.setattr(WindowBatches, "block_bytes", 2 * FRAMES * 128 * 4)
    reads = []
    original = LogMelSet.read_clips

    def spy(self, clips, out=None, each=None):
        reads.append(out)
        return original(self, clips, out=out, each=each)

    monkeypatch.setattr(LogMelSet, "read_clips", spy)
    scaler = _scaler(kind, logmels)
    ds = _check_against_generator(logmels, kind, hop, batch, scaler)
    assert not ds.one_block and len(ds.plan().blocks) == 3
    # Each block is read from the file (NumPy batches into one reused buffer; the tf.data
    # pipeline reads each of its blocks once an epoch).
    assert len(reads) >= 2 * 3 * 2
    # The NumPy batches of an epoch read every block into one buffer that holds a block.
    reads.clear()
    _batches(ds, epoch=2)
    assert len(reads) >= 3
    first_rows = {out.__array_interface__["data"][0] for out in reads}
    assert len(first_rows) == 1
    assert max(len(out) for out in reads) >= 2 * FRAMES
    # Unshuffled (validation, scoring): the plain order, whatever the blocks.
    plain = _batches(
        WindowBatches(logmels, kind, hop=hop, batch_size=batch, targets=False, scaler=scaler)
    )
    stacked = ref.stack_clips([np.asarray(c) for c in logmels], scaler)
    generator = ref.ReferenceGenerator(stacked, kind, batch, hop=hop)
    expected = np.concatenate([generator[i][0] for i in range(len(generator))])
    np.testing.assert_array_equal(plain.astype(np.float64), expected)


# --------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,hop", [("dense", 1), ("cnn", 3)])
def test_scores_equal_reference(features, kind, hop):
    import keras

    ours, theirs = features
    keras.utils.set_random_seed(0)
    model = models.build_model(kind)
    scaler = _scaler(kind, ours)
    fast = score_clips(model, ours, kind, hop=hop, batch_size=64, scaler=scaler)
    slow = ref.reference_scores(model, theirs, kind, hop=hop, scaler=scaler)
    np.testing.assert_allclose(fast, slow, rtol=1e-5)
