"""The simulated switch's call records: ``<uuid>.cdr.json`` per dialer leg, as mod_json_cdr writes.

A real FreeSWITCH with ``fs_conf`` (``json_cdr.conf.xml``: ``encode-values`` false, A legs only,
no ``a_`` prefix) writes one file per leg when the leg ends, whether or not an ESL client is
connected. The simulator does the same when ``Config.cdr_dir`` is set (``--cdr-dir``), with the
same top-level keys and, in ``variables``, the same names and string values for everything
``dialer.cdr`` reads (uuid, zc_call_id and the other originate variables, times in epoch
seconds / microseconds, billsec and the other durations, hangup cause and Q.850 code,
sip_term_status, endpoint_disposition, the playback variables only once the file opened, the
application's response). Records recorded on a real switch are in ``tests/fixtures/cdr``;
``tests/simulator/test_cdr.py`` holds the two side by side.

Unlike FreeSWITCH (which writes the file in place), the simulator writes a temporary file and
renames it, so a reader never meets half a record from it.
"""
from __future__ import annotations

import json
import os
import tempfile

SIP_PHRASES = {"486": "Busy Here", "403": "Forbidden", "404": "Not Found",
               "480": "Temporarily Unavailable", "503": "Service Unavailable"}


def _disposition(call) -> str:
    if call.sip_status and call.answer is None:
        return "recv_refuse"
    if call.answer is None:
        return "send_cancel"
    return "recv_bye" if call.sip_status == "200" else "send_bye"


def record(call, switchname: str, core_uuid: str) -> dict:
    """The JSON document of one finished leg (``call`` is a ``simulator.calls.Call``)."""
    o, v = call.o, call.values()
    answered = call.answer is not None
    gw = o.gateway or o.profile
    variables: dict[str, str] = {
        "direction": "outbound", "is_outbound": "true", "uuid": call.uuid, "call_uuid": call.uuid,
        "session_id": str(call.session_id), "sip_gateway_name": gw,
        "sip_profile_name": "gateway" if o.gateway else o.profile,
        "channel_name": f"sofia/{'outbound' if o.gateway else o.profile}/{o.dest}",
        "sip_destination_url": f"sip:{o.dest}@{gw}",
    }
    variables.update(o.vars)
    variables.update({"originate_early_media": "false", "originate_endpoint": "sofia",
                      "sip_call_id": call.sip_call_id})
    if call.sip_status and not answered:
        variables.update({
            "sip_invite_failure_status": call.sip_status,
            "sip_invite_failure_phrase": SIP_PHRASES.get(call.sip_status, ""),
            "sip_term_status": call.sip_status,
            "proto_specific_hangup_cause": f"sip:{call.sip_status}",
            "sip_term_cause": v["q850"],
        })
    if call.sip_status and answered:  # the far end hung up (BYE)
        variables.update({"sip_term_status": call.sip_status, "proto_specific_hangup_cause": f"sip:{call.sip_status}",
                          "sip_term_cause": v["q850"]})
    if answered:
        variables["endpoint_disposition"] = "ANSWER"
    elif call.pmedia is not None:
        variables["endpoint_disposition"] = "EARLY MEDIA"
    app_log = []
    if answered and o.app in ("playback", "park", "hangup"):
        if "execute_on_answer" in o.var:
            name, _, data = o.var["execute_on_answer"].partition(" ")
            app_log.append({"app_name": name, "app_data": data, "app_stamp": v["answer_us"]})
        app_log.append({"app_name": o.app, "app_data": o.app_arg, "app_stamp": v["answer_us"]})
        variables.update({"current_application_data": o.app_arg, "current_application": o.app})
        if call.playback_opened:
            variables.update({"playback_last_offset_pos": v["pb_pos"], "playback_seconds": v["pb_s"],
                              "playback_ms": v["pb_ms"], "playback_samples": v["pb_samples"]})
        if call.app_response is not None:
            variables["current_application_response"] = call.app_response
    variables.update({"hangup_cause": v["cause"], "hangup_cause_q850": v["q850"], "digits_dialed": "none"})
    for role in ("start", "profile_start", "answer", "progress", "progress_media", "end"):
        src = {"profile_start": "start", "progress_media": "pmedia"}.get(role, role)
        if src + "_stamp" in v:
            variables[role + "_stamp"] = v[src + "_stamp"]
    for role in ("start", "profile_start", "answer", "bridge", "last_hold", "resurrect", "progress",
                 "progress_media", "end"):
        src = {"profile_start": "start", "progress_media": "pmedia"}.get(role, role)
        variables[role + "_epoch"] = v.get(src + "_s", "0")
        variables[role + "_uepoch"] = v.get(src + "_us", "0")
    if answered:
        variables.update({"last_app": o.app, "last_arg": o.app_arg})
    variables["caller_id"] = call.cid_num
    variables.update({
        "duration": v["d_duration"], "billsec": v["d_billsec"], "progresssec": v["d_progresssec"],
        "answersec": v["d_answersec"], "waitsec": v["d_waitsec"],
        "progress_mediasec": v["d_progress_mediasec"], "flow_billsec": v["d_flow_billsec"],
        "mduration": v["d_mduration"], "billmsec": v["d_billmsec"], "progressmsec": v["d_progressmsec"],
        "answermsec": v["d_answermsec"], "waitmsec": v["d_waitmsec"],
        "progress_mediamsec": v["d_progress_mediamsec"], "flow_billmsec": v["d_flow_billmsec"],
        "uduration": v["d_uduration"], "billusec": v["d_billusec"], "progressusec": v["d_progressusec"],
        "answerusec": v["d_answerusec"], "waitusec": v["d_waitusec"],
        "progress_mediausec": v["d_progress_mediausec"], "flow_billusec": v["d_flow_billusec"],
        "sip_hangup_disposition": _disposition(call),
    })
    doc: dict = {
        "core-uuid": core_uuid, "switchname": switchname,
        "channel_data": {"state": "CS_REPORTING", "direction": "outbound", "state_number": "11"},
        "callStats": {"audio": {"inbound": {}, "outbound": {}}},
        "variables": variables,
    }
    if app_log:
        doc["app_log"] = {"applications": app_log}
    doc["callflow"] = [{
        "profile_index": "1",
        "caller_profile": {"caller_id_number": call.cid_num, "destination_number": o.dest,
                           "uuid": call.uuid, "source": "src/switch_ivr_originate.c",
                           "context": "default", "chan_name": variables["channel_name"]},
        "times": {"created_time": v["start_us"], "profile_created_time": v["start_us"],
                  "progress_time": v["progress_us"], "progress_media_time": v["pmedia_us"],
                  "answered_time": v["answer_us"], "hangup_time": v["end_us"]},
    }]
    return doc


def write(directory: str, call, switchname: str, core_uuid: str) -> str:
    """Write ``<uuid>.cdr.json`` atomically (temporary file + rename); returns its path."""
    data = json.dumps(record(call, switchname, core_uuid), separators=(",", ":")) + "\n"
    final = os.path.join(directory, f"{call.uuid}.cdr.json")
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(data)
        os.chmod(tmp, 0o640)
        os.replace(tmp, final)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return final
