"""A throwaway PostgreSQL server of the tests' own on 127.0.0.1 (Debian's postgresql package), and a fresh
database per test. As root, the server runs as the `postgres` user, as PostgreSQL requires."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg
from live_peers import free_port


def pg_bin(name: str) -> Path | None:
    """The newest installed PostgreSQL's program `name` (initdb, pg_ctl), or None when none is installed."""
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    return found[-1] if found else None


class PostgresServer:
    """initdb, pg_ctl start and stop in a folder of its own; `database()` makes a fresh database."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="voicebot-pg-"))
        self.port = free_port(udp=(), tcp=(0,))
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        self.url = f"postgresql://voicebot@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        data, options = self.folder / "data", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self._run(str(pg_bin("initdb")), "-D", str(data), "-U", "voicebot", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        self._run(str(pg_bin("pg_ctl")), "-D", str(data), "-l", str(self.folder / "server.log"), "-w", "-o",
                  f"{options} -c fsync=off -c max_connections=200", "start")

    def stop(self) -> None:
        self._run(str(pg_bin("pg_ctl")), "-D", str(self.folder / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def database(self) -> str:
        """A new, empty database's URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {done.stdout[-500:]} {done.stderr[-500:]}")


def database_bytes(url: str) -> bytes:
    """Every row of every table in the database at `url`, as bytes (to check what is stored in the clear)."""
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        rows = [repr(conn.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables]
    return "\n".join(rows).encode()


def stored_bytes(target: Path | str) -> bytes:
    """What a database holds: a SQLite file with its side files (WAL included), or every PostgreSQL row."""
    if isinstance(target, str):
        return database_bytes(target)
    return b"".join(p.read_bytes() for p in target.parent.glob(target.name + "*"))
