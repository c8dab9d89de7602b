"""ESL command handling: auth, event subscriptions, api / bgapi and the api commands.

Reply texts are those of FreeSWITCH 1.11 (see the captures). ``sim_*`` api commands are test
hooks; a real switch answers them with ``-ERR sim_x Command not found!``.
"""
from __future__ import annotations

import json
import uuid as uuidlib

import gevent

from dialer import esl_wire as wire


class Commands:
    def __init__(self, sim):
        self.sim = sim
        self.api_table = {
            "version": self.api_version, "status": self.api_status,
            "originate": self.api_originate, "uuid_kill": self.api_uuid_kill,
            "uuid_exists": self.api_uuid_exists, "show": self.api_show,
            "hupall": self.api_hupall, "fsctl": self.api_fsctl,
        }
        self.hooks = {"sim_stats", "sim_reset_stats", "sim_drop", "sim_drop_all", "sim_truncate"}

    # -- socket-level commands -------------------------------------------------------
    def handle(self, conn, line: str, extra: list) -> None:
        if not line:
            return
        cmd, _, arg = line.partition(" ")
        if not conn.authed:
            if cmd == "auth":
                if arg.strip() == self.sim.password:
                    conn.authed = True
                    conn.send(wire.command_reply("+OK accepted"))
                else:
                    conn.send(wire.command_reply("-ERR invalid"))
                    conn.send(wire.disconnect_notice(wire_notice(self.sim)))
                    conn.close_after_flush()
            else:
                conn.send(wire.command_reply("-ERR command not found"))
            return
        if cmd == "api":
            self.run_api(conn, arg)
        elif cmd == "bgapi":
            headers = dict(h.split(": ", 1) for h in extra if ": " in h)
            job = headers.get("Job-UUID") or str(uuidlib.uuid4())
            conn.send(wire.command_reply(f"+OK Job-UUID: {job}", f"Job-UUID: {job}\n"))
            gevent.spawn(self.run_bgapi, arg, job)
        elif cmd == "event":
            self.subscribe(conn, arg)
        elif cmd == "noevents":
            conn.format, conn.all = None, False
            conn.events.clear()
            conn.send(wire.command_reply("+OK no longer listening for events"))
        elif cmd == "filter":
            header, _, value = arg.strip().partition(" ")
            if not header or not value:
                conn.send(wire.command_reply("-ERR invalid filter"))
            else:
                conn.filters.append((header, value.strip()))
                conn.send(wire.command_reply(f"+OK filter added. [{header}]=[{value.strip()}]"))
        elif cmd == "nixevent":
            for name in arg.split():
                conn.events.discard(name)
            conn.send(wire.command_reply("+OK events nixed"))
        elif cmd == "exit":
            conn.send(wire.command_reply("+OK bye"))
            conn.send(wire.disconnect_notice(wire_notice(self.sim)))
            conn.close_after_flush()
        else:
            conn.send(wire.command_reply("-ERR command not found"))

    def subscribe(self, conn, arg: str) -> None:
        words = arg.split()
        fmt = words[0] if words else "plain"
        if fmt not in ("plain", "json", "xml"):
            words, fmt = ["plain"] + words, "plain"
        conn.format = "json" if fmt == "json" else "plain"
        for name in words[1:]:
            if name == "ALL":
                conn.all = True
            elif name != "CUSTOM":
                conn.events.add(name)
        conn.send(wire.command_reply(f"+OK event listener enabled {fmt}"))

    # -- api / bgapi -----------------------------------------------------------------
    def run_api(self, conn, text: str) -> None:
        cmd, _, arg = text.strip().partition(" ")
        if cmd in self.hooks:
            return self.run_hook(conn, cmd)
        fn = self.api_table.get(cmd)
        if fn is None:
            conn.send_api_response((f"-ERR {cmd} Command not found!\n").encode())
            return
        if cmd == "originate":
            call = self.sim.originate(arg, None, reply_conn=conn)
            if call is not None:
                conn.release()
                call.result.get()  # FreeSWITCH answers a sync originate when it completes
            return
        fn(arg.strip(), conn)

    def run_bgapi(self, text: str, job: str) -> None:
        cmd, _, arg = text.strip().partition(" ")
        if cmd == "originate":
            self.sim.originate(arg, job)
            return
        fn = self.api_table.get(cmd)
        body = f"-ERR {cmd} Command not found!\n" if fn is None else fn(arg.strip(), None)
        self.sim.emit_job(job, cmd, arg, body)

    def reply(self, conn, cmd: str, arg: str, body: str, after=None) -> str:
        """Send the api/response, run ``after`` (its events come next), then the API event."""
        if conn is not None:
            conn.send_api_response(body.encode())
        if after is not None:
            after()
        self.sim.emit_api(cmd, arg)
        return body

    # -- api commands ----------------------------------------------------------------
    def api_version(self, arg, conn):
        return self.reply(conn, "version", arg, VERSION_TEXT)

    def api_status(self, arg, conn):
        import time

        from .server import uptime_text

        sim = self.sim
        n = len(sim.calls)
        up = uptime_text(time.time() - sim.started_at)
        peak = sim.max_concurrent
        body = (
            f"UP {up}\nFreeSWITCH (Version 1.11.1-release  64bit) is ready\n"
            f"{sim.sessions_total} session(s) since startup\n{n} session(s) - peak {peak}, last 5min {peak} \n"
            "0 session(s) per Sec out of max 30, peak 0, last 5min 0 \n"
            f"{sim.config.max_channels or 200} session(s) max\nmin idle cpu 0.00/99.90\n"
            "Current Stack Size/Max 240K/8192K\n")
        return self.reply(conn, "status", arg, body)

    def api_originate(self, arg, conn):  # pragma: no cover - dispatched in run_api/run_bgapi
        raise AssertionError

    def api_uuid_kill(self, arg, conn):
        parts = arg.split()
        call = self.sim.calls.get(parts[0]) if parts else None
        if call is None or call.end is not None:
            return self.reply(conn, "uuid_kill", arg, "-ERR No such channel!\n")
        cause = parts[1] if len(parts) > 1 else "NORMAL_CLEARING"
        return self.reply(conn, "uuid_kill", arg, "+OK\n", lambda: call.kill(cause))

    def api_uuid_exists(self, arg, conn):
        exists = arg.split()[0] in self.sim.calls if arg.split() else False
        return self.reply(conn, "uuid_exists", arg, "true" if exists else "false")

    def api_show(self, arg, conn):
        words = arg.split()
        what = words[0] if words else ""
        if what not in ("channels", "calls"):
            return self.reply(conn, "show", arg, "-USAGE: show channels|calls as json\n")
        calls = list(self.sim.calls.values())
        if "json" in words:
            if not calls:
                body = '{"row_count": 0}\n'
            else:
                rows = [show_row(self.sim, c, what) for c in calls]
                body = json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":"),
                                  ensure_ascii=False)
        else:
            keys = self.sim.templates.show_keys[what]
            lines = [",".join(keys)] + [",".join(str(v) for v in show_row(self.sim, c, what).values())
                                        for c in calls]
            body = "\n".join(lines) + f"\n\n{len(calls)} total.\n"
        return self.reply(conn, "show", arg, body)

    def api_hupall(self, arg, conn):
        words = arg.split()
        cause = words[0] if words else "MANAGER_REQUEST"
        if len(words) >= 3:
            var, val = words[1], words[2]
            victims = [c for c in self.sim.calls.values() if c.o.var.get(var) == val]
            body = f"+OK hangup all channels matching [{var}]=[{val}] with cause: {cause}\n"
        else:
            victims = list(self.sim.calls.values())
            body = f"+OK hangup all channels with cause {cause}\n"
        return self.reply(conn, "hupall", arg, body, lambda: [c.kill(cause) for c in victims])

    def api_fsctl(self, arg, conn):
        if arg.split()[:1] == ["shutdown"]:
            body = self.reply(conn, "fsctl", arg, "+OK\n")
            self.sim_shutdown()
            return body
        return self.reply(conn, "fsctl", arg, "-ERR Usage: fsctl shutdown\n")

    def sim_shutdown(self) -> None:
        sim = self.sim
        for call in list(sim.calls.values()):
            call.kill("SYSTEM_SHUTDOWN")
        for tpl in sim.templates.segments["shutdown"]:
            sim.emit(tpl, {})
        for c in list(sim.conns):
            c.send_event(wire.disconnect_notice(NOTICE_SHUTDOWN))
        # close once the requesting connection has released its held events
        gevent.spawn_later(0.05, lambda: [c.close_after_flush() for c in list(sim.conns)])
        gevent.spawn_later(0.3, sim.stop)

    # -- test hooks ------------------------------------------------------------------
    def run_hook(self, conn, cmd: str) -> None:
        sim = self.sim
        if cmd == "sim_stats":
            conn.send_api_response(json.dumps(sim.stats()).encode())
        elif cmd == "sim_reset_stats":
            sim.reset_stats()
            conn.send_api_response(b"+OK\n")
        elif cmd == "sim_drop":
            conn.out = []
            conn.abort()
        elif cmd == "sim_drop_all":
            # every other connection breaks as if the network failed; the calls stay up
            for other in list(sim.conns):
                if other is not conn:
                    other.out = []
                    other.abort()
            conn.send_api_response(b"+OK\n")
        elif cmd == "sim_truncate":
            data = sim_truncated_event(sim)
            conn.send(data[: len(data) // 2])
            conn.close_after_flush()


VERSION_TEXT = "FreeSWITCH Version 1.11.1-release~64bit ( 64bit)\n"
NOTICE_SHUTDOWN = b"The system is being shut down.\n"


def wire_notice(sim) -> bytes:
    return b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"


def sim_truncated_event(sim) -> bytes:
    """A complete HEARTBEAT event as bytes (the hook sends only its first half)."""
    tpl = sim.templates.singles["HEARTBEAT"]
    vals = {"core_uuid": sim.core_uuid, "seq": sim.next_seq(), "date_local": "", "date_gmt": "",
            "now_us": "0", "uptime": "", "uptime_ms": "0", "sessions": "0",
            "sessions_total": "0", "sessions_peak": "0", "sps_last": "0", "sps_peak": "0"}
    return wire.plain_event(tpl.render_plain(vals, b""))


def show_row(sim, call, what: str) -> dict:
    """One row of ``show channels|calls as json`` for the dialer leg, in FreeSWITCH key order."""
    answered = call.answer is not None
    stamp = sim.clock.stamp_local(call.start)
    name = "sofia/{}/{}".format("outbound" if call.o.gateway else call.o.profile, call.o.dest)
    cid_name = call.cid_name or ""
    v = {
        "uuid": call.uuid, "direction": "outbound", "created": stamp,
        "created_epoch": str(int(call.start)), "name": name,
        "state": "CS_EXECUTE" if answered else "CS_CONSUME_MEDIA",
        "cid_name": call.o.dest if answered else cid_name,
        "cid_num": call.o.dest if answered else call.cid_num,
        "dest": call.o.dest, "application": call.o.app if answered else "",
        "application_data": call.o.app_arg if answered else "", "context": "default",
        "hostname": sim.config.hostname, "callstate": call.call_state,
        "callee_name": cid_name if answered else "", "callee_num": call.cid_num if answered else "",
        "callee_direction": "RECV" if answered else "", "call_uuid": call.uuid,
        "initial_cid_name": cid_name, "initial_cid_num": call.cid_num,
        "initial_dest": call.o.dest, "initial_context": "default",
        "read_codec": "PCMU", "read_rate": "8000", "read_bit_rate": "64000",
        "write_codec": "PCMU", "write_rate": "8000", "write_bit_rate": "64000",
    }
    return {k: v.get(k, "") for k in sim.templates.show_keys[what]}
