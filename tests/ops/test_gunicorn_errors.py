"""Requests gunicorn refuses itself, before the application sees them, answer in the API's error
envelope too: a real gunicorn started the way the Procfile starts it (the repository's
gunicorn.conf.py, no worker class on the command line) on a free port, spoken to over raw sockets."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import ROOT
from tests.ops.conftest import cli_env
from tests.waiting import wait_for

_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


class Gunicorn:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--workers", "1", "--bind", "127.0.0.1:0", "wsgi:app"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.port = int(wait_for("gunicorn to listen", self._port, timeout=60))
        wait_for("the worker to serve", lambda: self._health() == 200, timeout=60)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _port(self) -> str | None:
        if self.proc.poll() is not None:
            pytest.fail(f"gunicorn exited: {self.log()[-3000:]}")
        match = _LISTENING.search(self.log())
        return match.group(1) if match else None

    def _health(self) -> int | None:
        try:
            return get(self.port, "/api/v1/health")[0]
        except OSError:
            return None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the answer until the server closes: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:  # the server closed with unread request bytes: the answer came first
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.fixture(scope="module")
def server(settings, tmp_path_factory) -> Iterator[Gunicorn]:
    tmp = tmp_path_factory.mktemp("gunicorn")
    env = {**cli_env(settings), "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prometheus"), "LOG_LEVEL": "WARNING",
           "READY_REQUIRE_DIALER": "false"}
    started = Gunicorn(env, tmp / "gunicorn.log")
    yield started
    started.stop()


def envelope(headers: dict[str, str], body: bytes) -> dict[str, object]:
    assert headers["content-type"] == "application/json", (headers, body[:300])
    assert int(headers["content-length"]) == len(body)
    document = json.loads(body)
    assert set(document) == {"error"} and set(document["error"]) == {"code", "message", "details"}, document
    assert document["error"]["message"] and document["error"]["details"] == {}
    return document["error"]  # type: ignore[no-any-return]


REFUSED = [
    ("request line too long", b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "URI_TOO_LONG"),
    ("request line far too long", b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "URI_TOO_LONG"),
    ("too many headers", b"GET / HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(150))
     + b"\r\n", 431, "HEADERS_TOO_LARGE"),
    ("a header too large", b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431,
     "HEADERS_TOO_LARGE"),
    ("malformed request line", b"GARBAGE\r\n\r\n", 400, "BAD_REQUEST"),
    ("unknown HTTP version", b"GET / HTTP/9.9\r\nHost: t\r\n\r\n", 400, "BAD_REQUEST"),
    ("invalid method", b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n", 400, "BAD_REQUEST"),
    ("invalid header name", b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: 1\r\n\r\n", 400, "BAD_REQUEST"),
    ("unsupported transfer coding", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 400,
     "BAD_REQUEST"),
]


@pytest.mark.parametrize("raw, status, code", [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
def test_gunicorns_refusals_are_json(server, raw, status, code):
    answered, headers, body = exchange(server.port, raw)
    assert answered == status, body[:300]
    assert envelope(headers, body)["code"] == code
    assert headers["connection"] == "close"
    assert headers["cache-control"] == "no-store" and headers["x-content-type-options"] == "nosniff"
    assert b"<html" not in body.lower()


def test_gunicorn_still_logs_what_it_refused(server):
    exchange(server.port, b"GARBAGE-FOR-THE-LOG\r\n\r\n")
    wait_for("gunicorn's warning", lambda: "GARBAGE-FOR-THE-LOG" in server.log(), timeout=10)


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    return exchange(port, f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())


def test_the_application_answers_as_before(server):
    status, headers, body = get(server.port, "/api/v1/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, headers, body = get(server.port, "/api/v1/nowhere")
    assert status == 404 and envelope(headers, body)["code"] == "NOT_FOUND"
    assert "x-request-id" in headers  # the app's own hooks ran
    status, headers, body = get(server.port, "/api/v1/balance")
    assert status == 401 and envelope(headers, body)["code"] == "UNAUTHORIZED"


def test_the_master_did_not_load_the_application_before_the_workers_patched(server):
    assert "MonkeyPatchWarning" not in server.log()
    assert "Traceback" not in server.log()
