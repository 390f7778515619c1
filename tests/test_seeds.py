"""Seed noise: metrics and comparisons over several training runs of a model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from aadlib import metrics, tables


def _labels(n_normal=40, n_anomaly=40):
    return np.r_[np.zeros(n_normal, bool), np.ones(n_anomaly, bool)]


def test_one_run_gives_the_clip_bootstrap_exactly():
    rng = np.random.default_rng(0)
    y = _labels()
    scores = rng.standard_normal(len(y)) + y
    clips = metrics.bootstrap(y, scores, n_boot=200, seed=3)
    runs = metrics.bootstrap_runs(y, [scores[None]], n_boot=200, seed=3)
    for name in ("auc", "pauc_mcclish", "pauc_dcase"):
        np.testing.assert_allclose(runs[name][0], clips[name])


def test_runs_that_disagree_widen_the_interval():
    rng = np.random.default_rng(1)
    y = _labels(60, 60)
    base = rng.standard_normal(len(y))
    # Three training runs whose separation differs a lot: the seed matters.
    runs = np.stack([base + shift * y for shift in (0.2, 1.0, 2.0)])
    with_seeds = metrics.bootstrap_runs(y, [runs], n_boot=400, seed=0)["auc"][0]
    # The clips alone, on the mean score of the runs, do not see that spread.
    clips_only = metrics.bootstrap(y, runs.mean(axis=0), n_boot=400, seed=0)["auc"]
    width = np.subtract(*metrics.interval(with_seeds)[::-1])
    assert width > 1.5 * np.subtract(*metrics.interval(clips_only)[::-1])
    # Each replicate is a mean of the runs' AUCs: it stays within their range.
    per_run = [roc_auc_score(y, r) for r in runs]
    assert min(per_run) - 0.1 < with_seeds.min() and with_seeds.max() < max(per_run) + 0.1


def _seeded_scores(gaps: dict[str, list[float]], n=50, machine_type="fan", seed=0):
    """Scores of models (each with one entry of ``gaps`` per training seed) on the same clips."""
    rng = np.random.default_rng(seed)
    rows = []
    for machine_id in (0, 2):
        noise = rng.standard_normal((2, n))
        for model, per_seed in gaps.items():
            for run, gap in enumerate(per_seed):
                jitter = 0.2 * rng.standard_normal((2, n))
                for k, label in enumerate(("normal", "anomaly")):
                    for index in range(n):
                        rows.append(
                            dict(
                                model=model,
                                seed=run,
                                machine_type=machine_type,
                                machine_id=machine_id,
                                label=label,
                                index=index,
                                score=noise[k, index] + jitter[k, index] + gap * k,
                            )
                        )
    return pd.DataFrame(rows)


def test_per_id_table_averages_the_seeds_and_counts_them():
    scores = _seeded_scores({"dense": [0.5, 1.0, 1.5]})
    table = tables.per_id_table(scores, ci=True, n_boot=200)
    for machine_id, group in scores.groupby("machine_id"):
        expected = np.mean(
            [
                100 * roc_auc_score(run["label"] == "anomaly", run["score"])
                for _, run in group.groupby("seed")
            ]
        )
        row = table[table.machine_id == str(machine_id)].iloc[0]
        assert row.auc == pytest.approx(expected)
        assert row.n_seeds == 3
        assert row.n_normal == 50 and row.n_anomaly == 50  # clips, not clips x seeds
    assert (table.auc_low <= table.auc).all() and (table.auc <= table.auc_high).all()


def test_per_kind_table_averages_the_seeds():
    scores = _seeded_scores({"dense": [0.5, 1.0, 1.5]})
    scores["path"] = [f"{r.machine_id}/{r.label}_{r.index}.wav" for r in scores.itertuples()]
    anomalies = scores[(scores.label == "anomaly") & (scores.seed == 0)]
    planted = pd.DataFrame(
        {"path": anomalies.path, "kind": np.where(anomalies["index"] % 2, "knocks", "extra_tone")}
    )
    table = tables.per_kind_table(scores, planted, n_boot=200).set_index("kind")
    for kind, rows in planted.groupby("kind"):
        chosen = scores[(scores.label == "normal") | scores.path.isin(rows.path)]
        expected = np.mean(
            [
                100 * roc_auc_score(run["label"] == "anomaly", run["score"])
                for _, one_id in chosen.groupby("machine_id")
                for _, run in [(None, one_id[one_id.seed == s]) for s in range(3)]
            ]
        )
        assert table.loc[kind, "auc"] == pytest.approx(expected)
        assert table.loc[kind, "n_anomaly"] == len(rows)  # clips, not clips x seeds
        assert table.loc[kind, "auc_low"] <= table.loc[kind, "auc"] <= table.loc[kind, "auc_high"]


def test_seeds_must_score_the_same_clips():
    scores = _seeded_scores({"dense": [0.5, 1.0]})
    gap = scores[~((scores.seed == 1) & (scores["index"] == 3))]
    with pytest.raises(ValueError, match="same test clips"):
        tables.per_id_table(gap)
    with pytest.raises(ValueError, match="same clips"):
        tables.compare_models(pd.concat([gap, scores.assign(model="other")]), "dense", "other")


def test_a_comparison_counts_seed_noise():
    # The first model's seeds disagree widely; one lucky seed alone would look better.
    scores = _seeded_scores({"a": [0.2, 1.0, 2.2], "b": [1.0]})
    seeded = tables.compare_models(scores, "a", "b", n_boot=400)
    lucky = tables.compare_models(
        scores[scores.seed.isin([0]) | (scores.model == "b")].assign(seed=0), "a", "b", n_boot=400
    )
    avg = seeded.set_index("machine_id").loc["average"]
    one = lucky.set_index("machine_id").loc["average"]
    assert avg.seeds_first == 3 and avg.seeds_second == 1
    assert one.seeds_first == 1
    assert avg.auc_diff_high - avg.auc_diff_low > one.auc_diff_high - one.auc_diff_low


def test_a_model_stopped_while_improving_makes_its_comparisons_undecided():
    scores = pd.concat(
        [
            _seeded_scores({"a": [1.0], "b": [0.2]}, machine_type="fan", seed=1),
            _seeded_scores({"a": [1.0], "b": [0.2]}, machine_type="valve", seed=2),
        ]
    )
    training = pd.DataFrame(
        {
            "model": ["a", "a", "b", "b"],
            "machine_type": ["fan", "valve", "fan", "valve"],
            "status": ["plateau", "plateau", "plateau", "improving"],
        }
    )
    table = tables.compare_models(scores, "a", "b", n_boot=200, training=training)
    undecided = dict(zip(table.machine_type + "/" + table.machine_id, table.undecided))
    assert undecided["fan/average"] == "" and undecided["fan/0"] == ""
    assert undecided["valve/average"] == "b"
    assert undecided["all types/average"] == "b"
    # Without the training summary there is no such column: nothing is claimed.
    assert "undecided" not in tables.compare_models(scores, "a", "b", n_boot=50).columns


@pytest.mark.slow
def test_seed_scores_train_each_seed_once_into_its_own_folder(tmp_path):
    from aadlib import pipeline, profiles

    tiny = profiles.resolve("tiny", home=tmp_path, data_root=tmp_path / "data")
    tiny = tiny.with_model("baseline", seeds=2, epochs=1)
    pipeline.prepare_data(tiny, ["valve"], progress=False)
    first = pipeline.seed_scores(tiny, ["baseline"], ["valve"])
    assert sorted(first["seed"].unique()) == [0, 1]
    runs = [
        tiny.results / "baseline" / "valve",
        tiny.results / "seeds" / "seed-1" / "baseline" / "valve",
    ]
    records = [json.loads((run / "run.json").read_text()) for run in runs]
    assert [r["record"]["config"]["seed"] for r in records] == [0, 1]
    # Two seeds are two models: their scores differ, on the same clips.
    wide = first.pivot_table(index=["machine_id", "label", "index"], columns="seed", values="score")
    assert not wide.isna().any(axis=None) and not np.allclose(wide[0], wide[1])
    # A second call reuses both runs: nothing is trained or written again.
    stamps = [(run / "model.keras").stat().st_mtime_ns for run in runs]
    again = pipeline.seed_scores(tiny, ["baseline"], ["valve"])
    assert [(run / "model.keras").stat().st_mtime_ns for run in runs] == stamps
    pd.testing.assert_frame_equal(again, first)
    summary = pipeline.training_summary(tiny, ["baseline"], ["valve"], seeds=True)
    assert list(summary["seed"]) == [0, 1] and set(summary["status"]) <= {
        "plateau",
        "improving",
        "too short",
    }
    # How many seeds a chapter averages is not part of one run's identity.
    assert "seeds" not in records[0]["record"]["model"]


def test_seed_spread_gives_each_runs_average_and_their_spread():
    scores = pd.concat(
        [
            _seeded_scores({"dense": [0.2, 1.0, 2.0], "cnn": [1.0]}),
            _seeded_scores({"dense": [1.0, 1.0, 1.0]}, machine_type="pump", seed=1),
        ]
    )
    spread = tables.seed_spread(scores)
    assert list(spread.model) == ["dense", "dense"]  # the CNN AE was trained once
    assert list(spread.machine_type) == ["fan", "pump"]
    for row in spread.itertuples():
        these = scores[(scores.model == "dense") & (scores.machine_type == row.machine_type)]
        per_run = [
            np.mean(
                [
                    100 * roc_auc_score(one_id["label"] == "anomaly", one_id["score"])
                    for _, one_id in run.groupby("machine_id")
                ]
            )
            for _, run in these.groupby("seed")
        ]
        assert [row[3], row[4], row[5]] == pytest.approx(per_run)
        assert row.spread == pytest.approx(max(per_run) - min(per_run))
        assert row.std == pytest.approx(np.std(per_run, ddof=1))
    fan, pump = spread.spread
    assert fan > pump  # the fan runs' gaps differ widely, the pump runs' barely
    assert tables.seed_spread(scores[scores.model == "cnn"]).empty
    assert tables.seed_spread(scores.drop(columns="seed")).empty
