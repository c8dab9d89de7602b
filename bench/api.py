"""API throughput under gunicorn (gevent workers) on MariaDB and Redis, with wrk on loopback.

Usage: ``python bench/api.py [--seconds 10] [--connections 32] [--workers 2] [--accounts 50]
[--open-rate 100] [--open-seconds 30] [--defaults-file deploy/mariadb/zenscall.cnf |
--db-server mysql+pymysql://root@127.0.0.1:3306] [--redis-url redis://127.0.0.1:6379/12] [--profile DIR]``

One run:

0. starts a MariaDB server of its own with the configuration ZensCall ships
   (``bench/private_mariadb.py``), unless ``--db-server`` names an existing one;
1. creates a throw-away database ``zc_bench_<random>``, migrates it (Alembic ``head``) and adds a
   one-table ``bench_bare`` for the baseline; ``--accounts`` accounts (50), each with a large
   balance, its API key and a 2-second message uploaded through the API;
2. starts ``gunicorn --workers N bench.api_wsgi:app`` (gunicorn.conf.py's gevent worker; the production app,
   ``wsgi:app``, plus ``POST /bench/bare``) with ``DATABASE_URL``, ``REDIS_URL``, ``VAR_DIR``, the
   per-key limits raised out of the way (``RATELIMIT_DEFAULT``, ``RATELIMIT_CREATE``: still counted
   in Redis on every request, never reached) and ``READY_REQUIRE_DIALER=false``;
3. drives it with ``wrk`` (Debian package; ``bench/wrk_report.lua`` picks one of the accounts' keys
   at random for every request and prints the figures) for ``--seconds`` per phase after a short
   warm-up: ``POST /bench/bare`` (one INSERT through the same stack) and ``POST /api/v1/calls``
   alternately, ``--rounds`` times (3), so that the machine's other work weighs on both alike, then
   ``GET /api/v1/calls?page=1&per_page=20`` (over the calls the POST phases created);
4. then an open-loop phase: ``bench/openloop.py`` sends ``POST /api/v1/calls`` at a fixed
   ``--open-rate`` (100/s) for ``--open-seconds``, each request timed from when it was due (so a
   server that falls behind is seen as latency, not hidden as fewer requests);
5. prints requests/s, p50 and p99 latency, non-2xx responses, socket errors and the workers' CPU
   per request of each phase, where the machine's CPU went meanwhile (the workers, MariaDB, Redis,
   the load generator and everything else), the POST / bare ratio of each round and their median,
   and PASS/FAIL against the targets (median ratio at least 0.5; p99 under 100 ms at 100
   requests/s); then stops gunicorn, drops the database and removes its Redis keys.

``--profile DIR`` also records the first POST phase of one worker with py-spy (in the venv,
``--nonblocking``) into ``DIR/post_calls.txt`` (collapsed stacks: ``flamegraph.pl`` or
speedscope.app read them); the sampler costs CPU too, so judge ratios from runs without it.
Figures are from loopback on a shared machine: compare the ratios within one run, not
absolute figures across runs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import statistics
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
from bench.private_mariadb import DEFAULT_CNF, PrivateMariaDB  # noqa: E402

LUA = ROOT / "bench" / "wrk_report.lua"
OPENLOOP = ROOT / "bench" / "openloop.py"
BIG_BALANCE = Decimal("100000000")
PHONE = "03001234566"
CALL_BODY = json.dumps({"phone_number": PHONE, "audio_id": "%AUDIO%"})
LIFTED = "100000000 per minute"  # the per-key limits, out of the way but still counted
TARGET_RATIO = 0.5
TARGET_P99_MS = 100.0


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
    load: str = ""


def _pid_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _server_pid(name: str) -> int | None:
    out = subprocess.run(["pgrep", "-o", "-x", name], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


class CpuMeter:
    """Where the machine's CPU went during a phase: all cores busy, and the share of this bench's
    processes (gunicorn workers, MariaDB, Redis, wrk or the open-loop client); the rest is other
    work on the machine (MariaDB's figure includes other clients of a shared server)."""

    def __init__(self, master: int, mariadb_pid: int | None) -> None:
        self.master = master
        self.servers = {"mariadbd": mariadb_pid or _server_pid("mariadbd"), "redis-server": _server_pid("redis-server")}

    @staticmethod
    def _machine() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    def _sample(self) -> dict[str, float]:
        busy, total = self._machine()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        tick = os.sysconf("SC_CLK_TCK")
        sample = {"busy": busy / tick, "total": total / tick, "workers": workers_cpu_seconds(self.master),
                  "client": children.ru_utime + children.ru_stime}
        for name, pid in self.servers.items():
            sample[name] = _pid_cpu_seconds(pid) if pid else 0.0
        return sample

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> str:
        end = self._sample()
        delta = {k: end[k] - self._start[k] for k in end}
        wall = delta["total"] / (os.cpu_count() or 1)
        if wall <= 0:
            return ""
        ours = delta["workers"] + delta["client"] + delta["mariadbd"] + delta["redis-server"]

        def pct(seconds: float) -> str:
            return f"{100 * seconds / wall:.0f}%"

        return (f"machine {pct(delta['busy'])} of {os.cpu_count()} cores busy: workers {pct(delta['workers'])}, "
                f"MariaDB {pct(delta['mariadbd'])}, Redis {pct(delta['redis-server'])}, "
                f"load generator {pct(delta['client'])}, other processes {pct(max(0.0, delta['busy'] - ours))}")


@dataclass(frozen=True)
class BenchAccount:
    api_key: str
    api_key_id: str
    audio_id: str


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


def seed(env: dict[str, str], accounts: int) -> list[BenchAccount]:
    """Accounts with a large balance and a ready message each, made through the product's own code."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        from api import create_app
        from core.settings import load_settings
        from services.accounts import create_account

        settings = load_settings()
        app = create_app(replace(settings, ratelimit_enabled=False))
        client = app.test_client()
        wav = _wav()
        made = []
        for n in range(accounts):
            with app.extensions["zenscall"].sessions() as session:
                created = create_account(session, settings, name=f"Bench Co {n}", email=f"bench{n}@example.pk",
                                         password="S3cret!bench", balance=BIG_BALANCE)
            response = client.post(
                "/api/v1/audio", headers={"Authorization": f"Bearer {created.api_key}"},
                data={"file": (io.BytesIO(wav), "bench.wav"), "name": "bench"}, content_type="multipart/form-data")
            assert response.status_code == 201, response.get_data(as_text=True)
            made.append(BenchAccount(created.api_key, created.api_key_id, response.get_json()["id"]))
        app.extensions["zenscall"].engine.dispose()
        return made
    finally:
        os.environ.clear()
        os.environ.update(saved)


def write_keys_file(path: Path, accounts: list[BenchAccount]) -> Path:
    path.write_text("".join(f"{a.api_key}\t{a.audio_id}\n" for a in accounts))
    return path


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
            connections: int, threads: int, keys_file: Path | None) -> Phase:
    env = {**os.environ, "WRK_METHOD": method, "WRK_BODY": body, "WRK_HEADERS": json.dumps(headers),
           "WRK_KEYS_FILE": str(keys_file) if keys_file else ""}
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


def run_open_loop(url: str, *, rate: float, seconds: float, keys_file: Path) -> dict[str, Any]:
    args = [sys.executable, str(OPENLOOP), "--url", url, "--rate", str(rate), "--seconds", str(seconds),
            "--method", "POST", "--body", CALL_BODY, "--header", "Content-Type: application/json",
            "--keys-file", str(keys_file)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("OPENLOOP_JSON ")), None)
    if line is None:
        raise RuntimeError(f"openloop printed no report:\n{out}")
    return json.loads(line.removeprefix("OPENLOOP_JSON "))  # type: ignore[no-any-return]


def cleanup_redis(redis_url: str, queue: str, accounts: list[BenchAccount]) -> None:
    client = redis.Redis.from_url(redis_url)
    patterns = [f"rq:*{queue}*", "zc-rl*bench_bare*"] + [f"zc-rl*key:{a.api_key_id}*" for a in accounts]
    for pattern in patterns:
        keys = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])
    # RQ's job hashes are named by the dial job id, ``dial-<call id>``; they expire on their own
    # (result_ttl) once executed, but queued ones would stay: remove those of this run.
    for key in client.scan_iter(match="rq:job:dial-*", count=1000):
        if client.hget(key, "origin") == queue.encode():
            client.delete(key)
    client.close()


def profile_worker(master: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    out.parent.mkdir(parents=True, exist_ok=True)
    pid = worker_pids(master)[0]
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy") or "py-spy"
    return subprocess.Popen([spy, "record", "--nonblocking", "--pid", str(pid), "--format", "raw", "--rate", "200",
                             "--duration", str(max(1, round(seconds))), "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per wrk phase")
    parser.add_argument("--rounds", type=int, default=3, help="bare / POST /calls pairs (the median ratio counts)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each phase")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (the machine has few cores)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--accounts", type=int, default=50, help="accounts (API keys) sending at once")
    parser.add_argument("--open-rate", type=float, default=100.0, help="requests/s of the open-loop phase")
    parser.add_argument("--open-seconds", type=float, default=30.0, help="measured seconds of the open loop (0: skip)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--defaults-file", type=Path, default=DEFAULT_CNF,
                       help="the private MariaDB's configuration (default: the one ZensCall ships)")
    where.add_argument("--db-server", default=os.environ.get("ZC_BENCH_DB_SERVER"),
                       help="an existing MariaDB server instead of a private one")
    parser.add_argument("--redis-url", default=os.environ.get("ZC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"))
    parser.add_argument("--profile", type=Path, help="record the POST phase with py-spy into this directory")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2

    private = None
    if args.db_server is None:
        private = PrivateMariaDB(args.defaults_file).start()
        args.db_server = private.server_url
        args.server_note = f"a private MariaDB with {args.defaults_file.name}"
        args.mariadb_pid = private.proc.pid if private.proc else None
    else:
        args.server_note = f"MariaDB at {args.db_server.rsplit('@', 1)[-1]}"
        args.mariadb_pid = None
    try:
        return bench(args)
    finally:
        if private is not None:
            private.stop()


def bench(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="zc-bench-api-"))
    queue = f"bench-{secrets.token_hex(3)}"
    db_name, url, server = create_database(args.db_server)
    proc: subprocess.Popen[bytes] | None = None
    accounts: list[BenchAccount] = []
    try:
        env = {
            "DATABASE_URL": url, "REDIS_URL": args.redis_url, "VAR_DIR": str(tmp / "var"),
            "RATELIMIT_DEFAULT": LIFTED, "RATELIMIT_CREATE": LIFTED,
            "READY_REQUIRE_DIALER": "false", "DIALER_QUEUE": queue, "LOG_LEVEL": "INFO",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prometheus"),
        }
        (tmp / "prometheus").mkdir()  # the seeding app counts its requests there too
        accounts = seed(env, args.accounts)
        keys_file = write_keys_file(tmp / "keys.tsv", accounts)
        port = _free_port()
        proc = start_gunicorn(env, port, args.workers, tmp / "gunicorn.log")
        base = f"http://127.0.0.1:{port}"
        json_header = {"Content-Type": "application/json"}
        bare = ("bare insert (POST /bench/bare)", f"{base}/bench/bare", "POST", "{}", json_header, None)
        post = ("POST /api/v1/calls", f"{base}/api/v1/calls", "POST", CALL_BODY, json_header, keys_file)
        get = ("GET /api/v1/calls?page=1&per_page=20", f"{base}/api/v1/calls?page=1&per_page=20", "GET", "", {},
               keys_file)
        # bare and POST alternate, so that what else the machine runs weighs on both alike
        phases = [bare, post] * args.rounds + [get]
        results: list[Phase] = []
        for index, (name, target, method, body, headers, keys) in enumerate(phases):
            common = dict(method=method, body=body, headers=headers, connections=args.connections,
                          threads=args.threads, keys_file=keys)
            run_wrk(name, target, seconds=args.warmup, **common)  # type: ignore[arg-type]
            spy = None
            if args.profile and index == 1:
                spy = profile_worker(proc.pid, args.seconds, args.profile / "post_calls.txt")
            meter = CpuMeter(proc.pid, args.mariadb_pid)
            meter.start()
            cpu_before = workers_cpu_seconds(proc.pid)
            phase = run_wrk(name, target, seconds=args.seconds, **common)  # type: ignore[arg-type]
            phase.cpu_ms_per_request = (workers_cpu_seconds(proc.pid) - cpu_before) * 1000 / max(1, phase.requests)
            phase.load = meter.stop()
            results.append(phase)
            if spy is not None:
                _, err = spy.communicate(timeout=60)
                if spy.returncode:
                    print(f"py-spy failed: {err.decode(errors='replace')[-500:]}", file=sys.stderr)
        open_loop: dict[str, Any] | None = None
        if args.open_seconds > 0:
            meter = CpuMeter(proc.pid, args.mariadb_pid)
            meter.start()
            cpu_before = workers_cpu_seconds(proc.pid)
            open_loop = run_open_loop(f"{base}/api/v1/calls", rate=args.open_rate, seconds=args.open_seconds,
                                      keys_file=keys_file)
            open_loop["load"] = meter.stop()
            open_loop["cpu_ms_per_request"] = ((workers_cpu_seconds(proc.pid) - cpu_before) * 1000
                                               / max(1, int(open_loop["sent"])))
        with sa.create_engine(url).connect() as conn:
            calls = conn.exec_driver_sql("SELECT COUNT(*) FROM calls").scalar_one()
            bare_rows = conn.exec_driver_sql("SELECT COUNT(*) FROM bench_bare").scalar_one()
        client = redis.Redis.from_url(args.redis_url)
        args.dial_jobs = client.llen(f"rq:queue:{queue}")  # no dialer runs: every dial job is still queued
        client.close()
        return report(results, open_loop, args, calls, bare_rows)
    finally:
        stop_and_drop(proc, server, db_name)
        cleanup_redis(args.redis_url, queue, accounts)
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


def report(results: list[Phase], open_loop: dict[str, Any] | None, args: argparse.Namespace, calls: int,
           bare_rows: int) -> int:
    print(f"\nZensCall API throughput: gunicorn gevent x{args.workers}, wrk -t{args.threads} "
          f"-c{args.connections}, {args.seconds:g} s per phase, {args.accounts} accounts (a random key "
          f"per request), {args.server_note} and Redis on loopback")
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, load average at the end {os.getloadavg()[0]:.2f}")
    print(f"{'phase':40} {'requests':>9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} "
          f"{'sock err':>8} {'CPU ms/req':>10}")
    for p in results:
        print(f"{p.name:40} {p.requests:9d} {p.rps:9.1f} {p.p50_ms:8.1f} {p.p99_ms:8.1f} {p.non_2xx:8d} "
              f"{p.socket_errors:8d} {p.cpu_ms_per_request:10.2f}")
        print(f"  {p.load}")
    print("CPU ms/req: user + system CPU of the gunicorn workers per request (MariaDB, Redis and wrk excluded)")
    pairs = [(results[i], results[i + 1]) for i in range(0, 2 * args.rounds, 2)]
    ratios = [post.rps / bare.rps for bare, post in pairs]
    ratio = statistics.median(ratios)
    get = results[-1]
    print(f"ratio POST /api/v1/calls / bare insert, req/s, per round: "
          f"{', '.join(f'{r:.2f}' for r in ratios)}; median {ratio:.2f}")
    print(f"ratio GET /api/v1/calls / bare insert (last round): {get.rps / pairs[-1][0].rps:.2f}")
    checks = [("every wrk response 2xx, no socket errors",
               all(not p.non_2xx and not p.socket_errors for p in results)),
              (f"POST /calls >= {TARGET_RATIO}x the bare insert's req/s (median {ratio:.2f}x)",
               ratio >= TARGET_RATIO)]
    if open_loop is not None:
        o = open_loop
        print(f"\nopen loop, POST /api/v1/calls at {o['rate']:g}/s for {args.open_seconds:g} s (latency from the "
              f"intended send time): sent {o['sent']} ({o['offered_rps']:.1f}/s), 2xx {o['answered_2xx']}, "
              f"non-2xx {o['non_2xx']}, errors {o['errors']}, connections {o['connections']} "
              f"({o['stale_resent']} requests sent again on a new one: idle keep-alive closed by gunicorn)")
        print(f"  p50 {o['p50_ms']:.1f} ms, p90 {o['p90_ms']:.1f} ms, p99 {o['p99_ms']:.1f} ms, "
              f"max {o['max_ms']:.1f} ms; CPU {o['cpu_ms_per_request']:.2f} ms/req; "
              f"sender lag max {o['send_lag_max_ms']:.1f} ms")
        print(f"  {o['load']}")
        if o["error_kinds"]:
            print(f"  errors: {o['error_kinds']}")
        checks += [(f"open loop p99 < {TARGET_P99_MS:g} ms at {o['rate']:g}/s ({o['p99_ms']:.1f} ms)",
                    o["p99_ms"] < TARGET_P99_MS),
                   ("open loop: every response 2xx", o["answered_2xx"] == o["sent"])]
    print(f"rows written: calls={calls} bench_bare={bare_rows} (including warm-up); dial jobs enqueued for "
          f"the calls: {args.dial_jobs} (at most one per 50 ms per web process, covering the calls since the last)")
    for label, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
