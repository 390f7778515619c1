"""Synthetic machine sounds in the DCASE 2020 Task 2 layout: the book's offline data set.

Chapter: ``notebooks/01_data_exploration.ipynb``.

The generator writes the same folder layout as the real development set::

    <root>/<machine_type>/train/normal_id_XX_NNNNNNNN.wav
    <root>/<machine_type>/test/normal_id_XX_NNNNNNNN.wav
    <root>/<machine_type>/test/anomaly_id_XX_NNNNNNNN.wav
    <root>/<machine_type>/anomalies.csv          # what was planted in each anomalous clip
    <root>/<machine_type>/.aadlib-synth-files.json  # manifest: the files the generator wrote
    <root>/<machine_type>/.aadlib-synth.json     # written last: the type is complete

The generator deletes or replaces only files that its manifest lists, unchanged (size and
modification time, or checksum); any other clip-named file in a type folder stops the run
with a message naming it (see :func:`generate_dataset`), and files with other names are
never touched.

Clips are 16 kHz mono 16-bit PCM WAV, 10 s long (ToyCar: 11 s, as in the real data).

Sizes
-----
``tiny`` (6 training clips, 3 + 3 test clips per ID) for unit tests, ``quick`` (16,
90 + 90) for the book and CI (see :data:`SIZES` for why 90), and ``full``, which
matches the real development set's file counts of Table 1
(``resources/table1_dataset_sizes.csv``). The real set's split of each ID's test clips
into normal and anomalous ones is not in Table 1; ``full`` uses half and half (the odd clip
is anomalous), which keeps AUC estimates balanced.

How each clip sounds is :mod:`aadlib.soundmodel`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import xxhash
from tqdm.auto import tqdm

from . import published
from ._storage import exclusive, read_json_object, remove_stale_temporaries, write_bytes
from .data import (
    CLIP_SECONDS,
    DEV_IDS,
    MACHINE_TYPES,
    check_machine_types,
    clip_filename,
    list_clips,
    parse_clip_name,
    type_clips,
)
from .features import extract_logmels
from .paper import SAMPLE_RATE
from .soundmodel import keep_type_envelope, planted_anomaly, synthesize_clip, type_envelope

__all__ = [
    "SIZES",
    "SYNTH_VERSION",
    "SynthSize",
    "ClipKey",
    "clip_plan",
    "dataset_counts",
    "generate_dataset",
    "anomaly_table",
    "as_recorded",
    "recorded_recipe",
    "recorded_seeds",
    "clips_digest",
    "SAME_LEVEL_DB",
    "clip_levels",
    "id_predictions",
    "id_classification_accuracy",
    "id_classification_table",
]

log = logging.getLogger(__name__)


MARKER_NAME = ".aadlib-synth.json"
#: The files the generator wrote into a type folder (see :class:`_Manifest`).
MANIFEST_NAME = ".aadlib-synth-files.json"
# The state file of an interrupted run of versions before 3 (replaced by the manifest).
STATE_NAME = ".aadlib-synth.partial.json"
_MANIFEST_SAVE_SECONDS = 30.0
_FOREIGN_SHOWN = 10
ANOMALY_TABLE = "anomalies.csv"
#: Bumped whenever a change alters the generated audio; stored in the marker file.
SYNTH_VERSION = 5
_PCM_SCALE = 32767.0


# --------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class SynthSize:
    """Clips per machine ID; ``None`` takes the count from Table 1 of the paper."""

    name: str
    train_per_id: int | None
    test_normal_per_id: int | None
    test_anomaly_per_id: int | None


#: The sizes of the synthetic set.
#:
#: ``quick`` has 90 normal and 90 anomalous test clips per machine ID, so that the 95 %
#: confidence interval of each per-type average AUC is at most about +-5 points. By
#: Hanley and McNeil's formula, the standard error of one ID's AUC A with m normal and
#: n anomalous clips is sqrt((A(1-A) + (n-1)(Q1-A^2) + (m-1)(Q2-A^2)) / (m n)), with
#: Q1 = A/(2-A) and Q2 = 2A^2/(1+A); the per-type average over k IDs has the standard
#: error SE/sqrt(k), and the 95 % half-width is 1.96 times that. With 90 + 90 clips:
#: SE = 4.2 points at A = 0.6, 3.6 at 0.75, 2.4 at 0.9 and 1.7 at 0.95 (4.3 at chance);
#: the half-width for ToyConveyor's 3 IDs is 4.8 points at A = 0.6 (4.9 at chance) and
#: less above it, for the other types' 4 IDs 4.1. With 50 + 50 it would be 6.4 (3 IDs)
#: and 5.5 (4 IDs) at A = 0.6, with the earlier 8 + 8, 16.4 and 14.2: differences of a
#: few points between models were noise. This is the test set's sampling noise alone;
#: training seeds add their own. 90 + 90 also fits into every ID's ``full`` test set (the
#: smallest, slider ID 6, has 94 + 95), so ``quick`` stays nested in ``full``. Scoring is cheap:
#: features and scores of both models for the larger test set take about half a minute
#: of CPU time more per type than for 8 + 8. ``tiny`` stays small for unit tests.
SIZES: dict[str, SynthSize] = {
    "quick": SynthSize("quick", 16, 90, 90),
    "tiny": SynthSize("tiny", 6, 3, 3),
    "full": SynthSize("full", None, None, None),
}


@dataclass(frozen=True, order=True)
class ClipKey:
    """One clip of the layout: where it lives and what it is."""

    split: str
    label: str
    machine_id: int
    index: int

    @property
    def relpath(self) -> str:
        return f"{self.split}/{clip_filename(self.label, self.machine_id, self.index)}"


def _as_size(size: str | SynthSize) -> SynthSize:
    if isinstance(size, SynthSize):
        return size
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)} or a SynthSize, not {size!r}")
    return SIZES[size]


def dataset_counts(size: str | SynthSize = "quick") -> pd.DataFrame:
    """Clips per machine type and ID for a size, without writing anything. Chapter 1.

    Columns: ``machine_type``, ``machine_id``, ``train``, ``test_normal``, ``test_anomaly``.
    For ``full`` the training count is Table 1's ``train_files`` and the test files are
    split half and half (the odd one anomalous).
    """
    size = _as_size(size)
    table = published.table1().set_index(["machine_type", "machine_id"])
    rows = []
    for mtype in MACHINE_TYPES:
        for mid in DEV_IDS[mtype]:
            real = table.loc[(mtype, mid)]
            test_normal = int(real["test_files"]) // 2
            rows.append(
                {
                    "machine_type": mtype,
                    "machine_id": mid,
                    "train": _or(size.train_per_id, int(real["train_files"])),
                    "test_normal": _or(size.test_normal_per_id, test_normal),
                    "test_anomaly": _or(
                        size.test_anomaly_per_id, int(real["test_files"]) - test_normal
                    ),
                }
            )
    return pd.DataFrame(rows)


def _or(value: int | None, default: int) -> int:
    return default if value is None else int(value)


def clip_plan(machine_type: str, size: str | SynthSize = "quick") -> list[ClipKey]:
    """Every clip a size holds for one machine type, in a stable order. Chapter 1."""
    check_machine_types([machine_type])
    counts = dataset_counts(size)
    keys = []
    for row in counts[counts.machine_type == machine_type].itertuples():
        keys += [ClipKey("train", "normal", row.machine_id, i) for i in range(row.train)]
        keys += [ClipKey("test", "normal", row.machine_id, i) for i in range(row.test_normal)]
        keys += [ClipKey("test", "anomaly", row.machine_id, i) for i in range(row.test_anomaly)]
    return keys


# --------------------------------------------------------------------------- ID cues


def _clip_statistics(paths, n_jobs: int | None) -> np.ndarray:
    """Per clip: the mean and the std over frames of each log-mel bin (256 numbers)."""
    logmels = extract_logmels(paths, n_jobs=n_jobs, progress=False, desc="ID cues")
    return np.stack([np.concatenate([lm.mean(axis=0), lm.std(axis=0)]) for lm in logmels])


def _id_classifier():
    # Imported here, not at the top: scikit-learn's linear models take over a second to
    # import, and every worker process of generate_dataset imports this module.
    from sklearn.linear_model import LogisticRegression  # here: slow import (see above)
    from sklearn.pipeline import make_pipeline  # here: slow import (see above)
    from sklearn.preprocessing import StandardScaler  # here: slow import (see above)

    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))


def id_predictions(root: str | Path, machine_type: str, n_jobs: int | None = None) -> pd.DataFrame:
    """An ID classifier's verdict on every test clip of a machine type. Chapter 7.

    The classifier is a logistic regression on standardised per-clip log-mel statistics
    (the mean and the standard deviation over frames of each of the 128 mel bins),
    trained on the type's normal training clips with their IDs as labels. Deterministic.
    Real machines of one model sound alike, so their IDs are far from perfectly
    separable (ToyConveyor's least); the synthetic IDs overlap likewise (see
    :func:`machine_signature`), and every anomaly kind moves the cues that identify
    the machine, so ``-log(own_id_probability)`` is an anomaly score for a reason that
    real machines share.

    Parameters
    ----------
    root
        A data root in the DCASE layout (synthetic or real).
    machine_type
        One of :data:`aadlib.data.MACHINE_TYPES`; it needs at least two IDs.
    n_jobs
        Workers for the log-mel features (default: every core).

    Returns
    -------
    pandas.DataFrame
        One row per test clip, in the order of :func:`aadlib.data.list_clips`:
        ``machine_id``, ``label``, ``index``, ``path``, ``predicted_id`` and
        ``own_id_probability`` (the probability the classifier gives the clip's own ID).
    """
    check_machine_types([machine_type])
    table = type_clips(root, machine_type)
    train = table[(table.split == "train") & (table.label == "normal")]
    test = table[table.split == "test"].reset_index(drop=True)
    if train.machine_id.nunique() < 2:
        raise ValueError(f"{Path(root) / machine_type}: ID classification needs two IDs or more")
    statistics = _clip_statistics([*train.path, *test.path], n_jobs)
    classifier = _id_classifier().fit(statistics[: len(train)], train.machine_id.to_numpy())
    probabilities = classifier.predict_proba(statistics[len(train) :])
    classes = list(classifier.classes_)
    own = [classes.index(mid) if mid in classes else -1 for mid in test.machine_id]
    own_probability = np.where(np.asarray(own) >= 0, probabilities[np.arange(len(test)), own], 0.0)
    return test[["machine_id", "label", "index", "path"]].assign(
        predicted_id=np.asarray(classes)[probabilities.argmax(axis=1)],
        own_id_probability=own_probability,
    )


def _accuracy(predictions: pd.DataFrame) -> float:
    if predictions.empty:
        return math.nan
    return float((predictions.predicted_id == predictions.machine_id).mean())


def id_classification_accuracy(
    root: str | Path, machine_type: str, n_jobs: int | None = None
) -> float:
    """How well a simple classifier tells a type's machine IDs apart. Chapter 7.

    The fraction of the type's normal test clips that the classifier of
    :func:`id_predictions` assigns to their own ID (chance: about one over the number of
    IDs). On the synthetic ``quick`` set (seed 0) it is about 0.6 for ToyConveyor and
    0.75-0.85 for the other types; the book's method page lists the values.
    """
    predictions = id_predictions(root, machine_type, n_jobs)
    return _accuracy(predictions[predictions.label == "normal"])


def id_classification_table(
    root: str | Path, machine_types=None, n_jobs: int | None = None
) -> pd.DataFrame:
    """ID-classification accuracy of each machine type, as one table. Chapter 7.

    The classifier is that of :func:`id_predictions`. One row per type:
    ``machine_type``, ``n_ids``, ``n_train`` (normal training clips), ``n_test_normal``,
    ``chance`` (the largest ID's share of the training clips), ``accuracy`` (normal test
    clips assigned to their own ID, :func:`id_classification_accuracy`) and
    ``anomaly_accuracy`` (the same for the anomalous test clips: anomalies that move the
    cues that identify the machine lower it). ``machine_types`` defaults to the types
    found under ``root``.
    """
    root = Path(root)
    if machine_types is None:
        types = [t for t in MACHINE_TYPES if (root / t).is_dir()]
    else:
        types = check_machine_types(machine_types)
    rows = []
    for machine_type in types:
        predictions = id_predictions(root, machine_type, n_jobs)
        train = list_clips(root, machine_type, "train")
        train = train[train.label == "normal"]
        normal = predictions[predictions.label == "normal"]
        rows.append(
            {
                "machine_type": machine_type,
                "n_ids": int(train.machine_id.nunique()),
                "n_train": len(train),
                "n_test_normal": len(normal),
                "chance": float(train.machine_id.value_counts(normalize=True).max()),
                "accuracy": _accuracy(normal),
                "anomaly_accuracy": _accuracy(predictions[predictions.label == "anomaly"]),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- files


def _pcm16(y: np.ndarray) -> np.ndarray:
    # Quantised here rather than in libsndfile, so the bytes do not depend on its version.
    return np.round(np.clip(y, -1.0, 1.0) * _PCM_SCALE).astype(np.int16)


def as_recorded(y: np.ndarray) -> np.ndarray:
    """A rendered clip as its 16-bit WAV file reads back (:func:`aadlib.data.load_clip`).

    Chapter 6. For clips rendered in memory and never written, so that they reach the
    features exactly as the data set's files do.
    """
    return _pcm16(y).astype(np.float32) / 32768.0


def _write_wav(path: Path, y: np.ndarray) -> dict:
    """16-bit PCM WAV, written under a temporary name and renamed, so never half-written.

    Returns the file's manifest record (see :class:`_Manifest`).
    """
    pcm = _pcm16(y)
    buffer = io.BytesIO()
    sf.write(buffer, pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return _write_recorded(path, buffer.getvalue())


def _write_recorded(path: Path, content: bytes) -> dict:
    """Write ``content`` atomically and return what the manifest records of the file."""
    write_bytes(path, content)
    return _record(path.stat(), xxhash.xxh3_64_hexdigest(content))


def _record(stat: os.stat_result, digest: str | None) -> dict:
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "xxh3": digest}


def _planned(n_bytes: int) -> dict:
    """The record of a file about to be written: its size is known, not yet its time."""
    return {"bytes": int(n_bytes), "mtime_ns": None, "xxh3": None}


def _digest(path: Path) -> str:
    return xxhash.xxh3_64_hexdigest(path.read_bytes())


@functools.cache
def _wav_header_bytes() -> int:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(1, np.int16), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return len(buffer.getvalue()) - 2


def _expected_bytes(machine_type: str) -> int:
    return _wav_header_bytes() + 2 * int(round(CLIP_SECONDS[machine_type] * SAMPLE_RATE))


def _render_batch(
    machine_type: str, seed: int, gain_db: np.ndarray, folder: str, keys: list[ClipKey]
) -> dict[str, dict]:
    """Worker task: render and write a batch of clips of one type; return their records.

    The calibrated envelope travels with the task (128 numbers), so a worker process
    never repeats the calibration. The records (size, modification time, checksum of each
    file written) go into the type's manifest.
    """
    keep_type_envelope(machine_type, seed, gain_db)
    records = {}
    for key in keys:
        y, _ = synthesize_clip(
            machine_type, key.machine_id, key.label, key.index, seed, split=key.split
        )
        records[key.relpath] = _write_wav(Path(folder) / key.relpath, y)
    return records


def _anomaly_table(machine_type: str, keys: list[ClipKey], seed: int) -> pd.DataFrame:
    rows = []
    for key in keys:
        if key.label == "anomaly":
            planted = planted_anomaly(machine_type, key.machine_id, key.index, seed)
            rows.append(
                {
                    "file": key.relpath,
                    "machine_id": key.machine_id,
                    "kind": planted["kind"],
                    "severity": planted["severity"],
                    "params": json.dumps(planted["params"], sort_keys=True),
                }
            )
    return pd.DataFrame(rows, columns=["file", "machine_id", "kind", "severity", "params"])


def anomaly_table(root: str | Path, machine_types=None) -> pd.DataFrame:
    """What was planted in every anomalous clip of a synthetic set. Chapters 1, 2, 3, 4, 5, 6, 8.

    One row per anomalous test clip: ``machine_type``, ``machine_id``, ``file`` (relative to
    the type's folder), ``path``, ``kind``, ``severity`` and ``params`` (JSON text), read from
    each type's ``anomalies.csv``.

    Raises
    ------
    FileNotFoundError
        A type of ``root`` has no anomaly table: it is not a complete synthetic set.
    """
    root = Path(root)
    parts = []
    for machine_type in check_machine_types(machine_types):
        if machine_types is None and not (root / machine_type).is_dir():
            continue
        path = root / machine_type / ANOMALY_TABLE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no anomaly table; only a complete synthetic set has one "
                "(generate it with `aadlib synth`)"
            )
        table = pd.read_csv(path).assign(machine_type=machine_type)
        table["path"] = [root / machine_type / f for f in table["file"]]
        parts.append(table)
    columns = ["machine_type", "machine_id", "file", "path", "kind", "severity", "params"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def _marker_content(machine_type: str, size: SynthSize, seed: int, keys: list[ClipKey]) -> dict:
    counts = dataset_counts(size)
    counts = counts[counts.machine_type == machine_type].drop(columns="machine_type")
    return {
        "generator": "aadlib.synth",
        "version": SYNTH_VERSION,
        "machine_type": machine_type,
        "size": asdict(size),
        "seed": int(seed),
        "sample_rate": SAMPLE_RATE,
        "clip_seconds": CLIP_SECONDS[machine_type],
        "n_clips": len(keys),
        "counts": counts.to_dict(orient="records"),
    }


def _clip_files(type_dir: Path) -> list[Path]:
    """The files of ``type_dir`` named like clips (``train/`` and ``test/``)."""
    found = []
    for split in ("train", "test"):
        folder = type_dir / split
        if folder.is_dir():
            found += [
                p for p in folder.iterdir() if parse_clip_name(p.name) is not None and p.is_file()
            ]
    return found


@dataclass
class _Manifest:
    """What the generator wrote into one type folder: the only files it may delete or replace.

    ``files`` maps a path relative to the folder (``train/normal_id_00_00000000.wav``,
    ``anomalies.csv``) to its record: ``bytes``, and once written ``mtime_ns`` and
    ``xxh3`` (checksum of the content). A clip is recorded, with its size alone, before
    it is rendered: its content is fixed by the seed and it appears by an atomic rename,
    so a run killed at any point never leaves a clip of its own that looks foreign.
    ``recipe`` is the marker content of the generation the files belong to.
    """

    folder: Path
    recipe: dict | None = None
    files: dict[str, dict] = field(default_factory=dict)
    saved_at: float = -math.inf

    @classmethod
    def load(cls, folder: Path) -> _Manifest:
        content = read_json_object(folder / MANIFEST_NAME)
        if (
            content is not None
            and content.get("generator") == "aadlib.synth"
            and isinstance(content.get("files"), dict)
        ):
            return cls(folder, content.get("recipe"), content["files"])
        # A folder of an older version has no manifest: its marker (or the state file of
        # its interrupted run) says what it planned.
        for name in (MARKER_NAME, STATE_NAME):
            recipe = read_json_object(folder / name)
            files = _planned_by(folder, recipe)
            if files is not None:
                return cls(folder, recipe, files)
        return cls(folder)

    def save(self) -> None:
        content = {"generator": "aadlib.synth", "recipe": self.recipe, "files": self.files}
        write_bytes(self.folder / MANIFEST_NAME, json.dumps(content, sort_keys=True).encode())
        self.saved_at = time.monotonic()

    def save_now_and_then(self) -> None:
        """Save if the last save is a while ago (a manifest of a full type is ~1 MB)."""
        if time.monotonic() - self.saved_at >= _MANIFEST_SAVE_SECONDS:
            self.save()

    def owns(self, path: Path) -> bool:
        """Whether the generator wrote ``path`` and nobody changed it since.

        Same size and modification time as recorded; or same size and checksum (a copy
        of the folder, which gets new times; the record is updated); or same size where
        only the size is recorded (a clip planned and written, and the run killed before
        the record). A file of another size, or with other content, is not ours.
        """
        rel = path.relative_to(self.folder).as_posix()
        entry = self.files.get(rel)
        if entry is None:
            return False
        stat = path.stat()
        if stat.st_size != entry.get("bytes"):
            return False
        if entry.get("mtime_ns") in (None, stat.st_mtime_ns):
            return True
        if entry.get("xxh3") is not None and _digest(path) == entry["xxh3"]:
            self.files[rel] = {**entry, "mtime_ns": stat.st_mtime_ns}
            return True
        return False

    def record_unrecorded(self) -> None:
        """Fill in time and checksum of the files recorded by their size alone."""
        for rel, entry in self.files.items():
            if entry.get("mtime_ns") is None:
                path = self.folder / rel
                self.files[rel] = _record(path.stat(), _digest(path))


def _planned_by(folder: Path, recipe: dict | None) -> dict[str, dict] | None:
    """Files that an older version's marker content planned: names and sizes, no times.

    ``None`` where ``recipe`` is not an ``aadlib.synth`` marker.
    """
    if recipe is None or recipe.get("generator") != "aadlib.synth":
        return None
    try:
        keys = clip_plan(recipe["machine_type"], SynthSize(**recipe["size"]))
        samples = int(round(float(recipe["clip_seconds"]) * int(recipe["sample_rate"])))
    except (KeyError, TypeError, ValueError):
        return None
    files = {key.relpath: _planned(_wav_header_bytes() + 2 * samples) for key in keys}
    table = folder / ANOMALY_TABLE
    if table.is_file():
        files[ANOMALY_TABLE] = _planned(table.stat().st_size)
    return files


def _is_complete(type_dir: Path, marker: dict, keys: list[ClipKey]) -> bool:
    """The marker matches the request and every file is as the manifest recorded it.

    A stat per file (size and modification time), no reading: a complete type costs
    next to nothing to check. A clip-named file that is not in the plan makes the type
    incomplete, so that :class:`_Survey` looks at it.
    """
    if read_json_object(type_dir / MARKER_NAME) != marker:
        return False
    manifest = read_json_object(type_dir / MANIFEST_NAME)
    if manifest is None or manifest.get("recipe") != marker:
        return False
    files = manifest.get("files")
    if not isinstance(files, dict) or len(_clip_files(type_dir)) != len(keys):
        return False
    for rel in [*(key.relpath for key in keys), ANOMALY_TABLE]:
        entry = files.get(rel)
        try:
            stat = (type_dir / rel).stat()
        except FileNotFoundError:
            return False
        if not isinstance(entry, dict) or (stat.st_size, stat.st_mtime_ns) != (
            entry.get("bytes"),
            entry.get("mtime_ns"),
        ):
            return False
    return True


def _foreign_message(foreign: dict[Path, list[str]]) -> str:
    parts = []
    for type_dir, names in foreign.items():
        shown = sorted(names)
        listed = ", ".join(shown[:_FOREIGN_SHOWN])
        if len(shown) > _FOREIGN_SHOWN:
            listed += f" and {len(shown) - _FOREIGN_SHOWN} more"
        parts.append(
            f"{type_dir} holds {len(shown)} file(s) that aadlib.synth did not write, "
            f"or that were changed since it wrote them: {listed}."
        )
    return (
        " ".join(parts) + " The generator deletes or overwrites only its own files: choose "
        "another data folder, or pass overwrite=True (`--overwrite` on the command line) to "
        "let the generator replace them."
    )


def _say_overwritten(survey: _Survey, planned: set[str]) -> None:
    """Name every file that ``overwrite`` lets the generator replace or remove."""
    names = sorted(path.relative_to(survey.folder).as_posix() for path in survey.foreign)
    replaced = [n for n in names if n in planned or n == ANOMALY_TABLE]
    removed = [n for n in names if n not in replaced]
    for verb, listed in (("replaces", replaced), ("removes", removed)):
        if listed:
            log.warning(
                "%s: overwrite %s %d file(s) that aadlib.synth did not write, or that were "
                "changed since: %s",
                survey.folder,
                verb,
                len(listed),
                ", ".join(listed),
            )


@dataclass
class _Survey:
    """What a type folder holds before a generation claims it."""

    folder: Path
    manifest: _Manifest
    candidates: list[Path]  # the clip-named files and the anomaly table
    foreign: list[Path]  # those the generator did not write, or that changed since

    @classmethod
    def of(cls, folder: Path) -> _Survey:
        manifest = _Manifest.load(folder)
        table = folder / ANOMALY_TABLE
        candidates = _clip_files(folder) + ([table] if table.is_file() else [])
        foreign = [path for path in candidates if not manifest.owns(path)]
        return cls(folder, manifest, candidates, foreign)


def _prepare_type_dir(
    survey: _Survey, marker: dict, keys: list[ClipKey]
) -> tuple[_Manifest, list[ClipKey]]:
    """Claim a surveyed folder for this generation; return its manifest and the clips to
    render.

    The caller has checked :attr:`_Survey.foreign` (those files are deleted or replaced
    here only when the user allowed it). Files with other names than clips are never
    touched. Clips of the same recipe (version, seed) are kept: they were written
    atomically and their content is fixed by the seed. Clips of another recipe, and clips
    the requested size does not hold, are deleted before the new manifest is saved, so
    that every clip it lists belongs to its recipe.
    """
    type_dir, manifest = survey.folder, survey.manifest
    same_recipe = manifest.recipe is not None and _same_recipe(manifest.recipe, marker)
    (type_dir / MARKER_NAME).unlink(missing_ok=True)
    wanted = {key.relpath for key in keys}
    kept = {}
    for path in survey.candidates:
        rel = path.relative_to(type_dir).as_posix()
        if same_recipe and rel in wanted and path not in survey.foreign:
            kept[rel] = manifest.files[rel]
        else:
            path.unlink()
    for split in ("train", "test"):
        (type_dir / split).mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(type_dir / split)
    missing = [key for key in keys if key.relpath not in kept]
    n_bytes = _expected_bytes(marker["machine_type"])
    manifest.recipe = marker
    manifest.files = {**kept, **{key.relpath: _planned(n_bytes) for key in missing}}
    manifest.save()
    (type_dir / STATE_NAME).unlink(missing_ok=True)  # an older version's
    return manifest, missing


def _same_recipe(previous: dict, marker: dict) -> bool:
    """Whether existing clips were rendered with the same generator version and seed."""
    fields = ("generator", "version", "seed", "machine_type", "sample_rate", "clip_seconds")
    return all(previous.get(f) == marker.get(f) for f in fields)


def _batches(keys: list[ClipKey], size: int) -> list[list[ClipKey]]:
    return [keys[i : i + size] for i in range(0, len(keys), size)]


#: Clips to render that pay for starting one worker process. Measured on 2 cores, each
#: case in a fresh process: 48 clips (tiny, one type) took 2.6 s and 3.9 CPU-s in this
#: process, 3.3 s and 4.9 CPU-s in two workers; 276 clips (tiny, six types) 7.4 s and
#: 9.6 CPU-s against 7.2 s and 14.6 CPU-s; 784 clips (quick, one type) 11 s against 6 s.
CLIPS_PER_WORKER = 300


def _default_jobs(clips: int) -> int:
    """Worker processes for ``clips`` clips: one per available core, at most one per
    :data:`CLIPS_PER_WORKER` clips (fewer clips render in this process)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, clips // CLIPS_PER_WORKER))


def _make_pool(n_jobs: int) -> ProcessPoolExecutor:
    # "spawn" starts clean workers: forking a parent that runs TensorFlow threads can hang.
    return ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("spawn"))


@dataclass
class _TypeJob:
    """One machine type to (re)generate."""

    machine_type: str
    folder: Path
    keys: list[ClipKey]
    marker: dict
    manifest: _Manifest
    missing: list[ClipKey]


def generate_dataset(
    root: str | Path,
    size: str | SynthSize = "quick",
    machine_types: Sequence[str] | None = None,
    seed: int = 0,
    n_jobs: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write the synthetic data set under ``root`` and return ``root``. Chapters 1, 2.

    Parameters
    ----------
    root
        Data root; ``<root>/<machine_type>/...`` is created as in the real set.
    size
        ``"tiny"``, ``"quick"``, ``"full"`` or a :class:`SynthSize`.
    machine_types
        Subset of :data:`aadlib.data.MACHINE_TYPES`, or one type (default: all six). The
        clips of a type do not depend on which other types are generated.
    seed
        Data set seed (a non-negative integer).
    n_jobs
        Worker processes (default: one per available core, at most one per
        :data:`CLIPS_PER_WORKER` clips to render; 1 renders in this process).
    progress
        Show a tqdm progress bar.
    overwrite
        Let the generator delete or replace clip-named files (and ``anomalies.csv``) in
        the type folders that it did not write, or that were changed since it wrote them.

    Raises
    ------
    FileExistsError
        A type folder holds clip-named files that the generator did not write (a user's
        recordings, the real data) or that were changed since, and ``overwrite`` is false.
        The message names them; nothing was deleted.
    TimeoutError
        Another run holds the data root's lock longer than ``AADLIB_LOCK_TIMEOUT`` seconds.

    Notes
    -----
    A type whose marker matches the request and whose files are as the generator wrote
    them is skipped; otherwise its missing clips are rendered (each under a temporary name,
    then renamed), then ``anomalies.csv`` and last the marker, so an interrupted run is
    resumed on the next call. A run holds the lock of ``root``
    (:func:`aadlib._storage.exclusive`); a complete set is returned without it.
    """
    root, seed = Path(root).expanduser(), int(seed)
    requests = _requests(_as_size(size), machine_types, seed)
    if all(_is_complete(root / mtype, marker, keys) for mtype, keys, marker in requests):
        return root  # nothing to write: no lock needed (the folder may be read-only)
    with exclusive(root, f"generating the synthetic set in {root}"):
        jobs = _type_jobs(root, requests, overwrite)
        if n_jobs is None:
            n_jobs = _default_jobs(sum(len(job.missing) for job in jobs))
        _render(jobs, seed, max(1, int(n_jobs)), progress)
    return root


def _requests(size: SynthSize, machine_types, seed: int) -> list[tuple[str, list[ClipKey], dict]]:
    """Each requested type with its clips and the marker that a complete folder holds."""
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed}")
    if isinstance(machine_types, str):
        machine_types = [machine_types]
    types = list(MACHINE_TYPES if machine_types is None else machine_types)
    for mtype in types:
        check_machine_types([mtype])
    plans = [(mtype, clip_plan(mtype, size)) for mtype in types]
    return [(mtype, keys, _marker_content(mtype, size, seed, keys)) for mtype, keys in plans]


def _type_jobs(root: Path, requests, overwrite: bool) -> list[_TypeJob]:
    """What each incomplete type folder still needs, after checking (all types first)
    that no file the generator did not write would be replaced without ``overwrite``."""
    surveys = {
        mtype: _Survey.of(root / mtype)
        for mtype, keys, marker in requests
        if not _is_complete(root / mtype, marker, keys)
    }
    foreign = {
        s.folder: [p.relative_to(s.folder).as_posix() for p in s.foreign]
        for s in surveys.values()
        if s.foreign
    }
    if foreign and not overwrite:  # before any change to any type
        raise FileExistsError(_foreign_message(foreign))
    for mtype, keys, _ in requests:
        if mtype in surveys and surveys[mtype].foreign:
            _say_overwritten(surveys[mtype], {key.relpath for key in keys})
    jobs = []
    for mtype, keys, marker in requests:
        if mtype in surveys:
            manifest, missing = _prepare_type_dir(surveys[mtype], marker, keys)
            jobs.append(_TypeJob(mtype, root / mtype, keys, marker, manifest, missing))
    return jobs


def _render(jobs: list[_TypeJob], seed: int, n_jobs: int, progress: bool) -> None:
    """Render the missing clips of every job, in ``n_jobs`` processes; on any failure,
    the manifests keep the records of the clips written so far."""
    total = sum(len(job.missing) for job in jobs)
    try:
        with _progress_bar(total, progress) as bar:
            if n_jobs == 1 or total <= 1:
                _generate_serial(jobs, seed, bar)
            else:
                _generate_parallel(jobs, seed, n_jobs, bar)
    except BaseException:
        for job in jobs:
            job.manifest.save()
        raise


def recorded_recipe(type_dir: str | Path) -> dict | None:
    """What the generator wrote into a type folder: its marker, else its manifest's recipe.

    ``None`` where the generator wrote nothing there (a new folder, real data). The recipe
    holds ``seed``, ``size`` and ``version``, among others.
    """
    type_dir = Path(type_dir)
    recipe = read_json_object(type_dir / MARKER_NAME) or _Manifest.load(type_dir).recipe
    return recipe if isinstance(recipe, dict) else None


def clips_digest(type_dir: str | Path) -> str | None:
    """One digest of the content of every clip the generator wrote into a type folder.

    Read from the folder's manifest (each clip's xxHash, recorded when it was written);
    ``None`` where the generator wrote no clip there. Two folders with the same digest
    hold the same audio: :func:`aadlib.pipeline.shipped_run` checks with it that shipped
    scores were computed on these clips.
    """
    type_dir = Path(type_dir)
    manifest = _Manifest.load(type_dir)
    clips = sorted(rel for rel in manifest.files if rel.endswith(".wav"))
    if not clips:
        return None
    digest = hashlib.sha256()
    for rel in clips:
        recorded = manifest.files[rel].get("xxh3") or _digest(type_dir / rel)
        digest.update(f"{rel} {recorded}\n".encode())
    return digest.hexdigest()[:24]


#: How far a clip's level may move and the clip still count as the one recorded. The
#: generator computes in float32, whose last bits depend on the CPU's vector instructions:
#: on another processor a few dozen samples of a clip round to the neighbouring 16-bit
#: value, which moves its level by far less than 0.0001 dB; the clips of another seed
#: differ by 0.0024 dB at the closest and 1.9 dB at the median (quick ToyConveyor).
SAME_LEVEL_DB = 1e-3


def clip_levels(type_dir: str | Path) -> dict[str, float]:
    """The level of every clip the generator wrote into a type folder.

    Each clip's RMS in dB relative to full scale (4 decimals), by its path relative to
    ``type_dir``, in path order. Where :func:`clips_digest` differs because a few samples
    rounded otherwise on another CPU, the levels still agree within
    :data:`SAME_LEVEL_DB`; :func:`aadlib.pipeline.shipped_run` checks them then.
    """
    type_dir = Path(type_dir)
    manifest = _Manifest.load(type_dir)
    levels = {}
    for rel in sorted(rel for rel in manifest.files if rel.endswith(".wav")):
        samples, _ = sf.read(type_dir / rel, dtype="float64")
        levels[rel] = round(float(10 * np.log10(np.mean(samples**2) + 1e-20)), 4)
    return levels


def recorded_seeds(
    root: str | Path, machine_types=None, size: str | SynthSize = "quick"
) -> dict[str, int]:
    """The seed each type's synthetic clips under ``root`` were made with (0 where none).

    A run uses the data a folder holds, whatever seed made it: :func:`generate_dataset`
    with these seeds changes nothing in a complete set. Chapter 5.

    Raises
    ------
    ValueError
        A type folder holds a synthetic set of another size than ``size``: the message
        says what differs and what to do. Nothing was changed.
    """
    root = Path(root).expanduser()
    size = _as_size(size)
    seeds = {}
    for mtype in check_machine_types(machine_types):
        recipe = recorded_recipe(root / mtype) or {}
        made = recipe.get("size")
        if isinstance(made, dict) and made != asdict(size):
            raise ValueError(
                f"{root / mtype} holds the synthetic {made.get('name')!r} set, but the profile "
                f"uses the {size.name!r} size; nothing was changed. Choose the profile of that "
                "size, another --data-root, or make the set again with `aadlib synth` and "
                "this profile"
            )
        seed = recipe.get("seed", 0)
        seeds[mtype] = seed if isinstance(seed, int) and seed >= 0 else 0
        if recipe.get("version") not in (None, SYNTH_VERSION):
            log.warning(
                "%s was made by version %s of the generator; its clips are made again "
                "by version %d (seed %d)",
                root / mtype,
                recipe.get("version"),
                SYNTH_VERSION,
                seeds[mtype],
            )
    return seeds


def _batch_done(job: _TypeJob, records: dict[str, dict], bar) -> None:
    job.manifest.files.update(records)
    job.manifest.save_now_and_then()
    bar.update(len(records))


def _generate_serial(jobs: list[_TypeJob], seed: int, bar) -> None:
    for job in jobs:
        gain_db = type_envelope(job.machine_type, seed) if job.missing else None
        for batch in _batches(job.missing, 8):
            records = _render_batch(job.machine_type, seed, gain_db, str(job.folder), batch)
            _batch_done(job, records, bar)
        _finish_type(job, seed)


def _generate_parallel(jobs: list[_TypeJob], seed: int, n_jobs: int, bar) -> None:
    """Calibrate the types in parallel, then render every batch; finish each type as
    soon as its last batch is written."""
    with _make_pool(n_jobs) as pool:
        try:
            calibrations = {job.machine_type: _calibration(pool, job, seed) for job in jobs}
            remaining, futures = {}, {}
            for job in jobs:
                gain_db = calibrations[job.machine_type].result()
                if gain_db is not None:  # keep it: synthesize_clip here needs it too
                    keep_type_envelope(job.machine_type, seed, gain_db)
                batches = _batches(job.missing, 16)
                remaining[job.machine_type] = len(batches)
                for batch in batches:
                    args = (job.machine_type, seed, gain_db, str(job.folder), batch)
                    futures[pool.submit(_render_batch, *args)] = job
                if not batches:
                    _finish_type(job, seed)
            for future in as_completed(futures):
                job = futures[future]
                _batch_done(job, future.result(), bar)
                remaining[job.machine_type] -= 1
                if remaining[job.machine_type] == 0:
                    _finish_type(job, seed)
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def _calibration(pool: ProcessPoolExecutor, job: _TypeJob, seed: int) -> Future:
    """A type's envelope: known in this process already, not needed, or from a worker."""
    known = type_envelope(job.machine_type, seed, compute=False)
    if known is not None or not job.missing:
        done: Future = Future()
        done.set_result(known)
        return done
    return pool.submit(type_envelope, job.machine_type, seed)


def _finish_type(job: _TypeJob, seed: int) -> None:
    """Write the anomaly table, the manifest and last the marker: the type is complete."""
    table = _anomaly_table(job.machine_type, job.keys, seed)
    record = _write_recorded(job.folder / ANOMALY_TABLE, table.to_csv(index=False).encode())
    job.manifest.files[ANOMALY_TABLE] = record
    job.manifest.record_unrecorded()
    job.manifest.save()
    write_bytes(job.folder / MARKER_NAME, json.dumps(job.marker, indent=2).encode())


def _progress_bar(total: int, enabled: bool):
    return tqdm(total=total, desc="synthesising clips", unit="clip", disable=not enabled)
