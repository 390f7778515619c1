"""Tests of aadlib.data: clip names, clip tables, layout checks and audio loading."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import CLIPS, SR

from aadlib import data
from aadlib.data import (
    DEV_IDS,
    MACHINE_TYPES,
    AudioError,
    AudioErrors,
    DataLayoutError,
    clip_filename,
    list_clips,
    load_clip,
    parse_clip_name,
    type_clips,
)

# --------------------------------------------------------------------------------------
# Clip names
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "machine_id", "index", "name"),
    [
        ("normal", 1, 42, "normal_id_01_00000042.wav"),
        ("anomaly", 6, 0, "anomaly_id_06_00000000.wav"),
        ("normal", 0, 99_999_999, "normal_id_00_99999999.wav"),
    ],
)
def test_clip_filename_and_parse_round_trip(label, machine_id, index, name):
    assert clip_filename(label, machine_id, index) == name
    assert parse_clip_name(name) == {"label": label, "machine_id": machine_id, "index": index}
    # A full path parses by its file name.
    assert parse_clip_name(f"/some/root/fan/test/{name}")["index"] == index


def test_clip_filename_rejects_unknown_label():
    with pytest.raises(ValueError, match="label"):
        clip_filename("abnormal", 1, 0)


@pytest.mark.parametrize(
    "name",
    [
        ".DS_Store",
        "normal_id_1_00000000.wav",  # one-digit ID
        "normal_id_01_0000000.wav",  # seven-digit index
        "normal_id_01_00000000.WAV",
        "normal_id_01_00000000.flac",
        "abnormal_id_01_00000000.wav",
        "id_01_00000000.wav",  # evaluation clips carry no label
        "normal_id_01_00000000.wav.tmp",
        "xnormal_id_01_00000000.wav",
    ],
)
def test_parse_clip_name_rejects_other_names(name):
    assert parse_clip_name(name) is None


# --------------------------------------------------------------------------------------
# Clip tables
# --------------------------------------------------------------------------------------


def test_list_clips_table(data_root):
    table = list_clips(data_root)
    assert list(table.columns) == ["machine_type", "split", "label", "machine_id", "index", "path"]
    # Exactly the clips of the fixture: junk, wrong names, folders and unknown types ignored.
    got = set(
        table[["machine_type", "split", "label", "machine_id", "index"]].itertuples(
            index=False, name=None
        )
    )
    assert got == set(CLIPS)
    assert len(table) == len(CLIPS)
    # Sorted by type, split, ID, label, index.
    expected = sorted(
        CLIPS, key=lambda c: (c[0], c[1], c[3], c[2], c[4])
    )  # type, split, id, label, index
    assert list(table.drop(columns="path").itertuples(index=False, name=None)) == expected
    assert list(table.index) == list(range(len(table)))
    for row in table.itertuples():
        assert row.path.name == clip_filename(row.label, row.machine_id, row.index)
        assert row.path.parent.name == row.split
        assert row.path.parent.parent.name == row.machine_type
        assert row.path.is_file()
    assert table.machine_id.dtype.kind == "i"


def test_list_clips_filters(data_root):
    fan = list_clips(data_root, "fan")
    assert set(fan.machine_type) == {"fan"}
    assert len(fan) == sum(c[0] == "fan" for c in CLIPS)
    test = list_clips(data_root, split="test")
    assert set(test.split) == {"test"}
    assert len(test) == sum(c[1] == "test" for c in CLIPS)
    both = list_clips(data_root, "ToyCar", "train")
    assert len(both) == sum(c[0] == "ToyCar" and c[1] == "train" for c in CLIPS)


def test_list_clips_is_deterministic(data_root):
    pd.testing.assert_frame_equal(list_clips(data_root), list_clips(data_root))


def test_list_clips_missing_root(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataLayoutError, match="does not exist") as info:
        list_clips(missing)
    message = str(info.value)
    assert str(missing) in message
    assert "aadlib synth" in message or "aadlib download" in message
    # DataLayoutError is a FileNotFoundError, so generic handlers catch it.
    assert isinstance(info.value, FileNotFoundError)


def test_list_clips_empty_root(tmp_path):
    with pytest.raises(DataLayoutError, match="no clips found") as info:
        list_clips(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    # The message tells the expected layout and the known machine types.
    assert "<root>/<machine_type>" in message
    for mtype in MACHINE_TYPES:
        assert mtype in message


def test_list_clips_unknown_layout(tmp_path, make_wav):
    # Clips flat in the root, or under an unknown type, or with other names: none counts.
    make_wav(tmp_path / "normal_id_01_00000000.wav")
    make_wav(tmp_path / "machines" / "train" / "normal_id_01_00000000.wav")
    make_wav(tmp_path / "fan" / "train" / "section_00_source_train_normal_0000.wav")
    with pytest.raises(DataLayoutError, match="no clips found"):
        list_clips(tmp_path)


def test_list_clips_missing_machine_type(data_root):
    with pytest.raises(DataLayoutError) as info:
        list_clips(data_root, "valve")
    assert str(data_root / "valve") in str(info.value)


# --------------------------------------------------------------------------------------
# Machine type checks
# --------------------------------------------------------------------------------------


def test_check_machine_type_ok(data_root):
    table = type_clips(data_root, "ToyCar")
    pd.testing.assert_frame_equal(table, list_clips(data_root, "ToyCar"))


def test_check_machine_type_without_training_normals(data_root):
    shutil.rmtree(data_root / "fan" / "train")
    with pytest.raises(DataLayoutError, match="no normal training clip") as info:
        type_clips(data_root, "fan")
    assert str(data_root / "fan" / "train") in str(info.value)


def test_check_machine_type_training_anomalies_only(data_root, make_wav):
    # Anomalous clips in train/ do not count as normal training clips.
    shutil.rmtree(data_root / "fan" / "train")
    make_wav(data_root / "fan" / "train" / "anomaly_id_00_00000000.wav")
    with pytest.raises(DataLayoutError, match="no normal training clip"):
        type_clips(data_root, "fan")


@pytest.mark.parametrize(("removed", "missing"), [("anomaly", "anomaly"), ("normal", "normal")])
def test_check_machine_type_test_without_one_label(data_root, removed, missing):
    for path in (data_root / "fan" / "test").glob(f"{removed}_*.wav"):
        path.unlink()
    with pytest.raises(DataLayoutError, match=f"no {missing} test clip") as info:
        type_clips(data_root, "fan")
    assert str(data_root / "fan" / "test") in str(info.value)
    assert "AUC" in str(info.value)


def test_check_machine_type_without_test_folder(data_root):
    shutil.rmtree(data_root / "fan" / "test")
    with pytest.raises(DataLayoutError, match="no normal or anomaly test clip"):
        type_clips(data_root, "fan")


def test_dev_ids_cover_machine_types():
    assert set(DEV_IDS) == set(MACHINE_TYPES)
    assert MACHINE_TYPES == ("ToyCar", "ToyConveyor", "fan", "pump", "slider", "valve")


# --------------------------------------------------------------------------------------
# Loading clips
# --------------------------------------------------------------------------------------


def test_load_valid_clip(tmp_path, make_wav):
    rng = np.random.default_rng(1)
    samples = (0.5 * rng.uniform(-1, 1, 8000)).astype(np.float32)
    path = make_wav(tmp_path / "a.wav", data=samples, subtype="FLOAT")
    y = load_clip(path)
    assert y.dtype == np.float32
    assert y.ndim == 1
    assert y.flags.c_contiguous
    np.testing.assert_array_equal(y, samples)


def test_load_pcm16_clip_in_range(tmp_path, make_wav):
    path = make_wav(tmp_path / "a.wav", seconds=0.25)
    y = load_clip(path)
    expected, sr = sf.read(path, dtype="float32")
    assert sr == SR
    assert y.shape == (4000,)
    assert np.abs(y).max() <= 1.0
    np.testing.assert_array_equal(y, expected)


def _assert_names(info, path):
    assert isinstance(info.value, AudioError)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value)


def test_load_missing_file(tmp_path):
    path = tmp_path / "missing.wav"
    with pytest.raises(AudioError, match="no such file") as info:
        load_clip(path)
    _assert_names(info, path)


def test_load_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match="empty") as info:
        load_clip(path)
    _assert_names(info, path)


def test_load_garbage_bytes(tmp_path):
    path = tmp_path / "garbage.wav"
    path.write_bytes(b"this is not a RIFF file at all" * 40)
    with pytest.raises(AudioError, match="not a readable audio file") as info:
        load_clip(path)
    _assert_names(info, path)
    assert "re-download" in str(info.value) or "regenerate" in str(info.value)


def test_load_folder_named_like_a_clip(tmp_path):
    path = tmp_path / "normal_id_01_00000000.wav"
    path.mkdir()
    with pytest.raises(AudioError) as info:
        load_clip(path)
    _assert_names(info, path)


def test_load_wav_cut_inside_header(tmp_path, make_wav):
    full = make_wav(tmp_path / "full.wav", seconds=0.5).read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(full[:30])  # RIFF/fmt start, no data chunk
    with pytest.raises(AudioError, match="not a readable audio file") as info:
        load_clip(path)
    _assert_names(info, path)


def test_load_wav_with_header_only(tmp_path, make_wav):
    full = make_wav(tmp_path / "full.wav", seconds=0.5).read_bytes()
    path = tmp_path / "header.wav"
    path.write_bytes(full[:44])  # the canonical 44-byte PCM header, no samples
    with pytest.raises(AudioError, match="truncated") as info:
        load_clip(path)
    _assert_names(info, path)


def test_load_truncated_wav_is_refused(tmp_path, make_wav):
    """libsndfile reads a WAV cut in its data chunk without an error, as a shorter clip; the
    header's data size says how much was written, and load_clip refuses the clip."""
    path = make_wav(tmp_path / "full.wav", seconds=1.0)
    raw = path.read_bytes()
    assert len(load_clip(path)) == SR
    cut = tmp_path / "half.wav"
    cut.write_bytes(raw[: len(raw) // 2])
    assert len(sf.read(cut)[0]) < SR  # what libsndfile alone would give
    with pytest.raises(AudioError, match="truncated") as info:
        load_clip(cut)
    _assert_names(info, cut)
    assert f"{2 * SR:,}" in str(info.value)  # the bytes the header promises


def test_streamed_wav_with_open_size_is_not_called_truncated(tmp_path, make_wav):
    # A WAV written by a stream may leave the data size at 0xFFFFFFFF: not a truncation.
    path = make_wav(tmp_path / "stream.wav", seconds=0.5)
    raw = bytearray(path.read_bytes())
    raw[40:44] = (0xFFFFFFFF).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    # The private check itself: load_clip would read the open-sized file either way.
    assert data._wav_shortfall(path) is None


def test_check_clips_reports_every_bad_clip_at_once(tmp_path, make_wav):
    good = [make_wav(tmp_path / f"good{i}.wav", seconds=1.2, seed=i) for i in range(3)]
    bad = {
        "empty": tmp_path / "empty.wav",
        "garbage": tmp_path / "garbage.wav",
        "rate": make_wav(tmp_path / "rate.wav", seconds=1.2, sr=8000),
        "stereo": make_wav(tmp_path / "stereo.wav", seconds=1.2, channels=2),
        "short": make_wav(tmp_path / "short.wav", seconds=0.3),
        "truncated": tmp_path / "truncated.wav",
        "missing": tmp_path / "missing.wav",
    }
    bad["empty"].write_bytes(b"")
    bad["garbage"].write_bytes(b"\x00garbage" * 50)
    full = make_wav(tmp_path / "full.wav", seconds=1.2).read_bytes()
    bad["truncated"].write_bytes(full[: len(full) // 2])
    with pytest.raises(AudioErrors) as info:
        data.check_clips([*good, *bad.values()], SR, min_samples=SR)
    assert len(info.value.errors) == len(bad)
    message = str(info.value)
    for reason, path in bad.items():
        assert str(path) in message, reason
    for path in good:
        assert str(path) not in message
    for words in (
        "empty",
        "not a readable",
        "8000 Hz",
        "2 channels",
        "shorter than one",
        "truncated",
        "no such file",
    ):
        assert words in message
    data.check_clips(good, SR, min_samples=SR)  # all good: nothing raised


def test_load_wrong_sample_rate_refused(tmp_path, make_wav):
    path = make_wav(tmp_path / "a.wav", seconds=0.5, sr=44_100)
    with pytest.raises(AudioError, match="44100 Hz") as info:
        load_clip(path)
    _assert_names(info, path)
    assert "resample=True" in str(info.value)


@pytest.mark.parametrize(("file_sr", "n"), [(44_100, 44_100), (8_000, 8_000), (22_050, 11_025)])
def test_load_wrong_sample_rate_resampled(tmp_path, make_wav, file_sr, n):
    t = np.arange(n) / file_sr
    tone = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    path = make_wav(tmp_path / "a.wav", sr=file_sr, data=tone, subtype="FLOAT")
    y = load_clip(path, resample=True)
    assert y.dtype == np.float32 and y.ndim == 1
    # The duration is kept: n samples at file_sr become n * 16000 / file_sr samples.
    assert len(y) == int(np.ceil(n * SR / file_sr))
    # Still a 300 Hz tone at the new rate: compare with one generated at 16 kHz.
    t16 = np.arange(len(y)) / SR
    ref = 0.5 * np.sin(2 * np.pi * 300 * t16)
    middle = slice(len(y) // 4, 3 * len(y) // 4)
    assert np.abs(y[middle] - ref[middle]).max() < 0.02


def test_load_other_target_rate(tmp_path, make_wav):
    path = make_wav(tmp_path / "a.wav", seconds=0.5, sr=8000)
    assert len(load_clip(path, sr=8000)) == 4000


def test_load_multichannel_refused(tmp_path, make_wav):
    path = make_wav(tmp_path / "stereo.wav", channels=2)
    with pytest.raises(AudioError, match="2 channels") as info:
        load_clip(path)
    _assert_names(info, path)
    assert "mono=" in str(info.value)


def test_load_multichannel_mixed_down(tmp_path, make_wav):
    rng = np.random.default_rng(2)
    stereo = rng.uniform(-0.5, 0.5, (4000, 3)).astype(np.float32)
    path = make_wav(tmp_path / "three.wav", data=stereo, subtype="FLOAT")
    mean = load_clip(path, mono="mean")
    first = load_clip(path, mono="first")
    for y in (mean, first):
        assert y.dtype == np.float32 and y.shape == (4000,)
    np.testing.assert_allclose(mean, stereo.mean(axis=1), atol=1e-6)
    np.testing.assert_array_equal(first, stereo[:, 0])


def test_load_silence_refused(tmp_path, make_wav):
    path = make_wav(tmp_path / "silence.wav", data=np.zeros(8000))
    with pytest.raises(AudioError, match="silence") as info:
        load_clip(path)
    _assert_names(info, path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_load_non_finite_samples_refused(tmp_path, make_wav, bad):
    samples = np.full(8000, 0.1, dtype=np.float32)
    samples[100] = bad
    path = make_wav(tmp_path / "bad.wav", data=samples, subtype="FLOAT")
    assert not np.all(np.isfinite(sf.read(path)[0]))  # the file does hold the value
    with pytest.raises(AudioError, match="NaN or infinite") as info:
        load_clip(path)
    _assert_names(info, path)


def test_load_accepts_str_path(tmp_path, make_wav):
    path = make_wav(tmp_path / "a.wav")
    np.testing.assert_array_equal(load_clip(str(path)), load_clip(path))
