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
