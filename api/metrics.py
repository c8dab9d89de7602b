"""Prometheus ``/metrics``, request ids and the JSON request log of the web process.

Request metrics (``zc_http_requests_total``, ``zc_http_request_duration_seconds``) are
labelled by method, URL rule (``/api/v1/calls/<string:call_id>``, never the raw path,
so the label set stays bounded) and status. gunicorn runs several workers: when
``PROMETHEUS_MULTIPROC_DIR`` is set, prometheus_client's multiprocess mode sums the
workers' files at scrape time; otherwise each app has its own registry.

The state of the product is read at scrape time by ``StateCollector``:

* ``zc_calls`` by status: a SQL ``GROUP BY``, cached for ``CALLS_CACHE_SECONDS``;
* per dialer (from its heartbeat ``zc:dialer:<node>:<pid>``): calls in flight,
  originates per second, ESL connection state, heartbeat age;
* node cap usage (``zc:cap:node:<node>`` leases) against the node's limit;
* RQ queue depths (the dialer's queue, ``default`` and ``webhooks``).

``METRICS_TOKEN`` protects ``/metrics`` with a bearer token (``api.operator``); production
refuses to start without one. In development, without a token, it is open.

Every request gets an id (``X-Request-ID`` when the client sent a sane one, a new one
otherwise), echoed in the response; every JSON log line written during the request
carries ``request_id``, ``account_id`` once authenticated and ``call_id`` for the
call endpoints; one ``request`` line per request gives method, path, status and duration.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator

import sqlalchemy as sa
from flask import Flask, current_app, g, has_request_context, request
from flask.wrappers import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from api.context import Services
from api.errors import error_response
from api.operator import is_operator
from core import logs
from core.models import Call
from core.redis_keys import live_dialers, node_cap_usage

log = logging.getLogger("zenscall.request")

EXTENSION = "zenscall_metrics"
CALLS_CACHE_SECONDS = 10.0
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class StateCollector(Collector):
    """The product's state, read from SQL (cached) and Redis at scrape time."""

    def __init__(self, svc: Services, cache_seconds: float = CALLS_CACHE_SECONDS) -> None:
        self.svc = svc
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._calls: dict[str, int] = {}
        self._calls_at = float("-inf")
        self._calls_ok = False

    def calls_by_status(self) -> tuple[dict[str, int], bool]:
        with self._lock:
            if time.monotonic() - self._calls_at >= self.cache_seconds:
                self._calls_at = time.monotonic()
                try:
                    with self.svc.engine.connect() as conn:
                        rows = conn.execute(sa.select(Call.status, sa.func.count()).group_by(Call.status))
                        self._calls = {getattr(s, "value", str(s)): int(n) for s, n in rows}
                    self._calls_ok = True
                except Exception:
                    self._calls_ok = False  # keep the last figures; zc_scrape_source_up says why
            return dict(self._calls), self._calls_ok

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("zc_scrape_source_up", "1 when the scrape could read this source",
                               labels=["source"])
        calls, sql_ok = self.calls_by_status()
        up.add_metric(["sql"], 1.0 if sql_ok else 0.0)
        by_status = GaugeMetricFamily("zc_calls", f"Calls by status (SQL, cached {self.cache_seconds:g} s)",
                                      labels=["status"])
        for status, count in sorted(calls.items()):
            by_status.add_metric([status], count)
        yield by_status

        in_flight = GaugeMetricFamily("zc_dialer_calls_in_flight", "Live calls held by a dialer",
                                      labels=["node", "pid"])
        ops = GaugeMetricFamily("zc_dialer_originates_per_second", "Originates per second (10 s average)",
                                labels=["node", "pid"])
        esl = GaugeMetricFamily("zc_dialer_esl_connected", "1 when the dialer's event socket is connected",
                                labels=["node", "pid"])
        age = GaugeMetricFamily("zc_dialer_heartbeat_age_seconds", "Age of the dialer's last heartbeat",
                                labels=["node", "pid"])
        dialers_up = GaugeMetricFamily("zc_dialers_live", "Dialers with a fresh heartbeat")
        cap_used = GaugeMetricFamily("zc_cap_node_in_use", "Channels leased under the node cap", labels=["node"])
        cap_limit = GaugeMetricFamily("zc_cap_node_limit", "The node cap (NODE_MAX_CHANNELS)", labels=["node"])
        depth = GaugeMetricFamily("zc_rq_queue_depth", "Jobs waiting in an RQ queue", labels=["queue"])
        redis_ok = True
        try:
            client = self.svc.redis
            dialers = live_dialers(client)
            dialers_up.add_metric([], len(dialers))
            limits: dict[str, int] = {}
            for state in dialers:
                labels = [str(state.get("node")), str(state.get("pid"))]
                in_flight.add_metric(labels, float(state.get("in_flight") or 0))
                ops.add_metric(labels, float(state.get("originates_per_second") or 0))
                esl.add_metric(labels, 1.0 if state.get("esl_connected") else 0.0)
                age.add_metric(labels, float(state.get("age_seconds") or 0))
                if state.get("node_max_channels") is not None:
                    limits[str(state["node"])] = int(state["node_max_channels"])
            for node, used in node_cap_usage(client).items():
                cap_used.add_metric([node], used)
            for node, limit in sorted(limits.items()):
                cap_limit.add_metric([node], limit)
            for queue in (self.svc.dial_queue, self.svc.work_queue):
                depth.add_metric([queue.name], queue.count)
            webhooks = self.svc.settings.webhook_queue
            depth.add_metric([webhooks], float(client.llen(f"rq:queue:{webhooks}")))
        except Exception:
            redis_ok = False
        up.add_metric(["redis"], 1.0 if redis_ok else 0.0)
        yield from (in_flight, ops, esl, age, dialers_up, cap_used, cap_limit, depth, up)


class AppMetrics:
    """One application's metric objects and registry."""

    def __init__(self, svc: Services) -> None:
        self.multiprocess = multiprocess_dir() is not None
        self.registry = CollectorRegistry()
        # in multiprocess mode values live in the workers' files; the objects register nowhere
        target = None if self.multiprocess else self.registry
        self.requests = Counter("zc_http_requests", "HTTP requests by method, URL rule and status",
                                ["method", "endpoint", "status"], registry=target)
        self.latency = Histogram("zc_http_request_duration_seconds", "HTTP request latency by method and URL rule",
                                 ["method", "endpoint"], buckets=_BUCKETS, registry=target)
        self.state = StateCollector(svc)
        if not self.multiprocess:
            self.registry.register(self.state)

    def exposition(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(self.state)
        return generate_latest(registry)


def _request_context() -> dict[str, object]:
    if not has_request_context():
        return {}
    principal = g.get("principal")
    fields: dict[str, object] = {"request_id": g.get("request_id")}
    if principal is not None:
        fields["account_id"] = principal.account_id
    call_id = (request.view_args or {}).get("call_id")
    if call_id:
        fields["call_id"] = call_id
    return fields


def _start() -> None:
    g.started_at = time.perf_counter()
    sent = request.headers.get("X-Request-ID", "")
    g.request_id = sent if _REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex


def _finish(response: Response) -> Response:
    started = g.pop("started_at", None)
    duration = time.perf_counter() - started if started is not None else 0.0
    rule = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
    metrics: AppMetrics = current_app.extensions[EXTENSION]
    try:
        metrics.requests.labels(request.method, rule, str(response.status_code)).inc()
        metrics.latency.labels(request.method, rule).observe(duration)
    except Exception:  # metrics never fail a request
        log.exception("request metrics failed")
    request_id = g.get("request_id")
    if request_id:
        response.headers["X-Request-ID"] = request_id
    log.info("%s %s %s", request.method, request.path, response.status_code,
             extra={"event": "request", "method": request.method, "path": request.path,
                    "endpoint": rule, "status": response.status_code,
                    "duration_ms": round(duration * 1000, 2),
                    "remote_addr": request.remote_addr})
    return response


def metrics_view() -> Response:
    if not is_operator(current_app.extensions["zenscall"].settings):
        return error_response(401, "UNAUTHORIZED", "/metrics needs the METRICS_TOKEN bearer token.",
                              headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    metrics: AppMetrics = current_app.extensions[EXTENSION]
    response = Response(metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


def init_metrics(app: Flask) -> None:
    """Request ids, request metrics and log lines, and the ``/metrics`` route."""
    app.extensions[EXTENSION] = AppMetrics(app.extensions["zenscall"])
    logs.add_context_provider(_request_context)
    app.before_request(_start)
    app.after_request(_finish)
    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])
