"""The campaign import job against the real database (MariaDB by default), and once on SQLite."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from campaigns.importer import DNC_REASON, ImportLimits, import_campaign, upload_path
from core.call_states import CallStatus
from core.campaign_states import CampaignStatus
from core.db import make_engine
from core.models import Account, AudioFile, Call, Campaign, CampaignRejectedRow, DncNumber


@pytest.fixture()
def engine(app: Any) -> Any:
    return app.extensions["zenscall"].engine


@pytest.fixture()
def new_campaign(sessions: Any, settings: Any, make_tenant: Any, upload_audio: Any) -> Any:
    """``new_campaign(csv_bytes, **campaign_fields) -> (campaign_id, account_id)``; the CSV is written
    where the API stores uploads."""

    def make(data: bytes, tenant: Any = None, **fields: Any) -> tuple[str, str]:
        tenant = tenant or make_tenant()
        audio = upload_audio(tenant)
        with sessions() as session:
            campaign = Campaign(account_id=tenant.account_id, name="Eid offer", audio_id=audio["id"],
                                status=CampaignStatus.IMPORTING, csv_filename="numbers.csv", csv_bytes=len(data),
                                **{"max_retries": 2, "retry_delay_seconds": 120, "caller_id": "0421234567", **fields})
            session.add(campaign)
            session.commit()
            campaign_id = campaign.id
        path = upload_path(settings, campaign_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return campaign_id, tenant.account_id

    return make


def _campaign(sessions: Any, campaign_id: str) -> Campaign:
    with sessions() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        return campaign


def _calls(sessions: Any, campaign_id: str) -> list[Call]:
    with sessions() as session:
        return list(session.scalars(sa.select(Call).where(Call.campaign_id == campaign_id)
                                    .order_by(Call.phone_number)))


def _rejected(sessions: Any, campaign_id: str) -> list[tuple[int, str, str]]:
    with sessions() as session:
        rows = session.execute(sa.select(CampaignRejectedRow.line_no, CampaignRejectedRow.raw_value,
                                         CampaignRejectedRow.reason)
                               .where(CampaignRejectedRow.campaign_id == campaign_id)
                               .order_by(CampaignRejectedRow.line_no))
        return [tuple(row) for row in rows]  # type: ignore[misc]


MIXED = (
    b"Name,Mobile Number,City\r\n"          # 1 header
    b"Ali,0300-1234567,Lahore\r\n"          # 2 ok
    b"Sara,+92 301 7654321,Karachi\r\n"     # 3 ok
    b"Bilal,3001234567,Multan\r\n"          # 4 Excel lost the zero: duplicate of line 2
    b"Hina,9.23001E+11,Quetta\r\n"          # 5 scientific notation
    b"\"Khan, Imran\",00923331112222,Pindi\r\n"  # 6 ok, quoted comma in another column
    b"Zara,not a number,Sukkur\r\n"         # 7 letters
    b"Umar,,Hyderabad\r\n"                  # 8 empty
    b"Asad,923451112233,Peshawar\r\n"       # 9 ok (no plus)
    b"Nida,0300 1234567,Lahore\r\n"         # 10 duplicate
    b"Omar,042 35761234,Lahore\r\n"         # 11 ok landline
)


def test_import_counts_rejects_and_queues_calls(new_campaign: Any, sessions: Any, settings: Any,
                                                engine: Any) -> None:
    campaign_id, account_id = new_campaign(MIXED)
    result = import_campaign(campaign_id, settings=settings, engine=engine)

    assert result["status"] == "RUNNING"
    campaign = _campaign(sessions, campaign_id)
    assert campaign.status == CampaignStatus.RUNNING
    assert (campaign.rows_total, campaign.rows_accepted, campaign.rows_duplicate, campaign.rows_dnc,
            campaign.rows_invalid) == (10, 5, 2, 0, 3)
    assert campaign.imported_at is not None and campaign.import_error is None

    calls = _calls(sessions, campaign_id)
    assert [c.phone_number for c in calls] == [
        "+923001234567", "+923017654321", "+923331112222", "+923451112233", "+924235761234"]
    for call in calls:
        assert call.status == CallStatus.QUEUED
        assert call.account_id == account_id and call.caller_id == "0421234567"
        assert (call.max_retries, call.retry_delay_seconds, call.attempts_count, call.billsec) == (2, 120, 0, 0)
        assert call.cost == Decimal("0.0000")
        assert call.next_attempt_at is not None and call.next_attempt_at.tzinfo is UTC
        assert abs(call.next_attempt_at - datetime.now(UTC)) < timedelta(minutes=5)
        uuid.UUID(call.id)

    assert _rejected(sessions, campaign_id) == [
        (5, "9.23001E+11", "scientific notation (Excel damage)"),
        (7, "not a number", "contains letters"),
        (8, "", "empty"),
    ]


def test_rerun_is_a_no_op(new_campaign: Any, sessions: Any, settings: Any, engine: Any) -> None:
    campaign_id, _ = new_campaign(MIXED)
    import_campaign(campaign_id, settings=settings, engine=engine)
    ids = {c.id for c in _calls(sessions, campaign_id)}

    again = import_campaign(campaign_id, settings=settings, engine=engine)

    assert again["skipped"] == "campaign is RUNNING"
    assert {c.id for c in _calls(sessions, campaign_id)} == ids
    assert len(_rejected(sessions, campaign_id)) == 3


def test_crashed_import_restarts_from_a_clean_slate(new_campaign: Any, sessions: Any, settings: Any,
                                                     engine: Any) -> None:
    campaign_id, _ = new_campaign(MIXED)
    import_campaign(campaign_id, settings=settings, engine=engine)
    # a finished import removes its upload
    assert not upload_path(settings, campaign_id).exists()
    # as if the worker had died before the last statement: calls and rejected rows exist, still
    # IMPORTING, and the upload is still there
    with sessions() as session:
        session.execute(sa.update(Campaign).where(Campaign.id == campaign_id)
                        .values(status=CampaignStatus.IMPORTING, rows_total=0))
        session.commit()
    upload_path(settings, campaign_id).write_bytes(MIXED)

    result = import_campaign(campaign_id, settings=settings, engine=engine)

    assert (result["status"], result["rows_total"], result["rows_accepted"], result["rows_duplicate"]) == (
        "RUNNING", 10, 5, 2)
    assert len(_calls(sessions, campaign_id)) == 5
    assert len(_rejected(sessions, campaign_id)) == 3


def test_dnc_numbers_are_dropped(new_campaign: Any, make_tenant: Any, sessions: Any, settings: Any,
                                 engine: Any) -> None:
    tenant = make_tenant()
    other = make_tenant()
    with sessions() as session:
        session.add_all([
            DncNumber(account_id=tenant.account_id, phone_number="+923017654321", reason="asked"),
            DncNumber(account_id=tenant.account_id, phone_number="+924235761234"),
            # another account's list does not apply
            DncNumber(account_id=other.account_id, phone_number="+923001234567"),
        ])
        session.commit()
    campaign_id, _ = new_campaign(MIXED, tenant=tenant)

    result = import_campaign(campaign_id, settings=settings, engine=engine)

    assert (result["rows_total"], result["rows_accepted"], result["rows_duplicate"], result["rows_dnc"],
            result["rows_invalid"]) == (10, 3, 2, 2, 3)
    numbers = [c.phone_number for c in _calls(sessions, campaign_id)]
    assert numbers == ["+923001234567", "+923331112222", "+923451112233"]
    assert [r for r in _rejected(sessions, campaign_id) if r[2] == DNC_REASON] == [
        (3, "+923017654321", DNC_REASON), (11, "+924235761234", DNC_REASON)]


def test_duplicates_across_batches(new_campaign: Any, sessions: Any, settings: Any, engine: Any,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("campaigns.importer.BATCH_ROWS", 7)
    numbers = [f"0300{i:07d}" for i in range(40)]
    data = "\n".join(numbers + numbers[::3] + ["bad"] + numbers[5:9]).encode()
    campaign_id, _ = new_campaign(data)

    result = import_campaign(campaign_id, settings=settings, engine=engine)

    dups = len(numbers[::3]) + 4
    assert (result["rows_total"], result["rows_accepted"], result["rows_duplicate"], result["rows_invalid"]) == (
        40 + dups + 1, 40, dups, 1)
    assert len(_calls(sessions, campaign_id)) == 40
    assert _rejected(sessions, campaign_id) == [(40 + len(numbers[::3]) + 1, "bad", "contains letters")]


def test_start_at_in_the_future_schedules(new_campaign: Any, sessions: Any, settings: Any, engine: Any) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    campaign_id, _ = new_campaign(b"phone\n03001234567\n", start_at=start)

    result = import_campaign(campaign_id, settings=settings, engine=engine)

    assert result["status"] == "SCHEDULED"
    assert _campaign(sessions, campaign_id).status == CampaignStatus.SCHEDULED
    assert [c.next_attempt_at for c in _calls(sessions, campaign_id)] == [start]


def test_too_many_rows_fails_with_no_calls(new_campaign: Any, sessions: Any, settings: Any, engine: Any) -> None:
    data = "\n".join(f"0300{i:07d}" for i in range(6)).encode()
    campaign_id, _ = new_campaign(data)

    result = import_campaign(campaign_id, settings=dataclasses.replace(settings, max_csv_rows=5), engine=engine)

    assert result["status"] == "FAILED" and result["error_code"] == "TOO_MANY_ROWS"
    campaign = _campaign(sessions, campaign_id)
    assert campaign.status == CampaignStatus.FAILED
    assert campaign.import_error == "TOO_MANY_ROWS: the file has more than 5 rows (line 6)"
    assert _calls(sessions, campaign_id) == []


def test_a_file_of_blank_lines_fails_at_the_line_bound(new_campaign: Any, sessions: Any, settings: Any,
                                                      engine: Any) -> None:
    """Blank lines count: the import stops at MAX_CSV_LINES physical lines, not at the end of the file."""
    campaign_id, _ = new_campaign(b"phone\n03001234567\n" + b"\n" * 300_000)

    result = import_campaign(campaign_id, settings=dataclasses.replace(settings, max_csv_lines=1000), engine=engine)

    assert (result["status"], result["error_code"], result["line"]) == ("FAILED", "TOO_MANY_LINES", 1001)
    assert _campaign(sessions, campaign_id).import_error.startswith("TOO_MANY_LINES: the file has more than 1000 lines")
    assert _calls(sessions, campaign_id) == []


def test_too_large_file_fails(new_campaign: Any, sessions: Any, settings: Any, engine: Any) -> None:
    campaign_id, _ = new_campaign(b"phone\n03001234567\n03001234568\n")

    limits = dataclasses.replace(ImportLimits.from_settings(settings), max_bytes=20)
    result = import_campaign(campaign_id, settings=settings, engine=engine, limits=limits)

    assert result["error_code"] == "FILE_TOO_LARGE"
    assert _campaign(sessions, campaign_id).status == CampaignStatus.FAILED
    assert _calls(sessions, campaign_id) == []


@pytest.mark.parametrize(("data", "code", "line"), [
    (b"phone\n03001234567\nJos\xe9\n", "INVALID_ENCODING", 3),
    (b"", "EMPTY_FILE", None),
    (b"phone\r\n", "EMPTY_FILE", None),
    (b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)) * 4, "BINARY_FILE", None),
    (b"name,city\nAli,Lahore\n", "NO_PHONE_COLUMN", None),
])
def test_bad_files_fail_with_their_error(new_campaign: Any, sessions: Any, settings: Any, engine: Any,
                                         data: bytes, code: str, line: int | None) -> None:
    campaign_id, _ = new_campaign(data)

    result = import_campaign(campaign_id, settings=settings, engine=engine)

    assert (result["status"], result["error_code"], result["line"]) == ("FAILED", code, line)
    campaign = _campaign(sessions, campaign_id)
    assert campaign.status == CampaignStatus.FAILED
    assert campaign.import_error is not None and campaign.import_error.startswith(code)
    assert _calls(sessions, campaign_id) == []


def test_encoding_error_late_in_the_file_leaves_no_calls(new_campaign: Any, sessions: Any, settings: Any,
                                                         engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("campaigns.importer.BATCH_ROWS", 100)
    lines = [f"0300{i:07d}".encode() for i in range(20_000)]  # well past the 64 KB the sniffer reads
    lines[15_000] = b"03\xff001234567"
    campaign_id, _ = new_campaign(b"\n".join(lines))

    result = import_campaign(campaign_id, settings=settings, engine=engine)

    assert (result["error_code"], result["line"]) == ("INVALID_ENCODING", 15_001)
    assert _calls(sessions, campaign_id) == []


def test_no_valid_number_fails_but_keeps_the_rejected_rows(new_campaign: Any, sessions: Any, settings: Any,
                                                           engine: Any) -> None:
    campaign_id, _ = new_campaign(b"phone\n9.23001E+11\n12\n")

    result = import_campaign(campaign_id, settings=settings, engine=engine)

    assert result["error_code"] == "NO_VALID_NUMBERS"
    assert _campaign(sessions, campaign_id).rows_invalid == 2
    assert [r[0] for r in _rejected(sessions, campaign_id)] == [2, 3]


def test_cancelled_while_importing_leaves_nothing_to_dial(new_campaign: Any, sessions: Any, settings: Any,
                                                          engine: Any) -> None:
    campaign_id, _ = new_campaign(b"03001234567\n")
    with sessions() as session:
        session.execute(sa.update(Campaign).where(Campaign.id == campaign_id)
                        .values(status=CampaignStatus.CANCELLED))
        session.commit()

    result = import_campaign(campaign_id, settings=settings, engine=engine)

    assert result["skipped"] == "campaign is CANCELLED"
    assert _calls(sessions, campaign_id) == []


def test_unknown_campaign_is_skipped(settings: Any, engine: Any) -> None:
    assert import_campaign(str(uuid.uuid4()), settings=settings, engine=engine)["skipped"] == "no such campaign"


def test_upload_path_refuses_anything_but_an_id(settings: Any) -> None:
    campaign_id = str(uuid.uuid4())
    assert upload_path(settings, campaign_id) == settings.var_dir / "uploads" / f"{campaign_id}.csv"
    with pytest.raises(ValueError):
        upload_path(settings, "../../etc/passwd")


def test_import_on_sqlite(tmp_path: Path, settings: Any) -> None:
    from alembic import command

    from api.cli import alembic_config

    url = f"sqlite:///{tmp_path / 'import.db'}"
    command.upgrade(alembic_config(url), "head")
    engine = make_engine(url)
    lite = dataclasses.replace(settings, database_url=url, var_dir=tmp_path)
    try:
        with sa.orm.Session(engine) as session:
            account = Account(name="Lite", rate_per_minute=Decimal("2.5"), pulse_seconds=30, max_concurrent_calls=5)
            session.add(account)
            session.flush()
            audio = AudioFile(account_id=account.id, name="m", source_format="wav", duration_ms=2000,
                              size_bytes=32000, sha256="0" * 64)
            session.add(audio)
            session.flush()
            session.add(DncNumber(account_id=account.id, phone_number="+924235761234"))
            campaign = Campaign(account_id=account.id, name="lite", audio_id=audio.id)
            session.add(campaign)
            session.commit()
            campaign_id = campaign.id
        path = upload_path(lite, campaign_id)
        path.parent.mkdir(parents=True)
        path.write_bytes(MIXED)

        result = import_campaign(campaign_id, settings=lite, engine=engine)
        assert (result["status"], result["rows_total"], result["rows_accepted"], result["rows_duplicate"],
                result["rows_dnc"], result["rows_invalid"]) == ("RUNNING", 10, 4, 2, 1, 3)
        assert import_campaign(campaign_id, settings=lite, engine=engine)["skipped"] == "campaign is RUNNING"
        with sa.orm.Session(engine) as session:
            calls = session.scalars(sa.select(Call).where(Call.campaign_id == campaign_id)).all()
            assert sorted(c.phone_number for c in calls) == [
                "+923001234567", "+923017654321", "+923331112222", "+923451112233"]
            assert {c.cost for c in calls} == {Decimal("0.0000")}
            assert session.scalar(sa.select(sa.func.count()).select_from(CampaignRejectedRow)) == 4
    finally:
        engine.dispose()
