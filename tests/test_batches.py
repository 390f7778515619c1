"""Tests of aadlib.batches: windows gathered from frames, the epoch order, the tf.data feed."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import collect_batches, indexed_logmels

from aadlib._fastio import aligned_empty  # a private I/O helper, tested or held here directly
from aadlib.batches import WindowBatches
from aadlib.features import LogMelSet, Scaler


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


# --------------------------------------------------------------------------------------
# WindowBatches
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("hop", [1, 2, 3])
def test_dense_batches_equal_naive_windows(hop):
    logmels = indexed_logmels([12, 4, 9, 5])
    ds = WindowBatches(logmels, "dense", hop=hop, batch_size=4)
    batches, x = collect_batches(ds)
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
    logmels = indexed_logmels([40, 31, 35], n_mels=128)
    ds = WindowBatches(logmels, "cnn", hop=3, batch_size=2, targets=False)
    batches, x = collect_batches(ds)
    assert all(not isinstance(b, tuple) for b in batches)
    expected = _naive_windows(logmels, "cnn", 3)
    assert x.shape == (len(expected), 32, 128, 1) == (3 + 0 + 2, 32, 128, 1)
    np.testing.assert_array_equal(x, expected)


def test_scaler_is_applied_to_batches():
    logmels = indexed_logmels([36, 33])
    scaler = Scaler(np.linspace(-1, 1, 128).astype(np.float32), np.full(128, 2.0, np.float32))
    ds = WindowBatches(logmels, "cnn", hop=2, batch_size=3, scaler=scaler, targets=False)
    _, x = collect_batches(ds)
    expected = (_naive_windows(logmels, "cnn", 2) - scaler.mean[:, None]) / 2.0
    np.testing.assert_allclose(x, expected, rtol=1e-6, atol=1e-6)
    # The frames themselves are not normalised in place.
    np.testing.assert_array_equal(logmels.frames[:, 0], np.arange(69))


def test_shuffle_covers_each_window_once_per_epoch():
    logmels = indexed_logmels([30, 17, 25])
    plain = WindowBatches(logmels, "dense", hop=1, batch_size=8, targets=False)
    _, x_plain = collect_batches(plain)
    starts = x_plain[:, 0]  # first bin of the first frame = the window's start frame
    ds = WindowBatches(logmels, "dense", hop=1, batch_size=8, shuffle=True, seed=3)
    orders = []
    for epoch in range(3):
        _, x = collect_batches(ds, epoch)
        assert len(x) == len(x_plain)
        np.testing.assert_array_equal(np.sort(x[:, 0]), np.sort(starts))  # each window once
        assert len(np.unique(x[:, 0])) == len(x)
        # The rows are still whole windows: each equals the naive window of its start.
        by_start = {row[0]: row for row in x_plain}
        for row in x[:5]:
            np.testing.assert_array_equal(row, by_start[row[0]])
        orders.append(x[:, 0].copy())
    assert not np.array_equal(orders[0], starts)  # shuffled
    assert not np.array_equal(orders[0], orders[1])  # reshuffled each epoch
    # The same seed gives the same order.
    again = WindowBatches(logmels, "dense", hop=1, batch_size=8, shuffle=True, seed=3)
    np.testing.assert_array_equal(collect_batches(again)[1][:, 0], orders[0])


def _tf_batches(fed):
    """One pass over a ``tf.data`` dataset (or a ``WindowBatches``'s) as NumPy batches."""
    if isinstance(fed, WindowBatches):
        fed = fed.as_tf_dataset()
    return [tuple(t.numpy() for t in b) if isinstance(b, tuple) else b.numpy() for b in fed]


def _assert_same_batches(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        a, b = (a, b) if isinstance(b, tuple) else ((a,), (b,))
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert x.dtype == y.dtype == np.float32 and x.shape == y.shape
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("block_rows", [None, 20, 70])
@pytest.mark.parametrize(
    "kind,hop,batch,shuffle,targets",
    [
        ("dense", 1, 16, True, True),
        ("dense", 2, 3, False, False),
        ("dense", 1, 1000, True, True),  # one short batch: every block in it
        ("cnn", 3, 4, True, True),
        ("cnn", 1, 9, False, True),
    ],
)
def test_tf_dataset_yields_the_batches_of_each_epoch(
    monkeypatch, block_rows, kind, hop, batch, shuffle, targets
):
    # Blocks of 20 frames hold one or two clips and leave batches spanning several
    # blocks; blocks of 70 frames hold a few clips; None: everything in one block.
    if block_rows:
        monkeypatch.setattr(WindowBatches, "block_bytes", block_rows * 128 * 4)
    logmels = indexed_logmels([40, 12, 35, 7, 50, 33, 60, 9, 44])
    scaler = Scaler.fit(logmels) if kind == "cnn" else None
    common = dict(hop=hop, batch_size=batch, shuffle=shuffle, seed=4, targets=targets)
    ds = WindowBatches(logmels, kind, scaler=scaler, **common)
    indexed = WindowBatches(logmels, kind, scaler=scaler, **common)
    blocks = len(ds.plan().blocks)
    assert blocks == 1 if block_rows is None else blocks > 3
    assert int(ds.as_tf_dataset().cardinality()) == len(ds)
    firsts = []
    fed = ds.as_tf_dataset()
    for epoch in range(3):  # each pass over the dataset is the next epoch
        got = _tf_batches(fed)
        _assert_same_batches(got, [indexed.batch(i, epoch) for i in range(len(indexed))])
        firsts.append(got[0][0] if targets else got[0])
    assert np.array_equal(firsts[0], firsts[1]) != shuffle
    # A feed that starts at a later epoch (a resumed training) gives that epoch's batches.
    _assert_same_batches(
        _tf_batches(ds.as_tf_dataset(first_epoch=2)),
        [indexed.batch(i, 2) for i in range(len(indexed))],
    )


def test_tf_dataset_of_mapped_frames(tmp_path, monkeypatch):
    # Frames memory-mapped from the feature cache: blocks are read from the file.
    logmels = indexed_logmels([30, 41, 25, 33])
    path = tmp_path / "frames.npy"
    np.save(path, logmels.frames)
    mapped = LogMelSet(np.load(path, mmap_mode="r"), logmels.offsets, logmels.paths)
    assert mapped.is_mapped
    monkeypatch.setattr(WindowBatches, "block_bytes", 60 * 128 * 4)
    ds = WindowBatches(mapped, "cnn", hop=2, batch_size=5, shuffle=True, targets=False)
    _assert_same_batches(
        _tf_batches(ds),
        collect_batches(
            WindowBatches(logmels, "cnn", hop=2, batch_size=5, shuffle=True, targets=False)
        )[0],
    )


@pytest.mark.parametrize("rows", [1, 7, 313, 65536])
def test_blocks_for_tf_data_are_aligned(rows):
    # TensorFlow takes a 64-byte-aligned array without copying it (not another one).
    frames = aligned_empty(rows, 128)
    assert frames.shape == (rows, 128) and frames.dtype == np.float32
    assert frames.ctypes.data % 64 == 0 and frames.flags.c_contiguous and frames.flags.writeable


def test_clips_selection_copies_nothing():
    logmels = indexed_logmels([10, 20, 15, 8])
    ds = WindowBatches(logmels, "dense", hop=1, batch_size=5, clips=[2, 0], targets=False)
    assert ds.logmels is logmels
    assert ds.logmels.frames is logmels.frames
    _, x = collect_batches(ds)
    np.testing.assert_array_equal(x, _naive_windows(logmels, "dense", 1, clips=[2, 0]))
    np.testing.assert_array_equal(ds.windows_per_clip, [11, 6])
    np.testing.assert_array_equal(ds.clip_of_window, np.repeat([0, 1], [11, 6]))


def test_window_batches_unknown_kind():
    with pytest.raises(ValueError, match="unknown model kind"):
        WindowBatches(indexed_logmels([10]), "rnn")


def test_window_batches_all_clips_too_short():
    ds = WindowBatches(indexed_logmels([3, 4]), "dense")
    assert len(ds) == 0
    np.testing.assert_array_equal(ds.windows_per_clip, [0, 0])
