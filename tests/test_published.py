"""Tests of aadlib.published: the paper's tables, as shipped data, are self-consistent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aadlib import paper, published
from aadlib.data import DEV_IDS, MACHINE_TYPES, read_resource_csv
from aadlib.published import (
    PAPER_ERRATA,
    baseline_dev_results,
    table1,
    table2,
    table2_long,
)

MODELS = ("baseline", "dense", "cnn")
N_IDS = sum(len(ids) for ids in DEV_IDS.values())  # 23


def test_table1_rows_and_ids():
    t1 = table1()
    assert N_IDS == 23
    assert len(t1) == 23
    assert list(t1.columns) == ["machine_type", "machine_id", "train_files", "test_files"]
    for mtype in MACHINE_TYPES:
        ids = tuple(t1[t1.machine_type == mtype].machine_id)
        assert ids == DEV_IDS[mtype], mtype
    assert list(dict.fromkeys(t1.machine_type)) == list(MACHINE_TYPES)
    assert (t1.train_files > 0).all() and (t1.test_files > 0).all()


def test_table1_matches_archive_registry():
    # The archive registry lists train/test files per type; Table 1 splits them per ID.
    archives = read_resource_csv("dcase2020_task2_archives.csv")
    dev = archives[archives.file.str.startswith("dev_data_")]
    # The one known disagreement is documented in PAPER_ERRATA; the consistent table
    # applies its correction, the printed one differs by exactly that.
    sums = table1(consistent=True).groupby("machine_type")[["train_files", "test_files"]].sum()
    printed = table1().groupby("machine_type")[["train_files", "test_files"]].sum()
    (erratum,) = [e for e in PAPER_ERRATA if e["table"] == "table1"]
    difference = (printed - sums).stack()
    assert difference[difference != 0].to_dict() == {
        (erratum["machine_type"], erratum["column"]): erratum["printed"] - erratum["consistent"]
    }
    for row in dev.itertuples():
        mtype = row.file.removeprefix("dev_data_").removesuffix(".zip")
        assert sums.loc[mtype, "train_files"] == row.train_files, mtype
        assert sums.loc[mtype, "test_files"] == row.test_files, mtype


def test_table1_erratum_is_the_printed_value():
    (erratum,) = [e for e in PAPER_ERRATA if e["table"] == "table1"]
    t1 = table1()
    row = t1[
        (t1.machine_type == erratum["machine_type"]) & (t1.machine_id == int(erratum["machine_id"]))
    ]
    assert row[erratum["column"]].item() == erratum["printed"]


def test_table2_shape_and_ids():
    t2 = table2()
    assert len(t2) == N_IDS + len(MACHINE_TYPES)  # 29
    assert list(t2.columns) == ["machine_type", "machine_id"] + [
        f"{m}_{metric}" for m in MODELS for metric in ("auc", "pauc")
    ]
    assert t2.machine_id.map(type).eq(str).all()
    for mtype in MACHINE_TYPES:
        ids = list(t2[t2.machine_type == mtype].machine_id)
        assert ids == [str(i) for i in DEV_IDS[mtype]] + ["average"], mtype
    values = t2.drop(columns=["machine_type", "machine_id"]).to_numpy()
    assert np.all((values > 40) & (values <= 100))  # percentages, McClish pAUC >= ~50


@pytest.mark.parametrize("mtype", MACHINE_TYPES)
@pytest.mark.parametrize("column", [f"{m}_{x}" for m in MODELS for x in ("auc", "pauc")])
def test_table2_averages_are_means_of_ids(mtype, column):
    t2 = table2()
    part = t2[t2.machine_type == mtype]
    per_id = part[part.machine_id != "average"][column]
    average = part[part.machine_id == "average"][column]
    assert len(average) == 1
    assert len(per_id) == len(DEV_IDS[mtype])
    errata = [
        e
        for e in PAPER_ERRATA
        if e["table"] == "table2" and e["machine_type"] == mtype and e["column"] == column
    ]
    if errata:  # the paper's printed average disagrees with its per-ID values
        assert average.iloc[0] == errata[0]["printed"]
        assert abs(errata[0]["consistent"] - per_id.mean()) <= 0.02
    else:
        assert abs(average.iloc[0] - per_id.mean()) <= 0.02


def test_table2_long():
    long = table2_long()
    assert list(long.columns) == ["model", "machine_type", "machine_id", "auc", "pauc"]
    assert len(long) == 3 * 29
    assert long.groupby("model").size().to_dict() == {m: 29 for m in MODELS}
    wide = table2()
    for model in MODELS:
        part = long[long.model == model].reset_index(drop=True)
        np.testing.assert_array_equal(part.auc, wide[f"{model}_auc"])
        np.testing.assert_array_equal(part.pauc, wide[f"{model}_pauc"])
        assert list(part.machine_id) == list(wide.machine_id)
    assert not long.duplicated(["model", "machine_type", "machine_id"]).any()


def test_baseline_dev_results_cover_types():
    base = baseline_dev_results()
    assert set(base.machine_type) == set(MACHINE_TYPES)
    assert {"auc", "pauc"} <= set(base.columns)


def test_table2_consistent_applies_the_pump_erratum():
    (erratum,) = [e for e in PAPER_ERRATA if e["table"] == "table2"]
    printed, corrected = table2(), table2(consistent=True)
    where = (printed.machine_type == erratum["machine_type"]) & (printed.machine_id == "average")
    assert printed.loc[where, erratum["column"]].item() == erratum["printed"]
    assert corrected.loc[where, erratum["column"]].item() == erratum["consistent"]
    # The corrected value is the mean of the printed per-ID values.
    ids = printed[
        (printed.machine_type == erratum["machine_type"]) & (printed.machine_id != "average")
    ]
    assert ids[erratum["column"]].mean() == pytest.approx(erratum["consistent"], abs=0.005)
    others = ~where
    pd.testing.assert_frame_equal(printed[others], corrected[others])
    long = table2_long(consistent=True)
    row = long[
        (long.model == "cnn") & (long.machine_type == "pump") & (long.machine_id == "average")
    ]
    assert row.auc.item() == erratum["consistent"]


def test_measured_step_rates_cover_every_kind_at_the_papers_batch():
    rates = published.measured_step_rates()
    assert {"device", "kind", "step", "batch", "steps_per_execution", "xla"} <= set(rates)
    assert (rates["steps_per_second"] > 0).all()
    for kind in paper.MODEL_KINDS:
        mine = rates[rates.kind == kind]
        assert set(mine["batch"]) == {paper.MODELS[kind].batch_size}
        plain = mine[(mine.step == "training") & (mine.steps_per_execution == 1) & ~mine.xla]
        assert len(plain) >= 1, f"{kind}: no rate of the plain training loop"


def test_the_development_download_is_the_six_type_archives():
    from aadlib import data

    archives = data.read_resource_csv("dcase2020_task2_archives.csv")
    development = archives[archives.file.str.startswith("dev_data_")]
    assert len(development) == 6
    assert published.development_archive_bytes() == development.size_bytes.sum()
    assert published.development_archive_bytes() < archives.size_bytes.sum()
