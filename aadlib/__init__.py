"""aadlib: acoustic anomaly detection for machines, the library of the book.

The book reproduces Coelho et al. (2021), "Deep Dense and Convolutional
Autoencoders for Machine Acoustic Anomaly Detection", on DCASE 2020 Task 2.
Each module holds one concern; each public function's docstring names the
chapter that explains it. The book's "Library map" page lists the modules, in the
order in which they may import each other (a module imports only those above it).
"""

import os
from importlib import import_module

__version__ = "0.2.0"

# TensorFlow's C++ start-up messages (CUDA probes on a CPU machine, oneDNN notes) are
# not for the reader; a user who wants them sets the variable to 0.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: The public modules in five parts, each from the bottom layer up. A module imports only
#: modules listed before it (a test checks it); the paper's path comes first and needs no
#: other part, so what goes beyond the paper is visibly built on it.
PARTS: dict[str, tuple[str, ...]] = {
    "the paper's path": (
        "paper",
        "data",
        "profiles",
        "features",
        "batches",
        "models",
        "training",
        "scoring",
        "metrics",
    ),
    "the data sets": ("published", "soundmodel", "synth", "download", "folders", "realclips"),
    "words, figures and tables": ("wording", "plots", "tables"),
    "beyond the paper": ("detectors", "explain", "decisions"),
    "front ends": ("pipeline", "cli"),
}

#: The modules, from the bottom layer up.
__all__ = [name for part in PARTS.values() for name in part]


def __getattr__(name):
    # Import submodules on first use: `import aadlib` stays fast, and `aadlib.metrics`
    # does not load TensorFlow.
    if name in __all__:
        module = import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'aadlib' has no attribute {name!r}")
