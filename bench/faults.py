"""Faults injected into a running campaign, on private MariaDB and Redis servers.

Usage: ``python bench/faults.py [--quick] [--only dialer_kill9,esl_drop,...] [--keep-logs] [--verbose]``

Everything runs on services of its own (``tests/model/services.py``), started here and stopped at
the end (also on errors and Ctrl-C): a MariaDB server (``mariadb-install-db`` into a temporary
datadir, ``mariadbd`` on a free port of 127.0.0.1), a ``redis-server`` on a free port with no
persistence, the FreeSWITCH simulator, an RQ worker (``campaigns.worker.Worker``, whose maintenance
tick re-enqueues stalled imports after ``IMPORT_STALL_SECONDS``) and ``python -m dialer``
subprocesses, and the API in-process (Flask test client). The machine's own MariaDB and Redis are
never touched.

For each fault a fresh account runs a campaign created through the API (CSV import by the RQ
worker) of numbers whose last digits 0-9 choose the simulator's outcome (answered, busy, no
answer, rejected...), ``max_retries`` 1 and a one-second retry delay (set in SQL), and the fault is
injected once about a quarter of its calls are final:

* ``dialer_kill9``: the dialer is killed -9, a new one started (it adopts the attempts of the dead
  one once its SQL heartbeat is older than ``DIALER_OWNER_STALE_SECONDS``);
* ``esl_drop``: the simulator drops every ESL connection (``api sim_drop_all``);
* ``sim_restart``: the simulator is killed and started again on the same port (channels lost);
* ``redis_restart``: the private Redis is killed and started again empty (queues, leases gone);
* ``mariadb_restart``: the private MariaDB is killed -9 and started again on the same datadir;
* ``worker_kill9``: the RQ worker is killed -9 in the middle of importing a 200,000-row CSV (most
  rows on the account's do-not-call list, so the import does the full work but only a few hundred
  calls are dialed); a new worker is started, and its maintenance tick enqueues the stalled import
  again.

Then, once the campaign completes (or the deadline passes), every invariant of
``tests/model/invariants.py`` is checked against the simulator's own call log: every call in one
final state; each call's attempts numbered 1..n <= max_retries + 1, all ended, the next one
reserved only after the previous one was settled, none after an answer or an unknown outcome; one
number never on two channels at once, one attempt originated once, the account's and the
campaign's caps never exceeded on the switch; every answered channel charged once at the frozen
rate for the seconds the switch counted, or — when the dialer could not see the call end and no
record of the switch came (the switch restarted with the call up, or the call ended while no
dialer listened) — its attempt ended OUTCOME_UNKNOWN, never retried, with its reservation held;
the balance equals the sum of the ledger and what stays reserved is exactly the holds of those
unknown attempts. The table shows how many attempts ended unknown and what they hold.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.model import invariants  # noqa: E402
from tests.model.services import Dialer, Services, Simulator, Tenant, stop_all, wait, window  # noqa: E402

TIME_SCALE = 20.0
NODE_LIMIT = 100
FAULTS = ["dialer_kill9", "esl_drop", "sim_restart", "redis_restart", "mariadb_restart", "worker_kill9"]
DIALER_ENV = {"CAP_LEASE_SECONDS": 20, "NODE_MAX_CHANNELS": NODE_LIMIT, "DIALER_OWNER_STALE_SECONDS": 5,
              "CDR_WAIT_SECONDS": 10}


@dataclass
class Result:
    fault: str
    calls: int = 0
    final: int = 0
    unknown: int = 0
    held: Decimal = Decimal(0)
    completed: bool = False
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems and self.completed and self.final == self.calls > 0


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.svc = Services(tmp, import_stall_seconds=args.import_stall)
        self.svc.start_worker()

    def counts(self, campaign_id: str) -> tuple[int, int]:
        """(calls, final calls) of a campaign."""
        import sqlalchemy as sa

        from core.call_states import CallStatus
        from core.models import Call

        final = [s.value for s in CallStatus if s.is_final]
        with self.svc.sql.connect() as conn:
            total, done = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((Call.status.in_(final), 1),
                                                                                else_=0)), 0))
                .where(Call.campaign_id == campaign_id)).one()
        return int(total), int(done)

    def create_campaign(self, tenant: Tenant, audio_id: str, phones: list[str]) -> str:
        response = self.svc.post_campaign(tenant, audio_id, phones, window=window(2, 4),  # closed until opened
                                          max_retries=1, concurrent_limit=self.args.concurrency)
        assert response.status_code == 201, response.get_json()
        return str(response.get_json()["id"])

    def open_campaign(self, campaign_id: str) -> None:
        """A one-second retry delay and a calling window around now: dialing starts."""
        import sqlalchemy as sa

        from core.models import Call, Campaign

        start, end = window(-2, 4)
        with self.svc.sql.begin() as conn:
            conn.execute(sa.update(Call).where(Call.campaign_id == campaign_id).values(retry_delay_seconds=1))
            conn.execute(sa.update(Campaign).where(Campaign.id == campaign_id)
                         .values(retry_delay_seconds=1, window_start=start, window_end=end))

    def verify(self, result: Result, tenant: Tenant, campaign_id: str, sim: Simulator) -> None:
        result.calls, result.final = self.counts(campaign_id)
        result.completed = self.svc.campaign_status(campaign_id) == "COMPLETED"
        snap = invariants.snapshot(self.svc.sql, [tenant.account_id], sim.rows())
        report = invariants.quiet(snap, NODE_LIMIT)
        result.problems += report.problems
        unknown = [a for rows in snap.attempts.values() for a in rows if a["hangup_cause"] == "OUTCOME_UNKNOWN"]
        result.unknown = len(unknown)
        result.held = Decimal(snap.accounts[tenant.account_id]["reserved"])

    def run_fault(self, fault: str) -> Result:
        result = Result(fault)
        node = f"faults-{fault.replace('_', '-')}"
        sim = Simulator(self.tmp, fault, TIME_SCALE)
        dialer: Dialer | None = None
        try:
            self.svc.ensure_worker()
            dialer = self.svc.start_dialer(sim, node, **DIALER_ENV)
            tenant = self.svc.tenant(balance="100000", max_concurrent_calls=self.args.concurrency)
            audio_id = self.svc.audio(tenant, seconds=self.args.message_seconds)
            n = self.args.numbers
            prefix = f"0345{secrets.randbelow(1000):03d}"
            phones = [f"{prefix}{i // 10:03d}{i % 10}" for i in range(n)]
            if fault == "worker_kill9":
                campaign_id = self.killed_import(tenant, audio_id, phones)
            else:
                campaign_id = self.create_campaign(tenant, audio_id, phones)
                wait("the import", lambda: self.svc.campaign_status(campaign_id) == "RUNNING", 60)
            self.open_campaign(campaign_id)
            started = time.monotonic()
            if fault != "worker_kill9":
                wait("a quarter of the calls to end", lambda: self.counts(campaign_id)[1] >= n // 4, 120, 0.05)
                dialer = self.inject(fault, sim, dialer, node)
            try:
                wait("the campaign to complete", lambda: self.svc.campaign_status(campaign_id) == "COMPLETED",
                     self.args.complete_timeout, 0.5)
            except TimeoutError as exc:
                result.problems.append(str(exc))
            result.seconds = time.monotonic() - started
            wait("the switch to have no channel left", lambda: sim.current() == 0, 30)
            if not dialer.alive():
                result.problems.append("the dialer died")
            self.verify(result, tenant, campaign_id, sim)
        except Exception as exc:  # noqa: BLE001 - one fault's failure is reported, the others still run
            result.problems.append(f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
        finally:
            for d in self.svc.live_dialers():
                d.proc.stop()
            sim.stop()
        if result.problems:
            print(f"  {fault}: " + "; ".join(result.problems[:5]), file=sys.stderr)
            if dialer is not None and self.args.verbose:
                print(dialer.proc.tail(4000), file=sys.stderr)
        return result

    def inject(self, fault: str, sim: Simulator, dialer: Dialer, node: str) -> Dialer:
        print(f"  {fault}: injecting", file=sys.stderr)
        if fault == "dialer_kill9":
            dialer.proc.kill9()
            return self.svc.start_dialer(sim, node, **DIALER_ENV)
        if fault == "esl_drop":
            assert sim.api("sim_drop_all").startswith("+OK")
        elif fault == "sim_restart":
            sim.restart()
        elif fault == "redis_restart":
            self.svc.redis.kill9()
            time.sleep(1.0)
            self.svc.redis.start()
            self.svc.ensure_worker()
        elif fault == "mariadb_restart":
            self.svc.db.kill9()
            time.sleep(2.0)  # calls end while SQL is away: their hangup events cannot be written
            self.svc.db.start()
            self.svc.ensure_worker()
        return dialer

    def killed_import(self, tenant: Tenant, audio_id: str, phones: list[str]) -> str:
        """A CSV of ``--csv-rows`` rows: the campaign's numbers spread among numbers on the account's
        do-not-call list. The worker is killed -9 half-way through the import, a new one started."""
        import sqlalchemy as sa

        from core.db import utcnow
        from core.models import Campaign, CampaignRejectedRow, DncNumber
        from core.phone import normalize_pk

        rows = self.args.csv_rows
        blocked = [f"0311{i:07d}" for i in range(rows - len(phones))]
        now = utcnow()
        with self.svc.sql.begin() as conn:
            for i in range(0, len(blocked), 20000):
                conn.execute(sa.insert(DncNumber.__table__), [
                    {"account_id": tenant.account_id, "phone_number": normalize_pk(p), "created_at": now}
                    for p in blocked[i:i + 20000]])
        step = max(1, len(blocked) // max(1, len(phones)))
        mixed: list[str] = []
        it = iter(phones)
        for i, p in enumerate(blocked):
            mixed.append(p)
            if i % step == 0:
                mixed.append(next(it, ""))
        mixed += list(it)
        mixed = [p for p in mixed if p]
        campaign_id = self.create_campaign(tenant, audio_id, mixed)

        def rejected() -> int:
            with self.svc.sql.connect() as conn:
                return int(conn.scalar(sa.select(sa.func.count())
                                       .where(CampaignRejectedRow.campaign_id == campaign_id)) or 0)

        wait("the import to be half-way", lambda: 0 < rejected() < len(blocked) // 2, 120, 0.02)
        worker = self.svc.worker
        assert worker is not None
        print(f"  worker_kill9: killing the worker at {rejected()} of {len(blocked)} rejected rows", file=sys.stderr)
        worker.kill9()
        worker.stop()
        if self.svc.campaign_status(campaign_id) != "IMPORTING":
            raise RuntimeError("the import finished before the worker was killed")
        self.svc.start_worker()
        wait("the new worker to enqueue the stalled import again and run it",
             lambda: self.svc.campaign_status(campaign_id) == "RUNNING", self.args.import_stall + 120, 0.3)
        with self.svc.sql.connect() as conn:
            accepted, dnc = conn.execute(sa.select(Campaign.rows_accepted, Campaign.rows_dnc)
                                         .where(Campaign.id == campaign_id)).one()
        if (accepted, dnc) != (len(phones), len(blocked)):
            raise RuntimeError(f"import counts {accepted}/{dnc}, expected {len(phones)}/{len(blocked)}")
        return campaign_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller campaigns (about 3 minutes)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(FAULTS)}")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temporary directory")
    parser.add_argument("--verbose", action="store_true", help="print the dialer's log tail on failure")
    args = parser.parse_args()
    args.numbers = 200 if args.quick else 400
    args.csv_rows = 100_000 if args.quick else 200_000
    args.concurrency = 40
    args.message_seconds = 20  # 1 s of real time at the simulator's time scale
    args.import_stall = 5
    args.complete_timeout = 100 if args.quick else 150
    faults = [f for f in args.only.split(",") if f] or FAULTS
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults: {sorted(unknown)}")

    tmp = Path(tempfile.mkdtemp(prefix="zc-faults-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    results: list[Result] = []
    try:
        bench = Bench(args, tmp)
        print(f"private MariaDB on 127.0.0.1:{bench.svc.db.port}, Redis on 127.0.0.1:{bench.svc.redis.port}, "
              f"logs in {tmp}", file=sys.stderr)
        for fault in faults:
            print(f"fault {fault}...", file=sys.stderr)
            results.append(bench.run_fault(fault))
    finally:
        stop_all()
        if not args.keep_logs and all(r.passed for r in results) and len(results) == len(faults):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs kept in {tmp}", file=sys.stderr)

    header = ("fault", "calls", "final", "unknown", "held PKR", "problems", "completed", "seconds", "result")
    rows = [(r.fault, str(r.calls), str(r.final), str(r.unknown), f"{r.held:.4f}", str(len(r.problems)),
             "yes" if r.completed else "no", f"{r.seconds:.1f}", "PASS" if r.passed else "FAIL") for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    for r in results:
        for problem in r.problems[:10]:
            print(f"{r.fault}: {problem}")
    passed = sum(r.passed for r in results)
    print(f"\n{passed}/{len(faults)} faults survived in {time.monotonic() - began:.0f}s "
          f"({'quick' if args.quick else 'full'} run, {args.numbers} numbers per campaign, "
          f"{os.cpu_count()} CPUs)")
    return 0 if passed == len(faults) else 1


if __name__ == "__main__":
    sys.exit(main())
