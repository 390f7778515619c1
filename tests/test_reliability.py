"""A user's mistakes and a machine's limits: each ends in one line that names the file or
folder and what to do (exit code 2 on the command line), never in a traceback, a native
abort, or data silently made again."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_wav
from helpers import closed_port, run_cli

from aadlib import profiles, synth

# The private I/O helpers, tested here directly.
from aadlib._storage import write_atomic, write_csv

pytestmark = pytest.mark.usefixtures("checkpoint_every_epoch")

# --------------------------------------------------------------------------------------
# Data sets: a tiny synthetic fan set per seed, made once, copied into each test
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def made_sets(tmp_path_factory):
    made = {}

    def make(seed: int) -> Path:
        if seed not in made:
            root = tmp_path_factory.mktemp(f"seed{seed}")
            synth.generate_dataset(root, "tiny", ["fan"], seed=seed, progress=False)
            made[seed] = root
        return made[seed]

    return make


@pytest.fixture
def tiny_set(made_sets, tmp_path):
    """A copy of the tiny synthetic fan set of a seed (default 0) in the test's folder."""

    def copy(seed: int = 0, name: str = "data") -> Path:
        return Path(shutil.copytree(made_sets(seed), tmp_path / name))

    return copy


def _digests(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(root.rglob("*.wav"))
    }


def _one_error_line(result, command: str) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "terminate called" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if " error: " in line]
    assert len(lines) == 1 and lines[0].startswith(f"aadlib {command}: error: "), result.stderr
    assert "[Errno" not in lines[0], lines[0]
    return lines[0]


def _tiny(home: Path, **changes) -> profiles.Profile:
    return profiles.resolve("tiny", home=home, **changes)


# --------------------------------------------------------------------------------------
# 1. The data a folder holds is used, whatever seed made it
# --------------------------------------------------------------------------------------


def test_preparing_a_set_of_another_seed_changes_none_of_its_clips(tiny_set, tmp_path, caplog):
    from aadlib.pipeline import prepare_data

    root = tiny_set(seed=1)
    before = _digests(root)
    with caplog.at_level("INFO", logger="aadlib"):
        prepare_data(_tiny(tmp_path / "home", data_root=root), ["fan"], progress=False)
    assert _digests(root) == before  # not made again with seed 0
    assert synth.recorded_seeds(root, ["fan"], "tiny") == {"fan": 1}
    assert any("seed 1" in r.getMessage() for r in caplog.records)


def test_a_set_of_another_size_is_refused_and_left_alone(tiny_set, tmp_path, monkeypatch):
    from aadlib import pipeline

    root = tiny_set()
    before = _digests(root)

    def make_again(*args, **kwargs):
        raise AssertionError("the tiny set would be made again at the quick size")

    monkeypatch.setattr(pipeline.synth, "generate_dataset", make_again)
    profile = profiles.resolve("quick", home=tmp_path / "home", data_root=root)
    with pytest.raises(ValueError, match="'tiny' set") as caught:
        pipeline.prepare_data(profile, ["fan"], progress=False)
    assert str(root / "fan") in str(caught.value) and "'quick'" in str(caught.value)
    assert _digests(root) == before


@pytest.mark.slow
def test_evaluate_scores_the_clips_of_the_folder_and_records_their_seed(tiny_set, tmp_path):
    root = tiny_set(seed=1)
    before = _digests(root)
    result = run_cli(
        ["evaluate", "--profile", "tiny", "--types", "fan", "--models", "dense"]
        + ["--data-root", str(root)],
        tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert _digests(root) == before
    run = json.loads((tmp_path / "results" / "tiny" / "dense" / "fan" / "run.json").read_text())
    assert run["data_seed"] == 1
    assert result.stderr.count("made with seed 1") == 1  # said once, not once per step


# --------------------------------------------------------------------------------------
# 2. A full disk: one line with the folder and the space needed, no partial file
# --------------------------------------------------------------------------------------


def test_a_full_disk_names_the_folder_and_the_space_and_leaves_no_partial_file(tmp_path):
    from aadlib._storage import DiskFullError

    target = tmp_path / "out" / "frames.npy"

    def writer(tmp: Path) -> None:
        tmp.write_bytes(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError) as caught:
        write_atomic(target, writer, size=5_000_000)
    message = str(caught.value)
    assert message.startswith(f"{target.parent}: no space left on device")
    assert "frames.npy needs 5.0 MB" in message and "free" in message
    assert "--results" in message and "AADLIB_HOME" in message
    assert list(target.parent.iterdir()) == []  # neither the file nor its temporary


def test_a_full_disk_in_a_table_write_says_how_much_the_table_needs(tmp_path, monkeypatch):
    from aadlib._storage import DiskFullError

    table = pd.DataFrame({"score": range(1000)})
    real_write = Path.write_bytes

    def full(self, data):
        real_write(self, data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(DiskFullError, match=r"scores.csv needs 0\.0 MB"):
        write_csv(table, tmp_path / "scores.csv")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs (where this process may mount one: root on Linux), else skip."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (not root); the simulated ENOSPC tests run")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
def test_evaluate_on_a_full_disk_exits_2_with_one_line(tiny_set, tmp_path, small_disk):
    root = tiny_set()
    result = run_cli(
        ["evaluate", "--profile", "tiny", "--types", "fan", "--models", "dense"]
        + ["--data-root", str(root), "--results", str(small_disk)],
        tmp_path,
        timeout=600,
        process=True,  # the program ends after TensorFlow has started: nothing may abort
    )
    line = _one_error_line(result, "evaluate")
    assert str(small_disk) in line and "no space left on device" in line
    assert " MB" in line  # the space needed
    assert not [p for p in small_disk.rglob("*") if p.name.startswith(".tmp-")]


# --------------------------------------------------------------------------------------
# 3. Every numeric option has an upper bound, checked when the command line is parsed
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [
        ["evaluate", "--score-hop", "9223372036854775808"],
        ["evaluate", "--seed", str(2**32)],
        ["train", "--epochs", "1000000000"],
        ["reproduce", "--steps-per-epoch", str(10**12)],
        ["synth", "--seed", str(10**20)],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_numeric_options_have_an_upper_bound(tmp_path, arguments):
    result = run_cli([*arguments[:1], "--profile", "tiny", *arguments[1:]], tmp_path, timeout=60)
    assert result.returncode == 2
    assert f"argument {arguments[1]}: must be at most" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # refused before any work


def test_the_largest_seed_is_accepted():
    profile = profiles.resolve("tiny", home="/nonexistent", seed=2**32 - 1)
    assert profile.seed == 2**32 - 1
    with pytest.raises(ValueError, match="2\\*\\*32"):
        profiles.resolve("tiny", home="/nonexistent", seed=2**32)


# --------------------------------------------------------------------------------------
# 4. A complete data set is read without writing to it
# --------------------------------------------------------------------------------------


def test_a_complete_real_layout_is_read_without_taking_its_lock(data_root, monkeypatch):
    from aadlib import download

    def read_only(folder, *args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system", str(folder / ".aadlib.lock"))

    monkeypatch.setattr(download, "exclusive", read_only)
    assert download.download_dcase2020(data_root, ["ToyCar", "fan"], progress=False) == data_root
    assert not list(data_root.rglob(".aadlib.lock"))


# --------------------------------------------------------------------------------------
# 5. Operating-system errors: the path, the cause and the remedy
# --------------------------------------------------------------------------------------


def test_a_results_folder_that_is_a_file_is_refused_before_training(tiny_set, tmp_path):
    root = tiny_set()
    afile = tmp_path / "results-file"
    afile.write_text("x")
    result = run_cli(
        ["evaluate", "--profile", "tiny", "--types", "fan", "--models", "dense"]
        + ["--data-root", str(root), "--results", str(afile)],
        tmp_path,
    )
    line = _one_error_line(result, "evaluate")
    assert f"{afile} is a file, not a folder" in line and "--results" in line


@pytest.mark.parametrize("command", ["report", "evaluate"])
def test_a_scores_file_that_is_a_folder_is_named(tiny_set, tmp_path, command):
    root = tiny_set()
    folder = tmp_path / "results" / "tiny" / "scores.csv"
    folder.mkdir(parents=True)
    extra = ["--types", "fan", "--models", "dense", "--data-root", str(root)]
    result = run_cli(
        [command, "--profile", "tiny", "--results", str(tmp_path / "results")]
        + (extra if command == "evaluate" else []),
        tmp_path,
    )
    line = _one_error_line(result, command)
    assert str(folder) in line and "folder" in line and "move" in line.lower()
    assert not list(tmp_path.glob("results/tiny/*/fan/model.keras"))  # refused before training


def test_a_data_root_that_is_a_file_says_so(tmp_path):
    afile = tmp_path / "not-a-folder"
    afile.write_text("x")
    result = run_cli(["synth", "--profile", "tiny", "--data-root", str(afile)], tmp_path)
    line = _one_error_line(result, "synth")
    assert str(afile) in line and "a file stands where a folder is needed" in line


def test_a_raw_os_error_gets_its_path_and_a_remedy():
    from aadlib.cli import describe_error

    err = NotADirectoryError(errno.ENOTDIR, "Not a directory", "/r/tiny")
    assert describe_error(err).startswith("/r/tiny: a file stands where a folder is needed")
    err = OSError(errno.ENOSPC, "No space left on device", "/tmp/x.tmp", None, "/tmp/x")
    assert describe_error(err).startswith("/tmp/x: no space left on device. Free space")
    assert describe_error(ValueError("own message")) == "own message"


# --------------------------------------------------------------------------------------
# 6. A data root that does not exist
# --------------------------------------------------------------------------------------


def test_a_missing_data_root_for_real_data_is_not_made(tmp_path):
    missing = tmp_path / "typo"
    result = run_cli(
        ["evaluate", "--profile", "full", "--types", "fan", "--data-root", str(missing)],
        tmp_path,
        AADLIB_DATA_URL=f"http://127.0.0.1:{closed_port()}",
    )
    line = _one_error_line(result, "evaluate")
    assert f"data root {missing} does not exist" in line and "aadlib download" in line
    assert not missing.exists()


def test_a_missing_data_root_for_synthetic_data_is_said(tmp_path, monkeypatch, caplog):
    from aadlib import pipeline

    made = []
    monkeypatch.setattr(pipeline.synth, "generate_dataset", lambda root, **kw: made.append(root))
    missing = tmp_path / "typo"
    with caplog.at_level("INFO", logger="aadlib"):
        pipeline.prepare_data(_tiny(tmp_path, data_root=missing), ["fan"], progress=False)
    assert made == [missing]
    assert any(f"data root {missing} does not exist" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------------------
# 10. A summary of scores cut short is caught against the models' own score files
# --------------------------------------------------------------------------------------


def _scores(kind: str, machine_type: str) -> pd.DataFrame:
    rows = []
    for machine_id in (0, 2):
        for i in range(4):
            rows.append((kind, machine_type, machine_id, "normal", i, f"n{i}.wav", i * 0.1))
            rows.append((kind, machine_type, machine_id, "anomaly", i, f"a{i}.wav", 0.3 + i))
    columns = ["model", "machine_type", "machine_id", "label", "index", "path", "score"]
    return pd.DataFrame(rows, columns=columns)


def test_report_names_the_models_a_cut_summary_lacks(tmp_path):
    folder = tmp_path / "results" / "tiny"
    parts = [_scores(kind, t) for kind in ("baseline", "dense") for t in ("fan", "valve")]
    for part in parts:
        kind, machine_type = part.model[0], part.machine_type[0]
        write_csv(part, folder / kind / machine_type / "scores.csv")
    text = pd.concat(parts).to_csv(index=False)
    lines = text.splitlines(keepends=True)
    (folder / "scores.csv").write_text("".join(lines[: len(lines) - 20]))  # cut at a line end
    result = run_cli(
        ["report", "--profile", "tiny", "--results", str(tmp_path / "results")], tmp_path
    )
    line = _one_error_line(result, "report")
    assert "dense on valve (0 of the 16 rows" in line and "dense on fan (12 of the 16" in line
    assert "baseline" not in line
    assert "aadlib evaluate" in line
    assert not (folder / "table.csv").exists()


# --------------------------------------------------------------------------------------
# 11. `--overwrite` names every file it replaces or removes
# --------------------------------------------------------------------------------------


def test_overwrite_names_each_file_it_replaces_or_removes(tiny_set, caplog):
    root = tiny_set()
    planned = root / "fan" / "train" / "normal_id_00_00000000.wav"
    write_wav(planned, seconds=1.0)  # a user's recording under a planned name
    extra = write_wav(root / "fan" / "test" / "normal_id_00_00000099.wav", seconds=1.0)
    with caplog.at_level("WARNING", logger="aadlib"):
        synth.generate_dataset(root, "tiny", ["fan"], overwrite=True, n_jobs=1, progress=False)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "replaces 1 file(s)" in messages and "train/normal_id_00_00000000.wav" in messages
    assert "removes 1 file(s)" in messages and "test/normal_id_00_00000099.wav" in messages
    assert not extra.exists()


# --------------------------------------------------------------------------------------
# 12. Scoring options do not make another model
# --------------------------------------------------------------------------------------


def test_another_score_hop_scores_again_with_the_same_model(tiny_set, tmp_path):
    from aadlib import pipeline

    profile = _tiny(tmp_path / "home", data_root=tiny_set()).with_models(epochs=1)
    trained = pipeline.train_machine_type("fan", "dense", profile, verbose=0)
    pipeline.score_machine_type(trained, profile, progress=False)
    # _saved_scores is the resume rule itself: whether a run's scores are reused.
    assert pipeline._saved_scores(profile, "dense", "fan") is not None

    other = profile.with_models(score_hop=8)
    again = pipeline.train_machine_type("fan", "dense", other, verbose=0)
    assert again.reused  # not trained again
    assert pipeline._saved_scores(other, "dense", "fan") is None  # but scored again
    scores = pipeline.score_machine_type(again, other, progress=False)
    assert len(scores) == 24 and pipeline._saved_scores(other, "dense", "fan") is not None


# --------------------------------------------------------------------------------------
# 13. Each message once; a resumed training says from which epoch
# --------------------------------------------------------------------------------------


def _user_folder(root: Path) -> Path:
    """The clips of a synthetic set without the generator's records: a user's own clips."""
    for marker in root.glob("fan/.aadlib-synth*"):
        marker.unlink()
    (root / "fan" / "anomalies.csv").unlink()
    return root


# Slow: the command line trains and scores a model in a process of its own; make test runs it.
@pytest.mark.slow
def test_a_user_folder_gets_each_message_once(tiny_set, tmp_path):
    root = _user_folder(tiny_set())
    result = run_cli(
        ["evaluate", "--profile", "full", "--types", "fan", "--models", "dense", "--epochs"]
        + ["1", "--steps-per-epoch", "1", "--score-hop", "64", "--data-root", str(root)],
        tmp_path,
        timeout=300,
        process=True,  # every line the program writes, native ones included
        AADLIB_DATA_URL=f"http://127.0.0.1:{closed_port()}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    assert any("used as is" in line for line in lines)
    assert len(lines) == len(set(lines)), result.stderr


def test_a_resumed_training_says_from_which_epoch(tmp_path, caplog):
    from helpers import dense_config, small_dense_model, toy_logmels

    from aadlib.training import fit_autoencoder

    run_dir = tmp_path / "run"
    args = (toy_logmels(), "dense")
    for epochs in (1, 2):  # the second call finds the first one's checkpoint
        with caplog.at_level("INFO", logger="aadlib"):
            config = dense_config(epochs=epochs, patience=50)
            fit_autoencoder(small_dense_model(), *args, config, run_dir=run_dir)
    (message,) = [r.getMessage() for r in caplog.records if "resum" in r.getMessage()]
    assert f"{run_dir}: resuming the interrupted training after epoch 1 of 2" == message


# --------------------------------------------------------------------------------------
# 14. A clip far longer than the others
# --------------------------------------------------------------------------------------


def test_a_long_clip_is_named_and_one_too_long_is_refused(tiny_set, tmp_path, caplog):
    from aadlib import data
    from aadlib.pipeline import check_data

    root = tiny_set()
    profile = _tiny(tmp_path / "home", data_root=root)
    long = write_wav(root / "fan" / "train" / "normal_id_00_00000050.wav", seconds=25.0)
    with caplog.at_level("WARNING", logger="aadlib"):
        check_data(profile, ["fan"], ["dense"])
    (message,) = [r.getMessage() for r in caplog.records]
    assert f"{long} (25.0 s)" in message and "typically 10.0 s" in message

    too_long = write_wav(root / "fan" / "test" / "normal_id_00_00000051.wav", seconds=61.0)
    with pytest.raises(data.AudioErrors) as caught:
        check_data(profile, ["fan"], ["dense"])
    assert str(too_long) in str(caught.value) and "above 60 s are refused" in str(caught.value)
    assert str(long) not in str(caught.value)


def test_evaluate_refuses_a_too_long_clip_before_training(tiny_set, tmp_path):
    root = _user_folder(tiny_set())
    too_long = write_wav(root / "fan" / "train" / "normal_id_00_00000051.wav", seconds=61.0)
    result = run_cli(
        ["evaluate", "--profile", "full", "--types", "fan", "--models", "dense"]
        + ["--data-root", str(root)],
        tmp_path,
        AADLIB_DATA_URL=f"http://127.0.0.1:{closed_port()}",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(too_long) in result.stderr and "above 60 s are refused" in result.stderr
    assert not list(tmp_path.glob("results/**/model.keras"))
