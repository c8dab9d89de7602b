"""What a request needs, wired once in ``create_app``: settings, SQL, Redis, queues, audio."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app, g
from rq import Queue
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.key_cache import VerifiedKeys
from core.audio import AudioStore
from core.queues import DialNudges
from core.settings import Settings


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    redis: redis.Redis
    dial_queue: Queue
    dial_nudges: DialNudges
    work_queue: Queue
    audio: AudioStore
    api_keys: VerifiedKeys


def services() -> Services:
    return current_app.extensions["zenscall"]  # type: ignore[no-any-return]


def db() -> Session:
    """The request's SQL session (one per request, closed at teardown)."""
    if "db" not in g:
        g.db = services().sessions()
    return g.db  # type: ignore[no-any-return]


def close_db(_exc: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()
