"""Figures of the book: waveforms, spectrograms, windows, scores, ROC curves, comparisons.

Every function takes ``ax=None`` (a new figure of ``figsize`` is made) and returns
``(fig, ax)`` so a chapter can compose panels. Chapter references are in each docstring.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from itertools import cycle

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator
from scipy import stats
from sklearn.metrics import roc_curve

from . import metrics
from .features import FeatureParams
from .metrics import HIT_THRESHOLD
from .paper import MAX_FPR, MODELS, SAMPLE_RATE, model_spec

__all__ = [
    "LABEL_COLORS",
    "MODEL_COLORS",
    "model_color",
    "legend_below",
    "audio_player",
    "clips_per_id",
    "waveform",
    "spectrogram",
    "windows_on_spectrogram",
    "normalisation",
    "mel_profile",
    "loss_curves",
    "id_learning_curves",
    "score_histogram",
    "roc_curves",
    "paper_vs_ours",
    "averages_with_intervals",
    "normal_scores_by_id",
    "threshold_rules",
    "threshold_misses",
    "f1_by_id",
    "false_alarms_against_fpr",
    "cost_against_threshold",
    "ensemble_gains",
    "reconstruction",
    "hourglass",
    "error_over_time",
    "twin",
    "explanation_maps",
    "explanations",
]

#: Colours of normal and anomalous clips in every figure.
LABEL_COLORS = {"normal": "#1f77b4", "anomaly": "#d62728"}
#: The one palette of the book: each model and detector keeps its colour in every chapter
#: (the Dense AE is the same blue in chapters 5, 7 and 9). Figures take their colours from
#: here and from each registered detector's ``colors``, through :func:`model_color`; the
#: two ensembles of chapter 7 have their own.
MODEL_COLORS = {
    "baseline": "#7f7f7f",
    "dense": "#1f77b4",
    "cnn": "#ff7f0e",
    "dense + mahalanobis": "#17becf",
    "mahalanobis + id-embedding": "#bcbd22",
}

#: Colours of model kinds added to :data:`aadlib.paper.MODELS` beyond the paper's three.
_ADDED_KIND_COLORS = ("#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#f7b6d2")


def model_color(name: str) -> str:
    """The colour of a model or detector in every figure of the book. Chapters 5, 7, 9.

    Raises a :class:`KeyError` for a name that neither :data:`MODEL_COLORS` nor a
    registered detector's ``colors`` holds, rather than a colour of the moment.
    """
    if name in MODEL_COLORS:
        return MODEL_COLORS[name]
    if name in MODELS:  # a kind added to the paper's: a light shade, by its place there
        return _ADDED_KIND_COLORS[list(MODELS).index(name) % len(_ADDED_KIND_COLORS)]
    detectors = sys.modules.get("aadlib.detectors")  # only a loaded registry can hold it
    for cls in getattr(detectors, "DETECTORS", {}).values():
        if name in cls.colors:
            return cls.colors[name]
    raise KeyError(
        f"{name!r} has no colour in aadlib.plots.MODEL_COLORS (it holds "
        f"{', '.join(MODEL_COLORS)}) nor in a registered detector's colors: add one "
        "there, so it keeps it across chapters"
    )


def audio_player(samples, title: str, listen_for: str, rate: int = SAMPLE_RATE):
    """An audio player with its caption: what the clip is and what to listen for. Chapters 1 to 9.

    Returns an :class:`IPython.display.HTML` block, a ``<figure class="aad-audio">``
    whose ``<figcaption>`` holds ``title`` (in bold) and ``listen_for``, around the
    player of :class:`IPython.display.Audio`; show it with ``display``. Both texts are
    required: a player without them leaves the reader guessing what to hear.
    """
    from html import escape  # the standard library's; only where a player is made

    from IPython.display import HTML, Audio  # IPython comes with Jupyter: only for players

    if not str(title).strip() or not str(listen_for).strip():
        raise ValueError("an audio player needs a title and what to listen for")
    player = Audio(np.asarray(samples), rate=rate)._repr_html_()
    caption = (
        f'<figcaption><strong class="aad-audio-title">{escape(str(title))}</strong> '
        f'<span class="aad-audio-listen">{escape(str(listen_for))}</span></figcaption>'
    )
    return HTML(f'<figure class="aad-audio">{caption}{player}</figure>')


def clips_per_id(counts: pd.DataFrame, ax=None, figsize=(9, 3.2), title=None):
    """Clips per machine ID, normal and anomalous stacked. Chapter 1.

    ``counts`` has a row per (machine type, machine ID) and a column per label
    (``normal``, ``anomaly``) holding numbers of clips; each label takes its colour of
    :data:`LABEL_COLORS`.
    """
    fig, ax = _axes(ax, figsize)
    colours = [LABEL_COLORS[label] for label in counts.columns]
    counts.plot.bar(stacked=True, ax=ax, color=colours, width=0.8)
    ax.set_xticks(range(len(counts)), [f"{kind} {int(i):02d}" for kind, i in counts.index])
    ax.set(xlabel="machine type, ID", ylabel="clips", title=title)
    ax.legend(title="label", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.tick_params(axis="x", labelsize=8)
    return fig, ax


def _sharp_inline_figures() -> None:
    """Inline figures at twice the pixels (sharp on high-density screens), under IPython."""
    try:
        from IPython import get_ipython  # only a notebook shows inline figures
        from matplotlib_inline.backend_inline import set_matplotlib_formats  # likewise
    except ImportError:
        return
    if get_ipython() is not None:
        set_matplotlib_formats("retina")


_sharp_inline_figures()


def legend_below(ax, ncols: int = 1, offset: float = 0.14):
    """Put the axes' legend under the plot, off the data, in rows of ``ncols``. Chapters 3, 5, 9.

    ``offset`` is the gap below the axes, as a share of their height (room for the tick
    labels). Returns the legend.
    """
    handles, labels = ax.get_legend_handles_labels()
    return ax.legend(
        handles,
        labels,
        frameon=False,
        ncols=max(1, min(ncols, len(labels))),
        fontsize="small",
        loc="upper center",
        bbox_to_anchor=(0.5, -offset),
    )


def _id_label(machine_id) -> str:
    """A machine ID as the figures name it: "ID 02"."""
    return f"ID {int(machine_id):02d}"


def _axes(ax, figsize):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    else:
        fig = ax.figure
    return fig, ax


def waveform(y, sr: int = SAMPLE_RATE, ax=None, figsize=(8, 2.2), title=None, **kwargs):
    """Plot a waveform against time in seconds. Chapter 1."""
    fig, ax = _axes(ax, figsize)
    t = np.arange(len(y)) / sr
    ax.plot(t, y, lw=0.4, **kwargs)
    ax.set(xlabel="time (s)", ylabel="amplitude", xlim=(0, t[-1] if len(t) else 1), title=title)
    return fig, ax


def spectrogram(
    logmel,
    params: FeatureParams = FeatureParams(),
    ax=None,
    figsize=(8, 3),
    title=None,
    colorbar=True,
    vmin=None,
    vmax=None,
    cmap="magma",
    unit="dB",
):
    """Show a ``(n_frames, n_mels)`` log-mel spectrogram, time across. Chapters 1, 2, 4."""
    fig, ax = _axes(ax, figsize)
    seconds = len(logmel) * params.hop_length / params.sr
    image = ax.imshow(
        np.asarray(logmel).T,
        origin="lower",
        aspect="auto",
        extent=(0, seconds, 0, logmel.shape[1]),
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
    )
    ax.set(xlabel="time (s)", ylabel="mel bin", title=title)
    if colorbar:
        fig.colorbar(image, ax=ax, label=unit, pad=0.01)
    return fig, ax


def normalisation(mean, std, logmel, normalised, axes=None, figsize=(12, 3)):
    """What z-normalisation per mel bin does to a clip. Chapter 2.

    Three panels: the training set's ``mean`` and ``std`` per mel bin (dB), and the
    values of one clip's ``logmel`` before and after (``normalised``) as histograms.
    Returns ``(fig, axes)``.
    """
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=figsize, layout="constrained")
    fig = axes[0].figure
    axes[0].plot(mean)
    axes[0].set(title="mean per mel bin", xlabel="mel bin", ylabel="dB")
    axes[1].plot(std)
    axes[1].set(title="standard deviation per mel bin", xlabel="mel bin", ylabel="dB")
    for values, label in ((logmel, "raw (dB)"), (normalised, "z-normalised")):
        axes[2].hist(np.ravel(values), bins=60, alpha=0.6, density=True, label=label)
    axes[2].set(title="values of one clip", xlabel="value")
    axes[2].legend(frameon=False)
    return fig, axes


def mel_profile(frames, real: pd.DataFrame, ax=None, figsize=(4, 2.8), title=None):
    """A data set's mean log-mel spectrum beside the real recordings' one. Chapter 2.

    ``frames`` are one machine type's log-mel frames ``(n_frames, n_mels)``; ``real`` is
    that type's rows of :func:`aadlib.published.real_logmel_stats`: its mean per mel bin
    is the black line, inside a grey band of one standard deviation either side.
    """
    fig, ax = _axes(ax, figsize)
    band = (real["mean_db"] - real["std_db"], real["mean_db"] + real["std_db"])
    ax.fill_between(real["mel_bin"], *band, color="0.85", label="real ± std")
    ax.plot(real["mel_bin"], real["mean_db"], color="k", lw=1.2, label="real mean")
    mean = np.asarray(frames).mean(axis=0)
    ax.plot(mean, color="C1", lw=1.2, label="this data set's mean")
    ax.set(title=title, xlabel="mel bin", ylabel="dB")
    return fig, ax


def windows_on_spectrogram(
    logmel,
    kind: str,
    hop: int,
    n_show: int = 4,
    params: FeatureParams = FeatureParams(),
    ax=None,
    figsize=(8, 3),
    title=None,
):
    """Draw the first ``n_show`` model inputs (Dense vectors or CNN patches) as boxes.

    Chapter 2: a Dense AE vector spans 5 frames, a CNN AE patch 32 frames; both
    cover all 128 mel bins.
    """
    fig, ax = spectrogram(logmel, params, ax=ax, figsize=figsize, title=title)
    frame = params.hop_length / params.sr
    width = model_spec(kind).window_frames
    colors = plt.cm.viridis(np.linspace(0.2, 1.0, n_show))
    for i in range(n_show):
        start = i * hop * frame
        ax.add_patch(
            Rectangle(
                (start, 0.5 + i),
                width * frame,
                logmel.shape[1] - 1 - 2 * i,
                fill=False,
                lw=1.6,
                ec=colors[i],
            )
        )
    ax.set_xlim(0, min(len(logmel) * frame, (n_show * hop + width) * frame * 2.5))
    return fig, ax


def loss_curves(
    history: pd.DataFrame, ax=None, figsize=(5, 3), title=None, kept: str = "best", label=""
):
    """Training and validation loss per epoch, the epoch whose weights are kept marked.

    ``kept``: ``"best"`` (early stopping keeps the best validation epoch) or ``"last"``
    (no early stopping, as the DCASE baseline). Chapters 3, 4, 7.
    """
    fig, ax = _axes(ax, figsize)
    prefix = f"{label} " if label else ""
    ax.plot(history["epoch"], history["loss"], marker="o", ms=3, label=f"{prefix}training")
    if "val_loss" in history:
        ax.plot(
            history["epoch"], history["val_loss"], marker="o", ms=3, label=f"{prefix}validation"
        )
        row = history["val_loss"].idxmin() if kept == "best" else history.index[-1]
        ax.axvline(
            history.loc[row, "epoch"], color="grey", ls=":", lw=1, label=f"{kept} weights kept"
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="MSE", title=title)
    ax.legend(frameon=False)
    return fig, ax


def id_learning_curves(fitted: dict, figsize=None):
    """Every type's ID-classifier training: loss and accuracy per epoch, small multiples.

    ``fitted`` maps machine types to fitted ID classifiers (with ``history``, ``ids``,
    ``best_epoch`` and ``status``). One column per type: the cross-entropy on top, the
    share of patches assigned to their own ID below, training (dashed) and validation
    (solid) in the classifier's colour, chance and the kept epoch marked, the learning
    status in the title. Chapter 7.
    """
    types = list(fitted)
    figsize = figsize or (2.3 * len(types), 4.6)
    fig, axes = plt.subplots(2, len(types), figsize=figsize, sharex="col", squeeze=False)
    color = model_color("id-classifier")
    for k, machine_type in enumerate(types):
        detector = fitted[machine_type]
        history, top, bottom = detector.history, axes[0, k], axes[1, k]
        for ax, column in ((top, "loss"), (bottom, "accuracy")):
            ax.plot(history["epoch"], history[column], color=color, ls="--", lw=1, label="training")
            if f"val_{column}" in history:
                ax.plot(
                    history["epoch"],
                    history[f"val_{column}"],
                    color=color,
                    lw=1.5,
                    marker="o",
                    ms=2,
                    label="validation",
                )
            ax.axvline(detector.best_epoch, color="grey", ls=":", lw=1, label="kept epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
        bottom.axhline(1 / len(detector.ids), color="grey", ls="--", lw=0.8, label="chance")
        bottom.set(ylim=(0, 1.02), xlabel="epoch")
        top.set_title(f"{machine_type}\n{detector.status}", fontsize="medium")
    axes[0, 0].set_ylabel("cross-entropy")
    axes[1, 0].set_ylabel("patches assigned\nto their ID")
    handles, labels = axes[1, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=len(labels), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig, axes


def score_histogram(scores: pd.DataFrame, ax=None, figsize=(5, 3), bins=30, title=None):
    """Distribution of clip scores, normal against anomalous clips. Chapters 3, 4, 7."""
    fig, ax = _axes(ax, figsize)
    edges = np.histogram_bin_edges(scores["score"], bins=bins)
    for label in ("normal", "anomaly"):
        part = scores.loc[scores["label"] == label, "score"]
        ax.hist(
            part, bins=edges, alpha=0.6, color=LABEL_COLORS[label], label=f"{label} ({len(part)})"
        )
    ax.set(xlabel="anomaly score (mean reconstruction MSE)", ylabel="clips", title=title)
    ax.legend(frameon=False)
    return fig, ax


def roc_curves(scores: pd.DataFrame, ax=None, figsize=(4.5, 4.2), max_fpr=MAX_FPR, title=None):
    """ROC curve per machine ID, the pAUC region shaded. Chapters 3, 4."""
    fig, ax = _axes(ax, figsize)
    ax.axvspan(0, max_fpr, color="0.9", label=f"pAUC region (FPR ≤ {max_fpr})")
    for machine_id, group in scores.groupby("machine_id"):
        y = (group["label"] == "anomaly").to_numpy()
        fpr, tpr, _ = roc_curve(y, group["score"])
        ax.plot(fpr, tpr, lw=1.5, label=_id_label(machine_id))
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title(title)
    ax.legend(frameon=False, fontsize="small", loc="lower right")
    return fig, ax


def paper_vs_ours(
    comparison: pd.DataFrame,
    metric: str = "auc",
    ax=None,
    figsize=(9, 3.6),
    title=None,
):
    """Per-type averages: the paper's bars beside ours, for each model. Chapters 5, 9.

    ``comparison`` is :func:`aadlib.tables.comparison_table` output; where it holds
    confidence intervals (``<metric>_low``, ``<metric>_high``), our bars carry them.
    """
    fig, ax = _axes(ax, figsize)
    rows = comparison[comparison["machine_id"] == "average"]
    types = list(dict.fromkeys(rows["machine_type"]))
    models = list(dict.fromkeys(rows["model"]))
    width = 0.8 / (2 * len(models))
    x = np.arange(len(types))
    for m, model in enumerate(models):
        part = rows[rows["model"] == model].set_index("machine_type").reindex(types)
        base = x - 0.4 + width * (2 * m + 0.5)
        color = model_color(model)
        ax.bar(
            base, part[f"paper_{metric}"], width, color=color, alpha=0.45, label=f"{model} (paper)"
        )
        error = None
        if f"{metric}_low" in part:
            error = [part[metric] - part[f"{metric}_low"], part[f"{metric}_high"] - part[metric]]
        ax.bar(
            base + width,
            part[metric],
            width,
            color=color,
            yerr=error,
            capsize=2,
            error_kw={"lw": 1},
            label=f"{model} (ours)",
        )
    ax.axhline(50, color="grey", lw=1, ls="--")
    ax.set_xticks(x, types)
    ax.set(ylabel=f"{'AUC' if metric == 'auc' else 'pAUC'} (%)", ylim=(40, 101), title=title)
    legend_below(ax, ncols=2 * len(models))
    return fig, ax


def averages_with_intervals(
    per_id: pd.DataFrame,
    models=None,
    metric: str = "auc",
    ax=None,
    figsize=(9, 3.4),
    title=None,
):
    """Each model's per-type average as a point with its 95 % interval. Chapters 7, 9, 10.

    ``per_id`` is :func:`aadlib.tables.per_id_table` output with ``ci=True`` and a
    ``model`` column; ``models`` picks and orders the models (default: all, as they come).
    Overlapping intervals are a hint, not a test: a paired comparison decides. The legend
    sits below the axes, in rows of at most five models.
    """
    fig, ax = _axes(ax, figsize)
    rows = per_id[per_id["machine_id"] == "average"]
    models = list(models) if models is not None else list(dict.fromkeys(rows["model"]))
    types = list(dict.fromkeys(rows["machine_type"]))
    x = np.arange(len(types))
    step = 0.8 / len(models)
    for m, model in enumerate(models):
        part = rows[rows["model"] == model].set_index("machine_type").reindex(types)
        error = [part[metric] - part[f"{metric}_low"], part[f"{metric}_high"] - part[metric]]
        ax.errorbar(
            x - 0.4 + step * (m + 0.5),
            part[metric],
            yerr=error,
            fmt="o",
            ms=4,
            capsize=2,
            lw=1,
            color=model_color(model),
            label=model,
        )
    ax.axhline(50, color="grey", lw=1, ls="--")
    ax.set_xticks(x, types)
    ax.set(ylabel=f"{'AUC' if metric == 'auc' else 'pAUC'} (%)", title=title)
    legend_below(ax, ncols=min(len(models), 5))
    return fig, ax


#: The rules' colours in :func:`threshold_misses`, matching chapter 6's threshold figure,
#: where :func:`threshold_rules` colours its thresholds in order (the gamma rule first, C0;
#: the percentile rule third, C2).
_RULE_COLORS = {"gamma": "C0", "percentile": "C2"}


def normal_scores_by_id(
    groups: Mapping[str, pd.DataFrame],
    ids,
    quantile: float = 0.9,
    ax=None,
    figsize=(10, 3.8),
    title=None,
    seed: int = 0,
    score_label: str = "anomaly score",
):
    """Scores of groups of normal clips side by side per machine ID. Chapter 6.

    ``groups`` maps a name (training clips, validation clips, ...) to scores with
    ``machine_id`` and ``score`` columns. Each clip is a point, spread sideways at random
    (``seed``) so that equal scores stay visible; a bar marks each group's ``quantile``
    per ID, where a threshold set from that group would sit.
    """
    fig, ax = _axes(ax, figsize)
    jitter = np.random.default_rng(seed)
    width = 0.8 / len(groups)
    for k, (name, group) in enumerate(groups.items()):
        for i, machine_id in enumerate(ids):
            values = group[group["machine_id"] == machine_id]["score"]
            centre = i + (k - (len(groups) - 1) / 2) * width
            x = centre + jitter.uniform(-0.25, 0.25, len(values)) * width
            label = name if i == 0 else None
            ax.scatter(x, values, s=9, alpha=0.6, color=f"C{k}", label=label)
            if len(values):
                bar = (centre - 0.4 * width, centre + 0.4 * width)
                ax.hlines(values.quantile(quantile), *bar, color=f"C{k}", lw=2.5)
    ax.set_xticks(range(len(ids)), [_id_label(i) for i in ids])
    ax.set(ylabel=score_label, title=title)
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, top + 0.15 * (top - bottom))  # room for the legend above the clips
    ax.legend(frameon=False, ncols=len(groups), loc="upper left", fontsize=9)
    return fig, ax


def threshold_rules(
    scores,
    thresholds: Mapping[str, float],
    fits: Mapping[str, tuple[float, float, float]],
    ax=None,
    figsize=(9, 3.4),
    title=None,
    scores_name: str = "normal clips",
    score_label: str = "anomaly score",
):
    """Normal scores, the gamma distributions fitted to them and the thresholds. Chapter 6.

    ``fits`` maps a name to a gamma's ``(shape, loc, scale)``
    (:func:`aadlib.decisions.gamma_fit`); ``thresholds`` maps a rule's name to its
    threshold; both are coloured in order (C0, C1, ...). The axis spans the scores and
    30 % of their range either side; a threshold beyond it is marked "off the scale" in
    the legend. The height fits the histogram and the first fit only: a later one (a free
    lower end) may rise without bound at its lower end.
    """
    fig, ax = _axes(ax, figsize)
    scores = np.asarray(scores, dtype=float)
    low, high = scores.min(), scores.max()
    x = np.linspace(low - 0.3 * (high - low), high + 0.3 * (high - low), 400)
    heights, _, _ = ax.hist(
        scores, bins="auto", density=True, color="0.85", label=f"{scores_name} ({len(scores)})"
    )
    ax.plot(scores, np.zeros(len(scores)), "|", color="0.3", ms=12)
    tallest = heights.max()
    for k, (name, params) in enumerate(fits.items()):
        density = stats.gamma.pdf(x, *params)
        ax.plot(x, density, color=f"C{k}", ls="-" if k == 0 else "--", label=name)
        if k == 0:
            tallest = max(tallest, density.max())
    for k, (name, value) in enumerate(thresholds.items()):
        off = "" if value <= x[-1] else " (off the scale)"
        label = f"threshold, {name}: {value:.4f}{off}"
        ax.axvline(value, color=f"C{k}", ls=":", lw=2, label=label)
    ax.set(xlim=(x[0], x[-1]), ylim=(0, 1.3 * tallest), xlabel=score_label, ylabel="density")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig, ax


def threshold_misses(
    spread: pd.DataFrame,
    target_fpr: float,
    n_used=None,
    level: float = 0.9,
    ax=None,
    figsize=(8, 3.4),
    title=None,
):
    """The false-positive rate of thresholds set from ``n`` normal clips, per rule. Chapter 6.

    ``spread`` is :func:`aadlib.decisions.threshold_spread` output with a ``rule`` column:
    each rule's median and central ``level`` range of the rate over the draws (the
    ``level`` it was computed with), against ``n`` on a log scale, with the intended rate
    and, when given, the ``n_used`` of the page.
    """
    fig, ax = _axes(ax, figsize)
    for k, (rule, part) in enumerate(spread.groupby("rule", sort=False)):
        color = _RULE_COLORS.get(rule, f"C{k + 3}")
        ax.fill_between(part["n"], part["fpr_low"], part["fpr_high"], color=color, alpha=0.2)
        label = f"{rule} rule (median, {level:.0%} of draws)"
        ax.plot(part["n"], part["fpr_median"], color=color, marker="o", ms=3, label=label)
    ax.axhline(target_fpr, color="k", lw=0.8, ls="--", label="intended FPR")
    if n_used is not None:
        label = f"clips per threshold here ({n_used})"
        ax.axvline(n_used, color="0.5", lw=0.8, ls=":", label=label)
    ax.set(xscale="log", xlabel="normal clips the threshold is fitted on")
    ax.set(ylabel="FPR the threshold gives", title=title)
    ax.legend(frameon=False, fontsize=8)
    return fig, ax


def f1_by_id(f1: pd.DataFrame, floor, bound=None, ax=None, figsize=(9, 3.4), title=None):
    """F1 per machine ID of thresholds from several sources. Chapter 6.

    ``f1`` has a row per machine ID and a column per source of the threshold, coloured
    C3, C0, ... in order; the column named ``bound`` (an upper bound, such as the best
    threshold in hindsight) is grey and hatched. ``floor`` gives each ID's F1 of flagging
    every clip, drawn as a dashed line across the ID's bars.
    """
    fig, ax = _axes(ax, figsize)
    sources = [c for c in f1.columns if c != bound]
    colours = dict(zip(sources, cycle(("C3", "C0", "C2", "C1"))))
    if bound is not None:
        colours[bound] = "0.75"
    ids = f1.rename(index=_id_label)
    ids.plot.bar(ax=ax, rot=0, color=[colours[c] for c in f1.columns], width=0.8)
    if bound is not None:
        for bar in ax.containers[list(f1.columns).index(bound)]:
            bar.set_hatch("//")
    for i, floor_f1 in enumerate(np.asarray(floor, dtype=float)):
        label = "flag every clip" if i == 0 else None
        ax.hlines(floor_f1, i - 0.45, i + 0.45, color="k", ls="--", lw=1, label=label)
    ax.set(xlabel="", ylabel="F1 on the test clips", ylim=(0, 1.2), title=title)
    ax.set_yticks(np.arange(0, 1.01, 0.2))
    ax.legend(frameon=False, fontsize=8, loc="upper center", ncols=2)
    return fig, ax


def false_alarms_against_fpr(
    fpr,
    alarms_per_day,
    marks: Mapping[str, tuple[float, float]],
    ax=None,
    figsize=(8, 3.4),
    title=None,
):
    """False alarms a day against the false-positive rate per check, on log axes. Chapter 6.

    ``fpr`` and ``alarms_per_day`` draw the line (:func:`aadlib.decisions.false_alarms_per_day`);
    ``marks`` maps a name to an ``(fpr, alarms a day)`` point, coloured C0, C3, C2, C1 in
    order. A rate of zero has no place on a log axis and is left out.
    """
    fig, ax = _axes(ax, figsize)
    ax.loglog(fpr, alarms_per_day, color="k", lw=1)
    for (name, (rate, per_day)), colour in zip(marks.items(), cycle(("C0", "C3", "C2", "C1"))):
        if rate > 0:
            label = f"{name}: FPR {rate:.2g}, {per_day:.3g} a day"
            ax.plot(rate, per_day, "o", color=colour, label=label)
    ax.set(xlabel="false-positive rate per check", ylabel="false alarms per day", title=title)
    ax.legend(frameon=False, fontsize=8)
    return fig, ax


def cost_against_threshold(
    curve: pd.DataFrame,
    thresholds: Mapping[str, float],
    checks: float = 1.0,
    right=None,
    ax=None,
    figsize=(8, 3.4),
    title=None,
    ylabel="expected cost per check (units)",
):
    """The expected cost of :func:`aadlib.decisions.cost_curve` against the threshold. Chapter 6.

    The cost per check is multiplied by ``checks`` (the checks a day give the cost a day).
    ``thresholds`` maps a name to a threshold, drawn as a vertical line (C0 dotted, then
    C3 dashed, ...). The axis starts at the lowest threshold drawn and ends at ``right``
    (the curve's highest threshold when not given) or at the highest threshold named,
    whichever is higher, so that no named threshold is cut off.
    """
    fig, ax = _axes(ax, figsize)
    ax.plot(curve["threshold"], curve["cost"] * checks, marker=".", ms=4, color="k", lw=0.8)
    styles = [("C0", ":", 2.0), ("C3", "--", 1.5), ("C2", "-.", 1.5), ("C1", "--", 1.0)]
    for (name, value), (colour, line, width) in zip(thresholds.items(), cycle(styles)):
        ax.axvline(value, color=colour, ls=line, lw=width, label=f"{name}: {value:.4f}")
    right = max(curve["threshold"].max() if right is None else right, *thresholds.values())
    left = min(curve["threshold"].min(), *thresholds.values())
    ax.set(xlim=(left - 0.05 * (right - left), right), xlabel="threshold", ylabel=ylabel)
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    return fig, ax


def ensemble_gains(gains: pd.DataFrame, split: float, ax=None, figsize=(7, 4), title=None):
    """What averaging two detectors gains against how far apart they are. Chapter 7.

    ``gains`` is :func:`aadlib.detectors.ensemble_gains` output: a point per ensemble and
    machine type, the members' ``gap`` against the ensemble's ``gain`` over its better
    member. Points whose gap is at most ``split`` (:func:`aadlib.detectors.gains_by_gap`
    splits at the median) take the first colour, the others the second.
    """
    fig, ax = _axes(ax, figsize)
    close, far = gains[gains["gap"] <= split], gains[gains["gap"] > split]
    ax.scatter(close["gap"], close["gain"], s=14, label=f"members within {split:.1f} points")
    ax.scatter(far["gap"], far["gain"], s=14, label="members further apart")
    ax.axhline(0, color="grey", lw=1)
    ax.set(xlabel="AUC gap between the two members (points)", title=title)
    ax.set_ylabel("ensemble AUC minus the better member's (points)")
    ax.legend(frameon=False, fontsize="small")
    return fig, ax


def reconstruction(patch, recon, axes=None, figsize=(10, 2.8), title=None):
    """A CNN AE input patch, its reconstruction and the squared error. Chapter 4."""
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=figsize, layout="constrained", sharey=True)
    else:
        fig = axes[0].figure
    patch, recon = np.squeeze(patch), np.squeeze(recon)
    error = (patch - recon) ** 2
    lo, hi = np.percentile(patch, [1, 99])
    panels = [
        (patch, "input", lo, hi, "magma"),
        (recon, "reconstruction", lo, hi, "magma"),
        (error, "squared error", 0, None, "viridis"),
    ]
    for ax, (image, name, vmin, vmax, cmap) in zip(axes, panels):
        shown = ax.imshow(image.T, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap=cmap)
        ax.set(title=name, xlabel="frame")
        fig.colorbar(shown, ax=ax, pad=0.01)
    axes[0].set_ylabel("mel bin")
    if title:
        fig.suptitle(title)
    return fig, axes


def hourglass(model, ax=None, figsize=(9, 3.2), title=None):
    """Size of every layer's output (values per example), the shape of an autoencoder.

    Chapters 3, 4: the bars narrow to the bottleneck and widen back.
    """
    fig, ax = _axes(ax, figsize)
    names, sizes = [], []
    for layer in model.layers:
        if layer.__class__.__name__ not in ("Dense", "Conv2D", "Conv2DTranspose", "InputLayer"):
            continue
        shape = layer.output.shape[1:]
        names.append(layer.name)
        sizes.append(int(np.prod(shape)))
    colors = ["#d62728" if "bottleneck" in n else "#1f77b4" for n in names]
    ax.bar(range(len(sizes)), sizes, color=colors)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize="small")
    for i, size in enumerate(sizes):
        ax.text(i, size * 1.1, f"{size:,}", ha="center", va="bottom", fontsize=7)
    ax.set(ylabel="values per example (log)", title=title, ylim=(1, max(sizes) * 4))
    return fig, ax


def error_over_time(
    errors,
    hop: int,
    params: FeatureParams = FeatureParams(),
    ax=None,
    figsize=(8, 2.5),
    label=None,
    title=None,
    **kwargs,
):
    """Reconstruction error of each window against the window's start time. Chapter 3."""
    fig, ax = _axes(ax, figsize)
    t = np.arange(len(errors)) * hop * params.hop_length / params.sr
    ax.plot(t, errors, label=label, **kwargs)
    ax.set(xlabel="time (s)", ylabel="window MSE", title=title)
    return fig, ax


# --------------------------------------------------------------------------------------
# Explanations (chapter 8)
# --------------------------------------------------------------------------------------


def _frame_seconds(n_frames: int, params: FeatureParams = FeatureParams()) -> float:
    return n_frames * params.hop_length / params.sr


def twin(clip, figsize=(12, 6.5), params: FeatureParams = FeatureParams()):
    """An anomalous clip, its clean twin and their difference, one above the other. Chapter 8.

    ``clip``: an :class:`aadlib.explain.Twin`. Returns ``(fig, axes)``.
    """
    anomalous, clean = clip.log_mels(params)
    difference = clip.difference(params)
    seconds = _frame_seconds(len(anomalous), params)
    extent = (0, seconds, 0, anomalous.shape[1])
    low, high = np.percentile(np.concatenate([anomalous, clean]), [1, 99.5])
    fig, axes = plt.subplots(3, 1, figsize=figsize, sharex=True, layout="constrained")
    panels = (
        (anomalous, "anomalous clip", "magma", low, high, "dB"),
        (clean, "its clean twin (the anomaly not planted)", "magma", low, high, "dB"),
        (
            difference,
            "|difference|",
            "viridis",
            0,
            max(np.percentile(difference, 99.5), 1e-3),
            "dB",
        ),
    )
    for ax, (values, title, cmap, vmin, vmax, unit) in zip(axes, panels, strict=True):
        image = ax.imshow(
            values.T,
            origin="lower",
            aspect="auto",
            extent=extent,
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            interpolation="nearest",
        )
        fig.colorbar(image, ax=ax, label=unit, pad=0.01)
        ax.set(ylabel="mel bin", title=title)
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(clip.title)
    return fig, axes


def explanation_maps(
    maps: Mapping[str, np.ndarray],
    title: str | None = None,
    unit: str = "error above normal",
    figsize=(12, 5),
    params: FeatureParams = FeatureParams(),
):
    """Explanation maps ``(n_frames, n_mels)``, one above the other, zero in white. Chapter 8.

    Each map gets a diverging colour scale symmetric around zero (to its 99th percentile
    of absolute values), so that red is blamed and blue is rebuilt better than normal;
    NaN (frames no window covers) is grey. Returns ``(fig, axes)``.
    """
    fig, axes = plt.subplots(len(maps), 1, figsize=figsize, sharex=True, layout="constrained")
    axes = np.atleast_1d(axes)
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.7")
    for ax, (name, values) in zip(axes, maps.items(), strict=True):
        values = np.asarray(values, dtype=np.float64)
        limit = float(np.nanpercentile(np.abs(values), 99)) or 1.0
        image = ax.imshow(
            np.ma.masked_invalid(values).T,
            origin="lower",
            aspect="auto",
            extent=(0, _frame_seconds(len(values), params), 0, values.shape[1]),
            cmap=cmap,
            vmin=-limit,
            vmax=limit,
            interpolation="nearest",
        )
        fig.colorbar(image, ax=ax, label=unit, pad=0.01)
        ax.set(ylabel="mel bin", title=name)
    axes[-1].set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    return fig, axes


def _profile_line(ax, axis: str, where, values, **style) -> None:
    """A profile along mel bins (drawn upright, beside the spectrogram) or along time."""
    if axis == "frequency":
        ax.plot(values, where, **style)
    else:
        ax.plot(where, values, **style)


def _draw_explanation(main, panel, axis: str, values, colour, truth, threshold) -> None:
    """One method's explanation along ``axis`` in its ``panel`` (an axes and its positions),
    scaled to its maximum, and a line across the spectrogram at its top position: solid
    for a hit of the ``truth`` (or without one), dashed for a miss."""
    ax, where = panel
    values = np.asarray(values, dtype=np.float64)
    covered = np.isfinite(values)
    if truth is not None:
        covered &= np.isfinite(truth[axis])
    valid = np.flatnonzero(covered)
    top = int(valid[metrics.top_position(values[valid])])
    style = "-"
    if truth is not None:
        style = "-" if metrics.hit(values, truth[axis], threshold) else "--"
    peak = np.nanmax(np.abs(values))
    _profile_line(ax, axis, where, values / peak if peak > 0 else values, color=colour, lw=0.8)
    line = main.axhline if axis == "frequency" else main.axvline
    line(where[top], color=colour, ls=style, lw=1.4)


def _draw_truth(panels: dict, truth: Mapping[str, np.ndarray], threshold: float) -> None:
    """The true difference's profiles in black in each ``panel``, scaled to their maximum,
    with the region where a top position counts as a hit shaded."""
    for axis, (ax, where) in panels.items():
        scaled = truth[axis] / np.nanmax(truth[axis])
        _profile_line(ax, axis, where, scaled, color="black", lw=1.5, label="true difference")
        shade = ax.fill_betweenx if axis == "frequency" else ax.fill_between
        shade(where, 0, 1, where=scaled >= threshold, color="0.75", alpha=0.6, step="mid", lw=0)


def explanations(
    logmel: np.ndarray,
    explanations: Mapping[str, Mapping[str, np.ndarray]],
    truth: Mapping[str, np.ndarray] | None = None,
    title: str | None = None,
    threshold: float = HIT_THRESHOLD,
    figsize=(12, 5.5),
    params: FeatureParams = FeatureParams(),
):
    """A clip's spectrogram with each method's explanations and top bin and frame. Chapter 8.

    The side panel shows each method's frequency explanation, the bottom panel its time
    explanation, each scaled to its own maximum; each method's top-ranked bin and frame
    is drawn as a line across the spectrogram. Given the ``truth`` (synthetic clips: the
    true difference's profiles, :func:`aadlib.explain.truth_profiles`), it is drawn in
    black, the region a hit must fall in (at least
    ``threshold`` of the maximum) is shaded, and a top position is a solid line for a hit,
    a dashed one for a miss. Returns ``(fig, (main, side, bottom))``.
    """
    logmel = np.asarray(logmel)
    seconds = _frame_seconds(len(logmel), params)
    times = (np.arange(len(logmel)) + 0.5) * seconds / len(logmel)
    bins = np.arange(logmel.shape[1]) + 0.5
    fig = plt.figure(figsize=figsize, layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=(5, 1.2), height_ratios=(3, 1.2))
    main = fig.add_subplot(grid[0, 0])
    side = fig.add_subplot(grid[0, 1], sharey=main)
    bottom = fig.add_subplot(grid[1, 0], sharex=main)
    low, high = np.percentile(logmel, [1, 99.5])
    extent = (0, seconds, 0, logmel.shape[1])
    main.imshow(logmel.T, origin="lower", aspect="auto", extent=extent, cmap="magma")
    main.images[0].set(clim=(low, high), interpolation="nearest")
    panels = {"frequency": (side, bins), "time": (bottom, times)}
    if truth is not None:
        _draw_truth(panels, truth, threshold)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles = []
    for colour, (method, explanation) in zip(colours, explanations.items()):
        handles.append(Line2D([], [], color=colour, lw=2, label=method))
        for axis, values in explanation.items():
            _draw_explanation(main, panels[axis], axis, values, colour, truth, threshold)
    side.set(xlabel="scaled to max", title="per mel bin", xlim=(-0.5, 1.05))
    side.tick_params(labelleft=False)
    bottom.set(xlabel="time (s)", ylabel="scaled to max", ylim=(-0.5, 1.05))
    main.set(ylabel="mel bin", title=title)
    main.tick_params(labelbottom=False)
    if truth is not None:
        handles.append(
            Line2D([], [], color="black", lw=1.5, label="true difference (shaded: relevant)")
        )
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize="small")
    return fig, (main, side, bottom)
