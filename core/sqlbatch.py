"""Many rows, one statement: the batched UPDATEs of the dialer's hot path.

``UPDATE t SET col = CASE WHEN key = :k0 THEN :col0 WHEN key = :k1 THEN :col1 ... ELSE col END
WHERE key IN (:k0, :k1, ...)`` changes a different value in each row with one round trip, on
MariaDB and SQLite alike. Statements are built once per (shape, row count) and kept, so
SQLAlchemy compiles each shape once; only the parameters change per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

MAX_ROWS = 128  # rows per statement (parameters stay well under every backend's limit)
#: statement sizes: a batch is padded up to the next one by repeating its last row (harmless in a
#: CASE and an IN list), so each statement shape is compiled for a handful of sizes only
SIZES = (1, 2, 4, 8, 16, 32, 64, 128)


def chunks(items: Sequence[Any], size: int = MAX_ROWS) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def padded(rows: Sequence[Any]) -> list[Any]:
    size = next(n for n in SIZES if n >= len(rows))
    return list(rows) + [rows[-1]] * (size - len(rows))


@lru_cache(maxsize=512)
def case_update(table: sa.Table, key: str, columns: tuple[str, ...], rows: int,
                guard: str | None = None, extra: Callable[[sa.Table], Sequence[Any]] | None = None,
                const: tuple[str, ...] = (), add: tuple[str, ...] = ()) -> sa.Update:
    """The statement setting ``columns`` per row, for ``rows`` rows identified by ``key``.

    ``guard`` names a second column that must equal the row's ``g<i>`` parameter too (e.g. a call
    and the attempt it must still be live with): ``WHERE (key, guard) IN ((:k0, :g0), ...)``.
    ``extra(table)`` adds further WHERE conditions (the same for every row); ``const`` names
    columns set to one value for every row (parameter ``c_<column>``); ``add`` names columns
    among ``columns`` that are incremented by the row's value instead of set to it.
    Parameters: ``k<i>``, ``g<i>``, ``<column><i>``; see ``case_params``."""
    k = table.c[key]
    keys = [sa.bindparam(f"k{i}", type_=k.type) for i in range(rows)]
    values = {}
    for name in columns:
        col = table.c[name]
        whens = [(k == keys[i], sa.bindparam(f"{name}{i}", type_=col.type)) for i in range(rows)]
        values[name] = col + sa.case(*whens, else_=sa.literal_column("0")) if name in add else sa.case(
            *whens, else_=col)
    for name in const:
        values[name] = sa.bindparam(f"c_{name}", type_=table.c[name].type)
    if guard is None:
        where: list[Any] = [k.in_(keys)]
    else:
        g = table.c[guard]
        where = [sa.tuple_(k, g).in_([sa.tuple_(keys[i], sa.bindparam(f"g{i}", type_=g.type))
                                      for i in range(rows)])]
    if extra is not None:
        where.extend(extra(table))
    return sa.update(table).where(*where).values(values)


def case_params(rows: Sequence[dict[str, Any]], key: str, columns: tuple[str, ...],
                guard: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for i, row in enumerate(rows):
        params[f"k{i}"] = row[key]
        if guard is not None:
            params[f"g{i}"] = row[guard]
        for name in columns:
            params[f"{name}{i}"] = row[name]
    return params


def run_case_update(conn: sa.Connection, table: sa.Table, key: str, columns: tuple[str, ...],
                    rows: Sequence[dict[str, Any]], *, guard: str | None = None,
                    extra: Callable[[sa.Table], Sequence[Any]] | None = None,
                    const: dict[str, Any] | None = None, add: tuple[str, ...] = ()) -> int:
    """Apply one CASE update per chunk of rows; the number of rows changed."""
    changed = 0
    const = const or {}
    fixed = {f"c_{name}": value for name, value in const.items()}
    for chunk in chunks(rows):
        chunk = padded(chunk)
        stmt = case_update(table, key, columns, len(chunk), guard, extra, tuple(const), add)
        changed += conn.execute(stmt, {**case_params(chunk, key, columns, guard), **fixed}).rowcount
    return changed
