"""Result tables: per-ID AUC/pAUC, the paper's Table 2 layout, our results beside the paper's.

Chapters 3 to 5 build their tables here; ``aadlib evaluate``, ``report`` and
``reproduce`` write them. No TensorFlow: a table is computed from a scores file alone.

A *scores table* has one row per test clip with ``model``, ``machine_type``,
``machine_id``, ``label`` (``"normal"``/``"anomaly"``) and ``score``
(:func:`aadlib.pipeline.score_machine_type` writes it).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import metrics, plots, published, wording
from ._storage import write_atomic, write_csv
from .data import MACHINE_TYPES, type_order
from .metrics import PAUC_DEFAULT, PAUC_DEFINITIONS
from .paper import MODELS, model_order

__all__ = [
    "SCORE_COLUMNS",
    "check_scores",
    "check_summary",
    "per_id_table",
    "compare_models",
    "per_kind_table",
    "seed_spread",
    "summary_table",
    "difference_table",
    "noise_counts",
    "OVERALL",
    "with_intervals",
    "fold_table",
    "results_table",
    "table2_layout",
    "comparison_table",
    "Reproduction",
    "write_reproduction",
]

#: The columns a scores table must have.
SCORE_COLUMNS = ("model", "machine_type", "machine_id", "label", "score")


def check_scores(scores: pd.DataFrame, source: str | Path = "the scores table") -> pd.DataFrame:
    """The scores table, checked: the expected columns, labels and finite scores.

    Raises :class:`ValueError` naming ``source`` (a file, say) and what is wrong.
    """
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(
            f"{source}: not a scores table (missing column(s) {', '.join(missing)}); "
            "run `aadlib evaluate` to write it again"
        )
    labels = set(scores["label"].unique())
    if not labels <= {"normal", "anomaly"}:
        raise ValueError(f"{source}: unknown label(s) {sorted(labels - {'normal', 'anomaly'})}")
    score = pd.to_numeric(scores["score"], errors="coerce")
    if score.isna().any() or not score.map(lambda v: abs(v) < float("inf")).all():
        raise ValueError(
            f"{source}: {int(score.isna().sum())} score(s) are missing or not numbers; the file "
            "is damaged or truncated: run `aadlib evaluate` to write it again"
        )
    return scores


def check_summary(scores: pd.DataFrame, folder: str | Path, source: str | Path) -> pd.DataFrame:
    """A results folder's summary of scores, checked against the per-model score files.

    ``<folder>/<model>/<machine_type>/scores.csv`` holds each model's scores of one type;
    the summary (``source``) must hold as many rows of each. A summary cut short, or
    written before a model was scored, raises :class:`ValueError` that names what it lacks.
    """
    folder = Path(folder)
    gaps = []
    for kind in MODELS:
        for machine_type in MACHINE_TYPES:
            part = folder / kind / machine_type / "scores.csv"
            if not part.is_file():
                continue
            try:
                expected = len(pd.read_csv(part, usecols=["score"]))
            except (OSError, ValueError):
                continue  # a damaged file of one model is not the summary's fault
            found = int(
                ((scores["model"] == kind) & (scores["machine_type"] == machine_type)).sum()
            )
            if found != expected:
                gaps.append(f"{kind} on {machine_type} ({found} of the {expected} rows of {part})")
    if gaps:
        raise ValueError(
            f"{source} does not match the models' own score files: {'; '.join(gaps)}. It may "
            "have been cut short; run `aadlib evaluate` with the same options to write it "
            "again (trained models are reused)"
        )
    return scores


def _ordered(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows by model, then machine type in the paper's order, IDs numerically, average last."""
    order = {t: i for i, t in enumerate(type_order(table["machine_type"]))}
    if "model" in table.columns:  # Table 2's column order, other detectors after
        table = table.assign(_model=table["model"].map(model_order))
        keys = ["_model" if k == "model" else k for k in keys]
    table = table.assign(
        _type=table["machine_type"].map(order),
        _avg=table["machine_id"] == "average",
        _id=pd.to_numeric(table["machine_id"], errors="coerce"),
    )
    table = table.sort_values(keys[:-1] + ["_type", "_avg", "_id"])
    helpers = [c for c in ("_model", "_type", "_avg", "_id") if c in table.columns]
    return table.drop(columns=helpers).reset_index(drop=True)


def _id_seed(seed: int, *key) -> int:
    """A seed of its own for each group (stable across runs), so IDs resample independently."""
    return zlib.crc32(repr((seed, *map(str, key))).encode())


#: The columns that name one test clip within a machine ID.
_CLIP = ["label", "index"]


def _runs(group: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Labels of one ID's test clips and their scores per training run, ``(n_runs, n_clips)``.

    Without a ``seed`` column the scores are those of one run; with one, every seed must
    have scored the same clips once.
    """
    if "seed" not in group.columns:
        return (group["label"] == "anomaly").to_numpy(), group["score"].to_numpy()[None]
    wide = group.pivot_table(index=_CLIP, columns="seed", values="score")
    if wide.isna().any(axis=None) or wide.size != len(group):
        raise ValueError("every training seed must score the same test clips, each once")
    return np.asarray(wide.index.get_level_values("label") == "anomaly"), wide.to_numpy().T


#: The machine type of the rows that average over all types (:func:`per_id_table` with
#: ``overall``, :func:`compare_models`).
OVERALL = "all types"


def per_id_table(
    scores: pd.DataFrame,
    pauc: str = PAUC_DEFAULT,
    *,
    ci: bool = False,
    n_boot: int = metrics.N_BOOT,
    seed: int = 0,
    level: float = metrics.LEVEL,
    overall: bool = False,
) -> pd.DataFrame:
    """AUC and pAUC (%) per machine type and ID from a scores table.

    Chapters 3, 4, 5, 7, 9, 10.

    Parameters
    ----------
    scores
        One row per test clip (``model`` is optional here).
    pauc
        ``"mcclish"`` (as the paper's table) or ``"dcase"``.
    ci
        Add bootstrap confidence intervals: ``n_boot`` resamples of each ID's test clips
        (normal and anomalous clips drawn separately), at ``level``. A per-type average's
        interval comes from averaging the IDs' resamples, so it reflects every ID's noise.
        With a ``seed`` column (the scores of several training runs,
        :func:`aadlib.pipeline.seed_scores`), each metric is the mean over the seeds and
        the resamples draw the seeds too (:func:`aadlib.metrics.bootstrap_runs`): the
        interval then covers the test clips and the seed-to-seed spread of training.
    overall
        Also average over the machine types: with several types, each model gets a row of
        machine type :data:`OVERALL` (``machine_id`` ``"average"``), the mean of its type
        averages (every type weighted alike, as the paper's overall averages) with, given
        ``ci``, the interval of that mean from the same resamples.

    Returns
    -------
    pandas.DataFrame
        Columns ``model`` (when given), ``machine_type``, ``machine_id``, ``auc``, ``pauc``,
        ``n_normal``, ``n_anomaly`` and, with ``ci``, ``auc_low``, ``auc_high``,
        ``pauc_low``, ``pauc_high``; ``machine_id`` ``"average"`` rows hold the per-type
        mean over IDs, as in the paper's Table 2. An ID whose test clips have one label
        only has NaN metrics (undefined) and is left out of its type's average. With a
        ``seed`` column, ``n_seeds`` counts the runs averaged (an average row: the fewest).
    """
    keys = [k for k in ("model", "machine_type") if k in scores.columns]
    rows, replicates = [], {}
    for group_key, group in scores.groupby(keys + ["machine_id"], sort=True):
        row = dict(zip(keys + ["machine_id"], group_key))
        boot_seed = _id_seed(seed, *group_key) if ci else None
        boot = _id_metrics(row, group, pauc, boot_seed, n_boot, level)
        if boot is not None:
            replicates[group_key] = boot
        rows.append(row)
    per_id = pd.DataFrame(rows)
    averages = _type_averages(per_id, keys, replicates if ci else None, level, overall)
    per_id["machine_id"] = per_id["machine_id"].astype(int).astype(str)
    return _ordered(pd.concat([per_id, averages], ignore_index=True), keys)


def _id_metrics(row: dict, group: pd.DataFrame, pauc: str, boot_seed, n_boot, level):
    """Fill ``row`` with one ID's metrics (the mean over its runs) and, given a
    ``boot_seed``, their interval; return the (AUC, pAUC) bootstrap replicates, if any."""
    y, runs = _runs(group)
    defined = 0 < y.sum() < len(y)  # an ID with one label only has no ROC curve
    pauc_fn = metrics.pauc_function(pauc)
    row.update(
        auc=np.mean([100 * metrics.auc(y, r) for r in runs]) if defined else np.nan,
        pauc=np.mean([100 * pauc_fn(y, r) for r in runs]) if defined else np.nan,
        n_normal=int((~y).sum()),
        n_anomaly=int(y.sum()),
    )
    if "seed" in group.columns:
        row["n_seeds"] = len(runs)
    if boot_seed is None:
        return None
    if not defined:
        _add_interval(row, _UNDEFINED, _UNDEFINED, level)
        return None
    boot = metrics.bootstrap_runs(y, [runs], n_boot, boot_seed)
    replicates = (100 * boot["auc"][0], 100 * boot[f"pauc_{pauc}"][0])
    _add_interval(row, *replicates, level)
    return replicates


def _type_averages(
    per_id: pd.DataFrame, keys: list[str], replicates, level, overall: bool = False
) -> pd.DataFrame:
    """The ``average`` row of each type (:func:`_roll_up` of its IDs) and, ``overall``,
    each model's row over all types (:func:`_roll_up` of its type averages)."""
    averages, means = [], []
    for type_key, ids in per_id.groupby(keys, sort=False):
        names = dict(zip(keys, type_key if isinstance(type_key, tuple) else (type_key,)))
        members = None
        if replicates is not None:
            id_keys = (tuple(r[k] for k in keys + ["machine_id"]) for _, r in ids.iterrows())
            members = [replicates[key] for key in id_keys if key in replicates]
        row, mean = _roll_up(ids, members, level, **names, machine_id="average")
        averages.append(row)
        means.append(mean)
    table = pd.DataFrame(averages)
    if overall:
        model_keys = keys[:-1]  # ["model"], or none
        groups = table.groupby(model_keys, sort=False) if model_keys else [((), table)]
        for model_key, types in groups:
            if len(types) < 2:
                continue
            names = dict(zip(model_keys, model_key))
            members = None
            if replicates is not None:
                members = [means[i] for i in types.index if means[i] is not None]
            row, _ = _roll_up(
                types, members, level, **names, machine_type=OVERALL, machine_id="average"
            )
            averages.append(row)
    return pd.DataFrame(averages)


#: The replicates of a metric that is not defined (an ID with one label only).
_UNDEFINED = np.array([np.nan])

#: How a roll-up row sums up its members' columns (those the members have).
_ROLL_UP = {
    "auc": "mean",
    "pauc": "mean",
    "n_normal": "sum",
    "n_anomaly": "sum",
    "n_seeds": "min",
    "auc_diff": "mean",
    "pauc_diff": "mean",
    "seeds_first": "min",
    "seeds_second": "min",
}


def _roll_up(members: pd.DataFrame, replicates: list | None, level: float, **row):
    """One step of the roll-up ID -> type -> all types (or fold -> average over folds):
    ``row`` with the members' metrics averaged (every member weighted alike, as the
    paper's averages are) and, given the members' bootstrap ``replicates`` (an (AUC,
    pAUC) pair each), the interval of their mean. Returns the row and that mean (the
    replicates of the next step), ``None`` without replicates. A difference table (with
    ``auc_diff``) gets difference intervals and ``beyond_noise``."""
    for name, how in _ROLL_UP.items():
        if name in members.columns:
            value = members[name].agg(how)
            row[name] = float(value) if how == "mean" else int(value)
    difference = "auc_diff" in members.columns
    if replicates is None:
        return row, None
    if not replicates:  # no member has a defined metric
        _add_interval(row, _UNDEFINED, _UNDEFINED, level, difference)
        return row, None
    mean = tuple(np.mean([r[i] for r in replicates], axis=0) for i in (0, 1))
    _add_interval(row, *mean, level, difference)
    return row, mean


def _add_interval(row: dict, auc, pauc, level: float, difference: bool = False) -> dict:
    """Intervals of the AUC and pAUC ``replicates`` into ``row``; for a ``difference`` of
    two models, ``auc_diff_low`` and so on, and ``beyond_noise`` (the AUC interval
    excludes 0)."""
    suffix = "_diff" if difference else ""
    for name, replicates in (("auc", auc), ("pauc", pauc)):
        if np.isnan(replicates).all():
            row[f"{name}{suffix}_low"] = row[f"{name}{suffix}_high"] = np.nan
        else:
            row[f"{name}{suffix}_low"], row[f"{name}{suffix}_high"] = metrics.interval(
                replicates, level
            )
    if difference:
        row["beyond_noise"] = not row["auc_diff_low"] <= 0 <= row["auc_diff_high"]
    return row


def compare_models(
    scores: pd.DataFrame,
    first: str,
    second: str,
    pauc: str = PAUC_DEFAULT,
    *,
    n_boot: int = metrics.N_BOOT,
    seed: int = 0,
    level: float = metrics.LEVEL,
    training: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Paired comparison of two models on the same test clips. Chapters 3, 4, 5, 7, 9.

    Both models' scores are resampled with the same clips (a paired bootstrap), so the
    noise that the two share (which clips happen to be in the test set) cancels out of
    the difference. With a ``seed`` column (several training runs of a model), each
    model's metric is its mean over seeds and the resamples draw seeds too
    (:func:`aadlib.metrics.bootstrap_runs`), so the interval covers the seed-to-seed
    spread as well. Returns, in percentage points of ``first`` minus ``second``:
    ``auc_diff``, ``auc_diff_low``, ``auc_diff_high``, the same for ``pauc``,
    ``beyond_noise`` (the AUC interval excludes 0) and ``seeds_first``,
    ``seeds_second`` (runs per model); per ID, per type (``average``) and, with several
    types, over all of them (machine type ``"all types"``, every type weighted alike, as
    the paper's overall averages).

    ``training``: :func:`aadlib.pipeline.training_summary` output. With it, the column
    ``undecided`` names the models of the pair that stopped while still improving on
    that type (on any type, for ``"all types"``): a difference measured against such a
    model says how far its training got, not how good it can be.
    """
    runs = _paired_runs(scores, first, second)
    rows, replicates = [], {}
    for key, group in runs.groupby(level=[0, 1], sort=True):
        row, replicates[key] = _id_difference(key, group, first, second, pauc, n_boot, seed)
        rows.append(_add_interval(row, *replicates[key], level, difference=True))
    table = pd.DataFrame(rows)
    per_type = []
    for machine_type, ids in table.groupby("machine_type", sort=False):
        members = [replicates[machine_type, int(i)] for i in ids["machine_id"]]
        row, mean = _roll_up(ids, members, level, machine_type=machine_type, machine_id="average")
        rows.append(row)
        per_type.append(mean)
    if len(per_type) > 1:  # every type weighted alike, as the paper's overall averages
        averages = pd.DataFrame(rows[len(table) :])
        rows.append(
            _roll_up(averages, per_type, level, machine_type=OVERALL, machine_id="average")[0]
        )
    result = _ordered(pd.DataFrame(rows), ["machine_type"])
    if training is not None:
        result["undecided"] = _undecided(result["machine_type"], (first, second), training)
    return result


def _id_difference(key, group, first, second, pauc, n_boot, seed) -> tuple[dict, tuple]:
    """One ID's row of :func:`compare_models` (``first`` minus ``second``, in points) and
    the (AUC, pAUC) replicates of the difference, both models resampled with the same clips."""
    y = np.asarray(group.index.get_level_values("label") == "anomaly")
    pair = [group[first].to_numpy().T, group[second].to_numpy().T]
    boot = metrics.bootstrap_runs(y, pair, n_boot, _id_seed(seed, *key))
    replicates = (
        100 * (boot["auc"][0] - boot["auc"][1]),
        100 * (boot[f"pauc_{pauc}"][0] - boot[f"pauc_{pauc}"][1]),
    )
    point = [_mean_areas(y, r, pauc) for r in pair]
    row = {
        "machine_type": key[0],
        "machine_id": str(key[1]),
        "auc_diff": 100 * (point[0][0] - point[1][0]),
        "pauc_diff": 100 * (point[0][1] - point[1][1]),
        "seeds_first": len(pair[0]),
        "seeds_second": len(pair[1]),
    }
    return row, replicates


def _paired_runs(scores: pd.DataFrame, first: str, second: str) -> pd.DataFrame:
    """Scores of both models, a row per test clip, a column per (model, seed)."""
    chosen = scores[scores["model"].isin([first, second])]
    if "seed" not in chosen.columns:
        chosen = chosen.assign(seed=0)
    wide = chosen.pivot_table(
        index=["machine_type", "machine_id", *_CLIP], columns=["model", "seed"], values="score"
    )
    models = set(wide.columns.get_level_values("model"))
    if not {first, second} <= models or wide.isna().any(axis=None) or wide.size != len(chosen):
        raise ValueError(
            f"compare_models needs both {first!r} and {second!r} scored on the same clips "
            "(each seed of each model once)"
        )
    return wide


def _mean_areas(y: np.ndarray, runs: np.ndarray, pauc: str) -> tuple[float, float]:
    """AUC and pAUC (fractions) of each run's scores, averaged over the runs."""
    area, partial = metrics.roc_areas(y, runs)
    return float(np.mean(area)), float(np.mean(metrics.standardise(partial, pauc)))


def _undecided(machine_types: pd.Series, models, training: pd.DataFrame) -> list[str]:
    """Per row, the models (of ``models``) that stopped while improving on that type."""
    improving = training[training["status"] != "plateau"]
    stopped = {(m, t) for m, t in zip(improving["model"], improving["machine_type"]) if m in models}
    named = []
    for machine_type in machine_types:
        these = [
            m
            for m in models
            if any(m == s[0] and machine_type in (s[1], "all types") for s in stopped)
        ]
        named.append(", ".join(these))
    return named


def results_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Per-ID and per-type AUC with both pAUC definitions, in percent. Chapters 3, 5."""
    tables = {name: per_id_table(scores, pauc=name) for name in PAUC_DEFINITIONS}
    table = tables[PAUC_DEFAULT].drop(columns=["pauc"])
    at = table.columns.get_loc("auc") + 1
    for offset, (name, each) in enumerate(tables.items()):
        table.insert(at + offset, f"pauc_{name}", each["pauc"].values)
    return table


def table2_layout(per_id: pd.DataFrame, *, intervals: bool | None = None) -> pd.DataFrame:
    """Pivot per-model results into the paper's Table 2 shape. Chapters 4, 5, 7.

    Rows are (machine type, machine ID or ``average``); columns are
    (model, ``AUC``/``pAUC``), in percent. With ``intervals`` (the default when
    ``per_id`` has them, ``ci=True``), each cell is the value with its 95 % interval
    as text (:func:`with_intervals`); without, the number.
    """
    if "model" not in per_id.columns:
        raise ValueError("table2_layout needs a 'model' column (dense, cnn, ...)")
    bounds = {f"{m}_{side}" for m in ("auc", "pauc") for side in ("low", "high")}
    if intervals is None:
        intervals = bounds <= set(per_id.columns)
    if intervals:
        per_id = per_id.assign(
            auc=with_intervals(per_id, "auc"), pauc=with_intervals(per_id, "pauc")
        )
    wide = per_id.pivot_table(
        index=["machine_type", "machine_id"],
        columns="model",
        values=["auc", "pauc"],
        sort=False,
        aggfunc="first" if intervals else "mean",
    )
    present = list(dict.fromkeys(per_id["model"]))
    # Table 2's order, other detectors after in the order they come
    models = sorted(present, key=lambda m: (model_order(m)[0], present.index(m)))
    wide = wide.swaplevel(0, 1, axis=1)
    wide = wide.reindex(columns=pd.MultiIndex.from_product([models, ["auc", "pauc"]]))
    wide = wide.rename(columns={"auc": "AUC", "pauc": "pAUC"}, level=1)
    return wide.reindex(
        pd.MultiIndex.from_frame(per_id[["machine_type", "machine_id"]].drop_duplicates())
    )


def comparison_table(ours: pd.DataFrame) -> pd.DataFrame:
    """Our per-ID results beside the paper's Table 2, with the differences. Chapters 5, 9.

    Parameters
    ----------
    ours
        :func:`per_id_table` output with a ``model`` column (McClish pAUC, like the paper).

    Returns
    -------
    pandas.DataFrame
        ``model``, ``machine_type``, ``machine_id``, ``auc`` (with ``auc_low`` and
        ``auc_high`` when ``ours`` has intervals), ``paper_auc``, ``auc_diff``, the same
        for ``pauc`` (percentage points). Rows whose machine ID is not in the paper (a
        synthetic set may differ) keep NaN paper values.
    """
    paper = published.table2_long()
    interval = [c for c in ("auc_low", "auc_high", "pauc_low", "pauc_high") if c in ours]
    merged = ours[["model", "machine_type", "machine_id", "auc", "pauc", *interval]].merge(
        paper.rename(columns={"auc": "paper_auc", "pauc": "paper_pauc"}),
        on=["model", "machine_type", "machine_id"],
        how="left",
    )
    merged["auc_diff"] = merged["auc"] - merged["paper_auc"]
    merged["pauc_diff"] = merged["pauc"] - merged["paper_pauc"]
    columns = ["model", "machine_type", "machine_id"]
    for metric in ("auc", "pauc"):
        bounds = [c for c in (f"{metric}_low", f"{metric}_high") if c in merged]
        columns += [metric, *bounds, f"paper_{metric}", f"{metric}_diff"]
    return merged[columns]


def per_kind_table(
    scores: pd.DataFrame,
    planted: pd.DataFrame,
    *,
    n_boot: int = metrics.N_BOOT,
    seed: int = 0,
    level: float = metrics.LEVEL,
) -> pd.DataFrame:
    """AUC (%) of each model against each kind of planted anomaly, with intervals. Chapters 5, 7.

    For every machine ID, its normal test clips against its anomalous clips of one kind
    (``planted``: :func:`aadlib.synth.anomaly_table`); the AUCs are averaged over the IDs
    that have that kind, and the interval comes from resampling within each ID (and, with
    a ``seed`` column, the training runs too, as in :func:`per_id_table`). Returns
    ``model``, ``kind``, ``auc``, ``auc_low``, ``auc_high``, ``n_anomaly`` (clips).
    """
    kinds = planted[["path", "kind"]].assign(path=lambda t: t.path.astype(str))
    tagged = scores.assign(path=scores["path"].astype(str)).merge(kinds, on="path", how="left")
    rows = []
    for (model, kind), anomalies in tagged[tagged.label == "anomaly"].groupby(["model", "kind"]):
        per_id, replicates = [], []
        for key, group in anomalies.groupby(["machine_type", "machine_id"]):
            normal = tagged[
                (tagged.model == model)
                & (tagged.label == "normal")
                & (tagged.machine_type == key[0])
                & (tagged.machine_id == key[1])
            ]
            y, runs = _runs(pd.concat([normal, group]))
            per_id.append(np.mean([metrics.auc(y, run) for run in runs]))
            boot = metrics.bootstrap_runs(y, [runs], n_boot, _id_seed(seed, model, kind, *key))
            replicates.append(boot["auc"][0])
        low, high = metrics.interval(100 * np.mean(replicates, axis=0), level)
        rows.append(
            {
                "model": model,
                "kind": kind,
                "auc": 100 * float(np.mean(per_id)),
                "auc_low": low,
                "auc_high": high,
                "n_anomaly": len(anomalies.drop_duplicates(["machine_type", "machine_id", *_CLIP])),
            }
        )
    table = pd.DataFrame(rows)
    table["_m"] = table["model"].map(model_order)
    return table.sort_values(["_m", "kind"]).drop(columns="_m").reset_index(drop=True)


def seed_spread(scores: pd.DataFrame) -> pd.DataFrame:
    """How much the training seed moves each model's per-type average AUC (%). Chapter 5.

    For every model with several training runs in ``scores`` (a ``seed`` column,
    :func:`aadlib.pipeline.seed_scores`): one row per (model, machine type) with each
    run's average AUC over IDs (columns ``seed 0``, ``seed 1``, ...), their ``mean``, their
    ``spread`` (largest minus smallest) and their standard deviation ``std``. Models
    trained once are left out; without any, the table is empty.
    """
    columns = ["model", "machine_type", "mean", "spread", "std"]
    if "seed" not in scores.columns:
        return pd.DataFrame(columns=columns)
    runs = scores.groupby("model")["seed"].nunique()
    repeated = scores[scores["model"].map(runs) > 1]
    if repeated.empty:
        return pd.DataFrame(columns=columns)
    averages = pd.concat(
        [
            per_id_table(run.drop(columns="seed")).assign(seed=run_seed)
            for run_seed, run in repeated.groupby("seed")
        ]
    )
    averages = averages[averages["machine_id"] == "average"]
    wide = averages.pivot_table(index=["model", "machine_type"], columns="seed", values="auc")
    per_run = wide.to_numpy()
    wide.columns = [f"seed {s}" for s in wide.columns]
    wide = wide.assign(
        mean=per_run.mean(axis=1),
        spread=per_run.max(axis=1) - per_run.min(axis=1),
        std=per_run.std(axis=1, ddof=1),
    ).reset_index()
    return _ordered(wide.assign(machine_id="average"), ["model", "machine_id"]).drop(
        columns="machine_id"
    )


def summary_table(per_id: pd.DataFrame, metric: str = "auc", models=None) -> pd.DataFrame:
    """Per-type averages with their 95 % intervals as text, one row per detector. Chapters 7, 9.

    ``per_id`` is :func:`per_id_table` output with ``ci=True``. Cells read
    ``"87.1 [83.0, 90.8]"``; the last column, ``mean``, is the mean over the types, with
    its interval where ``per_id`` has rows over all types (``overall=True``).
    ``models`` picks and orders the rows (default: the table's order).
    """
    averages = per_id[per_id["machine_id"] == "average"]
    models = list(models) if models is not None else list(dict.fromkeys(averages["model"]))
    over_types = averages["machine_type"] == OVERALL
    columns = type_order(averages.loc[~over_types, "machine_type"])
    table = pd.DataFrame(index=pd.Index(models, name="detector"), columns=[*columns, "mean"])
    means = averages[~over_types].groupby("model")[metric].mean()
    table["mean"] = [f"{means[m]:.1f}" for m in models]
    for row, text in zip(averages.itertuples(), with_intervals(averages, metric)):
        if row.model in table.index:
            column = "mean" if row.machine_type == OVERALL else row.machine_type
            table.loc[row.model, column] = text
    return table


def difference_table(comparisons: dict, metric: str = "auc") -> pd.DataFrame:
    """Paired differences to a reference detector per type, as text, one row each. Chapter 7.

    ``comparisons`` maps a detector's name to :func:`compare_models` output
    (that detector first). Cells read ``"+3.2 [+0.4, +6.1]"``, with ``*`` where the AUC
    difference is beyond the noise (its interval excludes 0). Where the comparison's
    ``undecided`` column names models (they stopped while still improving), the cell
    reads ``"+3.2 [+0.4, +6.1] undecided"`` and carries no ``*``.
    """
    rows = {}
    for name, comparison in comparisons.items():
        averages = comparison[comparison["machine_id"] == "average"]
        cells = {}
        for row in averages.itertuples():
            value, low, high = (getattr(row, f"{metric}_diff{s}") for s in ("", "_low", "_high"))
            mark = " *" if row.beyond_noise else ""
            if _undecided_models(row):
                mark = " undecided"
            cells[row.machine_type] = f"{value:+.1f} [{low:+.1f}, {high:+.1f}]{mark}"
        rows[name] = cells
    table = pd.DataFrame.from_dict(rows, orient="index")
    return table[type_order(table.columns)].rename_axis("detector")


def _undecided_models(row) -> list[str]:
    """The models a comparison row names as stopped while improving (none without the column)."""
    names = getattr(row, "undecided", "") if not isinstance(row, dict) else row.get("undecided")
    return [n for n in str(names or "").split(", ") if n and n != "nan"]


def _overall_verdict(overall: pd.DataFrame) -> str:
    if overall.empty:
        return ""
    row = overall.iloc[0]
    named = dict.fromkeys(wording.title(m) for m in _undecided_models(row.to_dict()))
    reason = wording.undecided_reason(named)
    return reason or wording.difference_verdict(row["auc_diff_low"], row["auc_diff_high"])


def noise_counts(comparisons: dict) -> pd.DataFrame:
    """For each detector, in how many types it is better, worse or within the noise. Chapter 7.

    ``comparisons`` as for :func:`difference_table`; counted on the per-type AUC
    differences: ``better`` and ``worse`` are beyond the noise, ``within_noise`` is not;
    ``undecided`` counts the types where a model of the pair stopped while improving
    (the comparison's ``undecided`` column), which count in none of the three; ``types``
    is their number. ``overall`` is the verdict on the difference over all types
    together (the comparison's ``"all types"`` row; empty without one), or
    :func:`aadlib.wording.undecided_reason` where that row is undecided.
    """
    rows = []
    for name, comparison in comparisons.items():
        averages = comparison[comparison["machine_id"] == "average"]
        overall = averages[averages["machine_type"] == OVERALL]
        averages = averages[averages["machine_type"] != OVERALL]
        undecided = np.array([bool(_undecided_models(r)) for r in averages.itertuples()], bool)
        beyond = averages["beyond_noise"].astype(bool).to_numpy() & ~undecided
        rows.append(
            {
                "detector": name,
                "better": int((beyond & (averages["auc_diff"] > 0).to_numpy()).sum()),
                "worse": int((beyond & (averages["auc_diff"] < 0).to_numpy()).sum()),
                "within_noise": int((~beyond & ~undecided).sum()),
                "undecided": int(undecided.sum()),
                "types": len(averages),
                "overall": _overall_verdict(overall),
            }
        )
    return pd.DataFrame(rows).set_index("detector")


def with_intervals(table: pd.DataFrame, metric: str = "auc", digits: int = 1) -> pd.Series:
    """``metric`` and its interval as text, e.g. ``"78.3 [74.1, 82.0]"``, for display.

    The space inside the brackets does not break, so a narrow table column wraps a cell
    between the value and its interval, never inside the interval. Chapters 4, 5, 7, 9, 10.
    """
    value, low, high = (table[c] for c in (metric, f"{metric}_low", f"{metric}_high"))
    number = f"{{:.{digits}f}}".format
    return value.map(number) + " [" + low.map(number) + ",\u00a0" + high.map(number) + "]"


def _fold_replicates(model_scores: pd.DataFrame, folds: list, n_boot: int, seed: int):
    """AUC and partial-area replicates per fold, each resample shared by every fold.

    The anomalous clips are tested in every fold: one draw of them serves all folds, so
    the average over folds is not credited with more independent clips than there are.
    """
    clip = model_scores["label"] + "/" + model_scores["index"].astype(str)
    anomalies = sorted(set(clip[model_scores["label"] == "anomaly"]))
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(anomalies), size=(n_boot, len(anomalies)))
    areas, partials = [], []
    for fold in folds:
        part = model_scores[model_scores["fold"] == fold]
        by_clip = pd.Series(part["score"].to_numpy(), index=clip[part.index])
        normal = by_clip[part["label"].to_numpy() == "normal"].to_numpy()
        missing = set(anomalies) - set(by_clip.index)
        if missing or len(normal) == 0:
            raise ValueError(f"fold {fold}: needs normal clips and every anomalous clip")
        picks = rng.integers(0, len(normal), size=(n_boot, len(normal)))
        values = np.hstack([normal[picks], by_clip[anomalies].to_numpy()[drawn]])
        y = np.r_[np.zeros(len(normal)), np.ones(len(anomalies))]
        area, partial = metrics.roc_areas(y, values)
        areas.append(area)
        partials.append(partial)
    return np.array(areas), np.array(partials)


def fold_table(
    scores: pd.DataFrame,
    pauc: str = PAUC_DEFAULT,
    *,
    n_boot: int = metrics.N_BOOT,
    seed: int = 0,
    level: float = metrics.LEVEL,
) -> pd.DataFrame:
    """AUC and pAUC (%) per model and fold, and their average over folds, with intervals.

    Chapter 10. ``scores`` holds, per ``model`` and ``fold``, the scores of that fold's
    test clips: its own normal clips and every anomalous clip (the folds of
    :func:`aadlib.folders.layout_recordings`); clips are known by ``label`` and
    ``index``. The ``average`` row's interval resamples the anomalous clips once for all
    folds and each fold's normal clips apart, then averages the folds. Models come in
    Table 2's order, other detectors after; each model's folds in order, then its
    ``average``.
    """
    pauc_fn = metrics.pauc_function(pauc)
    rows = []
    for model in sorted(scores["model"].unique(), key=model_order):  # Table 2's order
        part = scores[scores["model"] == model]
        folds = sorted(part["fold"].unique())
        areas, partials = _fold_replicates(part, folds, n_boot, _id_seed(seed, model))
        replicates = list(zip(100 * areas, 100 * metrics.standardise(partials, pauc)))
        fold_rows = []
        for fold, fold_replicates in zip(folds, replicates):
            counted = part[part["fold"] == fold]
            y, s = (counted["label"] == "anomaly").to_numpy(), counted["score"].to_numpy()
            row = {"model": model, "fold": str(fold), "auc": 100 * metrics.auc(y, s)}
            row.update(pauc=100 * pauc_fn(y, s), n_normal=int((~y).sum()), n_anomaly=int(y.sum()))
            fold_rows.append(_add_interval(row, *fold_replicates, level))
        average = _roll_up(pd.DataFrame(fold_rows), replicates, level, model=model, fold="average")[
            0
        ]
        # The anomalous clips are tested in every fold: the average counts each clip once.
        unique = part.drop_duplicates(["label", "index"])
        average["n_normal"] = int((unique["label"] == "normal").sum())
        average["n_anomaly"] = int((unique["label"] == "anomaly").sum())
        rows += [*fold_rows, average]
    return pd.DataFrame(rows)


@dataclass
class Reproduction:
    """What :func:`write_reproduction` produced: both tables and the files written."""

    comparison: pd.DataFrame
    table: pd.DataFrame
    files: list[Path] = field(default_factory=list)


def write_reproduction(scores: pd.DataFrame, folder: str | Path, caption: str = "") -> Reproduction:
    """Write ``table.csv``, ``comparison.csv`` and ``comparison.png`` into ``folder``. Chapter 5.

    The comparison uses the McClish pAUC, as the paper's Table 2; ``table.csv`` holds
    both pAUC definitions. Every file is written atomically.
    """
    folder = Path(folder)
    comparison = comparison_table(per_id_table(scores, pauc=PAUC_DEFAULT, ci=True))
    table = results_table(scores)
    files = [
        write_csv(table, folder / "table.csv"),
        write_csv(comparison, folder / "comparison.csv"),
    ]
    fig, axes = plt.subplots(2, 1, figsize=(10, 7), layout="constrained")
    for ax, metric in zip(axes, ("auc", "pauc")):
        plots.paper_vs_ours(comparison, metric, ax=ax)
    axes[0].set_title(f"Paper (light) vs ours (solid){', ' + caption if caption else ''}")
    files.append(write_atomic(folder / "comparison.png", lambda tmp: fig.savefig(tmp, dpi=120)))
    plt.close(fig)  # chapters draw their own copy; this one is for the file
    return Reproduction(comparison, table, files)
