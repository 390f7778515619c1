"""Data profiles, folders, seeding and the compute device: the settings every chapter shares.

Chapter: ``book/setup.md``.

One switch picks the profile: the ``AADLIB_PROFILE`` environment variable in notebooks,
``--profile`` on the command line.

- ``quick`` (default): the synthetic set at a small size and short training; the whole
  book executes in minutes on a 2-core CPU, offline.
- ``tiny``: smaller still, for smoke tests of the notebooks.
- ``full``: the real DCASE 2020 Task 2 development set and the paper's settings
  (100 epochs at most, every vector and every third patch); meant for a GPU.
- ``full-synthetic``: the synthetic set at the real set's size with the paper's
  settings, for timing and memory at true scale without the download.
"""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .windows import PAPER_HOP

__all__ = [
    "Profile",
    "PROFILES",
    "get_profile",
    "home",
    "data_root",
    "results_root",
    "set_seed",
    "describe_device",
    "session_info",
]

PROFILE_ENV = "AADLIB_PROFILE"


@dataclass(frozen=True)
class Profile:
    """What data a run uses and how long it trains.

    Attributes
    ----------
    data
        ``"synthetic"`` or ``"real"``.
    synth_size
        Size of the synthetic set (see :data:`aadlib.synth.SIZES`); ``None`` for real data.
    dense_epochs, cnn_epochs
        Upper bound on epochs; early stopping usually ends sooner.
    dense_train_hop, cnn_train_hop
        Frames between consecutive training vectors / patches (paper: 1 and 3).
    dense_score_hop, cnn_score_hop
        The same for scoring test clips.
    dense_normalised
        Feed the Dense AE z-normalised frames. The paper feeds raw dB values; then the
        output layer must learn offsets of tens of dB with Adam's small steps, which takes
        the tens of thousands of steps of a full run, not the few hundred of ``quick``.
    steps_per_epoch
        Cap on batches per epoch (``None``: all), to time or test the full-size
        profiles on a CPU without training for days.
    bn_momentum
        Momentum of the batch-normalisation moving averages (Keras' default 0.99, as the
        authors used). After only a few dozen steps those averages still remember their
        initial values, so the short profiles use 0.9.
    """

    name: str
    data: str
    synth_size: str | None
    dense_epochs: int
    cnn_epochs: int
    patience: int
    dense_train_hop: int
    cnn_train_hop: int
    dense_score_hop: int
    cnn_score_hop: int
    description: str
    dense_normalised: bool = False
    bn_momentum: float = 0.99
    steps_per_epoch: int | None = None

    @property
    def is_paper_setting(self) -> bool:
        return self.name in ("full", "full-synthetic")

    def replace(self, **changes) -> Profile:
        """A copy with some fields changed (e.g. fewer epochs for a test)."""
        return dataclasses.replace(self, **changes)


_PAPER = dict(
    dense_epochs=100,
    cnn_epochs=100,
    patience=10,
    dense_train_hop=PAPER_HOP["dense"],
    cnn_train_hop=PAPER_HOP["cnn"],
    dense_score_hop=PAPER_HOP["dense"],
    cnn_score_hop=PAPER_HOP["cnn"],
)

PROFILES: dict[str, Profile] = {
    "quick": Profile(
        "quick",
        "synthetic",
        "quick",
        dense_epochs=8,
        cnn_epochs=3,
        patience=3,
        dense_train_hop=4,
        cnn_train_hop=96,
        dense_score_hop=2,
        cnn_score_hop=64,
        description="synthetic data, small; minutes on a CPU (the book's default)",
        dense_normalised=True,
        bn_momentum=0.9,
    ),
    "tiny": Profile(
        "tiny",
        "synthetic",
        "tiny",
        dense_epochs=2,
        cnn_epochs=1,
        patience=1,
        dense_train_hop=4,
        cnn_train_hop=64,
        dense_score_hop=4,
        cnn_score_hop=64,
        description="synthetic data, smallest; smoke tests of the notebooks",
        dense_normalised=True,
        bn_momentum=0.9,
    ),
    "full": Profile(
        "full",
        "real",
        None,
        **_PAPER,
        description="real DCASE 2020 Task 2 development data, the paper's settings (GPU)",
    ),
    "full-synthetic": Profile(
        "full-synthetic",
        "synthetic",
        "full",
        **_PAPER,
        description="synthetic data at the real set's size, the paper's settings",
    ),
}


def get_profile(name: str | Profile | None = None) -> Profile:
    """The profile by name, or from ``AADLIB_PROFILE``, or ``quick``."""
    if isinstance(name, Profile):
        return name
    name = name or os.environ.get(PROFILE_ENV) or "quick"
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown profile {name!r}; choose one of {', '.join(PROFILES)} "
            f"(argument --profile or environment variable {PROFILE_ENV})"
        ) from None


def home() -> Path:
    """aadlib's working folder: ``AADLIB_HOME`` or the user's cache folder."""
    env = os.environ.get("AADLIB_HOME")
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("aadlib"))


def data_root(profile: str | Profile | None = None) -> Path:
    """Where the profile's data set lives (``AADLIB_DATA_ROOT`` overrides).

    The synthetic sets sit in ``<home>/data/synthetic-<size>``, the real one in
    ``<home>/data/dcase2020-task2-dev``.
    """
    env = os.environ.get("AADLIB_DATA_ROOT")
    if env:
        return Path(env).expanduser()
    profile = get_profile(profile)
    if profile.data == "real":
        return home() / "data" / "dcase2020-task2-dev"
    return home() / "data" / f"synthetic-{profile.synth_size}"


def results_root(profile: str | Profile | None = None) -> Path:
    """Where trained models, scores and tables go (``AADLIB_RESULTS`` overrides)."""
    env = os.environ.get("AADLIB_RESULTS")
    base = Path(env).expanduser() if env else home() / "results"
    return base / get_profile(profile).name


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and Keras/TensorFlow together, so a run repeats on one machine."""
    random.seed(seed)
    np.random.seed(seed)
    import keras

    keras.utils.set_random_seed(seed)


def describe_device() -> str:
    """A line naming the device Keras will train on (the GPUs TensorFlow sees, or the CPU)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"CPU ({os.cpu_count()} cores); no GPU visible to TensorFlow"
    names = []
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return "GPU: " + ", ".join(names)


def session_info(profile: str | Profile | None = None) -> str:
    """A short report for the top of a chapter: profile, folders and compute device."""
    from . import __version__

    profile = get_profile(profile)
    return "\n".join(
        [
            f"aadlib {__version__}, profile '{profile.name}': {profile.description}",
            f"data:    {data_root(profile)}",
            f"results: {results_root(profile)}",
            f"device:  {describe_device()}",
        ]
    )
