"""Database engine, session factory and the two column types that keep data exact.

Money is stored as an integer count of 1/10000 PKR on every backend (SQLite has no
exact decimal type), so sums in SQL stay exact; code only ever sees ``Decimal``.
Times are stored as naive UTC and handed back timezone-aware.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

MONEY_SCALE = 10_000  # minor units per rupee
MONEY_QUANTUM = Decimal("0.0001")


def to_minor(value: Decimal) -> int:
    """Rupees to integer minor units; refuses values finer than 1/10000 PKR."""
    if not isinstance(value, Decimal):
        raise TypeError(f"money must be Decimal, got {type(value).__name__}")
    minor = value * MONEY_SCALE
    if minor != minor.to_integral_value():
        raise ValueError(f"{value} has more than 4 decimal places")
    return int(minor)


def from_minor(minor: int) -> Decimal:
    return (Decimal(int(minor)) / MONEY_SCALE).quantize(MONEY_QUANTUM, rounding=ROUND_HALF_UP)


class Money(TypeDecorator[Decimal]):
    """Exact PKR amount, stored as BIGINT minor units."""

    impl = sa.BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Any) -> int | None:
        return None if value is None else to_minor(value)

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        return None if value is None else from_minor(value)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetime stored as naive UTC (same on MariaDB and SQLite)."""

    impl = sa.DateTime(timezone=False)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        # MariaDB's DATETIME drops fractions of a second unless asked: keep microseconds,
        # as SQLite does, so a row reads back as it was written and "newest first" is exact
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime(timezone=False))

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; ZensCall stores timezone-aware times only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int | None = None,
                pre_ping: bool = True) -> Engine:
    """An engine tuned for the backend: MariaDB/MySQL in READ COMMITTED, SQLite in WAL.

    ``pre_ping=False`` saves a round trip per checkout where the caller retries a transaction
    on a dropped connection itself (the dialer). ``max_overflow`` (default: ``pool_size``)
    connections beyond the pool are opened when needed and closed when returned; ``0`` makes
    callers wait for a pooled connection instead (``pool_timeout``, 30 s)."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_pre_ping=True,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # autocommit off at the driver level; SQLAlchemy issues BEGIN itself
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # BEGIN IMMEDIATE takes the write lock up front: two writers queue on
            # busy_timeout instead of failing with "database is locked" mid-way.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    connect_args: dict[str, Any] = {}
    if "+pymysql" in url:
        from core.mysql_cursor import Cursor

        connect_args["cursorclass"] = Cursor
    return sa.create_engine(
        url,
        connect_args=connect_args,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        isolation_level="READ COMMITTED",
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)
