"""Wiring of the dialer process: settings -> SQL, Redis, caps, ESL, engine, RQ consumer."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from core import redis_conn
from core.db import make_engine, make_session_factory
from core.settings import Settings
from dialer import jobs
from dialer.caps import Caps
from dialer.engine import Engine
from dialer.rq_consumer import RqConsumer
from dialer.store import Store


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


def build(settings: Settings) -> Dialer:
    event_workers = 1 if settings.is_sqlite else 8
    # the pool covers every greenlet that can hold a session at once
    engine_db = make_engine(settings.database_url, pool_size=event_workers + 4)
    sessions = make_session_factory(engine_db)
    redis_client = redis_conn.connect(settings)
    # RQ's blocking pop needs a connection without a short read timeout
    rq_redis = redis_conn.connect(settings, timeout=None)
    engine = Engine(settings, Store(sessions, settings.dialer_node), Caps(redis_client, settings.cap_lease_seconds),
                    redis_client, event_workers=event_workers)
    consumer = RqConsumer(rq_redis, settings.dialer_queue,
                          name=f"dialer-{settings.dialer_node}-{socket.gethostname()}-{os.getpid()}")
    return Dialer(engine, consumer)
