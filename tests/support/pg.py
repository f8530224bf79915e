"""A throw-away PostgreSQL server for the test suite.

`start_pg_server` runs ``initdb`` and ``pg_ctl start`` on a free loopback port with a private unix socket
directory, tuned for speed (no fsync), and returns a `PgServer` that makes and drops databases with asyncpg.
The session fixture `pg_server` starts one per pytest session.

Why not pytest-postgresql: its ``postgresql_proc`` executor runs ``pg_ctl`` as the current user, and CI
runs as root, which PostgreSQL refuses. A ``runuser`` wrapper script as its ``executable`` gets past that,
but the data directory still lands under pytest's basetemp (``/tmp/pytest-of-root``, mode 0700, re-tightened
by pytest on every run), where the ``postgres`` user cannot reach it; pytest also prunes old basetemp
folders, so a server left by a killed run loses its data directory and can no longer be found and stopped.
It would also bring psycopg 3 and libpq in only to create databases, while the project talks to
PostgreSQL through asyncpg. The ~200 lines here avoid all three.

Cleanup, in three layers, so that no run leaves a server behind:
1. `PgServer.stop` (the fixture's teardown, also registered with atexit for interrupted runs);
2. a detached watchdog shell that stops the server once the owning process has gone, even after SIGKILL;
3. at start, `reap_leftovers` stops and removes servers whose owning process is dead.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

#: Set to "0" to skip every PostgreSQL test (the only way to skip them: a failing start is an error).
ENABLE_ENV = "PATCHWARDEN_TEST_POSTGRES"
#: Optional directory holding initdb and pg_ctl; searched before pg_config, PATH and /usr/lib/postgresql.
BINDIR_ENV = "PATCHWARDEN_PG_BINDIR"
RUN_DIR_PREFIX = "patchwarden-pg-"
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
}
# Trust only on loopback and the private socket: the server never listens anywhere else.
PG_HBA = "local all all trust\nhost all all 127.0.0.1/32 trust\n"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# Runs detached from pytest; polls because a dying process cannot be waited for by a non-parent.
_WATCHDOG = (
    'owner=$1; data=$2; run=$3; shift 3; while kill -0 "$owner" 2>/dev/null; do sleep 1; done; '
    '"$@" stop -D "$data" -m immediate -s >/dev/null 2>&1; rm -rf "$run"'
)


def find_pg_bindir() -> Path:
    """Return the directory holding initdb and pg_ctl, or raise RuntimeError saying how to install them."""
    candidates: list[str] = []
    if env_dir := os.environ.get(BINDIR_ENV):
        candidates.append(env_dir)
    if pg_config := shutil.which("pg_config"):
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(result.stdout.strip())
    if pg_ctl := shutil.which("pg_ctl"):
        candidates.append(str(Path(pg_ctl).resolve().parent))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(versions, key=lambda p: int(Path(p).parent.name), reverse=True)
    for candidate in candidates:
        if candidate and all((Path(candidate) / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return Path(candidate)
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found via $PATCHWARDEN_PG_BINDIR, "
        "pg_config, PATH or /usr/lib/postgresql/*/bin. Install them (apt-get install -y postgresql) "
        f"or set {ENABLE_ENV}=0 to skip the PostgreSQL tests."
    )


def _as_server_user() -> list[str]:
    """Command prefix: PostgreSQL refuses to run as root, so root runs it as the postgres user."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _run(cmd: list[str], *, cwd: Path, what: str) -> None:
    # cwd matters: as root the caller's cwd (often /root) is unreadable for postgres and initdb aborts.
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}): {result.stdout}{result.stderr}".strip())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _quote(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain database name: {name!r}")
    return f'"{name}"'


def _write_server_file(path: Path, text: str) -> None:
    path.write_text(text)
    if os.geteuid() == 0:
        shutil.chown(path, user="postgres", group="postgres")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    # A killed process stays a zombie until its parent reaps it; it no longer owns anything.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    return True


@dataclass
class PgServer:
    """A running throw-away PostgreSQL server reachable over loopback TCP as a trusted superuser."""

    host: str
    port: int
    user: str
    base_url: str
    run_dir: Path = field(repr=False)
    pg_ctl: Path = field(repr=False)
    _watchdog: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    def url(self, database: str) -> str:
        """Return the SQLAlchemy (asyncpg) URL of `database` on this server."""
        return f"{self.base_url}/{database}"

    def dsn(self, database: str) -> str:
        """Return the plain libpq/asyncpg DSN of `database` on this server."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    async def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create database `name` (copying `template` if given: the fast path) and return its URL."""
        sql = f"CREATE DATABASE {_quote(name)}"
        conn = await asyncpg.connect(self.dsn("postgres"))
        try:
            if template is not None:
                sql += f" TEMPLATE {_quote(template)}"
                # A template must have no other sessions, e.g. a migration's engine still pooled.
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = $1 AND pid <> pg_backend_pid()",
                    template,
                )
            await conn.execute(sql)
        finally:
            await conn.close()
        return self.url(name)

    async def drop_database(self, name: str) -> None:
        """Drop database `name` if it exists, disconnecting its sessions."""
        conn = await asyncpg.connect(self.dsn("postgres"))
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")
        finally:
            await conn.close()

    def stop(self) -> None:
        """Stop the server and remove its files; safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        cmd = [*_as_server_user(), str(self.pg_ctl), "stop", "-D", str(self.run_dir / "data"), "-m", "fast"]
        try:
            subprocess.run(cmd, cwd="/", capture_output=True, check=False, timeout=60)
        finally:
            if self._watchdog is not None:
                self._watchdog.terminate()
                self._watchdog.wait(timeout=10)
            shutil.rmtree(self.run_dir, ignore_errors=True)


def reap_leftovers(tmp_root: Path, *, bindir: Path) -> list[Path]:
    """Stop and delete servers under `tmp_root` whose owning process has died; return their folders."""
    reaped: list[Path] = []
    for run_dir in tmp_root.glob(f"{RUN_DIR_PREFIX}*"):
        try:
            owner = int((run_dir / "owner.pid").read_text())
        except (OSError, ValueError):
            continue  # still being set up, or not ours
        if _pid_alive(owner):
            continue
        if (run_dir / "data" / "postmaster.pid").exists():
            cmd = [*_as_server_user(), str(bindir / "pg_ctl"), "stop", "-D", str(run_dir / "data")]
            subprocess.run([*cmd, "-m", "immediate"], cwd="/", capture_output=True, check=False, timeout=60)
        shutil.rmtree(run_dir, ignore_errors=True)
        reaped.append(run_dir)
    return reaped


def start_pg_server(tmp_root: Path, *, bindir: Path | None = None) -> PgServer:
    """Start a fresh PostgreSQL server with its files in a new folder under `tmp_root`.

    As root, `tmp_root` must be reachable by the postgres user (the system temp dir is).
    Raises RuntimeError with the tool's output if the binaries are missing or the server fails to start.
    """
    bindir = bindir or find_pg_bindir()
    for exe in ("initdb", "pg_ctl"):
        if not (bindir / exe).is_file():
            raise RuntimeError(f"{exe} not found in {bindir}")
    reap_leftovers(tmp_root, bindir=bindir)
    run_dir = Path(tempfile.mkdtemp(prefix=RUN_DIR_PREFIX, dir=tmp_root))
    # Written first, so a concurrent run never mistakes this half-built folder for a leftover.
    (run_dir / "owner.pid").write_text(str(os.getpid()))
    (run_dir / "sock").mkdir()
    if os.geteuid() == 0:
        for path in (run_dir, run_dir / "sock"):
            shutil.chown(path, user="postgres", group="postgres")
    data = run_dir / "data"
    pg_ctl = [*_as_server_user(), str(bindir / "pg_ctl")]
    server = PgServer("127.0.0.1", 0, "postgres", "", run_dir, bindir / "pg_ctl")
    atexit.register(server.stop)
    try:
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
        _run([*_as_server_user(), *initdb, "--no-locale", "--no-sync"], cwd=run_dir, what="initdb")
        # A free port can be taken between probing and binding: retry with another one.
        for attempt in range(3):
            port = _free_port()
            settings = {**SERVER_SETTINGS, "port": str(port), "unix_socket_directories": f"'{run_dir}/sock'"}
            conf = "".join(f"{key} = {value}\n" for key, value in settings.items())
            # postgresql.auto.conf is read last, so these win over initdb's postgresql.conf.
            _write_server_file(data / "postgresql.auto.conf", conf)
            _write_server_file(data / "pg_hba.conf", PG_HBA)
            try:
                start = ["start", "-w", "-t", "30", "-D", str(data), "-l", str(run_dir / "server.log")]
                _run([*pg_ctl, *start], cwd=run_dir, what="pg_ctl start")
                break
            except RuntimeError as exc:
                log_file = run_dir / "server.log"
                log = log_file.read_text(errors="replace") if log_file.exists() else ""
                if attempt == 2 or "Address already in use" not in log:
                    raise RuntimeError(f"{exc}\nserver.log:\n{log}") from None
        server.port = port
        server.base_url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}"
        server._watchdog = subprocess.Popen(
            ["sh", "-c", _WATCHDOG, "watchdog", str(os.getpid()), str(data), str(run_dir), *pg_ctl],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # survives a kill of pytest's process group
        )
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """Start one PostgreSQL server for the test session; skip only if PATCHWARDEN_TEST_POSTGRES=0.

    The server's files live in the system temp dir rather than pytest's basetemp: the postgres user
    cannot enter root's basetemp, and leftovers from killed runs must be findable by the next run.
    """
    if os.environ.get(ENABLE_ENV) == "0":
        pytest.skip(f"PostgreSQL tests disabled by {ENABLE_ENV}=0")
    server = start_pg_server(Path(tempfile.gettempdir()))
    try:
        yield server
    finally:
        server.stop()
