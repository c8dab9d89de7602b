"""Fixtures for the operations tests: an app on its own Redis database, heartbeats
written exactly as the dialer writes them, and real simulator / dialer processes.

The ops tests read every ``zc:dialer:*`` heartbeat of their Redis database, so they use
a database of their own (``ZC_TEST_OPS_REDIS_URL``, default: the test Redis's server,
database 11): dialers of other suites running at the same time cannot make a
"no heartbeat" test see one.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from core.settings import ROOT, Settings
from tests.conftest import REDIS_URL
from tests.waiting import wait_for  # noqa: F401  (re-exported for this folder's tests)

OPS_REDIS_URL = os.environ.get("ZC_TEST_OPS_REDIS_URL", REDIS_URL.rsplit("/", 1)[0] + "/11")
SIM_PASSWORD = "ClueCon"


def write_heartbeat(client: redis.Redis, node: str, pid: int, *, esl_connected: bool = True,
                    ts: float | None = None, in_flight: int = 0, **fields: Any) -> str:
    """The heartbeat as ``Engine._publish_heartbeat`` writes it: ``Engine.state()`` as JSON, ex=15."""
    now = time.time() if ts is None else ts
    state = {
        "node": node, "pid": pid, "ts": now, "started_at": now - 60, "esl_connected": esl_connected,
        "in_flight": in_flight, "node_max_channels": 200, "originates_total": 12,
        "originates_per_second": 1.5, "finished_total": 10, "answered_total": 7, "retries_total": 2,
        "reconnects_total": 0, "reconciled_total": 0, **fields,
    }
    key = f"zc:dialer:{node}:{pid}"
    client.set(key, json.dumps(state), ex=15)
    return key


def _clean(client: redis.Redis) -> None:
    for pattern in ("zc:dialer:*", "zc:cap:node:*"):
        keys = list(client.scan_iter(match=pattern))
        if keys:
            client.delete(*keys)


@pytest.fixture(scope="session")
def ops_redis_url(redis_url: str) -> str:
    try:
        redis.Redis.from_url(OPS_REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        pytest.exit(f"Redis at {OPS_REDIS_URL} is not reachable: {exc}", returncode=3)
    return OPS_REDIS_URL


@pytest.fixture()
def ops_redis(ops_redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(ops_redis_url)
    _clean(client)
    yield client
    _clean(client)
    client.close()


@pytest.fixture(scope="session")
def ops_settings(settings: Settings, ops_redis_url: str) -> Settings:
    return replace(settings, redis_url=ops_redis_url, ready_check_timeout=1.0,
                   dialer_queue=f"dialer-ops-{secrets.token_hex(3)}")


@pytest.fixture(scope="session")
def make_app() -> Callable[..., Any]:
    def make(settings: Settings, **config: Any) -> Any:
        from api import create_app

        application = create_app(settings, **config)
        application.config["TESTING"] = True
        return application

    return make


@pytest.fixture(scope="session")
def ops_app(ops_settings: Settings, make_app: Callable[..., Any]) -> Any:
    return make_app(ops_settings)


@pytest.fixture()
def ops_client(ops_app: Any, ops_redis: redis.Redis) -> Any:
    return ops_app.test_client()


def cli_env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url or "",
            "VAR_DIR": str(settings.var_dir), "AUDIO_DIR": str(settings.audio_dir),
            "DIALER_QUEUE": settings.dialer_queue}


# -- real processes: the FreeSWITCH simulator and a dialer -----------------------------------------


class Simulator:
    """``python -m simulator`` on a free port."""

    def __init__(self, log_dir: Path) -> None:
        self.log = open(log_dir / f"sim-{secrets.token_hex(3)}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", "0",
             "--password", SIM_PASSWORD, "--heartbeat", "0"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log, text=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 15)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("LISTENING 127.0.0.1:"):
            self.kill()
            pytest.fail(f"simulator did not start: {line!r}")
        self.port = int(line.strip().rsplit(":", 1)[1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


class Dialer:
    """``python -m dialer`` against the simulator, on the ops Redis database."""

    def __init__(self, settings: Settings, sim_port: int, log_dir: Path, node: str) -> None:
        env = {**cli_env(settings), "FS_HOST": "127.0.0.1", "FS_PORT": str(sim_port), "FS_PASSWORD": SIM_PASSWORD,
               "FS_COMMAND_TIMEOUT": "2", "DIALER_NODE": node, "DIALER_SWEEP_SECONDS": "0.5",
               "FS_AUDIO_DIR": settings.fs_audio_dir}
        self.log_path = log_dir / f"dialer-{node}.log"
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "dialer"], cwd=ROOT, env=env,
                                         stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


