"""Fixtures of the native stack tests (tests/stack/native.py has the building blocks).

One PostgreSQL cluster and one authenticated tracking server serve the whole session (the
server's admin is created once, on its first start); a test that stops the server starts it
again on the same port before it ends.
"""

from __future__ import annotations

import pytest
from native import start_postgres, start_tracking_server


@pytest.fixture(scope="session")
def postgres():
    yield from start_postgres()


@pytest.fixture(scope="session")
def tracking_server(postgres, tmp_path_factory):
    yield from start_tracking_server(postgres, tmp_path_factory.mktemp("mlflow-server"))
