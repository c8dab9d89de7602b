"""Request bodies under gevent: read in turns, and never drained after a refusal.

A gevent worker serves all its connections in one thread and switches only when a socket would
block. An upload arriving faster than it is parsed (loopback, a fast proxy) never blocks, so the
greenlet parsing it would hold the worker for the whole body: every other request of that
worker (``/health`` included) waits. Measured: 100 MB at full speed held a worker for seconds.

``RequestBodyGuard`` wraps the WSGI application:

* ``wsgi.input`` yields to the other greenlets every ``YIELD_BYTES`` read (``time.sleep(0)``:
  gevent's when the worker is monkey-patched, a no-op switch otherwise);
* when the answer is an error (status >= 400) and more than ``DRAIN_LIMIT`` bytes of the body are
  still unread, gunicorn is told to close the connection instead of reading and dropping the rest
  before the next request (it does so 1 KB at a time: about 1.5 s of CPU per 100 MB). A refused
  upload (401, 413, 429 ...) then costs its headers, not its body. Another server keeps its own
  behaviour.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

YIELD_BYTES = 256 * 1024
DRAIN_LIMIT = 1024 * 1024

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class CooperativeInput:
    """``wsgi.input`` that lets other greenlets run between reads and counts what was read."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.consumed = 0
        self._since_yield = 0

    def _took(self, data: bytes) -> bytes:
        self.consumed += len(data)
        self._since_yield += len(data)
        if self._since_yield >= YIELD_BYTES:
            self._since_yield = 0
            time.sleep(0)
        return data

    def read(self, *args: Any) -> bytes:
        return self._took(self.raw.read(*args))

    def readline(self, *args: Any) -> bytes:
        return self._took(self.raw.readline(*args))

    def readlines(self, *args: Any) -> list[bytes]:
        return [self._took(line) for line in self.raw.readlines(*args)]

    def __iter__(self) -> CooperativeInput:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close_instead_of_draining(self) -> bool:
        """Ask gunicorn to close the connection after the answer rather than drain the body
        (its ``Body.failed`` flag, which it also sets when a body cannot be read)."""
        if hasattr(self.raw, "failed"):
            self.raw.failed = True
            return True
        return False


class RequestBodyGuard:
    """The WSGI middleware (``create_app`` installs it around the Flask application)."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        body = CooperativeInput(environ["wsgi.input"])
        environ["wsgi.input"] = body
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if status[:1] in ("4", "5") and length - body.consumed > DRAIN_LIMIT:
                body.close_instead_of_draining()
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        return self.app(environ, start)
