"""``flask --app wsgi db upgrade|downgrade|current``: the schema (Alembic migrations)."""

from __future__ import annotations

from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup

from api.cli.common import out, services
from core.settings import ROOT


def alembic_config(database_url: str) -> Any:
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def group(app: Flask) -> AppGroup:
    db_cli = AppGroup("db", help="Database schema (Alembic migrations).")

    @db_cli.command("upgrade")
    @click.argument("revision", default="head")
    def db_upgrade(revision: str) -> None:
        """Create or update the schema."""
        from alembic import command

        command.upgrade(alembic_config(services(app).settings.database_url), revision)
        out({"upgraded_to": revision})

    @db_cli.command("downgrade")
    @click.argument("revision")
    def db_downgrade(revision: str) -> None:
        from alembic import command

        command.downgrade(alembic_config(services(app).settings.database_url), revision)
        out({"downgraded_to": revision})

    @db_cli.command("current")
    def db_current() -> None:
        from alembic import command

        command.current(alembic_config(services(app).settings.database_url))

    return db_cli
