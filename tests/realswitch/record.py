"""Record the real switch's call records and two ESL captures into tests/fixtures.

Usage (FreeSWITCH 1.11.1 installed in ``FS_HOME``, default /opt/freeswitch)::

    python -m tests.realswitch.record [--cdr-out tests/fixtures/cdr]
                                      [--captures-out tests/fixtures/esl-captures]

1. **CDRs** (``tests/fixtures/cdr/<scenario>.cdr.json`` + ``scenarios.json``): a carrier switch
   (the package's configuration) and a switch running the project's ``fs_conf/`` with its gateway
   ``carrier`` pointed at the carrier's profile. Each scenario is one originate built by
   ``dialer.esl.build_originate`` (what the dialer sends), placed on the fs_conf switch; the
   record mod_json_cdr writes for it is copied as is, except that the run's temporary audio
   directory is replaced by ``/srv/zenscall/audio`` (no path of the recording machine in the
   repository). ``media-timeout`` runs last, alone, with the switch's global ``media_timeout``
   lowered to 3000 ms for it (``global_setvar``).
2. **ESL captures** (byte-exact, like the other captures): on the carrier switch itself (both
   legs on one switch, as the existing captures were made), with the dialer's event list:
   ``dialer-subscription.playback-missing.plain.txt`` (a file that does not exist) and
   ``dialer-subscription.hard-limit.plain.txt`` (``limit_s`` 3 on a callee that answers and sends no media, playing
   ``/srv/zc-test/audio/test.wav``: created, 5 s of silence, when missing), plus their
   ``sent/`` files and ``index.json`` entries. The gateway's ``from-domain`` is left out, as it was
   when the other captures were recorded, so the headers match theirs.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
import wave
from pathlib import Path
from typing import Any

from dialer.esl import DIALER_EVENTS, build_originate
from dialer.esl_wire import parse_stream
from tests.fixtures import CAPTURES
from tests.realswitch.rig import Instance, carrier_switch, zenscall_switch

ROOT = Path(__file__).resolve().parents[2]
CDR_FIXTURES = ROOT / "tests" / "fixtures" / "cdr"
AUDIO_DIR_IN_FIXTURES = "/srv/zenscall/audio"
CAPTURE_WAV = "/srv/zc-test/audio/test.wav"
CALLER = "4212345678"

#: name -> (number, audio: seconds of the message or None for a missing file, originate
#: timeout, limit_s, what the carrier does)
SCENARIOS: dict[str, tuple[str, int | None, int, int | None, str]] = {
    "answered-playback": ("923001234566", 4, 20, 10, "answers, sends audio, stays up: our file plays to its end"),
    "answered-remote-hangup": ("923001234561", 4, 20, 10, "answers, hangs up after 3 s, mid-message"),
    "busy": ("923001234562", 4, 20, 10, "486 Busy Here"),
    "no-answer": ("923001234563", 4, 5, 10, "rings (180) and never answers; originate_timeout 5"),
    "answered-no-media": ("923001234560", 4, 20, 10, "answers and parks (sends no RTP): the file still plays"),
    "hard-limit": ("923001234560", 30, 20, 6, "answers and parks; a 30 s message, limit_s 6"),
    "missing-file": ("923001234566", None, 20, 10, "answers; the message file does not exist"),
}
MEDIA_TIMEOUT = ("media-timeout", ("923001234560", 30, 20, 20,
                                   "answers and parks; a 30 s message; media_timeout 3000 ms"))


def write_wav(path: Path, seconds: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 8000 * seconds)


def wait_file(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no record {path.name} within {timeout} s")
        time.sleep(0.2)
    time.sleep(0.5)  # written in place: let FreeSWITCH finish the file


def place(switch: Instance, audio_dir: Path, name: str, spec: tuple[str, int | None, int, int | None, str],
          cdr_dir: Path) -> tuple[str, dict[str, Any], Path]:
    number, seconds, timeout, limit, what = spec
    audio = audio_dir / (f"message-{seconds}s.wav" if seconds else "missing.wav")
    attempt = str(uuid.uuid4())
    call_id = f"c-{name}"
    arg = build_originate(attempt, call_id, number, "carrier", str(audio), CALLER, timeout, limit_s=limit)
    answer = switch.api(f"originate {arg}", timeout=60)  # returns at answer or failure
    meta = {"number": number, "audio_seconds": seconds, "originate_timeout": timeout, "limit_s": limit,
            "carrier": what, "originate": arg.replace(str(audio_dir), AUDIO_DIR_IN_FIXTURES),
            "originate_reply": answer.strip().replace(attempt, "<uuid>")}
    return attempt, meta, cdr_dir / f"{attempt}.cdr.json"


def record_cdrs(base: Path, out: Path) -> None:
    carrier = carrier_switch(base / "carrier").start()
    zc: Instance | None = None
    try:
        cdr_dir = base / "cdr"
        zc = zenscall_switch(base / "zenscall", carrier, cdr_dir=cdr_dir, password="recording-password-1").start()
        audio_dir = base / "audio"
        for seconds in (4, 30):
            write_wav(audio_dir / f"message-{seconds}s.wav", seconds)
        results: dict[str, tuple[str, dict[str, Any], Path]] = {}

        def run(name: str, spec: tuple[str, int | None, int, int | None, str]) -> None:
            results[name] = place(zc, audio_dir, name, spec, cdr_dir)

        threads = [threading.Thread(target=run, args=item) for item in SCENARIOS.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        zc.api("global_setvar media_timeout=3000")
        run(*MEDIA_TIMEOUT)
        for _name, (_attempt, _meta, path) in results.items():
            wait_file(path, 60)
        zc.api("global_setvar media_timeout=30000")
        out.mkdir(parents=True, exist_ok=True)
        scenarios = {}
        for name, (attempt, meta, path) in sorted(results.items()):
            text = path.read_text().replace(str(audio_dir), AUDIO_DIR_IN_FIXTURES)
            json.loads(text)
            (out / f"{name}.cdr.json").write_text(text)
            scenarios[name] = {"uuid": attempt, **meta}
            print(f"{name}: {attempt}")
        (out / "scenarios.json").write_text(json.dumps(scenarios, indent=1, sort_keys=True) + "\n")
    finally:
        if zc is not None:
            zc.stop()
        carrier.stop()


# --------------------------------------------------------------------------- ESL captures


def capture(switch: Instance, commands: list[str], a_leg: str, linger: float = 1.0,
            timeout: float = 60.0) -> bytes:
    """Send ``commands`` on one ESL connection and keep every byte received until our leg's
    CHANNEL_HANGUP_COMPLETE (plus ``linger`` seconds for what follows it)."""
    sock = socket.create_connection(("127.0.0.1", switch.esl_port), timeout=timeout)
    data = b""
    try:
        for command in commands:
            sock.sendall(command.encode() + b"\n\n")
            time.sleep(0.1)
        deadline = time.monotonic() + timeout
        done_at: float | None = None
        while time.monotonic() < (done_at or deadline):
            sock.settimeout(max(0.05, (done_at or deadline) - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            data += chunk
            if done_at is None:
                for msg in parse_stream(data, allow_partial=True):
                    ev = msg.event()
                    if ev is not None and ev.name == "CHANNEL_HANGUP_COMPLETE" and ev.get("Unique-ID") == a_leg:
                        done_at = time.monotonic() + linger
                        break
        if done_at is None:
            raise TimeoutError(f"no CHANNEL_HANGUP_COMPLETE of {a_leg}")
    finally:
        sock.close()
    return data


def index_entry(name: str, data: bytes, a_leg: str, call_id: str) -> dict[str, Any]:
    jobs, a_legs, b_legs, labels = [], {}, {}, {}
    keys = ("Call-Direction", "Channel-Name", "Hangup-Cause", "variable_billsec", "variable_duration",
            "variable_endpoint_disposition", "variable_hangup_cause_q850", "variable_proto_specific_hangup_cause",
            "variable_sip_hangup_disposition", "variable_sip_term_status", "variable_zc_call_id")
    for msg in parse_stream(data):
        ev = msg.event()
        if ev is None:
            continue
        if ev.name == "BACKGROUND_JOB":
            jobs.append({"body": ev.body, "job_uuid": ev.get("Job-UUID")})
        uid = ev.get("Unique-ID")
        if uid:
            labels.setdefault(uid, "A" if uid == a_leg else "B")
        if ev.name == "CHANNEL_HANGUP_COMPLETE" and uid:
            fields = {k: ev.get(k) for k in keys if ev.get(k) is not None}
            (a_legs if uid == a_leg else b_legs)[uid] = fields
    stem = name[: -len(".txt")]
    return {"a_leg_uuid": a_leg, "background_jobs": jobs, "bytes": len(data), "hangup_complete_a_legs": a_legs,
            "hangup_complete_b_legs": b_legs, "leg_labels": labels, "sent_file": f"sent/{stem}.sent.txt",
            "zc_call_id": call_id}


def record_captures(base: Path, out: Path) -> None:
    if not Path(CAPTURE_WAV).exists():
        write_wav(Path(CAPTURE_WAV), 5)
    switch = carrier_switch(base / "capture-switch")
    # the gateway of the existing captures had no from-domain (it adds variable_sip_invite_domain)
    gateway = switch.run_dir / "conf" / "sip_profiles" / "outbound.xml"
    text, count = re.subn(r'\s*<param name="from-domain" value="[^"]*"/>', "", gateway.read_text())
    gateway.write_text(text)
    switch.start()
    try:
        index_path = out / "index.json"
        index = json.loads(index_path.read_text())
        plans = [
            ("dialer-subscription.playback-missing.plain.txt", "event plain " + " ".join(DIALER_EVENTS),
             "5551000006", "/srv/zc-test/audio/missing.wav", None, "c-1020"),
            ("dialer-subscription.hard-limit.plain.txt", "event plain " + " ".join(DIALER_EVENTS), "5551000000",
             CAPTURE_WAV, 3, "c-1021"),
        ]
        for name, subscribe, number, audio, limit, call_id in plans:
            attempt = str(uuid.uuid4())
            arg = build_originate(attempt, call_id, number, "carrier", audio, "5550000000", 5, limit_s=limit)
            commands = ["auth ClueCon", subscribe, f"bgapi originate {arg}\nJob-UUID: {attempt}"]
            data = capture(switch, commands, attempt)
            (out / name).write_bytes(data)
            stem = name[: -len(".txt")]
            (out / "sent" / f"{stem}.sent.txt").write_text("".join(c + "\n\n" for c in commands))
            index[name] = index_entry(name, data, attempt, call_id)
            print(f"{name}: {len(data)} bytes, A leg {attempt}")
        index_path.write_text(json.dumps(index, indent=1, sort_keys=True))  # as recorded: no final newline
    finally:
        switch.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cdr-out", type=Path, default=CDR_FIXTURES)
    parser.add_argument("--captures-out", type=Path, default=CAPTURES)
    parser.add_argument("--skip-captures", action="store_true")
    parser.add_argument("--skip-cdrs", action="store_true")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="zc-record-"))
    try:
        if not args.skip_cdrs:
            record_cdrs(base, args.cdr_out)
        if not args.skip_captures:
            record_captures(base, args.captures_out)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
