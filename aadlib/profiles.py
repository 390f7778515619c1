"""Data profiles: which data a run uses, how long each model trains, and where files go.

Setup page and every chapter's first cell. One switch picks the profile: the
``AADLIB_PROFILE`` environment variable in notebooks, ``--profile`` on the command line.

- ``quick`` (default): the synthetic set at a small size and short training; the whole
  book executes in minutes on a 2-core CPU, offline.
- ``tiny``: smaller still, for smoke tests.
- ``full``: the real DCASE 2020 Task 2 development set and the paper's settings
  (:data:`aadlib.paper.MODELS`); meant for a GPU.
- ``full-synthetic``: the synthetic set at the real set's size with the paper's
  settings, for timing and memory at true scale without the download.

A profile is resolved once, where a run enters (a chapter's first cell, the command
line), by :func:`resolve`: that fixes its folders and its seed, and the resolved object is
passed down to everything the run does.
"""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__, paper

__all__ = [
    "ModelSettings",
    "Profile",
    "PROFILES",
    "PROFILE_ENV",
    "resolve",
    "set_seed",
    "describe_device",
    "session_info",
]

PROFILE_ENV = "AADLIB_PROFILE"


@dataclass(frozen=True)
class ModelSettings:
    """How one model kind is trained and scored under a profile.

    Attributes
    ----------
    epochs
        Upper bound on epochs; early stopping usually ends sooner.
    patience
        Early-stopping patience (``None``: none).
    train_hop, score_hop
        Frames between consecutive windows in training and in scoring.
    normalise
        Feed the model z-normalised frames. The paper's Dense AE reads raw dB values; then
        the output layer must learn offsets of tens of dB with Adam's small steps, which
        takes the tens of thousands of steps of a full run, not the few hundred of quick.
    """

    epochs: int
    patience: int | None
    train_hop: int
    score_hop: int
    normalise: bool

    @classmethod
    def paper(cls, kind: str) -> ModelSettings:
        """The paper's settings for a kind (:data:`aadlib.paper.MODELS`)."""
        spec = paper.model_spec(kind)
        return cls(spec.epochs, spec.patience, spec.hop, spec.hop, spec.normalise)


def _paper_models() -> dict[str, ModelSettings]:
    return {kind: ModelSettings.paper(kind) for kind in paper.MODEL_KINDS}


@dataclass(frozen=True)
class Profile:
    """What data a run uses, how each model kind trains, and where the run's files go.

    Attributes
    ----------
    data
        ``"synthetic"`` or ``"real"``.
    synth_size
        Size of the synthetic set (see :data:`aadlib.synth.SIZES`); ``None`` for real data.
    models
        :class:`ModelSettings` per model kind.
    bn_momentum
        Momentum of the batch-normalisation moving averages (Keras' default 0.99, as the
        authors used). After only a few dozen steps those averages still remember their
        initial values, so the short profiles use 0.9.
    steps_per_epoch
        Cap on batches per epoch (``None``: all), to time or test the full-size
        profiles on a CPU without training for days.
    seed
        Seed of the training runs (data split, shuffles, initial weights).
    home, data_root, results
        Where the run's files go; set by :func:`resolve`.
    """

    name: str
    data: str
    synth_size: str | None
    description: str
    models: dict[str, ModelSettings] = field(default_factory=_paper_models)
    bn_momentum: float = 0.99
    steps_per_epoch: int | None = None
    seed: int = 0
    home: Path | None = None
    data_root: Path | None = None
    results: Path | None = None

    def __post_init__(self):
        for kind, settings in self.models.items():
            for name in ("epochs", "train_hop", "score_hop"):
                if getattr(settings, name) < 1:
                    raise ValueError(f"{kind} {name} must be at least 1")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be at least 1, not {self.steps_per_epoch}")
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, not {self.seed}")

    def model(self, kind: str) -> ModelSettings:
        """The settings of one model kind."""
        paper.model_spec(kind)  # an unknown kind gets the error that lists the kinds
        try:
            return self.models[kind]
        except KeyError:
            raise ValueError(f"profile {self.name!r} has no settings for {kind!r}") from None

    @property
    def cache_dir(self) -> Path:
        """Where extracted log-mel features are cached."""
        return self._resolved().home / "cache" / "features"

    def _resolved(self) -> Profile:
        if self.home is None or self.data_root is None or self.results is None:
            raise RuntimeError(
                f"profile {self.name!r} has no folders yet: get it from aadlib.profiles.resolve()"
            )
        return self

    def replace(self, **changes) -> Profile:
        """A copy with some fields changed (e.g. fewer epochs for a test)."""
        return dataclasses.replace(self, **changes)

    def with_model(self, kind: str, **changes) -> Profile:
        """A copy with some settings of one model kind changed, e.g. ``epochs=20``."""
        return self.replace(
            models={**self.models, kind: dataclasses.replace(self.model(kind), **changes)}
        )

    def with_models(self, **changes) -> Profile:
        """A copy with the same change of :class:`ModelSettings` for every kind.

        ``epochs`` caps rather than sets: ``with_models(epochs=2)`` trains at most 2 epochs.
        """
        models = {}
        for kind, settings in self.models.items():
            updated = dict(changes)
            if "epochs" in updated:
                updated["epochs"] = min(updated["epochs"], settings.epochs)
            models[kind] = dataclasses.replace(settings, **updated)
        return self.replace(models=models)


def _short(epochs: dict, patience: int, train_hop: dict, score_hop: dict) -> dict:
    """Settings of a short profile: z-normalised inputs for every kind."""
    return {
        kind: ModelSettings(epochs[kind], patience, train_hop[kind], score_hop[kind], True)
        for kind in epochs
    }


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        "quick",
        "synthetic",
        "quick",
        "synthetic data, small; minutes on a CPU (the book's default)",
        models=_short(
            epochs={"dense": 8, "cnn": 3},
            patience=3,
            train_hop={"dense": 4, "cnn": 96},
            score_hop={"dense": 2, "cnn": 64},
        ),
        bn_momentum=0.9,
    ),
    "tiny": Profile(
        "tiny",
        "synthetic",
        "tiny",
        "synthetic data, smallest; smoke tests",
        models=_short(
            epochs={"dense": 2, "cnn": 1},
            patience=1,
            train_hop={"dense": 4, "cnn": 64},
            score_hop={"dense": 4, "cnn": 64},
        ),
        bn_momentum=0.9,
    ),
    "full": Profile(
        "full",
        "real",
        None,
        "real DCASE 2020 Task 2 development data, the paper's settings (GPU)",
    ),
    "full-synthetic": Profile(
        "full-synthetic",
        "synthetic",
        "full",
        "synthetic data at the real set's size, the paper's settings",
    ),
}


def _home(home: str | Path | None) -> Path:
    """aadlib's working folder: the argument, ``AADLIB_HOME`` or the user's cache folder."""
    if home is not None:
        return Path(home).expanduser()
    env = os.environ.get("AADLIB_HOME")
    if env:
        return Path(env).expanduser()
    import pooch  # only where no folder is given: it imports requests and more

    return Path(pooch.os_cache("aadlib"))


def resolve(
    profile: str | Profile | None = None,
    *,
    home: str | Path | None = None,
    data_root: str | Path | None = None,
    results: str | Path | None = None,
    seed: int | None = None,
) -> Profile:
    """The profile of a run, with its folders and seed fixed. Every chapter's first cell.
    Chapters 1 to 5.

    Parameters
    ----------
    profile
        A name of :data:`PROFILES` or a :class:`Profile`; default ``AADLIB_PROFILE`` or
        ``quick``.
    home
        aadlib's working folder (default ``AADLIB_HOME``, else the user's cache folder).
    data_root
        The data set's folder (default ``AADLIB_DATA_ROOT``, else
        ``<home>/data/synthetic-<size>`` or ``<home>/data/dcase2020-task2-dev``).
    results
        The base folder of results (default ``AADLIB_RESULTS``, else ``<home>/results``);
        a profile's models, scores and tables go into ``<results>/<profile name>``.
    seed
        The training seed (default: the profile's, 0).
    """
    if not isinstance(profile, Profile):
        name = profile or os.environ.get(PROFILE_ENV) or "quick"
        if name not in PROFILES:
            raise ValueError(
                f"unknown profile {name!r}; choose one of {', '.join(PROFILES)} "
                f"(argument --profile or environment variable {PROFILE_ENV})"
            )
        profile = PROFILES[name]
    base = _home(home)
    if data_root is None:
        data_root = os.environ.get("AADLIB_DATA_ROOT")
    if data_root is None:
        folder = (
            "dcase2020-task2-dev" if profile.data == "real" else f"synthetic-{profile.synth_size}"
        )
        data_root = base / "data" / folder
    if results is None:
        results = os.environ.get("AADLIB_RESULTS") or base / "results"
    return profile.replace(
        home=base,
        data_root=Path(data_root).expanduser(),
        results=Path(results).expanduser() / profile.name,
        seed=profile.seed if seed is None else int(seed),
    )


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and Keras/TensorFlow together, so a run repeats on one machine."""
    random.seed(seed)
    np.random.seed(seed)
    import keras  # here, not at the top: reading a profile must not load TensorFlow

    keras.utils.set_random_seed(seed)


def describe_device() -> str:
    """A line naming the device Keras will train on (the GPUs TensorFlow sees, or the CPU).

    Chapter 5.
    """
    import tensorflow as tf  # here, not at the top: reading a profile must not load it

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"CPU ({os.cpu_count()} cores); no GPU visible to TensorFlow"
    names = []
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return "GPU: " + ", ".join(names)


def _shown(path: Path, home: Path) -> str:
    """A folder as a reader should see it: relative to the working folder when inside it."""
    try:
        return str(Path("$AADLIB_HOME") / path.relative_to(home))
    except ValueError:
        return str(path)


def session_info(profile: Profile) -> str:
    """A short report for the top of a chapter: profile, folders and compute device.

    Chapters 1 to 5.
    """
    profile = profile._resolved()
    return "\n".join(
        [
            f"aadlib {__version__}, profile '{profile.name}': {profile.description}",
            f"data:    {_shown(profile.data_root, profile.home)}",
            f"results: {_shown(profile.results, profile.home)}",
            f"device:  {describe_device()}",
        ]
    )
