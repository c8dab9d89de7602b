"""Operator commands: ``flask --app wsgi db|accounts|billing|keys|users|dialer ...``. Every command prints JSON."""

from __future__ import annotations

import json
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup

from api.context import Services
from billing import ledger
from billing.rating import money_str
from core.accounts import AccountError, check_password, create_account, set_password
from core.db import utcnow
from core.models import Account, ApiKey, User
from core.settings import ROOT
from core.states import LedgerKind


def _services(app: Flask) -> Services:
    return app.extensions["zenscall"]  # type: ignore[no-any-return]


def _out(payload: dict[str, Any]) -> None:
    click.echo(json.dumps(payload, default=str))


def _fail(message: str, code: str = "ERROR") -> None:
    click.echo(json.dumps({"error": {"code": code, "message": message}}), err=True)
    sys.exit(1)


def _get_or_fail(session: Any, model: Any, row_id: str, what: str) -> Any:
    """The row, or a NOT_FOUND JSON error and exit status 1."""
    row = session.get(model, row_id)
    if row is None:
        _fail(f"no {what} {row_id}", "NOT_FOUND")
    return row


def _money(raw: str, what: str) -> Decimal:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        _fail(f"{what} must be a number, got {raw!r}", "INVALID_AMOUNT")
        raise
    if not value.is_finite() or value != value.quantize(Decimal("0.0001")):
        _fail(f"{what} must have at most 4 decimal places", "INVALID_AMOUNT")
    return value


def _rate(raw: str) -> Decimal:
    """A rate per minute: exact money, and positive (a zero or negative rate would make calls free
    or credit the customer)."""
    value = _money(raw, "rate")
    if value <= 0:
        _fail(f"rate must be positive, got {raw!r}", "INVALID_RATE")
    return value


def alembic_config(database_url: str) -> Any:
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def register_cli(app: Flask) -> None:
    db_cli = AppGroup("db", help="Database schema (Alembic migrations).")
    accounts_cli = AppGroup("accounts", help="Customer accounts.")
    billing_cli = AppGroup("billing", help="Money: top-ups and adjustments.")
    keys_cli = AppGroup("keys", help="API keys.")

    @db_cli.command("upgrade")
    @click.argument("revision", default="head")
    def db_upgrade(revision: str) -> None:
        """Create or update the schema."""
        from alembic import command

        command.upgrade(alembic_config(_services(app).settings.database_url), revision)
        _out({"upgraded_to": revision})

    @db_cli.command("downgrade")
    @click.argument("revision")
    def db_downgrade(revision: str) -> None:
        from alembic import command

        command.downgrade(alembic_config(_services(app).settings.database_url), revision)
        _out({"downgraded_to": revision})

    @db_cli.command("current")
    def db_current() -> None:
        from alembic import command

        command.current(alembic_config(_services(app).settings.database_url))

    @accounts_cli.command("create")
    @click.option("--name", required=True)
    @click.option("--email", required=True)
    @click.option("--password", required=True)
    @click.option("--balance", default="0", help="opening balance in PKR")
    @click.option("--rate", default=None, help="PKR per minute")
    @click.option("--pulse", default=None, type=int, help="billing pulse in seconds")
    @click.option("--max-concurrent", default=None, type=int)
    def accounts_create(name: str, email: str, password: str, balance: str, rate: str | None,
                        pulse: int | None, max_concurrent: int | None) -> None:
        """Create an account, its owner user and a first API key (printed once)."""
        svc = _services(app)
        if pulse is not None and pulse <= 0:
            _fail("pulse must be positive", "INVALID_PULSE")
        with svc.sessions() as session:
            try:
                created = create_account(
                    session, svc.settings, name=name, email=email, password=password,
                    balance=_money(balance, "balance"),
                    rate_per_minute=_rate(rate) if rate is not None else None,
                    pulse_seconds=pulse, max_concurrent_calls=max_concurrent,
                )
            except AccountError as exc:
                _fail(str(exc), "INVALID_ACCOUNT")
                return
            acc = created.account
            _out({
                "account_id": acc.id, "user_id": created.user.id, "email": created.user.email,
                "api_key": created.api_key, "api_key_id": created.api_key_id,
                "balance": money_str(acc.balance), "currency": acc.currency,
                "rate_per_minute": money_str(acc.rate_per_minute), "pulse_seconds": acc.pulse_seconds,
            })

    @accounts_cli.command("list")
    def accounts_list() -> None:
        import sqlalchemy as sa

        svc = _services(app)
        with svc.sessions() as session:
            for acc in session.execute(sa.select(Account).order_by(Account.created_at)).scalars():
                _out({"account_id": acc.id, "name": acc.name, "active": acc.active,
                      "balance": money_str(acc.balance), "reserved": money_str(acc.reserved)})

    @accounts_cli.command("set-rate")
    @click.argument("account_id")
    @click.option("--rate", default=None, help="PKR per minute")
    @click.option("--pulse", default=None, type=int)
    @click.option("--max-concurrent", default=None, type=int)
    def accounts_set_rate(account_id: str, rate: str | None, pulse: int | None, max_concurrent: int | None) -> None:
        """Change an account's rate, pulse or concurrent-call limit."""
        svc = _services(app)
        with svc.sessions() as session:
            acc = _get_or_fail(session, Account, account_id, "account")
            if rate is not None:
                acc.rate_per_minute = _rate(rate)
            if pulse is not None:
                if pulse <= 0:
                    _fail("pulse must be positive", "INVALID_PULSE")
                acc.pulse_seconds = pulse
            if max_concurrent is not None:
                acc.max_concurrent_calls = max_concurrent
            session.commit()
            _out({"account_id": acc.id, "rate_per_minute": money_str(acc.rate_per_minute),
                  "pulse_seconds": acc.pulse_seconds, "max_concurrent_calls": acc.max_concurrent_calls})

    # "-5" is an amount, not an unknown option: it reaches the command and gets a JSON answer
    signed_amount = {"ignore_unknown_options": True}

    @billing_cli.command("topup", context_settings=signed_amount)
    @click.argument("account_id")
    @click.argument("amount")
    @click.option("--description", default="top-up")
    def billing_topup(account_id: str, amount: str, description: str) -> None:
        """Add AMOUNT PKR to an account (a TOPUP ledger entry)."""
        value = _money(amount, "amount")
        if value <= 0:
            _fail("amount must be positive", "INVALID_AMOUNT")
        svc = _services(app)
        with svc.sessions() as session:
            try:
                entry = ledger.credit(session, account_id, value, kind=LedgerKind.TOPUP, description=description)
            except ledger.AccountNotFound:
                _fail(f"no account {account_id}", "NOT_FOUND")
                return
            session.commit()
            _out({"account_id": account_id, "ledger_entry_id": entry.id, "kind": entry.kind.value,
                  "amount": money_str(entry.amount), "balance": money_str(entry.balance_after),
                  "reserved": money_str(entry.reserved_after),
                  "available": money_str(entry.balance_after - entry.reserved_after)})

    @billing_cli.command("adjust", context_settings=signed_amount)
    @click.argument("account_id")
    @click.argument("amount")
    @click.option("--description", required=True)
    def billing_adjust(account_id: str, amount: str, description: str) -> None:
        """A signed correction (ADJUSTMENT); a debit never takes reserved money."""
        value = _money(amount, "amount")
        svc = _services(app)
        with svc.sessions() as session:
            try:
                if value > 0:
                    entry = ledger.credit(session, account_id, value, kind=LedgerKind.ADJUSTMENT,
                                          description=description)
                elif value < 0:
                    entry = ledger.debit_adjustment(session, account_id, -value, description=description)
                else:
                    _fail("amount must not be zero", "INVALID_AMOUNT")
                    return
            except ledger.AccountNotFound:
                _fail(f"no account {account_id}", "NOT_FOUND")
                return
            except ledger.InsufficientBalance as exc:
                _fail(f"only {exc.available} PKR available", "INSUFFICIENT_BALANCE")
                return
            session.commit()
            _out({"account_id": account_id, "ledger_entry_id": entry.id, "amount": money_str(entry.amount),
                  "balance": money_str(entry.balance_after)})

    @keys_cli.command("create")
    @click.argument("account_id")
    @click.option("--name", default="API key")
    def keys_create(account_id: str, name: str) -> None:
        """Create an API key for an account (printed once)."""
        from api.resources.api_keys import create_key

        svc = _services(app)
        with svc.sessions() as session:
            _get_or_fail(session, Account, account_id, "account")
            row, key = create_key(session, account_id, name)
            session.commit()
            _out({"api_key_id": row.id, "api_key": key, "prefix": row.prefix, "account_id": account_id})

    register_ops_cli(app, accounts_cli, keys_cli)
    for group in (db_cli, accounts_cli, billing_cli, keys_cli):
        app.cli.add_command(group)


def register_ops_cli(app: Flask, accounts_cli: AppGroup, keys_cli: AppGroup) -> None:
    """Operations: ``accounts show``, ``keys revoke``, ``users create|set-password``, ``dialer status``."""
    users_cli = AppGroup("users", help="Users who log in to an account (JWT).")
    dialer_cli = AppGroup("dialer", help="The dialers' live state (from their Redis heartbeats).")

    @accounts_cli.command("show")
    @click.argument("account_id")
    def accounts_show(account_id: str) -> None:
        """An account's balance, reserved and available money, rate and limits."""
        svc = _services(app)
        with svc.sessions() as session:
            acc = _get_or_fail(session, Account, account_id, "account")
            _out({"account_id": acc.id, "name": acc.name, "active": acc.active, "currency": acc.currency,
                  "balance": money_str(acc.balance), "reserved": money_str(acc.reserved),
                  "available": money_str(acc.balance - acc.reserved),
                  "rate_per_minute": money_str(acc.rate_per_minute), "pulse_seconds": acc.pulse_seconds,
                  "max_concurrent_calls": acc.max_concurrent_calls, "created_at": acc.created_at})

    @keys_cli.command("revoke")
    @click.argument("key_id")
    def keys_revoke(key_id: str) -> None:
        """Revoke an API key: requests with it answer 401 (API_KEY_REVOKED) from now on."""
        svc = _services(app)
        with svc.sessions() as session:
            row = _get_or_fail(session, ApiKey, key_id, "API key")
            already = row.revoked_at is not None
            if not already:
                row.revoked_at = utcnow()
                session.commit()
            _out({"api_key_id": row.id, "account_id": row.account_id, "prefix": row.prefix,
                  "revoked_at": row.revoked_at, "already_revoked": already})

    @users_cli.command("create")
    @click.argument("account_id")
    @click.option("--email", required=True)
    @click.option("--password", required=True)
    def users_create(account_id: str, email: str, password: str) -> None:
        """Add a user (email + password login) to an existing account."""
        import sqlalchemy as sa

        from core.credentials import hash_password

        email = email.strip().lower()
        if "@" not in email or len(email) > 254:
            _fail(f"not an email address: {email!r}", "INVALID_USER")
        try:
            check_password(password)
        except AccountError as exc:
            _fail(str(exc), "INVALID_USER")
        svc = _services(app)
        with svc.sessions() as session:
            _get_or_fail(session, Account, account_id, "account")
            if session.execute(sa.select(User.id).where(User.email == email)).first():
                _fail(f"a user with email {email} already exists", "CONFLICT")
                return
            user = User(account_id=account_id, email=email, password_hash=hash_password(password))
            session.add(user)
            session.commit()
            _out({"user_id": user.id, "account_id": account_id, "email": user.email, "role": user.role})

    @users_cli.command("set-password")
    @click.argument("email")
    @click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
                  help="the new password (asked for when not given)")
    def users_set_password(email: str, password: str) -> None:
        """Set a user's password (e.g. a forgotten one). Every token issued before stops working."""
        import sqlalchemy as sa

        svc = _services(app)
        with svc.sessions() as session:
            user = session.execute(sa.select(User).where(User.email == email.strip().lower())).scalar_one_or_none()
            if user is None:
                _fail(f"no user with email {email}", "NOT_FOUND")
                return
            try:
                set_password(session, user, password)
            except AccountError as exc:
                _fail(str(exc), "INVALID_PASSWORD")
                return
            session.commit()
            _out({"user_id": user.id, "account_id": user.account_id, "email": user.email, "tokens_revoked": True})

    @dialer_cli.command("status")
    @click.option("--node", default=None, help="only this FreeSWITCH node's dialers")
    def dialer_status(node: str | None) -> None:
        """Every live dialer (heartbeat < 15 s): connection, in-flight calls, originates/s, counters,
        node cap usage. Exit status 1 when no dialer is alive."""
        import redis as redis_lib

        from core.redis_keys import HEARTBEAT_PREFIX, cap_key, live_dialers, node_cap_usage

        client = _services(app).redis
        try:
            states = live_dialers(client)
            usage = node_cap_usage(client)
        except (redis_lib.RedisError, OSError) as exc:
            _fail(f"Redis is unreachable: {exc}", "REDIS_UNAVAILABLE")
            return
        if node is not None:
            states = [s for s in states if s.get("node") == node]
        counter_names = ("originates_total", "finished_total", "answered_total", "retries_total",
                         "reconnects_total", "reconciled_total")
        dialers: list[dict[str, Any]] = []
        for state in states:
            name = str(state.get("node"))
            dialers.append({
                "node": name, "pid": state.get("pid"), "connected": bool(state.get("esl_connected")),
                "in_flight": state.get("in_flight"), "originates_per_second": state.get("originates_per_second"),
                "counters": {k.removesuffix("_total"): state.get(k) for k in counter_names if k in state},
                "heartbeat_age_seconds": state.get("age_seconds"), "started_at": state.get("started_at"),
                "node_cap": {"key": cap_key("node", name), "in_use": usage.get(name, 0),
                             "limit": state.get("node_max_channels")},
            })
        if not dialers:
            _fail("no live dialer" + (f" on node {node}" if node else "")
                  + f" (no heartbeat younger than 15 s under {HEARTBEAT_PREFIX}*)", "NO_DIALER")
            return
        _out({"live": len(dialers), "connected": sum(1 for d in dialers if d["connected"]),
              "in_flight": sum(int(d["in_flight"] or 0) for d in dialers), "dialers": dialers})

    for group in (users_cli, dialer_cli):
        app.cli.add_command(group)

