"""dialer/cdr.py against the call records a real FreeSWITCH 1.11.1 wrote (tests/fixtures/cdr),
and against files that are not records: truncated, hostile, in the middle of being written."""

from __future__ import annotations

import json
import os
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dialer.cdr import (
    MAX_CDR_BYTES,
    CdrDirectory,
    CdrError,
    CdrIncomplete,
    CdrRecord,
    cdr_filename,
    parse_cdr,
)
from tests.fixtures import CDRS

SCENARIOS: dict[str, dict] = json.loads((CDRS / "scenarios.json").read_text())

# What the real switch recorded for each scenario (cause, q850, sip_term_status, answered, billsec,
# duration, playback started, ms played (from the file offset), the playback's response).
EXPECTED = {
    "answered-playback": ("NORMAL_CLEARING", 16, None, True, 4, 4, True, 4000, "FILE PLAYED"),
    "answered-no-media": ("NORMAL_CLEARING", 16, None, True, 4, 4, True, 4000, "FILE PLAYED"),
    "answered-remote-hangup": ("NORMAL_CLEARING", 16, 200, True, 3, 3, True, 3000, "PLAYBACK ERROR"),
    "busy": ("USER_BUSY", 17, 486, False, 0, 0, False, None, None),
    "no-answer": ("NO_ANSWER", 19, None, False, 0, 5, False, None, None),
    "hard-limit": ("ALLOTTED_TIMEOUT", 16, None, True, 6, 6, True, 5920, "FILE PLAYED"),
    "media-timeout": ("MEDIA_TIMEOUT", 16, None, True, 3, 3, True, 3020, "PLAYBACK ERROR"),
    "missing-file": ("NORMAL_CLEARING", 16, None, True, 0, 0, False, None, "FILE NOT FOUND"),
}


def fixture(name: str) -> bytes:
    return (CDRS / f"{name}.cdr.json").read_bytes()


def test_every_recorded_scenario_is_checked() -> None:
    assert set(SCENARIOS) == set(EXPECTED) == {p.name[: -len(".cdr.json")] for p in CDRS.glob("*.cdr.json")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_records_parse_to_what_the_switch_did(name: str) -> None:
    record = parse_cdr(fixture(name))
    cause, q850, sip, answered, billsec, duration, started, played, response = EXPECTED[name]
    assert (record.cause, record.q850, record.sip_status) == (cause, q850, sip)
    assert (record.answered, record.billsec, record.duration) == (answered, billsec, duration)
    assert (record.playback_started, record.played_ms, record.playback_response) == (started, played, response)
    assert record.uuid == SCENARIOS[name]["uuid"]
    assert record.call_id == f"c-{name}"
    variables = json.loads(fixture(name))["variables"]
    assert record.ended_at == datetime.fromtimestamp(int(variables["end_uepoch"]) / 1e6, UTC)
    assert record.started_at == datetime.fromtimestamp(int(variables["start_uepoch"]) / 1e6, UTC)
    if answered:
        assert record.answered_at == datetime.fromtimestamp(int(variables["answer_uepoch"]) / 1e6, UTC)
        assert record.started_at <= record.answered_at <= record.ended_at
    else:
        assert record.answered_at is None and variables["answer_uepoch"] == "0"
    for moment in (record.answered_at, record.started_at, record.ended_at):
        assert moment is None or moment.tzinfo is UTC


def test_the_hard_limit_ended_the_call_near_its_limit() -> None:
    record = parse_cdr(fixture("hard-limit"))
    limit = SCENARIOS["hard-limit"]["limit_s"]
    assert record.answered_at is not None
    talk = (record.ended_at - record.answered_at).total_seconds()
    assert limit - 1 < talk < limit + 1  # the scheduler's whole-second granularity
    assert record.played_ms is not None and record.played_ms < SCENARIOS["hard-limit"]["audio_seconds"] * 1000


def test_played_ms_comes_from_the_exact_offset_not_the_rounded_buffers() -> None:
    variables = json.loads(fixture("hard-limit"))["variables"]
    assert int(variables["playback_ms"]) > int(variables["playback_last_offset_pos"]) // 8  # over-reported
    assert parse_cdr(fixture("hard-limit")).played_ms == int(variables["playback_last_offset_pos"]) // 8


def test_missing_file_is_answered_but_never_played() -> None:
    record = parse_cdr(fixture("missing-file"))
    variables = json.loads(fixture("missing-file"))["variables"]
    assert record.answered and not record.playback_started
    assert not any(name.startswith("playback_") for name in variables)
    assert [a["app_name"] for a in json.loads(fixture("missing-file"))["app_log"]["applications"]] == [
        "sched_hangup", "playback"]


def test_parse_accepts_text_and_numbers_given_as_json_numbers() -> None:
    doc = json.loads(fixture("busy"))
    doc["variables"]["billsec"] = 0
    doc["variables"]["hangup_cause_q850"] = 17
    record = parse_cdr(json.dumps(doc))
    assert record.q850 == 17 and record.billsec == 0


# --------------------------------------------------------------------------- not records


def _doc(name: str = "answered-playback") -> dict:
    return json.loads(fixture(name))


def _with(**variables: object) -> bytes:
    doc = _doc()
    for key, value in variables.items():
        if value is None:
            doc["variables"].pop(key, None)
        else:
            doc["variables"][key] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"{", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"text"', "not a JSON object"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b'{"variables": []}', "no 'variables'"),
        (b'{"core-uuid": "x"}', "no 'variables'"),
        (b"[" * 100_000 + b"]" * 100_000, "not"),
        (_with(uuid=None, origination_uuid=None), "not a uuid"),
        (_with(uuid="../../etc/passwd", origination_uuid=None), "not a uuid"),
        (_with(hangup_cause=None), "no hangup cause"),
        (_with(hangup_cause="normal clearing; rm -rf"), "no hangup cause"),
        (_with(end_uepoch="0", end_epoch="0"), "no end time"),
        (_with(end_uepoch=None, end_epoch=None), "no end time"),
        (b" " * (MAX_CDR_BYTES + 1), "larger than"),
    ],
)
def test_what_is_not_a_record_raises_a_clear_error(data: bytes, reason: str) -> None:
    with pytest.raises(CdrError, match=reason):
        parse_cdr(data)


def test_every_truncation_of_a_real_record_is_refused() -> None:
    data = fixture("hard-limit")
    for end in range(0, len(data) - 2, 37):  # the whole record minus its closing "}\n" at most
        with pytest.raises(CdrError):
            parse_cdr(data[:end])


def test_mangled_records_never_raise_anything_but_cdr_error() -> None:
    rng = random.Random(7)
    data = bytearray(fixture("answered-remote-hangup"))
    for _ in range(400):
        mangled = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            mangled[rng.randrange(len(mangled))] = rng.randrange(256)
        try:
            record = parse_cdr(bytes(mangled))
        except CdrError:
            continue
        assert isinstance(record, CdrRecord)


def test_odd_values_are_read_as_absent_not_trusted() -> None:
    record = parse_cdr(_with(billsec="-5", duration="12e3", hangup_cause_q850="9" * 40,
                             sip_term_status="४८६", playback_last_offset_pos=None, playback_samples=None,
                             playback_ms="oops", zc_call_id=["x"]))
    assert record.billsec == 0 and record.duration == 0
    assert record.q850 is None and record.sip_status is None
    assert record.playback_started is False and record.played_ms is None
    assert record.call_id is None


# --------------------------------------------------------------------------- the directory


def _put(directory: Path, name: str, data: bytes, age: float = 10.0) -> Path:
    path = directory / name
    path.write_bytes(data)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_oldest_lists_record_files_oldest_first_within_the_limit(tmp_path: Path) -> None:
    names = sorted(EXPECTED)
    for age, name in enumerate(names):
        _put(tmp_path, cdr_filename(SCENARIOS[name]["uuid"]), fixture(name), age=100 - age)
    entries = CdrDirectory(tmp_path).oldest(limit=3)
    assert [e.uuid for e in entries] == [SCENARIOS[n]["uuid"] for n in names[:3]]
    assert len(CdrDirectory(tmp_path).oldest()) == len(names)
    assert CdrDirectory(tmp_path).oldest(limit=0) == []
    assert CdrDirectory(tmp_path / "absent").oldest() == []


def test_oldest_skips_what_is_not_a_finished_record_file(tmp_path: Path) -> None:
    uuid = SCENARIOS["busy"]["uuid"]
    _put(tmp_path, "a_" + cdr_filename(uuid), fixture("busy"))  # prefix-a-leg names are not ours
    _put(tmp_path, cdr_filename(uuid) + ".tmp", fixture("busy"))
    _put(tmp_path, "notes.txt", b"x")
    (tmp_path / cdr_filename("11111111-2222-3333-4444-555555555555")).mkdir()
    (tmp_path / cdr_filename("22222222-2222-3333-4444-555555555555")).symlink_to(tmp_path / "notes.txt")
    os.mkfifo(tmp_path / cdr_filename("33333333-2222-3333-4444-555555555555"))
    fresh = _put(tmp_path, cdr_filename(uuid), fixture("busy"), age=0)
    assert CdrDirectory(tmp_path, min_age_s=5).oldest() == []
    (entry,) = CdrDirectory(tmp_path, min_age_s=0).oldest()
    assert entry.uuid == uuid and entry.path == str(fresh) and entry.size == len(fixture("busy"))


def test_read_and_remove(tmp_path: Path) -> None:
    directory = CdrDirectory(tmp_path)
    uuid = SCENARIOS["no-answer"]["uuid"]
    assert directory.read(uuid) is None
    _put(tmp_path, cdr_filename(uuid), fixture("no-answer"))
    record = directory.read(uuid.upper())
    assert record is not None and record.cause == "NO_ANSWER" and record.uuid == uuid
    assert directory.remove(uuid) is True
    assert directory.remove(uuid) is False
    assert directory.read(uuid) is None


def test_read_refuses_links_fifos_other_legs_and_bad_uuids(tmp_path: Path) -> None:
    directory = CdrDirectory(tmp_path)
    target = _put(tmp_path, "elsewhere.json", fixture("busy"))
    link = "11111111-2222-3333-4444-555555555555"
    (tmp_path / cdr_filename(link)).symlink_to(target)
    with pytest.raises(CdrError, match="symbolic link"):
        directory.read(link)
    fifo = "22222222-2222-3333-4444-555555555555"
    os.mkfifo(tmp_path / cdr_filename(fifo))
    with pytest.raises(CdrError, match="not a regular file"):
        directory.read(fifo)  # and does not block waiting for a writer
    other = "33333333-2222-3333-4444-555555555555"
    _put(tmp_path, cdr_filename(other), fixture("busy"))
    with pytest.raises(CdrError, match="holds the record of"):
        directory.read(other)
    for bad in ("../busy", "", "x" * 36, SCENARIOS["busy"]["uuid"] + "/"):
        with pytest.raises(CdrError, match="not a uuid"):
            directory.read(bad)
        with pytest.raises(CdrError, match="not a uuid"):
            directory.remove(bad)


def test_a_record_in_the_writing_is_incomplete_an_old_broken_one_is_an_error(tmp_path: Path) -> None:
    directory = CdrDirectory(tmp_path, min_age_s=1.0)
    uuid = SCENARIOS["answered-playback"]["uuid"]
    data = fixture("answered-playback")
    path = _put(tmp_path, cdr_filename(uuid), b"", age=0)  # FreeSWITCH opened it, wrote nothing yet
    with pytest.raises(CdrIncomplete):
        directory.read(uuid)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CdrIncomplete):
        directory.read(uuid)
    _put(tmp_path, cdr_filename(uuid), data[: len(data) // 2], age=60)
    with pytest.raises(CdrError) as caught:
        directory.read(uuid)
    assert not isinstance(caught.value, CdrIncomplete)
    _put(tmp_path, cdr_filename(uuid), data, age=0)
    record = directory.read(uuid)
    assert record is not None and record.billsec == 4


def test_an_oversized_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    uuid = SCENARIOS["busy"]["uuid"]
    with open(tmp_path / cdr_filename(uuid), "wb") as f:
        f.write(fixture("busy"))
        f.seek(64 * MAX_CDR_BYTES)
        f.write(b"}")
    then = time.time() - 60
    os.utime(tmp_path / cdr_filename(uuid), (then, then))
    with pytest.raises(CdrError, match="larger than"):
        CdrDirectory(tmp_path).read(uuid)
