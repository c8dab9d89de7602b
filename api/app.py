"""The Flask application factory: all wiring of the web process lives here."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import Flask, send_from_directory
from flask.wrappers import Response
from flask_jwt_extended import JWTManager
from flask_smorest import Api
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from api import errors
from api.context import Services, close_db
from api.key_cache import VerifiedKeys
from api.limits import bind_route_limits, exempt_endpoints, init_limits
from api.metrics import init_metrics
from api.request_body import RequestBodyGuard
from api.schemas import ErrorSchema
from api.security import init_security
from core import redis_conn
from core.audio import AudioStore
from core.db import make_engine, make_session_factory
from core.queues import DialNudges, dial_queue, work_queue
from core.settings import Settings, load_settings

API_PREFIX = "/api/v1"


class ZensCallApi(Api):  # type: ignore[misc]
    """flask-smorest with ZensCall's error envelope."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException) -> Response:
        return errors.handle_http_exception(error)


def _swagger_assets() -> str:
    import swagger_ui_bundle

    return str(swagger_ui_bundle.swagger_ui_path)


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    settings = settings or load_settings()
    app = Flask("zenscall")
    logging.getLogger("zenscall").setLevel(logging.INFO)

    redis_url = redis_conn.redis_url(settings)
    # one gevent worker serves many requests at once: a fixed pool they queue for, since a
    # connection opened and closed per request (the overflow) costs more than the request
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size, max_overflow=0)
    redis_client = redis_conn.connect(settings)
    dialer_jobs = dial_queue(redis_client, settings.dialer_queue)
    app.extensions["zenscall"] = Services(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        redis=redis_client,
        dial_queue=dialer_jobs,
        dial_nudges=DialNudges(dialer_jobs),
        work_queue=work_queue(redis_client),
        audio=AudioStore(settings.audio_dir),
        api_keys=VerifiedKeys(settings.api_key_cache_seconds),
    )

    app.config.update(
        SECRET_KEY=settings.secret_key,
        JWT_SECRET_KEY=settings.jwt_secret_key,
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(minutes=settings.jwt_access_minutes),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(days=settings.jwt_refresh_days),
        JWT_TOKEN_LOCATION=["headers"],
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        MAX_FORM_MEMORY_SIZE=1024 * 1024,
        JSON_SORT_KEYS=False,
        API_TITLE="ZensCall API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX=API_PREFIX,
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=f"{API_PREFIX}/docs/assets/",
        API_SPEC_OPTIONS={
            "info": {"description": "Prepaid outbound voice broadcast for Pakistan: upload a message, "
                                    "call one number or a CSV list, pay per answered minute in PKR."},
            "servers": [{"url": "/"}],
            "security": [{"bearerAuth": []}],
        },
    )
    app.config.update(overrides)
    if settings.trusted_proxies > 0:
        # the client's address and scheme as the nearest trusted proxy saw them (per-address
        # limits, logs); with no trusted proxy X-Forwarded-* is ignored: clients cannot pick it
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    JWTManager(app)
    init_metrics(app)  # first: its request id and timer run before the limiter's hooks
    init_limits(app, settings, redis_url)
    init_security(app, settings)

    api = ZensCallApi(app)
    api.spec.components.security_scheme(
        "bearerAuth",
        {"type": "http", "scheme": "bearer",
         "description": "A JWT access token from /api/v1/auth/login, or an API key `zc_live_...`"},
    )
    from api.resources import api_keys, audio, auth, balance, calls, campaigns, dnc, health, webhooks

    for module in (auth, api_keys, audio, calls, campaigns, dnc, balance, webhooks, health):
        api.register_blueprint(module.blp)
    from console import init_console

    # the console counts its requests itself, per signed-in user (console.web.count_request)
    console_endpoints = init_console(app, settings)
    bind_route_limits(app)
    exempt_endpoints(app, "health.health", "health.ready", "metrics", *console_endpoints)

    @app.get(f"{API_PREFIX}/docs/assets/<path:filename>")
    def swagger_assets(filename: str) -> Response:
        # Swagger UI served from the package, not a CDN: users behind firewalls see it too
        return send_from_directory(_swagger_assets(), filename)

    errors.register_error_handlers(app)
    app.teardown_appcontext(close_db)

    from api.cli import register_cli

    register_cli(app)
    app.wsgi_app = RequestBodyGuard(app.wsgi_app)  # type: ignore[method-assign]
    return app
