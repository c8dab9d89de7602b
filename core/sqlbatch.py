"""Many rows, one statement: the batched UPDATEs of the dialer's hot path.

``UPDATE t, (SELECT :k0 AS key, :col0 AS col ... UNION ALL SELECT :k1, :col1 ...) AS v SET t.col = v.col
WHERE t.key = v.key [AND t.guard = v.guard] ...`` (SQLite: ``UPDATE t SET ... FROM (...) AS v``) changes a
different value in each row with one round trip; each value is sent once, and MariaDB finds each row by
its primary key (``eq_ref``). Statements are built once per (shape, row count) and kept, so SQLAlchemy
compiles each shape once; only the parameters change per batch. A batch is padded up to the next of a
few sizes with rows of NULLs, which match no row.

:class:`Precompiled` runs such a statement (and the hot path's multi-row INSERTs) without SQLAlchemy's
per-execution work: compiled once per dialect, then ``exec_driver_sql`` with the values put through
the same type processors SQLAlchemy would apply. With batches of ~13 calls, that per-statement work
was a large share of the dialer's CPU (``bench/store.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.sql.compiler import SQLCompiler

MAX_ROWS = 128  # rows per statement (parameters stay well under every backend's limit)
#: statement sizes: a batch is padded up to the next one with rows of NULLs (they match no row), so
#: each statement shape is compiled for a handful of sizes only
SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)


def chunks(items: Sequence[Any], size: int = MAX_ROWS) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class Precompiled:
    """A Core statement compiled once per dialect and executed with ``exec_driver_sql``.

    Parameters are given by the statement's bind names (``k0``, ``c_status``, an INSERT's column
    keys); each value goes through its type's bind processor for the dialect (money to minor units,
    aware datetimes to naive UTC, enums to their names), bound values fixed in the statement are
    processed once. Refused: statements with expanding ``IN`` lists (use ``one_of``) and statements
    leaving out a column whose Python-side default or onupdate SQLAlchemy would compute. Returns the
    driver's result: for writes (rowcount); rows would come back unprocessed."""

    def __init__(self, stmt: sa.ClauseElement, column_keys: Sequence[str] | None = None) -> None:
        self.stmt, self.column_keys = stmt, list(column_keys) if column_keys is not None else None
        # by the engine's dialect object itself (an id could be reused by another engine's)
        self._by_dialect: dict[sa.Dialect, tuple[str, tuple[str, ...] | None, dict[str, Any], dict[str, Any]]] = {}

    def _prepare(self, dialect: sa.Dialect) -> tuple[str, tuple[str, ...] | None, dict[str, Any], dict[str, Any]]:
        compiled = cast(SQLCompiler, self.stmt.compile(dialect=dialect, column_keys=self.column_keys))
        if "POSTCOMPILE" in compiled.string:
            raise ValueError("a statement with an expanding IN list cannot be precompiled")
        processors: dict[str, Any] = {}
        fixed: dict[str, Any] = {}
        for bind, name in compiled.bind_names.items():
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                processors[name] = proc
            if not bind.required:
                value = bind.effective_value
                fixed[name] = proc(value) if proc is not None else value
        defaulted = [c.key for c in [*compiled.insert_prefetch, *compiled.update_prefetch]]
        if defaulted:  # Python-side defaults SQLAlchemy would compute per execution: give their values
            raise ValueError(f"values needed for {sorted(defaulted)}")
        order = tuple(compiled.positiontup or ()) if dialect.positional else None
        prepared = (compiled.string, order, processors, fixed)
        self._by_dialect[dialect] = prepared
        return prepared

    def execute(self, conn: sa.Connection, params: dict[str, Any] | list[dict[str, Any]]) -> Any:
        sql, order, processors, fixed = self._by_dialect.get(conn.dialect) or self._prepare(conn.dialect)

        def bound(values: dict[str, Any]) -> Any:
            row = dict(fixed)
            for name, value in values.items():
                proc = processors.get(name)
                row[name] = proc(value) if proc is not None else value
            return row if order is None else tuple(row[name] for name in order)

        if isinstance(params, list):
            return conn.exec_driver_sql(sql, [bound(p) for p in params])
        return conn.exec_driver_sql(sql, bound(params))


def one_of(column: sa.ColumnElement[Any], values: Sequence[Any]) -> sa.ColumnElement[bool]:
    """``column IN (...)`` with one bound value each (not an expanding list): precompilable."""
    return column.in_([sa.literal(v, column.type) for v in values])


@lru_cache(maxsize=64)
def _insert(table: sa.Table, columns: tuple[str, ...]) -> Precompiled:
    return Precompiled(sa.insert(table), columns)


def insert_rows(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """One multi-row INSERT of ``rows`` (every row with the same keys, every column given)."""
    if rows:
        _insert(table, tuple(rows[0])).execute(conn, rows)


def padded_size(rows: int) -> int:
    return next(n for n in SIZES if n >= rows)


@lru_cache(maxsize=512)
def batch_update(table: sa.Table, key: str, columns: tuple[str, ...], rows: int,
                 guard: str | None = None, extra: Callable[[sa.Table], Sequence[Any]] | None = None,
                 const: tuple[str, ...] = (), add: tuple[str, ...] = ()) -> Precompiled:
    """The statement setting ``columns`` per row, for ``rows`` rows identified by ``key``.

    ``guard`` names a second column that must equal the row's ``g<i>`` parameter too (e.g. a call
    and the attempt it must still be live with). ``extra(table)`` adds further WHERE conditions (the
    same for every row); ``const`` names columns set to one value for every row (parameter
    ``c_<column>``); ``add`` names columns among ``columns`` that are incremented by the row's value
    instead of set to it. The conditions of ``extra`` must not use expanding IN lists (``one_of``).
    Parameters: ``k<i>``, ``g<i>``, ``<column><i>``; see ``batch_params``."""
    k = table.c[key]
    names = [(key, "k"), *([(guard, "g")] if guard else []), *((name, name) for name in columns)]

    def row(i: int) -> sa.Select[Any]:
        return sa.select(*(sa.bindparam(f"{prefix}{i}", type_=table.c[name].type).label(name)
                           for name, prefix in names))

    v = (sa.union_all(*(row(i) for i in range(rows))) if rows > 1 else row(0)).subquery("v")
    values: dict[str, Any] = {name: table.c[name] + v.c[name] if name in add else v.c[name] for name in columns}
    for name in const:
        values[name] = sa.bindparam(f"c_{name}", type_=table.c[name].type)
    where: list[Any] = [k == v.c[key]]
    if guard is not None:
        where.append(table.c[guard] == v.c[guard])
    if extra is not None:
        where.extend(extra(table))
    return Precompiled(sa.update(table).where(*where).values(values))


def batch_params(rows: Sequence[dict[str, Any]], key: str, columns: tuple[str, ...],
                 guard: str | None = None, size: int = 0) -> dict[str, Any]:
    """The parameters of ``batch_update`` for ``rows``, padded to ``size`` rows with NULLs."""
    params: dict[str, Any] = {}
    for i, row in enumerate(rows):
        params[f"k{i}"] = row[key]
        if guard is not None:
            params[f"g{i}"] = row[guard]
        for name in columns:
            params[f"{name}{i}"] = row[name]
    for i in range(len(rows), size):
        params[f"k{i}"] = None
        if guard is not None:
            params[f"g{i}"] = None
        for name in columns:
            params[f"{name}{i}"] = None
    return params


def run_batch_update(conn: sa.Connection, table: sa.Table, key: str, columns: tuple[str, ...],
                     rows: Sequence[dict[str, Any]], *, guard: str | None = None,
                     extra: Callable[[sa.Table], Sequence[Any]] | None = None,
                     const: dict[str, Any] | None = None, add: tuple[str, ...] = ()) -> int:
    """Apply one batch update per chunk of rows (keys distinct); the number of rows changed."""
    changed = 0
    const = const or {}
    fixed = {f"c_{name}": value for name, value in const.items()}
    rows = sorted(rows, key=lambda row: row[key])  # rows locked in key order, as an IN list would
    for chunk in chunks(rows):
        size = padded_size(len(chunk))
        stmt = batch_update(table, key, columns, size, guard, extra, tuple(const), add)
        changed += stmt.execute(conn, {**batch_params(chunk, key, columns, guard, size), **fixed}).rowcount
    return changed
