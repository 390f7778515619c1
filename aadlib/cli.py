"""The command line: ``aadlib <command>`` (or ``python -m aadlib <command>``).

Every command takes ``--profile`` (quick, tiny, full, full-synthetic; default from
``AADLIB_PROFILE`` or quick), ``--data-root`` and ``--results``. The setup page of the
book lists the commands; ``aadlib <command> --help`` their options.

Expected failures (bad data, a damaged file, a bad option, a failed download) end with
one line on stderr that says what to do, and exit code 2; only a bug shows a traceback.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import time
from pathlib import Path

import pandas as pd

from . import _quiet, data, decisions, folders, metrics, paper, profiles, tables
from ._storage import write_csv
from .download import DownloadError, download_dcase2020, downloaded_clips
from .synth import generate_dataset

__all__ = ["main", "build_parser"]

COMMANDS_HELP = """commands:
  synth      generate the synthetic data set of a profile
  download   download (and verify, extract) the real DCASE 2020 Task 2 data
  train      train the autoencoders per machine type
  evaluate   train if needed, score the test clips, print per-ID AUC/pAUC
  report     print the saved results and save their comparison with the paper
  reproduce  all of the above: our Table 2 beside the paper's, as CSV and figure
  layout     lay out plain normal/ and abnormal/ recordings for --profile folder

The benchmarks are not part of the package: `make bench` in a checkout.
"""


#: Upper bounds of the numeric options, checked when the command line is parsed: a seed
#: must fit NumPy's generators (below 2**32); the others are far beyond any useful run.
MAX_SEED = 2**32 - 1
MAX_EPOCHS = 100_000
MAX_STEPS = 10_000_000
MAX_HOP = 100_000  # frames (about 53 minutes of audio)


def _whole_number(text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
    if value > high:
        raise argparse.ArgumentTypeError(f"must be at most {high:,}, not {value:,}")
    return value


def _bounded(low: int, high: int):
    """An argparse ``type``: a whole number from ``low`` to ``high``."""

    def parse(text: str) -> int:
        return _whole_number(text, low, high)

    parse.__name__ = "whole number"  # argparse names the type in its own messages
    return parse


_seed = _bounded(0, MAX_SEED)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        choices=list(profiles.PROFILES),
        default=None,
        help="data profile (default: $AADLIB_PROFILE or quick)",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="data set folder (default: $AADLIB_DATA_ROOT, else under $AADLIB_HOME)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="base folder of results; each profile writes into <results>/<profile> "
        "(default: $AADLIB_RESULTS, else $AADLIB_HOME/results)",
    )


def _types(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--types",
        nargs="+",
        default=None,
        metavar="TYPE",
        help=f"machine types (default: all of {', '.join(data.MACHINE_TYPES)}; with "
        "--profile folder, every type folder of --data-root)",
    )


def _overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="let the generator replace files in the data folder that it did not write",
    )


def _layout_parser(sub) -> None:
    """The ``layout`` command's options."""
    p = sub.add_parser(
        "layout",
        help="lay out plain normal/ and abnormal/ recordings for --profile folder",
        description="Copy SRC/normal/*.wav and SRC/abnormal/*.wav into DST in the DCASE layout "
        "(DST/TYPE/{train,test}/...): the normal recordings, in name order, are cut into "
        "--folds blocks; block --fold is tested with every abnormal recording, the others "
        "train. Run each fold into its own DST to test every normal clip once.",
    )
    p.add_argument("source", type=Path, metavar="SRC", help="folder with normal/ and abnormal/")
    p.add_argument("target", type=Path, metavar="DST", help="data root to write")
    p.add_argument("--type", default="fan", help="machine-type name (default fan)")
    p.add_argument("--id", type=_bounded(0, 99), default=0, help="machine ID, 0 to 99 (default 0)")
    p.add_argument("--folds", type=_bounded(2, 1000), default=2, help="folds (default 2)")
    p.add_argument(
        "--fold", type=_bounded(0, 999), default=0, help="the fold to test, from 0 (default 0)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace clips of this type and ID in DST"
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``aadlib`` and its commands (setup page)."""
    parser = argparse.ArgumentParser(
        prog="aadlib",
        description="Acoustic anomaly detection for machines: reproduce Coelho et al. (2021).",
        epilog=COMMANDS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.required = True

    _synth_parser(sub)
    _download_parser(sub)
    for name, text in (
        ("train", "train the autoencoders"),
        ("evaluate", "train if needed, score test clips, print per-ID AUC/pAUC"),
        ("reproduce", "run everything and compare with the paper's Table 2"),
    ):
        _training_parser(sub.add_parser(name, help=text))
    _layout_parser(sub)

    p = sub.add_parser("report", help="print the saved results and save the comparison")
    _common(p)
    p.add_argument(
        "--pauc",
        choices=metrics.PAUC_DEFINITIONS,
        default=metrics.PAUC_DEFAULT,
        help=f"pAUC definition of the printed table (default {metrics.PAUC_DEFAULT}: as the "
        "paper's Table 2)",
    )
    return parser


def _synth_parser(sub) -> None:
    p = sub.add_parser("synth", help="generate the synthetic data set")
    _common(p)
    _types(p)
    _overwrite(p)
    p.add_argument("--seed", type=_seed, default=0, help="data set seed (default 0)")


def _download_parser(sub) -> None:
    p = sub.add_parser("download", help="download the real DCASE 2020 Task 2 data")
    _common(p)
    _types(p)
    p.add_argument(
        "--kind",
        choices=["dev", "additional_train", "eval_test"],
        default="dev",
        help="which archives: development set (default), additional training, evaluation test",
    )
    p.add_argument("--keep-archives", action="store_true", help="keep the zip files")
    p.add_argument(
        "--allow-unverified",
        action="store_true",
        help="accept archives without a known checksum (the evaluation test set)",
    )


def _training_parser(p: argparse.ArgumentParser) -> None:
    """The options of ``train``, ``evaluate`` and ``reproduce``."""
    _common(p)
    _types(p)
    _overwrite(p)
    p.add_argument(
        "--models",
        nargs="+",
        choices=list(paper.MODEL_KINDS),
        default=list(paper.MODEL_KINDS),
        help=f"model kinds (default: all of {', '.join(paper.MODEL_KINDS)})",
    )
    p.add_argument("--retrain", action="store_true", help="ignore trained models")
    p.add_argument(
        "--epochs", type=_bounded(1, MAX_EPOCHS), default=None, help="cap on epochs (every model)"
    )
    p.add_argument(
        "--steps-per-epoch",
        type=_bounded(1, MAX_STEPS),
        default=None,
        help="cap on batches per epoch (a quick run of a full-size profile on a CPU)",
    )
    p.add_argument(
        "--score-hop",
        type=_bounded(1, MAX_HOP),
        default=None,
        help="frames between scored windows (default: the profile's)",
    )
    p.add_argument(
        "--seed", type=_seed, default=0, help="training seed: split, shuffles, weights (default 0)"
    )
    p.add_argument(
        "--mix-down",
        choices=["first", "mean"],
        default=None,
        help="clips with several channels: keep the first channel or average them "
        "(default: refuse them)",
    )


def _profile(args) -> profiles.Profile:
    """The chosen profile, resolved once, with the command line's caps applied."""
    profile = profiles.resolve(
        args.profile,
        data_root=args.data_root,
        results=args.results,
        seed=getattr(args, "seed", None) if args.command != "synth" else None,
    )
    other_seed = profile.seed != profiles.PROFILES[profile.name].seed
    if getattr(args, "epochs", None) or getattr(args, "score_hop", None) or other_seed:
        # Another schedule or seed than the runs a profile ships: those kinds train here.
        profile = profile.trained_here()
    if getattr(args, "epochs", None):
        profile = profile.with_models(epochs=args.epochs)
    if getattr(args, "score_hop", None):
        profile = profile.with_models(score_hop=args.score_hop)
    if getattr(args, "steps_per_epoch", None):
        profile = profile.replace(steps_per_epoch=args.steps_per_epoch)
    if getattr(args, "mix_down", None):
        profile = profile.replace(mix_down=args.mix_down)
    return profile


class _Messages(logging.Handler):
    """aadlib's warnings on stderr as ``aadlib <command>: warning: ...`` lines."""

    def __init__(self, command: str):
        super().__init__(logging.INFO)
        self.command = command

    def emit(self, record):
        level = "warning: " if record.levelno >= logging.WARNING else ""
        print(f"aadlib {self.command}: {level}{record.getMessage()}", file=sys.stderr)


#: The failures a user can meet and mend: one line on stderr, exit code 2. OSError covers
#: a missing, unreadable or misplaced file or folder and a full disk; ValueError every
#: refusal of bad input (damaged files and bad audio derive from it).
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (DownloadError, OSError, ValueError)


#: What to do about the operating system's errors that name a path but no remedy.
_OS_REMEDIES = {
    errno.ENOSPC: "no space left on device. Free space there, or choose a folder on a disk "
    "with room (--results, --data-root or AADLIB_HOME)",
    errno.EDQUOT: "disk quota exceeded. Free space there, or choose a folder on a disk with "
    "room (--results, --data-root or AADLIB_HOME)",
    errno.ENOTDIR: "a file stands where a folder is needed. Move that file away, or choose "
    "another folder (--results, --data-root or AADLIB_HOME)",
    errno.EEXIST: "a file stands where a folder is needed. Move that file away, or choose "
    "another folder (--results, --data-root or AADLIB_HOME)",
    errno.EISDIR: "a folder stands where aadlib reads or writes a file. Move that folder "
    "away, then run again",
    errno.EROFS: "the file system is read-only. Choose a writable folder (--results or "
    "AADLIB_HOME)",
    errno.EACCES: "permission denied. Make it writable, or choose another folder (--results, "
    "--data-root or AADLIB_HOME)",
    errno.EPERM: "operation not permitted. Make it writable, or choose another folder "
    "(--results, --data-root or AADLIB_HOME)",
    errno.ENOENT: "no such file or folder. Check the path",
}


def describe_error(err: BaseException) -> str:
    """The one line a user reads for an expected error: the path, the cause, the remedy.

    aadlib's own errors say all of that already; an operating system's error (``[Errno
    20] Not a directory: '...'``) gets the path it names and what to do.
    """
    text = str(err)
    if isinstance(err, OSError) and err.errno in _OS_REMEDIES and text.startswith("[Errno"):
        path = err.filename2 or err.filename
        where = f"{path}: " if path is not None else ""
        return f"{where}{_OS_REMEDIES[err.errno]}"
    return text


def main(argv=None) -> int:
    """Run one command (``argv`` or the process's arguments); return its exit code.

    Run as the program (``argv`` not given), a failure ends the process at once after
    its message: threads that TensorFlow still runs cannot abort it on the way out.
    """
    args = build_parser().parse_args(argv)
    handler = _Messages(args.command)
    logger = logging.getLogger("aadlib")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    code = 1
    try:
        code = COMMANDS[args.command](args)
    except EXPECTED_ERRORS as err:
        print(f"aadlib {args.command}: error: {describe_error(err)}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print(f"aadlib {args.command}: interrupted; run it again to resume.", file=sys.stderr)
        code = 130
    finally:
        logger.removeHandler(handler)
    if argv is None and code != 0 and "tensorflow" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def cmd_synth(args) -> int:
    profile = _profile(args)
    if profile.data != "synthetic":
        print(
            f"aadlib synth: error: profile {profile.name} uses real data; use `aadlib download`",
            file=sys.stderr,
        )
        return 2
    start = time.perf_counter()
    root = generate_dataset(
        profile.data_root,
        size=profile.synth_size,
        machine_types=args.types,
        seed=args.seed,
        progress=sys.stderr.isatty(),
        overwrite=args.overwrite,
    )
    table = data.list_clips(root)
    print(
        f"synthetic set ({profile.synth_size}) in {root}: {len(table)} clips, "
        f"{time.perf_counter() - start:.1f} s"
    )
    print(_counts(table).to_string())
    return 0


def _counts(table):
    return table.groupby(["machine_type", "split", "label"]).size().unstack(["split", "label"])


def cmd_download(args) -> int:
    root = args.data_root or profiles.resolve("full").data_root
    download_dcase2020(
        root,
        machine_types=args.types,
        kind=args.kind,
        keep_archives=args.keep_archives,
        allow_unverified=args.allow_unverified,
        progress=sys.stderr.isatty(),
    )
    print(f"data in {root}")
    print(_counts(downloaded_clips(root, args.kind, args.types)).to_string())
    return 0


def _load_tensorflow() -> None:
    """Import TensorFlow and probe its devices quietly, before a command that trains."""
    _quiet.load_tensorflow_quietly()


#: The files a training command writes into the profile's results folder.
_SUMMARY_FILES = ("scores.csv", "table.csv", "timings.csv", "decisions.csv")


def _check_folders(args, profile: profiles.Profile) -> None:
    """Refuse, before any work, folders that a run could only fail on later.

    A data root given for real data must exist (no data set is made there); a results
    folder, or the summary files in it, must not be blocked by a file or a folder.
    """
    given = args.data_root or os.environ.get("AADLIB_DATA_ROOT")
    if given and profile.data != "synthetic" and not profile.data_root.exists():
        raise FileNotFoundError(
            f"data root {profile.data_root} does not exist; profile {profile.name} reads "
            "existing data and makes none. Check the path (--data-root or AADLIB_DATA_ROOT), "
            f"or download the real set there with `aadlib download --data-root "
            f"{profile.data_root}`"
        )
    folder = profile.results
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(
            f"{folder} is a file, not a folder, so results cannot go into {profile.results}; "
            "move it away or choose another folder (--results or AADLIB_RESULTS)"
        )
    for name in _SUMMARY_FILES:
        if (profile.results / name).is_dir():
            raise IsADirectoryError(
                f"{profile.results / name} is a folder where aadlib writes its {name}; move "
                "it away or choose another folder (--results or AADLIB_RESULTS)"
            )


def _run(args) -> tuple[profiles.Profile, pd.DataFrame]:
    _load_tensorflow()
    from .pipeline import run_experiment  # loads TensorFlow: only to train

    profile = _profile(args)
    _check_folders(args, profile)
    print(f"profile {profile.name}: {profile.description}")
    print(f"device: {profiles.describe_device()}")
    scores = run_experiment(  # prepares the data (once: each of its messages once)
        profile,
        args.types,
        args.models,
        retrain=args.retrain,
        verbose="auto" if sys.stdout.isatty() else 0,
        overwrite=args.overwrite,
    )
    return profile, scores


def cmd_train(args) -> int:
    _load_tensorflow()
    from .pipeline import (  # loads TensorFlow: only to train
        check_data,
        machine_types_of,
        prepare_data,
        train_machine_type,
    )

    # `aadlib train` trains: also the kinds whose runs the profile ships.
    profile = _profile(args).trained_here(*args.models)
    _check_folders(args, profile)
    types = machine_types_of(profile, args.types)
    prepare_data(profile, types, progress=sys.stderr.isatty(), overwrite=args.overwrite)
    check_data(profile, types, args.models)  # every bad clip named before any training
    for kind in args.models:
        for machine_type in types:
            trained = train_machine_type(
                machine_type,
                kind,
                profile,
                retrain=args.retrain,
                verbose="auto" if sys.stdout.isatty() else 0,
            )
            how = "saved model reused" if trained.reused else f"trained in {trained.seconds:.0f} s"
            print(
                f"{kind} {machine_type}: {len(trained.history)} epochs ({how}), "
                f"model in {trained.run_dir / 'model.keras'}"
            )
    return 0


def _undefined(scores: pd.DataFrame) -> None:
    """Say which IDs have no AUC (their test clips have one label only)."""
    for mtype, mid, missing in folders.undefined_ids(scores):
        word = "anomalous" if missing == "anomaly" else "normal"
        print(f"{mtype} ID {mid:02d}: AUC and pAUC undefined (no {word} test clip), shown as NaN")


def cmd_evaluate(args) -> int:
    profile, scores = _run(args)
    print(_format(tables.results_table(scores)))
    _undefined(scores)
    from .pipeline import merge_scores, validation_scores  # TensorFlow: loaded by _run

    # Decisions at thresholds from normal clips only: the gamma rule on the validation
    # clips that training held out (per ID where each has enough of them, else per type).
    thresholds = decisions.fit_thresholds(
        validation_scores(profile, args.types, args.models),
        rule="gamma",
        per="auto",
        machines=scores,
    )
    table = decisions.decision_table(scores, thresholds)
    print(
        f"\nDecisions at the {decisions.QUANTILE:.0%} point of a gamma fitted to held-out "
        "normal clips (false alarms per day: a check every "
        f"{decisions.SECONDS_BETWEEN_CHECKS:.0f} s):"
    )
    shown = ["model", "machine_type", "machine_id", "threshold", "fitted_on", "n_reference"]
    shown += ["tpr", "fpr", "precision", "f1", "false_alarms_per_day"]
    print(
        table[shown].to_string(
            index=False,
            float_format=lambda v: f"{v:6.2f}",
            formatters={"threshold": "{:.4f}".format, "false_alarms_per_day": "{:,.0f}".format},
        )
    )
    unfitted = table["threshold"].isna()
    if unfitted.any():
        print(
            f"No threshold for {int(unfitted.sum())} row(s): the gamma rule needs at least "
            f"{decisions.MIN_GAMMA_SCORES} held-out normal clips per type (per ID for per-ID "
            "thresholds), and training holds out 10 % of the normal training clips: give "
            f"{10 * decisions.MIN_GAMMA_SCORES} or more normal training clips."
        )
    path = profile.results / "decisions.csv"
    try:  # the decisions of model kinds and types that this run did not touch are kept
        old = pd.read_csv(path) if path.exists() else None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError):
        old = None  # a damaged file is replaced by this run's table
    write_csv(merge_scores(old, table), path)
    print(f"results in {profile.results}")
    return 0


def _read_scores(profile: profiles.Profile) -> pd.DataFrame | None:
    path = profile.results / "scores.csv"
    if not path.exists():
        print(
            f"aadlib report: error: no results in {profile.results}; run `aadlib evaluate` first",
            file=sys.stderr,
        )
        return None
    try:
        scores = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path}: the scores file is damaged ({type(err).__name__}); run `aadlib evaluate` "
            "to write it again"
        ) from err
    return tables.check_summary(tables.check_scores(scores, path), profile.results, path)


def cmd_report(args) -> int:
    profile = _profile(args)
    scores = _read_scores(profile)
    if scores is None:
        return 2
    print(_format(tables.per_id_table(scores, pauc=args.pauc)))
    _undefined(scores)
    written = tables.write_reproduction(scores, profile.results, _caption(profile))
    for path in written.files:
        print(f"wrote {path}")
    return 0


def _caption(profile: profiles.Profile) -> str:
    data_note = {"real": "real DCASE 2020 data", "folder": f"recordings in {profile.data_root}"}
    data_note = data_note.get(profile.data, "synthetic data")
    return f"profile {profile.name}, {data_note}"


def cmd_reproduce(args) -> int:
    profile, scores = _run(args)
    outputs = tables.write_reproduction(
        pd.read_csv(profile.results / "scores.csv"), profile.results, _caption(profile)
    )
    print(_format(outputs.comparison))
    for path in outputs.files:
        print(f"wrote {path}")
    return 0


def cmd_layout(args) -> int:
    record = folders.layout_recordings(
        args.source,
        args.target,
        machine_type=args.type,
        machine_id=args.id,
        folds=args.folds,
        fold=args.fold,
        overwrite=args.overwrite,
    )
    where = args.target / args.type
    print(
        f"{where}: {len(record.train)} normal clips in train/, {len(record.test)} in test/ "
        f"(fold {record.fold} of {record.folds}: {record.rule})"
    )
    if record.skipped:
        print(f"skipped {len(record.skipped)} file(s) that are not WAV: {record.skipped[0]}, ...")
    print(f"split recorded in {where / record.path_name}")
    print(f"next: aadlib evaluate --profile folder --data-root {args.target}")
    return 0


def _format(table) -> str:
    return table.to_string(index=False, float_format=lambda v: f"{v:6.2f}")


COMMANDS = {
    "synth": cmd_synth,
    "download": cmd_download,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "report": cmd_report,
    "reproduce": cmd_reproduce,
    "layout": cmd_layout,
}


if __name__ == "__main__":
    sys.exit(main())
