"""The benchmark's measurements: each one a task that runs in a fresh Python process.

A task takes a plain dict (paths, folders, the kind's geometry, how much work to do) and
returns a plain dict of numbers; :class:`Runner` runs it in a child process started as
``python benchmarks/measure.py --child NAME SPEC_FILE RESULT_FILE``, so that its peak
resident memory (``VmHWM`` on Linux) is its own. Turning the numbers into rows of the
table is :mod:`report`'s job; choosing what to measure is :mod:`bench`'s.

Every task reads the library's public API, and the reference from
``reference_pipeline.py`` beside this file.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import reference_pipeline as ref

from aadlib import paper
from aadlib.features import FeatureParams, Scaler, extract_logmels

__all__ = [
    "TASKS",
    "Runner",
    "peak_rss_mb",
    "feature_difference",
    "materialised_bytes",
    "child_main",
]


# --------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
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


def rss_mb() -> float:
    """Resident memory of this process now, in MiB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def materialised_bytes(n_frames, window_frames: int, hop: int) -> int:
    """Bytes of every window (vector or patch) of clips of these lengths, as ``float64``."""
    n_windows = np.maximum(0, (np.asarray(n_frames) - window_frames) // hop + 1)
    return int(n_windows.sum()) * window_frames * paper.N_MELS * 8


def feature_difference(paths, cache_dir, reference_file) -> float:
    """Largest absolute difference (dB) between our cached features and the reference's.

    ``reference_file`` holds the reference's frames of the first clips of ``paths``, one
    after the other (what :func:`task_extract_reference` saves); it is read in chunks.
    """
    ours = extract_logmels(paths, cache_dir=cache_dir, progress=False)
    theirs = np.load(reference_file, mmap_mode="r")
    diff = 0.0
    for start in range(0, len(theirs), 65536):
        stop = min(start + 65536, len(theirs))
        chunk = np.asarray(ours.frames[start:stop]) - theirs[start:stop]
        diff = max(diff, float(np.max(np.abs(chunk))))
    ours.release_memory()
    return diff


# --------------------------------------------------------------------------------------
# Feature extraction
# --------------------------------------------------------------------------------------


def _logmels(spec: dict, key: str = "paths"):
    return extract_logmels(spec[key], cache_dir=spec["cache_dir"], progress=False)


def _scaler(spec: dict, logmels):
    """The scaler fitted on every frame when the kind reads normalised frames, else None."""
    return Scaler.fit(logmels) if spec["normalise"] else None


def task_extract_reference(spec: dict) -> dict:
    """The reference's extraction, one clip after another in this process, no cache."""
    paths = spec["paths"]
    start = time.perf_counter()
    log_mels = ref.reference_extract(paths, FeatureParams())
    seconds = time.perf_counter() - start
    peak = peak_rss_mb()
    # Kept for the comparison with our features (after the timing).
    np.save(spec["out"], np.concatenate(log_mels).astype(np.float32))
    return {"seconds": seconds, "clips": len(paths), "peak_rss_mb": peak}


def task_extract_ours(spec: dict) -> dict:
    """Our extraction into the (empty) cache, every core."""
    start = time.perf_counter()
    extract_logmels(spec["paths"], cache_dir=spec["cache_dir"], progress=False)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "clips": len(spec["paths"]), "peak_rss_mb": peak_rss_mb()}


def task_read_cached(spec: dict) -> dict:
    """The second run: the features from the cache, every frame read."""
    start = time.perf_counter()
    logmels = _logmels(spec)
    total = sum(float(np.sum(clip, dtype=np.float64)) for clip in logmels)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "checksum": total, "peak_rss_mb": peak_rss_mb()}


# --------------------------------------------------------------------------------------
# Training input
# --------------------------------------------------------------------------------------


def _round_rate(produce, n_batches: int, start: int, n_total: int) -> float:
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

    Two measurements. *Fed*: the batches as ``fit`` receives them, pulled by a compiled
    loop: ours from :meth:`aadlib.batches.WindowBatches.as_tf_dataset` (whole epochs, so
    every block read counts), the reference's generator through Keras's ``PyDataset``
    feed. *NumPy*: the batches alone, ``batches.batch(i)`` against ``generator[i]``.
    """
    from aadlib.batches import WindowBatches

    kind, batch, hop, k = spec["kind"], spec["batch"], spec["hop"], spec["batches"]
    logmels = _logmels(spec)
    scaler = _scaler(spec, logmels)
    common = dict(kind=kind, hop=hop, batch_size=batch, shuffle=True, scaler=scaler)
    ours = WindowBatches(logmels, **common)
    n_ours = len(ours)
    fed_ours = WindowBatches(logmels, **common).as_tf_dataset()
    drain = _drainer()
    whole = max(1, n_ours - 2)  # a whole epoch after the 2 warm-up batches
    _fed_rate(drain, fed_ours, whole, batch)  # warm up: traces, first reads
    _round_rate(lambda i: ours.batch(i)[0], 3, 0, n_ours)
    ours_rss = peak_rss_mb()
    stacked = ref.stack_clips(list(logmels), scaler)
    reference = ref.ReferenceGenerator(stacked, kind, batch, hop=hop, shuffle=True)
    n_ref = len(reference)
    fed_ref = ref.keras_feed(reference)
    _fed_rate(drain, fed_ref, min(k, n_ref - 2), batch)
    _round_rate(lambda i: reference[i][0], 3, 0, n_ref)
    # Our batches fed the way the reference's are, to show what the tf.data feed gains.
    ours_as_pydataset = ref.keras_feed(ours)
    # Rounds of ours and of the reference alternate, so that a burst of load on the
    # machine slows both.
    rates = {"ours": [], "ref": [], "fed_ours": [], "fed_ref": [], "fed_ours_pydataset": []}
    for r in range(spec["rounds"]):
        rates["ours"].append(_round_rate(lambda i: ours.batch(i)[0], k, 3 + r * k, n_ours))
        rates["ref"].append(_round_rate(lambda i: reference[i][0], k, 3 + r * k, n_ref))
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
        "blocks": len(ours.plan().blocks),
        "peak_rss_ours_mb": ours_rss,
        "peak_rss_mb": peak_rss_mb(),
        "stacked_bytes": int(stacked.nbytes),
    }


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


def _compiled_model(kind: str):
    import keras

    from aadlib import models, profiles

    profiles.set_seed(0)
    model = models.build_model(kind)
    model.compile(
        optimizer=keras.optimizers.Adam(paper.LEARNING_RATE), loss="mse", jit_compile=False
    )
    return model


class _StepTimer:
    """A Keras callback's step times; :attr:`median_ms` leaves out the first two steps."""

    def __init__(self):
        import keras

        class Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []
                self.start = 0.0

            def on_train_batch_begin(self, batch, logs=None):
                self.start = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                self.times.append(time.perf_counter() - self.start)

        self.callback = Timer()

    @property
    def steps(self) -> int:
        return len(self.callback.times)

    @property
    def median_ms(self) -> float:
        times = self.callback.times[2:] or self.callback.times
        return 1e3 * float(np.median(times)) if times else float("nan")


def _device_name() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")


def task_train(spec: dict) -> dict:
    """Train a few steps on all training clips, as the pipeline does; report peak RSS.

    Then a few more steps on one batch held in memory: the model alone, with no input
    pipeline, to compare the step time with.
    """
    import tensorflow as tf

    from aadlib.training import paper_config, training_windows

    kind, batch, hop = spec["kind"], spec["batch"], spec["hop"]
    before = rss_mb()
    logmels = _logmels(spec)
    scaler = _scaler(spec, logmels)  # reads every frame once
    config = paper_config(kind, batch_size=batch)
    train, val = training_windows(logmels, kind, config, hop=hop, scaler=scaler)
    val_steps = min(spec["val_steps"], len(val)) if val is not None else 0
    model = _compiled_model(kind)
    fed = _StepTimer()
    model.fit(
        train.as_tf_dataset(),
        validation_data=val.as_tf_dataset() if val_steps else None,
        steps_per_epoch=min(spec["steps"], len(train)),
        validation_steps=val_steps or None,
        epochs=1,
        verbose=0,
        callbacks=[fed.callback],
        shuffle=False,
    )
    peak = peak_rss_mb()
    x = train.batch(0)[0]
    in_memory = _StepTimer()
    model.fit(
        tf.data.Dataset.from_tensors((x, x)).repeat(),
        steps_per_epoch=spec["memory_steps"],
        epochs=1,
        verbose=0,
        callbacks=[in_memory.callback],
        shuffle=False,
    )
    return {
        "peak_rss_mb": peak,
        "device": _device_name(),
        "rss_before_data_mb": before,
        "frames_bytes": int(logmels.frames.nbytes),
        "windows": int(len(train.starts)),
        "step_ms": fed.median_ms,
        "memory_step_ms": in_memory.median_ms,
        "steps": fed.steps,
        "val_steps": val_steps,
        "clips": len(logmels),
    }


def task_train_reference(spec: dict) -> dict:
    """The reference's training memory: every vector or patch materialised, on a subset."""
    kind, batch, hop = spec["kind"], spec["batch"], spec["hop"]
    model_spec = paper.model_spec(kind)
    logmels = _logmels(spec)
    log_mels = [np.array(logmels.clip(i)) for i in range(spec["n_clips"])]
    del logmels
    if spec["normalise"]:
        scaler = Scaler.fit(log_mels)
        log_mels = [scaler.transform(lm) for lm in log_mels]
    if model_spec.patches:
        x = ref.materialise_patches(log_mels, model_spec.window_frames, hop)[..., None]
    else:
        x = ref.reference_dense_vectors(log_mels, model_spec.window_frames)[::hop]
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
        "peak_rss_mb": peak_rss_mb(),
        "array_bytes": int(x.nbytes),
        "clips": len(log_mels),
        "step_ms": timer.median_ms,
    }


# --------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------


def task_score(spec: dict) -> dict:
    """Clips per second scored on the CPU: batched across clips against per-clip predict."""
    from aadlib.scoring import score_clips

    kind, hop, batch = spec["kind"], spec["hop"], spec["batch"]
    scaler = _scaler(spec, _logmels(spec, "train_paths")) if spec["normalise"] else None
    logmels = _logmels(spec)
    model = _compiled_model(kind)
    score_clips(model, logmels.subset([0]), kind, hop, batch, scaler)  # warm up
    start = time.perf_counter()
    ours = score_clips(model, logmels, kind, hop, batch, scaler)
    ours_seconds = time.perf_counter() - start
    ours_rss = peak_rss_mb()
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
        "peak_rss_mb": peak_rss_mb(),
        "clips": len(log_mels),
    }


#: The tasks by name, as :class:`Runner` and the child's command line name them.
TASKS = {
    "extract_reference": task_extract_reference,
    "extract_ours": task_extract_ours,
    "read_cached": task_read_cached,
    "input": task_input,
    "train": task_train,
    "train_reference": task_train_reference,
    "score": task_score,
}


# --------------------------------------------------------------------------------------
# Running a task in a child process
# --------------------------------------------------------------------------------------


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
                total = 0
                for proc in [self.process, *self.process.children(recursive=True)]:
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


@dataclass
class Runner:
    """Runs tasks, each in a fresh Python process (``isolate``) or in this one (tests).

    ``work`` holds the files that carry a task's spec and result.
    """

    work: Path
    isolate: bool = True

    def run(self, name: str, spec: dict) -> dict:
        """Run task ``name`` on ``spec``; its result, plus ``tree_peak_rss_mb``.

        ``tree_peak_rss_mb`` is the peak RSS of the child and its workers together,
        sampled (in this process: the task's own peak, which then means little).
        """
        if name not in TASKS:
            raise KeyError(f"no benchmark task {name!r}; tasks: {', '.join(TASKS)}")
        self.work.mkdir(parents=True, exist_ok=True)
        if not self.isolate:
            result = TASKS[name](spec)
            result["tree_peak_rss_mb"] = result.get("peak_rss_mb")
            return result
        spec_file = self.work / f"{name}-{os.getpid()}-{time.monotonic_ns()}.json"
        result_file = spec_file.with_suffix(".result.json")
        spec_file.write_text(json.dumps(spec))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
        script = str(Path(__file__).resolve())
        command = [sys.executable, script, "--child", name, str(spec_file), str(result_file)]
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        sampler = _TreeSampler(proc.pid)
        output, _ = proc.communicate()
        tree_peak = sampler.stop()
        try:
            if proc.returncode != 0 or not result_file.exists():
                raise RuntimeError(
                    f"benchmark task {name} failed (exit {proc.returncode}):\n{output[-4000:]}"
                )
            result = json.loads(result_file.read_text())
        finally:
            spec_file.unlink(missing_ok=True)
            result_file.unlink(missing_ok=True)
        result["tree_peak_rss_mb"] = tree_peak
        return result


def child_main(argv) -> int:
    """``--child NAME SPEC_FILE RESULT_FILE``: run one task, write its result as JSON."""
    if len(argv) != 4 or argv[0] != "--child":
        print(
            "usage: python benchmarks/measure.py --child NAME SPEC_FILE RESULT_FILE\n"
            "(started by benchmarks/bench.py; run that instead)",
            file=sys.stderr,
        )
        return 2
    _, name, spec_file, result_file = argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    result = TASKS[name](json.loads(Path(spec_file).read_text()))
    Path(result_file).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
