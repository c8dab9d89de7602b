"""Wiring of the dialer process: settings -> SQL, Redis, caps, ESL, engine, RQ consumer."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import redis
import sqlalchemy as sa

from core import redis_conn
from core.db import make_engine
from core.settings import Settings
from dialer import jobs
from dialer.caps import Caps
from dialer.engine import Engine
from dialer.rq_consumer import RqConsumer
from dialer.store import Store
from dialer.switch_records import RecordDirectory


@dataclass
class Dialer:
    engine: Engine
    consumer: RqConsumer

    def start(self) -> None:
        jobs.bind(self.engine)
        self.engine.start()
        self.consumer.start()

    def stop(self) -> None:
        self.consumer.stop()
        self.engine.stop()
        jobs.bind(None)


def _count_statements(engine_db: sa.engine.Engine) -> list[int]:
    """Count every statement sent to the database (``ZC_COUNT_SQL=1``, for benchmarks):
    the heartbeat then carries ``sql_statements``."""
    counter = [0]

    @sa.event.listens_for(engine_db, "before_cursor_execute")
    def _count(*_args: object) -> None:
        counter[0] += 1

    return counter


def _count_round_trips(client: redis.Redis) -> list[int]:
    """Count every round trip to Redis of the dialer's client (a command, or a pipeline sent at
    once); ``ZC_COUNT_SQL=1`` too: the heartbeat then carries ``redis_round_trips``."""
    counter = [0]
    pool = client.connection_pool
    plain_get = pool.get_connection

    def get_connection(*args: object, **kwargs: object) -> object:
        connection = plain_get(*args, **kwargs)
        if not getattr(connection, "_zc_counted", False):
            send = connection.send_packed_command

            def counted(command: object, *a: object, **k: object) -> object:
                counter[0] += 1
                return send(command, *a, **k)

            connection.send_packed_command = counted  # type: ignore[method-assign]
            connection._zc_counted = True  # type: ignore[attr-defined]
        return connection

    pool.get_connection = get_connection  # type: ignore[method-assign]
    return counter


def owner_id(node: str) -> str:
    """This process as the owner of its attempts: node, host, pid and a random part."""
    return f"{node}:{socket.gethostname()[:40]}:{os.getpid()}:{os.urandom(4).hex()}"


def build(settings: Settings) -> Dialer:
    dial_concurrency = 1 if settings.is_sqlite else 16
    # the pool covers every greenlet that can hold a connection at once: the event loop, the
    # dispatcher's claim, the originate greenlets that finish a refused call, housekeeping
    engine_db = make_engine(settings.database_url, pool_size=dial_concurrency + 6, pre_ping=False)
    counting = os.environ.get("ZC_COUNT_SQL") == "1"
    sql_statements = _count_statements(engine_db) if counting else None
    redis_client = redis_conn.connect(settings)
    round_trips = _count_round_trips(redis_client) if counting else None
    # RQ's blocking pop needs a connection without a short read timeout
    rq_redis = redis_conn.connect(settings, timeout=None)
    store = Store(engine_db, settings.dialer_node, owner_id(settings.dialer_node))
    records = RecordDirectory(settings.cdr_dir) if settings.cdr_dir else None
    engine = Engine(settings, store, Caps(redis_client, settings.cap_lease_seconds), redis_client,
                    records=records, dial_concurrency=dial_concurrency)
    if sql_statements is not None and round_trips is not None:
        engine.extra_state = lambda: {"sql_statements": sql_statements[0], "redis_round_trips": round_trips[0]}
    consumer = RqConsumer(rq_redis, settings.dialer_queue,
                          name=f"dialer-{settings.dialer_node}-{socket.gethostname()}-{os.getpid()}")
    return Dialer(engine, consumer)
