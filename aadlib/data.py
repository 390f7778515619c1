"""Machine types, the DCASE 2020 Task 2 folder layout, clip tables and audio loading.

Chapter: ``notebooks/01_data_exploration.ipynb``.

The layout, shared by the real development set and the synthetic one::

    <root>/<machine_type>/train/normal_id_01_00000000.wav
    <root>/<machine_type>/test/normal_id_01_00000000.wav
    <root>/<machine_type>/test/anomaly_id_01_00000000.wav
"""

from __future__ import annotations

import difflib
import os
import re
import warnings
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import soundfile as sf

from .paper import SAMPLE_RATE

__all__ = [
    "MACHINE_TYPES",
    "type_order",
    "DEV_IDS",
    "CLIP_SECONDS",
    "AudioError",
    "AudioErrors",
    "DataLayoutError",
    "clip_filename",
    "parse_clip_name",
    "list_clips",
    "UnknownMachineTypeError",
    "check_machine_types",
    "type_clips",
    "load_clip",
    "check_clips",
    "MAX_CLIP_SECONDS",
    "resource",
    "read_resource_csv",
]

#: The six machine types of DCASE 2020 Task 2, in the paper's order.
MACHINE_TYPES: tuple[str, ...] = ("ToyCar", "ToyConveyor", "fan", "pump", "slider", "valve")


def type_order(types) -> list[str]:
    """The distinct machine types of ``types`` in the paper's order, others (a user's own
    machines) after, in the order they come."""
    present = list(dict.fromkeys(types))
    return [t for t in MACHINE_TYPES if t in present] + [
        t for t in present if t not in MACHINE_TYPES
    ]


#: Machine IDs of the development set, per type (the IDs of the paper's Table 2).
DEV_IDS: dict[str, tuple[int, ...]] = {
    "ToyCar": (1, 2, 3, 4),
    "ToyConveyor": (1, 2, 3),
    "fan": (0, 2, 4, 6),
    "pump": (0, 2, 4, 6),
    "slider": (0, 2, 4, 6),
    "valve": (0, 2, 4, 6),
}

#: Duration of the clips of each machine type (seconds): ToyADMOS clips are 11 s long.
CLIP_SECONDS: dict[str, float] = {t: (11.0 if t == "ToyCar" else 10.0) for t in MACHINE_TYPES}

SPLITS = ("train", "test")
LABELS = ("normal", "anomaly")
_CLIP_NAME = re.compile(r"^(normal|anomaly)_id_(\d{2})_(\d{8})\.wav$")
TABLE_COLUMNS = ["machine_type", "split", "label", "machine_id", "index", "path"]


class AudioError(ValueError):
    """A clip cannot be used as it is; the message names the file and what to do."""


class AudioErrors(AudioError):
    """Several clips cannot be used; :attr:`errors` holds each one's :class:`AudioError`."""

    def __init__(self, errors: list[AudioError], shown: int = 20):
        self.errors = list(errors)
        lines = [f"  {err}" for err in self.errors[:shown]]
        if len(self.errors) > shown:
            lines.append(f"  ... and {len(self.errors) - shown} more")
        super().__init__(
            f"{len(self.errors)} clip(s) cannot be used; mend or remove each, then run again:\n"
            + "\n".join(lines)
        )


class DataLayoutError(FileNotFoundError):
    """A data root does not follow the DCASE 2020 Task 2 layout."""


class UnknownMachineTypeError(ValueError):
    """A machine type that is not one of :data:`MACHINE_TYPES`."""


def check_machine_types(machine_types: str | Iterable[str] | None) -> list[str]:
    """The machine types asked for, as a list without repeats, checked against the six.

    ``None`` means all of :data:`MACHINE_TYPES`; a single name may be given as a string.

    Raises
    ------
    UnknownMachineTypeError
        A name that is not a machine type, with the closest one as a hint.
    """
    if machine_types is None:
        return list(MACHINE_TYPES)
    wanted = [machine_types] if isinstance(machine_types, str) else list(machine_types)
    by_lower = {t.lower(): t for t in MACHINE_TYPES}
    for name in wanted:
        if name not in MACHINE_TYPES:
            guess = by_lower.get(str(name).lower()) or next(
                iter(difflib.get_close_matches(str(name), MACHINE_TYPES, n=1)), None
            )
            hint = f" Did you mean {guess!r}?" if guess else ""
            raise UnknownMachineTypeError(
                f"unknown machine type {name!r}: DCASE 2020 Task 2 has {', '.join(MACHINE_TYPES)} "
                f"(names are case-sensitive).{hint}"
            )
    return list(dict.fromkeys(wanted))  # drop repeats, keep the order


def resource(name: str):
    """A file shipped in ``aadlib/resources`` (its README lists the sources)."""
    return resources.files("aadlib") / "resources" / name


def read_resource_csv(name: str) -> pd.DataFrame:
    """A CSV file shipped in ``aadlib/resources``, as a table."""
    with resource(name).open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle)


def clip_filename(label: str, machine_id: int, index: int) -> str:
    """File name of a clip in the DCASE layout, e.g. ``normal_id_01_00000042.wav``."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, not {label!r}")
    return f"{label}_id_{int(machine_id):02d}_{int(index):08d}.wav"


def parse_clip_name(name: str) -> dict | None:
    """Parse a clip file name into ``label``, ``machine_id`` and ``index``. Chapters 1, 2.

    Returns ``None`` for names that are not clips of the layout (e.g. ``.DS_Store``).
    """
    match = _CLIP_NAME.match(Path(name).name)
    if match is None:
        return None
    label, machine_id, index = match.groups()
    return {"label": label, "machine_id": int(machine_id), "index": int(index)}


def list_clips(
    root: str | Path,
    machine_type: str | None = None,
    split: str | None = None,
) -> pd.DataFrame:
    """Table of the clips under a data root, one row a clip. Chapters 1, 2, 4.

    Columns: ``machine_type``, ``split``, ``label``, ``machine_id``, ``index``, ``path``;
    rows sorted by type, split, ID, label and index, so the order is stable.
    Files whose names do not follow the layout are ignored.

    Raises
    ------
    DataLayoutError
        The root, or the requested machine type, does not exist or holds no clip.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataLayoutError(
            f"data root {root} does not exist. Generate the synthetic set "
            "(`aadlib synth`) or download the real one (`aadlib download`)."
        )
    types = [machine_type] if machine_type else [t for t in MACHINE_TYPES if (root / t).is_dir()]
    splits = [split] if split else list(SPLITS)
    rows = []
    for mtype in types:
        for spl in splits:
            folder = root / mtype / spl
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                parsed = parse_clip_name(path.name)
                if parsed is not None and path.is_file():
                    rows.append({"machine_type": mtype, "split": spl, **parsed, "path": path})
    if not rows:
        where = root / machine_type if machine_type else root
        raise DataLayoutError(
            f"no clips found under {where}: expected "
            "<root>/<machine_type>/{train,test}/{normal,anomaly}_id_XX_NNNNNNNN.wav "
            f"with machine types among {', '.join(MACHINE_TYPES)}."
        )
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table = table.sort_values(["machine_type", "split", "machine_id", "label", "index"])
    return table.reset_index(drop=True)


def type_clips(root: str | Path, machine_type: str) -> pd.DataFrame:
    """Clip table of one machine type, checked to be usable for training and testing.

    Raises
    ------
    DataLayoutError
        No normal training clip, or no test clip of both labels for scoring.
    """
    table = list_clips(root, machine_type)
    train = table[(table.split == "train") & (table.label == "normal")]
    if train.empty:
        raise DataLayoutError(
            f"{Path(root) / machine_type / 'train'} holds no normal training clip "
            "(normal_id_XX_NNNNNNNN.wav); an autoencoder needs normal sounds to learn from."
        )
    test = table[table.split == "test"]
    missing = [lab for lab in LABELS if lab not in set(test.label)]
    if missing:
        raise DataLayoutError(
            f"{Path(root) / machine_type / 'test'} has no {' or '.join(missing)} test clip; "
            "AUC needs both normal and anomalous test clips."
        )
    return table


def load_clip(
    path: str | Path,
    sr: int = SAMPLE_RATE,
    *,
    resample: bool = False,
    mono: str = "refuse",
) -> np.ndarray:
    """Load one clip as a 1-D ``float32`` waveform in [-1, 1]. Chapters 1, 2, 6.

    Parameters
    ----------
    path
        A WAV (or other libsndfile-readable) file.
    sr
        The sample rate the features expect.
    resample
        What to do with a clip at another rate: refuse with :class:`AudioError`
        (default, so a mixed data set is noticed) or resample with librosa.
    mono
        Several channels: ``"refuse"`` (default), ``"mean"`` (average them) or
        ``"first"`` (keep channel 0).

    Raises
    ------
    AudioError
        The file is missing, empty, not audio, truncated (its header promises more
        samples than it holds), at the wrong rate, multi-channel, silent, or holds NaN/inf
        samples. The message names the file and the remedy.
    """
    if mono not in ("refuse", "mean", "first"):
        raise ValueError(f"mono must be 'refuse', 'mean' or 'first', not {mono!r}")
    path = Path(path)
    _check_file(path)
    try:
        data, file_sr = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(
            f"{path}: not a readable audio file ({err}). It may be truncated or corrupt: "
            "delete it and re-download or regenerate the data set."
        ) from err
    if data.shape[0] == 0:
        raise AudioError(
            f"{path}: the file holds no samples. Delete it or re-download the data set."
        )
    y = _checked_mono(path, data, mono)
    if file_sr != sr:
        if not resample:
            raise AudioError(
                f"{path}: sample rate {file_sr} Hz, expected {sr} Hz. Convert the data set, or "
                "pass resample=True to load_clip to resample on loading."
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = librosa.resample(y, orig_sr=file_sr, target_sr=sr).astype(np.float32)
    return y


def _checked_mono(path: Path, data: np.ndarray, mono: str) -> np.ndarray:
    """One channel of ``data`` (frames x channels) as ``mono`` says, checked to be finite
    and not silent; the errors name ``path``."""
    if data.shape[1] > 1:
        if mono == "mean":
            data = data.mean(axis=1, keepdims=True)
        elif mono == "first":
            data = data[:, :1]
        else:
            raise AudioError(
                f"{path}: {data.shape[1]} channels, but the method expects mono clips. "
                "Pass mono='mean' or mono='first' to load_clip to mix down."
            )
    y = np.ascontiguousarray(data[:, 0])
    if not np.all(np.isfinite(y)):
        raise AudioError(
            f"{path}: the clip holds NaN or infinite samples; it cannot be scored. Remove it."
        )
    if not np.any(y):
        raise AudioError(
            f"{path}: the clip is digital silence (all samples zero); its log-mel energy is "
            "undefined. Remove it from the data set."
        )
    return y


def _wav_shortfall(path: Path) -> tuple[int, int] | None:
    """``(promised, present)`` bytes of a WAV's sample data when the file holds fewer.

    libsndfile reads a truncated WAV silently as a shorter clip; the RIFF header still
    says how many bytes of samples the file was written with. ``None`` for other formats,
    for a complete file, and for a streamed WAV whose header leaves the size open.
    """
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return None
        order = "little" if head[:4] == b"RIFF" else "big"
        size = os.fstat(handle.fileno()).st_size
        position = 12
        while position + 8 <= size:
            handle.seek(position)
            chunk, length = handle.read(4), int.from_bytes(handle.read(4), order)
            if chunk == b"data":
                present = size - position - 8
                open_ended = length in (0, 0xFFFFFFFF)
                return None if open_ended or present >= length else (length, present)
            position += 8 + length + (length & 1)
    return None


def _check_file(path: Path) -> None:
    """The checks that need no decoding: the file exists, is not empty, is not truncated."""
    if not path.is_file():
        raise AudioError(f"{path}: no such file. Check the data root or re-download the data set.")
    if path.stat().st_size == 0:
        raise AudioError(
            f"{path}: the file is empty (0 bytes). Delete it or re-download the data set."
        )
    shortfall = _wav_shortfall(path)
    if shortfall is not None:
        promised, present = shortfall
        raise AudioError(
            f"{path}: truncated: its header promises {promised:,} bytes of samples, the file "
            f"holds {present:,}. Re-download or regenerate the data set."
        )


#: The longest clip aadlib reads (seconds): each clip is read, and its features made, whole;
#: the DCASE clips are 10 s long (ToyCar: 11 s).
MAX_CLIP_SECONDS = 60.0


def check_clips(
    paths, sr: int = SAMPLE_RATE, min_samples: int = 1, max_seconds: float = MAX_CLIP_SECONDS
) -> list[int]:
    """Check many clips from their headers, and report every bad one at once. Chapter 5.

    Each clip must exist, be a readable, complete, mono audio file at ``sr`` Hz with at
    least ``min_samples`` samples (the length of one model window) and at most
    ``max_seconds`` seconds (a clip is read whole: a longer one would take memory in
    proportion). Problems that only decoding reveals (NaN samples, digital silence) are
    reported, all at once too, when the features are extracted.

    Returns the number of samples of each clip.

    Raises
    ------
    AudioErrors
        One entry per bad clip, each naming the file and the reason.
    """
    errors, lengths = [], []
    for path in map(Path, paths):
        try:
            _check_file(path)
            try:
                info = sf.info(path)
            except (sf.LibsndfileError, RuntimeError, TypeError) as err:
                raise AudioError(
                    f"{path}: not a readable audio file ({err}). Delete it and re-download or "
                    "regenerate the data set."
                ) from err
            if info.samplerate != sr:
                raise AudioError(f"{path}: sample rate {info.samplerate} Hz, expected {sr} Hz.")
            if info.channels != 1:
                raise AudioError(f"{path}: {info.channels} channels, but the method expects mono.")
            if info.frames < min_samples:
                raise AudioError(
                    f"{path}: {info.frames / sr:.2f} s long, shorter than one model window "
                    f"({min_samples / sr:.2f} s). Remove it or pad it to that length."
                )
            if info.frames > max_seconds * sr:
                raise AudioError(
                    f"{path}: {info.frames / sr:,.1f} s long; clips are read whole, so those "
                    f"above {max_seconds:g} s are refused. Cut it into clips as long as the "
                    "others (DCASE clips: 10 s), or remove it."
                )
            lengths.append(int(info.frames))
        except AudioError as err:
            errors.append(err)
            lengths.append(0)
    if errors:
        raise AudioErrors(errors)
    return lengths
