"""A campaign import whose RQ worker is killed -9 half-way is run again and ends with exact counts.

The killed worker leaves the campaign IMPORTING with part of its calls written and the job marked
started in RQ for ever. A worker's maintenance tick (``campaigns.worker``) sees a campaign IMPORTING
for longer than ``IMPORT_STALL_SECONDS`` with no live import (the import's named lock on MariaDB is
free once the worker's connection is gone) and enqueues the job again; a worker runs it from a clean
slate.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from core.models import Call, Campaign, CampaignRejectedRow
from tests.e2e.conftest import ROOT, Stack, wait_for
from tests.e2e.test_campaigns import get, window_around_now

ROWS = 200_000
DUPLICATES = 7
INVALID = 5


def big_csv(rows: int) -> bytes:
    lines = ["phone"] + [f"0346{i:07d}" for i in range(rows)]
    lines += [f"0346{i:07d}" for i in range(DUPLICATES)]  # repeats of the first numbers
    lines += ["12", "not a number", "0000", "99999999999999999", "+1"][:INVALID]
    return ("\n".join(lines) + "\n").encode()


class Worker:
    """``rq worker`` on the ``default`` queue; the job runs in the worker process itself
    (SimpleWorker), in a process group of its own so kill -9 leaves nothing behind."""

    def __init__(self, stack: Stack, log_dir: Path, **extra: str) -> None:
        env = {**os.environ, "DATABASE_URL": stack.settings.database_url,
               "REDIS_URL": stack.settings.redis_url or "", "VAR_DIR": str(stack.settings.var_dir), **extra}
        self.log = open(log_dir / f"worker-{len(list(log_dir.glob('worker-*')))}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rq.cli", "worker", "--worker-class", "campaigns.worker.SimpleWorker",
             "--url", stack.settings.redis_url or "", "default"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.log.close()


def campaign_row(stack: Stack, campaign_id: str) -> Any:
    with stack.sql.connect() as conn:
        return conn.execute(sa.select(Campaign.__table__).where(Campaign.id == campaign_id)).one()


def call_counts(stack: Stack, campaign_id: str) -> tuple[int, int]:
    with stack.sql.connect() as conn:
        return tuple(conn.execute(  # type: ignore[return-value]
            sa.select(sa.func.count(), sa.func.count(sa.distinct(Call.phone_number)))
            .where(Call.campaign_id == campaign_id)).one())


def test_import_killed_mid_way_is_run_again(stack: Stack, make_tenant: Any, upload: Any, tmp_path: Path) -> None:
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=2)
    start, end = window_around_now(2, 4)  # closed: the campaign is imported, never dialed here
    response = stack.client.post(
        "/api/v1/campaigns", headers=tenant.headers, content_type="multipart/form-data",
        data={"name": "killed import", "audio_id": audio, "csv_file": (io.BytesIO(big_csv(ROWS)), "big.csv"),
              "window_start": start, "window_end": end})
    assert response.status_code == 201, response.get_json()
    cid = str(response.get_json()["id"])

    workers = [Worker(stack, tmp_path)]
    try:
        wait_for("the import to be half-way", lambda: 0 < call_counts(stack, cid)[0] < ROWS, timeout=60,
                 interval=0.05)
        workers[0].kill9()
        assert campaign_row(stack, cid).status == "IMPORTING"
        assert call_counts(stack, cid)[0] < ROWS

        # a new worker's maintenance tick notices the stalled import and runs it again
        workers.append(Worker(stack, tmp_path, IMPORT_STALL_SECONDS="2"))
        wait_for("the campaign to leave IMPORTING", lambda: campaign_row(stack, cid).status != "IMPORTING",
                 timeout=120, interval=0.3)
        workers[-1].log.flush()
        assert "import stalled" in (tmp_path / "worker-1.log").read_text()
    finally:
        for worker in workers:
            worker.kill9()

    campaign = campaign_row(stack, cid)
    assert campaign.status in ("RUNNING", "COMPLETED"), campaign.import_error
    assert (campaign.rows_total, campaign.rows_accepted, campaign.rows_duplicate, campaign.rows_invalid,
            campaign.rows_dnc) == (ROWS + DUPLICATES + INVALID, ROWS, DUPLICATES, INVALID, 0)
    assert call_counts(stack, cid) == (ROWS, ROWS)  # every number once, none left from the killed run
    with stack.sql.connect() as conn:
        rejected = conn.scalar(sa.select(sa.func.count()).where(CampaignRejectedRow.campaign_id == cid))
        queued = conn.scalar(sa.select(sa.func.count()).where(Call.campaign_id == cid, Call.status != "QUEUED"))
    assert (rejected, queued) == (INVALID, 0)
    summary = get(stack, tenant, cid)["import_summary"]
    assert (summary["accepted"], summary["duplicates"], summary["invalid"]) == (ROWS, DUPLICATES, INVALID)
