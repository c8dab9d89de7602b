"""The model-based test of the dialer's guarantees, bounded for CI (``tests/model/machine.py``).

A few random examples of a dozen steps each against the real processes on private services;
``python bench/model.py --examples N --steps M`` is the long run.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.model.machine import DialerModel, Harness
from tests.model.services import Services

EXAMPLES = 3
STEPS = 15


@pytest.fixture()
def harness(services: Services) -> Iterator[Harness]:
    h = Harness(services)
    try:
        yield h
    finally:
        h.close()


def test_dialer_guarantees_hold_under_random_faults(harness: Harness) -> None:
    DialerModel.harness = harness
    run_state_machine_as_test(DialerModel, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
        phases=[Phase.generate],  # no shrinking: each example runs real processes for seconds
        suppress_health_check=list(HealthCheck)))
    figures = harness.figures
    print(figures.summary())
    # the examples really ran, and really dialed
    assert figures.examples >= EXAMPLES and figures.steps >= EXAMPLES * (STEPS // 2)
    assert figures.channels > 0
