"""``flask --app wsgi accounts create|list|show|set-rate``: customer accounts."""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import AppGroup

from api.cli.common import fail, get_or_fail, money, out, services
from billing.rating import money_str
from core.models import Account
from services.accounts import AccountError, create_account, set_terms


def group(app: Flask) -> AppGroup:
    accounts_cli = AppGroup("accounts", help="Customer accounts.")

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
        svc = services(app)
        with svc.sessions() as session:
            try:
                created = create_account(
                    session, svc.settings, name=name, email=email, password=password,
                    balance=money(balance, "balance"),
                    rate_per_minute=money(rate, "rate") if rate is not None else None,
                    pulse_seconds=pulse, max_concurrent_calls=max_concurrent,
                )
            except AccountError as exc:
                fail(str(exc), "INVALID_ACCOUNT")
            acc = created.account
            out({
                "account_id": acc.id, "user_id": created.user.id, "email": created.user.email,
                "api_key": created.api_key, "api_key_id": created.api_key_id,
                "balance": money_str(acc.balance), "currency": acc.currency,
                "rate_per_minute": money_str(acc.rate_per_minute), "pulse_seconds": acc.pulse_seconds,
            })

    @accounts_cli.command("list")
    def accounts_list() -> None:
        with services(app).sessions() as session:
            for acc in session.execute(sa.select(Account).order_by(Account.created_at)).scalars():
                out({"account_id": acc.id, "name": acc.name, "active": acc.active,
                     "balance": money_str(acc.balance), "reserved": money_str(acc.reserved)})

    @accounts_cli.command("show")
    @click.argument("account_id")
    def accounts_show(account_id: str) -> None:
        """An account's balance, reserved and available money, rate and limits."""
        with services(app).sessions() as session:
            acc = get_or_fail(session, Account, account_id, "account")
            out({"account_id": acc.id, "name": acc.name, "active": acc.active, "currency": acc.currency,
                 "balance": money_str(acc.balance), "reserved": money_str(acc.reserved),
                 "available": money_str(acc.balance - acc.reserved),
                 "rate_per_minute": money_str(acc.rate_per_minute), "pulse_seconds": acc.pulse_seconds,
                 "max_concurrent_calls": acc.max_concurrent_calls, "created_at": acc.created_at})

    @accounts_cli.command("set-rate")
    @click.argument("account_id")
    @click.option("--rate", default=None, help="PKR per minute (positive)")
    @click.option("--pulse", default=None, type=int, help="billing pulse in seconds (positive)")
    @click.option("--max-concurrent", default=None, type=int)
    def accounts_set_rate(account_id: str, rate: str | None, pulse: int | None, max_concurrent: int | None) -> None:
        """Change an account's rate, pulse or concurrent-call limit (calls already placed keep
        the rate they were reserved at)."""
        with services(app).sessions() as session:
            acc = get_or_fail(session, Account, account_id, "account")
            try:
                set_terms(session, acc, rate_per_minute=money(rate, "rate") if rate is not None else None,
                          pulse_seconds=pulse, max_concurrent_calls=max_concurrent)
            except AccountError as exc:
                fail(str(exc), exc.code)
            out({"account_id": acc.id, "rate_per_minute": money_str(acc.rate_per_minute),
                 "pulse_seconds": acc.pulse_seconds, "max_concurrent_calls": acc.max_concurrent_calls})

    return accounts_cli
