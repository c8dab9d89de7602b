"""The operator commands exactly as acceptance calls them: ``flask --app wsgi ...``, JSON out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from core.settings import ROOT

FLASK = str(Path(sys.executable).parent / "flask")


@pytest.fixture(scope="module")
def flask_cli(settings):
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "VAR_DIR": str(settings.var_dir), "AUDIO_DIR": str(settings.audio_dir)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([FLASK, "--app", "wsgi", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=60)

    return run


@pytest.fixture(scope="module")
def created(flask_cli):
    email = f"ops-{uuid.uuid4().hex[:8]}@acme.pk"
    result = flask_cli("accounts", "create", "--name", "Acme", "--email", email, "--password", "S3cret!pass",
                       "--balance", "1000")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    return email, json.loads(lines[0])


def error_of(result):
    assert result.returncode != 0
    assert result.stdout.strip() == ""
    body = json.loads(result.stderr.strip().splitlines()[-1])
    assert set(body["error"]) >= {"code", "message"}
    return body["error"]


def test_accounts_create_prints_one_json_object(created, client, books):
    email, body = created
    assert {"account_id", "user_id", "api_key"} <= set(body)
    assert body["api_key"].startswith("zc_live_") and body["email"] == email
    assert body["balance"] == "1000.00"
    balance = client.get("/api/v1/balance", headers={"Authorization": f"Bearer {body['api_key']}"})
    assert balance.status_code == 200
    assert balance.get_json()["account_id"] == body["account_id"]
    assert balance.get_json()["balance"] == "1000.00"
    row, sums = books(body["account_id"])
    assert row == sums == (Decimal("1000"), Decimal("0"))


def test_created_user_can_log_in(created, client):
    email, body = created
    response = client.post("/api/v1/auth/login", json={"email": email, "password": "S3cret!pass"})
    assert response.status_code == 200


def test_billing_topup(flask_cli, created, books):
    _, account = created
    before, _ = books(account["account_id"])
    result = flask_cli("billing", "topup", account["account_id"], "250.5")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["kind"] == "TOPUP" and body["amount"] == "250.50"
    assert Decimal(body["balance"]) == before[0] + Decimal("250.5")
    row, sums = books(account["account_id"])
    assert row == sums and row[0] == before[0] + Decimal("250.5")


@pytest.mark.parametrize("amount, code", [("-5", "INVALID_AMOUNT"), ("0", "INVALID_AMOUNT"),
                                          ("1.00001", "INVALID_AMOUNT"), ("lots", "INVALID_AMOUNT"),
                                          ("NaN", "INVALID_AMOUNT")])
def test_billing_topup_bad_amount(flask_cli, created, books, amount, code):
    _, account = created
    before = books(account["account_id"])
    assert error_of(flask_cli("billing", "topup", account["account_id"], amount))["code"] == code
    assert books(account["account_id"]) == before


def test_billing_topup_unknown_account(flask_cli):
    assert error_of(flask_cli("billing", "topup", str(uuid.uuid4()), "10"))["code"] == "NOT_FOUND"


def test_accounts_create_bad_input(flask_cli, created):
    email, _ = created
    duplicate = flask_cli("accounts", "create", "--name", "Again", "--email", email.upper(),
                          "--password", "S3cret!pass", "--balance", "1")
    assert "already exists" in error_of(duplicate)["message"]
    negative = flask_cli("accounts", "create", "--name", "Neg", "--email", f"n-{uuid.uuid4().hex[:8]}@acme.pk",
                         "--password", "S3cret!pass", "--balance", "-1")
    error_of(negative)
    fine = flask_cli("accounts", "create", "--name", "Fine", "--email", f"f-{uuid.uuid4().hex[:8]}@acme.pk",
                     "--password", "S3cret!pass", "--balance", "1.23456")
    assert error_of(fine)["code"] == "INVALID_AMOUNT"


@pytest.mark.parametrize(("args", "code"), [
    (("--rate", "0"), "INVALID_RATE"), (("--rate", "-2.50"), "INVALID_RATE"), (("--pulse", "0"), "INVALID_PULSE"),
    (("--pulse", "-30"), "INVALID_PULSE"), (("--max-concurrent", "0"), "INVALID_LIMIT"),
    (("--rate", "abc"), "INVALID_AMOUNT"),
])
def test_set_rate_refuses_zero_and_negative_terms(flask_cli, created, args, code):
    """A zero or negative rate would make calls free or pay the customer (a negative charge that
    breaks balance == ledger): refused, nothing changed."""
    _, account = created
    assert error_of(flask_cli("accounts", "set-rate", account["account_id"], *args))["code"] == code
    shown = json.loads(flask_cli("accounts", "show", account["account_id"]).stdout)
    assert (shown["rate_per_minute"], shown["pulse_seconds"]) == (account["rate_per_minute"], account["pulse_seconds"])


def test_accounts_create_refuses_a_negative_rate(flask_cli):
    result = flask_cli("accounts", "create", "--name", "Free", "--email", f"f-{uuid.uuid4().hex[:6]}@x.pk",
                       "--password", "S3cret!pass", "--rate", "-1")
    assert error_of(result)["code"] == "INVALID_ACCOUNT"


def test_settle_refuses_an_unknown_attempt(flask_cli):
    assert error_of(flask_cli("calls", "settle", str(uuid.uuid4()), "--not-answered"))["code"] == "NOT_FOUND"
    assert error_of(flask_cli("calls", "settle", str(uuid.uuid4()), "--answered"))["code"] == "INVALID_SETTLEMENT"
    listed = flask_cli("calls", "unsettled", "--account", str(uuid.uuid4()))
    assert listed.returncode == 0 and listed.stdout == ""


def balance_events_of(settings, account_id):
    import sqlalchemy as sa

    from core.models import WebhookEvent

    engine = sa.create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            e = WebhookEvent.__table__.c
            return [(t, d["balance"], d["low_balance_threshold"]) for t, d in conn.execute(
                sa.select(e.type, e.data).where(e.account_id == account_id, e.type.like("balance.%"))
                .order_by(e.sequence, e.type.desc()))]
    finally:
        engine.dispose()


def test_an_operators_debit_adjustment_raises_the_balance_events(flask_cli, client, settings):
    result = flask_cli("accounts", "create", "--name", "Low", "--email", f"low-{uuid.uuid4().hex[:8]}@acme.pk",
                       "--password", "S3cret!pass", "--balance", "100")
    assert result.returncode == 0, result.stderr
    account = json.loads(result.stdout)
    account_id, headers = account["account_id"], {"Authorization": f"Bearer {account['api_key']}"}
    alert = client.put("/api/v1/webhooks/balance-alert", headers=headers, json={"low_balance_threshold": "50.00"})
    assert alert.status_code == 200

    def adjust(amount):
        done = flask_cli("billing", "adjust", account_id, amount, "--description", "correction")
        assert done.returncode == 0, done.stderr

    adjust("-30")  # 70: above the threshold
    adjust("10")  # 80: a credit
    assert balance_events_of(settings, account_id) == []
    adjust("-35")  # 45: below it
    assert balance_events_of(settings, account_id) == [("balance.low", "45.00", "50.00")]
    adjust("-45")  # zero
    assert balance_events_of(settings, account_id) == [("balance.low", "45.00", "50.00"),
                                                       ("balance.depleted", "0.00", "50.00")]
    assert client.get("/api/v1/balance", headers=headers).get_json()["balance"] == "0.00"
