"""The experiment, end to end: data, features, training, scoring, result tables.

Chapters 3 to 5 call these functions; the command line calls the same ones.

Folders under the profile's results folder (:attr:`aadlib.profiles.Profile.results`)::

    <results>/<kind>/<machine_type>/model.keras      the trained model (best weights)
    <results>/<kind>/<machine_type>/scaler.npz       per-bin statistics (normalised inputs)
    <results>/<kind>/<machine_type>/history.csv      loss per epoch
    <results>/<kind>/<machine_type>/run.json         what identifies the run, written last
    <results>/<kind>/<machine_type>/checkpoint/      resumable state while training
    <results>/<kind>/<machine_type>/scores.csv       one row per test clip
    <results>/scores.csv, table.csv, timings.csv     every type and model together
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import pandas as pd

from . import __version__, data, download, features, models, paper, scoring, synth, tables, training
from ._fastio import file_digest
from ._io import exclusive, write_csv, write_text
from .features import FeatureParams, LogMelSet, Scaler
from .profiles import Profile, describe_device, set_seed
from .training import TrainedModel

__all__ = [
    "prepare_data",
    "load_features",
    "train_machine_type",
    "score_machine_type",
    "run_experiment",
    "merge_scores",
    "check_data",
]

log = logging.getLogger(__name__)


def prepare_data(
    profile: Profile, machine_types=None, progress: bool = True, overwrite: bool = False
) -> Path:
    """Make the profile's data set available and return its root. Chapters 1 to 5.

    Synthetic profiles generate the set (once; a complete set is reused). The ``full``
    profile downloads the real development set unless it is already there.
    """
    types = data.check_machine_types(machine_types)
    if profile.data == "real":
        return download.download_dcase2020(
            profile.data_root, machine_types=types, progress=progress
        )
    return synth.generate_dataset(
        profile.data_root,
        size=profile.synth_size,
        machine_types=types,
        progress=progress,
        overwrite=overwrite,
    )


def load_features(
    profile: Profile,
    machine_type: str,
    split: str,
    label: str | None = None,
    params: FeatureParams = FeatureParams(),
    progress: bool = True,
) -> tuple[pd.DataFrame, LogMelSet]:
    """The clip table and the log-mel frames of one type's split (cached on disk). Chapter 3."""
    table = data.type_clips(profile.data_root, machine_type)
    table = table[table.split == split]
    if label is not None:
        table = table[table.label == label]
    table = table.reset_index(drop=True)
    logmels = features.extract_logmels(
        table.path,
        params,
        cache_dir=profile.cache_dir,
        progress=progress,
        desc=f"{machine_type} {split}",
    )
    return table, logmels


def _run_dir(profile: Profile, kind: str, machine_type: str) -> Path:
    return profile.results / kind / machine_type


def _identity(profile: Profile, kind: str, params: FeatureParams, train_paths) -> dict:
    """What, besides the schedule, makes two training runs the same (see run.json)."""
    return {
        "model": dataclasses.asdict(profile.model(kind)),
        "bn_momentum": profile.bn_momentum,
        "features": params.as_dict(),
        "data": features.cache_key(train_paths, params),
        "n_train_clips": len(train_paths),
        "aadlib": __version__,
    }


def _train_config(profile: Profile, kind: str) -> training.TrainConfig:
    settings = profile.model(kind)
    return training.paper_config(
        kind,
        epochs=settings.epochs,
        patience=settings.patience,
        seed=profile.seed,
        steps_per_epoch=profile.steps_per_epoch,
    )


def train_machine_type(
    machine_type: str,
    kind: str,
    profile: Profile,
    *,
    retrain: bool = False,
    verbose: int | str = "auto",
) -> TrainedModel:
    """Train one model kind on one machine type's normal training clips. Chapters 3, 4.

    A model already trained with the same settings on the same files is loaded
    instead (pass ``retrain=True`` to train anew); an interrupted training resumes
    from its checkpoint when nothing about the run has changed.
    """
    run_dir = _run_dir(profile, kind, machine_type)
    params = features.params_for(kind)
    table, logmels = load_features(profile, machine_type, "train", "normal", params, verbose != 0)
    settings = profile.model(kind)
    config = _train_config(profile, kind)
    identity = _identity(profile, kind, params, table.path)
    record = training.run_record(kind, settings.train_hop, config, identity)

    with exclusive(run_dir, f"training {kind} on {machine_type}"):
        if not retrain:
            trained = _load_trained(kind, machine_type, run_dir, record)
            if trained is not None:
                return trained
        _clear_run(run_dir, checkpoints=retrain)
        set_seed(profile.seed)
        scaler = Scaler.fit(logmels) if settings.normalise else None
        model = models.build_model(kind, bn_momentum=profile.bn_momentum)
        start = time.perf_counter()
        history = training.fit_autoencoder(
            model,
            logmels,
            kind,
            config,
            hop=settings.train_hop,
            scaler=scaler,
            run_dir=run_dir / "checkpoint",
            record=identity,
            verbose=verbose,
        )
        seconds = time.perf_counter() - start
        training.save_model(model, run_dir / "model.keras")
        if scaler is not None:
            scaler.save(run_dir / "scaler.npz")
        write_csv(history, run_dir / "history.csv")
        summary = {
            "record": record,
            "seconds": seconds,
            "epochs_run": int(len(history)),
            "device": describe_device(),
            # Checksums of what the run wrote: a reused model is the model trained here.
            "files": {name: file_digest(run_dir / name) for name in _model_files(run_dir)},
        }
        write_text(run_dir / "run.json", json.dumps(summary, indent=1))
    return TrainedModel(kind, machine_type, model, scaler, history, run_dir, seconds)


#: The files a training run writes into its folder (besides checkpoint/ and scores.csv).
_RUN_FILES = ("run.json", "model.keras", "scaler.npz", "history.csv", "scores.csv")


def _model_files(run_dir: Path) -> list[str]:
    return [n for n in ("model.keras", "scaler.npz", "history.csv") if (run_dir / n).exists()]


def _clear_run(run_dir: Path, checkpoints: bool) -> None:
    """Remove what an earlier run wrote into ``run_dir`` (only its own files).

    The record goes first: from then on the folder holds no finished model. The
    checkpoint stays unless ``checkpoints`` (a retrain): training resumes from it when it
    belongs to the same run, and discards it otherwise.
    """
    for name in _RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    if checkpoints and (run_dir / "checkpoint").is_dir():
        training.clear_checkpoints(run_dir / "checkpoint")


def _load_trained(kind, machine_type, run_dir: Path, record: dict) -> TrainedModel | None:
    """The model saved in ``run_dir`` when it was trained for ``record``; else ``None``.

    A damaged file means training again, with a warning that names it.
    """
    run_file = run_dir / "run.json"
    if not run_file.exists():
        return None
    try:
        summary = json.loads(run_file.read_text())
        if summary.get("record") != record:
            return None
        written = summary["files"]
        changed = [n for n, digest in written.items() if file_digest(run_dir / n) != digest]
        if changed or set(written) != set(_model_files(run_dir)):
            raise ValueError(f"{', '.join(changed) or 'its files'} changed since it was trained")
        normalised = record["model"]["normalise"]
        return TrainedModel(
            kind,
            machine_type,
            training.load_model(run_dir / "model.keras"),
            Scaler.load(run_dir / "scaler.npz") if normalised else None,
            training.load_history(run_dir / "history.csv"),
            run_dir,
            float(summary.get("seconds", float("nan"))),
            reused=True,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        log.warning("%s: the saved model cannot be used (%s); training it again", run_dir, err)
        return None


def score_machine_type(
    trained: TrainedModel, profile: Profile, progress: bool = True
) -> pd.DataFrame:
    """Score every test clip of the model's machine type; write and return the scores.

    Returns one row per clip: ``model``, ``machine_type``, ``machine_id``, ``label``,
    ``index``, ``path``, ``score``. Chapters 3 to 5.
    """
    params = features.params_for(trained.kind)
    table, logmels = load_features(profile, trained.machine_type, "test", None, params, progress)
    hop = profile.model(trained.kind).score_hop
    scores = scoring.score_clips(trained.model, logmels, trained.kind, hop, scaler=trained.scaler)
    table = table.assign(score=scores).drop(columns=["split"])
    table.insert(0, "model", trained.kind)
    write_csv(table, trained.run_dir / "scores.csv")
    return table


def merge_scores(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """``new`` scores, plus those of ``old`` for every (model, machine type) that ``new`` lacks."""
    if old is None or old.empty:
        return new.reset_index(drop=True)
    done = set(zip(new["model"], new["machine_type"]))
    keep = [(m, t) not in done for m, t in zip(old["model"], old["machine_type"])]
    return pd.concat([old[keep], new], ignore_index=True)


def _read_summary(path: Path) -> pd.DataFrame | None:
    """The scores a previous run wrote, or ``None`` (none, or damaged: said, then replaced)."""
    if not path.exists():
        return None
    try:
        return tables.check_scores(pd.read_csv(path), path)
    except (OSError, ValueError) as err:
        log.warning("%s cannot be read (%s); it is replaced by this run's scores", path, err)
        return None


def run_experiment(
    profile: Profile,
    machine_types=None,
    kinds=paper.MODEL_KINDS,
    *,
    retrain: bool = False,
    verbose: int | str = 0,
    log=print,
) -> pd.DataFrame:
    """Train and score every (model kind, machine type); return this run's clip scores.

    Writes ``scores.csv`` (every clip), ``table.csv`` (per-ID AUC/pAUC, both pAUC
    definitions) and ``timings.csv`` into the profile's results folder. Results of
    kinds and types that this run did not touch are kept there. Chapter 5.
    """
    types = data.check_machine_types(machine_types)
    for kind in kinds:
        paper.model_spec(kind)
    prepare_data(profile, types, progress=verbose != 0)
    check_data(profile, types, kinds)
    all_scores, timings = [], []
    for kind in kinds:
        for machine_type in types:
            start = time.perf_counter()
            trained = train_machine_type(
                machine_type, kind, profile, retrain=retrain, verbose=verbose
            )
            trained_at = time.perf_counter()
            scores = score_machine_type(trained, profile, progress=verbose != 0)
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
                line = tables.per_id_table(scores).iloc[-1]
                how = (
                    "saved model reused"
                    if trained.reused
                    else f"trained in {trained.seconds:.0f} s"
                )
                log(
                    f"{kind:8s} {machine_type:12s} AUC {line.auc:5.1f}  pAUC {line.pauc:5.1f}  "
                    f"({len(trained.history)} epochs, {how})"
                )
    scores = pd.concat(all_scores, ignore_index=True)
    with exclusive(profile.results, "writing the results summary"):
        summary = merge_scores(_read_summary(profile.results / "scores.csv"), scores)
        write_csv(summary, profile.results / "scores.csv")
        write_csv(tables.results_table(summary), profile.results / "table.csv")
        timings = merge_scores(
            _read_timings(profile.results / "timings.csv"), pd.DataFrame(timings)
        )
        write_csv(timings, profile.results / "timings.csv")
    return scores


def _read_timings(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path) if path.exists() else None
    except (OSError, ValueError):
        return None  # informative only: this run's timings replace a damaged file


def check_data(profile: Profile, machine_types=None, kinds=paper.MODEL_KINDS) -> None:
    """Check every clip of the types from its header, before any training. Chapter 5.

    Each clip must be long enough for one window of the longest model of ``kinds``, so
    that every model scores the same clips. Every bad clip is reported at once
    (:class:`aadlib.data.AudioErrors`), as is a type without the clips training and
    scoring need (:class:`aadlib.data.DataLayoutError`).
    """
    longest = max(paper.model_spec(kind).window_frames for kind in kinds)
    min_samples = (longest - 1) * paper.HOP_LENGTH  # a centred STFT: 1 + samples // hop frames
    paths = []
    for machine_type in data.check_machine_types(machine_types):
        paths += list(data.type_clips(profile.data_root, machine_type).path)
    data.check_clips(paths, paper.SAMPLE_RATE, min_samples)
