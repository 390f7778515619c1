"""Calibrate the synthetic set's anomaly difficulty to the paper's baseline column.

The synthetic generator (:mod:`aadlib.synth`) draws each anomalous clip's severity in
[0, 1] and sets its kind's parameters at strength severity + the machine ID's *severity
offset* (:func:`aadlib.soundmodel.severity_offset`). This script chooses the offsets so that the
DCASE 2020 baseline, trained with the quick profile's schedule, scores each machine ID's
AUC on the quick set near the paper's baseline AUC for that ID (Table 2), averaged over
training seeds, and then checks the result on a freshly generated quick set.

Usage (from the repository root; ``nice`` leaves the machine usable)::

    nice python tools/calibrate_synth.py              # calibrate, then verify
    nice python tools/calibrate_synth.py calibrate    # writes resources/synth_difficulty.csv
    nice python tools/calibrate_synth.py verify       # writes resources/synth_calibration.csv
    nice python tools/calibrate_synth.py real FOLDER  # baseline on real MIMII fan clips

Options: ``--seeds 0 1 2`` (training seeds, at least 3), ``--rounds 3`` (measurements per
ID), ``--jobs 2`` (rendering processes), ``--work DIR`` (scratch folder of the
verification; default a temporary folder), ``--others dense`` (the verification also
trains these kinds with the first seed and prints their AUCs; not calibrated, not written).

How it works
------------
*calibrate*: normal clips do not depend on the offsets, so for each machine type the
baseline is trained once per seed on the quick set's normal training clips (rendered in
memory, quantised to 16 bits as the WAV files are), exactly as
:func:`aadlib.pipeline.train_machine_type` trains it (z-normalised inputs, the quick
schedule, batch-norm momentum 0.9). Each ID's 90 anomalous test clips are then rendered
at one offset per round and scored against its 90 normal test clips with every seed's
model; the mean AUC over seeds is the ID's AUC at that offset. Round 1 measures offset 0,
round 2 a step along an assumed slope, later rounds interpolate between the offsets that
bracket the paper's AUC (secant steps while none do). The final offset interpolates the
measured points; the anomalous clips' random draws are the same at every offset, so the
AUC moves smoothly with it. Writes ``aadlib/resources/synth_difficulty.csv`` and its
provenance (command, date, machine, seconds) in ``synth_calibration_runs.json``.

*verify*: generates the quick set afresh with :func:`aadlib.pipeline.prepare_data` (the
offsets as shipped), trains and scores the baseline with the book's own functions for
every seed, and writes per-ID and per-type AUCs (mean and seed-to-seed standard
deviation) beside the paper's, with the bands (per ID +-10 points, per type +-5), to
``aadlib/resources/synth_calibration.csv``. Re-running the calibration changes the audio:
bump :data:`aadlib.synth.SYNTH_VERSION` so that existing sets are regenerated.

*real*: the baseline with the quick schedule on a folder of real MIMII fan clips
(``normal/*.wav``, ``abnormal/*.wav``: the first half of the normal clips trains, the other
half and every abnormal clip test, then the halves swap), and the same design on the
synthetic fan ID 00; writes ``aadlib/resources/synth_real_fan.csv``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aadlib import features, metrics, pipeline, profiles, published, soundmodel, synth, training  # noqa: E402
from aadlib.data import DEV_IDS, MACHINE_TYPES, load_clip  # noqa: E402
from aadlib.features import LogMelSet, Scaler  # noqa: E402

KIND = "baseline"
PROFILE = "quick"
RESOURCES = ROOT / "aadlib" / "resources"
DIFFICULTY = RESOURCES / soundmodel.DIFFICULTY_RESOURCE
REPORT = RESOURCES / "synth_calibration.csv"
RUNS = RESOURCES / "synth_calibration_runs.json"
ROUNDS = RESOURCES / "synth_calibration_rounds.csv"
REAL = RESOURCES / "synth_real_fan.csv"
ID_BAND, TYPE_BAND = 10.0, 5.0
#: Assumed AUC points per unit of offset for the second round (measured: see the report).
PRIOR_SLOPE = 40.0
OFFSET_RANGE = (-3.0, 2.0)
MAX_STEP = 1.5


# --------------------------------------------------------------------------- rendering


def _render(machine_type: str, gain_db: np.ndarray, jobs: list[tuple]) -> list[np.ndarray]:
    """Worker: log-mels of clips ``(machine_id, label, split, index, offset)``, as read
    back from 16-bit WAV files."""
    soundmodel.keep_type_envelope(machine_type, 0, gain_db)  # calibrated once, not redone
    params = features.params_for(KIND)
    out = []
    for machine_id, label, split, index, offset in jobs:
        y, _ = soundmodel.synthesize_clip(
            machine_type, machine_id, label, index, split=split, offset=offset
        )
        out.append(features.log_mel(synth.as_recorded(y), params))
    return out


def logmels(pool, machine_type: str, jobs: list[tuple], chunk: int = 12) -> LogMelSet:
    """Render ``jobs`` in the pool; the clips' log-mels in order."""
    gain = soundmodel.type_envelope(machine_type, 0)
    parts = [jobs[i : i + chunk] for i in range(0, len(jobs), chunk)]
    arrays = [
        a
        for part in pool.map(_render, [machine_type] * len(parts), [gain] * len(parts), parts)
        for a in part
    ]
    return LogMelSet.from_arrays(arrays, [f"{machine_type}/{j}" for j in jobs])


def clip_jobs(machine_type: str, split: str, label: str, offsets: dict | None = None):
    """The quick set's clips of one split and label: ``(machine_id, label, split, index,
    offset)`` rows (offsets only for anomalies)."""
    keys = [
        k for k in synth.clip_plan(machine_type, PROFILE) if k.split == split and k.label == label
    ]
    return [(k.machine_id, label, split, k.index, (offsets or {}).get(k.machine_id)) for k in keys]


# --------------------------------------------------------------------------- training


def train(train_set: LogMelSet, seed: int) -> tuple:
    """The baseline trained as :func:`aadlib.pipeline.train_machine_type` trains it."""
    profile = profiles.PROFILES[PROFILE]
    settings = profile.model(KIND)
    config = training.paper_config(
        KIND,
        epochs=settings.epochs,
        patience=settings.patience,
        seed=seed,
        steps_per_epoch=profile.steps_per_epoch,
    )
    profiles.set_seed(seed)
    scaler = Scaler.fit(train_set) if settings.normalise else None
    model = training.build_model(KIND, bn_momentum=profile.bn_momentum)
    training.fit_autoencoder(
        model, train_set, KIND, config, hop=settings.train_hop, scaler=scaler, verbose=0
    )
    return model, scaler


def score(trained: tuple, clips: LogMelSet) -> np.ndarray:
    from aadlib import scoring

    model, scaler = trained
    hop = profiles.PROFILES[PROFILE].model(KIND).score_hop
    return scoring.score_clips(model, clips, KIND, hop, scaler=scaler)


def auc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    return 100.0 * metrics.auc(labels, np.r_[normal, anomalous])


# --------------------------------------------------------------------------- calibration


def paper_targets() -> pd.DataFrame:
    """The paper's per-ID baseline AUC (Table 2 as printed)."""
    table = published.table2()
    table = table[table.machine_id != "average"]
    return table.assign(machine_id=table.machine_id.astype(int))[
        ["machine_type", "machine_id", "baseline_auc"]
    ]


def next_offset(points: list[tuple[float, float]], target: float) -> float:
    """Where to measure next (or the final choice): ``points`` are (offset, AUC)."""
    points = sorted(points)
    below = [p for p in points if p[1] <= target]
    above = [p for p in points if p[1] > target]
    if below and above:  # bracketed: interpolate between the closest pair
        (x0, y0), (x1, y1) = max(below, key=lambda p: p[1]), min(above, key=lambda p: p[1])
        x = x0 + (target - y0) * (x1 - x0) / (y1 - y0) if y1 != y0 else (x0 + x1) / 2
    elif len(points) == 1:
        x = points[0][0] + (target - points[0][1]) / PRIOR_SLOPE
    else:  # not bracketed: a secant step from the two closest to the target
        (x0, y0), (x1, y1) = sorted(points, key=lambda p: abs(p[1] - target))[:2]
        slope = (y1 - y0) / (x1 - x0) if x1 != x0 and (y1 - y0) * (x1 - x0) > 0 else PRIOR_SLOPE
        start = min(points, key=lambda p: abs(p[1] - target))
        x = start[0] + float(np.clip((target - start[1]) / slope, -MAX_STEP, MAX_STEP))
    return float(np.clip(x, *OFFSET_RANGE))


def calibrate_type(pool, machine_type: str, seeds, rounds: int) -> pd.DataFrame:
    """Measure each ID's mean AUC over seeds at a few offsets; return every measurement."""
    train_set = logmels(pool, machine_type, clip_jobs(machine_type, "train", "normal"))
    normal_jobs = clip_jobs(machine_type, "test", "normal")
    normal_set = logmels(pool, machine_type, normal_jobs)
    normal_ids = np.array([j[0] for j in normal_jobs])
    models = [train(train_set, seed) for seed in seeds]
    normal_scores = [score(m, normal_set) for m in models]
    targets = paper_targets().set_index(["machine_type", "machine_id"]).baseline_auc
    points: dict[int, list] = {mid: [] for mid in DEV_IDS[machine_type]}
    rows = []
    for step in range(rounds):
        offsets = {
            mid: next_offset(p, targets[machine_type, mid]) if p else 0.0
            for mid, p in points.items()
        }
        jobs = clip_jobs(machine_type, "test", "anomaly", offsets)
        anomalous = logmels(pool, machine_type, jobs)
        ids = np.array([j[0] for j in jobs])
        scores = [score(m, anomalous) for m in models]
        for mid in points:
            per_seed = [
                auc(n[normal_ids == mid], a[ids == mid]) for n, a in zip(normal_scores, scores)
            ]
            points[mid].append((offsets[mid], float(np.mean(per_seed))))
            rows.append(
                {
                    "machine_type": machine_type,
                    "machine_id": mid,
                    "round": step + 1,
                    "severity_offset": offsets[mid],
                    "auc": float(np.mean(per_seed)),
                    "seed_sd": float(np.std(per_seed, ddof=1)),
                    "paper_auc": float(targets[machine_type, mid]),
                }
            )
        print(pd.DataFrame(rows[-len(points) :]).round(2).to_string(index=False), flush=True)
    return pd.DataFrame(rows)


def chosen_offsets(measured: pd.DataFrame) -> pd.DataFrame:
    """Each ID's offset: interpolated from its measurements at the paper's AUC."""
    rows = []
    for (mtype, mid), group in measured.groupby(["machine_type", "machine_id"], sort=False):
        points = list(zip(group.severity_offset, group.auc))
        target = float(group.paper_auc.iloc[0])
        rows.append(
            {
                "machine_type": mtype,
                "machine_id": int(mid),
                "severity_offset": round(next_offset(points, target), 2),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- verification


def verify(seeds, work: Path, others=()) -> pd.DataFrame:
    """Generate the quick set afresh, train and score the baseline per seed (the book's
    functions), and compare per-ID and per-type AUCs with the paper's. ``others``: model
    kinds also trained with the first seed, their per-type AUCs only printed (they are not
    calibrated)."""
    soundmodel._severity_offsets.cache_clear()
    aucs = []
    for seed in seeds:
        profile = profiles.resolve(PROFILE, home=work, results=work / f"results-{seed}", seed=seed)
        pipeline.prepare_data(profile, progress=False)
        for machine_type in MACHINE_TYPES:
            for kind in [KIND, *(others if seed == seeds[0] else ())]:
                aucs += _type_aucs(profile, machine_type, kind)
            print(f"seed {seed} {machine_type} done", flush=True)
    aucs = pd.DataFrame(aucs)
    extra = aucs[aucs.kind != KIND]
    if len(extra):
        print(extra.groupby(["kind", "machine_type"]).auc.mean().round(2).to_string())
    return comparison(aucs[aucs.kind == KIND])


def _type_aucs(profile, machine_type: str, kind: str) -> list[dict]:
    trained = pipeline.train_machine_type(machine_type, kind, profile, verbose=0)
    scores = pipeline.score_machine_type(trained, profile, progress=False)
    return [
        {
            "kind": kind,
            "machine_type": machine_type,
            "machine_id": int(mid),
            "seed": profile.seed,
            "auc": 100.0 * metrics.auc(group.label == "anomaly", group.score),
        }
        for mid, group in scores.groupby("machine_id")
    ]


def comparison(aucs: pd.DataFrame) -> pd.DataFrame:
    """Per ID and per type (mean over IDs): mean AUC over seeds, its seed-to-seed SD, the
    paper's baseline AUC, the difference and whether it lies within the band."""
    per_type = aucs.groupby(["machine_type", "seed"], as_index=False).auc.mean()
    per_type["machine_id"] = "average"
    both = pd.concat([aucs.assign(machine_id=aucs.machine_id.astype(str)), per_type])
    summary = (
        both.groupby(["machine_type", "machine_id"], sort=False)
        .auc.agg(synthetic_auc="mean", seed_sd="std", seeds="count")
        .reset_index()
    )
    paper = published.table2()[["machine_type", "machine_id", "baseline_auc"]]
    summary = summary.merge(
        paper.rename(columns={"baseline_auc": "paper_auc"}),
        on=["machine_type", "machine_id"],
        validate="one_to_one",
    )
    summary["difference"] = summary.synthetic_auc - summary.paper_auc
    summary["band"] = np.where(summary.machine_id == "average", TYPE_BAND, ID_BAND)
    summary["within_band"] = summary.difference.abs() <= summary.band
    order = {t: i for i, t in enumerate(MACHINE_TYPES)}
    summary["_order"] = summary.machine_type.map(order)
    summary = summary.sort_values(["_order", "machine_id"], kind="stable")
    columns = [
        "machine_type",
        "machine_id",
        "paper_auc",
        "synthetic_auc",
        "seed_sd",
        "seeds",
        "difference",
        "band",
        "within_band",
    ]
    return summary[columns].round({"synthetic_auc": 2, "seed_sd": 2, "difference": 2})


# --------------------------------------------------------------------------- real clips


def _two_folds(normal: LogMelSet, anomalous: LogMelSet, seeds) -> list[float]:
    """AUC per (fold, seed): half the normal clips train, the rest and all anomalies test."""
    half = len(normal) // 2
    first, second = np.arange(half), np.arange(half, len(normal))
    values = []
    for train_idx, test_idx in ((first, second), (second, first)):
        for seed in seeds:
            trained = train(normal.subset(train_idx), seed)
            values.append(auc(score(trained, normal.subset(test_idx)), score(trained, anomalous)))
    return values


def real_fan(folder: Path, seeds, pool) -> pd.DataFrame:
    """The baseline on real fan clips and on the same design of synthetic fan ID 00."""
    params = features.params_for(KIND)
    sets = {}
    for label in ("normal", "abnormal"):
        paths = sorted((folder / label).glob("*.wav"))
        if not paths:
            raise SystemExit(
                f"{folder / label}: no WAV files; give the folder that holds "
                "normal/ and abnormal/ clips"
            )
        sets[label] = LogMelSet.from_arrays(
            [features.log_mel(load_clip(p), params) for p in paths], paths
        )
    n_normal, n_anomalous = len(sets["normal"]), len(sets["abnormal"])
    synthetic = {
        "normal": logmels(pool, "fan", [(0, "normal", "train", i, None) for i in range(n_normal)]),
        "abnormal": logmels(
            pool, "fan", [(0, "anomaly", "test", i, None) for i in range(n_anomalous)]
        ),
    }
    rows = []
    for name, data in (("real MIMII fan ID 00", sets), ("synthetic fan ID 00", synthetic)):
        values = _two_folds(data["normal"], data["abnormal"], seeds)
        rows.append(
            {
                "data": name,
                "normal_clips": n_normal,
                "anomalous_clips": n_anomalous,
                "train_clips": n_normal // 2,
                "runs": len(values),
                "auc": round(float(np.mean(values)), 2),
                "run_sd": round(float(np.std(values, ddof=1)), 2),
                "auc_min": round(min(values), 2),
                "auc_max": round(max(values), 2),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- Method page


# --------------------------------------------------------------------------- main


def _record(step: str, seconds: float, args) -> None:
    runs = json.loads(RUNS.read_text()) if RUNS.exists() else {}
    import tensorflow as tf

    runs[step] = {
        "command": "python tools/calibrate_synth.py " + shlex.join(sys.argv[1:]),
        "finished_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores "
        f"(shared with other work), {profiles.describe_device()}",
        "tensorflow": tf.__version__,
        "seconds": round(seconds),
        "seeds": list(args.seeds),
        "synth_version": synth.SYNTH_VERSION,
        # The offsets this step read or wrote: a report belongs to these offsets only.
        "difficulty_sha256": hashlib.sha256(DIFFICULTY.read_bytes()).hexdigest(),
        **({"rounds": args.rounds} if step == "calibrate" else {}),
    }
    RUNS.write_text(json.dumps(runs, indent=1) + "\n")


def _parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "step", nargs="?", default="all", choices=["all", "calibrate", "verify", "real"]
    )
    parser.add_argument("folder", nargs="?", type=Path, help="real clips (step 'real')")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--types", nargs="+", default=list(MACHINE_TYPES))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--others", nargs="*", default=[], help="also train these kinds")
    args = parser.parse_args(argv)
    if len(args.seeds) < 3:
        parser.error("give at least 3 training seeds (--seeds)")
    if args.step == "real" and args.folder is None:
        parser.error("step 'real' needs the folder of real clips")
    return args


def _calibrate(args, pool) -> None:
    start = time.perf_counter()
    measured = pd.concat([calibrate_type(pool, t, args.seeds, args.rounds) for t in args.types])
    measured.round(3).to_csv(ROUNDS, index=False)
    table = pd.read_csv(DIFFICULTY).set_index(["machine_type", "machine_id"])
    for row in chosen_offsets(measured).itertuples():
        table.loc[(row.machine_type, row.machine_id), "severity_offset"] = row.severity_offset
    table.reset_index().to_csv(DIFFICULTY, index=False)
    _record("calibrate", time.perf_counter() - start, args)


def main(argv=None) -> int:
    args = _parse(argv)
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        if args.step in ("all", "calibrate"):
            _calibrate(args, pool)
        if args.step == "real":
            start = time.perf_counter()
            table = real_fan(args.folder, args.seeds, pool)
            table.to_csv(REAL, index=False)
            print(table.to_string(index=False))
            _record("real", time.perf_counter() - start, args)
    if args.step in ("all", "verify"):
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as scratch:
            report = verify(args.seeds, args.work or Path(scratch), args.others)
        report.to_csv(REPORT, index=False)
        print(report.to_string(index=False))
        _record("verify", time.perf_counter() - start, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
