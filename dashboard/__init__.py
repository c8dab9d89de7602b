"""rq-dashboard for operators (``python -m dashboard``), built here rather than by its command line.

rq-dashboard can requeue and delete any job, CSV imports included, so:

* the password comes from ``DASHBOARD_PASSWORD`` or the file named by ``DASHBOARD_PASSWORD_FILE``,
  never from the command line (``ps`` shows every process's arguments);
* the process refuses to start with an empty password, the ``change-me`` placeholder of
  ``.env.example`` or one shorter than 16 characters (``core.settings.load_dashboard_settings``);
* every request needs HTTP Basic credentials, compared in constant time (rq-dashboard's own check
  compares with ``!=`` and lets ``admin`` in with an empty password when none is configured);
* a request a browser sends on behalf of another site is refused (``Sec-Fetch-Site``, and for
  browsers without it ``Origin`` on anything but GET / HEAD), so a page the operator visits cannot
  make their browser requeue or delete jobs (rq-dashboard requeues on a plain GET, too);
* responses are never cached or framed.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, request

from core.settings import DashboardSettings

REALM = "ZensCall queues"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _same(sent: str | None, expected: str) -> bool:
    return hmac.compare_digest((sent or "").encode(), expected.encode())


def _cross_site() -> bool:
    """A browser says where a request comes from: Sec-Fetch-Site ("none": typed or bookmarked),
    else Origin on requests that change something."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("Origin")
    return request.method not in SAFE_METHODS and origin is not None and urlsplit(origin).netloc != request.host


def create_dashboard(config: DashboardSettings) -> Flask:
    """The rq-dashboard blueprint behind Basic authentication, on ``config.redis_url``."""
    from rq_dashboard.web import blueprint, setup_rq_connection

    app = Flask("zenscall.dashboard")
    app.config.update(RQ_DASHBOARD_REDIS_URL=config.redis_url, RQ_DASHBOARD_DISABLE_DELETE=False,
                      RQ_DASHBOARD_POLL_INTERVAL=2500)

    @app.before_request
    def authenticate() -> Response | None:
        auth = request.authorization
        user_ok = _same(auth.username if auth else None, config.username)
        password_ok = _same(auth.password if auth else None, config.password)
        if auth is None or auth.type != "basic" or not (user_ok & password_ok):
            return Response("Authentication required.\n", 401,
                            {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'}, mimetype="text/plain")
        if _cross_site():
            return Response("Requests from other sites are refused.\n", 403, mimetype="text/plain")
        return None

    @app.after_request
    def secure(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    app.register_blueprint(blueprint)
    setup_rq_connection(app)
    return app


def server_options(config: DashboardSettings) -> dict[str, Any]:
    """gunicorn's settings for the dashboard: one process, a few threads (it is for operators)."""
    return {"bind": f"{config.bind}:{config.port}", "workers": 1, "worker_class": "gthread", "threads": 4,
            "timeout": 60, "accesslog": "-", "errorlog": "-", "proc_name": "zenscall-dashboard"}
