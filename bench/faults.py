"""Faults injected into a running campaign, on private MariaDB and Redis servers.

Usage: ``python bench/faults.py [--quick] [--only dialer_kill9,esl_drop,...] [--keep-logs]``

Everything runs on services of its own, started here and stopped at the end (also on errors and
Ctrl-C): a MariaDB server (``mariadb-install-db`` into a temporary datadir, ``mariadbd`` on a free
port of 127.0.0.1, root without a password), a ``redis-server`` on a free port with no persistence,
the FreeSWITCH simulator, an ``rq worker`` and ``python -m dialer`` subprocesses, and the API
in-process (Flask test client). The machine's own MariaDB and Redis are never touched.

For each fault a fresh account runs a campaign created through the API (CSV import by the RQ
worker) of numbers whose last digits 0-9 choose the simulator's outcome (answered, busy, no
answer, rejected...), ``max_retries`` 1 and a one-second retry delay (set in SQL), and the fault is
injected once about a quarter of its calls are final:

* ``dialer_kill9``: the dialer is killed -9, a new one started;
* ``esl_drop``: the simulator drops every ESL connection (``api sim_drop_all``);
* ``sim_restart``: the simulator is killed and started again on the same port (channels lost);
* ``redis_restart``: the private Redis is killed and started again empty (queues, leases gone);
* ``mariadb_restart``: the private MariaDB is killed -9 and started again on the same datadir;
* ``worker_kill9``: the RQ worker is killed -9 in the middle of importing a 200,000-row CSV (most
  rows on the account's do-not-call list, so the import does the full work but only a few hundred
  calls are dialed); a new worker is started, the dialer's housekeeping enqueues the import again.

Then, once the campaign completes (or the deadline passes): every call in a final state; each
call's attempts numbered 1..n <= max_retries + 1, all ended, the next one reserved only after the
previous one was settled (ledger order), none after an answer; the simulator's own call log never
shows one number on two channels at once nor one attempt originated twice; the account's balance
equals the sum of its ledger and nothing stays reserved; the campaign is COMPLETED.
"""

from __future__ import annotations

import argparse
import atexit
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
import tempfile
import time
import traceback
import wave
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from simulator import control  # noqa: E402

SIM_PASSWORD = "ClueCon"
TIME_SCALE = 20.0
TZ = ZoneInfo("Asia/Karachi")
FAULTS = ["dialer_kill9", "esl_drop", "sim_restart", "redis_restart", "mariadb_restart", "worker_kill9"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll ``probe`` (exceptions count as "not yet") until truthy; raise at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - a service may be down on purpose
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} (after {timeout:.0f}s; last: {last!r})")


# --------------------------------------------------------------------------- processes


class Proc:
    """A subprocess in its own process group: kill -9 takes its children with it."""

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

    def kill9(self) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.kill9()
        self._log.close()

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def stop_all() -> None:
    for proc in reversed(Proc.registry):
        try:
            proc.stop(timeout=5)
        except Exception:  # noqa: BLE001 - keep stopping the others
            pass
    Proc.registry.clear()


class MariaDB:
    def __init__(self, tmp: Path) -> None:
        self.datadir = tmp / "mariadb"
        self.sock = tmp / "mariadb.sock"
        self.log = tmp / "mariadb.log"
        self.port = free_port()
        self.proc: Proc | None = None
        install = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
        subprocess.run([install, "--no-defaults", "--user=root", f"--datadir={self.datadir}",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        self.start()

    @property
    def server_url(self) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}"

    def start(self) -> None:
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        self.proc = Proc("mariadb", [
            mariadbd, "--no-defaults", "--user=root", f"--datadir={self.datadir}", f"--port={self.port}",
            "--bind-address=127.0.0.1", f"--socket={self.sock}", "--skip-grant-tables", "--skip-name-resolve",
            "--skip-log-bin", "--innodb-buffer-pool-size=256M", "--innodb-flush-log-at-trx-commit=2",
            "--max-connections=500", f"--pid-file={self.datadir / 'mariadb.pid'}",
            f"--log-error={self.log}"], self.log)
        wait("MariaDB to answer", self.ping, 60)

    def ping(self) -> bool:
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=1)
        conn.close()
        return True

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill9()
        self.proc.stop()


class Redis:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.log = tmp / "redis.log"
        self.dir = tmp
        self.proc: Proc | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = Proc("redis", [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", str(self.dir)], self.log)
        import redis

        wait("Redis to answer", lambda: redis.Redis.from_url(self.url, socket_connect_timeout=1).ping(), 20)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill9()
        self.proc.stop()


class Simulator:
    def __init__(self, tmp: Path, name: str) -> None:
        self.tmp = tmp
        self.call_log = tmp / f"sim-calls-{name}.jsonl"
        self.log = tmp / f"sim-{name}.log"
        self.port = 0
        self.proc: Proc | None = None
        self.start()

    def start(self) -> None:
        deadline = time.monotonic() + 20
        while True:
            self.proc = Proc("simulator", [
                sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", str(self.port),
                "--password", SIM_PASSWORD, "--time-scale", str(TIME_SCALE), "--heartbeat", "0",
                "--call-log", str(self.call_log)], self.log, stdout_pipe=True)
            stdout = self.proc.proc.stdout
            assert stdout is not None
            ready, _, _ = select.select([stdout], [], [], 15)
            line = stdout.readline() if ready else ""
            if line.startswith("LISTENING 127.0.0.1:"):
                self.port = int(line.strip().rsplit(":", 1)[1])
                return
            self.proc.stop()
            if time.monotonic() > deadline:
                raise RuntimeError(f"simulator did not start on port {self.port}: {line!r}")
            time.sleep(0.3)  # the old port may not be free yet

    def api(self, command: str) -> str:
        return control.esl_api(self.port, command, password=SIM_PASSWORD, timeout=10)

    def restart(self) -> None:
        assert self.proc is not None
        self.proc.kill9()
        self.proc.stop()
        self.start()

    def rows(self) -> list[dict[str, Any]]:
        if not self.call_log.exists():
            return []
        return [json.loads(line) for line in self.call_log.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- the stack


@dataclass
class Result:
    fault: str
    calls: int = 0
    final: int = 0
    duplicates: int = 0
    ledger_ok: bool = False
    completed: bool = False
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (not self.problems and self.completed and self.ledger_ok and self.duplicates == 0
                and self.final == self.calls > 0)


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.db = MariaDB(tmp)
        self.redis = Redis(tmp)
        import sqlalchemy as sa

        with sa.create_engine(self.db.server_url, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.exec_driver_sql("CREATE DATABASE zenscall CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        self.url = f"{self.db.server_url}/zenscall?charset=utf8mb4"
        from alembic import command

        from api.cli import alembic_config

        command.upgrade(alembic_config(self.url), "head")
        self.sql = sa.create_engine(self.url, pool_pre_ping=True, pool_size=4)
        (tmp / "audio").mkdir(exist_ok=True)
        self.env = {**os.environ, "DATABASE_URL": self.url, "REDIS_URL": self.redis.url, "VAR_DIR": str(tmp),
                    "AUDIO_DIR": str(tmp / "audio"), "FS_AUDIO_DIR": str(tmp / "audio"), "LOG_LEVEL": "INFO"}
        os.environ.update({k: self.env[k] for k in ("DATABASE_URL", "REDIS_URL", "VAR_DIR", "AUDIO_DIR",
                                                     "FS_AUDIO_DIR")})
        from api import create_app
        from core.settings import load_settings

        self.settings = load_settings()
        self.app = create_app(replace(self.settings, ratelimit_enabled=False))
        self.app.config["TESTING"] = True
        self.client = self.app.test_client()
        self.worker: Proc | None = None
        self.workers = 0
        self.start_worker()

    # processes
    def start_worker(self) -> Proc:
        self.workers += 1
        self.worker = Proc("worker", [sys.executable, "-m", "rq.cli", "worker", "--worker-class",
                                      "rq.worker.SimpleWorker", "--url", self.redis.url, "default"],
                           self.tmp / f"worker-{self.workers}.log", env=self.env)
        return self.worker

    def ensure_worker(self) -> None:
        if self.worker is None or not self.worker.alive():
            self.start_worker()

    def start_dialer(self, sim: Simulator, node: str) -> Proc:
        env = {**self.env, "FS_HOST": "127.0.0.1", "FS_PORT": str(sim.port), "FS_PASSWORD": SIM_PASSWORD,
               "FS_ORIGINATE_TIMEOUT": "4", "FS_COMMAND_TIMEOUT": "3", "DIALER_SWEEP_SECONDS": "0.3",
               "DIALER_NODE": node, "DIALER_QUEUE": f"dialer-{node}", "GATEWAY_CPS": "500",
               "CAP_LEASE_SECONDS": "20", "NODE_MAX_CHANNELS": "100",
               "IMPORT_STALL_SECONDS": str(self.args.import_stall)}
        dialer = Proc("dialer", [sys.executable, "-m", "dialer"], self.tmp / f"dialer-{node}.log", env=env)
        import redis

        rds = redis.Redis.from_url(self.redis.url, socket_connect_timeout=1, socket_timeout=2)

        def ready() -> bool:
            if not dialer.alive():
                raise RuntimeError(f"dialer exited: {dialer.tail()}")
            raw = rds.get(f"zc:dialer:{node}:{dialer.pid}")
            return bool(raw and json.loads(raw)["esl_connected"])

        wait(f"dialer {node} to connect", ready, 30)
        return dialer

    # accounts, audio, campaigns
    def tenant(self) -> tuple[str, dict[str, str]]:
        from sqlalchemy.orm import Session

        from services.accounts import create_account

        with Session(self.sql) as session:
            created = create_account(session, self.settings, name="Faults Co",
                                     email=f"faults-{secrets.token_hex(5)}@example.pk", password="S3cret!pass",
                                     balance=Decimal("100000"))
            session.commit()
            return created.account.id, {"Authorization": f"Bearer {created.api_key}"}

    def audio(self, headers: dict[str, str], seconds: int) -> str:
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\x10\x00\xf0\xff" * 4000 * seconds)
        response = self.client.post("/api/v1/audio", headers=headers, content_type="multipart/form-data",
                                    data={"file": (io.BytesIO(buf.getvalue()), "m.wav"), "name": "message"})
        assert response.status_code == 201, response.get_json()
        return str(response.get_json()["id"])

    def create_campaign(self, headers: dict[str, str], audio_id: str, phones: list[str]) -> str:
        now = datetime.now(TZ)
        closed = ((now + timedelta(hours=2)).strftime("%H:%M"), (now + timedelta(hours=4)).strftime("%H:%M"))
        data = ("phone\n" + "\n".join(phones) + "\n").encode()
        response = self.client.post("/api/v1/campaigns", headers=headers, content_type="multipart/form-data", data={
            "name": "faults", "audio_id": audio_id, "csv_file": (io.BytesIO(data), "numbers.csv"),
            "max_retries": "1", "concurrent_limit": str(self.args.concurrency),
            "window_start": closed[0], "window_end": closed[1]})
        assert response.status_code == 201, response.get_json()
        return str(response.get_json()["id"])

    def campaign_status(self, campaign_id: str) -> str:
        import sqlalchemy as sa

        from core.models import Campaign

        with self.sql.connect() as conn:
            return str(getattr(conn.scalar(sa.select(Campaign.status).where(Campaign.id == campaign_id)), "value", ""))

    def open_campaign(self, campaign_id: str) -> None:
        """A one-second retry delay and a calling window around now: dialing starts."""
        import sqlalchemy as sa

        from core.models import Call, Campaign

        now = datetime.now(TZ)
        start, end = (now - timedelta(hours=2)).strftime("%H:%M"), (now + timedelta(hours=4)).strftime("%H:%M")
        with self.sql.begin() as conn:
            conn.execute(sa.update(Call).where(Call.campaign_id == campaign_id).values(retry_delay_seconds=1))
            conn.execute(sa.update(Campaign).where(Campaign.id == campaign_id)
                         .values(retry_delay_seconds=1, window_start=start, window_end=end))

    def counts(self, campaign_id: str) -> tuple[int, int]:
        """(calls, final calls) of a campaign."""
        import sqlalchemy as sa

        from core.call_states import CallStatus
        from core.models import Call

        final = [s.value for s in CallStatus if s.is_final]
        with self.sql.connect() as conn:
            total, done = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((Call.status.in_(final), 1),
                                                                                else_=0)), 0))
                .where(Call.campaign_id == campaign_id)).one()
        return int(total), int(done)

    # checks
    def verify(self, result: Result, account_id: str, campaign_id: str, sim: Simulator) -> None:
        import sqlalchemy as sa
        from sqlalchemy.orm import Session

        from billing import ledger
        from core.models import Account, Call, CallAttempt, LedgerEntry
        from core.states import LedgerKind

        result.calls, result.final = self.counts(campaign_id)
        result.completed = self.campaign_status(campaign_id) == "COMPLETED"
        with self.sql.connect() as conn:
            attempts = conn.execute(
                sa.select(CallAttempt.id, CallAttempt.call_id, CallAttempt.attempt_no, CallAttempt.ended_at,
                          CallAttempt.answered_at, Call.max_retries, Call.attempts_count)
                .join(Call, Call.id == CallAttempt.call_id).where(Call.campaign_id == campaign_id)).all()
            entries = conn.execute(
                sa.select(LedgerEntry.id, LedgerEntry.attempt_id, LedgerEntry.kind)
                .join(Call, Call.id == LedgerEntry.call_id).where(Call.campaign_id == campaign_id)).all()
            account = conn.execute(sa.select(Account.balance, Account.reserved).where(Account.id == account_id)).one()
        reserve_of: dict[str, int] = {}
        settled_of: dict[str, int] = {}
        for entry_id, attempt_id, kind in entries:
            if LedgerKind(kind) is LedgerKind.RESERVE:
                reserve_of[attempt_id] = min(entry_id, reserve_of.get(attempt_id, entry_id))
            elif attempt_id is not None:
                settled_of[attempt_id] = max(entry_id, settled_of.get(attempt_id, 0))
        by_call: dict[str, list[Any]] = defaultdict(list)
        for row in attempts:
            by_call[row.call_id].append(row)
        duplicates = 0
        for call_id, rows in by_call.items():
            rows.sort(key=lambda r: r.attempt_no)
            if [r.attempt_no for r in rows] != list(range(1, len(rows) + 1)) or len(rows) != rows[0].attempts_count:
                result.problems.append(f"call {call_id}: attempts {[r.attempt_no for r in rows]}")
            if len(rows) > rows[0].max_retries + 1:
                result.problems.append(f"call {call_id}: {len(rows)} attempts")
            for r in rows:
                if r.ended_at is None:
                    result.problems.append(f"attempt {r.id} never ended")
            for prev, nxt in zip(rows, rows[1:], strict=False):
                if prev.answered_at is not None:
                    duplicates += 1  # dialed again after an answer
                if not (settled_of.get(prev.id, 10**18) < reserve_of.get(nxt.id, -1)):
                    duplicates += 1  # the next attempt was claimed before the previous one was settled
        # the switch's view: one number never on two channels at once, one attempt originated once
        spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
        seen: dict[str, int] = defaultdict(int)
        for row in sim.rows():
            spans[row["number"]].append((row["start"], row["end"] or row["start"]))
            seen[row["uuid"]] += 1
        for number_spans in spans.values():
            number_spans.sort()
            duplicates += sum(1 for (_, end), (start, _) in zip(number_spans, number_spans[1:], strict=False)
                              if end > start)
        duplicates += sum(n - 1 for n in seen.values() if n > 1)
        result.duplicates = duplicates
        with Session(self.sql) as session:
            totals = ledger.ledger_totals(session, account_id)
        result.ledger_ok = (Decimal(account.balance) == totals.balance and Decimal(account.reserved) == 0
                            == totals.reserved and Decimal(account.balance) >= 0)
        if not result.ledger_ok:
            result.problems.append(f"ledger: balance {account.balance} / {totals.balance}, reserved "
                                   f"{account.reserved} / {totals.reserved}")

    # one fault
    def run_fault(self, fault: str) -> Result:
        result = Result(fault)
        node = f"faults-{fault.replace('_', '-')}"
        sim = Simulator(self.tmp, fault)
        dialer: Proc | None = None
        try:
            self.ensure_worker()
            dialer = self.start_dialer(sim, node)
            account_id, headers = self.tenant()
            audio_id = self.audio(headers, seconds=self.args.message_seconds)
            n = self.args.numbers
            prefix = f"0345{secrets.randbelow(1000):03d}"
            phones = [f"{prefix}{i // 10:03d}{i % 10}" for i in range(n)]
            if fault == "worker_kill9":
                campaign_id = self.killed_import(account_id, headers, audio_id, phones)
            else:
                campaign_id = self.create_campaign(headers, audio_id, phones)
                wait("the import", lambda: self.campaign_status(campaign_id) == "RUNNING", 60)
            self.open_campaign(campaign_id)
            started = time.monotonic()
            if fault != "worker_kill9":
                wait("a quarter of the calls to end", lambda: self.counts(campaign_id)[1] >= n // 4, 120, 0.05)
                dialer = self.inject(fault, sim, dialer, node)
            try:
                wait("the campaign to complete", lambda: self.campaign_status(campaign_id) == "COMPLETED",
                     self.args.complete_timeout, 0.5)
            except TimeoutError as exc:
                result.problems.append(str(exc))
            result.seconds = time.monotonic() - started
            wait("the switch to have no channel left", lambda: json.loads(sim.api("sim_stats"))["current"] == 0, 30)
            if dialer is not None and not dialer.alive():
                result.problems.append("the dialer died")
            self.verify(result, account_id, campaign_id, sim)
        except Exception as exc:  # noqa: BLE001 - one fault's failure is reported, the others still run
            result.problems.append(f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
        finally:
            if dialer is not None:
                dialer.stop()
            if sim.proc is not None:
                sim.proc.stop()
        if result.problems:
            print(f"  {fault}: " + "; ".join(result.problems[:5]), file=sys.stderr)
            if dialer is not None and self.args.verbose:
                print(dialer.tail(4000), file=sys.stderr)
        return result

    def inject(self, fault: str, sim: Simulator, dialer: Proc, node: str) -> Proc:
        print(f"  {fault}: injecting", file=sys.stderr)
        if fault == "dialer_kill9":
            dialer.kill9()
            dialer.stop()
            return self.start_dialer(sim, node)
        if fault == "esl_drop":
            assert sim.api("sim_drop_all").startswith("+OK")
        elif fault == "sim_restart":
            sim.restart()
        elif fault == "redis_restart":
            self.redis.kill9()
            time.sleep(1.0)
            self.redis.start()
            self.ensure_worker()
        elif fault == "mariadb_restart":
            self.db.kill9()
            time.sleep(2.0)  # calls end while SQL is away: their hangup events cannot be written
            self.db.start()
            self.ensure_worker()
        return dialer

    def killed_import(self, account_id: str, headers: dict[str, str], audio_id: str, phones: list[str]) -> str:
        """A CSV of ``--csv-rows`` rows: the campaign's numbers spread among numbers on the account's
        do-not-call list. The worker is killed -9 half-way through the import, a new one started."""
        import sqlalchemy as sa

        from core.db import utcnow
        from core.models import CampaignRejectedRow, DncNumber
        from core.phone import normalize_pk

        rows = self.args.csv_rows
        blocked = [f"0311{i:07d}" for i in range(rows - len(phones))]
        now = utcnow()
        with self.sql.begin() as conn:
            for i in range(0, len(blocked), 20000):
                conn.execute(sa.insert(DncNumber.__table__), [
                    {"account_id": account_id, "phone_number": normalize_pk(p), "created_at": now}
                    for p in blocked[i:i + 20000]])
        step = max(1, len(blocked) // max(1, len(phones)))
        mixed: list[str] = []
        it = iter(phones)
        for i, p in enumerate(blocked):
            mixed.append(p)
            if i % step == 0:
                mixed.append(next(it, ""))
        mixed += list(it)
        mixed = [p for p in mixed if p]
        campaign_id = self.create_campaign(headers, audio_id, mixed)

        def rejected() -> int:
            with self.sql.connect() as conn:
                return int(conn.scalar(sa.select(sa.func.count())
                                       .where(CampaignRejectedRow.campaign_id == campaign_id)) or 0)

        wait("the import to be half-way", lambda: 0 < rejected() < len(blocked) // 2, 120, 0.02)
        assert self.worker is not None
        print(f"  worker_kill9: killing the worker at {rejected()} of {len(blocked)} rejected rows", file=sys.stderr)
        self.worker.kill9()
        self.worker.stop()
        if self.campaign_status(campaign_id) != "IMPORTING":
            raise RuntimeError("the import finished before the worker was killed")
        self.start_worker()
        wait("the import to be run again", lambda: self.campaign_status(campaign_id) == "RUNNING",
             self.args.import_stall + 120, 0.3)
        from core.models import Campaign

        with self.sql.connect() as conn:
            accepted, dnc = conn.execute(sa.select(Campaign.rows_accepted, Campaign.rows_dnc)
                                         .where(Campaign.id == campaign_id)).one()
        if (accepted, dnc) != (len(phones), len(blocked)):
            raise RuntimeError(f"import counts {accepted}/{dnc}, expected {len(phones)}/{len(blocked)}")
        return campaign_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller campaigns (about 3 minutes)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(FAULTS)}")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temporary directory")
    parser.add_argument("--verbose", action="store_true", help="print the dialer's log tail on failure")
    args = parser.parse_args()
    args.numbers = 200 if args.quick else 400
    args.csv_rows = 100_000 if args.quick else 200_000
    args.concurrency = 40
    args.message_seconds = 20  # 1 s of real time at the simulator's time scale
    args.import_stall = 5
    args.complete_timeout = 100 if args.quick else 150
    faults = [f for f in args.only.split(",") if f] or FAULTS
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults: {sorted(unknown)}")

    tmp = Path(tempfile.mkdtemp(prefix="zc-faults-"))
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    results: list[Result] = []
    try:
        bench = Bench(args, tmp)
        print(f"private MariaDB on 127.0.0.1:{bench.db.port}, Redis on 127.0.0.1:{bench.redis.port}, "
              f"logs in {tmp}", file=sys.stderr)
        for fault in faults:
            print(f"fault {fault}...", file=sys.stderr)
            results.append(bench.run_fault(fault))
    finally:
        stop_all()
        if not args.keep_logs and all(r.passed for r in results) and len(results) == len(faults):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs kept in {tmp}", file=sys.stderr)

    header = ("fault", "calls", "final", "duplicates dialed", "ledger ok", "completed", "seconds", "result")
    rows = [(r.fault, str(r.calls), str(r.final), str(r.duplicates), "yes" if r.ledger_ok else "no",
             "yes" if r.completed else "no", f"{r.seconds:.1f}", "PASS" if r.passed else "FAIL") for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    passed = sum(r.passed for r in results)
    print(f"\n{passed}/{len(faults)} faults survived in {time.monotonic() - began:.0f}s "
          f"({'quick' if args.quick else 'full'} run, {args.numbers} numbers per campaign, "
          f"{os.cpu_count()} CPUs)")
    return 0 if passed == len(faults) else 1


if __name__ == "__main__":
    sys.exit(main())
