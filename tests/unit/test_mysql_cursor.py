"""core.mysql_cursor writes every value exactly as pymysql's own cursor does, on a real MariaDB
connection, with and without the server's NO_BACKSLASH_ESCAPES mode."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pymysql
import pytest

from core.mysql_cursor import Cursor
from tests.conftest import DB_SERVER

VALUES: list[Any] = [
    "", "plain", "it's", 'say "hi"', "back\\slash", "nul\x00byte", "line\nbreak\r\ttab", "ctrl-z\x1a", "ünïcødé ☎",
    "'; DROP TABLE calls; --", 0, -5, 2**63 - 1, True, False, None, 1.5, -0.0, Decimal("12.3456"), Decimal("-0.0001"),
    datetime(2026, 12, 5, 10, 0, 0), datetime(2026, 12, 5, 10, 0, 0, 1), datetime(999, 1, 2, 3, 4, 5, 600),
    datetime(2026, 12, 5, 10, 0, tzinfo=UTC), date(2026, 12, 5), time(9, 30, 1, 5), timedelta(seconds=90),
    b"\x00bytes'", bytearray(b"ab"),
]


@pytest.fixture(params=["", "NO_BACKSLASH_ESCAPES"])
def connection(request: pytest.FixtureRequest) -> Iterator[pymysql.connections.Connection]:
    if DB_SERVER == "sqlite":
        pytest.fail("this test needs MariaDB (ZC_TEST_DB_SERVER)")
    url = urlsplit(DB_SERVER.replace("mysql+pymysql", "mysql"))
    conn = pymysql.connect(host=url.hostname, port=url.port or 3306, user=url.username or "root",
                           password=url.password or "", charset="utf8mb4")
    with conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = %s", (request.param,))
    conn.ping()  # the server status (backslash mode) is read from the last OK packet
    yield conn
    conn.close()


def test_every_value_is_written_as_pymysql_writes_it(connection: Any, request: pytest.FixtureRequest) -> None:
    stock, fast = pymysql.cursors.Cursor(connection), Cursor(connection)
    # the two modes really differ: a backslash is doubled only without NO_BACKSLASH_ESCAPES
    if request.node.callspec.params["connection"]:
        assert fast.mogrify("SELECT %s", ("a\\b'",)) == "SELECT 'a\\b'''"
    else:
        assert fast.mogrify("SELECT %s", ("a\\b'",)) == "SELECT 'a\\\\b\\''"
    for value in VALUES:
        assert fast.mogrify("SELECT %s", (value,)) == stock.mogrify("SELECT %s", (value,)), repr(value)
        assert fast.mogrify("SELECT %(v)s", {"v": value}) == stock.mogrify("SELECT %(v)s", {"v": value}), repr(value)
    assert fast.mogrify("SELECT %s, %s", VALUES[:2]) == stock.mogrify("SELECT %s, %s", VALUES[:2])


def test_strings_come_back_as_they_were_sent(connection: Any) -> None:
    with Cursor(connection) as cur:
        for value in [v for v in VALUES if isinstance(v, str)]:
            cur.execute("SELECT %s", (value,))
            assert cur.fetchone()[0] == value
        cur.executemany("SELECT %(a)s", [{"a": "x'"}, {"a": "y\\"}])


def test_a_wrong_number_of_parameters_is_the_driver_error(connection: Any) -> None:
    with pytest.raises(pymysql.err.ProgrammingError):
        Cursor(connection).mogrify("SELECT %s, %s", ("only one",))
