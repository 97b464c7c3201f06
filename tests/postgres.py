"""A throwaway PostgreSQL server for tests, from the distribution's server binaries.

``initdb`` + ``pg_ctl`` on a temporary folder, listening on a free loopback port only (no Unix
socket), trust authentication, durability off (a test database dies with the test). initdb and
the server refuse to run as root, so under root they run as an unprivileged account.

    with temporary_server() as server:
        url = server.create_database("study")   # postgresql://postgres@127.0.0.1:<port>/study
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy

# Where Debian and Ubuntu install the server binaries (one folder per major version); other
# distributions put them on PATH.
DEBIAN_BINARIES = Path("/usr/lib/postgresql")
SUPERUSER = "postgres"  # the database role initdb creates, whatever account runs the server
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "'32MB'",
    "max_connections": "200",
}


def server_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: PATH first, then the newest Debian version."""
    on_path = shutil.which("pg_ctl")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    if DEBIAN_BINARIES.is_dir():
        versions = [p for p in DEBIAN_BINARIES.iterdir() if re.fullmatch(r"\d+", p.name)]
        candidates += [p / "bin" for p in sorted(versions, key=lambda p: int(p.name), reverse=True)]
    return next((c for c in candidates if (c / "initdb").is_file() and (c / "pg_ctl").is_file()), None)


def unprivileged_account() -> pwd.struct_passwd | None:
    """The account to run the server as: None when not root, else ``postgres`` (created by the
    server package) or ``nobody``."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' account exists to run PostgreSQL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    port: int
    log_file: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        # CREATE DATABASE cannot run inside a transaction
        engine = sqlalchemy.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)


@contextlib.contextmanager
def temporary_server(binaries: Path) -> Iterator[Server]:
    """Start a server from ``binaries`` (see ``server_binaries``); stop it and delete its files on exit."""
    account = unprivileged_account()
    as_account = {} if account is None else {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    # not under pytest's tmp_path: a root-owned 0700 folder that the server's account cannot enter
    root = Path(tempfile.mkdtemp(prefix="ctr-bench-postgres-"))
    data, log_file = root / "data", root / "server.log"
    if account is not None:
        os.chown(root, account.pw_uid, account.pw_gid)

    def run(*command: str) -> None:
        result = subprocess.run([*command], capture_output=True, text=True, timeout=120, cwd=root, **as_account)
        if result.returncode != 0:
            server_log = log_file.read_text() if log_file.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}{server_log}"
            )

    server = Server(port=free_port(), log_file=log_file)
    try:
        run(
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        settings = {**SERVER_SETTINGS, "port": str(server.port)}
        with (data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log_file), "-w", "-t", "60", "start")
        try:
            yield server
        finally:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
