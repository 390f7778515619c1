"""Your own machine's recordings: a folder in the DCASE 2020 Task 2 layout, checked up front.

Chapter 10 and the README's "Your own machine". The profile ``folder``
(``aadlib evaluate --profile folder --data-root DIR``) reads any folder of this layout,
with any machine-type names, any IDs and any counts::

    <root>/<machine_type>/train/normal_id_XX_NNNNNNNN.wav
    <root>/<machine_type>/test/normal_id_XX_NNNNNNNN.wav
    <root>/<machine_type>/test/anomaly_id_XX_NNNNNNNN.wav

:func:`check_folder` says everything such a folder lacks at once, one line a problem;
:func:`layout_recordings` (``aadlib layout``) makes the layout from plain ``normal/`` and
``abnormal/`` folders of recordings, with a stated split into folds.
"""

from __future__ import annotations

import difflib
import json
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from . import __version__, paper
from .data import LABELS, SPLITS, TABLE_COLUMNS, DataLayoutError, clip_filename, parse_clip_name

__all__ = [
    "LAYOUT",
    "FolderError",
    "FolderCheck",
    "machine_types",
    "scan_type",
    "undefined_ids",
    "undefined_notes",
    "unparsable_notes",
    "missing_test_folders",
    "check_folder",
    "LayoutRecord",
    "layout_recordings",
    "ensure_layout",
]

#: The layout, as the messages show it.
LAYOUT = "<root>/<machine_type>/{train,test}/{normal,anomaly}_id_XX_NNNNNNNN.wav"

#: Normal training clips a type needs: one to learn from, one held out to stop early.
MIN_TRAIN_CLIPS = 2


class FolderError(ValueError):
    """A folder cannot be used as it is; :attr:`problems` holds one line per problem."""

    def __init__(self, root: Path, problems: list[str]):
        self.problems = list(problems)
        super().__init__(
            f"{root}: {len(problems)} problem(s); mend each, then run again:\n  - "
            + "\n  - ".join(self.problems)
        )


@dataclass
class FolderCheck:
    """What :func:`check_folder` found in a usable folder.

    Attributes
    ----------
    machine_types
        The types checked, in name order.
    clips
        The clip table (as :func:`aadlib.data.list_clips`'s) of those types.
    undefined
        ``(machine_type, machine_id, missing label)`` of the IDs whose AUC is undefined.
    notes
        Lines for the user: skipped files, undefined IDs, small training sets.
    """

    machine_types: list[str]
    clips: pd.DataFrame
    undefined: list[tuple[str, int, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def machine_types(root: str | Path, wanted: str | Iterable[str] | None = None) -> list[str]:
    """The machine types of a folder: its subfolders holding ``train/`` or ``test/``.

    ``wanted`` (a name or several) must be among them; ``None`` means all, in name order.

    Raises
    ------
    DataLayoutError
        The root does not exist or holds no type folder, or a wanted type is not there.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataLayoutError(
            f"data root {root} does not exist or is not a folder; give the folder of your "
            f"recordings with --data-root DIR ({LAYOUT}), or make one with `aadlib layout`"
        )
    found = [p.name for p in _visible(root) if p.is_dir() and any((p / s).is_dir() for s in SPLITS)]
    if not found:
        raise DataLayoutError(
            f"{root} holds no machine-type folder with train/ or test/ in it: expected {LAYOUT}. "
            "`aadlib layout` lays out plain normal/ and abnormal/ recordings so."
        )
    if wanted is None:
        return found
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    for name in wanted:
        if name not in found:
            guess = difflib.get_close_matches(name, found, n=1)
            hint = f" Did you mean {guess[0]!r}?" if guess else ""
            raise DataLayoutError(
                f"no machine type {name!r} in {root}: it holds {', '.join(found)}.{hint}"
            )
    return list(dict.fromkeys(wanted))


def scan_type(root: str | Path, machine_type: str) -> tuple[pd.DataFrame, dict[str, list[Path]]]:
    """The clips of one type folder and, per split, the files whose names do not parse.

    Hidden files (``.DS_Store``, aadlib's own records) are neither clips nor counted.
    """
    rows, skipped = [], {}
    for split in SPLITS:
        folder = Path(root) / machine_type / split
        if not folder.is_dir():
            continue
        for path in _visible(folder):
            parsed = parse_clip_name(path.name) if path.is_file() else None
            if parsed is None:
                skipped.setdefault(split, []).append(path)
            else:
                rows.append({"machine_type": machine_type, "split": split, **parsed, "path": path})
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table = table.sort_values(["split", "machine_id", "label", "index"]).reset_index(drop=True)
    return table, skipped


def unparsable_notes(
    root: str | Path, machine_type: str, skipped: dict[str, list[Path]]
) -> list[str]:
    """One line per split that holds files whose names are not clip names (they are skipped)."""
    notes = []
    for split, paths in skipped.items():
        shown = ", ".join(p.name for p in paths[:5]) + (", ..." if len(paths) > 5 else "")
        notes.append(
            f"{Path(root) / machine_type / split}: {len(paths)} file(s) skipped, their names "
            f"are not normal_id_XX_NNNNNNNN.wav or anomaly_id_XX_NNNNNNNN.wav: {shown}. "
            "Rename them to be used."
        )
    return notes


def undefined_ids(clips: pd.DataFrame) -> list[tuple[str, int, str]]:
    """``(machine_type, machine_id, missing label)`` of test IDs with only one label.

    Chapter 10. Their AUC and pAUC are undefined (a ROC curve needs both labels); every
    other ID is computed.
    """
    test = clips[clips["split"] == "test"] if "split" in clips else clips
    found = []
    for (mtype, mid), group in test.groupby(["machine_type", "machine_id"], sort=True):
        for label in LABELS:
            if label not in set(group["label"]):
                found.append((str(mtype), int(mid), label))
    return found


def undefined_notes(root: str | Path, clips: pd.DataFrame) -> list[str]:
    """One line per test ID whose AUC is undefined (:func:`undefined_ids`), naming it."""
    notes = []
    for mtype, mid, missing in undefined_ids(clips):
        word = "anomalous" if missing == "anomaly" else "normal"
        notes.append(
            f"{mtype} ID {mid:02d}: no {word} test clip ({missing}_id_{mid:02d}_*.wav in "
            f"{Path(root) / mtype / 'test'}), so its AUC and pAUC are undefined; that ID is "
            "left out of the metrics, every other ID is computed"
        )
    return notes


def missing_test_folders(root: str | Path, machine_types: Iterable[str]) -> list[str]:
    """One line per type folder that has ``train/`` but no ``test/``."""
    lines = []
    for mtype in machine_types:
        folder = Path(root) / mtype
        if (folder / "train").is_dir() and not (folder / "test").is_dir():
            lines.append(
                f"{mtype}: {folder / 'test'} is missing (the folder has train/ only); put the "
                "test clips (normal_id_XX_*.wav and anomaly_id_XX_*.wav) there"
            )
    return lines


def _type_problems(root: Path, mtype: str, clips: pd.DataFrame) -> list[str]:
    """What makes a type unusable for training or testing (fatal)."""
    folder = root / mtype
    problems = missing_test_folders(root, [mtype])
    train = clips[(clips.split == "train") & (clips.label == "normal")]
    if not (folder / "train").is_dir():
        problems.append(
            f"{mtype}: {folder / 'train'} is missing; put the normal training clips "
            "(normal_id_XX_NNNNNNNN.wav) there"
        )
    elif len(train) < MIN_TRAIN_CLIPS:
        problems.append(
            f"{mtype}: {len(train)} normal training clip(s) in {folder / 'train'}; training needs "
            f"at least {MIN_TRAIN_CLIPS} (one to learn from, one held out to stop early)"
        )
    test = clips[clips.split == "test"]
    if (folder / "test").is_dir():
        words = {
            "normal": "normal clip (normal_id_XX_*.wav)",
            "anomaly": "anomalous clip (anomaly_id_XX_*.wav)",
        }
        missing = [words[lab] for lab in LABELS if lab not in set(test.label)]
        if missing:
            problems.append(
                f"{mtype}: {folder / 'test'} has no {' and no '.join(missing)}, so no ID has "
                "an AUC; the test set needs normal and anomalous clips of the same ID"
            )
    return problems


def _audio_problems(paths: list[Path], min_samples: int, mono: str) -> list[str]:
    """Unreadable, too short, multi-channel and off-rate clips, grouped one line a kind."""
    rates, channels, short, unreadable = Counter(), [], [], []
    for path in paths:
        try:
            info = sf.info(path)
        except (sf.LibsndfileError, RuntimeError, TypeError, OSError) as err:
            unreadable.append(f"{path}: not a readable audio file ({err}); remove or replace it")
            continue
        rates[info.samplerate] += 1
        if info.channels > 1:
            channels.append((path, info.channels))
        if info.frames < min_samples:
            short.append(path)
    problems = list(unreadable)
    if len(rates) > 1:
        counts = ", ".join(f"{n} clip(s) at {r} Hz" for r, n in sorted(rates.items()))
        problems.append(
            f"mixed sample rates ({counts}): every clip must be at {paper.SAMPLE_RATE} Hz; "
            "convert them (e.g. `sox in.wav -r 16000 out.wav`)"
        )
    elif rates and paper.SAMPLE_RATE not in rates:
        problems.append(
            f"every clip is at {next(iter(rates))} Hz, the method's features expect "
            f"{paper.SAMPLE_RATE} Hz; convert them (e.g. `sox in.wav -r 16000 out.wav`)"
        )
    if channels and mono == "refuse":
        path, n = channels[0]
        problems.append(
            f"{len(channels)} clip(s) have several channels (e.g. {path}: {n}); the method "
            "reads mono: pass --mix-down first (channel 0) or --mix-down mean "
            "(load_clip(mono='first' or 'mean') in Python)"
        )
    if short:
        problems.append(
            f"{len(short)} clip(s) are shorter than one model window "
            f"({min_samples / paper.SAMPLE_RATE:.2f} s), e.g. {short[0]}; remove them or "
            "record longer clips"
        )
    return problems


def _window_notes(mtype: str, clips: pd.DataFrame, windows: dict[str, tuple[int, int, int]]):
    """Lines for each model kind whose training windows fill less than one batch."""
    train = clips[(clips.split == "train") & (clips.label == "normal")]
    notes = []
    for kind, (width, hop, batch) in windows.items():
        frames = [1 + sf.info(p).frames // paper.HOP_LENGTH for p in train.path]
        count = sum(max(0, (f - width) // hop + 1) for f in frames)
        if 0 < count < batch:
            notes.append(
                f"{mtype}: the {len(train)} normal training clips give {count} {kind} windows "
                f"(one every {hop} frames), fewer than one batch of {batch}: each epoch is one "
                "short step; more or longer clips would help"
            )
    return notes


def check_folder(
    root: str | Path,
    machine_types_wanted: str | Iterable[str] | None = None,
    *,
    min_samples: int = 1,
    mono: str = "refuse",
    windows: dict[str, tuple[int, int, int]] | None = None,
) -> FolderCheck:
    """Check a user's folder before any training: every problem at once. Chapter 10.

    Fatal: a missing ``train/`` or ``test/``, a type without the clips training and
    testing need, unreadable clips, mixed or other sample rates, several channels
    (unless ``mono`` is ``"first"`` or ``"mean"``), clips shorter than ``min_samples``.
    Not fatal (:attr:`FolderCheck.notes`): files whose names do not parse (skipped), IDs
    with only normal or only anomalous test clips (undefined, left out of the metrics),
    fewer training windows than one batch (``windows``: kind -> (width, hop, batch)).

    Raises
    ------
    FolderError
        One line per fatal problem.
    """
    root = Path(root).expanduser()
    types = machine_types(root, machine_types_wanted)
    problems, notes, parts = [], [], []
    for mtype in types:
        clips, skipped = scan_type(root, mtype)
        notes += unparsable_notes(root, mtype, skipped)
        problems += _type_problems(root, mtype, clips)
        parts.append(clips)
    clips = pd.concat(parts, ignore_index=True)
    problems += _audio_problems(list(clips.path), min_samples, mono)
    undefined = undefined_ids(clips)
    notes += undefined_notes(root, clips)
    if problems:
        raise FolderError(root, problems)
    for mtype in types:
        notes += _window_notes(mtype, clips[clips.machine_type == mtype], windows or {})
    return FolderCheck(types, clips, undefined, notes)


# --------------------------------------------------------------------------------------
# Laying out plain recordings
# --------------------------------------------------------------------------------------


@dataclass
class LayoutRecord:
    """What :func:`layout_recordings` wrote: the split, stated. Saved beside the type's clips."""

    source: str
    machine_type: str
    machine_id: int
    folds: int
    fold: int
    rule: str
    train: dict[str, str]
    test: dict[str, str]
    skipped: list[str]
    aadlib: str = __version__

    @property
    def path_name(self) -> str:
        return f".aadlib-layout-id_{self.machine_id:02d}.json"


def _recordings(folder: Path) -> tuple[list[Path], list[str]]:
    """The WAV files of a folder in name order, and the other files' names (skipped)."""
    if not folder.is_dir():
        return [], []
    files = [p for p in _visible(folder) if p.is_file()]
    wavs = [p for p in files if p.suffix.lower() == ".wav"]
    return wavs, [str(p) for p in files if p not in wavs]


def _fold_blocks(n: int, folds: int) -> list[np.ndarray]:
    return np.array_split(np.arange(n), folds)


def _check_layout_args(source: Path, normal: list, abnormal: list, folds: int, fold: int, mid: int):
    if not normal or not abnormal:
        raise DataLayoutError(
            f"{source} needs WAV recordings in normal/ and in abnormal/ (or anomaly/); found "
            f"{len(normal)} normal and {len(abnormal)} abnormal"
        )
    if not 0 <= mid <= 99:
        raise ValueError(f"machine ID must be 0 to 99 (two digits in the file names), not {mid}")
    if not 2 <= folds <= len(normal):
        raise ValueError(
            f"folds must be 2 to {len(normal)} (the normal recordings), not {folds}: each fold's "
            "normal clips are tested, the other folds' clips train"
        )
    if not 0 <= fold < folds:
        raise ValueError(f"fold must be 0 to {folds - 1}, not {fold}")
    smallest_train = len(normal) - max(len(b) for b in _fold_blocks(len(normal), folds))
    if smallest_train < MIN_TRAIN_CLIPS:
        raise ValueError(
            f"{len(normal)} normal recordings in {folds} folds leave {smallest_train} to train "
            f"on; training needs at least {MIN_TRAIN_CLIPS}: use fewer folds"
        )


def layout_recordings(
    source: str | Path,
    target: str | Path,
    *,
    machine_type: str = "fan",
    machine_id: int = 0,
    folds: int = 2,
    fold: int = 0,
    overwrite: bool = False,
) -> LayoutRecord:
    """Lay out plain ``normal/`` and ``abnormal/`` recordings in the DCASE layout. Chapter 10.

    The normal recordings, in name order, are cut into ``folds`` consecutive blocks;
    block ``fold`` goes to ``test/`` with every abnormal recording, the other blocks to
    ``train/``. Running every ``fold`` tests every normal clip once. Files are copied
    (the source is not changed) and renamed ``{normal,anomaly}_id_XX_NNNNNNNN.wav``
    with ``NNNNNNNN`` the position in name order; the record of the split (which
    source file became which clip) is written to
    ``<target>/<machine_type>/.aadlib-layout-id_XX.json``.

    Raises
    ------
    DataLayoutError
        No recordings in ``normal/`` or ``abnormal/``.
    FileExistsError
        The target already holds clips of this type and ID and ``overwrite`` is off.
    ValueError
        Folds, fold or ID out of range.
    """
    source, target = Path(source).expanduser(), Path(target).expanduser()
    normal, other_n = _recordings(source / "normal")
    abnormal, other_a = _recordings(source / "abnormal")
    if not abnormal:
        abnormal, other_a = _recordings(source / "anomaly")
    _check_layout_args(source, normal, abnormal, folds, fold, machine_id)
    tested = set(_fold_blocks(len(normal), folds)[fold])
    plan = {"train": {}, "test": {}}
    for i, path in enumerate(normal):
        split = "test" if i in tested else "train"
        plan[split][clip_filename("normal", machine_id, i)] = str(path)
    for i, path in enumerate(abnormal):
        plan["test"][clip_filename("anomaly", machine_id, i)] = str(path)
    _write_layout(target / machine_type, machine_id, plan, overwrite)
    record = LayoutRecord(
        str(source),
        machine_type,
        machine_id,
        folds,
        fold,
        f"normal recordings in name order cut into {folds} consecutive blocks; block {fold} "
        "tested with every abnormal recording, the other blocks trained on",
        plan["train"],
        plan["test"],
        other_n + other_a,
    )
    (target / machine_type / record.path_name).write_text(json.dumps(asdict(record), indent=1))
    return record


def ensure_layout(source: str | Path, target: str | Path, **split) -> Path:
    """``target`` laid out by :func:`layout_recordings`, unless it already is. Chapter 10.

    The layout is kept when its record names the same source and split (so its clips,
    and the features and models made from them, are reused); else it is laid out anew,
    replacing that type and ID's clips. Returns ``target``.
    """
    target = Path(target)
    mtype, mid = split.get("machine_type", "fan"), split.get("machine_id", 0)
    record = target / mtype / f".aadlib-layout-id_{mid:02d}.json"
    try:
        saved = json.loads(record.read_text())
        same = saved["source"] == str(Path(source).expanduser()) and all(
            saved[key] == split.get(key, default) for key, default in (("folds", 2), ("fold", 0))
        )
        on_disk = {s: sorted(p.name for p in (target / mtype / s).glob("*.wav")) for s in SPLITS}
        same = same and on_disk == {s: sorted(saved[s]) for s in SPLITS}
    except (OSError, ValueError, KeyError, TypeError):
        same = False
    if not same:
        layout_recordings(source, target, overwrite=True, **split)
    return target


def _write_layout(folder: Path, machine_id: int, plan: dict, overwrite: bool) -> None:
    """Copy the planned files; clips of the same ID already there are refused or replaced."""
    pattern = f"*_id_{machine_id:02d}_*.wav"
    existing = [p for s in SPLITS for p in sorted((folder / s).glob(pattern))]
    if existing and not overwrite:
        raise FileExistsError(
            f"{folder} already holds {len(existing)} clip(s) of ID {machine_id:02d} (e.g. "
            f"{existing[0].name}); choose another target folder or --id, or pass --overwrite "
            "to replace them"
        )
    for path in existing:
        path.unlink()
    for split, files in plan.items():
        (folder / split).mkdir(parents=True, exist_ok=True)
        for name, src in files.items():
            shutil.copyfile(src, folder / split / name)
