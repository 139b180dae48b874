"""A throwaway PostgreSQL server on 127.0.0.1 for tests, from Debian's postgresql package."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def find_postgres_bin() -> Path | None:
    """Return the bin folder of the newest installed PostgreSQL, or None."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda path: int(path.parts[-3]))
    return candidates[-1].parent if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_postgres_user(arguments: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root, so root runs them as the postgres user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *arguments]
    return arguments


@contextmanager
def postgres_server(database: str = "assist_test") -> Iterator[str]:
    """Start PostgreSQL in a temporary folder and yield a SQLAlchemy URL to a fresh database."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL binaries not found under /usr/lib/postgresql; run scripts/setup-system.sh")

    root = Path(tempfile.mkdtemp(prefix="assist-pg-"))
    data_dir = root / "data"
    socket_dir = root / "socket"
    socket_dir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(socket_dir, "postgres")
    port = _free_port()
    log_path = root / "server.log"

    try:
        subprocess.run(
            _as_postgres_user([str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres",
                               "--auth=trust", "-E", "UTF8", "--no-sync"]),
            check=True, capture_output=True, timeout=120,
        )
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {socket_dir} -c fsync=off"
        subprocess.run(
            _as_postgres_user([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(log_path),
                               "-o", options, "-w", "-t", "60", "start"]),
            check=True, capture_output=True, timeout=90,
        )
        try:
            subprocess.run(
                _as_postgres_user([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                                   "-U", "postgres", database]),
                check=True, capture_output=True, timeout=60,
            )
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"
        finally:
            subprocess.run(
                _as_postgres_user([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"]),
                check=False, capture_output=True, timeout=60,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
