"""Build ``templates.json`` (the simulator's event templates) from real FreeSWITCH captures.

Run: ``python -m simulator.build_templates [captures dir]`` (default: the repository's
``tests/fixtures/esl-captures``). The simulator only
reads the generated JSON at runtime, never the captures.

For every capture the dialer leg's (A leg's) events are taken in wire order, with the
``API`` (originate) and ``BACKGROUND_JOB`` positions kept as markers, and cut into segments
(setup, answer, ring, reject tails, playback tails, kill tails...). Each header value is
tokenised: per-call values (uuid, numbers, gateway, file, times, durations, sequence numbers,
originate variables) become placeholders, everything else stays byte-for-byte as captured.
Header names and order are never changed.

Template format: a template is a list of headers ``[name, value]``; ``value`` is a string in
which placeholders are written ``\\x01key\\x01``. The pseudo header ``["@VARS", ""]`` marks where
the originate's ``{k=v}`` channel variables go (``variable_<k>: v`` in the given order).
"""
from __future__ import annotations

import json
import os
import re
import sys

from dialer.esl_wire import parse_stream

S = "\x01"

# Microsecond timestamps, epoch seconds and date stamps by header name -> time role.
TIME_US = {
    "Caller-Profile-Created-Time": "start", "Caller-Channel-Created-Time": "start",
    "variable_start_uepoch": "start", "variable_profile_start_uepoch": "start",
    "Caller-Channel-Answered-Time": "answer", "variable_answer_uepoch": "answer",
    "Caller-Channel-Progress-Time": "progress", "variable_progress_uepoch": "progress",
    "Caller-Channel-Progress-Media-Time": "pmedia", "variable_progress_media_uepoch": "pmedia",
    "Caller-Channel-Hangup-Time": "end", "variable_end_uepoch": "end",
}
TIME_S = {
    "variable_start_epoch": "start", "variable_profile_start_epoch": "start",
    "variable_answer_epoch": "answer", "variable_progress_epoch": "progress",
    "variable_progress_media_epoch": "pmedia", "variable_end_epoch": "end",
}
TIME_STAMP = {
    "variable_start_stamp": "start", "variable_profile_start_stamp": "start",
    "variable_answer_stamp": "answer", "variable_progress_stamp": "progress",
    "variable_progress_media_stamp": "pmedia", "variable_end_stamp": "end",
}
DURATIONS = [
    "duration", "billsec", "progresssec", "answersec", "waitsec", "progress_mediasec",
    "flow_billsec", "mduration", "billmsec", "progressmsec", "answermsec", "waitmsec",
    "progress_mediamsec", "flow_billmsec", "uduration", "billusec", "progressusec",
    "answerusec", "waitusec", "progress_mediausec", "flow_billusec",
]
PLAYBACK = {
    "variable_playback_last_offset_pos": "pb_pos", "variable_playback_seconds": "pb_s",
    "variable_playback_ms": "pb_ms", "variable_playback_samples": "pb_samples",
}
HEARTBEAT = {
    "Up-Time": "uptime", "Uptime-msec": "uptime_ms", "Session-Count": "sessions",
    "Session-Since-Startup": "sessions_total", "Session-Peak-Max": "sessions_peak",
    "Session-Peak-FiveMin": "sessions_peak", "Session-Per-Sec-Last": "sps_last",
    "Session-Per-Sec-Max": "sps_peak", "Session-Per-Sec-FiveMin": "sps_peak",
    "Task-Runtime": "task_runtime",
}


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def tok(key: str) -> str:
    return S + key + S


def parse_originate(line: str) -> dict:
    """Split a sent ``bgapi originate {vars}dial app`` command into its parts."""
    arg = line.split(" ", 2)[2]  # "bgapi originate <arg>" / "api originate <arg>"
    m = re.match(r"\{([^}]*)\}(\S+) (.*)$", arg)
    assert m, arg
    pairs = [kv.split("=", 1) for kv in m.group(1).split(",")]
    dial = m.group(2)
    app = m.group(3)
    fm = re.match(r"&playback\((.*)\)$", app)
    return {
        "arg": arg, "vars": pairs, "dial": dial, "dest": dial.rsplit("/", 1)[1].split("@")[0],
        "gw": dial.split("/")[2] if dial.startswith("sofia/gateway/") else None,
        "file": fm.group(1) if fm else None,
    }


class Capture:
    """A capture file reduced to the A legs' items: ('ev', headers) | ('API',) | ('BJ',)."""

    def __init__(self, cdir: str, name: str, index: dict):
        self.name = name
        info = index[name]
        sent = _read(os.path.join(cdir, info["sent_file"])).decode().split("\n\n")
        self.originates = [parse_originate(c) for c in sent if " originate " in c]
        self.a_uuids = [dict(o["vars"])["origination_uuid"] for o in self.originates]
        self.jobs = [j["job_uuid"] for j in info.get("background_jobs", [])]
        self.items: dict[str, list] = {u: [] for u in self.a_uuids}
        self.other: list = []
        job_of = {}
        for msg in parse_stream(_read(os.path.join(cdir, name))):
            ev = msg.event()
            if ev is None:
                continue
            uid = ev.get("Unique-ID")
            if uid in self.items:
                self.items[uid].append(("ev", ev.headers))
            elif ev.name == "API" and ev.get("API-Command") == "originate":
                u = _uuid_in(ev.get("API-Command-Argument"), self.a_uuids)
                self.items[u].append(("API", ev.headers))
            elif ev.name == "BACKGROUND_JOB":
                u = _uuid_in(ev.get("Job-Command-Arg"), self.a_uuids)
                job_of[u] = ev.get("Job-UUID")
                self.items[u].append(("BJ", ev.headers))
            elif uid is None:
                self.other.append(ev)
        self.job_of = job_of

    def ctx(self, a_uuid: str) -> dict:
        o = self.originates[self.a_uuids.index(a_uuid)]
        return {"uuid": a_uuid, "job": self.job_of.get(a_uuid), **o}


def _uuid_in(text, uuids):
    for u in uuids:
        if u in text:
            return u
    raise KeyError(text)


def tokenize(headers: list, c: dict, cause_tok: str | None = None) -> list:
    """Turn one captured A-leg event into a template (see module doc)."""
    out = []
    var_names = ["variable_" + k for k, _ in c["vars"]]
    i = 0
    while i < len(headers):
        name, value = headers[i]
        if var_names and name == var_names[0]:
            run = [h[0] for h in headers[i:i + len(var_names)]]
            assert run == var_names, (run, var_names)
            out.append(["@VARS", ""])
            i += len(var_names)
            continue
        out.append([name, tok_value(name, value, c, cause_tok)])
        i += 1
    return out


def tok_value(name: str, value: str, c: dict, cause_tok: str | None) -> str:
    if name in ("Event-Date-Local", "Event-Date-GMT", "Event-Date-Timestamp"):
        return tok({"Event-Date-Local": "date_local", "Event-Date-GMT": "date_gmt"}.get(name, "now_us"))
    if name == "Event-Sequence":
        return tok("seq")
    if name == "Core-UUID":
        return tok("core_uuid")
    if value != "0":
        if name in TIME_US:
            return tok(TIME_US[name] + "_us")
        if name in TIME_S:
            return tok(TIME_S[name] + "_s")
        if name in TIME_STAMP:
            return tok(TIME_STAMP[name] + "_stamp")
    if name.startswith("variable_") and name[9:] in DURATIONS:
        return tok("d_" + name[9:])
    if name in PLAYBACK:
        return tok(PLAYBACK[name])
    if name in HEARTBEAT:
        return tok(HEARTBEAT[name])
    if name == "variable_session_id":
        return tok("session_id")
    if name == "variable_sip_call_id":
        return tok("sip_call_id")
    if cause_tok and value == cause_tok and name in ("Hangup-Cause", "variable_hangup_cause"):
        return tok("cause")
    if cause_tok and name == "variable_hangup_cause_q850":
        return tok("q850")
    names = dict(c["vars"])
    cid_name = names.get("origination_caller_id_name")
    cid_num = names.get("origination_caller_id_number")
    if cid_name is not None and value == cid_name:
        return tok("cid_name")
    if "arg" in c and c["arg"]:
        value = value.replace(c["arg"], tok("cmd_arg"))
    value = value.replace(c["uuid"], tok("uuid"))
    if c.get("job"):
        value = value.replace(c["job"], tok("job_uuid"))
    if cid_name is not None:
        value = value.replace(f'"{cid_name}" <{cid_num}>', tok("caller_id"))
        value = value.replace(f'"{cid_name}" ', tok("cid_disp"))
    elif cid_num and name == "variable_caller_id" and value == cid_num:
        value = tok("caller_id")
    if c.get("file"):
        value = value.replace(c["file"], tok("file"))
    value = value.replace(c["dest"], tok("dest"))
    if cid_num:
        value = value.replace(cid_num, tok("cid_num"))
    if c.get("gw"):
        if name == "variable_sip_gateway_name" and value == c["gw"]:
            value = tok("gw")
        value = value.replace("gw+" + c["gw"], "gw+" + tok("gw")).replace(
            "gw=" + c["gw"], "gw=" + tok("gw"))
    return value


def find(items: list, name: str, after: int = 0) -> int:
    for i in range(after, len(items)):
        kind, hs = items[i]
        if kind == "ev" and dict(hs)["Event-Name"] == name:
            return i
    raise KeyError(name)


def main(cdir: str, out_path: str) -> None:
    index = json.loads(_read(os.path.join(cdir, "index.json")))
    caps = {}

    def cap(name):
        if name not in caps:
            caps[name] = Capture(cdir, name, index)
        return caps[name]

    templates: list = []
    seen: dict = {}
    segments: dict = {}

    def add(tpl) -> int:
        key = json.dumps(tpl)
        if key not in seen:
            seen[key] = len(templates)
            templates.append(tpl)
        return seen[key]

    def seg(segname, capname, start, end=None, cause=None, which=0, edit=None):
        c = cap(capname)
        u = c.a_uuids[which]
        items = c.items[u]
        steps = []
        for kind, hs in items[start:end]:
            if kind == "ev":
                tpl = tokenize(hs, c.ctx(u), cause)
                if edit:
                    tpl = edit(tpl)
                    if tpl is None:
                        continue
                steps.append(add(tpl))
            else:
                steps.append(kind)
        segments[segname] = steps
        return items

    # Answered call with &playback: setup | answer | playback start | end of file (we hang up).
    ap = cap("answered-playback.plain.txt").items[cap("answered-playback.plain.txt").a_uuids[0]]
    i_codec = find(ap, "CODEC")
    i_exec = find(ap, "CHANNEL_EXECUTE")
    i_pbstart = find(ap, "PLAYBACK_START")
    seg("setup", "answered-playback.plain.txt", 0, i_codec)
    seg("answer", "answered-playback.plain.txt", i_codec, i_exec)
    seg("playback_start", "answered-playback.plain.txt", i_exec, i_pbstart + 1)
    seg("playback_done", "answered-playback.plain.txt", i_pbstart + 1)

    # A missing file: EXECUTE, then EXECUTE_COMPLETE and the hangup, without playback data.
    def no_playback(tpl):
        if tpl[0][1] == "PLAYBACK_STOP":
            return None
        out = []
        for n, v in tpl:
            if n in PLAYBACK:
                continue
            if n == "variable_current_application_response":
                v = "FILE NOT FOUND"
            out.append([n, v])
        return out
    seg("playback_missing", "answered-playback.plain.txt", i_pbstart + 1, edit=no_playback)

    for name, capname in [("playback_remote", "answered-remote-hangup.plain.txt"),
                          ("playback_killed", "uuid_kill.plain.txt")]:
        items = cap(capname).items[cap(capname).a_uuids[0]]
        seg(name, capname, find(items, "PLAYBACK_START") + 1,
            cause="NORMAL_CLEARING" if name == "playback_killed" else None)

    # Ringing (180) / early media (183) and their originate-timeout tails.
    for ring, tail, capname, first in [("ring180", "timeout180", "no-answer.plain.txt", "CHANNEL_PROGRESS"),
                                       ("ring183", "timeout183", "early-media-no-answer.plain.txt",
                                        "CHANNEL_PROGRESS_MEDIA")]:
        items = cap(capname).items[cap(capname).a_uuids[0]]
        i0 = find(items, first)
        i1 = find(items, "CHANNEL_HANGUP")
        seg(ring, capname, i0, i1)
        seg(tail, capname, i1)

    # uuid_kill while ringing: the HANGUP's Channel-Call-State is the state it had.
    def prev_state(tpl):
        if tpl[0][1] == "CHANNEL_HANGUP":
            tpl = [[n, tok("prev_call_state") if n == "Channel-Call-State" else v] for n, v in tpl]
        return tpl
    kr = cap("uuid_kill-while-ringing.plain.txt")
    items = kr.items[kr.a_uuids[0]]
    seg("killed_ringing", "uuid_kill-while-ringing.plain.txt", find(items, "CHANNEL_HANGUP"),
        cause="NORMAL_CLEARING", edit=prev_state)

    # Final SIP responses from the carrier.
    for code, capname in [("486", "busy.plain.txt"), ("403", "rejected-403.plain.txt"),
                          ("404", "unallocated-404.plain.txt"), ("480", "unavailable-480.plain.txt"),
                          ("503", "service-unavailable-503.plain.txt")]:
        items = cap(capname).items[cap(capname).a_uuids[0]]
        seg("reject_" + code, capname, find(items, "CHANNEL_HANGUP"))

    # &park(): EXECUTE + CHANNEL_PARK (client-drop capture); its hangup tail is the uuid_kill
    # tail without the playback events/variables, with the CHANNEL_HANGUP_COMPLETE of a
    # parked call killed by hupall.
    cd = cap("client-drop-midcall.1-before-drop.plain.txt")
    items = cd.items[cd.a_uuids[0]]
    seg("park_start", "client-drop-midcall.1-before-drop.plain.txt", find(items, "CHANNEL_EXECUTE"))
    hp = cap("hupall.plain.txt")
    hc_park = None
    for u in hp.a_uuids:
        for kind, hs in hp.items[u]:
            if kind == "ev" and dict(hs)["Event-Name"] == "CHANNEL_HANGUP_COMPLETE" \
                    and dict(hs)["Hangup-Cause"] == "MANAGER_REQUEST":
                hc_park = tokenize(hs, hp.ctx(u), "MANAGER_REQUEST")
    assert hc_park

    def to_park(tpl):
        ev = tpl[0][1]
        if ev == "PLAYBACK_STOP":
            return None
        if ev in ("CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"):
            src = dict(tpl)
            out = []
            for n, v in hc_park:
                if n in ("Event-Name", "Event-Calling-File", "Event-Calling-Function",
                         "Event-Calling-Line-Number", "Channel-State-Number"):
                    v = src[n]
                out.append([n, v])
            if ev == "CHANNEL_DESTROY":
                names = {n for n, _ in tpl}
                out = [h for h in out if h[0] in names or h[0] == "@VARS"]
            return out
        out = []
        for n, v in tpl:
            if n in PLAYBACK or n in ("Playback-File-Type", "Playback-Status"):
                continue
            if v == tok("file"):
                v = ""
            if v == "playback":
                v = "park"
            if n == "variable_current_application_response":
                continue
            out.append([n, v])
        return out
    uk = cap("uuid_kill.plain.txt")
    items = uk.items[uk.a_uuids[0]]
    seg("park_killed", "uuid_kill.plain.txt", find(items, "PLAYBACK_START") + 1,
        cause="NORMAL_CLEARING", edit=to_park)

    # Missing gateway: only CHANNEL_DESTROY (CS_NONE, Channel-Name N/A) and CHANNEL_STATE.
    seg("gateway_missing", "gateway-missing.plain.txt", 0)

    # Non-channel events: API, BACKGROUND_JOB, HEARTBEAT, RE_SCHEDULE, shutdown sequence.
    c0 = cap("answered-playback.plain.txt")
    ctx0 = c0.ctx(c0.a_uuids[0])
    singles = {}
    for kind, hs in ap:
        if kind in ("API", "BJ"):
            t = tokenize(hs, ctx0)
            if kind == "API":
                t = [[n, tok("api_cmd") if n == "API-Command" else
                      tok("api_arg") if n == "API-Command-Argument" else v] for n, v in t]
            else:
                t = [[n, tok("job_cmd") if n == "Job-Command" else
                      tok("job_arg") if n == "Job-Command-Arg" else v] for n, v in t]
            singles[kind] = add(t)
    gen = {"uuid": "\x00", "dest": "\x00", "vars": [], "arg": None}
    hb = cap("idle-heartbeat.plain.txt").other
    singles["HEARTBEAT"] = add(tokenize(hb[0].headers, gen))
    singles["RE_SCHEDULE"] = add(tokenize(hb[1].headers, gen))
    sd = cap("shutdown.plain.txt").other
    after_api = [e for e in sd if e.name != "API"]
    segments["shutdown"] = [add(tokenize(e.headers, gen)) for e in after_api]

    # show channels / show calls row shapes (key order) from the captures.
    rows = {}
    for capname, key in [("show-channels.json.txt", "channels"),
                         ("client-drop-midcall.2-after-reconnect.txt", "calls")]:
        for msg in parse_stream(_read(os.path.join(cdir, capname))):
            if msg.content_type == "api/response" and msg.body.startswith(b'{"row_count":'):
                rows[key] = json.loads(msg.body)["rows"]
                break
    out = {
        "source": "FreeSWITCH 1.11.1 ESL captures",
        "templates": templates,
        "segments": segments,
        "singles": singles,
        "show_rows": rows,
    }
    with open(out_path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"wrote {out_path}: {len(templates)} templates, {len(segments)} segments")


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "fixtures", "esl-captures"),
         os.path.join(here, "templates.json"))
