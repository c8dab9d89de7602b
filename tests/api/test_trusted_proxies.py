"""TRUSTED_PROXIES: behind the TLS proxy every request comes from the proxy's address. With N
trusted hops the client address is read from X-Forwarded-For (the N-th entry from the right, the
one the nearest trusted proxy saw), so per-address limits are per client again; with 0 (the
default) X-Forwarded-For is ignored, since a client must not choose its own address."""

from __future__ import annotations

import pytest
from flask import request

from core.settings import ConfigError, load_settings
from tests.api.conftest import assert_error, unique_address


def wrong_login(client, tenant, proxy, forwarded_for, **headers):
    return client.post("/api/v1/auth/login", json={"email": tenant.email, "password": "wrong-password"},
                       environ_base={"REMOTE_ADDR": proxy},
                       headers={"X-Forwarded-For": forwarded_for, **headers})


def test_without_trusted_proxies_forwarded_for_is_ignored(make_app, tenant):
    client = make_app(ratelimit_login="3 per minute").test_client()
    proxy = unique_address()
    for _ in range(3):  # three "different clients" that only say so
        assert_error(wrong_login(client, tenant, proxy, unique_address()), 401, "INVALID_CREDENTIALS")
    assert_error(wrong_login(client, tenant, proxy, unique_address()), 429, "RATE_LIMITED")


def test_one_trusted_proxy_limits_each_client(make_app, tenant):
    client = make_app(ratelimit_login="3 per minute", trusted_proxies=1).test_client()
    proxy, one, two = unique_address(), unique_address(), unique_address()
    for _ in range(3):
        assert_error(wrong_login(client, tenant, proxy, one), 401, "INVALID_CREDENTIALS")
    assert_error(wrong_login(client, tenant, proxy, one), 429, "RATE_LIMITED")
    # another client behind the same proxy has its own budget
    assert_error(wrong_login(client, tenant, proxy, two), 401, "INVALID_CREDENTIALS")
    # a client cannot pick its address: the proxy appends the one it saw, and only that one is trusted
    spoofed = f"{unique_address()}, {one}"
    assert_error(wrong_login(client, tenant, proxy, spoofed), 429, "RATE_LIMITED")


def test_two_trusted_proxies_take_the_second_entry_from_the_right(make_app, tenant):
    client = make_app(ratelimit_login="2 per minute", trusted_proxies=2).test_client()
    outer_proxy, inner_proxy, real = unique_address(), unique_address(), unique_address()
    for _ in range(2):
        chain = f"{unique_address()}, {real}, {outer_proxy}"  # whatever the client claimed, then what each proxy saw
        assert_error(wrong_login(client, tenant, inner_proxy, chain), 401, "INVALID_CREDENTIALS")
    assert_error(wrong_login(client, tenant, inner_proxy, f"{real}, {outer_proxy}"), 429, "RATE_LIMITED")


@pytest.mark.parametrize("hops, scheme, address", [(0, "http", "proxy"), (1, "https", "client")])
def test_forwarded_proto_and_address_reach_the_request(make_app, hops, scheme, address):
    app = make_app(trusted_proxies=hops)
    app.add_url_rule("/probe-client", "probe_client",
                     lambda: {"scheme": request.scheme, "remote_addr": request.remote_addr})
    proxy, client_address = unique_address(), unique_address()
    seen = app.test_client().get("/probe-client", environ_base={"REMOTE_ADDR": proxy},
                                 headers={"X-Forwarded-For": client_address, "X-Forwarded-Proto": "https"}).get_json()
    assert seen == {"scheme": scheme, "remote_addr": {"proxy": proxy, "client": client_address}[address]}


def test_trusted_proxies_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    monkeypatch.delenv("TRUSTED_PROXIES", raising=False)
    assert load_settings().trusted_proxies == 0
    monkeypatch.setenv("TRUSTED_PROXIES", "2")
    assert load_settings().trusted_proxies == 2
    for bad in ("-1", "one", "1.5"):
        monkeypatch.setenv("TRUSTED_PROXIES", bad)
        with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
            load_settings()
