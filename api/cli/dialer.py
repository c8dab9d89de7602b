"""``flask --app wsgi dialer status``: the dialers' live state, from their Redis heartbeats."""

from __future__ import annotations

from typing import Any

import click
import redis
from flask import Flask
from flask.cli import AppGroup

from api.cli.common import fail, out, services
from core.redis_keys import HEARTBEAT_PREFIX, cap_key, live_dialers, node_cap_usage

COUNTERS = ("originates_total", "finished_total", "answered_total", "retries_total", "reconnects_total",
            "reconciled_total", "adopted_total", "unknown_total", "lease_epoch_changes_total")


def group(app: Flask) -> AppGroup:
    dialer_cli = AppGroup("dialer", help="The dialers' live state (from their Redis heartbeats).")

    @dialer_cli.command("status")
    @click.option("--node", default=None, help="only this FreeSWITCH node's dialers")
    def dialer_status(node: str | None) -> None:
        """Every live dialer (heartbeat < 15 s): connection, in-flight calls, originates/s, counters,
        node cap usage. Exit status 1 when no dialer is alive."""
        client = services(app).redis
        try:
            states = live_dialers(client)
            usage = node_cap_usage(client)
        except (redis.RedisError, OSError) as exc:
            fail(f"Redis is unreachable: {exc}", "REDIS_UNAVAILABLE")
        if node is not None:
            states = [s for s in states if s.get("node") == node]
        dialers: list[dict[str, Any]] = []
        for state in states:
            name = str(state.get("node"))
            dialers.append({
                "node": name, "pid": state.get("pid"), "owner": state.get("owner"),
                "connected": bool(state.get("esl_connected")), "in_flight": state.get("in_flight"),
                "originates_per_second": state.get("originates_per_second"),
                "counters": {k.removesuffix("_total"): state.get(k) for k in COUNTERS if k in state},
                "heartbeat_age_seconds": state.get("age_seconds"), "started_at": state.get("started_at"),
                "node_cap": {"key": cap_key("node", name), "in_use": usage.get(name, 0),
                             "limit": state.get("node_max_channels")},
            })
        if not dialers:
            fail("no live dialer" + (f" on node {node}" if node else "")
                 + f" (no heartbeat younger than 15 s under {HEARTBEAT_PREFIX}*)", "NO_DIALER")
        out({"live": len(dialers), "connected": sum(1 for d in dialers if d["connected"]),
             "in_flight": sum(int(d["in_flight"] or 0) for d in dialers), "dialers": dialers})

    return dialer_cli
