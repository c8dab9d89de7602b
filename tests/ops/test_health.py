"""Liveness and readiness: real SQL, real Redis, heartbeats as the dialer writes them,
and a real dialer process against the FreeSWITCH simulator."""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import replace

import pytest

from tests.ops.conftest import Dialer, Simulator, wait_for, write_heartbeat


def test_health_is_200_without_auth_and_without_limits(ops_client):
    for _ in range(3):
        response = ops_client.get("/api/v1/health")
        assert response.status_code == 200
        assert response.get_json() == {"status": "ok"}
        assert "X-RateLimit-Limit" not in response.headers


def test_health_touches_neither_sql_nor_redis(ops_settings, make_app):
    dead = make_app(replace(ops_settings, redis_url="redis://127.0.0.1:1/0",
                            database_url="mysql+pymysql://root@127.0.0.1:1/nothing"))
    started = time.monotonic()
    response = dead.test_client().get("/api/v1/health")
    assert response.status_code == 200
    assert time.monotonic() - started < 0.5


def test_ready_200_with_a_fresh_connected_heartbeat(ops_client, ops_redis):
    write_heartbeat(ops_redis, "fs1", 4242)
    response = ops_client.get("/api/v1/ready")
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["status"] == "ready" and body["failing"] == []
    assert set(body["checks"]) == {"database", "redis", "dialer_heartbeat", "esl_connected"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["dialer_heartbeat"]["nodes"][0]["node"] == "fs1"
    assert "X-RateLimit-Limit" not in response.headers


def test_ready_503_without_heartbeat(ops_client, ops_redis):
    response = ops_client.get("/api/v1/ready")
    body = response.get_json()
    assert response.status_code == 503
    assert body["failing"] == ["dialer_heartbeat", "esl_connected"]
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]
    assert body["error"]["code"] == "NOT_READY" and body["error"]["details"]["failing"] == body["failing"]


def test_ready_503_with_a_stale_heartbeat(ops_client, ops_redis):
    write_heartbeat(ops_redis, "fs1", 4242, ts=time.time() - 20)  # the key lives, its content is old
    response = ops_client.get("/api/v1/ready")
    assert response.status_code == 503
    assert "dialer_heartbeat" in response.get_json()["failing"]


def test_ready_503_when_esl_is_disconnected(ops_client, ops_redis):
    write_heartbeat(ops_redis, "fs1", 4242, esl_connected=False)
    response = ops_client.get("/api/v1/ready")
    body = response.get_json()
    assert response.status_code == 503
    assert body["failing"] == ["esl_connected"]
    assert body["checks"]["dialer_heartbeat"]["ok"]


def test_one_connected_dialer_is_enough(ops_client, ops_redis):
    write_heartbeat(ops_redis, "fs1", 1, esl_connected=False)
    write_heartbeat(ops_redis, "fs2", 2, esl_connected=True)
    assert ops_client.get("/api/v1/ready").status_code == 200


def test_dialer_checks_optional_with_ready_require_dialer_false(ops_settings, make_app, ops_redis):
    app = make_app(replace(ops_settings, ready_require_dialer=False))
    response = app.test_client().get("/api/v1/ready")
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["checks"]["dialer_heartbeat"] == {**body["checks"]["dialer_heartbeat"], "ok": False,
                                                  "required": False}


def test_ready_require_dialer_from_environment(monkeypatch):
    from core.settings import load_settings

    assert load_settings().ready_require_dialer is True
    monkeypatch.setenv("READY_REQUIRE_DIALER", "false")
    assert load_settings().ready_require_dialer is False


def test_ready_503_promptly_when_redis_is_unreachable(ops_settings, make_app):
    app = make_app(replace(ops_settings, redis_url="redis://127.0.0.1:1/0"))
    started = time.monotonic()
    response = app.test_client().get("/api/v1/ready")
    assert time.monotonic() - started < 3
    body = response.get_json()
    assert response.status_code == 503
    assert "redis" in body["failing"] and "dialer_heartbeat" in body["failing"]
    assert body["checks"]["database"]["ok"]


def test_ready_503_promptly_when_sql_is_unreachable(ops_settings, make_app, ops_redis):
    write_heartbeat(ops_redis, "fs1", 4242)
    app = make_app(replace(ops_settings, database_url="mysql+pymysql://root@127.0.0.1:1/nothing"))
    started = time.monotonic()
    response = app.test_client().get("/api/v1/ready")
    assert time.monotonic() - started < 3
    body = response.get_json()
    assert response.status_code == 503
    assert body["failing"] == ["database"]


@pytest.fixture()
def silent_server():
    """A TCP server that accepts connections and never says a word (a black-holed database)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


def test_ready_answers_within_its_deadline_when_sql_hangs(ops_settings, make_app, ops_redis, silent_server):
    write_heartbeat(ops_redis, "fs1", 4242)
    app = make_app(replace(ops_settings, database_url=f"mysql+pymysql://root@127.0.0.1:{silent_server}/x",
                           ready_check_timeout=0.5))
    started = time.monotonic()
    response = app.test_client().get("/api/v1/ready")
    elapsed = time.monotonic() - started
    body = response.get_json()
    assert response.status_code == 503 and body["failing"] == ["database"]
    assert "within" in body["checks"]["database"]["error"]
    assert elapsed < 1.5


def test_health_and_ready_are_public_in_openapi(ops_client):
    spec = ops_client.get("/api/v1/openapi.json").get_json()
    for path in ("/api/v1/health", "/api/v1/ready"):
        assert spec["paths"][path]["get"]["security"] == []
    assert "503" in spec["paths"]["/api/v1/ready"]["get"]["responses"]


def test_ready_follows_a_real_dialer_and_the_simulator(ops_settings, ops_client, ops_redis, tmp_path):
    """A real ``python -m dialer`` on the simulator: ready once it connects; killing the switch
    turns the heartbeat's esl_connected false and readiness fails; stopping the dialer removes it."""
    sim = Simulator(tmp_path)
    node = f"ops-{os.getpid()}"
    dialer = Dialer(ops_settings, sim.port, tmp_path, node)
    try:
        wait_for("readiness with a live dialer", lambda: ops_client.get("/api/v1/ready").status_code == 200,
                 timeout=30)
        nodes = ops_client.get("/api/v1/ready").get_json()["checks"]["esl_connected"]["nodes"]
        assert nodes == [{"node": node, "pid": dialer.proc.pid}]
        sim.kill()

        def esl_failing() -> bool:
            response = ops_client.get("/api/v1/ready")
            return response.status_code == 503 and response.get_json()["failing"] == ["esl_connected"]

        wait_for("readiness to fail on esl_connected after the switch died", esl_failing, timeout=20)
        dialer.stop()
        body = ops_client.get("/api/v1/ready").get_json()
        assert "dialer_heartbeat" in body["failing"], body
    finally:
        dialer.stop()
        sim.kill()
        if dialer.proc.returncode not in (0, -15, None):
            print(dialer.log_path.read_text()[-3000:])


# -- the details are the operator's -------------------------------------------------------------

TOKEN = "an-operator-token-of-some-length"


def test_ready_details_only_for_the_operator(ops_settings, make_app, ops_redis):
    app = make_app(replace(ops_settings, metrics_token=TOKEN))
    client = app.test_client()
    write_heartbeat(ops_redis, "fs1", 4242)
    for headers in ({}, {"Authorization": "Bearer wrong-token-of-some-length"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}):
        response = client.get("/api/v1/ready", headers=headers)
        assert (response.status_code, response.get_json()) == (200, {"status": "ready"}), headers
    operator = client.get("/api/v1/ready", headers={"Authorization": f"Bearer {TOKEN}"}).get_json()
    assert operator["status"] == "ready" and operator["checks"]["dialer_heartbeat"]["nodes"][0]["node"] == "fs1"

    ops_redis.delete("zc:dialer:fs1:4242")  # no dialer: not ready, and nobody but the operator learns why
    response = client.get("/api/v1/ready")
    assert response.status_code == 503
    assert response.get_json() == {"status": "not_ready",
                                   "error": {"code": "NOT_READY", "message": "Not ready.", "details": {}}}
    operator = client.get("/api/v1/ready", headers={"Authorization": f"Bearer {TOKEN}"})
    assert operator.status_code == 503
    assert operator.get_json()["failing"] == ["dialer_heartbeat", "esl_connected"]
    assert operator.get_json()["error"]["details"] == {"failing": ["dialer_heartbeat", "esl_connected"]}


def test_production_without_a_token_shows_nobody_the_details(ops_settings, make_app, ops_redis):
    """load_settings refuses production without METRICS_TOKEN; should one be built anyway, the
    details and /metrics stay closed rather than open."""
    app = make_app(replace(ops_settings, env="production", metrics_token=""))
    client = app.test_client()
    write_heartbeat(ops_redis, "fs1", 4242)
    assert client.get("/api/v1/ready").get_json() == {"status": "ready"}
    assert client.get("/metrics").status_code == 401
