"""pymysql's cursor with the common parameter types escaped without the generic dispatch.

pymysql escapes every bound value through ``Connection.escape`` -> ``converters.escape_item`` -> a
per-type encoder: several Python calls and type checks per value. The dialer's batches bind ~90
values per call (rows of attempts, outbox events, ledger entries), and that dispatch was the
largest single part of their cost (``python bench/store.py --profile 40``). Here strings still go
through pymysql's own string escaping, chosen by the server's NO_BACKSLASH_ESCAPES mode as pymysql
chooses it;
ints, None and naive datetimes are written exactly as pymysql's encoders write them; every other
type goes to ``Connection.escape`` as before. ``tests/unit/test_mysql_cursor.py`` compares the
statements both cursors send for every type.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pymysql.cursors
from pymysql import converters, err
from pymysql.constants import SERVER_STATUS


def _escaper(conn: Any) -> Callable[[Any], str]:
    escape = conn.escape
    if conn.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES:  # as Connection._escape_string

        def escape_string(text: str) -> str:
            return text.replace("'", "''")
    else:
        escape_string = converters.escape_string

    def literal(value: Any) -> str:
        kind = type(value)
        if kind is str:
            return "'" + escape_string(value) + "'"
        if kind is int:
            return str(value)
        if value is None:
            return "NULL"
        if kind is datetime and value.tzinfo is None:
            return "'" + value.isoformat(" ") + "'"  # pymysql's escape_datetime, microseconds only when set
        return str(escape(value))

    return literal


class Cursor(pymysql.cursors.Cursor):
    """The default pymysql cursor with a faster ``_mogrify`` for dict and sequence parameters."""

    def _mogrify(self, query: str, args: Any) -> str:
        if isinstance(args, dict):
            literal = _escaper(self._get_db())
            bound: Any = {key: literal(value) for key, value in args.items()}
        elif isinstance(args, (list, tuple)):
            bound = tuple(map(_escaper(self._get_db()), args))
        else:
            return str(super()._mogrify(query, args))
        try:
            return query % bound
        except TypeError as exc:
            raise err.ProgrammingError(str(exc)) from None
