"""A real Postgres server for tests and benchmarks: :class:`PostgresServer`.

It runs ``initdb`` and ``pg_ctl`` of the newest Postgres found (``PATH``, then
``/usr/lib/postgresql/*/bin``, or ``FLUE_POSTGRES_BIN``) on a data directory of its own, listening on
a free port of 127.0.0.1 with a password (``scram-sha-256``) and ``fsync`` on, and can stop it
(``pg_ctl stop -m fast``), crash it (``-m immediate``: no shutdown checkpoint, what was committed is
replayed from the WAL at the next start) and start it again on the same port and directory.

Postgres refuses to run as root: when this process is root, the server runs as the ``postgres`` user
(``runuser``), and its data directory is made in the system's temporary folder, owned by that user.
The pytest fixtures built on it are in :mod:`flue_postgres.testing`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

__all__ = ["INSTALL_HINT", "PostgresServer", "PostgresServerMissing"]

INSTALL_HINT = (
    "Postgres (initdb and pg_ctl, version 13 or newer) was not found on PATH, in /usr/lib/postgresql/*/bin"
    " or in FLUE_POSTGRES_BIN; the Postgres tests start their own server with them. Install it with"
    " `apt-get install postgresql` (Debian, Ubuntu), `brew install postgresql@16` (macOS) or from"
    " https://www.postgresql.org/download/, or run ./scripts/test, which installs it with apt-get when it can."
)
SUPERUSER = "postgres"


class PostgresServerMissing(RuntimeError):
    """Postgres is not installed (the message says how to install it)."""


def find_binaries() -> Path:
    """The folder of ``initdb``, ``pg_ctl`` and ``postgres``."""
    configured = os.environ.get("FLUE_POSTGRES_BIN")
    candidates = [Path(configured)] if configured else []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    candidates += [Path(p) for p in reversed(versions)]
    for folder in candidates:
        if all((folder / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    raise PostgresServerMissing(INSTALL_HINT)


class PostgresServer:
    """One Postgres cluster on 127.0.0.1 (see the module docstring). ``password`` is the superuser's;
    the port is chosen at the first :meth:`start` and kept across restarts."""

    def __init__(self, *, password: str = "flue-test-secret", bin_dir: Path | None = None, settings: dict[str, str] | None = None) -> None:
        self.bin = bin_dir or find_binaries()
        self.password = password
        self.settings = {"fsync": "on", "max_connections": "300", "listen_addresses": "'127.0.0.1'", **(settings or {})}
        self._as_postgres = os.geteuid() == 0
        self.directory = Path(tempfile.mkdtemp(prefix="flue-postgres-"))
        self.data = self.directory / "data"
        self.port: int | None = None
        self._initialised = False

    @property
    def running(self) -> bool:
        return self.data.exists() and self._ctl("status", check=False).returncode == 0

    def url(self, database: str = "postgres", *, schema: str | None = None, password: str | None = None, **options: str) -> str:
        """``postgres://`` URL of this server (with ``password``, else the superuser's)."""
        assert self.port is not None, "start the server first"
        secret = quote(password if password is not None else self.password, safe="")
        query = {**({"schema": schema} if schema else {}), **options}
        tail = ("?" + "&".join(f"{k}={v}" for k, v in query.items())) if query else ""
        return f"postgres://{SUPERUSER}:{secret}@127.0.0.1:{self.port}/{database}{tail}"

    def start(self, timeout: float = 30.0) -> PostgresServer:
        """Create the cluster on first use, then start it (on its previous port if it ran before)."""
        if not self._initialised:
            self._initdb()
        port = self.port or _free_port()
        options = f"-p {port} -k {self.directory}"
        self._ctl("start", "-w", "-t", str(int(timeout)), "-l", str(self.directory / "postgres.log"), "-o", options)
        self.port = port
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (a clean shutdown) or ``immediate`` (a crash: no checkpoint, the
        next start recovers from the WAL). Idempotent."""
        if self.data.exists() and self.running:
            self._ctl("stop", "-w", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def create_database(self, name: str) -> None:
        self._psql("postgres", f'CREATE DATABASE "{name}"')

    def execute(self, database: str, sql: str) -> str:
        """Run ``sql`` with psql as the superuser; its output."""
        return self._psql(database, sql)

    def remove(self) -> None:
        """Stop the server (immediately) and delete its files."""
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        log = self.directory / "postgres.log"
        if not log.exists():
            return "(no log)"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    # -- helpers ------------------------------------------------------------------------------------

    def _initdb(self) -> None:
        pwfile = self.directory / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_postgres:
            shutil.chown(self.directory, SUPERUSER, SUPERUSER)
            shutil.chown(pwfile, SUPERUSER, SUPERUSER)
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, f"--pwfile={pwfile}",
            "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            for name, value in self.settings.items():
                conf.write(f"{name} = {value}\n")
        self._initialised = True

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), *args, check=check)

    def _psql(self, database: str, sql: str) -> str:
        psql = self.bin / "psql"
        command = [str(psql) if psql.exists() else "psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(self.port),
                   "-U", SUPERUSER, "-d", database, "-v", "ON_ERROR_STOP=1", "-c", sql]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PGPASSWORD": self.password})
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        full = ["runuser", "-u", SUPERUSER, "--", *command] if self._as_postgres else list(command)
        done = subprocess.run(full, capture_output=True, text=True, cwd=self.directory)
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}\n{self.log_tail()}"
            )
        return done


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

