"""API throughput under gunicorn (gevent workers) on MariaDB and Redis, with wrk on loopback.

Usage: ``python bench/api.py [--seconds 10] [--connections 32] [--workers 2]
[--db-server mysql+pymysql://root@127.0.0.1:3306] [--redis-url redis://127.0.0.1:6379/12]
[--profile DIR]``

One run:

1. creates a throw-away database ``zc_bench_<random>``, migrates it (Alembic ``head``) and adds a
   one-table ``bench_bare`` for the baseline; an account with a large balance, its API key and a
   2-second message uploaded through the API;
2. starts ``gunicorn --workers N bench.api_wsgi:app`` (gunicorn.conf.py's gevent worker; the production app,
   ``wsgi:app``, plus ``POST /bench/bare``) with ``DATABASE_URL``, ``REDIS_URL``, ``VAR_DIR``, rate
   limits raised (``RATELIMIT_DEFAULT``, ``RATELIMIT_CREATE``) and ``READY_REQUIRE_DIALER=false``;
3. drives it with ``wrk`` (Debian package; ``bench/wrk_report.lua`` posts the bodies and prints
   the figures) for ``--seconds`` per phase after a short warm-up, in this order:
   ``POST /bench/bare`` (one INSERT through the same stack), ``POST /api/v1/calls``,
   ``GET /api/v1/calls?page=1&per_page=20`` (over the calls the POST phase created);
4. prints requests/s, p50 and p99 latency, non-2xx responses and socket errors per phase, and
   the ratios to the bare insert; then stops gunicorn, drops the database and removes its Redis keys.

``--profile DIR`` also records the POST phase of one worker with py-spy (``pip install py-spy``)
as a speedscope file in DIR. Figures are from loopback on a shared machine: compare the ratios
within one run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import redis  # noqa: E402
import soundfile as sf  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from alembic import command  # noqa: E402

from api.cli import alembic_config  # noqa: E402

LUA = ROOT / "bench" / "wrk_report.lua"
BIG_BALANCE = Decimal("100000000")
PHONE = "03001234566"


@dataclass
class Phase:
    name: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    cpu_ms_per_request: float = 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wav(seconds: float = 2.0, rate: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def create_database(server_url: str) -> tuple[str, str, sa.Engine]:
    name = f"zc_bench_{secrets.token_hex(4)}"
    server = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    url = f"{server_url}/{name}?charset=utf8mb4"
    command.upgrade(alembic_config(url), "head")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE bench_bare (id CHAR(36) PRIMARY KEY, note VARCHAR(32) NOT NULL, "
                             "created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))")
    engine.dispose()
    return name, url, server


def seed(env: dict[str, str]) -> tuple[str, str]:
    """An account with a large balance and a ready message, made through the product's own code."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        from api import create_app
        from core.settings import load_settings
        from services.accounts import create_account

        settings = load_settings()
        app = create_app(replace(settings, ratelimit_enabled=False))
        with app.extensions["zenscall"].sessions() as session:
            created = create_account(session, settings, name="Bench Co", email="bench@example.pk",
                                     password="S3cret!bench", balance=BIG_BALANCE)
        response = app.test_client().post(
            "/api/v1/audio", headers={"Authorization": f"Bearer {created.api_key}"},
            data={"file": (io.BytesIO(_wav()), "bench.wav"), "name": "bench"}, content_type="multipart/form-data")
        assert response.status_code == 201, response.get_data(as_text=True)
        app.extensions["zenscall"].engine.dispose()
        return created.api_key, response.get_json()["id"]
    finally:
        os.environ.clear()
        os.environ.update(saved)


def start_gunicorn(env: dict[str, str], port: int, workers: int, log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", str(workers),
         "--bind", f"127.0.0.1:{port}", "--worker-connections", "1000", "--timeout", "60",
         "bench.api_wsgi:app"],
        cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    return wait_ready(proc, port, log_path, 60)


def wait_ready(proc: subprocess.Popen[bytes], port: int, log_path: Path, seconds: float) -> subprocess.Popen[bytes]:
    """``proc`` once ``/api/v1/ready`` on ``port`` answers 200; RuntimeError if it exits or times out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}); see {log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/ready", timeout=2) as resp:
                if resp.status == 200:
                    return proc
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.3)
    raise RuntimeError(f"the server did not become ready; see {log_path}")


def worker_pids(master: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def workers_cpu_seconds(master: int) -> float:
    """User + system CPU of the gunicorn workers so far (from /proc)."""
    total = 0
    for pid in worker_pids(master):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def run_wrk(name: str, url: str, *, method: str, body: str, headers: dict[str, str], seconds: float,
            connections: int, threads: int) -> Phase:
    env = {**os.environ, "WRK_METHOD": method, "WRK_BODY": body, "WRK_HEADERS": json.dumps(headers)}
    args = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
            "--timeout", "10s", "-s", str(LUA), url]
    out = subprocess.run(args, capture_output=True, text=True, env=env, check=True).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no report:\n{out}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    secs = data["duration_us"] / 1e6
    return Phase(name, data["requests"], secs, data["requests"] / secs, data["p50_us"] / 1000,
                 data["p99_us"] / 1000, data["non_2xx"],
                 data["connect"] + data["read"] + data["write"] + data["timeout"])


def cleanup_redis(redis_url: str, queue: str, key_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    for pattern in (f"rq:*{queue}*", f"zc-rl*{key_prefix}*", "zc-rl*bench_bare*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])
    # RQ's job hashes are named by the dial job id, ``dial-<call id>``; they expire on their own
    # (result_ttl) once executed, but queued ones would stay: remove those of this run.
    for key in client.scan_iter(match="rq:job:dial-*", count=1000):
        if client.hget(key, "origin") == queue.encode():
            client.delete(key)
    client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each phase")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (the machine has few cores)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--db-server", default=os.environ.get("ZC_BENCH_DB_SERVER",
                                                              "mysql+pymysql://root@127.0.0.1:3306"))
    parser.add_argument("--redis-url", default=os.environ.get("ZC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"))
    parser.add_argument("--profile", type=Path, help="record the POST phase with py-spy into this directory")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="zc-bench-api-"))
    queue = f"bench-{secrets.token_hex(3)}"
    db_name, url, server = create_database(args.db_server)
    proc: subprocess.Popen[bytes] | None = None
    try:
        env = {
            "DATABASE_URL": url, "REDIS_URL": args.redis_url, "VAR_DIR": str(tmp / "var"),
            "RATELIMIT_DEFAULT": "100000000 per minute", "RATELIMIT_CREATE": "100000000 per minute",
            "READY_REQUIRE_DIALER": "false", "DIALER_QUEUE": queue, "LOG_LEVEL": "INFO",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prometheus"),
        }
        api_key, audio_id = seed(env)
        port = _free_port()
        proc = start_gunicorn(env, port, args.workers, tmp / "gunicorn.log")
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        call_body = json.dumps({"phone_number": PHONE, "audio_id": audio_id})
        phases = [
            ("bare insert (POST /bench/bare)", f"{base}/bench/bare", "POST", "{}",
             {"Content-Type": "application/json"}),
            ("POST /api/v1/calls", f"{base}/api/v1/calls", "POST", call_body, auth),
            ("GET /api/v1/calls?page=1&per_page=20", f"{base}/api/v1/calls?page=1&per_page=20", "GET", "",
             {"Authorization": auth["Authorization"]}),
        ]
        results: list[Phase] = []
        for name, target, method, body, headers in phases:
            common = dict(method=method, body=body, headers=headers, connections=args.connections,
                          threads=args.threads)
            run_wrk(name, target, seconds=args.warmup, **common)  # type: ignore[arg-type]
            spy = None
            if args.profile and method == "POST" and "calls" in target:
                args.profile.mkdir(parents=True, exist_ok=True)
                pid = worker_pids(proc.pid)[0]
                spy = subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--format", "speedscope",
                                        "--rate", "200", "--duration", str(max(1, round(args.seconds))),
                                        "--output", str(args.profile / "post_calls.speedscope.json")],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            cpu_before = workers_cpu_seconds(proc.pid)
            phase = run_wrk(name, target, seconds=args.seconds, **common)  # type: ignore[arg-type]
            phase.cpu_ms_per_request = (workers_cpu_seconds(proc.pid) - cpu_before) * 1000 / max(1, phase.requests)
            results.append(phase)
            if spy is not None:
                _, err = spy.communicate(timeout=60)
                if spy.returncode:
                    print(f"py-spy failed: {err.decode(errors='replace')[-500:]}", file=sys.stderr)
        with sa.create_engine(url).connect() as conn:
            calls = conn.exec_driver_sql("SELECT COUNT(*) FROM calls").scalar_one()
            bare_rows = conn.exec_driver_sql("SELECT COUNT(*) FROM bench_bare").scalar_one()
        report(results, args, calls, bare_rows)
        failed = [p for p in results if p.non_2xx or p.socket_errors]
        return 1 if failed else 0
    finally:
        stop_and_drop(proc, server, db_name)
        cleanup_redis(args.redis_url, queue, api_key_prefix(locals().get("api_key")))
        shutil.rmtree(tmp, ignore_errors=True)


def stop_and_drop(proc: subprocess.Popen[bytes] | None, server: sa.Engine, db_name: str) -> None:
    """Stop the server's process group, then drop the run's database."""
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    with server.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {db_name}")
    server.dispose()


def api_key_prefix(api_key: Any) -> str:
    from core.credentials import LOOKUP_PREFIX_LEN

    return str(api_key)[:LOOKUP_PREFIX_LEN] if api_key else "none"


def report(results: list[Phase], args: argparse.Namespace, calls: int, bare_rows: int) -> None:
    print(f"\nZensCall API throughput: gunicorn gevent x{args.workers}, wrk -t{args.threads} "
          f"-c{args.connections}, {args.seconds:g} s per phase, MariaDB + Redis on loopback")
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"{'phase':40} {'requests':>9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} "
          f"{'sock err':>8} {'CPU ms/req':>10}")
    for p in results:
        print(f"{p.name:40} {p.requests:9d} {p.rps:9.1f} {p.p50_ms:8.1f} {p.p99_ms:8.1f} {p.non_2xx:8d} "
              f"{p.socket_errors:8d} {p.cpu_ms_per_request:10.2f}")
    bare = results[0]
    for p in results[1:]:
        print(f"ratio {p.name}: {p.rps / bare.rps:.2f} of the bare insert's req/s, "
              f"p50 x{p.p50_ms / bare.p50_ms:.2f}")
    print("CPU ms/req: user + system CPU of the gunicorn workers per request (MariaDB, Redis and wrk excluded)")
    print(f"rows written: calls={calls} bench_bare={bare_rows} (including warm-up)")
    ok = all(not p.non_2xx and not p.socket_errors for p in results)
    print(f"every response 2xx, no socket errors: {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    sys.exit(main())
