"""Result tables: per-ID AUC/pAUC, the paper's Table 2 layout, our results beside the paper's.

Chapters 3 to 5 build their tables here; ``aadlib evaluate``, ``report`` and
``reproduce`` write them. No TensorFlow: a table is computed from a scores file alone.

A *scores table* has one row per test clip with ``model``, ``machine_type``,
``machine_id``, ``label`` (``"normal"``/``"anomaly"``) and ``score``
(:func:`aadlib.pipeline.score_machine_type` writes it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from . import metrics, plots, reference
from ._io import write_atomic, write_csv
from .data import MACHINE_TYPES

__all__ = [
    "SCORE_COLUMNS",
    "check_scores",
    "per_id_table",
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


def per_id_table(scores: pd.DataFrame, pauc: str = "mcclish") -> pd.DataFrame:
    """AUC and pAUC (%) per machine type and ID from a scores table. Chapters 3 to 5.

    Parameters
    ----------
    scores
        One row per test clip (``model`` is optional here).
    pauc
        ``"mcclish"`` (as the paper's table) or ``"dcase"``.

    Returns
    -------
    pandas.DataFrame
        Columns ``model`` (when given), ``machine_type``, ``machine_id``, ``auc``, ``pauc``,
        ``n_normal``, ``n_anomaly``; ``machine_id`` ``"average"`` rows hold the per-type mean
        over IDs, as in the paper's Table 2.
    """
    pauc_fn = metrics.pauc_function(pauc)
    keys = [k for k in ("model", "machine_type") if k in scores.columns]
    rows = []
    for group_key, group in scores.groupby(keys + ["machine_id"], sort=True):
        y = (group["label"] == "anomaly").to_numpy()
        row = dict(zip(keys + ["machine_id"], group_key))
        row.update(
            auc=100 * metrics.auc(y, group["score"]),
            pauc=100 * pauc_fn(y, group["score"]),
            n_normal=int((~y).sum()),
            n_anomaly=int(y.sum()),
        )
        rows.append(row)
    per_id = pd.DataFrame(rows)
    per_id["machine_id"] = per_id["machine_id"].astype(int).astype(str)
    averages = (
        per_id.groupby(keys, sort=False)[["auc", "pauc", "n_normal", "n_anomaly"]]
        .agg({"auc": "mean", "pauc": "mean", "n_normal": "sum", "n_anomaly": "sum"})
        .reset_index()
        .assign(machine_id="average")
    )
    table = pd.concat([per_id, averages], ignore_index=True)
    order = {t: i for i, t in enumerate(_type_order(table["machine_type"]))}
    table["_type"] = table["machine_type"].map(order)
    table["_avg"] = table["machine_id"] == "average"
    table["_id"] = pd.to_numeric(table["machine_id"], errors="coerce")
    table = table.sort_values(keys[:-1] + ["_type", "_avg", "_id"]).drop(
        columns=["_type", "_avg", "_id"]
    )
    return table.reset_index(drop=True)


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
    wide = wide.swaplevel(0, 1, axis=1).sort_index(axis=1, level=0, sort_remaining=False)
    wide = wide.rename(columns={"auc": "AUC", "pauc": "pAUC"}, level=1)
    return wide.reindex(
        pd.MultiIndex.from_frame(per_id[["machine_type", "machine_id"]].drop_duplicates())
    )


def comparison_table(ours: pd.DataFrame) -> pd.DataFrame:
    """Our per-ID results beside the paper's Table 2, with the differences. Chapter 5.

    Parameters
    ----------
    ours
        :func:`per_id_table` output with a ``model`` column (McClish pAUC, like the paper).

    Returns
    -------
    pandas.DataFrame
        ``model``, ``machine_type``, ``machine_id``, ``auc``, ``paper_auc``, ``auc_diff``,
        ``pauc``, ``paper_pauc``, ``pauc_diff`` (percentage points). Rows whose machine
        ID is not in the paper (a synthetic set may differ) keep NaN paper values.
    """
    paper = reference.table2_long()
    merged = ours[["model", "machine_type", "machine_id", "auc", "pauc"]].merge(
        paper.rename(columns={"auc": "paper_auc", "pauc": "paper_pauc"}),
        on=["model", "machine_type", "machine_id"],
        how="left",
    )
    merged["auc_diff"] = merged["auc"] - merged["paper_auc"]
    merged["pauc_diff"] = merged["pauc"] - merged["paper_pauc"]
    columns = ["model", "machine_type", "machine_id"]
    for metric in ("auc", "pauc"):
        columns += [metric, f"paper_{metric}", f"{metric}_diff"]
    return merged[columns]


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
    comparison = comparison_table(per_id_table(scores, pauc="mcclish"))
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
