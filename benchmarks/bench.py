"""Speed and memory of the library's fast paths against the reference pipeline, in one run.

Run from the repository's root: ``make bench``, or ``python benchmarks/bench.py --help``
for the options (the profile, the machine types, and the size of each measurement).

Every figure compares the library with the reference implementation of
``benchmarks/reference_pipeline.py`` (the authors' way: ``librosa.load`` and
``librosa.feature.melspectrogram`` per file, every vector or patch materialised, a
Python-loop batch generator, ``model.predict`` per test clip), measured in the same run
on the same machine. Each measurement runs in a fresh Python process
(``benchmarks/measure.py``), so its peak resident memory (RSS: ``VmHWM`` on Linux) is its
own; the extraction figure counts any worker processes too (sampled every 50 ms).
``benchmarks/report.py`` makes the rows.

Rows of the table (and of the CSV file):

- **feature extraction**: clips per second over a machine type's training clips, every
  core (ours, cold: no cache) against one process (reference); the largest difference
  between the two sets of features in dB.
- **cached features**: the second run reads the feature cache (and every frame of it)
  instead of extracting again.
- **Dense / CNN input pipeline**: windows per second of the training batches as ``fit``
  receives them, shuffled, over all training clips: ours from
  ``aadlib.batches.WindowBatches.as_tf_dataset``, the reference generator through
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
  (``aadlib.scoring.score_clips``) against ``model.predict`` per clip, and the largest
  relative difference between the two sets of scores.
- **book**: wall time of a cold ``jupyter-book build`` (a fresh copy of the book, a
  fresh execution cache and a fresh ``AADLIB_HOME``, quick profile) and of the rebuild
  that follows (nothing changed: every notebook comes from the execution cache).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import measure
import numpy as np
import report

from aadlib import paper, profiles
from aadlib.data import type_clips
from aadlib.features import extract_logmels

__all__ = ["Settings", "KindSetup", "Bench", "main", "build_parser", "run"]


# --------------------------------------------------------------------------------------
# What to measure, and how much
# --------------------------------------------------------------------------------------


#: The model kinds measured: the two that the authors' reference pipeline implements.
KINDS = ("dense", "cnn")


def _per_kind(**values: int):
    return field(default_factory=lambda: dict(values))


@dataclass
class Settings:
    """How much work each measurement does.

    The defaults take about 8 minutes of measurements on a 2-core CPU for ToyCar at full
    size (plus the book's cold build, about 11 minutes). The per-kind settings are dicts
    keyed by model kind; :meth:`from_args` takes one number for every kind too.
    """

    #: Clips the reference extracts (None: all training clips).
    ref_clips: int | None = None
    #: Alternating rounds of the input pipeline measurement.
    input_rounds: int = 7
    #: Reference batches per round.
    input_batches: dict = _per_kind(dense=40, cnn=60)
    #: Training steps for the memory figure, and validation steps.
    train_steps: dict = _per_kind(dense=250, cnn=12)
    val_steps: dict = _per_kind(dense=20, cnn=4)
    #: Clips whose windows the reference's training holds, and its steps.
    ref_mem_clips: dict = _per_kind(dense=400, cnn=120)
    ref_train_steps: dict = _per_kind(dense=20, cnn=3)
    #: Training steps on one batch held in memory (the model alone).
    memory_steps: dict = _per_kind(dense=40, cnn=5)
    #: Test clips scored by each method.
    score_clips: dict = _per_kind(dense=200, cnn=24)
    #: Training batch sizes (default: the paper's).
    batch: dict = field(
        default_factory=lambda: {kind: paper.MODELS[kind].batch_size for kind in KINDS}
    )
    #: Generate (or download) the profile's data first.
    prepare: bool = True
    #: Each measurement in a fresh process (False: in this one, for tests).
    isolate: bool = True

    @classmethod
    def from_args(cls, args=None, **changes) -> Settings:
        """Settings from parsed options (``None`` keeps a default) and keyword changes.

        A per-kind setting given as one number applies to every kind; given as a dict,
        it changes the kinds it names.
        """
        settings = cls()
        for item in dataclasses.fields(cls):
            value = getattr(args, item.name, None) if args is not None else None
            value = changes.get(item.name, value)
            if value is None:
                continue
            default = getattr(settings, item.name)
            if isinstance(default, dict):
                value = (
                    {**default, **value}
                    if isinstance(value, dict)
                    else dict.fromkeys(default, int(value))
                )
            setattr(settings, item.name, value)
        return settings


@dataclass(frozen=True)
class KindSetup:
    """One model kind as the benchmark trains and scores it.

    Training uses the paper's hop (:data:`aadlib.paper.MODELS`) and the settings' batch
    size; scoring uses the profile's score hop and the paper's scoring batch.
    """

    kind: str
    batch: int
    hop: int
    score_hop: int
    score_batch: int
    window_frames: int
    normalise: bool
    #: What one input window is called: "patches" or "vectors".
    windows_word: str

    @classmethod
    def of(cls, kind: str, settings: Settings, profile: profiles.Profile) -> KindSetup:
        spec = paper.model_spec(kind)
        return cls(
            kind=kind,
            batch=int(settings.batch[kind]),
            hop=spec.hop,
            score_hop=profile.model(kind).score_hop,
            score_batch=spec.score_batch,
            window_frames=spec.window_frames,
            normalise=spec.normalise,
            windows_word="patches" if spec.patches else "vectors",
        )

    def task_spec(self) -> dict:
        """What every training task needs to know about the kind."""
        return {
            "kind": self.kind,
            "batch": self.batch,
            "hop": self.hop,
            "normalise": self.normalise,
        }


@dataclass
class Clock:
    """Prints messages with the seconds since the run started."""

    started: float = field(default_factory=time.perf_counter)

    def say(self, message: str, clock: bool = True) -> None:
        if clock and message:
            message = f"[{time.perf_counter() - self.started:6.0f} s] {message}"
        print(message, flush=True)

    @property
    def minutes(self) -> float:
        return (time.perf_counter() - self.started) / 60


@dataclass
class Bench:
    """One run of the benchmark: its profile, settings, work folder, task runner, clock."""

    profile: profiles.Profile
    settings: Settings
    work: Path
    runner: measure.Runner
    clock: Clock

    def say(self, message: str) -> None:
        self.clock.say(message)

    def attempt(self, label: str, rows: list[dict], measurement):
        """Run one measurement; on failure add a row saying so and go on with the others."""
        try:
            return measurement()
        except Exception as err:  # noqa: BLE001 - a failed figure must not lose the others
            self.say(f"{label}: FAILED: {err}")
            rows.append(report.failed_row(label, err))
            return None


@dataclass(frozen=True)
class TypeClips:
    """The clips of one machine type that the benchmark reads, and its feature cache."""

    tag: str
    train: list[str]
    test: list[str]
    cache: Path

    @classmethod
    def of(cls, root: Path, machine_type: str, work: Path) -> TypeClips:
        table = type_clips(root, machine_type)
        train = table[(table.split == "train") & (table.label == "normal")]
        test = table[table.split == "test"]
        cache = work / "cache" / machine_type
        shutil.rmtree(cache, ignore_errors=True)
        return cls(machine_type, [str(p) for p in train.path], [str(p) for p in test.path], cache)

    def spec(self, **more) -> dict:
        return {"paths": self.train, "cache_dir": str(self.cache), **more}


# --------------------------------------------------------------------------------------
# The measurements of one machine type
# --------------------------------------------------------------------------------------


def features_rows(bench: Bench, clips: TypeClips) -> list[dict]:
    """Extraction (reference, then ours into an empty cache), the features' difference,
    and the second run that reads the cache."""
    tag, paths = clips.tag, clips.train
    ref_clips = bench.settings.ref_clips
    ref_paths = paths if ref_clips is None else paths[: int(ref_clips)]
    bench.say(f"[{tag}] reference feature extraction over {len(ref_paths)} clips (one process)")
    ref_features = bench.work / f"{tag}-reference-features.npy"
    spec = {"paths": ref_paths, "out": str(ref_features)}
    reference = bench.runner.run("extract_reference", spec)
    bench.say(f"[{tag}] our feature extraction over {len(paths)} clips (every core, no cache)")
    ours = bench.runner.run("extract_ours", clips.spec())
    difference = measure.feature_difference(paths, clips.cache, ref_features)
    ref_features.unlink(missing_ok=True)
    bench.say(f"[{tag}] second run: features from the cache")
    cached = bench.runner.run("read_cached", clips.spec())
    return [
        *report.extraction_rows(tag, len(paths), ours, reference, difference, os.cpu_count()),
        report.cache_row(tag, cached, ours),
    ]


def input_rows(bench: Bench, clips: TypeClips, setup: KindSetup) -> tuple[list[dict], float]:
    """The training input, ours against the reference generator.

    Returns the rows and our input's milliseconds per batch (NaN when the measurement
    failed).
    """
    settings = bench.settings

    def measurement():
        bench.say(
            f"[{clips.tag}] {setup.kind} input pipeline: WindowBatches against the "
            "Python-loop generator"
        )
        spec = clips.spec(
            **setup.task_spec(),
            rounds=settings.input_rounds,
            batches=settings.input_batches[setup.kind],
        )
        return bench.runner.run("input", spec)

    rows: list[dict] = []
    label = f"{clips.tag}: {setup.kind} input pipeline"
    fed = bench.attempt(label, rows, measurement)
    if fed is None:
        return rows, float("nan")
    rows += report.input_rows(label, clips.tag, setup.kind, setup.batch, settings.input_rounds, fed)
    return rows, fed["ours_ms_per_batch"]


def training_rows(
    bench: Bench, clips: TypeClips, setup: KindSetup, lengths, input_ms: float
) -> list[dict]:
    """Peak RSS while training, ours and the reference's; input time against a step."""
    settings, kind = bench.settings, setup.kind

    def measurement():
        bench.say(f"[{clips.tag}] {kind} training, {settings.train_steps[kind]} steps: peak RSS")
        spec = clips.spec(
            **setup.task_spec(),
            steps=settings.train_steps[kind],
            val_steps=settings.val_steps[kind],
            memory_steps=settings.memory_steps[kind],
        )
        ours = bench.runner.run("train", spec)
        n_sub = min(settings.ref_mem_clips[kind], len(clips.train))
        bench.say(
            f"[{clips.tag}] {kind} reference training on {n_sub} clips, materialised: peak RSS"
        )
        spec = clips.spec(**setup.task_spec(), n_clips=n_sub, steps=settings.ref_train_steps[kind])
        return ours, bench.runner.run("train_reference", spec)

    rows: list[dict] = []
    label = f"{clips.tag}: {kind} training, peak RSS"
    result = bench.attempt(label, rows, measurement)
    if result is not None:
        ours, reference = result
        full_bytes = measure.materialised_bytes(lengths, setup.window_frames, setup.hop)
        rows += report.training_rows(
            label, clips.tag, kind, setup.windows_word, ours, reference, full_bytes, input_ms
        )
    return rows


def scoring_rows(bench: Bench, clips: TypeClips, setup: KindSetup) -> list[dict]:
    """Test clips scored per second: batched across clips against per-clip predict."""
    n_score = min(bench.settings.score_clips[setup.kind], len(clips.test))

    def measurement():
        picks = np.linspace(0, len(clips.test) - 1, n_score).round().astype(int)
        bench.say(f"[{clips.tag}] {setup.kind} scoring of {n_score} test clips")
        spec = {
            **clips.spec(**setup.task_spec()),
            "paths": [clips.test[i] for i in picks],
            "train_paths": clips.train,
            "hop": setup.score_hop,
            "batch": setup.score_batch,
        }
        return bench.runner.run("score", spec)

    rows: list[dict] = []
    label = f"{clips.tag}: {setup.kind} scoring ({n_score} test clips, hop {setup.score_hop})"
    scores = bench.attempt(label, rows, measurement)
    if scores is not None:
        rows.append(report.scoring_row(label, setup.score_batch, scores))
    return rows


def bench_machine_type(bench: Bench, machine_type: str) -> list[dict]:
    """Every measurement of one machine type; the rows of the table."""
    clips = TypeClips.of(bench.profile.data_root, machine_type, bench.work)
    rows = features_rows(bench, clips)
    lengths = extract_logmels(clips.train, cache_dir=clips.cache, progress=False).lengths
    setups = [KindSetup.of(kind, bench.settings, bench.profile) for kind in KINDS]
    for setup in setups:
        fed_rows, input_ms = input_rows(bench, clips, setup)
        rows += fed_rows
        rows += training_rows(bench, clips, setup, lengths, input_ms)
    for setup in setups:
        rows += scoring_rows(bench, clips, setup)
    return rows


# --------------------------------------------------------------------------------------
# The book
# --------------------------------------------------------------------------------------


def time_book(repository: Path, work: Path, timeout: int = 3600) -> list[dict]:
    """Time a cold build of the book and the rebuild after it; [] when there is no book."""
    if not (repository / "_config.yml").exists() or not (repository / "_toc.yml").exists():
        return []
    jupyter_book = shutil.which("jupyter-book", path=str(Path(sys.executable).parent))
    jupyter_book = jupyter_book or shutil.which("jupyter-book")
    if jupyter_book is None:
        return [{"what": "book", "note": "skipped: jupyter-book is not installed"}]
    book = work / "book-copy"
    shutil.rmtree(book, ignore_errors=True)
    book.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(repository / name, book / name)
    for folder in ("book", "notebooks"):
        shutil.copytree(
            repository / folder,
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
        runs.append(
            {
                "what": f"book: {label}",
                "seconds": time.perf_counter() - start,
                "ok": done.returncode == 0,
                "log": (done.stdout + done.stderr)[-2000:],
            }
        )
    return runs


def book_rows(bench: Bench, repository: Path, skip: bool) -> list[dict]:
    if skip:
        return report.book_rows([], "skipped (--skip-book)")
    bench.say("book: cold build, then a rebuild (jupyter-book, quick profile)")
    runs = time_book(repository, bench.work)
    return report.book_rows(runs, "skipped: no _config.yml in the repository")


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


def describe_machine() -> str:
    """The CPU, cores, memory and system, in one line."""
    import psutil

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = psutil.virtual_memory().total / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, {platform.system()}"


def _load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; print the table and write it as CSV. Returns an exit status."""
    profile = profiles.resolve(args.profile, data_root=args.data_root, results=args.results)
    settings = Settings.from_args(args)
    out = Path(args.out) if args.out else profile.results / "bench.csv"
    repository = Path(__file__).resolve().parent.parent
    clock = Clock()
    load_before = _load_average()
    clock.say(
        f"benchmark: profile {profile.name}, types {', '.join(args.types)}, "
        f"data {profile.data_root}"
    )
    clock.say(f"machine: {describe_machine()}; {profiles.describe_device()}")
    if settings.prepare:
        from aadlib import pipeline  # here: it loads TensorFlow

        start = time.perf_counter()
        pipeline.prepare_data(profile, args.types, progress=sys.stdout.isatty())
        clock.say(f"data ready in {time.perf_counter() - start:.0f} s")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="aadlib-bench-"))
    bench = Bench(profile, settings, work, measure.Runner(work, settings.isolate), clock)
    rows: list[dict] = []
    try:
        for machine_type in args.types:
            rows += bench_machine_type(bench, machine_type)
        rows += book_rows(bench, repository, args.skip_book)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    load_after = _load_average()
    report.write_csv(rows, out)
    clock.say("")
    clock.say(report.format_table(rows), clock=False)
    clock.say("")
    clock.say(report.format_notes(rows), clock=False)
    if load_before is not None:
        clock.say(
            f"load average (1 min) {load_before:.1f} before, {load_after:.1f} after; "
            f"{clock.minutes:.1f} min in all"
        )
    clock.say(f"wrote {out}")
    missed = report.missed(rows)
    if missed:
        clock.say("targets missed: " + "; ".join(missed))
    return 1 if report.failed(rows) else 0


def _per_kind_number(text: str):
    """A per-kind option's value: ``N`` for every kind, or ``KIND=N[,KIND=N]``."""
    try:
        if "=" not in text:
            return int(text)
        values = dict(part.split("=", 1) for part in text.split(","))
        values = {kind.strip(): int(number) for kind, number in values.items()}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected N or KIND=N[,KIND=N]") from None
    unknown = sorted(set(values) - set(KINDS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown model kind(s) {', '.join(unknown)}; kinds: {', '.join(KINDS)}"
        )
    return values


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python benchmarks/bench.py``."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/bench.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile", choices=list(profiles.PROFILES), default="full-synthetic")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="base folder of results (default: AADLIB_RESULTS, else $AADLIB_HOME/results); "
        "the CSV goes to <results>/<profile>/bench.csv unless --out says otherwise",
    )
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
    sizing = parser.add_argument_group(
        "sizing", "per-kind options take N (every kind) or KIND=N[,KIND=N], e.g. dense=64,cnn=8"
    )
    sizing.add_argument(
        "--ref-clips",
        type=int,
        default=None,
        help="clips the reference extracts (default: all training clips)",
    )
    sizing.add_argument("--input-rounds", type=int, default=None)
    sizing.add_argument(
        "--input-batches", type=_per_kind_number, default=None, help="batches per round"
    )
    sizing.add_argument(
        "--train-steps",
        type=_per_kind_number,
        default=None,
        help="training steps per model for the memory figure",
    )
    sizing.add_argument("--val-steps", type=_per_kind_number, default=None)
    sizing.add_argument(
        "--ref-mem-clips",
        type=_per_kind_number,
        default=None,
        help="clips the reference training materialises",
    )
    sizing.add_argument("--ref-train-steps", type=_per_kind_number, default=None)
    sizing.add_argument(
        "--memory-steps",
        type=_per_kind_number,
        default=None,
        help="training steps on one batch held in memory (the model alone)",
    )
    sizing.add_argument(
        "--score-clips", type=_per_kind_number, default=None, help="test clips scored"
    )
    sizing.add_argument(
        "--batch",
        type=_per_kind_number,
        default=None,
        help="training batch size (default: the paper's)",
    )
    parser.add_argument(
        "--in-process",
        dest="isolate",
        action="store_false",
        default=None,
        help="run every measurement in this process (quick check; the memory "
        "figures then mean little)",
    )
    return parser


def main(argv=None) -> int:
    """The command line: parse the options, run the benchmark."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
