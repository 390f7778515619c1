"""The experiment end to end: training, reuse, resume, scoring, tables, the reproduction report."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from aadlib import data, metrics, pipeline, profiles, reference, training

TINY = profiles.get_profile("tiny")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("AADLIB_HOME", str(tmp_path))
    monkeypatch.delenv("AADLIB_DATA_ROOT", raising=False)
    monkeypatch.delenv("AADLIB_RESULTS", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-data")
    return pipeline.prepare_data(TINY, root, ["valve"], progress=False)


@pytest.mark.slow
def test_trained_model_is_reused_not_retrained(home, tiny_root):
    first = pipeline.train_machine_type("valve", "dense", TINY, tiny_root, verbose=0)
    record = (first.run_dir / "run.json").read_text()
    second = pipeline.train_machine_type("valve", "dense", TINY, tiny_root, verbose=0)
    assert (second.run_dir / "run.json").read_text() == record
    probe = np.random.default_rng(0).normal(size=(4, 640)).astype("float32")
    np.testing.assert_allclose(
        first.model.predict(probe, verbose=0), second.model.predict(probe, verbose=0), rtol=1e-5
    )
    # A change of settings trains anew.
    longer = TINY.replace(dense_epochs=TINY.dense_epochs + 1)
    third = pipeline.train_machine_type("valve", "dense", longer, tiny_root, verbose=0)
    assert json.loads((third.run_dir / "run.json").read_text()) != json.loads(record)


@pytest.mark.slow
def test_interrupted_training_resumes_where_it_stopped(home, tiny_root, monkeypatch):
    profile = TINY.replace(dense_epochs=3, patience=10)
    original = training.ResumableEarlyStopping.on_epoch_end

    def crash_after_second_epoch(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt  # the session is cut off after epoch 2's checkpoint

    monkeypatch.setattr(training.ResumableEarlyStopping, "on_epoch_end", crash_after_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        pipeline.train_machine_type("valve", "dense", profile, tiny_root, verbose=0)
    run_dir = profiles.results_root(profile) / "dense" / "valve"
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2 and not (run_dir / "model.keras").exists()

    monkeypatch.setattr(training.ResumableEarlyStopping, "on_epoch_end", original)
    resumed = pipeline.train_machine_type("valve", "dense", profile, tiny_root, verbose=0)
    assert list(resumed.history.epoch) == [1, 2, 3]
    assert resumed.history.loss.iloc[:2].tolist() == [h["loss"] for h in state["history"]]
    assert (run_dir / "model.keras").exists()


@pytest.mark.slow
def test_run_experiment_writes_scores_and_tables(home, tiny_root):
    scores = pipeline.run_experiment(TINY, ["valve"], ("dense", "cnn"), tiny_root, log=None)
    results = profiles.results_root(TINY)
    test_clips = data.list_clips(tiny_root, "valve", "test")
    assert len(scores) == 2 * len(test_clips)
    assert set(scores.model) == {"dense", "cnn"}
    assert np.isfinite(scores.score).all() and (scores.score > 0).all()
    saved = pd.read_csv(results / "scores.csv")
    assert len(saved) == len(scores)
    table = pd.read_csv(results / "table.csv", dtype={"machine_id": str})
    assert {"auc", "pauc_mcclish", "pauc_dcase"} <= set(table.columns)
    ids = {str(i) for i in data.DEV_IDS["valve"]} | {"average"}
    assert set(table.machine_id) == ids
    timings = pd.read_csv(results / "timings.csv")
    assert len(timings) == 2 and (timings.train_seconds > 0).all()


@pytest.mark.slow
def test_reproduction_report_puts_ours_beside_the_paper(home, tiny_root):
    from aadlib.report import write_reproduction

    scores = pipeline.run_experiment(TINY, ["valve"], ("dense", "cnn"), tiny_root, log=None)
    out = write_reproduction(scores, home / "report", TINY)
    names = {p.name for p in out.files}
    assert names == {"table.csv", "comparison.csv", "comparison.png"}
    comparison = pd.read_csv(home / "report" / "comparison.csv", dtype={"machine_id": str})
    avg = comparison[(comparison.machine_id == "average") & (comparison.model == "dense")].iloc[0]
    assert avg.paper_auc == 72.16  # the paper's Table 2, valve, Dense AE average
    assert avg.auc_diff == pytest.approx(avg.auc - 72.16)
    assert (home / "report" / "comparison.png").stat().st_size > 10_000


@pytest.mark.slow
def test_quick_profile_detects_planted_anomalies(home):
    """The method works: on the quick synthetic set the Dense AE is well above chance."""
    quick = profiles.get_profile("quick")
    scores = pipeline.run_experiment(quick, ["slider"], ("dense",), log=None)
    average = metrics.per_id_table(scores).set_index("machine_id").loc["average"]
    assert average.auc > 70, average


@pytest.mark.slow
def test_cli_reproduce_runs_a_full_size_type_with_capped_training(home):
    """`aadlib reproduce` on the full-size synthetic set (one type), training capped for a CPU."""
    command = [
        sys.executable,
        "-m",
        "aadlib",
        "reproduce",
        "--profile",
        "full-synthetic",
        "--types",
        "slider",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--score-hop",
        "64",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=3000)
    assert result.returncode == 0, result.stderr[-3000:]
    results = profiles.results_root("full-synthetic")
    table = pd.read_csv(results / "comparison.csv", dtype={"machine_id": str})
    assert set(table.model) == {"dense", "cnn"}
    clips = data.list_clips(profiles.data_root("full-synthetic"), "slider")
    expected = reference.table1().query("machine_type == 'slider'")
    assert (clips.split == "train").sum() == expected.train_files.sum()
    assert (clips.split == "test").sum() == expected.test_files.sum()
    assert (results / "comparison.png").exists()
    assert "wrote" in result.stdout
