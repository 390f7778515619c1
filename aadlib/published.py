"""The paper's tables and other published figures, as data.

Chapters 1 (Table 1) and 5 (Table 2 and the baseline, and the training speeds that
``make bench-gpu`` measured).

The CSV files live in ``aadlib/resources`` (their sources are listed in its README).
"""

from __future__ import annotations

import functools

import pandas as pd

from . import paper
from .data import CLIP_SECONDS, read_resource_csv
from .paper import MODEL_KINDS

__all__ = [
    "table1",
    "table2",
    "table2_long",
    "baseline_dev_results",
    "real_logmel_stats",
    "training_workload",
    "measured_step_rates",
    "development_archive_bytes",
    "PAPER_ERRATA",
    "MIMII_NORMAL_TEST_CLIPS",
    "paper_averages",
    "published_results",
]

#: Normal test clips per machine ID of the MIMII types (fan, pump, slider, valve) in the
#: development set: the rest of each ID's test clips (Table 1) are anomalous (DCASE 2020
#: Task 2 description, Koizumi et al. 2020).
MIMII_NORMAL_TEST_CLIPS = 100

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


@functools.cache
def _table1() -> pd.DataFrame:
    table = read_resource_csv("table1_dataset_sizes.csv")
    return table[table["split"] == "dev"].drop(columns=["split"]).reset_index(drop=True)


def table1(consistent: bool = False) -> pd.DataFrame:
    """Table 1 (development part): training and test clips per machine type and ID. Chapters 1, 5.

    Columns ``machine_type``, ``machine_id``, ``train_files``, ``test_files``: as printed,
    or with ``consistent=True`` with the corrections of :data:`PAPER_ERRATA` applied (the
    counts that add up to what the archives extract to).
    """
    table = _table1().copy()
    return _corrected(table, "table1") if consistent else table


def _corrected(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """``table`` with the corrections of :data:`PAPER_ERRATA` for table ``name`` applied."""
    for erratum in PAPER_ERRATA:
        if erratum["table"] == name:
            row = (table.machine_type == erratum["machine_type"]) & (
                table.machine_id.astype(str) == erratum["machine_id"]
            )
            table.loc[row, erratum["column"]] = erratum["consistent"]
    return table


def table2(consistent: bool = False) -> pd.DataFrame:
    """Table 2 as published: AUC and pAUC (%) per ID and per-type average. Chapters 4, 5, 9, 10.

    Columns: ``machine_type``, ``machine_id`` (``"1"``..., or ``"average"``) and
    ``{baseline,dense,cnn}_{auc,pauc}``. pAUC is McClish-standardised. With
    ``consistent=True`` the corrections of :data:`PAPER_ERRATA` are applied (the pump
    average that its per-ID values give).
    """
    table = read_resource_csv("table2.csv")
    table["machine_id"] = table["machine_id"].astype(str)
    return _corrected(table, "table2") if consistent else table


def table2_long(consistent: bool = False) -> pd.DataFrame:
    """Table 2 in long form: one row per (model, machine type, ID) with ``auc``, ``pauc``.

    Chapters 5, 10. The models are ``baseline`` (the DCASE 2020 baseline) and the kinds of
    :data:`aadlib.paper.MODELS` that the paper reported (a kind added to them has no
    published row); ``consistent`` as in :func:`table2`.
    """
    wide = table2(consistent)
    parts = []
    for model in dict.fromkeys(("baseline", *MODEL_KINDS)):
        if f"{model}_auc" not in wide:
            continue
        part = wide[["machine_type", "machine_id", f"{model}_auc", f"{model}_pauc"]]
        part = part.rename(columns={f"{model}_auc": "auc", f"{model}_pauc": "pauc"})
        parts.append(part.assign(model=model))
    return pd.concat(parts, ignore_index=True)[
        ["model", "machine_type", "machine_id", "auc", "pauc"]
    ]


def baseline_dev_results() -> pd.DataFrame:
    """The DCASE 2020 baseline's published development results (average over IDs, %). Chapter 5."""
    return read_resource_csv("baseline_dev_results.csv")


@functools.cache
def _real_logmel_stats() -> pd.DataFrame:
    return read_resource_csv("real_logmel_stats.csv")


def real_logmel_stats() -> pd.DataFrame:
    """Per machine type and mel bin: mean and std (dB) of the real training log-mels.

    Columns ``machine_type``, ``mel_bin``, ``mean_db``, ``std_db``, from the scaler files
    published with the authors' code. Chapter 2 compares the synthetic set with them.
    """
    return _real_logmel_stats().copy()


def training_workload(kinds=MODEL_KINDS) -> pd.DataFrame:
    """Training windows per epoch of the full reproduction, per machine type. Chapter 5.

    From Table 1's training clips, the clip durations and each kind's window and hop
    (:data:`aadlib.paper.MODELS`), with the validation share held out. Columns:
    ``training clips`` and ``<title> windows per epoch`` for each kind.
    """
    clips = table1().groupby("machine_type", sort=False)["train_files"].sum()
    share = 1.0 - paper.VALIDATION_FRACTION
    frames = pd.Series(
        {t: 1 + int(CLIP_SECONDS[t] * paper.SAMPLE_RATE) // paper.HOP_LENGTH for t in clips.index}
    )
    workload = pd.DataFrame({"training clips": (share * clips).round().astype(int)})
    for kind in kinds:
        spec = paper.model_spec(kind)
        per_clip = (frames - spec.window_frames) // spec.hop + 1
        workload[f"{spec.title} windows per epoch"] = (share * clips * per_clip).round().astype(int)
    return workload


def measured_step_rates() -> pd.DataFrame:
    """Training and validation steps per second as ``make bench-gpu`` measured them. Chapter 5.

    One row per (device, model kind, step, setting): ``device`` and ``tensorflow`` (where
    and with what it was measured), ``measured`` (the date), ``kind``, ``step``
    (``"training"`` or ``"validation"``), ``batch`` (the paper's), the speed switches of
    :class:`aadlib.profiles.Acceleration` (``steps_per_execution``, ``xla``,
    ``precision``), ``steps_per_second`` (the median of ``rounds`` alternating rounds,
    each fed by the training input pipeline from a full-size synthetic type). Devices
    appear as they were measured: a device missing here has not been measured yet.
    """
    return read_resource_csv("step_rates.csv")


def development_archive_bytes() -> int:
    """Bytes to download for the real development set: its six archives on Zenodo. Chapter 5."""
    archives = read_resource_csv("dcase2020_task2_archives.csv")
    return int(archives.loc[archives["file"].str.startswith("dev_data_"), "size_bytes"].sum())


def paper_averages() -> pd.DataFrame:
    """The paper's Table 2 averaged over the six machine types, per model kind. Chapters 5, 7, 9.

    One row per kind (``baseline``, ``dense``, ``cnn``): ``auc`` and ``pauc`` (%,
    McClish pAUC) are the mean of the per-type averages as the paper prints them, the way
    the published systems report theirs; ``auc_corrected`` and ``pauc_corrected`` the
    same with the corrections of :data:`PAPER_ERRATA` (the pump average
    that its per-ID values give). Real-data figures of the paper, not measurements of
    this book: quote the printed value as the paper's, the correction beside it.
    """
    columns = {}
    for suffix, consistent in (("", False), ("_corrected", True)):
        table = table2_long(consistent=consistent)
        averages = table[table["machine_id"] == "average"]
        means = averages.groupby("model", sort=False)[["auc", "pauc"]].mean()
        columns.update({f"{metric}{suffix}": means[metric] for metric in ("auc", "pauc")})
    means = pd.DataFrame(columns)
    return means.reindex([k for k in MODEL_KINDS if k in means.index]).reset_index()


def published_results() -> pd.DataFrame:
    """Published development-set results of stronger systems on the real data. Chapters 7, 9.

    One row per system: ``system``, ``reference`` (the bibliography key), ``family``,
    ``data``, ``auc`` and ``pauc`` (%, averages over the six machine types),
    ``pauc_definition`` (``"dcase"``: the plain partial area over FPR 0 to 0.1, divided
    by 0.1) and ``notes``. These are figures printed by their authors on the real DCASE
    2020 Task 2 development set, not measurements of this book.
    """
    return read_resource_csv("published_systems.csv")
