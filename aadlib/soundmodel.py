"""The sound model of the synthetic machine sounds: how each clip is made. Chapter 1.

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
tell apart; :func:`aadlib.synth.id_classification_accuracy` measures the result (about 60 % for
ToyConveyor's 3 IDs and 75-85 % for the other types' 4 IDs, seed 0, ``quick`` size).

Normal clips vary from clip to clip like recordings do: level (about 1.5 dB), pitch
(about 0.6 %), rhythm rate (2 %), noise tilt and harmonic balance, random phases, and
background swells (louder passages of the background, 0.8 per 10 s on average).

Anomalies
---------
Anomalous clips exist only in the test split. Each gets one kind (drawn per clip, uniformly
from :data:`ANOMALY_KINDS`) and a severity in [0, 1] drawn uniformly; the kind's strength
grows with the severity, so low-severity anomalies are subtle and the AUC of a detector
is informative rather than 1.0. How strong an ID's anomalies are overall is its *severity
offset* (:func:`severity_offset`, ``resources/synth_difficulty.csv``): the kind's
parameters are set at strength severity + offset. ``tools/calibrate_synth.py`` chose the
offsets so that the DCASE 2020 baseline, trained with the quick profile's schedule, scores
each ID near the paper's baseline AUC on the real data (fan ID 00 hard, slider ID 00
easy); its verification is ``resources/synth_calibration.csv``. Every kind also moves
the cues that identify the machine, as a real fault changes a machine's spectral
signature and not only adds to it: the balance of its harmonics, its speed, its
resonances, its noise colour (see :data:`ANOMALY_KINDS`). ``anomalies.csv`` records file,
ID, kind, severity and the kind's parameters for every anomalous clip.
``synthesize_clip(..., plant=False)`` renders an anomalous clip's *clean twin* (the same
clip without its anomaly), to show or measure exactly what an anomaly changes.

Deterministic: each clip's random numbers come from NumPy generators seeded with
``(seed, machine type, machine ID, split, label, index)`` (one per sound component), so a
clip is bit-identical whether it is generated alone, with its type or with the whole set,
and a smaller size's clips are the first clips of a larger size.

The set on disk (sizes, files, manifest, locking) is :mod:`aadlib.synth`.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import published
from .data import (
    CLIP_SECONDS,
    DEV_IDS,
    MACHINE_TYPES,
    check_machine_types,
    read_resource_csv,
    resource,
)
from .features import log_mel
from .paper import SAMPLE_RATE

__all__ = [
    "ANOMALY_KINDS",
    "machine_signature",
    "planted_anomaly",
    "severity_offset",
    "difficulty_report",
    "real_fan_report",
    "synthesize_clip",
    "calibration_report",
    "type_envelope",
    "keep_type_envelope",
]

#: The anomaly kinds and what each does to the sound (applied in the whitened domain).
#: The second part of each text is how the kind moves the cues that identify the machine
#: (from the mildest to the most severe instance). The ranges are those of strength 0 to 1;
#: an ID's severity offset (:func:`severity_offset`) shifts the strengths of its anomalies.
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
_CALIBRATION_ROUNDS = 5
_CALIBRATION_CLIPS_PER_ID = 2
_CALIBRATION_SECONDS = 5.0
# Louder passages of the background: 0.8 in a 10 s clip, as many per second in shorter ones.
_SWELLS_PER_SECOND = 0.08


# --------------------------------------------------------------------------- randomness


def _check_type(machine_type: str) -> None:
    check_machine_types([machine_type])


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


def _draw_cycle(rng: np.random.Generator, period_range, duty_range, gain_range) -> dict:
    """A work cycle: its period (s), the loaded part of it and the load's gain (dB)."""
    return {
        "period_s": rng.uniform(*period_range),
        "duty": rng.uniform(*duty_range),
        "gain_db": rng.uniform(*gain_range),
    }


def _draw_band_layer(rng: np.random.Generator, centre_range, width_range, prominence_range) -> dict:
    """A band of noise: its centre (Hz, log-uniform), width (octaves), prominence (dB)."""
    return {
        "centre_hz": _log_uniform(rng, *centre_range),
        "width_octaves": rng.uniform(*width_range),
        "prominence_db": rng.uniform(*prominence_range),
    }


def _toycar_signature(rng: np.random.Generator) -> dict:
    """A toy car's motor: a whining pitch that wobbles, amplitude-modulated."""
    sig: dict = {}
    sig["f0_hz"] = rng.uniform(150.0, 400.0)
    sig["harmonic_prominence_db"] = _harmonics(rng, (8, 14), (4.0, 14.0), (0.5, 1.5))
    sig["pitch_wobble"] = rng.uniform(0.005, 0.015)
    sig["am"] = {"rate_hz": rng.uniform(5.0, 14.0), "depth": rng.uniform(0.15, 0.4)}
    sig["fluctuation_db"] = 2.5
    return sig


def _toyconveyor_signature(rng: np.random.Generator) -> dict:
    """A toy conveyor: a low motor hum with a periodic load and a noise band."""
    sig: dict = {}
    sig["f0_hz"] = rng.uniform(60.0, 160.0)
    sig["harmonic_prominence_db"] = _harmonics(rng, (6, 12), (2.0, 10.0), (0.3, 1.0))
    sig["pitch_wobble"] = rng.uniform(0.003, 0.01)
    sig["cycle"] = _draw_cycle(rng, (0.8, 2.0), (0.2, 0.5), (3.0, 6.0))
    sig["band_layer"] = _draw_band_layer(rng, (400.0, 3000.0), (0.5, 1.0), (0.0, 6.0))
    sig["fluctuation_db"] = 2.5
    return sig


def _fan_signature(rng: np.random.Generator) -> dict:
    """A fan: blade-pass harmonics of its rotation, modulated at the rotation rate."""
    sig: dict = {}
    rotation = rng.uniform(12.0, 25.0)
    blades = int(rng.integers(3, 8))
    sig["rotation_hz"], sig["blades"] = rotation, blades
    sig["f0_hz"] = rotation * blades
    sig["harmonic_prominence_db"] = _harmonics(rng, (3, 6), (0.0, 10.0), (1.0, 3.0))
    sig["pitch_wobble"] = rng.uniform(0.002, 0.006)
    sig["am"] = {"rate_hz": rotation, "depth": rng.uniform(0.05, 0.2)}
    sig["fluctuation_db"] = 2.5
    return sig


def _pump_signature(rng: np.random.Generator) -> dict:
    """A pump: mains-rate harmonics and a vane-pass tone."""
    sig: dict = {}
    sig["f0_hz"] = rng.uniform(45.0, 60.0)
    sig["harmonic_prominence_db"] = _harmonics(rng, (8, 14), (0.0, 8.0), (0.2, 0.8))
    sig["vanes"] = int(rng.integers(4, 9))
    sig["vane_prominence_db"] = rng.uniform(2.0, 10.0)
    sig["pitch_wobble"] = rng.uniform(0.002, 0.006)
    sig["fluctuation_db"] = 3.0
    return sig


def _slider_signature(rng: np.random.Generator) -> dict:
    """A slider: a motor that whines while it moves, a rail band and an end-stop click."""
    sig: dict = {}
    sig["f0_hz"] = rng.uniform(300.0, 900.0)
    sig["harmonic_prominence_db"] = _harmonics(rng, (3, 6), (0.0, 10.0), (1.0, 3.0))
    sig["pitch_wobble"] = rng.uniform(0.005, 0.015)
    sig["cycle"] = _draw_cycle(rng, (0.8, 2.5), (0.35, 0.65), (4.0, 8.0))
    sig["band_layer"] = _draw_band_layer(rng, (500.0, 4000.0), (0.7, 1.5), (3.0, 9.0))
    sig["clicks"] = {
        "phases": [sig["cycle"]["duty"]],
        "modes": _modes(rng, 2, (80.0, 400.0), (0.01, 0.04), (8.0, 16.0)),
    }
    sig["tonal_follows_cycle"] = True  # the motor whines only while the slider moves
    sig["fluctuation_db"] = 2.0
    return sig


def _valve_signature(rng: np.random.Generator) -> dict:
    """A valve: a faint hum and pairs of opening and closing clicks."""
    sig: dict = {}
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


#: Each machine type's draw of its signature's type-specific part.
_TYPE_SIGNATURES = {
    "ToyCar": _toycar_signature,
    "ToyConveyor": _toyconveyor_signature,
    "fan": _fan_signature,
    "pump": _pump_signature,
    "slider": _slider_signature,
    "valve": _valve_signature,
}


def _type_signature(machine_type: str, rng: np.random.Generator) -> dict:
    """The type-specific part of an ID's signature (rhythm, harmonics, clicks)."""
    sig: dict = {
        "am": None,
        "cycle": None,
        "band_layer": None,
        "clicks": None,
        "tonal_follows_cycle": False,
    }
    sig.update(_TYPE_SIGNATURES[machine_type](rng))
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


def _lerp(low: float, high: float, strength: float) -> float:
    return low + (high - low) * strength


def _magnitude(low: float, high: float, strength: float, cap: float) -> float:
    """A kind's positive parameter at ``strength``: ``low`` at 0, ``high`` at 1, linear
    above 0 up to ``cap``; below 0 it shrinks geometrically (by ``low / high`` per unit)
    towards 0, so that even the weakest anomaly changes something."""
    if strength >= 0.0:
        return float(min(_lerp(low, high, strength), cap))
    return float(low * (high / low) ** strength)


#: The anomaly difficulty of each machine ID (``resources/synth_difficulty.csv``).
DIFFICULTY_RESOURCE = "synth_difficulty.csv"
_DIFFICULTY_REPORT = "synth_calibration.csv"
_REAL_FAN_REPORT = "synth_real_fan.csv"


@functools.cache
def _severity_offsets() -> dict[tuple[str, int], float]:
    table = read_resource_csv(DIFFICULTY_RESOURCE)
    return {
        (str(row.machine_type), int(row.machine_id)): float(row.severity_offset)
        for row in table.itertuples()
    }


def severity_offset(machine_type: str, machine_id: int) -> float:
    """How much stronger (positive) or weaker (negative) an ID's anomalies are. Chapter 1.

    Each anomalous clip draws a severity in [0, 1]; its kind's parameters are set at
    *strength* severity + offset, where the offset is the machine ID's, read from
    ``resources/synth_difficulty.csv``. ``tools/calibrate_synth.py`` chose the offsets so
    that the DCASE 2020 baseline, trained with the quick profile's schedule, scores each
    ID's AUC near the paper's baseline on the real data (the Method page shows the result).
    """
    _check_type(machine_type)
    offsets = _severity_offsets()
    key = (machine_type, int(machine_id))
    if key not in offsets:
        raise ValueError(
            f"{DIFFICULTY_RESOURCE} has no severity offset for {machine_type} ID "
            f"{machine_id}; rerun tools/calibrate_synth.py"
        )
    return offsets[key]


def difficulty_report() -> pd.DataFrame:
    """How close the calibrated synthetic set brings the baseline to the paper. Method page,
    chapter 5.

    The verification of ``tools/calibrate_synth.py`` (``resources/synth_calibration.csv``):
    per machine type and ID, and per type (``machine_id`` ``"average"``), the DCASE 2020
    baseline's AUC (%) on a freshly generated quick set, trained with the quick profile's
    schedule: ``synthetic_auc`` (mean over training seeds), ``seed_sd`` (their standard
    deviation), ``seeds``; ``paper_auc`` (Table 2's baseline), ``difference``, ``band``
    (10 points per ID, 5 per type) and ``within_band``.
    """
    with resource(_DIFFICULTY_REPORT).open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle, dtype={"machine_id": str})


def real_fan_report() -> pd.DataFrame:
    """The baseline on 40 real MIMII fan ID 00 clips and on synthetic fan ID 00. Method page.

    ``resources/synth_real_fan.csv`` (``tools/calibrate_synth.py real``): per data set, the
    clip counts, the runs (2 folds x training seeds), the mean AUC (%) over them, its
    standard deviation and range.
    """
    return read_resource_csv(_REAL_FAN_REPORT)


def planted_anomaly(
    machine_type: str,
    machine_id: int,
    index: int,
    seed: int = 0,
    offset: float | None = None,
) -> dict:
    """Kind, severity and parameters of the anomaly planted in test clip ``index``. Chapter 1.

    Cheap (no audio is rendered), so :func:`generate_dataset` uses it for ``anomalies.csv``.
    The kind's parameters are set at strength severity + ``offset`` (default: the ID's,
    :func:`severity_offset`): strength 0 and 1 give the ranges of :data:`ANOMALY_KINDS`,
    higher strengths extend them linearly (a modulation depth up to 1), lower ones shrink
    the magnitudes geometrically towards 0 and the prominences (dB) linearly.
    The parameters include how the kind moves the machine's ID cues: ``harmonic_tilt_db``
    and ``resonance_shift`` (extra_tone), ``detune`` (knocks), ``tonal_gain_db``
    (amplitude_modulation), ``tilt_db_per_octave`` (noise_change); frequency_drift moves
    them with its ``drift``.
    """
    streams = _Streams(int(seed), machine_type, int(machine_id), "test", "anomaly", int(index))
    rng = streams("anomaly")
    kind = str(rng.choice(list(ANOMALY_KINDS)))
    severity = round(float(rng.uniform(0.0, 1.0)), 4)
    if offset is None:
        offset = severity_offset(machine_type, machine_id)
    strength = severity + float(offset)
    params = _KIND_PARAMETERS[kind](rng, strength)
    # Rounded so that anomalies.csv holds exactly the values the audio was rendered with.
    return {"kind": kind, "severity": severity, "params": _rounded(params)}


def _cue(name: str, strength: float, rng: np.random.Generator) -> float:
    low, high = _CUE_CHANGE[name]
    return _magnitude(low, high, strength, 3 * high) * _sign(rng)


def _extra_tone(rng: np.random.Generator, strength: float) -> dict:
    return {
        "freq_hz": _log_uniform(rng, 150.0, 6000.0),
        "prominence_db": _lerp(-4.0, 18.0, strength),
        "harmonic_tilt_db": _cue("harmonic_tilt_db", strength, rng),
        "resonance_shift": _cue("resonance_shift", strength, rng),
    }


def _knocks(rng: np.random.Generator, strength: float) -> dict:
    params = {
        "rate_hz": float(rng.uniform(1.0, 6.0)),
        "modes": [
            {"freq_hz": _log_uniform(rng, 200.0, 4000.0), "decay_s": rng.uniform(0.003, 0.015)}
            for _ in range(2)
        ],
    }
    params["prominence_db"] = _lerp(10.0, 40.0, strength)
    params["detune"] = _cue("detune", strength, rng)
    return params


def _frequency_drift(rng: np.random.Generator, strength: float) -> dict:
    return {
        "drift": _magnitude(0.02, 0.2, strength, 0.4) * _sign(rng),
        "start_fraction": float(rng.uniform(0.0, 0.5)),
    }


def _amplitude_modulation(rng: np.random.Generator, strength: float) -> dict:
    return {
        "rate_hz": float(rng.uniform(0.5, 4.0)),
        "depth": _magnitude(0.2, 0.95, strength, 1.0),
        "tonal_gain_db": _cue("tonal_gain_db", strength, rng),
    }


def _noise_change(rng: np.random.Generator, strength: float) -> dict:
    return {
        "centre_hz": _log_uniform(rng, 200.0, 6000.0),
        "width_octaves": float(rng.uniform(0.7, 2.0)),
        "gain_db": _magnitude(2.0, 12.0, strength, 36.0) * _sign(rng),
        "tilt_db_per_octave": _cue("tilt_db_per_octave", strength, rng),
    }


#: How each kind draws its parameters at a strength (same random draws in the same order
#: at every strength, so an ID's offset changes how strong its anomalies are, not which).
_KIND_PARAMETERS = {
    "extra_tone": _extra_tone,
    "knocks": _knocks,
    "frequency_drift": _frequency_drift,
    "amplitude_modulation": _amplitude_modulation,
    "noise_change": _noise_change,
}


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
    stats = published.real_logmel_stats()
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


def type_envelope(machine_type: str, seed: int, *, compute: bool = True) -> np.ndarray | None:
    """A type's calibrated spectral envelope for a seed (dB at the 128 mel centres).

    Calibrating takes seconds, so the result is kept for the process; ``compute=False``
    returns ``None`` rather than calibrating when it is not known yet.
    """
    if not compute:
        return _TYPE_GAINS.get((machine_type, int(seed)))
    return _type_gain_db(machine_type, seed)


def keep_type_envelope(machine_type: str, seed: int, gain_db: np.ndarray) -> None:
    """Use ``gain_db`` as the type's envelope in this process (one calibrated elsewhere)."""
    _TYPE_GAINS[(machine_type, int(seed))] = gain_db


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
    offset: float | None = None,
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
    duration, split
        Seconds (default :data:`CLIP_SECONDS` of the type); ``"train"`` or ``"test"``.
    plant
        ``False`` renders an anomalous clip without its anomaly: its *clean twin*, the same
        sound sample for sample except for what the anomaly adds or changes. The book
        uses the pair to show what each anomaly kind does.
    offset
        The anomaly's strength offset (default: the ID's, :func:`severity_offset`); see
        :func:`planted_anomaly`.

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
    info = dict(machine_type=machine_type, machine_id=int(machine_id), split=split)
    info.update(label=label, index=int(index), seed=int(seed))
    anomaly = None
    if label == "anomaly":
        anomaly = planted_anomaly(machine_type, machine_id, index, seed, offset)
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
