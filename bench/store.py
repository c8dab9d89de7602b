"""The dialer's SQL work per call, in-process, without a switch: CPU of ``Store.claim`` + ``Store.finish``.

Usage: ``python bench/store.py [--calls 6000] [--batch 13] [--rounds 3] [--db-server URL] [--profile N]``

On an existing server (default the machine's MariaDB, ``mysql+pymysql://root@127.0.0.1:3306``) a
throw-away database ``zc_bench_<random>``, one account, one RUNNING campaign of ``--calls`` queued
numbers. Then, ``--rounds`` times over a slice of the calls, what the dialer does for a busy call:
``Store.claim`` of ``--batch`` calls (the engine's batch at 50 calls in flight on a real switch is
10-15), then ``Store.finish`` of the same attempts with the facts of a 486 Busy Here hangup. Prints
this process's CPU (user + system, ``time.process_time``) per call for each, the SQL statements per
call and the wall time; ``--profile N`` prints cProfile's N most expensive functions (by own time)
of one more round. The dialer's whole CPU per call on a real switch is in ``bench/realswitch.py``;
this isolates the part the database layer costs, which the ESL side does not touch, so a change to
the store can be judged in one quiet minute. Checks the books at the end (balance == ledger,
nothing reserved).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import dialer as bench_dialer  # noqa: E402
from bench.scratch_db import scratch_database  # noqa: E402
from core.call_states import HangupFacts  # noqa: E402
from core.campaign_states import CampaignStatus  # noqa: E402
from core.db import make_engine, utcnow  # noqa: E402
from core.models import Account, Campaign  # noqa: E402
from dialer.store import Candidate, Source, Store  # noqa: E402


def grant_all(candidates: list[Candidate]) -> list[Candidate]:
    return candidates


class Counter:
    def __init__(self, engine: sa.Engine) -> None:
        self.n = self.params = 0
        sa.event.listen(engine, "before_cursor_execute", self.count)

    def count(self, _conn: object, _cursor: object, _sql: str, params: object, _ctx: object, many: bool) -> None:
        self.n += 1
        rows = params if many else [params]
        self.params += sum(len(r) for r in rows if r)  # type: ignore[union-attr]


def one_round(store: Store, source: Source, calls: int, batch: int) -> tuple[float, float, int]:
    """Claim and finish ``calls`` calls in batches: (claim CPU s, finish CPU s, calls done)."""
    claim_s = finish_s = 0.0
    done = 0
    while done < calls:
        t0 = time.process_time()
        attempts = store.claim(source, batch, grant_all).claimed
        t1 = time.process_time()
        if not attempts:
            break
        now = utcnow()
        facts = HangupFacts(cause="USER_BUSY", q850=17, sip_status=486, ended_at=now, duration=1)
        finished = store.finish([(a, facts) for a in attempts])
        t2 = time.process_time()
        if len(finished) != len(attempts):
            raise RuntimeError(f"finished {len(finished)} of {len(attempts)}")
        claim_s += t1 - t0
        finish_s += t2 - t1
        done += len(attempts)
    return claim_s, finish_s, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=13)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db-server", default="mysql+pymysql://root@127.0.0.1:3306")
    parser.add_argument("--profile", type=int, default=0, help="print the N most expensive functions of one round")
    args = parser.parse_args()
    with scratch_database(args.db_server) as url:
        engine = make_engine(url, pool_size=2, pre_ping=False)
        with tempfile.TemporaryDirectory() as audio_dir:
            account_id, audio_id = bench_dialer.seed(engine, Path(audio_dir))
        rounds = args.rounds + (1 if args.profile else 0)
        campaign = bench_dialer.add_campaign(engine, account_id, audio_id, args.calls, "300", suffix="2")
        with engine.begin() as conn:
            conn.execute(sa.update(Campaign.__table__).where(Campaign.id == campaign)
                         .values(status=CampaignStatus.RUNNING))
            max_concurrent = conn.execute(sa.select(Account.max_concurrent_calls)
                                          .where(Account.id == account_id)).scalar_one()
        store = Store(engine, "bench", "bench-owner")
        store.register(0, "bench")
        source = next(s for s in store.due_sources() if s.campaign_id == campaign)
        source = Source(account_id, campaign, max_concurrent, 100_000, source.window)
        counter = Counter(engine)
        per_round = args.calls // rounds
        print(f"database {url}: {args.calls} calls, batches of {args.batch}")
        print(f"{'round':>6} {'claim CPU ms/call':>18} {'finish CPU ms/call':>19} {'both':>7} {'SQL/call':>9} "
              f"{'params/call':>12} {'wall s':>7}")
        totals = []
        for r in range(args.rounds):
            n0, p0, w0 = counter.n, counter.params, time.monotonic()
            claim_s, finish_s, done = one_round(store, source, per_round, args.batch)
            wall = time.monotonic() - w0
            both = 1000 * (claim_s + finish_s) / done
            totals.append(both)
            print(f"{r + 1:>6} {1000 * claim_s / done:>18.3f} {1000 * finish_s / done:>19.3f} {both:>7.3f} "
                  f"{(counter.n - n0) / done:>9.2f} {(counter.params - p0) / done:>12.1f} {wall:>7.1f}")
        print(f"median claim + finish CPU per call: {statistics.median(totals):.3f} ms")
        if args.profile:
            prof = cProfile.Profile(time.process_time)  # CPU only: waits on the server are not counted
            prof.enable()
            one_round(store, source, per_round, args.batch)
            prof.disable()
            out = io.StringIO()
            stats = pstats.Stats(prof, stream=out)
            stats.sort_stats("tottime").print_stats(args.profile)
            stats.sort_stats("cumulative").print_stats(r"/(dialer|billing|core)/", args.profile)
            print(out.getvalue())
        ok, books = bench_dialer.check_books(engine, account_id)
        print(f"books: {books}")
        store.unregister()
        engine.dispose()
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
