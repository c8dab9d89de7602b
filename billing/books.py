"""The ledger in batches: the money of many attempts moved in one transaction.

The dialer settles hangups in batches; ``Books`` locks each account involved once (in one lock
order for every transaction), applies every movement in memory with the same rules as
``billing.ledger`` (the balance never below zero, the reserved sum never above the balance), and
writes them all at once: one UPDATE for every account, one INSERT for every ledger row, each row with
the balance and reserved sum it left behind. So ``balance == SUM(amount)`` and
``reserved == SUM(hold)`` hold exactly as with single movements.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from billing.rating import money_str
from core import outbox, sqlbatch
from core.db import utcnow
from core.models import Account, LedgerEntry
from core.states import LedgerKind

ZERO = Decimal("0")
_accounts, _ledger = Account.__table__, LedgerEntry.__table__


def _ledger_row(account_id: str, kind: LedgerKind, *, amount: Decimal = ZERO, hold: Decimal = ZERO,
                balance: Decimal, reserved: Decimal, call_id: str | None, attempt_id: str | None,
                description: str, now: datetime) -> dict[str, Any]:
    return {"account_id": account_id, "kind": kind, "amount": amount, "hold": hold, "balance_after": balance,
            "reserved_after": reserved, "call_id": call_id, "attempt_id": attempt_id, "description": description,
            "created_at": now}


def balance_events(account_id: str, before: Decimal, after: Decimal, reserved: Decimal,
                   threshold: Decimal | None) -> list[dict[str, Any]]:
    """The outbox rows of a balance going from ``before`` to ``after`` (to write in the same
    transaction as the movement): balance.low when it went below the account's threshold;
    balance.depleted when it reached zero."""
    crossed = []
    if threshold is not None and before >= threshold > after:
        crossed.append("balance.low")
    if before > 0 >= after:
        crossed.append("balance.depleted")
    now = utcnow()
    data = {"account_id": account_id, "balance": money_str(after), "reserved": money_str(reserved),
            "available": money_str(after - reserved), "currency": "PKR",
            "low_balance_threshold": None if threshold is None else money_str(threshold)}
    return [outbox.balance_event(account_id, kind, data, now) for kind in crossed]


class Books:
    """The account rows of one transaction, locked once, with the ledger rows to append.

    Every movement goes through ``move`` (never below zero, reserved never above the balance)
    and ``flush`` writes all of them: one UPDATE for every account, one INSERT for every entry."""

    def __init__(self, conn: sa.Connection, account_ids: Iterable[str]) -> None:
        self.conn = conn
        ids = sorted(set(account_ids))  # one lock order for every transaction
        a = _accounts.c
        rows = conn.execute(sa.select(a.id, a.balance, a.reserved, a.rate_per_minute, a.pulse_seconds,
                                      a.low_balance_threshold)
                            .where(a.id.in_(ids)).order_by(a.id).with_for_update()).all() if ids else []
        self.state = {r.id: [r.balance, r.reserved] for r in rows}
        self.terms = {r.id: (r.rate_per_minute, r.pulse_seconds) for r in rows}
        self.thresholds = {r.id: r.low_balance_threshold for r in rows if r.low_balance_threshold is not None}
        self.before = {k: tuple(v) for k, v in self.state.items()}
        self.entries: list[dict[str, Any]] = []

    def available(self, account_id: str) -> Decimal:
        balance, reserved = self.state[account_id]
        return Decimal(balance - reserved)

    def move(self, account_id: str, kind: LedgerKind, *, amount: Decimal = ZERO, hold: Decimal = ZERO,
             call_id: str | None, attempt_id: str | None, description: str, now: datetime) -> bool:
        balance, reserved = self.state[account_id]
        balance, reserved = balance + amount, reserved + hold
        if balance < 0 or reserved < 0 or reserved > balance:
            return False
        self.state[account_id] = [balance, reserved]
        self.entries.append(_ledger_row(account_id, kind, amount=amount, hold=hold, balance=balance,
                                        reserved=reserved, call_id=call_id, attempt_id=attempt_id,
                                        description=description, now=now))
        return True

    def _balance_events(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        return balance_events(row["id"], self.before[row["id"]][0], row["balance"], row["reserved"],
                              self.thresholds.get(row["id"]))

    def flush(self) -> None:
        changed = [{"id": k, "balance": v[0], "reserved": v[1]} for k, v in self.state.items()
                   if tuple(v) != self.before[k]]
        if changed:
            sqlbatch.run_batch_update(self.conn, _accounts, "id", ("balance", "reserved"), changed)
            outbox.write(self.conn, [e for row in changed for e in self._balance_events(row)])
        if self.entries:
            sqlbatch.insert_rows(self.conn, _ledger, self.entries)
        self.before = {k: tuple(v) for k, v in self.state.items()}
        self.entries = []
