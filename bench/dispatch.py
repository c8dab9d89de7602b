"""The dialer's per-dispatch cost as pending calls grow from 1,000 to 1,000,000.

Usage: ``python bench/dispatch.py [--max 1000000] [--db-server URL]``

By default on a private MariaDB started with ``deploy/mariadb/zenscall.cnf`` (``bench/private_mariadb.py``,
the shipped 1 GB buffer pool); ``--db-server`` uses an existing server instead. A throw-away
database, one account, a RUNNING campaign whose calls are all due, a PAUSED campaign and single
calls not due for a day (both must be skipped); the running campaign's pending calls grow
1k -> 10k -> 100k -> 1M, and at each size the bench times what the dispatcher does per sweep:
``Store.due_sources()`` (which sources have due calls) and ``Store.claim`` of 1 and of 100 due calls
of the campaign (the engine's batch; the caps grant everything here), medians of repeated runs.
Prints a table and PASS when the cost at the largest size is within 2x of the cost at 1k for each
(flat: an indexed range scan per source).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.private_mariadb import PrivateMariaDB  # noqa: E402
from bench.scratch_db import scratch_database  # noqa: E402
from core.call_states import CallStatus  # noqa: E402
from core.campaign_states import CampaignStatus  # noqa: E402
from core.db import make_engine, utcnow  # noqa: E402
from core.models import Account, AudioFile, Call, Campaign  # noqa: E402
from dialer.store import Candidate, Source, Store  # noqa: E402

SIZES = (1_000, 10_000, 100_000, 1_000_000)
BATCH = 5_000


def insert_calls(engine: sa.Engine, n: int, start: int, account_id: str, audio_id: str,
                 campaign_id: str | None, due_at: object) -> None:
    now = utcnow()
    rows = []
    for i in range(start, start + n):
        rows.append({
            "id": str(uuid.UUID(int=(int(time.time() * 1000) << 80) | i)), "account_id": account_id,
            "campaign_id": campaign_id, "audio_id": audio_id, "phone_number": f"+92300{i:07d}",
            "status": CallStatus.QUEUED, "max_retries": 0, "retry_delay_seconds": 300, "attempts_count": 0,
            "next_attempt_at": due_at, "billsec": 0, "cost": Decimal("0"), "created_at": now, "updated_at": now,
        })
        if len(rows) == BATCH:
            with engine.begin() as conn:
                conn.execute(sa.insert(Call.__table__), rows)
            rows = []
    if rows:
        with engine.begin() as conn:
            conn.execute(sa.insert(Call.__table__), rows)


def timed(fn: Callable[[], Any], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def grant_all(candidates: list[Candidate]) -> list[Candidate]:
    return candidates


def measure(store: Store, source: Source) -> tuple[float, float, float, int]:
    """(due_sources ms, claim of 1 ms, claim of 100 ms, sources found)."""
    sources = store.due_sources()

    def claim(n: int) -> None:
        got = store.claim(source, n, grant_all)
        if len(got.claimed) != n:
            raise RuntimeError(f"claimed {len(got.claimed)} of {n}")

    return timed(store.due_sources, 15), timed(lambda: claim(1), 15), timed(lambda: claim(100), 5), len(sources)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max", type=int, default=1_000_000)
    parser.add_argument("--db-server", help="an existing server (default: a private MariaDB with the shipped file)")
    args = parser.parse_args()
    private = None if args.db_server else PrivateMariaDB().start()
    server_url = args.db_server or private.server_url
    scratch = contextlib.ExitStack()
    try:
        url = scratch.enter_context(scratch_database(server_url))
        engine = make_engine(url, pool_size=2)
        now = utcnow()
        account_id, audio_id = str(uuid.uuid4()), str(uuid.uuid4())
        running, paused = str(uuid.uuid4()), str(uuid.uuid4())
        with engine.begin() as conn:
            conn.execute(sa.insert(Account.__table__).values(
                id=account_id, name="bench", active=True, balance=Decimal("100000000"), reserved=Decimal("0"),
                currency="PKR", rate_per_minute=Decimal("2.5"), pulse_seconds=30, max_concurrent_calls=100_000,
                created_at=now))
            conn.execute(sa.insert(AudioFile.__table__).values(
                id=audio_id, account_id=account_id, name="m", status="READY", source_format="WAV",
                duration_ms=5000, size_bytes=80044, sha256="0" * 64, created_at=now))
            for cid, status in ((running, CampaignStatus.RUNNING), (paused, CampaignStatus.PAUSED)):
                conn.execute(sa.insert(Campaign.__table__).values(
                    id=cid, account_id=account_id, name=status.value, audio_id=audio_id, status=status,
                    max_retries=0, retry_delay_seconds=300, concurrent_limit=100_000, window_start="00:00",
                    window_end="23:59", timezone="Asia/Karachi", created_at=now, updated_at=now))
        # calls that must be skipped: a paused campaign's, and single calls not due for a day
        insert_calls(engine, 50_000, 10_000_000, account_id, audio_id, paused, now - timedelta(minutes=5))
        insert_calls(engine, 20_000, 20_000_000, account_id, audio_id, None, now + timedelta(days=1))
        store = Store(engine, "bench", "bench-owner")
        source = Source(account_id, running, 100_000, 100_000)
        print(f"database {url}")
        print(f"{'pending (running campaign)':>28} {'due_sources ms':>15} {'claim 1 ms':>11} {'claim 100 ms':>13} "
              f"{'sources':>8}")
        results: dict[int, tuple[float, float, float]] = {}
        have = 0
        for size in [s for s in SIZES if s <= args.max]:
            insert_calls(engine, size - have, have, account_id, audio_id, running, now - timedelta(minutes=1))
            with engine.connect() as conn:  # let InnoDB settle its statistics after the growth
                conn.exec_driver_sql("ANALYZE TABLE calls")
            sweep, one, hundred, found = measure(store, source)
            have = size
            results[size] = (sweep, one, hundred)
            print(f"{size:>28,} {sweep:>15.2f} {one:>11.2f} {hundred:>13.2f} {found:>8}")
        first, last = results[min(results)], results[max(results)]
        ratios = [b / a for a, b in zip(first, last, strict=True)]
        verdict = "PASS" if all(r <= 2.0 for r in ratios) else "FAIL"
        print(f"{verdict}  at {max(results):,} pending vs {min(results):,}: due_sources {ratios[0]:.2f}x, "
              f"claim 1 {ratios[1]:.2f}x, claim 100 {ratios[2]:.2f}x (target: flat, <= 2x)")
        engine.dispose()
        return 0 if verdict == "PASS" else 1
    finally:
        scratch.close()  # drops the database
        if private is not None:
            private.stop()


if __name__ == "__main__":
    sys.exit(main())
