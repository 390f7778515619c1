"""Forty real machine sounds shipped with aadlib: one MIMII fan, machine ID 00.

Chapters 1, 2 and 10 play them, show their spectrograms and run every detector on them.

The folder ``aadlib/resources/real/mimii-fan-id00/`` holds ``normal/00000000.wav`` to
``normal/00000019.wav`` and ``abnormal/00000000.wav`` to ``abnormal/00000019.wav`` (16 kHz
mono, 10 s), their ``SHA256SUMS``, a ``README.md`` (source, what was done to them) and a
``LICENSE``: the audio is CC BY-SA 4.0 (MIMII data set, Purohit et al., 2019), apart from
aadlib's MIT-licensed code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from .data import resource

__all__ = ["MIMII_FAN", "DamagedDataError", "mimii_fan", "real_clips"]

#: The folder of the shipped fan clips, under ``aadlib/resources``.
MIMII_FAN = "real/mimii-fan-id00"


class DamagedDataError(ValueError):
    """A shipped data file is missing or differs from its recorded checksum."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checksums(folder: Path) -> dict[str, str]:
    """``SHA256SUMS`` of a folder as ``{relative path: hex digest}``."""
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        raise DamagedDataError(
            f"{sums}: missing, so the clips beside it cannot be checked. Reinstall aadlib "
            "(pip install --force-reinstall aadlib) or restore the file from the repository."
        )
    listed = {}
    for line in sums.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            listed[name.strip().lstrip("*")] = digest.lower()
    return listed


def mimii_fan(verify: bool = True) -> Path:
    """The folder of the 40 real fan clips (``normal/``, ``abnormal/``). Chapters 1, 2, 10.

    Parameters
    ----------
    verify
        Check every clip against ``SHA256SUMS`` first (about 13 MB to read; a fraction
        of a second).

    Raises
    ------
    DamagedDataError
        A clip is missing or changed; the message names each one and the remedy.
    """
    folder = Path(str(resource(MIMII_FAN)))
    if not verify:
        return folder
    problems = []
    for name, digest in _checksums(folder).items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif _sha256(path) != digest:
            problems.append(f"{path}: changed (its SHA-256 differs from SHA256SUMS)")
    if problems:
        raise DamagedDataError(
            f"{len(problems)} of the shipped real clips are damaged; reinstall aadlib "
            "(pip install --force-reinstall aadlib) or restore them from the repository:\n  "
            + "\n  ".join(problems)
        )
    return folder


def real_clips(folder: str | Path | None = None) -> pd.DataFrame:
    """Table of the real clips: ``label`` (``normal``/``anomaly``), ``index``, ``path``.

    Chapters 1, 2, 10. ``folder`` defaults to :func:`mimii_fan` (checked); any folder of
    plain ``normal/`` and ``abnormal/`` WAV files reads the same way.
    """
    folder = mimii_fan() if folder is None else Path(folder)
    rows = []
    for sub, label in (("normal", "normal"), ("abnormal", "anomaly")):
        for i, path in enumerate(sorted((folder / sub).glob("*.wav"))):
            rows.append({"label": label, "index": i, "path": path})
    return pd.DataFrame(rows, columns=["label", "index", "path"])
