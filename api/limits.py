"""Rate limits (flask-limiter on Redis) and the X-RateLimit-* headers on every response.

* 100/minute per API key (or per user for a JWT) over all endpoints together
  (``RATELIMIT_DEFAULT``), as an application-wide shared limit; requests without
  verified credentials count per client address instead;
* 10/minute on call- and campaign-creation together (``RATELIMIT_CREATE``);
* 10/minute on audio uploads per API key or user (``RATELIMIT_UPLOAD``);
* a login limit per client address (``RATELIMIT_LOGIN``); the same figure per user for
  password changes (guesses of the current password with a stolen token).

Each application gets its own ``Limiter`` (its storage, fallback state and counters
belong to that app); views only carry a ``route_limit`` mark, which ``bind_route_limits``
turns into that app's limit once the blueprints are registered.

When Redis cannot be reached, limits fall back to per-process memory
(``in_memory_fallback_enabled``) and the storage is retried every few requests; the
Redis socket timeouts are short, so a dead Redis never hangs a request.
flask-limiter only adds headers on the responses of limited views; ``fill_headers``
adds the application-wide figures to every other response (404, 405, 401, ...).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, request
from flask.wrappers import Response
from flask_limiter import ApplicationLimit, Limiter
from flask_limiter.util import get_remote_address
from limits import parse

from api.auth import verified_principal
from api.errors import STATUS_CODES, error_response
from core.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

LOGIN = "login"
CREATE = "create"
PASSWORD = "password"
UPLOAD = "upload"
EXTENSION = "zenscall_limiter"


def _general_limit() -> str:
    return str(current_app.config["ZC_RATELIMIT_DEFAULT"])


def create_limit() -> str:
    return str(current_app.config["ZC_RATELIMIT_CREATE"])


def upload_limit() -> str:
    return str(current_app.config["ZC_RATELIMIT_UPLOAD"])


def login_limit() -> str:
    return str(current_app.config["ZC_RATELIMIT_LOGIN"])


def client_key() -> str:
    """The bucket of this request: a verified API key or user, else the client's address.

    Only verified credentials name a bucket: an API key once its hash matched, a JWT once
    its signature, expiry and user checked. A forged or revoked token counts against the
    address that sent it, so nobody can spend another key's budget. The verification is
    the request's only one (kept in ``g`` for ``require_auth``).
    """
    principal = verified_principal()
    if principal is not None:
        return principal.rate_key
    return "ip:" + (get_remote_address() or "unknown")


# (scope, view) pairs marked by route_limit, bound per application by bind_route_limits
_marked: list[tuple[str, Callable[..., Any]]] = []


def route_limit(scope: str) -> Callable[[F], F]:
    """Put a view under a route limit: ``LOGIN`` (per client address), ``CREATE`` (per API
    key or user, shared by call and campaign creation), ``UPLOAD`` (per API key or user) or
    ``PASSWORD`` (the login limit, per user)."""

    def decorate(view: F) -> F:
        _marked.append((scope, view))

        @functools.wraps(view)
        def limited(*args: Any, **kwargs: Any) -> Any:
            return current_app.extensions[EXTENSION].guarded[view](*args, **kwargs)

        return limited  # type: ignore[return-value]

    return decorate


class AppLimits:
    """One application's limiter and its views wrapped in their route limits."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        self.guarded: dict[Callable[..., Any], Callable[..., Any]] = {}
        self.exempt_endpoints: set[str] = set()


def current_limiter() -> Limiter:
    return current_app.extensions[EXTENSION].limiter  # type: ignore[no-any-return]


def storage_uri(redis_url: str) -> str:
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url.removeprefix("unix://")
    return redis_url


def init_limits(app: Flask, settings: Settings, redis_url: str) -> None:
    app.config.update(
        RATELIMIT_ENABLED=settings.ratelimit_enabled,
        RATELIMIT_STORAGE_URI=storage_uri(redis_url),
        RATELIMIT_STORAGE_OPTIONS={"socket_timeout": 1, "socket_connect_timeout": 1},
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        RATELIMIT_KEY_PREFIX="zc-rl",
        ZC_RATELIMIT_DEFAULT=settings.ratelimit_default,
        ZC_RATELIMIT_CREATE=settings.ratelimit_create,
        ZC_RATELIMIT_LOGIN=settings.ratelimit_login,
        ZC_RATELIMIT_UPLOAD=settings.ratelimit_upload,
    )
    limiter = Limiter(
        key_func=client_key,
        application_limits=[ApplicationLimit(limit_provider=_general_limit, key_function=client_key)],
        headers_enabled=True,
        strategy="moving-window",
    )
    app.extensions[EXTENSION] = AppLimits(limiter)
    # registered before the limiter's own hook, so it runs after it (Flask runs them in reverse)
    app.after_request(fill_headers)
    limiter.init_app(app)


def bind_route_limits(app: Flask) -> None:
    """Wrap every ``route_limit``-marked view in this app's limiter (after blueprints are registered)."""
    state: AppLimits = app.extensions[EXTENSION]
    for scope, view in _marked:
        if scope == LOGIN:
            decorator = state.limiter.limit(login_limit, key_func=get_remote_address, scope=LOGIN)
        elif scope == CREATE:
            decorator = state.limiter.shared_limit(create_limit, scope=CREATE, key_func=client_key)
        elif scope == PASSWORD:
            decorator = state.limiter.limit(login_limit, key_func=client_key, scope=PASSWORD)
        elif scope == UPLOAD:
            decorator = state.limiter.shared_limit(upload_limit, scope=UPLOAD, key_func=client_key)
        else:
            raise ValueError(f"unknown rate-limit scope {scope!r}")
        state.guarded[view] = decorator(view)


def exempt_endpoints(app: Flask, *endpoints: str) -> None:
    """Take operational endpoints (health, readiness, metrics) out of every limit and
    of the X-RateLimit-* headers: they must answer without touching Redis."""
    state: AppLimits = app.extensions[EXTENSION]
    for endpoint in endpoints:
        state.limiter.exempt(app.view_functions[endpoint])
        state.exempt_endpoints.add(endpoint)


def rate_limited_response(exc: Exception) -> Response:
    code, _ = STATUS_CODES[429]
    limit = getattr(exc, "limit", None)
    described = f" ({limit.limit})" if limit is not None else ""
    return error_response(429, code, f"Rate limit exceeded{described}. Retry after the time in Retry-After.",
                          {"limit": str(limit.limit) if limit is not None else None})


def fill_headers(response: Response) -> Response:
    """Add the application-wide limit's figures where flask-limiter added none.

    flask-limiter also sends Retry-After on every limited response; it belongs on 429s only.
    """
    if response.status_code != 429:
        response.headers.pop("Retry-After", None)
    limiter = current_limiter()
    if "X-RateLimit-Limit" in response.headers or not limiter.enabled:
        return response
    if request.endpoint in current_app.extensions[EXTENSION].exempt_endpoints:
        return response
    item = parse(_general_limit())
    try:
        prefix = current_app.config.get("RATELIMIT_KEY_PREFIX", "")
        reset, remaining = limiter.limiter.get_window_stats(item, prefix, client_key(), "global")
    except Exception:  # storage unreachable before any limited request fell back: best-effort figures
        reset, remaining = time.time() + item.get_expiry(), item.amount
    response.headers["X-RateLimit-Limit"] = str(item.amount)
    response.headers["X-RateLimit-Remaining"] = str(max(0, remaining))
    response.headers["X-RateLimit-Reset"] = str(int(reset or time.time()))
    return response
