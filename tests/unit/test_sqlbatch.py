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


def test_precompiled_inserts_store_what_sqlalchemy_stores(engine: sa.Engine) -> None:
    """Money, aware datetimes, NULLs and quotes go through the same type processors."""
    at = datetime(2026, 12, 5, 18, 0, 0, 1, tzinfo=UTC)
    row = {"owner": None, "state": "OPEN", "count": 7, "amount": Decimal("12.3456"), "at": at, "note": "it's \\ 'q'"}
    with engine.begin() as conn:
        sqlbatch.insert_rows(conn, items, [{"id": "fast-1", **row}, {"id": "fast-2", **row, "at": None}])
        conn.execute(sa.insert(items), [{"id": "core-1", **row}, {"id": "core-2", **row, "at": None}])
    rows = _rows(engine)
    for n in (1, 2):
        fast, core = rows[f"fast-{n}"], rows[f"core-{n}"]
        assert fast[1:] == core[1:]
    assert rows["fast-1"].at == at and rows["fast-1"].amount == Decimal("12.3456") and rows["fast-2"].at is None
    assert rows["fast-1"].note == "it's \\ 'q'"


def test_precompiled_refuses_what_it_cannot_run_as_compiled(engine: sa.Engine) -> None:
    expanding = sqlbatch.Precompiled(sa.update(items).where(items.c.state.in_(["OPEN", "DONE"])).values(count=1))
    defaulted = sa.Table("batch_defaults", sa.MetaData(), sa.Column("id", sa.String(8), primary_key=True),
                         sa.Column("n", sa.Integer, default=5))
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="expanding IN"):
            expanding.execute(conn, {})
        with pytest.raises(ValueError, match=r"values needed for \['n'\]"):
            sqlbatch.insert_rows(conn, defaulted, [{"id": "x"}])
        one_of = sqlbatch.Precompiled(sa.update(items).where(sqlbatch.one_of(items.c.state, ["OPEN", "DONE"]))
                                      .values(count=sa.bindparam("c")))
        _seed_rows(conn, 3)
        assert one_of.execute(conn, {"c": 9}).rowcount == 3


def _seed_rows(conn: sa.Connection, n: int) -> None:
    conn.execute(sa.insert(items), [{"id": f"s{i}", "owner": None, "state": "OPEN", "count": 0,
                                     "amount": Decimal("0"), "at": None, "note": None} for i in range(n)])
