"""``flask --app wsgi billing topup|adjust``: money put in or corrected by an operator."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from api.cli.common import fail, money, out, services
from billing import ledger
from billing.rating import money_str
from core.states import LedgerKind


def group(app: Flask) -> AppGroup:
    billing_cli = AppGroup("billing", help="Money: top-ups and adjustments.")
    # "-5" is an amount, not an unknown option: it reaches the command and gets a JSON answer
    signed_amount = {"ignore_unknown_options": True}

    @billing_cli.command("topup", context_settings=signed_amount)
    @click.argument("account_id")
    @click.argument("amount")
    @click.option("--description", default="top-up")
    def billing_topup(account_id: str, amount: str, description: str) -> None:
        """Add AMOUNT PKR to an account (a TOPUP ledger entry)."""
        value = money(amount, "amount")
        if value <= 0:
            fail("amount must be positive", "INVALID_AMOUNT")
        with services(app).sessions() as session:
            try:
                entry = ledger.credit(session, account_id, value, kind=LedgerKind.TOPUP, description=description)
            except ledger.AccountNotFound:
                fail(f"no account {account_id}", "NOT_FOUND")
            session.commit()
            out({"account_id": account_id, "ledger_entry_id": entry.id, "kind": entry.kind.value,
                 "amount": money_str(entry.amount), "balance": money_str(entry.balance_after),
                 "reserved": money_str(entry.reserved_after),
                 "available": money_str(entry.balance_after - entry.reserved_after)})

    @billing_cli.command("adjust", context_settings=signed_amount)
    @click.argument("account_id")
    @click.argument("amount")
    @click.option("--description", required=True)
    def billing_adjust(account_id: str, amount: str, description: str) -> None:
        """A signed correction (ADJUSTMENT); a debit never takes reserved money."""
        value = money(amount, "amount")
        if value == 0:
            fail("amount must not be zero", "INVALID_AMOUNT")
        with services(app).sessions() as session:
            try:
                if value > 0:
                    entry = ledger.credit(session, account_id, value, kind=LedgerKind.ADJUSTMENT,
                                          description=description)
                else:
                    entry = ledger.debit_adjustment(session, account_id, -value, description=description)
            except ledger.AccountNotFound:
                fail(f"no account {account_id}", "NOT_FOUND")
            except ledger.InsufficientBalance as exc:
                fail(f"only {exc.available} PKR available", "INSUFFICIENT_BALANCE")
            session.commit()
            out({"account_id": account_id, "ledger_entry_id": entry.id, "amount": money_str(entry.amount),
                 "balance": money_str(entry.balance_after)})

    return billing_cli
