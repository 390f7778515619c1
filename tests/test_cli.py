"""Tests of the command line: ``aadlib.cli.main`` in the test's process, and ``python -m
aadlib`` in a process of its own where only the program shows what is tested."""

from __future__ import annotations

import json

import pytest
from conftest import write_wav
from helpers import closed_port, run_cli, write_one_clip_each

SUBCOMMANDS = ["synth", "download", "train", "evaluate", "report", "reproduce"]


def test_help(tmp_path):
    result = run_cli(["--help"], tmp_path, process=True)  # the program's entry point
    assert result.returncode == 0, result.stderr
    for command in SUBCOMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_subcommand_help_mentions_profile(tmp_path, command):
    result = run_cli([command, "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--profile" in result.stdout
    assert "--data-root" in result.stdout


def test_no_command_is_a_usage_error(tmp_path):
    result = run_cli([], tmp_path)
    assert result.returncode == 2
    assert "usage" in result.stderr.lower()


def test_unknown_profile_option(tmp_path):
    result = run_cli(["report", "--profile", "huge"], tmp_path)
    assert result.returncode == 2
    assert "huge" in result.stderr
    assert "quick" in result.stderr  # the choices are listed
    assert "Traceback" not in result.stderr


def test_unknown_profile_from_environment(tmp_path):
    result = run_cli(["synth"], tmp_path, AADLIB_PROFILE="huge")
    assert result.returncode == 2
    assert "unknown profile 'huge'" in result.stderr
    assert "AADLIB_PROFILE" in result.stderr
    assert "Traceback" not in result.stderr


def test_report_without_results(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    result = run_cli(["report", "--results", str(results)], tmp_path)
    assert result.returncode == 2
    assert "aadlib evaluate" in result.stderr
    assert str(results) in result.stderr
    assert "Traceback" not in result.stderr


def test_evaluate_on_folder_without_clips(tmp_path):
    """The real-data profile on an empty folder: nothing to use, and the download cannot
    reach its server (a closed local port stands in for no network). A clear one-line error
    naming the folder, exit status 2, no traceback, no model trained."""
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli(
        ["evaluate", "--profile", "full", "--data-root", str(empty), "--types", "ToyCar"],
        tmp_path,
        AADLIB_DATA_URL=f"http://127.0.0.1:{closed_port()}",
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "aadlib evaluate: error:" in result.stderr
    assert str(empty) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists()


def test_evaluate_on_folder_without_anomalies(tmp_path):
    """A hand-made set with training and normal test clips only cannot be scored: exit 2."""
    root = tmp_path / "data"
    for split, index in (("train", 0), ("train", 1), ("test", 0)):
        write_wav(root / "ToyCar" / split / f"normal_id_01_{index:08d}.wav", seconds=0.5)
    result = run_cli(
        ["evaluate", "--profile", "full", "--data-root", str(root), "--types", "ToyCar"],
        tmp_path,
        AADLIB_DATA_URL=f"http://127.0.0.1:{closed_port()}",
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "aadlib evaluate: error:" in result.stderr
    assert "no anomaly test clip" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "results").glob("**/model.keras"))


def test_synth_refuses_real_profile(tmp_path):
    result = run_cli(["synth", "--profile", "full"], tmp_path)
    assert result.returncode == 2
    assert "aadlib download" in result.stderr


@pytest.mark.parametrize(
    "option",
    [
        ["--epochs", "-1"],
        ["--epochs", "0"],
        ["--steps-per-epoch", "-3"],
        ["--steps-per-epoch", "0"],
        ["--score-hop", "0"],
        ["--score-hop", "-2"],
        ["--seed", "-1"],
        ["--epochs", "many"],
    ],
    ids=lambda o: " ".join(o),
)
def test_numeric_options_are_checked_when_parsed(tmp_path, option):
    # train, evaluate and reproduce share these options (one parser helper); evaluate stands
    # for the three here, and the next test checks that the others refuse too.
    result = run_cli(["evaluate", "--profile", "tiny", *option], tmp_path)
    assert result.returncode == 2
    assert f"argument {option[0]}:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # refused before any work


@pytest.mark.parametrize("command", ["train", "reproduce"])
def test_every_training_command_checks_its_options(tmp_path, command):
    result = run_cli([command, "--profile", "tiny", "--epochs", "0"], tmp_path)
    assert result.returncode == 2 and "argument --epochs:" in result.stderr


# Slow: three command-line processes, two of which load TensorFlow; make test runs it.
@pytest.mark.slow
def test_a_data_root_that_is_a_file_is_one_clear_line(tmp_path):
    afile = tmp_path / "not-a-folder"
    afile.write_text("x")
    for command in (["synth"], ["evaluate", "--models", "dense"], ["train"]):
        # A process of its own: TensorFlow's native start-up lines would be a second line.
        args = [*command, "--profile", "tiny", "--data-root", str(afile)]
        result = run_cli(args, tmp_path, process=True)
        assert result.returncode == 2, (command, result.stderr[-2000:])
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"aadlib {command[0]}: error:"), lines
        assert str(afile) in lines[0]


def test_bad_clips_are_all_reported_before_any_training(tmp_path):
    root = tmp_path / "data"
    write_one_clip_each(root, write_wav)
    bad = []
    for index in range(2, 7):
        path = root / "fan" / "train" / f"normal_id_00_{index:08d}.wav"
        path.write_bytes(b"\x00broken" * (index * 10))
        bad.append(path)
    # The program, as a user runs it: an expected error ends the process with status 2.
    result = run_cli(
        ["evaluate", "--profile", "full", "--data-root", str(root), "--types", "fan"],
        tmp_path,
        process=True,
        AADLIB_DATA_URL=f"http://127.0.0.1:{closed_port()}",
    )
    assert result.returncode == 2
    assert "5 clip(s) cannot be used" in result.stderr
    for path in bad:
        assert str(path) in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("results/**/model.keras"))


def _scores_file(results, text):
    folder = results / "tiny"
    folder.mkdir(parents=True)
    (folder / "scores.csv").write_text(text)
    return folder / "scores.csv"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "damaged"),
        ("model,machine_type,machine_id,label\ndense,valve,0,normal\n", "missing column(s) score"),
        ("a,b\n1,2\n", "not a scores table"),
        (
            "model,machine_type,machine_id,label,score\ndense,valve,0,normal,0.5\ndense,valve,0,anomaly,",
            "missing or not numbers",
        ),
    ],
    ids=["empty", "no score column", "other table", "truncated"],
)
def test_report_refuses_a_damaged_scores_file(tmp_path, text, expected):
    path = _scores_file(tmp_path / "results", text)
    result = run_cli(
        ["report", "--profile", "tiny", "--results", str(tmp_path / "results")], tmp_path
    )
    assert result.returncode == 2
    assert expected in result.stderr and str(path) in result.stderr
    assert "aadlib evaluate" in result.stderr
    assert "Traceback" not in result.stderr


def _valid_scores():
    rows = ["model,machine_type,machine_id,label,score"]
    for machine_id in (0, 2):
        for i in range(6):
            rows.append(f"dense,valve,{machine_id},normal,{i * 0.1}")
            rows.append(f"dense,valve,{machine_id},anomaly,{0.3 + i * 0.1}")
    return "\n".join(rows) + "\n"


def test_report_saves_the_comparison_with_the_paper(tmp_path):
    _scores_file(tmp_path / "results", _valid_scores())
    result = run_cli(
        ["report", "--profile", "tiny", "--results", str(tmp_path / "results")], tmp_path
    )
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "results" / "tiny"
    for name in ("table.csv", "comparison.csv", "comparison.png"):
        assert (folder / name).stat().st_size > 0
        assert f"wrote {folder / name}" in result.stdout
    assert not list(folder.glob(".tmp-*"))


def test_results_option_and_variable_mean_the_same_folder(tmp_path):
    _scores_file(tmp_path / "results", _valid_scores())
    by_option = run_cli(
        ["report", "--profile", "tiny", "--results", str(tmp_path / "results")], tmp_path
    )
    by_variable = run_cli(
        ["report", "--profile", "tiny"], tmp_path, AADLIB_RESULTS=str(tmp_path / "results")
    )
    assert by_option.returncode == by_variable.returncode == 0
    assert by_option.stdout == by_variable.stdout


@pytest.mark.slow
def test_evaluate_honours_the_seed_and_shows_only_aadlib_lines(tmp_path):
    result = run_cli(
        ["evaluate", "--profile", "tiny", "--types", "valve", "--models", "dense", "--seed", "3"],
        tmp_path,
        timeout=600,
        process=True,  # TensorFlow's native start-up lines show in a process of its own
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads((tmp_path / "results" / "tiny" / "dense" / "valve" / "run.json").read_text())
    assert run["record"]["config"]["seed"] == 3
    # Only aadlib's own messages (here: that it makes the missing synthetic set); no
    # TensorFlow start-up lines and no progress bars when stderr is not a terminal.
    lines = result.stderr.splitlines()
    assert all(line.startswith("aadlib evaluate: ") for line in lines), result.stderr[-3000:]
    assert any("making the synthetic set there" in line for line in lines)
    assert "average" in result.stdout and "results in" in result.stdout


def test_download_of_the_evaluation_clips_ends_well(tmp_path):
    """`download --kind eval_test` gives unlabeled clips: they are counted, not refused."""
    import functools
    import http.server
    import threading
    import zipfile

    served = tmp_path / "served"
    served.mkdir()
    wav = write_wav(tmp_path / "clip.wav", seconds=0.2)
    with zipfile.ZipFile(served / "eval_data_test_fan.zip", "w") as archive:
        for index in range(3):
            archive.write(wav, f"fan/test/id_01_{index:08d}.wav")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = run_cli(
            [
                "download",
                "--kind",
                "eval_test",
                "--types",
                "fan",
                "--allow-unverified",
                "--data-root",
                str(tmp_path / "eval"),
            ],
            tmp_path,
            AADLIB_DATA_URL=f"http://127.0.0.1:{server.server_address[1]}/{{file}}",
        )
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr[-2000:]
    assert "unlabeled" in result.stdout and "3" in result.stdout
    assert "Traceback" not in result.stderr
