"""Fixtures for hostile-input tests: the real app with its rate limits raised, and a client with
an address of its own. Each test makes its own tenants (the database is shared by the run)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import unique_address

HIGH = "1000000 per minute"


@pytest.fixture(scope="session")
def hostile_app(settings: Any) -> Any:
    """The real app with limits raised, so generated traffic measures behaviour, not throttling."""
    from dataclasses import replace

    from api import create_app

    application = create_app(replace(settings, ratelimit_default=HIGH, ratelimit_create=HIGH, ratelimit_login=HIGH,
                                               ratelimit_upload=HIGH))
    application.config["TESTING"] = True
    yield application
    application.extensions["zenscall"].engine.dispose()


@pytest.fixture()
def client(hostile_app: Any) -> Any:
    test_client = hostile_app.test_client()
    test_client.environ_base["REMOTE_ADDR"] = unique_address()
    return test_client


