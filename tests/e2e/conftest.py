"""End-to-end harness: the real API, RQ, dialer processes and the FreeSWITCH simulator.

Calls are placed through the API (an in-process app on the session's database and
Redis, rate limits off); the API enqueues RQ jobs; ``python -m dialer`` subprocesses
take them, claim attempts in SQL and originate over real ESL sockets to
``python -m simulator`` subprocesses; the tests then read SQL, Redis and the
simulator's own statistics.

Every process started here is killed at teardown, also when the test failed. Every
wait is bounded by a deadline and fails with a message that says what was awaited.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import sqlalchemy as sa

from billing import ledger
from billing.rating import call_cost
from core.call_states import CallStatus
from core.models import Account, Call, CallAttempt
from core.settings import Settings
from simulator import control
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
TIME_SCALE = 20.0  # simulated seconds per real second
SIM_PASSWORD = "ClueCon"
FINAL = [s.value for s in CallStatus if s.is_final]

T = TypeVar("T")


# -- the FreeSWITCH simulator ----------------------------------------------------------------


def esl_api(port: int, command: str, timeout: float = 5.0) -> str:
    """One ``api`` command on a fresh ESL connection; returns the response body."""
    return control.esl_api(port, command, password=SIM_PASSWORD, timeout=timeout)


class SimProcess:
    """``python -m simulator`` on port 0 (or a given port, for a restart)."""

    def __init__(self, log_dir: Path, *args: str, port: int = 0, time_scale: float = TIME_SCALE,
                 cdr_dir: Path | None = None) -> None:
        self.args = args
        self.log_dir = log_dir
        # where the switch writes its own record of each leg (mod_json_cdr's log-dir)
        self.cdr_dir = cdr_dir or log_dir / f"cdr-{secrets.token_hex(3)}"
        self.cdr_dir.mkdir(parents=True, exist_ok=True)
        self.time_scale = time_scale
        self.call_log = log_dir / f"sim-calls-{secrets.token_hex(3)}.jsonl"
        self.proc: subprocess.Popen[str] | None = None
        self.port = port
        self._start(port)

    def _start(self, port: int) -> None:
        stderr = open(self.log_dir / f"sim-{secrets.token_hex(3)}.log", "w")  # noqa: SIM115
        deadline = time.monotonic() + 15
        while True:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", str(port),
                 "--password", SIM_PASSWORD, "--time-scale", str(self.time_scale), "--heartbeat", "0",
                 "--call-log", str(self.call_log), "--cdr-dir", str(self.cdr_dir), *self.args],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
            assert self.proc.stdout is not None
            ready, _, _ = select.select([self.proc.stdout], [], [], 15)
            line = self.proc.stdout.readline() if ready else ""
            if line.startswith("LISTENING 127.0.0.1:"):
                self.port = int(line.strip().rsplit(":", 1)[1])
                return
            self.proc.kill()
            self.proc.wait()
            if time.monotonic() > deadline:  # e.g. the old port is not free yet
                pytest.fail(f"simulator did not start on port {port}: {line!r}")
            time.sleep(0.2)

    def api(self, command: str) -> str:
        return esl_api(self.port, command)

    def stats(self) -> dict[str, Any]:
        return json.loads(self.api("sim_stats"))  # type: ignore[no-any-return]

    def logged_calls(self) -> list[dict[str, Any]]:
        """Every finished call of this simulator (also across restarts)."""
        if not self.call_log.exists():
            return []
        return [json.loads(line) for line in self.call_log.read_text().splitlines() if line.strip()]

    def restart(self) -> None:
        """Kill the switch (every channel is lost) and start a new one on the same port."""
        self.kill()
        self._start(self.port)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def live_channels(sim: SimProcess) -> set[str]:
    """The uuids of the channels the switch has up now (``show channels as json``)."""
    body = json.loads(sim.api("show channels as json"))
    return {row["uuid"] for row in body.get("rows", [])}


# -- a TCP proxy a test can cut: one process loses its database, Redis or switch ------------


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to a service. ``cut()`` drops every connection and refuses
    new ones (the service looks stopped to whoever goes through the proxy, and only to them);
    ``restore()`` listens on the same port again."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(256)
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    @property
    def up(self) -> bool:
        return self._listener is not None

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._socks |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()
        listener.close()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(src)
            self._drop(dst)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def cut(self) -> None:
        with self._lock:
            self._listener = None  # the accept loop closes it within 0.1 s
            socks, self._socks = list(self._socks), set()
        for sock in socks:
            self._drop(sock)
        time.sleep(0.2)  # the port refuses connections from here on


# -- the dialer --------------------------------------------------------------------------------


class DialerProcess:
    def __init__(self, settings: Settings, sim_port: int, log_dir: Path, node: str, **env: Any) -> None:
        self.node = node
        self.log = log_dir / f"dialer-{node}-{secrets.token_hex(3)}.log"
        full_env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url or "",
            "VAR_DIR": str(settings.var_dir),
            "AUDIO_DIR": str(settings.audio_dir),
            "FS_AUDIO_DIR": settings.fs_audio_dir,
            "DIALER_QUEUE": settings.dialer_queue,
            "FS_HOST": "127.0.0.1",
            "FS_PORT": str(sim_port),
            "FS_PASSWORD": SIM_PASSWORD,
            "FS_ORIGINATE_TIMEOUT": "4",
            "FS_COMMAND_TIMEOUT": "3",
            "DIALER_SWEEP_SECONDS": "0.3",
            "DIALER_NODE": node,
            "GATEWAY_CPS": "500",
            "CAP_LEASE_SECONDS": "20",
            "NODE_MAX_CHANNELS": "50",
        }
        full_env.update({k: str(v) for k, v in env.items()})
        self.lease_seconds = int(full_env["CAP_LEASE_SECONDS"])
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "dialer"], cwd=ROOT, env=full_env,
                                         stdout=out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def pause(self) -> None:
        """SIGSTOP: the process is frozen (a long pause, a starved CPU) but keeps its sockets."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


# -- the stack ---------------------------------------------------------------------------------


@dataclass
class Placed:
    call_id: str
    phone: str
    digit: str


class Stack:
    """What a test drives: simulators, dialers, the API client, SQL and Redis."""

    def __init__(self, settings: Settings, client: Any, sql: sa.engine.Engine, rds: redis.Redis,
                 log_dir: Path) -> None:
        self.settings = settings
        self.client = client
        self.sql = sql
        self.redis = rds
        self.log_dir = log_dir
        self.sims: list[SimProcess] = []
        self.dialers: list[DialerProcess] = []
        self.node = f"e2e-{secrets.token_hex(4)}"
        self.accounts: list[str] = []
        self.proxies: list[TcpProxy] = []

    # processes
    def simulator(self, *args: str, cdr_dir: Path | None = None) -> SimProcess:
        sim = SimProcess(self.log_dir, *args, cdr_dir=cdr_dir)
        self.sims.append(sim)
        return sim

    def dialer(self, sim: SimProcess, *, node: str | None = None, ready: bool = True, **env: Any) -> DialerProcess:
        """A dialer of ``sim`` reading the switch's records where the switch writes them (unless
        ``CDR_DIR`` is given)."""
        env.setdefault("CDR_DIR", sim.cdr_dir)
        dialer = DialerProcess(self.settings, sim.port, self.log_dir, node or self.node, **env)
        self.dialers.append(dialer)
        if ready:
            self.wait_ready(dialer)
        return dialer

    def proxy_to_sql(self) -> tuple[TcpProxy, str]:
        """A proxy in front of the database, and the DATABASE_URL that goes through it."""
        url = sa.engine.make_url(self.settings.database_url)
        if url.get_backend_name() == "sqlite":
            pytest.fail("this test needs a database server (it cuts the dialer's connection to it)")
        proxy = TcpProxy(url.host or "127.0.0.1", url.port or 3306)
        self.proxies.append(proxy)
        return proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)

    def proxy_to_redis(self) -> tuple[TcpProxy, str]:
        """A proxy in front of Redis, and the REDIS_URL that goes through it."""
        kwargs = self.redis.connection_pool.connection_kwargs
        proxy = TcpProxy(kwargs.get("host", "127.0.0.1"), int(kwargs.get("port", 6379)))
        self.proxies.append(proxy)
        return proxy, f"redis://127.0.0.1:{proxy.port}/{int(kwargs.get('db', 0))}"

    def proxy_to_switch(self, sim: SimProcess) -> TcpProxy:
        """A proxy in front of the simulator's event socket (pass ``FS_PORT=proxy.port``)."""
        proxy = TcpProxy("127.0.0.1", sim.port)
        self.proxies.append(proxy)
        return proxy

    def heartbeat(self, dialer: DialerProcess) -> dict[str, Any] | None:
        raw = self.redis.get(f"zc:dialer:{dialer.node}:{dialer.pid}")
        return json.loads(raw) if raw else None

    def wait_ready(self, dialer: DialerProcess, timeout: float = 20.0) -> None:
        def ready() -> bool:
            if not dialer.alive():
                pytest.fail(f"dialer exited with {dialer.proc.returncode}:\n{dialer.log_text()[-3000:]}")
            beat = self.heartbeat(dialer)
            return bool(beat and beat["esl_connected"])

        wait_for(f"dialer {dialer.node} (pid {dialer.pid}) to connect to FreeSWITCH", ready, timeout)

    def teardown(self) -> None:
        for dialer in self.dialers:
            dialer.kill9()
        for sim in self.sims:
            sim.kill()
        for proxy in self.proxies:
            proxy.cut()
        # calls a failed test left behind must not be dialed by the next test's dialers
        if self.accounts:
            with self.sql.begin() as conn:
                conn.execute(sa.update(Call).where(Call.account_id.in_(self.accounts),
                                                   Call.status.not_in(FINAL))
                             .values(status=CallStatus.CANCELLED, next_attempt_at=None))

    # accounts, audio and calls through the API
    def tenant(self, make_tenant: Any, balance: str = "1000", **kwargs: Any) -> Any:
        tenant = make_tenant(balance=balance, **kwargs)
        self.accounts.append(tenant.account_id)
        return tenant

    def place(self, tenant: Any, audio_id: str, digit: str, max_retries: int = 0, **body: Any) -> Placed:
        phone = f"0300{secrets.randbelow(10**6):06d}{digit}"
        response = self.client.post("/api/v1/calls", headers=tenant.headers,
                                    json={"phone_number": phone, "audio_id": audio_id,
                                          "max_retries": max_retries, **body})
        assert response.status_code == 201, response.get_json()
        return Placed(response.get_json()["id"], "+92" + phone[1:], digit)

    def cancel(self, tenant: Any, call_id: str) -> dict[str, Any]:
        response = self.client.post(f"/api/v1/calls/{call_id}/cancel", headers=tenant.headers)
        assert response.status_code == 200, response.get_json()
        return response.get_json()  # type: ignore[no-any-return]

    def api_call(self, tenant: Any, call_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/calls/{call_id}", headers=tenant.headers)
        assert response.status_code == 200, response.get_json()
        return response.get_json()  # type: ignore[no-any-return]

    # SQL
    def call(self, call_id: str) -> Any:
        with self.sql.connect() as conn:
            return conn.execute(sa.select(Call.__table__).where(Call.id == call_id)).one()

    def attempts(self, call_id: str) -> list[Any]:
        with self.sql.connect() as conn:
            return list(conn.execute(sa.select(CallAttempt.__table__).where(CallAttempt.call_id == call_id)
                                     .order_by(CallAttempt.attempt_no)))

    def set_call(self, call_id: str, **values: Any) -> None:
        with self.sql.begin() as conn:
            conn.execute(sa.update(Call).where(Call.id == call_id).values(**values))

    def set_account(self, account_id: str, **values: Any) -> None:
        with self.sql.begin() as conn:
            conn.execute(sa.update(Account).where(Account.id == account_id).values(**values))

    def ledger(self, call_id: str) -> list[Any]:
        """The ledger entries of one call, in the order they were written."""
        from core.models import LedgerEntry

        with self.sql.connect() as conn:
            return list(conn.execute(sa.select(LedgerEntry.__table__).where(LedgerEntry.call_id == call_id)
                                     .order_by(LedgerEntry.id)))

    def charges(self, call_id: str) -> list[Any]:
        from core.states import LedgerKind

        return [e for e in self.ledger(call_id) if LedgerKind(e.kind) is LedgerKind.CHARGE]

    def owned_by(self, dialer: DialerProcess, *, open_only: bool = True) -> list[Any]:
        """The attempts a dialer process claimed (its owner id carries its pid)."""
        a = CallAttempt.__table__.c
        query = sa.select(CallAttempt.__table__).where(a.owner.like(f"%:{dialer.pid}:%"))
        if open_only:
            query = query.where(a.ended_at.is_(None))
        with self.sql.connect() as conn:
            return list(conn.execute(query))

    def status(self, call_id: str) -> str:
        return str(CallStatus(self.call(call_id).status).value)

    def wait_status(self, call_id: str, *statuses: str, timeout: float = 20.0) -> Any:
        wait_for(f"call {call_id} to reach {'/'.join(statuses)}",
                 lambda: self.status(call_id) in statuses, timeout)
        return self.call(call_id)

    def wait_retry_scheduled(self, call_id: str, attempts: int, timeout: float = 20.0) -> Any:
        """Until attempt ``attempts`` has ended and the call waits QUEUED for the next one."""
        def probe() -> Any:
            call = self.call(call_id)
            return call if call.attempts_count == attempts and call.status == "QUEUED" else None

        return wait_for(f"call {call_id} to wait for a retry after attempt {attempts}", probe, timeout)

    def wait_final(self, call_ids: list[str], timeout: float = 30.0) -> None:
        def pending() -> list[tuple[str, str]]:
            with self.sql.connect() as conn:
                rows = conn.execute(sa.select(Call.id, Call.status).where(Call.id.in_(call_ids)))
                return [(r[0], CallStatus(r[1]).value) for r in rows if not CallStatus(r[1]).is_final]

        wait_for(f"{len(call_ids)} calls to end (still open: {{}})", lambda: not pending() or None, timeout)

    def account(self, account_id: str) -> Any:
        with self.sql.connect() as conn:
            return conn.execute(sa.select(Account.__table__).where(Account.id == account_id)).one()

    def assert_books_balance(self, account_id: str) -> None:
        """balance == sum of the ledger, reserved == sum of holds, nothing negative; once every call
        ended, nothing is held but the reservations of attempts whose outcome is unknown (they wait
        for an operator's settlement)."""
        from sqlalchemy.orm import Session

        with Session(self.sql) as session:
            totals = ledger.ledger_totals(session, account_id)
            unsettled = ledger.unsettled_holds(session, account_id)
        row = self.account(account_id)
        assert Decimal(row.balance) == totals.balance, (row.balance, totals.balance)
        assert Decimal(row.reserved) == totals.reserved, (row.reserved, totals.reserved)
        assert Decimal(row.reserved) == unsettled, f"reserved {row.reserved} left after every call ended"
        assert Decimal(row.balance) >= 0

    def assert_money(self, call_id: str) -> None:
        """Each attempt costs the pulses of its billsec; unanswered ones cost nothing."""
        call = self.call(call_id)
        account = self.account(call.account_id)
        total = Decimal(0)
        for attempt in self.attempts(call_id):
            # at the rate frozen on the attempt when its reservation was made
            rate = Decimal(attempt.rate_per_minute or account.rate_per_minute)
            pulse = attempt.pulse_seconds or account.pulse_seconds
            delivered = attempt.answered_at is not None and attempt.status == "COMPLETED"
            expected = call_cost(attempt.billsec, rate, pulse) if delivered else Decimal(0)
            assert Decimal(attempt.cost) == expected, (attempt.id, attempt.billsec, attempt.cost, expected)
            if attempt.answered_at is None:
                assert attempt.billsec == 0
            total += Decimal(attempt.cost)
        assert Decimal(call.cost) == total

    def assert_no_overlap(self, call_ids: list[str]) -> None:
        """SQL: attempts are numbered 1..n, all ended, and attempt n+1 was claimed (its
        reservation written) only after attempt n was settled (its release written).

        Event times come from the switch's clock (the simulator runs it faster than real
        time), so the order is read from the ledger's sequence, which the dialer writes.
        """
        from core.models import LedgerEntry
        from core.states import LedgerKind

        for call_id in call_ids:
            attempts = self.attempts(call_id)
            assert [a.attempt_no for a in attempts] == list(range(1, len(attempts) + 1)), call_id
            for a in attempts:
                assert a.ended_at is not None, f"attempt {a.id} of call {call_id} never ended"
            with self.sql.connect() as conn:
                entries = {(r.attempt_id, LedgerKind(r.kind).value): r.id for r in conn.execute(
                    sa.select(LedgerEntry.id, LedgerEntry.attempt_id, LedgerEntry.kind)
                    .where(LedgerEntry.call_id == call_id))}
            for prev, nxt in zip(attempts, attempts[1:], strict=False):
                released = entries[(prev.id, "RELEASE")]
                reserved = entries[(nxt.id, "RESERVE")]
                assert released < reserved, f"attempt {nxt.attempt_no} of call {call_id} overlaps the one before"

    def in_use(self, key: str) -> int:
        now_ms = int(time.time() * 1000)
        self.redis.zremrangebyscore(key, "-inf", now_ms)
        return int(self.redis.zcard(key))


def sim_rows_of(rows: list[dict[str, Any]], call_id: str) -> list[dict[str, Any]]:
    """The switch's channels of one call (every originate carries ``zc_call_id``)."""
    return [r for r in rows if (r.get("vars") or {}).get("zc_call_id") == call_id]


def max_live(rows: list[dict[str, Any]]) -> int:
    """The most channels the switch had up at once among ``rows`` (its own start/end times)."""
    edges = sorted([(r["start"], 1) for r in rows] + [(r["end"] or r["start"], -1) for r in rows],
                   key=lambda e: (e[0], e[1]))  # an end and a start at the same instant do not overlap
    live = peak = 0
    for _, step in edges:
        live += step
        peak = max(peak, live)
    return peak


def assert_sim_no_overlap(calls: list[dict[str, Any]]) -> None:
    """The switch never had two live channels to the same number at once."""
    by_number: dict[str, list[tuple[float, float]]] = {}
    for row in calls:
        by_number.setdefault(row["number"], []).append((row["start"], row["end"] or row["start"]))
    for number, spans in by_number.items():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert end <= start, f"two live channels to {number} at once"


@pytest.fixture(scope="session")
def e2e_app(settings: Settings) -> Any:
    """The API on the session's database and Redis, without rate limits (tests place many calls)."""
    from api import create_app

    application = create_app(replace(settings, ratelimit_enabled=False))
    application.config["TESTING"] = True
    return application


@pytest.fixture()
def api_client(e2e_app: Any) -> Any:
    return e2e_app.test_client()


@pytest.fixture(scope="session")
def sql(settings: Settings) -> Iterator[sa.engine.Engine]:
    engine = sa.create_engine(settings.database_url, pool_pre_ping=True)
    yield engine
    engine.dispose()


def quiet_leftovers(sql: sa.engine.Engine) -> None:
    """Calls and campaigns other tests left due in the shared database (tests that place calls
    without a dialer) would be dialed by this test's dialers and share its caps and pacing: they
    are ended (calls) and paused (campaigns) before each process-level test, which then sees only
    what it makes itself."""
    from core.models import Campaign

    now = datetime.now(UTC)
    with sql.begin() as conn:
        conn.execute(sa.update(Call.__table__).where(Call.__table__.c.status == CallStatus.QUEUED)
                     .values(status=CallStatus.CANCELLED, ended_at=now, next_attempt_at=None,
                             last_cause="TEST_LEFTOVER"))
        conn.execute(sa.update(Campaign.__table__).where(Campaign.__table__.c.status.in_(["RUNNING", "SCHEDULED"]))
                     .values(status="PAUSED", pause_reason="TEST_LEFTOVER"))


@pytest.fixture()
def stack(settings: Settings, api_client: Any, sql: sa.engine.Engine, tmp_path: Path,
          request: pytest.FixtureRequest) -> Iterator[Stack]:
    rds = redis.Redis.from_url(settings.redis_url or "")
    quiet_leftovers(sql)
    s = Stack(settings, api_client, sql, rds, tmp_path)
    try:
        yield s
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            for d in s.dialers:
                sys.stderr.write(f"--- dialer {d.node} pid {d.pid} log (tail) ---\n{d.log_text()[-4000:]}\n")
        s.teardown()
        rds.close()


@pytest.fixture()
def upload(api_client: Any) -> Any:
    """Upload a generated WAV through the e2e API client."""
    import io

    from tests.conftest import wav_bytes

    def upload(tenant: Any, seconds: float = 2.0) -> str:
        response = api_client.post("/api/v1/audio", headers=tenant.headers,
                                   data={"file": (io.BytesIO(wav_bytes(seconds, rate=8000)), "m.wav"),
                                         "name": "message"},
                                   content_type="multipart/form-data")
        assert response.status_code in (201, 202), response.get_json()
        audio_id = str(response.get_json()["id"])
        if response.status_code == 202:
            # a long message on a loaded machine passed the request's CPU budget: the worker's job
            # converts it (run here, its queued copy taken off), as the API documents
            from core.audio.job import convert_audio, job_id

            wiring = api_client.application.extensions["zenscall"]
            assert convert_audio(audio_id, settings=wiring.settings)["status"] == "READY"
            job = wiring.work_queue.fetch_job(job_id(audio_id))
            if job is not None:
                job.delete()
        return audio_id

    return upload


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
