"""A model-based test of the dialer's guarantees (hypothesis ``RuleBasedStateMachine``).

Each example is a random interleaving of what customers, operators and failures do to a running
system: single calls placed (numbers whose last digit picks the simulator's outcome, drawn from a
small pool so numbers repeat across calls, campaigns and accounts) and cancelled, small campaigns
created through the API (imported by the RQ worker), paused, resumed and cancelled, the account's
rate changed by an operator, time passing — and faults: a dialer killed -9 or stopped (and a new
one started), a second dialer started beside the first (an overlapping restart), every ESL
connection dropped (``api sim_drop_all``), Redis flushed, MariaDB killed -9 and started again on
the same datadir. Everything runs for real: ``python -m dialer`` processes over real sockets to
``python -m simulator``, a private MariaDB and Redis (``tests.model.services``).

After every step the cheap invariants are checked (on the channels the switch has ended so far
and in the books); at the end of each example the system is brought to quiet (paused campaigns
resumed, retries brought forward) and every invariant of ``tests.model.invariants`` is checked
against the switch's own call log, plus what the model knows: a call whose cancel was accepted
ends CANCELLED, a cancelled campaign dials nothing after its cancel was accepted.

The harness (services, simulator, worker, dialers) lives for the whole run; each example makes its
own two accounts, so examples never see each other's calls.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

import sqlalchemy as sa
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, precondition, rule

from core import campaign_states
from core.call_states import CallStatus
from core.db import utcnow
from core.models import Call, CallAttempt, Campaign
from tests.model import invariants
from tests.model.services import Dialer, Services, Simulator, Tenant, wait, window

TIME_SCALE = 20.0  # simulated seconds per real second
NODE = "model"
NODE_LIMIT = 4  # NODE_MAX_CHANNELS: below the two accounts' caps together, so it binds too
ACCOUNT_CAPS = (2, 3)  # max_concurrent_calls of the two accounts of each example
DIALER_ENV = {
    "DIALER_OWNER_STALE_SECONDS": 3, "CDR_WAIT_SECONDS": 5, "CAP_LEASE_SECONDS": 6,
    "NODE_MAX_CHANNELS": NODE_LIMIT, "FS_ORIGINATE_TIMEOUT": 20,  # 1 s of ringing in real time
    "GATEWAY_CPS": 10,  # claimed attempts wait for their pacing slots: faults and cancels land in between
}
QUIET_TIMEOUT = 90.0
DIGITS = "0123456789"  # the pool: one number per simulator outcome
ACTIVE_CAMPAIGN = [s.value for s in campaign_states.ACTIVE]


@dataclass
class Figures:
    """What a run did (printed by bench/model.py)."""

    examples: int = 0
    steps: int = 0
    rules: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    channels: int = 0
    answered: int = 0
    unknown: int = 0
    worker_restarts: int = 0
    failed_imports: int = 0
    settle_seconds: list[float] = field(default_factory=list)

    def summary(self) -> str:
        settle = (f"settling took {min(self.settle_seconds):.1f}-{max(self.settle_seconds):.1f} s"
                  if self.settle_seconds else "")
        return (f"{self.examples} examples, {self.steps} steps; {self.calls} calls, {self.channels} channels on the "
                f"switch ({self.answered} answered), {self.unknown} attempts OUTCOME_UNKNOWN; "
                f"{self.worker_restarts} worker restarts, {self.failed_imports} imports FAILED; {settle}\n"
                f"steps by rule: {dict(sorted(self.rules.items()))}")


class Harness:
    """The switch and the dialers on the private services, shared by every example of a run.

    ``skip`` names rules that must not run (e.g. to look past a known bug in a long run)."""

    def __init__(self, services: Services, skip: frozenset[str] = frozenset()) -> None:
        self.services = services
        self.tmp = services.tmp
        self.skip = skip
        self.sim = Simulator(self.tmp, NODE, TIME_SCALE)
        self.services.ensure_worker()
        self.stopped: set[int] = set()  # pids of dialers stopped on purpose
        self.start_dialer()
        self.figures = Figures()

    def start_dialer(self) -> Dialer:
        return self.services.start_dialer(self.sim, NODE, **DIALER_ENV)

    def live(self) -> list[Dialer]:
        return [d for d in self.services.live_dialers() if d.node == NODE]

    def died(self) -> list[Dialer]:
        """Dialers that exited without being stopped on purpose."""
        return [d for d in self.services.dialers if d.node == NODE and not d.alive() and d.pid not in self.stopped]

    def stop_dialer(self, dialer: Dialer, how: str) -> None:
        self.stopped.add(dialer.pid)
        if how == "KILL":
            dialer.proc.kill9()
        else:
            dialer.proc.signal(15)
            try:
                wait(f"dialer {dialer.pid} to stop on SIGTERM", lambda: not dialer.alive(), 20)
            finally:
                dialer.proc.kill9()

    def begin_example(self) -> None:
        """Every example starts with the services up and exactly one dialer."""
        self.ensure()
        for extra in self.live()[1:]:
            self.stop_dialer(extra, "TERM")

    def ensure(self) -> None:
        """MariaDB up, a worker and at least one dialer alive."""
        if not self.services.db.alive():
            self.services.db.start()
        if self.services.ensure_worker():
            self.figures.worker_restarts += 1
        if not self.live():
            self.start_dialer()

    def close(self) -> None:
        """Stop this run's dialers and switch (the services stay up)."""
        for dialer in self.live():
            self.stopped.add(dialer.pid)
            dialer.proc.stop()
        self.sim.stop()


def runs(name: str) -> Any:
    """A rule's precondition: not skipped in this run (a constant of the run, never external state)."""
    return lambda self: name not in self.h.skip


RULES = ("place_calls", "cancel_call", "create_campaign", "campaign_action", "change_rate", "advance_time",
         "kill_dialer", "start_second_dialer", "drop_esl", "flush_redis", "restart_mariadb")


class DialerModel(RuleBasedStateMachine):
    harness: ClassVar[Harness]

    calls = Bundle("calls")
    campaigns = Bundle("campaigns")

    def __init__(self) -> None:
        super().__init__()
        self.h = self.harness
        self.svc = self.h.services
        self.tenants: list[Tenant] = []
        self.audio: list[str] = []
        self.pool = [f"0300{secrets.randbelow(10**6):06d}{d}" for d in DIGITS]
        self.cancelled_calls: set[str] = set()
        self.cancelled_campaigns: dict[str, set[str]] = {}  # campaign -> its attempts when the cancel was accepted
        self.journal: list[str] = []
        self.dialers = 1  # how many dialers the model expects alive (preconditions read the model only)
        self.started = time.monotonic()

    # -- bookkeeping ---------------------------------------------------------------------------
    def note(self, text: str) -> None:
        self.journal.append(f"{time.monotonic() - self.started:7.2f}s {text}")

    def step(self, name: str, text: str) -> None:
        self.h.figures.steps += 1
        self.h.figures.rules[name] += 1
        self.note(text)

    def fail(self, title: str, detail: str) -> None:
        raise AssertionError(f"{title}\n{detail}\n--- steps of this example ---\n" + "\n".join(self.journal)
                             + f"\n(logs in {self.h.tmp})")

    def account_ids(self) -> list[str]:
        return [t.account_id for t in self.tenants]

    def fast_forward(self) -> None:
        """Time passes for retries: a queued retry is due at once (the API's shortest delay is 30 s).
        Only those rows are locked, by primary key; a deadlock with the dialer is tried again."""
        ids = self.account_ids()
        if not ids:
            return
        now = utcnow()
        with self.svc.sql.connect() as conn:
            later = list(conn.scalars(sa.select(Call.id).where(
                Call.account_id.in_(ids), Call.status == CallStatus.QUEUED,
                Call.next_attempt_at > now + timedelta(seconds=1))))
        if not later:
            return
        for attempt in range(5):
            try:
                with self.svc.sql.begin() as conn:
                    conn.execute(sa.update(Call).where(Call.id.in_(later), Call.status == CallStatus.QUEUED,
                                                       Call.next_attempt_at > now + timedelta(seconds=1))
                                 .values(next_attempt_at=now))
                return
            except sa.exc.OperationalError as exc:
                if getattr(exc.orig, "args", [None])[0] not in (1213, 1205) or attempt == 4:
                    raise
                time.sleep(0.1)

    def snapshot(self) -> invariants.Snapshot:
        return invariants.snapshot(self.svc.sql, self.account_ids(), self.h.sim.rows())

    # -- the example's accounts and its first calls ---------------------------------------------
    @initialize(target=calls, message_seconds=st.sampled_from([20, 40, 60]),
                first=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 9), st.integers(0, 2)),
                               min_size=1, max_size=5))
    def accounts(self, message_seconds: int, first: list[tuple[int, int, int]]) -> Any:
        self.h.begin_example()
        self.h.figures.examples += 1
        for cap in ACCOUNT_CAPS:
            tenant = self.svc.tenant(balance="1000", max_concurrent_calls=cap)
            self.tenants.append(tenant)
            self.audio.append(self.svc.audio(tenant, message_seconds))
        self.note(f"two accounts (caps {ACCOUNT_CAPS}), a {message_seconds} s message; numbers {self.pool}")
        return multiple(*[self.place(who, number, retries) for who, number, retries in first])

    # -- customers ---------------------------------------------------------------------------------
    def place(self, who: int, number: int, max_retries: int) -> str:
        tenant = self.tenants[who]
        response = self.svc.client.post("/api/v1/calls", headers=tenant.headers, json={
            "phone_number": self.pool[number], "audio_id": self.audio[who], "max_retries": max_retries})
        if response.status_code != 201:
            self.fail("POST /calls refused", f"{response.status_code} {response.get_json()}")
        call_id = str(response.get_json()["id"])
        self.fast_forward()
        self.note(f"account {who} calls {self.pool[number]} (max_retries {max_retries}): {call_id}")
        return call_id

    @precondition(runs("place_calls"))
    @rule(target=calls, who=st.integers(0, 1), numbers=st.lists(st.integers(0, 9), min_size=1, max_size=3),
          max_retries=st.integers(0, 2))
    def place_calls(self, who: int, numbers: list[int], max_retries: int) -> Any:
        self.step("place_calls", f"account {who} places {len(numbers)} calls")
        return multiple(*[self.place(who, n, max_retries) for n in numbers])

    @precondition(runs("cancel_call"))
    @rule(call=calls)
    def cancel_call(self, call: str) -> None:
        tenant = self.tenant_of_call(call)
        response = self.svc.client.post(f"/api/v1/calls/{call}/cancel", headers=tenant.headers)
        body = response.get_json()
        if response.status_code == 200:
            self.cancelled_calls.add(call)
        elif response.status_code != 409 or body["error"]["code"] != "CALL_ALREADY_FINAL":
            self.fail("POST /calls/{id}/cancel answered neither 200 nor 409", f"{response.status_code} {body}")
        self.step("cancel_call", f"cancel call {call}: {response.status_code} {body.get('status') or body['error']}")

    def tenant_of_call(self, call_id: str) -> Tenant:
        with self.svc.sql.connect() as conn:
            account_id = conn.scalar(sa.select(Call.account_id).where(Call.id == call_id))
        return next(t for t in self.tenants if t.account_id == account_id)

    @precondition(runs("create_campaign"))
    @rule(target=campaigns, who=st.integers(0, 1),
          numbers=st.lists(st.integers(0, 9), min_size=1, max_size=6, unique=True),
          max_retries=st.integers(0, 2), limit=st.integers(1, 2))
    def create_campaign(self, who: int, numbers: list[int], max_retries: int, limit: int) -> Any:
        tenant = self.tenants[who]
        phones = [self.pool[i] for i in numbers]
        response = self.svc.post_campaign(tenant, self.audio[who], phones, window=window(-2, 4),
                                          max_retries=max_retries, concurrent_limit=limit, retry_delay_seconds=30)
        if response.status_code == 429 and response.get_json()["error"]["code"] == "TOO_MANY_IMPORTS":
            # the documented cap on imports in flight (MAX_PENDING_IMPORTS): right only at the cap, and
            # imports only finish meanwhile (this rule is the only one that starts them)
            details = response.get_json()["error"]["details"]
            with self.svc.sql.connect() as conn:
                importing = conn.scalar(sa.select(sa.func.count()).select_from(Campaign).where(
                    Campaign.account_id == tenant.account_id,
                    Campaign.status == campaign_states.CampaignStatus.IMPORTING)) or 0
            if not (details["limit"] == self.svc.settings.max_pending_imports <= details["pending_imports"]
                    and importing <= details["pending_imports"]):
                self.fail("POST /campaigns refused with TOO_MANY_IMPORTS", f"{details}, {importing} importing now")
            self.step("create_campaign", f"account {who} campaign refused: {details['pending_imports']} imports "
                                         "in flight")
            return multiple()
        if response.status_code != 201:
            self.fail("POST /campaigns refused", f"{response.status_code} {response.get_json()}")
        campaign_id = str(response.get_json()["id"])
        self.step("create_campaign", f"account {who} campaign {campaign_id} of {phones} (max_retries {max_retries}, "
                                     f"concurrent_limit {limit})")
        return campaign_id

    @precondition(runs("campaign_action"))
    @rule(campaign=campaigns, action=st.sampled_from(["pause", "resume", "cancel", "cancel_hang_up"]))
    def campaign_action(self, campaign: str, action: str) -> None:
        with self.svc.sql.connect() as conn:
            account_id = conn.scalar(sa.select(Campaign.account_id).where(Campaign.id == campaign))
        tenant = next(t for t in self.tenants if t.account_id == account_id)
        verb = action.split("_")[0]
        kwargs: dict[str, Any] = {"json": {"hang_up_live": True}} if action == "cancel_hang_up" else {}
        response = self.svc.client.post(f"/api/v1/campaigns/{campaign}/{verb}", headers=tenant.headers, **kwargs)
        body = response.get_json()
        wanted = {"pause": {"PAUSED"}, "resume": {"RUNNING", "SCHEDULED"}, "cancel": {"CANCELLED"}}[verb]
        if response.status_code == 200:
            if body["status"] not in wanted:
                self.fail(f"{verb} answered 200 with status {body['status']}", str(body))
            if verb == "cancel":
                with self.svc.sql.connect() as conn:
                    self.cancelled_campaigns[campaign] = set(conn.scalars(
                        sa.select(CallAttempt.id).join(Call, Call.id == CallAttempt.call_id)
                        .where(Call.campaign_id == campaign)))
        elif response.status_code != 409 or body["error"]["code"] != "INVALID_CAMPAIGN_STATE":
            self.fail(f"POST /campaigns/{{id}}/{verb} answered neither 200 nor 409", f"{response.status_code} {body}")
        self.step("campaign_action", f"{action} campaign {campaign}: {response.status_code} "
                                     f"{body.get('status') or body['error']['details']}")

    # -- operators and time ------------------------------------------------------------------------
    @precondition(runs("change_rate"))
    @rule(who=st.integers(0, 1), rate=st.sampled_from(["1.00", "2.50", "7.25"]), pulse=st.sampled_from([1, 6, 30, 60]))
    def change_rate(self, who: int, rate: str, pulse: int) -> None:
        account_id = self.tenants[who].account_id
        result = self.svc.app.test_cli_runner().invoke(
            args=["accounts", "set-rate", account_id, "--rate", rate, "--pulse", str(pulse)])
        if result.exit_code != 0:
            self.fail("accounts set-rate failed", result.output)
        self.step("change_rate", f"operator: account {who} rate {rate}/min, pulse {pulse} s")

    @precondition(runs("advance_time"))
    @rule()
    def advance_time(self) -> None:
        """Half a second passes (calls ring, play, end; pacing slots and retries come due)."""
        time.sleep(0.5)
        self.step("advance_time", "0.5 s pass")

    # -- faults --------------------------------------------------------------------------------------
    @precondition(runs("kill_dialer"))
    @rule(pick=st.integers(0, 1), how=st.sampled_from(["KILL", "TERM"]), restart=st.booleans())
    def kill_dialer(self, pick: int, how: str, restart: bool) -> None:
        live = self.h.live()
        dialer = live[pick % len(live)]
        self.h.stop_dialer(dialer, how)
        self.dialers -= 1
        started = ""
        if restart or self.dialers == 0:
            started = f"; new dialer {self.h.start_dialer().pid}"
            self.dialers += 1
        self.step("kill_dialer", f"SIG{how} dialer {dialer.pid}{started}")

    @precondition(lambda self: self.dialers < 2 and "start_second_dialer" not in self.h.skip)
    @rule()
    def start_second_dialer(self) -> None:
        dialer = self.h.start_dialer()
        self.dialers += 1
        self.step("start_second_dialer", f"second dialer {dialer.pid} beside {[d.pid for d in self.h.live()]}")

    @precondition(runs("drop_esl"))
    @rule()
    def drop_esl(self) -> None:
        answer = self.h.sim.api("sim_drop_all")
        if not answer.startswith("+OK"):
            self.fail("sim_drop_all failed", answer)
        self.step("drop_esl", "the switch drops every ESL connection")

    @precondition(runs("flush_redis"))
    @rule()
    def flush_redis(self) -> None:
        self.svc.redis.client().flushall()
        self.step("flush_redis", "Redis flushed (queues, leases, epoch, heartbeats)")

    @precondition(runs("restart_mariadb"))
    @rule(down=st.sampled_from([0.0, 1.0, 4.0]))
    def restart_mariadb(self, down: float) -> None:
        self.svc.db.kill9()
        time.sleep(down)
        self.svc.db.start()
        self.step("restart_mariadb", f"MariaDB killed -9, down {down} s, started on the same datadir")

    # -- invariants ------------------------------------------------------------------------------------
    @invariant()
    def holds_at_every_step(self) -> None:
        if not self.tenants:
            return
        died = self.h.died()
        if died:
            self.h.stopped.update(d.pid for d in died)
            self.fail("a dialer exited on its own", "\n".join(f"--- dialer {d.pid} ---\n{d.proc.tail()}" for d in died))
        if self.svc.ensure_worker():
            self.h.figures.worker_restarts += 1
            self.note("the RQ worker had exited: a new one started")
        self.fast_forward()
        report = invariants.cheap(self.snapshot(), NODE_LIMIT)
        if not report:
            self.fail("an invariant broke", report.text())

    def teardown(self) -> None:
        failing = sys.exc_info()[1] is not None
        if not self.tenants:
            return
        began = time.monotonic()
        try:
            self.h.ensure()
            quiet = self.settle()
        except Exception:  # noqa: BLE001 - cleaning up after a failure must not hide it
            if failing:
                self.force_quiet()
                return
            raise
        if failing:
            if not quiet:
                self.force_quiet()
            return
        still_open = "" if quiet else self.open_things() or f"{self.h.sim.current()} channels up on the switch"
        report = self.final_report()
        if not quiet:
            self.force_quiet()
            self.fail(f"the system did not become quiet within {QUIET_TIMEOUT:.0f} s",
                      f"still open: {still_open}\n{report.text()}")
        self.h.figures.settle_seconds.append(time.monotonic() - began)
        if not report:
            self.fail("an invariant broke once the system was quiet", report.text())

    def final_report(self) -> invariants.Report:
        """Every invariant, and what the model knows about the cancels it made."""
        snap = self.snapshot()
        report = invariants.quiet(snap, NODE_LIMIT)
        for call_id in self.cancelled_calls:
            if snap.calls[call_id]["status"] != CallStatus.CANCELLED.value:
                report.problems.append(f"[cancel] call {call_id}: cancel answered 200 but it is "
                                       f"{snap.calls[call_id]['status']}")
        for campaign_id, before in self.cancelled_campaigns.items():
            after = {a["id"] for c in snap.calls.values() if c["campaign_id"] == campaign_id
                     for a in snap.attempts.get(c["id"], [])}
            if snap.campaigns[campaign_id]["status"] != "CANCELLED" or after - before:
                report.problems.append(f"[cancel] campaign {campaign_id} is {snap.campaigns[campaign_id]['status']}; "
                                       f"attempts after its cancel: {sorted(after - before)}")
        self.count(snap)
        return report

    def count(self, snap: invariants.Snapshot) -> None:
        f = self.h.figures
        f.calls += len(snap.calls)
        ours = snap.ours()
        f.channels += len(ours)
        f.answered += sum(1 for r in ours if r["answered"])
        f.unknown += sum(1 for rows in snap.attempts.values() for a in rows if a["hangup_cause"] == "OUTCOME_UNKNOWN")
        f.failed_imports += sum(1 for c in snap.campaigns.values() if c["status"] == "FAILED")

    def settle(self) -> bool:
        """Resume paused campaigns and let every call end; True once quiet."""
        for campaign_id, camp in self.snapshot().campaigns.items():
            if camp["status"] == "PAUSED":
                tenant = next(t for t in self.tenants if t.account_id == camp["account_id"])
                self.svc.client.post(f"/api/v1/campaigns/{campaign_id}/resume", headers=tenant.headers)
                self.note(f"settling: resume campaign {campaign_id}")
        deadline = time.monotonic() + QUIET_TIMEOUT
        while time.monotonic() < deadline:
            self.fast_forward()
            if not self.open_things() and self.h.sim.current() == 0:
                return True
            time.sleep(0.3)
        return False

    def open_things(self) -> str:
        """What is not over yet: calls, attempts, campaigns of this example."""
        ids = self.account_ids()
        with self.svc.sql.connect() as conn:
            calls = conn.execute(sa.select(Call.id, Call.status).where(
                Call.account_id.in_(ids), Call.status.in_([s.value for s in CallStatus if not s.is_final]))).all()
            attempts = conn.execute(sa.select(CallAttempt.id, CallAttempt.owner).where(
                CallAttempt.account_id.in_(ids), CallAttempt.ended_at.is_(None))).all()
            campaigns = conn.execute(sa.select(Campaign.id, Campaign.status).where(
                Campaign.account_id.in_(ids), Campaign.status.in_(ACTIVE_CAMPAIGN))).all()
        parts = [f"call {c} {getattr(s, 'value', s)}" for c, s in calls]
        parts += [f"attempt {a} open (owner {o})" for a, o in attempts]
        parts += [f"campaign {c} {getattr(s, 'value', s)}" for c, s in campaigns]
        return "; ".join(parts)

    def force_quiet(self) -> None:
        """After a failure: end what is left so the next example starts on a quiet system."""
        try:
            self.h.ensure()
            self.h.sim.api("hupall NORMAL_CLEARING")
            ids = self.account_ids()
            with self.svc.sql.begin() as conn:
                conn.execute(sa.update(Campaign).where(Campaign.account_id.in_(ids),
                                                       Campaign.status.in_(ACTIVE_CAMPAIGN))
                             .values(status="CANCELLED"))
                conn.execute(sa.update(Call).where(Call.account_id.in_(ids),
                                                   Call.status.in_([s.value for s in CallStatus if not s.is_final]))
                             .values(status=CallStatus.CANCELLED, next_attempt_at=None))
            wait("the switch to have no channel left", lambda: self.h.sim.current() == 0, 30)
        except Exception as exc:  # noqa: BLE001
            print(f"cleaning up after a failed example failed: {exc}", file=sys.stderr)
