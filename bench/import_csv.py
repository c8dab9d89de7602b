"""Campaign CSV import at scale: a generated CSV of a million numbers into MariaDB.

Usage: ``python bench/import_csv.py [--rows 1000000] [--defaults-file deploy/mariadb/zenscall.cnf |
--server-defaults | --db-server mysql+pymysql://root@127.0.0.1:3306] [--profile]``

By default it starts a MariaDB server of its own (``bench/private_mariadb.py``: a temporary
datadir, ``mariadbd --defaults-file=deploy/mariadb/zenscall.cnf``), so the figures are those of
the settings ZensCall ships, whatever the machine's own server uses; ``--server-defaults``
starts it with MariaDB's built-in defaults instead (128 MB buffer pool, 96 MB redo log) and
``--db-server`` uses an existing server as it is configured. In that server it creates a
throw-away database ``zc_bench_<random>``, migrates it, and in the same run measures

1. a plain bulk insert of the same pre-normalised rows into ``calls`` (Core executemany, the
   importer's batch size) for a reference campaign, then
2. ``import_campaign`` on the CSV (validation pass, parsing, normalisation, do-not-call lookups,
   duplicate handling, rejected rows) for another campaign of the same account,

and prints wall time, peak memory (tracemalloc and the growth of the resident set), rows/s and the
ratio, with PASS/FAIL against the targets: under 60 s, under 256 MB, at most 2x the plain insert.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import io
import logging
import pstats
import random
import resource
import secrets
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402
from alembic import command  # noqa: E402

from api.cli import alembic_config  # noqa: E402
from bench.private_mariadb import DEFAULT_CNF, PrivateMariaDB  # noqa: E402
from campaigns import importer  # noqa: E402
from core.call_states import CallStatus  # noqa: E402
from core.campaign_states import CampaignStatus  # noqa: E402
from core.db import make_engine, utcnow  # noqa: E402
from core.models import ZERO, Account, AudioFile, Call, Campaign, DncNumber  # noqa: E402
from core.phone import InvalidPhoneNumber, normalize_pk  # noqa: E402
from core.settings import load_settings  # noqa: E402

TARGET_SECONDS = 60.0
TARGET_MB = 256.0
TARGET_RATIO = 2.0
MOBILE_PREFIXES = ["300", "301", "302", "303", "305", "306", "311", "312", "313", "321", "331", "333",
                   "336", "340", "345", "346", "355"]


def _number(rng: random.Random) -> str:
    """A mobile number in one of the forms customers upload."""
    nsn = rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10_000_000):07d}"
    form = rng.randrange(8)
    if form == 0:
        return "0" + nsn
    if form == 1:
        return f"0{nsn[:3]}-{nsn[3:]}"
    if form == 2:
        return f"+92 {nsn[:3]} {nsn[3:]}"
    if form == 3:
        return "92" + nsn
    if form == 4:
        return nsn  # Excel dropped the leading zero
    if form == 5:
        return "0092" + nsn
    if form == 6:
        return f"+92{nsn}"
    return f"0{nsn[:3]} {nsn[3:]}"


_INVALID = ["9.23001E+11", "12345", "not a number", "0300-12", "+1 415 555 0100", "", "03001234567890"]


def generate(path: Path, rows: int, seed: int = 7) -> dict[str, int]:
    """A CSV with a header, ~1% invalid and ~1% duplicate rows (written in one pass, constant memory)."""
    rng = random.Random(seed)
    recent: list[str] = []
    invalid = duplicate = 0
    with path.open("w", newline="") as f:
        f.write("name,phone,city\r\n")
        for i in range(rows):
            roll = rng.random()
            if roll < 0.01:
                value = rng.choice(_INVALID)
                invalid += 1
            elif roll < 0.02 and recent:
                value = rng.choice(recent)
                duplicate += 1
            else:
                value = _number(rng)
                if len(recent) < 1000:
                    recent.append(value)
                else:
                    recent[rng.randrange(1000)] = value
            f.write(f"Customer {i},\"{value}\",Lahore\r\n")
    return {"invalid": invalid, "duplicate": duplicate}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plain_insert(engine: Any, path: Path, campaign: dict[str, Any], batch: int) -> tuple[float, int]:
    """The reference: the same numbers, normalised and deduplicated beforehand, bulk-inserted."""
    unique: dict[str, None] = {}
    with path.open() as f:
        next(f)
        for line in f:
            try:
                unique[normalize_pk(line.split(",", 1)[1].rsplit(",", 1)[0].strip('"'))] = None
            except InvalidPhoneNumber:
                pass
    numbers = list(unique)
    del unique
    now = utcnow()
    base = {"account_id": campaign["account_id"], "campaign_id": campaign["id"], "audio_id": campaign["audio_id"],
            "caller_id": None, "status": CallStatus.QUEUED, "max_retries": 0, "retry_delay_seconds": 300,
            "attempts_count": 0, "next_attempt_at": now, "billsec": 0, "cost": ZERO, "created_at": now,
            "updated_at": now}
    stmt = sa.insert(Call.__table__)
    started = time.perf_counter()
    with engine.connect() as conn:
        for i in range(0, len(numbers), batch):
            chunk = numbers[i:i + batch]
            # the importer's ids (time-ordered UUIDs), so both write the same rows
            ids = importer._time_ordered_ids(len(chunk))
            conn.execute(stmt, [{**base, "id": id_, "phone_number": n} for id_, n in zip(ids, chunk, strict=True)])
            conn.commit()
    return time.perf_counter() - started, len(numbers)


class RssSampler(threading.Thread):
    """The peak of the resident set above its level at start, sampled every 20 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.baseline = self.peak = _rss_now_mb()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.02):
            self.peak = max(self.peak, _rss_now_mb())

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return max(self.peak, _rss_now_mb()) - self.baseline


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--defaults-file", type=Path, default=DEFAULT_CNF,
                       help="start a private MariaDB with this configuration (default: the shipped one)")
    where.add_argument("--server-defaults", action="store_true",
                       help="start the private MariaDB with its built-in defaults (--no-defaults)")
    where.add_argument("--db-server", help="use this existing server instead of a private one, as configured")
    parser.add_argument("--profile", action="store_true", help="print the import's cProfile top functions")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also trace Python allocations (slows the import down, so off by default)")
    parser.add_argument("--keep", action="store_true", help="keep the database (for inspection)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    private = None
    if args.db_server is None:
        private = PrivateMariaDB(None if args.server_defaults else args.defaults_file, keep=args.keep).start()
        args.db_server = private.server_url
        print(f"private MariaDB on port {private.port}, "
              + ("built-in defaults" if args.server_defaults else f"--defaults-file={args.defaults_file}"))
    try:
        return run(args)
    finally:
        if private is not None:
            private.stop()


def run(args: argparse.Namespace) -> int:
    name = f"zc_bench_{secrets.token_hex(4)}"
    server = sa.create_engine(args.db_server, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        settings_used = {n: conn.exec_driver_sql(f"SELECT @@{n}").scalar_one() for n in SERVER_VARIABLES}
        print("MariaDB " + ", ".join(f"{n}={_mb(v) if n in _SIZES else v}" for n, v in settings_used.items()))
        conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    url = f"{args.db_server}/{name}?charset=utf8mb4"
    tmp = Path(tempfile.mkdtemp(prefix="zc_bench_"))
    try:
        command.upgrade(alembic_config(url), "head")
        engine = make_engine(url, pool_size=2)
        settings = dataclasses.replace(load_settings(), database_url=url, var_dir=tmp)

        with engine.begin() as conn:
            account_id = str(uuid.uuid4())
            conn.execute(sa.insert(Account.__table__).values(
                id=account_id, name="bench", active=True, balance=Decimal("0"), reserved=Decimal("0"),
                currency="PKR", rate_per_minute=Decimal("2.5"), pulse_seconds=30, max_concurrent_calls=50,
                created_at=utcnow()))
            audio_id = str(uuid.uuid4())
            conn.execute(sa.insert(AudioFile.__table__).values(
                id=audio_id, account_id=account_id, name="m", status="READY", source_format="wav",
                duration_ms=2000, size_bytes=32000, sha256="0" * 64, created_at=utcnow()))
            # a do-not-call list of a few thousand numbers, so the per-batch lookup is exercised
            rng = random.Random(11)
            conn.execute(sa.insert(DncNumber.__table__), [
                {"account_id": account_id, "phone_number": "+92" + rng.choice(MOBILE_PREFIXES)
                 + f"{rng.randrange(10_000_000):07d}", "created_at": utcnow()} for _ in range(5000)])
            campaigns = []
            for label in ("plain", "import"):
                campaign = {"id": str(uuid.uuid4()), "account_id": account_id, "audio_id": audio_id}
                conn.execute(sa.insert(Campaign.__table__).values(
                    **campaign, name=label, status=CampaignStatus.IMPORTING, created_at=utcnow(),
                    updated_at=utcnow()))
                campaigns.append(campaign)

        csv_path = importer.upload_path(settings, campaigns[1]["id"])
        csv_path.parent.mkdir(parents=True)
        t0 = time.perf_counter()
        made = generate(csv_path, args.rows)
        size_mb = csv_path.stat().st_size / 2**20
        print(f"generated {args.rows} rows ({size_mb:.1f} MB, {made['invalid']} invalid, "
              f"{made['duplicate']} duplicate) in {time.perf_counter() - t0:.1f}s")

        plain_seconds, plain_rows = plain_insert(engine, csv_path, campaigns[0], importer.BATCH_ROWS)
        print(f"plain bulk insert: {plain_rows} rows in {plain_seconds:.1f}s "
              f"({plain_rows / plain_seconds:,.0f} rows/s)")
        gc.collect()

        sampler = RssSampler()
        sampler.start()
        if args.tracemalloc:
            tracemalloc.start()
        profiler = cProfile.Profile() if args.profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        result = importer.import_campaign(campaigns[1]["id"], settings=settings, engine=engine,
                                          limits=dataclasses.replace(importer.ImportLimits.from_settings(settings),
                                                                     max_rows=max(args.rows, 1)))
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else 0
        tracemalloc.stop()
        rss_growth = sampler.stop()
        peak_mb = peak / 2**20

        print(f"import: {result}")
        print(f"import wall time: {seconds:.1f}s ({args.rows / seconds:,.0f} rows/s)")
        traced = f"tracemalloc peak {peak_mb:.1f} MB, " if args.tracemalloc else ""
        print(f"import peak memory: {traced}RSS growth {rss_growth:.1f} MB "
              f"(process max RSS {_rss_mb():.0f} MB, including the reference insert's number list)")
        ratio = seconds / plain_seconds
        print(f"ratio to plain insert: {ratio:.2f}x")
        checks = [
            ("wall time < 60 s", seconds < TARGET_SECONDS),
            ("peak memory < 256 MB", max(peak_mb, rss_growth) < TARGET_MB),
            ("<= 2x plain insert", ratio <= TARGET_RATIO),
            ("every row accounted for", result.get("rows_total") == args.rows and result["rows_total"] == (
                result["rows_accepted"] + result["rows_duplicate"] + result["rows_dnc"] + result["rows_invalid"])),
        ]
        for label, ok in checks:
            print(f"{'PASS' if ok else 'FAIL'}  {label}")
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
            print(out.getvalue())
        engine.dispose()
        return 0 if all(ok for _, ok in checks) else 1
    finally:
        with server.connect() as conn:
            if not args.keep:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        server.dispose()
        for p in sorted(tmp.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        tmp.rmdir()


SERVER_VARIABLES = ("version", "innodb_buffer_pool_size", "innodb_log_file_size", "innodb_flush_log_at_trx_commit",
                    "innodb_io_capacity", "max_allowed_packet")
_SIZES = {"innodb_buffer_pool_size", "innodb_log_file_size", "max_allowed_packet"}


def _mb(value: Any) -> str:
    return f"{int(value) // 2**20} MB"


if __name__ == "__main__":
    sys.exit(main())
