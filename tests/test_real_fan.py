"""The 40 real fan recordings that ship with aadlib, through the command line and the library.

The AUC values are printed (``pytest -rA`` or ``-s`` shows them) and attached to the test
report; the only thresholds asserted are chance level and the run's own completeness."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import run_cli

from aadlib import paper, pipeline, realclips, tables


@pytest.mark.slow
def test_layout_and_evaluate_on_the_real_fan_from_the_command_line(tmp_path, record_property):
    fan = realclips.mimii_fan()
    layout = run_cli(["layout", str(fan), str(tmp_path / "fan-fold0"), "--folds", "2"], tmp_path)
    assert layout.returncode == 0, layout.stderr
    assert "10 normal clips in train/, 30 in test/" in layout.stdout
    args = ["evaluate", "--profile", "folder", "--data-root", str(tmp_path / "fan-fold0")]
    args += ["--results", str(tmp_path / "results"), "--epochs", "3"]
    result = run_cli(args, tmp_path, 900, process=True)  # Python's warnings reach stderr
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr.lower() and "Traceback" not in result.stderr
    assert "3675" not in result.stdout + result.stderr  # no download or archive talk
    table = pd.read_csv(tmp_path / "results" / "folder" / "table.csv", dtype={"machine_id": str})
    ids = table[table.machine_id == "0"].set_index("model")
    assert set(ids.index) == set(paper.MODEL_KINDS)
    assert ids.auc.between(0, 100).all()
    assert (ids.n_normal == 10).all() and (ids.n_anomaly == 20).all()
    for kind in paper.MODEL_KINDS:
        assert any(line.split()[:3] == [kind, "fan", "0"] for line in result.stdout.splitlines())
        record_property(f"{kind}_auc", round(float(ids.auc[kind]), 1))
    print("\nreal fan, fold 0, 3 epochs:\n" + ids[["auc", "pauc_mcclish"]].round(1).to_string())


def test_the_mahalanobis_detector_finds_the_real_fans_faults(tmp_path, record_property):
    scores = pipeline.fold_scores(
        realclips.mimii_fan(), folds=2, kinds=(), families=("mahalanobis",), home=tmp_path
    )
    assert sorted(scores.fold.unique()) == [0, 1]
    assert (scores.groupby("fold").label.value_counts().unstack()["normal"] == 10).all()
    table = tables.fold_table(scores).set_index("fold")
    average = table.loc["average"]
    print("\nMahalanobis on the real fan, 2 folds:\n" + table.round(1).to_string())
    for column in ("auc", "auc_low", "auc_high", "pauc"):
        record_property(f"mahalanobis_{column}", round(float(average[column]), 1))
    assert average.auc_low > 50, "the interval of the average AUC reaches chance level"
