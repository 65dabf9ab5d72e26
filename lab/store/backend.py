"""Where a run log lives: one SQLite file (the default) or a PostgreSQL database, behind one small
connection interface.

The run log's code writes SQL once, with ``?`` placeholders; a connection here runs it on its
engine and supplies the few fragments that engines spell differently (the next ``seq``, "insert
unless present", a JSON array's elements, rounding). PostgreSQL runs through psycopg 3, imported
only when a ``postgresql://`` log is opened.

A log is named by a *target*: a path (SQLite) or a ``postgresql://`` / ``postgres://`` URL. A URL
is never taken as a file path. Its password never lives in the URL: the connection takes it from
``PGPASSWORD`` or a ``PGPASSFILE`` (``~/.pgpass``), the way every PostgreSQL client does, so the
URL can be printed, logged and passed to notebooks as it is.
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..errors import StoreError

URL_SCHEMES = ("postgresql://", "postgres://")

#: serializes writers to one PostgreSQL log (what SQLite's BEGIN IMMEDIATE does for a file): each
#: write transaction reads the next ``seq`` and uses it, so ``as_of`` sees whole transactions in order
_WRITE_LOCK_KEY = 0x70726F6D  # "prom"


def is_url(target: str | os.PathLike[str] | None) -> bool:
    return isinstance(target, str) and target.lower().startswith(URL_SCHEMES)


class LogURL(str):
    """What ``RunLog.path`` is for a log on a server: its URL (never with a password), with the few
    ``Path`` methods callers use on a log's path."""

    @property
    def name(self) -> str:
        return urlsplit(self).path.lstrip("/") or "postgres"

    def resolve(self) -> LogURL:
        return self

    def relative_to(self, *_: Any) -> Path:
        raise ValueError(f"{self} is not a file")


def check_url(url: str) -> LogURL:
    """The URL as the log's name; a password in it is refused (without echoing it)."""
    try:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
    except ValueError as exc:
        raise StoreError(f"run log URL: cannot read it ({exc}); write postgresql://USER@HOST/DATABASE") from None
    if parts.password is not None or "password" in query:
        shown = url.replace(parts.password or "", "***", 1) if parts.password else re.sub(
            r"password=[^&]*", "password=***", url)
        raise StoreError(f"run log URL {_without_password(shown)}: carries a password; it would be printed and "
                         "written into notebooks. Put it in PGPASSWORD or a PGPASSFILE (~/.pgpass) and leave it "
                         "out of the URL")
    return LogURL(url)


def _without_password(url: str) -> str:
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def recovery_path_for(target: Path | LogURL) -> Path:
    """Where rows go that the log could not take: next to a SQLite file; for a server log, a file
    under ``$PROMPTLAB_RECOVERY_DIR`` (default ``results/``) named after the server and database, so
    the next open on this machine finds it."""
    if isinstance(target, LogURL):
        parts = urlsplit(target)
        host = parts.hostname or parse_qs(parts.query).get("host", ["local"])[0]
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"postgresql-{host}-{parts.port or 5432}-{target.name}").strip("_")
        folder = Path(os.environ.get("PROMPTLAB_RECOVERY_DIR") or "results")
        return folder / f"{stem}.recovery.jsonl"
    return target.with_name(target.name + ".recovery.jsonl")


class Connection:
    """One connection to a run log. ``execute`` takes SQL with ``?`` placeholders."""

    dialect = ""
    errors: tuple[type[BaseException], ...] = ()
    #: errors that come from a row itself (a value the engine cannot bind, a constraint), not the log
    row_errors: tuple[type[BaseException], ...] = ()
    #: the next number of the sequence shared by runs and grades (read inside a write transaction)
    next_seq = ""
    #: ``?`` holds a JSON array's text; the SQL yields its elements (for ``x IN (...)``)
    json_elements = ""

    def execute(self, sql: str, args: Iterable[Any] = ()) -> Any:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        raise NotImplementedError

    def begin_write(self) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        if self.in_transaction:
            self.execute("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        raise NotImplementedError

    @property
    def broken(self) -> bool:
        """The connection cannot be used again (the server went away): open a new one."""
        return False

    def close(self) -> None:
        raise NotImplementedError

    def columns(self, table: str) -> list[str]:
        raise NotImplementedError

    def table_info(self, table: str) -> list[tuple[str, bool, str]]:
        """(column, whether the log requires a value, declared type as SQLite spells it: INTEGER,
        REAL, TEXT) for each column of ``table``."""
        raise NotImplementedError

    def is_locked(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def set_lock_wait(self, seconds: float) -> None:
        raise NotImplementedError

    def insert_sql(self, table: str, cols: tuple[str, ...], ignore: bool, rows: int) -> str:
        """INSERT of ``rows`` rows; with ``ignore``, a row whose id is already there is skipped."""
        return _insert_sql(self.dialect, table, cols, ignore, rows)

    def has_tag(self, column: str) -> str:
        """A condition: the JSON list in ``column`` holds the value bound to ``?``."""
        raise NotImplementedError

    def round1(self, expr: str) -> str:
        return f"round({expr}, 1)"

    def same(self, column: str) -> str:
        """``column`` equals ``?``, NULL equal to NULL."""
        raise NotImplementedError

    def distinct_json(self, columns: list[str], rows: str) -> str:
        """A query of one row: for each of ``columns``, its distinct values (NULL too) among ``rows``
        (``FROM ... WHERE ...``), as the text of a JSON list."""
        return f"SELECT {', '.join(f'json_group_array(DISTINCT {c})' for c in columns)} {rows}"


class SQLite(Connection):
    dialect = "sqlite"
    errors = (sqlite3.Error,)
    row_errors = (sqlite3.InterfaceError, sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.DataError)
    next_seq = ("SELECT 1 + max(coalesce((SELECT max(seq) FROM runs), 0),"
                " coalesce((SELECT max(seq) FROM grades), 0))")
    json_elements = "SELECT value FROM json_each(?)"

    def __init__(self, path: Path | None, busy_timeout_s: float, raw: sqlite3.Connection | None = None):
        if raw is not None:
            self.raw = raw
            return
        assert path is not None  # a connection is either given (raw) or opened on a file
        self.raw = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        self.set_lock_wait(busy_timeout_s)
        self.raw.execute("PRAGMA journal_mode = WAL")
        self.raw.execute("PRAGMA synchronous = NORMAL")  # in WAL: durable against a killed process

    @classmethod
    def read_only(cls, path: Path) -> SQLite:
        """A connection that only reads: through SQLite's read-only mode when the WAL index can be used,
        else as an immutable file (a read-only mount: no lock or index file can be made beside it)."""
        from urllib.parse import quote

        uri = f"file:{quote(str(path.resolve()))}"
        for mode in ("mode=ro", "immutable=1"):
            db = sqlite3.connect(f"{uri}?{mode}", uri=True, isolation_level=None, check_same_thread=False)
            try:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return cls(None, 0, raw=db)
            except sqlite3.OperationalError:
                db.close()
        raise StoreError(f"{path}: cannot open the run log to read it either; check its permissions")

    @staticmethod
    def is_read_only(exc: BaseException) -> bool:
        text = str(exc).lower()
        return isinstance(exc, sqlite3.OperationalError) and (
            "readonly" in text or "read-only" in text or "unable to open" in text)
    def execute(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
        return self.raw.execute(sql, args)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.raw.executemany(sql, rows)

    def begin_write(self) -> None:
        self.raw.execute("BEGIN IMMEDIATE")

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def close(self) -> None:
        self.raw.close()

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.raw.execute(f"PRAGMA table_info({table})")]

    def table_info(self, table: str) -> list[tuple[str, bool, str]]:
        return [(r[1], bool(r[3]) and r[4] is None, str(r[2]).upper())
                for r in self.raw.execute(f"PRAGMA table_info({table})")]

    def is_locked(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))

    def set_lock_wait(self, seconds: float) -> None:
        self.raw.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")

    def has_tag(self, column: str) -> str:
        return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE value = ?)"

    def same(self, column: str) -> str:
        return f"{column} IS ?"


@functools.lru_cache(maxsize=256)
def _insert_sql(dialect: str, table: str, cols: tuple[str, ...], ignore: bool, rows: int) -> str:
    one = f"({', '.join('?' for _ in cols)})"
    head = f"INTO {table} ({', '.join(cols)}) VALUES {', '.join([one] * rows)}"
    if not ignore:
        return f"INSERT {head}"
    return f"INSERT {head} ON CONFLICT DO NOTHING" if dialect == "postgresql" else f"INSERT OR IGNORE {head}"


@functools.lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (the lab's SQL has no ``?`` or ``%`` in literals)."""
    return sql.replace("%", "%%").replace("?", "%s")


# Migrations are written in SQLite's DDL (lab.migrations); these are the spellings that differ.
_DDL = [
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
]


@functools.lru_cache(maxsize=64)
def _pg_ddl(sql: str) -> str:
    for pattern, replacement in _DDL:
        sql = pattern.sub(replacement, sql)
    return sql


class PostgreSQL(Connection):
    dialect = "postgresql"
    next_seq = ("SELECT 1 + greatest(coalesce((SELECT max(seq) FROM runs), 0),"
                " coalesce((SELECT max(seq) FROM grades), 0))")
    json_elements = "SELECT jsonb_array_elements_text(CAST(? AS jsonb))"

    def __init__(self, url: str, busy_timeout_s: float):
        import psycopg

        self._psycopg = psycopg
        self.errors = (psycopg.Error,)
        self.row_errors = (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError)
        self.raw = psycopg.connect(url, autocommit=True, application_name="promptlab",
                                   connect_timeout=max(1, int(min(busy_timeout_s, 30))))
        self.raw.adapters.register_dumper(str, _nul_free_dumper())
        self.set_lock_wait(busy_timeout_s)

    def execute(self, sql: str, args: Any = ()) -> Any:
        if sql.lstrip()[:6].upper() in ("CREATE", "ALTER "):
            sql = _pg_ddl(sql)
        return self.raw.execute(_pg_sql(sql), args) if args else self.raw.execute(sql)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.raw.cursor() as cur:
            cur.executemany(_pg_sql(sql), [tuple(r) for r in rows])

    def begin_write(self) -> None:
        # one round trip for both (a statement without parameters may hold several)
        try:
            self.raw.execute(f"BEGIN; SELECT pg_advisory_xact_lock({_WRITE_LOCK_KEY})")
        except self._psycopg.Error:  # the lock not had within lock_timeout: no transaction is left open
            self.rollback()
            raise

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != self._psycopg.pq.TransactionStatus.IDLE

    def rollback(self) -> None:
        if not self.broken and self.in_transaction:
            self.raw.execute("ROLLBACK")

    @property
    def broken(self) -> bool:
        return self.raw.closed or self.raw.broken

    def close(self) -> None:
        self.raw.close()

    def columns(self, table: str) -> list[str]:
        return [r[0] for r in self.raw.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = %s ORDER BY ordinal_position", (table,))]

    def table_info(self, table: str) -> list[tuple[str, bool, str]]:
        kinds = {"bigint": "INTEGER", "integer": "INTEGER", "double precision": "REAL", "text": "TEXT"}
        return [(name, nullable == "NO" and default is None and identity == "NO", kinds.get(kind, kind.upper()))
                for name, nullable, default, kind, identity in self.raw.execute(
                    "SELECT column_name, is_nullable, column_default, data_type, is_identity"
                    " FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = %s"
                    " ORDER BY ordinal_position", (table,))]

    def is_locked(self, exc: BaseException) -> bool:
        return isinstance(exc, self._psycopg.errors.LockNotAvailable)

    def set_lock_wait(self, seconds: float) -> None:
        self.raw.execute(f"SET lock_timeout = {int(seconds * 1000)}")

    def has_tag(self, column: str) -> str:
        return f"EXISTS (SELECT 1 FROM jsonb_array_elements_text(CAST({column} AS jsonb)) AS t(value) WHERE value = ?)"

    def round1(self, expr: str) -> str:
        return f"CAST(round(CAST({expr} AS numeric), 1) AS double precision)"

    def distinct_json(self, columns: list[str], rows: str) -> str:
        # the distinct combinations first (a hash aggregate), so that each DISTINCT sorts a handful of
        # rows, not all of them (100k rows: 25 ms instead of 70; SQLite would sort for the GROUP BY)
        together = ", ".join(columns)
        return (f"SELECT {', '.join(f'CAST(json_agg(DISTINCT {c}) AS text)' for c in columns)}"
                f" FROM (SELECT {together} {rows} GROUP BY {together}) AS combinations")

    def same(self, column: str) -> str:
        return f"{column} IS NOT DISTINCT FROM ?"


@functools.lru_cache(maxsize=1)
def _nul_free_dumper() -> type:
    """PostgreSQL text cannot hold NUL: on a server log it is stored as U+2400 (the visible symbol
    for NUL), so a model's output with a NUL byte is kept, not refused. JSON columns escape it
    anyway (``\\u0000``)."""
    from psycopg.types.string import StrDumperUnknown

    class NulFree(StrDumperUnknown):
        def dump(self, obj: str) -> Any:
            return super().dump(obj.replace("\x00", "\u2400") if "\x00" in obj else obj)

    return NulFree


def db_errors() -> tuple[type[BaseException], ...]:
    """The errors of every engine loaded in this process (psycopg's only when a server log was opened)."""
    psycopg = sys.modules.get("psycopg")
    return (sqlite3.Error,) + ((psycopg.Error,) if psycopg is not None else ())


def errors_for(target: Path | LogURL) -> tuple[type[BaseException], ...]:
    """What the engine raises when a statement or the connection fails."""
    if isinstance(target, LogURL):
        import psycopg

        return (psycopg.Error,)
    return (sqlite3.Error,)


def connect(target: Path | LogURL, busy_timeout_s: float) -> Connection:
    if isinstance(target, LogURL):
        return PostgreSQL(str(target), busy_timeout_s)
    return SQLite(target, busy_timeout_s)
