"""Speed and memory of the fast paths against the reference pipeline, in one run.

Command line: ``aadlib bench`` (the options of the ``bench`` subcommand) or
``python -m aadlib.bench`` (the same, plus options that size each measurement).

Every figure compares the library with the reference implementation of
``benchmarks/reference_pipeline.py`` (the authors' way: ``librosa.load`` and
``librosa.feature.melspectrogram`` per file, every vector or patch materialised, a
Python-loop batch generator, ``model.predict`` per test clip), measured in the same run
on the same machine. Each measurement runs in a fresh Python process, so its peak
resident memory (RSS: ``VmHWM`` on Linux) is its own; the extraction figure counts any
worker processes too (sampled every 50 ms).

Rows of the table (and of the CSV file):

- **feature extraction**: clips per second over a machine type's training clips, every
  core (ours, cold: no cache) against one process (reference); the largest difference
  between the two sets of features in dB.
- **cached features**: the second run reads the feature cache (and every frame of it)
  instead of extracting again.
- **Dense / CNN input pipeline**: windows per second of the training batches as ``fit``
  receives them, shuffled, over all training clips: ours from
  :meth:`aadlib.training.WindowDataset.as_tf_dataset`, the reference generator through
  Keras's ``PyDataset`` feed, both pulled by one compiled loop; rounds of both alternate
  so that a busy machine slows both. A second row compares the NumPy batches alone.
- **input time / training step**: one batch of our input against one training step on
  one batch held in memory (the model alone), on the device TensorFlow uses.
- **Dense / CNN training peak RSS**: a fixed number of training steps (with validation)
  on all training clips of the full-size set, with the data loaded as the pipeline does
  (memory-mapped cache, the CNN's scaler fitted on every frame). The reference holds
  every vector (or patch) as one ``float64`` array: its figure is measured on a subset of
  clips and extrapolated to all of them by adding the bytes of the remaining vectors.
- **Dense / CNN scoring**: test clips scored per second on the CPU, batched across clips
  (:func:`aadlib.metrics.score_clips`) against ``model.predict`` per clip, and the
  largest relative difference between the two sets of scores.
- **book**: wall time of a cold ``jupyter-book build`` (a fresh copy of the book, a
  fresh execution cache and a fresh ``AADLIB_HOME``, quick profile) and of the rebuild
  that follows (nothing changed: every notebook comes from the execution cache).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .windows import PAPER_BATCH, PAPER_HOP, SCORE_BATCH, WINDOW_FRAMES

__all__ = ["main", "build_parser", "BenchSettings", "load_reference", "REFERENCE_FILE"]

ROOT = Path(__file__).resolve().parents[1]
#: The reference implementation the benchmark compares against.
REFERENCE_FILE = ROOT / "benchmarks" / "reference_pipeline.py"


COLUMNS = [
    "what",
    "unit",
    "ours",
    "reference",
    "ratio",
    "peak_rss_ours_mb",
    "peak_rss_reference_mb",
    "target",
    "met",
    "note",
]


class BenchSettings:
    """How much work each measurement does.

    The defaults take about 8 minutes of measurements on a 2-core CPU for ToyCar at full
    size (plus the book's cold build, about 11 minutes). Numbers given for a per-kind
    setting apply to both kinds.
    """

    defaults = {
        "ref_clips": None,  # clips the reference extracts (None: all training clips)
        "input_rounds": 7,  # alternating rounds of the input pipeline measurement
        "input_batches": {"dense": 40, "cnn": 60},  # reference batches per round
        "train_steps": {"dense": 250, "cnn": 12},  # training steps for the memory figure
        "val_steps": {"dense": 20, "cnn": 4},
        "ref_mem_clips": {"dense": 400, "cnn": 120},  # clips the reference training holds
        "ref_train_steps": {"dense": 20, "cnn": 3},
        "memory_steps": {"dense": 40, "cnn": 5},  # steps on one batch held in memory
        "score_clips": {"dense": 200, "cnn": 24},  # test clips scored by each method
        "prepare": True,  # generate (or download) the profile's data first
        "batch": dict(PAPER_BATCH),  # training batch sizes
        "isolate": True,  # each measurement in a fresh process (False: in this one; tests)
    }

    def __init__(self, args=None, **changes):
        values = json.loads(json.dumps(self.defaults))
        for name in values:
            value = getattr(args, name, None) if args is not None else None
            value = changes.get(name, value)
            if value is None:
                continue
            if isinstance(values[name], dict) and not isinstance(value, dict):
                value = {kind: int(value) for kind in values[name]}
            values[name] = value
        self.__dict__.update(values)


def load_reference():
    """Import ``benchmarks/reference_pipeline.py`` (it lives beside the package)."""
    if "aadlib_reference_pipeline" in sys.modules:
        return sys.modules["aadlib_reference_pipeline"]
    if not REFERENCE_FILE.exists():
        raise FileNotFoundError(
            f"{REFERENCE_FILE}: the reference pipeline is missing; run the benchmark from a "
            "checkout of the repository (pip install -e .)."
        )
    spec = importlib.util.spec_from_file_location("aadlib_reference_pipeline", REFERENCE_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------
# Measurements, each in its own process
# --------------------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    """Peak resident memory of this process since it started, in MiB.

    On Linux this is ``VmHWM`` of ``/proc/self/status``: the high-water mark of this
    process's own address space. ``getrusage``'s ``ru_maxrss`` would not do: a child
    started by ``fork`` and ``exec`` inherits its parent's peak as its own.
    """
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _logmels(spec, key="paths"):
    from .features import extract_logmels

    return extract_logmels(spec[key], cache_dir=spec["cache_dir"], progress=False)


def task_extract_reference(spec: dict) -> dict:
    ref = load_reference()
    from .features import FeatureParams

    paths = spec["paths"]
    start = time.perf_counter()
    log_mels = ref.reference_extract(paths, FeatureParams())
    seconds = time.perf_counter() - start
    peak = _peak_rss_mb()
    # Kept for the comparison with our features (after the timing).
    np.save(spec["out"], np.concatenate(log_mels).astype(np.float32))
    return {"seconds": seconds, "clips": len(paths), "peak_rss_mb": peak}


def task_extract_ours(spec: dict) -> dict:
    from .features import extract_logmels

    start = time.perf_counter()
    extract_logmels(spec["paths"], cache_dir=spec["cache_dir"], progress=False)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "clips": len(spec["paths"]), "peak_rss_mb": _peak_rss_mb()}


def task_read_cached(spec: dict) -> dict:
    from .features import extract_logmels

    start = time.perf_counter()
    logmels = extract_logmels(spec["paths"], cache_dir=spec["cache_dir"], progress=False)
    total = sum(float(np.sum(clip, dtype=np.float64)) for clip in logmels)  # read every frame
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "checksum": total, "peak_rss_mb": _peak_rss_mb()}


def _round_rates(produce, n_batches: int, start: int, n_total: int):
    """Windows per second of ``n_batches`` calls of ``produce(index)``, from ``start``."""
    windows = 0
    begin = time.perf_counter()
    for i in range(n_batches):
        windows += len(produce((start + i) % n_total))
    return windows / (time.perf_counter() - begin)


def _drainer():
    """A compiled loop that pulls batches from an iterator, as ``fit``'s train step does."""
    import tensorflow as tf

    @tf.function
    def drain(iterator, n_batches):
        total = tf.constant(0.0)
        for _ in tf.range(n_batches):
            batch = next(iterator)
            x = batch[0] if isinstance(batch, tuple) else batch
            total += tf.cast(tf.reshape(x, [-1])[0], tf.float32)  # use the batch
        return total

    return drain


def _fed_rate(drain, dataset, n_batches: int, batch: int, warm: int = 2) -> float:
    """Windows per second pulled from a fresh pass over ``dataset`` (after ``warm`` batches)."""
    import gc

    import tensorflow as tf

    iterator = iter(dataset)
    drain(iterator, tf.constant(warm))
    begin = time.perf_counter()
    drain(iterator, tf.constant(n_batches))
    seconds = time.perf_counter() - begin
    del iterator  # stops the pass's prefetching threads before anything else is timed
    gc.collect()
    return n_batches * batch / seconds


def task_input(spec: dict) -> dict:
    """Throughput of the training batches: ours against the reference generator.

    Two measurements. *Fed*: the batches as ``fit`` receives them, pulled by a
    compiled loop: ours from :meth:`WindowDataset.as_tf_dataset` (whole epochs, so every
    block read counts), the reference's generator through Keras's ``PyDataset`` feed.
    *NumPy*: the batches alone, ``dataset[i]`` against ``generator[i]``.
    """
    from .features import Scaler
    from .training import WindowDataset

    ref = load_reference()
    kind, batch, hop, k = spec["kind"], spec["batch"], spec["hop"], spec["batches"]
    logmels = _logmels(spec)
    scaler = Scaler.fit(logmels) if kind == "cnn" else None
    common = dict(kind=kind, hop=hop, batch_size=batch, shuffle=True, scaler=scaler)
    ours = WindowDataset(logmels, **common)
    n_ours = len(ours)
    fed_ours = WindowDataset(logmels, **common).as_tf_dataset()
    drain = _drainer()
    whole = max(1, n_ours - 2)  # a whole epoch after the 2 warm-up batches
    _fed_rate(drain, fed_ours, whole, batch)  # warm up: traces, first reads
    _round_rates(lambda i: ours[i][0], 3, 0, n_ours)
    ours_rss = _peak_rss_mb()
    stacked = ref.stack_clips(list(logmels), scaler)
    reference = ref.ReferenceGenerator(stacked, kind, batch, hop=hop, shuffle=True)
    n_ref = len(reference)
    fed_ref = ref.keras_feed(reference)
    _fed_rate(drain, fed_ref, min(k, n_ref - 2), batch)
    _round_rates(lambda i: reference[i][0], 3, 0, n_ref)
    # Our batches fed the way the reference's are, to show what the tf.data feed gains.
    ours_as_pydataset = ref.keras_feed(ours)
    # Rounds of ours and of the reference alternate, so that a burst of load on the
    # machine slows both.
    rates = {"ours": [], "ref": [], "fed_ours": [], "fed_ref": [], "fed_ours_pydataset": []}
    for r in range(spec["rounds"]):
        rates["ours"].append(_round_rates(lambda i: ours[i][0], k, 3 + r * k, n_ours))
        rates["ref"].append(_round_rates(lambda i: reference[i][0], k, 3 + r * k, n_ref))
    for _ in range(spec["rounds"]):
        rates["fed_ours"].append(_fed_rate(drain, fed_ours, whole, batch))
        rates["fed_ref"].append(_fed_rate(drain, fed_ref, min(k, n_ref - 2), batch))
        rates["fed_ours_pydataset"].append(
            _fed_rate(drain, ours_as_pydataset, min(k, n_ours - 2), batch)
        )
    result = {name: float(np.median(values)) for name, values in rates.items()}
    return {
        **result,
        "ours_ms_per_batch": 1e3 * batch / result["fed_ours"],
        "windows": int(len(ours.starts)),
        "blocks": len(ours._plan[1]),
        "peak_rss_ours_mb": ours_rss,
        "peak_rss_mb": _peak_rss_mb(),
        "stacked_bytes": int(stacked.nbytes),
    }


def _compiled_model(kind: str):
    import keras

    from . import models, profiles

    profiles.set_seed(0)
    model = models.build_model(kind)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=False)
    return model


class _StepTimer:
    def __init__(self):
        import keras

        class Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []

            def on_train_batch_begin(self, batch, logs=None):
                self._start = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                self.times.append(time.perf_counter() - self._start)

        self.callback = Timer()

    @property
    def median_ms(self) -> float:
        times = self.callback.times[2:] or self.callback.times
        return 1e3 * float(np.median(times)) if times else float("nan")


def task_train(spec: dict) -> dict:
    """Train a few steps on all training clips, as the pipeline does; report peak RSS.

    Then a few more steps on one batch held in memory: the model alone, with no input
    pipeline, to compare the step time with.
    """
    import tensorflow as tf

    from .features import Scaler
    from .training import paper_config, training_windows

    kind, batch, hop = spec["kind"], spec["batch"], spec["hop"]
    before = _rss_mb()
    logmels = _logmels(spec)
    scaler = Scaler.fit(logmels) if kind == "cnn" else None  # reads every frame once
    config = paper_config(kind, batch_size=batch)
    train, val = training_windows(logmels, kind, config, hop=hop, scaler=scaler)
    model = _compiled_model(kind)
    fed = _StepTimer()
    model.fit(
        train.as_tf_dataset(),
        validation_data=val.as_tf_dataset(),
        steps_per_epoch=min(spec["steps"], len(train)),
        validation_steps=min(spec["val_steps"], len(val)),
        epochs=1,
        verbose=0,
        callbacks=[fed.callback],
        shuffle=False,
    )
    peak = _peak_rss_mb()
    x = train[0][0]
    in_memory = _StepTimer()
    model.fit(
        tf.data.Dataset.from_tensors((x, x)).repeat(),
        steps_per_epoch=spec["memory_steps"],
        epochs=1,
        verbose=0,
        callbacks=[in_memory.callback],
        shuffle=False,
    )
    gpus = tf.config.list_physical_devices("GPU")
    device = (
        tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        if gpus
        else "CPU"
    )
    return {
        "peak_rss_mb": peak,
        "device": device,
        "rss_before_data_mb": before,
        "frames_bytes": int(logmels.frames.nbytes),
        "windows": int(len(train.starts)),
        "step_ms": fed.median_ms,
        "memory_step_ms": in_memory.median_ms,
        "steps": len(fed.callback.times),
        "val_steps": min(spec["val_steps"], len(val)),
        "clips": len(logmels),
    }


def _materialised_bytes(n_frames: np.ndarray, kind: str, hop: int) -> int:
    """Bytes of every vector (Dense) or patch (CNN) of clips of these lengths, float64."""
    width = WINDOW_FRAMES[kind]
    n_windows = np.maximum(0, (np.asarray(n_frames) - width) // hop + 1)
    return int(n_windows.sum()) * width * 128 * 8


def task_train_reference(spec: dict) -> dict:
    """The reference's training memory: every vector / patch materialised, on a subset."""
    from .features import Scaler

    ref = load_reference()
    kind, batch, hop = spec["kind"], spec["batch"], spec["hop"]
    logmels = _logmels(spec)
    log_mels = [np.array(logmels.clip(i)) for i in range(spec["n_clips"])]
    del logmels
    if kind == "dense":
        x = ref.reference_dense_vectors(log_mels)[::hop]
    else:
        scaler = Scaler.fit(log_mels)
        x = ref.materialise_patches([scaler.transform(lm) for lm in log_mels], 32, hop)[..., None]
    model = _compiled_model(kind)
    timer = _StepTimer()
    steps = max(1, min(spec["steps"], len(x) // batch))
    model.fit(
        x[: steps * batch],
        x[: steps * batch],
        batch_size=batch,
        epochs=1,
        verbose=0,
        callbacks=[timer.callback],
        shuffle=True,
    )
    return {
        "peak_rss_mb": _peak_rss_mb(),
        "array_bytes": int(x.nbytes),
        "clips": len(log_mels),
        "step_ms": timer.median_ms,
    }


def task_score(spec: dict) -> dict:
    """Clips per second scored on the CPU: batched across clips against per-clip predict."""
    from . import metrics
    from .features import Scaler

    ref = load_reference()
    kind, hop = spec["kind"], spec["hop"]
    train = _logmels(spec, "train_paths") if kind == "cnn" else None
    scaler = Scaler.fit(train) if kind == "cnn" else None
    logmels = _logmels(spec)
    model = _compiled_model(kind)
    batch = spec["batch"]
    metrics.score_clips(model, logmels.subset([0]), kind, hop, batch, scaler)  # warm up
    start = time.perf_counter()
    ours = metrics.score_clips(model, logmels, kind, hop, batch, scaler)
    ours_seconds = time.perf_counter() - start
    ours_rss = _peak_rss_mb()
    log_mels = [np.array(clip) for clip in logmels]
    ref.reference_scores(model, log_mels[:1], kind, hop=hop, scaler=scaler)  # warm up
    start = time.perf_counter()
    reference = ref.reference_scores(model, log_mels, kind, hop=hop, scaler=scaler)
    ref_seconds = time.perf_counter() - start
    diff = float(np.max(np.abs(ours - reference) / np.maximum(np.abs(reference), 1e-12)))
    return {
        "ours": len(log_mels) / ours_seconds,
        "reference": len(log_mels) / ref_seconds,
        "max_rel_diff": diff,
        "peak_rss_ours_mb": ours_rss,
        "peak_rss_mb": _peak_rss_mb(),
        "clips": len(log_mels),
    }


TASKS = {
    "extract_reference": task_extract_reference,
    "extract_ours": task_extract_ours,
    "read_cached": task_read_cached,
    "input": task_input,
    "train": task_train,
    "train_reference": task_train_reference,
    "score": task_score,
}


class _TreeSampler:
    """Peak RSS of a process and its descendants, sampled every 50 ms."""

    def __init__(self, pid: int):
        import psutil

        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.process, *self.process.children(recursive=True)]
                total = 0
                for proc in procs:
                    with contextlib.suppress(psutil.Error):
                        total += proc.memory_info().rss
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            self._stop.wait(0.05)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


def run_task(name: str, spec: dict, work: Path, isolate: bool = True) -> dict:
    """Run one measurement in a fresh Python process (or this one); return its result."""
    work.mkdir(parents=True, exist_ok=True)
    if not isolate:  # for tests: the memory figures then mean little
        result = TASKS[name](spec)
        result["tree_peak_rss_mb"] = result.get("peak_rss_mb")
        return result
    spec_file = work / f"{name}-{os.getpid()}-{time.monotonic_ns()}.json"
    result_file = spec_file.with_suffix(".result.json")
    spec_file.write_text(json.dumps(spec))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "aadlib.bench",
        "--child",
        name,
        str(spec_file),
        str(result_file),
    ]
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    sampler = _TreeSampler(proc.pid)
    output, _ = proc.communicate()
    tree_peak = sampler.stop()
    if proc.returncode != 0 or not result_file.exists():
        raise RuntimeError(
            f"benchmark task {name} failed (exit {proc.returncode}):\n{output[-4000:]}"
        )
    result = json.loads(result_file.read_text())
    result["tree_peak_rss_mb"] = tree_peak
    spec_file.unlink(missing_ok=True)
    result_file.unlink(missing_ok=True)
    return result


def _child(argv) -> int:
    name, spec_file, result_file = argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    spec = json.loads(Path(spec_file).read_text())
    result = TASKS[name](spec)
    Path(result_file).write_text(json.dumps(result))
    return 0


# --------------------------------------------------------------------------------------
# The book
# --------------------------------------------------------------------------------------


def time_book(work: Path, timeout: int = 3600) -> list[dict]:
    """Time a cold build of the book and the rebuild after it; [] when there is no book."""
    if not (ROOT / "_config.yml").exists() or not (ROOT / "_toc.yml").exists():
        return []
    jupyter_book = shutil.which("jupyter-book", path=str(Path(sys.executable).parent))
    jupyter_book = jupyter_book or shutil.which("jupyter-book")
    if jupyter_book is None:
        return [{"what": "book", "note": "skipped: jupyter-book is not installed"}]
    book = work / "book-copy"
    shutil.rmtree(book, ignore_errors=True)
    book.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, book / name)
    for folder in ("book", "notebooks"):
        shutil.copytree(
            ROOT / folder,
            book / folder,
            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "_build"),
        )
    env = {
        **os.environ,
        "AADLIB_PROFILE": "quick",
        "AADLIB_HOME": str(work / "book-home"),
        "MPLBACKEND": "agg",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    for name in ("AADLIB_DATA_ROOT", "AADLIB_RESULTS"):
        env.pop(name, None)
    command = [jupyter_book, "build", str(book), "--path-output", str(work / "book-out")]
    runs = []
    for label in ("cold build", "cached rebuild"):
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        seconds = time.perf_counter() - start
        runs.append(
            {
                "what": f"book: {label}",
                "seconds": seconds,
                "ok": done.returncode == 0,
                "log": (done.stdout + done.stderr)[-2000:],
            }
        )
    return runs


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import psutil

    memory = psutil.virtual_memory().total / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, {platform.system()}"


def _row(
    what,
    unit,
    ours,
    reference,
    ratio=None,
    rss_ours=None,
    rss_ref=None,
    target="",
    met=None,
    note="",
):
    if ratio is None and isinstance(ours, int | float) and isinstance(reference, int | float):
        ratio = ours / reference if reference else float("nan")
    return {
        "what": what,
        "unit": unit,
        "ours": ours,
        "reference": reference,
        "ratio": ratio,
        "peak_rss_ours_mb": rss_ours,
        "peak_rss_reference_mb": rss_ref,
        "target": target,
        "met": "" if met is None else ("yes" if met else "NO"),
        "note": note,
    }


_STARTED = time.perf_counter()


def _say(message: str, clock: bool = True) -> None:
    if clock and message:
        message = f"[{time.perf_counter() - _STARTED:6.0f} s] {message}"
    print(message, flush=True)


def _attempt(label: str, rows: list[dict], measure) -> dict | None:
    """Run one measurement; on failure add a row saying so and go on with the others."""
    try:
        return measure()
    except Exception as err:  # noqa: BLE001 - a failed figure must not lose the others
        _say(f"{label}: FAILED: {err}")
        message = str(err).strip().splitlines()
        rows.append(
            _row(
                label,
                "",
                None,
                None,
                ratio="",
                met=False,
                note="FAILED: " + (message[-1] if message else repr(err)),
            )
        )
        return None


def bench_machine_type(
    root: Path, machine_type: str, work: Path, settings: BenchSettings, profile
) -> list[dict]:
    """Every measurement for one machine type; the rows of the table."""
    from . import data
    from .features import extract_logmels

    table = data.check_machine_type(root, machine_type)
    train = table[(table.split == "train") & (table.label == "normal")]
    test = table[table.split == "test"]
    paths = [str(p) for p in train.path]
    cache = work / "cache" / machine_type
    shutil.rmtree(cache, ignore_errors=True)
    rows: list[dict] = []
    tag = machine_type
    isolate = settings.isolate

    # 1. Feature extraction: reference (one process) against ours (every core, cold).
    ref_paths = paths if settings.ref_clips is None else paths[: int(settings.ref_clips)]
    _say(f"[{tag}] reference feature extraction over {len(ref_paths)} clips (one process)")
    ref_features = work / f"{machine_type}-reference-features.npy"
    spec = {"paths": ref_paths, "out": str(ref_features)}
    ref = run_task("extract_reference", spec, work, isolate)
    _say(f"[{tag}] our feature extraction over {len(paths)} clips (every core, no cache)")
    ours = run_task("extract_ours", {"paths": paths, "cache_dir": str(cache)}, work, isolate)
    ours_rate, ref_rate = ours["clips"] / ours["seconds"], ref["clips"] / ref["seconds"]
    rows.append(
        _row(
            f"{tag}: feature extraction, {len(paths)} training clips",
            "clips/s",
            ours_rate,
            ref_rate,
            rss_ours=max(ours["peak_rss_mb"], ours["tree_peak_rss_mb"]),
            rss_ref=ref["peak_rss_mb"],
            target=">= 1.7x",
            met=ours_rate / ref_rate >= 1.7,
            note=f"ours {ours['seconds']:.1f} s with {os.cpu_count()} workers (RSS: process and "
            f"workers); reference {ref['seconds']:.1f} s for {ref['clips']} clips, one process",
        )
    )
    mine = extract_logmels(paths, cache_dir=cache, progress=False)
    theirs = np.load(ref_features, mmap_mode="r")
    diff = 0.0
    for start in range(0, len(theirs), 65536):
        stop = min(start + 65536, len(theirs))
        chunk = np.asarray(mine.frames[start:stop]) - theirs[start:stop]
        diff = max(diff, float(np.max(np.abs(chunk))))
    mine.release_memory()
    del theirs, mine
    ref_features.unlink(missing_ok=True)
    rows.append(
        _row(
            f"{tag}: features, max abs difference",
            "dB",
            diff,
            0.0,
            ratio="",
            target="< 1e-3",
            met=diff < 1e-3,
            note=f"over the {ref['clips']} clips both extracted",
        )
    )

    # 2. The second run reads the cache.
    _say(f"[{tag}] second run: features from the cache")
    cached = run_task("read_cached", {"paths": paths, "cache_dir": str(cache)}, work, isolate)
    speedup = ours["seconds"] / cached["seconds"]
    rows.append(
        _row(
            f"{tag}: features, second run (cache)",
            "s",
            cached["seconds"],
            ours["seconds"],
            ratio=speedup,
            rss_ours=cached["peak_rss_mb"],
            target=">= 20x",
            met=speedup >= 20,
            note="reference column: extracting again (ours, cold); the cached run reads every "
            "frame",
        )
    )
    lengths = extract_logmels(paths, cache_dir=cache, progress=False).lengths

    for kind in ("dense", "cnn"):
        geometry = _kind(kind, settings)
        batch = geometry["batch"]

        # 3. Training input pipeline.
        def measure_input(kind=kind, geometry=geometry):
            _say(f"[{tag}] {kind} input pipeline: WindowDataset against the Python-loop generator")
            spec = {
                "paths": paths,
                "cache_dir": str(cache),
                "kind": kind,
                **geometry,
                "rounds": settings.input_rounds,
                "batches": settings.input_batches[kind],
            }
            return run_task("input", spec, work, isolate)

        label = f"{tag}: {kind} input pipeline"
        result = _attempt(label, rows, measure_input)
        input_ms = float("nan")
        if result is not None:
            ratio = result["fed_ours"] / result["fed_ref"]
            input_ms = result["ours_ms_per_batch"]
            rows.append(
                _row(
                    f"{label}, as fit receives it ({result['windows']} windows)",
                    "windows/s",
                    result["fed_ours"],
                    result["fed_ref"],
                    rss_ours=result["peak_rss_ours_mb"],
                    rss_ref=result["peak_rss_mb"],
                    target=">= 5x",
                    met=ratio >= 5,
                    note=f"pulled by a compiled loop, as fit's train step pulls them: ours "
                    f"WindowDataset.as_tf_dataset(), whole epochs ({result['blocks']} blocks, "
                    f"{input_ms:.2f} ms per batch of {batch}); reference: the generator as Keras "
                    f"feeds a PyDataset (tf.data from_generator, prefetched), which gives our "
                    f"batches {result['fed_ours_pydataset']:,.0f} windows/s; median of "
                    f"{settings.input_rounds} alternating rounds; reference RSS includes its "
                    f"stacked float64 clips ({result['stacked_bytes'] / 2**30:.2f} GiB)",
                )
            )
            rows.append(
                _row(
                    f"{tag}: {kind} input, NumPy batches",
                    "windows/s",
                    result["ours"],
                    result["ref"],
                    note="dataset[i] against generator[i], before either reaches TensorFlow: "
                    "a copy of random windows, bound by memory bandwidth (ours float32, the "
                    "reference float64, one window at a time)",
                )
            )

        # 4. Training memory, ours and the reference's.
        def measure_training(kind=kind, geometry=geometry):
            _say(f"[{tag}] {kind} training, {settings.train_steps[kind]} steps: peak RSS")
            spec = {
                "paths": paths,
                "cache_dir": str(cache),
                "kind": kind,
                **geometry,
                "steps": settings.train_steps[kind],
                "val_steps": settings.val_steps[kind],
                "memory_steps": settings.memory_steps[kind],
            }
            mem = run_task("train", spec, work, isolate)
            n_sub = min(settings.ref_mem_clips[kind], len(paths))
            _say(f"[{tag}] {kind} reference training on {n_sub} clips, materialised: peak RSS")
            spec = {
                "paths": paths,
                "n_clips": n_sub,
                "cache_dir": str(cache),
                "kind": kind,
                **geometry,
                "steps": settings.ref_train_steps[kind],
            }
            return mem, run_task("train_reference", spec, work, isolate)

        label = f"{tag}: {kind} training, peak RSS"
        result = _attempt(label, rows, measure_training)
        if result is not None:
            mem, ref_mem = result
            full_bytes = _materialised_bytes(lengths, kind, geometry["hop"])
            extrapolated = ref_mem["peak_rss_mb"] + (full_bytes - ref_mem["array_bytes"]) / 2**20
            what = "vectors" if kind == "dense" else "patches"
            rows.append(
                _row(
                    f"{label} ({mem['clips']} clips)",
                    "MB",
                    mem["peak_rss_mb"],
                    extrapolated,
                    ratio=extrapolated / mem["peak_rss_mb"],
                    rss_ours=mem["peak_rss_mb"],
                    rss_ref=extrapolated,
                    target="< 1536 MB",
                    met=mem["peak_rss_mb"] < 1536,
                    note=f"ours measured over {mem['steps']} steps and {mem['val_steps']} "
                    f"validation steps ({mem['frames_bytes'] / 2**20:.0f} MiB of frames mapped); "
                    f"reference: all {what} as float64 take {full_bytes / 2**30:.2f} GiB "
                    f"(computed); it measured {ref_mem['peak_rss_mb']:.0f} MB holding those of "
                    f"{ref_mem['clips']} clips, extrapolated by adding the other clips' bytes",
                )
            )
            step, alone = mem["step_ms"], mem["memory_step_ms"]
            rows.append(
                _row(
                    f"{tag}: {kind} input time / training step ({mem['device']})",
                    "ms",
                    input_ms,
                    alone,
                    ratio=alone / input_ms,
                    target="input << step",
                    met=input_ms < 0.1 * alone,
                    note=f"one batch from the input pipeline against one training step on one "
                    f"batch held in memory ({100 * input_ms / alone:.2f} % of it); the step fed "
                    f"by the pipeline took {step:.2f} ms ({step / alone:.2f}x); the input stays "
                    f"off the critical path while a step takes more than {input_ms:.2f} ms",
                )
            )

    # 5. Scoring.
    for kind in ("dense", "cnn"):
        n_score = min(settings.score_clips[kind], len(test))
        score_hop = profile.dense_score_hop if kind == "dense" else profile.cnn_score_hop

        def measure_scoring(kind=kind, n_score=n_score, score_hop=score_hop):
            picks = np.linspace(0, len(test) - 1, n_score).round().astype(int)
            test_paths = [str(test.path.iloc[i]) for i in picks]
            _say(f"[{tag}] {kind} scoring of {n_score} test clips")
            spec = {
                "paths": test_paths,
                "train_paths": paths,
                "cache_dir": str(cache),
                "kind": kind,
                "hop": score_hop,
                "batch": SCORE_BATCH[kind],
            }
            return run_task("score", spec, work, isolate)

        label = f"{tag}: {kind} scoring ({n_score} test clips, hop {score_hop})"
        result = _attempt(label, rows, measure_scoring)
        if result is not None:
            rows.append(
                _row(
                    label,
                    "clips/s",
                    result["ours"],
                    result["reference"],
                    rss_ours=result["peak_rss_ours_mb"],
                    rss_ref=result["peak_rss_mb"],
                    note=f"batched across clips ({SCORE_BATCH[kind]} windows a batch) vs "
                    f"model.predict per clip; scores differ by at "
                    f"most {result['max_rel_diff']:.1e} (relative); untrained model",
                )
            )
    return rows


def _kind(kind: str, settings) -> dict:
    return {"batch": settings.batch[kind], "hop": PAPER_HOP[kind]}


def _format_value(value) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.2g}"
    return str(value)


def format_table(rows: list[dict]) -> str:
    """The table as fixed-width text: what, unit, ours, reference, ratio, peak RSS, target."""
    shown = [c for c in COLUMNS if c != "note"]
    heads = {"peak_rss_ours_mb": "RSS ours MB", "peak_rss_reference_mb": "RSS ref MB"}
    cells = [[heads.get(c, c) for c in shown]]
    for row in rows:
        values = []
        for column in shown:
            value = row.get(column)
            text = _format_value(value)
            if column == "ratio" and text and text != "nan":
                text += "x"
            values.append(text)
        cells.append(values)
    widths = [max(len(r[i]) for r in cells) for i in range(len(shown))]
    lines = []
    for n, values in enumerate(cells):
        line = "  ".join(
            v.ljust(w) if i in (0, 1, 7, 8) else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths))
        )
        lines.append(line.rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_table(rows: list[dict], path: Path) -> Path:
    import pandas as pd

    from ._io import write_csv

    return write_csv(pd.DataFrame(rows, columns=COLUMNS), path)


def main(args) -> int:
    """Run the benchmark; print the table and write it as CSV. Returns an exit status."""
    from . import pipeline, profiles

    profile = profiles.get_profile(getattr(args, "profile", None) or "full-synthetic")
    settings = BenchSettings(args)
    types = list(getattr(args, "types", None) or ["ToyCar"])
    results = Path(getattr(args, "results", None) or profiles.results_root(profile))
    out = Path(getattr(args, "out", None) or results / "bench.csv")
    root = getattr(args, "data_root", None)
    root = Path(root) if root else profiles.data_root(profile)
    global _STARTED
    started = _STARTED = time.perf_counter()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    _say(f"aadlib bench: profile {profile.name}, types {', '.join(types)}, data {root}")
    _say(f"machine: {_machine()}; {profiles.describe_device()}")
    if settings.prepare:
        start = time.perf_counter()
        root = pipeline.prepare_data(profile, root, types, progress=sys.stdout.isatty())
        _say(f"data ready in {time.perf_counter() - start:.0f} s")
    work = Path(getattr(args, "work", None) or tempfile.mkdtemp(prefix="aadlib-bench-"))
    rows: list[dict] = []
    try:
        for machine_type in types:
            rows += bench_machine_type(root, machine_type, work, settings, profile)
        book, skipped = [], "skipped (--skip-book)"
        if not getattr(args, "skip_book", False):
            _say("book: cold build, then a rebuild (jupyter-book, quick profile)")
            book = time_book(work)
            skipped = "skipped: no _config.yml in the repository"
        if not book:
            what = "book: cold build / cached rebuild"
            rows.append(_row(what, "s", None, None, ratio="", note=skipped))
        for run in book:
            if "seconds" not in run:
                rows.append(_row(run["what"], "s", None, None, ratio="", note=run["note"]))
                continue
            note = (
                "fresh copy, execution cache and AADLIB_HOME"
                if "cold" in run["what"]
                else "nothing changed: notebooks come from the execution cache"
            )
            if not run["ok"]:
                note = "FAILED: " + run["log"][-300:].replace("\n", " ")
            rows.append(_row(run["what"], "s", run["seconds"], None, ratio="", note=note))
        if len(book) == 2 and "seconds" in book[1]:
            rows[-1]["ratio"] = book[0]["seconds"] / book[1]["seconds"]
            rows[-1]["note"] += " (ratio: the cold build's time over this one)"
    finally:
        if getattr(args, "work", None) is None:
            shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
    write_table(rows, out)
    _say("")
    _say(format_table(rows), clock=False)
    _say("")
    for row in rows:
        if row["note"]:
            _say(f"- {row['what']}: {row['note']}", clock=False)
    minutes = (time.perf_counter() - started) / 60
    if load_before is not None:
        _say(
            f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
            f"{minutes:.1f} min in all"
        )
    _say(f"wrote {out}")
    missed = [r["what"] for r in rows if r["met"] == "NO"]
    if missed:
        _say("targets missed: " + "; ".join(missed))
    return 1 if any(str(r["note"]).startswith("FAILED") for r in rows) else 0


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m aadlib.bench`` (those of ``aadlib bench`` and more)."""
    from . import profiles

    parser = argparse.ArgumentParser(
        prog="python -m aadlib.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile", choices=list(profiles.PROFILES), default="full-synthetic")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--types", nargs="+", default=["ToyCar"], metavar="TYPE")
    parser.add_argument("--out", type=Path, default=None, help="CSV file for the table")
    parser.add_argument("--skip-book", action="store_true")
    parser.add_argument(
        "--no-prepare",
        dest="prepare",
        action="store_false",
        default=None,
        help="use the data root as it is (do not generate or download)",
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="keep the feature caches etc. in this folder"
    )
    parser.add_argument(
        "--ref-clips",
        type=int,
        default=None,
        help="clips the reference extracts (default: all training clips)",
    )
    parser.add_argument("--input-rounds", type=int, default=None)
    parser.add_argument("--input-batches", type=int, default=None, help="batches per round")
    parser.add_argument(
        "--train-steps",
        type=int,
        default=None,
        help="training steps per model for the memory figure",
    )
    parser.add_argument("--val-steps", type=int, default=None)
    parser.add_argument(
        "--ref-mem-clips", type=int, default=None, help="clips the reference training materialises"
    )
    parser.add_argument("--ref-train-steps", type=int, default=None)
    parser.add_argument(
        "--memory-steps",
        type=int,
        default=None,
        help="training steps on one batch held in memory (the model alone)",
    )
    parser.add_argument("--score-clips", type=int, default=None, help="test clips scored")
    parser.add_argument(
        "--in-process",
        dest="isolate",
        action="store_false",
        default=None,
        help="run every measurement in this process (quick check; the memory "
        "figures then mean little)",
    )
    return parser


def _cli(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child(argv[1:])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return main(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(_cli())
