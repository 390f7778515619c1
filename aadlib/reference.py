"""The paper's tables and other published figures, as data.

Chapter: ``notebooks/05_reproducing_the_tables.ipynb``.

The CSV files live in ``aadlib/resources`` (their sources are listed in its README).
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = [
    "resource_path",
    "table1",
    "table2",
    "table2_long",
    "baseline_dev_results",
    "PAPER_ERRATA",
]

#: Figures of the paper that disagree with other published figures. The tables keep the
#: paper's values as printed; these notes say what the inconsistency is.
PAPER_ERRATA: tuple[dict, ...] = (
    {
        "table": "table1",
        "machine_type": "fan",
        "machine_id": "2",
        "column": "test_files",
        "printed": 549,
        "consistent": 459,
        "note": "dev_data_fan.zip extracts 1,875 test clips; with 459 for ID 2 the IDs add "
        "up to that, with 549 they do not (transposed digits)",
    },
    {
        "table": "table2",
        "machine_type": "pump",
        "machine_id": "average",
        "column": "cnn_auc",
        "printed": 72.07,
        "consistent": 73.07,
        "note": "the mean of the four per-ID CNN AUCs printed for pump is 73.07; the text's "
        "claim that the baseline beats the CNN AE on pump AUC rests on the printed 72.07",
    },
)


def resource_path(name: str):
    """Path of a file shipped in ``aadlib/resources``."""
    return resources.files("aadlib") / "resources" / name


def _read(name: str) -> pd.DataFrame:
    with resource_path(name).open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh)


def table1() -> pd.DataFrame:
    """Table 1 (development part): training and test clips per machine type and ID."""
    table = _read("table1_dataset_sizes.csv")
    return table.drop(columns=["split"])


def table2() -> pd.DataFrame:
    """Table 2 as published: AUC and pAUC (%) per ID and per-type average.

    Columns: ``machine_type``, ``machine_id`` (``"1"``..., or ``"average"``) and
    ``{baseline,dense,cnn}_{auc,pauc}``. pAUC is McClish-standardised.
    """
    table = _read("table2.csv")
    table["machine_id"] = table["machine_id"].astype(str)
    return table


def table2_long() -> pd.DataFrame:
    """Table 2 in long form: one row per (model, machine type, ID) with ``auc``, ``pauc``."""
    wide = table2()
    parts = []
    for model in ("baseline", "dense", "cnn"):
        part = wide[["machine_type", "machine_id", f"{model}_auc", f"{model}_pauc"]]
        part = part.rename(columns={f"{model}_auc": "auc", f"{model}_pauc": "pauc"})
        parts.append(part.assign(model=model))
    return pd.concat(parts, ignore_index=True)[
        ["model", "machine_type", "machine_id", "auc", "pauc"]
    ]


def baseline_dev_results() -> pd.DataFrame:
    """The DCASE 2020 baseline's published development results (average over IDs, %)."""
    return _read("baseline_dev_results.csv")
