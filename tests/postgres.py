"""A throwaway PostgreSQL server for the tests: Debian's ``postgresql`` package (``make test``
apt-gets it, like chromium), started with ``initdb`` and ``pg_ctl`` in a temporary folder, listening
on a Unix socket only (no TCP port, so nothing outside this machine can reach it), stopped at the
end of the test session.

PostgreSQL refuses to run as root: under root the server runs as the ``postgres`` OS user (or
``nobody``) and the folder is handed to that user. Each test gets a fresh database on it
(:func:`fresh_database`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

#: where Debian puts the server's programs (several major versions may be installed side by side)
_BIN_GLOB = "/usr/lib/postgresql/*/bin"


class NoServer(RuntimeError):
    """PostgreSQL cannot be started here (not installed, or refused to start); the message says why."""


def server_bin() -> Path:
    found = sorted(glob.glob(_BIN_GLOB), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    for d in reversed(found):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    raise NoServer("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl); "
                   "`make test` installs Debian's `postgresql` package with apt-get")


def _run_as() -> str | None:
    """The OS user to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise NoServer("running as root and there is no `postgres` or `nobody` user to run PostgreSQL as")


def _cmd(user: str | None, argv: list[str]) -> list[str]:
    return argv if user is None else ["runuser", "-u", user, "--", *argv]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yield the base URL (``postgresql://postgres@/postgres?host=<socket dir>``)."""
    bin_dir = server_bin()
    user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="promptlab-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if user is not None:
        pw = pwd.getpwnam(user)
        os.chmod(root, 0o755)
        for p in (root, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    try:
        init = subprocess.run(_cmd(user, [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                                          "-E", "UTF8", "--locale=C.UTF-8" if _has_c_utf8() else "--locale=C"]),
                              capture_output=True, text=True)
        if init.returncode != 0:
            raise NoServer(f"initdb failed: {(init.stderr or init.stdout).strip()[-400:]}")
        opts = (f"-c listen_addresses='' -c unix_socket_directories='{sock}' -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB")
        start = subprocess.run(_cmd(user, [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"),
                                           "-o", opts, "-w", "-t", "60", "start"]),
                               capture_output=True, text=True)
        if start.returncode != 0:
            log = (root / "server.log").read_text(errors="replace")[-400:] if (root / "server.log").exists() else ""
            raise NoServer(f"pg_ctl start failed: {(start.stderr or start.stdout).strip()[-300:]} {log}")
        try:
            yield f"postgresql://postgres@/postgres?host={sock}"
        finally:
            subprocess.run(_cmd(user, [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _has_c_utf8() -> bool:
    try:
        out = subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout.lower()
    except OSError:
        return False
    return "c.utf8" in out or "c.utf-8" in out


def fresh_database(server_url: str) -> str:
    """Create an empty database on the server; return its URL."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.replace("/postgres?", f"/{name}?", 1)


def drop_database(url: str) -> None:
    """Remove a test's database (its connections are ended first); the server lives on."""
    import psycopg

    name = url.split("/", 3)[3].split("?", 1)[0]
    base = url.replace(f"/{name}?", "/postgres?", 1)
    with contextlib.suppress(psycopg.Error), psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
