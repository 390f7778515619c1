"""The experiment, end to end: data, features, training, scoring, tables.

Chapters: ``notebooks/03_dense_autoencoder.ipynb`` to
``notebooks/05_reproducing_the_tables.ipynb``; the command line calls the same
functions.

Folders under the profile's results root (:func:`aadlib.profiles.results_root`)::

    <results>/<kind>/<machine_type>/model.keras      the trained model (best weights)
    <results>/<kind>/<machine_type>/scaler.npz       the CNN AE's per-bin statistics
    <results>/<kind>/<machine_type>/history.csv      loss per epoch
    <results>/<kind>/<machine_type>/run.json         settings and data fingerprint
    <results>/<kind>/<machine_type>/checkpoint/      resumable state while training
    <results>/<kind>/<machine_type>/scores.csv       one row per test clip
    <results>/scores.csv, table.csv, comparison.csv  every type and model together
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from . import data, features, metrics, models, profiles, reference, training
from ._io import write_csv, write_text
from .features import FeatureParams, LogMelSet, Scaler
from .windows import SCORE_BATCH, WINDOW_FRAMES

__all__ = [
    "prepare_data",
    "load_features",
    "TrainedModel",
    "train_machine_type",
    "score_machine_type",
    "run_experiment",
    "comparison_table",
    "write_csv",
]


def prepare_data(
    profile: str | profiles.Profile | None = None,
    root: str | Path | None = None,
    machine_types=None,
    progress: bool = True,
) -> Path:
    """Make the profile's data set available and return its root.

    Synthetic profiles generate the set (once; a complete set is reused). The
    ``full`` profile downloads the real development set unless it is already there.
    """
    profile = profiles.get_profile(profile)
    root = Path(root) if root else profiles.data_root(profile)
    types = list(machine_types or data.MACHINE_TYPES)
    if profile.data == "real":
        from .download import download_dcase2020

        return download_dcase2020(root, machine_types=types, progress=progress)
    from .synth import generate_dataset

    return generate_dataset(root, size=profile.synth_size, machine_types=types, progress=progress)


def load_features(
    root: str | Path,
    machine_type: str,
    split: str,
    label: str | None = None,
    params: FeatureParams = FeatureParams(),
    progress: bool = True,
) -> tuple[pd.DataFrame, LogMelSet]:
    """The clip table and the log-mel frames of one type's split (cached on disk)."""
    table = data.check_machine_type(root, machine_type)
    table = table[table.split == split]
    if label is not None:
        table = table[table.label == label]
    table = table.reset_index(drop=True)
    logmels = features.extract_logmels(
        table.path,
        params,
        cache_dir=profiles.home() / "cache" / "features",
        progress=progress,
        desc=f"{machine_type} {split}",
    )
    return table, logmels


@dataclass
class TrainedModel:
    """A trained autoencoder with what scoring needs."""

    kind: str
    machine_type: str
    model: keras.Model
    scaler: Scaler | None
    history: pd.DataFrame
    run_dir: Path
    seconds: float


def _run_dir(results: Path, kind: str, machine_type: str) -> Path:
    return results / kind / machine_type


def _fingerprint(profile, kind, config, params, train_paths) -> dict:
    return {
        "profile": profile.name,
        "kind": kind,
        "train_config": config.as_dict(),
        "train_hop": profile.dense_train_hop if kind == "dense" else profile.cnn_train_hop,
        "normalised": kind == "cnn" or profile.dense_normalised,
        "bn_momentum": profile.bn_momentum,
        "features": params.as_dict(),
        "data": features.cache_key(train_paths, params),
        "n_train_clips": len(train_paths),
    }


def train_machine_type(
    machine_type: str,
    kind: str,
    profile: str | profiles.Profile | None = None,
    root: str | Path | None = None,
    results: str | Path | None = None,
    *,
    retrain: bool = False,
    seed: int = 0,
    verbose: int | str = "auto",
) -> TrainedModel:
    """Train one model kind on one machine type's normal training clips.

    A model already trained with the same settings on the same files is loaded
    instead (pass ``retrain=True`` to train anew); an interrupted training resumes
    from its checkpoint.
    """
    profile = profiles.get_profile(profile)
    root = Path(root) if root else profiles.data_root(profile)
    results = Path(results) if results else profiles.results_root(profile)
    run_dir = _run_dir(results, kind, machine_type)
    params = FeatureParams()
    table, logmels = load_features(root, machine_type, "train", "normal", params, verbose != 0)
    epochs = profile.dense_epochs if kind == "dense" else profile.cnn_epochs
    config = training.paper_config(
        kind,
        epochs=epochs,
        patience=profile.patience,
        seed=seed,
        steps_per_epoch=profile.steps_per_epoch,
    )
    fingerprint = _fingerprint(profile, kind, config, params, table.path)
    hop = fingerprint["train_hop"]

    run_file = run_dir / "run.json"
    if not retrain and run_file.exists() and (run_dir / "model.keras").exists():
        saved = json.loads(run_file.read_text())
        if saved.get("fingerprint") == fingerprint:
            return _load_trained(kind, machine_type, run_dir, saved)
    if retrain or (run_file.exists() and not _same_checkpoint(run_dir, fingerprint)):
        shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "fingerprint.json", json.dumps(fingerprint, indent=1))

    profiles.set_seed(seed)
    normalise = kind == "cnn" or profile.dense_normalised
    scaler = Scaler.fit(logmels) if normalise else None
    model = models.build_model(kind, bn_momentum=profile.bn_momentum)
    start = time.perf_counter()
    history = training.fit_autoencoder(
        model,
        logmels,
        kind,
        config,
        hop=hop,
        scaler=scaler,
        run_dir=run_dir / "checkpoint",
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    training.save_model(model, run_dir / "model.keras")
    if scaler is not None:
        scaler.save(run_dir / "scaler.npz")
    write_csv(history, run_dir / "history.csv")
    record = {
        "fingerprint": fingerprint,
        "seconds": seconds,
        "epochs_run": int(len(history)),
        "device": profiles.describe_device(),
    }
    write_text(run_file, json.dumps(record, indent=1))
    return TrainedModel(kind, machine_type, model, scaler, history, run_dir, seconds)


def _same_checkpoint(run_dir: Path, fingerprint: dict) -> bool:
    saved = run_dir / "fingerprint.json"
    return saved.exists() and json.loads(saved.read_text()) == fingerprint


def _load_trained(kind, machine_type, run_dir: Path, record: dict) -> TrainedModel:
    scaler_file = run_dir / "scaler.npz"
    return TrainedModel(
        kind,
        machine_type,
        training.load_model(run_dir / "model.keras"),
        Scaler.load(scaler_file) if scaler_file.exists() else None,
        training.load_history(run_dir / "history.csv"),
        run_dir,
        float(record.get("seconds", float("nan"))),
    )


def score_machine_type(
    trained: TrainedModel,
    profile: str | profiles.Profile | None = None,
    root: str | Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Score every test clip of the model's machine type; write and return the scores.

    Returns one row per clip: ``model``, ``machine_type``, ``machine_id``, ``label``,
    ``index``, ``path``, ``score``.
    """
    profile = profiles.get_profile(profile)
    root = Path(root) if root else profiles.data_root(profile)
    table, logmels = load_features(root, trained.machine_type, "test", progress=progress)
    hop = profile.dense_score_hop if trained.kind == "dense" else profile.cnn_score_hop
    batch = SCORE_BATCH[trained.kind]
    table = table.assign(
        score=metrics.score_clips(trained.model, logmels, trained.kind, hop, batch, trained.scaler)
    )
    table.insert(0, "model", trained.kind)
    table = table.drop(columns=["split"])
    write_csv(table, trained.run_dir / "scores.csv")
    return table


def run_experiment(
    profile: str | profiles.Profile | None = None,
    machine_types=None,
    kinds=models.MODEL_KINDS,
    root: str | Path | None = None,
    results: str | Path | None = None,
    *,
    retrain: bool = False,
    verbose: int | str = 0,
    log=print,
) -> pd.DataFrame:
    """Train and score every (model kind, machine type); return all clip scores.

    Writes ``scores.csv`` (every clip), ``table.csv`` (per-ID AUC/pAUC, both pAUC
    definitions) and ``timings.csv`` under the results root.
    """
    profile = profiles.get_profile(profile)
    types = list(machine_types or data.MACHINE_TYPES)
    root = prepare_data(profile, root, types, progress=verbose != 0)
    results = Path(results) if results else profiles.results_root(profile)
    all_scores, timings = [], []
    for kind in kinds:
        for machine_type in types:
            start = time.perf_counter()
            trained = train_machine_type(
                machine_type, kind, profile, root, results, retrain=retrain, verbose=verbose
            )
            trained_at = time.perf_counter()
            scores = score_machine_type(trained, profile, root, progress=verbose != 0)
            scored_at = time.perf_counter()
            all_scores.append(scores)
            timings.append(
                {
                    "model": kind,
                    "machine_type": machine_type,
                    "train_seconds": trained.seconds,
                    "epochs_run": len(trained.history),
                    "wall_seconds": scored_at - start,
                    "score_seconds": scored_at - trained_at,
                    "test_clips": len(scores),
                }
            )
            if log:
                line = metrics.per_id_table(scores).iloc[-1]
                log(
                    f"{kind:5s} {machine_type:12s} AUC {line.auc:5.1f}  pAUC {line.pauc:5.1f}  "
                    f"({len(trained.history)} epochs, {scored_at - start:.0f} s)"
                )
    scores = pd.concat(all_scores, ignore_index=True)
    write_csv(scores, results / "scores.csv")
    write_csv(results_table(scores), results / "table.csv")
    write_csv(pd.DataFrame(timings), results / "timings.csv")
    return scores


def results_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Per-ID and per-type AUC with both pAUC definitions, in percent."""
    mcclish = metrics.per_id_table(scores, pauc="mcclish")
    dcase = metrics.per_id_table(scores, pauc="dcase")
    table = mcclish.rename(columns={"pauc": "pauc_mcclish"})
    table.insert(table.columns.get_loc("pauc_mcclish") + 1, "pauc_dcase", dcase["pauc"].values)
    return table


def comparison_table(ours: pd.DataFrame) -> pd.DataFrame:
    """Our per-ID results beside the paper's Table 2, with the differences.

    Parameters
    ----------
    ours
        :func:`aadlib.metrics.per_id_table` output with a ``model`` column
        (McClish pAUC, like the paper).

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
    cols = [
        "model",
        "machine_type",
        "machine_id",
        "auc",
        "paper_auc",
        "auc_diff",
        "pauc",
        "paper_pauc",
        "pauc_diff",
    ]
    return merged[cols]


def summary_by_type(scores: pd.DataFrame) -> pd.DataFrame:
    """Per-type average AUC/pAUC (McClish), one row per model and type."""
    table = metrics.per_id_table(scores)
    return table[table.machine_id == "average"].drop(columns=["machine_id"]).reset_index(drop=True)


def clip_windows(trained: TrainedModel, logmel: np.ndarray, hop: int = 1) -> np.ndarray:
    """One clip's model inputs, normalised as the model was trained.

    Dense vectors ``(n, 640)`` or CNN patches ``(n, 32, 128, 1)``. Chapters 3 and 4.
    """
    if trained.scaler is not None:
        logmel = trained.scaler.transform(logmel)
    if trained.kind == "dense":
        return np.ascontiguousarray(features.dense_vectors(logmel, hop=hop))
    return np.ascontiguousarray(features.cnn_patches(logmel, hop=hop))[..., None]


def window_errors(trained: TrainedModel, logmel: np.ndarray, hop: int = 1) -> np.ndarray:
    """Reconstruction MSE of each window of one clip, in time order. Chapters 3 and 4.

    Their mean is the clip's anomaly score (at the same hop).
    """
    inputs = clip_windows(trained, logmel, hop)
    return metrics.reconstruction_errors(trained.model, inputs, SCORE_BATCH[trained.kind])


def error_map(trained: TrainedModel, logmel: np.ndarray, hop: int = 1) -> np.ndarray:
    """Squared reconstruction error per frame and mel bin, ``(n_frames, n_mels)``.

    Each window's squared error is spread back onto the frames it covers and averaged
    over the windows that cover each frame, showing *where* in time and frequency a
    model fails to rebuild a clip. Chapter 4.
    """
    inputs = clip_windows(trained, logmel, hop)
    recon = np.asarray(
        trained.model.predict(inputs, batch_size=SCORE_BATCH[trained.kind], verbose=0)
    )
    width = WINDOW_FRAMES[trained.kind]
    squared = ((inputs - recon) ** 2).reshape(len(inputs), width, logmel.shape[1])
    total = np.zeros(logmel.shape, dtype=np.float64)
    count = np.zeros(len(logmel), dtype=np.int64)
    for i, window in enumerate(squared):
        total[i * hop : i * hop + width] += window
        count[i * hop : i * hop + width] += 1
    covered = count > 0
    total[covered] /= count[covered, None]
    return total.astype(np.float32)
