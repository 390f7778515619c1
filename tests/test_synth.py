"""Tests of the synthetic data set: layout, WAV format, determinism, calibration against the
real data's log-mel statistics, overlapping machine IDs, anomalies, completion markers, files
the generator did not write (never deleted), the data folder's lock, and sizes."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from importlib import resources

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy.stats import norm, rankdata

from aadlib import soundmodel, synth
from aadlib._storage import exclusive  # a private I/O helper, tested or held here directly
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
    y, _ = soundmodel.synthesize_clip(machine_type, machine_id, label, index, seed=0, split=split)
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
        ours = {synth.MARKER_NAME, synth.MANIFEST_NAME}
        leftovers = [p for p in (tiny_root / mtype).rglob(".*") if p.name not in ours]
        assert leftovers == [], "temporary or state files left behind"
        assert (tiny_root / mtype / "anomalies.csv").is_file()
        assert (tiny_root / mtype / synth.MARKER_NAME).is_file()
        manifest = json.loads((tiny_root / mtype / synth.MANIFEST_NAME).read_text())
        listed = {f"{p.parent.name}/{p.name}" for p in table.path} | {"anomalies.csv"}
        assert set(manifest["files"]) == listed  # every file written, nothing else


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
    y, info = soundmodel.synthesize_clip("valve", 4, "anomaly", 1, seed=0, split="test")
    assert y.dtype == np.float32 and y.ndim == 1
    assert np.all(np.abs(y) <= 1.0)
    assert np.array_equal(stored, np.round(y * 32767).astype(np.int16))
    assert info["kind"] in soundmodel.ANOMALY_KINDS and 0.0 <= info["severity"] <= 1.0
    # A clip rendered in memory reaches the features as the file does when it is loaded.
    assert np.array_equal(synth.as_recorded(y), load_clip(path))


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


def test_clip_levels_barely_move_when_a_few_samples_round_otherwise(tiny_root, tmp_path):
    # Another CPU's float32 arithmetic rounds a few dozen samples of a clip one step
    # otherwise: the digest changes, the clip's level by far less than SAME_LEVEL_DB.
    copy = tmp_path / "valve"
    shutil.copytree(tiny_root / "valve", copy)
    levels = synth.clip_levels(tiny_root / "valve")
    assert list(levels) == sorted(levels) and all(rel.endswith(".wav") for rel in levels)
    clip = next(iter(levels))
    samples, _ = sf.read(copy / clip, dtype="int16")
    by_hand = 10 * np.log10(np.mean((samples / 32768.0) ** 2))
    assert levels[clip] == pytest.approx(by_hand, abs=1e-4)
    nudged = samples.astype(np.int32)
    nudged[::3000] += 1
    sf.write(copy / clip, np.clip(nudged, -32768, 32767).astype(np.int16), 16000, "PCM_16")
    assert abs(synth.clip_levels(copy)[clip] - levels[clip]) <= synth.SAME_LEVEL_DB / 10


def test_worker_processes_start_only_for_enough_clips(tmp_path, monkeypatch):
    # Whether workers start is seen where the private pool is made: the clips are the same.
    pools = []
    real_pool = synth._make_pool
    monkeypatch.setattr(synth, "_make_pool", lambda n: pools.append(n) or real_pool(n))
    synth.generate_dataset(tmp_path / "few", MINI, ["valve"], seed=0, progress=False)
    assert pools == []  # fewer clips than CLIPS_PER_WORKER: rendered in this process
    monkeypatch.setattr(synth, "CLIPS_PER_WORKER", 1)
    synth.generate_dataset(tmp_path / "many", MINI, ["valve"], seed=0, progress=False)
    workers = min(len(os.sched_getaffinity(0)), MINI_VALVE_CLIPS)  # one per core
    assert pools == ([workers] if workers > 1 else [])
    assert _files(tmp_path / "few" / "valve") == _files(tmp_path / "many" / "valve")


def test_different_seed_or_clip_gives_different_audio():
    base, _ = soundmodel.synthesize_clip("fan", 2, "normal", 0, seed=0)
    again, _ = soundmodel.synthesize_clip("fan", 2, "normal", 0, seed=0)
    assert np.array_equal(base, again)
    for other in (
        soundmodel.synthesize_clip("fan", 2, "normal", 0, seed=1)[0],
        soundmodel.synthesize_clip("fan", 2, "normal", 1, seed=0)[0],
        soundmodel.synthesize_clip("fan", 2, "normal", 0, seed=0, split="test")[0],
    ):
        assert not np.array_equal(base, other)


def test_ids_of_a_type_are_machines_of_one_model():
    """The IDs of a type differ a little, as machines of one model do, not like different
    machines: the same blade and vane counts, fundamentals within a few percent, levels
    within a few dB, the same number of harmonics; ToyConveyor's IDs the closest."""
    spreads = {}
    for mtype in MACHINE_TYPES:
        signatures = [soundmodel.machine_signature(mtype, mid) for mid in DEV_IDS[mtype]]
        f0 = np.array([s["f0_hz"] for s in signatures])
        assert f0.max() / f0.min() < 1.08, (mtype, f0)
        levels = [s["level_db"] for s in signatures]
        assert max(levels) - min(levels) < 6.0, (mtype, levels)
        assert len({len(s["harmonic_prominence_db"]) for s in signatures}) == 1
        for count in ("blades", "vanes"):
            assert len({s.get(count) for s in signatures}) == 1
        spreads[mtype] = np.log(f0).std()
    assert min(spreads, key=spreads.get) == "ToyConveyor"


def test_machine_signature_distinguishes_ids():
    for mtype in MACHINE_TYPES:
        signatures = [soundmodel.machine_signature(mtype, mid) for mid in DEV_IDS[mtype]]
        assert len({json.dumps(s["harmonic_prominence_db"]) for s in signatures}) == len(signatures)
        assert len({s["f0_hz"] for s in signatures}) == len(signatures)
        assert soundmodel.machine_signature(mtype, DEV_IDS[mtype][0]) == signatures[0]
    signature = soundmodel.machine_signature
    assert signature("fan", 0, seed=1) != signature("fan", 0, seed=0)
    with pytest.raises(ValueError):
        soundmodel.machine_signature("fan", 1)  # an evaluation-set ID, not a development one
    with pytest.raises(ValueError):
        soundmodel.synthesize_clip("fan", 0, "anomaly", 0, split="train")


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
    report = soundmodel.calibration_report(logmels, machine_type)
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
        assert set(table.kind) <= set(soundmodel.ANOMALY_KINDS)
        assert table.severity.between(0.0, 1.0).all()
        row = table.iloc[0]
        _, info = soundmodel.synthesize_clip(
            mtype, int(row.machine_id), "anomaly", int(row.file[-12:-4]), split="test"
        )
        assert (info["kind"], info["severity"]) == (row.kind, row.severity)
        assert json.loads(row.params) == info["params"]


def test_anomaly_kinds_and_severities_are_varied():
    planted = [soundmodel.planted_anomaly("pump", 0, index) for index in range(300)]
    kinds = pd.Series([p["kind"] for p in planted])
    severities = np.array([p["severity"] for p in planted])
    assert set(kinds) == set(soundmodel.ANOMALY_KINDS)
    assert kinds.value_counts().min() > 30  # each kind is common
    assert severities.min() < 0.1 and severities.max() > 0.9  # subtle and obvious ones
    assert planted == [soundmodel.planted_anomaly("pump", 0, index) for index in range(300)]


def test_every_anomaly_kind_moves_the_id_cues_more_when_severe():
    """Each kind changes the cues that identify the machine (pitch, harmonic balance,
    resonances, tonal level, noise colour), by an amount that grows with the severity;
    the kind's parameters in anomalies.csv say by how much."""
    cue = {
        "extra_tone": "harmonic_tilt_db",
        "knocks": "detune",
        "frequency_drift": "drift",
        "amplitude_modulation": "tonal_gain_db",
        "noise_change": "tilt_db_per_octave",
    }
    planted = [soundmodel.planted_anomaly("slider", 2, index) for index in range(300)]
    for kind, name in cue.items():
        of_kind = sorted(
            (p["severity"], abs(p["params"][name])) for p in planted if p["kind"] == kind
        )
        severities, changes = np.array(of_kind).T
        assert changes.min() > 0.0, kind
        assert np.all(np.diff(changes)[np.diff(severities) > 0] >= 0), kind  # grows
        # At least twice: an ID with a positive severity offset (slider 2) has its
        # strengths in [offset, 1 + offset], where a range's top is less times its bottom.
        assert changes[-1] >= 2 * changes[0], kind
    # The change is in the audio: an extra tone's clip differs from its clean twin also
    # far from the tone and its octave (the machine's harmonics and resonances moved),
    # the more so the more severe the anomaly.
    centres = librosa.mel_frequencies(n_mels=130, fmax=SAMPLE_RATE / 2)[1:-1]
    changes = {}
    for mtype, mid in (("ToyCar", 2), ("pump", 0), ("valve", 4)):
        tones = [
            (p["severity"], i)
            for i in range(300)
            if (p := soundmodel.planted_anomaly(mtype, mid, i))["kind"] == "extra_tone"
        ]
        for severity, index in (min(tones), max(tones)):
            tone = soundmodel.planted_anomaly(mtype, mid, index)["params"]["freq_hz"]
            away = (np.abs(np.log2(centres / tone)) > 0.5) & (
                np.abs(np.log2(centres / (2 * tone))) > 0.5
            )
            means = [
                _logmel_of(mtype, mid, index, plant).mean(axis=0)[away] for plant in (True, False)
            ]
            changes[(mtype, severity > 0.5)] = float(np.mean(np.abs(means[0] - means[1])))
    assert min(changes.values()) > 0.05, changes  # an added tone alone changes < 0.01 dB
    for mtype in ("ToyCar", "pump", "valve"):
        assert changes[(mtype, True)] > changes[(mtype, False)], changes


def _logmel_of(machine_type: str, machine_id: int, index: int, plant: bool) -> np.ndarray:
    y, _ = soundmodel.synthesize_clip(
        machine_type, machine_id, "anomaly", index, split="test", plant=plant
    )
    return log_mel(y)


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
        planted = [soundmodel.planted_anomaly(mtype, mid, i) for i in range(40)]
        strong = [i for i, anomaly in enumerate(planted) if anomaly["severity"] >= 0.5]
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
    planted = {i: soundmodel.planted_anomaly(machine_type, mid, i) for i in range(80)}

    def change(index: int) -> float:
        kwargs = dict(split="test", seed=0)
        with_anomaly, _ = soundmodel.synthesize_clip(machine_type, mid, "anomaly", index, **kwargs)
        twin, info = soundmodel.synthesize_clip(
            machine_type, mid, "anomaly", index, plant=False, **kwargs
        )
        assert info["planted"] is False
        return float(np.percentile(np.abs(log_mel(with_anomaly) - log_mel(twin)), 99))

    for kind in soundmodel.ANOMALY_KINDS:
        of_kind = sorted((p["severity"], i) for i, p in planted.items() if p["kind"] == kind)
        (mild_severity, mild), (severe_severity, severe) = of_kind[0], of_kind[-1]
        assert mild_severity < 0.3 and severe_severity > 0.7
        mild_change = change(mild)
        assert 0.0 < mild_change < change(severe), kind


# --------------------------------------------------------------------------- markers


def test_marker_written_only_after_completion(tmp_path, monkeypatch):
    # Interrupting the private render step is the only way to stop a run half-way.
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
        # A clip of another size than the generator wrote may be a user's file: the run
        # stops and names it, and replaces it only when told to.
        with pytest.raises(FileExistsError, match="train/normal_id_02_00000000.wav"):
            synth.generate_dataset(tmp_path, MINI, ["valve"], n_jobs=1, progress=False)
        assert len(clip.read_bytes()) == 1000
        synth.generate_dataset(tmp_path, MINI, ["valve"], n_jobs=1, progress=False, overwrite=True)
    else:
        (folder / synth.MARKER_NAME).unlink()
    synth.generate_dataset(tmp_path, MINI, ["valve"], n_jobs=1, progress=False)
    assert (folder / synth.MARKER_NAME).is_file()
    assert _files(folder) == before


def _interrupt_after_first_batch(monkeypatch) -> None:
    # Wraps the private render step: a run can only be interrupted from inside.
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


# --------------------------------------------------------------------------- other people's files


def _user_wav(path, seconds: float = 10.0, seed: int = 7) -> bytes:
    """A user's own recording: a 16-bit WAV like ours, with an old modification time."""
    rng = np.random.default_rng(seed)
    samples = (0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)
    sf.write(path, samples, SAMPLE_RATE, subtype="PCM_16")
    os.utime(path, ns=(1_600_000_000 * 10**9, 1_600_000_000 * 10**9))  # recorded in 2020
    return path.read_bytes()


def _drop_user_files(folder) -> dict:
    """A user's files in a type folder: a clip name the plan lacks, one of the plan's clip
    names (the user's recording in place of ours, same length and size), and files with
    other names. Returns their paths and bytes."""
    dropped = {
        "train/normal_id_00_00000042.wav": None,
        "test/normal_id_02_00000000.wav": None,
        "train/my_recording.wav": None,
    }
    for rel in dropped:
        dropped[rel] = _user_wav(folder / rel, seed=len(rel))
    (folder / "notes.txt").write_text("my notes")
    (folder / "train" / ".DS_Store").write_bytes(b"finder")
    dropped["notes.txt"] = b"my notes"
    dropped["train/.DS_Store"] = b"finder"
    return dropped


def _unchanged(folder, files: dict) -> bool:
    return all((folder / rel).read_bytes() == content for rel, content in files.items())


@pytest.mark.parametrize("change", ["size", "seed", "marker_deleted"])
def test_user_files_stop_the_run_and_survive(tmp_path, change):
    """Files the generator did not write are never deleted: the run stops and names them."""
    mini = dict(machine_types=["valve"], n_jobs=1, progress=False)
    synth.generate_dataset(tmp_path, MINI, seed=0, **mini)
    folder = tmp_path / "valve"
    ours = _files(folder)
    dropped = _drop_user_files(folder)
    request = {"size": ("tiny", 0), "seed": (MINI, 1), "marker_deleted": (MINI, 0)}[change]
    if change == "marker_deleted":
        (folder / synth.MARKER_NAME).unlink()
    with pytest.raises(FileExistsError) as raised:
        synth.generate_dataset(tmp_path, request[0], seed=request[1], **mini)
    message = str(raised.value)
    assert "2 file(s)" in message
    assert "train/normal_id_00_00000042.wav" in message
    assert "test/normal_id_02_00000000.wav" in message  # replaced by the user
    assert "another data folder" in message and "--overwrite" in message
    assert "my_recording" not in message and "notes.txt" not in message
    assert _unchanged(folder, dropped)  # every user file as it was
    ours.pop("test/normal_id_02_00000000.wav")
    assert _unchanged(folder, ours)  # and nothing of ours deleted either
    if change != "marker_deleted":
        assert json.loads((folder / synth.MARKER_NAME).read_text())["seed"] == 0


def test_foreign_files_in_one_type_leave_every_type_unchanged(tmp_path):
    """The run looks at every type before it changes any: a user's file in the valve folder
    stops a new seed before the fan folder is touched."""
    mini = dict(size=MINI, machine_types=["fan", "valve"], n_jobs=1, progress=False)
    synth.generate_dataset(tmp_path, seed=0, **mini)
    fan = _files(tmp_path / "fan")
    mine = tmp_path / "valve" / "test" / "anomaly_id_04_00000077.wav"
    content = _user_wav(mine)
    with pytest.raises(FileExistsError) as raised:
        synth.generate_dataset(tmp_path, seed=1, **mini)
    assert str(tmp_path / "valve") in str(raised.value)
    assert str(tmp_path / "fan") not in str(raised.value)
    assert _files(tmp_path / "fan") == fan and mine.read_bytes() == content
    assert json.loads((tmp_path / "fan" / synth.MARKER_NAME).read_text())["seed"] == 0


def test_many_foreign_files_are_counted_not_all_listed(tmp_path):
    folder = tmp_path / "valve" / "test"
    folder.mkdir(parents=True)
    for index in range(13):
        (folder / f"anomaly_id_04_{index:08d}.wav").write_bytes(b"x")
    with pytest.raises(FileExistsError, match=r"13 file\(s\).*00000009\.wav and 3 more"):
        synth.generate_dataset(tmp_path, MINI, ["valve"], n_jobs=1, progress=False)
    assert len(list(folder.iterdir())) == 13


def test_overwrite_replaces_foreign_clips_and_keeps_other_files(tmp_path):
    mini = dict(machine_types=["valve"], n_jobs=1, progress=False)
    synth.generate_dataset(tmp_path / "clean", MINI, **mini)
    synth.generate_dataset(tmp_path / "data", MINI, **mini)
    folder = tmp_path / "data" / "valve"
    dropped = _drop_user_files(folder)
    synth.generate_dataset(tmp_path / "data", MINI, overwrite=True, **mini)
    assert _files(folder) == {
        **_files(tmp_path / "clean" / "valve"),
        "train/my_recording.wav": dropped["train/my_recording.wav"],
    }
    assert not (folder / "train" / "normal_id_00_00000042.wav").exists()  # deleted
    others = ("train/my_recording.wav", "notes.txt", "train/.DS_Store")
    assert _unchanged(folder, {rel: dropped[rel] for rel in others})  # never touched


def test_removed_marker_renders_nothing_again(tmp_path, monkeypatch):
    mini = dict(machine_types=["valve"], n_jobs=1, progress=False)
    synth.generate_dataset(tmp_path, MINI, **mini)
    folder = tmp_path / "valve"
    before = _files(folder)
    (folder / synth.MARKER_NAME).unlink()
    rendered = _count_renders(monkeypatch)
    synth.generate_dataset(tmp_path, MINI, **mini)
    assert rendered == [] and _files(folder) == before
    assert (folder / synth.MARKER_NAME).is_file()


def test_a_copy_of_the_folder_with_new_file_times_is_still_ours(tmp_path, monkeypatch):
    """Copying a data folder (cp -r) gives every file a new time; the checksums recognise
    the generator's files, so the copy is reused, not taken for foreign files."""
    mini = dict(machine_types=["valve"], n_jobs=1, progress=False)
    synth.generate_dataset(tmp_path / "a", MINI, **mini)
    shutil.copytree(tmp_path / "a", tmp_path / "b", copy_function=shutil.copyfile)
    rendered = _count_renders(monkeypatch)
    synth.generate_dataset(tmp_path / "b", MINI, **mini)
    assert rendered == [] and _files(tmp_path / "b" / "valve") == _files(tmp_path / "a" / "valve")
    synth.generate_dataset(tmp_path / "b", MINI, seed=1, **mini)  # ours: replaced
    assert sum(rendered) == MINI_VALVE_CLIPS


def test_killed_run_resumes_without_taking_its_clips_for_foreign(tmp_path, monkeypatch):
    """Killed in the middle of a batch, before anything recorded the clips written: the
    manifest planned them (name and size), so the next run keeps them and renders the rest."""
    mini = dict(machine_types=["valve"], n_jobs=1, progress=False)
    synth.generate_dataset(tmp_path / "clean", MINI, **mini)
    # The private writer and manifest are where a kill can land between two files.
    real_write, real_save = synth._write_wav, synth._Manifest.save
    written, killed = [], []

    def write_then_die(path, y):
        if len(written) == 3:
            killed.append(True)
            raise KeyboardInterrupt
        written.append(path)
        return real_write(path, y)

    def save_unless_killed(self):
        if not killed:  # a killed process saves nothing more
            real_save(self)

    with monkeypatch.context() as patch:
        patch.setattr(synth, "_write_wav", write_then_die)
        patch.setattr(synth._Manifest, "save", save_unless_killed)
        with pytest.raises(KeyboardInterrupt):
            synth.generate_dataset(tmp_path / "data", MINI, **mini)
    folder = tmp_path / "data" / "valve"
    manifest = json.loads((folder / synth.MANIFEST_NAME).read_text())
    assert all(manifest["files"][f"{p.parent.name}/{p.name}"]["mtime_ns"] is None for p in written)
    assert len(_files(folder)) == 3
    rendered = _count_renders(monkeypatch)
    synth.generate_dataset(tmp_path / "data", MINI, **mini)
    assert sum(rendered) == MINI_VALVE_CLIPS - 3
    assert _files(folder) == _files(tmp_path / "clean" / "valve")


@pytest.mark.parametrize("marker", ["kept", "deleted"])
def test_set_of_an_older_version_is_recognised_by_its_marker(tmp_path, marker):
    """A complete set of a version without a manifest: the clips its marker planned (names
    and sizes) are the generator's and are replaced; any other clip stops the run. Without
    its marker nothing says which clips are ours, so nothing is deleted."""
    mini = dict(machine_types=["valve"], n_jobs=1, progress=False)
    synth.generate_dataset(tmp_path, MINI, **mini)
    folder = tmp_path / "valve"
    (folder / synth.MANIFEST_NAME).unlink()
    old = json.loads((folder / synth.MARKER_NAME).read_text())
    (folder / synth.MARKER_NAME).write_text(json.dumps({**old, "version": 2}))
    mine = folder / "train" / "normal_id_00_00000042.wav"
    content = _user_wav(mine)
    if marker == "deleted":
        (folder / synth.MARKER_NAME).unlink()
    with pytest.raises(FileExistsError) as raised:
        synth.generate_dataset(tmp_path, MINI, **mini)
    # Without the marker, the clips and the anomaly table are all of unknown origin.
    expected = 1 if marker == "kept" else MINI_VALVE_CLIPS + 2
    assert f"{expected} file(s)" in str(raised.value)
    assert ("anomalies.csv" in str(raised.value)) == (marker == "deleted")
    assert mine.read_bytes() == content and len(_files(folder)) == MINI_VALVE_CLIPS + 1
    if marker == "kept":
        mine.unlink()  # the user moves the recording away; the old set is replaced
        synth.generate_dataset(tmp_path, MINI, **mini)
        assert json.loads((folder / synth.MARKER_NAME).read_text())["version"] == (
            synth.SYNTH_VERSION
        )


def test_second_run_on_the_folder_waits_for_the_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("AADLIB_LOCK_TIMEOUT", "0.5")
    root = tmp_path / "data"
    with exclusive(root, "a test holding the lock"):
        with pytest.raises(TimeoutError, match=r"\.aadlib\.lock.*generating the synthetic set"):
            synth.generate_dataset(root, MINI, ["valve"], n_jobs=1, progress=False)
    assert not (root / "valve").exists()  # nothing written while another run held it
    synth.generate_dataset(root, MINI, ["valve"], n_jobs=1, progress=False)
    assert (root / "valve" / synth.MARKER_NAME).is_file()


def _count_renders(monkeypatch) -> list[int]:
    """Clips per rendered batch from now on (counted in the private render step)."""
    real_render = synth._render_batch
    rendered = []

    def counted(*args):
        rendered.append(len(args[-1]))
        return real_render(*args)

    monkeypatch.setattr(synth, "_render_batch", counted)
    return rendered


# --------------------------------------------------------------------------- ID classification


@pytest.mark.slow
def test_ids_overlap_and_anomalies_blur_them(tmp_path):
    """A simple ID classifier tells a type's IDs apart well but not perfectly, ToyConveyor's
    least, as with real machines of one model; every anomaly kind, when severe, makes the
    machine look less like itself (it moves the cues that identify it), brief knocks least."""
    size = synth.SynthSize("ids", 16, 25, 25)
    synth.generate_dataset(tmp_path, size, n_jobs=2, progress=False)
    table = synth.id_classification_table(tmp_path).set_index("machine_type")
    assert list(table.index) == list(MACHINE_TYPES)
    assert (table.n_test_normal == 25 * table.n_ids).all()
    assert (table.accuracy < 0.95).all(), table  # was 0.97-1.0 with far-apart IDs
    assert (table.accuracy > table.chance + 0.15).all(), table  # still IDs, not noise
    assert table.accuracy.idxmin() == "ToyConveyor", table
    assert synth.id_classification_accuracy(tmp_path, "valve") == table.loc["valve", "accuracy"]
    verdicts = []
    for mtype in MACHINE_TYPES:
        predictions = synth.id_predictions(tmp_path, mtype).assign(machine_type=mtype)
        predictions["file"] = [f"test/{p.name}" for p in predictions.path]
        assert predictions.own_id_probability.between(0.0, 1.0).all()
        planted = synth.anomaly_table(tmp_path, mtype)[["file", "kind", "severity"]]
        verdicts.append(predictions.merge(planted, on="file", how="left"))
    verdicts = pd.concat(verdicts, ignore_index=True)
    verdicts["correct"] = verdicts.predicted_id == verdicts.machine_id
    normal = verdicts[verdicts.label == "normal"].correct.mean()
    severe = verdicts[verdicts.severity >= 0.5].groupby("kind").correct.mean()
    assert set(severe.index) == set(soundmodel.ANOMALY_KINDS)
    # Every kind blurs identity; the stationary ones (tones, drift, noise, modulation)
    # most, knocks least: they are brief and leave the clip's average spectrum nearly as it was.
    assert (severe < normal - 0.03).all(), (normal, severe)
    assert severe.mean() < normal - 0.1, (normal, severe)
    assert severe.idxmax() == "knocks", severe


# --------------------------------------------------------------------------- sizes


def _hanley_mcneil_se(auc: float, n_normal: int, n_anomaly: int) -> float:
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = auc * (1 - auc) + (n_anomaly - 1) * (q1 - auc**2) + (n_normal - 1) * (q2 - auc**2)
    return float(np.sqrt(variance / (n_normal * n_anomaly)))


def test_quick_test_set_tells_models_apart():
    """The 95 % confidence interval of each per-type average AUC on the quick set is at
    most +-5 points over the AUCs that models reach (0.6 to 0.95), ToyConveyor's 3 IDs
    included (Hanley and McNeil's standard error, checked here by simulation)."""
    counts = synth.dataset_counts("quick")
    for mtype, rows in counts.groupby("machine_type"):
        for auc in np.linspace(0.6, 0.95, 8):
            ses = [_hanley_mcneil_se(auc, r.test_normal, r.test_anomaly) for r in rows.itertuples()]
            half_width = 1.96 * np.sqrt(np.sum(np.square(ses))) / len(ses) * 100
            assert half_width <= 5.0, (mtype, auc, half_width)
    # The formula against simulated scores (binormal, equal variances) with AUC 0.6.
    n = synth.SIZES["quick"].test_normal_per_id
    rng = np.random.default_rng(0)
    normal = rng.standard_normal((3000, n))
    anomalous = rng.standard_normal((3000, n)) + np.sqrt(2) * norm.ppf(0.6)
    ranks = rankdata(np.concatenate([normal, anomalous], axis=1), axis=1)
    aucs = (ranks[:, n:].sum(axis=1) - n * (n + 1) / 2) / (n * n)  # Mann-Whitney
    assert aucs.mean() == pytest.approx(0.6, abs=0.005)
    assert aucs.std() == pytest.approx(_hanley_mcneil_se(0.6, n, n), rel=0.1)


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
    for mtype in MACHINE_TYPES:
        assert set(synth.clip_plan(mtype, "tiny")) <= set(synth.clip_plan(mtype, "quick"))
        assert set(synth.clip_plan(mtype, "quick")) <= set(synth.clip_plan(mtype, "full"))
