"""aadlib: acoustic anomaly detection for machines, the library of the book.

The book reproduces Coelho et al. (2022), "Deep Dense and Convolutional
Autoencoders for Machine Acoustic Anomaly Detection", on DCASE 2020 Task 2.
Each module holds one concern; each public function's docstring names the
chapter that explains it.
"""

from importlib import import_module

__version__ = "0.1.0"

__all__ = [
    "data",
    "synth",
    "download",
    "features",
    "models",
    "training",
    "metrics",
    "reference",
    "plots",
    "pipeline",
    "profiles",
    "windows",
]


def __getattr__(name):
    # Import submodules on first use: `import aadlib` stays fast and does not load
    # TensorFlow until a chapter needs a model.
    if name in __all__:
        module = import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'aadlib' has no attribute {name!r}")
