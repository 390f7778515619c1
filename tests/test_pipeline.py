"""The experiment end to end: training, reuse, resume, scoring, tables, the reproduction report."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import write_one_clip_each

from aadlib import data, pipeline, profiles, published, tables, training

pytestmark = pytest.mark.usefixtures("checkpoint_every_epoch")


@pytest.fixture(scope="module")
def experiment(tiny):
    """Both models trained and scored on valve, once for the tests that read the results."""
    return pipeline.run_experiment(tiny, ["valve"], ("dense", "cnn"), log=None)


@pytest.mark.slow
def test_trained_model_is_reused_not_retrained(tiny, experiment):
    run_file = tiny.results / "dense" / "valve" / "run.json"
    record = run_file.read_text()
    first = pipeline.train_machine_type("valve", "dense", tiny, verbose=0)
    assert first.reused and run_file.read_text() == record
    second = pipeline.train_machine_type("valve", "dense", tiny, verbose=0)
    probe = np.random.default_rng(0).normal(size=(4, 640)).astype("float32")
    np.testing.assert_allclose(
        first.model.predict(probe, verbose=0), second.model.predict(probe, verbose=0), rtol=1e-5
    )
    # Another seed is another run: trained anew, into a folder of its own.
    other = tiny.replace(seed=1, results=tiny.results.parent / "seed-1")
    third = pipeline.train_machine_type("valve", "dense", other, verbose=0)
    assert not third.reused
    saved = json.loads((third.run_dir / "run.json").read_text())
    assert saved["record"]["config"]["seed"] == 1
    assert json.loads(record)["record"]["config"]["seed"] == 0


@pytest.mark.slow
def test_a_second_run_reads_saved_scores_without_loading_a_model(tiny, experiment, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded although its saved scores are current")

    monkeypatch.setattr(pipeline, "train_machine_type", no_loading)
    again = pipeline.run_experiment(tiny, ["valve"], ("dense", "cnn"), log=None)
    pd.testing.assert_frame_equal(again, experiment, check_dtype=False)
    timings = pd.read_csv(tiny.results / "timings.csv").set_index("model")
    runs = {
        kind: json.loads((tiny.results / kind / "valve" / "run.json").read_text())
        for kind in ("dense", "cnn")
    }
    for kind, run in runs.items():  # the times of the run that made the model and its scores
        assert timings.loc[kind, "train_seconds"] == pytest.approx(run["seconds"])
        assert timings.loc[kind, "score_seconds"] > 0
    # Another score hop makes those scores stale: the model is needed again.
    hops = {k: dataclasses.replace(s, score_hop=s.score_hop * 2) for k, s in tiny.models.items()}
    with pytest.raises(AssertionError, match="saved scores are current"):
        pipeline.run_experiment(tiny.replace(models=hops), ["valve"], ("dense",), log=None)


@pytest.mark.slow
def test_interrupted_training_resumes_where_it_stopped(tiny, monkeypatch, tmp_path):
    models = {k: dataclasses.replace(s, epochs=3, patience=10) for k, s in tiny.models.items()}
    profile = tiny.replace(results=tmp_path / "results", models=models)
    original = training.EarlyStopping.on_epoch_end

    def crash_after_second_epoch(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt  # the session is cut off after epoch 2's checkpoint

    monkeypatch.setattr(training.EarlyStopping, "on_epoch_end", crash_after_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        pipeline.train_machine_type("valve", "dense", profile, verbose=0)
    run_dir = profile.results / "dense" / "valve"
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2 and not (run_dir / "model.keras").exists()

    monkeypatch.setattr(training.EarlyStopping, "on_epoch_end", original)
    resumed = pipeline.train_machine_type("valve", "dense", profile, verbose=0)
    assert list(resumed.history.epoch) == [1, 2, 3]
    assert resumed.history.loss.iloc[:2].tolist() == [h["loss"] for h in state["history"]]
    assert (run_dir / "model.keras").exists()


@pytest.mark.slow
def test_run_experiment_writes_scores_and_tables(tiny, experiment):
    scores = experiment
    test_clips = data.list_clips(tiny.data_root, "valve", "test")
    assert len(scores) == 2 * len(test_clips)
    assert set(scores.model) == {"dense", "cnn"}
    assert np.isfinite(scores.score).all() and (scores.score > 0).all()
    saved = pd.read_csv(tiny.results / "scores.csv")
    assert len(saved) == len(scores)
    table = pd.read_csv(tiny.results / "table.csv", dtype={"machine_id": str})
    assert {"auc", "pauc_mcclish", "pauc_dcase"} <= set(table.columns)
    ids = {str(i) for i in data.DEV_IDS["valve"]} | {"average"}
    assert set(table.machine_id) == ids
    timings = pd.read_csv(tiny.results / "timings.csv")
    assert len(timings) == 2 and (timings.train_seconds > 0).all()


@pytest.mark.slow
def test_reproduction_report_puts_ours_beside_the_paper(experiment, tmp_path):
    out = tables.write_reproduction(experiment, tmp_path / "report", "profile tiny")
    names = {p.name for p in out.files}
    assert names == {"table.csv", "comparison.csv", "comparison.png"}
    comparison = pd.read_csv(tmp_path / "report" / "comparison.csv", dtype={"machine_id": str})
    avg = comparison[(comparison.machine_id == "average") & (comparison.model == "dense")].iloc[0]
    assert avg.paper_auc == 72.16  # the paper's Table 2, valve, Dense AE average
    assert avg.auc_diff == pytest.approx(avg.auc - 72.16)
    assert (tmp_path / "report" / "comparison.png").stat().st_size > 10_000


@pytest.mark.slow
def test_cli_reproduce_runs_a_full_size_type_with_capped_training(tmp_path):
    """`aadlib reproduce` on the full-size synthetic set (one type), training capped for a CPU.

    One model kind keeps the suite's time down: the path at full size is the same for every
    kind (chapter 5 of the book build writes all three columns).
    """
    command = [
        sys.executable,
        "-m",
        "aadlib",
        "reproduce",
        "--profile",
        "full-synthetic",
        "--types",
        "slider",
        "--models",
        "dense",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--score-hop",
        "64",
    ]
    env = {**os.environ, "AADLIB_HOME": str(tmp_path)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=3000, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    profile = profiles.resolve("full-synthetic", home=tmp_path)
    table = pd.read_csv(profile.results / "comparison.csv", dtype={"machine_id": str})
    assert set(table.model) == {"dense"}
    clips = data.list_clips(profile.data_root, "slider")
    expected = published.table1().query("machine_type == 'slider'")
    assert (clips.split == "train").sum() == expected.train_files.sum()
    assert (clips.split == "test").sum() == expected.test_files.sum()
    assert (profile.results / "comparison.png").exists()
    assert "wrote" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def dense_trained_once(tiny, tmp_path_factory):
    """Results holding a dense model trained on valve, made once for the module."""
    results = tmp_path_factory.mktemp("trained") / "results"
    pipeline.train_machine_type("valve", "dense", tiny.replace(results=results), verbose=0)
    return results


@pytest.fixture
def trained_dense(tiny, dense_trained_once, tmp_path):
    """The tiny profile with results of its own: a copy of the trained dense model's, which
    the test may damage or retrain (a copied run is reused as it stands, see
    test_a_second_run_waits_for_the_model_another_run_trains)."""
    results = tmp_path / "results"
    shutil.copytree(dense_trained_once, results)
    profile = tiny.replace(results=results)
    return profile, profile.results / "dense" / "valve"


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda d: _truncate(d / "model.keras"), "model.keras"),
        (lambda d: (d / "history.csv").write_text(""), "history.csv"),
        (lambda d: (d / "scaler.npz").write_bytes(b"PK\x03\x04broken"), "scaler.npz"),
        (lambda d: (d / "run.json").write_text("{not json"), "run.json is not valid JSON"),
        (lambda d: (d / "model.keras").unlink(), "model.keras"),
    ],
    ids=["model truncated", "history empty", "scaler broken", "record broken", "model gone"],
)
def test_a_damaged_saved_model_is_named_and_trained_again(trained_dense, caplog, damage, named):
    profile, run_dir = trained_dense
    damage(run_dir)
    with caplog.at_level("WARNING", logger="aadlib"):
        again = pipeline.train_machine_type("valve", "dense", profile, verbose=0)
    assert not again.reused and (run_dir / "run.json").exists()
    (message,) = [r.getMessage() for r in caplog.records]
    assert str(run_dir) in message and "training it again" in message and named in message
    assert pipeline.train_machine_type("valve", "dense", profile, verbose=0).reused


@pytest.mark.slow
def test_a_model_replaced_by_another_is_not_reused(trained_dense, tiny, tmp_path, caplog):
    # A valid model file, but not the one this run trained (copied from another seed's run).
    profile, run_dir = trained_dense
    other = pipeline.train_machine_type(
        "valve", "dense", tiny.replace(results=tmp_path / "other", seed=9), verbose=0
    )
    (run_dir / "model.keras").write_bytes((other.run_dir / "model.keras").read_bytes())
    with caplog.at_level("WARNING", logger="aadlib"):
        again = pipeline.train_machine_type("valve", "dense", profile, verbose=0)
    assert not again.reused
    assert "model.keras changed since it was written" in caplog.text


@pytest.mark.slow
def test_retraining_removes_only_the_runs_own_files(trained_dense):
    profile, run_dir = trained_dense
    notes = run_dir / "my-notes.txt"
    notes.write_text("kept")
    pipeline.train_machine_type("valve", "dense", profile, retrain=True, verbose=0)
    assert notes.read_text() == "kept"


@pytest.mark.slow
def test_a_second_run_waits_for_the_model_another_run_trains(trained_dense, monkeypatch):
    from aadlib._storage import exclusive

    profile, run_dir = trained_dense
    monkeypatch.setenv("AADLIB_LOCK_TIMEOUT", "0.5")
    with exclusive(run_dir, "training in a test"):
        with pytest.raises(TimeoutError, match=str(run_dir)):
            pipeline.train_machine_type("valve", "dense", profile, verbose=0)
    assert pipeline.train_machine_type("valve", "dense", profile, verbose=0).reused


@pytest.mark.slow
def test_a_partial_run_adds_to_the_summary(tiny, experiment, tmp_path):
    # Starts from a copy of the module's results (both models reused, or trained where a
    # test before changed them), so that only the partial run trains.
    profile = tiny.replace(results=tmp_path / "results")
    shutil.copytree(tiny.results, profile.results)
    pipeline.run_experiment(profile, ["valve"], ("dense", "cnn"), log=None)
    pipeline.run_experiment(profile, ["valve"], ("cnn",), retrain=True, log=None)
    summary = pd.read_csv(profile.results / "scores.csv")
    assert set(summary.model) == {"dense", "cnn"}
    assert len(summary) == len(experiment)
    table = pd.read_csv(profile.results / "table.csv")
    assert set(table.model) == {"dense", "cnn"}


def test_check_data_reports_every_bad_clip_before_training(tmp_path, make_wav):
    root = tmp_path / "data"
    write_one_clip_each(root, make_wav)
    short = make_wav(root / "fan" / "test" / "anomaly_id_00_00000001.wav", seconds=0.5)
    stereo = make_wav(root / "fan" / "train" / "normal_id_00_00000002.wav", seconds=1.2, channels=2)
    profile = profiles.resolve("full", home=tmp_path, data_root=root)
    with pytest.raises(data.AudioErrors) as info:
        pipeline.check_data(profile, ["fan"])
    assert {str(short), str(stereo)} == {str(e).split(":")[0] for e in info.value.errors}
    # In a run of both models a clip too short for the CNN's 1 s patch is refused before
    # either trains, so both models score the same clips; the Dense AE alone reads it.
    assert any("shorter than one" in str(e) for e in info.value.errors)
    stereo.unlink()
    pipeline.check_data(profile, ["fan"], kinds=("dense",))
    with pytest.raises(data.AudioErrors, match="shorter than one"):
        pipeline.check_data(profile, ["fan"], kinds=("dense", "cnn"))
    short.unlink()
    pipeline.check_data(profile, ["fan"])


def test_profile_departures_list_what_each_profile_changes():
    table = pipeline.profile_departures()
    assert list(table.columns) == ["paper", *profiles.PROFILES]
    # The full profile runs the paper's settings on the real data: nothing departs.
    assert set(table.loc[table.index != "data", "full"]) == {"="}
    quick = profiles.PROFILES["quick"]
    for kind in ("baseline", "dense", "cnn"):
        row = table.loc[f"{kind}: epochs at most"]
        assert row["quick"] == str(quick.model(kind).epochs) != row["paper"]
    assert table.loc["batch-norm momentum", "quick"] == str(quick.bn_momentum)
    # A kind the profile ships rather than trains says so.
    assert table.loc["cnn: trained", "quick"] == "once, shipped with aadlib"
    assert table.loc["dense: trained", "quick"] == "="
