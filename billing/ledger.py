"""The ledger: the only place where money moves.

Every change of an account's money is one conditional UPDATE of the account row and
one append-only ledger entry, in the caller's transaction:

* ``amount`` changes the balance (TOPUP +, CHARGE -, REFUND +, ADJUSTMENT +/-);
* ``hold`` changes the reserved sum (RESERVE +, RELEASE -).

So ``balance == SUM(amount)`` and ``reserved == SUM(hold)`` at all times, and the
UPDATE's WHERE clause refuses anything that would take the balance below zero or the
reserved sum above the balance: two concurrent requests can never overspend, on
MariaDB (row lock) or SQLite (one writer). A debit that takes the balance below the account's
``low_balance_threshold`` or to zero writes ``balance.low`` / ``balance.depleted`` to the webhook
outbox in the same transaction (as ``billing.books`` does for the dialer's batches).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from billing.books import balance_events
from core import outbox
from core.db import utcnow
from core.models import Account, LedgerEntry
from core.states import LedgerKind

ZERO = Decimal("0")


class InsufficientBalance(Exception):
    def __init__(self, available: Decimal, required: Decimal) -> None:
        super().__init__(f"available {available}, required {required}")
        self.available = available
        self.required = required


class AccountNotFound(Exception):
    pass


@dataclass(frozen=True)
class BalanceView:
    balance: Decimal
    reserved: Decimal

    @property
    def available(self) -> Decimal:
        return self.balance - self.reserved


def _post(
    session: Session,
    account_id: str,
    kind: LedgerKind,
    *,
    amount: Decimal = ZERO,
    hold: Decimal = ZERO,
    call_id: str | None = None,
    attempt_id: str | None = None,
    description: str = "",
) -> LedgerEntry | None:
    """Apply one movement if the account can bear it; None when it cannot."""
    after = _move(session, account_id, amount=amount, hold=hold)
    if after is None:
        return None
    balance, reserved = after
    if amount < ZERO:  # a debit may cross the account's low-balance threshold, or reach zero
        threshold = session.execute(sa.select(Account.__table__.c.low_balance_threshold).where(
            Account.__table__.c.id == account_id)).scalar()
        outbox.write(session, balance_events(account_id, balance - amount, balance, reserved, threshold))
    entry = LedgerEntry(
        account_id=account_id,
        kind=kind,
        amount=amount,
        hold=hold,
        balance_after=balance,
        reserved_after=reserved,
        call_id=call_id,
        attempt_id=attempt_id,
        description=description[:255],
    )
    session.add(entry)
    session.flush()
    return entry


def _refresh_loaded_account(session: Session, account_id: str, balance: Decimal, reserved: Decimal) -> None:
    """Keep an Account already loaded in this session in step with the UPDATE."""
    loaded = session.identity_map.get(sa.inspect(Account).identity_key_from_primary_key((account_id,)))
    if loaded is not None:
        sa.orm.attributes.set_committed_value(loaded, "balance", balance)
        sa.orm.attributes.set_committed_value(loaded, "reserved", reserved)


def balance_of(session: Session, account_id: str) -> BalanceView:
    acc = Account.__table__.c
    row = session.execute(sa.select(acc.balance, acc.reserved).where(acc.id == account_id)).one_or_none()
    if row is None:
        raise AccountNotFound(account_id)
    return BalanceView(balance=row[0], reserved=row[1])


def credit(session: Session, account_id: str, amount: Decimal, *, kind: LedgerKind = LedgerKind.TOPUP,
           description: str = "") -> LedgerEntry:
    """Top up (or refund) a positive amount."""
    if amount <= ZERO:
        raise ValueError("a credit must be positive")
    if kind not in (LedgerKind.TOPUP, LedgerKind.REFUND, LedgerKind.ADJUSTMENT):
        raise ValueError(f"{kind} is not a credit")
    entry = _post(session, account_id, kind, amount=amount, description=description)
    if entry is None:
        raise AccountNotFound(account_id)
    return entry


def debit_adjustment(session: Session, account_id: str, amount: Decimal, *, description: str = "") -> LedgerEntry:
    """A manual correction downwards; refused if it would dip into reserved money."""
    if amount <= ZERO:
        raise ValueError("an adjustment debit must be positive")
    entry = _post(session, account_id, LedgerKind.ADJUSTMENT, amount=-amount, description=description)
    if entry is None:
        view = balance_of(session, account_id)
        raise InsufficientBalance(view.available, amount)
    return entry


def existing_entry(session: Session, attempt_id: str, kind: LedgerKind) -> LedgerEntry | None:
    return session.execute(
        sa.select(LedgerEntry).where(LedgerEntry.attempt_id == attempt_id, LedgerEntry.kind == kind)
    ).scalar_one_or_none()


def reserve(session: Session, account_id: str, amount: Decimal, *, call_id: str, attempt_id: str) -> LedgerEntry:
    """Hold the worst-case cost of an attempt before its originate. Idempotent per attempt."""
    if amount < ZERO:
        raise ValueError("a reservation cannot be negative")
    found = existing_entry(session, attempt_id, LedgerKind.RESERVE)
    if found is not None:
        return found
    entry = _post(session, account_id, LedgerKind.RESERVE, hold=amount, call_id=call_id,
                  attempt_id=attempt_id, description="reservation for call attempt")
    if entry is None:
        view = balance_of(session, account_id)
        raise InsufficientBalance(view.available, amount)
    return entry


def settle(session: Session, attempt_id: str, cost: Decimal) -> Decimal:
    """Release an attempt's hold and charge what it cost. Idempotent; returns the charge.

    The charge never exceeds the hold, so the balance cannot go below zero.
    """
    held = existing_entry(session, attempt_id, LedgerKind.RESERVE)
    if held is None:
        return ZERO
    if existing_entry(session, attempt_id, LedgerKind.RELEASE) is not None:
        charged = existing_entry(session, attempt_id, LedgerKind.CHARGE)
        return -charged.amount if charged is not None else ZERO
    charge = min(cost, held.hold)
    released = _post(session, held.account_id, LedgerKind.RELEASE, hold=-held.hold, call_id=held.call_id,
                     attempt_id=attempt_id, description="reservation released at hangup")
    if released is None:  # cannot happen while reserved >= hold; keep the books consistent regardless
        raise RuntimeError(f"release of attempt {attempt_id} refused")
    if charge > ZERO:
        charged = _post(session, held.account_id, LedgerKind.CHARGE, amount=-charge, call_id=held.call_id,
                        attempt_id=attempt_id, description="answered call")
        if charged is None:
            raise RuntimeError(f"charge of attempt {attempt_id} refused")
    return charge


# -- the dialer's hot path: the same movements without ORM objects, a few statements each --


@dataclass(frozen=True)
class Held:
    """What the ledger holds for one attempt (read alongside the attempt, see ``held_columns``)."""

    hold: Decimal | None  # the RESERVE entry's hold; None when nothing was reserved
    released: bool
    charged: Decimal  # the CHARGE already booked (positive), if any


def held_columns(attempt_id: sa.ColumnElement[str]) -> list[sa.ScalarSelect[Any]]:
    """Correlated subqueries giving (reserve hold, release id, charge amount) of an attempt."""
    le = LedgerEntry.__table__.c

    def entry(kind: LedgerKind, column: sa.ColumnElement[Any]) -> sa.ScalarSelect[Any]:
        return sa.select(column).where(le.attempt_id == attempt_id, le.kind == kind).scalar_subquery()

    return [entry(LedgerKind.RESERVE, le.hold), entry(LedgerKind.RELEASE, le.id), entry(LedgerKind.CHARGE, le.amount)]


def held_of(reserve_hold: Decimal | None, release_id: int | None, charge_amount: Decimal | None) -> Held:
    return Held(hold=reserve_hold, released=release_id is not None,
                charged=-charge_amount if charge_amount is not None else ZERO)


def _move_statements() -> tuple[sa.Update, sa.Select[Any]]:
    """``_post``'s conditional UPDATE and the read-back, built once with bound parameters."""
    acc = Account.__table__.c
    amount = sa.bindparam("amount", type_=acc.balance.type)
    hold = sa.bindparam("hold", type_=acc.reserved.type)
    update = (
        sa.update(Account.__table__)
        .where(
            acc.id == sa.bindparam("account_id"),
            acc.balance + amount >= ZERO,
            acc.reserved + hold >= ZERO,
            acc.balance + amount - (acc.reserved + hold) >= ZERO,
        )
        .values(balance=acc.balance + amount, reserved=acc.reserved + hold)
    )
    return update, sa.select(acc.balance, acc.reserved).where(acc.id == sa.bindparam("account_id"))


_MOVE, _BALANCE = _move_statements()


def _move(session: Session, account_id: str, *, amount: Decimal = ZERO,
          hold: Decimal = ZERO) -> tuple[Decimal, Decimal] | None:
    """The conditional UPDATE every movement goes through; the new (balance, reserved),
    None if the account cannot bear it."""
    conn = session.connection()
    result = conn.execute(_MOVE, {"account_id": account_id, "amount": amount, "hold": hold})
    if result.rowcount != 1:
        return None
    balance, reserved = conn.execute(_BALANCE, {"account_id": account_id}).one()
    _refresh_loaded_account(session, account_id, balance, reserved)
    return balance, reserved


_ENTRY_COLUMNS = ("account_id", "kind", "amount", "hold", "balance_after", "reserved_after", "call_id",
                  "attempt_id", "description", "created_at")


def _entry_from_account(tag: str) -> sa.Select[Any]:
    """One ledger entry as a SELECT of the account row: its ``balance_after`` and
    ``reserved_after`` are the row as this transaction left it (the row is locked by the
    movement's UPDATE, so nothing else can have changed it), plus ``:{tag}_unbooked`` for
    an entry booked before a later movement of the same UPDATE."""
    acc, le = Account.__table__.c, LedgerEntry.__table__.c

    def param(name: str) -> sa.BindParameter[Any]:
        return sa.bindparam(f"{tag}_{name}", type_=le[name].type)

    return (
        sa.select(sa.bindparam("e_account_id", type_=le.account_id.type), param("kind"), param("amount"),
                  param("hold"), acc.balance + sa.bindparam(f"{tag}_unbooked", type_=acc.balance.type),
                  acc.reserved, sa.bindparam("e_call_id", type_=le.call_id.type),
                  sa.bindparam("e_attempt_id", type_=le.attempt_id.type), param("description"),
                  sa.bindparam("e_created_at", type_=le.created_at.type))
        .where(acc.id == sa.bindparam("e_account"))
    )


def _book_statements() -> tuple[sa.Insert, sa.Insert]:
    """The entries of one movement, each with the balance it left behind, inserted straight
    from the account row (no read-back round trip): one entry, or two (release + charge)."""
    one = _entry_from_account("e1")
    two = sa.union_all(one, _entry_from_account("e2"))
    table = LedgerEntry.__table__
    return table.insert().from_select(_ENTRY_COLUMNS, one), table.insert().from_select(_ENTRY_COLUMNS, two)


_BOOK_ONE, _BOOK_TWO = _book_statements()


def _connection(db: Session | sa.Connection) -> sa.Connection:
    """The connection of the caller's transaction (hot paths run on a session or a plain connection)."""
    return db if isinstance(db, sa.Connection) else db.connection()


def _move_only(db: Session | sa.Connection, account_id: str, *, amount: Decimal = ZERO,
               hold: Decimal = ZERO) -> bool:
    """``_move`` without the read-back (the entries are booked with ``_BOOK_ONE``/``_BOOK_TWO``)."""
    result = _connection(db).execute(_MOVE, {"account_id": account_id, "amount": amount, "hold": hold})
    return result.rowcount == 1


def movement_update() -> sa.Update:
    """The conditional UPDATE of the account row every movement goes through (bound parameters
    ``account_id``, ``amount``, ``hold``): for ``reserve_new(only_if=...)`` to add conditions to."""
    return _MOVE


class NotReserved(Exception):
    """``reserve_new(only_if=...)``: the extra conditions or the balance refused the reservation;
    nothing was written."""


def reserve_new(session: Session, account_id: str, amount: Decimal, *, call_id: str, attempt_id: str,
                then: tuple[sa.Insert, dict[str, Any]] | None = None,
                only_if: tuple[sa.Update, dict[str, Any]] | None = None) -> None:
    """``reserve`` for an attempt id made just now (it cannot hold a reservation yet).

    ``then``: an INSERT of one row (statement, values) written in the same transaction once the
    reservation held, e.g. the call the reservation is for. On MariaDB the reservation's UPDATE,
    its ledger entry and that INSERT go to the server as one compound statement (one round trip
    instead of three, with the same statements and the same conditions).

    ``only_if``: ``movement_update()`` with conditions added (``.where``) and the values of their
    parameters (named unlike any column of ``accounts``), used instead of it: when the row fails
    them or the balance is short, nothing is written and ``NotReserved`` is raised (the caller
    tells the two apart); without it a short balance raises ``InsufficientBalance``.
    """
    if amount < ZERO:
        raise ValueError("a reservation cannot be negative")
    conn = session.connection()
    update, conditions = only_if if only_if is not None else (_MOVE, {})
    move = {"account_id": account_id, "amount": ZERO, "hold": amount, **conditions}
    book = {"e_account": account_id, "e_account_id": account_id, "e_call_id": call_id, "e_attempt_id": attempt_id,
            "e_created_at": utcnow(), "e1_kind": LedgerKind.RESERVE, "e1_amount": ZERO, "e1_hold": amount,
            "e1_unbooked": ZERO, "e1_description": "reservation for call attempt"}
    if then is not None and getattr(conn.dialect, "is_mariadb", False):  # MySQL has no anonymous blocks
        written = _when_held(conn, [(update, move), (_BOOK_ONE, book), then])
        if written == 3:
            return
        if written != 0:  # cannot happen: the INSERTs run only after the UPDATE matched its row
            raise RuntimeError(f"reservation of attempt {attempt_id}: {written} rows written, expected 3 or 0")
    elif conn.execute(update, move).rowcount == 1:
        conn.execute(_BOOK_ONE, book)
        if then is not None:
            conn.execute(*then)
        return
    if only_if is not None:
        raise NotReserved(attempt_id)
    view = balance_of(session, account_id)
    raise InsufficientBalance(view.available, amount)


_BLOCKS: dict[tuple[Any, ...], tuple[str, list[tuple[Any, dict[str, Any]]]]] = {}
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _when_held(conn: sa.Connection, statements: list[tuple[Any, dict[str, Any]]]) -> int:
    """MariaDB: ``UPDATE; IF ROW_COUNT() = 1 THEN <the other statements>; END IF`` as one
    anonymous compound statement; the rows it wrote (all statements together; 0 when the
    UPDATE matched nothing). Each statement is the one SQLAlchemy compiles for this dialect
    (its placeholders renamed per statement), its values converted by the columns' types
    (money to minor units, times to UTC) as SQLAlchemy would."""
    key = (conn.dialect.name, *((id(stmt), tuple(values)) for stmt, values in statements))
    block = _BLOCKS.get(key)
    if block is None:
        sql, parts = [], []
        for number, (stmt, values) in enumerate(statements):
            compiled = stmt.compile(dialect=conn.dialect, column_keys=list(values))
            if compiled.insert_prefetch:  # Python-side defaults need SQLAlchemy's execution: give every value
                raise ValueError(f"values missing for {[c.name for c in compiled.insert_prefetch]}")
            sql.append(_PLACEHOLDER.sub(lambda m, n=number: f"%(s{n}_{m.group(1)})s", compiled.string))
            processors = {name: bind.type.bind_processor(conn.dialect) for bind, name in compiled.bind_names.items()}
            parts.append((compiled, processors))
        text = f"BEGIN NOT ATOMIC {sql[0]}; IF ROW_COUNT() = 1 THEN {'; '.join(sql[1:])}; END IF; END"
        block = _BLOCKS[key] = (text, parts)
    text, parts = block
    params: dict[str, Any] = {}
    for number, ((compiled, processors), (_, values)) in enumerate(zip(parts, statements, strict=True)):
        for name, value in compiled.construct_params(values).items():
            process = processors.get(name)
            params[f"s{number}_{name}"] = process(value) if process is not None and value is not None else value
    return int(conn.exec_driver_sql(text, params).rowcount)


def settle_held(db: Session | sa.Connection, held: Held, cost: Decimal, *, account_id: str, call_id: str,
                attempt_id: str) -> Decimal:
    """``settle`` when the attempt's entries were already read (``held_columns``).

    The release and the charge are one UPDATE of the account row (the row lock makes it
    the same as two) and two entries, each with the balance it left behind.
    """
    if held.hold is None:
        return ZERO
    if held.released:
        return held.charged
    charge = min(cost, held.hold)
    if not _move_only(db, account_id, amount=-charge, hold=-held.hold):
        # cannot happen while reserved >= hold; keep the books consistent regardless
        raise RuntimeError(f"settlement of attempt {attempt_id} refused")
    # the release is booked before the charge: its balance is the one before the charge
    params: dict[str, Any] = {
        "e_account": account_id, "e_account_id": account_id, "e_call_id": call_id, "e_attempt_id": attempt_id,
        "e_created_at": utcnow(), "e1_kind": LedgerKind.RELEASE, "e1_amount": ZERO, "e1_hold": -held.hold,
        "e1_unbooked": charge, "e1_description": "reservation released at hangup"}
    if charge > ZERO:
        params.update({"e2_kind": LedgerKind.CHARGE, "e2_amount": -charge, "e2_hold": ZERO, "e2_unbooked": ZERO,
                       "e2_description": "answered call"})
    _connection(db).execute(_BOOK_TWO if charge > ZERO else _BOOK_ONE, params)
    return charge


def unsettled_holds(session: Session, account_id: str) -> Decimal:
    """What is still held for attempts that ended with an unknown outcome (waiting for a settlement)."""
    from core.call_states import OUTCOME_UNKNOWN
    from core.models import CallAttempt

    le = LedgerEntry.__table__.c
    a = CallAttempt.__table__.c
    rel = LedgerEntry.__table__.alias("rel").c
    released = sa.exists().where(rel.attempt_id == a.id, rel.kind == LedgerKind.RELEASE)
    held = session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(le.hold), 0))
        .select_from(LedgerEntry.__table__.join(CallAttempt.__table__, a.id == le.attempt_id))
        .where(le.account_id == account_id, le.kind == LedgerKind.RESERVE, a.hangup_cause == OUTCOME_UNKNOWN,
               ~released)
    ).scalar_one()
    return Decimal(held)


def ledger_totals(session: Session, account_id: str) -> BalanceView:
    """Sums of the ledger (what the account row must always equal)."""
    le = LedgerEntry.__table__.c
    row = session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(le.amount), 0), sa.func.coalesce(sa.func.sum(le.hold), 0))
        .where(le.account_id == account_id)
    ).one()
    return BalanceView(balance=Decimal(row[0]), reserved=Decimal(row[1]))
