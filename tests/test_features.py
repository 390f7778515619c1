"""Tests of aadlib.features against independent librosa/NumPy computations."""

from __future__ import annotations

import dataclasses
import os
import zipfile

import librosa
import numpy as np
import pytest
import soundfile as sf
from conftest import SR

from aadlib import features
from aadlib.data import AudioError
from aadlib.features import (
    FeatureParams,
    LogMelSet,
    Scaler,
    cache_key,
    clip_log_mel,
    cnn_patches,
    dense_vectors,
    extract_logmels,
    log_mel,
    mel_filterbank,
    stack_frames,
)

EPS = float(np.finfo(np.float32).eps)


def _signal(seconds: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    y = 0.2 * np.sin(2 * np.pi * 1000 * t) + 0.05 * rng.standard_normal(len(t))
    return y.astype(np.float32)


def _librosa_log_mel(y: np.ndarray, power: float) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=y, sr=16000, n_fft=1024, hop_length=512, n_mels=128, power=power, pad_mode="reflect"
    )
    return (20.0 / power * np.log10(mel + EPS)).T


# --------------------------------------------------------------------------------------
# Log-mel energies
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_log_mel_equals_librosa(power):
    y = _signal(1.5)
    params = FeatureParams(power=power)
    got = log_mel(y, params)
    expected = _librosa_log_mel(y, power)
    assert got.dtype == np.float32
    assert got.shape == expected.shape == (1 + len(y) // 512, 128)
    assert got.flags.c_contiguous
    np.testing.assert_allclose(got, expected, atol=1e-3, rtol=0)


def test_log_mel_power_two_is_the_same_energy():
    # 20/1*log10(sum |X| w) and 10*log10(sum |X|^2 w) differ: both follow the formula.
    y = _signal(1.0, seed=3)
    mag = np.abs(librosa.stft(y, n_fft=1024, hop_length=512, pad_mode="reflect"))
    fb = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=128)
    expected_p2 = 10 * np.log10(fb @ mag**2 + EPS)
    np.testing.assert_allclose(log_mel(y, FeatureParams(power=2.0)), expected_p2.T, atol=1e-3)


def test_log_mel_default_params_are_the_papers():
    p = FeatureParams()
    assert (p.sr, p.n_fft, p.hop_length, p.n_mels, p.power) == (16000, 1024, 512, 128, 1.0)
    np.testing.assert_array_equal(
        mel_filterbank(p), librosa.filters.mel(sr=16000, n_fft=1024, n_mels=128).astype(np.float32)
    )
    assert mel_filterbank(p).shape == (128, 513)


def test_log_mel_ten_second_clip_has_313_frames():
    y = _signal(10.0)
    assert len(y) == 160_000
    assert log_mel(y).shape == (313, 128)


def test_log_mel_rejects_2d():
    with pytest.raises(ValueError, match="1-D"):
        log_mel(np.zeros((2, 1000), dtype=np.float32))


def test_log_mel_of_silence_is_eps_floor():
    # The energy of a zero frame is 20*log10(eps), by the formula.
    frames = log_mel(np.zeros(4096, dtype=np.float32))
    np.testing.assert_allclose(frames, 20 * np.log10(EPS), atol=1e-3)


# --------------------------------------------------------------------------------------
# Dense vectors and CNN patches
# --------------------------------------------------------------------------------------


def _frames(n: int, n_mels: int = 128, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, n_mels)).astype(np.float32)


def _naive_stack(lm, n_frames, hop):
    out = []
    t = 0
    while t + n_frames <= len(lm):
        out.append(np.concatenate([lm[t + k] for k in range(n_frames)]))
        t += hop
    return np.array(out).reshape(len(out), n_frames * lm.shape[1])


@pytest.mark.parametrize(("n", "n_frames", "hop"), [(20, 5, 1), (20, 5, 2), (23, 5, 3), (5, 5, 1)])
def test_stack_frames_equals_naive_loop(n, n_frames, hop):
    lm = _frames(n)
    got = stack_frames(lm, n_frames, hop)
    expected = _naive_stack(lm, n_frames, hop)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(dense_vectors(lm, n_frames, hop), expected)


def test_dense_vectors_default_is_640_values():
    lm = _frames(12)
    vec = dense_vectors(lm)
    assert vec.shape == (8, 640)
    # Vector t is [frame t, ..., frame t+4].
    np.testing.assert_array_equal(vec[3, :128], lm[3])
    np.testing.assert_array_equal(vec[3, 512:], lm[7])


def test_dense_vectors_blocks_equal_naive_loop():
    lm = _frames(70, n_mels=8)
    block_frames, block_hop = 32, 16
    expected = []
    for start in range(0, len(lm) - block_frames + 1, block_hop):
        expected.append(_naive_stack(lm[start : start + block_frames], 5, 2))
    expected = np.concatenate(expected)
    got = dense_vectors(lm, 5, 2, block=(block_frames, block_hop))
    np.testing.assert_array_equal(got, expected)
    # 3 blocks (starts 0, 16, 32) of 14 vectors each.
    assert got.shape == (3 * 14, 40)


def test_dense_vectors_block_longer_than_clip():
    # A clip shorter than one block is one (short) block.
    lm = _frames(20, n_mels=4)
    np.testing.assert_array_equal(dense_vectors(lm, block=(32, 16)), _naive_stack(lm, 5, 1))


@pytest.mark.parametrize(("n", "hop"), [(40, 3), (32, 3), (100, 3), (100, 7)])
def test_cnn_patches_equal_naive_slicing(n, hop):
    lm = _frames(n)
    got = cnn_patches(lm, 32, hop)
    expected = np.array([lm[t : t + 32] for t in range(0, n - 32 + 1, hop)])
    assert got.shape == (len(range(0, n - 31, hop)), 32, 128)
    np.testing.assert_array_equal(got, expected)


def test_cnn_patches_default_hop_is_three():
    lm = _frames(40)
    assert cnn_patches(lm).shape == (3, 32, 128)  # starts 0, 3, 6


def test_windows_of_short_clips_are_empty():
    lm = _frames(4)
    assert stack_frames(lm).shape == (0, 640)
    assert dense_vectors(lm).shape == (0, 640)
    assert dense_vectors(lm, block=(32, 16)).shape == (0, 640)
    assert cnn_patches(_frames(31)).shape == (0, 32, 128)
    assert cnn_patches(_frames(0)).shape == (0, 32, 128)


def test_windows_do_not_write_back():
    lm = _frames(40)
    before = lm.copy()
    for view in (stack_frames(lm), cnn_patches(lm)):
        with pytest.raises(ValueError):
            view[0, 0] = 1.0
    np.testing.assert_array_equal(lm, before)


# --------------------------------------------------------------------------------------
# Scaler
# --------------------------------------------------------------------------------------


def test_scaler_fit_equals_numpy():
    clips = [_frames(n, n_mels=16, seed=n) * (1 + np.arange(16)) + 50 for n in (7, 13, 40)]
    scaler = Scaler.fit(clips)
    stacked = np.concatenate(clips).astype(np.float64)
    np.testing.assert_allclose(scaler.mean, stacked.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(scaler.std, stacked.std(axis=0), rtol=1e-4)
    assert scaler.mean.dtype == scaler.std.dtype == np.float32
    z = np.concatenate([scaler.transform(c) for c in clips])
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-4)


def test_scaler_fit_on_logmelset_and_generator():
    clips = [_frames(n, n_mels=8, seed=n) for n in (5, 9)]
    lms = LogMelSet.from_arrays(clips, ["a", "b"])
    a = Scaler.fit(lms)
    b = Scaler.fit(c for c in clips)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.std, b.std)


def test_scaler_constant_bin_is_not_divided_by_zero():
    lm = _frames(10, n_mels=4)
    lm[:, 2] = -30.0
    scaler = Scaler.fit([lm])
    z = scaler.transform(lm)
    assert np.all(np.isfinite(z))
    np.testing.assert_allclose(z[:, 2], 0.0, atol=1e-6)


def test_scaler_fit_needs_data():
    with pytest.raises(ValueError):
        Scaler.fit([])


def test_scaler_save_load_is_a_plain_npz(tmp_path):
    scaler = Scaler.fit([_frames(20, n_mels=16)])
    path = scaler.save(tmp_path / "sub" / "scaler.npz")
    assert path == tmp_path / "sub" / "scaler.npz"
    assert sorted(p.name for p in path.parent.iterdir()) == ["scaler.npz"]  # no temporary left
    with np.load(path, allow_pickle=False) as arrays:
        assert sorted(arrays.files) == ["mean", "std"]
        np.testing.assert_array_equal(arrays["mean"], scaler.mean)
        np.testing.assert_array_equal(arrays["std"], scaler.std)
        assert arrays["mean"].dtype != object
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["mean.npy", "std.npy"]
    loaded = Scaler.load(path)
    np.testing.assert_array_equal(loaded.mean, scaler.mean)
    np.testing.assert_array_equal(loaded.std, scaler.std)


def test_scaler_load_refuses_pickles(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, mean=np.array([{"a": 1}], dtype=object), std=np.ones(1))
    with pytest.raises(ValueError):
        Scaler.load(path)


# --------------------------------------------------------------------------------------
# LogMelSet
# --------------------------------------------------------------------------------------


def test_logmelset_from_arrays_clip_subset():
    arrays = [_frames(n, n_mels=6, seed=n) for n in (3, 0, 5, 2)]
    lms = LogMelSet.from_arrays(arrays, ["a", "b", "c", "d"])
    assert len(lms) == 4
    assert lms.frames.shape == (10, 6)
    assert lms.frames.dtype == np.float32
    np.testing.assert_array_equal(lms.offsets, [0, 3, 3, 8, 10])
    np.testing.assert_array_equal(lms.lengths, [3, 0, 5, 2])
    for i, a in enumerate(arrays):
        np.testing.assert_array_equal(lms.clip(i), a)
    for got, a in zip(lms, arrays, strict=True):
        np.testing.assert_array_equal(got, a)
    sub = lms.subset([3, 0])
    assert sub.paths == ["d", "a"]
    np.testing.assert_array_equal(sub.offsets, [0, 2, 5])
    np.testing.assert_array_equal(sub.clip(0), arrays[3])
    np.testing.assert_array_equal(sub.clip(1), arrays[0])
    assert not np.shares_memory(sub.frames, lms.frames)
    empty = lms.subset([])
    assert len(empty) == 0 and empty.frames.shape == (0, 6)


def test_logmelset_paths_are_strings(tmp_path):
    lms = LogMelSet.from_arrays([_frames(2, 4)], [tmp_path / "x.wav"])
    assert lms.paths == [str(tmp_path / "x.wav")]


# --------------------------------------------------------------------------------------
# extract_logmels and its cache
# --------------------------------------------------------------------------------------


@pytest.fixture
def clips(tmp_path, make_wav):
    return [
        make_wav(tmp_path / "clips" / f"normal_id_01_{i:08d}.wav", seconds=0.3 + 0.1 * i, seed=i)
        for i in range(4)
    ]


def _per_clip(paths, params=FeatureParams()):
    return [log_mel(sf.read(p, dtype="float32")[0], params) for p in paths]


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_extract_logmels_equals_per_clip(clips, n_jobs):
    lms = extract_logmels(clips, n_jobs=n_jobs, progress=False)
    expected = _per_clip(clips)
    assert lms.paths == [str(p) for p in clips]
    assert len(lms) == len(clips)
    # Worker processes may use another BLAS thread count: float32 rounding may differ.
    atol = 0.0 if n_jobs == 1 else 1e-4
    for i, e in enumerate(expected):
        assert lms.clip(i).shape == e.shape
        np.testing.assert_allclose(lms.clip(i), e, atol=atol, rtol=0)
        np.testing.assert_allclose(lms.clip(i), clip_log_mel(clips[i]), atol=atol, rtol=0)


def test_extract_logmels_needs_clips():
    with pytest.raises(ValueError):
        extract_logmels([], progress=False)


def test_extract_logmels_cache_is_memory_mapped(clips, tmp_path):
    cache = tmp_path / "cache"
    first = extract_logmels(clips, n_jobs=1, cache_dir=cache, progress=False)
    assert not isinstance(first.frames, np.memmap)
    key = cache_key(clips)
    files = sorted(p.name for p in cache.iterdir() if p.name != f".{key}.lock")
    assert files == [f"{key}.frames.npy", f"{key}.json", f"{key}.offsets.npy"]
    second = extract_logmels(clips, n_jobs=1, cache_dir=cache, progress=False)
    assert isinstance(second.frames, np.memmap) or isinstance(second.frames.base, np.memmap)
    np.testing.assert_array_equal(second.frames, first.frames)
    np.testing.assert_array_equal(second.offsets, first.offsets)
    assert second.paths == first.paths
    with pytest.raises(ValueError):
        second.frames[0, 0] = 0.0  # read-only mapping: the cache cannot be corrupted


def test_cache_is_really_read(clips, tmp_path, monkeypatch):
    # A second call must take the frames from the cache file, not recompute them.
    cache = tmp_path / "cache"
    first = extract_logmels(clips, n_jobs=1, cache_dir=cache, progress=False)

    def no_extraction(*args, **kwargs):
        raise AssertionError("the cached features were extracted again")

    monkeypatch.setattr(features, "clip_log_mel", no_extraction)
    again = extract_logmels(clips, n_jobs=1, cache_dir=cache, progress=False)
    assert again.is_mapped
    np.testing.assert_array_equal(again.frames, first.frames)


def _damage_zero_quarter(path):
    data = bytearray(path.read_bytes())
    quarter = len(data) // 4
    data[-quarter:] = bytes(quarter)
    path.write_bytes(bytes(data))


def _damage_truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _damage_random(path):
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


@pytest.mark.parametrize("damage", [_damage_zero_quarter, _damage_truncate, _damage_random])
@pytest.mark.parametrize("which", ["frames", "offsets", "json"])
def test_damaged_cache_is_detected_named_and_rebuilt(clips, tmp_path, caplog, damage, which):
    cache = tmp_path / "cache"
    first = extract_logmels(clips, n_jobs=1, cache_dir=cache, progress=False)
    expected = np.array(first.frames)
    damaged = cache / f"{cache_key(clips)}.{which}" if which == "json" else None
    damaged = damaged or cache / f"{cache_key(clips)}.{which}.npy"
    damage(damaged)
    with caplog.at_level("WARNING", logger="aadlib"):
        again = extract_logmels(clips, n_jobs=1, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(again.frames, expected)  # rebuilt, not the damaged bytes
    messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(messages) == 1 and "damaged" in messages[0] and "rebuilding" in messages[0]
    assert str(cache / f"{cache_key(clips)}.frames.npy") in messages[0]
    # The rebuilt entry is whole again: a third call reads it without a word.
    caplog.clear()
    with caplog.at_level("WARNING", logger="aadlib"):
        extract_logmels(clips, n_jobs=1, cache_dir=cache, progress=False)
    assert not caplog.records


def test_entry_without_record_is_not_used(clips, tmp_path, monkeypatch):
    # A killed extraction can leave frames and offsets without the record written last.
    cache = tmp_path / "cache"
    extract_logmels(clips, n_jobs=1, cache_dir=cache, progress=False)
    (cache / f"{cache_key(clips)}.json").unlink()
    calls = []
    original = features.clip_log_mel
    monkeypatch.setattr(features, "clip_log_mel", lambda *a: calls.append(1) or original(*a))
    extract_logmels(clips, n_jobs=1, cache_dir=cache, progress=False)
    assert len(calls) == len(clips)


def test_stale_temporaries_of_dead_processes_are_removed(clips, tmp_path):
    import subprocess
    import sys

    cache = tmp_path / "cache"
    cache.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    stale = cache / f".tmp-{dead}-0123.frames.npy"
    stale.write_bytes(b"half-written")
    live = cache / f".tmp-{os.getppid()}-0456.frames.npy"  # a running process's file
    live.write_bytes(b"being written")
    extract_logmels(clips, n_jobs=1, cache_dir=cache, progress=False)
    assert not stale.exists()
    assert live.exists()


def test_cache_key_follows_file_changes(clips, make_wav):
    key = cache_key(clips)
    assert key == cache_key([str(p) for p in clips])  # str and Path give the same key
    assert cache_key(clips) == key  # deterministic
    assert cache_key(clips[::-1]) != key  # order matters: the set keeps it
    st = os.stat(clips[0])
    os.utime(clips[0], ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    touched = cache_key(clips)
    assert touched != key
    make_wav(clips[0], seconds=0.9, seed=99)  # new content, new size
    assert cache_key(clips) not in (key, touched)


@pytest.mark.parametrize(
    "change", [{"power": 2.0}, {"n_mels": 64}, {"hop_length": 256}, {"n_fft": 2048}]
)
def test_cache_key_follows_params(clips, change):
    params = FeatureParams()
    assert cache_key(clips, params) == cache_key(clips, FeatureParams())
    assert cache_key(clips, dataclasses.replace(params, **change)) != cache_key(clips, params)


def test_cache_recomputes_after_file_change(clips, tmp_path, make_wav):
    cache = tmp_path / "cache"
    before = extract_logmels(clips, n_jobs=1, cache_dir=cache, progress=False)
    old_clip = np.array(before.clip(1))
    make_wav(clips[1], seconds=0.4, freq=3000, seed=42)  # same size, new content
    st = os.stat(clips[1])
    os.utime(clips[1], ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    after = extract_logmels(clips, n_jobs=1, cache_dir=cache, progress=False)
    expected = _per_clip([clips[1]])[0]
    np.testing.assert_array_equal(after.clip(1), expected)
    assert not np.array_equal(after.clip(1), old_clip)
    assert len(list(cache.glob("*.frames.npy"))) == 2


def test_cache_recomputes_after_param_change(clips, tmp_path):
    cache = tmp_path / "cache"
    extract_logmels(clips, n_jobs=1, cache_dir=cache, progress=False)
    params = FeatureParams(n_mels=64)
    other = extract_logmels(clips, params, n_jobs=1, cache_dir=cache, progress=False)
    assert other.frames.shape[1] == 64
    np.testing.assert_array_equal(other.clip(0), _per_clip([clips[0]], params)[0])


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_extract_logmels_bad_file_names_it(clips, tmp_path, n_jobs):
    bad = tmp_path / "clips" / "normal_id_01_00000077.wav"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(AudioError) as info:
        extract_logmels([*clips, bad], n_jobs=n_jobs, progress=False)
    assert str(bad) in str(info.value)


def test_scaler_transform_in_place_gives_the_same_numbers():
    rng = np.random.default_rng(3)
    clips = [rng.normal(-40, 12, (50, 128)).astype(np.float32) for _ in range(3)]
    scaler = Scaler.fit(clips)
    frames = clips[0].copy()
    expected = scaler.transform(frames)
    assert scaler.transform(frames, out=frames) is frames
    np.testing.assert_array_equal(frames, expected)


def test_cache_key_follows_file_list(clips):
    assert cache_key(clips) != cache_key(clips[:-1])
    assert cache_key(clips) != cache_key(clips, FeatureParams(n_mels=64))


def test_iterating_a_mapped_set_releases_memory(clips, tmp_path, monkeypatch):
    logmels = extract_logmels(clips, n_jobs=1, cache_dir=tmp_path / "cache", progress=False)
    monkeypatch.setattr(LogMelSet, "release_bytes", int(logmels.lengths[0]) * 128 * 4)
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
