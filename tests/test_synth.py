"""Tests of the synthetic data set: layout, WAV format, determinism, calibration against the
real data's log-mel statistics, anomalies, completion markers and sizes."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from importlib import resources

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from aadlib import synth
from aadlib.data import DEV_IDS, MACHINE_TYPES, SAMPLE_RATE, list_clips, load_clip
from aadlib.features import log_mel

# ToyCar has the longer clips (11 s), valve the 10 s of the other types.
TYPES_ON_DISK = ("ToyCar", "valve")
MINI = synth.SynthSize("mini", 1, 1, 1)
MINI_VALVE_CLIPS = 3 * len(DEV_IDS["valve"])  # one clip of each (split, label) per ID


def _real_stats() -> pd.DataFrame:
    path = resources.files("aadlib") / "resources" / "real_logmel_stats.csv"
    with path.open("r") as handle:
        return pd.read_csv(handle)


def _table1() -> pd.DataFrame:
    path = resources.files("aadlib") / "resources" / "table1_dataset_sizes.csv"
    with path.open("r") as handle:
        table = pd.read_csv(handle)
    return table[table.split == "dev"]


@functools.cache
def _logmel(machine_type: str, machine_id: int, split: str, label: str, index: int) -> np.ndarray:
    y, _ = synth.synthesize_clip(machine_type, machine_id, label, index, seed=0, split=split)
    return log_mel(y)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "data"
    for mtype in TYPES_ON_DISK:  # calibrates here, so the worker processes need not
        _logmel(mtype, DEV_IDS[mtype][0], "train", "normal", 0)
    synth.generate_dataset(root, "tiny", TYPES_ON_DISK, seed=0, n_jobs=2, progress=False)
    return root


def _files(folder) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*.wav"))
        if not p.name.startswith(".")
    }


# --------------------------------------------------------------------------- layout, format


def test_layout_and_file_names(tiny_root):
    size = synth.SIZES["tiny"]
    expected = {
        ("train", "normal"): size.train_per_id,
        ("test", "normal"): size.test_normal_per_id,
        ("test", "anomaly"): size.test_anomaly_per_id,
    }
    for mtype in TYPES_ON_DISK:
        table = list_clips(tiny_root, mtype)
        assert sorted(table.machine_id.unique()) == sorted(DEV_IDS[mtype])
        counts = table.groupby(["machine_id", "split", "label"]).size()
        for mid in DEV_IDS[mtype]:
            for (split, label), count in expected.items():
                assert counts.get((mid, split, label), 0) == count
                indices = table[
                    (table.machine_id == mid) & (table.split == split) & (table.label == label)
                ]["index"]
                assert sorted(indices) == list(range(count))
        for path in table.path:
            assert path.parent.parent == tiny_root / mtype
        leftovers = [p for p in (tiny_root / mtype).rglob(".*") if p.name != synth.MARKER_NAME]
        assert leftovers == [], "temporary or state files left behind"
        assert (tiny_root / mtype / "anomalies.csv").is_file()
        assert (tiny_root / mtype / synth.MARKER_NAME).is_file()


def test_wav_format_and_duration(tiny_root):
    for mtype, seconds in (("ToyCar", 11), ("valve", 10)):
        paths = list_clips(tiny_root, mtype).path
        for path in paths:
            info = sf.info(path)
            assert (info.format, info.subtype) == ("WAV", "PCM_16")
            assert info.samplerate == SAMPLE_RATE == 16_000
            assert info.channels == 1
            assert info.frames == seconds * 16_000
        y = load_clip(paths.iloc[0])  # refuses silent, non-finite or wrongly sampled clips
        assert np.abs(y).max() < 1.0


def test_files_hold_what_synthesize_clip_returns(tiny_root):
    path = tiny_root / "valve" / "test" / "anomaly_id_04_00000001.wav"
    stored, _ = sf.read(path, dtype="int16")
    y, info = synth.synthesize_clip("valve", 4, "anomaly", 1, seed=0, split="test")
    assert y.dtype == np.float32 and y.ndim == 1
    assert np.all(np.abs(y) <= 1.0)
    assert np.array_equal(stored, np.round(y * 32767).astype(np.int16))
    assert info["kind"] in synth.ANOMALY_KINDS and 0.0 <= info["severity"] <= 1.0


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_whatever_else_is_generated(tiny_root, tmp_path):
    # One type instead of two, a smaller size, in this process instead of worker processes:
    # the clips both sets hold are byte-identical, and so are their anomaly table rows.
    synth.generate_dataset(tmp_path, MINI, ["valve"], seed=0, n_jobs=1, progress=False)
    alone, together = _files(tmp_path / "valve"), _files(tiny_root / "valve")
    assert len(alone) == MINI_VALVE_CLIPS and alone.keys() <= together.keys()
    assert all(alone[name] == together[name] for name in alone)
    small = pd.read_csv(tmp_path / "valve" / "anomalies.csv")
    large = pd.read_csv(tiny_root / "valve" / "anomalies.csv").set_index("file")
    pd.testing.assert_frame_equal(small.set_index("file"), large.loc[small.file])


def test_different_seed_or_clip_gives_different_audio():
    base, _ = synth.synthesize_clip("fan", 2, "normal", 0, seed=0)
    again, _ = synth.synthesize_clip("fan", 2, "normal", 0, seed=0)
    assert np.array_equal(base, again)
    for other in (
        synth.synthesize_clip("fan", 2, "normal", 0, seed=1)[0],
        synth.synthesize_clip("fan", 2, "normal", 1, seed=0)[0],
        synth.synthesize_clip("fan", 2, "normal", 0, seed=0, split="test")[0],
    ):
        assert not np.array_equal(base, other)


def test_machine_signature_distinguishes_ids():
    for mtype in MACHINE_TYPES:
        signatures = [synth.machine_signature(mtype, mid) for mid in DEV_IDS[mtype]]
        assert len({json.dumps(s["harmonic_prominence_db"]) for s in signatures}) == len(signatures)
        assert len({s["f0_hz"] for s in signatures}) == len(signatures)
        assert synth.machine_signature(mtype, DEV_IDS[mtype][0]) == signatures[0]
    assert synth.machine_signature("fan", 0, seed=1) != synth.machine_signature("fan", 0, seed=0)
    with pytest.raises(ValueError):
        synth.machine_signature("fan", 1)  # an evaluation-set ID, not a development one
    with pytest.raises(ValueError):
        synth.synthesize_clip("fan", 0, "anomaly", 0, split="train")


# --------------------------------------------------------------------------- calibration


def _calibration(logmels: list[np.ndarray], machine_type: str) -> tuple[float, float, float]:
    """Mean abs dB difference of the mean spectrum, ratio of mean stds, bins with std in range."""
    real = _real_stats()
    real = real[real.machine_type == machine_type].sort_values("mel_bin")
    frames = np.concatenate(logmels).astype(np.float64)
    mean_abs_diff = np.mean(np.abs(frames.mean(axis=0) - real.mean_db.to_numpy()))
    std = frames.std(axis=0)
    std_ratio = std.mean() / real.std_db.mean()
    per_bin = std / real.std_db.to_numpy()
    in_range = np.mean((per_bin >= 0.5) & (per_bin <= 2.0))
    return float(mean_abs_diff), float(std_ratio), float(in_range)


def _calibrated(criteria: tuple[float, float, float]) -> bool:
    mean_abs_diff, std_ratio, in_range = criteria
    return mean_abs_diff < 3.0 and 2 / 3 <= std_ratio <= 3 / 2 and in_range >= 0.9


@pytest.mark.parametrize("machine_type", MACHINE_TYPES)
def test_calibrated_against_real_logmel_statistics(machine_type):
    logmels = [
        _logmel(machine_type, mid, "train", "normal", index)
        for mid in DEV_IDS[machine_type]
        for index in range(2)
    ]
    criteria = _calibration(logmels, machine_type)
    assert _calibrated(criteria), criteria
    report = synth.calibration_report(logmels, machine_type)
    assert (report["mean_abs_diff_db"], report["std_ratio"], report["std_bins_in_range"]) == (
        pytest.approx(criteria)
    )
    # The criterion can fail: the same clips 6 dB quieter, or with their frame-to-frame
    # variation removed, are rejected.
    assert not _calibrated(_calibration([lm - 6.0 for lm in logmels], machine_type))
    flat = [np.broadcast_to(lm.mean(axis=0), lm.shape) for lm in logmels]
    assert not _calibrated(_calibration(flat, machine_type))


# --------------------------------------------------------------------------- anomalies


def test_anomaly_table_lists_the_anomalous_clips(tiny_root):
    for mtype in TYPES_ON_DISK:
        table = pd.read_csv(tiny_root / mtype / "anomalies.csv")
        clips = list_clips(tiny_root, mtype)
        anomalous = clips[clips.label == "anomaly"]
        on_disk = {f"{row.split}/{row.path.name}" for row in anomalous.itertuples()}
        assert set(table.file) == on_disk and len(table) == len(on_disk)
        assert set(table.kind) <= set(synth.ANOMALY_KINDS)
        assert table.severity.between(0.0, 1.0).all()
        row = table.iloc[0]
        _, info = synth.synthesize_clip(
            mtype, int(row.machine_id), "anomaly", int(row.file[-12:-4]), split="test"
        )
        assert (info["kind"], info["severity"]) == (row.kind, row.severity)
        assert json.loads(row.params) == info["params"]


def test_anomaly_kinds_and_severities_are_varied():
    planted = [synth.planted_anomaly("pump", 0, index) for index in range(300)]
    kinds = pd.Series([p["kind"] for p in planted])
    severities = np.array([p["severity"] for p in planted])
    assert set(kinds) == set(synth.ANOMALY_KINDS)
    assert kinds.value_counts().min() > 30  # each kind is common
    assert severities.min() < 0.1 and severities.max() > 0.9  # subtle and obvious ones
    assert planted == [synth.planted_anomaly("pump", 0, index) for index in range(300)]


def _frame_deviation(logmel: np.ndarray, mean: np.ndarray, std: np.ndarray) -> float:
    return float(np.mean(((logmel - mean) / std) ** 2))


def test_anomalies_deviate_more_from_normal_training_frames_than_normals():
    """Clear anomalies (severity >= 0.5) deviate more from their ID's normal training frames
    than normal test clips do (pairs of an anomalous and a normal clip of the same ID,
    pooled over the six types: three of each per type are too few to decide per type)."""
    wins, anomalous_all, normal_all = [], [], []
    for mtype in MACHINE_TYPES:
        mid = DEV_IDS[mtype][0]
        train = np.concatenate([_logmel(mtype, mid, "train", "normal", i) for i in range(2)])
        mean, std = train.mean(axis=0), train.std(axis=0)
        strong = [i for i in range(40) if synth.planted_anomaly(mtype, mid, i)["severity"] >= 0.5]
        normal = [
            _frame_deviation(_logmel(mtype, mid, "test", "normal", i), mean, std) for i in range(3)
        ]
        anomalous = [
            _frame_deviation(_logmel(mtype, mid, "test", "anomaly", i), mean, std)
            for i in strong[:3]
        ]
        wins += [a > n for a in anomalous for n in normal]
        anomalous_all += anomalous
        normal_all += normal
    assert np.mean(anomalous_all) > np.mean(normal_all)
    assert np.mean(wins) >= 0.7


@pytest.mark.parametrize("machine_type", TYPES_ON_DISK)
def test_each_anomaly_kind_changes_log_mels_more_when_severe(machine_type):
    """An anomalous clip against its clean twin (same sound, anomaly not planted): every kind
    changes the log-mel spectrogram, and its most severe instance more than its mildest."""
    mid = DEV_IDS[machine_type][1]
    planted = {i: synth.planted_anomaly(machine_type, mid, i) for i in range(80)}

    def change(index: int) -> float:
        kwargs = dict(split="test", seed=0)
        with_anomaly, _ = synth.synthesize_clip(machine_type, mid, "anomaly", index, **kwargs)
        twin, info = synth.synthesize_clip(
            machine_type, mid, "anomaly", index, plant=False, **kwargs
        )
        assert info["planted"] is False
        return float(np.percentile(np.abs(log_mel(with_anomaly) - log_mel(twin)), 99))

    for kind in synth.ANOMALY_KINDS:
        of_kind = sorted((p["severity"], i) for i, p in planted.items() if p["kind"] == kind)
        (mild_severity, mild), (severe_severity, severe) = of_kind[0], of_kind[-1]
        assert mild_severity < 0.3 and severe_severity > 0.7
        mild_change = change(mild)
        assert 0.0 < mild_change < change(severe), kind


# --------------------------------------------------------------------------- markers


def test_marker_written_only_after_completion(tmp_path, monkeypatch):
    real_render = synth._render_batch
    with monkeypatch.context() as patch:
        _interrupt_after_first_batch(patch)
        with pytest.raises(KeyboardInterrupt):
            synth.generate_dataset(tmp_path, MINI, ["valve"], n_jobs=1, progress=False)
    folder = tmp_path / "valve"
    assert not (folder / synth.MARKER_NAME).exists()
    assert not (folder / "anomalies.csv").exists()
    written = _files(folder)
    assert 0 < len(written) < MINI_VALVE_CLIPS

    # A killed writer leaves its temporary file behind; the next run removes it.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    split_folder = (folder / next(iter(written))).parent
    stale = split_folder / f".tmp-{dead}-normal_id_00_99999999.wav"
    stale.write_bytes(b"half a clip")

    rendered = []

    def counted(*args):
        rendered.append(len(args[-1]))
        return real_render(*args)

    monkeypatch.setattr(synth, "_render_batch", counted)
    synth.generate_dataset(tmp_path, MINI, ["valve"], n_jobs=1, progress=False)
    assert (folder / synth.MARKER_NAME).is_file()
    assert sum(rendered) == MINI_VALVE_CLIPS - len(written)  # resumed, not restarted
    finished = _files(folder)
    assert len(finished) == MINI_VALVE_CLIPS
    assert all(finished[name] == data for name, data in written.items())
    assert not stale.exists()

    rendered.clear()
    synth.generate_dataset(tmp_path, MINI, ["valve"], n_jobs=1, progress=False)
    assert rendered == []  # complete: skipped


@pytest.mark.parametrize("damage", ["delete_clip", "delete_marker", "truncate_clip"])
def test_incomplete_type_is_regenerated(tmp_path, damage):
    synth.generate_dataset(tmp_path, MINI, ["valve"], n_jobs=1, progress=False)
    folder = tmp_path / "valve"
    before = _files(folder)
    clip = folder / "train" / "normal_id_02_00000000.wav"
    if damage == "delete_clip":
        clip.unlink()
    elif damage == "truncate_clip":
        clip.write_bytes(clip.read_bytes()[:1000])
    else:
        (folder / synth.MARKER_NAME).unlink()
    synth.generate_dataset(tmp_path, MINI, ["valve"], n_jobs=1, progress=False)
    assert (folder / synth.MARKER_NAME).is_file()
    assert _files(folder) == before


def _interrupt_after_first_batch(monkeypatch) -> None:
    real_render = synth._render_batch
    calls = []

    def interrupted(*args):
        if calls:
            raise KeyboardInterrupt
        calls.append(args)
        return real_render(*args)

    monkeypatch.setattr(synth, "_render_batch", interrupted)


def test_new_seed_replaces_every_clip_even_after_an_interruption(tmp_path, monkeypatch):
    mini = dict(size=MINI, machine_types=["valve"], n_jobs=1, progress=False)
    synth.generate_dataset(tmp_path / "clean", seed=3, **mini)
    synth.generate_dataset(tmp_path / "data", seed=0, **mini)
    seed0 = _files(tmp_path / "data" / "valve")
    with monkeypatch.context() as patch:
        _interrupt_after_first_batch(patch)
        with pytest.raises(KeyboardInterrupt):
            synth.generate_dataset(tmp_path / "data", seed=3, **mini)
    synth.generate_dataset(tmp_path / "data", seed=3, **mini)
    seed3 = _files(tmp_path / "data" / "valve")
    assert seed3 == _files(tmp_path / "clean" / "valve")  # no clip of seed 0 survived
    assert seed3.keys() == seed0.keys() and all(seed3[k] != seed0[k] for k in seed0)
    marker = json.loads((tmp_path / "data" / "valve" / synth.MARKER_NAME).read_text())
    assert marker["seed"] == 3


def test_foreign_clips_are_not_overwritten(tmp_path):
    foreign = tmp_path / "fan" / "train"
    foreign.mkdir(parents=True)
    (foreign / "normal_id_00_00000000.wav").write_bytes(b"not ours")
    with pytest.raises(FileExistsError):
        synth.generate_dataset(tmp_path, MINI, ["fan"], n_jobs=1, progress=False)
    assert (foreign / "normal_id_00_00000000.wav").read_bytes() == b"not ours"


# --------------------------------------------------------------------------- sizes


def test_full_size_matches_table1():
    real = _table1().set_index(["machine_type", "machine_id"])
    counts = synth.dataset_counts("full").set_index(["machine_type", "machine_id"])
    assert sorted(counts.index) == sorted(real.index)
    for key, row in counts.iterrows():
        assert row.train == real.loc[key, "train_files"]
        assert row.test_normal + row.test_anomaly == real.loc[key, "test_files"]
        assert abs(row.test_normal - row.test_anomaly) <= 1  # half and half
    for mtype in MACHINE_TYPES:
        plan = synth.clip_plan(mtype, "full")
        per_type = real.loc[mtype]
        assert len(plan) == per_type.train_files.sum() + per_type.test_files.sum()
        assert len(set(plan)) == len(plan)


def test_quick_and_tiny_sizes_are_small_and_nested():
    for name in ("quick", "tiny"):
        size = synth.SIZES[name]
        counts = synth.dataset_counts(name)
        assert (counts.train == size.train_per_id).all()
        assert (counts.test_normal == size.test_normal_per_id).all()
        assert (counts.test_anomaly == size.test_anomaly_per_id).all()
    # A smaller size's clips are a subset of a larger size's (same names, same content).
    assert set(synth.clip_plan("pump", "tiny")) <= set(synth.clip_plan("pump", "quick"))
    assert set(synth.clip_plan("pump", "quick")) <= set(synth.clip_plan("pump", "full"))
