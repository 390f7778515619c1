"""Train the quick profile's CNN AE to its plateau and ship its test scores with aadlib.

A 2-core CPU trains the CNN AE at about one step a second, so the quick book cannot
afford to train it on six machine types to its plateau in a build. Its quick settings are
therefore marked *shipped* (:attr:`aadlib.profiles.ModelSettings.shipped`): this script
trains it once, with those settings and the book's own functions, on the quick set, and
writes each type's training history, test scores and held-out validation scores to
``aadlib/resources/shipped/quick/cnn/<type>/``, with the run's provenance (command,
machine, date, training seconds) in ``aadlib/resources/shipped/quick/cnn/provenance.json``.
A model already trained in the work folder is reused (its recorded training time counts). The
book reads them through :func:`aadlib.pipeline.seed_scores` and every other function that
reads saved scores, after checking that they were made from the same clips
(:func:`aadlib.pipeline.shipped_run`); chapter 4 shows the provenance.

Usage (from the repository root; ``nice`` leaves the machine usable)::

    nice python tools/ship_runs.py                # train (or reuse) and write resources
    nice python tools/ship_runs.py --work DIR     # keep the trained models in DIR

Re-run it when the quick set's clips change (a new :data:`aadlib.synth.SYNTH_VERSION`
or difficulty table) or the CNN AE's quick settings change: the book refuses shipped
scores of other clips or settings, and ``tests/test_shipped.py`` says which.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aadlib import pipeline, profiles, training  # noqa: E402

PROFILE = "quick"
KINDS = ("cnn",)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="folder of the training runs (default: $AADLIB_HOME/shipping); a finished "
        "run there is reused, an interrupted one resumes",
    )
    parser.add_argument("--parallel", type=int, default=None, help="models trained at once")
    args = parser.parse_args(argv)

    profile = profiles.resolve(PROFILE)
    work = args.work or profile.home / "shipping"
    for kind in KINDS:
        trained_here = profile.trained_here(kind).replace(results=work / PROFILE)
        pipeline.run_experiment(trained_here, kinds=[kind], parallel=args.parallel, log=print)
        folder = pipeline.export_shipped_run(
            trained_here,
            kind,
            provenance={
                "command": shlex.join(["python", "tools/ship_runs.py", *(argv or sys.argv[1:])]),
                "date": datetime.now(UTC).strftime("%Y-%m-%d"),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                + ("a GPU" if training.gpu_visible() else "no GPU"),
            },
        )
        print(f"{kind}: written to {folder.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
