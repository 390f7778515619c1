"""Explanations of anomaly scores, checked against the known truth of the synthetic set.

Chapter 8.

An *explanation* of a clip's anomaly score says where in the clip a detector found what
made the score high: a number per mel bin (a frequency explanation) and a number per frame
(a time explanation); the higher the number, the more that bin or frame is blamed.
Three kinds of explanation are computed here:

* the autoencoders' reconstruction-error map minus the mean error map of normal clips
  (:func:`error_map_explanation`): where the model rebuilds this clip worse than it
  rebuilds normal ones;
* per-bin contributions to a Mahalanobis distance (:func:`mahalanobis_contributions`):
  which bins' clip statistics make the distance large;
* occlusion (:func:`occlusion`), for any detector: how much the score drops when a band of
  mel bins (or a span of frames) is replaced by what a normal clip has there.

The synthetic generator renders each anomalous test clip's *clean twin*: the same clip,
sample for sample, without its anomaly (:func:`aadlib.soundmodel.synthesize_clip` with
``plant=False``). Their log-mel difference (:func:`true_difference`) is where the anomaly
really is. An explanation *hits* (:func:`hit`) when its top-ranked bin (or frame) lies
where the true difference, averaged over frames (or bins), is at least half its maximum.
A random explanation hits with probability the fraction of positions that meet this
criterion (:func:`random_hit_rate`), the reference any explanation must beat. Real
recordings have no clean twin: on the real data only the explanations can be shown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import detectors, paper, scoring, soundmodel, training
from .data import list_clips, load_clip, parse_clip_name
from .features import FeatureParams, clip_log_mel, frame_windows, log_mel, params_for
from .metrics import HIT_THRESHOLD, hit, random_hit_rate, top_position, wilson_interval
from .profiles import Profile
from .scoring import TrainedModel

__all__ = [
    "AXES",
    "NORMAL_CLIPS",
    "Twin",
    "clean_twin",
    "Recording",
    "recording",
    "true_difference",
    "collapse",
    "truth_profiles",
    "normal_clips",
    "NormalReference",
    "normal_reference",
    "explanation_hop",
    "error_map_explanation",
    "mahalanobis_contributions",
    "bin_contributions",
    "occlusion",
    "normal_examples",
    "autoencoder_scorer",
    "detector_scorer",
    "Explainer",
    "autoencoder_explainer",
    "mahalanobis_explainer",
    "occlusion_explainer",
    "sample_anomalies",
    "explain_clip",
    "ExplainedClip",
    "explain_clips",
    "evaluate",
    "hit_rates",
    "hit_rate_table",
    "where_methods_point",
    "relevant_shares",
    "choose_examples",
]

#: The two explanations of a clip: one value per mel bin, one value per frame.
AXES: tuple[str, ...] = ("frequency", "time")
#: Normal clips that make a detector's normal reference (see :func:`normal_clips`).
NORMAL_CLIPS = 6

# Axis of a (n_frames, n_mels) map that each explanation averages over.
_AVERAGED = {"frequency": 0, "time": 1}


def _check_axis(axis: str) -> None:
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}, not {axis!r}")


# --------------------------------------------------------------------------- the truth


@dataclass
class Twin:
    """An anomalous synthetic test clip and its clean twin (the same clip, not planted).

    ``anomalous`` and ``clean`` are the waveforms (16 kHz, float32); ``info`` is what
    :func:`aadlib.soundmodel.synthesize_clip` says about the clip (``kind``, ``severity``,
    ``params``). Log-mel spectrograms are computed once per feature setting. Chapter 8.
    """

    machine_type: str
    machine_id: int
    index: int
    seed: int
    anomalous: np.ndarray
    clean: np.ndarray
    info: dict
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def kind(self) -> str:
        return self.info["kind"]

    @property
    def severity(self) -> float:
        return float(self.info["severity"])

    @property
    def title(self) -> str:
        """``"fan ID 00, anomalous clip 28: extra tone, severity 0.81"``."""
        return (
            f"{self.machine_type} ID {self.machine_id:02d}, anomalous clip {self.index}: "
            f"{self.kind.replace('_', ' ')}, severity {self.severity:.2f}"
        )

    def log_mels(self, params: FeatureParams = FeatureParams()) -> tuple[np.ndarray, np.ndarray]:
        """Log-mel spectrograms ``(n_frames, n_mels)`` of the anomalous clip and its twin."""
        key = tuple(sorted(params.as_dict().items()))
        if key not in self._cache:
            self._cache[key] = (log_mel(self.anomalous, params), log_mel(self.clean, params))
        return self._cache[key]

    def log_mel(self, params: FeatureParams = FeatureParams()) -> np.ndarray:
        """The anomalous clip's log-mel spectrogram: what a detector hears."""
        return self.log_mels(params)[0]

    @property
    def waveform(self) -> np.ndarray:
        """The anomalous clip's samples."""
        return self.anomalous

    def difference(self, params: FeatureParams = FeatureParams()) -> np.ndarray:
        """``|log-mel(anomalous) - log-mel(clean)|`` in dB, ``(n_frames, n_mels)``."""
        anomalous, clean = self.log_mels(params)
        return np.abs(anomalous - clean)


def clean_twin(
    machine_type: str,
    machine_id: int,
    index: int,
    seed: int = 0,
    path: str | Path | None = None,
) -> Twin:
    """Render anomalous test clip ``index`` of an ID with and without its anomaly. Chapter 8.

    Parameters
    ----------
    machine_type, machine_id, index
        The clip, as in its file name ``anomaly_id_XX_<index>.wav``.
    seed
        The synthetic data set's seed (the generator's default is 0).
    path
        The clip's file, if it exists: the rendering must equal it (up to 16-bit
        rounding), which guards against a data set written with another seed or
        generator version.

    Raises
    ------
    ValueError
        The file at ``path`` is not this rendering.
    """
    anomalous, info = soundmodel.synthesize_clip(
        machine_type, machine_id, "anomaly", index, seed, split="test", plant=True
    )
    clean, _ = soundmodel.synthesize_clip(
        machine_type, machine_id, "anomaly", index, seed, split="test", plant=False
    )
    if path is not None:
        on_disk = load_clip(path)
        # The file holds the rendering rounded to 16 bits: one step is 1/32767.
        if on_disk.shape != anomalous.shape or np.max(np.abs(on_disk - anomalous)) > 2e-4:
            raise ValueError(
                f"{path} is not the clip that aadlib.synth renders for {machine_type} ID "
                f"{machine_id}, index {index} with seed {seed}: the data set was written by "
                "another generator version or seed. Regenerate it (pipeline.prepare_data) or "
                "pass its seed."
            )
    return Twin(machine_type, int(machine_id), int(index), int(seed), anomalous, clean, info)


@dataclass
class Recording:
    """A test clip read from its file: what an explainer needs when there is no twin.

    The real data has no clean twin; a :class:`Recording` gives the explainers the clip's
    waveform and log-mels as a :class:`Twin` does. Chapter 8.
    """

    machine_type: str
    machine_id: int
    path: Path
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def title(self) -> str:
        return f"{self.machine_type} ID {self.machine_id:02d}, {self.path.name}"

    @property
    def waveform(self) -> np.ndarray:
        if "waveform" not in self._cache:
            self._cache["waveform"] = load_clip(self.path)
        return self._cache["waveform"]

    def log_mel(self, params: FeatureParams = FeatureParams()) -> np.ndarray:
        key = tuple(sorted(params.as_dict().items()))
        if key not in self._cache:
            self._cache[key] = log_mel(self.waveform, params)
        return self._cache[key]


def recording(path: str | Path) -> Recording:
    """A clip of a data root in the DCASE layout (``<type>/<split>/<name>.wav``). Chapter 8."""
    path = Path(path)
    parsed = parse_clip_name(path.name)
    if parsed is None:
        raise ValueError(f"{path}: not a clip name of the DCASE layout (e.g. anomaly_id_00_...)")
    return Recording(path.parent.parent.name, parsed["machine_id"], path)


def true_difference(
    machine_type: str,
    machine_id: int,
    index: int,
    seed: int = 0,
    params: FeatureParams = FeatureParams(),
) -> np.ndarray:
    """Where an anomalous synthetic clip differs from its clean twin. Chapter 8.

    Returns ``|log-mel(anomalous) - log-mel(clean twin)|`` in dB, ``(n_frames, n_mels)``:
    zero wherever the anomaly changed nothing.
    """
    return clean_twin(machine_type, machine_id, index, seed).difference(params)


def collapse(values: np.ndarray, axis: str) -> np.ndarray:
    """A ``(n_frames, n_mels)`` map as one value per mel bin or per frame. Chapter 8.

    ``axis="frequency"`` averages over frames (``(n_mels,)``), ``"time"`` over bins
    (``(n_frames,)``). Positions that are NaN throughout stay NaN.
    """
    _check_axis(axis)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"collapse expects a (n_frames, n_mels) map, got shape {values.shape}")
    finite = np.isfinite(values)
    count = finite.sum(axis=_AVERAGED[axis])
    total = np.where(finite, values, 0.0).sum(axis=_AVERAGED[axis])
    out = np.full(count.shape, np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def truth_profiles(difference: np.ndarray, params: FeatureParams = FeatureParams()) -> dict:
    """The true difference per mel bin and per frame: what explanations are scored on. Chapter 8.

    ``{"frequency": (n_mels,), "time": (n_frames,)}``, the means of ``difference`` over
    frames and over bins (:func:`collapse`). The first and last frames are left out
    (NaN in the time profile): their STFT windows reach past the clip and hold mirrored
    audio (the padding of a centred STFT), which makes their difference an artefact of the
    padding rather than of the anomaly.
    """
    inner = np.array(difference, dtype=np.float64)
    edge = -(-(params.n_fft // 2) // params.hop_length)  # frames that reach past the clip
    inner[:edge] = np.nan
    inner[len(inner) - edge :] = np.nan
    return {axis: collapse(inner, axis) for axis in AXES}


# --------------------------------------------------------------------------- autoencoders


def normal_clips(profile: Profile, machine_type: str, n_clips: int = NORMAL_CLIPS) -> list[Path]:
    """Normal clips that a model of this type never trained on: its validation clips. Chapter 8.

    The training run held out :data:`aadlib.paper.VALIDATION_FRACTION` of the type's normal
    training clips (:func:`aadlib.training.split_clips` with the profile's seed); up to
    ``n_clips`` of them, spread evenly, are returned. No test clip and no test label is
    used.
    """
    table = list_clips(profile.data_root, machine_type, "train")
    table = table[table.label == "normal"].reset_index(drop=True)
    if table.empty:
        raise FileNotFoundError(
            f"{Path(profile.data_root) / machine_type / 'train'} holds no normal clip; "
            "run pipeline.prepare_data(profile) first"
        )
    _, held_out = training.split_clips(len(table), paper.VALIDATION_FRACTION, profile.seed)
    if len(held_out) == 0:  # a single training clip: nothing was held out
        held_out = np.arange(len(table))
    picks = np.unique(np.linspace(0, len(held_out) - 1, min(n_clips, len(held_out))).round())
    return [Path(table.path[held_out[int(i)]]) for i in picks]


@dataclass(frozen=True)
class NormalReference:
    """How an autoencoder rebuilds normal clips: what its explanations are measured from.

    ``error_by_frame`` ``(n_frames,)`` and ``error_by_bin`` ``(n_mels,)`` are the mean
    reconstruction error of normal clips per frame and per mel bin (NaN on frames that no
    window covers). Chapter 8.
    """

    error_by_frame: np.ndarray
    error_by_bin: np.ndarray

    def error_map(self, n_frames: int) -> np.ndarray:
        """The mean normal error per frame and bin, ``(n_frames, n_mels)``.

        An additive fit to the normal clips' mean error map (its per-frame means plus its
        per-bin means, minus the overall mean): with a handful of clips, single cells of
        the mean map are mostly noise, its row and column means are not. Frames beyond
        the reference clips' length take the mean over frames.
        """
        by_frame = np.full(n_frames, np.nanmean(self.error_by_frame))
        shared = min(n_frames, len(self.error_by_frame))
        by_frame[:shared] = self.error_by_frame[:shared]
        overall = np.nanmean(self.error_by_bin)
        return by_frame[:, None] + self.error_by_bin[None, :] - overall


def explanation_hop(kind: str) -> int:
    """Frames between the windows an error-map explanation uses. Chapter 8.

    Every window for the 5-frame models (cheap); half a patch for the CNN AE, so that every
    frame but the last few is covered by two patches.
    """
    spec = paper.model_spec(kind)
    return max(1, spec.window_frames // 2) if spec.patches else 1


def _covered_map(trained: TrainedModel, logmel: np.ndarray, hop: int) -> np.ndarray:
    """:func:`aadlib.scoring.error_map`, with NaN on frames that no window covers."""
    errors = scoring.error_map(trained, logmel, hop).astype(np.float64)
    width = paper.model_spec(trained.kind).window_frames
    n_windows = len(frame_windows(logmel[:, :1], width, hop))
    covered_until = (n_windows - 1) * hop + width if n_windows else 0
    errors[covered_until:] = np.nan
    return errors


def normal_reference(
    trained: TrainedModel,
    profile: Profile,
    n_clips: int = NORMAL_CLIPS,
    hop: int | None = None,
) -> NormalReference:
    """The mean error of held-out normal clips per frame and per bin. Chapter 8.

    The clips are those of :func:`normal_clips`; ``hop`` defaults to
    :func:`explanation_hop`.
    """
    hop = explanation_hop(trained.kind) if hop is None else int(hop)
    params = params_for(trained.kind)
    paths = normal_clips(profile, trained.machine_type, n_clips)
    return _reference([_covered_map(trained, clip_log_mel(p, params), hop) for p in paths])


def _reference(maps: list[np.ndarray]) -> NormalReference:
    length = min(len(m) for m in maps)
    # Frames that no window covers are NaN in every map: averaged without a warning.
    by_frame = np.mean([collapse(m[:length], "time") for m in maps], axis=0)
    return NormalReference(
        error_by_frame=by_frame,
        error_by_bin=collapse(np.concatenate(maps), "frequency"),
    )


def error_map_explanation(
    trained: TrainedModel,
    logmel: np.ndarray,
    reference: NormalReference,
    hop: int | None = None,
) -> np.ndarray:
    """A clip's reconstruction-error map minus the mean error map of normal clips. Chapter 8.

    Parameters
    ----------
    trained
        An autoencoder (:class:`aadlib.scoring.TrainedModel`).
    logmel
        The clip's log-mel spectrogram with the model's features
        (:func:`aadlib.features.params_for`).
    reference
        :func:`normal_reference` of the same model (and ``hop``).
    hop
        Frames between windows; default :func:`explanation_hop`.

    Returns
    -------
    np.ndarray
        ``(n_frames, n_mels)``: positive where the model rebuilds the clip worse than it
        rebuilds normal clips there. NaN on the last frames if no window covers them.
        :func:`collapse` turns it into frequency and time explanations.
    """
    hop = explanation_hop(trained.kind) if hop is None else int(hop)
    errors = _covered_map(trained, logmel, hop)
    return errors - reference.error_map(len(errors))


# --------------------------------------------------------------------------- Mahalanobis


def mahalanobis_contributions(
    x: np.ndarray,
    mean: np.ndarray,
    precision: np.ndarray,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Split a squared Mahalanobis distance into one term per feature (or group). Chapter 8.

    With the residual ``r = x - mean`` and the precision matrix ``P`` (the inverse
    covariance), ``d^2 = r' P r = sum_i r_i (P r)_i``: feature ``i`` contributes
    ``r_i (P r)_i``, its own deviation times its deviation as the covariance weighs it
    with every other feature's. The terms sum exactly to ``d^2``; a term is negative when
    a feature's deviation is *expected* from the others' (correlated features that move
    together explain each other).

    Parameters
    ----------
    x
        Feature vector ``(n_features,)``, or ``(n_clips, n_features)``.
    mean, precision
        The fitted mean ``(n_features,)`` and precision ``(n_features, n_features)``.
    groups
        Optional integer label per feature (e.g. its mel bin, when several statistics of a
        bin are features): the terms are summed within each group, one value per group
        ``0 .. groups.max()``.

    Returns
    -------
    np.ndarray
        ``(n_features,)`` or ``(n_groups,)`` contributions (with a leading clip axis for
        a 2-D ``x``), summing to the squared distance.
    """
    x = np.asarray(x, dtype=np.float64)
    residual = x - np.asarray(mean, dtype=np.float64)
    terms = residual * (residual @ np.asarray(precision, dtype=np.float64).T)
    if groups is None:
        return terms
    groups = np.asarray(groups, dtype=np.int64)
    if groups.shape != terms.shape[-1:]:
        raise ValueError(f"groups must hold one label per feature ({terms.shape[-1]})")
    n_groups = int(groups.max()) + 1
    summed = np.zeros((*terms.shape[:-1], n_groups))
    np.add.at(summed, (..., groups), terms)
    return summed


def bin_contributions(
    detector: detectors.MahalanobisDetector, logmel: np.ndarray, machine_id: int
) -> np.ndarray:
    """Each mel bin's share of a clip's squared Mahalanobis distance. Chapter 8.

    The detector (:class:`aadlib.detectors.MahalanobisDetector`) describes a clip by the
    mean and the standard deviation of each mel bin (:func:`aadlib.detectors.clip_statistics`),
    standardised with its ID's training statistics; the two terms of each bin
    (:func:`mahalanobis_contributions`) are added. Returns ``(n_mels,)`` values that sum to
    the square of the clip's score.
    """
    gaussian = detector.gaussians.get(int(machine_id))
    if gaussian is None:
        raise ValueError(
            f"the detector has no Gaussian for machine ID {machine_id}; it models IDs "
            f"{sorted(detector.gaussians)}"
        )
    statistics = detectors.clip_statistics([logmel])[0]
    z = (statistics - gaussian.center) / gaussian.scale
    n_mels = np.shape(logmel)[1]
    groups = np.tile(np.arange(n_mels), len(z) // n_mels)
    return mahalanobis_contributions(z, gaussian.mean, gaussian.precision, groups)


# --------------------------------------------------------------------------- occlusion


def _fill_for(fill: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``fill`` as a ``(n_frames, n_mels)`` array: a spectrum repeated, or a clip cut or tiled."""
    fill = np.asarray(fill, dtype=np.float32)
    n_frames, n_mels = shape
    if fill.shape == (n_mels,):
        return np.broadcast_to(fill, shape)
    if fill.ndim == 2 and fill.shape[1] == n_mels and len(fill):
        repeats = -(-n_frames // len(fill))
        return np.tile(fill, (repeats, 1))[:n_frames]
    raise ValueError(
        f"fill must be a spectrum ({n_mels},) or a log-mel clip (frames, {n_mels}), "
        f"not shape {fill.shape}"
    )


def occlusion(
    score_fn: Callable[[np.ndarray], np.ndarray],
    logmel: np.ndarray,
    band_width: int,
    fill: np.ndarray,
    axis: str = "frequency",
    stride: int | None = None,
) -> np.ndarray:
    """How much a detector's score drops when each band is replaced by normal sound. Chapter 8.

    Parameters
    ----------
    score_fn
        The detector: takes a stack of log-mel spectrograms ``(n, n_frames, n_mels)`` and
        returns their ``n`` anomaly scores (so that the variants are scored in one batch).
    logmel
        The clip, ``(n_frames, n_mels)``.
    band_width
        Mel bins (``axis="frequency"``) or frames (``axis="time"``) replaced at once.
    fill
        What replaces them: a normal spectrum ``(n_mels,)`` (constant over time), or a
        normal clip's log-mel ``(frames, n_mels)`` (cut or repeated to the clip's length),
        which keeps the natural variation over time that a constant band lacks.
    axis
        ``"frequency"`` (bands of mel bins) or ``"time"`` (spans of frames).
    stride
        Positions between band starts; default half a band. Bands start at 0, every
        ``stride``, and the last one ends at the last position.

    Returns
    -------
    np.ndarray
        One value per mel bin (or frame): the mean, over the bands that cover it, of
        ``score(clip) - score(clip with the band replaced)``. Large where replacing the
        sound lowers the score most; negative where it raises it.
    """
    _check_axis(axis)
    logmel = np.asarray(logmel, dtype=np.float32)
    fill = _fill_for(fill, logmel.shape)
    length = logmel.shape[1] if axis == "frequency" else logmel.shape[0]
    band_width, starts = _band_starts(length, band_width, stride)
    variants = _occluded(logmel, fill, starts, band_width, axis)
    scores = np.asarray(score_fn(variants), dtype=np.float64)
    if scores.shape != (len(variants),):
        raise ValueError(
            f"score_fn must return one score per spectrogram ({len(variants)}), "
            f"got shape {scores.shape}"
        )
    drops = scores[0] - scores[1:]
    total = np.zeros(length)
    count = np.zeros(length)
    for drop, start in zip(drops, starts, strict=True):
        total[start : start + band_width] += drop
        count[start : start + band_width] += 1
    return total / count


def _band_starts(length: int, band_width: int, stride: int | None) -> tuple[int, list[int]]:
    """The band width (at least 1, at most ``length``) and the bands' first positions."""
    band_width = int(min(max(1, band_width), length))
    stride = max(1, band_width // 2) if stride is None else int(stride)
    if stride < 1:
        raise ValueError(f"stride must be at least 1, not {stride}")
    starts = list(range(0, length - band_width + 1, stride))
    if starts[-1] != length - band_width:
        starts.append(length - band_width)
    return band_width, starts


def _occluded(logmel: np.ndarray, fill: np.ndarray, starts, band_width: int, axis: str):
    """The clip, then one copy per band start with that band replaced by ``fill``."""
    variants = np.repeat(logmel[None], len(starts) + 1, axis=0)
    for v, start in enumerate(starts, start=1):
        band = slice(start, start + band_width)
        if axis == "frequency":
            variants[v, :, band] = fill[:, band]
        else:
            variants[v, band, :] = fill[band, :]
    return variants


def normal_examples(
    profile: Profile, machine_type: str, params: FeatureParams = FeatureParams()
) -> dict[int, np.ndarray]:
    """One normal training clip's log-mel per machine ID: what occlusion fills in. Chapter 8.

    For each ID, its first clip among the held-out clips of :func:`normal_clips` (or its
    first training clip when none of its clips was held out).
    """
    table = list_clips(profile.data_root, machine_type, "train")
    table = table[table.label == "normal"]
    held_out = {Path(p) for p in normal_clips(profile, machine_type, n_clips=len(table))}
    examples = {}
    for machine_id, part in table.groupby("machine_id", sort=True):
        paths = [Path(p) for p in part.path]
        chosen = next((p for p in paths if p in held_out), paths[0])
        examples[int(machine_id)] = clip_log_mel(chosen, params)
    return examples


def autoencoder_scorer(
    trained: TrainedModel, hop: int | None = None
) -> Callable[[int, np.ndarray], np.ndarray]:
    """An autoencoder's clip score as a function of a stack of log-mels. Chapter 8.

    Returns ``score(machine_id, stack)``, for :func:`occlusion_explainer` (the ID is not
    used: one model serves every ID of a type). The score is the mean window error, as
    :func:`aadlib.scoring.score_clips` computes it, with windows every ``hop`` frames
    (default 2 frames for the 5-frame models, 64 for the CNN AE's patches, the ``quick``
    profile's scoring hops). The windows of the whole stack go through the model in one
    batch.
    """
    spec = paper.model_spec(trained.kind)
    hop = (64 if spec.patches else 2) if hop is None else int(hop)

    def score(machine_id: int, stack: np.ndarray) -> np.ndarray:
        windows = [scoring.clip_windows(trained, lm, hop) for lm in stack]
        errors = scoring.reconstruction_errors(
            trained.model, np.concatenate(windows), spec.score_batch
        )
        counts = [len(w) for w in windows]
        return np.array([part.mean() for part in np.split(errors, np.cumsum(counts)[:-1])])

    return score


def detector_scorer(detector) -> Callable[[int, np.ndarray], np.ndarray]:
    """A clip detector's score as a function of a machine ID and a stack of log-mels. Chapter 8.

    For any detector of :mod:`aadlib.detectors` with ``score(logmels, machine_ids)``;
    every spectrogram of the stack is scored with the ID's model.
    """

    def score(machine_id: int, stack: np.ndarray) -> np.ndarray:
        return np.asarray(detector.score(list(stack), np.full(len(stack), int(machine_id))))

    return score


# --------------------------------------------------------------------------- explainers


@dataclass(frozen=True)
class Explainer:
    """One explanation method for the clips of one machine type. Chapter 8.

    ``explain(clip)`` returns ``{axis: values}`` for the axes the method explains
    (:data:`AXES`); ``detail(clip)``, where the method has one, the ``(n_frames, n_mels)``
    map behind them. A clip is a :class:`Twin` or a :class:`Recording`.
    """

    method: str
    machine_type: str
    explain: Callable[[Twin | Recording], dict[str, np.ndarray]]
    detail: Callable[[Twin | Recording], np.ndarray] | None = None

    def __call__(self, clip: Twin | Recording) -> dict[str, np.ndarray]:
        return self.explain(clip)


def autoencoder_explainer(
    trained: TrainedModel, reference: NormalReference, hop: int | None = None
) -> Explainer:
    """The error-map explanation of an autoencoder, as an :class:`Explainer`. Chapter 8.

    Named after the model (``"Dense AE error map"``); explains frequency and time.
    """
    params = params_for(trained.kind)

    def detail(clip: Twin | Recording) -> np.ndarray:
        return error_map_explanation(trained, clip.log_mel(params), reference, hop)

    def explain(clip: Twin | Recording) -> dict[str, np.ndarray]:
        values = detail(clip)
        return {axis: collapse(values, axis) for axis in AXES}

    title = paper.model_spec(trained.kind).title
    return Explainer(f"{title} error map", trained.machine_type, explain, detail)


def mahalanobis_explainer(detector: detectors.MahalanobisDetector, machine_type: str) -> Explainer:
    """Per-bin contributions (:func:`bin_contributions`) as an :class:`Explainer`. Chapter 8.

    Frequency only: the detector sees clip statistics, which say nothing about when.
    """

    def explain(clip: Twin | Recording) -> dict[str, np.ndarray]:
        return {"frequency": bin_contributions(detector, clip.log_mel(), clip.machine_id)}

    return Explainer("Mahalanobis contributions", machine_type, explain)


def occlusion_explainer(
    method: str,
    machine_type: str,
    score_fn: Callable[[int, np.ndarray], np.ndarray],
    fills: Mapping[int, np.ndarray],
    axes: Sequence[str] = AXES,
    band_width: Mapping[str, int] | None = None,
    params: FeatureParams = FeatureParams(),
) -> Explainer:
    """Occlusion of a detector in frequency and/or time, as an :class:`Explainer`. Chapter 8.

    Parameters
    ----------
    method
        The name in tables and figures.
    score_fn
        ``score_fn(machine_id, stack)``: the detector's scores of a stack of log-mels of
        one ID (:func:`detector_scorer`, :func:`autoencoder_scorer`).
    fills
        The normal sound each ID's bands are replaced with (:func:`normal_examples`).
    axes
        The axes to explain.
    band_width
        Per axis; default 8 mel bins and 16 frames (half a second), at half-band strides.
    params
        The features the detector reads.
    """
    for axis in axes:
        _check_axis(axis)
    widths = {"frequency": 8, "time": 16, **(band_width or {})}

    def explain(clip: Twin | Recording) -> dict[str, np.ndarray]:
        fill = fills[clip.machine_id]

        def score(stack: np.ndarray) -> np.ndarray:
            return score_fn(clip.machine_id, stack)

        logmel = clip.log_mel(params)
        return {axis: occlusion(score, logmel, widths[axis], fill, axis) for axis in axes}

    return Explainer(method, machine_type, explain)


# --------------------------------------------------------------------------- evaluation


def sample_anomalies(anomalies: pd.DataFrame, per_kind: int, seed: int = 0) -> pd.DataFrame:
    """A fixed number of anomalous clips of each kind, spread over types and IDs. Chapter 8.

    Parameters
    ----------
    anomalies
        :func:`aadlib.synth.anomaly_table` of the data set (one row per anomalous clip).
    per_kind
        Clips per anomaly kind (fewer where a kind has fewer clips).
    seed
        The draw is deterministic given the seed: the clips of each kind are shuffled,
        then taken in turn from each machine type, so that every type contributes.

    Returns
    -------
    pd.DataFrame
        The chosen rows, with an ``index`` column (the clip number of the file name),
        ordered by kind, type, ID and index.
    """
    if per_kind < 1:
        raise ValueError(f"per_kind must be at least 1, not {per_kind}")
    table = anomalies.copy()
    table["index"] = [int(Path(f).stem.rsplit("_", 1)[1]) for f in table["file"]]
    table = table.sort_values(["kind", "machine_type", "machine_id", "index"])
    rng = np.random.default_rng(seed)
    chosen = []
    for _, part in table.groupby("kind", sort=True):
        part = part.iloc[rng.permutation(len(part))]
        queues = [list(rows.index) for _, rows in part.groupby("machine_type", sort=True)]
        picked: list = []
        while len(picked) < per_kind and any(queues):
            for queue in queues:
                if queue and len(picked) < per_kind:
                    picked.append(queue.pop(0))
        chosen += picked
    result = table.loc[chosen].sort_values(["kind", "machine_type", "machine_id", "index"])
    return result.reset_index(drop=True)


def explain_clip(
    clip: Twin | Recording, explainers: Iterable[Explainer]
) -> dict[str, dict[str, np.ndarray]]:
    """Every explanation of one clip by the explainers of its machine type. Chapter 8.

    Returns ``{method: {axis: values}}``.
    """
    return {e.method: e(clip) for e in explainers if e.machine_type == clip.machine_type}


@dataclass(frozen=True)
class ExplainedClip:
    """One anomalous synthetic clip's true difference profiles and explanations. Chapter 8.

    ``truth`` is :func:`truth_profiles` of its difference; ``explanations`` is
    ``{method: {axis: values}}`` (:func:`explain_clip`). Scoring them
    (:func:`evaluate`) needs no model, so any rule can be tried on them at once.
    """

    machine_type: str
    machine_id: int
    index: int
    kind: str
    severity: float
    truth: dict[str, np.ndarray]
    explanations: dict[str, dict[str, np.ndarray]]


def explain_clips(
    clips: pd.DataFrame,
    explainers: Sequence[Explainer],
    seed: int = 0,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> list[ExplainedClip]:
    """Render each clip's clean twin and explain the clip with every method. Chapter 8.

    Parameters
    ----------
    clips
        Anomalous synthetic test clips (:func:`sample_anomalies`): ``machine_type``,
        ``machine_id``, ``index`` and, to check each rendering against its file, ``path``.
    explainers
        :class:`Explainer` objects; each clip gets those of its machine type.
    seed
        The data set's seed.
    progress
        Optional wrapper of the clip iteration (a progress bar).
    """
    explained = []
    items = clips.itertuples(index=False)
    for clip in progress(items) if progress else items:
        path = getattr(clip, "path", None)
        twin = clean_twin(clip.machine_type, clip.machine_id, clip.index, seed, path)
        explained.append(
            ExplainedClip(
                twin.machine_type,
                twin.machine_id,
                twin.index,
                twin.kind,
                twin.severity,
                truth_profiles(twin.difference()),
                explain_clip(twin, explainers),
            )
        )
    return explained


def evaluate(explained: Sequence[ExplainedClip], threshold: float = HIT_THRESHOLD) -> pd.DataFrame:
    """Score every explanation of every clip against the clip's true difference. Chapter 8.

    Parameters
    ----------
    explained
        :func:`explain_clips` output.
    threshold
        See :func:`hit`.

    Returns
    -------
    pd.DataFrame
        One row per clip, method and axis: ``machine_type``, ``machine_id``, ``index``,
        ``kind``, ``severity``, ``method``, ``axis``, ``hit`` (bool), ``random`` (the hit
        probability of a random explanation on that clip and axis), ``top`` (the
        explanation's top position).
    """
    rows = []
    for clip in explained:
        for method, explanation in clip.explanations.items():
            for axis, values in explanation.items():
                truth = clip.truth[axis]
                covered = np.flatnonzero(np.isfinite(values) & np.isfinite(truth))
                rows.append(
                    {
                        "machine_type": clip.machine_type,
                        "machine_id": clip.machine_id,
                        "index": clip.index,
                        "kind": clip.kind,
                        "severity": clip.severity,
                        "method": method,
                        "axis": axis,
                        "hit": hit(values, truth, threshold),
                        "random": random_hit_rate(truth, threshold, values),
                        "top": int(covered[top_position(np.asarray(values)[covered])]),
                    }
                )
    return pd.DataFrame(rows)


def hit_rates(results: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Hit rate per anomaly kind, method and axis, with intervals and the random rate. Chapter 8.

    Parameters
    ----------
    results
        :func:`evaluate` output.
    level
        Confidence level of Wilson's interval (:func:`wilson_interval`) over clips.

    Returns
    -------
    pd.DataFrame
        ``kind`` (each kind, then ``"all kinds"``), ``method``, ``axis``, ``n`` (clips),
        ``hits``, ``rate``, ``low``, ``high``, ``random`` (mean over the clips of a random
        explanation's hit probability: what a random explanation would score on the same
        clips), ``beyond_random`` (the interval lies above ``random``) and
        ``below_random`` (it lies below: the method points away from the anomaly more
        often than chance, see :func:`where_methods_point`).
    """
    every = results.assign(kind="all kinds")
    rows = []
    for (kind, method, axis), part in pd.concat([results, every]).groupby(
        ["kind", "method", "axis"], sort=False
    ):
        hits, n = int(part["hit"].sum()), len(part)
        low, high = wilson_interval(hits, n, level)
        random = float(part["random"].mean())
        rows.append(
            {
                "kind": kind,
                "method": method,
                "axis": axis,
                "n": n,
                "hits": hits,
                "rate": hits / n,
                "low": low,
                "high": high,
                "random": random,
                "beyond_random": low > random,
                "below_random": high < random,
            }
        )
    return pd.DataFrame(rows)


def hit_rate_table(rates: pd.DataFrame, axis: str, digits: int = 2) -> pd.DataFrame:
    """One axis of :func:`hit_rates` for display: kinds down, methods across. Chapter 8.

    Each cell reads ``rate [low, high]``, with ``*`` where the interval lies above the
    random rate and ``v`` where it lies below it (worse than random); the ``random``
    column is a random explanation's rate on the same clips (the same for every method
    that covers the same positions; the first method's is shown), and ``n`` the number
    of clips.
    """
    _check_axis(axis)
    part = rates[rates["axis"] == axis]
    if part.empty:
        raise ValueError(f"no explanation of the {axis} axis in these hit rates")
    cell = [
        f"{r.rate:.{digits}f} [{r.low:.{digits}f}, {r.high:.{digits}f}]"
        + ("*" if r.beyond_random else " v" if getattr(r, "below_random", False) else "")
        for r in part.itertuples()
    ]
    table = part.assign(cell=cell).pivot(index="kind", columns="method", values="cell")
    methods = list(dict.fromkeys(part["method"]))
    kinds = list(dict.fromkeys(part["kind"]))
    table = table.loc[kinds, methods]
    first = part.drop_duplicates("kind").set_index("kind")
    table["random"] = first.loc[kinds, "random"].round(digits)
    table["n"] = first.loc[kinds, "n"]
    table.columns.name = None
    return table.rename_axis(f"{axis}: anomaly kind")


def where_methods_point(
    explained: Sequence[ExplainedClip], parts: int = 10, threshold: float = HIT_THRESHOLD
) -> pd.DataFrame:
    """Where each method's top positions fall, against the truth. Chapter 8.

    For each kind, method and axis, over the clips: ``truth_at_top``, the mean true
    difference at the method's top position as a share of the clip's maximum, against
    ``truth_at_random``, the same for a position drawn at random (the mean over
    positions); ``favourite_share``, the share of clips whose top position falls in the
    one of ``parts`` equal stretches of the axis that holds most of them (``favourite``,
    as ``"first:last"`` positions), where a method that followed the anomaly wherever it
    is would spread out. A method below random points where the truth is small
    (``truth_at_top`` under ``truth_at_random``), often because something other than the
    anomaly draws it to the same stretch in every clip. ``relevant_at_favourite`` is the
    mean share of that stretch's positions that count as the anomaly (see :func:`hit`).
    """
    found: dict[tuple, list] = {}
    for clip in explained:
        for method, explanation in clip.explanations.items():
            for axis, values in explanation.items():
                truth = np.asarray(clip.truth[axis], dtype=np.float64)
                covered = np.flatnonzero(np.isfinite(values) & np.isfinite(truth))
                if not len(covered) or not np.nanmax(truth) > 0:
                    continue
                top = int(covered[top_position(np.asarray(values)[covered])])
                kept = np.full(len(truth), np.nan)
                kept[covered] = truth[covered]  # uncovered positions: no value, no share
                found.setdefault((clip.kind, method, axis), []).append((top, kept))
    return pd.DataFrame([_pointing(key, tops, parts, threshold) for key, tops in found.items()])


def _pointing(key: tuple, tops: list, parts: int, threshold: float) -> dict:
    """One row of :func:`where_methods_point`: ``tops`` holds (top position, truth) pairs."""
    kind, method, axis = key
    size = max(len(truth) for _, truth in tops)
    stretch = np.array([min(top * parts // size, parts - 1) for top, _ in tops])
    best = int(np.argmax(np.bincount(stretch, minlength=parts)))
    first, last = -(-best * size // parts), -(-(best + 1) * size // parts) - 1
    at_top, at_random, relevant = [], [], []
    for top, truth in tops:
        peak = np.nanmax(truth)
        at_top.append(truth[top] / peak)
        at_random.append(np.nanmean(truth) / peak)
        stretch_truth = truth[first : last + 1]
        inside = stretch_truth[np.isfinite(stretch_truth)]
        relevant.append(float(np.mean(inside >= threshold * peak)) if len(inside) else 0.0)
    return {
        "kind": kind,
        "method": method,
        "axis": axis,
        "n": len(tops),
        "truth_at_top": float(np.mean(at_top)),
        "truth_at_random": float(np.mean(at_random)),
        "favourite": f"{first}:{last}",
        "favourite_share": float(np.mean(stretch == best)),
        "relevant_at_favourite": float(np.mean(relevant)),
    }


def relevant_shares(
    explained: Sequence[ExplainedClip], threshold: float = HIT_THRESHOLD
) -> pd.DataFrame:
    """How concentrated each kind's true difference is, per axis. Chapter 8.

    The mean over a kind's clips of the share of positions (mel bins, frames) where the
    true difference is at least ``threshold`` of its maximum: a random explanation's hit
    rate, whatever the method. Near 1, the anomaly fills the axis and cannot be located on
    it. One row per kind (in the order met), one column per axis.
    """
    rows = [
        {"kind": clip.kind, **{a: random_hit_rate(clip.truth[a], threshold) for a in AXES}}
        for clip in explained
    ]
    if not rows:
        return pd.DataFrame(columns=list(AXES))
    return pd.DataFrame(rows).groupby("kind", sort=False)[list(AXES)].mean()


def choose_examples(results: pd.DataFrame, axis: str = "frequency") -> pd.DataFrame:
    """Clips that show what the hit rates mean, chosen by what they show. Chapter 8.

    From :func:`evaluate` output, counting each clip's hits on ``axis`` over the methods:

    * ``"explained"``: the ``extra_tone`` clip that the most methods explain (ties: the
      most severe);
    * ``"missed"``: among the other clips but amplitude modulation, the clip that the
      fewest methods explain (ties: the most severe, whose miss is the most telling);
    * ``"amplitude modulation"``: the most severe ``amplitude_modulation`` clip.

    A role whose kind is absent from the results is left out. Columns: ``role``,
    ``machine_type``, ``machine_id``, ``index``, ``kind``, ``severity``, ``hits``,
    ``methods``.
    """
    _check_axis(axis)
    keys = ["machine_type", "machine_id", "index", "kind", "severity"]
    part = results[results["axis"] == axis]
    clips = (
        part.groupby(keys, sort=True)["hit"]
        .agg(hits="sum", methods="size")
        .reset_index()
        .astype({"hits": int, "methods": int})
    )
    tone = clips[clips["kind"] == "extra_tone"]
    tone = tone.sort_values(["hits", "severity"], ascending=[False, False]).head(1)
    others = clips[(clips["kind"] != "amplitude_modulation") & ~clips.index.isin(tone.index)]
    modulated = clips[clips["kind"] == "amplitude_modulation"]
    picks = [
        ("explained", tone),
        ("missed", others.sort_values(["hits", "severity"], ascending=[True, False])),
        ("amplitude modulation", modulated.sort_values("severity", ascending=False)),
    ]
    rows = [table.iloc[0].to_dict() | {"role": role} for role, table in picks if len(table)]
    return pd.DataFrame(rows, columns=["role", *keys, "hits", "methods"])
