"""Cheap requests must not buy expensive work: another tenant's latency while a hostile client sends
the worst uploads the API allows.

Usage: ``python bench/hostile_load.py [--seconds 60] [--warmup 15] [--attackers 2]
[--health-rate 20] [--calls-rate 5] [--db-server mysql+pymysql://root@127.0.0.1:3306]
[--redis-url redis://127.0.0.1:6379/13]``

One run:

1. creates a throw-away database ``zc_bench_<random>`` (migrated), a victim account (a large
   balance, a message, enough API keys that its calls stay within the per-key creation limit) and
   an attacker account (a message, one API key); writes two upload files of ``MAX_CSV_BYTES``
   (100 MB): ``phone,03001234567`` then only newlines (the issue's file), and a valid list of
   1,000,000 rows padded to the byte limit;
2. starts ``web`` and ``worker`` exactly as the ``Procfile`` runs them (``honcho start web worker``:
   gunicorn with ``WEB_WORKERS`` gevent workers, default 4, and ``rq worker``), with the product's
   default limits (``RATELIMIT_*``, ``MAX_CSV_*``, ``MAX_PENDING_IMPORTS``) and
   ``READY_REQUIRE_DIALER=false``;
3. measures, open loop from a pool of threads with keep-alive connections, ``GET /api/v1/health``
   (``--health-rate`` per second) and the victim's ``POST /api/v1/calls`` (``--calls-rate`` per
   second) for ``--seconds``: idle, then while ``--attackers`` connections of the attacker upload
   those files back to back, in turn to ``POST /api/v1/dnc/bulk`` and ``POST /api/v1/campaigns``,
   as fast as the limits allow: an upload right after the previous one, one second's pause after a
   refusal (each refusal is counted and printed);
4. prints p50 / p99 per endpoint and phase, the attack/idle ratios (target <= 2x), what the
   attacker's uploads got (202/201, 429 by code, ...), what the worker did with them, and the CPU
   the web workers, the RQ worker and MariaDB used per phase. Figures only, no assertions.

Use a Redis database of its own (``--redis-url``): the rate-limit and queue keys of the run are
deleted at the end.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from decimal import Decimal
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bench.api import _free_port, _wav, create_database, stop_and_drop, wait_ready  # noqa: E402

BOUNDARY = "zc-bench-hostile-3c1f"
EARLY_ANSWER_WAIT = 0.2  # seconds the client waits for an early answer before sending the body
REFUSED_PAUSE = 1.0  # seconds an attacker connection waits after a refusal (the limits allow nothing more)


# -- seeding ---------------------------------------------------------------------------------------


@dataclass
class Seeded:
    victim_keys: list[str]
    victim_audio: str
    attacker_key: str
    attacker_audio: str
    key_prefixes: list[str] = field(default_factory=list)


def seed(env: dict[str, str], victim_keys: int) -> Seeded:
    """The two accounts, made through the product's own code (the audio through the API)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        from api import create_app
        from api.resources.api_keys import create_key
        from core.credentials import LOOKUP_PREFIX_LEN
        from core.settings import load_settings
        from services.accounts import create_account

        settings = load_settings()
        app = create_app(replace(settings, ratelimit_enabled=False))
        client = app.test_client()

        def account(name: str, email: str, balance: str) -> tuple[str, str, str]:
            with app.extensions["zenscall"].sessions() as session:
                created = create_account(session, settings, name=name, email=email, password="S3cret!bench",
                                         balance=Decimal(balance))
            response = client.post("/api/v1/audio", headers={"Authorization": f"Bearer {created.api_key}"},
                                   data={"file": (io.BytesIO(_wav()), "m.wav"), "name": name},
                                   content_type="multipart/form-data")
            assert response.status_code == 201, response.get_data(as_text=True)
            return created.account.id, created.api_key, response.get_json()["id"]

        victim_id, victim_key, victim_audio = account("Victim Co", "victim@example.pk", "100000000")
        _, attacker_key, attacker_audio = account("Attacker Co", "attacker@example.pk", "1000")
        keys = [victim_key]
        with app.extensions["zenscall"].sessions() as session:
            for n in range(victim_keys - 1):
                _, key = create_key(session, victim_id, f"bench {n}")
                keys.append(key)
            session.commit()
        app.extensions["zenscall"].engine.dispose()
        prefixes = [k[:LOOKUP_PREFIX_LEN] for k in [*keys, attacker_key]]
        return Seeded(keys, victim_audio, attacker_key, attacker_audio, prefixes)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def write_uploads(folder: Path, max_bytes: int, max_rows: int) -> dict[str, Path]:
    """The issue's blank-line file and a valid list padded to the byte limit, both ``max_bytes``."""
    blank = folder / "blank-lines.csv"
    head = b"phone\n03001234567\n"
    with blank.open("wb") as out:
        out.write(head)
        remaining = max_bytes - len(head)
        block = b"\n" * (1024 * 1024)
        while remaining > 0:
            out.write(block[:remaining])
            remaining -= min(len(block), remaining)
    full = folder / "max-rows.csv"
    header = b"phone,note\n"
    pad = max(0, (max_bytes - len(header)) // max_rows - len(b"03001234567,\n"))
    with full.open("wb") as out:
        out.write(header)
        filler = b"x" * pad
        for start in range(0, max_rows, 10_000):  # distinct valid mobile numbers: 0300 1000000 ...
            out.write(b"".join(b"0300%07d,%s\n" % (1_000_000 + i, filler)
                               for i in range(start, min(max_rows, start + 10_000))))
    return {"blank": blank, "max": full}


# -- processes -----------------------------------------------------------------------------------


def start_procfile(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """``honcho start web worker`` on the repository's Procfile."""
    honcho = shutil.which("honcho", path=str(Path(sys.executable).parent)) or "honcho"
    log = log_path.open("wb")
    proc = subprocess.Popen([honcho, "-d", str(ROOT), "-f", str(ROOT / "Procfile"), "start", "web", "worker"],
                            cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return wait_ready(proc, port, log_path, 90)


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime, stime, and cutime, cstime: the children it has reaped (RQ's work horses, gunicorn workers)
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            out.append(child)
            todo.append(child)
    return out


def cpu_by_role(honcho_pid: int) -> dict[str, float]:
    """CPU seconds so far of the gunicorn workers, the RQ worker (with its job children) and MariaDB."""
    roles: Counter[str] = Counter()
    for pid in _descendants(honcho_pid):
        command = _cmdline(pid)
        if "gunicorn" in command:
            roles["web"] += _cpu_seconds(pid)
        elif "rq" in command and "worker" in command:
            roles["rq worker"] += _cpu_seconds(pid)
    mariadb = subprocess.run(["pgrep", "-x", "mariadbd"], capture_output=True, text=True).stdout.split()
    roles["mariadb"] = sum(_cpu_seconds(int(pid)) for pid in mariadb)
    return dict(roles)


# -- the victim's probes ---------------------------------------------------------------------------


@dataclass
class Sample:
    endpoint: str
    ms: float
    status: int


class Prober:
    """Open loop: requests start on schedule from a thread pool, whatever the previous ones do."""

    def __init__(self, port: int, seeded: Seeded) -> None:
        self.port = port
        self.seeded = seeded
        self.local = threading.local()
        self.key_no = 0
        self.lock = threading.Lock()

    def _conn(self) -> HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = HTTPConnection("127.0.0.1", self.port, timeout=60)
        return conn

    def _request(self, endpoint: str) -> Sample:
        if endpoint == "health":
            method, path, body, headers = "GET", "/api/v1/health", None, {}
        else:
            with self.lock:
                key = self.seeded.victim_keys[self.key_no % len(self.seeded.victim_keys)]
                self.key_no += 1
            number = "0300" + "".join(random.choices("0123456789", k=7))
            body = json.dumps({"phone_number": number, "audio_id": self.seeded.victim_audio})
            method, path = "POST", "/api/v1/calls"
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        for _ in range(2):  # a keep-alive connection the server closed meanwhile: one fresh retry
            conn = self._conn()
            started = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                return Sample(endpoint, (time.perf_counter() - started) * 1000, response.status)
            except (ConnectionError, OSError):
                conn.close()
                self.local.conn = None
        return Sample(endpoint, (time.perf_counter() - started) * 1000, 0)

    def run(self, seconds: float, rates: dict[str, float]) -> list[Sample]:
        schedule = sorted((i / rate, endpoint) for endpoint, rate in rates.items() if rate > 0
                          for i in range(int(seconds * rate)))
        samples: list[Sample] = []
        with ThreadPoolExecutor(max_workers=32) as pool:
            futures = []
            start = time.perf_counter()
            for at, endpoint in schedule:
                delay = start + at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(self._request, endpoint))
            samples = [f.result() for f in futures]
        return samples


# -- the attacker ----------------------------------------------------------------------------------


def _multipart_head(fields: dict[str, str], filename: str) -> bytes:
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n".encode())
    out.write(f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"csv_file\"; filename=\"{filename}\"\r\n"
              f"Content-Type: text/csv\r\n\r\n".encode())
    return out.getvalue()


def _read_answer(sock: socket.socket, reply: bytes = b"") -> str:
    while b"\r\n\r\n" not in reply:
        chunk = sock.recv(65536)
        if not chunk:
            return "closed without an answer"
        reply += chunk
    headers, _, body = reply.partition(b"\r\n\r\n")
    size = next((int(line.split(b":", 1)[1]) for line in headers.split(b"\r\n")
                 if line.lower().startswith(b"content-length:")), 0)
    while len(body) < size:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    status = headers.split(b" ", 2)[1].decode(errors="replace")
    try:
        code = json.loads(body.decode())["error"]["code"]
    except Exception:  # noqa: BLE001 - a success body
        code = ""
    return f"{status} {code}".strip()


def upload(port: int, path: str, key: str, fields: dict[str, str], file: Path) -> str:
    """One upload over a raw socket, the body straight from the file; returns what it got.

    Like curl with ``Expect: 100-continue``, the client waits a moment after the headers: a refusal
    (401, 413, 429) comes before the server reads any of the body, and the body is then not sent
    (the server closes such a connection rather than read the body)."""
    head = _multipart_head(fields, file.name)
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    length = len(head) + file.stat().st_size + len(tail)
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
               f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {length}\r\n"
               f"Connection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=300) as sock:
        sock.sendall(request + head)
        sock.settimeout(EARLY_ANSWER_WAIT)
        try:
            early = sock.recv(65536)
        except TimeoutError:
            early = b""
        sock.settimeout(300)
        if early:
            return "refused before the body: " + _read_answer(sock, early)
        try:
            with file.open("rb") as f:
                sock.sendfile(f)
            sock.sendall(tail)
        except OSError as exc:
            return f"closed while sending ({type(exc).__name__})"
        return _read_answer(sock)


KINDS = ("dnc-blank", "campaign-blank", "dnc-max", "campaign-max")


def attack(port: int, key: str, audio_id: str, files: dict[str, str], stop_at: float, results: Any,
           chosen: tuple[str, ...] = KINDS) -> None:
    """One connection's loop until ``stop_at``: the worst files, to both upload endpoints, in turn."""
    paths = {"dnc": ("/api/v1/dnc/bulk", {}), "campaign": ("/api/v1/campaigns", {"name": "x", "audio_id": audio_id})}
    kinds = [(*paths[kind.split("-")[0]], kind.split("-")[1]) for kind in chosen]
    n = random.randrange(len(kinds))
    got: Counter[str] = Counter()
    while time.time() < stop_at:
        path, fields, kind = kinds[n % len(kinds)]
        n += 1
        try:
            outcome = upload(port, path, key, fields, Path(files[kind]))
        except OSError as exc:
            outcome = f"socket error {type(exc).__name__}"
        got[f"{path} {kind}: {outcome}"] += 1
        if not outcome.startswith("20"):
            time.sleep(REFUSED_PAUSE)
    results.put(dict(got))


# -- the run ---------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summarize(samples: list[Sample]) -> dict[str, dict[str, float]]:
    out = {}
    for endpoint in ("health", "calls"):
        mine = [s for s in samples if s.endpoint == endpoint]
        ok = [s.ms for s in mine if 200 <= s.status < 300]
        out[endpoint] = {"n": len(mine), "ok": len(ok), "p50": percentile(ok, 0.50), "p99": percentile(ok, 0.99),
                         "max": max(ok) if ok else float("nan"),
                         "statuses": dict(Counter(s.status for s in mine))}
    return out


def import_outcomes(url: str) -> dict[str, int]:
    """Imports by kind, status and error (a build without do-not-call imports has campaigns only)."""
    engine = sa.create_engine(url)
    queries = {
        "campaign": "SELECT status, COALESCE(SUBSTRING_INDEX(import_error, ':', 1), ''), COUNT(*) FROM campaigns "
                    "GROUP BY status, SUBSTRING_INDEX(import_error, ':', 1)",
        "dnc list": "SELECT status, COALESCE(error_code, ''), COUNT(*) FROM dnc_imports GROUP BY status, error_code",
    }
    out = {}
    with engine.connect() as conn:
        for kind, query in queries.items():
            try:
                rows = conn.exec_driver_sql(query).all()
            except sa.exc.ProgrammingError:
                conn.rollback()
                continue
            out.update({" ".join(x for x in (kind, str(status), str(error)) if x): int(n) for status, error, n in rows})
    engine.dispose()
    return out


def cleanup_redis(redis_url: str, prefixes: list[str]) -> None:
    client = redis.Redis.from_url(redis_url)
    patterns = ["rq:*", *(f"zc-rl*{p}*" for p in prefixes)]
    for pattern in patterns:
        keys = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])
    client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds of attack before measuring")
    parser.add_argument("--attackers", type=int, default=2, help="attacker connections uploading at once")
    parser.add_argument("--health-rate", type=float, default=20.0)
    parser.add_argument("--calls-rate", type=float, default=5.0)
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"the attacker's uploads, in turn (default: all of {', '.join(KINDS)})")
    parser.add_argument("--db-server", default=os.environ.get("ZC_BENCH_DB_SERVER",
                                                              "mysql+pymysql://root@127.0.0.1:3306"))
    parser.add_argument("--redis-url", default=os.environ.get("ZC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
    args = parser.parse_args(argv)

    from core.settings import load_settings

    tmp = Path(tempfile.mkdtemp(prefix="zc-bench-hostile-"))
    os.environ.setdefault("VAR_DIR", str(tmp / "defaults"))
    defaults = load_settings()
    db_name, url, server = create_database(args.db_server)
    proc: subprocess.Popen[bytes] | None = None
    seeded: Seeded | None = None
    try:
        port = _free_port()
        env = {"DATABASE_URL": url, "REDIS_URL": args.redis_url, "VAR_DIR": str(tmp / "var"), "PORT": str(port),
               "BIND": "127.0.0.1", "READY_REQUIRE_DIALER": "false", "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prom"),
               "ZC_ENV": "development"}
        # a call a minute per key at most 10 (RATELIMIT_CREATE): keys enough for --calls-rate at half of that
        victim_keys = max(1, math.ceil(args.calls_rate * 60 / 5))
        seeded = seed(env, victim_keys)
        files = write_uploads(tmp, defaults.max_csv_bytes, defaults.max_csv_rows)
        proc = start_procfile(env, port, tmp / "procfile.log")
        prober = Prober(port, seeded)
        rates = {"health": args.health_rate, "calls": args.calls_rate}
        prober.run(3, rates)  # warm-up

        cpu0 = cpu_by_role(proc.pid)
        idle = summarize(prober.run(args.seconds, rates))
        cpu1 = cpu_by_role(proc.pid)

        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        stop_at = time.time() + args.warmup + args.seconds
        attackers = [ctx.Process(target=attack, args=(port, seeded.attacker_key, seeded.attacker_audio,
                                                      {k: str(v) for k, v in files.items()}, stop_at, results,
                                                      tuple(args.kinds.split(","))))
                     for _ in range(args.attackers)]
        for attacker in attackers:
            attacker.start()
        time.sleep(args.warmup)
        cpu2 = cpu_by_role(proc.pid)
        attacked = summarize(prober.run(args.seconds, rates))
        cpu3 = cpu_by_role(proc.pid)
        uploads: Counter[str] = Counter()
        for _ in attackers:
            uploads.update(results.get(timeout=600))
        for attacker in attackers:
            attacker.join(timeout=60)
        report(args, defaults, idle, attacked, uploads, import_outcomes(url),
               {role: cpu1.get(role, 0) - cpu0.get(role, 0) for role in cpu1},
               {role: cpu3.get(role, 0) - cpu2.get(role, 0) for role in cpu3})
        return 0
    finally:
        stop_and_drop(proc, server, db_name)
        if seeded is not None:
            cleanup_redis(args.redis_url, seeded.key_prefixes)
        shutil.rmtree(tmp, ignore_errors=True)


def report(args: argparse.Namespace, defaults: Any, idle: dict[str, Any], attacked: dict[str, Any],
           uploads: Counter[str], imports: dict[str, int], cpu_idle: dict[str, float],
           cpu_attack: dict[str, float]) -> None:
    workers = os.environ.get("WEB_WORKERS", "4")
    print(f"\nZensCall under hostile uploads: Procfile web (gunicorn gevent x{workers}) + worker, MariaDB + Redis "
          f"on loopback, {args.seconds:g} s per phase, attack warm-up {args.warmup:g} s")
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")
    limits = ("max_csv_bytes", "max_csv_rows", "max_csv_lines", "ratelimit_create", "ratelimit_upload",
              "max_pending_imports")  # a build without some of them prints "-"
    print("limits: " + " ".join(f"{name.upper()}={getattr(defaults, name, '-')!r}" for name in limits))
    print(f"victim: GET /api/v1/health at {args.health_rate:g}/s, POST /api/v1/calls at {args.calls_rate:g}/s "
          f"(open loop); attacker: {args.attackers} connections uploading 100 MB files back to back ({args.kinds})")
    print(f"{'endpoint':22} {'phase':7} {'n':>6} {'2xx':>6} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}  statuses")
    for endpoint, label in (("health", "GET /api/v1/health"), ("calls", "POST /api/v1/calls")):
        for phase, data in (("idle", idle), ("attack", attacked)):
            d = data[endpoint]
            print(f"{label:22} {phase:7} {d['n']:6d} {d['ok']:6d} {d['p50']:9.1f} {d['p99']:9.1f} {d['max']:9.1f}  "
                  f"{d['statuses']}")
    for endpoint, label in (("health", "GET /api/v1/health"), ("calls", "POST /api/v1/calls")):
        p50 = attacked[endpoint]["p50"] / idle[endpoint]["p50"]
        p99 = attacked[endpoint]["p99"] / idle[endpoint]["p99"]
        print(f"ratio attack/idle {label}: p50 x{p50:.2f}, p99 x{p99:.2f} (target <= 2x)")
    print("attacker's uploads (endpoint, file: status code):")
    for outcome, count in sorted(uploads.items()):
        print(f"  {count:5d}  {outcome}")
    print("imports in SQL at the end (kind, status, error):")
    for outcome, count in sorted(imports.items()):
        print(f"  {count:5d}  {outcome}")
    print("CPU seconds used during each measured phase (mariadb: the whole server, shared with other users):")
    for role in sorted(set(cpu_idle) | set(cpu_attack)):
        print(f"  {role:10} idle {cpu_idle.get(role, 0):7.1f}   attack {cpu_attack.get(role, 0):7.1f}")


if __name__ == "__main__":
    sys.exit(main())
