"""Dialer throughput against the FreeSWITCH simulator, on MariaDB and Redis.

Usage: ``python bench/dialer.py [--calls 20000] [--long-calls 6000]
[--db-server mysql+pymysql://root@127.0.0.1:3306] [--redis-url redis://127.0.0.1:6379/13]``

Creates a throw-away database ``zc_bench_<random>`` (migrated, dropped at the end), flushes its own
Redis db, and seeds an account with a large balance and high caps, a converted 8 kHz WAV message and
campaigns of queued calls (bulk-inserted into SQL, RUNNING inside a wide calling window). Then, in
one run:

1. **bare loop**: a plain greenswitch ``InboundESL`` (an events and a commands connection, like the
   adapter) originates ``--calls`` calls against the simulator in load mode and waits for every
   CHANNEL_HANGUP_COMPLETE; no database, no Redis. The physical limit of this stack.
2. **dialer, short calls**: ``python -m dialer`` dials a campaign of ``--calls`` numbers against the
   same simulator (answer 60 % talk 1-3 s, busy 30 %, no answer 10 % ring 1-2 s, real time) until
   every call is final.
3. **dialer, long calls**: a fresh simulator (every call answered, talk ``--long-talk`` s, no channel
   limit) and dialer, a campaign of ``--long-calls`` numbers: how many calls one dialer holds at once.

Figures: sustained originates/s (the middle 80 % of originates, from attempt start times / the bare
loop's send times), peak concurrent channels (the simulator's ``max_concurrent``), CPU ms per
completed call (psutil user+sys of the process), SQL statements per call (the dialer counts them
with ``ZC_COUNT_SQL=1`` and publishes the count in its heartbeat), peak RSS, and RSS at 25 %, 50 %
and 100 % of the calls final (the first quarter of a run is warm-up: the in-flight set and the
dialer's bounded caches filling). Each target gets PASS/FAIL: >= 200 calls/s, >= 5000 concurrent
calls in one dialer, >= 50 % of the bare loop's rate, memory flat (RSS at the end within 10 % of
RSS at 25 %). The books are checked too: every call final with one attempt, balance == sum of the
ledger, nothing left reserved. ``--tracemalloc`` runs the dialer under tracemalloc and prints where
its Python memory grew between 25 %, 50 % and 100 % (it slows the dialer several times over).
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and ("--bare-loop" in sys.argv or "--traced-dialer" in sys.argv):
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
import wave  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import datetime, timedelta  # noqa: E402
from decimal import Decimal  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from simulator import control  # noqa: E402

SIM_PASSWORD = "ClueCon"
TARGET_CPS = 200.0
TARGET_CONCURRENT = 5000
TARGET_RATIO = 0.5
TARGET_FLAT = 0.10
TZ = "Asia/Karachi"


# --------------------------------------------------------------------------- the bare loop


def bare_loop(port: int, calls: int, audio_path: str, timeout_s: int) -> dict[str, Any]:
    """Originate ``calls`` calls with plain greenswitch and wait for every hangup (runs in its own
    gevent process; prints one JSON line)."""
    import gevent
    import gevent.event
    import psutil
    from greenswitch import InboundESL

    proc = psutil.Process()
    cpu0 = proc.cpu_times()
    rss_peak = proc.memory_info().rss
    done = gevent.event.Event()
    hungup: set[str] = set()
    wanted: set[str] = set()

    def on_hangup(event: Any) -> None:
        uid = event.headers.get("Unique-ID", "")
        if uid in wanted and uid not in hungup:
            hungup.add(uid)
            if len(hungup) == calls:
                done.set()

    events = InboundESL("127.0.0.1", port, SIM_PASSWORD)
    events.connect()
    events.register_handle("CHANNEL_HANGUP_COMPLETE", on_hangup)
    events.send("event plain CHANNEL_HANGUP_COMPLETE BACKGROUND_JOB")
    commands = InboundESL("127.0.0.1", port, SIM_PASSWORD)
    commands.connect()

    sent_at: list[float] = []
    started = time.monotonic()
    for i in range(calls):
        uid = str(uuid.uuid4())
        wanted.add(uid)
        number = f"92300{i:07d}"
        commands.send(
            f"bgapi originate {{origination_uuid={uid},zc_call_id={uid},origination_caller_id_number=4200000000,"
            f"originate_timeout={timeout_s},ignore_early_media=true}}sofia/gateway/carrier/{number} "
            f"&playback({audio_path})\nJob-UUID: {uid}")
        sent_at.append(time.monotonic())
        if i % 500 == 0:
            rss_peak = max(rss_peak, proc.memory_info().rss)
    while not done.wait(0.5):
        rss_peak = max(rss_peak, proc.memory_info().rss)
        if time.monotonic() - started > 600:
            break
    ended = time.monotonic()
    cpu1 = proc.cpu_times()
    rss_peak = max(rss_peak, proc.memory_info().rss)
    cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {"originates": calls, "completed": len(hungup), "rate": sustained_rate(sent_at),
            "wall": ended - started, "cpu_ms_per_call": 1000 * cpu_s / max(1, len(hungup)),
            "rss_peak_mb": rss_peak / 2**20}


def sustained_rate(times: list[float]) -> float:
    """Originates per second over the middle 80 % of the originates."""
    if len(times) < 10:
        return 0.0
    times = sorted(times)
    lo, hi = int(len(times) * 0.1), int(len(times) * 0.9)
    span = times[hi] - times[lo]
    return (hi - lo) / span if span > 0 else 0.0


# --------------------------------------------------------------------------- memory


def traced_dialer() -> None:
    """``python -m dialer`` with two signal handlers for the benchmark: SIGUSR2 writes every
    greenlet's stack (``gevent.util.format_run_info``) to ``ZC_BENCH_RUN_INFO``; with
    ``ZC_BENCH_SNAPSHOTS`` set it runs under tracemalloc (one frame per allocation), and SIGUSR1
    writes a snapshot (``snap-<n>``, after a full collection) and the count of live objects per type
    (``types-<n>.json``) into that directory."""
    import collections
    import gc
    import tracemalloc

    import gevent
    import gevent.util

    def run_info() -> None:
        Path(os.environ["ZC_BENCH_RUN_INFO"]).write_text("\n".join(gevent.util.format_run_info()))

    if os.environ.get("ZC_BENCH_RUN_INFO"):
        gevent.signal_handler(signal.SIGUSR2, run_info)
    if os.environ.get("ZC_BENCH_SNAPSHOTS"):
        tracemalloc.start(1)
        out = Path(os.environ["ZC_BENCH_SNAPSHOTS"])
        out.mkdir(parents=True, exist_ok=True)
        taken = [0]

        def dump() -> None:
            n = taken[0]
            taken[0] += 1
            gc.collect()
            types = collections.Counter(type(o).__name__ for o in gc.get_objects())
            snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
            (out / f"types-{n}.json").write_text(json.dumps(
                {"traced_bytes": tracemalloc.get_traced_memory()[0], "types": dict(types)}))
            snap.dump(str(out / f".snap-{n}"))
            (out / f".snap-{n}").rename(out / f"snap-{n}")

        gevent.signal_handler(signal.SIGUSR1, dump)
    from dialer.__main__ import main

    main()


def take_snapshot(pid: int, directory: str, n: int, timeout: float = 120.0) -> Path:
    """Ask a traced dialer for its snapshot ``n`` and wait until it is written."""
    os.kill(pid, signal.SIGUSR1)
    path = Path(directory) / f"snap-{n}"
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no tracemalloc snapshot {path} within {timeout:.0f} s")
        time.sleep(0.1)
    return path


def memory_report(paths: list[str], top: int = 8) -> None:
    """Traced memory at 25 %, 50 % and 100 % of the calls final, the source lines whose memory grew
    most between them, and the object types whose count grew most."""
    import tracemalloc

    if len(paths) < 3:
        print("tracemalloc: fewer than 3 snapshots taken")
        return
    snaps = [tracemalloc.Snapshot.load(p) for p in paths]
    kinds = [json.loads((Path(p).parent / f"types-{Path(p).name.split('-')[1]}.json").read_text()) for p in paths]
    print("tracemalloc (the dialer's Python allocations, after a full collection), at 25 % / 50 % / 100 % of "
          "the calls final:")
    print("  traced MB: " + " / ".join(f"{k['traced_bytes'] / 2**20:.2f}" for k in kinds))
    for a, b, label in ((0, 2, "25 % -> 100 %"), (1, 2, "50 % -> 100 %")):
        stats = sorted(snaps[b].compare_to(snaps[a], "lineno"), key=lambda st: -st.size_diff)[:top]
        print(f"  largest growth {label}:")
        for st in stats:
            frame = st.traceback[0]
            where = frame.filename.removeprefix(f"{ROOT}/")
            print(f"    {st.size_diff / 1024:+9.1f} KiB {st.count_diff:+7d} blocks  {where}:{frame.lineno}")
    growth = {t: kinds[2]["types"].get(t, 0) - kinds[0]["types"].get(t, 0)
              for t in set(kinds[0]["types"]) | set(kinds[2]["types"])}
    print("  live objects per type, largest growth 25 % -> 100 %: " + ", ".join(
        f"{t} {d:+d}" for t, d in sorted(growth.items(), key=lambda kv: -kv[1])[:top]))


# --------------------------------------------------------------------------- processes


def esl_api(port: int, command: str, timeout: float = 30.0) -> str:
    """One ``api`` command on a fresh ESL connection."""
    return control.esl_api(port, command, password=SIM_PASSWORD, timeout=timeout)


class Simulator:
    def __init__(self, log_dir: Path, *args: str) -> None:
        self.log = open(log_dir / f"sim-{secrets.token_hex(3)}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", "0",
             "--password", SIM_PASSWORD, "--time-scale", "1", "--heartbeat", "0", "--mode", "load",
             "--max-channels", "0", "--seed", "7", *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log, text=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("LISTENING 127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"simulator did not start: {line!r}")
        self.port = int(line.strip().rsplit(":", 1)[1])

    def stats(self) -> dict[str, Any]:
        data = json.loads(esl_api(self.port, "sim_stats"))
        return {k: v for k, v in data.items() if k != "calls"}

    def reset(self) -> None:
        esl_api(self.port, "sim_reset_stats")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


def place_process(cpus: set[int] | None, nice: int) -> None:
    """In a child before it runs: its cores and its priority."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    if nice:
        os.setpriority(os.PRIO_PROCESS, 0, nice)


def service_pids() -> dict[str, int]:
    """The MariaDB and Redis servers of this machine (their CPU counts per call too; they are shared
    with whatever else runs here, so read their figures as an upper bound)."""
    import psutil

    found: dict[str, int] = {}
    for proc in psutil.process_iter(["name"]):
        name = proc.info["name"] or ""
        if name in ("mariadbd", "mysqld") and "mariadbd" not in found:
            found["mariadbd"] = proc.pid
        elif name.startswith("redis-server") and "redis" not in found:
            found["redis"] = proc.pid
    return found


@dataclass
class Sampler:
    """CPU and RSS of one process, sampled while a phase runs."""

    pid: int
    rss: list[float] = field(default_factory=list)
    done: list[float] = field(default_factory=list)  # share of the phase's calls final at each sample
    cpu0: float = 0.0

    def __post_init__(self) -> None:
        import psutil

        self.proc = psutil.Process(self.pid)
        self.cpu0 = self.cpu()
        self.sys0 = self.proc.cpu_times().system

    def cpu(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    def system_cpu(self) -> float:
        """Seconds in the kernel (socket calls) since the sampler started."""
        return self.proc.cpu_times().system - self.sys0

    def sample(self, done: float = 0.0) -> None:
        self.rss.append(self.proc.memory_info().rss / 2**20)
        self.done.append(done)

    def rss_at(self, share: float) -> float:
        """RSS (MB) at the first sample with at least ``share`` of the calls final."""
        return next((r for r, d in zip(self.rss, self.done, strict=True) if d >= share), self.rss[-1])


# --------------------------------------------------------------------------- SQL fixtures


def wide_window() -> tuple[str, str]:
    """A calling window open for hours around now (Asia/Karachi)."""
    now = datetime.now(ZoneInfo(TZ))
    return (now - timedelta(hours=2)).strftime("%H:%M"), (now + timedelta(hours=4)).strftime("%H:%M")


def add_audio(engine: Any, account_id: str, audio_dir: Path, seconds: int) -> str:
    """An audio row and its converted file (8 kHz mono 16-bit PCM): the simulator plays it, so a
    call lasts at most the message."""
    import sqlalchemy as sa

    from core.db import utcnow
    from core.models import AudioFile

    audio_id = str(uuid.uuid4())
    audio_dir.mkdir(parents=True, exist_ok=True)
    path = audio_dir / f"{audio_id}.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 8000 * seconds)
    with engine.begin() as conn:
        conn.execute(sa.insert(AudioFile.__table__).values(
            id=audio_id, account_id=account_id, name="message", status="READY", source_format="wav",
            duration_ms=seconds * 1000, size_bytes=path.stat().st_size, sha256="0" * 64, created_at=utcnow()))
    return audio_id


def seed(engine: Any, audio_dir: Path) -> tuple[str, str]:
    import sqlalchemy as sa

    from core.db import utcnow
    from core.models import Account, LedgerEntry
    from core.states import LedgerKind

    account_id = str(uuid.uuid4())
    balance = Decimal("100000000")
    with engine.begin() as conn:
        conn.execute(sa.insert(Account.__table__).values(
            id=account_id, name="bench", active=True, balance=balance, reserved=Decimal("0"), currency="PKR",
            rate_per_minute=Decimal("2.5"), pulse_seconds=30, max_concurrent_calls=100_000, created_at=utcnow()))
        conn.execute(sa.insert(LedgerEntry.__table__).values(
            account_id=account_id, kind=LedgerKind.TOPUP, amount=balance, hold=Decimal("0"),
            balance_after=balance, reserved_after=Decimal("0"), description="bench top-up", created_at=utcnow()))
    return account_id, add_audio(engine, account_id, audio_dir, 3)


def add_campaign(engine: Any, account_id: str, audio_id: str, calls: int, prefix: str, suffix: str = "") -> str:
    """A PAUSED campaign of ``calls`` queued numbers ``+92<prefix><n><suffix>`` (7 digits after the
    prefix; bulk insert); started by ``run_dialer_phase``."""
    import sqlalchemy as sa

    from core.call_states import CallStatus
    from core.campaign_states import CampaignStatus
    from core.db import utcnow
    from core.models import Call, Campaign

    campaign_id = str(uuid.uuid4())
    start, end = wide_window()
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(sa.insert(Campaign.__table__).values(
            id=campaign_id, account_id=account_id, name=f"bench {prefix}", audio_id=audio_id,
            status=CampaignStatus.PAUSED, max_retries=0, retry_delay_seconds=300, concurrent_limit=100_000,
            window_start=start, window_end=end, timezone=TZ, csv_bytes=0, rows_total=calls, rows_accepted=calls,
            rows_duplicate=0, rows_dnc=0, rows_invalid=0, imported_at=now, created_at=now, updated_at=now))
        base = {"account_id": account_id, "campaign_id": campaign_id, "audio_id": audio_id, "caller_id": None,
                "status": CallStatus.QUEUED, "max_retries": 0, "retry_delay_seconds": 300, "attempts_count": 0,
                "next_attempt_at": now, "billsec": 0, "cost": Decimal("0"), "created_at": now, "updated_at": now}
        for i in range(0, calls, 5000):
            conn.execute(sa.insert(Call.__table__), [
                {**base, "id": str(uuid.uuid4()), "phone_number": f"+92{prefix}{n:0{7 - len(suffix)}d}{suffix}"}
                for n in range(i, min(calls, i + 5000))])
    return campaign_id


# --------------------------------------------------------------------------- a dialer phase


def heartbeat(rds: Any, node: str, pid: int) -> dict[str, Any] | None:
    raw = rds.get(f"zc:dialer:{node}:{pid}")
    return json.loads(raw) if raw else None


def run_dialer_phase(args: argparse.Namespace, engine: Any, rds: Any, url: str, tmp: Path, sim: Simulator,
                     campaign_id: str, calls: int, name: str, *, cpus: set[int] | None = None, nice: int = 0,
                     servers: dict[str, int] | None = None) -> dict[str, Any]:
    """Run ``python -m dialer`` on a RUNNING campaign until every call is final. ``cpus``: the
    cores the dialer may run on (``sched_setaffinity``), ``nice`` its scheduling priority;
    ``servers``: the MariaDB and Redis processes whose CPU counts per call (default: this
    machine's, see ``service_pids``)."""
    import sqlalchemy as sa

    from core.call_states import CallStatus
    from core.campaign_states import CampaignStatus
    from core.models import Call, CallAttempt, Campaign

    node = f"bench-{name}"
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": args.redis_url, "VAR_DIR": str(tmp),
           "AUDIO_DIR": str(tmp / "audio"), "FS_AUDIO_DIR": str(tmp / "audio"), "DIALER_QUEUE": f"bench-{name}",
           "FS_HOST": "127.0.0.1", "FS_PORT": str(sim.port), "FS_PASSWORD": SIM_PASSWORD,
           "FS_ORIGINATE_TIMEOUT": str(args.no_answer_seconds), "FS_COMMAND_TIMEOUT": "10",
           "DIALER_SWEEP_SECONDS": "0.5",
           "DIALER_NODE": node, "GATEWAY_CPS": str(args.gateway_cps), "CAP_LEASE_SECONDS": "120",
           "NODE_MAX_CHANNELS": str(args.max_channels), "ZC_COUNT_SQL": "1"}
    traced = getattr(args, "tracemalloc", False)
    if traced:
        env["ZC_BENCH_SNAPSHOTS"] = str(tmp / f"snapshots-{name}")
    env["ZC_BENCH_RUN_INFO"] = str(tmp / f"greenlets-{name}.txt")
    log_path = tmp / f"dialer-{name}.log"
    argv = [sys.executable, __file__, "--traced-dialer"]
    with open(log_path, "w") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT,
                                preexec_fn=(lambda: place_process(cpus, nice)) if cpus or nice else None)
    try:
        deadline = time.monotonic() + 30
        beat = None
        while not (beat and beat.get("esl_connected")):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dialer did not get ready:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
            beat = heartbeat(rds, node, proc.pid)
        sampler = Sampler(proc.pid)
        services = {name: Sampler(pid) for name, pid in (servers or service_pids()).items()}
        sql0, rtt0 = beat.get("sql_statements", 0), beat.get("redis_round_trips", 0)
        originates0 = beat.get("originates_total", 0)
        sim.reset()
        if args.py_spy and name == args.py_spy:
            out = Path(args.py_spy_out).resolve()
            fmt = {".txt": "raw", ".json": "speedscope"}.get(out.suffix, "flamegraph")
            spy = subprocess.Popen(["py-spy", "record", "-o", str(out), "-f", fmt, "--pid",
                                    str(proc.pid), "--rate", "100", "--nonblocking",
                                    *os.environ.get("ZC_BENCH_PY_SPY_FLAGS", "").split()],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            spy = None
        with engine.begin() as conn:
            conn.execute(sa.update(Campaign.__table__).where(Campaign.id == campaign_id)
                         .values(status=CampaignStatus.RUNNING))
        started = time.monotonic()
        final = [s.value for s in CallStatus if s.is_final]
        open_calls = calls
        peak_in_flight = 0
        last_print = started
        snapshots: list[Path] = []
        stuck_at = 0.0
        while open_calls:
            time.sleep(0.5)
            sampler.sample((calls - open_calls) / calls)
            if traced and len(snapshots) < 2 and (calls - open_calls) >= calls * (0.25, 0.5)[len(snapshots)]:
                snapshots.append(take_snapshot(proc.pid, env["ZC_BENCH_SNAPSHOTS"], len(snapshots)))
            beat = heartbeat(rds, node, proc.pid) or beat
            peak_in_flight = max(peak_in_flight, beat.get("in_flight", 0))
            with engine.connect() as conn:
                open_calls = conn.execute(sa.select(sa.func.count()).select_from(Call.__table__).where(
                    Call.campaign_id == campaign_id, Call.status.not_in(final))).scalar_one()
            now = time.monotonic()
            if open_calls <= 5 and beat.get("originates_per_second") == 0 and not stuck_at:
                stuck_at = now
            if stuck_at and now - stuck_at > 5 and not Path(env["ZC_BENCH_RUN_INFO"]).exists():
                os.kill(proc.pid, signal.SIGUSR2)  # a call open 5 s after the last originate: where is it?
                print(f"  [{name}] {open_calls} calls still open: greenlets written to {env['ZC_BENCH_RUN_INFO']}",
                      flush=True)
            if now - last_print >= 10:
                last_print = now
                print(f"  [{name}] {now - started:5.0f}s  open {open_calls:6d}  in flight {beat.get('in_flight')}"
                      f"  originates/s {beat.get('originates_per_second')}", flush=True)
            if proc.poll() is not None:
                raise RuntimeError(f"dialer exited:\n{log_path.read_text()[-3000:]}")
            if now - started > args.phase_timeout:
                print(f"  [{name}] timed out with {open_calls} calls open", flush=True)
                break
        wall = time.monotonic() - started
        sampler.sample((calls - open_calls) / calls)
        cpu_s = sampler.cpu() - sampler.cpu0
        sys_s = sampler.system_cpu()
        service_cpu = {name: smp.cpu() - smp.cpu0 for name, smp in services.items()}
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        time.sleep(1.3)  # one more heartbeat with the final statement count
        beat = heartbeat(rds, node, proc.pid) or beat
        sql = beat.get("sql_statements", 0) - sql0
        rtt = beat.get("redis_round_trips", 0) - rtt0
        sim_stats = sim.stats()
        with engine.connect() as conn:
            starts = [r[0].timestamp() for r in conn.execute(
                sa.select(CallAttempt.started_at).join(Call, Call.id == CallAttempt.call_id)
                .where(Call.campaign_id == campaign_id))]
            done = calls - open_calls
        if traced:
            snapshots.append(take_snapshot(proc.pid, env["ZC_BENCH_SNAPSHOTS"], len(snapshots)))
        return {"originates": len(starts), "completed": done, "rate": sustained_rate(starts), "wall": wall,
                "cpu_ms_per_call": 1000 * cpu_s / max(1, done), "sql_per_call": sql / max(1, done),
                "kernel_cpu_ms_per_call": 1000 * sys_s / max(1, done),
                "redis_per_call": rtt / max(1, done),
                **{f"{n}_cpu_ms_per_call": 1000 * c / max(1, done) for n, c in service_cpu.items()},
                "system_cpu_ms_per_call": 1000 * (cpu_s + sum(service_cpu.values())) / max(1, done),
                "rss_peak_mb": max(sampler.rss or [0]), "rss_25_mb": sampler.rss_at(0.25),
                "rss_50_mb": sampler.rss_at(0.5), "rss_end_mb": sampler.rss[-1],
                "snapshots": [str(p) for p in snapshots],
                "max_concurrent": sim_stats["max_concurrent"], "peak_in_flight": peak_in_flight,
                "switch_originates": sim_stats.get("originates"),
                "dialer_originates": beat.get("originates_total", 0) - originates0}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def check_books(engine: Any, account_id: str) -> tuple[bool, str]:
    """Every call final with exactly one attempt; balance == ledger; nothing reserved."""
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from billing import ledger
    from core.call_states import CallStatus
    from core.models import Account, Call, CallAttempt

    final = [s.value for s in CallStatus if s.is_final]
    with Session(engine) as session:
        totals = ledger.ledger_totals(session, account_id)
        acc = session.execute(sa.select(Account.balance, Account.reserved).where(Account.id == account_id)).one()
        calls = session.execute(sa.select(sa.func.count()).select_from(Call)).scalar_one()
        open_ = session.execute(sa.select(sa.func.count()).select_from(Call)
                                .where(Call.status.not_in(final))).scalar_one()
        attempts = session.execute(sa.select(sa.func.count()).select_from(CallAttempt)).scalar_one()
    ok = (acc.balance == totals.balance and acc.reserved == totals.reserved == 0 and open_ == 0
          and attempts == calls)
    return ok, (f"{calls} calls, {open_} open, {attempts} attempts; balance {acc.balance} ledger {totals.balance}; "
                f"reserved {acc.reserved}")


# --------------------------------------------------------------------------- main


def fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000, help="numbers of the short-call phase and bare loop")
    parser.add_argument("--long-calls", type=int, default=6000, help="numbers of the long-call phase (0: skip)")
    parser.add_argument("--long-talk", default="40-50", help="talk seconds of the long-call phase")
    parser.add_argument("--db-server", default="mysql+pymysql://root@127.0.0.1:3306")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13", help="a Redis db of its own (flushed)")
    parser.add_argument("--max-channels", type=int, default=6000, help="NODE_MAX_CHANNELS of the dialer")
    parser.add_argument("--gateway-cps", type=float, default=5000.0, help="GATEWAY_CPS of the dialer")
    parser.add_argument("--no-answer-seconds", type=int, default=2,
                        help="originate timeout: how long unanswered calls ring (dialer and bare loop)")
    parser.add_argument("--phase-timeout", type=float, default=400.0)
    parser.add_argument("--skip-bare", action="store_true")
    parser.add_argument("--py-spy", choices=["short", "long"], help="record a py-spy profile of that phase")
    parser.add_argument("--py-spy-out", default="/tmp/dialer-profile.svg")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="run the dialer under tracemalloc: snapshots at 25 %%, 50 %% and 100 %% of the calls "
                             "final, their largest growth printed (slows the dialer down)")
    parser.add_argument("--traced-dialer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare-loop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.bare_loop:
        print(json.dumps(bare_loop(args.port, args.calls, args.audio, args.no_answer_seconds)), flush=True)
        return 0
    if args.traced_dialer:
        traced_dialer()
        return 0

    import redis
    import sqlalchemy as sa
    from alembic import command

    from api.cli import alembic_config
    from core.db import make_engine

    name = f"zc_bench_{secrets.token_hex(4)}"
    server = sa.create_engine(args.db_server, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    url = f"{args.db_server}/{name}?charset=utf8mb4"
    tmp = Path(tempfile.mkdtemp(prefix="zc_bench_dialer_"))
    rds = redis.Redis.from_url(args.redis_url)
    rds.flushdb()
    sims: list[Simulator] = []
    results: dict[str, dict[str, Any]] = {}
    try:
        command.upgrade(alembic_config(url), "head")
        engine = make_engine(url, pool_size=2)
        account_id, audio_id = seed(engine, tmp / "audio")
        audio_path = str(tmp / "audio" / f"{audio_id}.wav")
        print(f"database {name}, Redis {args.redis_url}, work dir {tmp}", flush=True)

        short = ["--answer-rate", "0.6", "--busy-rate", "0.3", "--no-answer-rate", "0.1", "--fail-rate", "0",
                 "--ring-seconds", "1-2", "--talk-seconds", "1-3"]
        sim = Simulator(tmp, *short)
        sims.append(sim)
        if not args.skip_bare:
            print(f"bare loop: {args.calls} originates ...", flush=True)
            out = subprocess.run([sys.executable, __file__, "--bare-loop", "--port", str(sim.port), "--calls",
                                  str(args.calls), "--audio", audio_path, "--no-answer-seconds",
                                  str(args.no_answer_seconds)], cwd=ROOT, capture_output=True, text=True,
                                 timeout=900)
            if out.returncode != 0:
                raise RuntimeError(f"bare loop failed: {out.stderr[-3000:]}")
            results["bare"] = json.loads(out.stdout.strip().splitlines()[-1])
            results["bare"]["max_concurrent"] = sim.stats()["max_concurrent"]
            time.sleep(4)  # let the bare loop's last channels end

        campaign = add_campaign(engine, account_id, audio_id, args.calls, "300")
        print(f"dialer, short calls: {args.calls} numbers ...", flush=True)
        results["short"] = run_dialer_phase(args, engine, rds, url, tmp, sim, campaign, args.calls, "short")
        sim.stop()

        if args.long_calls:
            sim = Simulator(tmp, "--answer-rate", "1", "--busy-rate", "0", "--no-answer-rate", "0", "--fail-rate",
                            "0", "--ring-seconds", "1-2", "--talk-seconds", args.long_talk)
            sims.append(sim)
            long_audio = add_audio(engine, account_id, tmp / "audio", 60)
            campaign = add_campaign(engine, account_id, long_audio, args.long_calls, "301")
            print(f"dialer, long calls: {args.long_calls} numbers, talk {args.long_talk} s ...", flush=True)
            results["long"] = run_dialer_phase(args, engine, rds, url, tmp, sim, campaign, args.long_calls, "long")
        books_ok, books = check_books(engine, account_id)
        engine.dispose()
    finally:
        for s in sims:
            s.stop()
        rds.flushdb()
        if not args.keep:
            with server.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        server.dispose()

    report(args, results, books_ok, books)
    if args.tracemalloc:
        print()
        memory_report(results["short"]["snapshots"])
    return 0


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]], books_ok: bool, books: str) -> None:
    bare, short, long_ = results.get("bare"), results["short"], results.get("long")
    cols = [("bare loop", bare), ("dialer short", short), ("dialer long", long_)]
    rows = [("calls completed", "completed", "d"), ("wall s", "wall", ".1f"),
            ("sustained originates/s", "rate", ".1f"), ("peak concurrent (simulator)", "max_concurrent", "d"),
            ("CPU ms per call", "cpu_ms_per_call", ".2f"),
            ("  mariadbd CPU ms per call (shared server)", "mariadbd_cpu_ms_per_call", ".2f"),
            ("  redis-server CPU ms per call (shared)", "redis_cpu_ms_per_call", ".2f"),
            ("  dialer + mariadbd + redis ms per call", "system_cpu_ms_per_call", ".2f"),
            ("SQL statements per call", "sql_per_call", ".2f"), ("Redis round trips per call", "redis_per_call", ".2f"),
            ("peak RSS MB", "rss_peak_mb", ".1f"), ("RSS at 25 % of the calls final MB", "rss_25_mb", ".1f"),
            ("RSS at 50 % MB", "rss_50_mb", ".1f"), ("RSS at the end (all final) MB", "rss_end_mb", ".1f")]
    print()
    print(f"{'':44s}" + "".join(f"{c:>15s}" for c, _ in cols))
    for label, key, spec in rows:
        print(f"{label:44s}" + "".join(f"{fmt((r or {}).get(key), spec):>15s}" for _, r in cols))
    print()

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    print(f"{'target':48s}{'measured':>16s}  result")
    print(f"{'>= 200 originates/s sustained':48s}{short['rate']:16.1f}  {verdict(short['rate'] >= TARGET_CPS)}")
    if long_:
        conc = long_["max_concurrent"]
        print(f"{'>= 5000 concurrent calls in one dialer':48s}{conc:16d}  {verdict(conc >= TARGET_CONCURRENT)}")
    if bare:
        ratio = short["rate"] / bare["rate"] if bare["rate"] else 0.0
        print(f"{'>= 50 % of the bare loop rate':48s}{ratio:15.0%}   {verdict(ratio >= TARGET_RATIO)}")
    growth = short["rss_end_mb"] / short["rss_25_mb"] - 1 if short["rss_25_mb"] else 0.0
    print(f"{'memory flat (RSS end vs 25 % of calls, <= +10 %)':48s}{growth:+15.1%}   {verdict(growth <= TARGET_FLAT)}")
    print(f"{'books balanced, one attempt per call':48s}{'':16s}  {verdict(books_ok)}  ({books})")


if __name__ == "__main__":
    sys.exit(main())
