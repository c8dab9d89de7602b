"""The dialer's engine and store in this process, against the real MariaDB and Redis and the
FreeSWITCH simulator (``python -m simulator``, digits mode) over a real ESL socket.

The process is not monkey-patched (like ``tests/esl``): the engine's greenlets and its ESL client
use gevent explicitly, SQL and Redis calls block the hub while they run (harmless: the switch is
another process). Every wait here yields to the hub (``gevent.sleep``) and has a deadline.
Each test gets its own engine (its own node, owner and cap keys) and its own account.
"""

from __future__ import annotations

import secrets
import uuid
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import gevent
import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, make_session_factory, utcnow
from core.models import AudioFile
from core.settings import Settings
from dialer.bootstrap import owner_id
from dialer.caps import Caps
from dialer.engine import Engine
from dialer.store import Source, Store
from services.accounts import create_account
from services.calls import NewCall, call_terms, create_call
from tests.esl.conftest import simulator_process
from tests.waiting import wait_for

PASSWORD = "ClueCon"
TIME_SCALE = 10.0  # the simulator's waits are a tenth of the simulated seconds it reports


@pytest.fixture(scope="module")
def switch() -> Iterator[int]:
    """The simulator in digits mode (the number's last digit decides the call); its ESL port."""
    with simulator_process("--time-scale", str(TIME_SCALE), "--heartbeat", "0") as (_, port, _proc):
        yield port


@pytest.fixture(scope="module")
def db(database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(database_url, pool_size=12)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def sessions(db: sa.Engine) -> sessionmaker[Session]:
    return make_session_factory(db)


class TenantStore(Store):
    """The real store, serving only the accounts its test made: the suite's database also holds
    other tests' queued calls, which this engine must not dial (nor hold their numbers' leases)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.accounts: set[str] = set()

    def due_sources(self, now: datetime | None = None) -> list[Source]:
        return [s for s in super().due_sources(now) if s.account_id in self.accounts]


@dataclass
class Account:
    id: str
    audio_id: str
    audio_ms: int
    rate: Decimal
    pulse: int


@dataclass
class Rig:
    """One engine on the simulator, and what the tests do around it."""

    engine: Engine
    settings: Settings
    sessions: sessionmaker[Session]

    def account(self, *, balance: str = "100", rate: str = "2.40", pulse: int = 30, max_concurrent: int = 10,
                message_seconds: float = 20.0) -> Account:
        """An account and a READY message of that length (its WAV where the switch reads it)."""
        with self.sessions() as session:
            created = create_account(
                session, self.settings, name="Engine Test", email=f"engine-{uuid.uuid4().hex[:12]}@example.pk",
                password="S3cret!pass", balance=Decimal(balance), rate_per_minute=Decimal(rate),
                pulse_seconds=pulse, max_concurrent_calls=max_concurrent)
            account_id = created.account.id
        store = self.engine.store
        assert isinstance(store, TenantStore)
        store.accounts.add(account_id)
        audio_id = str(uuid.uuid4())
        audio_dir = Path(self.settings.fs_audio_dir)
        audio_dir.mkdir(parents=True, exist_ok=True)
        path = audio_dir / f"{audio_id}.wav"
        with wave.open(str(path), "wb") as w:  # 8 kHz mono 16-bit, like a converted upload
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\x00\x00" * int(8000 * message_seconds))
        ms = int(message_seconds * 1000)
        with self.sessions.begin() as session:
            session.execute(sa.insert(AudioFile.__table__).values(
                id=audio_id, account_id=account_id, name="message", status="READY", source_format="WAV",
                duration_ms=ms, size_bytes=path.stat().st_size, sha256="0" * 64, created_at=utcnow()))
        return Account(account_id, audio_id, ms, Decimal(rate), pulse)

    def place(self, account: Account, last_digit: str, *, max_retries: int = 0, retry_delay: int = 30) -> str:
        """A single call, as the API places it (QUEUED, its first reservation made); its id."""
        number = f"+92300{secrets.randbelow(10**6):06d}{last_digit}"
        with self.sessions() as session:
            terms = call_terms(session, account.id, account.audio_id)
            assert terms is not None
            call, created = create_call(session, NewCall(account.id, terms, number, None, max_retries, retry_delay),
                                        None)
        assert created
        self.engine.nudge()
        return call.id


def wait_until(what: str, probe: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Yield to the engine until ``probe()`` is truthy; fail with ``what`` after ``timeout``."""
    return wait_for(what, probe, timeout, interval=0.05, sleep=gevent.sleep)


@pytest.fixture()
def make_rig(settings: Settings, switch: int, db: sa.Engine, sessions: sessionmaker[Session],
             redis_url: str) -> Iterator[Callable[..., Rig]]:
    """``make_rig(store_class=TenantStore, **settings)``: an engine of its own node, started and connected."""
    started: list[tuple[Engine, redis.Redis]] = []

    def make(store_class: type[TenantStore] = TenantStore, **overrides: Any) -> Rig:
        node = f"engine-{secrets.token_hex(3)}"
        config = replace(settings, fs_host="127.0.0.1", fs_port=switch, fs_password=PASSWORD, dialer_node=node,
                         fs_originate_timeout=20, fs_command_timeout=5.0, node_max_channels=50, gateway_cps=200.0,
                         dialer_sweep_seconds=0.2, cap_lease_seconds=30, cdr_dir="", cdr_wait_seconds=2.0)
        config = replace(config, **overrides)
        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        store = store_class(db, node, owner_id(node))
        engine = Engine(config, store, Caps(client, config.cap_lease_seconds), client, dial_concurrency=4)
        engine.start()
        started.append((engine, client))
        wait_until("the engine connected to the simulator", lambda: engine._connected.is_set())
        return Rig(engine, config, sessions)

    try:
        yield make
    finally:
        for engine, client in started:
            engine.stop()
            client.close()


@pytest.fixture()
def rig(make_rig: Callable[..., Rig]) -> Rig:
    return make_rig()
