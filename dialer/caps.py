"""Caps and pacing shared by every dialer process, enforced atomically in Redis.

A cap is a sorted set of leases (member: a call as held by one dialer process, score:
expiry in ms). Taking a slot checks every cap of the attempt at once (node channels, account concurrency,
campaign ``concurrent_limit``, one live call per number) and adds the lease to all of
them, or to none. Expired leases are dropped first, so a killed dialer leaks nothing:
its slots free themselves when the leases run out. The live dialer renews its leases
well before that, and re-adds them after a Redis flush.

Pacing is a per-gateway "next free slot" clock: each originate takes the next slot
``1/cps`` seconds after the previous one, across all dialers.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

# Redis' own clock, read inside the script: the same clock as a separate TIME, without
# its round trip (scripts replicate their effects, so TIME before writes is allowed)
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[1])
local member = ARGV[2]
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local limit = tonumber(ARGV[2 + i])
  if redis.call('ZSCORE', key, member) == false and redis.call('ZCARD', key) >= limit then
    return i
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, expiry, member)
  redis.call('PEXPIRE', key, tonumber(ARGV[1]) * 2)
end
return 0
"""

_RENEW = """
local expiry = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local member = ARGV[3]
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, expiry, member)
  redis.call('PEXPIRE', key, ttl * 2)
end
return 0
"""

_PACE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local gap = tonumber(ARGV[1])
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(now, nxt)
redis.call('SET', KEYS[1], slot + gap, 'PX', math.ceil(gap / 1000) + 1000)
return slot - now
"""


@dataclass(frozen=True)
class Cap:
    key: str
    limit: int


def node_cap(node: str, limit: int) -> Cap:
    return Cap(f"zc:cap:node:{node}", limit)


def account_cap(account_id: str, limit: int) -> Cap:
    return Cap(f"zc:cap:acct:{account_id}", limit)


def campaign_cap(campaign_id: str, limit: int) -> Cap:
    return Cap(f"zc:cap:camp:{campaign_id}", limit)


def number_cap(e164: str) -> Cap:
    """A number is never dialed twice at once, whatever call or campaign it is in."""
    return Cap(f"zc:cap:num:{e164}", 1)


class Caps:
    def __init__(self, client: redis.Redis, lease_seconds: int) -> None:
        self._redis = client
        self._lease_ms = lease_seconds * 1000
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._pace = client.register_script(_PACE)

    def _now_ms(self) -> int:
        seconds, micros = self._redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def acquire(self, member: str, caps: list[Cap]) -> Cap | None:
        """Take a slot in every cap, or none; returns the cap that was full, else None."""
        full = int(self._acquire(keys=[c.key for c in caps],
                                 args=[self._lease_ms, member, *[c.limit for c in caps]]))
        return None if full == 0 else caps[full - 1]

    def renew(self, leases: dict[str, list[str]]) -> None:
        """Extend (or re-create after a flush) the leases of live attempts: {member: [keys]}."""
        if not leases:
            return
        expiry = self._now_ms() + self._lease_ms
        pipe = self._redis.pipeline(transaction=False)
        for member, keys in leases.items():
            self._renew(keys=keys, args=[expiry, self._lease_ms, member], client=pipe)
        pipe.execute()

    def release(self, member: str, keys: list[str]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.zrem(key, member)
        pipe.execute()

    def in_use(self, key: str) -> int:
        self._redis.zremrangebyscore(key, "-inf", self._now_ms())
        return int(self._redis.zcard(key))

    def pace(self, gateway: str, cps: float) -> float:
        """Seconds to wait before this originate so the gateway stays under ``cps``."""
        if cps <= 0:
            return 0.0
        gap_us = int(1_000_000 / cps)
        return int(self._pace(keys=[f"zc:cps:{gateway}"], args=[gap_us])) / 1_000_000
