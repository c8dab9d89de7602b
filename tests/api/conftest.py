"""Helpers for the API tests: the error envelope, dedicated apps, calls and client addresses."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from billing.ledger import balance_of, ledger_totals

_addresses = itertools.count(1)


@contextmanager
def statements_sent(engine: Any, fragment: str) -> Iterator[list[str]]:
    """The SQL statements containing ``fragment`` that ``engine`` sends meanwhile."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if fragment in statement:
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The documented error shape, exactly: {"error": {"code", "message", "details"}}."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]  # type: ignore[no-any-return]


def unique_address() -> str:
    """A client address of its own, so per-address limits of one test never touch another's."""
    n = next(_addresses)
    return f"10.{os.getpid() % 250}.{n // 250 % 250}.{n % 250 + 1}"


@pytest.fixture()
def client(app: Any) -> Any:
    """A test client with an address of its own: unauthenticated requests are limited per
    address, and counters in Redis outlive a run."""
    test_client = app.test_client()
    test_client.environ_base["REMOTE_ADDR"] = unique_address()
    return test_client


@pytest.fixture()
def address() -> dict[str, str]:
    """``environ_base`` for a test client request from an address no other test uses."""
    return {"REMOTE_ADDR": unique_address()}


@pytest.fixture()
def make_app(settings: Any) -> Any:
    """An app of its own built from the test settings with some fields changed."""
    from api import create_app

    built: list[Any] = []

    def make(**changes: Any) -> Any:
        application = create_app(replace(settings, **changes))
        built.append(application)
        return application

    yield make
    for application in built:
        application.extensions["zenscall"].engine.dispose()


@pytest.fixture()
def place_call(client: Any) -> Any:
    """POST /calls for a tenant; returns the response."""

    def place(tenant: Any, audio_id: str, phone: str = "03001234567", headers: dict[str, str] | None = None,
              **extra: Any) -> Any:
        return client.post("/api/v1/calls", headers={**tenant.headers, **(headers or {})},
                           json={"phone_number": phone, "audio_id": audio_id, **extra})

    return place


@pytest.fixture()
def set_call(sessions: Any) -> Any:
    """Move a call's row as the dialer would (status, times), for list filters and final-state checks."""
    from core.models import Call

    def update(call_id: str, **values: Any) -> None:
        with sessions() as session:
            session.execute(sa.update(Call).where(Call.id == call_id).values(**values))
            session.commit()

    return update


@pytest.fixture()
def books(sessions: Any) -> Any:
    """(account row, ledger sums) of an account, as (balance, reserved) pairs of Decimal."""

    def read(account_id: str) -> tuple[tuple[Decimal, Decimal], tuple[Decimal, Decimal]]:
        with sessions() as session:
            row = balance_of(session, account_id)
            sums = ledger_totals(session, account_id)
            return (row.balance, row.reserved), (sums.balance, sums.reserved)

    return read
