"""Webhook deliveries beside the dialer: a receiver that sleeps 1 s per request must slow neither the
dialer nor another account's deliveries.

Usage: ``python bench/webhooks.py [--calls 1000] [--workers 6] [--concurrency 4] [--sweep-seconds 1] [--measure 60]
[--db-server mysql+pymysql://root@127.0.0.1:3306] [--redis-url redis://127.0.0.1:6379/13]``

On a throw-away database (``zc_bench_<random>``, dropped at the end) and its own Redis db (flushed),
with the simulator in load mode (``bench/dialer.py``'s seed and dialer phase):

1. **dialer alone**: ``python -m dialer`` dials a campaign of ``--calls`` numbers; no endpoint.
2. **dialer with webhooks**: the account gets an endpoint for ``"*"`` on a receiver (127.0.0.1) that
   sleeps 1 s before answering 200; ``python -m webhooks`` and ``--workers`` RQ workers
   (``rq.SimpleWorker``, ``WEBHOOK_ENDPOINT_CONCURRENCY=--concurrency``) run. A second account
   has an endpoint on a receiver that answers at once, and gets one event every 0.2 s throughout.
   The dialer dials another ``--calls`` numbers while the first account's events pile up.
3. deliveries go on for ``--measure`` seconds after the dialer is done.

Figures: the dialer's sustained originates/s in 1 and 2; deliveries/s to the slow receiver (over
phases 2 and 3) and the events still waiting for it; the other account's delivery latency
(event written -> request received) p50 / p95 / max while the slow receiver is backlogged, also
split into the events written while the dialer ran and those written after it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.dialer import Simulator, add_campaign, run_dialer_phase, seed  # noqa: E402


class Receiver:
    """Counts POSTs; ``delay`` seconds before each 200. Records the event id and arrival time."""

    def __init__(self, delay: float) -> None:
        self.arrivals: list[tuple[str, float]] = []
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                arrived = time.time()
                if delay:
                    time.sleep(delay)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with lock:
                    outer.arrivals.append((self.headers.get("ZensCall-Event-Id", ""), arrived))

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def add_endpoint(engine: Any, account_id: str, url: str) -> None:
    import sqlalchemy as sa

    from core.db import utcnow
    from core.models import WebhookEndpoint, new_id
    from webhooks.signing import new_secret

    with engine.begin() as conn:
        conn.execute(sa.insert(WebhookEndpoint.__table__).values(
            id=new_id(), account_id=account_id, url=url, events=["*"], enabled=True, secret=new_secret(),
            created_at=utcnow(), updated_at=utcnow()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=6, help="webhook RQ workers")
    parser.add_argument("--concurrency", type=int, default=4, help="WEBHOOK_ENDPOINT_CONCURRENCY")
    parser.add_argument("--sweep-seconds", type=float, default=1.0, help="WEBHOOK_SWEEP_SECONDS")
    parser.add_argument("--measure", type=float, default=60.0, help="seconds of deliveries after the dialer")
    parser.add_argument("--db-server", default="mysql+pymysql://root@127.0.0.1:3306")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13", help="a Redis db of its own (flushed)")
    parser.add_argument("--phase-timeout", type=float, default=300.0)
    args = parser.parse_args()
    # what bench/dialer.py's phase reads
    args.no_answer_seconds, args.gateway_cps, args.max_channels, args.py_spy = 2, 5000.0, 6000, None

    import redis
    import sqlalchemy as sa
    from alembic import command

    from api.cli import alembic_config
    from core import outbox
    from core.db import make_engine, utcnow
    from core.models import WebhookEvent, WebhookSend, new_id

    name = f"zc_bench_{secrets.token_hex(4)}"
    server = sa.create_engine(args.db_server, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    url = f"{args.db_server}/{name}?charset=utf8mb4"
    tmp = Path(tempfile.mkdtemp(prefix="zc_bench_webhooks_"))
    rds = redis.Redis.from_url(args.redis_url)
    rds.flushdb()
    procs: list[subprocess.Popen[bytes]] = []
    sim = None
    stop_other = threading.Event()
    try:
        command.upgrade(alembic_config(url), "head")
        engine = make_engine(url, pool_size=4)
        account_id, audio_id = seed(engine, tmp / "audio")
        other_account, _ = seed(engine, tmp / "audio-other")
        print(f"database {name}, Redis {args.redis_url}, work dir {tmp}", flush=True)
        sim = Simulator(tmp, "--answer-rate", "0.6", "--busy-rate", "0.3", "--no-answer-rate", "0.1",
                        "--fail-rate", "0", "--ring-seconds", "1-2", "--talk-seconds", "1-3")

        alone = add_campaign(engine, account_id, audio_id, args.calls, "300")
        print(f"1. dialer alone: {args.calls} calls ...", flush=True)
        first = run_dialer_phase(args, engine, rds, url, tmp, sim, alone, args.calls, "alone")
        with engine.begin() as conn:  # the first phase's events were for nobody
            conn.execute(sa.delete(WebhookEvent.__table__))

        slow, fast = Receiver(1.0), Receiver(0.0)
        add_endpoint(engine, account_id, slow.url)
        add_endpoint(engine, other_account, fast.url)
        env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": args.redis_url, "VAR_DIR": str(tmp),
               "WEBHOOK_ALLOW_PRIVATE": "true", "WEBHOOK_ENDPOINT_CONCURRENCY": str(args.concurrency),
               "WEBHOOK_SWEEP_SECONDS": str(args.sweep_seconds)}
        logs = open(tmp / "webhooks.log", "w")  # noqa: SIM115
        procs.append(subprocess.Popen([sys.executable, "-m", "webhooks"], cwd=ROOT, env=env, stdout=logs,
                                      stderr=subprocess.STDOUT))
        for _ in range(args.workers):
            procs.append(subprocess.Popen([sys.executable, "-m", "rq.cli", "worker", "--worker-class",
                                           "rq.SimpleWorker", "--url", args.redis_url, "webhooks"],
                                          cwd=ROOT, env=env, stdout=logs, stderr=subprocess.STDOUT))
        written: dict[str, float] = {}

        def other_events() -> None:
            while not stop_other.wait(0.2):
                now = utcnow()
                # a subject per event, like events of many calls (one subject's events go one at a time)
                row = outbox.event(other_account, "ping", "webhook", new_id(), outbox.time_sequence(now), now,
                                   {"n": len(written)})
                with engine.begin() as conn:
                    outbox.write(conn, [row])
                written[row["id"]] = now.timestamp()

        threading.Thread(target=other_events, daemon=True).start()
        time.sleep(3)  # workers up
        second_campaign = add_campaign(engine, account_id, audio_id, args.calls, "301")
        print(f"2. dialer with webhooks: {args.calls} calls, a receiver sleeping 1 s per request ...", flush=True)
        started = time.time()
        second = run_dialer_phase(args, engine, rds, url, tmp, sim, second_campaign, args.calls, "webhooks")
        dialer_done = time.time()
        print(f"3. deliveries for {args.measure:.0f} s more ...", flush=True)
        time.sleep(args.measure)
        stop_other.set()
        ended = time.time()
        with engine.connect() as conn:
            waiting = conn.execute(sa.select(sa.func.count()).select_from(WebhookSend.__table__).where(
                WebhookSend.status == "PENDING", WebhookSend.account_id == account_id)).scalar_one()
            events = conn.execute(sa.select(sa.func.count()).select_from(WebhookEvent.__table__).where(
                WebhookEvent.account_id == account_id)).scalar_one()
            # the other account's events written while the dialer ran: written -> fanned out
            fan_delays = sorted((f - c).total_seconds() for c, f in conn.execute(
                sa.select(WebhookEvent.created_at, WebhookEvent.fanned_out_at).where(
                    WebhookEvent.account_id == other_account, WebhookEvent.fanned_out_at.is_not(None),
                    WebhookEvent.created_at >= datetime.fromtimestamp(started, UTC),
                    WebhookEvent.created_at < datetime.fromtimestamp(dialer_done, UTC))))
        delivered = [t for _, t in slow.arrivals if started <= t <= ended]
        latencies = sorted(t - written[e] for e, t in fast.arrivals if e in written)
        # while the first account's backlog grows (the dialer's burst) and while it is only drained
        during = sorted(t - written[e] for e, t in fast.arrivals if e in written and written[e] < dialer_done)
        after = sorted(t - written[e] for e, t in fast.arrivals if e in written and written[e] >= dialer_done)
        engine.dispose()
    finally:
        stop_other.set()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if sim is not None:
            sim.stop()
        rds.flushdb()
        with server.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        server.dispose()

    span = ended - started
    print()
    print(f"{'dialer alone: sustained originates/s':<58}{first['rate']:>10.1f}")
    print(f"{'dialer with webhooks flowing: sustained originates/s':<58}{second['rate']:>10.1f}"
          f"  ({second['rate'] / first['rate']:.2f}x)")
    print(f"{'dialer wall s, first originate to last call final (alone / with)':<58}{first['wall']:>10.1f}"
          f" / {second['wall']:.1f}")
    print(f"{'SQL statements per call (alone / with webhooks)':<58}{first['sql_per_call']:>10.2f}"
          f" / {second['sql_per_call']:.2f}")
    print(f"{'events written for the slow receiver':<58}{events:>10d}")
    print(f"{'deliveries/s to the receiver sleeping 1 s':<58}{len(delivered) / span:>10.2f}"
          f"  ({len(delivered)} in {span:.0f} s, {args.workers} workers, concurrency {args.concurrency})")
    print(f"{'sends still waiting for it at the end':<58}{waiting:>10d}")
    if latencies:
        print(f"{'other account: delivery latency p50 / p95 / max, s':<58}"
              f"{statistics.median(latencies):>10.2f} / {latencies[int(0.95 * (len(latencies) - 1))]:.2f}"
              f" / {latencies[-1]:.2f}  ({len(latencies)} of {len(written)} events)")
    for label, part in (("written while the dialer ran", during), ("written after the dialer", after)):
        if part:
            print(f"{'  ' + label:<58}{statistics.median(part):>10.2f} / {part[int(0.95 * (len(part) - 1))]:.2f}"
                  f" / {part[-1]:.2f}  ({len(part)} events)")
    if fan_delays:
        print(f"{'    of which written -> fanned out (the sweeper)':<58}{statistics.median(fan_delays):>10.2f}"
              f" / {fan_delays[int(0.95 * (len(fan_delays) - 1))]:.2f} / {fan_delays[-1]:.2f}")
    print(f"finished {datetime.now(UTC).isoformat(timespec='seconds')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
