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

Sound model
-----------
Every clip is built in a *whitened* domain, where the background noise is white with unit
variance, and is then passed through a per-type spectral envelope. Levels of tones and
clicks are given as a *prominence*: their power relative to the noise power inside the
mel band around them (0 dB roughly doubles that band's energy). The envelope is
calibrated against the real data (``resources/real_logmel_stats.csv``): it starts from
the real mean log-mel profile and is corrected a few times on synthetic normal clips
until their mean log-mel spectrum matches the real one, so the synthetic set has the
real set's spectral balance, including the quiet bins at the band edges.
:func:`calibration_report` checks a set of clips against the real statistics: the mean
log-mel spectrum must lie within 3 dB of the real one (mean absolute difference over the
128 bins) and the spread must be the real one's: the mean over bins of the per-bin std
within [2/3, 3/2] of the real mean, and at least 90 % of the bins with a std within
[1/2, 2] of the real bin's.

Each machine type has a *model*, a prototype signature drawn from the seed: level, noise
colour (tilt and resonance bumps), slow level fluctuation, and a harmonic series
(fundamental and per-harmonic prominence) plus a type-specific rhythm:

* ``ToyCar``: motor whine (150-400 Hz) with many harmonics, gear amplitude modulation.
* ``ToyConveyor``: motor hum (60-160 Hz), periodic belt swell with a rattle band.
* ``fan``: blade-pass tone (rotation rate x blades) and its harmonics, rotation AM.
* ``pump``: mains-motor hum (45-60 Hz) with many harmonics, vane-pass tone, flow fluctuation.
* ``slider``: back-and-forth strokes: friction noise band and motor whine during each
  stroke, end-stop thump at its end.
* ``valve``: open/close click pairs (damped resonant modes) over a weak pump hum.

Each machine ID is one machine of that model (see :func:`machine_signature`): every
parameter of the prototype moved by a small random step (about 1 % in pitch, 1 dB in level,
a tenth of an octave in its resonances, 1.5 dB per harmonic, at spread 1), so that, as with
real machines of one model, an ID classifier tells the IDs apart well but not perfectly.
The spread is set per type, smallest for ToyConveyor, whose real IDs are the hardest to
tell apart; :func:`id_classification_accuracy` measures the result (about 60 % for
ToyConveyor's 3 IDs and 75-85 % for the other types' 4 IDs, seed 0, ``quick`` size).

Normal clips vary from clip to clip like recordings do: level (about 1.5 dB), pitch
(about 0.6 %), rhythm rate (2 %), noise tilt and harmonic balance, random phases, and
background swells (louder passages of the background, 0.8 per 10 s on average).

Anomalies
---------
Anomalous clips exist only in the test split. Each gets one kind (drawn per clip, uniformly
from :data:`ANOMALY_KINDS`) and a severity in [0, 1] drawn uniformly; the kind's strength
grows with the severity, so low-severity anomalies are subtle and the AUC of a detector
is informative rather than 1.0. Every kind also moves the cues that identify the machine,
as a real fault changes a machine's spectral signature and not only adds to it: the
balance of its harmonics, its speed, its resonances, its noise colour (see
:data:`ANOMALY_KINDS`). ``anomalies.csv`` records file, ID, kind, severity and
the kind's parameters for every anomalous clip. ``synthesize_clip(..., plant=False)``
renders an anomalous clip's *clean twin* (the same clip without its anomaly), to show or
measure exactly what an anomaly changes.

Deterministic: each clip's random numbers come from NumPy generators seeded with
``(seed, machine type, machine ID, split, label, index)`` (one per sound component), so a
clip is bit-identical whether it is generated alone, with its type or with the whole set,
and a smaller size's clips are the first clips of a larger size.

Sizes
-----
``tiny`` (6 training clips, 3 + 3 test clips per ID) for unit tests, ``quick`` (16,
90 + 90) for the book and CI (see :data:`SIZES` for why 90), and ``full``, which
matches the real development set's file counts of Table 1
(``resources/table1_dataset_sizes.csv``). The real set's split of each ID's test clips
into normal and anomalous ones is not in Table 1; ``full`` uses half and half (the odd clip
is anomalous), which keeps AUC estimates balanced.
"""

from __future__ import annotations

import functools
import io
import json
import math
import multiprocessing
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import xxhash
from tqdm.auto import tqdm

from . import reference
from ._io import exclusive, remove_stale_temporaries, write_bytes
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
from .features import extract_logmels, log_mel
from .paper import SAMPLE_RATE

__all__ = [
    "ANOMALY_KINDS",
    "anomaly_table",
    "SIZES",
    "SYNTH_VERSION",
    "SynthSize",
    "ClipKey",
    "machine_signature",
    "planted_anomaly",
    "synthesize_clip",
    "clip_plan",
    "dataset_counts",
    "generate_dataset",
    "calibration_report",
    "id_predictions",
    "id_classification_accuracy",
    "id_classification_table",
]

#: Bumped whenever a change alters the generated audio; stored in the marker file.
SYNTH_VERSION = 3

#: The anomaly kinds and what each does to the sound (applied in the whitened domain).
#: The second part of each text is how the kind moves the cues that identify the machine
#: (from the mildest to the most severe instance).
ANOMALY_KINDS: dict[str, str] = {
    "extra_tone": "a new steady tone (and its weaker octave) at a random frequency, "
    "prominence -4 to +18 dB over its mel band as severity grows; the harmonic balance "
    "tilts by 1 to 5 dB per octave of harmonic number and the resonances shift by 2 % to 10 %",
    "knocks": "impulsive knocks (damped resonances) at random times, 1-6 per second, "
    "prominence 10 to 40 dB; the machine runs 0.5 % to 3 % faster or slower",
    "frequency_drift": "the harmonic series, resonances and rhythm drift in frequency "
    "during the clip, by 2 % to 20 %",
    "amplitude_modulation": "the whole sound is amplitude modulated at 0.5-4 Hz, depth 0.2 "
    "to 0.95; the harmonic series gets 1 to 6 dB louder or quieter against the noise",
    "noise_change": "the background noise gains or loses energy in a 0.7-2 octave band, "
    "by 2 to 12 dB; its colour tilts by 0.2 to 1 dB per octave",
}


MARKER_NAME = ".aadlib-synth.json"
#: The files the generator wrote into a type folder (see :class:`_Manifest`).
MANIFEST_NAME = ".aadlib-synth-files.json"
# The state file of an interrupted run of versions before 3 (replaced by the manifest).
STATE_NAME = ".aadlib-synth.partial.json"
_MANIFEST_SAVE_SECONDS = 30.0
_FOREIGN_SHOWN = 10
ANOMALY_TABLE = "anomalies.csv"
_SPLIT_CODES = {"train": 0, "test": 1, "calibration": 2}
_LABEL_CODES = {"normal": 0, "anomaly": 1}
# Random streams of a clip (see _Streams). "anomaly" holds the planted anomaly's kind and
# parameters, so the anomaly table is listed without rendering audio.
_STREAMS = (
    "anomaly",
    "variation",
    "noise",
    "envelope",
    "rhythm",
    "band",
    "clicks",
    "tonal",
    "am",
    "anomaly_sound",
)
_PCM_SCALE = 32767.0
_CALIBRATION_ROUNDS = 5
_CALIBRATION_CLIPS_PER_ID = 2
_CALIBRATION_SECONDS = 5.0
# Louder passages of the background: 0.8 in a 10 s clip, as many per second in shorter ones.
_SWELLS_PER_SECOND = 0.08


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


def _check_type(machine_type: str) -> None:
    check_machine_types([machine_type])


def dataset_counts(size: str | SynthSize = "quick") -> pd.DataFrame:
    """Clips per machine type and ID for a size, without writing anything. Chapter 1.

    Columns: ``machine_type``, ``machine_id``, ``train``, ``test_normal``, ``test_anomaly``.
    For ``full`` the training count is Table 1's ``train_files`` and the test files are
    split half and half (the odd one anomalous).
    """
    size = _as_size(size)
    table = reference.table1().set_index(["machine_type", "machine_id"])
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
    _check_type(machine_type)
    counts = dataset_counts(size)
    keys = []
    for row in counts[counts.machine_type == machine_type].itertuples():
        keys += [ClipKey("train", "normal", row.machine_id, i) for i in range(row.train)]
        keys += [ClipKey("test", "normal", row.machine_id, i) for i in range(row.test_normal)]
        keys += [ClipKey("test", "anomaly", row.machine_id, i) for i in range(row.test_anomaly)]
    return keys


# --------------------------------------------------------------------------- randomness


def _rng(seed: int, machine_type: str, machine_id: int, *codes: int) -> np.random.Generator:
    """A generator that depends only on its arguments (never on generation order)."""
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed}")
    type_code = MACHINE_TYPES.index(machine_type)
    return np.random.default_rng([int(seed), type_code, int(machine_id), *map(int, codes)])


@dataclass(frozen=True)
class _Streams:
    """Random streams of one clip, one per sound component.

    Each component draws from its own generator, so a component that draws more or fewer
    numbers (more clicks when the rhythm drifts, say) leaves the others unchanged: the
    clean twin of an anomalous clip (``plant=False``) differs only by the anomaly.
    """

    seed: int
    machine_type: str
    machine_id: int
    split: str
    label: str
    index: int

    def __call__(self, component: str) -> np.random.Generator:
        codes = (_SPLIT_CODES[self.split], _LABEL_CODES[self.label], int(self.index))
        stream = _STREAMS.index(component)
        return _rng(self.seed, self.machine_type, self.machine_id, 1, *codes, stream)


# --------------------------------------------------------------------------- mel helpers


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * (200.0 / 3)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, linear)


@functools.cache
def _mel_bands(n_mels: int = 128, sr: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Centre frequencies and equivalent bandwidths (Hz) of the feature's mel bands."""
    edges = _mel_to_hz(np.linspace(0.0, float(_hz_to_mel(sr / 2)), n_mels + 2))
    return edges[1:-1], (edges[2:] - edges[:-2]) / 2


def _band_width(freq_hz: np.ndarray | float) -> np.ndarray:
    centres, widths = _mel_bands()
    return np.interp(freq_hz, centres, widths)


def _tone_amplitude(freq_hz, prominence_db) -> np.ndarray:
    """Sine amplitude whose power is ``prominence_db`` over unit white noise in its mel band.

    Unit-variance white noise has power ``2 B / sr`` in a band of ``B`` Hz, and a sine of
    amplitude ``A`` has power ``A**2 / 2``.
    """
    band = _band_width(freq_hz)
    return np.sqrt(4.0 * band / SAMPLE_RATE) * 10.0 ** (np.asarray(prominence_db) / 20.0)


# --------------------------------------------------------------------------- signatures


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A frequency drawn uniformly on a log scale (as likely in each octave)."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _harmonics(rng, n_range, first_db, slope_db) -> list[float]:
    """Prominences (dB) of a harmonic series: a random start, a decay, random ripple."""
    n = int(rng.integers(n_range[0], n_range[1] + 1))
    start = rng.uniform(*first_db)
    slope = rng.uniform(*slope_db)
    ripple = rng.normal(0.0, 3.0, n)
    return [round(float(start - slope * k + ripple[k]), 2) for k in range(n)]


def _bumps(rng, count: int) -> list[dict]:
    """Broad resonances of the noise: centre (Hz, log-uniform), width (octaves), gain."""
    return [
        {
            "centre_hz": _log_uniform(rng, 150.0, 6000.0),
            "width_octaves": float(rng.uniform(0.3, 0.8)),
            "gain_db": float(rng.uniform(-4.0, 6.0)),
        }
        for _ in range(count)
    ]


def _modes(rng, count: int, freq_range, decay_range, prominence_range) -> list[dict]:
    """Damped resonant modes of a click or knock."""
    return [
        {
            "freq_hz": _log_uniform(rng, *freq_range),
            "decay_s": float(rng.uniform(*decay_range)),
            "prominence_db": float(rng.uniform(*prominence_range)),
        }
        for _ in range(count)
    ]


def _type_signature(machine_type: str, rng: np.random.Generator) -> dict:
    """The type-specific part of an ID's signature (rhythm, harmonics, clicks)."""
    sig: dict = {
        "am": None,
        "cycle": None,
        "band_layer": None,
        "clicks": None,
        "tonal_follows_cycle": False,
    }
    if machine_type == "ToyCar":
        sig["f0_hz"] = rng.uniform(150.0, 400.0)
        sig["harmonic_prominence_db"] = _harmonics(rng, (8, 14), (4.0, 14.0), (0.5, 1.5))
        sig["pitch_wobble"] = rng.uniform(0.005, 0.015)
        sig["am"] = {"rate_hz": rng.uniform(5.0, 14.0), "depth": rng.uniform(0.15, 0.4)}
        sig["fluctuation_db"] = 2.5
    elif machine_type == "ToyConveyor":
        sig["f0_hz"] = rng.uniform(60.0, 160.0)
        sig["harmonic_prominence_db"] = _harmonics(rng, (6, 12), (2.0, 10.0), (0.3, 1.0))
        sig["pitch_wobble"] = rng.uniform(0.003, 0.01)
        sig["cycle"] = {
            "period_s": rng.uniform(0.8, 2.0),
            "duty": rng.uniform(0.2, 0.5),
            "gain_db": rng.uniform(3.0, 6.0),
        }
        sig["band_layer"] = {
            "centre_hz": _log_uniform(rng, 400.0, 3000.0),
            "width_octaves": rng.uniform(0.5, 1.0),
            "prominence_db": rng.uniform(0.0, 6.0),
        }
        sig["fluctuation_db"] = 2.5
    elif machine_type == "fan":
        rotation = rng.uniform(12.0, 25.0)
        blades = int(rng.integers(3, 8))
        sig["rotation_hz"], sig["blades"] = rotation, blades
        sig["f0_hz"] = rotation * blades
        sig["harmonic_prominence_db"] = _harmonics(rng, (3, 6), (0.0, 10.0), (1.0, 3.0))
        sig["pitch_wobble"] = rng.uniform(0.002, 0.006)
        sig["am"] = {"rate_hz": rotation, "depth": rng.uniform(0.05, 0.2)}
        sig["fluctuation_db"] = 2.5
    elif machine_type == "pump":
        sig["f0_hz"] = rng.uniform(45.0, 60.0)
        sig["harmonic_prominence_db"] = _harmonics(rng, (8, 14), (0.0, 8.0), (0.2, 0.8))
        sig["vanes"] = int(rng.integers(4, 9))
        sig["vane_prominence_db"] = rng.uniform(2.0, 10.0)
        sig["pitch_wobble"] = rng.uniform(0.002, 0.006)
        sig["fluctuation_db"] = 3.0
    elif machine_type == "slider":
        sig["f0_hz"] = rng.uniform(300.0, 900.0)
        sig["harmonic_prominence_db"] = _harmonics(rng, (3, 6), (0.0, 10.0), (1.0, 3.0))
        sig["pitch_wobble"] = rng.uniform(0.005, 0.015)
        sig["cycle"] = {
            "period_s": rng.uniform(0.8, 2.5),
            "duty": rng.uniform(0.35, 0.65),
            "gain_db": rng.uniform(4.0, 8.0),
        }
        sig["band_layer"] = {
            "centre_hz": _log_uniform(rng, 500.0, 4000.0),
            "width_octaves": rng.uniform(0.7, 1.5),
            "prominence_db": rng.uniform(3.0, 9.0),
        }
        sig["clicks"] = {
            "phases": [sig["cycle"]["duty"]],
            "modes": _modes(rng, 2, (80.0, 400.0), (0.01, 0.04), (8.0, 16.0)),
        }
        sig["tonal_follows_cycle"] = True  # the motor whines only while the slider moves
        sig["fluctuation_db"] = 2.0
    elif machine_type == "valve":
        sig["f0_hz"] = rng.uniform(45.0, 60.0)
        sig["harmonic_prominence_db"] = _harmonics(rng, (3, 5), (-4.0, 4.0), (0.5, 1.5))
        sig["pitch_wobble"] = rng.uniform(0.002, 0.006)
        period = rng.uniform(0.5, 1.5)
        sig["cycle"] = {"period_s": period, "duty": 0.0, "gain_db": 0.0}
        delay = rng.uniform(0.08, 0.3)
        sig["clicks"] = {
            "phases": [0.0, delay / period],
            "modes": _modes(rng, int(rng.integers(2, 4)), (800.0, 5000.0), (0.004, 0.02), (12, 24)),
            "burst": {"prominence_db": rng.uniform(16.0, 24.0), "decay_s": rng.uniform(0.01, 0.03)},
        }
        sig["fluctuation_db"] = 2.5
    return sig


#: How far a type's machine IDs stray from the type's model (its prototype signature), as
#: a multiple of :data:`_ID_DEVIATION`. Machines of one model differ a little, so a
#: classifier tells their IDs apart well but not perfectly; ToyConveyor's the least (its
#: real IDs are the hardest to tell apart).
_ID_SPREAD: dict[str, float] = {
    "ToyCar": 0.8,
    "ToyConveyor": 0.35,
    "fan": 0.75,
    "pump": 0.55,
    "slider": 0.75,
    "valve": 0.85,
}

#: How each parameter of an ID's signature deviates from the prototype at spread 1: a
#: normal step, added (``add``), as a log-ratio (``ratio``) or in octaves (``octaves``).
#: Counts (blades, vanes) are the model's and the same for every ID.
_ID_DEVIATION: dict[str, tuple[str, float]] = {
    "level_db": ("add", 1.0),
    "noise_tilt_db_per_octave": ("add", 0.3),
    "centre_hz": ("octaves", 0.1),
    "width_octaves": ("ratio", 0.1),
    "gain_db": ("add", 1.0),
    "f0_hz": ("ratio", 0.01),
    "rotation_hz": ("ratio", 0.01),
    "harmonic_prominence_db": ("add", 1.5),
    "vane_prominence_db": ("add", 1.0),
    "prominence_db": ("add", 1.0),
    "pitch_wobble": ("ratio", 0.1),
    "period_s": ("ratio", 0.03),
    "rate_hz": ("ratio", 0.03),
    "depth": ("ratio", 0.1),
    "freq_hz": ("ratio", 0.03),
    "decay_s": ("ratio", 0.1),
}


def _prototype(machine_type: str, seed: int) -> dict:
    """The signature of the type's model, which every ID of the type varies a little."""
    rng = _rng(seed, machine_type, 0, 2)
    sig = {
        "level_db": rng.uniform(-2.0, 2.0),
        "noise_tilt_db_per_octave": rng.uniform(-1.5, 1.5),
        "noise_bumps": _bumps(rng, 2),
    }
    sig.update(_type_signature(machine_type, rng))
    return sig


def _individual(value, rng: np.random.Generator, spread: float, key: str | None = None):
    """``value`` (a prototype, or a part of it) with each parameter of
    :data:`_ID_DEVIATION` moved by a random step of ``spread`` times its deviation."""
    if isinstance(value, dict):
        return {k: _individual(v, rng, spread, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_individual(v, rng, spread, key) for v in value]
    if key not in _ID_DEVIATION or not isinstance(value, float):
        return value
    how, scale = _ID_DEVIATION[key]
    step = spread * scale * float(rng.standard_normal())
    if how == "add":
        return value + step
    return value * (2.0**step if how == "octaves" else math.exp(step))


@functools.cache
def _signature_cached(machine_type: str, machine_id: int, seed: int) -> str:
    rng = _rng(seed, machine_type, machine_id, 0)
    sig = {"machine_type": machine_type, "machine_id": int(machine_id), "seed": int(seed)}
    sig.update(_individual(_prototype(machine_type, seed), rng, _ID_SPREAD[machine_type]))
    if machine_type == "fan":  # blade pass and rotation belong together
        sig["f0_hz"] = sig["rotation_hz"] * sig["blades"]
        sig["am"]["rate_hz"] = sig["rotation_hz"]
    # JSON keeps the cached value immutable and turns NumPy scalars into plain floats.
    return json.dumps(sig, default=float)


def machine_signature(machine_type: str, machine_id: int, seed: int = 0) -> dict:
    """The sound parameters that distinguish one machine ID from the others. Chapter 1.

    The IDs of a type are machines of one model: each is the type's prototype with every
    parameter moved by a small random step (the type's spread; the smallest for
    ToyConveyor), so their signatures overlap as real machines' do, and the counts
    (``blades``, ``vanes``) are the same for all of them.

    Common keys: ``level_db`` (overall level offset), ``noise_tilt_db_per_octave`` (noise
    colour around 1 kHz), ``noise_bumps`` (broad noise resonances: centre, width, gain),
    ``fluctuation_db`` (std of the slow level fluctuation), ``f0_hz`` (fundamental of the
    harmonic series), ``harmonic_prominence_db`` (prominence of harmonics 1, 2, ... over
    their mel band), ``pitch_wobble`` (relative std of slow pitch variation). Rhythm keys,
    ``None`` where a type has none: ``am`` (periodic amplitude modulation: rate, depth),
    ``cycle`` (periodic level swell: period, duty cycle, gain), ``band_layer`` (a noise band
    sounding during the swell: centre, width, prominence), ``clicks`` (damped modes struck
    at given phases of the cycle, with an optional broadband ``burst``),
    ``tonal_follows_cycle`` (the harmonic series sounds only while the cycle is on).
    Type extras: ``rotation_hz`` and ``blades`` (fan), ``vanes`` and ``vane_prominence_db``
    (pump).
    """
    _check_type(machine_type)
    if int(machine_id) not in DEV_IDS[machine_type]:
        raise ValueError(f"{machine_type} has IDs {DEV_IDS[machine_type]}, not {machine_id}")
    return json.loads(_signature_cached(machine_type, int(machine_id), int(seed)))


# --------------------------------------------------------------------------- anomalies


def _lerp(low: float, high: float, severity: float) -> float:
    return low + (high - low) * severity


def planted_anomaly(machine_type: str, machine_id: int, index: int, seed: int = 0) -> dict:
    """Kind, severity and parameters of the anomaly planted in test clip ``index``. Chapter 1.

    Cheap (no audio is rendered), so :func:`generate_dataset` uses it for ``anomalies.csv``.
    The parameters include how the kind moves the machine's ID cues: ``harmonic_tilt_db``
    and ``resonance_shift`` (extra_tone), ``detune`` (knocks), ``tonal_gain_db``
    (amplitude_modulation), ``tilt_db_per_octave`` (noise_change); frequency_drift moves
    them with its ``drift``.
    """
    streams = _Streams(int(seed), machine_type, int(machine_id), "test", "anomaly", int(index))
    rng = streams("anomaly")
    kind = str(rng.choice(list(ANOMALY_KINDS)))
    severity = round(float(rng.uniform(0.0, 1.0)), 4)
    params: dict = {}
    if kind == "extra_tone":
        params["freq_hz"] = _log_uniform(rng, 150.0, 6000.0)
        params["prominence_db"] = _lerp(-4.0, 18.0, severity)
        params["harmonic_tilt_db"] = _lerp(*_CUE_CHANGE["harmonic_tilt_db"], severity) * _sign(rng)
        params["resonance_shift"] = _lerp(*_CUE_CHANGE["resonance_shift"], severity) * _sign(rng)
    elif kind == "knocks":
        params["rate_hz"] = float(rng.uniform(1.0, 6.0))
        params["modes"] = [
            {"freq_hz": _log_uniform(rng, 200.0, 4000.0), "decay_s": rng.uniform(0.003, 0.015)}
            for _ in range(2)
        ]
        params["prominence_db"] = _lerp(10.0, 40.0, severity)
        params["detune"] = _lerp(*_CUE_CHANGE["detune"], severity) * _sign(rng)
    elif kind == "frequency_drift":
        params["drift"] = _lerp(0.02, 0.2, severity) * _sign(rng)
        params["start_fraction"] = float(rng.uniform(0.0, 0.5))
    elif kind == "amplitude_modulation":
        params["rate_hz"] = float(rng.uniform(0.5, 4.0))
        params["depth"] = _lerp(0.2, 0.95, severity)
        params["tonal_gain_db"] = _lerp(*_CUE_CHANGE["tonal_gain_db"], severity) * _sign(rng)
    elif kind == "noise_change":
        params["centre_hz"] = _log_uniform(rng, 200.0, 6000.0)
        params["width_octaves"] = float(rng.uniform(0.7, 2.0))
        params["gain_db"] = _lerp(2.0, 12.0, severity) * _sign(rng)
        params["tilt_db_per_octave"] = _lerp(*_CUE_CHANGE["tilt_db_per_octave"], severity) * _sign(
            rng
        )
    # Rounded so that anomalies.csv holds exactly the values the audio was rendered with.
    return {"kind": kind, "severity": severity, "params": _rounded(params)}


def _sign(rng: np.random.Generator) -> float:
    return float(rng.choice([-1.0, 1.0]))


#: How far each anomaly kind moves the cues that identify the machine, from the mildest
#: to the most severe instance (see :data:`ANOMALY_KINDS`).
_CUE_CHANGE: dict[str, tuple[float, float]] = {
    "harmonic_tilt_db": (1.0, 5.0),
    "resonance_shift": (0.02, 0.1),
    "detune": (0.005, 0.03),
    "tonal_gain_db": (1.0, 6.0),
    "tilt_db_per_octave": (0.2, 1.0),
}


def _disturbed(sig: dict, anomaly: dict) -> dict:
    """The signature that a faulty machine has: its ID cues moved by the anomaly.

    A fault changes how the machine sounds as a whole, not only by what it adds: a worn
    bearing that whines also shifts the balance of the harmonics and how the housing
    resonates, a loose part loads the motor and changes its speed, an unbalance changes
    the level of the tonal part against the noise, a leak colours the noise.
    (``frequency_drift`` moves the pitch cues itself.)
    """
    params = anomaly["params"]
    sig = json.loads(json.dumps(sig))  # a deep copy: signatures are plain JSON data
    if "harmonic_tilt_db" in params:
        sig["harmonic_prominence_db"] = [
            p + params["harmonic_tilt_db"] * math.log2(k)
            for k, p in enumerate(sig["harmonic_prominence_db"], start=1)
        ]
    if "resonance_shift" in params:
        ratio = 1.0 + params["resonance_shift"]
        for bump in sig["noise_bumps"]:
            bump["centre_hz"] *= ratio
        if sig["band_layer"] is not None:
            sig["band_layer"]["centre_hz"] *= ratio
        if sig["clicks"] is not None:
            for mode in sig["clicks"]["modes"]:
                mode["freq_hz"] *= ratio
    if "detune" in params:
        ratio = 1.0 + params["detune"]
        sig["f0_hz"] *= ratio
        if sig["cycle"] is not None:
            sig["cycle"]["period_s"] /= ratio
        if sig["am"] is not None:  # gear or rotation modulation: at the new speed too
            sig["am"]["rate_hz"] *= ratio
        if "rotation_hz" in sig:
            sig["rotation_hz"] *= ratio
    if "tonal_gain_db" in params:
        gain = params["tonal_gain_db"]
        sig["harmonic_prominence_db"] = [p + gain for p in sig["harmonic_prominence_db"]]
        if "vane_prominence_db" in sig:
            sig["vane_prominence_db"] += gain
    if "tilt_db_per_octave" in params:
        sig["noise_tilt_db_per_octave"] += params["tilt_db_per_octave"]
    return sig


def _rounded(value, digits: int = 5):
    """Floats (also inside lists and dicts) rounded to ``digits`` significant digits."""
    if isinstance(value, dict):
        return {key: _rounded(item, digits) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item, digits) for item in value]
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    return value


# --------------------------------------------------------------------------- rendering

# Slow curves (level envelopes, pitch, rhythm phase) are computed on a control grid, one
# point every 16 samples (1 ms), and interpolated: they change over tens of milliseconds,
# and this keeps the per-sample work to a few vector operations.
_CONTROL = 16


def _control_times(n: int) -> np.ndarray:
    """Times (s) of the control points covering ``n`` samples (one past the end)."""
    return np.arange(-(-n // _CONTROL) + 1) * (_CONTROL / SAMPLE_RATE)


def _upsample(control: np.ndarray, n: int) -> np.ndarray:
    """Linear interpolation of a control-grid curve to ``n`` samples (keeps its dtype)."""
    steps = -(-n // _CONTROL)
    start = control[:steps]
    slope = control[1 : steps + 1] - start
    frac = np.arange(_CONTROL, dtype=control.dtype) / _CONTROL
    return (start[:, None] + slope[:, None] * frac[None, :]).reshape(-1)[:n]


def _smooth_random(rng, times: np.ndarray, rate_hz: float, std: float) -> np.ndarray:
    """A slowly varying zero-mean random curve on ``times`` (``rate_hz`` random points/s)."""
    count = int(math.ceil(times[-1] * rate_hz)) + 4
    points = np.convolve(rng.standard_normal(count), np.ones(3) / np.sqrt(3.0), mode="same")
    return np.interp(times, np.arange(count) / rate_hz, points) * std


def _integrate(rate_hz: np.ndarray, start: float = 0.0) -> np.ndarray:
    """Running cycle count on the control grid of a rate (Hz) given on that grid."""
    steps = np.cumsum(rate_hz[:-1] * (_CONTROL / SAMPLE_RATE), dtype=np.float64)
    return start + np.concatenate(([0.0], steps))


@functools.lru_cache(maxsize=8)
def _log_octaves(n: int) -> np.ndarray:
    """Octaves from 1 kHz of an ``n``-sample rfft grid (floored at 20 Hz), cached."""
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    octaves = np.log2(np.maximum(freqs, 20.0) / 1000.0).astype(np.float32)
    octaves.flags.writeable = False
    return octaves


def _colour_db(n: int, tilt: float, bumps: Iterable[dict]) -> np.ndarray:
    """Noise colour in dB: a tilt per octave around 1 kHz plus Gaussian bumps in log-frequency."""
    octaves = _log_octaves(n)
    colour = np.float32(tilt) * octaves
    for bump in bumps:
        distance = (octaves - np.float32(np.log2(bump["centre_hz"] / 1000.0))) / np.float32(
            bump["width_octaves"]
        )
        colour += np.float32(bump["gain_db"]) * np.exp(np.float32(-0.5) * distance * distance)
    return colour


def _complex_noise(rng, n: int) -> np.ndarray:
    """Spectrum (rfft) of unit-variance white noise of ``n`` samples."""
    parts = rng.standard_normal(2 * (n // 2 + 1), dtype=np.float32)
    return parts.view(np.complex64) * np.float32(np.sqrt(n / 2.0))


def _gate(phase: np.ndarray, duty: float, ramp: float = 0.08) -> np.ndarray:
    """Smooth on/off gate: on for the first ``duty`` of each cycle, with raised ramps."""
    frac = phase - np.floor(phase)
    edge = np.clip(np.minimum(frac, duty - frac) / ramp, 0.0, 1.0)
    return edge * edge * (3.0 - 2.0 * edge)


def _clenshaw(two_cos: np.ndarray, coefficients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Last two terms ``b1, b2`` of ``b_k = c_k + 2 cos(x) b_(k+1) - b_(k+2)``, from the top.

    In place on three buffers, so a long harmonic series allocates nothing per harmonic.
    """
    b1 = np.full_like(two_cos, coefficients[-1])
    b2 = np.zeros_like(two_cos)
    spare = np.empty_like(two_cos)
    for coefficient in coefficients[-2::-1]:
        np.multiply(two_cos, b1, out=spare)
        spare -= b2
        spare += coefficient
        b1, b2, spare = spare, b1, b2
    return b1, b2


def _harmonic_series(cycles: np.ndarray, freqs: np.ndarray, prominences, rng) -> np.ndarray:
    """Sum of sines at ``k * f0`` (k = 1, 2, ...) given the fundamental's running cycle count.

    Clenshaw's recurrence (``cos((k+1)x) = 2 cos(x) cos(kx) - cos((k-1)x)``, the same for
    ``sin``) needs only the fundamental's sine and cosine: a few multiply-adds per harmonic
    instead of a sine each.
    """
    amplitudes = _tone_amplitude(freqs, prominences)
    phases = 2.0 * np.pi * rng.uniform(0.0, 1.0, len(freqs))
    n_kept = int(np.sum(np.asarray(freqs) < 0.95 * SAMPLE_RATE / 2))  # no aliasing
    if n_kept == 0:
        return np.zeros(len(cycles), np.float32)
    # a sin(kx + p) = (a sin p) cos(kx) + (a cos p) sin(kx)
    cos_coef = (amplitudes * np.sin(phases)).astype(np.float32)[:n_kept]
    sin_coef = (amplitudes * np.cos(phases)).astype(np.float32)[:n_kept]
    # Wrapping the phase in float64 before the float32 sine keeps long clips in tune.
    angle = (2.0 * np.pi * np.modf(cycles)[0]).astype(np.float32)
    cos_x = np.cos(angle)
    sin_x = np.sin(angle, out=angle)
    c1, c2 = _clenshaw(2.0 * cos_x, cos_coef)
    s1, _ = _clenshaw(2.0 * cos_x, sin_coef)
    # sum c_k cos(kx) = b1 cos(x) - b2;  sum s_k sin(kx) = b1 sin(x)
    c1 *= cos_x
    c1 -= c2
    s1 *= sin_x
    c1 += s1
    return c1


def _strike(
    out: np.ndarray, times: np.ndarray, modes: Sequence[dict], rng, drift=0.0, burst=None
) -> None:
    """Add damped resonant modes struck at ``times`` (seconds) to ``out``, in place.

    ``drift`` (relative frequency change, a number or a control-grid curve) detunes the
    modes of each strike by its value at the strike's time. ``burst`` (``prominence_db``,
    ``decay_s``) adds the broadband rattle of a hard impact: a decaying noise burst,
    differenced so that its energy rises with frequency like a metallic click's.
    """
    decays = [m["decay_s"] for m in modes] + ([burst["decay_s"]] if burst else [])
    t = np.arange(int(5 * max(decays) * SAMPLE_RATE)) / SAMPLE_RATE
    starts = (np.asarray(times) * SAMPLE_RATE).astype(np.int64)
    starts = starts[(starts >= 0) & (starts < len(out))]
    gains = 10 ** (rng.normal(0.0, 1.5, len(starts)) / 20)  # strikes differ a little
    detune = 1.0 + (drift[starts // _CONTROL] if np.ndim(drift) else np.full(len(starts), drift))
    for start, gain, scale in zip(starts, gains, detune, strict=True):
        kernel = np.zeros(len(t))
        for mode in modes:
            freq = mode["freq_hz"] * scale
            amp = _tone_amplitude(freq, mode["prominence_db"])
            kernel += amp * np.exp(-t / mode["decay_s"]) * np.sin(2 * np.pi * freq * t)
        if burst is not None:
            rattle = np.diff(rng.standard_normal(len(t) + 1)) / np.sqrt(2.0)
            kernel += 10 ** (burst["prominence_db"] / 20) * np.exp(-t / burst["decay_s"]) * rattle
        stop = min(len(out), start + len(kernel))
        out[start:stop] += (gain * kernel[: stop - start]).astype(np.float32)


def _crossings(phase: np.ndarray, offset: float) -> np.ndarray:
    """Times (s) where a rhythm's control-grid cycle count passes ``offset`` modulo 1."""
    counts = np.floor(phase - offset)
    return (np.flatnonzero(np.diff(counts) > 0) + 1) * (_CONTROL / SAMPLE_RATE)


@dataclass
class _Clip:
    """What varies between clips of one ID (drawn per clip)."""

    duration: float
    level_db: float
    pitch: float
    rate: float
    tilt: float
    harmonic_shift_db: np.ndarray
    swells: list[tuple[float, float, float]]

    @property
    def n_samples(self) -> int:
        return int(round(self.duration * SAMPLE_RATE))


def _draw_variation(rng, sig: dict, duration: float) -> _Clip:
    n_harm = len(sig["harmonic_prominence_db"])
    return _Clip(
        duration=duration,
        level_db=float(rng.normal(0.0, 1.5)),
        pitch=float(1.0 + rng.normal(0.0, 0.006)),
        rate=float(1.0 + rng.normal(0.0, 0.02)),
        tilt=float(rng.normal(0.0, 0.4)),
        harmonic_shift_db=rng.normal(0.0, 1.5) + rng.normal(0.0, 1.0, n_harm),
        swells=[
            (rng.uniform(0, duration), rng.uniform(0.15, 0.7), rng.uniform(2.0, 6.0))
            for _ in range(int(rng.poisson(_SWELLS_PER_SECOND * duration)))
        ],
    )


def _drift_curve(times: np.ndarray, duration: float, anomaly: dict | None) -> np.ndarray | float:
    """Relative frequency change on the control grid (0 unless the anomaly is a drift)."""
    if anomaly is None or anomaly["kind"] != "frequency_drift":
        return 0.0
    params = anomaly["params"]
    ramp = np.clip((times / duration - params["start_fraction"]) / 0.3, 0.0, 1.0)
    return params["drift"] * ramp * ramp * (3.0 - 2.0 * ramp)


def _render_whitened(sig: dict, var: _Clip, anomaly: dict | None, streams: _Streams) -> np.ndarray:
    """rfft of the clip in the whitened domain (unit white background noise)."""
    n = var.n_samples
    times = _control_times(n)
    drift = _drift_curve(times, var.duration, anomaly)
    envelope_db = _smooth_random(streams("envelope"), times, 4.0, sig["fluctuation_db"])
    for centre, width, gain in var.swells:
        envelope_db += gain * np.exp(-0.5 * ((times - centre) / width) ** 2)
    rhythm, gate = _rhythm(sig, var, drift, streams, envelope_db)
    sound = _background(sig, var, anomaly, drift, streams)
    sound *= _upsample((10.0 ** (envelope_db / 20.0)).astype(np.float32), n)
    sound += rhythm
    tonal = _tonal(sig, var, streams("tonal"), times, drift)
    if sig["tonal_follows_cycle"]:
        tonal *= gate
    sound += tonal
    if sig["am"] is not None:
        phase = streams("am").uniform(0, 2 * np.pi)
        sound *= _modulation(n, sig["am"]["rate_hz"], sig["am"]["depth"], phase)
    if anomaly is not None:
        sound = _apply_anomaly(sound, times, anomaly, streams("anomaly_sound"))
    return np.fft.rfft(sound)


def _modulation(n: int, rate_hz: float, depth: float, phase: float) -> np.ndarray:
    """``1 + depth * sin(2 pi rate t + phase)`` over ``n`` samples (full rate: up to 25 Hz)."""
    angle = np.arange(n, dtype=np.float64) * (2 * np.pi * rate_hz / SAMPLE_RATE) + phase
    return 1.0 + np.float32(depth) * np.sin(angle.astype(np.float32))


def _background(sig: dict, var: _Clip, anomaly: dict | None, drift, streams) -> np.ndarray:
    """The coloured background noise, before its level envelope."""
    n = var.n_samples
    # The noise's resonances follow a drift too (by its average over the clip).
    detune = 1.0 + float(np.mean(drift))
    bumps = [dict(b, centre_hz=b["centre_hz"] * detune) for b in sig["noise_bumps"]]
    if anomaly is not None and anomaly["kind"] == "noise_change":
        bumps.append(anomaly["params"])
    colour = _colour_db(n, sig["noise_tilt_db_per_octave"] + var.tilt, bumps)
    spectrum = _complex_noise(streams("noise"), n)
    spectrum *= 10.0 ** (colour / np.float32(20.0))
    return np.fft.irfft(spectrum, n).astype(np.float32)


def _rhythm(sig: dict, var: _Clip, drift, streams, envelope_db: np.ndarray):
    """The type's cycle: raise ``envelope_db`` (control grid, in place) while the cycle is
    on, and return the sound it adds (band noise, clicks) and its on/off gate."""
    n = var.n_samples
    cycle = sig["cycle"]
    if cycle is None:
        return np.float32(0.0), np.float32(1.0)
    rate = np.broadcast_to(var.rate * (1.0 + drift) / cycle["period_s"], envelope_db.shape)
    phase = _integrate(rate, streams("rhythm").uniform(0.0, 1.0))
    gate_c = _gate(phase, cycle["duty"]) if cycle["duty"] > 0 else np.zeros_like(phase)
    envelope_db += cycle["gain_db"] * gate_c
    gate = _upsample(gate_c.astype(np.float32), n)
    sound = np.zeros(n, dtype=np.float32)
    if sig["band_layer"] is not None:
        layer = dict(sig["band_layer"])
        layer["centre_hz"] *= 1.0 + float(np.mean(drift))
        sound += _band_layer(streams("band"), n, layer) * gate
    if sig["clicks"] is not None:
        clicks = sig["clicks"]
        times = np.concatenate([_crossings(phase, p) for p in clicks["phases"]])
        _strike(sound, times, clicks["modes"], streams("clicks"), drift, clicks.get("burst"))
    return sound, gate


def _band_layer(rng, n: int, layer: dict) -> np.ndarray:
    """Noise confined to one band (e.g. friction of a slider), at a given prominence."""
    octaves = _log_octaves(n) - np.float32(np.log2(layer["centre_hz"] / 1000.0))
    distance = octaves / np.float32(layer["width_octaves"])
    shape = np.exp(np.float32(-0.5) * distance * distance)
    shape *= np.float32(10 ** (layer["prominence_db"] / 20.0))
    return np.fft.irfft(_complex_noise(rng, n) * shape, n).astype(np.float32)


def _tonal(sig: dict, var: _Clip, rng, times: np.ndarray, drift) -> np.ndarray:
    """The ID's harmonic series with pitch wobble (and drift for that anomaly)."""
    f0 = sig["f0_hz"] * var.pitch
    wobble = _smooth_random(rng, times, 2.0, sig["pitch_wobble"])
    cycles = _upsample(_integrate(f0 * (1.0 + wobble + drift)), var.n_samples)
    harmonics = np.arange(1, len(sig["harmonic_prominence_db"]) + 1) * f0
    prominences = np.asarray(sig["harmonic_prominence_db"]) + var.harmonic_shift_db
    tonal = _harmonic_series(cycles, harmonics, prominences, rng)
    if "vanes" in sig:
        vane = np.array([f0 * sig["vanes"]])
        tonal += _harmonic_series(cycles * sig["vanes"], vane, [sig["vane_prominence_db"]], rng)
    return tonal


def _apply_anomaly(sound: np.ndarray, times: np.ndarray, anomaly: dict, rng) -> np.ndarray:
    """Add the planted anomaly (noise_change and drift are applied earlier, at the source)."""
    kind, params = anomaly["kind"], anomaly["params"]
    n = len(sound)
    if kind == "extra_tone":
        wobble = _smooth_random(rng, times, 2.0, 0.002)
        cycles = _upsample(_integrate(params["freq_hz"] * (1.0 + wobble)), n)
        freqs = params["freq_hz"] * np.array([1.0, 2.0])
        prominences = params["prominence_db"] - np.array([0.0, 6.0])
        sound += _harmonic_series(cycles, freqs, prominences, rng)
    elif kind == "knocks":
        count = int(rng.poisson(params["rate_hz"] * n / SAMPLE_RATE)) + 1
        knock_times = np.sort(rng.uniform(0.0, n / SAMPLE_RATE, count))
        modes = [dict(m, prominence_db=params["prominence_db"]) for m in params["modes"]]
        _strike(sound, knock_times, modes, rng)
    elif kind == "amplitude_modulation":
        phase = rng.uniform(0, 2 * np.pi)
        sound *= _modulation(n, params["rate_hz"], params["depth"], phase)
    return sound


@functools.lru_cache(maxsize=32)
def _linear_gain(gain_db: tuple[float, ...], n: int) -> np.ndarray:
    """Linear gain on an ``n``-sample rfft grid from dB values at the mel band centres."""
    centres, _ = _mel_bands(len(gain_db))
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    gain = (10.0 ** (np.interp(freqs, centres, gain_db) / 20.0)).astype(np.float32)
    gain.flags.writeable = False
    return gain


def _finish(spectrum: np.ndarray, gain_db: np.ndarray, level_db: float, n: int) -> np.ndarray:
    """Apply the type envelope and the clip level, back to a waveform within [-1, 1]."""
    shaped = spectrum * _linear_gain(tuple(gain_db.tolist()), n)
    shaped *= np.float32(10 ** (level_db / 20.0))
    return _soft_limit(np.fft.irfft(shaped, n).astype(np.float32))


def _soft_limit(y: np.ndarray, knee: float = 0.7) -> np.ndarray:
    """Leave samples below ``knee`` alone and bend louder ones smoothly towards 1.

    The real data's loudest types (ToyConveyor) reach full scale in their loudest
    passages; a smooth knee keeps those rare peaks within 16-bit range without the
    harsh harmonics of hard clipping.
    """
    loud = np.abs(y) > knee
    if not np.any(loud):
        return y
    y = y.copy()
    excess = (np.abs(y[loud]) - knee) / (1.0 - knee)
    y[loud] = np.sign(y[loud]) * (knee + (1.0 - knee) * np.tanh(excess))
    return y


# --------------------------------------------------------------------------- calibration


def _real_profile(machine_type: str) -> tuple[np.ndarray, np.ndarray]:
    stats = reference.real_logmel_stats()
    rows = stats[stats.machine_type == machine_type].sort_values("mel_bin")
    return rows["mean_db"].to_numpy(np.float64), rows["std_db"].to_numpy(np.float64)


# Calibrated envelopes by (type, seed); render tasks bring theirs to worker processes.
_TYPE_GAINS: dict[tuple[str, int], np.ndarray] = {}


def _type_gain_db(machine_type: str, seed: int) -> np.ndarray:
    """Calibrated spectral envelope (dB at the mel centres) of a type for a seed."""
    key = (machine_type, int(seed))
    if key not in _TYPE_GAINS:
        _TYPE_GAINS[key] = _calibrate(machine_type, int(seed))
    return _TYPE_GAINS[key]


def _calibrate(machine_type: str, seed: int) -> np.ndarray:
    """Fit the type envelope so synthetic normal clips match the real mean log-mel.

    Starts from the real mean profile (unit white noise reads about +1 dB in every band)
    and adds, a few times over, the remaining difference between real and synthetic mean
    log-mel spectra of a small calibration set (normal clips of every ID, own random
    stream). The mel filters overlap, so each round removes most, not all, of the error.
    Rounded to 0.01 dB, so that last-digit differences of the arithmetic (another BLAS,
    another thread count) almost never change the generated files.
    """
    target, _ = _real_profile(machine_type)
    spectra = []
    for mid in DEV_IDS[machine_type]:
        sig = machine_signature(machine_type, mid, seed)
        for index in range(_CALIBRATION_CLIPS_PER_ID):
            streams = _Streams(seed, machine_type, mid, "calibration", "normal", index)
            var = _draw_variation(streams("variation"), sig, _CALIBRATION_SECONDS)
            level = sig["level_db"] + var.level_db
            spectra.append((_render_whitened(sig, var, None, streams), level))
    n = int(round(_CALIBRATION_SECONDS * SAMPLE_RATE))
    gain = target - 1.0
    for _ in range(_CALIBRATION_ROUNDS):
        logmels = [log_mel(_finish(spec, gain, level, n)) for spec, level in spectra]
        gain = gain + (target - np.concatenate(logmels).mean(axis=0))
    return np.round(gain, 2)


def calibration_report(logmels: Iterable[np.ndarray], machine_type: str) -> dict:
    """Compare log-mel spectrograms of normal clips with the real data's statistics. Chapter 2.

    Returns ``mean_abs_diff_db`` (mean over bins of |synthetic mean - real mean|),
    ``std_ratio`` (mean over bins of synthetic std / mean over bins of real std) and
    ``std_bins_in_range`` (fraction of bins whose std is within [1/2, 2] x the real one).
    The synthetic set is calibrated when the first is below 3 dB, the second within
    [2/3, 3/2] and the third at least 0.9.
    """
    frames = np.concatenate([np.asarray(lm, dtype=np.float64) for lm in logmels])
    real_mean, real_std = _real_profile(machine_type)
    std = frames.std(axis=0)
    ratio = std / real_std
    return {
        "machine_type": machine_type,
        "mean_abs_diff_db": float(np.mean(np.abs(frames.mean(axis=0) - real_mean))),
        "std_ratio": float(std.mean() / real_std.mean()),
        "std_bins_in_range": float(np.mean((ratio >= 0.5) & (ratio <= 2.0))),
    }


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
    _check_type(machine_type)
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


# --------------------------------------------------------------------------- one clip


def synthesize_clip(
    machine_type: str,
    machine_id: int,
    label: str,
    index: int,
    seed: int = 0,
    duration: float | None = None,
    split: str = "train",
    plant: bool = True,
) -> tuple[np.ndarray, dict]:
    """Render one clip. Chapters 1, 2.

    Parameters
    ----------
    machine_type, machine_id
        One of :data:`aadlib.data.MACHINE_TYPES` and one of its development IDs.
    label
        ``"normal"`` or ``"anomaly"`` (anomalies only exist in the test split).
    index
        Clip number within (split, label, ID), as in the file name.
    seed
        Data set seed; same arguments give the same samples, bit for bit.
    duration
        Seconds; default :data:`CLIP_SECONDS` of the type.
    split
        ``"train"`` or ``"test"``.
    plant
        ``False`` renders an anomalous clip without its anomaly: its *clean twin*, the same
        sound sample for sample except for what the anomaly adds or changes. The book
        uses the pair to show what each anomaly kind does.

    Returns
    -------
    waveform, info
        ``float32`` samples in [-1, 1] at 16 kHz, and a dict with ``machine_type``,
        ``machine_id``, ``split``, ``label``, ``index``, ``seed`` and, for anomalies,
        ``kind``, ``severity`` and ``params`` (see :func:`planted_anomaly`) and
        ``planted`` (whether the anomaly is in the audio).
    """
    _check_clip_args(machine_type, label, split, duration)
    sig = machine_signature(machine_type, machine_id, seed)
    duration = CLIP_SECONDS[machine_type] if duration is None else float(duration)
    info = {
        "machine_type": machine_type,
        "machine_id": int(machine_id),
        "split": split,
        "label": label,
        "index": int(index),
        "seed": int(seed),
    }
    anomaly = None
    if label == "anomaly":
        anomaly = planted_anomaly(machine_type, machine_id, index, seed)
        info.update(anomaly, planted=bool(plant))
    streams = _Streams(int(seed), machine_type, int(machine_id), split, label, int(index))
    var = _draw_variation(streams("variation"), sig, duration)
    if anomaly is not None and plant:
        spectrum = _render_whitened(_disturbed(sig, anomaly), var, anomaly, streams)
    else:
        spectrum = _render_whitened(sig, var, None, streams)
    level_db = sig["level_db"] + var.level_db
    y = _finish(spectrum, _type_gain_db(machine_type, seed), level_db, var.n_samples)
    return y, info


def _check_clip_args(machine_type: str, label: str, split: str, duration) -> None:
    _check_type(machine_type)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    if label not in _LABEL_CODES:
        raise ValueError(f"label must be 'normal' or 'anomaly', not {label!r}")
    if label == "anomaly" and split != "test":
        raise ValueError("anomalous clips exist only in the test split, as in DCASE 2020 Task 2")
    if duration is not None and not 0.1 <= float(duration) <= 600.0:
        raise ValueError(f"duration must be between 0.1 and 600 seconds, not {duration}")


# --------------------------------------------------------------------------- files


def _write_wav(path: Path, y: np.ndarray) -> dict:
    """16-bit PCM WAV, written under a temporary name and renamed, so never half-written.

    Returns the file's manifest record (see :class:`_Manifest`).
    """
    # Quantise here rather than in libsndfile so the bytes do not depend on its version.
    pcm = np.round(np.clip(y, -1.0, 1.0) * _PCM_SCALE).astype(np.int16)
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
    _TYPE_GAINS[(machine_type, int(seed))] = gain_db
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


def _read_json(path: Path) -> dict | None:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


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
        content = _read_json(folder / MANIFEST_NAME)
        if (
            content is not None
            and content.get("generator") == "aadlib.synth"
            and isinstance(content.get("files"), dict)
        ):
            return cls(folder, content.get("recipe"), content["files"])
        # A folder of an older version has no manifest: its marker (or the state file of
        # its interrupted run) says what it planned.
        for name in (MARKER_NAME, STATE_NAME):
            recipe = _read_json(folder / name)
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
    if _read_json(type_dir / MARKER_NAME) != marker:
        return False
    manifest = _read_json(type_dir / MANIFEST_NAME)
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


def _default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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
        Worker processes (default: all available cores; 1 renders in this process).
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
    A type whose marker (``.aadlib-synth.json``) matches the request and whose files are
    all as the generator wrote them is skipped. Otherwise its missing clips are rendered
    (each written under a temporary name and renamed), then ``anomalies.csv`` and last
    the marker are written, so an interrupted run is never taken for a complete one and is
    resumed on the next call. Each type folder keeps a manifest (``.aadlib-synth-files.json``)
    of the files the generator wrote, with their sizes, times and checksums: those, and
    only those, it deletes or replaces when the request changes. Files with names other
    than clip names are never touched. A run holds the lock of ``root`` (see
    :func:`aadlib._io.exclusive`), so a second run on the same folder waits for it
    instead of rendering the same clips; a complete set is returned without the lock.
    """
    root = Path(root).expanduser()
    size = _as_size(size)
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed}")
    if isinstance(machine_types, str):
        machine_types = [machine_types]
    types = list(MACHINE_TYPES if machine_types is None else machine_types)
    for mtype in types:
        _check_type(mtype)
    requests = []
    for mtype in types:
        keys = clip_plan(mtype, size)
        requests.append((mtype, keys, _marker_content(mtype, size, seed, keys)))
    if all(_is_complete(root / mtype, marker, keys) for mtype, keys, marker in requests):
        return root  # nothing to write: no lock needed (the folder may be read-only)
    with exclusive(root, f"generating the synthetic set in {root}"):
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
        jobs = []
        for mtype, keys, marker in requests:
            if mtype in surveys:
                manifest, missing = _prepare_type_dir(surveys[mtype], marker, keys)
                jobs.append(_TypeJob(mtype, root / mtype, keys, marker, manifest, missing))
        n_jobs = _default_jobs() if n_jobs is None else max(1, int(n_jobs))
        total = sum(len(job.missing) for job in jobs)
        try:
            with _progress_bar(total, progress) as bar:
                if n_jobs == 1 or total <= 1:
                    _generate_serial(jobs, seed, bar)
                else:
                    _generate_parallel(jobs, seed, n_jobs, bar)
        except BaseException:
            for job in jobs:  # keep the records of the clips written so far
                job.manifest.save()
            raise
    return root


def _batch_done(job: _TypeJob, records: dict[str, dict], bar) -> None:
    job.manifest.files.update(records)
    job.manifest.save_now_and_then()
    bar.update(len(records))


def _generate_serial(jobs: list[_TypeJob], seed: int, bar) -> None:
    for job in jobs:
        gain_db = _type_gain_db(job.machine_type, seed) if job.missing else None
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
                    _TYPE_GAINS[(job.machine_type, seed)] = gain_db
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
    key = (job.machine_type, seed)
    if key in _TYPE_GAINS or not job.missing:
        done: Future = Future()
        done.set_result(_TYPE_GAINS.get(key))
        return done
    return pool.submit(_type_gain_db, job.machine_type, seed)


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
