"""Fixtures of the campaign tests: ``dnc_bulk`` posts to /dnc/bulk as a client does, then runs the
import job in-process, the way the worker would, and reads the import back; ``make_app`` builds an
app of its own with some settings changed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from campaigns.dnc_importer import dnc_upload_path, import_dnc_list, job_id
from tests.api.conftest import make_app  # noqa: F401 - fixture


@pytest.fixture()
def dnc_bulk(app: Any, client: Any, settings: Any) -> Any:
    class Bulk:
        def __init__(self) -> None:
            self.created: list[str] = []

        def post(self, tenant: Any, data: bytes, filename: str = "dnc.csv", client_: Any = None) -> Any:
            response = (client_ or client).post("/api/v1/dnc/bulk", headers=tenant.headers,
                                                content_type="multipart/form-data",
                                                data={"csv_file": (io.BytesIO(data), filename)})
            if response.status_code == 202:
                self.created.append(response.get_json()["id"])
            return response

        def run(self, tenant: Any, import_id: str, **kwargs: Any) -> dict[str, Any]:
            """The job, in-process; returns ``GET /dnc/imports/{id}``."""
            import_dnc_list(import_id, settings=settings, engine=app.extensions["zenscall"].engine, **kwargs)
            self.dequeue(import_id)
            return self.get(tenant, import_id)

        def get(self, tenant: Any, import_id: str) -> dict[str, Any]:
            response = client.get(f"/api/v1/dnc/imports/{import_id}", headers=tenant.headers)
            assert response.status_code == 200, response.get_json()
            return response.get_json()  # type: ignore[no-any-return]

        def upload_file(self, import_id: str) -> Path:
            return dnc_upload_path(settings, import_id)

        def dequeue(self, import_id: str) -> None:
            job = app.extensions["zenscall"].work_queue.fetch_job(job_id(import_id))
            if job is not None:
                job.delete()

    bulk = Bulk()
    yield bulk
    for import_id in bulk.created:
        bulk.dequeue(import_id)
