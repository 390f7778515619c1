"""Training speed on the device TensorFlow uses, and the time of the full reproduction.

Run from the repository's root: ``make bench-gpu`` (``python benchmarks/bench_gpu.py``);
``--help`` lists the options. On a GPU it measures at the sizes below and finishes within
10 minutes; without one it says so and caps every measurement (the CPU figures).

1. **Device**: the devices TensorFlow sees, and where a matrix product and the trained
   models' weights are placed (on a GPU machine, a figure from the CPU is a failure).
2. **Step rates**: training steps per second of each model kind at the paper's batch
   size (baseline and Dense AE 512, CNN AE 64) under each setting of
   :class:`aadlib.profiles.Acceleration`: the current loop (one step per compiled call,
   no XLA), ``steps_per_execution``, XLA, both, and on a GPU mixed precision and
   prefetching to the device. Each is measured on one batch held in memory (the model
   alone) and fed by ``WindowBatches.as_tf_dataset`` from a full-size synthetic type's
   frames (as training runs), in rounds that alternate the settings (the table gives
   medians), with the ratio to the current loop. The validation (forward-only) rate of
   the profile's setting is measured too.
3. **One capped epoch of the full profile**: ``aadlib.pipeline.train_machine_type`` on the
   full-size synthetic set, each kind, two epochs of a few batches (the first compiles),
   with this machine's default settings; scoring of some test clips; feature extraction
   into an empty cache.
4. **Projection** of the whole reproduction (18 models, six types: Table 1's clips): for
   each kind, ``epochs`` (an assumption, ``--epochs``) times the steps of one epoch
   (:func:`aadlib.published.training_workload`) at the measured rates plus the epoch's
   fixed cost measured in 3., one compilation per model, scoring and extraction at the
   measured rates, the models trained one after another.

Every row goes into a CSV file (``--out``, default ``bench_gpu.csv`` in the profile's
results folder); the tables are printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from aadlib import paper, profiles

__all__ = [
    "Sizes",
    "Setting",
    "SETTINGS",
    "device_rows",
    "rate_rows",
    "epoch_rows",
    "projection_rows",
    "main",
    "build_parser",
    "run",
]


# --------------------------------------------------------------------------------------
# What to measure, and how much
# --------------------------------------------------------------------------------------


def _per_kind(**values):
    return field(default_factory=lambda: dict(values))


@dataclass
class Sizes:
    """How much work each measurement does; :meth:`for_device` picks GPU or CPU sizes."""

    #: Training steps per measurement of a step rate (after a warm-up call).
    steps: dict = _per_kind(baseline=640, dense=640, cnn=192)
    #: Alternating rounds of the step-rate measurements.
    rounds: int = 3
    #: Batches per compiled call of the "steps_per_execution" settings.
    spe: int = 32
    #: Batches per epoch of the capped epochs (and at most as many validation batches).
    epoch_steps: dict = _per_kind(baseline=640, dense=640, cnn=192)
    #: Test clips scored per kind.
    score_clips: dict = _per_kind(baseline=400, dense=400, cnn=200)
    #: Training clips whose extraction is timed (None: all of the type's).
    extract_clips: int | None = None
    #: The settings measured (names of :data:`SETTINGS`).
    settings: tuple = ("current", "spe", "xla", "spe+xla", "spe+xla+mixed", "spe+xla+prefetch")
    #: The inputs the step rates are measured on, and the settings measured on a batch
    #: held in memory (every setting is measured fed by the pipeline).
    feeds: tuple = ("memory", "fed")
    memory_settings: tuple = ("current", "spe+xla", "spe+xla+mixed")
    #: Minutes after which the step rates stop adding rounds (at least one is made).
    budget_minutes: float = 9.0

    @classmethod
    def for_device(cls, gpu: bool) -> Sizes:
        """GPU sizes (10 minutes in all), or capped CPU sizes (about as long on 2 cores)."""
        if gpu:
            return cls()
        return cls(
            steps=dict(baseline=64, dense=32, cnn=16),
            rounds=3,
            spe=16,
            epoch_steps=dict(baseline=64, dense=32, cnn=16),
            score_clips=dict(baseline=40, dense=40, cnn=6),
            extract_clips=None,
            settings=("current", "spe", "xla", "spe+xla"),
            memory_settings=("current",),
            budget_minutes=25.0,
        )


@dataclass(frozen=True)
class Setting:
    """One way of running the training steps (see :class:`aadlib.profiles.Acceleration`)."""

    name: str
    spe: bool = False
    jit: bool = False
    precision: str = "float32"
    prefetch: bool = False
    #: Whether it needs a GPU (mixed precision on a CPU is slow and tells nothing).
    gpu_only: bool = False

    def acceleration(self, spe: int) -> profiles.Acceleration:
        return profiles.Acceleration(
            steps_per_execution=spe if self.spe else 1,
            jit_compile=self.jit,
            prefetch_to_device=self.prefetch,
            precision=self.precision,
            parallel_models=1,
        )


#: The settings, the current loop first (the ratios' reference).
SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("current"),
        Setting("spe", spe=True),
        Setting("xla", jit=True),
        Setting("spe+xla", spe=True, jit=True),
        Setting("spe+xla+mixed", spe=True, jit=True, precision="mixed_float16", gpu_only=True),
        Setting("spe+xla+prefetch", spe=True, jit=True, prefetch=True, gpu_only=True),
    )
}


def _row(section, what, value=None, unit="", kind="", setting="", feed="", ratio=None, note=""):
    """One row of the CSV: a number goes to ``value``, a text (a device's name) to ``text``."""
    text = value if isinstance(value, str) else ""
    return {
        "section": section,
        "what": what,
        "kind": kind,
        "setting": setting,
        "feed": feed,
        "value": None if text else value,
        "text": text,
        "unit": unit,
        "ratio": ratio,
        "note": note,
    }


def _failed(section, what, err, kind="", setting=None, feed="") -> dict:
    last = (str(err).strip().splitlines() or [repr(err)])[-1]
    name = setting.name if setting is not None else ""
    return _row(section, what, None, kind=kind, setting=name, feed=feed, note=f"FAILED: {last}")


@dataclass
class Bench:
    """One run: its profile, sizes, device, machine type, work folder, clock."""

    profile: profiles.Profile
    sizes: Sizes
    gpu: bool
    machine_type: str
    kinds: tuple
    work: Path
    started: float = field(default_factory=time.perf_counter)
    rows: list = field(default_factory=list)

    def say(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:6.0f} s] {message}", flush=True)

    def late(self) -> bool:
        """Past 60 % of the time budget (the rates then stop adding rounds)."""
        elapsed = (time.perf_counter() - self.started) / 60
        return elapsed > 0.6 * self.sizes.budget_minutes

    @property
    def speed(self) -> profiles.Acceleration:
        """The profile's settings on this machine (what the pipeline trains with)."""
        return self.profile.acceleration.on(self.gpu)


# --------------------------------------------------------------------------------------
# 1. The device
# --------------------------------------------------------------------------------------


def _variable_device(model) -> str:
    variable = model.trainable_variables[0]
    return str(getattr(getattr(variable, "value", variable), "device", "?"))


def device_rows(gpu: bool) -> tuple[list[dict], bool]:
    """The devices TensorFlow sees and where it places a matrix product; whether all is well."""
    import tensorflow as tf

    logical = [d.name for d in tf.config.list_logical_devices()]
    x = tf.random.normal((512, 512))
    placed = tf.matmul(x, x).device
    ok = ("GPU" in placed) if gpu else True
    rows = [
        _row("device", "TensorFlow", tf.__version__, note=f"Python {platform.python_version()}"),
        _row("device", "device", profiles.describe_device()),
        _row("device", "logical devices", ", ".join(logical)),
        _row(
            "device",
            "a matrix product runs on",
            placed,
            note="" if ok else "FAILED: a GPU is visible but the product ran elsewhere",
        ),
    ]
    return rows, ok


# --------------------------------------------------------------------------------------
# 2. Step rates
# --------------------------------------------------------------------------------------


def _clock():
    """A callback that times the steps after the first compiled call, in sync with the
    device: it reads a metric (a copy to the host waits for the steps before it) when it
    starts and when the epoch (or evaluation) ends."""
    import keras

    class Clock(keras.callbacks.Callback):
        def __init__(self, warm: int):
            super().__init__()
            self.warm, self.start, self.stop, self.first = warm, None, None, None

        def _sync(self) -> None:
            float(self.model.metrics[0].result())

        def _begin(self, batch):
            if self.start is None and batch >= self.warm:
                self._sync()
                self.start, self.first = time.perf_counter(), batch

        def on_train_batch_begin(self, batch, logs=None):
            self._begin(batch)

        def on_test_batch_begin(self, batch, logs=None):
            self._begin(batch)

        def _end(self):
            self._sync()
            self.stop = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self._end()

        def on_test_end(self, logs=None):
            self._end()

    return Clock


class _Runner:
    """One compiled model of one kind under one setting and feed; times its steps."""

    def __init__(self, bench: Bench, kind: str, setting: Setting, feed: str, data):
        import keras

        from aadlib import models

        self.kind, self.setting, self.feed, self.data = kind, setting, feed, data
        self.per_call = bench.sizes.spe if setting.spe else 1
        keras.utils.set_random_seed(0)
        self.model = models.build_model(kind, setting.precision)
        self.model.compile(
            optimizer=keras.optimizers.Adam(paper.LEARNING_RATE),
            loss="mse",
            steps_per_execution=self.per_call,
            jit_compile=setting.jit,
        )
        self.clock = _clock()

    def _steps(self, n: int) -> int:
        return max(1, math.ceil(n / self.per_call)) * self.per_call

    def train_rate(self, n: int) -> float:
        """Steps per second over ``n`` steps after one warm compiled call."""
        clock = self.clock(self.per_call)
        steps = self._steps(n) + self.per_call
        self.model.fit(
            self.data.train(self.setting),
            steps_per_epoch=steps,
            epochs=1,
            verbose=0,
            callbacks=[clock],
            shuffle=False,
        )
        return (steps - clock.first) / (clock.stop - clock.start)

    def test_rate(self, n: int) -> float:
        """Validation (forward-only) steps per second."""
        clock = self.clock(self.per_call)
        steps = self._steps(n) + self.per_call
        self.model.evaluate(
            self.data.validation(self.setting), steps=steps, verbose=0, callbacks=[clock]
        )
        return (steps - clock.first) / (clock.stop - clock.start)


class _Data:
    """The batches of one kind: one held in memory, or fed from a type's frames."""

    def __init__(self, kind: str, feed: str, logmels, scaler, gpu: bool):
        import numpy as np

        from aadlib.batches import WindowBatches

        self.kind, self.feed, self.gpu = kind, feed, gpu
        spec = paper.model_spec(kind)
        common = dict(kind=kind, hop=spec.hop, batch_size=spec.batch_size, scaler=scaler)
        self.train_batches = WindowBatches(logmels, shuffle=True, seed=0, **common)
        self.val_batches = WindowBatches(logmels, **common)
        x, _ = self.train_batches.batch(0)
        if len(x) < spec.batch_size:  # a tiny set: repeat its windows to a whole batch
            x = np.resize(x, (spec.batch_size, *x.shape[1:]))
        self.x = np.ascontiguousarray(x)

    def _dataset(self, batches, setting: Setting):
        import tensorflow as tf

        if self.feed == "memory":
            return tf.data.Dataset.from_tensors((self.x, self.x)).repeat()
        dataset = batches.as_tf_dataset().repeat()
        if setting.prefetch:
            gpus = tf.config.list_logical_devices("GPU")
            device = gpus[0].name if gpus else "/cpu:0"
            dataset = dataset.apply(tf.data.experimental.prefetch_to_device(device, 2))
        return dataset

    def train(self, setting: Setting):
        return self._dataset(self.train_batches, setting)

    def validation(self, setting: Setting):
        return self._dataset(self.val_batches, setting)


def _type_logmels(bench: Bench, kind: str):
    """The type's training frames as the kind reads them (cached), and its scaler."""
    from aadlib import features, pipeline

    params = features.params_for(kind)
    _, logmels = pipeline.load_features(
        bench.profile, bench.machine_type, "train", "normal", params, progress=False
    )
    normalise = bench.profile.model(kind, bench.machine_type).normalise
    return logmels, (features.Scaler.fit(logmels) if normalise else None)


def _settings(bench: Bench) -> list[Setting]:
    names = [n for n in bench.sizes.settings if bench.gpu or not SETTINGS[n].gpu_only]
    return [SETTINGS[n] for n in names]


def _default_setting(bench: Bench) -> Setting:
    """The setting the profile trains with on this machine (among the measured ones)."""
    speed = bench.speed
    for setting in _settings(bench):
        if (
            (speed.steps_per_execution > 1) == setting.spe
            and speed.jit_compile == setting.jit
            and speed.precision == setting.precision
            and speed.prefetch_to_device == setting.prefetch
        ):
            return setting
    return SETTINGS["current"]


def rate_rows(bench: Bench) -> tuple[list[dict], dict]:
    """Steps per second of each kind under each setting and feed, with ratios.

    Returns the rows and, per kind, the training and validation rates (steps/s) of the
    profile's setting on the fed input, for the projection.
    """
    import keras

    rows, rates = [], {}
    settings = _settings(bench)
    default = _default_setting(bench)
    for kind in bench.kinds:
        spec = paper.model_spec(kind)
        logmels, scaler = _type_logmels(bench, kind)
        runners = []
        for feed in bench.sizes.feeds:
            data = _Data(kind, feed, logmels, scaler, bench.gpu)
            for setting in settings:
                if feed == "memory" and (
                    setting.prefetch or setting.name not in bench.sizes.memory_settings
                ):
                    continue
                bench.say(f"{kind}: compiling, {setting.name}, {feed}")
                try:
                    runner = _Runner(bench, kind, setting, feed, data)
                    runner.train_rate(runner.per_call)  # compiles; not counted
                except Exception as err:  # noqa: BLE001 - one setting failing must not stop the rest
                    bench.say(f"{kind}, {setting.name}, {feed}: FAILED: {err}")
                    rows.append(
                        _failed("steps", f"{spec.title} training", err, kind, setting, feed)
                    )
                    continue
                runners.append(runner)
        measured = {(r.setting.name, r.feed): [] for r in runners}
        n = bench.sizes.steps[kind]
        for round_ in range(bench.sizes.rounds):
            if round_ and bench.late():
                bench.say(
                    f"{kind}: past {0.6 * bench.sizes.budget_minutes:.0f} min, no more rounds"
                )
                break
            bench.say(f"{kind}: round {round_ + 1} of {bench.sizes.rounds}, {n} steps each")
            for runner in runners:
                measured[runner.setting.name, runner.feed].append(runner.train_rate(n))
        for feed in bench.sizes.feeds:
            reference = measured.get(("current", feed))
            base = statistics.median(reference) if reference else None
            for setting in settings:
                values = measured.get((setting.name, feed))
                if not values:
                    continue
                rate = statistics.median(values)
                spe = bench.sizes.spe if setting.spe else 1
                rows.append(
                    _row(
                        "steps",
                        f"{spec.title} training, batch {spec.batch_size}",
                        rate,
                        "steps/s",
                        kind,
                        setting.name,
                        feed,
                        ratio=rate / base if base else None,
                        note=f"steps_per_execution {spe}, XLA {'on' if setting.jit else 'off'}, "
                        f"{setting.precision}; median of {len(values)} rounds "
                        f"({', '.join(f'{v:.3g}' for v in values)})",
                    )
                )
        feed = "fed" if "fed" in bench.sizes.feeds else bench.sizes.feeds[0]
        chosen = next(
            (r for r in runners if r.setting == default and r.feed == feed),
            next(r for r in runners if r.feed == feed),
        )
        val_rate = statistics.median(
            chosen.test_rate(max(n, chosen.per_call)) for _ in range(bench.sizes.rounds)
        )
        rows.append(
            _row(
                "steps",
                f"{spec.title} validation, batch {spec.batch_size}",
                val_rate,
                "steps/s",
                kind,
                chosen.setting.name,
                feed,
                note="forward passes only (evaluate), the profile's setting",
            )
        )
        rates[kind] = {
            "train": statistics.median(measured[chosen.setting.name, chosen.feed]),
            "val": val_rate,
            "setting": chosen.setting.name,
        }
        if bench.gpu:
            device = _variable_device(chosen.model)
            rows.append(_row("device", f"{spec.title} weights on", device, kind=kind))
        del runners, chosen
        keras.backend.clear_session()
    return rows, rates


# --------------------------------------------------------------------------------------
# 3. Capped epochs of the full profile, scoring, extraction
# --------------------------------------------------------------------------------------


def extraction_rows(bench: Bench) -> tuple[list[dict], dict]:
    """Feature extraction of the type's training clips into an empty cache (clips/s),
    once for each spectrum the kinds read (the baseline reads the power spectrum)."""
    from aadlib import data, features

    table = data.type_clips(bench.profile.data_root, bench.machine_type)
    paths = list(table[(table.split == "train") & (table.label == "normal")].path)
    if bench.sizes.extract_clips:
        paths = paths[: bench.sizes.extract_clips]
    rows, rates = [], {}
    # Once, untimed: the first clips pay for loading the audio and FFT code.
    features.extract_logmels(paths[:2], cache_dir=bench.work / "warm-up", progress=False)
    for params in dict.fromkeys(features.params_for(kind) for kind in bench.kinds):
        bench.say(f"feature extraction of {len(paths)} clips (power {params.power:g})")
        start = time.perf_counter()
        # Into the profile's (empty) cache: what follows reads the same frames from it.
        cache = bench.profile.cache_dir if not bench.sizes.extract_clips else bench.work / "t"
        features.extract_logmels(paths, params, cache_dir=cache, progress=False)
        rate = len(paths) / (time.perf_counter() - start)
        rates[params.power] = rate
        rows.append(
            _row(
                "epoch",
                f"feature extraction, {bench.machine_type} training clips (power {params.power:g})",
                rate,
                "clips/s",
                note=f"{len(paths)} clips, every core, empty cache",
            )
        )
    return rows, rates


def _epoch_profile(bench: Bench, kind: str) -> tuple[profiles.Profile, int, int]:
    """The profile capped for one kind: its batches per epoch, training and validation.

    The cap is a multiple of the batches per compiled call, so that the profile's setting
    runs as it would uncapped.
    """
    from aadlib import training

    logmels, scaler = _type_logmels(bench, kind)
    settings = bench.profile.model(kind, bench.machine_type)
    config = training.paper_config(kind, seed=bench.profile.seed)
    train_set, val_set = training.training_windows(
        logmels, kind, config, hop=settings.train_hop, scaler=scaler
    )
    per_call = bench.speed.steps_per_execution
    cap = min(bench.sizes.epoch_steps[kind], len(train_set))
    if val_set is not None and len(val_set) >= per_call:
        cap = min(cap, len(val_set))
    if cap >= per_call:
        cap -= cap % per_call
    val_steps = min(cap, len(val_set)) if val_set is not None else 0
    two = dataclasses.replace(settings, epochs=2, patience=None)
    profile = bench.profile.replace(
        steps_per_epoch=cap, models={**bench.profile.models, kind: two}, overrides={}
    )
    return profile, cap, val_steps


def epoch_rows(bench: Bench, extraction: dict) -> tuple[list[dict], dict]:
    """Two capped epochs of each kind through the pipeline, and scoring of some test clips."""
    from aadlib import data

    rows, measured = [], {}
    table = data.type_clips(bench.profile.data_root, bench.machine_type)
    test_paths = list(table[table.split == "test"].path)
    for kind in bench.kinds:
        spec = paper.model_spec(kind)
        try:
            got = _one_epoch(bench, kind, test_paths, extraction)
        except Exception as err:  # noqa: BLE001 - one kind failing must not stop the rest
            bench.say(f"{kind}: capped epoch FAILED: {err}")
            rows.append(_failed("epoch", f"{spec.title}: one capped epoch", err, kind))
            continue
        rows += got[0]
        measured[kind] = got[1]
    return rows, measured


def _one_epoch(bench: Bench, kind: str, test_paths, extraction) -> tuple[list[dict], dict]:
    """Two capped epochs of one kind, and its scoring rate."""
    from aadlib import features, pipeline, scoring

    rows = []
    spec = paper.model_spec(kind)
    profile, cap, val_steps = _epoch_profile(bench, kind)
    bench.say(f"{kind}: two capped epochs of the full profile ({cap} batches each)")
    trained = pipeline.train_machine_type(bench.machine_type, kind, profile, verbose=0)
    history = trained.history
    first, second = (float(s) for s in history.seconds.iloc[:2])
    epochs_time = float(history.seconds.sum())
    speed = bench.speed
    rows.append(
        _row(
            "epoch",
            f"{spec.title}: one capped epoch ({cap} + {val_steps} validation batches)",
            second,
            "s",
            kind,
            note=f"the profile's settings here: steps_per_execution "
            f"{speed.steps_per_execution}, XLA {'on' if speed.jit_compile else 'off'}, "
            f"{speed.precision}; first epoch (compiling) {first:.1f} s",
        )
    )
    if bench.gpu:
        rows.append(
            _row("device", f"{spec.title} trained weights on", _variable_device(trained.model))
        )
    n_score = min(bench.sizes.score_clips[kind], len(test_paths))
    picks = [
        test_paths[round(i * (len(test_paths) - 1) / max(1, n_score - 1))] for i in range(n_score)
    ]
    logmels = features.extract_logmels(
        picks, features.params_for(kind), cache_dir=bench.work / "score-cache", progress=False
    )
    hop = profile.model(kind, bench.machine_type).score_hop
    scoring.score_clips(trained.model, logmels, kind, hop, speed.score_batch, trained.scaler)
    start = time.perf_counter()
    scoring.score_clips(trained.model, logmels, kind, hop, speed.score_batch, trained.scaler)
    score_rate = n_score / (time.perf_counter() - start)
    rows.append(
        _row(
            "epoch",
            f"{spec.title}: scoring (hop {hop})",
            score_rate,
            "clips/s",
            kind,
            note=f"{n_score} test clips, batch {speed.score_batch or spec.score_batch}",
        )
    )
    measured = {
        "cap": cap,
        "val_steps": val_steps,
        "epoch": second,
        "compile": max(0.0, first - second),
        "outside_epochs": max(0.0, (trained.seconds - epochs_time) / len(history)),
        "score_rate": score_rate,
        "extract_rate": extraction.get(spec.feature_power),
    }
    return rows, measured


# --------------------------------------------------------------------------------------
# 4. The projection
# --------------------------------------------------------------------------------------


def _workload(kind: str) -> tuple[int, int]:
    """Training and validation batches of one epoch over the six types (Table 1)."""
    from aadlib import published

    spec = paper.model_spec(kind)
    windows = published.training_workload([kind])[f"{spec.title} windows per epoch"]
    val = windows * paper.VALIDATION_FRACTION / (1 - paper.VALIDATION_FRACTION)
    steps = sum(math.ceil(w / spec.batch_size) for w in windows)
    val_steps = sum(math.ceil(w / spec.batch_size) for w in val)
    return steps, val_steps


def projection_rows(bench: Bench, rates: dict, epochs: dict, assumed: dict) -> list[dict]:
    """The whole reproduction's time from the measured rates and capped epochs."""
    from aadlib import published

    clips = published.table1()
    n_train, n_test = int(clips.train_files.sum()), int(clips.test_files.sum())
    types = clips.machine_type.nunique()
    rows, total = [], 0.0
    extraction_done = set()
    for kind in bench.kinds:
        spec = paper.model_spec(kind)
        got = epochs.get(kind)
        rate = rates.get(kind)
        if got is None:
            continue
        steps, val_steps = _workload(kind)
        if rate:
            t_train, t_val = 1 / rate["train"], 1 / rate["val"]
            fixed = max(0.0, got["epoch"] - got["cap"] * t_train - got["val_steps"] * t_val)
            basis = f"rates of '{rate['setting']}' (fed) plus the capped epoch's fixed cost"
        else:  # no rates: scale the capped epoch, validation steps at a third of a step
            t_train = got["epoch"] / (got["cap"] + got["val_steps"] / 3)
            t_val, fixed = t_train / 3, 0.0
            basis = "the capped epoch, scaled (validation step = 1/3 training step)"
        epoch = steps * t_train + val_steps * t_val + fixed + got["outside_epochs"]
        train = assumed[kind] * epoch + types * got["compile"]
        score = n_test / got["score_rate"]
        extract = 0.0
        if got["extract_rate"] and spec.feature_power not in extraction_done:
            extraction_done.add(spec.feature_power)
            extract = (n_train + n_test) / got["extract_rate"]
        total += train + score + extract
        rows.append(
            _row(
                "projection",
                f"{spec.title}: one epoch over six types ({steps:,} + {val_steps:,} batches)",
                epoch / 60,
                "min",
                kind,
                note=basis,
            )
        )
        rows.append(
            _row(
                "projection",
                f"{spec.title}: {types} models x {assumed[kind]} epochs, scoring "
                f"{n_test:,} test clips"
                + (f", extracting {n_train + n_test:,} clips" if extract else ""),
                (train + score + extract) / 60,
                "min",
                kind,
                note=f"training {train / 60:.1f} min, scoring {score / 60:.1f} min, "
                f"extraction {extract / 60:.1f} min",
            )
        )
    rows.append(
        _row(
            "projection",
            f"full reproduction ({', '.join(bench.kinds)}), one model after another",
            total / 60,
            "min",
            note=f"{total / 3600:.1f} h; epochs assumed: "
            + ", ".join(f"{k} {assumed[k]}" for k in bench.kinds)
            + f"; device: {profiles.describe_device()}",
        )
    )
    return rows


# --------------------------------------------------------------------------------------
# The table and the run
# --------------------------------------------------------------------------------------


def _value(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    return "" if value is None else str(value)


def format_rates(rows: list[dict]) -> str:
    """The step rates as a table: a line per kind and setting, a column per feed."""
    steps = [r for r in rows if r["section"] == "steps" and "training" in r["what"]]
    if not steps:
        return ""
    feeds = list(dict.fromkeys(r["feed"] for r in steps))
    lines = [
        "| model | setting | " + " | ".join(f"{f} steps/s | ratio" for f in feeds) + " |",
        "|---|---|" + "---:|---:|" * len(feeds),
    ]
    order = {name: i for i, name in enumerate(SETTINGS)}
    keys = list(dict.fromkeys((r["what"], r["setting"]) for r in steps))
    models = list(dict.fromkeys(what for what, _ in keys))  # in the order measured
    keys.sort(key=lambda key: (models.index(key[0]), order[key[1]]))
    for what, setting in keys:
        cells = []
        for feed in feeds:
            found = [
                r for r in steps if (r["what"], r["setting"], r["feed"]) == (what, setting, feed)
            ]
            if found:
                cells += [_value(found[0]["value"]), f"{found[0]['ratio']:.2f}x"]
            else:
                cells += ["", ""]
        lines.append(f"| {what} | {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_rows(rows: list[dict], sections=("device", "epoch", "projection")) -> str:
    """The other rows (device, validation rates, capped epochs, projection) as a table."""
    lines = ["| what | value | unit | note |", "|---|---:|---|---|"]
    for r in rows:
        if r["section"] in sections or "validation" in r["what"]:
            shown = r["text"] or _value(r["value"])
            lines.append(f"| {r['what']} | {shown} | {r['unit']} | {r['note']} |")
    return "\n".join(lines)


def _assumed_epochs(text: str | None) -> dict:
    """Epochs assumed per kind: the baseline's 100 (no early stopping), 40 for the others."""
    assumed = {"baseline": paper.MODELS["baseline"].epochs, "dense": 40, "cnn": 40}
    if text:
        for part in text.split(","):
            kind, _, number = part.partition("=")
            paper.model_spec(kind.strip())
            assumed[kind.strip()] = int(number)
    return assumed


def run(args: argparse.Namespace) -> int:
    """Measure, print the tables, write the CSV. Returns an exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from aadlib import pipeline, training

    gpu = training.gpu_visible()
    sizes = Sizes.for_device(gpu and not args.quick)
    for name in ("rounds", "spe", "budget_minutes"):
        if getattr(args, name) is not None:
            setattr(sizes, name, getattr(args, name))
    for name in ("steps", "epoch_steps", "score_clips"):
        value = getattr(args, name)
        if value is not None:
            setattr(sizes, name, dict.fromkeys(paper.MODEL_KINDS, value))
    if args.settings:
        sizes.settings = tuple(args.settings.split(","))
    if args.feeds:
        sizes.feeds = tuple(args.feeds.split(","))
    if args.memory_settings:
        sizes.memory_settings = tuple(args.memory_settings.split(","))
    if args.extract_clips is not None:
        sizes.extract_clips = args.extract_clips
    resolved = profiles.resolve(args.profile, data_root=args.data_root, results=args.results)
    work = Path(tempfile.mkdtemp(prefix="aadlib-bench-gpu-"))
    # The data set is the profile's (generated once); features and models go to a fresh folder.
    profile = resolved.replace(home=work, results=work / "results")
    kinds = tuple(args.kinds.split(",")) if args.kinds else paper.MODEL_KINDS
    bench = Bench(profile, sizes, gpu, args.type, kinds, work)
    out = Path(args.out) if args.out else resolved.results / "bench_gpu.csv"
    bench.say(f"bench-gpu: {profiles.describe_device()}")
    if not gpu:
        bench.say(
            "no GPU visible to TensorFlow: measuring on the CPU with capped sizes "
            "(these are CPU figures; the GPU figures are not measured by this run)"
        )
    elif args.quick:
        bench.say("--quick: capped sizes")
    rows, ok = device_rows(gpu)
    bench.rows += rows
    if args.prepare:
        bench.say(f"data: {profile.data_root} ({args.type}; generated once if absent)")
        pipeline.prepare_data(profile, [args.type], progress=sys.stdout.isatty())
    try:
        rows, extraction = extraction_rows(bench)
        bench.rows += rows
        rates = {}
        if "rates" not in args.skip:
            rows, rates = rate_rows(bench)
            bench.rows += rows
        epochs = {}
        if "epoch" not in args.skip:
            rows, epochs = epoch_rows(bench, extraction)
            bench.rows += rows
        bench.rows += projection_rows(bench, rates, epochs, _assumed_epochs(args.epochs))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ok = ok and not any(str(r["note"]).startswith("FAILED") for r in bench.rows)
    if gpu:
        off_gpu = [r for r in bench.rows if r["what"].endswith(" on") and "GPU" not in r["text"]]
        ok = ok and not off_gpu
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(bench.rows).to_csv(out, index=False)
    print()
    print(format_rates(bench.rows))
    print()
    print(format_rows(bench.rows))
    print()
    minutes = (time.perf_counter() - bench.started) / 60
    bench.say(f"wrote {out}; {minutes:.1f} min in all")
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/bench_gpu.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile", choices=list(profiles.PROFILES), default="full-synthetic")
    parser.add_argument("--type", default="slider", help="the machine type measured (slider)")
    parser.add_argument("--kinds", default=None, help="model kinds, comma-separated (all)")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="the CSV file")
    parser.add_argument("--quick", action="store_true", help="the capped CPU sizes, also on a GPU")
    parser.add_argument(
        "--no-prepare",
        dest="prepare",
        action="store_false",
        help="use the data root as it is (do not generate or download)",
    )
    parser.add_argument(
        "--skip",
        default="",
        help="parts to leave out, comma-separated: rates, epoch",
    )
    parser.add_argument(
        "--epochs",
        default=None,
        help="epochs assumed per model in the projection, KIND=N[,KIND=N] "
        "(default baseline=100: it has no early stopping; dense=40, cnn=40: early stopping "
        "after 10 epochs without improvement typically ends them after 30 to 50)",
    )
    sizing = parser.add_argument_group("sizing (default: by device)")
    sizing.add_argument("--steps", type=int, default=None, help="steps per rate measurement")
    sizing.add_argument("--rounds", type=int, default=None)
    sizing.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        help="past 60 %% of it the step rates stop adding rounds (GPU 9, CPU 25)",
    )
    sizing.add_argument("--spe", type=int, default=None, help="steps_per_execution measured")
    sizing.add_argument("--epoch-steps", type=int, default=None, help="batches per capped epoch")
    sizing.add_argument("--score-clips", type=int, default=None)
    sizing.add_argument("--extract-clips", type=int, default=None)
    sizing.add_argument(
        "--settings", default=None, help=f"comma-separated, of: {', '.join(SETTINGS)}"
    )
    sizing.add_argument("--feeds", default=None, help="memory,fed")
    sizing.add_argument(
        "--memory-settings", default=None, help="the settings measured on a batch in memory"
    )
    return parser


def main(argv=None) -> int:
    """The command line."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
