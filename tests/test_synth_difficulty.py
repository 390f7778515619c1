"""Tests of the synthetic set's anomaly difficulty: the generator honours the shipped
per-ID severity offsets, a lower offset makes every anomaly weaker, and the calibration's
verification (``tools/calibrate_synth.py verify``, shipped as a resource) puts the DCASE
2020 baseline's quick AUCs within the bands around the paper's baseline column."""

from __future__ import annotations

import hashlib
import json
import math
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from aadlib import published, soundmodel, synth

#: Parameters that grow with an anomaly's strength (magnitudes), per kind.
STRENGTHS = {
    "extra_tone": ("prominence_db", "harmonic_tilt_db", "resonance_shift"),
    "knocks": ("prominence_db", "detune"),
    "frequency_drift": ("drift",),
    "amplitude_modulation": ("depth", "tonal_gain_db"),
    "noise_change": ("gain_db", "tilt_db_per_octave"),
}


def _strength(value: float, name: str) -> float:
    return value if name == "prominence_db" else abs(value)


def _resource(name: str):
    return resources.files("aadlib") / "resources" / name


def _csv(name: str) -> pd.DataFrame:
    with _resource(name).open("r") as handle:
        return pd.read_csv(handle)


def test_difficulty_covers_every_id_of_the_quick_set():
    offsets = _csv(soundmodel.DIFFICULTY_RESOURCE)
    wanted = synth.dataset_counts("quick")[["machine_type", "machine_id"]]
    shipped = offsets[["machine_type", "machine_id"]]
    assert sorted(map(tuple, wanted.to_numpy())) == sorted(map(tuple, shipped.to_numpy()))
    assert np.isfinite(offsets.severity_offset).all()


def test_generator_uses_each_ids_shipped_offset():
    """The anomaly planted by default is the one planted at the ID's offset as read from
    the CSV file (and not at another ID's or at zero, where the offsets differ)."""
    offsets = _csv(soundmodel.DIFFICULTY_RESOURCE)
    for row in offsets.itertuples():
        assert soundmodel.severity_offset(row.machine_type, row.machine_id) == row.severity_offset
        for index in range(3):
            planted = soundmodel.planted_anomaly(row.machine_type, row.machine_id, index)
            assert planted == soundmodel.planted_anomaly(
                row.machine_type, row.machine_id, index, offset=row.severity_offset
            )
    distinct = offsets[offsets.severity_offset.abs() > 0.05].iloc[0]
    default = [
        soundmodel.planted_anomaly(distinct.machine_type, distinct.machine_id, i) for i in range(5)
    ]
    at_zero = [
        soundmodel.planted_anomaly(distinct.machine_type, distinct.machine_id, i, offset=0.0)
        for i in range(5)
    ]
    assert default != at_zero


@pytest.mark.parametrize("machine_type", ["fan", "slider"])
def test_lower_offset_weakens_every_anomaly(machine_type):
    """Same kind, severity and random draws at every offset; each strength parameter's
    magnitude is never larger at a lower offset, and smaller on average."""
    means = []
    for offset in (-1.0, 0.0, 0.8):
        planted = [soundmodel.planted_anomaly(machine_type, 0, i, offset=offset) for i in range(60)]
        means.append(planted)
    totals = np.zeros(3)
    for clips in zip(*means):
        assert len({(c["kind"], c["severity"]) for c in clips}) == 1
        for name in STRENGTHS[clips[0]["kind"]]:
            # Prominences are levels in dB (signed); the others magnitudes.
            values = [_strength(c["params"][name], name) for c in clips]
            assert values[0] <= values[1] <= values[2], (name, values)
            totals += np.array(values) - values[2]
    assert totals[0] < totals[1] < totals[2]


def test_weak_anomaly_is_rendered_closer_to_its_clean_twin():
    """The audio follows the parameters: at a lower offset an anomalous clip differs less
    from its clean twin (same clip without the anomaly)."""
    kinds = [soundmodel.planted_anomaly("fan", 0, i)["kind"] for i in range(50)]
    index = kinds.index("knocks")
    clean, _ = soundmodel.synthesize_clip("fan", 0, "anomaly", index, split="test", plant=False)
    changes = []
    for offset in (-1.0, 0.5):
        y, _ = soundmodel.synthesize_clip("fan", 0, "anomaly", index, split="test", offset=offset)
        changes.append(float(np.mean((y - clean) ** 2)))
    assert changes[0] < changes[1]


def test_unknown_id_gets_a_clear_error():
    with pytest.raises(ValueError, match="fan"):
        soundmodel.severity_offset("fan", 1)


def _report() -> pd.DataFrame:
    return soundmodel.difficulty_report()


def test_verified_baseline_is_within_the_bands_of_the_paper():
    """The calibration's verification run (shipped): the baseline's quick AUC, mean over at
    least 3 training seeds, within 5 points of the paper's per-type baseline average and
    within 10 of each per-ID value, compared here with the paper's table itself."""
    report = _report()
    paper = published.table2()[["machine_type", "machine_id", "baseline_auc"]]
    merged = report.merge(paper, on=["machine_type", "machine_id"], validate="one_to_one")
    assert len(merged) == len(paper)
    assert (merged.seeds >= 3).all()
    gap = (merged.synthetic_auc - merged.baseline_auc).abs()
    is_type = merged.machine_id == "average"
    assert is_type.sum() == 6
    assert (gap[is_type] <= 5.0).all(), merged[is_type]
    assert (gap[~is_type] <= 10.0).all(), merged[~is_type]
    per_id = merged[~is_type].groupby("machine_type").synthetic_auc.mean()
    averages = merged[is_type].set_index("machine_type").synthetic_auc
    assert np.allclose(per_id.sort_index(), averages.sort_index(), atol=0.01)


def test_verification_is_of_the_shipped_offsets_and_generator():
    """The verification ran on the offsets as shipped (checksum) and the current version."""
    runs = json.loads(_resource("synth_calibration_runs.json").read_text())
    shipped = hashlib.sha256(_resource(soundmodel.DIFFICULTY_RESOURCE).read_bytes()).hexdigest()
    assert runs["verify"]["difficulty_sha256"] == shipped
    assert runs["verify"]["synth_version"] == synth.SYNTH_VERSION
    assert len(runs["verify"]["seeds"]) >= 3
    assert math.isfinite(runs["verify"]["seconds"])
