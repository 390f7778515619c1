"""Detectors that model normal sound without reconstructing it, and ensembles of detectors.

Chapter 7.

The paper's autoencoders judge a clip by how badly they rebuild it. The detectors here
model normality in other ways:

* :class:`MahalanobisDetector`: a Gaussian per machine ID over clip-level log-mel
  statistics (each mel bin's mean and standard deviation over the clip's frames), with a
  Ledoit-Wolf covariance; the score is the Mahalanobis distance to the ID's Gaussian.
* :class:`GmmDetector`: PCA and a Gaussian mixture per machine ID over stacked frames
  (five consecutive frames, as the Dense AE reads them); the score is the clip's mean
  negative log-likelihood.
* :class:`IdClassifierDetector`: a small CNN learns to tell a machine type's IDs apart
  from log-mel patches (self-supervised: the training clips' IDs are the labels). A clip
  whose sound no longer says which machine it comes from is suspect. It gives two scores:
  the mean negative log-probability of the clip's own ID (``"id-classifier"``) and the
  Mahalanobis distance of the clip's mean embedding to its ID's training embeddings
  (``"id-embedding"``).

Each is a :class:`Detector`: one detector per machine type with the IDs' parameters
inside, made from a profile, fitted on the type's normal training clips, scoring any
clips::

    detector = DetectorClass.from_profile(profile, seed)
    detector.fit(logmels, machine_ids)            # the type's normal training clips
    detector.scores(logmels, machine_ids)         # {score name: one score per clip}

A detector that is slow to fit also saves and loads itself (:class:`SavedDetector`);
:func:`aadlib.pipeline.fit_detector` then reuses a fit made with the same settings on the
same clips. :func:`register_detector` adds a class to :data:`DETECTORS`, the registry
that :func:`make_detector`, the pipeline, the command line, the plots' colours and the
prose's names read: a new detector is one class and one registry line.

A clip's machine ID is part of the task's setup (it is in the file name, and a monitored
machine is known), so scoring may use it to pick the ID's parameters. No fit ever sees a
test clip or a normal/anomalous label: ``fit`` takes training clips and their IDs only.

:func:`rank_average` combines two detectors' scores without labels; the published
figures of stronger systems on the real data are in :func:`aadlib.published.published_results`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from keras import layers
from scipy.stats import rankdata
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from . import paper, wording
from ._storage import write_atomic, write_csv
from .batches import WindowBatches
from .features import LogMelSet, Scaler, stack_frames
from .profiles import Profile, set_seed
from .training import (
    EarlyStopping,
    ModelFileError,
    build_optimizer,
    learning_status,
    load_history,
    load_model,
    read_run_summary,
    save_model,
    write_run_summary,
)

__all__ = [
    "Detector",
    "SavedDetector",
    "DETECTORS",
    "register_detector",
    "score_names",
    "GmmSettings",
    "IdClassifierSettings",
    "DetectorSettings",
    "SETTINGS",
    "settings_for",
    "clip_statistics",
    "GaussianFit",
    "fit_gaussian",
    "mahalanobis_distances",
    "MahalanobisDetector",
    "GmmDetector",
    "split_by_id",
    "build_id_classifier",
    "IdClassifierDetector",
    "detector_class",
    "make_detector",
    "DetectorRun",
    "rank_average",
    "ensembles",
    "ensemble_gains",
    "gains_by_gap",
    "training_table",
    "learning_statuses",
    "id_classifier_rank",
    "IDENTITY_FINDINGS",
    "identity_findings",
    "gaussian_table",
]

# --------------------------------------------------------------------------------------
# The interface and the registry
# --------------------------------------------------------------------------------------


@runtime_checkable
class Detector(Protocol):
    """What every detector is: the interface the pipeline, tables and plots rely on. Chapter 7.

    ``family`` names the detector (its results folder, the command line's choice);
    ``names`` are the scores it gives (the ``model`` column of a scores table), with their
    ``titles`` in prose and ``colors`` in figures; ``settings`` is a frozen dataclass (or
    ``None``) that identifies a fit; ``fit_seconds`` is how long the fit took and
    ``reused`` whether it was loaded rather than fitted here.
    """

    family: ClassVar[str]
    names: ClassVar[tuple[str, ...]]
    titles: ClassVar[dict[str, str]]
    colors: ClassVar[dict[str, str]]
    settings: object
    fit_seconds: float
    reused: bool

    @classmethod
    def from_profile(cls, profile: Profile | str, seed: int = 0) -> Detector:
        """A new, unfitted detector with a profile's settings."""
        ...

    def fit(self, logmels: LogMelSet, machine_ids, verbose: int = 0) -> Detector:
        """Fit on one machine type's normal training clips and their machine IDs."""
        ...

    def scores(self, logmels: LogMelSet, machine_ids) -> dict[str, np.ndarray]:
        """``{score name: one score per clip}`` for every name of ``names``."""
        ...


@runtime_checkable
class SavedDetector(Detector, Protocol):
    """A detector that saves its fit and loads it back (no pickle). Chapter 7.

    ``save`` writes ``run.json`` last, holding ``record`` (what identifies the fit);
    ``load`` returns ``None`` when the folder holds no fit for ``record`` and raises
    :class:`aadlib.training.ModelFileError` when a file is damaged.
    """

    def save(self, folder: str | Path, record: dict) -> Path: ...

    @classmethod
    def load(cls, folder: str | Path, record: dict, settings, seed: int = 0) -> Detector | None: ...


#: The registered detectors by family, in the order they were registered.
DETECTORS: dict[str, type[Detector]] = {}


def register_detector(cls: type[Detector]) -> type[Detector]:
    """Add a detector class to :data:`DETECTORS` (usable as a class decorator). Chapter 7.

    Its score names get their prose titles (:data:`aadlib.wording.DETECTOR_TITLES`) from
    ``cls.titles``; :func:`aadlib.plots.model_color` reads ``cls.colors``.
    """
    missing = [
        name
        for name in ("family", "names", "titles", "colors", "from_profile", "fit", "scores")
        if not hasattr(cls, name)
    ]
    if missing:
        raise TypeError(f"{cls.__name__} is not a Detector: it has no {', '.join(missing)}")
    if set(cls.titles) != set(cls.names) or set(cls.colors) != set(cls.names):
        raise ValueError(f"{cls.__name__}: give a title and a colour to each of {cls.names}")
    clash = set(cls.names) & set(paper.MODELS)
    for other in DETECTORS.values():
        if other.family != cls.family:
            clash |= set(cls.names) & set(other.names)
    if clash:
        raise ValueError(f"{cls.__name__}: score names {sorted(clash)} are taken")
    DETECTORS[cls.family] = cls
    wording.DETECTOR_TITLES.update(cls.titles)
    return cls


def score_names() -> tuple[str, ...]:
    """Every registered detector's score names, in the registry's order. Chapters 7, 9."""
    return tuple(name for cls in DETECTORS.values() for name in cls.names)


# --------------------------------------------------------------------------------------
# Settings per profile
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GmmSettings:
    """PCA and Gaussian mixture on stacked frames (one model per machine ID). Chapter 7.

    ``fit_hop`` and ``score_hop`` are the frames between consecutive 5-frame vectors of a
    clip; at most ``max_vectors`` training vectors per ID are kept (a seeded random
    subset), so memory stays bounded whatever the size of the data set.
    """

    n_frames: int = 5
    fit_hop: int = 8
    score_hop: int = 4
    pca_components: int = 32
    mixture_components: int = 8
    covariance_type: str = "full"
    max_vectors: int = 50_000
    reg_covar: float = 1e-3


@dataclass(frozen=True)
class IdClassifierSettings:
    """Training and scoring of the machine-ID classifier. Chapter 7.

    Patches are 32 frames (about one second) of the 128 mel bins, taken every
    ``train_hop`` frames for training and every ``score_hop`` frames for scoring. A
    ``validation_fraction`` of each ID's training clips is held out (by clip); the
    weights of the epoch with the lowest validation loss are kept, and training stops
    after ``patience`` epochs without improvement. The test set plays no part in it.
    """

    epochs: int = 40
    patience: int = 6
    train_hop: int = 8
    score_hop: int = 8
    batch_size: int = 256
    learning_rate: float = 1e-3
    validation_fraction: float = 0.15
    filters: tuple[int, ...] = (16, 32, 64)
    embedding_units: int = 64
    bn_momentum: float = 0.99


@dataclass(frozen=True)
class DetectorSettings:
    """The settings of every detector under one profile. Chapter 7."""

    gmm: GmmSettings = field(default_factory=GmmSettings)
    id_classifier: IdClassifierSettings = field(default_factory=IdClassifierSettings)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


#: Settings per profile name; a profile not listed gets ``full``'s.
SETTINGS: dict[str, DetectorSettings] = {
    "quick": DetectorSettings(
        GmmSettings(fit_hop=4, score_hop=4, pca_components=16, mixture_components=4),
        # Measured on 2 cores: at 3e-3 for 6 epochs, four types stopped at the cap while
        # improving and slider kept epoch 1 of a validation loss too noisy to follow; at
        # 1e-3 with a quarter of each ID's clips held out, every type's validation loss
        # levels off within 30 epochs (about 1 s each) and early stopping ends most sooner.
        IdClassifierSettings(
            epochs=30,
            patience=5,
            train_hop=16,
            score_hop=32,
            batch_size=64,
            learning_rate=1e-3,
            validation_fraction=0.25,
            filters=(8, 16, 32),
            embedding_units=32,
            bn_momentum=0.9,
        ),
    ),
    "tiny": DetectorSettings(
        GmmSettings(fit_hop=4, score_hop=8, pca_components=8, mixture_components=2),
        IdClassifierSettings(
            epochs=2,
            patience=1,
            train_hop=16,
            score_hop=64,
            batch_size=64,
            validation_fraction=0.2,
            filters=(8, 16, 32),
            embedding_units=32,
            bn_momentum=0.9,
        ),
    ),
    "full": DetectorSettings(),
}
#: A user's own folder holds tens of clips, as the quick set does: the same small models.
SETTINGS["folder"] = SETTINGS["quick"]


def settings_for(profile: Profile | str) -> DetectorSettings:
    """The detector settings of a profile (by name; unknown names get ``full``'s). Chapter 7."""
    name = profile if isinstance(profile, str) else profile.name
    return SETTINGS.get(name, SETTINGS["full"])


# --------------------------------------------------------------------------------------
# Gaussians: clip statistics, Ledoit-Wolf, Mahalanobis distance
# --------------------------------------------------------------------------------------


def _one_blas_thread(method):
    """Run ``method`` with one BLAS (and OpenMP) thread.

    The matrices here are small; threads that wait for a busy core (the book executes
    beside other work) made a 256 x 256 eigendecomposition 50 times slower than one
    thread, and scikit-learn's k-means initialisation of the mixtures 3 times slower.
    """

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1):
            return method(*args, **kwargs)

    return wrapper


def clip_statistics(logmels) -> np.ndarray:
    """Each clip's per-bin mean and standard deviation over frames, ``(n_clips, 2 * n_mels)``.

    One streaming pass over the clips (a :class:`aadlib.features.LogMelSet` or any
    iterable of ``(n_frames, n_mels)`` arrays): no more than one clip's frames are held
    at a time. The first ``n_mels`` columns are the means, the others the standard
    deviations (dB). Chapter 7.
    """
    rows = []
    for logmel in logmels:
        logmel = np.asarray(logmel, dtype=np.float64)
        if len(logmel) < 2:
            raise ValueError("clip statistics need clips of at least two frames")
        rows.append(np.concatenate([logmel.mean(axis=0), logmel.std(axis=0)]))
    if not rows:
        raise ValueError("clip_statistics needs at least one clip")
    return np.stack(rows)


@dataclass
class GaussianFit:
    """One Gaussian: the features' centre and scale, mean, precision and LW shrinkage.

    Features are standardised with ``center`` and ``scale`` (the training mean and
    standard deviation of each feature) before the covariance is estimated, so the
    Ledoit-Wolf target, a multiple of the identity, treats every feature alike.
    """

    center: np.ndarray
    scale: np.ndarray
    mean: np.ndarray
    precision: np.ndarray
    shrinkage: float
    n_samples: int

    def distances(self, x: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row of ``x`` to this Gaussian."""
        z = (np.asarray(x, dtype=np.float64) - self.center) / self.scale
        return mahalanobis_distances(z, self.mean, self.precision)


@_one_blas_thread
def fit_gaussian(x: np.ndarray) -> GaussianFit:
    """Fit a Gaussian with a Ledoit-Wolf covariance to the rows of ``x``. Chapter 7.

    With fewer samples than dimensions (16 clips and 256 statistics in the quick
    profile) the sample covariance is singular and cannot be inverted. Ledoit and Wolf
    shrink it towards a multiple of the identity by the amount that minimises the
    expected squared error, estimated from the data: ``(1 - s) S + s mu I``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"fit_gaussian needs at least two samples in rows, got shape {x.shape}")
    center = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0  # a constant feature: centred, not scaled
    z = (x - center) / scale
    estimator = LedoitWolf(store_precision=True, assume_centered=False).fit(z)
    return GaussianFit(
        center,
        scale,
        estimator.location_,
        estimator.precision_,
        float(estimator.shrinkage_),
        len(x),
    )


@_one_blas_thread
def mahalanobis_distances(x: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """``sqrt((x - mean)^T P (x - mean))`` for each row of ``x``. Chapter 7."""
    d = np.atleast_2d(np.asarray(x, dtype=np.float64)) - mean
    squared = np.sum((d @ precision) * d, axis=1)
    return np.sqrt(np.maximum(squared, 0.0))


def _check_ids(machine_ids, n_clips: int) -> np.ndarray:
    ids = np.asarray(machine_ids)
    if ids.shape != (n_clips,):
        raise ValueError(f"need one machine ID per clip: {n_clips} clips, {ids.shape} IDs")
    return ids.astype(int)


def _unknown_ids(ids: np.ndarray, known) -> None:
    unknown = sorted(set(ids.tolist()) - set(int(i) for i in known))
    if unknown:
        raise ValueError(
            f"machine ID(s) {unknown} were not in the training clips; the detector models "
            f"IDs {sorted(int(i) for i in known)}"
        )


class MahalanobisDetector:
    """A Gaussian per machine ID over clip statistics; score: Mahalanobis distance. Chapter 7.

    Each clip is summarised by :func:`clip_statistics` (256 numbers); each ID's normal
    training clips give a mean and a Ledoit-Wolf covariance (:func:`fit_gaussian`).
    """

    family = "mahalanobis"
    names = ("mahalanobis",)
    titles = {"mahalanobis": "Mahalanobis detector"}
    colors = {"mahalanobis": "#2ca02c"}
    settings = None
    reused = False

    def __init__(self):
        self.gaussians: dict[int, GaussianFit] = {}
        self.fit_seconds = math.nan

    @classmethod
    def from_profile(cls, profile: Profile | str = "full", seed: int = 0) -> MahalanobisDetector:
        return cls()  # nothing to set: the Ledoit-Wolf shrinkage is fitted

    @_one_blas_thread
    def fit(self, logmels, machine_ids, verbose: int = 0) -> MahalanobisDetector:
        """Fit each ID's Gaussian on normal training clips and their machine IDs."""
        start = time.perf_counter()
        stats = clip_statistics(logmels)
        ids = _check_ids(machine_ids, len(stats))
        self.gaussians = {int(i): fit_gaussian(stats[ids == i]) for i in np.unique(ids)}
        self.fit_seconds = time.perf_counter() - start
        return self

    @property
    def shrinkage(self) -> dict[int, float]:
        """The Ledoit-Wolf shrinkage of each ID's covariance (0: none, 1: all)."""
        return {i: g.shrinkage for i, g in self.gaussians.items()}

    @_one_blas_thread
    def score(self, logmels, machine_ids) -> np.ndarray:
        """Mahalanobis distance of each clip's statistics to its ID's Gaussian."""
        if not self.gaussians:
            raise RuntimeError("fit the detector before scoring")
        stats = clip_statistics(logmels)
        ids = _check_ids(machine_ids, len(stats))
        _unknown_ids(ids, self.gaussians)
        out = np.empty(len(stats))
        for i, gaussian in self.gaussians.items():
            mask = ids == i
            if mask.any():
                out[mask] = gaussian.distances(stats[mask])
        return out

    def scores(self, logmels, machine_ids) -> dict[str, np.ndarray]:
        """``{"mahalanobis": scores}``, the interface every detector shares."""
        return {"mahalanobis": self.score(logmels, machine_ids)}


# --------------------------------------------------------------------------------------
# PCA + Gaussian mixture on stacked frames
# --------------------------------------------------------------------------------------


def _clip_vectors(logmels: LogMelSet, clip: int, n_frames: int, hop: int) -> np.ndarray:
    return np.asarray(stack_frames(np.ascontiguousarray(logmels.clip(clip)), n_frames, hop))


class GmmDetector:
    """PCA and a Gaussian mixture per machine ID over 5-frame vectors. Chapter 7.

    The family of Morita et al.'s DCASE 2020 system (PCA, then a GMM or a local outlier
    factor on 640-value vectors). Training vectors are taken every ``fit_hop`` frames,
    at most ``max_vectors`` per ID; a clip's score is the mean negative log-likelihood
    of its vectors (every ``score_hop`` frames) under its ID's mixture.
    """

    family = "gmm"
    names = ("gmm",)
    titles = {"gmm": "Gaussian mixture"}
    colors = {"gmm": "#9467bd"}
    reused = False

    def __init__(self, settings: GmmSettings = GmmSettings(), seed: int = 0):
        self.settings, self.seed = settings, seed
        self.models: dict[int, tuple[PCA, GaussianMixture]] = {}
        self.fit_seconds = math.nan

    @classmethod
    def from_profile(cls, profile: Profile | str = "full", seed: int = 0) -> GmmDetector:
        return cls(settings_for(profile).gmm, seed)

    def _training_vectors(self, logmels: LogMelSet, clips: np.ndarray, rng) -> np.ndarray:
        s = self.settings
        counts = np.maximum((logmels.lengths[clips] - s.n_frames) // s.fit_hop + 1, 0)
        total = int(counts.sum())
        if total == 0:
            raise ValueError(f"no training clip is {s.n_frames} frames long")
        keep = np.sort(rng.choice(total, size=min(total, s.max_vectors), replace=False))
        out = np.empty((len(keep), s.n_frames * logmels.frames.shape[1]), dtype=np.float32)
        first = np.concatenate([[0], np.cumsum(counts)])
        filled = 0
        for clip, lo, hi in zip(clips, first[:-1], first[1:]):
            chosen = keep[(keep >= lo) & (keep < hi)] - lo
            if len(chosen):
                out[filled : filled + len(chosen)] = _clip_vectors(
                    logmels, clip, s.n_frames, s.fit_hop
                )[chosen]
                filled += len(chosen)
        return out

    @_one_blas_thread
    def fit(self, logmels: LogMelSet, machine_ids, verbose: int = 0) -> GmmDetector:
        """Fit each ID's PCA and mixture on normal training clips and their machine IDs."""
        start = time.perf_counter()
        ids = _check_ids(machine_ids, len(logmels))
        s = self.settings
        self.models = {}
        for i in np.unique(ids):
            rng = np.random.default_rng([self.seed, int(i)])
            x = self._training_vectors(logmels, np.flatnonzero(ids == i), rng)
            logmels.release_memory()  # the ID's mapped frames leave resident memory
            n_components = min(s.pca_components, x.shape[1], len(x) - 1)
            pca = PCA(n_components=n_components, random_state=self.seed).fit(x)
            mixture = GaussianMixture(
                n_components=min(s.mixture_components, len(x)),
                covariance_type=s.covariance_type,
                reg_covar=s.reg_covar,
                random_state=self.seed,
                max_iter=200,
            )
            with warnings.catch_warnings():
                # A mixture that has not fully converged in 200 EM steps still scores
                # well; the warning is not for the reader.
                warnings.simplefilter("ignore", ConvergenceWarning)
                mixture.fit(pca.transform(x))
            self.models[int(i)] = (pca, mixture)
        self.fit_seconds = time.perf_counter() - start
        return self

    @_one_blas_thread
    def score(self, logmels: LogMelSet, machine_ids, chunk_clips: int = 256) -> np.ndarray:
        """Mean negative log-likelihood of each clip's vectors under its ID's mixture."""
        if not self.models:
            raise RuntimeError("fit the detector before scoring")
        ids = _check_ids(machine_ids, len(logmels))
        _unknown_ids(ids, self.models)
        s = self.settings
        out = np.empty(len(logmels))
        for i, (pca, mixture) in self.models.items():
            clips = np.flatnonzero(ids == i)
            for lo in range(0, len(clips), chunk_clips):
                part = clips[lo : lo + chunk_clips]
                vectors = [_clip_vectors(logmels, c, s.n_frames, s.score_hop) for c in part]
                counts = np.array([len(v) for v in vectors])
                if np.any(counts == 0):
                    raise ValueError(f"a test clip is shorter than {s.n_frames} frames")
                loglik = mixture.score_samples(pca.transform(np.concatenate(vectors)))
                owner = np.repeat(np.arange(len(part)), counts)
                out[part] = -np.bincount(owner, weights=loglik) / counts
                logmels.release_memory()  # mapped frames read so far leave resident memory
        return out

    def scores(self, logmels, machine_ids) -> dict[str, np.ndarray]:
        """``{"gmm": scores}``, the interface every detector shares."""
        return {"gmm": self.score(logmels, machine_ids)}


# --------------------------------------------------------------------------------------
# The machine-ID classifier
# --------------------------------------------------------------------------------------


def split_by_id(machine_ids, validation_fraction: float, seed: int = 0):
    """Training and validation clip indices, the same fraction of each ID's clips. Chapter 7.

    The split is by clip, so patches of one clip never straddle the two sets, and every
    ID with at least two clips keeps at least one validation clip when the fraction is
    positive. Both index arrays are sorted.
    """
    ids = np.asarray(machine_ids).astype(int)
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), not {validation_fraction}")
    train, val = [], []
    for i in np.unique(ids):
        clips = np.flatnonzero(ids == i)
        order = np.random.default_rng([seed, int(i)]).permutation(clips)
        n_val = int(round(len(clips) * validation_fraction))
        if validation_fraction > 0 and len(clips) >= 2:
            n_val = min(max(n_val, 1), len(clips) - 1)
        val.append(order[:n_val])
        train.append(order[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def build_id_classifier(
    n_ids: int,
    input_shape: tuple[int, int, int] = (paper.MODELS["cnn"].window_frames, paper.N_MELS, 1),
    filters: tuple[int, ...] = (16, 32, 64),
    embedding_units: int = 64,
    bn_momentum: float = 0.99,
) -> keras.Model:
    """A small CNN that tells a machine type's IDs apart from log-mel patches. Chapter 7.

    Conv blocks (3x3 convolution, batch normalisation, ReLU, 2x2 max pooling) with
    ``filters``, then an average over *time* only: where in frequency a machine's tones
    and resonances sit is what tells IDs apart, so the frequency axis is kept and
    flattened. A dense ``embedding`` layer (ReLU) and a linear ``logits`` layer with one
    output per ID follow; the softmax is in the loss.
    """
    if n_ids < 2:
        raise ValueError(f"an ID classifier needs at least two machine IDs, not {n_ids}")
    inputs = keras.Input(shape=input_shape, name="patch")
    x = inputs
    for i, n in enumerate(filters):
        x = layers.Conv2D(n, 3, padding="same", use_bias=False, name=f"block{i + 1}_conv")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"block{i + 1}_bn")(x)
        x = layers.ReLU(name=f"block{i + 1}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"block{i + 1}_pool")(x)
    # Average over the remaining frames (a pooling layer: no code in the saved model).
    x = layers.AveragePooling2D((x.shape[1], 1), name="time_mean")(x)
    x = layers.Flatten(name="frequency_profile")(x)
    x = layers.Dense(embedding_units, activation="relu", name="embedding")(x)
    outputs = layers.Dense(n_ids, name="logits")(x)
    return keras.Model(inputs, outputs, name="id_classifier")


def _labelled_dataset(windows: WindowBatches, codes: np.ndarray) -> tf.data.Dataset:
    """``(patches, ID codes)`` batches: the windows' dataset zipped with their labels.

    :meth:`aadlib.batches.WindowBatches.as_tf_dataset` serves epoch ``e``'s windows in
    the order of ``windows.plan(e).order``, batch after batch; the labels follow the same
    plan, epoch by epoch, so each batch's labels are its windows' clips' IDs.
    """
    epochs = itertools.count()

    def labels(epoch: int):
        order = windows.plan(epoch).order
        clip_codes = codes[windows.clips[windows.clip_of_window[order]]].astype(np.int32)
        for start in range(0, len(clip_codes), windows.batch_size):
            yield clip_codes[start : start + windows.batch_size]

    y = tf.data.Dataset.from_generator(
        lambda: labels(next(epochs)), output_signature=tf.TensorSpec((None,), tf.int32)
    )
    pairs = tf.data.Dataset.zip((windows.as_tf_dataset(), y))
    return pairs.apply(tf.data.experimental.assert_cardinality(len(windows)))


class _Outputs:
    """A model's embedding and logits for a batch of patches.

    A callable object rather than a closure: TensorFlow counts the traces of closures
    that share their code as retracing of one function, and warns after a few models.
    """

    def __init__(self, model: keras.Model):
        self.model = keras.Model(model.inputs, [model.get_layer("embedding").output, model.output])

    def __call__(self, x):
        return self.model(x, training=False)


_ID_FILES = ("model.keras", "scaler.npz", "embedding.npz", "history.csv")


class IdClassifierDetector:
    """A self-supervised machine-ID classifier and its two anomaly scores. Chapter 7.

    Trained on a type's normal training clips with their machine IDs as labels
    (:func:`build_id_classifier`, cross-entropy, Adam). Scores of a clip, from its
    patches every ``score_hop`` frames:

    * ``"id-classifier"``: the mean over patches of ``-log p(own ID | patch)``;
    * ``"id-embedding"``: the Mahalanobis distance of the clip's mean embedding to its
      ID's Gaussian (Ledoit-Wolf) of the training clips' mean embeddings.
    """

    family = "id-classifier"
    names = ("id-classifier", "id-embedding")
    # One network, two scores: prose names both after it.
    titles = {"id-classifier": "ID classifier", "id-embedding": "ID classifier"}
    colors = {"id-classifier": "#8c564b", "id-embedding": "#e377c2"}

    def __init__(self, settings: IdClassifierSettings = IdClassifierSettings(), seed: int = 0):
        self.settings, self.seed = settings, seed
        self.model: keras.Model | None = None
        self.scaler: Scaler | None = None
        self.ids: np.ndarray = np.empty(0, dtype=int)
        self.embeddings: dict[int, GaussianFit] = {}
        self.history = pd.DataFrame()
        self.fit_seconds = math.nan
        self.reused = False
        self._scorer = None
        self._last = None  # the last clips' outputs (see _clip_outputs)

    @classmethod
    def from_profile(cls, profile: Profile | str = "full", seed: int = 0) -> IdClassifierDetector:
        return cls(settings_for(profile).id_classifier, seed)

    # -- training ---------------------------------------------------------------------

    def fit(self, logmels: LogMelSet, machine_ids, verbose: int = 0) -> IdClassifierDetector:
        """Train on normal training clips and their machine IDs; keep the best validation epoch.

        Each ID's clips are split into training and validation clips
        (:func:`split_by_id`); the validation loss alone picks the epoch whose weights are
        kept. Seeded: the same data and settings give the same model on one machine.
        """
        start = time.perf_counter()
        s = self.settings
        ids = _check_ids(machine_ids, len(logmels))
        self.ids = np.unique(ids)
        codes = np.searchsorted(self.ids, ids)
        set_seed(self.seed)
        self.scaler = Scaler.fit(logmels)
        train_idx, val_idx = split_by_id(ids, s.validation_fraction, self.seed)
        common = dict(kind="cnn", hop=s.train_hop, batch_size=s.batch_size, targets=False)
        train = WindowBatches(
            logmels, shuffle=True, seed=self.seed, clips=train_idx, scaler=self.scaler, **common
        )
        if len(train.starts) == 0:
            raise ValueError("no training patch: every clip is shorter than 32 frames")
        val = WindowBatches(logmels, clips=val_idx, scaler=self.scaler, **common)
        self.model = build_id_classifier(
            len(self.ids),
            filters=s.filters,
            embedding_units=s.embedding_units,
            bn_momentum=s.bn_momentum,
        )
        self.model.compile(
            optimizer=keras.optimizers.Adam(s.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        build_optimizer(self.model)
        keeper = EarlyStopping(s.patience)
        self.model.fit(
            _labelled_dataset(train, codes),
            validation_data=_labelled_dataset(val, codes) if len(val.starts) else None,
            epochs=s.epochs,
            callbacks=[keeper],
            verbose=verbose,
            shuffle=False,
        )
        keeper.restore_best()
        self.history = pd.DataFrame(keeper.history)
        self._scorer, self._last = None, None
        embeddings, _ = self._clip_outputs(logmels, s.train_hop)
        self.embeddings = {int(i): fit_gaussian(embeddings[ids == i]) for i in self.ids}
        self.fit_seconds = time.perf_counter() - start
        self.reused = False
        return self

    @property
    def best_epoch(self) -> int:
        """The epoch whose weights were kept (lowest validation loss)."""
        column = "val_loss" if "val_loss" in self.history else "loss"
        return int(self.history.loc[self.history[column].idxmin(), "epoch"])

    @property
    def status(self) -> str:
        """Whether training had finished learning (:func:`aadlib.training.learning_status`)."""
        return learning_status(self.history)

    # -- scoring ----------------------------------------------------------------------

    def _outputs(self, x: np.ndarray):
        """The embedding and the logits of a batch of patches (one compiled function)."""
        if self._scorer is None:
            self._scorer = tf.function(
                _Outputs(self.model),
                input_signature=[tf.TensorSpec([None, *self.model.input_shape[1:]], tf.float32)],
            )
        return self._scorer(x)

    def _clip_outputs(self, logmels: LogMelSet, hop: int):
        """Each clip's mean embedding and mean log-probability of each ID over its patches.

        The last result is kept, keyed by the clips' paths and the hop, so that scoring a
        set and then asking which IDs its clips sound like runs the network once.
        """
        if self.model is None:
            raise RuntimeError("fit or load the detector before scoring")
        key = (tuple(map(str, logmels.paths)), int(hop), tuple(logmels.lengths.tolist()))
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        batch_size = 4 * self.settings.batch_size
        windows = WindowBatches(logmels, "cnn", hop, batch_size, targets=False, scaler=self.scaler)
        if np.any(windows.windows_per_clip == 0):
            raise ValueError("a clip is shorter than one 32-frame patch and cannot be scored")
        owner = windows.clip_of_window
        log_p = np.empty((len(owner), len(self.ids)))
        embedding = np.empty((len(owner), self.settings.embedding_units))
        for b in range(len(windows)):
            emb, logits = (t.numpy().astype(np.float64) for t in self._outputs(windows.batch(b)))
            rows = slice(b * batch_size, b * batch_size + len(logits))
            top = logits.max(axis=1, keepdims=True)
            log_p[rows] = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
            embedding[rows] = emb
        counts = windows.windows_per_clip[:, None]

        def clip_mean(values: np.ndarray) -> np.ndarray:
            columns = [np.bincount(owner, weights=c, minlength=len(logmels)) for c in values.T]
            return np.stack(columns, axis=1) / counts

        result = clip_mean(embedding), clip_mean(log_p)
        self._last = (key, result)
        return result

    def scores(self, logmels: LogMelSet, machine_ids) -> dict[str, np.ndarray]:
        """``{"id-classifier": mean -log p(own ID), "id-embedding": Mahalanobis distance}``."""
        ids = _check_ids(machine_ids, len(logmels))
        _unknown_ids(ids, self.ids)
        codes = np.searchsorted(self.ids, ids)
        embeddings, log_p = self._clip_outputs(logmels, self.settings.score_hop)
        nll = -log_p[np.arange(len(ids)), codes]
        distance = np.empty(len(ids))
        for i, gaussian in self.embeddings.items():
            mask = ids == i
            if mask.any():
                distance[mask] = gaussian.distances(embeddings[mask])
        return {"id-classifier": nll, "id-embedding": distance}

    def score(self, logmels: LogMelSet, machine_ids) -> np.ndarray:
        """The mean over each clip's patches of ``-log p(own ID)``."""
        return self.scores(logmels, machine_ids)["id-classifier"]

    def probabilities(self, logmel: np.ndarray, hop: int | None = None) -> np.ndarray:
        """``p(ID | patch)`` of each patch of one clip, ``(n_patches, n_ids)``. Chapter 7."""
        one = LogMelSet.from_arrays([np.asarray(logmel, dtype=np.float32)], ["clip"])
        windows = WindowBatches(
            one, "cnn", hop or self.settings.score_hop, 4096, targets=False, scaler=self.scaler
        )
        logits = np.concatenate(
            [np.asarray(self.model(windows.batch(b), training=False)) for b in range(len(windows))]
        ).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict_ids(self, logmels: LogMelSet, hop: int | None = None) -> np.ndarray:
        """The ID each clip sounds like most: the best mean log-probability over its patches.

        Chapter 7 compares it with the clips' true IDs, for normal and anomalous clips.
        Right after :meth:`scores` on the same clips, the network does not run again.
        """
        _, log_p = self._clip_outputs(logmels, hop or self.settings.score_hop)
        return self.ids[log_p.argmax(axis=1)]

    # -- saving -----------------------------------------------------------------------

    def save(self, folder: str | Path, record: dict) -> Path:
        """Write the model, scaler, embedding Gaussians and history, then ``run.json``.

        Every file is written atomically; ``run.json`` comes last and holds ``record``
        (what identifies the training run) and each file's checksum, so a folder without
        it, or whose files changed, holds no usable model.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "run.json").unlink(missing_ok=True)
        save_model(self.model, folder / "model.keras")
        self.scaler.save(folder / "scaler.npz")
        arrays = {"ids": self.ids.astype(np.int64)}
        for i, g in self.embeddings.items():
            for name in ("center", "scale", "mean", "precision"):
                arrays[f"{name}_{i}"] = getattr(g, name)
            arrays[f"shrinkage_{i}"] = np.array(g.shrinkage)
            arrays[f"n_samples_{i}"] = np.array(g.n_samples)
        write_atomic(folder / "embedding.npz", lambda tmp: np.savez(tmp, **arrays))
        write_csv(self.history, folder / "history.csv")
        return write_run_summary(
            folder, record, _ID_FILES, seconds=self.fit_seconds, status=self.status
        )

    @classmethod
    def load(
        cls, folder: str | Path, record: dict, settings: IdClassifierSettings, seed: int = 0
    ) -> IdClassifierDetector | None:
        """The detector saved in ``folder`` for ``record``; ``None`` when there is none.

        Raises :class:`aadlib.training.ModelFileError` when a file is damaged or changed
        since it was written (the message names it; delete the folder and train again).
        """
        folder = Path(folder)
        try:
            summary = read_run_summary(folder, record)
        except ModelFileError as err:
            raise ModelFileError(
                f"{folder}: the saved ID classifier cannot be used ({err}); delete the "
                "folder and train again"
            ) from err
        if summary is None:
            return None
        detector = cls(settings, seed)
        detector.model = load_model(folder / "model.keras")
        detector.scaler = Scaler.load(folder / "scaler.npz")
        detector.history = load_history(folder / "history.csv")
        with np.load(folder / "embedding.npz", allow_pickle=False) as arrays:
            detector.ids = arrays["ids"].astype(int)
            detector.embeddings = {
                int(i): GaussianFit(
                    arrays[f"center_{i}"],
                    arrays[f"scale_{i}"],
                    arrays[f"mean_{i}"],
                    arrays[f"precision_{i}"],
                    float(arrays[f"shrinkage_{i}"]),
                    int(arrays[f"n_samples_{i}"]),
                )
                for i in detector.ids
            }
        detector.fit_seconds = float(summary.get("seconds", math.nan))
        detector.reused = True
        return detector


for _detector in (MahalanobisDetector, GmmDetector, IdClassifierDetector):
    register_detector(_detector)


def detector_class(family: str) -> type[Detector]:
    """The registered class of a detector family, with an error that lists them. Chapter 7."""
    try:
        return DETECTORS[family]
    except KeyError:
        raise ValueError(
            f"unknown detector {family!r}; choose one of {', '.join(DETECTORS)}"
        ) from None


def make_detector(family: str, profile: Profile | str = "full", seed: int = 0) -> Detector:
    """A new, unfitted detector of a registered family with a profile's settings. Chapter 7."""
    return detector_class(family).from_profile(profile, seed)


@dataclass
class DetectorRun:
    """What running a detector family on some machine types gave. Chapter 7.

    ``scores``: a scores table (one row per test clip and score name, ``model`` the score
    name); ``timings``: one row per machine type with ``fit_seconds`` (of the original
    fit when a saved detector was reused), ``score_seconds`` and ``reused``;
    ``fitted``: the fitted detector of each machine type.
    """

    scores: pd.DataFrame
    timings: pd.DataFrame
    fitted: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Ensembles
# --------------------------------------------------------------------------------------

_CLIP_KEYS = ["machine_type", "machine_id", "label", "index"]


def rank_average(
    scores: pd.DataFrame, first: str, second: str, name: str | None = None
) -> pd.DataFrame:
    """Combine two detectors: the mean of their score ranks within each machine ID. Chapter 7.

    Scores of different detectors live on different scales (a distance, a
    log-likelihood, a squared error), so they are turned into ranks first: within each
    machine ID, each detector's scores of the ID's test clips are ranked together and
    divided by the number of clips, and the two ranks are averaged. The ranks use the
    pooled test clips' scores only, never their labels; and as AUC depends only on the
    order of scores within an ID, a detector's ranks have exactly its AUC.

    Returns a scores table with ``model`` ``name`` (default ``"first + second"``) and the
    clip columns of ``first``'s rows.
    """
    name = name or f"{first} + {second}"
    keys = [k for k in _CLIP_KEYS if k in scores.columns]
    parts = {m: scores[scores["model"] == m] for m in (first, second)}
    for m, part in parts.items():
        if part.empty:
            raise ValueError(f"no scores of {m!r} in the table")
        if part.duplicated(keys).any():
            raise ValueError(f"{m!r} has several scores for one clip")
    pair = parts[first].merge(parts[second][keys + ["score"]], on=keys, suffixes=("", "_second"))
    if len(pair) != len(parts[first]) or len(pair) != len(parts[second]):
        raise ValueError(f"{first!r} and {second!r} must be scored on the same clips")
    by_id = pair.groupby(["machine_type", "machine_id"], sort=False)
    ranks = [
        by_id[column].transform(lambda s: rankdata(s) / len(s))
        for column in ("score", "score_second")
    ]
    combined = pair.drop(columns=["score_second"]).assign(
        model=name, score=(ranks[0] + ranks[1]) / 2
    )
    return combined.reset_index(drop=True)


def ensembles(scores: pd.DataFrame, names) -> pd.DataFrame:
    """The rank averages (:func:`rank_average`) of every pair of ``names``. Chapter 7."""
    names = list(names)
    parts = [rank_average(scores, a, b) for a, b in itertools.combinations(names, 2)]
    if not parts:
        raise ValueError("ensembles need at least two detectors")
    return pd.concat(parts, ignore_index=True)


def ensemble_gains(per_id: pd.DataFrame, metric: str = "auc") -> pd.DataFrame:
    """What each two-member ensemble gains over its better member, per machine type. Chapter 7.

    ``per_id`` is :func:`aadlib.tables.per_id_table` output holding the ensembles
    (``model`` ``"a + b"``, :func:`rank_average`) and their members. One row per
    ensemble and type: ``ensemble``, ``machine_type``, ``first``, ``second``, the members'
    and the ensemble's ``metric`` (per-type averages over IDs), ``gap`` (the members'
    difference, in points) and ``gain`` (the ensemble minus its better member).
    """
    averages = per_id[per_id["machine_id"] == "average"]
    value = averages.set_index(["model", "machine_type"])[metric]
    rows = []
    for (model, machine_type), ensemble in value.items():
        members = str(model).split(" + ")
        if len(members) != 2 or not all((m, machine_type) in value.index for m in members):
            continue
        first, second = (float(value[m, machine_type]) for m in members)
        rows.append(
            {
                "ensemble": model,
                "machine_type": machine_type,
                "first": members[0],
                "second": members[1],
                f"first_{metric}": first,
                f"second_{metric}": second,
                metric: float(ensemble),
                "gap": abs(first - second),
                "gain": float(ensemble) - max(first, second),
            }
        )
    if not rows:
        raise ValueError("the table holds no ensemble 'a + b' together with both members")
    return pd.DataFrame(rows)


def gains_by_gap(gains: pd.DataFrame) -> pd.DataFrame:
    """Ensembles of close members against ensembles of distant ones. Chapter 7.

    Splits :func:`ensemble_gains` output at the median ``gap``: row ``close`` (members at
    most the median apart) and row ``far``. Columns ``gap_up_to`` (the median, and the
    largest gap), ``cases``, ``better_share`` (the share of cases where the ensemble beats
    its better member) and ``mean_gain``.
    """
    split = float(gains["gap"].median())
    close = gains["gap"] <= split
    rows = {}
    for name, part in (("close", gains[close]), ("far", gains[~close])):
        rows[name] = {
            "gap_up_to": split if name == "close" else float(part["gap"].max()),
            "cases": len(part),
            "better_share": float((part["gain"] > 0).mean()),  # NaN for no case
            "mean_gain": float(part["gain"].mean()),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def gaussian_table(fitted: dict) -> pd.DataFrame:
    """One row per machine ID of fitted Mahalanobis detectors: its clips and shrinkage. Chapter 7.

    ``fitted`` maps machine types to fitted :class:`MahalanobisDetector`. Columns
    ``machine_type``, ``machine_id``, ``training_clips`` and ``shrinkage`` (the
    Ledoit-Wolf share of the identity target in the ID's covariance).
    """
    rows = [
        {
            "machine_type": machine_type,
            "machine_id": machine_id,
            "training_clips": gaussian.n_samples,
            "shrinkage": gaussian.shrinkage,
        }
        for machine_type, detector in fitted.items()
        for machine_id, gaussian in detector.gaussians.items()
    ]
    return pd.DataFrame(rows)


def training_table(fitted: dict) -> pd.DataFrame:
    """One row per machine type's ID classifier: how its training went. Chapter 7.

    ``fitted`` maps machine types to fitted :class:`IdClassifierDetector` (as
    :class:`DetectorRun` holds them). Columns: ``ids``, ``epochs_run``, ``epoch_cap``
    (the settings' most epochs), ``best_epoch`` (the lowest validation loss),
    ``train_accuracy``, ``val_accuracy`` and ``val_loss`` at that epoch, ``status``
    (:func:`aadlib.training.learning_status`, the autoencoders' criterion),
    ``fit_seconds`` and ``reused``.
    """
    rows = []
    for machine_type, detector in fitted.items():
        history = detector.history
        best = history.loc[history["epoch"] == detector.best_epoch].iloc[0]
        rows.append(
            {
                "machine_type": machine_type,
                "ids": len(detector.ids),
                "epochs_run": len(history),
                "epoch_cap": detector.settings.epochs,
                "best_epoch": detector.best_epoch,
                "train_accuracy": float(best.get("accuracy", math.nan)),
                "val_accuracy": float(best.get("val_accuracy", math.nan)),
                "val_loss": float(best.get("val_loss", math.nan)),
                "status": detector.status,
                "fit_seconds": detector.fit_seconds,
                "reused": detector.reused,
            }
        )
    return pd.DataFrame(rows).set_index("machine_type")


def learning_statuses(fitted: dict, pairs=()) -> pd.DataFrame:
    """The learning status of each score of fitted ID classifiers, per type. Chapters 7, 9.

    ``fitted`` maps machine types to fitted :class:`IdClassifierDetector`. One row per
    score name (both scores come from one network) and type, with ``model``,
    ``machine_type`` and ``status``: the format of
    :func:`aadlib.pipeline.training_summary`, so that
    :func:`aadlib.tables.compare_models` marks a comparison with a classifier that
    stopped while improving as undecided. ``pairs`` (detector name pairs combined by
    :func:`rank_average`) add a row per ensemble that has a classifier score as a member,
    with that member's status.
    """
    rows = [
        {"model": name, "machine_type": machine_type, "status": detector.status}
        for machine_type, detector in fitted.items()
        for name in IdClassifierDetector.names
    ]
    for first, second in pairs:
        rows += [
            {**row, "model": f"{first} + {second}"}
            for row in rows
            if row["model"] in (first, second) and "+" not in row["model"]
        ]
    return pd.DataFrame(rows, columns=["model", "machine_type", "status"])


def id_classifier_rank(mean_auc: pd.Series, singles, training: pd.DataFrame) -> str:
    """Where the ID classifier's two scores rank among single detectors, in words. Chapters 7, 9.

    ``mean_auc`` maps score names to their mean AUC over types; ``singles`` are the names
    ranked (``id-classifier`` and ``id-embedding`` among them); ``training`` holds the
    learning status of each model and type (:func:`aadlib.pipeline.training_summary`
    with :func:`learning_statuses`). ``"its classifier score ranked 7th of 7 and its
    embedding distance 5th"``, followed by which ranked models stopped before their
    plateau and on how many types, whose places a longer training may change.
    """
    singles = list(singles)
    ranks = mean_auc[singles].rank(ascending=False, method="min").astype(int)
    words = wording.rank_phrase(
        {
            "its classifier score": ranks["id-classifier"],
            "its embedding distance": ranks["id-embedding"],
        },
        len(singles),
    )
    rows = training[training["model"].isin(singles)].assign(
        title=lambda t: [wording.title(m) for m in t["model"]]
    )
    where = {}  # each unfinished model's title -> on which types it stopped early
    for title, group in rows.groupby("title", sort=False):
        types = group["machine_type"].nunique()
        stopped = group.loc[group["status"] != "plateau", "machine_type"].nunique()  # any seed
        if stopped:
            where[title] = "every type" if stopped == types else f"{stopped} of {types} types"
    if where:
        n = len(where)
        if len(set(where.values())) == 1:
            said = (
                f"{wording.join(f'the {name}' for name in where)} stopped before "
                f"{wording.agree(n, 'its', 'their')} plateau on {next(iter(where.values()))}"
            )
        else:
            (first, on), *others = where.items()
            said = f"the {first} stopped before its plateau on {on}, " + ", ".join(
                f"the {name} on {on}" for name, on in others
            )
        words += (
            f" ({said}, so "
            f"{wording.agree(n, 'its place', 'their places')} may change with longer training)"
        )
    return words


#: What :func:`identity_findings` can say of a type's ID classifier.
IDENTITY_FINDINGS = ("not told apart", "identity kept", "identity blurred")


def identity_findings(id_accuracy: pd.DataFrame, z: float = 2.0) -> pd.Series:
    """What a type's ID-accuracy row says its classifier's score can feed on. Chapter 7.

    ``id_accuracy`` is :func:`aadlib.pipeline.id_accuracy_table` output. Per type:
    ``"not told apart"`` when its normal test clips are not assigned to their own ID
    more often than chance by ``z`` binomial standard errors (the classifier has not
    learned the IDs, so every clip looks uncertain); otherwise ``"identity kept"`` when
    its anomalous clips are not assigned to their own ID less often than its normal ones
    by ``z`` standard errors of the difference (the anomalies leave the cues that
    identify the machine intact); else ``"identity blurred"``.
    """
    chance, normal, anomalous = (
        id_accuracy[c] for c in ("chance", "normal clips", "anomalous clips")
    )
    n_normal, n_anomalous = id_accuracy["normal n"], id_accuracy["anomalous n"]
    above_chance = normal - chance > z * np.sqrt(chance * (1 - chance) / n_normal)
    spread = np.sqrt(normal * (1 - normal) / n_normal + anomalous * (1 - anomalous) / n_anomalous)
    blurred = normal - anomalous > z * spread
    finding = np.where(
        ~above_chance,
        IDENTITY_FINDINGS[0],
        np.where(blurred, IDENTITY_FINDINGS[2], IDENTITY_FINDINGS[1]),
    )
    return pd.Series(finding, index=id_accuracy.index, name="finding")
