"""Webhook harness: a real HTTP receiver on 127.0.0.1, the sweeper in a thread, RQ workers of a
queue of the test's own as real processes (``rq worker --worker-class rq.SimpleWorker``)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue

from core.db import make_engine
from core.settings import Settings
from tests.api.conftest import client, make_app, unique_address  # noqa: F401 - fixtures shared with the API tests
from webhooks.sweeper import Sweeper

ROOT = Path(__file__).resolve().parents[2]

#: what the tests change: quick retries and sweeps, short leases, private addresses allowed
FAST = {"webhook_allow_private": True, "webhook_backoff_base_seconds": 0.3, "webhook_backoff_max_seconds": 1.0,
        "webhook_sweep_seconds": 0.1, "webhook_lease_seconds": 4.0, "webhook_timeout_seconds": 5.0}


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    """An HTTP server that records every POST; ``answer(n, request)`` gives (status, seconds to wait)
    for the n-th request (0-based)."""

    answer: Callable[[int, Received], tuple[int, float]] = lambda n, r: (200, 0.0)
    received: list[Received] = field(default_factory=list)
    completed: list[Received] = field(default_factory=list)  # answered 2xx, in answer order
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                got = Received({k: v for k, v in self.headers.items()}, body, time.monotonic())
                with receiver.lock:
                    n = len(receiver.received)
                    receiver.received.append(got)
                status, wait = receiver.answer(n, got)
                if wait:
                    time.sleep(wait)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                if 200 <= status < 300:
                    with receiver.lock:
                        receiver.completed.append(got)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def bodies(self, of: list[Received] | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [r.json for r in (self.received if of is None else of)]


class WorkerProcess:
    """``rq worker`` for the test's webhook queue, as production runs it."""

    def __init__(self, settings: Settings, log_dir: Path, **env: str) -> None:
        self.log = log_dir / f"webhook-worker-{secrets.token_hex(3)}.log"
        full = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url or "",
                "VAR_DIR": str(settings.var_dir), "WEBHOOK_QUEUE": settings.webhook_queue,
                "WEBHOOK_ALLOW_PRIVATE": "true" if settings.webhook_allow_private else "false",
                "WEBHOOK_BACKOFF_BASE_SECONDS": str(settings.webhook_backoff_base_seconds),
                "WEBHOOK_BACKOFF_MAX_SECONDS": str(settings.webhook_backoff_max_seconds),
                "WEBHOOK_TIMEOUT_SECONDS": str(settings.webhook_timeout_seconds), **env}
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rq.cli", "worker", "--worker-class", "rq.SimpleWorker", "--url",
                 settings.redis_url or "", settings.webhook_queue],
                cwd=ROOT, env=full, stdout=out, stderr=subprocess.STDOUT)

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()


class SweeperThread:
    def __init__(self, settings: Settings) -> None:
        self.engine = make_engine(settings.database_url, pool_size=2)
        queue = Queue(settings.webhook_queue, connection=redis.Redis.from_url(settings.redis_url or ""))
        self.sweeper = Sweeper(self.engine, settings, queue)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self.sweeper.run, args=(self._stop.is_set,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)
        self.engine.dispose()


class Rig:
    """The pieces one test starts; all stopped at teardown."""

    def __init__(self, settings: Settings, app: Any, tmp: Path) -> None:
        self.settings, self.app, self.tmp = settings, app, tmp
        self.client = app.test_client()
        self.client.environ_base["REMOTE_ADDR"] = unique_address()
        self._stops: list[Callable[[], None]] = []

    def receiver(self, answer: Callable[[int, Received], tuple[int, float]] | None = None) -> Receiver:
        r = Receiver(answer) if answer else Receiver()
        r.start()
        self._stops.append(r.stop)
        return r

    def worker(self, **env: str) -> WorkerProcess:
        w = WorkerProcess(self.settings, self.tmp, **env)
        self._stops.append(w.stop)
        return w

    def sweeper(self) -> SweeperThread:
        s = SweeperThread(self.settings)
        self._stops.append(s.stop)
        return s

    def close(self) -> None:
        for stop in reversed(self._stops):
            stop()


@pytest.fixture()
def webhook_settings(settings: Settings) -> Settings:
    return replace(settings, webhook_queue=f"webhooks-test-{secrets.token_hex(4)}", **FAST)


@pytest.fixture()
def rig(webhook_settings: Settings, tmp_path: Path) -> Iterator[Rig]:
    from api import create_app

    app = create_app(webhook_settings)
    app.config["TESTING"] = True
    built = Rig(webhook_settings, app, tmp_path)
    yield built
    built.close()
    app.extensions["zenscall"].engine.dispose()
    redis.Redis.from_url(webhook_settings.redis_url or "").delete(f"rq:queue:{webhook_settings.webhook_queue}")
