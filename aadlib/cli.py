"""The command line: ``aadlib <command>`` (or ``python -m aadlib <command>``).

Every command takes ``--profile`` (quick, tiny, full, full-synthetic; default from
``AADLIB_PROFILE`` or quick), ``--data-root`` and ``--results``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import data, profiles

COMMANDS_HELP = """commands:
  synth      generate the synthetic data set of a profile
  download   download (and verify, extract) the real DCASE 2020 Task 2 data
  train      train the Dense and/or CNN autoencoder per machine type
  evaluate   score the test clips with trained models and print per-ID AUC/pAUC
  report     print and save the results table (and the comparison with the paper)
  reproduce  all of the above: our Table 2 beside the paper's, as CSV and figure
  bench      measure speed and memory against the reference pipeline
"""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        choices=list(profiles.PROFILES),
        default=None,
        help="data profile (default: $AADLIB_PROFILE or quick)",
    )
    parser.add_argument("--data-root", type=Path, default=None, help="data set folder")
    parser.add_argument("--results", type=Path, default=None, help="results folder")


def _types(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--types",
        nargs="+",
        choices=data.MACHINE_TYPES,
        default=None,
        metavar="TYPE",
        help=f"machine types (default: all of {', '.join(data.MACHINE_TYPES)})",
    )


def _models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        nargs="+",
        choices=["dense", "cnn"],
        default=["dense", "cnn"],
        help="model kinds (default: both)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aadlib",
        description="Acoustic anomaly detection for machines: reproduce Coelho et al. (2022).",
        epilog=COMMANDS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.required = True

    p = sub.add_parser("synth", help="generate the synthetic data set")
    _common(p)
    _types(p)
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

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

    for name, text in (
        ("train", "train the autoencoders"),
        ("evaluate", "train if needed, score test clips, print per-ID AUC/pAUC"),
        ("reproduce", "run everything and compare with the paper's Table 2"),
    ):
        p = sub.add_parser(name, help=text)
        _common(p)
        _types(p)
        _models(p)
        p.add_argument("--retrain", action="store_true", help="ignore trained models")
        p.add_argument("--epochs", type=int, default=None, help="cap on epochs (both models)")
        p.add_argument(
            "--steps-per-epoch",
            type=int,
            default=None,
            help="cap on batches per epoch (a quick run of a full-size profile on a CPU)",
        )
        p.add_argument(
            "--score-hop",
            type=int,
            default=None,
            help="frames between scored windows (default: the profile's)",
        )
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    p = sub.add_parser("report", help="print the saved results table")
    _common(p)
    p.add_argument(
        "--pauc",
        choices=["mcclish", "dcase"],
        default="mcclish",
        help="pAUC definition (mcclish: as the paper's Table 2)",
    )

    p = sub.add_parser("bench", help="benchmark speed and memory against the reference")
    _common(p)
    p.add_argument("--types", nargs="+", default=["ToyCar"], metavar="TYPE")
    p.add_argument("--out", type=Path, default=None, help="CSV file for the table")
    p.add_argument("--skip-book", action="store_true", help="do not time the book build")
    return parser


def _profile(args) -> profiles.Profile:
    """The chosen profile with the command line's caps applied."""
    profile = profiles.get_profile(args.profile)
    epochs = getattr(args, "epochs", None)
    if epochs:
        profile = profile.replace(
            dense_epochs=min(epochs, profile.dense_epochs),
            cnn_epochs=min(epochs, profile.cnn_epochs),
        )
    if getattr(args, "steps_per_epoch", None):
        profile = profile.replace(steps_per_epoch=args.steps_per_epoch)
    if getattr(args, "score_hop", None):
        profile = profile.replace(dense_score_hop=args.score_hop, cnn_score_hop=args.score_hop)
    return profile


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .download import DownloadError

    try:
        return COMMANDS[args.command](args)
    except (
        DownloadError,
        data.AudioError,
        data.DataLayoutError,
        ValueError,
        FileNotFoundError,
    ) as err:
        print(f"aadlib {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"aadlib {args.command}: interrupted; run it again to resume.", file=sys.stderr)
        return 130


def cmd_synth(args) -> int:
    profile = profiles.get_profile(args.profile)
    if profile.data != "synthetic":
        print(f"profile {profile.name} uses real data; use `aadlib download`", file=sys.stderr)
        return 2
    from .synth import generate_dataset

    root = args.data_root or profiles.data_root(profile)
    start = time.perf_counter()
    generate_dataset(root, size=profile.synth_size, machine_types=args.types, seed=args.seed)
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
    from .download import download_dcase2020

    root = args.data_root or profiles.data_root("full")
    download_dcase2020(
        root,
        machine_types=args.types,
        kind=args.kind,
        keep_archives=args.keep_archives,
        allow_unverified=args.allow_unverified,
    )
    print(f"data in {root}")
    print(_counts(data.list_clips(root)).to_string())
    return 0


def _experiment(args):
    from .pipeline import run_experiment

    profile = _profile(args)
    print(f"profile {profile.name}: {profile.description}")
    print(f"device: {profiles.describe_device()}")
    return profile, run_experiment(
        profile,
        args.types,
        args.models,
        args.data_root,
        args.results,
        retrain=args.retrain,
        verbose="auto" if sys.stdout.isatty() else 2,
    )


def cmd_train(args) -> int:
    from .pipeline import prepare_data, train_machine_type

    profile = _profile(args)
    types = args.types or list(data.MACHINE_TYPES)
    root = prepare_data(profile, args.data_root, types)
    for kind in args.models:
        for machine_type in types:
            trained = train_machine_type(
                machine_type,
                kind,
                profile,
                root,
                args.results,
                retrain=args.retrain,
                seed=args.seed,
            )
            print(
                f"{kind} {machine_type}: {len(trained.history)} epochs, "
                f"model in {trained.run_dir / 'model.keras'}"
            )
    return 0


def cmd_evaluate(args) -> int:
    from .pipeline import results_table

    profile, scores = _experiment(args)
    print(_format(results_table(scores)))
    print(f"results in {args.results or profiles.results_root(profile)}")
    return 0


def cmd_report(args) -> int:
    profile = profiles.get_profile(args.profile)
    results = args.results or profiles.results_root(profile)
    scores_file = Path(results) / "scores.csv"
    if not scores_file.exists():
        print(f"no results in {results}; run `aadlib evaluate` first", file=sys.stderr)
        return 2
    import pandas as pd

    from . import metrics  # imports TensorFlow: only once there is something to report

    scores = pd.read_csv(scores_file)
    print(_format(metrics.per_id_table(scores, pauc=args.pauc)))
    return 0


def cmd_reproduce(args) -> int:
    from .report import write_reproduction

    profile, scores = _experiment(args)
    results = Path(args.results or profiles.results_root(profile))
    outputs = write_reproduction(scores, results, profile)
    print(_format(outputs.comparison))
    for path in outputs.files:
        print(f"wrote {path}")
    return 0


def cmd_bench(args) -> int:
    from .bench import main as bench_main

    return bench_main(args)


def _format(table) -> str:
    return table.to_string(index=False, float_format=lambda v: f"{v:6.2f}")


COMMANDS = {
    "synth": cmd_synth,
    "download": cmd_download,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "report": cmd_report,
    "reproduce": cmd_reproduce,
    "bench": cmd_bench,
}


if __name__ == "__main__":
    sys.exit(main())
