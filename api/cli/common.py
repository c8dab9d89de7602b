"""What every operator command shares: the app's services, JSON out, JSON errors (exit status 1)."""

from __future__ import annotations

import json
import sys
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

import click
from flask import Flask

from api.context import Services


def services(app: Flask) -> Services:
    return app.extensions["zenscall"]  # type: ignore[no-any-return]


def out(payload: dict[str, Any]) -> None:
    click.echo(json.dumps(payload, default=str))


def fail(message: str, code: str = "ERROR") -> NoReturn:
    click.echo(json.dumps({"error": {"code": code, "message": message}}), err=True)
    sys.exit(1)


def get_or_fail(session: Any, model: Any, row_id: str, what: str) -> Any:
    """The row, or a NOT_FOUND JSON error and exit status 1."""
    row = session.get(model, row_id)
    if row is None:
        fail(f"no {what} {row_id}", "NOT_FOUND")
    return row


def money(raw: str, what: str) -> Decimal:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        fail(f"{what} must be a number, got {raw!r}", "INVALID_AMOUNT")
    if not value.is_finite() or value != value.quantize(Decimal("0.0001")):
        fail(f"{what} must have at most 4 decimal places", "INVALID_AMOUNT")
    return value
