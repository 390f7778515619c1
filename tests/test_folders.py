"""A user's own folder: the up-front checks (one message per problem), the layout helper,
the shipped real clips, undefined IDs in the tables and the command line's messages."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import write_wav
from helpers import run_cli

from aadlib import folders, realclips, tables
from aadlib.data import DataLayoutError

SECONDS = 1.0


def user_folder(root, mtype="pump", ids=(3, 7), n_train=4, n_normal=2, n_anomaly=2, **wav):
    """A small folder in the DCASE layout with a type name and IDs DCASE does not have."""
    for mid in ids:
        for i in range(n_train):
            write_wav(root / mtype / "train" / f"normal_id_{mid:02d}_{i:08d}.wav", SECONDS, **wav)
        for i in range(n_normal):
            write_wav(root / mtype / "test" / f"normal_id_{mid:02d}_{i:08d}.wav", SECONDS, **wav)
        for i in range(n_anomaly):
            path = root / mtype / "test" / f"anomaly_id_{mid:02d}_{i:08d}.wav"
            write_wav(path, SECONDS, freq=880.0, **wav)
    return root


def problems_of(root, **kwargs) -> list[str]:
    with pytest.raises(folders.FolderError) as caught:
        folders.check_folder(root, **kwargs)
    assert str(root) in str(caught.value)
    return caught.value.problems


def test_a_good_folder_with_any_type_name_and_ids_passes(tmp_path):
    root = user_folder(tmp_path / "mine", mtype="compressor", ids=(5, 11))
    found = folders.check_folder(root)
    assert found.machine_types == ["compressor"]
    assert sorted(found.clips.machine_id.unique()) == [5, 11]
    assert found.notes == [] and found.undefined == []


def test_no_test_folder_is_named_as_such(tmp_path):
    root = user_folder(tmp_path / "mine")
    shutil.rmtree(root / "pump" / "test")
    (problem,) = problems_of(root)
    assert "pump" in problem and str(root / "pump" / "test") in problem
    assert "is missing" in problem and "train/ only" in problem


def test_an_id_with_one_label_is_undefined_not_fatal(tmp_path):
    root = user_folder(tmp_path / "mine")
    for path in (root / "pump" / "test").glob("anomaly_id_07_*.wav"):
        path.unlink()
    found = folders.check_folder(root)
    assert found.undefined == [("pump", 7, "anomaly")]
    (note,) = found.notes
    assert "pump ID 07" in note and "no anomalous test clip" in note and "undefined" in note
    assert "every other ID is computed" in note


def test_a_type_without_anomalous_test_clips_is_fatal(tmp_path):
    root = user_folder(tmp_path / "mine", n_anomaly=0)
    (problem,) = problems_of(root)
    assert "has no anomalous clip (anomaly_id_XX_*.wav)" in problem and "pump" in problem


def test_too_few_training_clips(tmp_path):
    root = user_folder(tmp_path / "mine", ids=(0,), n_train=1)
    (problem,) = problems_of(root)
    assert "1 normal training clip(s)" in problem and "at least 2" in problem


def test_clips_shorter_than_one_window(tmp_path):
    root = user_folder(tmp_path / "mine")
    (problem,) = problems_of(root, min_samples=int(2 * SECONDS * 16_000))
    assert "shorter than one model window (2.00 s)" in problem and "16 clip(s)" in problem


def test_fewer_windows_than_one_batch_is_said(tmp_path):
    root = user_folder(tmp_path / "mine")
    found = folders.check_folder(root, windows={"dense": (5, 1, 512)})
    (note,) = found.notes
    assert "fewer than one batch of 512" in note and "dense windows" in note


def test_mixed_sample_rates(tmp_path):
    root = user_folder(tmp_path / "mine")
    write_wav(root / "pump" / "train" / "normal_id_03_00000000.wav", SECONDS, sr=44_100)
    (problem,) = problems_of(root)
    assert "mixed sample rates" in problem
    assert "1 clip(s) at 44100 Hz" in problem and "15 clip(s) at 16000 Hz" in problem


def test_another_sample_rate_throughout(tmp_path):
    root = user_folder(tmp_path / "mine", sr=8_000)
    (problem,) = problems_of(root)
    assert "every clip is at 8000 Hz" in problem and "16000 Hz" in problem


def test_several_channels_need_a_mix_down(tmp_path):
    root = user_folder(tmp_path / "mine", channels=8)
    (problem,) = problems_of(root)
    assert "16 clip(s) have several channels" in problem and ": 8)" in problem
    assert "--mix-down first" in problem and "--mix-down mean" in problem
    assert folders.check_folder(root, mono="mean").notes == []


def test_unparsable_names_are_counted_and_named(tmp_path):
    root = user_folder(tmp_path / "mine")
    for name in ("id_00_00000000.wav", "normal_id_xx_abc.wav"):
        write_wav(root / "pump" / "test" / name, SECONDS)
    (root / "pump" / "test" / ".DS_Store").write_text("")
    (note,) = folders.check_folder(root).notes
    assert "2 file(s) skipped" in note
    assert "id_00_00000000.wav" in note and "normal_id_xx_abc.wav" in note
    assert ".DS_Store" not in note


def test_every_problem_is_reported_at_once(tmp_path):
    root = user_folder(tmp_path / "mine", mtype="pump")
    user_folder(root, mtype="fan", channels=2)
    shutil.rmtree(root / "pump" / "test")
    problems = problems_of(root)
    assert len(problems) == 2
    assert any("pump" in p and "is missing" in p for p in problems)
    assert any("several channels" in p for p in problems)


def test_a_root_without_type_folders_or_a_wrong_type(tmp_path):
    with pytest.raises(DataLayoutError, match="does not exist"):
        folders.machine_types(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataLayoutError, match="no machine-type folder.*aadlib layout"):
        folders.machine_types(tmp_path / "empty")
    root = user_folder(tmp_path / "mine", mtype="compressor")
    with pytest.raises(DataLayoutError, match="Did you mean 'compressor'"):
        folders.machine_types(root, ["compresor"])


# --------------------------------------------------------------------------------------
# The layout helper
# --------------------------------------------------------------------------------------


def plain_recordings(root, n_normal=7, n_abnormal=3):
    for i in range(n_normal):
        write_wav(root / "normal" / f"rec_{i:03d}.wav", 0.2, seed=i)
    for i in range(n_abnormal):
        write_wav(root / "abnormal" / f"bad_{i:03d}.wav", 0.2, seed=100 + i)
    (root / "normal" / "notes.txt").write_text("not audio")
    return root


def test_folds_test_every_normal_clip_once_and_every_abnormal_clip_always(tmp_path):
    source = plain_recordings(tmp_path / "src")
    before = sorted(p.read_bytes() for p in source.rglob("*") if p.is_file())
    tested, folds = [], 3
    for fold in range(folds):
        record = folders.layout_recordings(
            source,
            tmp_path / f"f{fold}",
            machine_type="press",
            machine_id=4,
            folds=folds,
            fold=fold,
        )
        test = tmp_path / f"f{fold}" / "press" / "test"
        train = tmp_path / f"f{fold}" / "press" / "train"
        normal_test = {record.test[p.name] for p in test.glob("normal_id_04_*.wav")}
        normal_train = {record.train[p.name] for p in train.glob("normal_id_04_*.wav")}
        assert not normal_test & normal_train and len(normal_test | normal_train) == 7
        assert len(list(test.glob("anomaly_id_04_*.wav"))) == 3
        saved = json.loads((tmp_path / f"f{fold}" / "press" / record.path_name).read_text())
        assert saved["fold"] == fold and saved["folds"] == folds and "blocks" in saved["rule"]
        assert saved["skipped"] == [str(source / "normal" / "notes.txt")]
        tested += normal_test
    assert sorted(tested) == sorted(str(p) for p in (source / "normal").glob("*.wav"))
    assert sorted(p.read_bytes() for p in source.rglob("*") if p.is_file()) == before
    assert folders.check_folder(tmp_path / "f0").machine_types == ["press"]


def test_layout_refuses_to_replace_clips_unless_asked(tmp_path):
    source = plain_recordings(tmp_path / "src")
    folders.layout_recordings(source, tmp_path / "dst", fold=0)
    with pytest.raises(FileExistsError, match="already holds 10 clip.*--overwrite"):
        folders.layout_recordings(source, tmp_path / "dst", fold=1)
    folders.layout_recordings(source, tmp_path / "dst", fold=1, overwrite=True)
    assert len(list((tmp_path / "dst" / "fan" / "test").glob("normal_*.wav"))) == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"folds": 1}, "folds must be 2 to 7"),
        ({"folds": 8}, "folds must be 2 to 7"),
        ({"fold": 2}, "fold must be 0 to 1"),
        ({"machine_id": 100}, "0 to 99"),
    ],
)
def test_layout_refuses_bad_splits(tmp_path, change, message):
    source = plain_recordings(tmp_path / "src")
    with pytest.raises(ValueError, match=message):
        folders.layout_recordings(source, tmp_path / "dst", **change)


def test_layout_needs_both_kinds_of_recordings(tmp_path):
    source = plain_recordings(tmp_path / "src", n_abnormal=0)
    with pytest.raises(DataLayoutError, match="found 7 normal and 0 abnormal"):
        folders.layout_recordings(source, tmp_path / "dst")


# --------------------------------------------------------------------------------------
# The shipped real clips
# --------------------------------------------------------------------------------------


def test_the_real_clips_are_shipped_and_checked(tmp_path, monkeypatch):
    folder = realclips.mimii_fan()
    clips = realclips.real_clips(folder)
    assert clips.label.value_counts().to_dict() == {"normal": 20, "anomaly": 20}
    assert (folder / "LICENSE").read_text().count("CC BY-SA 4.0") >= 1
    assert "Purohit" in (folder / "README.md").read_text()
    assert sum(p.stat().st_size for p in folder.rglob("*")) < 15e6
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / "abnormal" / "00000003.wav").write_bytes(b"RIFF")
    (copy / "normal" / "00000005.wav").unlink()
    monkeypatch.setattr(realclips, "resource", lambda name: copy)
    with pytest.raises(realclips.DamagedDataError) as caught:
        realclips.mimii_fan()
    text = str(caught.value)
    assert "2 of the shipped real clips" in text and "reinstall aadlib" in text
    assert "abnormal/00000003.wav: changed" in text and "normal/00000005.wav: missing" in text


# --------------------------------------------------------------------------------------
# Undefined IDs in the tables and on the command line
# --------------------------------------------------------------------------------------


def scores_with_an_undefined_id() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for mid, labels in ((1, ["normal"] * 6 + ["anomaly"] * 6), (2, ["normal"] * 6)):
        for i, label in enumerate(labels):
            score = rng.normal(2.0 if label == "anomaly" else 0.0)
            rows.append(("dense", "press", mid, label, i, f"/x/{label}_{mid}_{i}.wav", score))
    return pd.DataFrame(
        rows, columns=["model", "machine_type", "machine_id", "label", "index", "path", "score"]
    )


def test_an_undefined_id_is_nan_and_left_out_of_the_average():
    table = tables.per_id_table(scores_with_an_undefined_id(), ci=True, n_boot=50)
    by_id = table.set_index("machine_id")
    assert np.isnan(by_id.loc["2", "auc"]) and np.isnan(by_id.loc["2", "auc_low"])
    assert by_id.loc["average", "auc"] == pytest.approx(by_id.loc["1", "auc"])
    assert by_id.loc["average", "auc_low"] == pytest.approx(by_id.loc["1", "auc_low"])


def test_report_names_the_undefined_id(tmp_path):
    results = tmp_path / "results" / "quick"
    results.mkdir(parents=True)
    scores_with_an_undefined_id().to_csv(results / "scores.csv", index=False)
    result = run_cli(["report", "--results", str(tmp_path / "results")], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "press ID 02: AUC and pAUC undefined (no anomalous test clip)" in result.stdout


def test_evaluate_lists_every_problem_of_a_folder_and_exits_2(tmp_path):
    root = user_folder(tmp_path / "mine", channels=2)
    shutil.rmtree(root / "pump" / "test")
    result = run_cli(["evaluate", "--profile", "folder", "--data-root", str(root)], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "2 problem(s)" in result.stderr
    assert "is missing" in result.stderr and "--mix-down first" in result.stderr


def test_the_folder_profile_needs_a_data_root(tmp_path):
    result = run_cli(["evaluate", "--profile", "folder"], tmp_path)
    assert result.returncode == 2 and "--data-root DIR" in result.stderr
    assert "does not exist" in result.stderr


def test_layout_on_the_command_line(tmp_path):
    source = plain_recordings(tmp_path / "src")
    args = ["layout", str(source), str(tmp_path / "dst"), "--type", "press", "--id", "2"]
    result = run_cli([*args, "--folds", "2", "--fold", "1"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "4 normal clips in train/, 6 in test/" in result.stdout
    again = run_cli([*args, "--folds", "2", "--fold", "1"], tmp_path)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    bad = run_cli([*args, "--folds", "2", "--fold", "5"], tmp_path)
    assert bad.returncode == 2 and "fold must be 0 to 1" in bad.stderr


def test_a_mix_down_reads_multichannel_clips_and_enters_the_cache_key(tmp_path):
    from aadlib import features
    from aadlib.data import AudioError

    path = write_wav(tmp_path / "two.wav", SECONDS, channels=2)
    with pytest.raises(AudioError, match="mono='mean' or mono='first'"):
        features.clip_log_mel(path)
    first = features.clip_log_mel(path, features.FeatureParams(mono="first"))
    mean = features.clip_log_mel(path, features.FeatureParams(mono="mean"))
    assert first.shape == mean.shape and not np.allclose(first, mean)
    keys = {features.cache_key([path], features.FeatureParams(mono=m)) for m in ("first", "mean")}
    assert len(keys) == 2
    assert "mono" not in features.FeatureParams().as_dict()  # mono data keep their records


def test_a_type_folder_without_test_is_named_not_a_network_failure(tmp_path):
    root = user_folder(tmp_path / "dcase", mtype="fan", ids=(0,))
    shutil.rmtree(root / "fan" / "test")
    args = ["evaluate", "--profile", "full", "--data-root", str(root), "--types", "fan"]
    result = run_cli([*args, "--models", "dense"], tmp_path, AADLIB_DATA_URL="http://127.0.0.1:9")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{root / 'fan' / 'test'} is missing (the folder has train/ only)" in result.stderr
    assert "could not reach" not in result.stderr
