"""The dialer's per-dispatch cost as pending calls grow from 1,000 to 1,000,000.

Usage: ``python bench/dispatch.py [--max 1000000] [--db-server mysql+pymysql://root@127.0.0.1:3306]
[--buffer-pool-mb 2048]``

Creates a throw-away MariaDB database, one account, a RUNNING campaign whose calls are all due, a
PAUSED campaign and single calls that must be skipped, then grows the running campaign's pending
calls 1k -> 10k -> 100k -> 1M and at each size times ``Store.due_calls(200)`` (the dispatcher's
sweep query) and ``Store.claim`` of one due call (median of repeated runs). Prints a table and
PASS when the cost at 1M is within 2x of the cost at 1k (flat: an indexed range scan per source).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from alembic import command

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.cli import alembic_config  # noqa: E402
from core.call_states import CallStatus  # noqa: E402
from core.campaign_states import CampaignStatus  # noqa: E402
from core.db import make_engine, make_session_factory, utcnow  # noqa: E402
from core.models import Account, AudioFile, Call, Campaign  # noqa: E402
from dialer.store import Store  # noqa: E402

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


def timed(fn: object, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max", type=int, default=1_000_000)
    parser.add_argument("--db-server", default="mysql+pymysql://root@127.0.0.1:3306")
    parser.add_argument("--buffer-pool-mb", type=int, default=0,
                        help="set innodb_buffer_pool_size for the run (restored after)")
    args = parser.parse_args()
    server = sa.create_engine(args.db_server, isolation_level="AUTOCOMMIT")
    name = f"zc_bench_{secrets.token_hex(4)}"
    with server.connect() as conn:
        original_pool = int(conn.exec_driver_sql("SELECT @@innodb_buffer_pool_size").scalar_one())
        if args.buffer_pool_mb:
            conn.exec_driver_sql(f"SET GLOBAL innodb_buffer_pool_size = {args.buffer_pool_mb * 2**20}")
            time.sleep(2)
        conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    url = f"{args.db_server}/{name}?charset=utf8mb4"
    try:
        command.upgrade(alembic_config(url), "head")
        engine = make_engine(url, pool_size=2)
        now = utcnow()
        account_id, audio_id = str(uuid.uuid4()), str(uuid.uuid4())
        running, paused = str(uuid.uuid4()), str(uuid.uuid4())
        with engine.begin() as conn:
            conn.execute(sa.insert(Account.__table__).values(
                id=account_id, name="bench", active=True, balance=Decimal("100000000"), reserved=Decimal("0"),
                currency="PKR", rate_per_minute=Decimal("2.5"), pulse_seconds=30, max_concurrent_calls=1000,
                created_at=now))
            conn.execute(sa.insert(AudioFile.__table__).values(
                id=audio_id, account_id=account_id, name="m", status="READY", source_format="WAV",
                duration_ms=5000, size_bytes=80044, sha256="0" * 64, created_at=now))
            for cid, status in ((running, CampaignStatus.RUNNING), (paused, CampaignStatus.PAUSED)):
                conn.execute(sa.insert(Campaign.__table__).values(
                    id=cid, account_id=account_id, name=status.value, audio_id=audio_id, status=status,
                    max_retries=0, retry_delay_seconds=300, concurrent_limit=100, window_start="00:00",
                    window_end="23:59", timezone="Asia/Karachi", created_at=now, updated_at=now))
        # calls that must be skipped: a paused campaign's, and single calls not due for a day
        insert_calls(engine, 50_000, 10_000_000, account_id, audio_id, paused, now - timedelta(minutes=5))
        insert_calls(engine, 20_000, 20_000_000, account_id, audio_id, None, now + timedelta(days=1))
        store = Store(make_session_factory(engine), "bench")
        print(f"{'pending (running campaign)':>28} {'due_calls(200) ms':>18} {'claim ms':>10} {'rows returned':>14}")
        results = {}
        have = 0
        for size in [s for s in SIZES if s <= args.max]:
            insert_calls(engine, size - have, have, account_id, audio_id, running, now - timedelta(minutes=1))
            have = size
            with engine.connect() as conn:  # let InnoDB settle its statistics after the growth
                conn.exec_driver_sql("ANALYZE TABLE calls")
            due = store.due_calls(200)
            sweep_ms = timed(lambda: store.due_calls(200), 15)
            claimable = iter(store.due_calls(200))
            claim_ms = timed(lambda it=claimable: store.claim(next(it)), 15)
            results[size] = sweep_ms
            print(f"{size:>28,} {sweep_ms:>18.2f} {claim_ms:>10.2f} {len(due):>14}")
        first, last = results[min(results)], results[max(results)]
        ratio = last / first
        verdict = "PASS" if ratio <= 2.0 else "FAIL"
        print(f"{verdict}  per-dispatch cost at {max(results):,} pending is {ratio:.2f}x the cost at "
              f"{min(results):,} (target: flat, <= 2x)")
        return 0 if verdict == "PASS" else 1
    finally:
        with server.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
            if args.buffer_pool_mb:
                conn.exec_driver_sql(f"SET GLOBAL innodb_buffer_pool_size = {original_pool}")
        server.dispose()


if __name__ == "__main__":
    sys.exit(main())
