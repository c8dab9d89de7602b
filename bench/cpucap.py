"""The dialer and MariaDB on one core: is the rate what their CPU per call predicts?

Usage: ``python bench/cpucap.py [--calls 10000] [--dialer-core 0] [--rounds 1] [--nice -10] [--keep-logs]``

Needs 2 cores or more. One run:

* a private MariaDB (``bench/private_mariadb.py``: ``mariadbd --defaults-file=deploy/mariadb/zenscall.cnf``,
  durable commits as in production) and ``python -m dialer`` are pinned to ONE core
  (``--dialer-core``, every thread, with ``sched_setaffinity``);
* a private ``redis-server``, the FreeSWITCH simulator (load mode, the short-call mix of
  ``bench/dialer.py``: answer 60 % talk 1-3 s, busy 30 %, no answer 10 %) and this script run on
  the other cores, so the simulator's own CPU is not the dialer's;
* the dialer dials a campaign of ``--calls`` numbers until every call is final
  (``bench/dialer.py``'s ``run_dialer_phase``).

Figures: sustained originates/s (the middle 80 % of the attempts' start times), CPU seconds per
completed call of the dialer, mariadbd and redis-server (``/proc/<pid>/stat``, every thread), the
predicted rate ``1 core-second / (dialer + mariadbd CPU per call)`` and measured / predicted. Then,
over the steady window (the middle 80 % of the originates, sampled every 0.2 s), how the pinned
core's time split (``/proc/stat``): the dialer and mariadbd, interrupts, other processes of the
machine (they are not pinned away from it), idle. In that window measured / predicted is the pair's
share of the core, so the split says why a round misses: idle time means waiting (locks, batching,
pacing), other processes' time means a shared core. ``--nice`` gives the pair precedence over the
machine's other work. PASS when the rate is >= 400/s and, in the steady window, within 10 % of
what the pair's CPU per originate in that window predicts, and the books balance (the whole run's
CPU per call also holds the tail, where the calls still in flight end after the last originate:
with ~2,300 in flight its prediction is 15-18 % below the steady rate). ``--rounds N`` repeats the
dialer phase on fresh campaigns (same servers).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import dialer as bench_dialer  # noqa: E402
from bench.private_mariadb import PrivateMariaDB  # noqa: E402

TARGET_RATE = 400.0
TARGET_RATIO_GAP = 0.10


def pin(pid: int, cpus: set[int], nice: int = 0) -> int:
    """Pin every thread of a process to ``cpus`` and give it priority ``nice`` (threads it starts
    later inherit both); returns how many threads."""
    n = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
            if nice:
                os.setpriority(os.PRIO_PROCESS, int(task.name), nice)
            n += 1
        except (ProcessLookupError, FileNotFoundError):
            pass  # the thread ended meanwhile
    return n


def core_times(core: int) -> tuple[float, float, float]:
    """(busy, total, interrupts) seconds of one core since boot, from /proc/stat; interrupts
    (irq + softirq: loopback packets are delivered there) belong to no process."""
    tick = os.sysconf("SC_CLK_TCK")
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            v = [int(x) for x in line.split()[1:]]
            idle = v[3] + v[4]  # idle, iowait
            return (sum(v[:8]) - idle) / tick, sum(v[:8]) / tick, (v[5] + v[6]) / tick
    raise RuntimeError(f"no cpu{core} in /proc/stat")


def proc_cpu_s(pid: int) -> float:
    """user + system seconds of a whole process (every thread), from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Timeline(threading.Thread):
    """Every 0.2 s: wall time, CPU of the dialer and of mariadbd, busy time of the pinned core. The
    steady window (the middle 80 % of the originates) is then read off it."""

    def __init__(self, mariadbd: int, core: int) -> None:
        super().__init__(daemon=True)
        self.mariadbd, self.core = mariadbd, core
        self.samples: list[tuple[float, float, float, float, float, float]] = []
        self.stop = threading.Event()

    def _dialer(self) -> int | None:
        import psutil

        for child in psutil.Process().children():
            try:
                if "--traced-dialer" in child.cmdline():  # run_dialer_phase's dialer
                    return int(child.pid)
            except psutil.Error:
                continue
        return None

    def run(self) -> None:
        dialer = None
        while not self.stop.wait(0.2):
            dialer = dialer or self._dialer()
            busy, total, interrupts = core_times(self.core)
            self.samples.append((time.time(), proc_cpu_s(dialer) if dialer else 0.0, proc_cpu_s(self.mariadbd),
                                 busy, total, interrupts))

    def window(self, t0: float, t1: float) -> dict[str, float]:
        """Seconds of wall, dialer CPU, mariadbd CPU, core busy, core total between t0 and t1."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return {}
        a, b = inside[0], inside[-1]
        return {"from": a[0], "to": b[0], "wall": b[0] - a[0], "dialer": b[1] - a[1], "mariadbd": b[2] - a[2],
                "busy": b[3] - a[3], "total": b[4] - a[4], "interrupts": b[5] - a[5]}


def steady(engine: Any, campaign_id: str, timeline: Timeline) -> dict[str, float]:
    """The steady window: the middle 80 % of this campaign's originates, and what the core did in it."""
    import sqlalchemy as sa

    from core.models import Call, CallAttempt

    with engine.connect() as conn:
        starts = sorted(r[0].timestamp() for r in conn.execute(
            sa.select(CallAttempt.started_at).join(Call, Call.id == CallAttempt.call_id)
            .where(Call.campaign_id == campaign_id)))
    lo, hi = int(len(starts) * 0.1), int(len(starts) * 0.9)
    w = timeline.window(starts[lo], starts[hi])
    if not w:
        return {}
    return {**w, "originates": sum(1 for t in starts if w["from"] <= t <= w["to"])}


def causes(engine: Any, campaign_id: str) -> dict[str, int]:
    """How this campaign's attempts ended (hangup cause -> count)."""
    import sqlalchemy as sa

    from core.models import Call, CallAttempt

    with engine.connect() as conn:
        return {str(k): int(v) for k, v in conn.execute(
            sa.select(CallAttempt.hangup_cause, sa.func.count()).join(Call, Call.id == CallAttempt.call_id)
            .where(Call.campaign_id == campaign_id).group_by(CallAttempt.hangup_cause))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--dialer-core", type=int, default=0, help="the core the dialer and MariaDB share")
    parser.add_argument("--rounds", type=int, default=1, help="dialer phases, each on a fresh campaign")
    parser.add_argument("--nice", type=int, default=0,
                        help="scheduling priority of the dialer and MariaDB (e.g. -10: the machine's other "
                             "work yields the pinned core to them; needs root)")
    parser.add_argument("--phase-timeout", type=float, default=400.0)
    parser.add_argument("--keep-logs", action="store_true", help="keep the work directory (dialer and simulator logs)")
    args = parser.parse_args()

    import sqlalchemy as sa
    from alembic import command

    from api.cli import alembic_config
    from core.db import make_engine
    from tests.model.services import Redis, stop_all

    cores = os.sched_getaffinity(0)
    if len(cores) < 2 or args.dialer_core not in cores:
        print(f"needs 2 cores or more including {args.dialer_core}; this process may use {sorted(cores)}")
        return 2
    dialer_cpus, other_cpus = {args.dialer_core}, cores - {args.dialer_core}
    os.sched_setaffinity(0, other_cpus)  # this script, and what it starts (Redis, the simulator)

    tmp = Path(tempfile.mkdtemp(prefix="zc_bench_cpucap_"))
    mariadb = PrivateMariaDB().start()
    rounds: list[dict[str, Any]] = []
    try:
        threads = pin(mariadb.proc.pid, dialer_cpus, args.nice)
        redis_server = Redis(tmp)
        variables = mariadb.variables("version", "innodb_flush_log_at_trx_commit", "innodb_buffer_pool_size")
        print(f"MariaDB {variables['version']} pid {mariadb.proc.pid} ({threads} threads) and the dialer on core "
              f"{args.dialer_core}; redis-server pid {redis_server.proc.pid}, the simulator and this script on "
              f"{sorted(other_cpus)}; innodb_flush_log_at_trx_commit={variables['innodb_flush_log_at_trx_commit']}",
              flush=True)
        server = sa.create_engine(mariadb.server_url, isolation_level="AUTOCOMMIT")
        name = f"zc_bench_{secrets.token_hex(4)}"
        with server.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        server.dispose()
        url = f"{mariadb.server_url}/{name}?charset=utf8mb4"
        command.upgrade(alembic_config(url), "head")
        engine = make_engine(url, pool_size=2)
        account_id, audio_id = bench_dialer.seed(engine, tmp / "audio")
        rds = redis_server.client()
        sim = bench_dialer.Simulator(
            tmp, "--answer-rate", "0.6", "--busy-rate", "0.3", "--no-answer-rate", "0.1", "--fail-rate", "0",
            "--ring-seconds", "1-2", "--talk-seconds", "1-3")
        phase_args = argparse.Namespace(redis_url=redis_server.url, no_answer_seconds=2, gateway_cps=5000.0,
                                        max_channels=6000, phase_timeout=args.phase_timeout, py_spy=None)
        try:
            for n in range(args.rounds):
                pin(mariadb.proc.pid, dialer_cpus, args.nice)  # threads started since (connections) included
                campaign = bench_dialer.add_campaign(engine, account_id, audio_id, args.calls, str(300 + n))
                print(f"round {n + 1}: a campaign of {args.calls} numbers ...", flush=True)
                core0 = core_times(args.dialer_core)
                timeline = Timeline(mariadb.proc.pid, args.dialer_core)
                timeline.start()
                try:
                    result = bench_dialer.run_dialer_phase(
                        phase_args, engine, rds, url, tmp, sim, campaign, args.calls, f"cpucap{n}",
                        cpus=dialer_cpus, nice=args.nice,
                        servers={"mariadbd": mariadb.proc.pid, "redis": redis_server.proc.pid})
                finally:
                    timeline.stop.set()
                    timeline.join()
                core1 = core_times(args.dialer_core)
                result["steady"] = steady(engine, campaign, timeline)
                result["causes"] = causes(engine, campaign)
                result["core_busy_s"] = core1[0] - core0[0]
                result["core_total_s"] = core1[1] - core0[1]
                rounds.append(result)
                time.sleep(3)  # the simulator's last channels end
        finally:
            sim.stop()
        books_ok, books = bench_dialer.check_books(engine, account_id)
        engine.dispose()
    finally:
        stop_all()
        mariadb.stop()
        if args.keep_logs:
            print(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return report(args, rounds, books_ok, books)


def report(args: argparse.Namespace, rounds: list[dict[str, Any]], books_ok: bool, books: str) -> int:
    print()
    print(f"{args.calls} calls per round; dialer + MariaDB pinned to core {args.dialer_core}, nice {args.nice}")
    rows = []
    ok = True
    for r in rounds:
        dialer_ms, db_ms = r["cpu_ms_per_call"], r["mariadbd_cpu_ms_per_call"]
        predicted = 1000.0 / (dialer_ms + db_ms)
        ratio = r["rate"] / predicted
        w = r["steady"]
        # judged in the steady window: its rate against what the pair's CPU per originate in that
        # same window predicts (the whole run's CPU per call also holds the tail, where the calls
        # still in flight end after the last originate)
        w_ms = 1000 * (w.get("dialer", 0.0) + w.get("mariadbd", 0.0)) / max(1, w.get("originates", 0))
        w_rate = w.get("originates", 0) / (w.get("wall") or 1.0)
        w_ratio = w_rate * w_ms / 1000.0
        ok = ok and r["rate"] >= TARGET_RATE and abs(w_ratio - 1) <= TARGET_RATIO_GAP
        total = w.get("total") or 1.0
        pair = w.get("dialer", 0.0) + w.get("mariadbd", 0.0)
        rows.append({
            "r": r, "dialer_ms": dialer_ms, "db_ms": db_ms, "predicted": predicted, "ratio": ratio,
            "w_rate": w_rate, "w_ms": w_ms, "w_ratio": w_ratio,
            "w_pair": pair / total, "w_others": max(0.0, w.get("busy", 0.0) - pair - w.get("interrupts", 0.0)) / total,
            "w_irq": w.get("interrupts", 0.0) / total,
            "w_idle": 1 - w.get("busy", 0.0) / total})
    labels = [
        ("calls completed", lambda x: f"{x['r']['completed']:d}"),
        ("wall s (campaign started to last call final)", lambda x: f"{x['r']['wall']:.1f}"),
        ("sustained originates/s (middle 80 %)", lambda x: f"{x['r']['rate']:.1f}"),
        ("dialer CPU ms per call", lambda x: f"{x['dialer_ms']:.3f}"),
        ("mariadbd CPU ms per call", lambda x: f"{x['db_ms']:.3f}"),
        ("redis-server CPU ms per call (other core)", lambda x: f"{x['r']['redis_cpu_ms_per_call']:.3f}"),
        ("SQL statements per call", lambda x: f"{x['r']['sql_per_call']:.2f}"),
        ("Redis round trips per call", lambda x: f"{x['r']['redis_per_call']:.2f}"),
        ("predicted originates/s = 1 s / (dialer + mariadbd)", lambda x: f"{x['predicted']:.1f}"),
        ("measured / predicted (whole run's CPU)", lambda x: f"{x['ratio']:.3f}"),
        ("steady window (middle 80 % of originates):", lambda x: ""),
        ("  originates/s", lambda x: f"{x['w_rate']:.1f}"),
        ("  dialer + mariadbd CPU ms per originate", lambda x: f"{x['w_ms']:.3f}"),
        ("  measured / predicted (this window's CPU)", lambda x: f"{x['w_ratio']:.3f}"),
        ("  pinned core: dialer + mariadbd", lambda x: f"{x['w_pair']:.1%}"),
        ("  pinned core: interrupts (irq, softirq)", lambda x: f"{x['w_irq']:.1%}"),
        ("  pinned core: other processes", lambda x: f"{x['w_others']:.1%}"),
        ("  pinned core: idle", lambda x: f"{x['w_idle']:.1%}"),
        ("peak in flight", lambda x: f"{x['r']['peak_in_flight']:d}"),
        ("originates accepted (dialer) / run (simulator)",
         lambda x: f"{x['r']['dialer_originates']} / {x['r']['switch_originates']}"),
        ("dialer RSS at 25 % of the calls final / end, MB",
         lambda x: f"{x['r']['rss_25_mb']:.1f} / {x['r']['rss_end_mb']:.1f}"),
    ]
    print(f"{'':52s}" + "".join(f"{'round ' + str(i + 1):>16s}" for i in range(len(rows))))
    for label, cell in labels:
        print(f"{label:52s}" + "".join(f"{cell(x):>16s}" for x in rows))
    for i, x in enumerate(rows):
        print(f"round {i + 1} hangup causes: {x['r']['causes']}")
    print()
    print("In the steady window measured / predicted is the share of the core the dialer and mariadbd used:\n"
          "what is missing went to interrupts, to other processes (not pinned away from the core) or was idle.")
    print(f">= {TARGET_RATE:.0f} originates/s and within {TARGET_RATIO_GAP:.0%} of the prediction: "
          f"{'PASS' if ok else 'FAIL'}")
    print(f"books balanced, one attempt per call: {'PASS' if books_ok else 'FAIL'} ({books})")
    return 0 if ok and books_ok else 1


if __name__ == "__main__":
    sys.exit(main())
