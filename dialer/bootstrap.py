"""Wiring of the dialer process: settings -> SQL, Redis, caps, ESL, engine, RQ consumer."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

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


def owner_id(node: str) -> str:
    """This process as the owner of its attempts: node, host, pid and a random part."""
    return f"{node}:{socket.gethostname()[:40]}:{os.getpid()}:{os.urandom(4).hex()}"


def build(settings: Settings) -> Dialer:
    dial_concurrency = 1 if settings.is_sqlite else 16
    # the pool covers every greenlet that can hold a connection at once: the event loop, the
    # dispatcher's claim, the originate greenlets that finish a refused call, housekeeping
    engine_db = make_engine(settings.database_url, pool_size=dial_concurrency + 6, pre_ping=False)
    sql_statements = _count_statements(engine_db) if os.environ.get("ZC_COUNT_SQL") == "1" else None
    redis_client = redis_conn.connect(settings)
    # RQ's blocking pop needs a connection without a short read timeout
    rq_redis = redis_conn.connect(settings, timeout=None)
    store = Store(engine_db, settings.dialer_node, owner_id(settings.dialer_node))
    records = RecordDirectory(settings.cdr_dir) if settings.cdr_dir else None
    engine = Engine(settings, store, Caps(redis_client, settings.cap_lease_seconds), redis_client,
                    records=records, dial_concurrency=dial_concurrency)
    if sql_statements is not None:
        engine.extra_state = lambda: {"sql_statements": sql_statements[0]}
    consumer = RqConsumer(rq_redis, settings.dialer_queue,
                          name=f"dialer-{settings.dialer_node}-{socket.gethostname()}-{os.getpid()}")
    return Dialer(engine, consumer)
