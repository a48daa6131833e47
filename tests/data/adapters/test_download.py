"""lemur.data.download against a local HTTP server: resume with Range, checksums, offline message."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lemur.data.download import CHECKSUM_FILE, DownloadError, Resource, fetch

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _Handler(BaseHTTPRequestHandler):
    honour_range = True
    requests: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path != "/data.bin":
            self.send_error(404)
            return
        wanted = self.headers.get("Range")
        type(self).requests.append(wanted)
        start = int(wanted.split("=")[1].split("-")[0]) if wanted and self.honour_range else 0
        if start >= len(PAYLOAD):
            self.send_response(416)
            self.end_headers()
            return
        body = PAYLOAD[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    _Handler.requests = []
    _Handler.honour_range = True
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def quiet(*_args) -> None:
    pass


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_verifies_pinned_checksum(server: str, tmp_path: Path) -> None:
    path = fetch(Resource(f"{server}/data.bin", "data.bin", sha256=SHA), tmp_path, progress=False, log=quiet)
    assert path.read_bytes() == PAYLOAD and not (tmp_path / "data.bin.part").exists()
    assert (tmp_path / CHECKSUM_FILE).read_text() == f"{SHA}  data.bin\n"


def test_resume_asks_for_the_rest(server: str, tmp_path: Path) -> None:
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:300_000])  # an interrupted earlier download
    fetch(Resource(f"{server}/data.bin", "data.bin", sha256=SHA), tmp_path, progress=False, log=quiet)
    assert _Handler.requests == ["bytes=300000-"]
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_server_without_range_support_restarts(server: str, tmp_path: Path) -> None:
    _Handler.honour_range = False
    (tmp_path / "data.bin.part").write_bytes(b"garbage" * 10)
    fetch(Resource(f"{server}/data.bin", "data.bin", sha256=SHA), tmp_path, progress=False, log=quiet)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD  # the 200 answer replaced the partial file


def test_complete_part_file_is_finished(server: str, tmp_path: Path) -> None:
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    fetch(Resource(f"{server}/data.bin", "data.bin", sha256=SHA), tmp_path, progress=False, log=quiet)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD  # the server answered 416


def test_checksum_mismatch_names_the_file(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"data.bin: SHA-256 [0-9a-f]{64} does not match the pinned checksum"):
        fetch(Resource(f"{server}/data.bin", "data.bin", sha256="0" * 64), tmp_path, progress=False, log=quiet)


def test_trust_on_first_use(server: str, tmp_path: Path) -> None:
    """Without a pinned checksum the first download records one; a changed file is caught later."""
    resource = Resource(f"{server}/data.bin", "data.bin")
    messages: list[str] = []
    fetch(resource, tmp_path, progress=False, log=messages.append)
    assert any("recorded" in m for m in messages) and SHA in (tmp_path / CHECKSUM_FILE).read_text()
    fetch(resource, tmp_path, progress=False, log=quiet)  # present and unchanged: no download
    assert len(_Handler.requests) == 1
    (tmp_path / "data.bin").write_bytes(PAYLOAD[:-1] + b"x")
    with pytest.raises(DownloadError, match="checksum recorded in"):
        fetch(resource, tmp_path, progress=False, log=quiet)


def test_mirror_after_a_failure(server: str, tmp_path: Path) -> None:
    resource = Resource(f"{server}/gone.bin", "data.bin", sha256=SHA, mirrors=(f"{server}/data.bin",))
    assert fetch(resource, tmp_path, progress=False, log=quiet).read_bytes() == PAYLOAD


def test_offline_message(tmp_path: Path) -> None:
    resource = Resource("http://127.0.0.1:9/MINDsmall_train.zip", "MINDsmall_train.zip")
    with pytest.raises(DownloadError) as info:
        fetch(resource, tmp_path / "raw", progress=False, log=quiet)
    text = str(info.value)
    assert "could not download MINDsmall_train.zip" in text and "127.0.0.1:9" in text
    assert "offline" in text and str(tmp_path / "raw") in text and "without --download" in text
