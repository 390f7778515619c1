"""TensorFlow's native start-up lines kept away from the user, in this process and in the
worker processes that train models side by side.

TensorFlow's C++ code writes its start-up lines (CUDA probes on a machine without a GPU,
oneDNN notes, absl's "All log messages before absl::InitializeLog()") straight to file
descriptor 2, before its logging can be configured. This module imports nothing heavy, so
that a spawned worker can silence them before TensorFlow is imported (it is the workers'
initializer in :func:`aadlib.pipeline.run_experiment`).
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def native_stderr_silenced():
    """Send what native code writes to file descriptor 2 to /dev/null while the block runs.

    Python's own errors still reach stderr: they are raised after the block.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def load_tensorflow_quietly() -> None:
    """Import TensorFlow and probe its devices with the start-up lines silenced."""
    with native_stderr_silenced():
        import tensorflow as tf  # here: silenced, and only where a model is trained

        tf.config.list_physical_devices("GPU")


def start_worker(threads: int) -> None:
    """Initializer of a process that trains beside others: TensorFlow limited to
    ``threads`` threads per operation (unless the user set ``TF_NUM_INTRAOP_THREADS``),
    then imported quietly. Several workers that each took every core would contend for
    them; TensorFlow reads the setting once, when it starts, hence before the import."""
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", str(threads))
    load_tensorflow_quietly()
