"""Shared fixtures: WAV files written with soundfile, a tiny data root in the DCASE layout,
and the book's table of contents."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402

SR = 16_000
ROOT = Path(__file__).resolve().parents[1]


def toc_files() -> list[str]:
    """The book's pages in the order of ``_toc.yml`` (without suffix)."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc["parts"]:
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def write_wav(
    path,
    seconds: float = 0.5,
    sr: int = SR,
    channels: int = 1,
    freq: float = 440.0,
    seed: int = 0,
    subtype: str = "PCM_16",
    data: np.ndarray | None = None,
) -> Path:
    """Write a tone plus noise (or ``data`` as given) to ``path``; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        t = np.arange(int(round(seconds * sr))) / sr
        rng = np.random.default_rng(seed)
        mono = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(len(t))
        data = np.stack([mono * (0.5 + 0.5 * c) for c in range(channels)], axis=1)
        data = data[:, 0] if channels == 1 else data
    sf.write(path, np.asarray(data, dtype=np.float32), sr, subtype=subtype)
    return path


@pytest.fixture
def make_wav():
    """The :func:`write_wav` helper."""
    return write_wav


def pytest_collection_modifyitems(items):
    """The book build first: it is by far the longest test (most of ``make test``), so the
    test process that takes it starts it at once while the other processes run the rest
    (``make test`` keeps this order: ``--no-loadscope-reorder``)."""
    items.sort(key=lambda item: item.path.name != "test_book.py")


#: (machine_type, split, label, machine_id, index) of the clips in ``data_root``.
CLIPS = [
    ("ToyCar", "train", "normal", 1, 0),
    ("ToyCar", "train", "normal", 1, 1),
    ("ToyCar", "train", "normal", 2, 0),
    ("ToyCar", "test", "normal", 1, 0),
    ("ToyCar", "test", "anomaly", 1, 0),
    ("ToyCar", "test", "normal", 2, 3),
    ("ToyCar", "test", "anomaly", 2, 1),
    ("fan", "train", "normal", 0, 0),
    ("fan", "train", "normal", 0, 10),
    ("fan", "test", "normal", 0, 0),
    ("fan", "test", "anomaly", 0, 0),
]


@pytest.fixture
def checkpoint_every_epoch(monkeypatch):
    """Checkpoints after every epoch, however short: the resume tests interrupt a training
    after a given epoch, which the default half-minute interval would not have saved."""
    from aadlib import training

    monkeypatch.setattr(training, "CHECKPOINT_SECONDS", 0.0)


@pytest.fixture
def data_root(tmp_path) -> Path:
    """A data root with two machine types, short clips and some junk files to ignore."""
    root = tmp_path / "data"
    for i, (mtype, split, label, mid, index) in enumerate(CLIPS):
        name = f"{label}_id_{mid:02d}_{index:08d}.wav"
        write_wav(root / mtype / split / name, seconds=0.5, freq=200 + 50 * i, seed=i)
    (root / "ToyCar" / "train" / ".DS_Store").write_bytes(b"junk")
    (root / "ToyCar" / "train" / "notes.txt").write_text("not a clip")
    write_wav(root / "ToyCar" / "train" / "normal_id_1_0.wav")  # wrong name pattern
    (root / "ToyCar" / "test" / "normal_id_01_00000099.wav").mkdir()  # a folder, not a clip
    (root / "NotAType" / "train").mkdir(parents=True)
    write_wav(root / "NotAType" / "train" / "normal_id_01_00000000.wav")
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny profile in a folder of its own, its valve data generated once per test file.

    Module-scoped rather than session-scoped: the tests of a file train into its results,
    and a file's assumptions about what is trained there must not depend on other files.
    """
    from aadlib import pipeline, profiles  # loads TensorFlow: only the tests that use it pay

    home = tmp_path_factory.mktemp("aadlib-home")
    profile = profiles.resolve("tiny", home=home, data_root=home / "data", results=home / "results")
    pipeline.prepare_data(profile, ["valve"], progress=False)
    return profile
