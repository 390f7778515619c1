"""Helpers shared by several test files (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import traceback

import numpy as np
import pytest

from aadlib.features import LogMelSet

#: The variables of the caller's shell that would steer a command-line run.
_STEERING = ("AADLIB_PROFILE", "AADLIB_DATA_ROOT", "AADLIB_RESULTS", "AADLIB_DATA_URL")


def run_cli(args, home, timeout=120, *, process=False, **env_changes):
    """The command line on ``args`` with ``home`` as AADLIB_HOME and working folder.

    By default :func:`aadlib.cli.main` runs in this process, as ``python -m aadlib`` calls
    it, with stdout and stderr captured; an exception it lets through becomes a traceback
    on stderr and exit status 1, as the interpreter would make it. ``process=True`` runs
    ``python -m aadlib`` in a process of its own (``timeout`` applies there only), for
    what only a separate program shows: the lines native code writes to file descriptor
    2, Python's warnings, and how the process ends. The caller's AADLIB_* variables are
    dropped so that its shell cannot steer the test; ``env_changes`` set variables for
    this run only.
    """
    env_changes = {
        "AADLIB_HOME": str(home),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
        **env_changes,
    }
    dropped = [name for name in _STEERING if name not in env_changes]
    if process:
        env = {k: v for k, v in os.environ.items() if k not in dropped} | env_changes
        command = [sys.executable, "-m", "aadlib", *args]
        return subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=timeout, cwd=home
        )
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(home)
        for name in dropped:
            patch.delenv(name, raising=False)
        for name, value in env_changes.items():
            patch.setenv(name, value)
        return _run_cli_here(list(args))


def _run_cli_here(args) -> subprocess.CompletedProcess:
    from aadlib import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(args)
        except SystemExit as exit:  # argparse's usage errors and --help
            code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
        except Exception:
            traceback.print_exc()
            code = 1
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def closed_port() -> int:
    """A local port nobody listens on: a download from it fails as with no network."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def indexed_logmels(lengths, n_mels=128) -> LogMelSet:
    """Frames whose first bin holds the global frame number, the rest noise."""
    total = sum(lengths)
    frames = np.random.default_rng(0).standard_normal((total, n_mels)).astype(np.float32)
    frames[:, 0] = np.arange(total)
    arrays, start = [], 0
    for n in lengths:
        arrays.append(frames[start : start + n])
        start += n
    return LogMelSet.from_arrays(arrays, [f"clip{i}.wav" for i in range(len(lengths))])


def collect_batches(ds, epoch=0):
    """Every batch of one epoch of ``ds``, and their inputs stacked."""
    batches = [ds.batch(i, epoch) for i in range(len(ds))]
    xs = [b[0] if isinstance(b, tuple) else b for b in batches]
    return batches, np.concatenate(xs)


def toy_logmels(n_clips=10, n_frames=30, seed=0) -> LogMelSet:
    """Frames on a 2-D subspace of 128 bins: easy for an autoencoder to learn."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((2, 128))
    arrays = [
        (rng.standard_normal((n_frames, 2)) @ basis).astype(np.float32) for _ in range(n_clips)
    ]
    return LogMelSet.from_arrays(arrays, [f"c{i}.wav" for i in range(n_clips)])


def small_dense_model(seed=0):
    """A Dense AE with one hidden layer of 32 units, its weights seeded."""
    import keras  # here: only the training tests need TensorFlow

    from aadlib.models import build_dense_ae

    keras.utils.set_random_seed(seed)
    return build_dense_ae(hidden_units=32, n_hidden=1)


def dense_config(**changes):
    """The paper's Dense AE configuration at batch size 32, with ``changes``."""
    from aadlib.training import paper_config

    return paper_config("dense", **{"batch_size": 32, **changes})


def write_one_clip_each(root, write_wav, machine_type="fan", seconds=1.2) -> None:
    """The fewest clips a type can train and be scored on: two training clips, one
    normal and one anomalous test clip, all of ID 00 (``write_wav`` as in conftest)."""
    for split, label, index in [
        ("train", "normal", 0),
        ("train", "normal", 1),
        ("test", "normal", 0),
        ("test", "anomaly", 0),
    ]:
        path = root / machine_type / split / f"{label}_id_00_{index:08d}.wav"
        write_wav(path, seconds=seconds, seed=index)
