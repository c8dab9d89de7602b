"""Schema-driven fuzzing of the API through its own OpenAPI document (shared by the tests and
``bench/hostile.py``).

Every operation of ``/api/v1/openapi.json`` gets ``examples`` generated requests (valid and
invalid ones, schemathesis' generation modes), sent in-process through the WSGI app with a
real API key. Each response is checked: no 5xx, a documented status code, the documented
content type, a body that matches the documented schema. Failures are collected, not raised,
so a run reports how many cases it tried and every distinct failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# readiness answers a documented 503 while no dialer runs (as in these tests): the other checks hold
READINESS = "GET /api/v1/ready"


@dataclass
class FuzzReport:
    cases: int = 0
    per_operation: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # "operation: first line" -> reproduction

    @property
    def failed(self) -> int:
        return len(self.failures)


def fuzz_api(app: Any, api_key: str, *, examples: int, derandomize: bool = True,
             skip: Callable[[str], bool] | None = None) -> FuzzReport:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    headers = {"Authorization": f"Bearer {api_key}"}
    report = FuzzReport()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = operation.label
        if skip is not None and skip(label):
            continue
        report.per_operation[label] = 0

        try:
            _runner(operation, label, report, headers, examples, derandomize)()
        except Exception as exc:  # noqa: BLE001 - a failure re-raised by hypothesis at the end of a run
            report.failures.setdefault(f"{label}: {type(exc).__name__}", str(exc))
    return report


def _runner(operation: Any, label: str, report: FuzzReport, headers: dict[str, str], examples: int,
            derandomize: bool) -> Callable[[], None]:
    @given(case=operation.as_strategy())
    @settings(max_examples=examples, deadline=None, derandomize=derandomize, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        report.cases += 1
        report.per_operation[label] += 1
        response = case.call(headers=headers)
        try:
            case.validate_response(response, checks=CHECKS[1:] if label == READINESS else CHECKS)
        except Exception as exc:  # noqa: BLE001 - every check failure is recorded
            first = str(exc).strip().splitlines()
            key = f"{label}: {first[0] if first else type(exc).__name__}"
            if key not in report.failures:
                report.failures[key] = f"{exc}\n{case.as_curl_command(headers=headers)}"

    return run  # type: ignore[no-any-return]
