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

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from flask import Flask, current_app, g, request
from flask.wrappers import Response
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

from api.auth import verified_principal
from api.errors import STATUS_CODES, error_response
from core.settings import Settings

log = logging.getLogger("zenscall.limits")

F = TypeVar("F", bound=Callable[..., Any])

GLOBAL = "global"
LOGIN = "login"
CREATE = "create"
PASSWORD = "password"
UPLOAD = "upload"
EXTENSION = "zenscall_limits"
KEY_PREFIX = "zc-rl"
RETRY_SECONDS = 5.0
_SCOPE_ATTRIBUTE = "zc_rate_limit_scope"
_FIGURES = "rate_limit_figures"  # g: the figures of this request's check

# KEYS[i]: the moving window of limit i (request times, newest first), in the order checked.
# ARGV: now, the limit to report when none is full (1-based), 1 to record the request (0: read
# only), then amount and expiry (seconds) of each limit. Returns {full limit or 0, limit
# reported, requests in its window, oldest of them (now when none)}.
_LUA = """
local now = tonumber(ARGV[1])
local show = tonumber(ARGV[2])
local failed = 0
if ARGV[3] == '1' then
  for i = 1, #KEYS do
    local amount = tonumber(ARGV[2 + 2 * i])
    local expiry = tonumber(ARGV[3 + 2 * i])
    local entry = redis.call('lindex', KEYS[i], amount - 1)
    if entry and tonumber(entry) >= now - expiry then
      failed = i
      break
    end
    redis.call('lpush', KEYS[i], ARGV[1])
    redis.call('ltrim', KEYS[i], 0, amount - 1)
    redis.call('expire', KEYS[i], expiry)
  end
end
if failed > 0 then show = failed end
local key = KEYS[show]
local target = now - tonumber(ARGV[3 + 2 * show])
local low, high, last = 0, math.min(tonumber(ARGV[2 + 2 * show]), redis.call('llen', key)) - 1, -1
while low <= high do
  local mid = math.floor((low + high) / 2)
  local value = tonumber(redis.call('lindex', key, mid))
  if value and value >= target then
    last = mid
    low = mid + 1
  else
    high = mid - 1
  end
end
local oldest = ARGV[1]
if last >= 0 then oldest = redis.call('lindex', key, last) end
return {failed, show, last + 1, oldest}
"""


@dataclass(frozen=True)
class Figures:
    """What the X-RateLimit-* headers of a response say."""

    item: RateLimitItem
    remaining: int
    reset_at: int  # epoch seconds


class RateLimited(TooManyRequests):
    def __init__(self, figures: Figures) -> None:
        super().__init__()
        self.figures = figures


# a limit to check: the item, its scope and the bucket it counts
Check = tuple[RateLimitItem, str, str]


def _items(spec: str) -> list[RateLimitItem]:
    return sorted(parse_many(spec)) if spec.strip() else []


class RateLimits:
    """One application's limits, their Redis script and the in-memory fallback."""

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.enabled = settings.ratelimit_enabled
        self.items = {GLOBAL: _items(settings.ratelimit_default), CREATE: _items(settings.ratelimit_create),
                      UPLOAD: _items(settings.ratelimit_upload), LOGIN: _items(settings.ratelimit_login),
                      PASSWORD: _items(settings.ratelimit_login)}
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
        self._script = self.redis.register_script(_LUA)
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._redis_back_at = 0.0  # monotonic time from which Redis is tried again
        self.scopes: dict[str, str] = {}  # endpoint -> route scope
        self.exempt: set[str] = set()

    def check(self, checks: list[Check], show: int, *, record: bool) -> tuple[Figures, bool]:
        """Record the request in ``checks`` in order until one is full (with ``record``);
        (figures of the full limit or of ``checks[show]``, whether one was full)."""
        if time.monotonic() >= self._redis_back_at:
            try:
                return self._check_redis(checks, show, record)
            except (redis.RedisError, OSError) as exc:
                log.warning("rate limits: Redis unreachable (%s); counting in memory for %.0f s", exc,
                            RETRY_SECONDS)
                self._redis_back_at = time.monotonic() + RETRY_SECONDS
        return self._check_memory(checks, show, record)

    def _check_redis(self, checks: list[Check], show: int, record: bool) -> tuple[Figures, bool]:
        now = time.time()
        args: list[Any] = [repr(now), show + 1, 1 if record else 0]
        for item, _, _ in checks:
            args += [item.amount, item.get_expiry()]
        keys = [f"{KEY_PREFIX}/{item.key_for(scope, bucket)}" for item, scope, bucket in checks]
        failed, shown, count, oldest = self._script(keys=keys, args=args)
        item = checks[int(shown) - 1][0]
        reset = float(oldest) + item.get_expiry()
        return Figures(item, max(0, item.amount - int(count)), int(reset + 1)), int(failed) > 0

    def _check_memory(self, checks: list[Check], show: int, record: bool) -> tuple[Figures, bool]:
        failed = None
        if record:
            for index, (item, scope, bucket) in enumerate(checks):
                if not self._memory.hit(item, scope, bucket):
                    failed = index
                    break
        item, scope, bucket = checks[show if failed is None else failed]
        reset, remaining = self._memory.get_window_stats(item, scope, bucket)
        return Figures(item, max(0, remaining), int(reset + 1)), failed is not None

    def redis_ok(self) -> bool:
        try:
            return bool(self.redis.ping())
        except (redis.RedisError, OSError):
            return False


def _state() -> RateLimits:
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


def hit(spec: str, scope: str, bucket: str) -> Figures | None:
    """Count this request in ``bucket``'s limits ``spec`` (e.g. uploads per account, whatever key
    sends them); the figures of the limit that is full, None when none is (or limits are off)."""
    state = _state()
    items = _items(spec)
    if not state.enabled or not items:
        return None
    figures, full = state.check([(item, scope, bucket) for item in items], 0, record=True)
    return figures if full else None


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
