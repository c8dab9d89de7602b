"""Prometheus /metrics: request counts by URL rule, the product's state, the token, multiprocess mode."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace

from prometheus_client.parser import text_string_to_metric_families

from api.metrics import EXTENSION
from core.settings import ROOT
from tests.ops.conftest import cli_env, write_heartbeat
from tests.waiting import wait_for

FAMILIES = {
    "zc_http_requests", "zc_http_request_duration_seconds", "zc_calls", "zc_dialer_calls_in_flight",
    "zc_dialer_originates_per_second", "zc_dialer_esl_connected", "zc_dialer_heartbeat_age_seconds",
    "zc_dialers_live", "zc_cap_node_in_use", "zc_cap_node_limit", "zc_rq_queue_depth", "zc_scrape_source_up",
}


def scrape(client, **headers):
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.data[:500]
    assert response.mimetype == "text/plain"
    samples = {}
    families = set()
    for family in text_string_to_metric_families(response.data.decode()):
        families.add(family.name)
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families, samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_exposes_every_family_and_the_state(ops_client, ops_app, ops_redis, tenant, upload_audio):
    ops_app.extensions[EXTENSION].state.cache_seconds = 0
    write_heartbeat(ops_redis, "fs1", 101, in_flight=3, originates_per_second=2.5)
    write_heartbeat(ops_redis, "fs2", 202, esl_connected=False)
    now_ms = int(time.time() * 1000)
    ops_redis.zadd("zc:cap:node:fs1", {"call-a": now_ms + 60_000, "call-b": now_ms + 60_000,
                                       "expired": now_ms - 1000})
    audio = upload_audio(tenant)
    created = ops_client.post("/api/v1/calls", headers=tenant.headers,
                              json={"phone_number": "03001234566", "audio_id": audio["id"]})
    assert created.status_code in (200, 201, 202), created.get_json()
    dial_queue = ops_app.extensions["zenscall"].dial_queue
    wait_for("the call's dial job", lambda: dial_queue.count, timeout=10)  # sent off the request

    families, samples = scrape(ops_client)
    assert families >= FAMILIES, FAMILIES - families
    assert value(samples, "zc_calls", status="QUEUED") >= 1
    assert value(samples, "zc_dialer_calls_in_flight", node="fs1", pid="101") == 3
    assert value(samples, "zc_dialer_originates_per_second", node="fs1", pid="101") == 2.5
    assert value(samples, "zc_dialer_esl_connected", node="fs1", pid="101") == 1
    assert value(samples, "zc_dialer_esl_connected", node="fs2", pid="202") == 0
    assert value(samples, "zc_dialers_live") == 2
    assert value(samples, "zc_cap_node_in_use", node="fs1") == 2
    assert value(samples, "zc_cap_node_limit", node="fs1") == 200
    assert value(samples, "zc_rq_queue_depth", queue=dial_queue.name) >= 1
    assert ("zc_rq_queue_depth", (("queue", "default"),)) in samples
    assert ("zc_rq_queue_depth", (("queue", "webhooks"),)) in samples
    assert value(samples, "zc_scrape_source_up", source="sql") == 1
    assert value(samples, "zc_scrape_source_up", source="redis") == 1
    dial_queue.empty()


def test_requests_are_counted_by_url_rule_not_raw_path(ops_client, tenant):
    _, before = scrape(ops_client)
    rule = "/api/v1/calls/<string:call_id>"
    for _ in range(2):
        assert ops_client.get(f"/api/v1/calls/{uuid.uuid4()}", headers=tenant.headers).status_code == 404
    ops_client.get("/no/such/path")
    _, after = scrape(ops_client)
    key = {"method": "GET", "endpoint": rule, "status": "404"}
    assert value(after, "zc_http_requests_total", **key) - value(before, "zc_http_requests_total", **key) == 2
    assert value(after, "zc_http_requests_total", method="GET", endpoint="<unmatched>", status="404") >= 1
    assert value(after, "zc_http_request_duration_seconds_count", method="GET", endpoint=rule) >= 2
    assert not any("call_id" in str(labels) and rule not in str(labels) for (_, labels) in after)


def test_calls_by_status_is_cached(ops_app, ops_client):
    state = ops_app.extensions[EXTENSION].state
    state.cache_seconds = 10
    scrape(ops_client)
    first = state._calls_at
    scrape(ops_client)
    assert state._calls_at == first  # no second GROUP BY within 10 s


def test_metrics_survive_redis_down(ops_settings, make_app):
    app = make_app(replace(ops_settings, redis_url="redis://127.0.0.1:1/0"))
    _, samples = scrape(app.test_client())
    assert value(samples, "zc_scrape_source_up", source="redis") == 0
    assert value(samples, "zc_scrape_source_up", source="sql") == 1


def test_metrics_token(ops_settings, make_app, ops_redis):
    app = make_app(replace(ops_settings, metrics_token="s3cret-metrics-token"))
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).get_json()["error"]["code"] == \
        "UNAUTHORIZED"
    scrape(client, Authorization="Bearer s3cret-metrics-token")


def test_multiprocess_mode_sums_the_workers_files(ops_settings, tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR (as gunicorn.conf.py sets it) values go to files and /metrics
    reads them back, so any worker answers a scrape with every worker's counts."""
    script = (
        "import wsgi\n"
        "c = wsgi.app.test_client()\n"
        "for _ in range(3): c.get('/api/v1/health')\n"
        "print(c.get('/metrics').data.decode())\n"
    )
    env = {**cli_env(ops_settings), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "LOG_LEVEL": "WARNING"}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert any(name.endswith(".db") for name in os.listdir(tmp_path))
    assert 'zc_http_requests_total{endpoint="/api/v1/health",method="GET",status="200"} 3.0' in result.stdout
    assert "zc_dialers_live" in result.stdout


def test_request_id_and_json_request_log(ops_client, tenant, capsys):
    import io
    import json
    import logging

    from core.logs import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("zenscall")
    logger.addHandler(handler)
    try:
        sent = ops_client.get("/api/v1/balance", headers={**tenant.headers, "X-Request-ID": "req-123"})
        made = ops_client.get("/api/v1/health")
        bogus = ops_client.get("/api/v1/health", headers={"X-Request-ID": "bad id <script>" * 3})
        call_id = str(uuid.uuid4())
        ops_client.get(f"/api/v1/calls/{call_id}", headers=tenant.headers)
    finally:
        logger.removeHandler(handler)
    assert sent.headers["X-Request-ID"] == "req-123"
    assert len(made.headers["X-Request-ID"]) == 32
    assert bogus.headers["X-Request-ID"] != "bad id <script>" * 3
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    requests = [line for line in lines if line.get("event") == "request"]
    first = requests[0]
    assert first["request_id"] == "req-123" and first["method"] == "GET" and first["path"] == "/api/v1/balance"
    assert first["status"] == 200 and first["duration_ms"] >= 0 and first["account_id"] == tenant.account_id
    assert "account_id" not in requests[1]
    assert requests[-1]["call_id"] == call_id and requests[-1]["status"] == 404
