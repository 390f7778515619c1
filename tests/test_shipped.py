"""Runs shipped with aadlib: a model kind a profile reads instead of training it
(``ModelSettings.shipped``; the quick profile's CNN AE, made by ``tools/ship_runs.py``)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pandas as pd
import pytest

from aadlib import data, profiles, synth, training

QUICK = profiles.PROFILES["quick"]


def _shipped_kinds(profile):
    return [kind for kind, settings in profile.models.items() if settings.shipped]


@pytest.mark.parametrize("machine_type", data.MACHINE_TYPES)
def test_the_quick_profiles_shipped_runs_match_its_settings_and_clips(machine_type):
    """Fails when the quick settings, the generator or its clip plan change without the
    runs being made again (``python tools/ship_runs.py``)."""
    assert _shipped_kinds(QUICK) == ["cnn"]
    folder = data.resource("shipped") / "quick" / "cnn" / machine_type
    record = json.loads((folder / "run.json").read_text())
    settings = dataclasses.asdict(QUICK.model("cnn", machine_type))
    settings.pop("shipped")
    assert record["settings"] == settings
    assert record["bn_momentum"] == QUICK.bn_momentum and record["seed"] == QUICK.seed
    assert record["data"]["generator_version"] == synth.SYNTH_VERSION
    every_clip = sorted(k.relpath for k in synth.clip_plan(machine_type, "quick"))
    assert sorted(record["data"]["levels_db"]) == every_clip  # to recognise them elsewhere
    with (folder / "scores.csv").open() as handle:
        scores = pd.read_csv(handle)
    planned = [k for k in synth.clip_plan(machine_type, "quick") if k.split == "test"]
    assert sorted(scores.path) == sorted(f"{machine_type}/{k.relpath}" for k in planned)
    assert not scores.path.duplicated().any()
    assert scores.score.notna().all() and set(scores.model) == {"cnn"}
    with (folder / "history.csv").open() as handle:
        history = pd.read_csv(handle)
    assert len(history) == record["epochs_run"] <= settings["epochs"]
    with (folder / "validation.csv").open() as handle:
        held_out = pd.read_csv(handle)
    assert len(held_out) > 0 and held_out.path.str.startswith(f"{machine_type}/train/").all()
    provenance = json.loads((folder.parent / "provenance.json").read_text())
    assert provenance["command"].startswith("python tools/ship_runs.py")
    assert {"date", "machine"} <= set(provenance)
    assert provenance["train_seconds"] >= record["train_seconds"] > 0


def test_trained_here_trains_the_named_kinds_and_keeps_the_others():
    assert not QUICK.trained_here("cnn").model("cnn").shipped
    assert not any(s.shipped for s in QUICK.trained_here().models.values())
    shipping = QUICK.with_model("dense", shipped=True)
    kept = shipping.trained_here("cnn")
    assert kept.model("dense").shipped and not kept.model("cnn").shipped
    # Everything but the flag stays: the run it trains is the one that was shipped.
    assert dataclasses.replace(kept.model("cnn"), shipped=True) == QUICK.model("cnn")


def test_a_different_schedule_on_the_command_line_trains_the_shipped_kinds_here():
    from aadlib import cli

    parser = cli.build_parser()
    # cli._profile is where the command line's options become a profile; these lines
    # read it without running a command.
    plain = cli._profile(parser.parse_args(["evaluate", "--profile", "quick"]))
    assert plain.model("cnn").shipped
    capped = cli._profile(parser.parse_args(["evaluate", "--profile", "quick", "--epochs", "2"]))
    assert not capped.model("cnn").shipped and capped.model("cnn").epochs == 2
    reseeded = cli._profile(parser.parse_args(["evaluate", "--profile", "quick", "--seed", "1"]))
    assert not reseeded.model("cnn").shipped


@pytest.fixture(scope="module")
def shipped(tiny, tmp_path_factory):
    """A tiny CNN AE on valve trained, exported as a shipped run into a scratch resource
    folder, and a profile that reads it (results in a folder of its own)."""
    from aadlib import pipeline

    root = tmp_path_factory.mktemp("shipped-resources")
    made = tiny.trained_here("cnn").replace(results=tiny.results / "made")
    trained = pipeline.run_experiment(made, ["valve"], ["cnn"], log=None, parallel=1)
    held_out = pipeline.validation_scores(made, ["valve"], ["cnn"])
    with pytest.MonkeyPatch.context() as patch:
        # Tests must not write into the package's own resources.
        patch.setattr(pipeline, "_shipped_root", lambda: root)
        pipeline.export_shipped_run(made, "cnn", {"command": "test"}, ["valve"])
    reader = tiny.with_model("cnn", shipped=True).replace(results=tiny.results / "reader")
    return reader, root, trained, held_out


@pytest.fixture
def reads_shipped(shipped, monkeypatch):
    from aadlib import pipeline

    reader, root, trained, held_out = shipped
    monkeypatch.setattr(pipeline, "_shipped_root", lambda: root)  # the scratch resources
    return reader, root, trained, held_out


def test_a_shipped_run_gives_the_scores_history_and_held_out_scores_it_was_made_with(
    reads_shipped,
):
    from aadlib import pipeline

    reader, _, trained, held_out = reads_shipped
    scores = pipeline.autoencoder_scores(reader, ["cnn"], ["valve"])
    assert [str(p) for p in scores.path] == [str(p) for p in trained.path]
    pd.testing.assert_series_equal(scores.score, trained.score, check_exact=False)
    again = pipeline.validation_scores(reader, ["valve"], ["cnn"])
    assert [str(p) for p in again.path] == [str(p) for p in held_out.path]
    assert again.score.to_numpy() == pytest.approx(held_out.score.to_numpy())
    summary = pipeline.training_summary(reader, ["cnn"], ["valve"])
    history = pipeline.run_history(reader, "cnn", "valve")
    assert summary.epochs.tolist() == [len(history)]
    assert summary.status.tolist() == [training.learning_status(history)]
    # run_experiment reads it too, and says so in its timings.
    pipeline.run_experiment(reader, ["valve"], ["cnn"], log=None, parallel=1)
    timings = pd.read_csv(reader.results / "timings.csv")
    assert timings.shipped.tolist() == [True]


def test_a_shipped_kind_is_not_trained_unless_asked(reads_shipped):
    from aadlib import pipeline

    reader = reads_shipped[0]
    with pytest.raises(ValueError, match=r"trained_here\('cnn'\)"):
        pipeline.train_machine_type("valve", "cnn", reader, verbose=0)


def test_a_shipped_run_of_other_settings_or_clips_is_refused(reads_shipped, tmp_path, monkeypatch):
    from aadlib import pipeline

    reader, root, *_ = reads_shipped
    with pytest.raises(ValueError, match="settings.*tools/ship_runs.py"):
        pipeline.autoencoder_scores(reader.with_model("cnn", epochs=7), ["cnn"], ["valve"])
    # Other clips: the record names other audio than the data folder holds.
    copy = tmp_path / "resources"
    shutil.copytree(root, copy)
    monkeypatch.setattr(pipeline, "_shipped_root", lambda: copy)
    run_file = copy / "tiny" / "cnn" / "valve" / "run.json"
    record = json.loads(run_file.read_text())
    levels = record["data"]["levels_db"]
    # Another digest with every clip's level as recorded: the same clips, a few samples
    # rounded otherwise on another CPU.
    record["data"]["clips"] = "0" * 24
    run_file.write_text(json.dumps(record))
    assert pipeline.shipped_run(reader, "cnn", "valve")["data"]["clips"] == "0" * 24
    # One clip's level off by more than rounding: other clips.
    first = next(iter(levels))
    record["data"]["levels_db"] = {**levels, first: levels[first] + 10 * synth.SAME_LEVEL_DB}
    run_file.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="other data"):
        pipeline.shipped_run(reader, "cnn", "valve")
    # A record without levels (made before they were kept) needs the exact digest.
    del record["data"]["levels_db"]
    run_file.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="other data"):
        pipeline.shipped_run(reader, "cnn", "valve")
    record["data"]["levels_db"] = levels
    # A scores file that lists other clips than the data folder's test clips.
    record["data"]["clips"] = json.loads((root / "tiny/cnn/valve/run.json").read_text())["data"][
        "clips"
    ]
    run_file.write_text(json.dumps(record))
    scores_file = copy / "tiny" / "cnn" / "valve" / "scores.csv"
    pd.read_csv(scores_file).iloc[1:].to_csv(scores_file, index=False)
    with pytest.raises(ValueError, match="lists other clips"):
        pipeline.autoencoder_scores(reader, ["cnn"], ["valve"])


def test_a_missing_shipped_run_names_the_command_that_makes_it(
    reads_shipped, tmp_path, monkeypatch
):
    from aadlib import pipeline

    reader = reads_shipped[0]
    monkeypatch.setattr(pipeline, "_shipped_root", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="tools/ship_runs.py"):
        pipeline.autoencoder_scores(reader, ["cnn"], ["valve"])
    with pytest.raises(FileNotFoundError, match="tools/ship_runs.py"):
        pipeline.shipped_provenance(reader, "cnn")
