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
- ``folder``: your own recordings, any folder in the DCASE layout (``--data-root``),
  checked up front (:mod:`aadlib.folders`); short training fit for small data.

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
    "Acceleration",
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
    seeds
        Training runs per machine type, with seeds ``seed``, ``seed + 1``, ...; they can be
        averaged, with their spread counted in every interval
        (:func:`aadlib.pipeline.seed_scores`, chapter 5). The paper trained each model
        once; ``quick`` trains the baseline and the Dense AE three times.
    shipped
        The book does not train this model: it reads the test scores and training
        history of a run made once with these settings and shipped with aadlib
        (``tools/ship_runs.py``, :func:`aadlib.pipeline.shipped_run`). ``quick`` ships
        the CNN AE's, which a 2-core CPU cannot train to its plateau within a build.
    """

    epochs: int
    patience: int | None
    train_hop: int
    score_hop: int
    normalise: bool
    seeds: int = 1
    shipped: bool = False

    @classmethod
    def paper(cls, kind: str) -> ModelSettings:
        """The paper's settings for a kind (:data:`aadlib.paper.MODELS`)."""
        spec = paper.model_spec(kind)
        return cls(spec.epochs, spec.patience, spec.hop, spec.hop, spec.normalise)


def _paper_models() -> dict[str, ModelSettings]:
    return {kind: ModelSettings.paper(kind) for kind in paper.MODEL_KINDS}


#: Precisions a model may train in (Keras dtype policies). Only ``float32`` is the paper's.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclass(frozen=True)
class Acceleration:
    """How fast a run trains and scores: switches that change the speed, not the method.

    Chapter 5. Every switch but ``precision`` computes the same numbers with it on or off
    (within float rounding: ``tests/test_speed.py``), so a checkpoint made with one setting
    resumes with another; ``precision`` changes the numbers and is part of a run's record.
    ``"auto"`` is decided by :meth:`on` for the machine the run trains on: the CPU values
    were measured on a 2-core CPU by ``benchmarks/bench_gpu.py`` (the README's "Training
    speed on a GPU"); the GPU values are reasoned, not yet measured on a GPU, and
    ``make bench-gpu`` measures them.

    Attributes
    ----------
    steps_per_execution
        Training batches per compiled call (Keras' ``steps_per_execution``): one trip
        from Python to the device runs that many steps. ``"auto"``: 16 on a CPU
        (measured on 2 cores: 1.2x to 1.5x the steps per second of the DCASE baseline,
        whose step is short; no change for the Dense AE and the CNN AE), 32 on a GPU
        (a small model's step there is shorter than Python's work to launch it).
    jit_compile
        Compile the training step with XLA. ``"auto"``: on a GPU only (measured on a CPU:
        0.85x to 0.9x for the Dense AE, about 0.5x for the CNN AE, 1.0x to 1.3x for the
        baseline, and minutes of compiling for the CNN AE).
    prefetch_to_device
        Copy the next batches to the GPU while the current step runs
        (``tf.data.experimental.prefetch_to_device``); without a GPU it has no effect.
        Off until measured on a GPU.
    precision
        ``"float32"`` (the paper's), ``"mixed_float16"`` or ``"mixed_bfloat16"``: layers
        compute in 16 bits, weights stay in float32 and the output layer computes in
        float32. Changes the numbers: off until a GPU measurement shows AUCs within the
        run-to-run spread of float32 training.
    parallel_models
        Models trained at once, each (model kind, machine type) in its own process
        (:func:`aadlib.pipeline.run_experiment`). ``"auto"``: on a CPU 2, or 1 with a
        single core (measured on 2 cores: the 11 baseline and Dense AE runs of one quick
        seed took 177 s two at a time against about 233 s one after another, 1.3x: the
        small models' steps leave cores idle); on a GPU 3, or fewer when the machine has
        fewer CPU cores (each process needs a core to launch its steps and gather its
        batches).
    score_batch
        Windows per scoring batch for every kind. ``"auto"``: each kind's own
        (:attr:`aadlib.paper.ModelSpec.score_batch`) on a CPU, 4096 on a GPU.
    """

    steps_per_execution: int | str = "auto"
    jit_compile: bool | str = "auto"
    prefetch_to_device: bool = False
    precision: str = "float32"
    parallel_models: int | str = "auto"
    score_batch: int | str | None = "auto"

    #: The values of ``"auto"`` on a GPU (not yet measured on one) and on a CPU (measured).
    GPU = {"steps_per_execution": 32, "jit_compile": True, "score_batch": 4096}
    CPU = {"steps_per_execution": 16, "jit_compile": False, "score_batch": None}
    #: Most models trained at once on a GPU under ``"auto"``.
    GPU_PARALLEL = 3

    def __post_init__(self):
        for name in ("steps_per_execution", "parallel_models", "score_batch"):
            value = getattr(self, name)
            if value == "auto" or (name == "score_batch" and value is None):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer or 'auto', not {value!r}")
        if self.jit_compile not in (True, False, "auto"):
            raise ValueError(f"jit_compile must be True, False or 'auto', not {self.jit_compile!r}")
        if self.prefetch_to_device not in (True, False):
            raise ValueError(
                f"prefetch_to_device must be True or False, not {self.prefetch_to_device!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}"
            )

    def on(self, gpu: bool, cores: int | None = None) -> Acceleration:
        """The settings on a machine with a GPU or without one: every ``"auto"`` decided.

        Chapter 5. ``cores``: the machine's CPU cores (default ``os.cpu_count()``).
        """
        chosen = self.GPU if gpu else self.CPU
        changes = {
            name: chosen[name]
            for name in ("steps_per_execution", "jit_compile", "score_batch")
            if getattr(self, name) == "auto"
        }
        if self.parallel_models == "auto":
            cores = cores or os.cpu_count() or 1
            changes["parallel_models"] = min(self.GPU_PARALLEL if gpu else 2, cores)
        return dataclasses.replace(self, **changes)

    @property
    def record(self) -> dict:
        """What of these settings changes the computed numbers (part of a run's record).

        Chapter 5. Empty for float32: the other switches compute the same numbers, so
        records written before they existed still match.
        """
        return {} if self.precision == "float32" else {"precision": self.precision}


@dataclass(frozen=True)
class Profile:
    """What data a run uses, how each model kind trains, and where the run's files go.

    Attributes
    ----------
    data
        ``"synthetic"``, ``"real"`` (the DCASE download) or ``"folder"`` (a user's own
        folder in the DCASE layout, read as it is: no download, no generator).
    synth_size
        Size of the synthetic set (see :data:`aadlib.synth.SIZES`); ``None`` for real data.
    models
        :class:`ModelSettings` per model kind.
    overrides
        :class:`ModelSettings` for one (model kind, machine type): the quick profile trains
        the CNN AE of the type that chapter 4 studies longer than the others.
    bn_momentum
        Momentum of the batch-normalisation moving averages (Keras' default 0.99, as the
        authors used). After only a few dozen steps those averages still remember their
        initial values, so the short profiles use 0.9.
    steps_per_epoch
        Cap on batches per epoch (``None``: all), to time or test the full-size
        profiles on a CPU without training for days.
    seed
        Seed of the training runs (data split, shuffles, initial weights).
    acceleration
        How fast the run trains and scores (:class:`Acceleration`); chapter 5.
    mix_down
        Clips with several channels: ``"refuse"`` (default), ``"first"`` or ``"mean"``
        (:func:`aadlib.data.load_clip`'s ``mono``).
    home, data_root, results
        Where the run's files go; set by :func:`resolve`.
    """

    name: str
    data: str
    synth_size: str | None
    description: str
    models: dict[str, ModelSettings] = field(default_factory=_paper_models)
    overrides: dict[tuple[str, str], ModelSettings] = field(default_factory=dict)
    bn_momentum: float = 0.99
    steps_per_epoch: int | None = None
    seed: int = 0
    acceleration: Acceleration = Acceleration()
    mix_down: str = "refuse"
    home: Path | None = None
    data_root: Path | None = None
    results: Path | None = None

    def __post_init__(self):
        for kind, settings in [*self.models.items(), *self.overrides.items()]:
            for name in ("epochs", "train_hop", "score_hop", "seeds"):
                if getattr(settings, name) < 1:
                    raise ValueError(f"{kind} {name} must be at least 1")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be at least 1, not {self.steps_per_epoch}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be an integer from 0 to 2**32 - 1, not {self.seed}")
        if self.mix_down not in ("refuse", "first", "mean"):
            raise ValueError(f"mix_down must be 'refuse', 'first' or 'mean', not {self.mix_down!r}")

    def model(self, kind: str, machine_type: str | None = None) -> ModelSettings:
        """The settings of one model kind (on one machine type, where it has its own)."""
        paper.model_spec(kind)  # an unknown kind gets the error that lists the kinds
        if (kind, machine_type) in self.overrides:
            return self.overrides[kind, machine_type]
        # A kind the profile does not list (one added to aadlib.paper.MODELS) runs as the
        # paper's spec says.
        return self.models.get(kind) or ModelSettings.paper(kind)

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

    def trained_here(self, *kinds: str) -> Profile:
        """A copy that trains ``kinds`` (default: every kind) itself where this profile
        reads their shipped runs (:attr:`ModelSettings.shipped`). Chapter 4."""
        kinds = kinds or tuple(self.models)

        def here(kind: str, settings: ModelSettings) -> ModelSettings:
            return dataclasses.replace(settings, shipped=False) if kind in kinds else settings

        return self.replace(
            models={kind: here(kind, s) for kind, s in self.models.items()},
            overrides={key: here(key[0], s) for key, s in self.overrides.items()},
        )

    def with_models(self, **changes) -> Profile:
        """A copy with the same change of :class:`ModelSettings` for every kind.

        ``epochs`` caps rather than sets: ``with_models(epochs=2)`` trains at most 2 epochs.
        """

        def changed(settings: ModelSettings) -> ModelSettings:
            updated = dict(changes)
            if "epochs" in updated:
                updated["epochs"] = min(updated["epochs"], settings.epochs)
            return dataclasses.replace(settings, **updated)

        return self.replace(
            models={kind: changed(s) for kind, s in self.models.items()},
            overrides={key: changed(s) for key, s in self.overrides.items()},
        )


def _short(
    epochs: dict,
    patience: dict,
    train_hop: dict,
    score_hop: dict,
    seeds: dict | None = None,
    shipped: set = frozenset(),
) -> dict:
    """Settings of a short profile, per kind: z-normalised inputs for every kind."""
    seeds = seeds or {}
    return {
        kind: ModelSettings(
            epochs[kind],
            patience[kind],
            train_hop[kind],
            score_hop[kind],
            True,
            seeds.get(kind, 1),
            kind in shipped,
        )
        for kind in epochs
    }


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        "quick",
        "synthetic",
        "quick",
        "synthetic data, small; minutes on a CPU (the book's default)",
        # 20 epochs: the baseline (no early stopping, as in the paper) and the Dense AE
        # (early stopping) level off on every type within them; at 8, both were still
        # improving on most types. The synthetic set's difficulty is calibrated for this
        # schedule (tools/calibrate_synth.py).
        # Three training runs (seeds) of the baseline and the Dense AE per type, so that
        # chapter 5's intervals and verdicts count the seed-to-seed spread. The CNN AE, about
        # one step a second on 2 cores, needs minutes per type to reach its plateau (a patch
        # every 16 frames; slider's validation loss levels off after about 10 epochs): its
        # run is made once by tools/ship_runs.py and shipped, not trained in a build.
        models=_short(
            epochs={"baseline": 20, "dense": 20, "cnn": 24},
            # Dense AE patience 5: with batch-norm momentum 0.9 its validation loss can jump
            # after the first epoch and take three epochs to come back (seen with seed 1).
            patience={"baseline": None, "dense": 5, "cnn": 3},
            train_hop={"baseline": 4, "dense": 4, "cnn": 16},
            score_hop={"baseline": 2, "dense": 2, "cnn": 64},
            seeds={"baseline": 3, "dense": 3},
            shipped={"cnn"},
        ),
        bn_momentum=0.9,
    ),
    "tiny": Profile(
        "tiny",
        "synthetic",
        "tiny",
        "synthetic data, smallest; smoke tests",
        models=_short(
            epochs={"baseline": 2, "dense": 2, "cnn": 1},
            patience={"baseline": None, "dense": 1, "cnn": 1},
            train_hop={"baseline": 4, "dense": 4, "cnn": 64},
            score_hop={"baseline": 4, "dense": 4, "cnn": 64},
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
    "folder": Profile(
        "folder",
        "folder",
        None,
        "your own recordings in the DCASE layout (--data-root), short training for small data",
        # Tens of clips, not thousands: an epoch is a few steps, so more epochs than quick
        # (early stopping ends most sooner), and the CNN AE takes a patch every 32 frames
        # (a third of quick's hop) so that ten 10 s clips fill more than one batch.
        models=_short(
            epochs={"baseline": 20, "dense": 20, "cnn": 12},
            patience={"baseline": None, "dense": 5, "cnn": 3},
            train_hop={"baseline": 4, "dense": 4, "cnn": 32},
            score_hop={"baseline": 2, "dense": 2, "cnn": 16},
        ),
        bn_momentum=0.9,
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
    Chapters 1 to 10.

    Parameters
    ----------
    profile
        A name of :data:`PROFILES` or a :class:`Profile`; default ``AADLIB_PROFILE`` or
        ``quick``.
    home
        aadlib's working folder (default ``AADLIB_HOME``, else the user's cache folder).
    data_root
        The data set's folder (default ``AADLIB_DATA_ROOT``, else
        ``<home>/data/synthetic-<size>``, ``<home>/data/dcase2020-task2-dev`` or, for
        the ``folder`` profile, ``<home>/data/own``).
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
        folder = {"real": "dcase2020-task2-dev", "folder": "own"}.get(
            profile.data, f"synthetic-{profile.synth_size}"
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

    Chapters 1 to 10.
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
