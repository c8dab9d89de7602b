"""Private services for the tests of this package: a MariaDB server and a Redis server of their own
(MariaDB is killed -9 and Redis flushed by the tests), an RQ worker, the schema migrated, the API
in-process. Each test starts its own simulator and dialers on them and stops them at its end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.model.services import Services


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    svc = Services(Path(tmp_path_factory.mktemp("private")), import_stall_seconds=3)
    try:
        svc.start_worker()
        yield svc
    finally:
        svc.close()
