"""Call model: originate parsing, outcome rules and the dialer leg's life as events.

Only the dialer leg (A leg) is simulated; a remote carrier's leg would not be visible on the
switch. The far end's behaviour is chosen by the dialed number's last digit (the captures'
fake carrier) or, in load mode, at random from configured rates.
"""
from __future__ import annotations

import os
import random
import re
import uuid as uuidlib
import wave
from dataclasses import dataclass, field

import gevent
from gevent.event import Event

# Hangup cause -> Q.850 code as FreeSWITCH reports it in variable_hangup_cause_q850.
Q850 = {
    "UNALLOCATED_NUMBER": 1, "NORMAL_CLEARING": 16, "USER_BUSY": 17, "NO_USER_RESPONSE": 18,
    "NO_ANSWER": 19, "SUBSCRIBER_ABSENT": 20, "CALL_REJECTED": 21, "DESTINATION_OUT_OF_ORDER": 27,
    "INVALID_NUMBER_FORMAT": 28, "NORMAL_UNSPECIFIED": 31, "NORMAL_CIRCUIT_CONGESTION": 34,
    "NETWORK_OUT_OF_ORDER": 38, "NORMAL_TEMPORARY_FAILURE": 41, "SWITCH_CONGESTION": 42,
    "ORIGINATOR_CANCEL": 16, "MANAGER_REQUEST": 16, "ALLOTTED_TIMEOUT": 16,
    "RECOVERY_ON_TIMER_EXPIRE": 102, "INTERWORKING": 127,
}
# Final SIP responses of the fake carrier: code -> hangup cause.
REJECTS = {"486": "USER_BUSY", "403": "CALL_REJECTED", "404": "UNALLOCATED_NUMBER",
           "480": "NO_USER_RESPONSE", "503": "NORMAL_TEMPORARY_FAILURE"}


@dataclass
class Outcome:
    """What the far end does: answer / reject <sip code> / ring (180 or 183) forever."""

    kind: str                 # "answer" | "reject" | "ring"
    delay: float = 0.02       # simulated seconds until the answer / final response / progress
    sip: str = ""             # reject: "486"...; ring: "180" | "183"
    talk: float | None = None  # answer: far end hangs up after this many seconds (None: never)
    media: bool = True        # answer: the far end sends RTP (False: MEDIA_TIMEOUT can end it)

    @property
    def label(self) -> str:
        return {"answer": "answered", "reject": "rejected_" + self.sip,
                "ring": "ringing_" + self.sip}[self.kind]


def outcome_for_digit(number: str, answer_delay: float) -> Outcome:
    """The captures' fake carrier, by the number's last digit (0 answers and parks: no RTP)."""
    d = number[-1:] if number[-1:].isdigit() else "0"
    if d == "1":
        return Outcome("answer", answer_delay, talk=3.0)
    if d == "6":
        return Outcome("answer", answer_delay)
    if d == "0":  # answers and parks: sends no media
        return Outcome("answer", answer_delay, media=False)
    if d == "3":
        return Outcome("ring", answer_delay, sip="180")
    if d == "9":
        return Outcome("ring", answer_delay, sip="183")
    return Outcome("reject", answer_delay,
                   sip={"2": "486", "4": "403", "5": "404", "7": "480", "8": "503"}[d])


@dataclass
class LoadProfile:
    """Random outcomes for load tests (rates are normalised)."""

    answer: float = 0.6
    busy: float = 0.2
    no_answer: float = 0.1
    fail: float = 0.1
    ring: tuple = (0.5, 3.0)
    talk: tuple = (2.0, 10.0)
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self):
        self.rng = random.Random(self.seed)

    def pick(self) -> Outcome:
        r = self.rng.random() * (self.answer + self.busy + self.no_answer + self.fail or 1)
        ring = self.rng.uniform(*self.ring)
        if r < self.answer:
            return Outcome("answer", ring, talk=self.rng.uniform(*self.talk))
        r -= self.answer
        if r < self.busy:
            return Outcome("reject", ring, sip="486")
        r -= self.busy
        if r < self.no_answer:
            return Outcome("ring", min(ring, 0.5), sip="180")
        return Outcome("reject", ring, sip=self.rng.choice(["403", "404", "480", "503"]))


# --- originate parsing ----------------------------------------------------------------

class OriginateError(Exception):
    """Raised with the FreeSWITCH cause for originates that fail before a channel exists."""


@dataclass
class Originate:
    arg: str
    vars: list            # [(name, value)] in the given order
    dial: str
    dest: str
    gateway: str | None
    profile: str
    app: str              # "playback" | "park" | "hangup"
    app_arg: str

    @property
    def var(self) -> dict:
        return dict(self.vars)


_APP_RE = re.compile(r"&(\w+)\((.*)\)$")


def parse_originate(arg: str) -> Originate:
    """``{k=v,...}sofia/gateway/<gw>/<number> &app(args)``."""
    arg = arg.strip()
    pairs: list = []
    rest = arg
    if rest.startswith("{"):
        end = rest.find("}")
        if end < 0:
            raise OriginateError("INVALID_ARGS")  # pragma: no cover
        for kv in re.split(r"(?<!\\),", rest[1:end]):
            if "=" in kv:
                k, v = kv.split("=", 1)
                pairs.append((k.strip(), v.strip().strip("'")))
        rest = rest[end + 1:]
    parts = rest.split(None, 1)
    if not parts:
        raise OriginateError("INVALID_ARGS")
    dial = parts[0]
    # the inline app after the dial string; other apps and dialplan extensions just hold
    # the channel like &park()
    m = _APP_RE.match(parts[1].strip()) if len(parts) > 1 else None
    app, app_arg = (m.group(1), m.group(2)) if m else ("park", "")
    if app not in ("playback", "park", "hangup"):
        app, app_arg = "park", ""
    segs = dial.split("/")
    if segs[0] != "sofia" or len(segs) < 3:
        raise OriginateError("CHAN_NOT_IMPLEMENTED")
    if segs[1] == "gateway":
        if len(segs) < 4:
            raise OriginateError("INVALID_GATEWAY")
        gw, profile, number = segs[2], "gateway", segs[3]
    else:
        gw, profile, number = None, segs[1], "/".join(segs[2:])
    return Originate(arg, pairs, dial, number.split("@")[0], gw, profile, app, app_arg)


_DURATIONS: dict = {}


def wav_info(path: str) -> tuple[int, int] | None:
    """(frames, rate) of an audio file, or None when FreeSWITCH could not open it."""
    if path in _DURATIONS:
        return _DURATIONS[path]
    info = None
    if path and os.path.isfile(path):
        try:
            with wave.open(path, "rb") as w:
                info = (w.getnframes(), w.getframerate())
        except (wave.Error, EOFError, OSError):
            try:
                import soundfile

                i = soundfile.info(path)
                info = (i.frames, i.samplerate)
            except Exception:
                info = None
    _DURATIONS[path] = info
    return info


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


_SCHED_HANGUP_RE = re.compile(r"sched_hangup \+(\d{1,6})(?: ([A-Z][A-Z0-9_]*))?")


def hangup_limit(spec: str | None) -> tuple[int, str] | None:
    """``execute_on_answer`` = ``sched_hangup +N [CAUSE]`` -> (N, cause); else None."""
    m = _SCHED_HANGUP_RE.fullmatch((spec or "").strip())
    if m is None:
        return None
    return int(m.group(1)), m.group(2) or "ALLOTTED_TIMEOUT"


# --- the call -------------------------------------------------------------------------

class Call:
    """The dialer leg of one originate; ``run`` plays its events in a greenlet."""

    def __init__(self, sim, orig: Originate, outcome: Outcome, job_uuid: str | None,
                 reply_conn=None):
        self.sim = sim
        self.o = orig
        self.outcome = outcome
        v = orig.var
        self.uuid = v.get("origination_uuid") or str(uuidlib.uuid4())
        self.job_uuid = job_uuid
        self.reply_conn = reply_conn      # connection waiting for a synchronous api reply
        self.result = gevent.event.AsyncResult()
        self.timeout = float(v.get("originate_timeout") or 60)
        self.cid_num = v.get("origination_caller_id_number") or "0000000000"
        self.cid_name = v.get("origination_caller_id_name")
        self.start = self.progress = self.pmedia = self.answer = self.end = None
        self.call_state = "DOWN"          # DOWN / RINGING / EARLY / ACTIVE / HANGUP
        self.stage = "init"               # init / pre / ring / playback / park / done
        self.cause = None
        self.sip_status = None
        self.killed = False
        self.wake = Event()
        self.tail: list | None = None     # remaining hangup-tail steps after a kill
        self.pb = (0, 8000, 0)            # (frames played, rate, total frames)
        self.playback_opened = False      # the file opened: PLAYBACK_START, playback_* variables
        self.app_response: str | None = None  # current_application_response of the playback
        self.limit = hangup_limit(v.get("execute_on_answer"))
        self._limiter = None
        self.session_id = sim.next_session_id()
        self.sip_call_id = str(uuidlib.uuid4())
        self._base = None

    # -- values substituted into the templates ---------------------------------------
    def base(self) -> dict:
        if self._base is None:
            cid_disp = f'"{self.cid_name}" ' if self.cid_name is not None else ""
            caller_id = (f'"{self.cid_name}" <{self.cid_num}>'
                         if self.cid_name is not None else self.cid_num)
            self._base = {
                "uuid": self.uuid, "dest": self.o.dest, "cid_num": self.cid_num,
                "cid_name": self.cid_name, "cid_disp": cid_disp, "caller_id": caller_id,
                "gw": self.o.gateway or self.o.profile, "file": self.o.app_arg
                if self.o.app == "playback" else "", "session_id": str(self.session_id),
                "sip_call_id": self.sip_call_id, "job_uuid": self.job_uuid or "",
                "cmd_arg": self.o.arg,
            }
        return self._base

    def values(self) -> dict:
        """Time-dependent values: timestamps, durations, playback position, cause."""
        sim = self.sim
        d = {}
        for role in ("start", "answer", "progress", "pmedia", "end"):
            t = getattr(self, role)
            if t is None:
                d[role + "_us"] = d[role + "_s"] = "0"
                continue
            d[role + "_us"] = str(int(t * 1e6))
            d[role + "_s"] = str(int(t))
            d[role + "_stamp"] = sim.clock.stamp_local(t)
        start = self.start or 0.0
        end = self.end if self.end is not None else sim.clock.now()
        us = lambda a, b: int(b * 1e6) - int(a * 1e6)  # noqa: E731
        ans = self.answer
        durs = {
            "duration": (int(end) - int(start), int(end * 1e3) - int(start * 1e3), us(start, end)),
            "bill": (int(end) - int(ans), int(end * 1e3) - int(ans * 1e3), us(ans, end))
            if ans is not None else (0, 0, 0),
            "answer": (int(ans) - int(start), int(ans * 1e3) - int(start * 1e3), us(start, ans))
            if ans is not None else (0, 0, 0),
            "progress_media": (int(self.pmedia) - int(start), int(self.pmedia * 1e3) -
                               int(start * 1e3), us(start, self.pmedia))
            if self.pmedia is not None else (0, 0, 0),
            "flow_bill": (int(end) - int(start), int(end * 1e3) - int(start * 1e3), us(start, end))
            if ans is not None else (0, 0, 0),
            "progress": (0, 0, 0), "wait": (0, 0, 0),
        }
        for k, (s, ms, u) in durs.items():
            if k == "duration":
                d["d_duration"], d["d_mduration"], d["d_uduration"] = str(s), str(ms), str(u)
            else:
                d[f"d_{k}sec"], d[f"d_{k}msec"], d[f"d_{k}usec"] = str(s), str(ms), str(u)
        played, rate, total = self.pb
        samples = total if played >= total else min(total, (played // 1024 + 8) * 1024)
        d["pb_pos"] = str(played)
        d["pb_samples"] = str(samples)
        d["pb_ms"] = str(samples * 1000 // rate)
        d["pb_s"] = str(samples // rate)
        cause = self.cause or "NORMAL_CLEARING"
        d["cause"] = cause
        d["q850"] = str(Q850.get(cause, 16))
        d["prev_call_state"] = self._prev_state
        return d

    _prev_state = "DOWN"

    # -- event emission --------------------------------------------------------------
    def emit(self, steps, start: int = 0) -> None:
        sim = self.sim
        for step in steps[start:]:
            if step == "API":
                self._api_marker()
            elif step == "BJ":
                if self.answer is not None and self.cause is None:
                    # FreeSWITCH queues the job result from another thread: calls answered
                    # in the same instant show all their CHANNEL_ANSWERs before the jobs.
                    gevent.sleep(0)
                if self.job_uuid:
                    sim.emit_job(self.job_uuid, "originate", self.o.arg, self._result_text())
            else:
                sim.emit_channel(step, self)

    def _result_text(self) -> str:
        return f"+OK {self.uuid}\n" if self.answer is not None and self.cause is None \
            else "-ERR %s\n" % (self.cause or "NORMAL_CLEARING")

    def _api_marker(self) -> None:
        text = self._result_text()
        if not self.result.ready():
            self.result.set(text)
        if self.reply_conn is not None:
            self.reply_conn.send_api_response(text.encode())
            self.reply_conn = None
        self.sim.emit_api("originate", self.o.arg)

    def wait(self, seconds: float | None) -> bool:
        """Sleep simulated seconds; True if the channel was killed meanwhile."""
        if self.killed:
            return True
        if seconds is None:
            self.wake.wait()
        elif seconds > 0:
            self.wake.wait(seconds / self.sim.config.time_scale)
        return self.killed

    # -- lifecycle -------------------------------------------------------------------
    def run(self) -> None:
        sim, seg = self.sim, self.sim.templates.segments
        try:
            self.start = sim.clock.now()
            self.stage = "pre"
            sim.channel_up(self)
            self.emit(seg["setup"])
            out = self.outcome
            if self.wait(out.delay):
                return self._finish_tail()
            if out.kind == "reject":
                self.cause = REJECTS[out.sip]
                self.sip_status = out.sip
                self.end = sim.clock.now()
                self.call_state = "HANGUP"
                self.emit(seg["reject_" + out.sip])
                return self._done()
            if out.kind == "ring":
                now = sim.clock.now()
                if out.sip == "183":
                    self.pmedia, self.call_state = now, "EARLY"
                    self.emit(seg["ring183"])
                else:
                    self.progress, self.call_state = now, "RINGING"
                    self.emit(seg["ring180"])
                self.stage = "ring"
                if self.wait(self.start + self.timeout - sim.clock.now()):
                    return self._finish_tail()
                self.cause = "NO_ANSWER"
                self.end = sim.clock.now()
                self.emit(seg["timeout183" if out.sip == "183" else "timeout180"])
                return self._done()
            # answered
            self.answer = sim.clock.now()
            self.call_state = "ACTIVE"
            if self.limit is not None:
                seconds, cause = self.limit
                at = int(self.answer) + seconds + sim.sched_phase
                self._limiter = gevent.spawn(self._hang_up_at, at, cause)
            self.emit(seg["answer"])
            self._run_app(out)
        except gevent.GreenletExit:  # pragma: no cover - simulator stopping
            raise
        finally:
            if self.stage != "done":
                self._done()

    def _run_app(self, out: Outcome) -> None:
        sim, seg = self.sim, self.sim.templates.segments
        if self.o.app == "playback":
            info = wav_info(self.o.app_arg)
            if info is None:
                # FreeSWITCH cannot open the file (missing, empty or not audio: all seen as
                # FILE NOT FOUND on 1.11.1): no PLAYBACK_START/STOP, no playback_* variables,
                # the inline app ends at once and our leg hangs up (NORMAL_CLEARING, billsec 0).
                self.app_response = "FILE NOT FOUND"
                self.emit(seg["playback_start"][:1])
                self.cause = "NORMAL_CLEARING"
                self.end = sim.clock.now()
                self.emit(seg["playback_missing"])
                return self._done()
            total, rate = info
            length = total / float(rate)
            self.pb = (0, rate, total)
            self.playback_opened = True
            self.emit(seg["playback_start"])
            self.stage = "playback"
            t0 = sim.clock.now()
            far = out.talk
            dead = self._media_timeout(out)
            if dead is not None and dead < length and (far is None or dead < far):
                if not self.wait(dead):
                    self.kill("MEDIA_TIMEOUT", response="PLAYBACK ERROR")
                return self._finish_tail()
            if self.wait(min(length, far) if far is not None else length):
                return self._finish_tail()
            played = sim.clock.now() - t0
            if far is not None and far < length:
                self.pb = (min(total, int(played * rate)), rate, total)
                self.app_response = "PLAYBACK ERROR"
                self.cause, self.sip_status = "NORMAL_CLEARING", "200"
                self.end = sim.clock.now()
                self.emit(seg["playback_remote"])
            else:
                self.pb = (total, rate, total)
                self.app_response = "FILE PLAYED"
                self.cause = "NORMAL_CLEARING"
                self.end = sim.clock.now()
                self.emit(seg["playback_done"])
            return self._done()
        if self.o.app == "hangup":
            self.cause = "NORMAL_CLEARING"
            self.end = sim.clock.now()
            self.emit(seg["park_killed"])
            return self._done()
        self.emit(seg["park_start"])
        self.stage = "park"
        dead = self._media_timeout(out)
        if dead is not None and (out.talk is None or dead < out.talk):
            if not self.wait(dead):
                self.kill("MEDIA_TIMEOUT")
            return self._finish_tail()
        if self.wait(out.talk):
            return self._finish_tail()
        self.cause = "NORMAL_CLEARING"
        self.end = sim.clock.now()
        self.emit(seg["park_killed"])
        self._done()

    def _media_timeout(self, out: Outcome) -> float | None:
        """Seconds after which a far end that sends no RTP ends the call with MEDIA_TIMEOUT:
        the ``media_timeout`` channel variable (ms), else the switch's global one (fs_conf sets
        30000; ``Config.media_timeout_ms``, 0 = off)."""
        if out.media:
            return None
        ms = _int_or_none(self.o.var.get("media_timeout"))
        if ms is None:
            ms = self.sim.config.media_timeout_ms
        return ms / 1000.0 if ms and ms > 0 else None

    def kill(self, cause: str = "NORMAL_CLEARING", response: str = "FILE PLAYED") -> bool:
        """uuid_kill / hupall / sched_hangup / media timeout: hang up now; the first hangup
        event goes out at once. ``response``: the playback's current_application_response
        (FreeSWITCH reports a killed playback as FILE PLAYED, a media timeout as PLAYBACK ERROR)."""
        if self.killed or self.stage in ("done", "init") or self.end is not None:
            return False
        sim, seg = self.sim, self.sim.templates.segments
        self.killed = True
        self.cause = cause
        self.end = sim.clock.now()
        if self.stage == "playback":
            t0 = self.answer or self.end
            played, rate, total = self.pb
            self.pb = (min(total, int((self.end - t0) * rate)), rate, total)
            self.app_response = response
            tail = seg["playback_killed"]
        elif self.stage == "park":
            tail = seg["park_killed"]
        else:
            self._prev_state = self.call_state
            tail = seg["killed_ringing"]
        self.call_state = "HANGUP"
        self.tail = tail
        self.emit(tail[:1])
        self.wake.set()
        return True

    def _finish_tail(self) -> None:
        tail, self.tail = self.tail, None
        if tail:
            self.emit(tail, 1)
        self._done()

    def _hang_up_at(self, at: float, cause: str) -> None:
        """``execute_on_answer=sched_hangup +N <cause>``: FreeSWITCH schedules the task for the
        whole epoch second ``int(answer) + N`` and its scheduler thread, which wakes once a
        second (``sim.sched_phase``), runs it at its first tick from then on: N-1 to N+1 s
        after the answer (measured 5.5 and 6.1 s for N=6 on FreeSWITCH 1.11.1)."""
        self.wait(at - self.sim.clock.now())
        self.kill(cause)

    def _done(self) -> None:
        if self.stage == "done":
            return
        self.stage = "done"
        if self._limiter is not None and self._limiter is not gevent.getcurrent():
            self._limiter.kill(block=False)
        if not self.result.ready():
            self.result.set(self._result_text())
        if self.reply_conn is not None:
            self.reply_conn.send_api_response(self._result_text().encode())
            self.reply_conn = None
        self.sim.channel_down(self)

    def row(self) -> dict:
        """Per-call log entry (sim_stats and --call-log)."""
        billsec = int(self.end) - int(self.answer) if self.answer is not None and self.end else 0
        return {
            "uuid": self.uuid, "number": self.o.dest, "vars": dict(self.o.vars),
            "app": self.o.app, "outcome": self.outcome.label,
            "answered": self.answer is not None, "cause": self.cause,
            "sip_status": self.sip_status, "start": self.start, "answer": self.answer,
            "end": self.end, "billsec": billsec,
        }
