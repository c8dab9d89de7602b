"""Simulator behaviour beyond the captures: hooks, limits, load mode, real greenswitch client."""
# ruff: noqa: UP031 - originate strings are full of braces, %-formatting keeps them readable
from __future__ import annotations

import json
import time
import uuid

import pytest

from dialer.esl_wire import FrameError

from .esl_client import RawClient, is_event

pytestmark = pytest.mark.timeout(30)


def originate(cl, number, app="&park()", extra="", job=None):
    u = str(uuid.uuid4())
    cmd = ("bgapi originate {origination_uuid=%s,origination_caller_id_number=5550000000,"
           "originate_timeout=5%s}sofia/gateway/carrier/%s %s" % (u, extra, number, app))
    if job:
        cmd += "\nJob-UUID: " + job
    cl.send(cmd)
    return u


def authed(port, events=None):
    cl = RawClient(port)
    cl.read()
    cl.send("auth ClueCon")
    assert cl.read().get("Reply-Text") == "+OK accepted"
    if events:
        cl.send("event " + events)
        assert cl.read().get("Reply-Text").startswith("+OK event listener enabled")
    return cl


def stats(cl):
    return json.loads(cl.api("sim_stats").body)


def test_before_auth_and_wrong_password(start_sim):
    p = start_sim("--heartbeat", "0")
    cl = RawClient(p.port)
    assert cl.read().content_type == "auth/request"
    cl.send("api status")
    assert cl.read().get("Reply-Text") == "-ERR command not found"
    cl.send("auth nope")
    assert cl.read().get("Reply-Text") == "-ERR invalid"
    notice = cl.read()
    assert notice.content_type == "text/disconnect-notice" and len(notice.body) == 67
    cl.read_to_eof()
    assert cl.eof


def test_json_events_and_job_uuid_header(start_sim, wav5):
    p = start_sim("--heartbeat", "0", "--time-scale", "20")
    cl = authed(p.port, "json ALL")
    job = str(uuid.uuid4())
    u = originate(cl, "5551000006", "&playback(%s)" % wav5, ",zc_call_id=c-9", job=job)
    reply = cl.read()
    assert reply.get("Reply-Text") == "+OK Job-UUID: " + job and reply.get("Job-UUID") == job
    bj = cl.read_until(lambda m: is_event(m, "BACKGROUND_JOB")).event()
    assert bj.get("Job-UUID") == job and bj.body == "+OK %s\n" % u
    hc = cl.read_until(lambda m: is_event(m, "CHANNEL_HANGUP_COMPLETE", u))
    obj = json.loads(hc.body)
    assert all(isinstance(v, str) for v in obj.values())
    ev = hc.event()
    # a 5 s file at time scale 20 still reports 5 simulated seconds
    assert ev.get("variable_zc_call_id") == "c-9"
    assert ev.get("variable_billsec") in ("5", "6") and ev.get("variable_playback_ms") == "5000"
    assert ev.get("variable_sip_hangup_disposition") == "send_bye"
    assert "variable_sip_term_status" not in ev.names()


def test_max_concurrent_and_hupall(start_sim):
    p = start_sim("--heartbeat", "0", "--time-scale", "10")
    cl = authed(p.port, "plain CHANNEL_ANSWER BACKGROUND_JOB CHANNEL_HANGUP_COMPLETE")
    n = 20
    uuids = [originate(cl, "555100000" + "0", extra=",zc_call_id=x-%d" % i) for i in range(n)]
    jobs = 0
    while jobs < n:
        if is_event(cl.read_until(lambda m: m.content_type != "command/reply"), "BACKGROUND_JOB"):
            jobs += 1
    s = stats(cl)
    assert s["max_concurrent"] == n and s["current"] == n and s["originates"] == n
    assert cl.api("hupall NORMAL_CLEARING zc_call_id x-3").body == \
        b"+OK hangup all channels matching [zc_call_id]=[x-3] with cause: NORMAL_CLEARING\n"
    hc = cl.read_until(lambda m: is_event(m, "CHANNEL_HANGUP_COMPLETE")).event()
    assert hc.get("Unique-ID") == uuids[3] and hc.get("Hangup-Cause") == "NORMAL_CLEARING"
    assert cl.api("hupall MANAGER_REQUEST").body == b"+OK hangup all channels with cause MANAGER_REQUEST\n"
    for _ in range(n - 1):
        ev = cl.read_until(lambda m: is_event(m, "CHANNEL_HANGUP_COMPLETE")).event()
        assert ev.get("Hangup-Cause") == "MANAGER_REQUEST"
        assert ev.get("variable_hangup_cause_q850") == "16"
    deadline = time.monotonic() + 5
    while stats(cl)["current"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    calls = stats(cl)["calls"]
    assert len(calls) == n and all(c["answered"] for c in calls)
    cl.api("sim_reset_stats")
    assert stats(cl)["calls"] == [] and stats(cl)["originates"] == 0


def test_max_channels_and_gateway_and_profile(start_sim):
    p = start_sim("--heartbeat", "0", "--max-channels", "2")
    cl = authed(p.port, "plain BACKGROUND_JOB")
    originate(cl, "5551000000")
    originate(cl, "5551000000")
    for _ in range(2):
        cl.read_until(lambda m: is_event(m, "BACKGROUND_JOB"))
    originate(cl, "5551000000")
    bj = cl.read_until(lambda m: is_event(m, "BACKGROUND_JOB")).event()
    assert bj.body == "-ERR DESTINATION_OUT_OF_ORDER\n"
    body = cl.api("originate {origination_uuid=%s}sofia/gateway/nosuch/5551000001 &park()"
                  % uuid.uuid4()).body
    assert body == b"-ERR INVALID_GATEWAY\n"
    body = cl.api("originate {origination_uuid=%s}sofia/nosuchprofile/5551000001@127.0.0.1 &park()"
                  % uuid.uuid4()).body
    assert body == b"-ERR INVALID_PROFILE\n"
    assert cl.api("hupall").body == b"+OK hangup all channels with cause MANAGER_REQUEST\n"


def test_sync_originate_and_kill_ringing(start_sim):
    p = start_sim("--heartbeat", "0", "--time-scale", "10")
    cl = authed(p.port)
    u = str(uuid.uuid4())
    t0 = time.monotonic()
    body = cl.api("originate {origination_uuid=%s,originate_timeout=5}sofia/gateway/carrier/5551000003 &park()"
                  % u).body
    assert body == b"-ERR NO_ANSWER\n" and time.monotonic() - t0 >= 0.45
    assert cl.api("originate {origination_uuid=%s}sofia/gateway/carrier/5551000002 &park()"
                  % uuid.uuid4()).body == b"-ERR USER_BUSY\n"
    other = authed(p.port, "plain CHANNEL_PROGRESS CHANNEL_HANGUP_COMPLETE BACKGROUND_JOB")
    u = originate(other, "5551000003")
    other.read_until(lambda m: is_event(m, "CHANNEL_PROGRESS", u))
    assert cl.api("uuid_kill " + u).body == b"+OK\n"
    hc = other.read_until(lambda m: is_event(m, "CHANNEL_HANGUP_COMPLETE", u)).event()
    assert hc.get("Hangup-Cause") == "NORMAL_CLEARING"
    assert hc.get("variable_sip_hangup_disposition") == "send_cancel"
    bj = other.read_until(lambda m: is_event(m, "BACKGROUND_JOB")).event()
    assert bj.body == "-ERR NORMAL_CLEARING\n"
    assert cl.api("uuid_kill " + u).body == b"-ERR No such channel!\n"


def test_sim_drop_keeps_calls_and_truncate(start_sim, tmp_path):
    log = tmp_path / "calls.jsonl"
    p = start_sim("--heartbeat", "0", "--call-log", str(log))
    cl = authed(p.port, "plain BACKGROUND_JOB")
    u = originate(cl, "5551000000")
    cl.read_until(lambda m: is_event(m, "BACKGROUND_JOB"))
    cl.send("api sim_drop")
    cl.read_to_eof()  # closed without a reply
    assert cl.eof and cl.msgs[-1].content_type != "api/response"
    c2 = authed(p.port)
    assert c2.api("uuid_exists " + u).body == b"true"
    c2.send("api sim_truncate")
    with pytest.raises(FrameError):
        c2.read_to_eof()
    c3 = authed(p.port)
    assert c3.api("uuid_kill %s" % u).body == b"+OK\n"
    deadline = time.monotonic() + 5
    while not (log.exists() and log.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    row = json.loads(log.read_text().splitlines()[0])
    assert row["uuid"] == u and row["cause"] == "NORMAL_CLEARING" and row["answered"]


def test_load_mode_mix(start_sim):
    p = start_sim("--heartbeat", "0", "--mode", "load", "--time-scale", "50", "--seed", "7",
                  "--answer-rate", "0.5", "--busy-rate", "0.2", "--no-answer-rate", "0.1",
                  "--fail-rate", "0.2", "--ring-seconds", "0.5-2", "--talk-seconds", "1-5")
    cl = authed(p.port, "plain BACKGROUND_JOB")
    n = 200
    for i in range(n):
        originate(cl, "55510%05d" % i, extra="")
    bodies = []
    while len(bodies) < n:
        m = cl.read_until(lambda m: is_event(m, "BACKGROUND_JOB"))
        bodies.append(m.event().body.split()[0])
    assert bodies.count("+OK") > n * 0.3 and bodies.count("-ERR") > n * 0.3
    deadline = time.monotonic() + 10
    while stats(cl)["current"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    causes = {c["cause"] for c in stats(cl)["calls"]}
    assert {"NORMAL_CLEARING", "USER_BUSY", "NO_ANSWER"} <= causes


def test_greenswitch_client(start_sim):
    """The real greenswitch InboundESL connects, subscribes, gets the job and the hangup."""
    import gevent
    import greenswitch

    p = start_sim("--heartbeat", "0", "--time-scale", "10")
    esl = greenswitch.InboundESL(host="127.0.0.1", port=p.port, password="ClueCon")
    got = {}
    done = gevent.event.Event()

    def on_job(event):
        got["job"] = event.headers

    def on_hangup(event):
        got["hangup"] = event.headers
        done.set()

    esl.register_handle("BACKGROUND_JOB", on_job)
    esl.register_handle("CHANNEL_HANGUP_COMPLETE", on_hangup)
    esl.connect()
    esl.send("event plain BACKGROUND_JOB CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA CHANNEL_ANSWER "
             "CHANNEL_HANGUP_COMPLETE PLAYBACK_START PLAYBACK_STOP")
    u = str(uuid.uuid4())
    r = esl.send("bgapi originate {origination_uuid=%s,zc_call_id=c-1,origination_caller_id_number=5550000000,"
                 "originate_timeout=5,ignore_early_media=true}sofia/gateway/carrier/5551000002 &park()" % u)
    assert r.headers["Reply-Text"].startswith("+OK Job-UUID: ")
    assert done.wait(10)
    assert got["hangup"]["Unique-ID"] == u and got["hangup"]["Hangup-Cause"] == "USER_BUSY"
    assert got["hangup"]["variable_sip_term_status"] == "486"
    gevent.sleep(0.2)
    assert got["job"]["Job-UUID"] == r.headers["Job-UUID"]
    assert esl.send("api uuid_exists " + u).data == "false"
    esl.stop()


def test_shipped_templates_match_builder(tmp_path, capsys):
    """templates.json is exactly what build_templates makes from the captures."""
    import os

    from simulator import build_templates

    from .esl_client import CAPTURES

    out = tmp_path / "templates.json"
    build_templates.main(CAPTURES, str(out))
    shipped = os.path.join(os.path.dirname(build_templates.__file__), "templates.json")
    with open(shipped, "rb") as f:
        assert out.read_bytes() == f.read()
