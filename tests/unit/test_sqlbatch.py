"""The batched UPDATE of the dialer's hot path (core.sqlbatch) on MariaDB and on SQLite: each row gets
its own values, guards and extra conditions hold per row, padding rows match nothing, and the count
returned is the number of rows the statement matched."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from core import sqlbatch
from core.db import Money, UTCDateTime, make_engine
from tests.conftest import DB_SERVER

metadata = sa.MetaData()
items = sa.Table(
    "batch_items", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("owner", sa.String(36), nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("amount", Money, nullable=False),
    sa.Column("at", UTCDateTime, nullable=True),
    sa.Column("note", sa.String(64), nullable=True),
)


def _open(table: sa.Table) -> list[Any]:
    return [table.c.state == "OPEN"]


@pytest.fixture(params=["mariadb", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite" or DB_SERVER == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'batch.db'}")
        metadata.create_all(eng)
        yield eng
        eng.dispose()
        return
    name = f"zc_batch_{secrets.token_hex(4)}"
    server = sa.create_engine(DB_SERVER, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    eng = make_engine(f"{DB_SERVER}/{name}?charset=utf8mb4")
    metadata.create_all(eng)
    yield eng
    eng.dispose()
    with server.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    server.dispose()


def _seed(engine: sa.Engine, n: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(items), [{"id": f"i{n_:04d}", "owner": f"o{n_}", "state": "OPEN" if n_ % 5 else "DONE",
                                         "count": n_, "amount": Decimal("1.5000"), "at": None, "note": None}
                                        for n_ in range(n)])


def _rows(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {r.id: r for r in conn.execute(sa.select(items))}


def test_each_row_gets_its_own_values_and_only_rows_that_pass_every_condition_change(engine: sa.Engine) -> None:
    _seed(engine, 20)
    at = datetime(2026, 12, 5, 10, 30, 1, 123456, tzinfo=UTC)
    batch = [{"id": f"i{n:04d}", "owner": f"o{n}", "count": 100 + n, "amount": Decimal("0.2500"),
              "at": at + timedelta(seconds=n), "note": None if n % 2 else f"n{n}"} for n in range(1, 8)]
    batch[1]["owner"] = "someone else"  # i0002: the guard does not hold
    batch.append({"id": "i0008", "owner": "o8", "count": 108, "amount": Decimal("0.2500"),
                  "at": at + timedelta(seconds=8), "note": "n8"})
    batch.append({"id": "missing", "owner": "o", "count": 1, "amount": Decimal("1"), "at": at, "note": "x"})
    with engine.begin() as conn:
        changed = sqlbatch.run_batch_update(conn, items, "id", ("count", "amount", "at", "note"), batch,
                                            guard="owner", extra=_open, const={"state": "SEEN"}, add=("amount",))
    rows = _rows(engine)
    updated = {"i0001", "i0003", "i0004", "i0006", "i0007", "i0008"}
    # 9 rows asked: i0002 (guard), i0005 (DONE) and "missing" match nothing, nor do the 3 rows of
    # NULLs padding the batch to 12
    assert changed == len(updated)
    for n in range(20):
        row = rows[f"i{n:04d}"]
        if row.id in updated:
            assert (row.state, row.count, row.amount, row.at, row.note) == (
                "SEEN", 100 + n, Decimal("1.7500"), at + timedelta(seconds=n), None if n % 2 else f"n{n}")
        else:
            assert (row.state, row.count, row.amount, row.at) == (
                "OPEN" if n % 5 else "DONE", n, Decimal("1.5000"), None)
    assert "missing" not in rows


def test_a_batch_larger_than_one_statement_is_split(engine: sa.Engine) -> None:
    _seed(engine, 300)
    batch = [{"id": f"i{n:04d}", "count": -n} for n in range(300) if n % 5]
    with engine.begin() as conn:
        changed = sqlbatch.run_batch_update(conn, items, "id", ("count",), batch)
    assert changed == len(batch) == 240
    rows = _rows(engine)
    assert all(rows[f"i{n:04d}"].count == (-n if n % 5 else n) for n in range(300))


@pytest.mark.parametrize("size", [1, 2, 3, 5, 13, 16, 17, 128])
def test_every_padded_size_updates_exactly_its_rows(engine: sa.Engine, size: int) -> None:
    _seed(engine, 130)
    batch = [{"id": f"i{n:04d}", "note": f"s{size}"} for n in range(1, 130, 1)][:size]
    with engine.begin() as conn:
        assert sqlbatch.run_batch_update(conn, items, "id", ("note",), batch) == size
    assert sum(r.note == f"s{size}" for r in _rows(engine).values()) == size
