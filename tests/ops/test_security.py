"""Secure headers, CORS off unless configured, request size limit, production refusals."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import replace

import pytest

from core.settings import ConfigError, load_settings

ORIGIN = "https://portal.example.pk"


def assert_secure(response):
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "Content-Security-Policy" in response.headers


@pytest.mark.parametrize("path", ["/api/v1/health", "/api/v1/balance", "/api/v1/nothing", "/api/v1/openapi.json"])
def test_secure_headers_on_every_response(ops_client, path):
    response = ops_client.get(path)
    assert_secure(response)
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert response.headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in response.headers


def test_json_error_and_success_are_not_cached(ops_client, tenant):
    ok = ops_client.get("/api/v1/balance", headers=tenant.headers)
    assert ok.status_code == 200 and ok.headers["Cache-Control"] == "no-store"


def test_docs_page_policy_allows_only_its_own_inline_script(ops_client):
    page = ops_client.get("/api/v1/docs")
    assert page.status_code == 200
    assert_secure(page)
    csp = page.headers["Content-Security-Policy"]
    script_src = re.search(r"script-src ([^;]*)", csp).group(1)
    assert "'unsafe-inline'" not in script_src and "'self'" in script_src
    inline = re.findall(rb"<script>(.*?)</script>", page.data, re.S)
    assert inline
    for body in inline:
        assert "'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode() + "'" in script_src
    # every asset the page loads is served from here, which 'self' allows
    for src in re.findall(rb'(?:src|href)="([^"]+)"', page.data):
        assert src.startswith(b"/api/v1/docs/assets/"), src
        assert ops_client.get(src.decode()).status_code == 200
    assert "img-src 'self' data:" in csp and "connect-src 'self'" in csp


def test_hsts_in_production(ops_settings, make_app):
    app = make_app(replace(ops_settings, env="production"))
    response = app.test_client().get("/api/v1/health")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_cors_off_by_default(ops_client):
    for response in (ops_client.get("/api/v1/health", headers={"Origin": ORIGIN}),
                     ops_client.options("/api/v1/calls", headers={"Origin": ORIGIN,
                                                                  "Access-Control-Request-Method": "POST"})):
        assert not [h for h, _ in response.headers if h.lower().startswith("access-control-")]


def test_cors_only_for_configured_origins(ops_settings, make_app):
    app = make_app(replace(ops_settings, cors_origins=(ORIGIN,)))
    client = app.test_client()
    allowed = client.get("/api/v1/health", headers={"Origin": ORIGIN})
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "X-Request-ID" in allowed.headers["Access-Control-Expose-Headers"]
    preflight = client.options("/api/v1/calls", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Content-Type"})
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    other = client.get("/api/v1/health", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_cors_origins_from_environment(monkeypatch):
    monkeypatch.setenv("CORS_ORIGINS", f"{ORIGIN}, https://b.example.pk")
    assert load_settings().cors_origins == (ORIGIN, "https://b.example.pk")
    monkeypatch.delenv("CORS_ORIGINS")
    assert load_settings().cors_origins == ()


def test_request_size_limit(ops_settings, make_app, tenant):
    app = make_app(ops_settings, MAX_CONTENT_LENGTH=1024)
    response = app.test_client().post("/api/v1/calls", headers=tenant.headers, data=b"x" * 4096,
                                      content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert_secure(response)


# -- production refusals ----------------------------------------------------------------------------

GOOD = {
    "ZC_ENV": "production",
    "SECRET_KEY": "k" * 40,
    "JWT_SECRET_KEY": "j" * 40,
    "DATABASE_URL": "mysql+pymysql://zenscall:pw@db/zenscall",
    "REDIS_URL": "redis://redis:6379/0",
    "FS_PASSWORD": "a-long-esl-password",
    "METRICS_TOKEN": "an-operator-token-of-some-length",
}


@pytest.fixture()
def production_env(monkeypatch, tmp_path):
    for name in ("METRICS_TOKEN", "CORS_ORIGINS", "READY_REQUIRE_DIALER", *(f"{n}_FILE" for n in GOOD)):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    for name, val in GOOD.items():
        monkeypatch.setenv(name, val)
    return monkeypatch


def test_a_complete_production_environment_loads(production_env):
    settings = load_settings()
    assert settings.is_production and settings.fs_password == GOOD["FS_PASSWORD"]


@pytest.mark.parametrize(("name", "value", "message"), [
    ("SECRET_KEY", None, "SECRET_KEY is required"),
    ("SECRET_KEY", "short", "SECRET_KEY must be at least 32"),
    ("JWT_SECRET_KEY", None, "JWT_SECRET_KEY is required"),
    ("JWT_SECRET_KEY", "x" * 31, "JWT_SECRET_KEY must be at least 32"),
    ("SECRET_KEY", "change-me-to-64-random-characters-change-me-to-64-random-characters", "placeholder"),
    ("JWT_SECRET_KEY", "change-me-to-64-random-characters-change-me-to-64-random-characters", "placeholder"),
    ("FS_PASSWORD", None, "default password"),
    ("FS_PASSWORD", "ClueCon", "default password"),
    ("FS_PASSWORD", "short-pw", "at least 12"),
    ("FS_PASSWORD", "change-me-not-ClueCon", "placeholder"),
    ("DATABASE_URL", None, "DATABASE_URL"),
    ("DATABASE_URL", "sqlite:////srv/zenscall.db", "DATABASE_URL"),
    ("REDIS_URL", None, "REDIS_URL"),
    ("METRICS_TOKEN", None, "METRICS_TOKEN is required in production"),
    ("METRICS_TOKEN", "", "METRICS_TOKEN is required in production"),
    ("METRICS_TOKEN", "tiny", "METRICS_TOKEN must be at least 16"),
    ("METRICS_TOKEN", "change-me-to-a-long-random-token", "placeholder"),
])
def test_production_refuses(production_env, name, value, message):
    if value is None:
        production_env.delenv(name, raising=False)
    else:
        production_env.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_secrets_can_come_from_files(production_env, tmp_path):
    for name in ("SECRET_KEY", "METRICS_TOKEN", "FS_PASSWORD"):
        path = tmp_path / name.lower()
        path.write_text(GOOD[name] + "-from-a-file\n")
        production_env.delenv(name)
        production_env.setenv(f"{name}_FILE", str(path))
    settings = load_settings()
    assert settings.secret_key == GOOD["SECRET_KEY"] + "-from-a-file"
    assert settings.metrics_token == GOOD["METRICS_TOKEN"] + "-from-a-file"
    assert settings.fs_password == GOOD["FS_PASSWORD"] + "-from-a-file"
    production_env.setenv("METRICS_TOKEN", GOOD["METRICS_TOKEN"])
    with pytest.raises(ConfigError, match="set METRICS_TOKEN or METRICS_TOKEN_FILE, not both"):
        load_settings()
    production_env.delenv("METRICS_TOKEN")
    (tmp_path / "metrics_token").write_text("change-me-to-a-long-random-token")
    with pytest.raises(ConfigError, match="placeholder"):
        load_settings()


def test_development_accepts_the_defaults(monkeypatch, tmp_path):
    for name in ("ZC_ENV", "SECRET_KEY", "JWT_SECRET_KEY", "FS_PASSWORD", "DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.fs_password == "ClueCon" and settings.is_sqlite and settings.redis_url is None
