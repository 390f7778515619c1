"""Our Table 2 beside the paper's, written as CSV files and a figure.

Chapter: ``notebooks/05_reproducing_the_tables.ipynb``; ``aadlib reproduce`` calls it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import metrics, plots, profiles
from ._io import write_atomic, write_csv
from .pipeline import comparison_table, results_table

__all__ = ["Reproduction", "write_reproduction"]


@dataclass
class Reproduction:
    """What :func:`write_reproduction` produced: both tables and the files written."""

    comparison: pd.DataFrame
    table: pd.DataFrame
    files: list[Path] = field(default_factory=list)


def write_reproduction(scores, results: str | Path, profile=None) -> Reproduction:
    """Write ``table.csv``, ``comparison.csv`` and ``comparison.png`` under ``results``.

    The comparison uses the McClish pAUC, as the paper's Table 2; ``table.csv`` holds
    both pAUC definitions.
    """
    profile = profiles.get_profile(profile)
    results = Path(results)
    ours = metrics.per_id_table(scores, pauc="mcclish")
    comparison = comparison_table(ours)
    table = results_table(scores)
    files = [
        write_csv(table, results / "table.csv"),
        write_csv(comparison, results / "comparison.csv"),
    ]
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(10, 7), layout="constrained")
    data_note = "real DCASE 2020 data" if profile.data == "real" else "synthetic data"
    for ax, metric in zip(axes, ("auc", "pauc")):
        plots.paper_vs_ours(comparison, metric, ax=ax)
    axes[0].set_title(f"Paper (light) vs ours (solid), profile {profile.name}, {data_note}")
    files.append(write_atomic(results / "comparison.png", lambda tmp: fig.savefig(tmp, dpi=120)))
    plt.close(fig)  # chapters draw their own copy; this one is for the file
    return Reproduction(comparison, table, files)
