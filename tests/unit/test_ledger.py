"""The ledger on the suite's database and on a SQLite file: exact money, idempotent settlement,
charges capped at the hold, and the account row always equal to the ledger's sums."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from billing import ledger
from core.db import Base, make_engine, make_session_factory
from core.models import Account, LedgerEntry, new_id
from core.states import LedgerKind

D = Decimal


@pytest.fixture(scope="module")
def sqlite_sessions(tmp_path_factory):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.db'}")
    Base.metadata.create_all(engine)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(params=["suite", "sqlite"])
def db(request, sqlite_sessions):
    if request.param == "sqlite":
        return sqlite_sessions
    return request.getfixturevalue("sessions")


def new_account(sessions: sessionmaker, balance: str = "0") -> str:
    with sessions() as session:
        account = Account(name="ledger test", rate_per_minute=D("2.50"), pulse_seconds=30, max_concurrent_calls=5)
        session.add(account)
        session.flush()
        if D(balance) > 0:
            ledger.credit(session, account.id, D(balance))
        session.commit()
        return account.id


def check_books(sessions: sessionmaker, account_id: str) -> ledger.BalanceView:
    with sessions() as session:
        row = ledger.balance_of(session, account_id)
        sums = ledger.ledger_totals(session, account_id)
        assert (row.balance, row.reserved) == (sums.balance, sums.reserved)
        assert row.balance >= 0 and 0 <= row.reserved <= row.balance
        assert isinstance(row.balance, Decimal) and isinstance(sums.balance, Decimal)
        return row


def test_point_three_minus_point_one_is_point_two(db):
    account_id = new_account(db, "0.3")
    with db() as session:
        ledger.debit_adjustment(session, account_id, D("0.1"), description="fix")
        session.commit()
    view = check_books(db, account_id)
    assert view.balance == D("0.2")
    with db() as session:
        stored = session.execute(sa.select(Account.balance).where(Account.id == account_id)).scalar_one()
        assert stored == D("0.2") and str(stored) == "0.2000"


def test_many_small_amounts_sum_exactly(db):
    account_id = new_account(db)
    with db() as session:
        for _ in range(10):
            ledger.credit(session, account_id, D("0.1"))
        session.commit()
    assert check_books(db, account_id).balance == D("1")


def test_sub_minor_amounts_are_refused(db):
    account_id = new_account(db)
    with db() as session, pytest.raises(Exception, match="4 decimal places"):
        ledger.credit(session, account_id, D("0.00001"))


def test_reserve_settle_is_idempotent(db):
    account_id = new_account(db, "10")
    attempt = new_id()
    with db() as session:
        first = ledger.reserve(session, account_id, D("1.25"), call_id=None, attempt_id=attempt)
        again = ledger.reserve(session, account_id, D("1.25"), call_id=None, attempt_id=attempt)
        assert first.id == again.id
        session.commit()
    view = check_books(db, account_id)
    assert (view.balance, view.reserved, view.available) == (D("10"), D("1.25"), D("8.75"))
    with db() as session:
        assert ledger.settle(session, attempt, D("0.50")) == D("0.50")
        assert ledger.settle(session, attempt, D("0.50")) == D("0.50")
        assert ledger.settle(session, attempt, D("9.00")) == D("0.50")  # already settled: unchanged
        session.commit()
    view = check_books(db, account_id)
    assert (view.balance, view.reserved) == (D("9.50"), D("0"))
    with db() as session:
        kinds = session.execute(sa.select(LedgerEntry.kind).where(LedgerEntry.attempt_id == attempt)
                                .order_by(LedgerEntry.id)).scalars().all()
    assert kinds == [LedgerKind.RESERVE, LedgerKind.RELEASE, LedgerKind.CHARGE]


def test_charge_is_capped_at_the_hold(db):
    account_id = new_account(db, "2")
    attempt = new_id()
    with db() as session:
        ledger.reserve(session, account_id, D("1.25"), call_id=None, attempt_id=attempt)
        assert ledger.settle(session, attempt, D("5.00")) == D("1.25")
        session.commit()
    assert check_books(db, account_id).balance == D("0.75")


def test_release_without_charge(db):
    account_id = new_account(db, "3")
    attempt = new_id()
    with db() as session:
        ledger.reserve(session, account_id, D("1.25"), call_id=None, attempt_id=attempt)
        assert ledger.settle(session, attempt, ledger.ZERO) == D("0")
        session.commit()
    view = check_books(db, account_id)
    assert (view.balance, view.reserved) == (D("3"), D("0"))
    with db() as session:
        assert ledger.existing_entry(session, attempt, LedgerKind.CHARGE) is None


def test_settle_unknown_attempt_is_a_no_op(db):
    with db() as session:
        assert ledger.settle(session, new_id(), D("1")) == D("0")


def test_reserve_beyond_available_is_refused(db):
    account_id = new_account(db, "2")
    with db() as session:
        ledger.reserve(session, account_id, D("1.25"), call_id=None, attempt_id=new_id())
        with pytest.raises(ledger.InsufficientBalance) as info:
            ledger.reserve(session, account_id, D("1.25"), call_id=None, attempt_id=new_id())
        assert (info.value.available, info.value.required) == (D("0.75"), D("1.25"))
        session.commit()
    assert check_books(db, account_id).reserved == D("1.25")


def test_adjustments(db):
    account_id = new_account(db, "5")
    with db() as session:
        ledger.credit(session, account_id, D("2.5"), kind=LedgerKind.ADJUSTMENT, description="goodwill")
        ledger.credit(session, account_id, D("1"), kind=LedgerKind.REFUND)
        ledger.reserve(session, account_id, D("8"), call_id=None, attempt_id=new_id())
        # a debit never takes reserved money
        with pytest.raises(ledger.InsufficientBalance):
            ledger.debit_adjustment(session, account_id, D("0.51"), description="too much")
        ledger.debit_adjustment(session, account_id, D("0.5"), description="fee")
        session.commit()
    view = check_books(db, account_id)
    assert (view.balance, view.reserved, view.available) == (D("8"), D("8"), D("0"))


def test_invalid_movements(db):
    account_id = new_account(db, "1")
    with db() as session:
        with pytest.raises(ValueError):
            ledger.credit(session, account_id, D("0"))
        with pytest.raises(ValueError):
            ledger.credit(session, account_id, D("1"), kind=LedgerKind.CHARGE)
        with pytest.raises(ValueError):
            ledger.debit_adjustment(session, account_id, D("-1"))
        with pytest.raises(ValueError):
            ledger.reserve(session, account_id, D("-1"), call_id=None, attempt_id=new_id())
        with pytest.raises(ledger.AccountNotFound):
            ledger.credit(session, new_id(), D("1"))
        with pytest.raises(ledger.AccountNotFound):
            ledger.balance_of(session, new_id())
    check_books(db, account_id)


def test_entries_record_running_totals(db):
    account_id = new_account(db, "4")
    attempt = new_id()
    with db() as session:
        ledger.reserve(session, account_id, D("1.25"), call_id=None, attempt_id=attempt)
        ledger.settle(session, attempt, D("0.4167"))
        session.commit()
        entries = session.execute(sa.select(LedgerEntry).where(LedgerEntry.account_id == account_id)
                                  .order_by(LedgerEntry.id)).scalars().all()
    assert [(e.kind, e.amount, e.hold, e.balance_after, e.reserved_after) for e in entries] == [
        (LedgerKind.TOPUP, D("4"), D("0"), D("4"), D("0")),
        (LedgerKind.RESERVE, D("0"), D("1.25"), D("4"), D("1.25")),
        (LedgerKind.RELEASE, D("0"), D("-1.25"), D("4"), D("0")),
        (LedgerKind.CHARGE, D("-0.4167"), D("0"), D("3.5833"), D("0")),
    ]
    check_books(db, account_id)
