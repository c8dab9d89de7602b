"""The gunicorn worker of the web process: gevent, with gunicorn's own errors in the API's envelope.

gunicorn answers the requests it cannot parse itself, before the application sees them: an
over-long request line (414), too many or too large headers (431), a malformed request line,
method or HTTP version (400), an unsupported transfer coding (501). Its answer is an HTML
page. This worker lets gunicorn decide as before (the status, its warning and access-log
lines) and sends ``{"error": {"code", "message", "details"}}`` with that status instead.

``gunicorn.conf.py`` names it (``worker_class``), so every gunicorn started from the
repository uses it. The master process loads this module before its workers fork and
monkey-patch: it imports gunicorn and ``api.errors`` only, never the application.
"""

from __future__ import annotations

import json
from typing import Any

from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker

from api.errors import STATUS_CODES

FALLBACK = ("HTTP_ERROR", "The request could not be handled.")


class _Capture:
    """Stands in for the client's socket while gunicorn writes its error page; keeps the bytes."""

    def __init__(self) -> None:
        self.data = bytearray()

    def gettimeout(self) -> float:
        return 0.0  # non-blocking already: gunicorn's write_nonblock changes nothing

    def setblocking(self, flag: bool) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.data += data


def json_error_response(status_line: str) -> bytes:
    """A complete HTTP/1.1 response for ``status_line`` ("414 URI Too Long") in the error envelope."""
    status = int(status_line.split(" ", 1)[0])
    code, message = STATUS_CODES.get(status, FALLBACK)
    body = json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()
    head = (f"HTTP/1.1 {status_line}\r\n"
            "Connection: close\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\n"
            "X-Content-Type-Options: nosniff\r\n"
            "\r\n")
    return head.encode("latin-1") + body


class JsonErrorGeventWorker(GeventWorker):  # type: ignore[misc]
    """gunicorn's gevent worker whose own error answers are JSON in the API's envelope."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        page = _Capture()
        super().handle_error(req, page, addr, exc)  # classifies, logs, writes its page into `page`
        if not page.data:  # gunicorn chose to send nothing
            return
        status_line = bytes(page.data).split(b"\r\n", 1)[0].decode("latin-1").partition(" ")[2]
        try:
            util.write_nonblock(client, json_error_response(status_line))
        except Exception:  # noqa: BLE001 - the client went away: as gunicorn, say it at debug level
            self.log.debug("Failed to send error message.")
