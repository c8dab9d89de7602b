"""Rate limits counted in Redis: moving windows, one Lua script per check, and a per-process
in-memory fallback while Redis is unreachable. The web surfaces (``api.limits`` for the API,
the console's sign-in) put their requests through one ``RateLimits`` per application, kept in
``app.extensions[EXTENSION]``.

A limit is written as the ``limits`` library reads it ("100 per minute", several separated by
";") and counted in a moving window: a Redis list of the times of its bucket's requests.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import redis
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from core.settings import Settings

log = logging.getLogger("zenscall.limits")

GLOBAL = "global"
LOGIN = "login"
CREATE = "create"
PASSWORD = "password"
UPLOAD = "upload"
UPLOAD_ACCOUNT = "upload-account"  # CSV uploads per account, whatever key or user sends them
EXTENSION = "zenscall_limits"
KEY_PREFIX = "zc-rl"
RETRY_SECONDS = 5.0

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


def hit_in(state: RateLimits, spec: str, scope: str, bucket: str) -> Figures | None:
    """Count a request in ``bucket``'s limits ``spec``; the figures of the limit that is full,
    None when none is (or limits are off)."""
    items = _items(spec)
    if not state.enabled or not items:
        return None
    figures, full = state.check([(item, scope, bucket) for item in items], 0, record=True)
    return figures if full else None
