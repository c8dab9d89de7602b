"""Operator commands: ``flask --app wsgi db|accounts|billing|keys|users|calls|dialer ...``; one module per
command group, each calling the same services as the API. Every command prints JSON (errors go to
stderr as ``{"error": ...}`` with exit status 1)."""

from __future__ import annotations

from flask import Flask

from api.cli import accounts, billing, calls, db, dialer, keys, users
from api.cli.db import alembic_config

__all__ = ["alembic_config", "register_cli"]


def register_cli(app: Flask) -> None:
    for module in (db, accounts, billing, keys, users, calls, dialer):
        app.cli.add_command(module.group(app))
