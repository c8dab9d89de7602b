"""The simulator's call records against the real switch's (tests/fixtures/cdr).

Every recorded scenario is played again on the simulator with the same originate (number,
message length, originate timeout, limit_s; a new uuid): the record the simulator writes must
parse (dialer.cdr) to the same values as the real one, and carry the variables dialer.cdr reads
under the same names. Times differ by the simulator's own clock: billsec/duration within 1 s,
the part played within the scheduler's second.
"""
from __future__ import annotations

import json
import os
import time
import uuid
import wave
from pathlib import Path

import pytest

from dialer.cdr import CdrDirectory, parse_cdr
from dialer.esl import build_originate
from tests.fixtures import CDRS

from .conftest import SimProcess
from .esl_client import RawClient

SCALE = 10.0
SCENARIOS: dict[str, dict] = json.loads((CDRS / "scenarios.json").read_text())
# the variables dialer.cdr reads: present in both records or in neither
READ = ("uuid", "origination_uuid", "zc_call_id", "answer_uepoch", "answer_epoch", "start_uepoch", "end_uepoch",
        "end_epoch", "billsec", "duration", "hangup_cause", "hangup_cause_q850", "sip_term_status",
        "endpoint_disposition", "playback_last_offset_pos", "playback_samples", "playback_ms",
        "current_application", "current_application_response")


def write_wav(path: Path, seconds: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 8000 * seconds)


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, dict]]:
    """Each scenario on the simulator: name -> (real record, simulator record) as JSON documents."""
    base = tmp_path_factory.mktemp("sim-cdr")
    audio = base / "audio"
    audio.mkdir()
    for seconds in {s["audio_seconds"] for s in SCENARIOS.values() if s["audio_seconds"]}:
        write_wav(audio / f"message-{seconds}s.wav", seconds)
    cdr_dir = base / "cdr"
    cdr_dir.mkdir()
    common = ("--time-scale", str(SCALE), "--heartbeat", "0", "--cdr-dir", str(cdr_dir))
    # the real media-timeout call ran with the switch's media_timeout lowered to 3000 ms
    sims = {False: SimProcess(*common), True: SimProcess(*common, "--media-timeout-ms", "3000")}
    clients = {}
    try:
        ours: dict[str, str] = {}
        for name, s in SCENARIOS.items():
            attempt = str(uuid.uuid4())
            path = audio / (f"message-{s['audio_seconds']}s.wav" if s["audio_seconds"] else "missing.wav")
            arg = build_originate(attempt, f"c-{name}", s["number"], "carrier", str(path), "4212345678",
                                  s["originate_timeout"], limit_s=s["limit_s"])
            media_timeout = name == "media-timeout"
            if media_timeout not in clients:
                clients[media_timeout] = RawClient(sims[media_timeout].port)
                clients[media_timeout].send("auth ClueCon")
            clients[media_timeout].send(f"bgapi originate {arg}\nJob-UUID: {attempt}")
            ours[name] = attempt
        directory = CdrDirectory(cdr_dir, min_age_s=0)
        deadline = time.monotonic() + 30
        while len(directory.oldest()) < len(ours):
            assert time.monotonic() < deadline, f"{len(directory.oldest())} of {len(ours)} records written"
            time.sleep(0.05)
        assert not [n for n in os.listdir(cdr_dir) if not n.endswith(".cdr.json")]  # no temporary file left
        return {name: (json.loads((CDRS / f"{name}.cdr.json").read_text()),
                       json.loads((cdr_dir / f"{attempt}.cdr.json").read_text()))
                for name, attempt in ours.items()}
    finally:
        for client in clients.values():
            client.close()
        for sim in sims.values():
            sim.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_simulator_record_parses_like_the_real_one(played: dict[str, tuple[dict, dict]], name: str) -> None:
    real_doc, sim_doc = played[name]
    real, sim = parse_cdr(json.dumps(real_doc)), parse_cdr(json.dumps(sim_doc))
    same = ("call_id", "answered", "cause", "q850", "sip_status", "playback_started", "playback_response")
    assert {k: getattr(sim, k) for k in same} == {k: getattr(real, k) for k in same}
    assert abs(sim.billsec - real.billsec) <= 1 and abs(sim.duration - real.duration) <= 1
    assert (sim.played_ms is None) == (real.played_ms is None)
    if real.played_ms is not None:
        assert sim.played_ms is not None and abs(sim.played_ms - real.played_ms) <= 1100
    assert (sim.answered_at is None) == (real.answered_at is None)
    assert sim.started_at is not None and sim.started_at <= sim.ended_at
    assert sim.uuid == sim_doc["variables"]["origination_uuid"] != real.uuid


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_simulator_record_has_the_real_shape(played: dict[str, tuple[dict, dict]], name: str) -> None:
    real_doc, sim_doc = played[name]
    assert list(sim_doc) == [k for k in real_doc if k in sim_doc]  # same top-level keys, same order
    assert set(real_doc) - set(sim_doc) == set()
    rv, sv = real_doc["variables"], sim_doc["variables"]
    assert {k for k in READ if k in sv} == {k for k in READ if k in rv}
    assert all(isinstance(v, str) for v in sv.values())  # encode-values false: plain strings
    for key in ("zc_call_id", "origination_caller_id_number", "originate_timeout", "ignore_early_media",
                "execute_on_answer", "hangup_cause", "hangup_cause_q850", "endpoint_disposition",
                "sip_term_status", "current_application", "current_application_response", "sip_hangup_disposition"):
        assert sv.get(key) == rv.get(key), key
    assert ("app_log" in sim_doc) == ("app_log" in real_doc)
    if "app_log" in real_doc:
        names = [a["app_name"] for a in sim_doc["app_log"]["applications"]]
        assert names == [a["app_name"] for a in real_doc["app_log"]["applications"]]


@pytest.mark.timeout(60)
def test_records_are_written_with_no_client_connected_and_only_for_channels(tmp_path: Path) -> None:
    """Like mod_json_cdr: at each leg's end, listening client or not; no channel, no record
    (an unknown gateway fails before any channel exists); a shutdown's hangups are recorded."""
    write_wav(tmp_path / "m.wav", 2)
    write_wav(tmp_path / "long.wav", 120)
    cdr_dir = tmp_path / "cdr"
    cdr_dir.mkdir()
    sim = SimProcess("--time-scale", str(SCALE), "--heartbeat", "0", "--cdr-dir", str(cdr_dir))
    try:
        answered, no_gateway, long_call = (str(uuid.uuid4()) for _ in range(3))
        client = RawClient(sim.port)
        client.send("auth ClueCon")
        for attempt, gateway, audio in ((answered, "carrier", "m.wav"), (no_gateway, "nosuchgw", "m.wav"),
                                        (long_call, "carrier", "long.wav")):
            arg = build_originate(attempt, "c-1", "923001234566", gateway, str(tmp_path / audio), "1", 20)
            client.send(f"bgapi originate {arg}\nJob-UUID: {attempt}")
        client.read_for(0.2)
        client.close()  # nobody is connected while the calls end
        directory = CdrDirectory(cdr_dir, min_age_s=0)
        deadline = time.monotonic() + 10
        while directory.read(answered) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        record = directory.read(answered)
        assert record is not None and record.played_ms == 2000 and record.cause == "NORMAL_CLEARING"
        assert directory.read(no_gateway) is None
        shutdown = RawClient(sim.port)
        shutdown.send("auth ClueCon")
        shutdown.send("api fsctl shutdown")
        shutdown.read_to_eof()
        deadline = time.monotonic() + 5
        while directory.read(long_call) is None:  # the 120 s message, cut by the shutdown
            assert time.monotonic() < deadline
            time.sleep(0.05)
        record = directory.read(long_call)
        assert record is not None and record.cause == "SYSTEM_SHUTDOWN" and record.answered
        assert sorted(os.listdir(cdr_dir)) == sorted(f"{u}.cdr.json" for u in (answered, long_call))
    finally:
        sim.stop()
