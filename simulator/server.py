"""The simulated switch: an inbound Event Socket server on gevent's StreamServer.

Speaks the ESL protocol of FreeSWITCH 1.11 as captured (auth, event plain|json, noevents,
exit, api, bgapi with Job-UUID, disconnect notices) and runs simulated channels (see
``calls``). Events go to every authenticated connection subscribed to the event name (or
ALL); api replies and events share one ordered outgoing queue per connection.
"""
from __future__ import annotations

import json
import re
import sys
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field

import gevent
from gevent.event import Event
from gevent.server import StreamServer

from dialer import esl_wire as wire

from . import cdr
from .calls import Call, LoadProfile, OriginateError, outcome_for_digit, parse_originate
from .templates import TemplateSet, default_templates

NOTICE_BYE = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
NOTICE_SHUTDOWN = b"The system is being shut down.\n"
VERSION = "FreeSWITCH Version 1.11.1-release~64bit ( 64bit)"
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


@dataclass
class Config:
    """Simulator options (the CLI flags map 1:1)."""

    time_scale: float = 1.0          # all waits are divided by this
    heartbeat: float = 20.0          # real seconds between HEARTBEAT + RE_SCHEDULE (0: off)
    max_channels: int = 0            # 0: unlimited
    gateways: tuple = ("carrier",)
    profiles: tuple = ("outbound", "carrier", "external", "internal")
    mode: str = "digits"             # "digits" (last digit rules) | "load"
    load: LoadProfile = field(default_factory=LoadProfile)
    answer_delay: float = 0.02       # simulated seconds from INVITE to 200/18x/4xx
    call_log: str | None = None
    cdr_dir: str | None = None       # write <uuid>.cdr.json per finished leg (like mod_json_cdr)
    media_timeout_ms: int = 0        # the switch's global media_timeout (fs_conf: 30000); 0 = off
    hostname: str = "vm"


class Clock:
    """Simulated wall clock: starts at real time, runs ``time_scale`` times faster."""

    def __init__(self, scale: float):
        self.scale = scale
        self.wall0 = time.time()
        self.mono0 = time.monotonic()
        self._cache: dict = {}

    def now(self) -> float:
        return self.wall0 + (time.monotonic() - self.mono0) * self.scale

    def stamp_local(self, t: float) -> str:
        s = int(t)
        hit = self._cache.get(s)
        if hit is None:
            lt, gt = time.localtime(s), time.gmtime(s)
            hit = (time.strftime("%Y-%m-%d %H:%M:%S", lt),
                   f"{_DAYS[gt.tm_wday]}, {gt.tm_mday:02d} {_MONTHS[gt.tm_mon - 1]} {gt.tm_year} "
                   + time.strftime("%H:%M:%S GMT", gt))
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[s] = hit
        return hit[0]

    def stamp_gmt(self, t: float) -> str:
        self.stamp_local(t)
        return self._cache[int(t)][1]


class Connection:
    """One ESL client socket: command reader plus an ordered writer greenlet."""

    def __init__(self, sim: Simulator, sock):
        self.sim = sim
        self.sock = sock
        self.authed = False
        self.format: str | None = None   # "plain" | "json" once subscribed
        self.events: set = set()
        self.all = False
        self.filters: list = []  # [(header, value or /regex/)]: an event passes if one matches
        self.out: list = []
        self.ready = Event()
        self.closing = False
        self.closed = False
        # Like FreeSWITCH, events wait while commands are pending on the socket: replies go
        # out at once, events queued meanwhile follow after the last pending command.
        self.hold = False
        self.held: list = []
        self.writer = gevent.spawn(self._write_loop)

    # -- output ----------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if self.closed or self.closing:
            return
        self.out.append(data)
        self.ready.set()

    def send_event(self, data: bytes) -> None:
        if self.hold:
            self.held.append(data)
        else:
            self.send(data)

    def release(self) -> None:
        self.hold = False
        if self.held:
            held, self.held = self.held, []
            for data in held:
                self.send(data)

    def send_api_response(self, body: bytes) -> None:
        self.send(wire.api_response(body))

    def close_after_flush(self) -> None:
        self.closing = True
        self.ready.set()

    def _write_loop(self) -> None:
        try:
            while True:
                self.ready.wait()
                self.ready.clear()
                if self.out:
                    data, self.out = b"".join(self.out), []
                    self.sock.sendall(data)
                if self.closing and not self.out:
                    break
        except OSError:
            pass
        finally:
            self.abort()

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.ready.set()
        self.sim.conns.discard(self)
        try:
            self.sock.close()
        except OSError:  # pragma: no cover
            pass

    def wants(self, name: str) -> bool:
        return self.format is not None and (self.all or name in self.events)

    def passes(self, header: Callable[[str], str | None]) -> bool:
        """ESL ``filter``: with filters set, an event goes out only if one of them matches it
        (a ``/regex/`` value is searched, any other value compared), as mod_event_socket does."""
        if not self.filters:
            return True
        for name, value in self.filters:
            actual = header(name)
            if actual is None:
                continue
            if value.startswith("/") and value.endswith("/") and len(value) > 1:
                if re.search(value[1:-1], actual):
                    return True
            elif actual == value:
                return True
        return False

    # -- input -----------------------------------------------------------------------
    def serve(self) -> None:
        self.send(wire.auth_request())
        buf = b""
        try:
            while not self.closing and not self.closed:
                end = buf.find(b"\n\n")
                if end < 0:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        break
                    buf += chunk.replace(b"\r\n", b"\n")
                    continue
                block, buf = buf[:end].decode("utf-8", "replace"), buf[end + 2:]
                lines = block.split("\n")
                self.hold = True
                self.sim.commands.handle(self, lines[0].strip(), lines[1:])
                if buf.find(b"\n\n") < 0:
                    self.release()
        except OSError:
            pass
        finally:
            if not self.closing:
                self.abort()
            else:
                self.writer.join(timeout=5)
                self.abort()


class Simulator:
    """A simulated FreeSWITCH. ``Simulator(host, port, password, config).start()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, password: str = "ClueCon",
                 config: Config | None = None, templates: TemplateSet | None = None):
        from .commands import Commands

        self.host, self.password = host, password
        self.config = config or Config()
        self.templates = templates or default_templates()
        self.clock = Clock(self.config.time_scale)
        self.core_uuid = str(uuidlib.uuid4())
        self.conns: set = set()
        self.calls: dict = {}
        self.commands = Commands(self)
        self.server = StreamServer((host, port), self._handle)
        self._seq = 1000
        self._session = 0
        self._greenlets: list = []
        self.started_at = time.time()
        # FreeSWITCH's scheduler thread ticks once a second at its own phase (sched_hangup)
        self.sched_phase = self.started_at % 1.0
        self._log = open(self.config.call_log, "a") if self.config.call_log else None  # noqa: SIM115
        self.reset_stats()

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> Simulator:
        self.server.start()
        if self.config.heartbeat > 0:
            self._greenlets.append(gevent.spawn(self._heartbeat_loop))
        return self

    @property
    def port(self) -> int:
        return self.server.server_port

    on_stop = None  # callback run by stop() (the CLI exits then)

    def stop(self) -> None:
        if self.on_stop is not None:
            cb, self.on_stop = self.on_stop, None
            cb()
        self.server.stop(timeout=1)
        for g in self._greenlets:
            g.kill(block=False)
        for c in list(self.conns):
            c.abort()
        for call in list(self.calls.values()):
            call.kill("SYSTEM_SHUTDOWN")
        if self._log:
            self._log.close()
            self._log = None

    def _handle(self, sock, addr) -> None:
        conn = Connection(self, sock)
        self.conns.add(conn)
        conn.serve()

    # -- counters / stats ------------------------------------------------------------
    def next_seq(self) -> str:
        self._seq += 1
        return str(self._seq)

    def next_session_id(self) -> int:
        self._session += 1
        return self._session

    def reset_stats(self) -> None:
        self.max_concurrent = len(getattr(self, "calls", {}))
        self.originates = 0
        self.sessions_total = 0
        self.call_rows: list = []

    def stats(self) -> dict:
        return {"max_concurrent": self.max_concurrent, "current": len(self.calls),
                "originates": self.originates, "calls": list(self.call_rows)}

    def channel_up(self, call: Call) -> None:
        self.calls[call.uuid] = call
        self.sessions_total += 1
        if len(self.calls) > self.max_concurrent:
            self.max_concurrent = len(self.calls)

    def channel_down(self, call: Call) -> None:
        if self.calls.get(call.uuid) is call:
            del self.calls[call.uuid]
        if self.config.cdr_dir:
            try:
                cdr.write(self.config.cdr_dir, call, self.config.hostname, self.core_uuid)
            except OSError as exc:  # like FreeSWITCH: the record is lost, the call is not
                sys.stderr.write(f"simulator: cannot write the CDR of {call.uuid}: {exc}\n")
        row = call.row()
        self.call_rows.append(row)
        if self._log:
            self._log.write(json.dumps(row) + "\n")
            self._log.flush()

    # -- event fan-out ---------------------------------------------------------------
    def _common(self) -> dict:
        t = self.clock.now()
        return {"core_uuid": self.core_uuid, "date_local": self.clock.stamp_local(t),
                "date_gmt": self.clock.stamp_gmt(t), "now_us": str(int(t * 1e6)),
                "seq": self.next_seq()}

    def emit(self, tpl, values: dict, var_pairs=(), body: str | None = None) -> None:
        """Render ``tpl`` once per wanted format and queue it on subscribed connections."""
        variables = dict(var_pairs)

        def header(name: str) -> str | None:
            if name == "Event-Name":
                return str(tpl.name)
            return variables.get(name) if name.startswith("variable_") else None

        targets = [c for c in self.conns if c.wants(tpl.name) and c.passes(header)]
        if not targets:
            return
        values.update(self._common())
        plain = js = None
        for c in targets:
            if c.format == "json":
                if js is None:
                    js = wire.json_event(tpl.render_pairs(values, list(var_pairs)), body)
                c.send_event(js)
            else:
                if plain is None:
                    enc = {k: (wire.url_encode(v) if v is not None else None)
                           for k, v in values.items()}
                    vb = "".join(f"{k}: {wire.url_encode(v)}\n" for k, v in var_pairs)
                    plain = wire.plain_event(tpl.render_plain(enc, vb.encode()),
                                             body.encode() if body is not None else None)
                c.send_event(plain)

    def emit_channel(self, tpl, call: Call) -> None:
        if not any(c.wants(tpl.name) for c in self.conns):
            return
        values = dict(call.base())
        values.update(call.values())
        self.emit(tpl, values, [("variable_" + k, v) for k, v in call.o.vars])

    def emit_api(self, cmd: str, arg: str) -> None:
        self.emit(self.templates.singles["API"], {"api_cmd": cmd, "api_arg": arg or None})

    def emit_job(self, job_uuid: str, cmd: str, arg: str, body: str) -> None:
        self.emit(self.templates.singles["BJ"],
                  {"job_uuid": job_uuid, "job_cmd": cmd, "job_arg": arg or None}, body=body)

    def _heartbeat_loop(self) -> None:
        while True:
            gevent.sleep(self.config.heartbeat)
            self.heartbeat()

    def heartbeat(self) -> None:
        up = time.time() - self.started_at
        n = str(len(self.calls))
        vals = {"uptime": uptime_text(up), "uptime_ms": str(int(up * 1000)), "sessions": n,
                "sessions_total": str(self.sessions_total), "sessions_peak": str(self.max_concurrent),
                "sps_last": "0", "sps_peak": "0",
                "task_runtime": str(int(self.clock.now() + self.config.heartbeat))}
        self.emit(self.templates.singles["HEARTBEAT"], dict(vals))
        self.emit(self.templates.singles["RE_SCHEDULE"], dict(vals))

    # -- originate -------------------------------------------------------------------
    def originate(self, arg: str, job_uuid: str | None, reply_conn=None) -> Call | None:
        """Start a call; failures before a channel exists are reported like FreeSWITCH."""
        self.originates += 1
        try:
            orig = parse_originate(arg)
            if orig.gateway is not None and orig.gateway not in self.config.gateways:
                raise OriginateError("INVALID_GATEWAY")
            if orig.gateway is None and orig.profile not in self.config.profiles:
                raise OriginateError("INVALID_PROFILE")
            if self.config.max_channels and len(self.calls) >= self.config.max_channels:
                raise OriginateError("DESTINATION_OUT_OF_ORDER")
        except OriginateError as e:
            self._fail_early(arg, str(e), job_uuid, reply_conn, locals().get("orig"))
            return None
        if self.config.mode == "load":
            outcome = self.config.load.pick()
        else:
            outcome = outcome_for_digit(orig.dest, self.config.answer_delay)
        call = Call(self, orig, outcome, job_uuid, reply_conn)
        gevent.spawn(call.run)
        return call

    def _fail_early(self, arg, cause, job_uuid, reply_conn, orig) -> None:
        text = f"-ERR {cause}\n"
        if cause == "INVALID_GATEWAY" and orig is not None:
            # No channel is created: only CHANNEL_DESTROY (CS_NONE) and CHANNEL_STATE.
            call = Call(self, orig, outcome_for_digit("0", 0), None)
            call.cause = cause
            for step in self.templates.segments["gateway_missing"]:
                if not isinstance(step, str):
                    self.emit_channel(step, call)
        if reply_conn is not None:
            reply_conn.send_api_response(text.encode())
        self.emit_api("originate", arg)
        if job_uuid:
            self.emit_job(job_uuid, "originate", arg, text)
        self.call_rows.append({"uuid": dict(orig.vars).get("origination_uuid") if orig else None,
                               "number": orig.dest if orig else None,
                               "vars": dict(orig.vars) if orig else {}, "outcome": "failed",
                               "answered": False, "cause": cause, "sip_status": None,
                               "start": self.clock.now(), "answer": None, "end": self.clock.now(),
                               "billsec": 0})


def uptime_text(seconds: float) -> str:
    s = int(seconds)
    us = int((seconds - s) * 1e6)
    return (f"0 years, {s // 86400} days, {s % 86400 // 3600} hours, {s % 3600 // 60} minutes, "
            f"{s % 60} seconds, {us // 1000} milliseconds, {us % 1000} microseconds")

