"""Tests of aadlib.download against a local HTTP server on 127.0.0.1 (no internet).

The server supports Range requests and can drop a connection after N bytes, ignore Range
or send no Content-Length, which is what the resume tests need; the stdlib
SimpleHTTPRequestHandler cannot.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import shutil
import socket
import stat
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pooch
import pytest
import soundfile as sf

from aadlib import download
from aadlib._storage import exclusive  # a private I/O helper, tested or held here directly
from aadlib.data import MACHINE_TYPES, DataLayoutError, list_clips
from aadlib.download import (
    Archive,
    BadArchiveError,
    ChecksumError,
    DiskSpaceError,
    DownloadError,
    UnknownMachineTypeError,
    UnsafeArchiveError,
    archives_for,
    download_dcase2020,
    is_complete,
    safe_extract,
)
from aadlib.published import table1

DEV_RECORD = 3678171
N_TRAIN, N_NORMAL, N_ANOMALY = 3, 2, 2


# ------------------------------------------------------------------------ test server


@dataclass
class ServerState:
    """What the server serves, how it misbehaves, and the requests it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    drop_after: int | None = None  # bytes of the body sent before the connection is dropped
    drops_left: int = 0  # how many responses are dropped that way
    ignore_range: bool = False
    no_length: bool = False  # no Content-Length: the body ends when the connection closes
    lock: threading.Lock = field(default_factory=threading.Lock)


class RangeHandler(BaseHTTPRequestHandler):
    """GET with ``Range: bytes=N-`` support, dropped connections and a Range-ignoring mode."""

    protocol_version = "HTTP/1.0"  # one request per connection: a drop ends just that response

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        state: ServerState = self.server.state
        path, rng = urlsplit(self.path).path, self.headers.get("Range")
        with state.lock:
            state.requests.append((path, rng))
            drop = state.drops_left > 0 and state.drop_after is not None
            state.drops_left -= int(drop)
        body = state.files.get(path)
        if body is None:
            self.send_error(404)
            return
        start, status = 0, 200
        if rng and not state.ignore_range:
            start, status = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1)), 206
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        payload = body[start:]
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Type", "application/zip")
        if not state.no_length:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload[: state.drop_after] if drop else payload)
        self.wfile.flush()


@pytest.fixture
def server():
    """A threaded HTTP server on 127.0.0.1 (free port), shut down after the test."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.daemon_threads = True
    httpd.state = ServerState()
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    httpd.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# ----------------------------------------------------------------------- test archives


def wav_bytes(seed: int, seconds: float = 0.1, sr: int = 16_000) -> bytes:
    """A tiny 16 kHz mono WAV of noise (noise, so the zip does not shrink it)."""
    y = np.random.default_rng(seed).uniform(-0.5, 0.5, int(seconds * sr)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def clip_names(machine_type: str) -> list[str]:
    names = [f"{machine_type}/train/normal_id_01_{i:08d}.wav" for i in range(N_TRAIN)]
    names += [f"{machine_type}/test/normal_id_01_{i:08d}.wav" for i in range(N_NORMAL)]
    names += [f"{machine_type}/test/anomaly_id_01_{i:08d}.wav" for i in range(N_ANOMALY)]
    return names


def make_zip(names: list[str], extra: list[tuple[zipfile.ZipInfo | str, bytes]] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for seed, name in enumerate(names):
            zf.writestr(name, wav_bytes(seed))
        for info, data in extra:
            zf.writestr(info, data)
    return buf.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@dataclass
class Setup:
    root: Path
    server: ThreadingHTTPServer
    data: bytes

    @property
    def state(self) -> ServerState:
        return self.server.state

    def serve(self, data: bytes, file: str = "dev_data_fan.zip", record: int = DEV_RECORD) -> None:
        self.state.files[f"/record/{record}/files/{file}"] = data

    def run(self, root: Path | None = None, **kwargs) -> Path:
        kwargs = {
            "machine_types": ["fan"],
            "base_url": self.server.base_url,
            "progress": False,
        } | kwargs
        return download_dcase2020(root or self.root, **kwargs)


def register(monkeypatch, data: bytes, file="dev_data_fan.zip", kind="dev", **fields) -> Archive:
    """Point the registry entry of ``file`` at a test archive (its real size and md5)."""
    entry = {
        "record": DEV_RECORD,
        "file": file,
        "size": len(data),
        "md5": md5(data),
        "machine_type": "fan",
        "kind": kind,
        "train_files": N_TRAIN,
        "test_files": N_NORMAL + N_ANOMALY,
    } | fields
    archive = Archive(**entry)
    monkeypatch.setitem(download.ARCHIVES, file, archive)
    return archive


@pytest.fixture
def dcase(tmp_path, server, monkeypatch) -> Setup:
    """A fan development archive in the real layout, registered and served on 127.0.0.1."""
    # Small chunks, so a dropped transfer leaves bytes in .part; no waiting between retries.
    monkeypatch.setattr(download, "CHUNK_SIZE", 1024)
    monkeypatch.setattr(download, "RETRY_WAIT", 0.0)
    monkeypatch.delenv(download.BASE_URL_ENV, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # never send test traffic to a proxy
    data = make_zip(clip_names("fan"))
    register(monkeypatch, data)
    setup = Setup(root=tmp_path / "data", server=server, data=data)
    setup.serve(data)
    return setup


def leftovers(root: Path) -> list[Path]:
    """Temporary extraction folders left in the root."""
    return list(root.glob(".aadlib-extract-*")) if root.exists() else []


# ---------------------------------------------------------------------------- registry


def test_registry_has_every_dev_archive_and_matches_table1():
    # Table 1 with its documented erratum corrected (aadlib.published.PAPER_ERRATA).
    totals = table1(consistent=True).groupby("machine_type")[["train_files", "test_files"]].sum()
    for archive in archives_for(kind="dev"):
        assert archive.file == f"dev_data_{archive.machine_type}.zip"
        assert archive.file in download.ARCHIVES and archive.record == DEV_RECORD
        assert re.fullmatch(r"[0-9a-f]{32}", archive.md5) and archive.size > 0
        for column in ("train_files", "test_files"):
            assert getattr(archive, column) == int(totals.loc[archive.machine_type, column])
    assert [a.machine_type for a in archives_for()] == list(MACHINE_TYPES)
    for archive in archives_for(kind="additional_train"):
        assert archive.record == 3727685 and re.fullmatch(r"[0-9a-f]{32}", archive.md5)
    for archive in archives_for(kind="eval_test"):
        assert archive.record == 3841772 and archive.md5 is None and archive.size is None


def test_urls_default_env_and_template(monkeypatch):
    monkeypatch.delenv(download.BASE_URL_ENV, raising=False)
    fan = download.ARCHIVES["dev_data_fan.zip"]
    assert fan.url() == "https://zenodo.org/record/3678171/files/dev_data_fan.zip?download=1"
    monkeypatch.setenv(download.BASE_URL_ENV, "http://127.0.0.1:9/")
    assert fan.url() == "http://127.0.0.1:9/record/3678171/files/dev_data_fan.zip?download=1"
    assert fan.url("http://mirror/{file}") == "http://mirror/dev_data_fan.zip"


def test_unknown_machine_type_and_kind(tmp_path):
    with pytest.raises(UnknownMachineTypeError, match=r"unknown machine type 'Fan'.*'fan'"):
        download_dcase2020(tmp_path, ["Fan"], progress=False)
    with pytest.raises(ValueError, match="ToyCar, ToyConveyor"):
        archives_for(["drill"])
    with pytest.raises(ValueError, match="kind must be one of"):
        archives_for(kind="test")
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------- success


def test_download_extracts_layout_and_writes_marker(dcase):
    root = dcase.run()
    assert root == dcase.root.absolute()
    marker = json.loads((root / "fan" / ".aadlib-complete.json").read_text())
    assert marker["archive"] == "dev_data_fan.zip" and marker["md5"] == md5(dcase.data)
    assert (marker["train_files"], marker["test_files"]) == (N_TRAIN, N_NORMAL + N_ANOMALY)
    assert is_complete(root, "fan")
    clips = list_clips(root, "fan")
    assert (clips.split == "train").sum() == N_TRAIN
    assert set(clips[clips.split == "test"].label) == {"normal", "anomaly"}
    assert not (root / ".archives").exists() and not leftovers(root)  # archive deleted
    assert dcase.state.requests == [("/record/3678171/files/dev_data_fan.zip", None)]


def test_keep_archives_and_base_url_from_environment(dcase, monkeypatch):
    monkeypatch.setenv(download.BASE_URL_ENV, dcase.server.base_url)
    download_dcase2020(dcase.root, "fan", keep_archives=True, progress=False)
    kept = dcase.root / ".archives" / "dev_data_fan.zip"
    assert md5(kept.read_bytes()) == md5(dcase.data) and is_complete(dcase.root, "fan")


def test_already_complete_set_makes_no_request(dcase):
    dcase.run()
    dcase.state.requests.clear()
    dcase.state.files.clear()  # a request would now fail with 404
    dcase.run()
    assert dcase.state.requests == []


def test_set_unzipped_by_hand_is_used_as_is(dcase, caplog):
    with zipfile.ZipFile(io.BytesIO(dcase.data)) as zf:
        zf.extractall(dcase.root)
    with caplog.at_level(logging.INFO, logger="aadlib.download"):
        dcase.run()
    assert dcase.state.requests == []
    assert "used as is" in caplog.text
    assert not is_complete(dcase.root, "fan")  # no marker is invented for it
    assert len(list_clips(dcase.root, "fan")) == N_TRAIN + N_NORMAL + N_ANOMALY


def test_folder_left_pending_is_not_taken_for_complete(dcase):
    with zipfile.ZipFile(io.BytesIO(dcase.data)) as zf:
        zf.extractall(dcase.root)
    (dcase.root / "fan" / ".aadlib-pending-dev").touch()  # a move into place that was cut short
    assert not is_complete(dcase.root, "fan")
    dcase.run()
    assert len(dcase.state.requests) == 1 and is_complete(dcase.root, "fan")
    assert not (dcase.root / "fan" / ".aadlib-pending-dev").exists()


# ------------------------------------------------------------------------------ resume


def test_interrupted_download_resumes_with_range(dcase):
    dcase.state.drop_after, dcase.state.drops_left = 8000, 1
    with pytest.raises(DownloadError, match=r"interrupted.*run the command again to resume"):
        dcase.run(retries=0, keep_archives=True)
    part = dcase.root / ".archives" / "dev_data_fan.zip.part"
    done = part.stat().st_size
    assert 0 < done < len(dcase.data)
    assert not (dcase.root / "fan").exists() and not is_complete(dcase.root, "fan")

    dcase.run(retries=0, keep_archives=True)
    assert dcase.state.requests[-1][1] == f"bytes={done}-"
    kept = dcase.root / ".archives" / "dev_data_fan.zip"
    assert md5(kept.read_bytes()) == md5(dcase.data) and not part.exists()
    assert is_complete(dcase.root, "fan")


def test_interruption_is_resumed_within_one_call(dcase):
    dcase.state.drop_after, dcase.state.drops_left = 5000, 1
    dcase.run(retries=2, progress=True)  # the tqdm bar restarts at the resumed offset
    assert [r[1] is not None for r in dcase.state.requests] == [False, True]
    assert is_complete(dcase.root, "fan")


def test_server_ignoring_range_gets_a_full_download(dcase):
    dcase.state.drop_after, dcase.state.drops_left, dcase.state.ignore_range = 8000, 1, True
    with pytest.raises(DownloadError, match="interrupted"):
        dcase.run(retries=0)
    dcase.run(retries=0, keep_archives=True)
    assert dcase.state.requests[-1][1] is not None  # a Range was asked for, and ignored
    kept = dcase.root / ".archives" / "dev_data_fan.zip"
    assert kept.read_bytes() == dcase.data  # restarted, not appended
    assert is_complete(dcase.root, "fan")


# ------------------------------------------------------------------------------ errors


def test_checksum_mismatch_removes_the_file(dcase, monkeypatch):
    register(monkeypatch, dcase.data, md5="0" * 32)
    with pytest.raises(ChecksumError) as err:
        dcase.run()
    message = str(err.value)
    assert "checksum mismatch for dev_data_fan.zip: expected md5 " + "0" * 32 in message
    assert f"got {md5(dcase.data)}" in message and "removed" in message
    assert list((dcase.root / ".archives").iterdir()) == []
    assert not (dcase.root / "fan").exists() and not is_complete(dcase.root, "fan")


def test_size_mismatch_removes_the_file(dcase, monkeypatch):
    register(monkeypatch, dcase.data, size=len(dcase.data) - 10)
    with pytest.raises(ChecksumError, match="size mismatch for dev_data_fan.zip"):
        dcase.run()
    assert list((dcase.root / ".archives").iterdir()) == []


def test_truncated_archive_leaves_nothing_that_looks_complete(dcase, monkeypatch):
    truncated = dcase.data[: len(dcase.data) // 2]
    register(monkeypatch, truncated)  # its md5 and size match, so only unzipping can tell
    dcase.serve(truncated)
    with pytest.raises(BadArchiveError, match=r"not a valid zip archive.*run the command again"):
        dcase.run()
    assert not is_complete(dcase.root, "fan")
    assert not (dcase.root / "fan").exists() and not leftovers(dcase.root)
    assert not (dcase.root / ".archives" / "dev_data_fan.zip").exists()


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix, whose mode bits mark the entry as a link
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_malicious_entries_are_refused_before_writing(dcase, monkeypatch, tmp_path, kind):
    outside = tmp_path / "outside" / "evil.wav"
    entry = {
        "dotdot": ("fan/train/../../../evil.wav", b"x"),
        "absolute": (str(outside), b"x"),
        "symlink": (_symlink("fan/train/link.wav"), str(outside).encode()),
    }[kind]
    evil = make_zip(clip_names("fan"), [entry])
    register(monkeypatch, evil)
    dcase.serve(evil)
    with pytest.raises(UnsafeArchiveError, match=r"refused to extract \S*dev_data_fan\.zip"):
        dcase.run()
    assert not [p for p in tmp_path.rglob("*") if p.name in ("evil.wav", "link.wav")]
    assert not (dcase.root / "fan").exists() and not leftovers(dcase.root)
    # safe_extract itself writes nothing at all into its target.
    dest = tmp_path / "dest"
    zip_path = tmp_path / "evil.zip"
    zip_path.write_bytes(evil)
    with pytest.raises(UnsafeArchiveError):
        safe_extract(zip_path, dest)
    assert not dest.exists()


def test_no_network_says_what_to_do(dcase):
    with socket.socket() as sock:  # a port that was free a moment ago: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError) as err:
        dcase.run(base_url=f"http://127.0.0.1:{port}")
    message = str(err.value)
    assert "could not reach 127.0.0.1" in message
    assert f"download the archives by hand into {dcase.root.absolute()}" in message


def test_http_error_names_the_status(dcase):
    dcase.state.files.clear()
    with pytest.raises(DownloadError, match=r"answered 404.*AADLIB_DATA_URL"):
        dcase.run()


def test_not_enough_disk_space(dcase, monkeypatch):
    monkeypatch.setattr(download, "_free_bytes", lambda folder: 1000)
    with pytest.raises(DiskSpaceError, match=r"needs about .* but only 1.0 kB is free"):
        dcase.run()
    assert dcase.state.requests == []


# ---------------------------------------------------------------- evaluation test set


def test_eval_test_needs_allow_unverified(dcase, monkeypatch, caplog):
    file = "eval_data_test_fan.zip"
    data = make_zip([f"fan/test/id_01_{i:08d}.wav" for i in range(3)])
    register(monkeypatch, data, file=file, kind="eval_test", record=3841772, size=None, md5=None,
             train_files=None, test_files=None)  # fmt: skip
    dcase.serve(data, file=file, record=3841772)
    with pytest.raises(DownloadError, match="allow_unverified=True"):
        dcase.run(kind="eval_test")
    assert dcase.state.requests == []
    with caplog.at_level(logging.WARNING, logger="aadlib.download"):
        dcase.run(kind="eval_test", allow_unverified=True)
    assert "WITHOUT verification" in caplog.text
    assert is_complete(dcase.root, "fan", kind="eval_test")
    marker = json.loads((dcase.root / "fan" / ".aadlib-complete-eval_test.json").read_text())
    assert marker["md5"] == md5(data) and marker["md5_verified"] is False
    assert len(list((dcase.root / "fan" / "test").glob("id_01_*.wav"))) == 3
    assert not (dcase.root / ".archives").exists()  # the archive and its receipt are deleted


def test_development_and_evaluation_sets_are_not_mixed(dcase, monkeypatch):
    dcase.run()
    file = "eval_data_train_fan.zip"
    data = make_zip([f"fan/train/normal_id_01_{i:08d}.wav" for i in range(2)])
    register(monkeypatch, data, file=file, kind="additional_train", record=3727685,
             train_files=2, test_files=None)  # fmt: skip
    dcase.serve(data, file=file, record=3727685)
    with pytest.raises(DownloadError, match="already holds the dev set.*another root"):
        dcase.run(kind="additional_train")
    assert len(dcase.state.requests) == 1
    download_dcase2020(dcase.root / "eval", "fan", kind="additional_train",
                       base_url=dcase.server.base_url, progress=False)  # fmt: skip
    assert is_complete(dcase.root / "eval", "fan", kind="additional_train")
    assert not is_complete(dcase.root / "eval", "fan")


# ------------------------------------------------- sizes: what the server announces


@pytest.mark.parametrize("ignore_range", [False, True])
def test_server_file_of_another_size_is_an_error_not_an_interruption(
    dcase, monkeypatch, ignore_range
):
    # The registry expects more bytes than the server has: a complete transfer must not pass
    # for an interrupted one, resumed on every run, whether the server honours Range or not.
    register(monkeypatch, dcase.data, size=len(dcase.data) + 100)
    part = dcase.root / ".archives" / "dev_data_fan.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(dcase.data[:1000])  # left by an earlier, interrupted run
    dcase.state.ignore_range = ignore_range
    with pytest.raises(ChecksumError) as err:
        dcase.run(retries=2)
    message = str(err.value)
    assert f"size mismatch for dev_data_fan.zip: expected {len(dcase.data) + 100} bytes" in message
    assert f"the server announces {len(dcase.data)} bytes" in message
    assert "AADLIB_DATA_URL" in message and "resume" not in message
    assert dcase.state.requests == [("/record/3678171/files/dev_data_fan.zip", "bytes=1000-")]
    assert list(part.parent.iterdir()) == []  # the .part is removed
    assert not (dcase.root / "fan").exists()


def test_transfer_of_unannounced_length_and_wrong_size_is_removed(dcase, monkeypatch):
    register(monkeypatch, dcase.data, size=len(dcase.data) + 100)
    dcase.state.no_length = True  # the body ends when the connection closes: complete
    expected = rf"expected {len(dcase.data) + 100} bytes, received {len(dcase.data)}; the file was"
    with pytest.raises(ChecksumError, match=rf"dev_data_fan\.zip: {expected} removed"):
        dcase.run(retries=2)
    assert len(dcase.state.requests) == 1
    assert list((dcase.root / ".archives").iterdir()) == []


def test_transfer_of_unannounced_length_and_right_size_is_used(dcase):
    dcase.state.no_length = True
    dcase.run()
    assert is_complete(dcase.root, "fan")


# ------------------------------------------------------------------- sets of each kind

EVAL_TEST = dict(file="eval_data_test_fan.zip", kind="eval_test", record=3841772, size=None,
                 md5=None, train_files=None, test_files=None)  # fmt: skip
ADDITIONAL_TRAIN = dict(file="eval_data_train_fan.zip", kind="additional_train",
                        record=3727685, train_files=2, test_files=None)  # fmt: skip


def serve_set(dcase: Setup, monkeypatch, names: list[str], entry: dict) -> bytes:
    """Register and serve an archive of ``names`` under the registry entry ``entry``."""
    data = make_zip(names)
    register(monkeypatch, data, **entry)
    dcase.serve(data, file=entry["file"], record=entry["record"])
    return data


def eval_test_names(n: int = 3) -> list[str]:
    return [f"fan/test/id_01_{i:08d}.wav" for i in range(n)]


def test_downloaded_clips_lists_every_kind_unlabeled_included(dcase, monkeypatch):
    train_names = [f"fan/train/normal_id_01_{i:08d}.wav" for i in range(2)]
    serve_set(dcase, monkeypatch, train_names, ADDITIONAL_TRAIN)
    serve_set(dcase, monkeypatch, eval_test_names(), EVAL_TEST)
    dcase.run()
    eval_root = dcase.root / "eval"
    for kind in ("additional_train", "eval_test"):
        download_dcase2020(eval_root, "fan", kind=kind, base_url=dcase.server.base_url,
                           progress=False, allow_unverified=True)  # fmt: skip

    test = download.downloaded_clips(eval_root, "eval_test")
    assert list(test.columns) == ["machine_type", "split", "label", "machine_id", "index", "path"]
    assert len(test) == 3 and set(test.split) == {"test"} and set(test.label) == {"unlabeled"}
    assert set(test.machine_id) == {1} and list(test["index"]) == [0, 1, 2]
    train = download.downloaded_clips(eval_root, "additional_train", "fan")
    assert len(train) == 2 and set(train.split) == {"train"} and set(train.label) == {"normal"}
    pd.testing.assert_frame_equal(download.downloaded_clips(dcase.root), list_clips(dcase.root))
    with pytest.raises(DataLayoutError, match=r"no eval_test clips .*test/id_XX_NNNNNNNN\.wav"):
        download.downloaded_clips(dcase.root, "eval_test")  # the development root has none


@pytest.mark.parametrize("kind", ["eval_test", "dev"])
def test_clips_named_as_another_kind_are_a_bad_archive(dcase, monkeypatch, kind):
    if kind == "eval_test":  # labeled names, where the evaluation test set has none
        serve_set(dcase, monkeypatch, [f"fan/test/normal_id_01_{i:08d}.wav" for i in range(3)],
                  EVAL_TEST)  # fmt: skip
        expected = r"extracted 0 test clips in the layout <root>/<machine_type>/test/id_XX"
    else:  # unlabeled training clips, where the development set has labeled ones
        names = [n.replace("train/normal_id", "train/id") for n in clip_names("fan")]
        serve_set(dcase, monkeypatch, names, {"file": "dev_data_fan.zip", "record": DEV_RECORD})
        expected = r"extracted 0 train clips in the layout .*, expected 3"
    with pytest.raises(BadArchiveError, match=expected):
        dcase.run(kind=kind, allow_unverified=True)
    assert not is_complete(dcase.root, "fan", kind) and not (dcase.root / "fan").exists()
    assert not leftovers(dcase.root)


# ------------------------------------------------------------ what the terminal shows


class Collect(logging.Handler):
    """Keeps the messages logged to the logger it is added to; ``seen`` is set by ``wanted``."""

    def __init__(self, wanted: str | None = None) -> None:
        super().__init__()
        self.messages: list[str] = []
        self.wanted = wanted
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        if self.wanted and self.wanted in self.messages[-1]:
            self.seen.set()


def test_pooch_log_lines_do_not_reach_the_user(dcase, monkeypatch):
    serve_set(dcase, monkeypatch, eval_test_names(), EVAL_TEST)
    pooch_log = pooch.get_logger()
    seen = Collect()
    pooch_log.addHandler(seen)
    try:
        dcase.run()  # pooch would say 'Downloading data from ...'
        dcase.run(root=dcase.root / "eval", kind="eval_test", allow_unverified=True)  # + known_hash
    finally:
        pooch_log.removeHandler(seen)
    assert seen.messages == []
    assert not pooch_log.disabled  # as it was: pooch is quiet only while aadlib calls it


@pytest.mark.parametrize("progress", [True, False])
def test_one_progress_bar_per_archive_even_when_resumed(dcase, monkeypatch, progress):
    bars = []

    class CountedBar(download.tqdm):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.shown = not self.disable  # close() disables every bar
            bars.append(self)

    monkeypatch.setattr(download, "tqdm", CountedBar)
    dcase.state.drop_after, dcase.state.drops_left = 5000, 1
    dcase.run(retries=2, progress=progress)
    assert len(dcase.state.requests) == 2 and len(bars) == 1
    assert bars[0].shown is progress
    if progress:
        assert bars[0].n == len(dcase.data)  # the resumed bytes are not counted twice


# ------------------------------------------------------------------- concurrent runs


def test_download_into_a_locked_root_times_out_naming_the_lock(dcase, monkeypatch):
    monkeypatch.setenv("AADLIB_LOCK_TIMEOUT", "0.5")
    with exclusive(dcase.root, "holding the root in a test"):
        with pytest.raises(TimeoutError) as err:
            dcase.run()
    lock = dcase.root / ".aadlib.lock"
    assert str(err.value).startswith(f"{lock}: another aadlib run is still downloading into")
    assert dcase.state.requests == []


def test_download_waits_for_the_run_holding_the_root(dcase):
    seen = Collect(wanted="waiting for it")
    outcome: list = []

    def second_run() -> None:
        try:
            outcome.append(dcase.run())
        except Exception as err:  # reported by the assert below
            outcome.append(err)

    logging.getLogger("aadlib").addHandler(seen)
    try:
        with exclusive(dcase.root, "downloading into it (the first run)"):
            worker = threading.Thread(target=second_run)
            worker.start()
            assert seen.seen.wait(timeout=60), "the second run did not say that it waits"
            assert dcase.state.requests == [] and outcome == []
        worker.join(timeout=60)
    finally:
        logging.getLogger("aadlib").removeHandler(seen)
    assert outcome == [dcase.root.absolute()] and is_complete(dcase.root, "fan")


# ------------------------------------------------- what a run may reuse or overwrite


@pytest.mark.parametrize("content", ["short", "same size"])
def test_wrong_archive_in_the_cache_is_refused_and_left_alone(dcase, content):
    cached = dcase.root / ".archives" / "dev_data_fan.zip"
    cached.parent.mkdir(parents=True)
    wrong = b"not the archive" if content == "short" else bytes(reversed(dcase.data))
    cached.write_bytes(wrong)
    with pytest.raises(ChecksumError) as err:
        dcase.run()
    message = str(err.value)
    assert f"{cached} is already there but is not the expected archive" in message
    found = f"{len(wrong)} bytes" if content == "short" else f"md5 {md5(wrong)}"
    assert f"expected {len(dcase.data)} bytes with md5 {md5(dcase.data)}, found {found}" in message
    assert "delete or move it away" in message
    assert cached.read_bytes() == wrong and dcase.state.requests == []
    cached.write_bytes(dcase.data)  # the right archive, put there by hand: used, not fetched
    dcase.run()
    assert dcase.state.requests == [] and is_complete(dcase.root, "fan")


def test_unverified_archive_in_the_cache_is_used_only_as_aadlib_received_it(dcase, monkeypatch):
    data = serve_set(dcase, monkeypatch, eval_test_names(), EVAL_TEST)
    cached = dcase.root / ".archives" / "eval_data_test_fan.zip"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data)  # put there by hand: nothing says it is whole
    run = {"kind": "eval_test", "allow_unverified": True, "keep_archives": True}
    with pytest.raises(DownloadError, match=r"aadlib did not download it .* cannot be verified"):
        dcase.run(**run)
    assert cached.read_bytes() == data and dcase.state.requests == []

    cached.unlink()
    dcase.run(**run)  # downloaded, and its size and MD5 recorded
    shutil.rmtree(dcase.root / "fan")
    dcase.run(**run)  # so the kept archive is used again
    assert len(dcase.state.requests) == 1 and is_complete(dcase.root, "fan", "eval_test")

    cached.write_bytes(data[:-10])  # changed since
    shutil.rmtree(dcase.root / "fan")
    with pytest.raises(ChecksumError, match=rf"found {len(data) - 10} bytes.*left as it is"):
        dcase.run(**run)
    assert cached.read_bytes() == data[:-10]


def test_extraction_never_replaces_files_of_other_contents(dcase):
    mine = dcase.root / "fan" / "train" / "normal_id_01_00000000.wav"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"the user's own recording")  # no test/ folder: not a set to use as is
    with pytest.raises(download.ExistingFilesError) as err:
        dcase.run()
    message = str(err.value)
    assert (
        f"{mine.parent.parent} already holds files that dev_data_fan.zip would replace" in message
    )
    assert str(mine) in message and "nothing was changed. Move them away" in message
    assert mine.read_bytes() == b"the user's own recording" and not leftovers(dcase.root)
    assert not is_complete(dcase.root, "fan")

    with zipfile.ZipFile(io.BytesIO(dcase.data)) as zf:
        mine.write_bytes(zf.read("fan/train/normal_id_01_00000000.wav"))  # the archive's bytes
    dcase.run()  # the same bytes are no clash; the verified archive kept from the first run
    assert len(dcase.state.requests) == 1 and is_complete(dcase.root, "fan")


def test_safe_extract_overwrites_nothing(tmp_path):
    zip_path = tmp_path / "fan.zip"
    zip_path.write_bytes(make_zip(clip_names("fan")))
    mine = tmp_path / "dest" / "fan" / "test" / "anomaly_id_01_00000001.wav"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"mine")
    with pytest.raises(download.ExistingFilesError, match=r"overwrite \S+01\.wav\. Nothing was"):
        safe_extract(zip_path, tmp_path / "dest")
    assert [p for p in (tmp_path / "dest").rglob("*") if p.is_file()] == [mine]
    assert mine.read_bytes() == b"mine"

    with pytest.warns(UserWarning, match="Duplicate name"):
        twice = make_zip(clip_names("fan"), [("fan/train/normal_id_01_00000000.wav", b"other")])
    zip_path.write_bytes(twice)
    with pytest.raises(BadArchiveError, match=r"holds fan/train/normal_id_01_00000000\.wav twice"):
        safe_extract(zip_path, tmp_path / "empty")


def test_complete_set_that_lost_clips_is_reported(dcase, caplog):
    dcase.run()
    next((dcase.root / "fan" / "test").glob("anomaly_*.wav")).unlink()
    with caplog.at_level(logging.WARNING, logger="aadlib.download"):
        dcase.run()
    assert len(dcase.state.requests) == 1  # nothing fetched again
    assert f"holds {N_NORMAL + N_ANOMALY - 1} test clips, dev_data_fan.zip holds" in caplog.text
