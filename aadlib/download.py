"""Download, verify and unpack the real DCASE 2020 Task 2 data from Zenodo.

Chapter: ``notebooks/05_reproducing_the_tables.ipynb``.

Three sets, one zip archive per machine type:

* ``kind="dev"``: the development set, Zenodo record 3678171, ``dev_data_<type>.zip``;
* ``kind="additional_train"``: the additional training set, record 3727685,
  ``eval_data_train_<type>.zip``;
* ``kind="eval_test"``: the evaluation test set, record 3841772, ``eval_data_test_<type>.zip``.
  No checksum of these archives is known, so they are downloaded only with
  ``allow_unverified=True``, and a damaged transfer can then only show up as a bad zip.

What :func:`download_dcase2020` does, holding the lock of the root (a second run into the
same root waits for it, see :func:`aadlib._storage.exclusive`), for each machine type:

1. Skip the type when ``<root>/<type>/`` holds the completion marker
   ``.aadlib-complete.json``, or when clips in the layout are already there (a set unzipped
   by hand is used as it is, and nothing is downloaded).
2. Check the free disk space (about 2.2 times the archive: the archive plus its contents).
3. Download the archive with pooch into ``<root>/.archives/``. The bytes go to
   ``<file>.part`` first, and an interrupted transfer (fewer bytes than the server announced)
   resumes from there with an HTTP Range request. A server that announces another size than
   the registry's, or a received file of the wrong size or MD5, is an error
   (:class:`ChecksumError`) and the bytes are removed. An archive already in ``.archives/``
   is used only if it has the registry's size and MD5 (or, without a known checksum, those
   recorded in ``<file>.received.json`` when aadlib downloaded it); otherwise it is refused
   and left alone.
4. Check every zip entry (no absolute path, no ``..``, no symbolic link) before writing
   anything, extract into a temporary folder inside the root, count the clips of the
   archive's kind against the registry, refuse to replace files of other contents already
   in ``<type>/`` (:class:`ExistingFilesError`), move ``<type>/`` into place and only then
   write the marker.
5. Delete the archive, unless ``keep_archives=True``.

pooch's own log lines are kept off the terminal; there is one progress bar per archive.
:func:`downloaded_clips` lists the clips of any kind of set after a download, the
unlabeled evaluation test clips included.

Extracting the development archives into a root gives the layout that
:func:`aadlib.data.list_clips` reads: ``<root>/<type>/{train,test}/*.wav``. Keep the
additional training and evaluation test sets in another root (the DCASE baseline's
``eval_data/``), so that their clips do not mix with the development set.

The server defaults to ``https://zenodo.org``. Pass ``base_url`` or set the environment
variable ``AADLIB_DATA_URL`` to use a mirror: either a base that serves
``/record/<record>/files/<file>``, or a template with ``{record}`` and ``{file}`` fields.
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pooch
import requests
from tqdm import tqdm

from . import data
from ._storage import exclusive, write_text
from .data import (
    DEV_IDS,
    MACHINE_TYPES,
    SPLITS,
    DataLayoutError,
    check_machine_types,
    read_resource_csv,
)

__all__ = [
    "ARCHIVES",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "KINDS",
    "Archive",
    "BadArchiveError",
    "ChecksumError",
    "DiskSpaceError",
    "DownloadError",
    "ExistingFilesError",
    "UNLABELED",
    "UnknownMachineTypeError",
    "UnsafeArchiveError",
    "archives_for",
    "download_dcase2020",
    "downloaded_clips",
    "fetch_archive",
    "is_complete",
    "load_registry",
    "marker_path",
    "safe_extract",
]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://zenodo.org"
#: Environment variable that overrides the base URL (a mirror, or a test server).
BASE_URL_ENV = "AADLIB_DATA_URL"
KINDS: tuple[str, ...] = ("dev", "additional_train", "eval_test")
_PREFIXES = {
    "dev": "dev_data_",
    "additional_train": "eval_data_train_",
    "eval_test": "eval_data_test_",
}
#: The folders each kind of archive must hold under ``<type>/``.
_REQUIRED_SPLITS = {
    "dev": ("train", "test"),
    "additional_train": ("train",),
    "eval_test": ("test",),
}
EVAL_TEST_RECORD = 3841772
ARCHIVE_DIR = ".archives"
#: Free space wanted before a download, as a multiple of the archive size: the archive,
#: its extracted copy (WAVs barely compress) and some margin.
SPACE_FACTOR = 2.2
CHUNK_SIZE = 1 << 16
#: (connect, read) timeouts in seconds; a stalled read counts as an interruption.
TIMEOUT = (15, 60)
#: Seconds to wait before resuming after an interruption, times the attempt number.
RETRY_WAIT = 2.0
_TMP_PREFIX = ".aadlib-extract-"


class DownloadError(RuntimeError):
    """Getting or unpacking an archive failed; the message says why and what to do."""


class ChecksumError(DownloadError):
    """A downloaded archive has the wrong size or MD5; it has been removed."""


class BadArchiveError(DownloadError):
    """An archive cannot be read as a zip file, or does not hold what the registry says."""


class UnsafeArchiveError(DownloadError):
    """An archive has entries that would land outside the target folder."""


class ExistingFilesError(DownloadError):
    """Extracting an archive would replace files that are not its own; nothing was changed."""


class DiskSpaceError(DownloadError):
    """Not enough free disk space to download or extract an archive."""


class UnknownMachineTypeError(DownloadError, data.UnknownMachineTypeError):
    """A machine type that is not one of :data:`aadlib.data.MACHINE_TYPES`."""


@dataclass(frozen=True)
class Archive:
    """One DCASE 2020 Task 2 archive on Zenodo.

    ``size`` and ``md5`` are ``None`` where unknown (the evaluation test set);
    ``train_files`` and ``test_files`` are the WAV counts it extracts to, where known.
    """

    record: int
    file: str
    size: int | None
    md5: str | None
    machine_type: str
    kind: str
    train_files: int | None = None
    test_files: int | None = None

    def url(self, base: str | None = None) -> str:
        """Download URL; ``base`` (or ``$AADLIB_DATA_URL``) replaces ``https://zenodo.org``."""
        base = (base or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
        if "{file}" in base:
            return base.format(record=self.record, file=self.file)
        return f"{base}/record/{self.record}/files/{self.file}?download=1"

    @property
    def known_hash(self) -> str | None:
        """The checksum in pooch's notation, ``md5:<hex>``."""
        return f"md5:{self.md5}" if self.md5 else None


# --------------------------------------------------------------------------- registry


def _kind_and_type(file: str) -> tuple[str, str]:
    stem = file.removesuffix(".zip")
    for kind, prefix in _PREFIXES.items():
        if stem.startswith(prefix) and stem[len(prefix) :] in MACHINE_TYPES:
            return kind, stem[len(prefix) :]
    raise ValueError(f"{file!r} is not the name of a DCASE 2020 Task 2 archive")


def _int_or_none(value) -> int | None:
    return None if pd.isna(value) or str(value).strip() == "" else int(float(value))


def load_registry() -> dict[str, Archive]:
    """Archives by file name, from the packaged ``dcase2020_task2_archives.csv``.

    The evaluation test archives are added without size and checksum, which are not known.
    """
    table = read_resource_csv("dcase2020_task2_archives.csv").astype(object)
    registry: dict[str, Archive] = {}
    for row in table.to_dict(orient="records"):
        kind, machine_type = _kind_and_type(row["file"])
        md5 = "" if pd.isna(row["md5"]) else str(row["md5"]).strip().lower()
        registry[row["file"]] = Archive(
            record=int(row["zenodo_record"]),
            file=row["file"],
            size=_int_or_none(row["size_bytes"]),
            md5=md5 or None,
            machine_type=machine_type,
            kind=kind,
            train_files=_int_or_none(row["train_files"]),
            test_files=_int_or_none(row["test_files"]),
        )
    for machine_type in MACHINE_TYPES:
        name = f"{_PREFIXES['eval_test']}{machine_type}.zip"
        registry.setdefault(
            name, Archive(EVAL_TEST_RECORD, name, None, None, machine_type, "eval_test")
        )
    return registry


#: Every known archive, by file name.
ARCHIVES: dict[str, Archive] = load_registry()


def _check_types(machine_types: str | Iterable[str] | None) -> list[str]:
    try:
        return check_machine_types(machine_types)
    except data.UnknownMachineTypeError as err:
        raise UnknownMachineTypeError(str(err)) from None


def archives_for(
    machine_types: str | Iterable[str] | None = None, kind: str = "dev"
) -> list[Archive]:
    """The archives of some machine types (default: all six) of one set.

    Parameters
    ----------
    machine_types
        One type, several, or ``None`` for all of :data:`aadlib.data.MACHINE_TYPES`.
    kind
        ``"dev"``, ``"additional_train"`` or ``"eval_test"``.

    Raises
    ------
    UnknownMachineTypeError
        A type that is not one of the six.
    ValueError
        An unknown ``kind``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    types = _check_types(machine_types)
    # Looked up at call time, so a patched ARCHIVES (tests, a new mirror) takes effect.
    by_key = {(a.kind, a.machine_type): a for a in ARCHIVES.values()}
    missing = [t for t in types if (kind, t) not in by_key]
    if missing:
        raise DownloadError(f"no {kind} archive is registered for {', '.join(missing)}")
    return [by_key[(kind, t)] for t in types]


# ------------------------------------------------------------------------- disk space


def _fmt_bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def _free_bytes(folder: Path) -> int:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _check_space(folder: Path, needed: float, what: str) -> None:
    free = _free_bytes(folder)
    if free < needed:
        raise DiskSpaceError(
            f"not enough free disk space for {what}: it needs about {_fmt_bytes(needed)} in "
            f"{folder}, but only {_fmt_bytes(free)} is free. Free some space, or choose a data "
            "root on a larger disk."
        )


# --------------------------------------------------------------------------- download


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """Start and total of a ``Content-Range`` header (``None`` where absent)."""
    match = re.match(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", header or "")
    if not match:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (int(total) if total and total != "*" else None)


class _Interrupted(Exception):
    """A transfer stopped before the last byte the server announced; the ``.part`` keeps it."""


def _wrong_file_advice(root_hint: Path) -> str:
    return (
        f"Check the base URL (argument base_url or ${BASE_URL_ENV}); if it is right, the archive "
        f"on the server has changed: download it by hand into {root_hint} and unzip it there."
    )


def _receipt_path(archive_path: Path) -> Path:
    return archive_path.with_name(f"{archive_path.name}.received.json")


def _write_receipt(archive_path: Path, downloaded: Path) -> None:
    """Record the size and MD5 of an unverified download, so that a later run can tell the
    archive it finds in the cache is that download, unchanged."""
    receipt = {
        "size": downloaded.stat().st_size,
        "md5": pooch.file_hash(str(downloaded), alg="md5"),
    }
    write_text(_receipt_path(archive_path), json.dumps(receipt) + "\n")


def _read_receipt(archive_path: Path) -> dict | None:
    try:
        receipt = json.loads(_receipt_path(archive_path).read_text(encoding="utf-8"))
        return {"size": int(receipt["size"]), "md5": str(receipt["md5"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


class _ResumingDownloader:
    """A pooch downloader that streams into ``<file>.part`` and resumes it with HTTP Range.

    pooch hands every downloader a fresh temporary file, so a partial download would be lost;
    the stable ``.part`` name is what lets the next call pick up where this one stopped.
    A transfer is complete when every byte the server announced has arrived; the sizes are
    then checked against the registry.
    """

    def __init__(
        self, archive: Archive, part: Path, root_hint: Path, progress: bool, retries: int
    ) -> None:
        self.archive = archive
        self.part = part
        self.root_hint = root_hint
        self.progress = progress
        self.retries = max(0, int(retries))

    def __call__(self, url: str, output_file, pooch_obj=None, check_only: bool = False) -> None:
        # One bar for the whole archive: a resumed attempt moves it back to its offset.
        with tqdm(
            total=self.archive.size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=self.archive.file,
            disable=not self.progress,
        ) as bar:
            self._transfer_with_retries(url, bar)
        self._check_size()
        if self.archive.md5 is None:
            _write_receipt(self.part.with_name(self.archive.file), self.part)
        if isinstance(output_file, str | os.PathLike):
            os.replace(self.part, output_file)  # same folder: a rename, no copy
        else:
            with open(self.part, "rb") as src:
                shutil.copyfileobj(src, output_file)
            self.part.unlink()

    def _transfer_with_retries(self, url: str, bar: tqdm) -> None:
        for attempt in range(self.retries + 1):
            try:
                self._transfer(url, bar)
                return
            except _Interrupted as err:
                if attempt == self.retries:
                    raise DownloadError(
                        f"the download of {self.archive.file} was interrupted: {err}. The partial "
                        f"file {self.part} is kept: run the command again to resume it."
                    ) from err
                log.warning("%s; resuming (attempt %d of %d)", err, attempt + 2, self.retries + 1)
                time.sleep(RETRY_WAIT * (attempt + 1))

    def _offset(self) -> int:
        offset = self.part.stat().st_size if self.part.exists() else 0
        if self.archive.size is not None and offset > self.archive.size:
            log.warning("%s is longer than the archive; starting afresh", self.part.name)
            self.part.unlink()
            return 0
        return offset

    def _get(self, url: str, offset: int) -> requests.Response:
        # identity: the bytes counted must be the file's, as the server announces their number.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            return requests.get(url, headers=headers, stream=True, timeout=TIMEOUT)
        except (requests.ConnectionError, requests.Timeout) as err:
            raise self._unreachable(url, err) from err

    def _open(self, url: str, offset: int) -> tuple[requests.Response | None, int, int | None]:
        """The response for the bytes from ``offset`` on, the byte it really starts at, and the
        file size the server announces (``None`` if it does not); no response if none is left."""
        response = self._get(url, offset)
        start, total = _content_range(response.headers.get("Content-Range"))
        if offset and response.status_code == 416:
            response.close()
            return self._nothing_left(url, offset, total)
        if response.status_code >= 400:
            response.close()
            raise DownloadError(
                f"the server answered {response.status_code} {response.reason} for {url}. Check "
                f"the base URL (argument base_url or ${BASE_URL_ENV}), or download "
                f"{self.archive.file} by hand into {self.root_hint} and unzip it there."
            )
        if response.status_code == 206 and offset and start != offset:
            log.info("the server resumed %s at another byte; downloading it whole", self.part.name)
            response.close()
            self.part.unlink(missing_ok=True)
            return self._open(url, 0)
        if response.status_code != 206 or not offset:
            if offset:
                log.info(
                    "the server ignored the Range request; downloading %s whole", self.part.name
                )
            # The whole file, from byte 0: the .part is truncated, not appended to.
            start, length = 0, response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        self._check_announced(total, response)
        return response, start, total

    def _nothing_left(self, url: str, offset: int, total: int | None):
        """After a 416 (no byte past ``offset``): the .part is whole if it has the server's size."""
        self._check_announced(total)
        if total == offset:
            return None, offset, total
        self.part.unlink(missing_ok=True)  # longer than the server's file: not a part of it
        return self._open(url, 0)

    def _check_announced(self, total: int | None, response: requests.Response | None = None):
        """Refuse a file of another size than the registry's before its bytes are fetched."""
        expected = self.archive.size
        if expected is None or total is None or total == expected:
            return
        if response is not None:
            response.close()
        self.part.unlink(missing_ok=True)
        raise ChecksumError(
            f"size mismatch for {self.archive.file}: expected {expected} bytes, but the server "
            f"announces {total} bytes, so it serves another file than the registry describes. "
            f"Nothing of it was kept. {_wrong_file_advice(self.root_hint)}"
        )

    def _unreachable(self, url: str, err: Exception) -> DownloadError:
        host = urlsplit(url).hostname or url
        kept = (
            f" The partial file {self.part} is kept and will be resumed."
            if self.part.exists()
            else ""
        )
        return DownloadError(
            f"could not reach {host} ({url}): {err}. Check the network connection, or download "
            f"the archives by hand into {self.root_hint} and unzip them there.{kept}"
        )

    def _transfer(self, url: str, bar: tqdm) -> None:
        response, offset, total = self._open(url, self._offset())
        bar.reset(total=total)
        bar.update(offset)
        if response is None:
            return
        written = offset
        with response, open(self.part, "ab" if offset else "wb") as out:
            try:
                for chunk in response.iter_content(CHUNK_SIZE):
                    out.write(chunk)
                    bar.update(len(chunk))
                    written += len(chunk)
            except requests.RequestException as err:
                of = _fmt_bytes(total) if total is not None else "an unannounced size"
                raise _Interrupted(f"{_fmt_bytes(written)} of {of} arrived ({err})") from err
        # Complete means every byte the server announced, not the registry's size: a file of
        # another size would otherwise count as interrupted on every run.
        if total is not None and written < total:
            raise _Interrupted(f"{_fmt_bytes(written)} of {_fmt_bytes(total)} arrived")

    def _check_size(self) -> None:
        size = self.part.stat().st_size
        if self.archive.size is not None and size != self.archive.size:
            self.part.unlink()
            raise ChecksumError(
                f"size mismatch for {self.archive.file}: expected {self.archive.size} bytes, "
                f"received {size}; the file was removed. Run the command again to download it "
                f"anew. If this happens again: {_wrong_file_advice(self.root_hint)}"
            )


def _mismatch(archive: Archive, err: ValueError, root_hint: Path) -> ChecksumError:
    got = re.search(r"got ([0-9a-fA-F]+)", str(err))
    return ChecksumError(
        f"checksum mismatch for {archive.file}: expected md5 {archive.md5}, got "
        f"{got.group(1) if got else 'another'}; the file was removed. Run the command again "
        f"to download it anew. If this happens again: {_wrong_file_advice(root_hint)}"
    )


@contextlib.contextmanager
def _quiet_pooch():
    """Keep pooch's log lines ('Downloading data from ...', its known_hash hint) off the
    terminal: its logger writes to stderr on a handler of its own, between the progress bar
    and the results, and aadlib says what matters in its own words."""
    logger = pooch.get_logger()
    was_disabled = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was_disabled


def _cached_mismatch(path: Path, expected: dict) -> str | None:
    """What differs in a cached archive (its size, else its MD5), or ``None``."""
    size = path.stat().st_size
    if expected["size"] is not None and size != expected["size"]:
        return f"{size} bytes"  # no need to hash gigabytes to know
    md5 = pooch.file_hash(str(path), alg="md5")
    return None if md5 == expected["md5"] else f"md5 {md5}"


def _check_cached(archive: Archive, path: Path, root_hint: Path) -> None:
    """Use an archive found in the cache only if it is the registry's or aadlib's own download.

    It is never replaced: aadlib did not leave it there in that state, so it may be the user's.
    """
    expected = {"size": archive.size, "md5": archive.md5} if archive.md5 else _read_receipt(path)
    if expected is None:
        raise DownloadError(
            f"{path} is already there, but no checksum is known for it and aadlib did not "
            f"download it (no {_receipt_path(path).name}), so it cannot be verified. It is left "
            f"as it is: delete or move it away to download it anew, or unzip it into {root_hint} "
            "yourself (clips unzipped by hand are used as they are)."
        )
    found = _cached_mismatch(path, expected)
    if found:
        raise ChecksumError(
            f"{path} is already there but is not the expected archive: expected "
            f"{expected['size']} bytes with md5 {expected['md5']}, found {found}. It is left as "
            "it is: delete or move it away and run the command again to download it anew."
        )
    log.info("%s is already downloaded and verified; using it", path)


def _fetch(
    archive: Archive,
    cache_dir: Path,
    base_url: str | None,
    progress: bool,
    retries: int,
    root_hint: Path,
) -> Path:
    target = cache_dir / archive.file
    if target.exists():
        _check_cached(archive, target, root_hint)
        return target
    part = cache_dir / f"{archive.file}.part"
    cache_dir.mkdir(parents=True, exist_ok=True)
    if archive.size is not None:
        done = part.stat().st_size if part.exists() else 0
        _check_space(
            cache_dir,
            archive.size * SPACE_FACTOR - done,
            f"downloading and extracting {archive.file}",
        )
    downloader = _ResumingDownloader(archive, part, root_hint, progress, retries)
    try:
        with _quiet_pooch():
            path = pooch.retrieve(
                archive.url(base_url),
                known_hash=archive.known_hash,
                fname=archive.file,
                path=cache_dir,
                downloader=downloader,
            )
    except ValueError as err:  # pooch's MD5 mismatch; it has already deleted the file
        if "hash" not in str(err):
            raise
        raise _mismatch(archive, err, root_hint) from err
    return Path(path)


def fetch_archive(
    archive: Archive,
    cache_dir: str | Path,
    base_url: str | None = None,
    progress: bool = True,
    *,
    allow_unverified: bool = False,
    retries: int = 2,
) -> Path:
    """Download one archive into ``cache_dir`` (resuming a ``.part``) and verify it.

    An archive already in ``cache_dir`` is used if it has the registry's size and MD5 (or,
    for an archive without a known checksum, those recorded when aadlib downloaded it);
    otherwise it is refused and left in place. A second call on the same ``cache_dir``
    waits for the first (see :func:`aadlib._storage.exclusive`).

    Parameters
    ----------
    archive
        An entry of :data:`ARCHIVES`.
    cache_dir
        Folder for the archive and its ``.part`` file.
    base_url
        Server to use instead of ``https://zenodo.org`` (default: ``$AADLIB_DATA_URL``).
    progress
        Show a tqdm progress bar.
    allow_unverified
        Accept an archive without a known checksum (the evaluation test set).
    retries
        How many times an interrupted transfer is resumed before giving up.

    Returns
    -------
    Path
        The verified archive.

    Raises
    ------
    DownloadError
        The server cannot be reached or answers with an error, the transfer was interrupted
        (the ``.part`` is kept for the next call), no checksum is known, or an unverifiable
        archive is already in ``cache_dir``.
    ChecksumError
        Wrong size or MD5 (announced by the server, or of the received file: it was removed;
        or of an archive already in ``cache_dir``: it was left in place).
    DiskSpaceError
        Less free space than about 2.2 times the archive.
    TimeoutError
        Another run kept ``cache_dir`` locked longer than ``$AADLIB_LOCK_TIMEOUT`` seconds.
    """
    _refuse_unverified(archive, allow_unverified)
    cache_dir = Path(cache_dir).expanduser()
    with exclusive(cache_dir, f"downloading {archive.file} into {cache_dir}"):
        return _fetch(archive, cache_dir, base_url, progress, retries, root_hint=cache_dir)


def _refuse_unverified(archive: Archive, allow_unverified: bool) -> None:
    if archive.md5 is not None:
        return
    if not allow_unverified:
        raise DownloadError(
            f"no checksum is known for {archive.file} (Zenodo record {archive.record}), so a "
            "damaged download could not be detected. Pass allow_unverified=True (command line: "
            "--allow-unverified) to download it anyway, without verification."
        )
    log.warning(
        "%s has no known checksum: it is downloaded WITHOUT verification (allow_unverified=True)",
        archive.file,
    )


# --------------------------------------------------------------------------- extraction


def _open_zip(zip_path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, EOFError) as err:
        raise BadArchiveError(
            f"{zip_path} is not a valid zip archive ({err}); it is probably truncated or damaged."
        ) from err


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why an entry could escape the target folder, or ``None`` if it cannot."""
    name = info.filename
    if not name.strip() or "\x00" in name:
        return "empty or invalid name"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in re.split(r"[\\/]+", name):
        return "'..' in the path"
    # Unix file type in the high 16 bits; a link could point anywhere once extracted.
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    return None


def _entry_target(dest: Path, info: zipfile.ZipInfo) -> Path:
    return dest.joinpath(*[p for p in re.split(r"[\\/]+", info.filename) if p not in ("", ".")])


def _shown(items: list, limit: int = 5) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(str(i) for i in items[:limit]) + more


def safe_extract(zip_path: str | Path, dest: str | Path) -> list[Path]:
    """Extract a zip archive into ``dest``, refusing entries that could escape it.

    Every entry is checked before anything is written: an absolute path, a ``..``
    component or a symbolic link makes the whole archive be refused, and so does a file
    already in ``dest`` that an entry would overwrite.

    Parameters
    ----------
    zip_path
        The archive.
    dest
        Target folder, created if needed. Files written before a read error stay there, so
        extract into an empty temporary folder (as :func:`download_dcase2020` does).

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    UnsafeArchiveError
        Some entries would land outside ``dest``; nothing was written.
    ExistingFilesError
        Some entries would overwrite files already in ``dest``; nothing was written.
    BadArchiveError
        The archive is not a zip file, is truncated, holds an entry twice, or an entry fails
        its CRC check.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    written: list[Path] = []
    with _open_zip(zip_path) as archive:
        members = archive.infolist()
        bad = [f"{i.filename!r} ({why})" for i in members if (why := _unsafe_reason(i))]
        if bad:
            raise UnsafeArchiveError(
                f"refused to extract {zip_path}: entries that would land outside {dest}: "
                f"{_shown(bad)}. Nothing was written. The archive is not a genuine DCASE archive; "
                "delete it and download it again from Zenodo."
            )
        existing = [t for i in members if not i.is_dir() and (t := _entry_target(dest, i)).exists()]
        if existing:
            raise ExistingFilesError(
                f"refused to extract {zip_path} into {dest}: it would overwrite {_shown(existing)}."
                " Nothing was written. Extract into an empty folder, or move those files away."
            )
        dest.mkdir(parents=True, exist_ok=True)
        for info in members:
            target = _entry_target(dest, info)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            _extract_entry(archive, info, target, zip_path)
            written.append(target)
    return written


def _extract_entry(archive: zipfile.ZipFile, info, target: Path, zip_path: Path) -> None:
    try:
        # "x": a second entry of the same name must not silently replace the first.
        with archive.open(info) as src, open(target, "xb") as out:
            shutil.copyfileobj(src, out, CHUNK_SIZE)
    except FileExistsError as err:
        raise BadArchiveError(
            f"{zip_path} holds {info.filename} twice; it is not a genuine DCASE archive."
        ) from err
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise BadArchiveError(
            f"{zip_path} is damaged: {info.filename} cannot be read ({err})."
        ) from err


# ------------------------------------------------------------------------ clips by kind

#: Clip names of every set: labeled ``normal_id_01_00000000.wav`` (development and
#: additional training sets) and unlabeled ``id_01_00000000.wav`` (evaluation test set).
_ANY_CLIP_NAME = re.compile(r"^(?:(normal|anomaly)_)?id_(\d{2})_(\d{8})\.wav$")
#: The label of an evaluation test clip, whose name does not say it.
UNLABELED = "unlabeled"
_LAYOUTS = {
    "dev": "<root>/<machine_type>/{train,test}/{normal,anomaly}_id_XX_NNNNNNNN.wav",
    "additional_train": "<root>/<machine_type>/train/normal_id_XX_NNNNNNNN.wav",
    "eval_test": "<root>/<machine_type>/test/id_XX_NNNNNNNN.wav",
}
_CLIP_COLUMNS = ["machine_type", "split", "label", "machine_id", "index", "path"]


def _clips_in(folder: Path) -> list[dict]:
    rows = []
    for path in folder.iterdir() if folder.is_dir() else ():
        match = _ANY_CLIP_NAME.match(path.name)
        if match and path.is_file():
            label, machine_id, index = match.groups()
            label = label or UNLABELED
            rows.append(
                {"label": label, "machine_id": int(machine_id), "index": int(index), "path": path}
            )
    return rows


def _kind_clips(root: Path, machine_types: Iterable[str], kind: str) -> pd.DataFrame:
    """The clips of one kind of set under a root: its splits, named as that kind names them."""
    rows = [
        {"machine_type": machine_type, "split": split} | row
        for machine_type in machine_types
        for split in _REQUIRED_SPLITS[kind]
        for row in _clips_in(root / machine_type / split)
    ]
    table = pd.DataFrame(rows, columns=_CLIP_COLUMNS)
    # Labeled names in an evaluation test folder (or the reverse) belong to another set.
    table = table[(table.label == UNLABELED) == (kind == "eval_test")]
    table = table.sort_values(["machine_type", "split", "machine_id", "label", "index"])
    return table.reset_index(drop=True)


def downloaded_clips(
    root: str | Path, kind: str = "dev", machine_types: str | Iterable[str] | None = None
) -> pd.DataFrame:
    """Table of the clips of one set under a data root, labeled or not, one row a clip.

    Unlike :func:`aadlib.data.list_clips`, it reads every kind of set: the development set
    (``train`` and ``test``), the additional training set (``train``) and the evaluation
    test set (``test``, whose names ``id_01_00000000.wav`` carry no label).

    Parameters
    ----------
    root
        The data root given to :func:`download_dcase2020`.
    kind
        ``"dev"``, ``"additional_train"`` or ``"eval_test"``.
    machine_types
        One type, several, or ``None`` for all six.

    Returns
    -------
    pandas.DataFrame
        Columns ``machine_type``, ``split``, ``label`` (``"normal"``, ``"anomaly"`` or
        ``"unlabeled"``), ``machine_id``, ``index``, ``path``; sorted by type, split, ID,
        label and index.

    Raises
    ------
    DataLayoutError
        No clip of that kind under the root.
    ValueError
        An unknown ``kind`` or machine type.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    types = _check_types(machine_types)
    root = Path(root).expanduser()
    table = _kind_clips(root, types, kind)
    if table.empty:
        raise DataLayoutError(
            f"no {kind} clips found under {root}: expected {_LAYOUTS[kind]} with machine types "
            f"among {', '.join(types)}. Run `aadlib download --kind {kind}` for that root."
        )
    return table


def _split_counts(root: Path, archive: Archive) -> dict[str, int]:
    clips = _kind_clips(root, [archive.machine_type], archive.kind)
    return {split: int((clips.split == split).sum()) for split in SPLITS}


# ------------------------------------------------------------------ markers, install


def _marker_name(kind: str) -> str:
    return ".aadlib-complete.json" if kind == "dev" else f".aadlib-complete-{kind}.json"


def _pending_name(kind: str) -> str:
    return f".aadlib-pending-{kind}"


def marker_path(root: str | Path, machine_type: str, kind: str = "dev") -> Path:
    """Where the completion marker of one machine type and set lives."""
    return Path(root).expanduser() / machine_type / _marker_name(kind)


def is_complete(root: str | Path, machine_type: str, kind: str = "dev") -> bool:
    """Whether ``<root>/<machine_type>`` holds a complete, verified extraction.

    Only the marker written after a checked extraction counts: a folder without it, or one
    whose move into place was interrupted, is never taken for complete.
    """
    folder = Path(root).expanduser() / machine_type
    if (folder / _pending_name(kind)).exists():
        return False
    try:
        data = json.loads((folder / _marker_name(kind)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(data, dict)
        and data.get("machine_type") == machine_type
        and data.get("kind") == kind
    )


def _present_as_is(root: Path, archive: Archive) -> bool:
    """Whether clips of this set are already under the root without a marker (unzipped by hand)."""
    folder = root / archive.machine_type
    # A pending file means our own move into place was cut short: not a hand-made set.
    if not folder.is_dir() or any(folder.glob(".aadlib-pending-*")):
        return False
    clips = _kind_clips(root, [archive.machine_type], archive.kind)
    if archive.kind == "dev":
        return {"train", "test"} <= set(clips.split)
    if archive.kind == "additional_train":
        # Training clips of the development IDs are the development set's, not these.
        return not clips.machine_id.isin(DEV_IDS[archive.machine_type]).all()
    return not clips.empty


def _warn_if_short(root: Path, archive: Archive) -> None:
    counts = _split_counts(root, archive)
    for split, expected in (("train", archive.train_files), ("test", archive.test_files)):
        if expected is not None and counts[split] < expected:
            log.warning(
                "%s holds %d %s clips, %s holds %d; delete the folder and run again to "
                "download the complete archive",
                root / archive.machine_type,
                counts[split],
                split,
                archive.file,
                expected,
            )


def _check_contents(archive: Archive, extracted: Path) -> dict[str, int]:
    """The clip counts of an extracted archive, checked against the registry and its kind."""
    if not (extracted / archive.machine_type).is_dir():
        raise BadArchiveError(
            f"{archive.file} holds no {archive.machine_type}/ folder; it is not the expected "
            "DCASE archive."
        )
    counts = _split_counts(extracted, archive)
    expected = {"train": archive.train_files, "test": archive.test_files}
    for split in _REQUIRED_SPLITS[archive.kind]:
        want = expected[split]
        wrong = counts[split] == 0 if want is None else counts[split] != want
        if wrong:
            raise BadArchiveError(
                f"{archive.file} extracted {counts[split]} {split} clips in the layout "
                f"{_LAYOUTS[archive.kind]}, expected {'at least one' if want is None else want}."
            )
    return counts


def _merge(src: Path, dst: Path) -> None:
    for child in src.iterdir():
        target = dst / child.name
        if child.is_dir() and target.is_dir():
            _merge(child, target)
        else:
            os.replace(child, target)


def _replaced_by_merge(src: Path, dst: Path) -> list[Path]:
    """What under ``dst`` moving ``src`` onto it would replace with something else."""
    clashes = []
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if not (target.exists() or target.is_symlink()):
            continue
        if path.is_dir() and target.is_dir() and not target.is_symlink():
            continue
        if path.is_file() and target.is_file() and filecmp.cmp(path, target, shallow=False):
            continue  # the same bytes (an earlier, interrupted merge of this archive)
        clashes.append(target)
    return clashes


def _refuse_overwriting(archive: Archive, src: Path, dst: Path) -> None:
    clashes = _replaced_by_merge(src, dst) if dst.exists() else []
    if clashes:
        raise ExistingFilesError(
            f"{dst} already holds files that {archive.file} would replace with other contents: "
            f"{_shown(clashes)}. They are not this archive's, so nothing was changed. Move them "
            f"away (or delete {dst} if nothing in it is yours) and run the command again."
        )


def _move_into_place(src: Path, dst: Path, pending: str) -> None:
    """Move an extracted type folder to ``dst``, flagged as pending until the marker exists."""
    (src / pending).touch()
    if not dst.exists():
        os.replace(src, dst)  # one rename: the folder appears whole or not at all
        return
    # Merging into an existing folder (e.g. evaluation test clips beside additional training
    # ones): flag the destination first, so an interrupted merge is never taken for a set.
    os.replace(src / pending, dst / pending)
    _merge(src, dst)


def _write_marker(archive: Archive, dest: Path, counts: dict[str, int], md5: str) -> None:
    data = {
        "archive": archive.file,
        "record": archive.record,
        "kind": archive.kind,
        "machine_type": archive.machine_type,
        "md5": md5,
        "md5_verified": archive.md5 is not None,
        "train_files": counts["train"],
        "test_files": counts["test"],
        "completed_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_text(dest / _marker_name(archive.kind), json.dumps(data, indent=2) + "\n")


def _install(archive: Archive, zip_path: Path, root: Path, md5: str) -> dict[str, int]:
    """Extract into a temporary folder inside the root, check, move into place, mark."""
    with _open_zip(zip_path) as zf:
        unpacked = sum(info.file_size for info in zf.infolist())
    _check_space(root, unpacked * 1.05, f"extracting {archive.file}")
    # Inside the root, so the final move is a rename on the same file system.
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{archive.machine_type}-", dir=root))
    try:
        safe_extract(zip_path, tmp)
        counts = _check_contents(archive, tmp)
        dest = root / archive.machine_type
        _refuse_overwriting(archive, tmp / archive.machine_type, dest)
        _move_into_place(tmp / archive.machine_type, dest, _pending_name(archive.kind))
        _write_marker(archive, dest, counts, md5)
        (dest / _pending_name(archive.kind)).unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return counts


def _refuse_mixing(root: Path, archive: Archive) -> None:
    """Keep the development set apart from the evaluation sets, whose clips would mix in."""
    where = root / archive.machine_type
    others = [k for k in KINDS if k != archive.kind and (where / _marker_name(k)).exists()]
    clash = [k for k in others if "dev" in (k, archive.kind)]
    if clash:
        raise DownloadError(
            f"{where} already holds the {clash[0]} set; extracting {archive.file} there would mix "
            f"its clips into it. Download the {archive.kind} set into another root (the "
            "development set in one, the additional training and evaluation test sets in another)."
        )


def _nothing_to_write(root: Path, archive: Archive) -> bool:
    """Whether an archive's clips are all there already (complete, or unzipped by hand)."""
    if is_complete(root, archive.machine_type, archive.kind):
        return True
    _refuse_mixing(root, archive)
    return _present_as_is(root, archive)


def _ensure(
    archive: Archive,
    root: Path,
    base_url: str | None,
    keep_archives: bool,
    progress: bool,
    allow_unverified: bool,
    retries: int,
) -> None:
    """Make one archive's clips available under the root."""
    where = root / archive.machine_type
    if is_complete(root, archive.machine_type, archive.kind):
        log.info("%s is complete (%s); nothing to download", where, _marker_name(archive.kind))
        _warn_if_short(root, archive)  # clips deleted since: the marker alone would hide it
        return
    _refuse_mixing(root, archive)
    if _present_as_is(root, archive):
        log.info("%s already holds %s clips (no marker); used as is", where, archive.kind)
        _warn_if_short(root, archive)
        return
    _refuse_unverified(archive, allow_unverified)
    for stale in root.glob(f"{_TMP_PREFIX}{archive.machine_type}-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by an extraction that was killed
    zip_path = _fetch(archive, root / ARCHIVE_DIR, base_url, progress, retries, root_hint=root)
    md5 = archive.md5 or _read_receipt(zip_path)["md5"]
    try:
        counts = _install(archive, zip_path, root, md5)
    except BadArchiveError as err:
        _remove_archive(zip_path)
        raise BadArchiveError(
            f"{err} The archive was removed and nothing was installed in {where}; run the command "
            "again to download it anew. If this happens again, the archive on the server differs "
            "from the one the registry describes."
        ) from err
    log.info(
        "%s: %d train and %d test clips in %s", archive.file, counts["train"], counts["test"], where
    )
    if not keep_archives:
        _remove_archive(zip_path)


def _remove_archive(zip_path: Path) -> None:
    zip_path.unlink(missing_ok=True)
    _receipt_path(zip_path).unlink(missing_ok=True)


def download_dcase2020(
    root: str | Path,
    machine_types: str | Iterable[str] | None = None,
    kind: str = "dev",
    base_url: str | None = None,
    keep_archives: bool = False,
    progress: bool = True,
    allow_unverified: bool = False,
    *,
    retries: int = 2,
) -> Path:
    """Download and unpack DCASE 2020 Task 2 archives into ``<root>/<machine_type>/``.

    Types already complete (marker present) or unzipped by hand are skipped offline.

    Parameters
    ----------
    root
        Data root; created if needed. Archives are cached in ``<root>/.archives/``.
    machine_types
        One type, several, or ``None`` for all six.
    kind
        ``"dev"`` (development set), ``"additional_train"`` or ``"eval_test"``. Put the
        last two in a root of their own.
    base_url
        Server to use instead of ``https://zenodo.org`` (default: ``$AADLIB_DATA_URL``).
    keep_archives
        Keep the verified archives after extraction (about 8 GB for the development set).
    allow_unverified
        Download archives whose checksum is unknown (the evaluation test set).
    progress, retries
        Show tqdm progress bars; how many times an interrupted transfer is resumed.

    Returns the data root, ready for :func:`aadlib.data.list_clips`.

    Raises
    ------
    DownloadError
        Or a subclass (:class:`ChecksumError`, :class:`BadArchiveError`,
        :class:`UnsafeArchiveError`, :class:`ExistingFilesError`, :class:`DiskSpaceError`,
        :class:`UnknownMachineTypeError`): what failed and what to do.
    TimeoutError
        Another run kept the root locked longer than ``$AADLIB_LOCK_TIMEOUT`` seconds.
    """
    todo = archives_for(machine_types, kind)
    root = Path(root).expanduser().absolute()
    options = (base_url, keep_archives, progress, allow_unverified, retries)
    if all(_nothing_to_write(root, archive) for archive in todo):
        # Reading needs no lock, so a complete set may be read-only.
        for archive in todo:
            _ensure(archive, root, *options)
        return root
    # One run per data root: a second waits instead of writing the same .part files.
    with exclusive(root, f"downloading into {root}"):
        for archive in todo:
            _ensure(archive, root, *options)
        cache = root / ARCHIVE_DIR
        if cache.is_dir() and not any(cache.iterdir()):
            cache.rmdir()
    return root
