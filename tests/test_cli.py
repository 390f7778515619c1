"""Tests of the command line, run as a user would: ``python -m aadlib ...`` in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from conftest import write_wav

SUBCOMMANDS = ["synth", "download", "train", "evaluate", "report", "reproduce"]


def run_cli(args, home, timeout=120, **env_changes):
    env = {
        **os.environ,
        "AADLIB_HOME": str(home),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("AADLIB_PROFILE", "AADLIB_DATA_ROOT", "AADLIB_RESULTS", "AADLIB_DATA_URL"):
        env.pop(name, None)
    env.update(env_changes)
    return subprocess.run(
        [sys.executable, "-m", "aadlib", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=home,
    )


def test_help(tmp_path):
    result = run_cli(["--help"], tmp_path)
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


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_evaluate_on_folder_without_clips(tmp_path):
    """The real-data profile on an empty folder: nothing to use, and the download cannot
    reach its server (a closed local port stands in for no network). A clear one-line error
    naming the folder, exit status 2, no traceback, no model trained."""
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli(
        ["evaluate", "--profile", "full", "--data-root", str(empty), "--types", "ToyCar"],
        tmp_path,
        AADLIB_DATA_URL=f"http://127.0.0.1:{_closed_port()}",
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
        AADLIB_DATA_URL=f"http://127.0.0.1:{_closed_port()}",
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
