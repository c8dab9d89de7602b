"""Generated requests against the served OpenAPI document: no 5xx, and every response as documented.

``ZC_HOSTILE_EXAMPLES`` sets the examples per operation (CI keeps it small; ``bench/hostile.py``
runs more).
"""

from __future__ import annotations

import os
import uuid
from decimal import Decimal
from typing import Any

from tests.hostile.fuzzing import fuzz_api

EXAMPLES = int(os.environ.get("ZC_HOSTILE_EXAMPLES", "15"))


def test_every_operation_answers_as_documented(hostile_app: Any, settings: Any) -> None:
    from services.accounts import create_account

    with hostile_app.extensions["zenscall"].sessions() as session:
        created = create_account(session, settings, name="Fuzz Co", email=f"fuzz-{uuid.uuid4().hex[:10]}@example.pk",
                                 password="S3cret!pass", balance=Decimal("1000"))
    report = fuzz_api(hostile_app, created.api_key, examples=EXAMPLES)
    assert report.cases >= EXAMPLES, report
    assert len(report.per_operation) >= 14, report.per_operation
    assert not report.failures, "\n\n".join(report.failures.values())
