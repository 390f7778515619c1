"""The benchmark script (``benchmarks/bench.py``) runs end to end and writes its table.

No timing is asserted here: the benchmark measures speed and memory. What it times
computes the reference's numbers (``tests/test_reference_equivalence.py``); this file
checks the script itself, on a tiny data set with the smallest settings.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import bench  # noqa: E402
import measure  # noqa: E402
import reference_pipeline  # noqa: E402
import report  # noqa: E402

SECONDS = 1.5  # 47 frames: 43 Dense vectors, 6 CNN patches at hop 3


def _wav(make_wav, path, seed):
    return make_wav(path, seconds=SECONDS, freq=300 + 150 * seed, seed=seed)


@pytest.fixture
def data_root(tmp_path, make_wav):
    root = tmp_path / "data"
    for i in range(6):
        _wav(make_wav, root / "ToyCar" / "train" / f"normal_id_01_{i:08d}.wav", i)
    for label in ("normal", "anomaly"):
        for i in range(2):
            name = f"{label}_id_01_{i:08d}.wav"
            _wav(make_wav, root / "ToyCar" / "test" / name, 10 + i + 5 * (label == "anomaly"))
    return root


def test_reference_is_imported_from_the_benchmarks_folder():
    assert Path(reference_pipeline.__file__).resolve() == BENCHMARKS / "reference_pipeline.py"
    assert measure.ref is reference_pipeline
    assert Path(bench.__file__).resolve().parent == BENCHMARKS


def test_run_task_in_a_child_process(make_wav, tmp_path):
    clips = [_wav(make_wav, tmp_path / "clips" / f"normal_id_01_{i:08d}.wav", i) for i in range(3)]
    runner = measure.Runner(tmp_path / "work")
    result = runner.run(
        "extract_ours", {"paths": [str(p) for p in clips], "cache_dir": str(tmp_path / "c")}
    )
    assert result["clips"] == len(clips)
    assert result["peak_rss_mb"] > 0 and result["tree_peak_rss_mb"] > 0
    assert len(list((tmp_path / "c").glob("*.frames.npy"))) == 1
    assert not list((tmp_path / "work").iterdir())  # the spec and result files are gone
    with pytest.raises(KeyError, match="no benchmark task"):
        runner.run("nothing", {})


def test_failed_child_task_says_why(tmp_path):
    with pytest.raises(RuntimeError, match="benchmark task extract_ours failed"):
        measure.Runner(tmp_path / "work").run(
            "extract_ours", {"paths": [str(tmp_path / "missing.wav")], "cache_dir": str(tmp_path)}
        )


EXPECTED_ROWS = [
    "feature extraction",
    "features, max abs difference",
    "features, second run",
    "dense input pipeline",
    "dense input, NumPy batches",
    "dense training, peak RSS",
    "dense input time",
    "cnn input pipeline",
    "cnn input, NumPy batches",
    "cnn training, peak RSS",
    "cnn input time",
    "dense scoring",
    "cnn scoring",
    "book",
]


@pytest.mark.slow
def test_bench_end_to_end(data_root, tmp_path, capsys):
    out = tmp_path / "bench.csv"
    argv = [
        "--profile", "full-synthetic",
        "--data-root", str(data_root),
        "--results", str(tmp_path / "results"),
        "--types", "ToyCar",
        "--out", str(out),
        "--skip-book",
        "--no-prepare",
        "--in-process",
        "--input-rounds", "1",
        "--input-batches", "2",
        "--train-steps", "1",
        "--val-steps", "1",
        "--ref-mem-clips", "3",
        "--ref-train-steps", "1",
        "--memory-steps", "3",
        "--score-clips", "2",
        "--batch", "dense=64,cnn=8",  # small batches: a quick run on the CPU
    ]  # fmt: skip
    assert bench.main(argv) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == report.COLUMNS
    whats = list(table.what)
    assert len(whats) == len(EXPECTED_ROWS)
    for what, start in zip(whats, EXPECTED_ROWS):
        assert start in what
        assert what.startswith("ToyCar: ") or what.startswith("book")
    diff = table.set_index("what").loc[whats[1], "ours"]
    assert float(diff) < 1e-3
    assert (table.loc[:12, "ours"].astype(float) > 0).all() or float(diff) == 0
    assert not table.note.astype(str).str.startswith("FAILED").any()
    assert "(6 clips)" in whats[5] and "(6 clips)" in whats[9]  # all training clips
    assert "(2 test clips, hop 1)" in whats[11] and "(2 test clips, hop 3)" in whats[12]
    notes = table.set_index("what").note
    assert "vectors as float64" in notes[whats[5]] and "patches as float64" in notes[whats[9]]
    assert "batch of 64" in notes[whats[3]] and "batch of 8" in notes[whats[7]]
    printed = capsys.readouterr().out
    assert "what" in printed and "ratio" in printed and str(out) in printed
    assert "skipped" in table.iloc[-1].note


def test_csv_goes_to_the_profiles_results_by_default(data_root, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "bench_machine_type", lambda b, t: calls.append(b) or [])
    argv = ["--profile", "tiny", "--data-root", str(data_root), "--results", str(tmp_path)]
    assert bench.main([*argv, "--skip-book", "--no-prepare", "--in-process"]) == 0
    table = pd.read_csv(tmp_path / "tiny" / "bench.csv")
    assert list(table.what) == ["book: cold build / cached rebuild"]
    (run,) = calls
    assert run.profile.data_root == data_root and not run.settings.isolate
    assert not run.work.exists()  # the temporary work folder is removed


def test_settings_accept_a_number_for_every_kind():
    settings = bench.Settings.from_args(argparse.Namespace(train_steps=7, score_clips=None))
    assert settings.train_steps == {"dense": 7, "cnn": 7}
    assert settings.score_clips == bench.Settings().score_clips
    assert settings.isolate and settings.prepare
    assert settings.batch == {"dense": 512, "cnn": 64}  # the paper's
    changed = bench.Settings.from_args(None, batch={"cnn": 8}, isolate=False)
    assert changed.batch == {"dense": 512, "cnn": 8} and not changed.isolate


def test_per_kind_options_parse():
    parser = bench.build_parser()
    args = parser.parse_args(["--train-steps", "3", "--batch", "dense=64, cnn=8"])
    assert args.train_steps == 3 and args.batch == {"dense": 64, "cnn": 8}
    with pytest.raises(SystemExit):
        parser.parse_args(["--batch", "lstm=4"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--batch", "dense=many"])


def test_materialised_bytes():
    # 47 frames: 43 vectors of 5 frames at hop 1, 6 patches of 32 frames at hop 3.
    assert measure.materialised_bytes([47, 47], 5, 1) == 2 * 43 * 5 * 128 * 8
    assert measure.materialised_bytes([47, 10], 32, 3) == 6 * 32 * 128 * 8


def test_format_table():
    rows = [
        report.row("a: something", "clips/s", 1234.5, 10.0, target=">= 5x", met=True),
        report.row("b", "dB", 1e-5, 0.0, ratio="", note="a note"),
        report.failed_row("c: failed", RuntimeError("first line\nlast line")),
    ]
    text = report.format_table(rows).splitlines()
    assert text[0].split()[:3] == ["what", "unit", "ours"]
    assert set(text[1]) <= {"-", " "}
    assert "1,234" in text[2] and "123x" in text[2] and "yes" in text[2]
    assert "1e-05" in text[3]
    assert "NO" in text[4]
    assert rows[2]["note"] == "FAILED: last line"
    assert report.missed(rows) == ["c: failed"] and report.failed(rows)
    assert report.format_notes(rows).splitlines() == [
        "- b: a note",
        "- c: failed: FAILED: last line",
    ]
    assert math.isnan(report.row("x", "s", 1.0, 0.0)["ratio"])


def test_write_csv(tmp_path):
    rows = [report.row("a", "s", 1.0, 2.0)]
    path = report.write_csv(rows, tmp_path / "deep" / "bench.csv")
    table = pd.read_csv(path)
    assert list(table.columns) == report.COLUMNS and table.ratio[0] == 0.5
    assert [p.name for p in path.parent.iterdir()] == ["bench.csv"]
