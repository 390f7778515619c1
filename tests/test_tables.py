"""Tests of aadlib.tables: per-ID tables, the Table 2 layout, the comparison with the paper."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from aadlib.data import MACHINE_TYPES
from aadlib.metrics import pauc_dcase
from aadlib.tables import per_id_table, table2_layout

# --------------------------------------------------------------------------------------
# Per-ID tables
# --------------------------------------------------------------------------------------


def _scores_frame(seed=0, with_model=False):
    rng = np.random.default_rng(seed)
    rows = []
    # Types given out of the paper's order, IDs 10 and 2 to catch a text sort.
    groups = [("valve", 10), ("valve", 2), ("fan", 4), ("ToyCar", 1), ("ToyCar", 3)]
    models = ["dense", "cnn"] if with_model else [None]
    for model in models:
        for mtype, mid in groups:
            n_normal, n_anomaly = 6 + mid, 4 + mid % 3
            for label, n in (("normal", n_normal), ("anomaly", n_anomaly)):
                for _ in range(n):
                    row = {
                        "machine_type": mtype,
                        "machine_id": mid,
                        "label": label,
                        "score": rng.standard_normal() + (0.8 if label == "anomaly" else 0),
                    }
                    if model:
                        row["model"] = model
                    rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # any row order


@pytest.mark.parametrize("pauc", ["mcclish", "dcase"])
def test_per_id_table_values(pauc):
    scores = _scores_frame()
    table = per_id_table(scores, pauc=pauc)
    assert list(table.columns) == [
        "machine_type",
        "machine_id",
        "auc",
        "pauc",
        "n_normal",
        "n_anomaly",
    ]
    # Types in MACHINE_TYPES order, IDs ascending (numerically), then the average row.
    assert list(zip(table.machine_type, table.machine_id, strict=True)) == [
        ("ToyCar", "1"),
        ("ToyCar", "3"),
        ("ToyCar", "average"),
        ("fan", "4"),
        ("fan", "average"),
        ("valve", "2"),
        ("valve", "10"),
        ("valve", "average"),
    ]
    for row in table.itertuples():
        if row.machine_id == "average":
            continue
        part = scores[
            (scores.machine_type == row.machine_type) & (scores.machine_id == int(row.machine_id))
        ]
        y = (part.label == "anomaly").astype(int).to_numpy()
        assert row.auc == pytest.approx(100 * roc_auc_score(y, part.score))
        if pauc == "mcclish":
            expected = 100 * roc_auc_score(y, part.score, max_fpr=0.1)
        else:
            expected = 100 * pauc_dcase(y, part.score.to_numpy())
        assert row.pauc == pytest.approx(expected)
        assert row.n_normal == (y == 0).sum()
        assert row.n_anomaly == (y == 1).sum()
    per_id = table[table.machine_id != "average"]
    for mtype, rows in per_id.groupby("machine_type"):
        avg = table[(table.machine_type == mtype) & (table.machine_id == "average")].iloc[0]
        assert avg.auc == pytest.approx(rows.auc.mean())
        assert avg.pauc == pytest.approx(rows.pauc.mean())
        assert avg.n_normal == rows.n_normal.sum()
        assert avg.n_anomaly == rows.n_anomaly.sum()


def test_per_id_table_pauc_definitions_differ():
    scores = _scores_frame(seed=3)
    mcclish = per_id_table(scores, pauc="mcclish")
    dcase = per_id_table(scores, pauc="dcase")
    np.testing.assert_allclose(mcclish.auc, dcase.auc)
    assert not np.allclose(mcclish.pauc, dcase.pauc)


def test_per_id_table_rejects_unknown_pauc():
    with pytest.raises(ValueError, match="pauc"):
        per_id_table(_scores_frame(), pauc="sklearn")


def test_per_id_table_with_models():
    scores = _scores_frame(seed=1, with_model=True)
    table = per_id_table(scores)
    assert list(table.columns[:3]) == ["model", "machine_type", "machine_id"]
    assert len(table) == 2 * 8
    for model in ("dense", "cnn"):
        part = table[table.model == model]
        types = list(dict.fromkeys(part.machine_type))
        assert types == [t for t in MACHINE_TYPES if t in types]
        alone = per_id_table(scores[scores.model == model].drop(columns="model"))
        np.testing.assert_allclose(part.auc.to_numpy(), alone.auc.to_numpy())
        np.testing.assert_allclose(part.pauc.to_numpy(), alone.pauc.to_numpy())


def test_table2_layout_shape_and_values():
    table = per_id_table(_scores_frame(seed=2, with_model=True))
    wide = table2_layout(table)
    assert wide.shape == (8, 4)  # 5 IDs + 3 averages; 2 models x (AUC, pAUC)
    assert set(wide.columns) == {
        ("dense", "AUC"),
        ("dense", "pAUC"),
        ("cnn", "AUC"),
        ("cnn", "pAUC"),
    }
    assert list(wide.index.names) == ["machine_type", "machine_id"]
    assert list(wide.index.get_level_values(0)) == [
        "ToyCar",
        "ToyCar",
        "ToyCar",
        "fan",
        "fan",
        "valve",
        "valve",
        "valve",
    ]
    for row in table.itertuples():
        key = (row.machine_type, row.machine_id)
        assert wide.loc[key, (row.model, "AUC")] == pytest.approx(row.auc)
        assert wide.loc[key, (row.model, "pAUC")] == pytest.approx(row.pauc)


def test_table2_layout_needs_model_column():
    with pytest.raises(ValueError, match="model"):
        table2_layout(per_id_table(_scores_frame()))
