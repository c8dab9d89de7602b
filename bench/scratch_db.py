"""(helper) A throw-away benchmark database: ``zc_bench_<random>`` on a server, migrated to Alembic's
head, dropped when the block ends."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import command

from api.cli import alembic_config


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """Yield the URL of a new, migrated database on ``server_url``; drop it afterwards."""
    server = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"zc_bench_{secrets.token_hex(4)}"
    with server.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    try:
        url = f"{server_url}/{name}?charset=utf8mb4"
        command.upgrade(alembic_config(url), "head")
        yield url
    finally:
        with server.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        server.dispose()
