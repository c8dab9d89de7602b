"""Caps and pacing shared by every dialer process, enforced atomically in Redis.

A cap is a sorted set of leases (member: a call as held by one dialer process, score: expiry
in ms). ``grant`` offers a batch of calls in one round trip: for each call in order, every cap
of that call (node channels, account concurrency, campaign ``concurrent_limit``, one live call
per number) is checked and the lease added to all of them, or to none; each granted call also
gets its pacing slot on the gateway. Expired leases are dropped first, so a killed dialer leaks
nothing: its slots free themselves when the leases run out. The live dialer renews its leases
from a greenlet of their own (independent of SQL), well before they run out.

A Redis flush is detected by the epoch key (a random token every dialer remembers): ``grant``
refuses to hand out slots under an epoch this process has not restored its leases in, and
``sync_epoch`` re-adds every live lease of this process first. A new epoch also waits until
every live dialer of the node has restored its own leases (or a grace period has passed), so
calls that were live before the flush are counted before any new one is let in.

Pacing is a per-gateway "next free slot" clock: slots are ``1/cps`` apart across all dialers,
and the clock lives until the last slot it handed out has passed (so a second dialer can never
be given a slot that overlaps slots already handed out).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import redis

from core.redis_keys import EPOCH_KEY, cap_key, epoch_restored_key, pacing_key

# Redis' own clock, read inside the scripts (scripts replicate their effects, so TIME is fine).
# KEYS: [epoch, pacing, cap keys...]; ARGV: [epoch token, lease ms, pacing gap us, ncalls,
#   then per call: member, ncaps, then per cap: key index (into KEYS, 1-based), limit]
# Returns {-1} when the epoch is not ours, else {granted call index, slot delay us, ...}.
_GRANT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {-1} end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local lease = tonumber(ARGV[2])
local gap = tonumber(ARGV[3])
local ncalls = tonumber(ARGV[4])
local cleaned = {}
local out = {}
local pos = 5
local nxt = tonumber(redis.call('GET', KEYS[2]) or '0')
local slot = math.max(now_us, nxt)
local granted = 0
for c = 1, ncalls do
  local member = ARGV[pos]
  local ncaps = tonumber(ARGV[pos + 1])
  local ok = true
  for j = 0, ncaps - 1 do
    local key = KEYS[tonumber(ARGV[pos + 2 + 2 * j])]
    local limit = tonumber(ARGV[pos + 3 + 2 * j])
    if not cleaned[key] then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
      cleaned[key] = true
    end
    if redis.call('ZSCORE', key, member) == false and redis.call('ZCARD', key) >= limit then
      ok = false
      break
    end
  end
  if ok then
    for j = 0, ncaps - 1 do
      local key = KEYS[tonumber(ARGV[pos + 2 + 2 * j])]
      redis.call('ZADD', key, now_ms + lease, member)
      redis.call('PEXPIRE', key, lease * 2)
    end
    out[#out + 1] = c
    out[#out + 1] = slot - now_us
    slot = slot + gap
    granted = granted + 1
  end
  pos = pos + 2 + 2 * ncaps
end
if granted > 0 and gap > 0 then
  redis.call('SET', KEYS[2], slot, 'PX', math.ceil((slot - now_us) / 1000) + 1000)
end
return out
"""

# KEYS: cap keys; ARGV: [lease ms, then per lease: member, nkeys, key indexes...]
_RENEW = """
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local ttl = tonumber(ARGV[1]) * 2
local pos = 2
while pos <= #ARGV do
  local member = ARGV[pos]
  local n = tonumber(ARGV[pos + 1])
  for j = 1, n do
    local key = KEYS[tonumber(ARGV[pos + 1 + j])]
    redis.call('ZADD', key, expiry, member)
    redis.call('PEXPIRE', key, ttl)
  end
  pos = pos + 2 + n
end
return 0
"""


@dataclass(frozen=True)
class Cap:
    key: str
    limit: int


def node_cap(node: str, limit: int) -> Cap:
    return Cap(cap_key("node", node), limit)


def account_cap(account_id: str, limit: int) -> Cap:
    return Cap(cap_key("acct", account_id), limit)


def campaign_cap(campaign_id: str, limit: int) -> Cap:
    return Cap(cap_key("camp", campaign_id), limit)


def number_cap(e164: str) -> Cap:
    """A number is never dialed twice at once, whatever call or campaign it is in."""
    return Cap(cap_key("num", e164), 1)


@dataclass(frozen=True)
class Lease:
    """What one call holds: its member name and the caps it counts in."""

    member: str
    keys: tuple[str, ...]


class EpochChanged(Exception):
    """Redis lost its state (a flush, a restart without persistence): leases must be restored first."""


class Caps:
    def __init__(self, client: redis.Redis, lease_seconds: int, *, grace_seconds: float = 3.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = client
        self._lease_ms = lease_seconds * 1000
        self._grant = client.register_script(_GRANT)
        self._renew = client.register_script(_RENEW)
        self.epoch: str | None = None
        self._epoch_since = 0.0  # when this process adopted the current epoch
        self._epoch_ready = False  # every live dialer has restored its leases in it (or grace passed)
        self.grace_seconds = grace_seconds
        self._clock = clock
        self.flushes_seen = 0

    # -- epoch ---------------------------------------------------------------------------------
    def sync_epoch(self, holder: str, leases: Callable[[], Iterable[Lease]],
                   live_holders: Callable[[], set[str]] | None = None) -> bool:
        """Check the epoch; on a change re-add every live lease of this process first, then take
        the new epoch. True when grants may go on (the epoch is ready). Raises RedisError."""
        current = self._redis.get(EPOCH_KEY)
        if current is None:
            self._redis.set(EPOCH_KEY, os.urandom(8).hex(), nx=True)
            current = self._redis.get(EPOCH_KEY)
        token = current.decode() if isinstance(current, bytes) else str(current)
        if token != self.epoch:
            if self.epoch is not None:
                self.flushes_seen += 1
            self.renew(list(leases()))
            self._redis.sadd(epoch_restored_key(token), holder)
            self._redis.expire(epoch_restored_key(token), 3600)
            self.epoch, self._epoch_since, self._epoch_ready = token, self._clock(), False
        if not self._epoch_ready:
            waited = self._clock() - self._epoch_since
            restored = {m.decode() if isinstance(m, bytes) else str(m)
                        for m in self._redis.smembers(epoch_restored_key(token))}
            wanted = live_holders() if live_holders is not None else {holder}
            self._epoch_ready = wanted <= restored or waited >= self.grace_seconds
        return self._epoch_ready

    # -- slots -----------------------------------------------------------------------------------
    def grant(self, calls: Sequence[tuple[str, Sequence[Cap]]], gateway: str,
              cps: float) -> list[tuple[int, float]]:
        """Offer calls ``[(member, caps)]`` in order; returns ``[(index, seconds until its pacing
        slot)]`` for those granted. Raises EpochChanged when Redis lost its state since the last
        ``sync_epoch`` (nothing granted)."""
        if self.epoch is None or not self._epoch_ready:
            raise EpochChanged("the lease epoch is not restored yet")
        if not calls:
            return []
        keys: dict[str, int] = {EPOCH_KEY: 1, pacing_key(gateway): 2}
        args: list[object] = [self.epoch, self._lease_ms, int(1_000_000 / cps) if cps > 0 else 0, len(calls)]
        for member, caps in calls:
            args += [member, len(caps)]
            for cap in caps:
                args += [keys.setdefault(cap.key, len(keys) + 1), cap.limit]
        out = [int(x) for x in self._grant(keys=list(keys), args=args)]
        if out == [-1]:
            self._epoch_ready = False  # until sync_epoch has restored this process's leases
            raise EpochChanged("Redis lost its state")
        return [(out[i] - 1, out[i + 1] / 1_000_000) for i in range(0, len(out), 2)]

    def renew(self, leases: Sequence[Lease]) -> None:
        """Extend (or re-create after a flush) leases in one round trip per 500."""
        for start in range(0, len(leases), 500):
            keys: dict[str, int] = {}
            args: list[object] = [self._lease_ms]
            for lease in leases[start:start + 500]:
                args += [lease.member, len(lease.keys)]
                args += [keys.setdefault(k, len(keys) + 1) for k in lease.keys]
            self._renew(keys=list(keys), args=args)

    def release(self, leases: Sequence[Lease]) -> None:
        if not leases:
            return
        members: dict[str, list[str]] = {}  # one ZREM per cap key: the node's, account's and campaign's are shared
        for lease in leases:
            for key in lease.keys:
                members.setdefault(key, []).append(lease.member)
        pipe = self._redis.pipeline(transaction=False)
        for key, names in members.items():
            pipe.zrem(key, *names)
        pipe.execute()

    def in_use(self, keys: Sequence[str]) -> list[int]:
        """Live leases per cap key (expired ones dropped), in one round trip."""
        if not keys:
            return []
        seconds, micros = self._redis.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.zremrangebyscore(key, "-inf", now_ms)
            pipe.zcard(key)
        replies = pipe.execute()
        return [int(n) for n in replies[1::2]]
