"""A real PostgreSQL server for the tests: initdb in a temporary directory, on a free loopback port.

Needs the server binaries (Debian's postgresql package; found on PATH or under /usr/lib/postgresql)
and, when running as root, the ``postgres`` system user to own the cluster.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    return str(candidates[0]) if candidates else None


def available() -> str | None:
    """Why PostgreSQL cannot run here, or None when it can."""
    if not (_bin("initdb") and _bin("pg_ctl")):
        return "PostgreSQL server binaries (initdb, pg_ctl) not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_server(base: Path) -> Iterator[str]:
    """Start a throwaway cluster; yields a SQLAlchemy URL (psycopg 3)."""
    data, sockets = base / "pgdata", base / "pgsock"
    base.mkdir(parents=True, exist_ok=True)
    sockets.mkdir(exist_ok=True)
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (base, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
        base.chmod(0o755)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()

    def run(*args: str | None) -> None:
        done = subprocess.run([*prefix, *map(str, args)], capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}")

    run(_bin("initdb"), "-D", str(data), "-U", "wml", "--auth=trust", "-E", "UTF8")
    run(
        _bin("pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(base / "postgres.log"),
        "-w",
        "-o",
        f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c max_connections=200",
        "start",
    )
    try:
        url = f"postgresql+psycopg://wml@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        run(_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
