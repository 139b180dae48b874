"""Alembic environment of the feedback store.

`service.assist.store.migrate` passes an open connection in
`config.attributes["connection"]`; the `alembic` command line, run with
`-x database_url=...`, opens its own.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from service.assist.store import VERSION_TABLE
from service.assist.tables import Base

config = context.config


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("missing database URL: pass -x database_url=URL to alembic")
    with create_engine(url).connect() as own_connection:
        _run(own_connection)
