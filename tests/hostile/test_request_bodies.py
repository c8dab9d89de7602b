"""Upload bodies cannot buy a web worker: a refused upload is answered before its body is read and
the connection is closed instead of drained; a body being read lets the worker's other requests
run; an account's uploads are limited whatever key sends them."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from core.settings import ROOT
from tests.api.conftest import assert_error, make_app  # noqa: F401 - fixture
from tests.ops.conftest import cli_env
from tests.waiting import wait_for

DECLARED = 100 * 1024 * 1024  # what the client says it will send; it sends nothing of it


@pytest.fixture()
def gunicorn(settings: Any, tmp_path: Path) -> Any:
    """The production app under gunicorn with a gevent worker, as the Procfile runs it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**cli_env(settings), "READY_REQUIRE_DIALER": "false", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
           "LOG_LEVEL": "WARNING"}
    log = (tmp_path / "gunicorn.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--worker-class", "gevent", "--workers", "1",
                             "--bind", f"127.0.0.1:{port}", "wsgi:app"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)

    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return sock.recv(100).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    try:
        wait_for("gunicorn", up, timeout=60)
        yield port
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def _answer(sock: socket.socket) -> bytes:
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(65536)
        assert chunk, "closed without an answer"
        answer += chunk
    length = int(next(line.split(b":")[1] for line in answer.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(answer.partition(b"\r\n\r\n")[2]) < length:
        answer += sock.recv(65536)
    return answer


def _refused_upload(port: int, path: str, key: str, declared: int) -> tuple[bytes, bool, bytes]:
    """Send an upload's headers only and read the answer; then send the declared body anyway.

    Returns the answer, whether the server took the whole body (gunicorn reads and drops an unread
    body before the next request on the connection), and the answer to a /health sent next on the
    same connection (b"" when the server closed it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                     f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {declared}\r\n\r\n".encode())
        answer = _answer(sock)
        try:
            block = bytes(1024 * 1024)
            for start in range(0, declared, len(block)):
                sock.sendall(block[: min(len(block), declared - start)])
            sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            return answer, True, _answer(sock)
        except (ConnectionError, AssertionError):
            return answer, False, b""


def test_a_refused_upload_is_answered_before_its_body_and_never_drained(gunicorn: int) -> None:
    answer, took_body, next_answer = _refused_upload(gunicorn, "/api/v1/dnc/bulk", "zc_live_not-a-key", DECLARED)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] in ("INVALID_API_KEY", "UNAUTHORIZED")
    assert not took_body and next_answer == b"", "the server read 100 MB it had refused"
    # a small unread body is still drained: the connection lives on
    answer, took_body, next_answer = _refused_upload(gunicorn, "/api/v1/dnc/bulk", "zc_live_not-a-key", 1000)
    assert answer.startswith(b"HTTP/1.1 401") and took_body and next_answer.startswith(b"HTTP/1.1 200")


def test_over_the_pending_imports_the_answer_comes_before_the_body(gunicorn: int, make_tenant: Any,
                                                                  sessions: Any, settings: Any) -> None:
    from core.models import DncImport
    from core.states import ImportStatus

    tenant = make_tenant()
    with sessions() as session:
        session.add_all([DncImport(account_id=tenant.account_id, status=ImportStatus.QUEUED)
                         for _ in range(settings.max_pending_imports)])
        session.commit()
    answer, took_body, _ = _refused_upload(gunicorn, "/api/v1/dnc/bulk", tenant.api_key, DECLARED)
    assert answer.startswith(b"HTTP/1.1 429"), answer[:300]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "TOO_MANY_IMPORTS"
    assert not took_body, "the server read a body it had refused"


def test_reading_a_body_lets_other_greenlets_run() -> None:
    """A body that is always ready to read (loopback) never blocks, so without explicit turns the
    greenlet reading it would run to the end of it. Counted, not timed."""
    script = textwrap.dedent("""
        from gevent import monkey; monkey.patch_all()
        import io, gevent, json
        from api.request_body import CooperativeInput, YIELD_BYTES
        ticks, seen = [0], []
        def other():
            while True:
                ticks[0] += 1
                gevent.sleep(0)
        def reader(stream):
            while True:
                chunk = stream.read(64 * 1024)
                if not chunk:
                    return
                seen.append(ticks[0])
        ticker = gevent.spawn(other)
        gevent.sleep(0)
        size = 40 * YIELD_BYTES
        plain, cooperative = [], []
        seen.clear(); gevent.spawn(reader, io.BytesIO(bytes(size))).join(); plain = list(seen)
        seen.clear(); gevent.spawn(reader, CooperativeInput(io.BytesIO(bytes(size)))).join(); cooperative = list(seen)
        ticker.kill()
        print(json.dumps({"plain": len(set(plain)), "cooperative": len(set(cooperative))}))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    turns = json.loads(out.stdout.strip().splitlines()[-1])
    assert turns["plain"] == 1  # the other greenlet never ran while the plain body was read
    assert turns["cooperative"] >= 40  # it ran at every YIELD_BYTES


def test_uploads_are_limited_per_account_whatever_the_key(make_app: Any,  # noqa: F811
                                                          make_tenant: Any, client: Any) -> None:
    limited = make_app(ratelimit_upload="2 per minute", ratelimit_create="100 per minute", max_pending_imports=100)
    app_client = limited.test_client()
    tenant = make_tenant()
    second_key = app_client.post("/api/v1/api-keys", headers=tenant.headers, json={"name": "second"}).get_json()["key"]

    def upload(key: str) -> Any:
        return app_client.post("/api/v1/dnc/bulk", headers={"Authorization": f"Bearer {key}"},
                               content_type="multipart/form-data",
                               data={"csv_file": (io.BytesIO(b"phone\n03001234567\n"), "dnc.csv")})

    assert [upload(tenant.api_key).status_code for _ in range(2)] == [202, 202]
    response = upload(second_key)
    error = assert_error(response, 429, "RATE_LIMITED")
    assert "CSV uploads of this account" in error["message"] and int(response.headers["Retry-After"]) > 0
    assert upload(make_tenant().api_key).status_code == 202  # another account is not affected
