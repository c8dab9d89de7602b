"""Liveness (``/api/v1/health``) and readiness (``/api/v1/ready``) for load balancers and orchestrators.

* ``/health`` answers 200 as long as the web process serves requests; it touches
  neither SQL nor Redis, so a database outage never makes an orchestrator restart
  healthy web processes.
* ``/ready`` checks what a request needs: SQL (``SELECT 1``), Redis (``PING``), and
  that some dialer is alive (a heartbeat younger than ``HEARTBEAT_MAX_AGE`` seconds
  under ``zc:dialer:<node>:<pid>``) with its event socket connected to FreeSWITCH.
  Each check runs with its own deadline (``READY_CHECK_TIMEOUT``, 2 s), so the
  endpoint answers promptly even when a server black-holes its packets.
  ``READY_REQUIRE_DIALER=false`` still reports the dialer checks but does not fail on
  them: the web can then be probed before the dialer runs (deploy order, web-only hosts).
  The per-check details (errors, hosts, dialer nodes) go to the operator only (``Authorization:
  Bearer <METRICS_TOKEN>``, ``api.operator``); anyone else gets the status and the status code.

Both are public (``security: []``) and outside the rate limits.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import sqlalchemy as sa
from flask import jsonify
from flask.wrappers import Response
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api.context import services
from api.operator import is_operator
from core.redis_keys import HEARTBEAT_MAX_AGE, live_dialers

blp = Blueprint("health", __name__, url_prefix="/api/v1", description="Liveness and readiness")

# checks run here so a stuck socket costs a thread, never the request's deadline
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="zc-ready")


class HealthSchema(Schema):
    status = fields.String(metadata={"example": "ok"})


class CheckSchema(Schema):
    ok = fields.Boolean(required=True)
    required = fields.Boolean()
    ms = fields.Float(metadata={"description": "how long the check took"})
    error = fields.String()
    nodes = fields.List(fields.Dict(), metadata={"description": "live dialers (dialer checks)"})


class ReadySchema(Schema):
    status = fields.String(metadata={"description": "`ready` or `not_ready`"})
    checks = fields.Dict(keys=fields.String(), values=fields.Nested(CheckSchema),
                         metadata={"description": "database, redis, dialer_heartbeat, esl_connected"})
    failing = fields.List(fields.String())
    error = fields.Dict(metadata={"description": "on 503: the documented error envelope (NOT_READY)"})


def _measured(check: Any) -> Any:
    def run() -> dict[str, Any]:
        started = time.monotonic()
        try:
            result: dict[str, Any] = check()
        except Exception as exc:  # the reason, without a stack trace
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        result["ms"] = round((time.monotonic() - started) * 1000, 1)
        return result

    return run


def run_checks() -> tuple[bool, dict[str, dict[str, Any]]]:
    """Run every check at once, each bounded by the same deadline."""
    svc = services()
    timeout = svc.settings.ready_check_timeout
    engine, client = svc.engine, svc.redis

    def database() -> dict[str, Any]:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1")).scalar_one()
        return {"ok": True}

    def ping() -> dict[str, Any]:
        return {"ok": bool(client.ping())}

    def dialers() -> dict[str, Any]:
        return {"ok": True, "nodes": live_dialers(client)}

    deadline = time.monotonic() + timeout
    futures = {name: _pool.submit(_measured(fn)) for name, fn in
               (("database", database), ("redis", ping), ("dialers", dialers))}
    results: dict[str, dict[str, Any]] = {}
    for name, future in futures.items():
        try:
            results[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            results[name] = {"ok": False, "error": f"no answer within {timeout:g} s",
                             "ms": round(timeout * 1000, 1)}

    required = svc.settings.ready_require_dialer
    found = results["dialers"]
    nodes = [{k: n.get(k) for k in ("node", "pid", "esl_connected", "in_flight", "age_seconds")}
             for n in found.get("nodes", [])]
    heartbeat: dict[str, Any] = {"ok": bool(nodes), "required": required, "nodes": nodes, "ms": found["ms"]}
    if not found["ok"]:
        heartbeat["error"] = found["error"]
    elif not nodes:
        heartbeat["error"] = f"no dialer heartbeat younger than {HEARTBEAT_MAX_AGE:g} s"
    connected = [n for n in nodes if n.get("esl_connected")]
    esl: dict[str, Any] = {"ok": bool(connected), "required": required,
                           "nodes": [{"node": n["node"], "pid": n["pid"]} for n in connected]}
    if nodes and not connected:
        esl["error"] = "no live dialer is connected to FreeSWITCH's event socket"
    elif not nodes:
        esl["error"] = "no live dialer"

    checks = {"database": results["database"], "redis": results["redis"],
              "dialer_heartbeat": heartbeat, "esl_connected": esl}
    for name in ("database", "redis"):
        checks[name]["required"] = True
    ok = all(c["ok"] for c in checks.values() if c["required"])
    return ok, checks


@blp.route("/health", methods=["GET"])
@blp.doc(security=[], summary="Liveness", description="200 while the web process serves requests. "
         "Touches neither SQL nor Redis; no authentication, no rate limit.")
@blp.response(200, HealthSchema)
def health() -> dict[str, str]:
    return {"status": "ok"}


@blp.route("/ready", methods=["GET"])
@blp.doc(security=[], summary="Readiness",
         description="200 when SQL answers `SELECT 1`, Redis answers PING and (unless "
                     "`READY_REQUIRE_DIALER=false`) a dialer heartbeat is younger than 15 s with its "
                     "event socket connected; 503 otherwise. Every check has a short deadline. No "
                     "authentication, no rate limit. `checks` and `failing` (and the names in the error) "
                     "are shown to the operator only: `Authorization: Bearer <METRICS_TOKEN>`.",
         responses={"503": {"description": "Not ready (the operator sees `failing`)",
                             "content": {"application/json": {"schema": ReadySchema}}}})
@blp.response(200, ReadySchema)
def ready() -> Response:
    ok, checks = run_checks()
    failing = [name for name, check in checks.items() if check["required"] and not check["ok"]]
    body: dict[str, Any] = {"status": "ready" if ok else "not_ready"}
    operator = is_operator(services().settings)
    if operator:
        body.update(checks=checks, failing=failing)
    if not ok and operator:
        body["error"] = {"code": "NOT_READY", "message": "Not ready: " + ", ".join(failing) + ".",
                         "details": {"failing": failing}}
    elif not ok:
        body["error"] = {"code": "NOT_READY", "message": "Not ready.", "details": {}}
    response = jsonify(body)
    response.status_code = 200 if ok else 503
    return response
