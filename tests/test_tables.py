"""Tests of aadlib.tables: per-ID tables, the Table 2 layout, the comparison with the paper."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from aadlib import tables
from aadlib.data import MACHINE_TYPES
from aadlib.metrics import pauc_dcase
from aadlib.tables import OVERALL, per_id_table, table2_layout

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


def test_fold_table_lists_models_in_table_2s_order_and_each_average_after_its_folds():
    rng = np.random.default_rng(0)
    rows = []
    for model in ("gmm", "dense", "baseline"):  # out of order, a detector first
        for fold in (1, 0):
            for label, index in [("normal", i + 10 * fold) for i in range(6)] + [
                ("anomaly", i) for i in range(6)
            ]:
                score = rng.normal(1.0 if label == "anomaly" else 0.0)
                rows.append(
                    {"model": model, "fold": fold, "label": label, "index": index, "score": score}
                )
    table = tables.fold_table(pd.DataFrame(rows), n_boot=20)
    assert list(table.model) == ["baseline"] * 3 + ["dense"] * 3 + ["gmm"] * 3
    assert list(table.fold) == ["0", "1", "average"] * 3
    assert (table[table.fold == "average"].n_anomaly == 6).all()


def test_table2_layout_shape_and_values():
    table = per_id_table(_scores_frame(seed=2, with_model=True))
    wide = table2_layout(table)
    assert wide.shape == (8, 4)  # 5 IDs + 3 averages; 2 models x (AUC, pAUC)
    # The paper's column order (Dense AE, then CNN AE), whatever order the rows come in.
    assert list(wide.columns) == [
        ("dense", "AUC"),
        ("dense", "pAUC"),
        ("cnn", "AUC"),
        ("cnn", "pAUC"),
    ]
    reversed_rows = table2_layout(table.iloc[::-1])
    assert list(reversed_rows.columns) == list(wide.columns)
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


def test_table2_layout_writes_each_value_with_its_interval():
    table = per_id_table(_scores_frame(seed=2, with_model=True), ci=True, n_boot=50)
    wide = table2_layout(table)
    for row in table.itertuples():
        key = (row.machine_type, row.machine_id)
        assert wide.loc[key, (row.model, "AUC")] == (
            f"{row.auc:.1f} [{row.auc_low:.1f},\u00a0{row.auc_high:.1f}]"
        )
        assert wide.loc[key, (row.model, "pAUC")].startswith(f"{row.pauc:.1f} [")
    numbers = table2_layout(table, intervals=False)
    assert numbers.shape == wide.shape
    assert numbers.loc[("fan", "average"), ("cnn", "AUC")] == pytest.approx(
        table.query(
            "model == 'cnn' and machine_type == 'fan' and machine_id == 'average'"
        ).auc.item()
    )


def test_table2_layout_needs_model_column():
    with pytest.raises(ValueError, match="model"):
        table2_layout(per_id_table(_scores_frame()))


def test_per_id_table_intervals_contain_the_estimates(pauc="mcclish"):
    scores = _scores_frame(seed=3, with_model=True)
    table = per_id_table(scores, pauc, ci=True, n_boot=300, seed=0)
    for metric in ("auc", "pauc"):
        assert (table[f"{metric}_low"] <= table[metric] + 1e-9).all()
        assert (table[metric] <= table[f"{metric}_high"] + 1e-9).all()
    # The average's interval is narrower than its IDs' (their noise partly averages out).
    averages = table[table.machine_id == "average"].set_index(["model", "machine_type"])
    per_id = table[table.machine_id != "average"]
    widths = (per_id.auc_high - per_id.auc_low).groupby([per_id.model, per_id.machine_type]).mean()
    for key, row in averages.iterrows():
        if (per_id.set_index(["model", "machine_type"]).index == key).sum() > 1:
            assert row.auc_high - row.auc_low < widths[key]
    # Without ci the table is the plain one, and the seed makes the intervals repeat.
    plain = per_id_table(scores, pauc)
    pd.testing.assert_frame_equal(plain, table[plain.columns])
    again = per_id_table(scores, pauc, ci=True, n_boot=300, seed=0)
    pd.testing.assert_frame_equal(again, table)


def test_per_id_table_averages_over_all_types_on_request():
    scores = _scores_frame(seed=3, with_model=True)
    plain = per_id_table(scores, ci=True, n_boot=300)
    table = per_id_table(scores, ci=True, n_boot=300, overall=True)
    overall = table[table.machine_type == OVERALL]
    # The other rows are the plain table's, resampled alike; the new rows come last per model.
    pd.testing.assert_frame_equal(
        table[table.machine_type != OVERALL].reset_index(drop=True), plain
    )
    assert list(overall.model) == ["dense", "cnn"] and (overall.machine_id == "average").all()
    for _, rows in table.groupby("model"):
        assert rows.machine_type.iloc[-1] == OVERALL
    for row in overall.itertuples():
        types = plain[(plain.model == row.model) & (plain.machine_id == "average")]
        assert row.auc == pytest.approx(types.auc.mean())  # every type weighted alike
        assert row.pauc == pytest.approx(types.pauc.mean())
        assert row.n_normal == types.n_normal.sum() and row.n_anomaly == types.n_anomaly.sum()
        assert row.auc_low < row.auc < row.auc_high
        # Independent types: the mean's interval is about the root sum of squares of theirs
        # over their number, narrower than a typical type's.
        widths = types.auc_high - types.auc_low
        width = row.auc_high - row.auc_low
        assert width < widths.mean()
        assert 0.7 < width / (np.sqrt((widths**2).sum()) / len(widths)) < 1.3
    # Without a model column, one such row; with one type, none (it would repeat the type's).
    single = per_id_table(scores[scores.model == "dense"].drop(columns="model"), overall=True)
    assert (single.machine_type == OVERALL).sum() == 1 and "auc_low" not in single.columns
    one_type = per_id_table(scores[scores.machine_type == "valve"], overall=True)
    assert OVERALL not in set(one_type.machine_type)


def test_models_come_in_table_2_order():
    table = per_id_table(_scores_frame(with_model=True))
    assert list(dict.fromkeys(table.model)) == ["dense", "cnn"]


def _paired_scores(seed=0, gap=0.0, n=60):
    """Two models on the same clips: the second is the first plus small noise (+ gap)."""
    rng = np.random.default_rng(seed)
    rows = []
    for machine_id in (0, 2, 4):
        for label in ("normal", "anomaly"):
            for index in range(n):
                base = rng.standard_normal() + (1.0 if label == "anomaly" else 0.0)
                for model, value in (
                    ("a", base),
                    ("b", base + 0.3 * rng.standard_normal() + (gap if label == "anomaly" else 0)),
                ):
                    rows.append(
                        dict(
                            model=model,
                            machine_type="fan",
                            machine_id=machine_id,
                            label=label,
                            index=index,
                            score=value,
                        )
                    )
    return pd.DataFrame(rows)


def test_compare_models_is_paired_and_says_when_a_gap_is_beyond_noise():
    from aadlib.tables import compare_models

    same = compare_models(_paired_scores(gap=0.0), "a", "b", n_boot=400)
    average = same.set_index("machine_id").loc["average"]
    assert not average.beyond_noise
    assert average.auc_diff_low <= average.auc_diff <= average.auc_diff_high
    # Paired: the interval of the difference is far narrower than either model's own.
    own = per_id_table(_paired_scores(gap=0.0), ci=True, n_boot=400)
    own_width = (own.auc_high - own.auc_low)[own.machine_id == "average"].mean()
    assert average.auc_diff_high - average.auc_diff_low < 0.5 * own_width
    better = compare_models(_paired_scores(gap=0.8), "b", "a", n_boot=400)
    assert better.set_index("machine_id").loc["average"].beyond_noise
    assert (better.auc_diff > 0).all()


def test_compare_models_needs_both_models_on_the_same_clips():
    from aadlib.tables import compare_models

    scores = _paired_scores()
    with pytest.raises(ValueError, match="same clips"):
        compare_models(scores[~((scores.model == "b") & (scores["index"] == 0))], "a", "b")


def test_compare_models_gives_an_overall_row_over_types():
    from aadlib.tables import compare_models

    first = _paired_scores(seed=1, gap=0.6)
    second = _paired_scores(seed=2, gap=0.6).assign(machine_type="valve")
    table = compare_models(pd.concat([first, second]), "b", "a", n_boot=300)
    overall = table[table.machine_type == "all types"]
    assert len(overall) == 1 and overall.machine_id.item() == "average"
    per_type = table[(table.machine_id == "average") & (table.machine_type != "all types")]
    assert overall.auc_diff.item() == pytest.approx(per_type.auc_diff.mean())
    width = overall.auc_diff_high.item() - overall.auc_diff_low.item()
    assert width < (per_type.auc_diff_high - per_type.auc_diff_low).min()
    assert table.machine_type.iloc[-1] == "all types"


def test_per_kind_table_matches_auc_by_hand():
    from aadlib.tables import per_kind_table

    scores = _paired_scores(seed=4, gap=0.5)
    scores = scores[scores.model == "b"].assign(
        path=lambda t: t.label + "-" + t.machine_id.astype(str) + "-" + t["index"].astype(str)
    )
    anomalies = scores[scores.label == "anomaly"]
    planted = pd.DataFrame(
        {"path": anomalies.path, "kind": np.where(anomalies["index"] % 2 == 0, "even", "odd")}
    )
    table = per_kind_table(scores, planted, n_boot=200).set_index("kind")
    for kind, parity in (("even", 0), ("odd", 1)):
        per_id = []
        for _, group in scores.groupby("machine_id"):
            normal = group[group.label == "normal"].score
            chosen = group[(group.label == "anomaly") & (group["index"] % 2 == parity)].score
            y = np.r_[np.zeros(len(normal)), np.ones(len(chosen))]
            per_id.append(roc_auc_score(y, np.r_[normal, chosen]))
        assert table.loc[kind, "auc"] == pytest.approx(100 * np.mean(per_id))
        assert table.loc[kind, "auc_low"] <= table.loc[kind, "auc"] <= table.loc[kind, "auc_high"]


def test_with_intervals_formats_value_and_bounds():
    from aadlib.tables import with_intervals

    frame = pd.DataFrame(
        {"auc": [78.34, 50.0], "auc_low": [74.06, 41.25], "auc_high": [82.0, 59.99]}
    )
    assert list(with_intervals(frame)) == ["78.3 [74.1,\u00a082.0]", "50.0 [41.2,\u00a060.0]"]
    # A narrow column may wrap a cell between the value and its interval only.
    assert with_intervals(frame)[0].split(" ") == ["78.3", "[74.1,\u00a082.0]"]


def test_one_order_for_models_and_machine_types():
    from aadlib import data, paper

    detectors = ["mahalanobis", "cnn", "baseline", "gmm", "dense"]
    assert sorted(detectors, key=paper.model_order) == [
        "baseline",
        "dense",
        "cnn",
        "gmm",
        "mahalanobis",
    ]
    assert data.type_order(["valve", "my_press", "fan", "valve", "ToyCar"]) == [
        "ToyCar",
        "fan",
        "valve",
        "my_press",
    ]
