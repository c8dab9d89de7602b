"""Rate limits on Redis (moving windows, one round trip per request) and the X-RateLimit-* headers
on every response.

* 100/minute per API key (or per user for a JWT) over all endpoints together
  (``RATELIMIT_DEFAULT``); requests without verified credentials count per client address;
* 10/minute on call- and campaign-creation together (``RATELIMIT_CREATE``);
* 10/minute on audio uploads per API key or user (``RATELIMIT_UPLOAD``);
* a login limit per client address (``RATELIMIT_LOGIN``); the same figure per user for password
  changes (guesses of the current password with a stolen token).

A limit is written as the ``limits`` library reads it ("100 per minute", several separated by
";") and counted in a moving window: a Redis list of the times of its bucket's requests. Before
the view, one Lua script takes the limits that apply, in order: the application-wide ones, then
the route's own (``route_limit``) when the caller is verified (or, for logins, always), which
is what the views' decorators do (``require_auth`` before the route's limit). It records the
request in each until one is full (that one answers 429) and returns the figures the headers
show: the full limit's, else the route's, else the application-wide one's. flask-limiter, used
before, needed a round trip per limit and another for the headers, and several times the
Python per request.

When Redis cannot be reached, limits fall back to per-process memory (the ``limits`` library's
moving window) and Redis is tried again ``RETRY_SECONDS`` later; the Redis socket timeouts are
short, so a dead Redis never hangs a request. Responses of routes that checked no limit (404,
405, ...) carry the application-wide figures, read without counting the request; operational
endpoints (``exempt_endpoints``) count nothing and carry no figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from flask.wrappers import Response
from werkzeug.exceptions import TooManyRequests

from api.auth import verified_principal
from api.errors import STATUS_CODES, error_response
from core.rate_limits import (
    CREATE,
    EXTENSION,
    GLOBAL,
    KEY_PREFIX,
    LOGIN,
    PASSWORD,
    UPLOAD,
    Check,
    Figures,
    RateLimits,
    hit_in,
)
from core.settings import Settings

__all__ = ["CREATE", "EXTENSION", "GLOBAL", "KEY_PREFIX", "LOGIN", "PASSWORD", "UPLOAD", "Figures", "RateLimits",
           "hit", "route_limit"]

F = TypeVar("F", bound=Callable[..., Any])

_SCOPE_ATTRIBUTE = "zc_rate_limit_scope"
_FIGURES = "rate_limit_figures"  # g: the figures of this request's check


class RateLimited(TooManyRequests):
    def __init__(self, figures: Figures) -> None:
        super().__init__()
        self.figures = figures


def _state() -> RateLimits:
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


def hit(spec: str, scope: str, bucket: str) -> Figures | None:
    """Count this request in ``bucket``'s limits ``spec`` (e.g. uploads per account, whatever key
    sends them); the figures of the limit that is full, None when none is (or limits are off)."""
    return hit_in(_state(), spec, scope, bucket)


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
    return "ip:" + (request.remote_addr or "unknown")


def route_limit(scope: str) -> Callable[[F], F]:
    """Put a view under a route limit: ``LOGIN`` (per client address), ``CREATE`` (per API
    key or user, shared by call and campaign creation), ``UPLOAD`` (per API key or user) or
    ``PASSWORD`` (the login limit, per user). Place it under ``require_auth``: the limit is
    checked before the view for verified callers only (logins: for every caller)."""
    if scope not in (LOGIN, CREATE, PASSWORD, UPLOAD):
        raise ValueError(f"unknown rate-limit scope {scope!r}")

    def mark(view: F) -> F:
        setattr(view, _SCOPE_ATTRIBUTE, scope)  # carried outwards by the decorators' functools.wraps
        return view

    return mark


def init_limits(app: Flask, settings: Settings, redis_url: str) -> None:
    app.extensions[EXTENSION] = RateLimits(settings, redis_url)
    app.before_request(check_request)
    app.after_request(fill_headers)
    app.register_error_handler(RateLimited, rate_limited_response)


def bind_route_limits(app: Flask) -> None:
    """Note the route scope of every ``route_limit``-marked view (after blueprints are registered)."""
    state: RateLimits = app.extensions[EXTENSION]
    for endpoint, view in app.view_functions.items():
        scope = getattr(view, _SCOPE_ATTRIBUTE, None)
        if scope is not None:
            state.scopes[endpoint] = scope


def exempt_endpoints(app: Flask, *endpoints: str) -> None:
    """Take operational endpoints (health, readiness, metrics) out of every limit and
    of the X-RateLimit-* headers: they must answer without touching Redis."""
    state: RateLimits = app.extensions[EXTENSION]
    state.exempt.update(endpoints)


def check_request() -> None:
    """Count the request in the limits that apply to it; 429 when one is full."""
    state = _state()
    endpoint = request.endpoint
    if not state.enabled or endpoint is None or endpoint in state.exempt or endpoint.rsplit(".", 1)[-1] == "static":
        return
    bucket = client_key()
    checks: list[Check] = [(item, GLOBAL, bucket) for item in state.items[GLOBAL]]
    show = 0
    scope = state.scopes.get(endpoint)
    if scope is not None and (scope == LOGIN or verified_principal() is not None):
        show = len(checks)
        route_bucket = "ip:" + (request.remote_addr or "unknown") if scope == LOGIN else bucket
        checks += [(item, scope, route_bucket) for item in state.items[scope]]
    if not checks:
        return
    figures, full = state.check(checks, min(show, len(checks) - 1), record=True)
    setattr(g, _FIGURES, figures)
    if full:
        raise RateLimited(figures)


def rate_limited_response(exc: RateLimited) -> Response:
    code, _ = STATUS_CODES[429]
    described = str(exc.figures.item)
    return error_response(429, code, f"Rate limit exceeded ({described}). Retry after the time in Retry-After.",
                          {"limit": described})


def fill_headers(response: Response) -> Response:
    """X-RateLimit-* on every response but the exempt endpoints'; Retry-After on 429s."""
    state = _state()
    if not state.enabled or request.endpoint in state.exempt:
        return response
    figures: Figures | None = g.get(_FIGURES)
    if figures is None:  # no limit was checked (no such route, method not allowed, ...)
        items = state.items[GLOBAL]
        if not items:
            return response
        figures, _ = state.check([(item, GLOBAL, client_key()) for item in items], 0, record=False)
    response.headers["X-RateLimit-Limit"] = str(figures.item.amount)
    response.headers["X-RateLimit-Remaining"] = str(figures.remaining)
    response.headers["X-RateLimit-Reset"] = str(figures.reset_at)
    if response.status_code == 429:
        response.headers["Retry-After"] = str(max(1, int(figures.reset_at - time.time())))
    return response
