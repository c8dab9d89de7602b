"""Shared fixtures: a fresh MariaDB database (migrated with Alembic) and the real Redis.

Tests talk to the real services of the machine:

* ``ZC_TEST_DB_SERVER`` (default ``mysql+pymysql://root@127.0.0.1:3306``): a new
  database ``zc_test_<random>`` is created for the session, migrated, and dropped at
  the end. Set ``ZC_TEST_DB_SERVER=sqlite`` to run the suite on a SQLite file instead.
* ``ZC_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/9``).

A missing service is an error, never a skip: CI must not pass without them.
Tests isolate themselves by tenant (each makes its own account) and by queue name,
so the database is not truncated between tests.
"""

from __future__ import annotations

import io
import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import soundfile as sf
import sqlalchemy as sa

from core.settings import Settings, load_settings

DB_SERVER = os.environ.get("ZC_TEST_DB_SERVER", "mysql+pymysql://root@127.0.0.1:3306")
REDIS_URL = os.environ.get("ZC_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


def _create_database(tmp: Path) -> tuple[str, Any]:
    if DB_SERVER == "sqlite":
        return f"sqlite:///{tmp / 'test.db'}", None
    name = f"zc_test_{secrets.token_hex(4)}"
    server = sa.create_engine(DB_SERVER, isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    except Exception as exc:  # noqa: BLE001
        pytest.exit(f"MariaDB at {DB_SERVER} is not reachable: {exc}", returncode=3)

    def drop() -> None:
        with server.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        server.dispose()

    return f"{DB_SERVER}/{name}?charset=utf8mb4", drop


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        pytest.exit(f"Redis at {REDIS_URL} is not reachable: {exc}", returncode=3)
    return REDIS_URL


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, drop = _create_database(tmp_path_factory.mktemp("db"))
    from alembic import command

    from api.cli import alembic_config

    command.upgrade(alembic_config(url), "head")
    yield url
    if drop is not None:
        drop()


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, database_url: str, redis_url: str) -> Settings:
    var_dir = tmp_path_factory.mktemp("var")
    os.environ["VAR_DIR"] = str(var_dir)
    base = load_settings()
    return replace(
        base,
        database_url=database_url,
        redis_url=redis_url,
        audio_dir=var_dir / "audio",
        fs_audio_dir=str(var_dir / "audio"),
        dialer_queue=f"dialer-test-{secrets.token_hex(3)}",
    )


@pytest.fixture(scope="session")
def app(settings: Settings) -> Any:
    from api import create_app

    application = create_app(settings)
    application.config["TESTING"] = True
    return application


@pytest.fixture()
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture(scope="session")
def sessions(app: Any) -> Any:
    return app.extensions["zenscall"].sessions


@dataclass
class Tenant:
    account_id: str
    user_id: str
    email: str
    password: str
    api_key: str
    api_key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@pytest.fixture()
def make_tenant(app: Any, settings: Settings) -> Any:
    """Create an account with its owner and an API key: ``make_tenant(balance="1000")``."""
    from services.accounts import create_account

    def make(balance: str = "1000", **kwargs: Any) -> Tenant:
        email = f"user-{uuid.uuid4().hex[:12]}@example.pk"
        password = "S3cret!pass"
        with app.extensions["zenscall"].sessions() as session:
            created = create_account(session, settings, name=kwargs.pop("name", "Test Co"), email=email,
                                     password=password, balance=Decimal(balance), **kwargs)
            return Tenant(created.account.id, created.user.id, email, password, created.api_key,
                          created.api_key_id)

    return make


@pytest.fixture()
def tenant(make_tenant: Any) -> Tenant:
    return make_tenant()  # type: ignore[no-any-return]


def wav_bytes(seconds: float = 2.0, rate: int = 16000, channels: int = 1, freq: float = 440.0) -> bytes:
    """A real WAV file with a sine tone."""
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * freq * t)).astype("float32")
    data = np.repeat(tone[:, None], channels, axis=1) if channels > 1 else tone
    buf = io.BytesIO()
    sf.write(buf, data, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture()
def upload_audio(client: Any) -> Any:
    """Upload a generated WAV for a tenant; returns the audio JSON."""

    def upload(tenant: Tenant, seconds: float = 2.0, name: str = "message") -> dict[str, Any]:
        response = client.post(
            "/api/v1/audio",
            headers=tenant.headers,
            data={"file": (io.BytesIO(wav_bytes(seconds)), "message.wav"), "name": name},
            content_type="multipart/form-data",
        )
        assert response.status_code == 201, response.get_json()
        return response.get_json()  # type: ignore[no-any-return]

    return upload
