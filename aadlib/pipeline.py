"""The experiment, end to end: data, features, training, scoring, result tables.

Chapters 3 to 5 call these functions; the command line calls the same ones.

Folders under the profile's results folder (:attr:`aadlib.profiles.Profile.results`)::

    <results>/<kind>/<machine_type>/model.keras      the trained model (best weights)
    <results>/<kind>/<machine_type>/scaler.npz       per-bin statistics (normalised inputs)
    <results>/<kind>/<machine_type>/history.csv      loss per epoch
    <results>/<kind>/<machine_type>/run.json         what identifies the run and the checksums
                                                     of its files, written last
    <results>/<kind>/<machine_type>/checkpoint/      resumable state while training
    <results>/<kind>/<machine_type>/scores.csv       one row per test clip
    <results>/scores.csv, table.csv, timings.csv     every type and model together
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import multiprocessing
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import pandas as pd
import tensorflow as tf

from . import (
    __version__,
    _quiet,
    data,
    detectors,
    download,
    features,
    folders,
    models,
    paper,
    scoring,
    soundmodel,
    synth,
    tables,
    training,
)
from ._storage import exclusive, read_json_object, write_csv, write_text
from .features import FeatureParams, LogMelSet, Scaler
from .profiles import PROFILES, ModelSettings, Profile, describe_device, resolve, set_seed
from .scoring import TrainedModel
from .training import learning_status

__all__ = [
    "prepare_data",
    "machine_types_of",
    "load_features",
    "train_machine_type",
    "score_machine_type",
    "run_experiment",
    "merge_scores",
    "learning_status",
    "training_summary",
    "check_data",
    "profile_departures",
    "score_training_clips",
    "out_of_fold_scores",
    "unseen_normal_scores",
    "validation_scores",
    "run_history",
    "shipped_run",
    "shipped_provenance",
    "export_shipped_run",
    "autoencoder_scores",
    "seed_scores",
    "seed_profile",
    "fit_detector",
    "score_detector",
    "run_detector",
    "id_accuracy_table",
    "fold_scores",
]

log = logging.getLogger(__name__)


def machine_types_of(profile: Profile, machine_types=None) -> list[str]:
    """The machine types of a run: those of the user's folder, or of DCASE 2020 Task 2.

    Chapter 10. ``None``: every type folder of a ``folder`` profile's data root, else
    the six of DCASE 2020 Task 2.
    """
    if profile.data == "folder":
        return folders.machine_types(profile.data_root, machine_types)
    return data.check_machine_types(machine_types)


def _params(profile: Profile, params: FeatureParams) -> FeatureParams:
    """The feature parameters with the profile's mix-down of multi-channel clips."""
    return dataclasses.replace(params, mono=profile.mix_down)


def prepare_data(
    profile: Profile, machine_types=None, progress: bool = True, overwrite: bool = False
) -> Path:
    """Make the profile's data set available and return its root. Chapters 1 to 10.

    Synthetic profiles generate the set (once; a complete set is reused). The ``full``
    profile downloads the real development set unless it is already there. The
    ``folder`` profile reads the user's folder as it is (:func:`check_data` checks it).
    """
    types = machine_types_of(profile, machine_types)
    root = profile.data_root
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(
            f"data root {root} is a file, not a folder; pass the folder that holds the "
            "machine-type folders (--data-root or AADLIB_DATA_ROOT)"
        )
    if profile.data == "folder":  # a user's recordings, read as they are (check_data checks them)
        return root
    if profile.data == "real":
        missing = folders.missing_test_folders(root, types)
        if missing:  # a folder made by hand: say so rather than try to download
            raise data.DataLayoutError(f"{root}: " + "; ".join(missing))
        return download.download_dcase2020(root, machine_types=types, progress=progress)
    if not root.exists():
        log.info("data root %s does not exist: making the synthetic set there", root)
    # The data a folder holds is used whatever seed made it, never made again with another.
    seeds = synth.recorded_seeds(root, types, profile.synth_size)
    for seed in sorted(set(seeds.values())):
        if seed != 0:
            log.info("%s: using the synthetic set made with seed %d", root, seed)
        synth.generate_dataset(
            root,
            size=profile.synth_size,
            machine_types=[t for t in types if seeds[t] == seed],
            seed=seed,
            progress=progress,
            overwrite=overwrite,
        )
    return root


def load_features(
    profile: Profile,
    machine_type: str,
    split: str,
    label: str | None = None,
    params: FeatureParams = FeatureParams(),
    progress: bool = True,
) -> tuple[pd.DataFrame, LogMelSet]:
    """The clip table and the log-mel frames of one type's split (cached on disk). Chapters 3, 7."""
    table = data.type_clips(profile.data_root, machine_type)
    table = table[table.split == split]
    if label is not None:
        table = table[table.label == label]
    table = table.reset_index(drop=True)
    logmels = features.extract_logmels(
        table.path,
        _params(profile, params),
        cache_dir=profile.cache_dir,
        progress=progress,
        desc=f"{machine_type} {split}",
    )
    return table, logmels


def _run_dir(profile: Profile, name: str, machine_type: str) -> Path:
    """The folder of a model kind's or a detector's run on a type, under the results."""
    # A shipped run's copy has a folder of its own: a model of the kind trained here
    # (Profile.trained_here) keeps its files beside it.
    shipped = name in paper.MODELS and profile.model(name, machine_type).shipped
    return profile.results / (f"{name}-shipped" if shipped else name) / machine_type


def _feature_params(name: str) -> FeatureParams:
    """The features a model kind (its spectrum power) or a detector (the paper's) reads."""
    return features.params_for(name) if name in paper.MODELS else FeatureParams()


def _identity(profile: Profile, kind: str, machine_type: str, params, train_paths) -> dict:
    """What, besides the schedule, makes two training runs the same (see run.json)."""
    settings = dataclasses.asdict(profile.model(kind, machine_type))
    return {
        # Scoring settings, how many runs a chapter averages and whether the run is shipped
        # are left out: changing them re-scores with the same model, or adds runs beside it.
        "model": {k: v for k, v in settings.items() if k not in ("score_hop", "seeds", "shipped")},
        "bn_momentum": profile.bn_momentum,
        "features": _params(profile, params).as_dict(),
        "data": features.cache_key(train_paths, _params(profile, params)),
        "n_train_clips": len(train_paths),
        "aadlib": __version__,
    }


def _train_config(profile: Profile, kind: str, machine_type: str) -> training.TrainConfig:
    settings = profile.model(kind, machine_type)
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
    """Train one model kind on one machine type's normal training clips. Chapters 3, 4, 6, 8.

    A model already trained with the same settings on the same files is loaded
    instead (pass ``retrain=True`` to train anew); an interrupted training resumes
    from its checkpoint when nothing about the run has changed.
    """
    settings = profile.model(kind, machine_type)
    if settings.shipped:
        raise ValueError(
            f"profile {profile.name!r} does not train the {paper.MODELS[kind].title} on "
            f"{machine_type}: it reads the scores of a run shipped with aadlib "
            f"(pipeline.shipped_run). To train one here, pass profile.trained_here({kind!r})"
        )
    run_dir = _run_dir(profile, kind, machine_type)
    params = features.params_for(kind)
    table, logmels = load_features(profile, machine_type, "train", "normal", params, verbose != 0)
    config = _train_config(profile, kind, machine_type)
    identity = _identity(profile, kind, machine_type, params, table.path)
    speed = profile.acceleration.on(training.gpu_visible())
    record = training.run_record(
        kind, settings.train_hop, config, identity, precision=speed.precision
    )

    with exclusive(run_dir, f"training {kind} on {machine_type}"):
        if not retrain:
            trained = _load_trained(kind, machine_type, run_dir, record)
            if trained is not None:
                return _scored_as(trained, profile)
        _clear_run(run_dir, checkpoints=retrain)
        set_seed(profile.seed)
        scaler = Scaler.fit(logmels) if settings.normalise else None
        model = models.build_model(kind, speed.precision, bn_momentum=profile.bn_momentum)
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
            acceleration=speed,
        )
        trained = TrainedModel(
            kind, machine_type, model, scaler, history, run_dir, time.perf_counter() - start
        )
        _save_run(trained, record, _data_seed(profile, machine_type))
    return _scored_as(trained, profile)


def _scored_as(trained: TrainedModel, profile: Profile) -> TrainedModel:
    """The model with the profile's scoring settings (hop between windows, batch size)."""
    trained.score_hop = profile.model(trained.kind, trained.machine_type).score_hop
    trained.score_batch = profile.acceleration.on(training.gpu_visible()).score_batch
    return trained


def _save_run(trained: TrainedModel, record: dict, data_seed: int | None) -> None:
    """Write a trained model's files, ``run.json`` last (what a later run reuses)."""
    run_dir = trained.run_dir
    training.save_model(trained.model, run_dir / "model.keras")
    if trained.scaler is not None:
        trained.scaler.save(run_dir / "scaler.npz")
    write_csv(trained.history, run_dir / "history.csv")
    training.write_run_summary(
        run_dir,
        record,
        _model_files(run_dir),
        seconds=trained.seconds,
        epochs_run=int(len(trained.history)),
        device=describe_device(),
        data_seed=data_seed,
    )


def _data_seed(profile: Profile, machine_type: str) -> int | None:
    """The seed that made a type's synthetic clips (``None`` for other data)."""
    if profile.data != "synthetic":
        return None
    return (synth.recorded_recipe(profile.data_root / machine_type) or {}).get("seed")


#: The files a training run writes into its folder (besides checkpoint/ and scores.csv).
_RUN_FILES = ("run.json", "model.keras", "scaler.npz", "history.csv", "scores.csv", "scoring.json")


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
    try:
        summary = training.read_run_summary(run_dir, record, training.model_identity)
        if summary is None:
            return None
        if set(summary["files"]) != set(_model_files(run_dir)):
            raise ValueError("its files changed since it was written")
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
    ``index``, ``path``, ``score``. Chapters 3 to 6. :func:`score_detector` for an
    autoencoder.
    """
    return score_detector(_scored_as(trained, profile), profile, trained.machine_type, progress)


#: Beside a model's ``scores.csv``: the scoring settings its scores were computed with
#: (and, under ``seconds``, how long scoring took).
_SCORING_FILE = "scoring.json"


def _scoring(profile: Profile, name: str, machine_type: str) -> dict:
    """The settings that make a model's test scores (not its training; none for a detector,
    whose settings are its fit's)."""
    if name not in paper.MODELS:
        return {}
    return {"score_hop": profile.model(name, machine_type).score_hop}


def training_summary(
    profile: Profile, kinds=paper.MODEL_KINDS, machine_types=None, *, seeds: bool = False
) -> pd.DataFrame:
    """How each trained model's training went: epochs, best epoch, losses, status. Chapters 5, 7, 9.

    One row per (model kind, machine type) trained under the profile, read from the
    models' folders (a model not trained yet is left out). ``status`` is
    :func:`learning_status` of its history. ``seeds``: a row for every training run of
    :func:`seed_scores` too, with a ``seed`` column.
    """
    rows = []
    for kind in kinds:
        for machine_type in data.check_machine_types(machine_types):
            runs = profile.model(kind, machine_type).seeds if seeds else 1
            for run_seed in range(profile.seed, profile.seed + runs):
                run_dir = _run_dir(seed_profile(profile, run_seed), kind, machine_type)
                if not (run_dir / "run.json").exists():
                    continue
                row = {"model": kind, "machine_type": machine_type}
                if seeds:
                    row["seed"] = run_seed
                rows.append({**row, **_training_row(run_dir)})
    return pd.DataFrame(rows)


def _training_row(run_dir: Path) -> dict:
    history = training.load_history(run_dir / "history.csv")
    loss = history["val_loss"] if "val_loss" in history else history["loss"]
    return {
        "epochs": len(history),
        "best_epoch": int(history.loc[loss.idxmin(), "epoch"]),
        "first_val_loss": float(loss.iloc[0]),
        "last_val_loss": float(loss.iloc[-1]),
        "status": learning_status(history),
    }


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
    parallel: int | None = None,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Train and score every (model kind, machine type); return this run's clip scores.

    Writes ``scores.csv`` (every clip), ``table.csv`` (per-ID AUC/pAUC, both pAUC
    definitions) and ``timings.csv`` into the profile's results folder. Results of
    kinds and types that this run did not touch are kept there. Chapter 5.

    ``parallel`` models train at once, each in a process of its own (default: the
    profile's :attr:`aadlib.profiles.Acceleration.parallel_models`, 2 on a CPU). Each
    model trains, checkpoints and resumes as it does alone, with the same seed, so the
    scores are those of a sequential run; only the order of the printed lines differs.
    The processes are spawned, and each imports the main script again: a script without
    an ``if __name__ == "__main__":`` guard trains in its own process under the default,
    and is told to add the guard when it asks for ``parallel`` above 1 (a notebook, the
    command line and ``python -c`` need nothing).
    ``overwrite`` is :func:`prepare_data`'s, which this calls first.
    """
    types = machine_types_of(profile, machine_types)
    for kind in kinds:
        paper.model_spec(kind)
    parallel = _workers(profile, parallel)
    prepare_data(profile, types, progress=verbose != 0, overwrite=overwrite)
    check_data(profile, types, kinds)
    jobs = [(profile, kind, machine_type) for kind in kinds for machine_type in types]
    return _write_summary(profile, _run_jobs(jobs, parallel, retrain, verbose, log))


#: One training run: the profile (its seed and results folder), the model kind, the type.
Job = tuple[Profile, str, str]


def _workers(profile: Profile, parallel: int | None) -> int:
    """How many models train at once (see :func:`run_experiment`); checked before any
    data is made, since making it may spawn processes too."""
    chosen = parallel is not None
    if parallel is None:
        parallel = profile.acceleration.on(training.gpu_visible()).parallel_models
    if int(parallel) < 1:
        raise ValueError(f"parallel must be at least 1, not {parallel}")
    script = _unguarded_script()
    if int(parallel) > 1 and script is not None:
        if chosen:
            raise RuntimeError(
                f"{script} calls run_experiment(parallel={parallel}): each worker process "
                "imports that script again, so its code must sit under "
                "'if __name__ == \"__main__\":' (or pass parallel=1)"
            )
        return 1  # the workers would run the script again; train in this process
    return int(parallel)


def _run_jobs(jobs: list[Job], parallel: int, retrain, verbose, log) -> list:
    """Train (or reuse) and score every job: its (scores, timings row), in the jobs' order.

    All jobs share one pool of ``parallel`` processes (:func:`_workers`), the runs of
    several seeds too, so that no worker waits for a group to finish."""
    done: dict[int, tuple[pd.DataFrame, dict]] = {}

    def finished(index: int, scores: pd.DataFrame, timing: dict) -> None:
        reused = timing.pop("reused")
        done[index] = scores, timing
        job = jobs[index]
        if log:
            line = tables.per_id_table(scores).iloc[-1]
            how = f"trained in {timing['train_seconds']:.0f} s"
            if reused:
                how = "shipped run read" if timing["shipped"] else "saved model reused"
            log(
                f"{job[1]:8s} {job[2]:12s} AUC {line.auc:5.1f}  pAUC {line.pauc:5.1f}  "
                f"({timing['epochs_run']} epochs, {how})"
            )

    if parallel > 1 and len(jobs) > 1 and _share_the_gpu():
        _train_in_processes(jobs, parallel, retrain, verbose, finished)
    else:
        for index, job in enumerate(jobs):
            finished(index, *_train_and_score(*job, retrain, verbose))
    return [done[index] for index in range(len(jobs))]


def _write_summary(profile: Profile, results: list) -> pd.DataFrame:
    """Merge the (scores, timings row) of runs of ``profile`` into its results folder's
    ``scores.csv``, ``table.csv`` and ``timings.csv``; return those runs' scores."""
    scores = pd.concat([part for part, _ in results], ignore_index=True)
    timings = pd.DataFrame([timing for _, timing in results])
    with exclusive(profile.results, "writing the results summary"):
        summary = merge_scores(_read_summary(profile.results / "scores.csv"), scores)
        write_csv(summary, profile.results / "scores.csv")
        write_csv(tables.results_table(summary), profile.results / "table.csv")
        timings = merge_scores(_read_timings(profile.results / "timings.csv"), timings)
        write_csv(timings, profile.results / "timings.csv")
    return scores


def _unguarded_script() -> str | None:
    """The main script when spawned processes would run its code again: one without an
    ``if __name__ == "__main__":`` guard. None for notebooks, ``python -c``, the command line
    and any script with the guard."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    spec = getattr(main, "__spec__", None)
    if path is None or spec is not None:  # a notebook, -c, or a module run with -m
        return None
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return None if re.search(r"""__name__\s*==\s*["']__main__["']""", text) else path


def _train_and_score(
    profile: Profile, kind: str, machine_type: str, retrain: bool, verbose
) -> tuple[pd.DataFrame, dict]:
    """Train (or reuse) and score one model: its scores and its row of ``timings.csv``.

    A saved model whose saved scores are still those of the current clips and settings
    (:func:`_saved_scores`) is not loaded at all: its row gives the times it took then."""
    start = time.perf_counter()
    saved = None if retrain else _saved_scores(profile, kind, machine_type)
    if saved is not None:
        run_dir = _run_dir(profile, kind, machine_type)
        run = json.loads((run_dir / "run.json").read_text())
        scoring_seconds = read_json_object(run_dir / _SCORING_FILE).get("seconds", float("nan"))
        timing = {
            "model": kind,
            "machine_type": machine_type,
            "train_seconds": run["seconds"],
            "epochs_run": run["epochs_run"],
            "wall_seconds": time.perf_counter() - start,
            "score_seconds": scoring_seconds,
            "test_clips": len(saved),
            # A shipped run's times are those of the machine that made it (its run.json).
            "shipped": profile.model(kind, machine_type).shipped,
            "reused": True,
        }
        return saved, timing
    trained = fit_detector(profile, kind, machine_type, refit=retrain, verbose=verbose)
    trained_at = time.perf_counter()
    scores = score_detector(trained, profile, machine_type, progress=verbose != 0)
    scored_at = time.perf_counter()
    timing = {
        "model": kind,
        "machine_type": machine_type,
        "train_seconds": trained.seconds,
        "epochs_run": len(trained.history),
        "wall_seconds": scored_at - start,
        "score_seconds": scored_at - trained_at,
        "test_clips": len(scores),
        "shipped": False,
        "reused": trained.reused,
    }
    return scores, timing


def _in_worker(function, *args):
    """``function(*args)`` in a worker process, whose GPU memory grows as needed."""
    _grow_gpu_memory()
    return function(*args)


def _grow_gpu_memory() -> bool:
    """Let TensorFlow take GPU memory as it needs it rather than all at once, so that
    processes share the GPU. False when this process already holds the GPU's memory."""
    gpus = tf.config.list_physical_devices("GPU")
    try:
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # the GPU is initialised: its setting can no longer change
        return all(tf.config.experimental.get_memory_growth(gpu) for gpu in gpus)
    return True


def _share_the_gpu() -> bool:
    """Whether worker processes can have GPU memory; otherwise say why (models train in turn)."""
    if _grow_gpu_memory():
        return True
    log.warning(
        "this process already holds the GPU's memory (a model was trained here before), so "
        "the models train one after another; restart the runtime to train several at once"
    )
    return False


def _cost(job: Job) -> float:
    """A rough size of a training job, to start the longest first."""
    profile, kind, machine_type = job
    settings = profile.model(kind, machine_type)
    return paper.model_spec(kind).input_values * settings.epochs / settings.train_hop


def _train_in_processes(jobs: list[Job], parallel: int, retrain, verbose, finished):
    """Run ``_train_and_score`` for every job, ``parallel`` at a time in spawned processes.

    The features are extracted here first (with every core), so that the workers only
    read the cache. The longest jobs start first, so that a long one does not start last.
    """
    profile = jobs[0][0]  # the jobs' profiles differ in seed and results, not in data
    for machine_type in dict.fromkeys(t for _, _, t in jobs):
        for params in {features.params_for(k) for _, k, t in jobs if t == machine_type}:
            load_features(profile, machine_type, "train", "normal", params, verbose != 0)
            load_features(profile, machine_type, "test", None, params, verbose != 0)
    ordered = sorted(range(len(jobs)), key=lambda index: -_cost(jobs[index]))
    calls = [(_train_and_score, *jobs[i], retrain, verbose) for i in ordered]
    _in_processes(calls, parallel, lambda k, result: finished(ordered[k], *result))


def _in_processes(calls: list[tuple], parallel: int, finished, threads: int | None = None):
    """Run each ``(function, *args)`` of ``calls`` in spawned processes, ``parallel`` at a
    time, started in the order given; ``finished(index, result)`` as each one ends.

    Each worker loads TensorFlow quietly (as the CLI does) with ``threads`` threads per
    operation (default: its share of the cores), and lets it grow its GPU memory.
    """
    workers = min(parallel, len(calls))
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_quiet.start_worker,
        initargs=(threads or max(1, (os.cpu_count() or 1) // workers),),
    )
    try:
        futures = {pool.submit(_in_worker, *call): index for index, call in enumerate(calls)}
        for future in as_completed(futures):
            finished(futures[future], future.result())
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _read_timings(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path) if path.exists() else None
    except (OSError, ValueError):
        return None  # informative only: this run's timings replace a damaged file


def check_data(profile: Profile, machine_types=None, kinds=paper.MODEL_KINDS) -> None:
    """Check every clip of the types from its header, before any training. Chapters 5, 10.

    Each clip must be long enough for one window of the longest model of ``kinds``, so
    that every model scores the same clips. Every bad clip is reported at once
    (:class:`aadlib.data.AudioErrors`), as is a type without the clips training and
    scoring need (:class:`aadlib.data.DataLayoutError`). A user's folder (profile
    ``folder``) gets :func:`aadlib.folders.check_folder`'s checks, every problem at once
    (:class:`aadlib.folders.FolderError`). Files whose names do not parse (skipped) and
    test IDs with one label only (their AUC undefined; every other ID computed) are said
    as warnings.
    """
    longest = max(paper.model_spec(kind).window_frames for kind in kinds)
    min_samples = (longest - 1) * paper.HOP_LENGTH  # a centred STFT: 1 + samples // hop frames
    types = machine_types_of(profile, machine_types)
    if profile.data == "folder":
        windows = {
            kind: (spec.window_frames, profile.model(kind).train_hop, spec.batch_size)
            for kind, spec in ((k, paper.model_spec(k)) for k in kinds)
        }
        found = folders.check_folder(
            profile.data_root,
            types,
            min_samples=min_samples,
            mono=profile.mix_down,
            windows=windows,
        )
        for note in found.notes:
            log.warning(note)
        return
    paths, of_type, notes = [], [], []
    for machine_type in types:
        clips = data.type_clips(profile.data_root, machine_type)
        notes += folders.unparsable_notes(
            profile.data_root, machine_type, folders.scan_type(profile.data_root, machine_type)[1]
        )
        notes += folders.undefined_notes(profile.data_root, clips)
        paths += list(clips.path)
        of_type += [machine_type] * len(clips)
    for note in notes:
        log.warning(note)
    lengths = data.check_clips(paths, paper.SAMPLE_RATE, min_samples)
    _warn_long_clips(pd.DataFrame({"path": paths, "type": of_type, "samples": lengths}))


def _warn_long_clips(clips: pd.DataFrame, factor: float = 2.0) -> None:
    """Name the clips more than ``factor`` times as long as their type's typical clip."""
    typical = clips.groupby("type")["samples"].transform("median")
    for machine_type, long in clips[clips["samples"] > factor * typical].groupby("type"):
        usual = typical[long.index[0]] / paper.SAMPLE_RATE
        listed = ", ".join(
            f"{path} ({n / paper.SAMPLE_RATE:.1f} s)" for path, n in zip(long.path, long.samples)
        )
        log.warning(
            "%s: %d clip(s) far longer than the type's others (typically %.1f s): %s",
            machine_type,
            len(long),
            usual,
            listed,
        )


def _data_sizes(profile: Profile) -> tuple[str, str]:
    """Training clips and test clips per machine ID (text) of a profile's data."""
    if profile.data == "real":
        return "as Table 1 (434-1,000)", "as Table 1 (189-1,200)"
    if profile.data == "folder":
        return "as your folder holds", "as your folder holds"
    size = synth.SIZES[profile.synth_size]
    if size.train_per_id is None:
        return "as Table 1 (434-1,000)", "as Table 1, half anomalous"
    return str(size.train_per_id), f"{size.test_normal_per_id} + {size.test_anomaly_per_id}"


def profile_departures(names=None) -> pd.DataFrame:
    """How each profile departs from the paper's settings, one row per setting. Chapter 5.

    The setup page shows it too.

    Columns: ``paper`` and one per profile (default: all of :data:`aadlib.profiles.PROFILES`).
    A profile's entry that equals the paper's is shown as "=".
    """
    names = list(names or PROFILES)
    rows: dict[str, dict[str, str]] = {}

    def put(setting: str, column: str, value) -> None:
        rows.setdefault(setting, {})[column] = str(value)

    put("data", "paper", "real DCASE 2020 Task 2 (development set)")
    put("training clips per ID", "paper", "as Table 1 (434-1,000)")
    put("test clips per ID (normal + anomalous)", "paper", "as Table 1 (189-1,200)")
    put("batch-norm momentum", "paper", 0.99)
    put("batches per epoch", "paper", "all")
    for kind in paper.MODEL_KINDS:
        _put_model_rows(put, "paper", kind, ModelSettings.paper(kind))
    for name in names:
        profile = PROFILES[name]
        data_kind = {"real": "real (development set)", "folder": "your own (DCASE layout)"}.get(
            profile.data, f"synthetic ({profile.synth_size})"
        )
        put("data", name, data_kind)
        train, test = _data_sizes(profile)
        put("training clips per ID", name, train)
        put("test clips per ID (normal + anomalous)", name, test)
        put("batch-norm momentum", name, profile.bn_momentum)
        put("batches per epoch", name, profile.steps_per_epoch or "all")
        for kind in paper.MODEL_KINDS:
            _put_model_rows(put, name, kind, profile.model(kind))
        for (kind, machine_type), settings in profile.overrides.items():
            put(
                f"{kind} on {machine_type}",
                name,
                f"{settings.epochs} epochs, a window every {settings.train_hop} frames",
            )
    table = pd.DataFrame.from_dict(rows, orient="index")
    table = table.reindex(columns=["paper", *names]).fillna("-")
    for name in names:
        same = table[name] == table["paper"]
        table.loc[same & (table.index != "data"), name] = "="
    return table.rename_axis("setting")


def _put_model_rows(put, column: str, kind: str, settings: ModelSettings) -> None:
    """A model kind's rows of :func:`profile_departures`, in one column."""
    put(f"{kind}: epochs at most", column, settings.epochs)
    put(f"{kind}: early-stopping patience", column, settings.patience or "none")
    put(f"{kind}: frames between training windows", column, settings.train_hop)
    put(f"{kind}: frames between scored windows", column, settings.score_hop)
    put(f"{kind}: z-normalised input", column, "yes" if settings.normalise else "no")
    put(f"{kind}: training runs (seeds)", column, settings.seeds)
    trained = "once, shipped with aadlib" if settings.shipped else "in the run"
    put(f"{kind}: trained", column, trained)


# --------------------------------------------------------------------------------------
# Normal clips the model did not train on: the reference of decision thresholds (chapter 6)
# --------------------------------------------------------------------------------------


def score_training_clips(
    trained: TrainedModel, profile: Profile, progress: bool = False
) -> pd.DataFrame:
    """Score the normal training clips of the model's type, marked as trained on or held out.

    Chapter 6. ``role`` is ``"validation"`` for the clips the training run held out
    (the seeded split of :func:`aadlib.training.split_clips` that the run made: only
    their loss was watched, to stop early) and ``"training"`` for the clips the model
    learned from. Columns as :func:`score_machine_type`'s, plus ``role``.
    """
    params = features.params_for(trained.kind)
    table, logmels = load_features(
        profile, trained.machine_type, "train", "normal", params, progress
    )
    config = _train_config(profile, trained.kind, trained.machine_type)
    _, held_out = training.split_clips(len(table), config.validation_fraction, config.seed)
    hop = profile.model(trained.kind, trained.machine_type).score_hop
    scores = scoring.score_clips(trained.model, logmels, trained.kind, hop, scaler=trained.scaler)
    role = pd.Series(table.index.isin(held_out)).map({True: "validation", False: "training"})
    table = table.assign(score=scores, role=role).drop(columns=["split"])
    table.insert(0, "model", trained.kind)
    return table


def _folds(table: pd.DataFrame, folds: int, seed: int) -> pd.Series:
    """Fold of each clip: shuffled with ``seed``, then dealt out in turn within each ID."""
    shuffled = table.sample(frac=1.0, random_state=seed)
    return (shuffled.groupby("machine_id").cumcount() % folds).sort_index()


def out_of_fold_scores(
    machine_type: str,
    kind: str,
    profile: Profile,
    folds: int = 4,
    *,
    progress: bool = False,
) -> pd.DataFrame:
    """A held-out score for every normal training clip: ``folds`` models, each scoring the
    clips it did not train on. Chapter 6.

    The clips of each machine ID are dealt into ``folds`` folds at random (the profile's
    seed). For each fold a new model is trained with the profile's settings on the other
    folds (holding out its own validation clips to stop early, as
    :func:`train_machine_type` does) and scores the fold's clips. This costs ``folds``
    trainings; the scores are saved under the type's run folder and reused while the
    data, settings and code are the same.

    Returns
    -------
    pandas.DataFrame
        Columns as :func:`score_training_clips`'s, with ``role`` ``"out_of_fold"`` and
        ``fold``.
    """
    if folds < 2:
        raise ValueError(f"out-of-fold scores need at least 2 folds, not {folds}")
    params = features.params_for(kind)
    table, logmels = load_features(profile, machine_type, "train", "normal", params, progress)
    if table.groupby("machine_id").size().min() < folds:
        raise ValueError(
            f"{machine_type}: a machine ID has fewer training clips than the {folds} folds"
        )
    settings = profile.model(kind, machine_type)
    config = _train_config(profile, kind, machine_type)
    identity = {
        **_identity(profile, kind, machine_type, params, table.path),
        "folds": folds,
        "score_hop": settings.score_hop,
    }
    record = training.run_record(kind, settings.train_hop, config, identity)
    folder = _run_dir(profile, kind, machine_type) / "out_of_fold"
    with exclusive(folder, f"out-of-fold scores of {kind} on {machine_type}"):
        saved = _saved_out_of_fold(folder, record)
        if saved is not None:
            return saved
        fold_of = _folds(table, folds, profile.seed)
        parts = []
        for fold in range(folds):
            held_idx = fold_of.index[fold_of == fold]
            train_idx = fold_of.index[fold_of != fold]
            scores = _fold_scores(
                profile, kind, settings, config, logmels, train_idx, held_idx, fold
            )
            parts.append(table.loc[held_idx].assign(score=scores, role="out_of_fold", fold=fold))
        result = pd.concat(parts).sort_index().drop(columns=["split"])
        result.insert(0, "model", kind)
        write_csv(result, folder / "scores.csv")
        training.write_run_summary(folder, record, ["scores.csv"])
    return result


def _fold_scores(profile, kind, settings, config, logmels, train_idx, held_idx, fold: int):
    """Scores of the ``held_idx`` clips by a new model trained on the ``train_idx`` clips
    (fold ``fold`` of :func:`out_of_fold_scores`, seeded by the profile's seed and fold)."""
    clips = logmels.subset(train_idx)
    set_seed(profile.seed + fold)
    scaler = Scaler.fit(clips) if settings.normalise else None
    model = models.build_model(kind, bn_momentum=profile.bn_momentum)
    training.fit_autoencoder(
        model, clips, kind, config, hop=settings.train_hop, scaler=scaler, verbose=0
    )
    held = logmels.subset(held_idx)
    return scoring.score_clips(model, held, kind, settings.score_hop, scaler=scaler)


def _saved_out_of_fold(folder: Path, record: dict) -> pd.DataFrame | None:
    """The out-of-fold scores saved for ``record``, or ``None`` (none, other run, damaged)."""
    try:
        if training.read_run_summary(folder, record) is None:
            return None
        saved = pd.read_csv(folder / "scores.csv")
        saved["path"] = saved["path"].map(Path)
        return tables.check_scores(saved, folder / "scores.csv")
    except (OSError, ValueError, KeyError, AttributeError):
        return None  # computed again, and written anew


#: Normal clips per machine ID that :func:`unseen_normal_scores` renders by default.
UNSEEN_PER_ID = 50


def unseen_normal_scores(
    trained: TrainedModel, profile: Profile, per_id: int = UNSEEN_PER_ID
) -> pd.DataFrame:
    """Scores of normal clips recorded after training: clips no model has seen. Chapter 6.

    Synthetic profiles only. The generator renders ``per_id`` further normal clips of
    each machine ID's training split, those that follow the data set's own (a larger
    synthetic set holds the same clips: the sets are nested), with the data set's seed,
    and the trained model scores them. They stand for what a plant records once the
    monitor is installed: normal operation of the same machines, never trained on.
    Rendered in memory through the same 16-bit PCM as the data set's files; nothing is
    written.

    Returns
    -------
    pandas.DataFrame
        ``model``, ``machine_type``, ``machine_id``, ``index`` (the clip's number in the
        training split), ``label`` (``"normal"``), ``score`` and ``role`` (``"unseen"``).
    """
    if profile.data != "synthetic":
        raise ValueError(
            f"profile {profile.name!r} has recorded data: only a synthetic profile can render "
            "clips beyond its set; use held-out validation clips or out_of_fold_scores"
        )
    if per_id < 1:
        raise ValueError(f"per_id must be at least 1, not {per_id}")
    table = data.type_clips(profile.data_root, trained.machine_type)
    train = table[(table.split == "train") & (table.label == "normal")]
    seed = _data_seed(profile, trained.machine_type) or 0
    params = _params(profile, features.params_for(trained.kind))
    rows, logmels = [], []
    for machine_id, clips in train.groupby("machine_id"):
        first = 1 + int(clips["index"].max())
        for index in range(first, first + per_id):
            y, _ = soundmodel.synthesize_clip(
                trained.machine_type, int(machine_id), "normal", index, seed, split="train"
            )
            logmels.append(features.log_mel(synth.as_recorded(y), params))
            rows.append({"machine_id": int(machine_id), "index": index})
    names = [f"unseen {data.clip_filename('normal', r['machine_id'], r['index'])}" for r in rows]
    hop = profile.model(trained.kind, trained.machine_type).score_hop
    scores = scoring.score_clips(
        trained.model,
        LogMelSet.from_arrays(logmels, names),
        trained.kind,
        hop,
        scaler=trained.scaler,
    )
    result = pd.DataFrame(rows).assign(label="normal", score=scores, role="unseen")
    result.insert(0, "machine_type", trained.machine_type)
    result.insert(0, "model", trained.kind)
    return result


def validation_scores(
    profile: Profile, machine_types=None, kinds=paper.MODEL_KINDS, progress: bool = False
) -> pd.DataFrame:
    """Scores of the held-out validation clips of every (model kind, machine type). Chapter 6.

    Each model is trained, or loaded when it was trained before
    (:func:`train_machine_type`); :func:`score_training_clips` scores its clips.
    ``aadlib evaluate`` sets its decision thresholds from these. A shipped run's are
    read from aadlib's resources (:func:`shipped_run`).
    """
    parts = []
    for kind in kinds:
        for machine_type in machine_types_of(profile, machine_types):
            if profile.model(kind, machine_type).shipped:
                parts.append(_shipped_validation(profile, kind, machine_type))
                continue
            trained = train_machine_type(machine_type, kind, profile, verbose=0)
            clips = score_training_clips(trained, profile, progress)
            parts.append(clips[clips["role"] == "validation"])
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------------------
# Detectors beside the autoencoders (chapter 7)
# --------------------------------------------------------------------------------------


def _saved_scores(profile: Profile, kind: str, machine_type: str) -> pd.DataFrame | None:
    """The test scores an autoencoder wrote, when still those of the current model and clips.

    They are, when the run record in ``run.json`` is the one the profile's settings and
    the current training files give (a retrained model deletes its old scores), and the
    scores file lists the current test clips and is newer than each of them. A shipped
    run's scores (:func:`shipped_run`) are read from aadlib's resources.
    """
    if profile.model(kind, machine_type).shipped:
        return _shipped_scores(profile, kind, machine_type)
    run_dir = _run_dir(profile, kind, machine_type)
    scores_file, run_file = run_dir / "scores.csv", run_dir / "run.json"
    if not (scores_file.is_file() and run_file.is_file()):
        return None
    clips = data.type_clips(profile.data_root, machine_type)
    train = clips[(clips.split == "train") & (clips.label == "normal")].reset_index(drop=True)
    test = clips[clips.split == "test"].reset_index(drop=True)
    params = features.params_for(kind)
    identity = _identity(profile, kind, machine_type, params, train.path)
    record = training.run_record(
        kind,
        profile.model(kind, machine_type).train_hop,
        _train_config(profile, kind, machine_type),
        identity,
    )
    try:
        if training.model_identity(json.loads(run_file.read_text()).get("record") or {}) != record:
            return None
        scoring_record = read_json_object(run_dir / _SCORING_FILE)
        settings = _scoring(profile, kind, machine_type)
        if {key: scoring_record.get(key) for key in settings} != settings:
            return None  # scored with other settings (or by a version that did not say)
        written = scores_file.stat().st_mtime_ns
        if any(Path(p).stat().st_mtime_ns > written for p in test.path):
            return None
        scores = tables.check_scores(pd.read_csv(scores_file), scores_file)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # anything unexpected: score again rather than trust the file
    same_clips = list(scores["path"].astype(str)) == list(test["path"].astype(str))
    if not same_clips or set(scores["model"]) != {kind}:
        return None
    return scores.assign(path=list(test["path"]))  # paths as score_machine_type gives them


# --------------------------------------------------------------------------------------
# Runs shipped with aadlib (a model the book does not train: ModelSettings.shipped)
# --------------------------------------------------------------------------------------

#: Where shipped runs live: ``<profile>/<kind>/<machine type>/`` under the package's resources.
SHIPPED_RESOURCE = "shipped"
_SHIPPED_FILES = ("run.json", "history.csv", "scores.csv", "validation.csv")


def _shipped_root():
    return data.resource(SHIPPED_RESOURCE)


def _shipped_dir(profile: Profile, kind: str, machine_type: str | None = None):
    folder = _shipped_root() / profile.name / kind
    return folder if machine_type is None else folder / machine_type


def _shipped_settings(profile: Profile, kind: str, machine_type: str) -> dict:
    settings = dataclasses.asdict(profile.model(kind, machine_type))
    settings.pop("shipped")
    return settings


def _data_identity(profile: Profile, machine_type: str) -> dict:
    """What a shipped run's scores depend on in the data: the generator's recipe and the
    content of every clip (:func:`aadlib.synth.clips_digest`)."""
    type_dir = profile.data_root / machine_type
    recipe = synth.recorded_recipe(type_dir) or {}
    return {
        "generator_version": recipe.get("version"),
        "seed": recipe.get("seed"),
        "clips": synth.clips_digest(type_dir),
    }


def export_shipped_run(profile: Profile, kind: str, provenance: dict, machine_types=None) -> Path:
    """Write the runs of ``kind`` trained under ``profile`` as the runs shipped with aadlib.

    For ``tools/ship_runs.py``: each type's history, test scores (paths relative to the
    data folder) and record (settings, data identity, times), and ``provenance.json``
    (command, machine, date, training seconds) for the whole run. Returns the folder written.
    """
    if profile.data != "synthetic":
        raise ValueError("only runs on synthetic data can be shipped: others cannot be checked")
    target = Path(str(_shipped_dir(profile, kind)))
    types = machine_types_of(profile, machine_types)
    train_seconds = 0.0
    for machine_type in types:
        run_dir = _run_dir(profile, kind, machine_type)
        run = json.loads((run_dir / "run.json").read_text())
        scores = tables.check_scores(pd.read_csv(run_dir / "scores.csv"), run_dir / "scores.csv")
        # The clips the run held out for validation, scored: aadlib evaluate's thresholds.
        held_out = validation_scores(profile, [machine_type], [kind])
        folder = target / machine_type
        folder.mkdir(parents=True, exist_ok=True)
        for table, name in ((scores, "scores.csv"), (held_out, "validation.csv")):
            relative = [Path(p).relative_to(profile.data_root).as_posix() for p in table.path]
            write_csv(table.assign(path=relative), folder / name)
        write_csv(training.load_history(run_dir / "history.csv"), folder / "history.csv")
        record = {
            "settings": _shipped_settings(profile, kind, machine_type),
            "bn_momentum": profile.bn_momentum,
            "seed": profile.seed,
            "data": {
                **_data_identity(profile, machine_type),
                "levels_db": synth.clip_levels(profile.data_root / machine_type),
            },
            "aadlib": __version__,
            "train_seconds": round(run["seconds"], 1),
            "epochs_run": run["epochs_run"],
            "score_seconds": round(read_json_object(run_dir / _SCORING_FILE)["seconds"], 1),
            "device": run["device"],
        }
        write_text(folder / "run.json", json.dumps(record, indent=1))
        train_seconds += record["train_seconds"]
    summary = {
        **provenance,
        "profile": profile.name,
        "kind": kind,
        "machine_types": types,
        # Each run's own training time, added up (the runs may have trained side by side).
        "train_seconds": round(train_seconds, 1),
    }
    write_text(target / "provenance.json", json.dumps(summary, indent=1))
    return target


def shipped_provenance(profile: Profile, kind: str) -> dict:
    """How the runs of ``kind`` shipped for ``profile`` were made: command, machine, date,
    training seconds (``train_seconds``, the runs' times added up). Chapter 4."""
    path = _shipped_dir(profile, kind) / "provenance.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"aadlib ships no {kind} runs for profile {profile.name!r} ({path} is missing): "
            "reinstall aadlib, or make them with `python tools/ship_runs.py`"
        )
    return json.loads(path.read_text())


def shipped_run(profile: Profile, kind: str, machine_type: str) -> dict:
    """The record of the run of ``kind`` on ``machine_type`` shipped with aadlib, checked.
    Chapters 4, 5.

    Raises :class:`ValueError` when it was made with other settings than the profile's,
    or on other clips than those in the profile's data folder (another generator version,
    seed or difficulty table), saying what differs and how to make a new one. Clips whose
    digest differs only because a few samples rounded otherwise on another CPU (every
    clip's level as recorded, :func:`aadlib.synth.clip_levels`) are the run's clips.
    """
    folder = _shipped_dir(profile, kind, machine_type)
    missing = [name for name in _SHIPPED_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"aadlib ships no complete {kind} run for {machine_type} on profile "
            f"{profile.name!r} ({', '.join(missing)} missing in {folder}): reinstall aadlib, "
            "or make it with `python tools/ship_runs.py`"
        )
    record = json.loads((folder / "run.json").read_text())
    wanted = {
        "settings": _shipped_settings(profile, kind, machine_type),
        "bn_momentum": profile.bn_momentum,
        "seed": profile.seed,
        "data": _data_identity(profile, machine_type),
    }
    shipped = {**record, "data": dict(record.get("data") or {})}
    levels = shipped["data"].pop("levels_db", None)
    differ = [key for key, value in wanted.items() if shipped.get(key) != value]
    type_dir = profile.data_root / machine_type
    if differ == ["data"] and _same_clips(type_dir, shipped["data"], wanted["data"], levels):
        differ = []
    if differ:
        detail = "; ".join(f"{k}: shipped {shipped.get(k)}, here {wanted[k]}" for k in differ)
        raise ValueError(
            f"the {kind} run shipped for {machine_type} (profile {profile.name!r}) was made "
            f"with other {', '.join(differ)} than this run uses ({detail}). Make one for these "
            "with `python tools/ship_runs.py`, or train the model here with "
            f"profile.trained_here({kind!r})"
        )
    return record


def _same_clips(type_dir: Path, shipped: dict, here: dict, levels) -> bool:
    """Whether ``type_dir`` holds the clips of a shipped run whose digest differs only
    because some samples rounded otherwise on another CPU: the same generator version and
    seed (``shipped`` against ``here``, :func:`_data_identity`), and every clip's level
    within :data:`aadlib.synth.SAME_LEVEL_DB` of the run's."""
    if not levels or any(shipped.get(k) != here[k] for k in ("generator_version", "seed")):
        return False
    measured = synth.clip_levels(type_dir)
    return measured.keys() == levels.keys() and all(
        abs(measured[clip] - level) <= synth.SAME_LEVEL_DB for clip, level in levels.items()
    )


def _shipped_table(profile: Profile, path, clips: list, every: bool) -> pd.DataFrame:
    """A shipped table of clip scores, its paths made those of ``clips`` in this data
    folder: it must list ``every`` clip in order, or else some of them."""
    with path.open("r", encoding="utf-8") as handle:
        table = tables.check_scores(pd.read_csv(handle), path)
    where = {Path(p).relative_to(profile.data_root).as_posix(): p for p in clips}
    listed = list(table.path)
    if (listed != list(where)) if every else not set(listed) <= set(where):
        raise ValueError(
            f"{path} lists other clips than {profile.data_root}: make the run again with "
            "`python tools/ship_runs.py`"
        )
    return table.assign(path=[where[p] for p in table.path])


def _shipped_validation(profile: Profile, kind: str, machine_type: str) -> pd.DataFrame:
    """A shipped run's scores of the training clips it held out (:func:`validation_scores`)."""
    shipped_run(profile, kind, machine_type)
    train = data.type_clips(profile.data_root, machine_type)
    train = train[(train.split == "train") & (train.label == "normal")]
    path = _shipped_dir(profile, kind, machine_type) / "validation.csv"
    return _shipped_table(profile, path, list(train.path), every=False)


def _shipped_scores(profile: Profile, kind: str, machine_type: str) -> pd.DataFrame:
    """A shipped run's test scores, checked (:func:`shipped_run`) and copied into the
    run's results folder with its history, as a run trained here would leave them."""
    record = shipped_run(profile, kind, machine_type)
    folder = _shipped_dir(profile, kind, machine_type)
    test = data.type_clips(profile.data_root, machine_type).query("split == 'test'")
    scores = _shipped_table(profile, folder / "scores.csv", list(test.path), every=True)
    run_dir = _run_dir(profile, kind, machine_type)
    with exclusive(run_dir, f"copying the shipped {kind} run of {machine_type}"):
        with (folder / "history.csv").open("r", encoding="utf-8") as handle:
            write_csv(pd.read_csv(handle), run_dir / "history.csv")
        write_csv(scores, run_dir / "scores.csv")
        write_text(
            run_dir / _SCORING_FILE,
            json.dumps(
                {**_scoring(profile, kind, machine_type), "seconds": record["score_seconds"]}
            ),
        )
        summary = {
            "shipped": record,
            "seconds": record["train_seconds"],
            "epochs_run": record["epochs_run"],
            "device": record["device"],
        }
        write_text(run_dir / "run.json", json.dumps(summary, indent=1))
    return scores


def run_history(profile: Profile, kind: str, machine_type: str) -> pd.DataFrame:
    """The training history (loss per epoch) of the profile's run of ``kind`` on
    ``machine_type``: a shipped run's (:func:`shipped_run`), else the saved model's,
    trained first where there is none. Chapter 4."""
    if profile.model(kind, machine_type).shipped:
        _shipped_scores(profile, kind, machine_type)  # checked and copied to its folder
        return training.load_history(_run_dir(profile, kind, machine_type) / "history.csv")
    return train_machine_type(machine_type, kind, profile, verbose=0).history


def autoencoder_scores(
    profile: Profile, kinds=paper.MODEL_KINDS, machine_types=None
) -> pd.DataFrame:
    """Each autoencoder's scores of every test clip, reusing those saved with it. Chapters 7 to 10.

    Chapters 3 to 5 train and score the autoencoders; a model whose folder holds the
    scores it wrote for the current test clips (:func:`score_machine_type`) is not run
    again. Otherwise the model is trained or loaded and scores the clips now.
    """
    parts = []
    for kind in kinds:
        paper.model_spec(kind)
        for machine_type in machine_types_of(profile, machine_types):
            saved = _saved_scores(profile, kind, machine_type)
            if saved is None:
                trained = train_machine_type(machine_type, kind, profile, verbose=0)
                saved = score_machine_type(trained, profile, progress=False)
            parts.append(saved)
    return pd.concat(parts, ignore_index=True)


def seed_profile(profile: Profile, seed: int) -> Profile:
    """The profile of the training run with ``seed``: the profile's own folder for its
    seed, ``<results>/seeds/seed-<seed>`` for the others. Chapter 5."""
    if seed == profile.seed:
        return profile
    return profile.replace(seed=seed, results=profile.results / "seeds" / f"seed-{seed}")


def seed_scores(
    profile: Profile, kinds=paper.MODEL_KINDS, machine_types=None, *, verbose: int = 0
) -> pd.DataFrame:
    """Test scores of every training run of each kind: one per seed. Chapters 5, 9.

    A kind trains :attr:`aadlib.profiles.ModelSettings.seeds` times per machine type,
    with seeds ``profile.seed``, ``profile.seed + 1``, ... (:func:`seed_profile` says
    where each run's files go); models and scores already saved are reused, as in
    :func:`autoencoder_scores`. Returns the scores with a ``seed`` column, which
    :func:`aadlib.tables.per_id_table` and :func:`aadlib.tables.compare_models` average
    over and resample.
    """
    types = data.check_machine_types(machine_types)
    runs = [
        (run_seed, kind, machine_type)
        for kind in kinds
        for machine_type in types
        for run_seed in range(profile.seed, profile.seed + profile.model(kind, machine_type).seeds)
    ]
    saved = {run: _saved_scores(seed_profile(profile, run[0]), *run[1:]) for run in runs}
    missing = sorted(run for run, scores in saved.items() if scores is None)
    if missing:
        # Every missing run of every seed trains in one pool, as run_experiment trains a
        # seed's (several at once where the profile's acceleration says so).
        parallel = _workers(profile, None)
        prepare_data(profile, types, progress=verbose != 0)
        check_data(profile, types, kinds)
        jobs = [(seed_profile(profile, run_seed), kind, t) for run_seed, kind, t in missing]
        done = _run_jobs(jobs, parallel, False, verbose, None)
        for _, group in itertools.groupby(range(len(jobs)), key=lambda i: missing[i][0]):
            group = list(group)
            _write_summary(jobs[group[0]][0], [done[i] for i in group])
            for i in group:  # read back as a later call reads them
                saved[missing[i]] = _saved_scores(*jobs[i])
    parts = [saved[run].assign(seed=run[0]) for run in runs]
    return pd.concat(parts, ignore_index=True)


def _detector_record(detector, params: FeatureParams, train_paths, seed: int) -> dict:
    """What identifies a saved detector's fit (as JSON reads it back)."""
    settings = detector.settings
    record = {
        "settings": dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else None,
        "features": params.as_dict(),
        "data": features.cache_key(train_paths, params),
        "n_train_clips": len(train_paths),
        "seed": seed,
        "aadlib": __version__,
    }
    return json.loads(json.dumps(record))


#: What a saved detector that cannot be used raises (a damaged, missing or changed file:
#: ModelFileError is a ValueError); the detector is then fitted again.
_UNUSABLE_SAVE = (OSError, ValueError, KeyError)


def _saved_fit(profile: Profile, detector, machine_type: str, train_paths) -> tuple[Path, dict]:
    """Where a saved detector's fit on a type goes, and the record that identifies it."""
    record = _detector_record(detector, FeatureParams(), train_paths, profile.seed)
    return profile.results / detector.family / machine_type, record


def _unfitted(profile: Profile, family: str, machine_types: list[str], refit: bool) -> list[str]:
    """The types whose saved fit of ``family`` is missing or damaged (all with ``refit``;
    none for a family fitted anew on every call)."""
    detector = detectors.make_detector(family, profile, profile.seed)
    if not isinstance(detector, detectors.SavedDetector):
        return []
    if refit:
        return list(machine_types)
    missing = []
    for machine_type in machine_types:
        table, _ = load_features(profile, machine_type, "train", "normal", FeatureParams(), False)
        run_dir, record = _saved_fit(profile, detector, machine_type, table.path)
        try:
            summary = training.read_run_summary(run_dir, record)
        except _UNUSABLE_SAVE:
            summary = None  # fitted again, as fit_detector does
        if summary is None:
            missing.append(machine_type)
    return missing


def _fit_worker(profile: Profile, cls: type, machine_type: str, refit: bool, verbose: int):
    """:func:`fit_detector` in a worker process: the fit is saved, not returned."""
    detectors.register_detector(cls)  # a class registered by the user's own module
    fit_detector(profile, cls.family, machine_type, refit=refit, verbose=verbose)


def _fit_in_processes(
    profile: Profile, family: str, machine_types: list[str], refit: bool, verbose: int
) -> list[str]:
    """Fit the saved detectors of ``family`` that ``machine_types`` lack (all with
    ``refit``) side by side, as :func:`run_experiment` trains models; the types so fitted.

    Only where several are needed and the profile trains several models at once; a class
    defined in a notebook or script cannot be imported by a worker, so it fits in turn.
    """
    parallel = _workers(profile, None)
    if family in paper.MODELS or parallel < 2:
        return []
    cls = detectors.detector_class(family)
    todo = [] if cls.__module__ == "__main__" else _unfitted(profile, family, machine_types, refit)
    if len(todo) < 2 or not _share_the_gpu():
        return []
    calls = [(_fit_worker, profile, cls, machine_type, refit, verbose) for machine_type in todo]
    # Every core's threads, as a fit here has: the ID classifier's convolutions add up in
    # an order that depends on the thread count, and its scores with them.
    _in_processes(calls, parallel, lambda index, result: None, threads=os.cpu_count() or 1)
    return todo


def fit_detector(
    profile: Profile, family: str, machine_type: str, *, refit: bool = False, verbose: int = 0
) -> detectors.Detector:
    """Fit a registered detector on one machine type's normal training clips. Chapters 7, 8.

    Detectors read the paper's log-mel features (the autoencoders' feature cache). One
    that fits in seconds is fitted anew; a :class:`aadlib.detectors.SavedDetector` is
    saved under ``<results>/<family>/<machine_type>/`` and loaded by a later call with
    the same settings and training files (``refit=True`` fits anew). A model kind of
    :data:`aadlib.paper.MODELS` trains as :func:`train_machine_type` trains it.
    """
    if family in paper.MODELS:
        return train_machine_type(machine_type, family, profile, retrain=refit, verbose=verbose)
    params = FeatureParams()
    table, logmels = load_features(profile, machine_type, "train", "normal", params, False)
    machine_ids = table["machine_id"].to_numpy()
    detector = detectors.make_detector(family, profile, profile.seed)
    if not isinstance(detector, detectors.SavedDetector):
        return detector.fit(logmels, machine_ids, verbose=verbose)
    run_dir, record = _saved_fit(profile, detector, machine_type, table.path)
    with exclusive(run_dir, f"fitting the {family} detector of {machine_type}"):
        if not refit:
            try:
                saved = type(detector).load(run_dir, record, detector.settings, profile.seed)
            except _UNUSABLE_SAVE as err:
                log.warning(
                    "%s: the saved %s cannot be used (%s); fitting again", run_dir, family, err
                )
                saved = None
            if saved is not None:
                return saved
        detector.fit(logmels, machine_ids, verbose=verbose)
        detector.save(run_dir, record)
    return detector


def _detector_scores(detector, clips: pd.DataFrame, logmels: LogMelSet) -> pd.DataFrame:
    """The scores table of a fitted detector on some clips (one row per clip and score)."""
    results = detector.scores(logmels, clips["machine_id"].to_numpy())
    clips = clips.drop(columns=["split"])
    scores = pd.concat(
        [clips.assign(score=values, model=name) for name, values in results.items()],
        ignore_index=True,
    )
    return scores[["model", *clips.columns, "score"]]


def score_detector(
    detector, profile: Profile, machine_type: str, progress: bool = False
) -> pd.DataFrame:
    """Score every test clip of a machine type with a fitted detector. Chapters 3 to 7.

    Returns a scores table (one row per clip and score name, ``model`` the score name,
    e.g. ``"dense"`` or ``"mahalanobis"``), also written, with the scoring settings and
    seconds in ``scoring.json``, to the detector's folder (``<results>/<family>/<type>/``).
    """
    start = time.perf_counter()
    params = _feature_params(detector.family)
    clips, logmels = load_features(profile, machine_type, "test", None, params, progress)
    scores = _detector_scores(detector, clips, logmels)
    folder = getattr(detector, "run_dir", None) or _run_dir(profile, detector.family, machine_type)
    write_csv(scores, folder / "scores.csv")
    record = {**_scoring(profile, detector.family, machine_type)}
    record["seconds"] = time.perf_counter() - start
    write_text(folder / _SCORING_FILE, json.dumps(record))
    return scores


def run_detector(
    profile: Profile,
    family: str,
    machine_types=None,
    *,
    refit: bool = False,
    verbose: int = 0,
) -> detectors.DetectorRun:
    """Fit and score a detector on machine types; scores, timings and fits. Chapters 7, 9, 10.

    ``family`` is a registered detector (:data:`aadlib.detectors.DETECTORS`) or a model
    kind (:data:`aadlib.paper.MODELS`): each is fitted (or reused) by
    :func:`fit_detector` and scored by :func:`score_detector`. The scores table has the
    format of :func:`score_machine_type` (so :mod:`aadlib.tables` reads it); the timings
    give, per type, the seconds of the fit (the original fit's for a reused one) and of
    scoring the test clips, reading their cached features included but not extracting
    them. The data must be there (:func:`prepare_data`). A saved detector (the ID
    classifier) that several types lack fits on them side by side, in worker processes,
    where the profile trains several models at once; its numbers are those of a fit here.
    """
    if family not in paper.MODELS:
        detectors.detector_class(family)  # an unknown family fails before any fit
    types = machine_types_of(profile, machine_types)
    fitted_aside = _fit_in_processes(profile, family, types, refit, verbose)
    parts, timings, fitted = [], [], {}
    for machine_type in types:
        aside = machine_type in fitted_aside
        detector = fit_detector(
            profile, family, machine_type, refit=refit and not aside, verbose=verbose
        )
        if aside:
            detector.reused = False  # fitted by this call, in a worker process
        start = time.perf_counter()
        scores = score_detector(detector, profile, machine_type)
        scoring_seconds = time.perf_counter() - start
        timings.append(
            {
                "detector": family,
                "machine_type": machine_type,
                "fit_seconds": detector.fit_seconds,
                "score_seconds": scoring_seconds,
                "reused": bool(getattr(detector, "reused", False)),
                "test_clips": int(scores["path"].nunique()),
            }
        )
        parts.append(scores)
        fitted[machine_type] = detector
    return detectors.DetectorRun(pd.concat(parts, ignore_index=True), pd.DataFrame(timings), fitted)


def id_accuracy_table(profile: Profile, fitted: dict) -> pd.DataFrame:
    """How often ID classifiers assign test clips to their own machine, by label. Chapter 7.

    ``fitted`` maps machine types to fitted :class:`aadlib.detectors.IdClassifierDetector`
    (``run_detector(profile, "id-classifier").fitted``). One row per type: ``chance``
    (one over its number of IDs) and the share of normal and of anomalous test clips
    whose most probable ID is their own, with their numbers (``normal n``, ``anomalous
    n``). Anomalies that blur a machine's identity lower the second; that is what the
    classifier's anomaly score feeds on (:func:`aadlib.detectors.identity_findings`).
    """
    rows = []
    for machine_type, detector in fitted.items():
        clips, logmels = load_features(profile, machine_type, "test", None, FeatureParams(), False)
        own = detector.predict_ids(logmels) == clips["machine_id"].to_numpy()
        normal = (clips["label"] == "normal").to_numpy()
        rows.append(
            {
                "machine_type": machine_type,
                "chance": 1 / len(detector.ids),
                "normal clips": float(own[normal].mean()),
                "anomalous clips": float(own[~normal].mean()),
                "normal n": int(normal.sum()),
                "anomalous n": int((~normal).sum()),
            }
        )
    return pd.DataFrame(rows).set_index("machine_type")


# --------------------------------------------------------------------------------------
# Plain recordings in folds (chapter 10)
# --------------------------------------------------------------------------------------


def fold_scores(
    source: str | Path,
    *,
    folds: int = 2,
    machine_type: str = "fan",
    kinds=paper.MODEL_KINDS,
    families=("mahalanobis", "gmm"),
    home: str | Path | None = None,
    log=None,
) -> pd.DataFrame:
    """Every detector on plain ``normal/`` and ``abnormal/`` recordings, fold by fold. Chapter 10.

    Fold ``k`` is laid out by :func:`aadlib.folders.layout_recordings` under
    ``<home>/data/<source name>-<folds>folds-fold<k>`` and run with the ``folder``
    profile (results under ``<home>/results/`` with the same name): the autoencoders ``kinds`` by
    :func:`run_experiment` (a model trained before on the same clips is reused) and the
    detector ``families`` by :func:`run_detector`. Every normal clip is tested once,
    every abnormal clip in every fold. Returns the scores of every fold with a ``fold``
    column, for :func:`aadlib.tables.fold_table`.
    """
    source = Path(source)
    home = resolve("quick", home=home).home  # the working folder only
    parts = []
    for fold in range(folds):
        name = f"{source.name}-{folds}folds-fold{fold}"
        root = folders.ensure_layout(
            source, home / "data" / name, machine_type=machine_type, folds=folds, fold=fold
        )
        profile = resolve("folder", home=home, data_root=root, results=home / "results" / name)
        runs = [run_experiment(profile, [machine_type], kinds, log=log)] if kinds else []
        runs += [run_detector(profile, family, [machine_type]).scores for family in families]
        parts += [run.assign(fold=fold) for run in runs]
    return pd.concat(parts, ignore_index=True)
