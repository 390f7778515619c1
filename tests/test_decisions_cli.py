"""`aadlib evaluate` prints and saves a decision table: thresholds from held-out normal clips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import write_wav
from helpers import closed_port, run_cli
from sklearn.metrics import f1_score

TRAIN_PER_ID = 30
TEST_PER_LABEL = 8


@pytest.fixture
def fan_root(tmp_path):
    """Two fan IDs: a tone plus noise; anomalies sound at another pitch, with more noise."""
    root = tmp_path / "data"
    for machine_id in (0, 2):
        base = 300.0 + 200 * machine_id
        for index in range(TRAIN_PER_ID):
            write_wav(
                root / "fan" / "train" / f"normal_id_{machine_id:02d}_{index:08d}.wav",
                seconds=1.2,
                freq=base,
                seed=index,
            )
        for index in range(TEST_PER_LABEL):
            write_wav(
                root / "fan" / "test" / f"normal_id_{machine_id:02d}_{index:08d}.wav",
                seconds=1.2,
                freq=base,
                seed=100 + index,
            )
            t = np.arange(int(1.2 * 16_000)) / 16_000
            rng = np.random.default_rng(200 + index)
            strange = 0.3 * np.sin(2 * np.pi * 2.7 * base * t) + 0.2 * rng.standard_normal(len(t))
            write_wav(
                root / "fan" / "test" / f"anomaly_id_{machine_id:02d}_{index:08d}.wav",
                data=strange,
            )
    return root


@pytest.mark.slow
def test_evaluate_prints_and_saves_decisions_at_held_out_thresholds(tmp_path, fan_root):
    args = ["evaluate", "--profile", "full", "--data-root", str(fan_root), "--types", "fan"]
    args += ["--models", "dense", "--epochs", "1", "--steps-per-epoch", "2"]
    result = run_cli(
        args, tmp_path, timeout=600, AADLIB_DATA_URL=f"http://127.0.0.1:{closed_port()}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Decisions at the 90% point of a gamma fitted to held-out normal clips" in result.stdout
    assert "false_alarms_per_day" in result.stdout

    results = tmp_path / "results" / "full"
    table = pd.read_csv(results / "decisions.csv")
    assert list(table.machine_id) == [0, 2] and set(table.model) == {"dense"}
    # Training held out 10 % of the type's 60 clips; 6 are too few to fit each ID alone.
    assert set(table.n_reference) == {round(0.1 * 2 * TRAIN_PER_ID)}
    assert set(table.fitted_on) == {"type"}
    assert table.threshold.nunique() == 1 and np.isfinite(table.threshold).all()

    scores = pd.read_csv(results / "scores.csv")
    for row in table.itertuples():
        clips = scores[scores.machine_id == row.machine_id]
        y = (clips.label == "anomaly").to_numpy()
        flagged = clips.score.to_numpy() > row.threshold
        assert row.n_normal == row.n_anomaly == TEST_PER_LABEL
        assert row.tp == (flagged & y).sum() and row.fp == (flagged & ~y).sum()
        assert row.fpr == pytest.approx((flagged & ~y).sum() / TEST_PER_LABEL)
        assert row.f1 == pytest.approx(f1_score(y, flagged))
        assert row.false_alarms_per_day == pytest.approx(row.fpr * 24 * 3600 / 10)
