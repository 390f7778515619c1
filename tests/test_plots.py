"""The book's figures draw the numbers they are given."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from aadlib import plots


def _averages() -> pd.DataFrame:
    rows = []
    for m, model in enumerate(["dense", "baseline"]):
        for t, machine_type in enumerate(["fan", "pump", "valve"]):
            auc = 60.0 + 10 * m + 5 * t
            rows.append(
                {
                    "model": model,
                    "machine_type": machine_type,
                    "machine_id": "average",
                    "auc": auc,
                    "auc_low": auc - 1 - t,
                    "auc_high": auc + 2 + t,
                }
            )
            # A per-ID row that the figure must ignore.
            rows.append({**rows[-1], "machine_id": "0", "auc": 99.0})
    return pd.DataFrame(rows)


def test_averages_are_drawn_with_their_intervals_in_the_asked_order():
    table = _averages()
    fig, ax = plots.averages_with_intervals(table, models=["baseline", "dense"])
    containers = ax.containers
    assert [c.get_label() for c in containers] == ["baseline", "dense"]
    for container, model in zip(containers, ["baseline", "dense"]):
        mine = table[(table.model == model) & (table.machine_id == "average")]
        points, _, (bars,) = container
        np.testing.assert_allclose(np.asarray(points.get_ydata(), float), mine.auc.to_numpy())
        spans = np.array([segment[:, 1] for segment in bars.get_segments()])
        np.testing.assert_allclose(spans[:, 0], mine.auc_low.to_numpy())
        np.testing.assert_allclose(spans[:, 1], mine.auc_high.to_numpy())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["fan", "pump", "valve"]
    matplotlib.pyplot.close(fig)


def test_averages_need_intervals():
    with pytest.raises(KeyError):
        plots.averages_with_intervals(_averages().drop(columns=["auc_low"]))
