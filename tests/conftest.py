"""Shared fixtures. Integration tests run against real sandboxes (moto's RDS
server over HTTP and MariaDB servers); a sandbox that cannot start fails the
tests that need it, nothing is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from replicator.sandbox import manage
from replicator.sandbox.manage import Sandbox
from tests.helpers import *  # noqa: F403 - helpers shared with every test module
from tests.helpers import start_sandbox


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A v3 sandbox shared by the tests of one module."""
    root = tmp_path_factory.mktemp("sandbox")
    started = start_sandbox(root)
    try:
        yield started
    finally:
        manage.down(root)
