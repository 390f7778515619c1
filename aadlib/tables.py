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

from . import metrics, plots, reference
from ._io import write_atomic, write_csv
from .data import MACHINE_TYPES
from .paper import MODEL_KINDS

__all__ = [
    "SCORE_COLUMNS",
    "check_scores",
    "per_id_table",
    "compare_models",
    "per_kind_table",
    "with_intervals",
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


def _type_order(types) -> list[str]:
    present = list(dict.fromkeys(types))
    return [t for t in MACHINE_TYPES if t in present] + [
        t for t in present if t not in MACHINE_TYPES
    ]


def _ordered(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows by model, then machine type in the paper's order, IDs numerically, average last."""
    order = {t: i for i, t in enumerate(_type_order(table["machine_type"]))}
    if "model" in table.columns:  # Table 2's column order, other detectors after
        kinds = {k: i for i, k in enumerate(MODEL_KINDS)}
        table = table.assign(_model=table["model"].map(lambda m: (kinds.get(m, len(kinds)), m)))
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


def per_id_table(
    scores: pd.DataFrame,
    pauc: str = "mcclish",
    *,
    ci: bool = False,
    n_boot: int = metrics.N_BOOT,
    seed: int = 0,
    level: float = metrics.LEVEL,
) -> pd.DataFrame:
    """AUC and pAUC (%) per machine type and ID from a scores table. Chapters 3, 4, 5, 7, 9.

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

    Returns
    -------
    pandas.DataFrame
        Columns ``model`` (when given), ``machine_type``, ``machine_id``, ``auc``, ``pauc``,
        ``n_normal``, ``n_anomaly`` and, with ``ci``, ``auc_low``, ``auc_high``,
        ``pauc_low``, ``pauc_high``; ``machine_id`` ``"average"`` rows hold the per-type
        mean over IDs, as in the paper's Table 2.
    """
    pauc_fn = metrics.pauc_function(pauc)
    keys = [k for k in ("model", "machine_type") if k in scores.columns]
    rows, replicates = [], {}
    for group_key, group in scores.groupby(keys + ["machine_id"], sort=True):
        y = (group["label"] == "anomaly").to_numpy()
        row = dict(zip(keys + ["machine_id"], group_key))
        row.update(
            auc=100 * metrics.auc(y, group["score"]),
            pauc=100 * pauc_fn(y, group["score"]),
            n_normal=int((~y).sum()),
            n_anomaly=int(y.sum()),
        )
        if ci:
            boot = metrics.bootstrap(y, group["score"], n_boot, _id_seed(seed, *group_key))
            replicates[group_key] = (100 * boot["auc"], 100 * boot[f"pauc_{pauc}"])
            _add_interval(row, *replicates[group_key], level)
        rows.append(row)
    per_id = pd.DataFrame(rows)
    averages = []
    for type_key, ids in per_id.groupby(keys, sort=False):
        row = dict(zip(keys, type_key if isinstance(type_key, tuple) else (type_key,)))
        row.update(
            machine_id="average",
            auc=ids["auc"].mean(),
            pauc=ids["pauc"].mean(),
            n_normal=int(ids["n_normal"].sum()),
            n_anomaly=int(ids["n_anomaly"].sum()),
        )
        if ci:
            per_group = [
                replicates[tuple(r[k] for k in keys + ["machine_id"])] for _, r in ids.iterrows()
            ]
            _add_interval(
                row,
                np.mean([auc for auc, _ in per_group], axis=0),
                np.mean([p for _, p in per_group], axis=0),
                level,
            )
        averages.append(row)
    per_id["machine_id"] = per_id["machine_id"].astype(int).astype(str)
    return _ordered(pd.concat([per_id, pd.DataFrame(averages)], ignore_index=True), keys)


def _add_interval(row: dict, auc_replicates, pauc_replicates, level: float) -> None:
    row["auc_low"], row["auc_high"] = metrics.interval(auc_replicates, level)
    row["pauc_low"], row["pauc_high"] = metrics.interval(pauc_replicates, level)


def compare_models(
    scores: pd.DataFrame,
    first: str,
    second: str,
    pauc: str = "mcclish",
    *,
    n_boot: int = metrics.N_BOOT,
    seed: int = 0,
    level: float = metrics.LEVEL,
) -> pd.DataFrame:
    """Paired comparison of two models on the same test clips. Chapters 3, 4, 5, 7, 9.

    Both models' scores are resampled with the same clips (a paired bootstrap), so the
    noise that the two share (which clips happen to be in the test set) cancels out of
    the difference. Returns, in percentage points of ``first`` minus ``second``:
    ``auc_diff``, ``auc_diff_low``, ``auc_diff_high``, the same for ``pauc``, and
    ``beyond_noise`` (the AUC interval excludes 0); per ID, per type (``average``) and,
    with several types, over all of them (machine type ``"all types"``, every type
    weighted alike, as the paper's overall averages).
    """
    clip = ["machine_type", "machine_id", "label", "index"]
    pair = scores[scores["model"].isin([first, second])].pivot_table(
        index=clip, columns="model", values="score"
    )
    if not {first, second} <= set(pair.columns) or pair.isna().any(axis=None):
        raise ValueError(
            f"compare_models needs both {first!r} and {second!r} scored on the same clips"
        )
    rows, replicates = [], {}
    for (machine_type, machine_id), group in pair.groupby(level=[0, 1], sort=True):
        y = group.index.get_level_values("label") == "anomaly"
        both = group[[first, second]].to_numpy().T
        boot = metrics.bootstrap(y, both, n_boot, _id_seed(seed, machine_type, machine_id))
        area, partial = metrics.roc_areas(y, both)
        point_pauc = metrics.mcclish(partial) if pauc == "mcclish" else partial / metrics.MAX_FPR
        auc_diff = 100 * (boot["auc"][0] - boot["auc"][1])
        pauc_diff = 100 * (boot[f"pauc_{pauc}"][0] - boot[f"pauc_{pauc}"][1])
        replicates[machine_type, machine_id] = (auc_diff, pauc_diff)
        row = {
            "machine_type": machine_type,
            "machine_id": str(machine_id),
            "auc_diff": 100 * (area[0] - area[1]),
            "pauc_diff": 100 * (point_pauc[0] - point_pauc[1]),
        }
        rows.append(_with_diff_interval(row, auc_diff, pauc_diff, level))
    table = pd.DataFrame(rows)
    for machine_type, ids in table.groupby("machine_type", sort=False):
        per_id = [replicates[machine_type, int(i)] for i in ids["machine_id"]]
        row = {
            "machine_type": machine_type,
            "machine_id": "average",
            "auc_diff": ids["auc_diff"].mean(),
            "pauc_diff": ids["pauc_diff"].mean(),
        }
        rows.append(
            _with_diff_interval(
                row,
                np.mean([a for a, _ in per_id], axis=0),
                np.mean([p for _, p in per_id], axis=0),
                level,
            )
        )
    types = list(dict.fromkeys(table["machine_type"]))
    if len(types) > 1:  # every type weighted alike, as the paper's overall averages
        per_type = [
            (
                np.mean(
                    [replicates[t, int(i)][0] for i in table.machine_id[table.machine_type == t]],
                    axis=0,
                ),
                np.mean(
                    [replicates[t, int(i)][1] for i in table.machine_id[table.machine_type == t]],
                    axis=0,
                ),
            )
            for t in types
        ]
        averages = pd.DataFrame(rows[len(table) :])
        overall = {
            "machine_type": "all types",
            "machine_id": "average",
            "auc_diff": averages["auc_diff"].mean(),
            "pauc_diff": averages["pauc_diff"].mean(),
        }
        rows.append(
            _with_diff_interval(
                overall,
                np.mean([a for a, _ in per_type], axis=0),
                np.mean([p for _, p in per_type], axis=0),
                level,
            )
        )
    return _ordered(pd.DataFrame(rows), ["machine_type"])


def _with_diff_interval(row: dict, auc_diff, pauc_diff, level: float) -> dict:
    row["auc_diff_low"], row["auc_diff_high"] = metrics.interval(auc_diff, level)
    row["pauc_diff_low"], row["pauc_diff_high"] = metrics.interval(pauc_diff, level)
    row["beyond_noise"] = not row["auc_diff_low"] <= 0 <= row["auc_diff_high"]
    return row


def results_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Per-ID and per-type AUC with both pAUC definitions, in percent. Chapters 3, 5."""
    mcclish = per_id_table(scores, pauc="mcclish")
    dcase = per_id_table(scores, pauc="dcase")
    table = mcclish.rename(columns={"pauc": "pauc_mcclish"})
    table.insert(table.columns.get_loc("pauc_mcclish") + 1, "pauc_dcase", dcase["pauc"].values)
    return table


def table2_layout(per_id: pd.DataFrame) -> pd.DataFrame:
    """Pivot per-model results into the paper's Table 2 shape. Chapters 4, 5.

    Rows are (machine type, machine ID or ``average``); columns are
    (model, ``AUC``/``pAUC``), in percent.
    """
    if "model" not in per_id.columns:
        raise ValueError("table2_layout needs a 'model' column (dense, cnn, ...)")
    wide = per_id.pivot_table(
        index=["machine_type", "machine_id"], columns="model", values=["auc", "pauc"], sort=False
    )
    present = list(dict.fromkeys(per_id["model"]))
    kinds = {k: i for i, k in enumerate(MODEL_KINDS)}  # Table 2's order, other detectors after
    models = sorted(present, key=lambda m: (kinds.get(m, len(kinds)), present.index(m)))
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
    paper = reference.table2_long()
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
    that have that kind, and the interval comes from resampling within each ID. Returns
    ``model``, ``kind``, ``auc``, ``auc_low``, ``auc_high``, ``n_anomaly``.
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
            y = np.r_[np.zeros(len(normal)), np.ones(len(group))]
            values = np.r_[normal["score"], group["score"]]
            per_id.append(metrics.auc(y, values))
            boot = metrics.bootstrap(y, values, n_boot, _id_seed(seed, model, kind, *key))
            replicates.append(boot["auc"])
        low, high = metrics.interval(100 * np.mean(replicates, axis=0), level)
        rows.append(
            {
                "model": model,
                "kind": kind,
                "auc": 100 * float(np.mean(per_id)),
                "auc_low": low,
                "auc_high": high,
                "n_anomaly": len(anomalies),
            }
        )
    table = pd.DataFrame(rows)
    kinds_order = {k: i for i, k in enumerate(MODEL_KINDS)}
    table["_m"] = table["model"].map(lambda m: (kinds_order.get(m, len(kinds_order)), m))
    return table.sort_values(["_m", "kind"]).drop(columns="_m").reset_index(drop=True)


def with_intervals(table: pd.DataFrame, metric: str = "auc", digits: int = 1) -> pd.Series:
    """``metric`` and its interval as text, e.g. ``"78.3 [74.1, 82.0]"``, for display. Chapter 5."""
    value, low, high = (table[c] for c in (metric, f"{metric}_low", f"{metric}_high"))
    number = f"{{:.{digits}f}}".format
    return value.map(number) + " [" + low.map(number) + ", " + high.map(number) + "]"


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
    comparison = comparison_table(per_id_table(scores, pauc="mcclish", ci=True))
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
