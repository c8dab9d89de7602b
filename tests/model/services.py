"""Private services for the process-level model test and the fault benchmarks.

Everything runs as subprocesses of its own, started here and stopped by ``stop_all`` (also on
errors): a MariaDB server (``mariadb-install-db`` into a temporary datadir, ``mariadbd`` on a free
port of 127.0.0.1, root without a password) that can be killed -9 and started again on the same
datadir, a ``redis-server`` on a free port with no persistence, the FreeSWITCH simulator, RQ
workers and ``python -m dialer`` processes. The API runs in-process (Flask test client, rate
limits off). The machine's own MariaDB and Redis are never touched, and nothing here changes the
environment of the calling process (settings are built for the private services explicitly).

Used by ``tests/model`` and by ``bench/faults.py`` / ``bench/model.py``; nothing here needs pytest.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from bench/
    sys.path.insert(0, str(ROOT))

from simulator import control  # noqa: E402

SIM_PASSWORD = "ClueCon"
KARACHI = ZoneInfo("Asia/Karachi")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll ``probe`` (exceptions count as "not yet": a service may be down on purpose) until it
    returns something truthy; raise TimeoutError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001
            last = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --------------------------------------------------------------------------- processes


class Proc:
    """A subprocess in its own process group (kill -9 takes its children with it), logging to a file."""

    registry: list[Proc] = []

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None,
                 stdout_pipe: bool = False) -> None:
        self.name = name
        self.log_path = log
        self._log = open(log, "a")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True,
                                     stdout=subprocess.PIPE if stdout_pipe else self._log,
                                     stderr=self._log, text=True)
        Proc.registry.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill9()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        if self in Proc.registry:
            Proc.registry.remove(self)

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def stop_all() -> None:
    """Stop every process started here, newest first."""
    for proc in reversed(list(Proc.registry)):
        try:
            proc.stop(timeout=5)
        except Exception:  # noqa: BLE001 - keep stopping the others
            pass
    Proc.registry.clear()


class _Server:
    """A service process that can crash (``kill9``) and be started again (``start``)."""

    proc: Proc | None = None

    def start(self) -> None:
        raise NotImplementedError

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.kill9()
            self.proc.stop()
            self.proc = None


class MariaDB(_Server):
    """A private MariaDB server on a temporary datadir; ``kill9`` + ``start`` is a crash and a
    recovery on the same data."""

    def __init__(self, tmp: Path, buffer_pool: str = "256M") -> None:
        self.datadir = tmp / "mariadb"
        self.sock = tmp / "mariadb.sock"
        self.log = tmp / "mariadb.log"
        self.buffer_pool = buffer_pool
        self.port = free_port()
        self.proc: Proc | None = None
        install = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
        subprocess.run([install, "--no-defaults", "--user=root", f"--datadir={self.datadir}",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180)
        self.start()

    @property
    def server_url(self) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}"

    def start(self) -> None:
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        self.proc = Proc("mariadb", [
            mariadbd, "--no-defaults", "--user=root", f"--datadir={self.datadir}", f"--port={self.port}",
            "--bind-address=127.0.0.1", f"--socket={self.sock}", "--skip-grant-tables", "--skip-name-resolve",
            "--skip-log-bin", f"--innodb-buffer-pool-size={self.buffer_pool}", "--innodb-flush-log-at-trx-commit=2",
            "--max-connections=500", f"--pid-file={self.datadir / 'mariadb.pid'}",
            f"--log-error={self.log}"], self.log)
        wait("MariaDB to answer", self.ping, 90)

    def ping(self) -> bool:
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=1)
        conn.close()
        return True


class Redis(_Server):
    """A private redis-server without persistence: ``kill9`` + ``start`` comes back empty."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.log = tmp / "redis.log"
        self.dir = tmp
        self.proc: Proc | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=5)

    def start(self) -> None:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = Proc("redis", [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", str(self.dir)], self.log)
        wait("Redis to answer", lambda: self.client().ping(), 20)


class Simulator:
    """``python -m simulator`` on a free port. Each start (a restart included) writes its own
    call log: a restarted switch's clock starts again, so its times are compared only with rows
    of the same run (``run`` in each row)."""

    def __init__(self, tmp: Path, name: str, time_scale: float = 20.0, *args: str) -> None:
        self.tmp = tmp
        self.name = name
        self.time_scale = time_scale
        self.args = args
        self.runs: list[Path] = []
        self.port = 0
        self.proc: Proc | None = None
        self.start()

    def start(self) -> None:
        call_log = self.tmp / f"sim-calls-{self.name}-{len(self.runs)}.jsonl"
        log = self.tmp / f"sim-{self.name}.log"
        deadline = time.monotonic() + 20
        while True:
            self.proc = Proc("simulator", [
                sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", str(self.port),
                "--password", SIM_PASSWORD, "--time-scale", str(self.time_scale), "--heartbeat", "0",
                "--call-log", str(call_log), *self.args], log, stdout_pipe=True)
            stdout = self.proc.proc.stdout
            assert stdout is not None
            ready, _, _ = select.select([stdout], [], [], 15)
            line = stdout.readline() if ready else ""
            if line.startswith("LISTENING 127.0.0.1:"):
                self.port = int(line.strip().rsplit(":", 1)[1])
                self.runs.append(call_log)
                return
            self.proc.stop()
            if time.monotonic() > deadline:
                raise RuntimeError(f"simulator did not start on port {self.port}: {line!r}")
            time.sleep(0.3)  # the old port may not be free yet

    def api(self, command: str, timeout: float = 10) -> str:
        return control.esl_api(self.port, command, password=SIM_PASSWORD, timeout=timeout)

    def stats(self) -> dict[str, Any]:
        return json.loads(self.api("sim_stats"))  # type: ignore[no-any-return]

    def current(self) -> int:
        """Channels up on the switch now."""
        return int(self.stats()["current"])

    def restart(self) -> None:
        """Kill the switch (every channel is lost, none is logged) and start it on the same port."""
        assert self.proc is not None
        self.proc.kill9()
        self.proc.stop()
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def rows(self) -> list[dict[str, Any]]:
        """Every channel the switch ended, in every run (``run``: which start logged it)."""
        out: list[dict[str, Any]] = []
        for run, path in enumerate(self.runs):
            if not path.exists():
                continue
            with open(path) as f:
                for line in f:
                    if not line.endswith("\n"):
                        break  # being written
                    row = json.loads(line)
                    row["run"] = run
                    out.append(row)
        return out


# --------------------------------------------------------------------------- the product on them


@dataclass(frozen=True)
class Tenant:
    account_id: str
    headers: dict[str, str]


@dataclass
class Dialer:
    proc: Proc
    node: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.alive()


class Services:
    """MariaDB + Redis (private), the schema migrated, the API in-process, and helpers to start RQ
    workers and dialers against them and to drive the API."""

    def __init__(self, tmp: Path, *, import_stall_seconds: int = 5, dialer_queue: str = "dialer-private",
                 worker_class: str = "campaigns.worker.Worker", buffer_pool: str = "256M") -> None:
        import sqlalchemy as sa

        self.tmp = tmp
        self.db = MariaDB(tmp, buffer_pool=buffer_pool)
        self.redis = Redis(tmp)
        with sa.create_engine(self.db.server_url, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.exec_driver_sql("CREATE DATABASE zenscall CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        self.url = f"{self.db.server_url}/zenscall?charset=utf8mb4"
        from alembic import command

        from api.cli import alembic_config

        command.upgrade(alembic_config(self.url), "head")
        self.sql = sa.create_engine(self.url, pool_pre_ping=True, pool_size=4)
        self.audio_dir = tmp / "audio"
        self.audio_dir.mkdir(exist_ok=True)
        self.import_stall_seconds = import_stall_seconds
        self.worker_class = worker_class
        self.env = {**os.environ, "DATABASE_URL": self.url, "REDIS_URL": self.redis.url, "VAR_DIR": str(tmp),
                    "AUDIO_DIR": str(self.audio_dir), "FS_AUDIO_DIR": str(self.audio_dir), "LOG_LEVEL": "INFO",
                    "DIALER_QUEUE": dialer_queue, "IMPORT_STALL_SECONDS": str(import_stall_seconds)}
        from api import create_app
        from core.settings import load_settings

        with environment(VAR_DIR=str(tmp)):  # the development secrets are kept under VAR_DIR
            base = load_settings()
        self.settings = replace(base, database_url=self.url, redis_url=self.redis.url, var_dir=tmp,
                                audio_dir=self.audio_dir, fs_audio_dir=str(self.audio_dir),
                                dialer_queue=dialer_queue, import_stall_seconds=import_stall_seconds,
                                ratelimit_enabled=False)
        self.app = create_app(self.settings)
        self.app.config["TESTING"] = True
        self.client = self.app.test_client()
        self.worker: Proc | None = None
        self.workers_started = 0
        self.dialers: list[Dialer] = []

    # -- processes ---------------------------------------------------------------------------
    def start_worker(self) -> Proc:
        """An RQ worker of the ``default`` queue whose maintenance tick re-enqueues stalled imports."""
        self.workers_started += 1
        self.worker = Proc("worker", [sys.executable, "-m", "rq.cli", "worker", "--worker-class", self.worker_class,
                                      "--url", self.redis.url, "default"],
                           self.tmp / f"worker-{self.workers_started}.log", env=self.env)
        return self.worker

    def ensure_worker(self) -> bool:
        """Start a worker when none is alive; True when one had to be started."""
        if self.worker is None or not self.worker.alive():
            self.start_worker()
            return True
        return False

    def dialer_env(self, sim: Simulator, node: str, **overrides: Any) -> dict[str, str]:
        env = {**self.env, "FS_HOST": "127.0.0.1", "FS_PORT": str(sim.port), "FS_PASSWORD": SIM_PASSWORD,
               "FS_ORIGINATE_TIMEOUT": "4", "FS_COMMAND_TIMEOUT": "3", "DIALER_SWEEP_SECONDS": "0.3",
               "DIALER_NODE": node, "GATEWAY_CPS": "500", "CAP_LEASE_SECONDS": "20", "NODE_MAX_CHANNELS": "100",
               "CDR_DIR": str(self.tmp / "cdr")}
        env.update({k: str(v) for k, v in overrides.items()})
        return env

    def start_dialer(self, sim: Simulator, node: str, *, ready: bool = True, **overrides: Any) -> Dialer:
        n = sum(1 for d in self.dialers if d.node == node) + 1
        proc = Proc("dialer", [sys.executable, "-m", "dialer"], self.tmp / f"dialer-{node}-{n}.log",
                    env=self.dialer_env(sim, node, **overrides))
        dialer = Dialer(proc, node)
        self.dialers.append(dialer)
        if ready:
            self.wait_dialer(dialer)
        return dialer

    def heartbeat(self, dialer: Dialer) -> dict[str, Any] | None:
        from core.redis_keys import heartbeat_key

        raw = self.redis.client().get(heartbeat_key(dialer.node, dialer.pid))
        return json.loads(raw) if raw else None

    def wait_dialer(self, dialer: Dialer, timeout: float = 30) -> None:
        def ready() -> bool:
            if not dialer.alive():
                raise RuntimeError(f"dialer exited: {dialer.proc.tail()}")
            beat = self.heartbeat(dialer)
            return bool(beat and beat["esl_connected"])

        wait(f"dialer {dialer.node} (pid {dialer.pid}) to connect", ready, timeout)

    def live_dialers(self) -> list[Dialer]:
        return [d for d in self.dialers if d.alive()]

    def close(self) -> None:
        stop_all()
        self.sql.dispose()

    # -- accounts, audio, calls and campaigns through the API ---------------------------------
    def tenant(self, balance: str = "1000", **account: Any) -> Tenant:
        from sqlalchemy.orm import Session

        from services.accounts import create_account

        with Session(self.sql) as session:
            created = create_account(session, self.settings, name="Private Co",
                                     email=f"private-{secrets.token_hex(6)}@example.pk", password="S3cret!pass",
                                     balance=Decimal(balance), **account)
            session.commit()
            return Tenant(created.account.id, {"Authorization": f"Bearer {created.api_key}"})

    def audio(self, tenant: Tenant, seconds: float) -> str:
        """A WAV message of ``seconds`` (simulated seconds on the switch) uploaded through the API."""
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\x10\x00\xf0\xff" * int(4000 * seconds))
        response = self.client.post("/api/v1/audio", headers=tenant.headers, content_type="multipart/form-data",
                                    data={"file": (io.BytesIO(buf.getvalue()), "m.wav"), "name": "message"})
        assert response.status_code == 201, response.get_json()
        return str(response.get_json()["id"])

    def post_campaign(self, tenant: Tenant, audio_id: str, phones: list[str], *, window: tuple[str, str],
                      **fields: Any) -> Any:
        data = ("phone\n" + "\n".join(phones) + "\n").encode()
        form = {"name": "private", "audio_id": audio_id, "csv_file": (io.BytesIO(data), "numbers.csv"),
                "window_start": window[0], "window_end": window[1], **{k: str(v) for k, v in fields.items()}}
        return self.client.post("/api/v1/campaigns", headers=tenant.headers, content_type="multipart/form-data",
                                data=form)

    def campaign_status(self, campaign_id: str) -> str:
        import sqlalchemy as sa

        from core.models import Campaign

        with self.sql.connect() as conn:
            value = conn.scalar(sa.select(Campaign.status).where(Campaign.id == campaign_id))
        return str(getattr(value, "value", value or ""))


def window(opens_in_hours: float, closes_in_hours: float) -> tuple[str, str]:
    """A daily calling window relative to the current Asia/Karachi time."""
    now = datetime.now(KARACHI)
    start, end = now + timedelta(hours=opens_in_hours), now + timedelta(hours=closes_in_hours)
    return start.strftime("%H:%M"), end.strftime("%H:%M")
