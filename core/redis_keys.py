"""Every Redis key ZensCall writes outside RQ and the rate limiter, and the dialer heartbeat.

The dialer writes these (caps, pacing, the lease epoch, its heartbeat); health, metrics and the
operator CLI read them. Names and formats live here once. Redis holds nothing that SQL cannot
rebuild: leases and heartbeats expire, and a flush is detected through the epoch key.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

PREFIX = "zc:"
#: one lease sorted set per cap: ``zc:cap:node:<node>``, ``zc:cap:acct:<account>``,
#: ``zc:cap:camp:<campaign>``, ``zc:cap:num:<e164>``
CAP_PREFIX = PREFIX + "cap:"
NODE_CAP_PREFIX = CAP_PREFIX + "node:"
#: a random token: a different (or missing) value means Redis lost its state
EPOCH_KEY = PREFIX + "epoch"
HEARTBEAT_PREFIX = PREFIX + "dialer:"
#: the dialer rewrites its heartbeat every second with this expiry
HEARTBEAT_TTL = 15
HEARTBEAT_MAX_AGE = 15.0
#: the webhook sweeper renews it every pass (30 s expiry); the compose healthcheck reads it
WEBHOOK_SWEEPER_KEY = PREFIX + "webhooks:sweeper"


def cap_key(kind: str, ident: str) -> str:
    return f"{CAP_PREFIX}{kind}:{ident}"


def pacing_key(gateway: str) -> str:
    return f"{PREFIX}cps:{gateway}"


def epoch_restored_key(token: str) -> str:
    """The dialer processes that re-added their leases under epoch ``token``."""
    return f"{EPOCH_KEY}:{token}:restored"


def heartbeat_key(node: str, pid: int) -> str:
    return f"{HEARTBEAT_PREFIX}{node}:{pid}"


def publish_heartbeat(client: redis.Redis, node: str, pid: int, state: dict[str, Any]) -> None:
    """``state`` (``Engine.state()``: node, pid, ts, esl_connected, in_flight, counters...)."""
    client.set(heartbeat_key(node, pid), json.dumps(state), ex=HEARTBEAT_TTL)


def clear_heartbeat(client: redis.Redis, node: str, pid: int) -> None:
    client.delete(heartbeat_key(node, pid))


def live_dialers(client: redis.Redis, now: float | None = None,
                 max_age: float = HEARTBEAT_MAX_AGE) -> list[dict[str, Any]]:
    """Every dialer heartbeat younger than ``max_age`` seconds, sorted by node and pid, each with
    ``age_seconds`` and ``key`` added. A stale or unreadable heartbeat is skipped. Raises
    ``redis.RedisError`` when Redis cannot be read."""
    now = time.time() if now is None else now
    keys = sorted(client.scan_iter(match=HEARTBEAT_PREFIX + "*", count=200))
    if not keys:
        return []
    live = []
    values: list[Any] = client.mget(keys)  # type: ignore[assignment]
    for key, raw in zip(keys, values, strict=True):
        if raw is None:
            continue
        try:
            state = json.loads(raw)
            age = now - float(state["ts"])
        except (ValueError, KeyError, TypeError):
            continue
        if age < max_age:
            state["age_seconds"] = round(max(age, 0.0), 3)
            state["key"] = key.decode() if isinstance(key, bytes) else key
            live.append(state)
    return sorted(live, key=lambda s: (str(s.get("node")), int(s.get("pid") or 0)))


def node_cap_usage(client: redis.Redis) -> dict[str, int]:
    """Live leases per node cap (expired leases not counted; nothing is written)."""
    now_ms = int(time.time() * 1000)
    keys = sorted(client.scan_iter(match=NODE_CAP_PREFIX + "*", count=200))
    usage = {}
    for key in keys:
        name = key.decode() if isinstance(key, bytes) else key
        count: Any = client.zcount(key, f"({now_ms}", "+inf")
        usage[name.removeprefix(NODE_CAP_PREFIX)] = int(count)
    return usage
