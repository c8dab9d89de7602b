"""The dialer against a real FreeSWITCH 1.11.1, beside a bare greenswitch loop (figures only).

Usage: ``python bench/realswitch.py [--calls 2000] [--window 50] [--sps 2000]
[--db-server mysql+pymysql://root@127.0.0.1:3306] [--redis-url redis://127.0.0.1:6379/13]``

One FreeSWITCH instance, started like the package's ``start.sh`` (its own configuration in a
private run directory on free ports, from ``FS_HOME``, default /opt/freeswitch; see
``tests/realswitch/rig.py``), with ``sessions-per-second`` raised (each call is two sessions: our
leg and the carrier profile's leg on the same switch) and the log level lowered for the run. Every
number ends in 2, so the carrier profile answers ``486 Busy Here``: the pure cost of placing and
finishing a call, no media. In one run:

a. **bare loop**: plain greenswitch (one command and one event connection, at most ``--window``
   calls in flight, no SQL, no Redis) originates ``--calls`` calls and waits for each one's
   CHANNEL_HANGUP_COMPLETE: calls/s, CPU per call of the client and of freeswitch;
b. **dialer**: ``python -m dialer`` on a campaign of the same number of calls on MariaDB and Redis
   (database, account, audio and campaign made by ``bench/dialer.py``'s pieces, the dialer started
   and watched by its ``run_dialer_phase``, ``NODE_MAX_CHANNELS`` = ``--window``): calls/s, the ratio
   to (a), CPU per completed call of the dialer, mariadbd, redis-server and freeswitch (``/proc``),
   SQL statements per call (the dialer's own count, ``ZC_COUNT_SQL=1``, and MariaDB's global
   ``Questions``), Redis commands per call (``INFO stats`` ``total_commands_processed``) and, when
   the dialer's heartbeat counts them, its Redis round trips per call. No rq
   worker runs: the dialer takes its jobs itself and the campaign lives in SQL.

By default MariaDB and Redis are private servers of the run (``bench/faults.py``'s: a
``mariadbd`` on a temporary datadir, here with ``innodb_flush_log_at_trx_commit=1`` as in
production, and a ``redis-server``, both on free ports), so their CPU and global counters are the
dialer's and the benchmark's own. ``--shared`` uses ``--db-server`` / ``--redis-url`` instead (the
machine's servers, other clients included). Either way idle windows of ``--baseline`` seconds
just before and just after (b) are measured and their rate subtracted (raw and corrected figures
are printed). No assertions: figures only.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and "--bare-loop" in sys.argv:
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))



def _bench_module(name: str) -> Any:
    """Another script of bench/ as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench_dialer = _bench_module("dialer")

PASSWORD = "ClueCon"  # the package configuration's event socket password
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- (a) the bare loop


def bare_loop(port: int, calls: int, window: int, timeout_s: int) -> dict[str, Any]:
    """greenswitch, two connections, at most ``window`` calls in flight (own gevent process)."""
    import gevent
    import gevent.event
    import gevent.lock
    import psutil
    from greenswitch import InboundESL

    proc = psutil.Process()
    slots = gevent.lock.Semaphore(window)
    done = gevent.event.Event()
    wanted: set[str] = set()
    finished: dict[str, str] = {}
    peak = [0]

    def finish(uid: str, cause: str) -> None:
        if uid in wanted and uid not in finished:
            finished[uid] = cause
            slots.release()
            if len(finished) == calls:
                done.set()

    def on_hangup(event: Any) -> None:
        finish(event.headers.get("Unique-ID", ""), event.headers.get("Hangup-Cause", "?"))

    def on_job(event: Any) -> None:  # a failure without any channel has no hangup event
        glued = event.headers.get("Content-Length", "")  # greenswitch glues the body to it
        if "-ERR" in glued:
            job = event.headers.get("Job-UUID", "")
            gevent.spawn_later(1.0, finish, job, "job:" + glued.split("-ERR", 1)[1].strip())

    events = InboundESL("127.0.0.1", port, PASSWORD)
    events.connect()
    events.register_handle("CHANNEL_HANGUP_COMPLETE", on_hangup)
    events.register_handle("BACKGROUND_JOB", on_job)
    events.send("event plain CHANNEL_HANGUP_COMPLETE BACKGROUND_JOB")
    commands = InboundESL("127.0.0.1", port, PASSWORD)
    commands.connect()
    cpu0 = proc.cpu_times()
    started = time.monotonic()
    for i in range(calls):
        slots.acquire()
        peak[0] = max(peak[0], len(wanted) - len(finished))
        uid = str(uuid.uuid4())
        wanted.add(uid)
        commands.send(
            f"bgapi originate {{origination_uuid={uid},zc_call_id=b-{i},origination_caller_id_number=4212345678,"
            f"originate_timeout={timeout_s},ignore_early_media=true}}sofia/gateway/carrier/92300{i:06d}2 "
            f"&playback(silence_stream://1000)\nJob-UUID: {uid}")
    done.wait(300)
    wall = time.monotonic() - started
    cpu1 = proc.cpu_times()
    cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {"completed": len(finished), "wall": wall, "rate": len(finished) / wall if wall else 0.0,
            "cpu_ms_per_call": 1000 * cpu_s / max(1, len(finished)),
            "kernel_cpu_ms_per_call": 1000 * (cpu1.system - cpu0.system) / max(1, len(finished)),
            "peak_in_flight": peak[0] + 1,
            "causes": dict(Counter(finished.values()))}


# --------------------------------------------------------------------------- measuring processes


def proc_cpu_s(pid: int | None) -> float | None:
    """user + system seconds of a whole process (all threads), from /proc/<pid>/stat."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def pin_threads(pid: int | None, cpus: set[int]) -> None:
    """Every thread of a process onto ``cpus``."""
    if pid is None:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except OSError:
            pass


def mariadb_pid(engine: Any) -> int | None:
    import sqlalchemy as sa

    with engine.connect() as conn:
        pid_file = conn.execute(sa.text("SELECT @@pid_file")).scalar_one()
    try:
        return int(Path(pid_file).read_text().strip())
    except (OSError, ValueError):
        found = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/comm")
                 if p.read_text().strip() in ("mariadbd", "mysqld")]
        return found[0] if len(found) == 1 else None


def questions(engine: Any) -> int:
    import sqlalchemy as sa

    with engine.connect() as conn:
        return int(conn.execute(sa.text("SHOW GLOBAL STATUS LIKE 'Questions'")).one()[1])


@dataclass
class Snapshot:
    at: float
    cpu: dict[str, float | None]
    questions: int
    redis_commands: int


@dataclass
class Meter:
    """CPU of named processes and the servers' global counters, between two snapshots."""

    pids: dict[str, int | None]
    engine: Any
    rds: Any
    marks: list[Snapshot] = field(default_factory=list)

    def snap(self) -> Snapshot:
        mark = Snapshot(time.monotonic(), {n: proc_cpu_s(p) for n, p in self.pids.items()},
                        questions(self.engine), int(self.rds.info("stats")["total_commands_processed"]))
        self.marks.append(mark)
        return mark

    @staticmethod
    def add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        """Two idle windows as one (before and after the run: the shared servers' load drifts)."""
        cpu = {n: (a["cpu"][n] + b["cpu"][n]) if a["cpu"][n] is not None and b["cpu"][n] is not None else None
               for n in a["cpu"]}
        return {"seconds": a["seconds"] + b["seconds"], "cpu": cpu, "questions": a["questions"] + b["questions"],
                "redis_commands": a["redis_commands"] + b["redis_commands"]}

    @staticmethod
    def delta(a: Snapshot, b: Snapshot) -> dict[str, Any]:
        cpu = {n: (b.cpu[n] - a.cpu[n]) if a.cpu[n] is not None and b.cpu[n] is not None else None for n in a.cpu}
        return {"seconds": b.at - a.at, "cpu": cpu, "questions": b.questions - a.questions,
                "redis_commands": b.redis_commands - a.redis_commands}


class RealSwitchForPhase:
    """What ``bench/dialer.py``'s ``run_dialer_phase`` asks of its switch (``port``, ``reset``,
    ``stats``), for a real FreeSWITCH."""

    def __init__(self, instance: Any) -> None:
        self.instance = instance
        self.port = instance.esl_port

    def reset(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        status = self.instance.api("status")
        match = re.search(r"session\(s\) - peak (\d+)", status)
        return {"max_concurrent": int(match.group(1)) if match else 0}


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--window", type=int, default=50, help="calls in flight (bare loop; NODE_MAX_CHANNELS)")
    parser.add_argument("--sps", type=int, default=2000, help="FreeSWITCH sessions-per-second for the run")
    parser.add_argument("--loglevel", default="err", help="FreeSWITCH log level for the run")
    parser.add_argument("--baseline", type=float, default=10.0, help="idle seconds measured before the dialer")
    parser.add_argument("--shared", action="store_true", help="use --db-server and --redis-url, not private servers")
    parser.add_argument("--db-server", default="mysql+pymysql://root@127.0.0.1:3306")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13", help="a Redis db of its own (flushed)")
    parser.add_argument("--py-spy-out", help="profile the dialer with py-spy into this file (.svg flame graph, "
                        ".txt collapsed stacks, .json speedscope)")
    parser.add_argument("--pin", action="store_true", help="the dialer alone on core 1, FreeSWITCH, MariaDB and "
                        "Redis on core 0 (a profile then samples the dialer's own CPU only; rates not comparable)")
    parser.add_argument("--bare-loop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    timeout_s = 10
    if args.bare_loop:
        print(json.dumps(bare_loop(args.port, args.calls, args.window, timeout_s)), flush=True)
        return 0

    import redis
    import sqlalchemy as sa
    from alembic import command

    from api.cli import alembic_config
    from core.db import make_engine
    from core.models import Call, CallAttempt
    from tests.realswitch.rig import carrier_switch

    base = Path(tempfile.mkdtemp(prefix="zc_bench_realswitch_"))
    if not args.shared:
        from tests.model.services import MariaDB, Redis

        mariadb, private_redis = MariaDB(base), Redis(base)
        args.db_server, args.redis_url = mariadb.server_url, private_redis.url
        with sa.create_engine(args.db_server, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.exec_driver_sql("SET GLOBAL innodb_flush_log_at_trx_commit = 1")
        print(f"private MariaDB {args.db_server}, Redis {args.redis_url}", flush=True)
    switch = carrier_switch(base / "freeswitch", switch_params={
        "sessions-per-second": str(args.sps), "loglevel": args.loglevel}).start()
    name = f"zc_bench_{secrets.token_hex(4)}"
    server = sa.create_engine(args.db_server, isolation_level="AUTOCOMMIT")
    rds = redis.Redis.from_url(args.redis_url)
    rds.flushdb()
    results: dict[str, Any] = {}
    try:
        fs_pid = switch.pid
        print(f"FreeSWITCH pid {fs_pid}, ESL port {switch.esl_port}, sps {args.sps}, log level {args.loglevel}, "
              f"run dir {switch.run_dir}", flush=True)

        # (a) the bare loop
        print(f"bare loop: {args.calls} calls, at most {args.window} in flight ...", flush=True)
        fs0 = proc_cpu_s(fs_pid)
        out = subprocess.run([sys.executable, __file__, "--bare-loop", "--port", str(switch.esl_port),
                              "--calls", str(args.calls), "--window", str(args.window)],
                             cwd=ROOT, capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            raise RuntimeError(f"bare loop failed: {out.stderr[-3000:]}")
        bare = json.loads(out.stdout.strip().splitlines()[-1])
        fs1 = proc_cpu_s(fs_pid)
        bare["fs_cpu_ms_per_call"] = 1000 * ((fs1 or 0) - (fs0 or 0)) / max(1, bare["completed"])
        results["bare"] = bare
        time.sleep(2)

        # (b) the dialer
        with server.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        url = f"{args.db_server}/{name}?charset=utf8mb4"
        command.upgrade(alembic_config(url), "head")
        engine = make_engine(url, pool_size=2)
        account_id, audio_id = bench_dialer.seed(engine, base / "audio")
        campaign = bench_dialer.add_campaign(engine, account_id, audio_id, args.calls, "300", suffix="2")
        meter = Meter({"mariadbd": mariadb_pid(engine), "redis-server": int(rds.info("server")["process_id"]),
                       "freeswitch": fs_pid}, engine, rds)
        print(f"baseline: {args.baseline:.0f} s idle ...", flush=True)
        idle0 = meter.snap()
        time.sleep(args.baseline)
        idle1 = meter.snap()
        phase_args = argparse.Namespace(redis_url=args.redis_url, no_answer_seconds=timeout_s, gateway_cps=5000.0,
                                        max_channels=args.window, phase_timeout=600.0,
                                        py_spy="realswitch" if args.py_spy_out else None,
                                        py_spy_out=args.py_spy_out)
        print(f"dialer: campaign of {args.calls} numbers ...", flush=True)
        run0 = meter.snap()
        if args.pin:
            os.sched_setaffinity(0, {0})
            for pid in meter.pids.values():
                pin_threads(pid, {0})
        dialer = bench_dialer.run_dialer_phase(phase_args, engine, rds, url, base, RealSwitchForPhase(switch),
                                               campaign, args.calls, "realswitch",
                                               cpus={1} if args.pin else None)
        run1 = meter.snap()
        print(f"baseline again: {args.baseline:.0f} s idle ...", flush=True)
        time.sleep(args.baseline)
        idle2 = meter.snap()
        with engine.connect() as conn:
            dialer["causes"] = dict(conn.execute(
                sa.select(CallAttempt.hangup_cause, sa.func.count()).join(Call, Call.id == CallAttempt.call_id)
                .where(Call.campaign_id == campaign).group_by(CallAttempt.hangup_cause)).all())
            dialer["statuses"] = dict(conn.execute(
                sa.select(Call.status, sa.func.count()).where(Call.campaign_id == campaign)
                .group_by(Call.status)).all())
        dialer["books_ok"], dialer["books"] = bench_dialer.check_books(engine, account_id)
        dialer["idle"] = Meter.add(Meter.delta(idle0, idle1), Meter.delta(run1, idle2))
        dialer["run"] = Meter.delta(run0, run1)
        results["dialer"] = dialer
        engine.dispose()
    finally:
        switch.stop()
        rds.flushdb()
        with server.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        server.dispose()
        from tests.model.services import stop_all

        stop_all()
        shutil.rmtree(base, ignore_errors=True)
    report(args, results)
    return 0


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    bare, dialer = results["bare"], results["dialer"]
    run, idle = dialer["run"], dialer["idle"]
    done = max(1, dialer["completed"])
    scale = run["seconds"] / idle["seconds"] if idle["seconds"] else 0.0

    def per_call(raw: float | None, idle_raw: float | None, factor: float = 1.0) -> tuple[str, str]:
        if raw is None:
            return "-", "-"
        corrected = raw - (idle_raw or 0.0) * scale
        return f"{factor * raw / done:.2f}", f"{factor * corrected / done:.2f}"

    print()
    print(f"{args.calls} calls to numbers ending in 2 (486 Busy Here), at most {args.window} in flight, "
          f"FreeSWITCH sps {args.sps}, {'shared' if args.shared else 'private'} MariaDB and Redis")
    print(f"{'':44s}{'bare loop':>14s}{'dialer':>14s}{'dialer (-idle)':>16s}")
    rows: list[tuple[str, str, str, str]] = [
        ("calls completed", str(bare["completed"]), str(dialer["completed"]), ""),
        ("wall s", f"{bare['wall']:.1f}", f"{dialer['wall']:.1f}", ""),
        ("calls/s (dialer: sustained originates/s)", f"{bare['rate']:.1f}", f"{dialer['rate']:.1f}", ""),
        ("ratio to the bare loop", "", f"{dialer['rate'] / bare['rate']:.0%}" if bare["rate"] else "-", ""),
        ("CPU ms/call, client (bare loop / dialer)", f"{bare['cpu_ms_per_call']:.2f}",
         f"{dialer['cpu_ms_per_call']:.2f}", ""),
        ("  of which in the kernel (socket calls)", f"{bare['kernel_cpu_ms_per_call']:.2f}",
         f"{dialer['kernel_cpu_ms_per_call']:.2f}", ""),
    ]
    fs_raw, fs_cor = per_call(run["cpu"]["freeswitch"], idle["cpu"]["freeswitch"], 1000)
    rows.append(("CPU ms/call, freeswitch", f"{bare['fs_cpu_ms_per_call']:.2f}", fs_raw, fs_cor))
    for proc in ("mariadbd", "redis-server"):
        raw, cor = per_call(run["cpu"][proc], idle["cpu"][proc], 1000)
        rows.append((f"CPU ms/call, {proc}", "-", raw, cor))
    rows.append(("CPU ms/call, rq worker", "-", "none runs", ""))
    rows.append(("SQL statements/call (dialer's own count)", "-", f"{dialer['sql_per_call']:.2f}", ""))
    raw, cor = per_call(run["questions"], idle["questions"])
    rows.append(("SQL statements/call (MariaDB Questions)", "-", raw, cor))
    raw, cor = per_call(run["redis_commands"], idle["redis_commands"])
    rows.append(("Redis commands/call (total_commands_processed)", "-", raw, cor))
    trips = dialer.get("redis_per_call")  # when the dialer counts its round trips (heartbeat)
    rows.append(("Redis round trips/call (dialer's own count)", "-", "-" if trips is None else f"{trips:.2f}", ""))
    rows.append(("peak calls in flight", str(bare["peak_in_flight"]), str(dialer["peak_in_flight"]), ""))
    for label, a, b, c in rows:
        print(f"{label:44s}{a:>14s}{b:>14s}{c:>16s}")
    print()
    print(f"bare loop hangup causes: {bare['causes']}")
    print(f"dialer attempt causes: {dialer['causes']}; call statuses: {dialer['statuses']}")
    print(f"books: {'balanced' if dialer['books_ok'] else 'NOT balanced'} ({dialer['books']})")
    rates = ", ".join(f"{n} {1000 * c / idle['seconds']:.0f} ms/s" for n, c in idle["cpu"].items() if c is not None)
    print(f"phase window {run['seconds']:.1f} s (dialer start to stop); idle windows before and after it, "
          f"{idle['seconds']:.1f} s in all, their rates subtracted in the last column: CPU {rates}, "
          f"{idle['questions'] / idle['seconds']:.0f} Questions/s, "
          f"{idle['redis_commands'] / idle['seconds']:.0f} Redis commands/s (other clients, the watcher)")


if __name__ == "__main__":
    sys.exit(main())
