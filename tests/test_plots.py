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


def test_every_model_and_detector_of_the_book_has_one_colour():
    from aadlib import detectors, paper

    names = list(dict.fromkeys(["baseline", *paper.MODEL_KINDS, *detectors.score_names()]))
    colours = [plots.model_color(name) for name in names]
    assert len(set(colours)) == len(colours), "two models share a colour"
    assert len(set(plots.MODEL_COLORS.values())) == len(plots.MODEL_COLORS)
    with pytest.raises(KeyError, match="MODEL_COLORS"):
        plots.model_color("a detector nobody added")


def test_comparison_figures_take_the_palette_and_keep_legends_off_the_axes():
    fig, ax = plots.averages_with_intervals(_averages(), models=["baseline", "dense"])
    colours = [matplotlib.colors.to_hex(c[0].get_color()) for c in ax.containers]
    assert colours == [plots.MODEL_COLORS["baseline"], plots.MODEL_COLORS["dense"]]
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.y1 <= ax.get_window_extent().y0, "the legend overlaps the data"
    matplotlib.pyplot.close(fig)


def test_an_audio_player_carries_its_caption():
    block = plots.audio_player(
        np.sin(np.arange(1600) / 5.0), "Fan ID 00, normal", "a steady hum"
    ).data
    assert block.startswith('<figure class="aad-audio"><figcaption>')
    assert "Fan ID 00, normal" in block and "a steady hum" in block and "<audio" in block
    with pytest.raises(ValueError, match="listen for"):
        plots.audio_player(np.zeros(16), "A clip", " ")


def test_id_learning_curves_show_every_types_curves_kept_epoch_and_status():
    from types import SimpleNamespace

    def fitted(best, status, n=6):
        history = pd.DataFrame(
            {
                "epoch": np.arange(1, n + 1),
                "loss": np.linspace(1.2, 0.2, n),
                "accuracy": np.linspace(0.3, 0.95, n),
                "val_loss": np.linspace(1.3, 0.9, n),
                "val_accuracy": np.linspace(0.3, 0.6, n),
            }
        )
        return SimpleNamespace(history=history, ids=np.arange(4), best_epoch=best, status=status)

    fig, axes = plots.id_learning_curves(
        {"fan": fitted(3, "plateau"), "valve": fitted(6, "improving")}
    )
    assert axes.shape == (2, 2)
    assert "plateau" in axes[0, 0].get_title() and "improving" in axes[0, 1].get_title()
    validation = [line for line in axes[1, 1].get_lines() if line.get_label() == "validation"][0]
    np.testing.assert_allclose(validation.get_ydata(), np.linspace(0.3, 0.6, 6))
    kept = [line for line in axes[0, 0].get_lines() if line.get_label() == "kept epoch"][0]
    assert kept.get_xdata()[0] == 3
    chance = [line for line in axes[1, 0].get_lines() if line.get_label() == "chance"][0]
    assert chance.get_ydata()[0] == 0.25
    assert validation.get_color() == plots.model_color("id-classifier")
    matplotlib.pyplot.close(fig)


def test_an_explanation_figure_marks_hits_solid_and_misses_dashed():
    n_frames, n_mels = 40, 16
    logmel = np.random.default_rng(0).standard_normal((n_frames, n_mels))
    truth = {"frequency": np.zeros(n_mels), "time": np.zeros(n_frames)}
    truth["frequency"][3] = truth["time"][30] = 1.0  # the anomaly: bin 3, frame 30
    on_it = {"frequency": np.eye(n_mels)[3], "time": np.eye(n_frames)[30]}
    beside = {"frequency": np.eye(n_mels)[12], "time": np.eye(n_frames)[5]}
    fig, (main, side, bottom) = plots.explanations(
        logmel, {"right": on_it, "wrong": beside}, truth=truth
    )
    # One line across the spectrogram per method and axis, at its top position.
    across = {
        (line.get_linestyle(), tuple(line.get_xdata()), tuple(line.get_ydata()))
        for line in main.lines
    }
    bins = np.arange(n_mels) + 0.5
    times = (np.arange(n_frames) + 0.5) * (n_frames * 512 / 16000) / n_frames
    assert ("-", (0, 1), (bins[3], bins[3])) in across
    assert ("--", (0, 1), (bins[12], bins[12])) in across
    assert ("-", (times[30], times[30]), (0, 1)) in across
    assert ("--", (times[5], times[5]), (0, 1)) in across
    # The truth is drawn in black in both side panels, with the legend naming each method.
    assert any(line.get_color() == "black" for line in side.lines)
    assert any(line.get_color() == "black" for line in bottom.lines)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:2] == ["right", "wrong"]
    # Without a truth there is nothing to miss: every top position is a solid line.
    fig, (main, _, _) = plots.explanations(logmel, {"wrong": beside})
    assert {line.get_linestyle() for line in main.lines} == {"-"}


def _normal_groups() -> dict:
    rng = np.random.default_rng(3)
    return {
        name: pd.DataFrame(
            {"machine_id": np.repeat([0, 2], 20), "score": rng.gamma(2.0, scale, size=40)}
        )
        for name, scale in (("training clips", 1.0), ("test clips", 1.5))
    }


def test_normal_scores_are_drawn_per_group_and_id_with_their_quantile():
    groups = _normal_groups()
    fig, ax = plots.normal_scores_by_id(groups, [0, 2], quantile=0.9)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ID 00", "ID 02"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(groups)
    points = [c for c in ax.collections if c.get_offsets().shape[0] == 20]
    assert len(points) == 4  # two groups x two IDs, every clip a point
    bars = [c for c in ax.collections if not any(c is p for p in points)]
    drawn = sorted(segment[0, 1] for bar in bars for segment in bar.get_segments())
    expected = sorted(
        g[g.machine_id == i].score.quantile(0.9) for g in groups.values() for i in (0, 2)
    )
    np.testing.assert_allclose(drawn, expected)
    matplotlib.pyplot.close(fig)


def test_threshold_rules_draw_the_fits_and_say_when_a_threshold_is_off_the_scale():
    from scipy import stats

    scores = _normal_groups()["training clips"].score
    fits = {"lower end at 0": (2.0, 0.0, 1.0), "free": (0.5, 0.1, 3.0)}
    thresholds = {"gamma": 3.5, "far": 1e3}
    fig, ax = plots.threshold_rules(scores, thresholds, fits)
    curves = [line for line in ax.get_lines() if line.get_label() in fits]
    assert len(curves) == 2
    for line, params in zip(curves, fits.values()):
        x, y = line.get_data()
        np.testing.assert_allclose(y, stats.gamma.pdf(x, *params))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "threshold, gamma: 3.5000" in labels
    assert "threshold, far: 1000.0000 (off the scale)" in labels
    # The free fit's pole at its lower end does not flatten the figure.
    assert ax.get_ylim()[1] < 10
    matplotlib.pyplot.close(fig)


def test_threshold_misses_draw_each_rules_median_and_the_target():
    spread = pd.DataFrame(
        {
            "rule": ["gamma"] * 3 + ["percentile"] * 3,
            "n": [10, 100, 1000] * 2,
            "fpr_median": [0.12, 0.105, 0.1, 0.13, 0.11, 0.1],
            "fpr_low": [0.05, 0.08, 0.09, 0.03, 0.07, 0.09],
            "fpr_high": [0.2, 0.13, 0.11, 0.25, 0.15, 0.11],
        }
    )
    fig, ax = plots.threshold_misses(spread, 0.1, n_used=100)
    medians = {line.get_label().split(" ")[0]: line for line in ax.get_lines()[:2]}
    assert set(medians) == {"gamma", "percentile"}
    for rule, line in medians.items():
        np.testing.assert_allclose(line.get_ydata(), spread[spread.rule == rule].fpr_median)
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()][-2:] == [
        "intended FPR",
        "clips per threshold here (100)",
    ]
    matplotlib.pyplot.close(fig)


def test_f1_by_id_draws_each_sources_bars_the_bound_hatched_and_the_floor_per_id():
    f1 = pd.DataFrame(
        {"training": [0.5, 0.6], "held out": [0.55, 0.7], "hindsight": [0.8, 0.9]}, index=[0, 4]
    )
    fig, ax = plots.f1_by_id(f1, floor=[0.4, 0.45], bound="hindsight")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ID 00", "ID 04"]
    for container, column in zip(ax.containers, f1.columns):
        np.testing.assert_allclose([bar.get_height() for bar in container], f1[column])
        assert all(bool(bar.get_hatch()) == (column == "hindsight") for bar in container)
    floors = [c for c in ax.collections if c.get_label() == "flag every clip"]
    drawn = [segment[0, 1] for bar in ax.collections for segment in bar.get_segments()]
    assert len(floors) == 1 and drawn == [0.4, 0.45]
    matplotlib.pyplot.close(fig)


def test_false_alarms_against_fpr_marks_each_rate_and_leaves_out_a_zero_rate():
    fpr = np.logspace(-4, 0, 5)
    marks = {"target": (0.1, 864.0), "none flagged": (0.0, 0.0), "one a day": (1 / 8640, 1.0)}
    fig, ax = plots.false_alarms_against_fpr(fpr, fpr * 8640, marks)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "target: FPR 0.1, 864 a day",
        "one a day: FPR 0.00012, 1 a day",
    ]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), fpr * 8640)
    matplotlib.pyplot.close(fig)


def test_cost_against_threshold_scales_the_cost_and_frames_the_thresholds():
    curve = pd.DataFrame({"threshold": [1.0, 2.0, 3.0, 9.0], "cost": [0.5, 0.2, 0.3, 0.6]})
    thresholds = {"gamma rule": 2.5, "least cost": 2.0}
    fig, ax = plots.cost_against_threshold(curve, thresholds, checks=10.0, right=4.0)
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), curve.cost * 10)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "gamma rule: 2.5000",
        "least cost: 2.0000",
    ]
    assert ax.get_xlim() == pytest.approx((1.0 - 0.05 * 3.0, 4.0))
    matplotlib.pyplot.close(fig)
    fig, ax = plots.cost_against_threshold(curve, {"far": 12.0})
    assert ax.get_xlim()[1] == pytest.approx(12.0)  # a named threshold is never cut off
    matplotlib.pyplot.close(fig)


def test_ensemble_gains_colour_the_points_on_either_side_of_the_split():
    gains = pd.DataFrame({"gap": [0.5, 1.0, 4.0, 8.0], "gain": [1.0, 0.5, -1.0, -3.0]})
    fig, ax = plots.ensemble_gains(gains, 2.5)
    close, far = ax.collections
    np.testing.assert_allclose(close.get_offsets(), [[0.5, 1.0], [1.0, 0.5]])
    np.testing.assert_allclose(far.get_offsets(), [[4.0, -1.0], [8.0, -3.0]])
    assert close.get_label() == "members within 2.5 points"
    matplotlib.pyplot.close(fig)


def test_normalisation_draws_the_scalers_statistics_and_the_clip_before_and_after():
    mean, std = np.linspace(-60, -20, 8), np.linspace(1, 4, 8)
    logmel = np.random.default_rng(0).normal(mean, std, size=(50, 8))
    normalised = (logmel - mean) / std
    fig, axes = plots.normalisation(mean, std, logmel, normalised)
    np.testing.assert_allclose(axes[0].get_lines()[0].get_ydata(), mean)
    np.testing.assert_allclose(axes[1].get_lines()[0].get_ydata(), std)
    for bars, values in zip(axes[2].containers, (logmel, normalised)):  # each spans its values
        assert bars[0].get_x() == pytest.approx(values.min())
        assert bars[-1].get_x() + bars[-1].get_width() == pytest.approx(values.max())
    matplotlib.pyplot.close(fig)


def test_mel_profile_draws_the_real_band_and_both_means():
    real = pd.DataFrame(
        {"mel_bin": np.arange(4), "mean_db": [-50.0, -40, -45, -60], "std_db": [2.0, 3, 1, 4]}
    )
    frames = np.array([[-52.0, -41, -44, -58], [-48.0, -39, -46, -62]])
    fig, ax = plots.mel_profile(frames, real, title="fan")
    real_mean, ours = ax.get_lines()
    np.testing.assert_allclose(real_mean.get_ydata(), real.mean_db)
    np.testing.assert_allclose(ours.get_ydata(), frames.mean(axis=0))
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(-64.0) and band.max() == pytest.approx(-37.0)
    matplotlib.pyplot.close(fig)


def test_clips_per_id_stacks_each_labels_count_in_its_colour():
    counts = pd.DataFrame(
        {"normal": [10, 12], "anomaly": [3, 5]},
        index=pd.MultiIndex.from_tuples([("fan", 0), ("fan", 2)]),
    )
    fig, ax = plots.clips_per_id(counts)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["fan 00", "fan 02"]
    normal, anomaly = ax.containers
    assert [bar.get_height() for bar in normal] == [10, 12]
    assert [bar.get_y() for bar in anomaly] == [10, 12]  # stacked on the normal clips
    assert [bar.get_height() for bar in anomaly] == [3, 5]
    assert matplotlib.colors.to_hex(anomaly[0].get_facecolor()) == plots.LABEL_COLORS["anomaly"]
    matplotlib.pyplot.close(fig)
