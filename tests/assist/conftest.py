from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.assist.store import close_stores
from .postgres import find_postgres_bin, postgres_server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if find_postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed; scripts/setup-system.sh installs it")
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database of each kind: a SQLite file, or a new database on the test server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'assist.sqlite3'}"
    else:
        server_url: str = request.getfixturevalue("postgres_url")
        yield _fresh_postgres_database(server_url, request.node.name)
    close_stores()


def _fresh_postgres_database(server_url: str, test_name: str) -> str:
    import re

    import psycopg

    name = "t_" + re.sub(r"[^a-z0-9]+", "_", test_name.lower())[:50]
    admin_url = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name
