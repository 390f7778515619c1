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
import shutil
import time
from pathlib import Path

import pandas as pd

from . import __version__, data, download, features, models, paper, scoring, synth, tables, training
from ._io import write_csv, write_text
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

    if not retrain:
        trained = _load_trained(kind, machine_type, run_dir, record)
        if trained is not None:
            return trained
    if retrain:
        shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").unlink(missing_ok=True)  # the old record no longer describes it

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
    (run_dir / "scaler.npz").unlink(missing_ok=True)
    if scaler is not None:
        scaler.save(run_dir / "scaler.npz")
    write_csv(history, run_dir / "history.csv")
    summary = {
        "record": record,
        "seconds": seconds,
        "epochs_run": int(len(history)),
        "device": describe_device(),
    }
    write_text(run_dir / "run.json", json.dumps(summary, indent=1))
    return TrainedModel(kind, machine_type, model, scaler, history, run_dir, seconds)


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
    summary = merge_scores(_read_summary(profile.results / "scores.csv"), scores)
    write_csv(summary, profile.results / "scores.csv")
    write_csv(tables.results_table(summary), profile.results / "table.csv")
    old_timings = profile.results / "timings.csv"
    timings = pd.DataFrame(timings)
    if old_timings.exists():
        try:
            timings = merge_scores(pd.read_csv(old_timings), timings)
        except (OSError, ValueError, KeyError):
            pass  # timings are informative only; this run's replace a damaged file
    write_csv(timings, old_timings)
    return scores
