"""The Alembic migrations go up, down and up again on MariaDB and on SQLite, with rows in
the tables, and the result matches the models (no pending autogenerate changes)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import core.models  # noqa: F401  (registers the tables)
from api.cli import alembic_config
from core.db import Base
from tests.conftest import DB_SERVER

SEED = [
    "INSERT INTO accounts (id,name,active,balance,reserved,currency,rate_per_minute,pulse_seconds,"
    "max_concurrent_calls,created_at) VALUES ('a','x',1,0,0,'PKR',25000,30,5,'2026-11-26 10:00:00')",
    "INSERT INTO audio_files (id,account_id,name,status,source_format,duration_ms,size_bytes,sha256,created_at)"
    " VALUES ('au','a','n','READY','WAV',1,1,'x','2026-11-26 10:00:00')",
    "INSERT INTO campaigns (id,account_id,name,audio_id,status,max_retries,retry_delay_seconds,concurrent_limit,"
    "created_at,updated_at) VALUES ('c','a','n','au','RUNNING',1,30,1,'2026-11-26 10:00:00','2026-11-26 10:00:00')",
]


@pytest.fixture(params=["mariadb", "sqlite"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite" or DB_SERVER == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrate.db'}"
        return
    name = f"zc_mig_{secrets.token_hex(4)}"
    server = sa.create_engine(DB_SERVER, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield f"{DB_SERVER}/{name}?charset=utf8mb4"
    with server.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    server.dispose()


def test_up_down_up_with_rows_and_no_drift(empty_database: str) -> None:
    cfg = alembic_config(empty_database)
    command.upgrade(cfg, "0001")
    engine = sa.create_engine(empty_database)
    with engine.begin() as conn:
        for statement in SEED:
            conn.exec_driver_sql(statement)
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        # the rows survived, with the new columns' defaults
        assert conn.exec_driver_sql("SELECT window_start, window_end, rows_total FROM campaigns").one() == (
            "09:00", "21:00", 0)
    command.downgrade(cfg, "base")
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        drift = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    # server defaults added for existing rows are the only difference allowed
    assert [d for d in drift if not (isinstance(d, list) and d and d[0][0] == "modify_default")] == []
