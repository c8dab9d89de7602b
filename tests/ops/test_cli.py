"""Operator commands added for operations: dialer status, accounts show, keys revoke, users create."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from core.settings import ROOT
from tests.ops.conftest import cli_env, write_heartbeat

FLASK = str(Path(sys.executable).parent / "flask")


def flask(settings, *args):
    return subprocess.run([FLASK, "--app", "wsgi", *args], cwd=ROOT, env={**cli_env(settings), "LOG_LEVEL": "WARNING"},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture()
def runner(ops_app, ops_redis):
    cli = ops_app.test_cli_runner()

    def run(*args):
        result = cli.invoke(args=list(args))
        return result.exit_code, result.stdout, result.stderr

    return run


def one_json(text):
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return json.loads(lines[0])


def test_dialer_status_without_a_dialer_exits_1(ops_settings, ops_redis):
    result = flask(ops_settings, "dialer", "status")
    assert result.returncode == 1 and result.stdout == ""
    assert json.loads(result.stderr.strip().splitlines()[-1])["error"]["code"] == "NO_DIALER"


def test_dialer_status_with_a_heartbeat(ops_settings, ops_redis):
    write_heartbeat(ops_redis, "fs1", 321, in_flight=2, originates_per_second=4.0)
    write_heartbeat(ops_redis, "fs9", 999, ts=time.time() - 30)  # stale: not shown
    now_ms = int(time.time() * 1000)
    ops_redis.zadd("zc:cap:node:fs1", {"a": now_ms + 60_000, "b": now_ms + 60_000})
    result = flask(ops_settings, "dialer", "status")
    assert result.returncode == 0, result.stderr
    body = one_json(result.stdout)
    assert body["live"] == 1 and body["connected"] == 1 and body["in_flight"] == 2
    (dialer,) = body["dialers"]
    assert dialer["node"] == "fs1" and dialer["pid"] == 321 and dialer["connected"] is True
    assert dialer["originates_per_second"] == 4.0
    assert dialer["counters"] == {"originates": 12, "finished": 10, "answered": 7, "retries": 2,
                                  "reconnects": 0, "reconciled": 0}
    assert dialer["node_cap"] == {"key": "zc:cap:node:fs1", "in_use": 2, "limit": 200}


def test_dialer_status_node_filter(runner, ops_redis):
    write_heartbeat(ops_redis, "fs1", 1)
    write_heartbeat(ops_redis, "fs2", 2, esl_connected=False)
    code, out, _ = runner("dialer", "status")
    assert code == 0 and one_json(out)["live"] == 2 and one_json(out)["connected"] == 1
    code, out, _ = runner("dialer", "status", "--node", "fs2")
    assert code == 0 and [d["node"] for d in one_json(out)["dialers"]] == ["fs2"]
    code, _, err = runner("dialer", "status", "--node", "fs3")
    assert code == 1 and "NO_DIALER" in err


def test_accounts_show(runner, make_tenant):
    tenant = make_tenant(balance="125.5")
    code, out, _ = runner("accounts", "show", tenant.account_id)
    body = one_json(out)
    assert code == 0
    assert body["balance"] == "125.50" and body["reserved"] == "0.00" and body["available"] == "125.50"
    assert {"rate_per_minute", "pulse_seconds", "max_concurrent_calls", "currency"} <= set(body)
    code, _, err = runner("accounts", "show", str(uuid.uuid4()))
    assert code == 1 and json.loads(err.strip().splitlines()[-1])["error"]["code"] == "NOT_FOUND"


def test_keys_revoke(runner, make_tenant, ops_client):
    tenant = make_tenant()
    assert ops_client.get("/api/v1/balance", headers=tenant.headers).status_code == 200
    code, out, _ = runner("keys", "revoke", tenant.api_key_id)
    body = one_json(out)
    assert code == 0 and body["already_revoked"] is False and body["revoked_at"]
    denied = ops_client.get("/api/v1/balance", headers=tenant.headers)
    assert denied.status_code == 401 and denied.get_json()["error"]["code"] == "API_KEY_REVOKED"
    code, out, _ = runner("keys", "revoke", tenant.api_key_id)
    assert code == 0 and one_json(out)["already_revoked"] is True
    code, _, err = runner("keys", "revoke", str(uuid.uuid4()))
    assert code == 1 and "NOT_FOUND" in err


def test_users_create_then_login(runner, make_tenant, ops_client):
    tenant = make_tenant()
    email = f"second-{uuid.uuid4().hex[:8]}@example.pk"
    code, out, _ = runner("users", "create", tenant.account_id, "--email", email, "--password", "An0ther!pass")
    body = one_json(out)
    assert code == 0 and body["account_id"] == tenant.account_id and body["email"] == email
    login = ops_client.post("/api/v1/auth/login", json={"email": email, "password": "An0ther!pass"})
    assert login.status_code == 200, login.get_json()
    token = login.get_json()["access_token"]
    balance = ops_client.get("/api/v1/balance", headers={"Authorization": f"Bearer {token}"})
    assert balance.get_json()["account_id"] == tenant.account_id
    code, _, err = runner("users", "create", tenant.account_id, "--email", email, "--password", "An0ther!pass")
    assert code == 1 and "CONFLICT" in err
    code, _, err = runner("users", "create", tenant.account_id, "--email", "x@y.pk", "--password", "short")
    assert code == 1 and "INVALID_USER" in err
    code, _, err = runner("users", "create", str(uuid.uuid4()), "--email", "z@y.pk", "--password", "long-enough")
    assert code == 1 and "NOT_FOUND" in err


def test_existing_commands_still_registered(ops_app):
    commands = ops_app.cli.list_commands(None)
    for group in ("db", "accounts", "billing", "keys", "users", "dialer"):
        assert group in commands
    accounts = ops_app.cli.get_command(None, "accounts")
    assert {"create", "list", "set-rate", "show"} <= set(accounts.list_commands(None))
    keys = ops_app.cli.get_command(None, "keys")
    assert {"create", "revoke"} <= set(keys.list_commands(None))
