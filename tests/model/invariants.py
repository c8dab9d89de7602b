"""The dialer's guarantees as checks over one snapshot of SQL and the switch's own call log.

The switch's log (the simulator's ``--call-log``: one row per channel it ended, with the channel
variables we sent) is the ground truth of what was dialed, answered and for how long; SQL must
agree with it. Each check returns the problems it found (empty: the guarantee holds), so the
model test can assert and the fault benchmark can report.

``cheap`` checks hold at every moment (run after each step); ``quiet`` checks hold once the
system is quiet (no call open, no channel up).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from billing.rating import call_cost
from core.call_states import OUTCOME_UNKNOWN, CallStatus
from core.models import Account, Call, CallAttempt, Campaign, LedgerEntry

ZERO = Decimal(0)


def _value(v: Any) -> Any:
    return getattr(v, "value", v)


def _row(r: Any) -> dict[str, Any]:
    return {k: _value(v) for k, v in r._mapping.items()}


@dataclass
class Snapshot:
    """SQL rows of some accounts (their calls, attempts, ledger, campaigns) and the switch's rows."""

    accounts: dict[str, dict[str, Any]]
    calls: dict[str, dict[str, Any]]
    attempts: dict[str, list[dict[str, Any]]]  # call id -> attempts by attempt_no
    campaigns: dict[str, dict[str, Any]]
    ledger: list[dict[str, Any]]
    switch: list[dict[str, Any]]  # every channel the switch ended (also of other accounts)

    @property
    def attempt_by_id(self) -> dict[str, dict[str, Any]]:
        return {a["id"]: a for rows in self.attempts.values() for a in rows}

    def dialed(self) -> list[dict[str, Any]]:
        """Switch rows of channels that existed (not originates refused before a channel)."""
        return [r for r in self.switch if r.get("outcome") != "failed" and r.get("start") is not None]

    def ours(self) -> list[dict[str, Any]]:
        """Dialed switch rows of this snapshot's calls."""
        return [r for r in self.dialed() if (r.get("vars") or {}).get("zc_call_id") in self.calls]


def snapshot(sql: sa.Engine, account_ids: Iterable[str], switch_rows: list[dict[str, Any]]) -> Snapshot:
    ids = sorted(set(account_ids))
    with sql.connect() as conn:
        accounts = {r.id: _row(r) for r in conn.execute(sa.select(Account.__table__).where(Account.id.in_(ids)))}
        calls = {r.id: _row(r) for r in conn.execute(sa.select(Call.__table__).where(Call.account_id.in_(ids)))}
        attempts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in conn.execute(sa.select(CallAttempt.__table__).where(CallAttempt.account_id.in_(ids))
                              .order_by(CallAttempt.call_id, CallAttempt.attempt_no)):
            attempts[r.call_id].append(_row(r))
        campaigns = {r.id: _row(r) for r in
                     conn.execute(sa.select(Campaign.__table__).where(Campaign.account_id.in_(ids)))}
        ledger = [_row(r) for r in conn.execute(sa.select(LedgerEntry.__table__)
                                                .where(LedgerEntry.account_id.in_(ids)).order_by(LedgerEntry.id))]
    return Snapshot(accounts, calls, dict(attempts), campaigns, ledger, switch_rows)


# --------------------------------------------------------------------------- the switch's side


def max_overlap(spans: list[tuple[float, float]]) -> tuple[int, float | None]:
    """The most spans open at one moment, and when (an end before a start at the same instant)."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    depth = peak = 0
    at: float | None = None
    for t, step in edges:
        depth += step
        if depth > peak:
            peak, at = depth, t
    return peak, at


def _span(row: dict[str, Any]) -> tuple[float, float]:
    return float(row["start"]), float(row["end"] if row.get("end") is not None else row["start"])


def check_numbers(snap: Snapshot) -> list[str]:
    """A number never has two live channels at once; an attempt is originated at most once."""
    problems = []
    by_number: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
    for row in snap.dialed():
        by_number[(row.get("run", 0), row["number"])].append(_span(row))
    for (_, number), spans in by_number.items():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            if end > start:
                problems.append(f"two live channels to {number} at once (one ends at {end:.3f}, "
                                f"the next starts at {start:.3f})")
    seen = Counter(r["uuid"] for r in snap.switch if r.get("uuid") and r.get("outcome") != "failed")
    problems += [f"attempt {u} was originated {n} times" for u, n in seen.items() if n > 1]
    return problems


def check_caps(snap: Snapshot, node_limit: int | None = None) -> list[str]:
    """Account, campaign (and node) caps, counted on the switch's channels."""
    problems = []
    per_account: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
    per_campaign: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
    per_node: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for row in snap.dialed():
        run = row.get("run", 0)
        per_node[run].append(_span(row))
        call = snap.calls.get((row.get("vars") or {}).get("zc_call_id", ""))
        if call is None:
            continue
        per_account[(run, call["account_id"])].append(_span(row))
        if call["campaign_id"]:
            per_campaign[(run, call["campaign_id"])].append(_span(row))
    for (_, account_id), spans in per_account.items():
        limit = snap.accounts[account_id]["max_concurrent_calls"]
        peak, at = max_overlap(spans)
        if peak > limit:
            problems.append(f"account {account_id}: {peak} live channels at {at} (cap {limit})")
    for (_, campaign_id), spans in per_campaign.items():
        limit = snap.campaigns[campaign_id]["concurrent_limit"]
        peak, at = max_overlap(spans)
        if peak > limit:
            problems.append(f"campaign {campaign_id}: {peak} live channels at {at} (concurrent_limit {limit})")
    if node_limit is not None:
        for spans in per_node.values():
            peak, at = max_overlap(spans)
            if peak > node_limit:
                problems.append(f"the node had {peak} live channels at {at} (NODE_MAX_CHANNELS {node_limit})")
    return problems


def check_switch_rows(snap: Snapshot) -> list[str]:
    """Every channel of our calls is an attempt in SQL, and no call was dialed after an answer."""
    problems = []
    attempts = snap.attempt_by_id
    answered_no: dict[str, int] = {}
    rows = snap.ours()
    for row in rows:
        a = attempts.get(row["uuid"])
        call_id = row["vars"]["zc_call_id"]
        if a is None or a["call_id"] != call_id:
            problems.append(f"channel {row['uuid']} of call {call_id} has no attempt in SQL")
            continue
        if row["answered"]:
            answered_no[call_id] = min(a["attempt_no"], answered_no.get(call_id, a["attempt_no"]))
    for row in rows:
        a = attempts.get(row["uuid"])
        call_id = row["vars"]["zc_call_id"]
        if a is not None and call_id in answered_no and a["attempt_no"] > answered_no[call_id]:
            problems.append(f"call {call_id} was dialed again (attempt {a['attempt_no']}) after attempt "
                            f"{answered_no[call_id]} was answered on the switch")
    return problems


# --------------------------------------------------------------------------- money


def _ledger_by_attempt(snap: Snapshot) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in snap.ledger:
        if e["attempt_id"]:
            out[e["attempt_id"]].append(e)
    return out


def check_books(snap: Snapshot) -> list[str]:
    """balance == sum of the ledger, reserved == sum of the holds, nothing negative."""
    problems = []
    for account_id, acc in snap.accounts.items():
        entries = [e for e in snap.ledger if e["account_id"] == account_id]
        balance = sum((Decimal(e["amount"]) for e in entries), ZERO)
        reserved = sum((Decimal(e["hold"]) for e in entries), ZERO)
        if Decimal(acc["balance"]) != balance or Decimal(acc["reserved"]) != reserved:
            problems.append(f"account {account_id}: balance {acc['balance']} / ledger {balance}, "
                            f"reserved {acc['reserved']} / ledger holds {reserved}")
        if Decimal(acc["balance"]) < 0 or Decimal(acc["reserved"]) < 0 or Decimal(acc["reserved"]) > Decimal(
                acc["balance"]):
            problems.append(f"account {account_id}: balance {acc['balance']}, reserved {acc['reserved']}")
    return problems


def check_holds(snap: Snapshot) -> list[str]:
    """Once quiet: each attempt reserved once and settled once (released, charged its cost), except
    the attempts whose outcome is unknown, whose holds are all that stays reserved."""
    problems = []
    attempts = snap.attempt_by_id
    unsettled: dict[str, Decimal] = defaultdict(Decimal)
    for attempt_id, entries in _ledger_by_attempt(snap).items():
        kinds = Counter(_value(e["kind"]) for e in entries)
        a = attempts.get(attempt_id)
        unknown = a is not None and a["hangup_cause"] == OUTCOME_UNKNOWN
        reserve = [e for e in entries if _value(e["kind"]) == "RESERVE"]
        release = [e for e in entries if _value(e["kind"]) == "RELEASE"]
        charge = [e for e in entries if _value(e["kind"]) == "CHARGE"]
        if kinds["RESERVE"] != 1 or kinds["RELEASE"] > 1 or kinds["CHARGE"] > 1:
            problems.append(f"attempt {attempt_id}: ledger entries {dict(kinds)}")
            continue
        if unknown:
            if release or charge:
                problems.append(f"attempt {attempt_id} ended OUTCOME_UNKNOWN but its hold was settled: {dict(kinds)}")
            unsettled[reserve[0]["account_id"]] += Decimal(reserve[0]["hold"])
            continue
        if not release:
            problems.append(f"attempt {attempt_id} (call {reserve[0]['call_id']}, "
                            f"{'no attempt row' if a is None else a['status']}/{a and a['hangup_cause']}) "
                            f"still holds {reserve[0]['hold']} once everything ended")
            continue
        if Decimal(release[0]["hold"]) != -Decimal(reserve[0]["hold"]):
            problems.append(f"attempt {attempt_id}: reserved {reserve[0]['hold']}, released {release[0]['hold']}")
        cost = Decimal(a["cost"]) if a is not None else ZERO
        charged = -Decimal(charge[0]["amount"]) if charge else ZERO
        if charged != cost:
            problems.append(f"attempt {attempt_id}: cost {cost}, charged {charged}")
    for account_id, acc in snap.accounts.items():
        if Decimal(acc["reserved"]) != unsettled[account_id]:
            problems.append(f"account {account_id}: reserved {acc['reserved']} once quiet, but the attempts "
                            f"of unknown outcome hold {unsettled[account_id]}")
    return problems


def check_answered(snap: Snapshot) -> list[str]:
    """Every call answered on the switch (its message started: the switch plays it on answer) is
    charged exactly once at the rate frozen on its attempt, for the seconds the switch counted;
    or, when its end was never seen, it ended OUTCOME_UNKNOWN with its reservation held. A
    channel that was not answered costs nothing; nothing is charged without an answered channel."""
    problems = []
    attempts = snap.attempt_by_id
    ledger = _ledger_by_attempt(snap)
    on_switch: dict[str, dict[str, Any]] = {}
    for row in snap.ours():
        on_switch[row["uuid"]] = row
        a = attempts.get(row["uuid"])
        if a is None:
            continue  # reported by check_switch_rows
        charges = [e for e in ledger.get(a["id"], []) if _value(e["kind"]) == "CHARGE"]
        if not row["answered"]:
            if Decimal(a["cost"]) != 0 or charges:
                problems.append(f"attempt {a['id']} was never answered on the switch but cost {a['cost']}")
            continue
        if a["hangup_cause"] == OUTCOME_UNKNOWN:
            if Decimal(a["cost"]) != 0 or charges:
                problems.append(f"attempt {a['id']} ended OUTCOME_UNKNOWN but was charged {a['cost']}")
            continue
        expected = call_cost(int(row["billsec"]), Decimal(a["rate_per_minute"]), int(a["pulse_seconds"]))
        if a["status"] != CallStatus.COMPLETED.value:
            problems.append(f"attempt {a['id']} answered on the switch (billsec {row['billsec']}) ended "
                            f"{a['status']}/{a['hangup_cause']}, charged {a['cost']}")
        elif (int(a["billsec"]), Decimal(a["cost"])) != (int(row["billsec"]), expected) or len(charges) != (
                1 if expected > 0 else 0):
            problems.append(f"attempt {a['id']}: billsec {a['billsec']} cost {a['cost']} ({len(charges)} charges); "
                            f"the switch counted {row['billsec']} s = {expected} at the frozen rate "
                            f"{a['rate_per_minute']}/{a['pulse_seconds']}s")
    for a in attempts.values():
        if (a["status"] == CallStatus.COMPLETED.value or Decimal(a["cost"]) > 0) and not (
                a["id"] in on_switch and on_switch[a["id"]]["answered"]):
            problems.append(f"attempt {a['id']} is {a['status']} cost {a['cost']} without an answered channel")
    return problems


def check_attempt_order(snap: Snapshot) -> list[str]:
    """A call's next attempt was claimed (its reservation written) only after the previous one was
    settled (its release written): read from the ledger's sequence, which the dialer writes."""
    problems = []
    ledger = _ledger_by_attempt(snap)

    def entry(attempt_id: str, kind: str) -> int | None:
        ids = [e["id"] for e in ledger.get(attempt_id, []) if _value(e["kind"]) == kind]
        return min(ids) if ids else None

    for call_id, rows in snap.attempts.items():
        for prev, nxt in zip(rows, rows[1:], strict=False):
            released, reserved = entry(prev["id"], "RELEASE"), entry(nxt["id"], "RESERVE")
            if released is not None and reserved is not None and not released < reserved:
                problems.append(f"call {call_id}: attempt {nxt['attempt_no']} was reserved before attempt "
                                f"{prev['attempt_no']} was settled")
    return problems


# --------------------------------------------------------------------------- calls


def check_calls(snap: Snapshot) -> list[str]:
    """Once quiet: every call in one final state, its attempts numbered 1..n <= max_retries + 1,
    each ended, none after an answer or after an unknown outcome, its cost the sum of theirs."""
    problems = []
    for call_id, call in snap.calls.items():
        status = CallStatus(call["status"])
        rows = snap.attempts.get(call_id, [])
        if not status.is_final:
            problems.append(f"call {call_id} is still {status.value} (attempts {len(rows)}, "
                            f"cancel requested {call['cancel_requested_at'] is not None}, "
                            f"next attempt at {call['next_attempt_at']})")
            continue
        if call["live_attempt_id"] is not None or call["ended_at"] is None:
            problems.append(f"call {call_id} is {status.value} with live attempt {call['live_attempt_id']}, "
                            f"ended_at {call['ended_at']}")
        numbers = [a["attempt_no"] for a in rows]
        if numbers != list(range(1, len(rows) + 1)) or len(rows) != call["attempts_count"]:
            problems.append(f"call {call_id}: attempts {numbers}, attempts_count {call['attempts_count']}")
        if len(rows) > call["max_retries"] + 1:
            problems.append(f"call {call_id}: {len(rows)} attempts with max_retries {call['max_retries']}")
        for a in rows:
            if a["ended_at"] is None:
                problems.append(f"attempt {a['id']} of call {call_id} never ended")
        for a in rows[:-1]:
            if a["status"] == CallStatus.COMPLETED.value or a["hangup_cause"] == OUTCOME_UNKNOWN:
                problems.append(f"call {call_id} was dialed again after attempt {a['attempt_no']} "
                                f"({a['status']}/{a['hangup_cause']})")
        if rows and rows[-1]["status"] == CallStatus.COMPLETED.value and status not in (
                CallStatus.COMPLETED, CallStatus.CANCELLED):
            problems.append(f"call {call_id} is {status.value} but its last attempt was COMPLETED")
        cost = sum((Decimal(a["cost"]) for a in rows), ZERO)
        if Decimal(call["cost"]) != cost:
            problems.append(f"call {call_id}: cost {call['cost']}, its attempts {cost}")
    for campaign_id, camp in snap.campaigns.items():
        if camp["status"] not in ("COMPLETED", "CANCELLED", "FAILED"):
            problems.append(f"campaign {campaign_id} is still {camp['status']}")
    return problems


# --------------------------------------------------------------------------- all of them


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)

    def extend(self, name: str, found: list[str]) -> None:
        self.problems += [f"[{name}] {p}" for p in found]

    def __bool__(self) -> bool:
        return not self.problems

    def text(self, limit: int = 25) -> str:
        more = len(self.problems) - limit
        return "\n".join(self.problems[:limit] + ([f"... and {more} more"] if more > 0 else []))


def cheap(snap: Snapshot, node_limit: int | None = None) -> Report:
    """What holds at every moment: on the channels the switch has ended so far, and in the books."""
    report = Report()
    report.extend("numbers", check_numbers(snap))
    report.extend("caps", check_caps(snap, node_limit))
    report.extend("switch", check_switch_rows(snap))
    report.extend("books", check_books(snap))
    return report


def quiet(snap: Snapshot, node_limit: int | None = None) -> Report:
    """Everything, once no call is open and no channel is up."""
    report = cheap(snap, node_limit)
    report.extend("calls", check_calls(snap))
    report.extend("answered", check_answered(snap))
    report.extend("holds", check_holds(snap))
    report.extend("order", check_attempt_order(snap))
    return report
