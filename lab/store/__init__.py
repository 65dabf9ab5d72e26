"""The run log: every model call is one row, written the moment the call finishes.

The embedded default is one SQLite file (WAL mode, busy timeout), ``results/promptlab.db`` unless
``PROMPTLAB_LOG`` or an explicit path says otherwise; a ``postgresql://`` URL there puts the log on a
PostgreSQL server instead (same schema, same guarantees; :mod:`lab.store.backend`). The log is append-only: rows are never
updated; grades and ratings are rows of their own. ``as_of`` re-reads any table exactly as it was
at a point in the log (a ``seq`` number from :meth:`RunLog.version`, or a UTC timestamp).
Several processes may write one log at once; a killed process loses no committed row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import queue
import sys
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from ..version import __version__
from ..errors import StoreError
from ..migrations import migrate, pending
from ..names import folder_value
from ..secrets import redact, redact_value, secret_values
from ..text import is_storable, storable_value
from .backend import SQLite, Connection, LogURL, check_url, connect, db_errors, errors_for, is_url, recovery_path_for

try:
    import fcntl
except ImportError:  # Windows: the recovery file is then written without a lock
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import asyncio

    import pandas as pd

DEFAULT_LOG = Path("results") / "promptlab.db"

_JSON_COLUMNS = {
    "runs": ["input_tags", "input_vars", "expected", "params", "messages", "confidence"],
    "experiments": ["models", "variants", "params"],
    "grades": ["detail"],
    "events": ["detail"],
    "prompt_versions": ["templates", "params"],
    "batches": ["counts"],
}


_VERSIONED = ("runs", "grades")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


_ids: list[str] = []
_ids_lock = threading.Lock()
if hasattr(os, "register_at_fork"):  # a forked child must not hand out its parent's ids
    os.register_at_fork(after_in_child=_ids.clear)


def new_id() -> str:
    """A random id (a version-4 UUID in hex). Drawn 256 at a time from ``os.urandom``: a batch takes
    two ids a call, and one system call for each would cost more than the rest of the id."""
    with _ids_lock:
        if not _ids:
            raw = os.urandom(16 * 256)
            _ids.extend(uuid.UUID(bytes=raw[i:i + 16], version=4).hex for i in range(0, len(raw), 16))
        return _ids.pop()


def default_log_path() -> Path | LogURL:
    """``$PROMPTLAB_LOG`` (a path, or a ``postgresql://`` URL) or ``results/promptlab.db``."""
    return log_target(os.environ.get("PROMPTLAB_LOG") or DEFAULT_LOG)


def log_target(target: str | os.PathLike[str]) -> Path | LogURL:
    """A log's name as given: a ``postgresql://`` URL stays a URL (never a file path)."""
    return check_url(target) if is_url(target) else Path(target)


#: answered, escaped and error calls of a group (FILTER: SQLite >= 3.30 and PostgreSQL alike)
_COUNT_OUTCOMES = ("count(*) FILTER (WHERE outcome = 'answered'), count(*) FILTER (WHERE outcome = 'escaped'),"
                   " count(*) FILTER (WHERE outcome = 'error')")

_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)  # one encoder for every row, not one a value


_SCALARS = (str, int, float, bool, type(None))
_MISSING = object()


def _flat(value: Any) -> bool:
    """A scalar, or a list or dict of scalars: safe to share after a shallow copy."""
    if value.__class__ is list:
        return all(x.__class__ in _SCALARS for x in value)
    if value.__class__ is dict:
        return all(x.__class__ in _SCALARS for x in value.values())
    return value.__class__ in _SCALARS


def _decode_json_column(values: Iterable[Any]) -> list[Any]:
    """JSON texts to values, each distinct text parsed once (tags and expected answers repeat across a
    big experiment's rows). Each row gets its own list or dict, so that changing one cell changes no
    other; only flat ones are cached (copied per row), nested ones are parsed per row."""
    cache: dict[str, Any] = {}
    out: list[Any] = []
    for v in values:
        if v.__class__ is not str:  # NULL (pandas 3 reads it as NaN)
            out.append(None)
            continue
        hit = cache.get(v, _MISSING)
        if hit is _MISSING:
            hit = json.loads(v)
            if not _flat(hit):
                out.append(hit)
                continue
            cache[v] = hit
        out.append(hit.copy() if hit.__class__ in (list, dict) else hit)
    return out


def _dumps(value: Any) -> str | None:
    return None if value is None else _ENCODER.encode(value)


@dataclass(slots=True)  # a batch keeps one per call: slots make each a quarter of the size
class RunRecord:
    """One finished model call, as written to the ``runs`` table."""

    experiment_id: str
    model: str
    messages: list[dict[str, str]]
    outcome: str
    id: str = ""
    prompt_path: str | None = None
    task: str | None = None
    variant: str | None = None
    prompt_version: str | None = None
    input_id: str | None = None
    input_tags: list[str] | None = None
    input_vars: dict[str, Any] | None = None
    expected: Any = None
    params: dict[str, Any] | None = None
    seed: int | None = None
    repeat: int = 0
    output: str | None = None
    error: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None
    started_at: str | None = None
    finished_at: str = ""
    cache_key: str | None = None
    replayed_from: str | None = None
    conversation_id: str | None = None
    turn: int = 0
    attempt: int = 0
    round: int = 0
    parent_id: str | None = None
    role: str = "answer"
    confidence: dict[str, Any] | None = None  # from token log-probabilities (lab.logprobs), when asked for


Item = tuple[str, tuple[str, ...], tuple, bool]  # table, columns, values (JSON already encoded), or-ignore


_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(RunRecord))


class _Ticket:
    """Rows submitted together (one transaction) from async code, and the future that waits for them."""

    __slots__ = ("items", "loop", "future", "error", "recovered")

    def __init__(self, items: list[Item], loop: Any, future: Any):
        self.items, self.loop, self.future = items, loop, future
        self.error: BaseException | None = None
        self.recovered = False


def _settle(tickets: list[_Ticket]) -> None:
    for t in tickets:
        if not t.future.done():
            if t.error is not None:
                t.future.set_exception(t.error)
            else:
                t.future.set_result(None)


def _connect(target: Path | LogURL, busy_timeout_s: float) -> Connection:
    """A connection to the log (one place to open one: the writer, the reader and a reconnect)."""
    return connect(target, busy_timeout_s)


_MAX_ROWS_A_STATEMENT = 64  # x ~40 columns: well under SQLite's 32766 bound variables


def _insert_many(db: Connection, table: str, cols: tuple[str, ...], ignore: bool, values: list[tuple]) -> int:
    """Insert rows with as few statements as possible: multi-row INSERTs of 64, 32, ... 1 rows (a
    handful of distinct statements, all cached). One statement steps once: the writer thread gives
    the GIL back to the event loop once per statement instead of once per row (executemany).
    Returns how many rows were new."""
    if table in _VERSIONED:
        cols = cols + ("seq",)
    i = added = 0
    while i < len(values):
        n = min(_MAX_ROWS_A_STATEMENT, 1 << ((len(values) - i).bit_length() - 1))
        chunk = values[i:i + n]
        added += max(db.execute(db.insert_sql(table, cols, ignore, n), [x for row in chunk for x in row]).rowcount, 0)
        i += n
    return added


def _write_items(db: Connection, items: list[Item]) -> int:
    """One transaction: every item or none. Rows of the versioned tables (runs, grades) take the next
    numbers of their shared sequence, read once per transaction (the write lock is held). Returns
    how many rows were new (rows that ignore a duplicate may add none)."""
    db.begin_write()
    added = 0
    try:
        seq = None
        i = 0
        while i < len(items):  # consecutive items with the same statement go in one multi-row INSERT
            table, cols, _, ignore = items[i]
            j = i + 1
            while j < len(items) and items[j][0] == table and items[j][1] == cols and items[j][3] == ignore:
                j += 1
            values = [it[2] for it in items[i:j]]
            if table in _VERSIONED:
                if seq is None:
                    seq = int(db.execute(db.next_seq).fetchone()[0])
                values = [(*v, seq + k) for k, v in enumerate(values)]
                seq += len(values)
            added += _insert_many(db, table, cols, ignore, values)
            i = j
        db.commit()
    except BaseException:
        if not db.broken:
            db.rollback()
        raise
    return added


class _Writer:
    """How the log writes. Async callers queue rows for the writer thread, which commits them in
    groups (everything queued while the last commit ran goes in the next transaction), off the event
    loop's thread; a caller hears back only once its rows are committed. Sync callers commit on their
    own thread through the same connection.

    A log locked by another process past the busy timeout loses no row: rows wait (up to
    ``lock_wait_s``, with a message), then go to the recovery file that the next open ingests.
    """

    def __init__(self, path: Path | LogURL, recovery_path: Path, busy_timeout_s: float, lock_wait_s: float):
        self.path, self.recovery_path = path, recovery_path
        self.busy_timeout_s, self.lock_wait_s = busy_timeout_s, lock_wait_s
        self._errors = errors_for(path)
        self._db: Connection | None = None
        self._wlock = threading.Lock()  # one transaction at a time on the writing connection
        self._locked_since: float | None = None
        self._recovering = False
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def write(self, items: list[Item]) -> bool:
        """Commit ``items`` in one transaction now, on this thread. Returns False when they were kept
        in the recovery file instead; raises StoreError when they could be kept nowhere."""
        with self._wlock:
            try:
                return not self._commit(items)
            except Exception as exc:
                raise _as_store_error(exc, self.path) from None

    def submit(self, tickets: list[_Ticket]) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="promptlab-log-writer", daemon=True)
                    self._thread.start()
        self._q.put(tickets)

    def stop(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                self._q.put(None)
                self._thread.join()
                self._thread = None
        with self._wlock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _run(self) -> None:
        while True:
            ts = self._q.get()
            if ts is None:
                return
            pending = list(ts)
            stop = False
            while True:  # everything queued meanwhile joins this group
                try:
                    ts = self._q.get_nowait()
                except queue.Empty:
                    break
                if ts is None:
                    stop = True
                    break
                pending.extend(ts)
            self._commit_group(pending)
            self._resolve(pending)
            if stop:
                return

    def _commit_group(self, tickets: list[_Ticket]) -> None:
        """Commit every ticket's rows in one transaction; when that fails, each ticket on its own, so
        a row that cannot be written costs no other caller its row."""
        try:
            with self._wlock:
                recovered = self._commit([it for t in tickets for it in t.items])
            for t in tickets:
                t.recovered = recovered
        except BaseException as exc:  # the callers get it; this thread goes on
            if len(tickets) == 1:
                tickets[0].error = _as_store_error(exc, self.path)
                return
            for t in tickets:
                self._commit_group([t])

    def _commit(self, items: list[Item]) -> bool:
        """Write ``items`` (the caller holds ``_wlock``); True when they went to the recovery file."""
        reconnected = False
        while True:
            try:
                if self._db is None:
                    self._db = _connect(self.path, self.busy_timeout_s)
                _write_items(self._db, items)
            except self._errors as exc:
                if self._db is not None and isinstance(exc, self._db.row_errors):
                    raise  # this data, not the log: another place would refuse it too
                locked = self._db is not None and self._db.is_locked(exc)
                if self._db is not None and self._db.broken:  # a server log's connection was dropped
                    self._db.close()
                    self._db = None
                    if not reconnected:  # (a restart, an idle timeout): one new connection, at once
                        reconnected = True
                        continue
                if locked and not self._recovering:
                    if self._locked_since is None:
                        self._locked_since = time.monotonic()
                        _say(f"run log {self.path} is locked by another process (longer than the "
                             f"{self.busy_timeout_s:g} s busy timeout); finished calls wait and are written when it "
                             f"frees (up to {self.lock_wait_s:g} s, then kept in {self.recovery_path.name})")
                    if time.monotonic() - self._locked_since < self.lock_wait_s:
                        time.sleep(0.05)
                        continue
                why = "still locked" if locked else str(exc).strip().splitlines()[0]
                try:
                    _append_recovery(self.recovery_path, items)
                except OSError as rexc:
                    raise StoreError(f"{self.path}: cannot write the run log ({why}) nor the recovery file "
                                     f"{self.recovery_path} ({rexc}); {len(items)} row(s) not kept") from None
                if not self._recovering:
                    _say(f"run log {self.path}: {why}; finished calls are kept in {self.recovery_path} "
                         "and written to the log the next time it is opened")
                    self._recovering = True
                    if self._db is not None:  # from now on, try the log briefly and fall back at once
                        self._db.set_lock_wait(1.0)
                return True
            if self._recovering and self._db is not None:
                self._db.set_lock_wait(self.busy_timeout_s)
            elif self._locked_since is not None:
                _say(f"run log {self.path} is free again; the waiting calls are written")
            self._locked_since, self._recovering = None, False
            return False

    @staticmethod
    def _resolve(tickets: list[_Ticket]) -> None:
        by_loop: dict[int, tuple[Any, list[_Ticket]]] = {}
        for t in tickets:
            by_loop.setdefault(id(t.loop), (t.loop, []))[1].append(t)
        for loop, ts in by_loop.values():  # one wake-up per loop per group, not one per row
            try:
                loop.call_soon_threadsafe(_settle, ts)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass


def _as_store_error(exc: BaseException, path: Path) -> BaseException:
    """A row's write failure as the one-line StoreError a caller reports (other exceptions unchanged)."""
    if isinstance(exc, StoreError) or not isinstance(exc, (*db_errors(), ValueError, OverflowError)):
        return exc
    return StoreError(f"{path}: a row could not be written ({type(exc).__name__}: {exc})")


def _say(message: str) -> None:
    print(f"promptlab: {message}", file=sys.stderr, flush=True)


def _append_recovery(path: Path, items: list[Item]) -> None:
    """Append rows to the recovery file (one JSON line each, fsynced) under an exclusive lock."""
    blob = "".join(json.dumps({"table": t, "columns": list(c), "values": list(v), "ignore": ig},
                              ensure_ascii=False) + "\n" for t, c, v, ig in items)
    while True:
        with open(path, "a", encoding="utf-8") as f:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:  # an ingest may have removed the file while we waited for the lock
                    if os.fstat(f.fileno()).st_ino != os.stat(path).st_ino:
                        continue
                except FileNotFoundError:
                    continue
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
            return


_INT_LIMIT = 2**63 - 1  # SQLite's INTEGER


def _storable_row(row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
    """Every string in ``row`` made storable (:func:`lab.text.storable`: lone surrogates written out as
    ``\\udXXX``) and every integer SQLite cannot hold kept as text; returns the row and column ->
    how many values were changed."""
    repairs: dict[str, int] = {}
    for col, value in row.items():
        if value is None or value.__class__ in (float, bool):
            continue
        if value.__class__ is int:
            if -_INT_LIMIT <= value <= _INT_LIMIT:
                continue
            row[col], n = str(value), 1
        elif is_storable(value):
            continue
        else:
            row[col], n = storable_value(value)
        repairs[col] = n
    return row, repairs


def _values_storable(values: tuple) -> bool:
    """True when SQLite takes every value as it is (no lone surrogate in text, no integer past 64 bits)."""
    for v in values:
        if v.__class__ is str:
            if not v.isascii() and not is_storable(v):
                return False
        elif v.__class__ is int and not -_INT_LIMIT <= v <= _INT_LIMIT:
            return False
    return True


def _repairs_text(repairs: dict[str, int]) -> str:
    return ", ".join(f"{n} character(s) of {col}" for col, n in repairs.items())


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


_INGEST_CHUNK = 2000  # recovery-file lines read and written per transaction


def _line_chunks(f: Any, size: int) -> Iterator[list[tuple[int, bytes]]]:
    """The file's lines (bytes, newline kept), numbered from 1, ``size`` at a time."""
    chunk: list[tuple[int, bytes]] = []
    for n, raw in enumerate(f, start=1):
        chunk.append((n, raw))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class RunLog:
    """A run log on disk. Reads return pandas DataFrames; writes are committed before they return.

    ``busy_timeout_s``: how long one write waits for another process's transaction. A log locked
    longer than that keeps finished calls waiting (up to ``lock_wait_s``, with a message), then keeps
    them in a recovery file next to the log (``<log>.recovery.jsonl``) that the next open ingests,
    exactly once.
    """

    def __init__(self, path: str | Path | None = None, *, busy_timeout_s: float = 60.0,
                 lock_wait_s: float = 600.0):
        self.path = log_target(path) if path is not None else default_log_path()
        self.recovery_path = recovery_path_for(self.path)
        self.busy_timeout_s, self.lock_wait_s = float(busy_timeout_s), float(lock_wait_s)
        self._errors = errors_for(self.path)
        try:
            if not isinstance(self.path, LogURL):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._open()
        except self._errors as exc:
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            hint = "; is it a promptlab log?" if not isinstance(self.path, LogURL) else ""
            raise StoreError(f"{self.path}: cannot open the run log ({why}){hint}") from None
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot open the run log ({exc})") from None
        self._lock = threading.Lock()
        self._writer = _Writer(self.path, self.recovery_path, self.busy_timeout_s, self.lock_wait_s)
        self._outbox: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> tickets to hand off
        weakref.finalize(self, self._writer.stop)
        if self.recovery_path.exists():
            self.ingest_recovery()

    def _open(self) -> Connection:
        """The connection, migrated; a log file that cannot be written (a read-only mount) is opened to read."""
        try:
            db = _connect(self.path, self.busy_timeout_s)
            migrate(db)
            return db
        except self._errors as exc:
            if isinstance(self.path, LogURL) or not (self.path.is_file() and SQLite.is_read_only(exc)):
                raise
        db = SQLite.read_only(self.path)
        if pending(db):
            raise StoreError(f"{self.path}: the log is read-only here and was written by an older promptlab; "
                             "open it once where it can be written, to upgrade it")
        return db

    def __repr__(self) -> str:
        return f"RunLog({str(self.path)!r})"

    def close(self) -> None:
        self._writer.stop()
        self._db.close()

    # ---- writing -------------------------------------------------------------------------

    def _write(self, items: list[Item]) -> bool:
        """Commit ``items`` in one transaction; False when they were kept in the recovery file."""
        return self._writer.write(items)

    def _submit(self, items: list[Item]) -> "asyncio.Future[None]":
        """Queue ``items`` for the writer thread (one transaction); the future (of the running event
        loop) is done once they are committed or kept in the recovery file."""
        import asyncio

        loop = asyncio.get_running_loop()
        ticket = _Ticket(items, loop, loop.create_future())
        # rows finished in the same turn of the event loop go to the writer in one hand-off (waking
        # the writer thread costs a GIL switch each time)
        batch = self._outbox.get(loop)
        if batch is None:
            batch = self._outbox[loop] = []
            loop.call_soon(self._hand_off, loop)
        batch.append(ticket)
        return ticket.future

    def _hand_off(self, loop: Any) -> None:
        self._writer.submit(self._outbox.pop(loop))

    def _item(self, table: str, row: dict[str, Any], *, ignore: bool = False, clean: bool = False) -> Item:
        """A row as the writer takes it, made storable (:func:`_storable_row`) unless ``clean`` says the
        caller sees to it."""
        json_cols = _JSON_COLUMNS.get(table, ())
        values = tuple(_dumps(v) if k in json_cols else v for k, v in row.items())
        if not clean and not _values_storable(values):
            return self._item(table, _storable_row(row)[0], ignore=ignore, clean=True)
        return (table, tuple(row), values, ignore)

    def _insert(self, table: str, row: dict[str, Any], *, ignore: bool = False) -> None:
        self._write([self._item(table, row, ignore=ignore)])

    @staticmethod
    def _run_row(rec: RunRecord) -> dict[str, Any]:
        """The row to write for ``rec``, redacted."""
        row = {name: getattr(rec, name) for name in _RECORD_FIELDS}
        row["id"] = row["id"] or new_id()
        row["finished_at"] = row["finished_at"] or now()
        secrets = secret_values()  # once a row, not once a string
        for col in ("output", "error", "model"):
            row[col] = redact(row[col], secrets) if row[col] else row[col]
        for col in ("messages", "input_vars", "expected"):  # a key pasted into an input by mistake
            row[col] = redact_value(row[col], secrets)
        row["lab_version"] = __version__
        return row

    def _run_items(self, rec: RunRecord) -> list[Item]:
        """The items that log ``rec``: its row, and an event naming what was escaped to store it. The
        record itself takes the stored values, so what the caller keeps is what the log holds."""
        row, repairs = self._run_row(rec), {}
        item = self._item("runs", row, clean=True)
        if not _values_storable(item[2]):  # rare: checked on the encoded values, made storable only then
            row, repairs = _storable_row(row)
            item = self._item("runs", row, clean=True)
        rec.id, rec.finished_at = row["id"], row["finished_at"]
        for name in repairs:
            if name in _RECORD_FIELDS:
                setattr(rec, name, row[name])
        items = [item]
        if repairs:
            self._say_escaped(row, repairs)
            items.append(self._item("events", {"experiment_id": row["experiment_id"], "at": now(),
                                               "kind": "text_escaped",
                                               "detail": {"run_id": row["id"], "escaped": repairs}}))
        return items

    _ESCAPED_SAID = 3  # rows named one by one; later ones are counted in events only

    def _say_escaped(self, row: dict[str, Any], repairs: dict[str, int]) -> None:
        self._escaped = getattr(self, "_escaped", 0) + 1
        if self._escaped <= self._ESCAPED_SAID:
            _say(f"run {row['id']} (variant {row['variant']!r}, input {row['input_id']!r}): "
                 f"{_repairs_text(repairs)} escaped as \\uXXXX to store it; the row is kept and flagged "
                 "(event 'text_escaped')")
        if self._escaped == self._ESCAPED_SAID:
            _say("from now on, rows with escaped text are flagged by 'text_escaped' events without a message")

    def add_run(self, rec: RunRecord) -> str:
        """Append one finished call; returns (with the run id) once it is committed."""
        self._write(self._run_items(rec))
        return rec.id

    async def append_run(self, rec: RunRecord) -> str:
        """:meth:`add_run` for async code: the event loop keeps running while the writer thread
        commits, and rows finished at about the same time share one commit. Returns once the row is
        committed (or kept in the recovery file)."""
        await self.submit_run(rec)
        return rec.id

    def submit_run(self, rec: RunRecord) -> "asyncio.Future[None]":
        """Queue one finished call for the writer thread and return at once (call it on a running
        event loop). The returned future is done once the row is committed (or kept in the recovery
        file), and raises StoreError when it could be kept nowhere: report the call only then.
        Fills in ``rec.id`` (and ``rec.finished_at``) when they are empty."""
        return self._submit(self._run_items(rec))

    def add_runs(self, recs: list[RunRecord]) -> list[str]:
        """Append several rows in one transaction (all or none). For rows that cost nothing to
        redo, such as replays from the log: one commit instead of one per row."""
        items = [it for r in recs for it in self._run_items(r)]
        if items:
            self._write(items)
        return [r.id for r in recs]

    def ingest_recovery(self) -> int:
        """Write the rows kept in the recovery file (calls that finished while the log was locked)
        into the log, each exactly once, then remove the file. A line that cannot be ingested (torn by
        a crash, not JSON, not a row this log holds) goes to ``<recovery file>.rejected`` with its
        reason, and one line says so; the others are ingested. Returns how many rows were new."""
        path = self.recovery_path
        try:
            f = open(path, "r+b")
        except FileNotFoundError:
            return 0
        except OSError as exc:
            _say(f"run log {self.path}: cannot read the recovery file {path} ({exc.strerror or exc}); "
                 "it is left as it is: move it away if it is not promptlab's")
            return 0
        with f:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_EX)
            self._schema  # read now: a failure to read it is the log's, not a line's
            added, rejected = 0, []
            for lines in _line_chunks(f, _INGEST_CHUNK):  # a big file is read a chunk of lines at a time
                items, refused = self._recovery_items(lines)
                n, failed = self._ingest_items(items)
                if failed is None:  # the log is locked or unwritable: the file stays for the next open
                    return added  # (rows already in are skipped then: they are ingested once)
                added += n
                rejected += refused + failed
            if added:
                _say(f"run log {self.path}: ingested {added} row(s) kept in {path.name} while the log was locked")
            if rejected and not self._reject(sorted(rejected, key=lambda r: r[0])):
                return added
            os.unlink(path)
        return added

    def _recovery_items(self, lines: list[tuple[int, bytes]]
                        ) -> tuple[list[tuple[int, Item]], list[tuple[int, bytes, str]]]:
        """The rows among these numbered lines, and the lines refused, with a reason each."""
        items: list[tuple[int, Item]] = []
        rejected: list[tuple[int, bytes, str]] = []
        for n, raw in lines:
            if not raw.endswith(b"\n"):  # only the last line can lack it: a write cut short
                if raw.strip():
                    rejected.append((n, raw, "torn line (the write was cut short)"))
                continue
            if not raw.strip():
                continue
            try:
                item = self._recovery_item(raw[:-1])
            except StoreError as exc:  # this line's problem
                rejected.append((n, raw[:-1], str(exc)))
                continue
            if item is not None:
                items.append((n, item))
        return items, rejected

    def _recovery_item(self, raw: bytes) -> Item | None:
        """One recovery line as a row to insert (or ignore, when it is in the log already); None for an
        event ingested before. Raises StoreError naming what is wrong with it."""
        try:
            d = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise StoreError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
        except (ValueError, RecursionError) as exc:
            raise StoreError(f"not a JSON row ({str(exc)[:200]})") from None
        table, cols, values = self._recovery_shape(d)
        row, _ = _storable_row(dict(zip(cols, values)))
        missing = [c for c in self._required(table) if row.get(c) is None]
        if missing:
            raise StoreError(f"{table} row without {', '.join(missing)}, which the log requires")
        self._check_types(table, row)
        if table == "events" and self._has_event(row):
            return None  # events have no id of their own: an identical one is this one, ingested before
        return (table, cols, tuple(row.values()), True)  # a row already in the log is skipped (same id)

    def _recovery_shape(self, d: Any) -> tuple[str, tuple[str, ...], list[Any]]:
        if not isinstance(d, dict) or not isinstance(d.get("columns"), list) or not isinstance(d.get("values"), list):
            raise StoreError("not a row (a JSON object with table, columns and values)")
        table, cols, values = d.get("table"), tuple(d["columns"]), d["values"]
        if table not in _JSON_COLUMNS:
            raise StoreError(f"unknown table {str(table)[:80]!r}")
        unknown = [str(c)[:80] for c in cols if c not in self._known_columns(table)]
        if not cols or unknown or len(set(cols)) != len(cols):
            raise StoreError(f"columns {unknown or 'repeated or none'} are not the {table} table's")
        if len(values) != len(cols):
            raise StoreError(f"{len(values)} values for {len(cols)} columns")
        bad = [c for c, v in zip(cols, values) if not (v is None or v.__class__ in (str, int, float, bool))]
        if bad:
            raise StoreError(f"value of {', '.join(bad)} is not text or a number")
        return table, cols, values

    @functools.cached_property
    def _schema(self) -> dict[str, dict[str, tuple[bool, str]]]:
        """table -> column -> (whether the log requires a value, declared type); ``seq`` is the log's own."""
        out = {}
        for table in _JSON_COLUMNS:
            with self._sql(f"read the {table} table's columns"):
                info = self._db.table_info(table)
            out[table] = {name: (required, kind) for name, required, kind in info if name != "seq"}
        return out

    def _known_columns(self, table: str) -> dict[str, tuple[bool, str]]:
        return self._schema[table]

    def _required(self, table: str) -> list[str]:
        return [c for c, (required, _) in self._schema[table].items() if required]

    def _check_types(self, table: str, row: dict[str, Any]) -> None:
        """Numbers in number columns, JSON text in JSON columns: what every later read expects."""
        for col, v in row.items():
            if v is None:
                continue
            if col in _JSON_COLUMNS[table]:
                if not (isinstance(v, str) and _is_json(v)):
                    raise StoreError(f"{col} is not JSON text")
            elif self._schema[table][col][1] in ("INTEGER", "REAL") and not isinstance(v, (int, float)):
                raise StoreError(f"{col} is not a number")

    def _ingest_items(self, items: list[tuple[int, Item]]) -> tuple[int, list[tuple[int, bytes, str]] | None]:
        """Insert the rows in one transaction, or one at a time when that fails; returns how many were
        new and the rows refused (None when the log cannot be written now: try again at the next open)."""
        if not items:
            return 0, []
        try:
            with self._lock:
                added = _write_items(self._db, [it for _, it in items])
        except self._errors as exc:
            if not isinstance(exc, self._db.row_errors):
                _say(f"run log {self.path}: {len(items)} row(s) in {self.recovery_path.name} not ingested yet "
                     f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}); "
                     "they stay there for the next open")
                return 0, None
            return self._ingest_one_by_one(items)
        return added, []

    def _ingest_one_by_one(self, items: list[tuple[int, Item]]) -> tuple[int, list[tuple[int, bytes, str]] | None]:
        added, failed = 0, []
        for n, item in items:
            try:
                with self._lock:
                    new = _write_items(self._db, [item])
            except self._errors as exc:
                if not isinstance(exc, self._db.row_errors):
                    return added, None
                line = json.dumps({"table": item[0], "columns": list(item[1]), "values": list(item[2])},
                                  ensure_ascii=False)
                failed.append((n, line.encode(), f"the log refused it ({exc})"))
                continue
            added += new
        return added, failed

    def _reject(self, rejected: list[tuple[int, bytes, str]]) -> bool:
        """Append refused recovery lines, each with its reason, to ``<recovery file>.rejected``."""
        out = self.recovery_path.with_name(self.recovery_path.name + ".rejected")
        blob = "".join(json.dumps({"line": n, "reason": why, "raw": raw.decode("utf-8", "backslashreplace")},
                                  ensure_ascii=True) + "\n" for n, raw, why in rejected)
        try:
            with open(out, "a", encoding="utf-8") as f:
                f.write(blob)
        except OSError as exc:
            _say(f"run log {self.path}: {len(rejected)} line(s) of {self.recovery_path.name} cannot be ingested "
                 f"and cannot be set aside in {out} ({exc.strerror or exc}); the file is left as it is")
            return False
        first = rejected[0]
        _say(f"run log {self.path}: {len(rejected)} line(s) of {self.recovery_path.name} could not be ingested "
             f"(first: line {first[0]}, {first[2]}); set aside with their reasons in {out}")
        return True

    def _has_event(self, row: dict[str, Any]) -> bool:
        return self._db.execute(
            "SELECT 1 FROM events WHERE experiment_id = ? AND at = ? AND kind = ? AND "
            f"{self._db.same('detail')} LIMIT 1",
            (row.get("experiment_id"), row.get("at"), row.get("kind"), row.get("detail"))).fetchone() is not None

    def add_experiment(self, id: str, *, name: str | None, prompt_path: str | None, inputs_path: str | None,
                       models: list[str], variants: list[str], repeats: int, params: dict[str, Any]) -> None:
        """Record an experiment once; a resumed experiment keeps its first record."""
        self._insert("experiments", {
            "id": id, "name": name, "created_at": now(), "prompt_path": prompt_path, "inputs_path": inputs_path,
            "models": redact_value(models), "variants": variants, "repeats": repeats, "params": redact_value(params),
            "lab_version": __version__}, ignore=True)

    def add_event(self, experiment_id: str, kind: str, **detail: Any) -> None:
        self._insert("events", {"experiment_id": experiment_id, "at": now(), "kind": kind, "detail": detail})

    def add_prompt_version(self, version: str, *, prompt_path: str, task: str, variant: str,
                           templates: Iterable[tuple[str, str]], params: dict[str, Any], escape_hatch: str | None) -> None:
        self._insert("prompt_versions", {
            "version": version, "prompt_path": prompt_path, "task": task, "variant": variant,
            "templates": [list(t) for t in templates], "params": params, "escape_hatch": escape_hatch,
            "first_seen": now()}, ignore=True)

    def add_grade(self, run_id: str, grader: str, *, score: float | None = None, passed: bool | None = None,
                  label: str | None = None, detail: dict[str, Any] | None = None,
                  experiment_id: str | None = None) -> str:
        """Append a grade (or a human rating) for a run. Regrading adds rows; it never rewrites."""
        return self.add_grades([dict(run_id=run_id, grader=grader, score=score, passed=passed, label=label,
                                     detail=detail, experiment_id=experiment_id)])[0]

    def add_grades(self, grades: list[dict[str, Any]]) -> list[str]:
        """Append several grades in one transaction (all or none): each a dict of :meth:`add_grade`'s
        arguments. Grading a 20k-row experiment is then one commit, not 20k."""
        rows = [{
            "id": new_id(), "run_id": g["run_id"], "experiment_id": g.get("experiment_id"), "grader": g["grader"],
            "score": g.get("score"), "passed": None if g.get("passed") is None else int(bool(g["passed"])),
            "label": g.get("label"), "detail": g.get("detail"), "created_at": now(), "lab_version": __version__,
        } for g in grades]
        if rows:
            self._write([self._item("grades", row) for row in rows])
        return [row["id"] for row in rows]

    # ---- reading -------------------------------------------------------------------------

    def version(self) -> int:
        """The log's current point: pass it as ``as_of`` later to re-read tables exactly as now."""
        with self._sql("read the log's version"):
            row = self._db.execute(self._db.next_seq).fetchone()
        return int(row[0]) - 1

    @contextlib.contextmanager
    def _sql(self, what: str) -> Iterator[None]:
        """Hold the connection for one read; a failure becomes a one-line StoreError. A server log's
        connection dropped since the last read (a restart, an idle timeout) is opened again first."""
        with self._lock:
            try:
                if self._db.broken:
                    self._db.close()
                    self._db = _connect(self.path, self.busy_timeout_s)
                yield
            except self._errors as exc:
                why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise StoreError(f"{self.path}: cannot {what} ({why})") from None

    def _as_of_clause(self, as_of: int | str | datetime | None, ts_col: str) -> tuple[str, list[Any]]:
        if as_of is None:
            return "", []
        if isinstance(as_of, bool):
            raise ValueError("as_of must be a log version (int) or a timestamp")
        if isinstance(as_of, int):
            return "seq <= ?", [as_of]
        import pandas as pd

        ts = pd.Timestamp(as_of)
        if ts.tzinfo is None:
            ts = ts.tz_localize("UTC")
        return f"{ts_col} <= ?", [ts.tz_convert("UTC").isoformat(timespec="microseconds")]

    def _query(self, table: str, where: list[str], args: list[Any], order: str = "seq",
               columns: list[str] | None = None) -> "pd.DataFrame":
        import pandas as pd

        if columns is not None:
            known = self._columns(table)
            unknown = [c for c in columns if c not in known]
            if unknown:
                raise StoreError(f"columns: {unknown} are not columns of the {table} table; it has {sorted(known)}")
        sql = f"SELECT {', '.join(columns) if columns is not None else '*'} FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(f"({w})" for w in where)
        sql += f" ORDER BY {order}"
        with self._sql(f"read the {table} table"):
            cur = self._db.execute(sql, args)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        df = pd.DataFrame.from_records(rows, columns=names)
        for col in _JSON_COLUMNS.get(table, ()):
            if col in df:
                df[col] = _decode_json_column(df[col])
        return df

    def _columns(self, table: str) -> list[str]:
        with self._sql(f"read the {table} table's columns"):
            return self._db.columns(table)

    def _runs_where(self, experiment: str | list[str] | None, *, variant: str | None = None,
                    model: str | None = None, prompt_version: str | None = None, tag: str | None = None,
                    outcome: str | None = None, role: str | None = None,
                    as_of: int | str | datetime | None = None) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        if experiment is not None:
            ids = [experiment] if isinstance(experiment, str) else list(experiment)
            where.append(f"experiment_id IN ({', '.join('?' for _ in ids)})")
            args += ids
        for col, val in (("variant", variant), ("model", model), ("prompt_version", prompt_version),
                         ("outcome", outcome), ("role", role)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if tag is not None:
            where.append(self._db.has_tag("runs.input_tags"))
            args.append(tag)
        clause, extra = self._as_of_clause(as_of, "finished_at")
        if clause:
            where.append(clause)
            args += extra
        return where, args

    def runs(self, experiment: str | list[str] | None = None, *, variant: str | None = None,
             model: str | None = None, prompt_version: str | None = None, tag: str | None = None,
             outcome: str | None = None, role: str | None = None,
             as_of: int | str | datetime | None = None, columns: list[str] | None = None) -> "pd.DataFrame":
        """Run rows (one per model call) as a DataFrame, oldest first, filtered as asked.

        ``columns`` (names of the runs table) reads only those: JSON columns not asked for are
        neither fetched nor parsed, which is most of the cost on a big experiment."""
        where, args = self._runs_where(experiment, variant=variant, model=model, prompt_version=prompt_version,
                                       tag=tag, outcome=outcome, role=role, as_of=as_of)
        return self._query("runs", where, args, columns=None if columns is None else list(columns))

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run row by its id, as a dict (None when the log has no such run)."""
        found = self._query("runs", ["id = ?"], [run_id])
        return None if found.empty else found.iloc[0].to_dict()

    def summary_rows(self, experiment: str | list[str] | None = None,
                     **filters: Any) -> tuple[list[str], list[str], list[tuple]]:
        """:meth:`summary` without pandas (for the CLI): the group columns, the value columns and
        one tuple per group, in order of first appearance."""
        where, args = self._runs_where(experiment, **filters)
        clause = (" WHERE " + " AND ".join(f"({w})" for w in where)) if where else ""
        with self._sql("summarize the runs table"):
            models = self._db.execute(f"SELECT count(DISTINCT model) FROM runs{clause}", args).fetchone()[0]
            by = ["variant"] + (["model"] if models > 1 else [])
            rows = self._db.execute(
                f"SELECT {', '.join(by)}, count(*), {_COUNT_OUTCOMES}, {self._db.round1('avg(latency_ms)')},"
                " CAST(sum(output_tokens) AS BIGINT),"
                " CASE WHEN count(cost_usd) = count(*) THEN coalesce(sum(cost_usd), 0.0) END"
                f" FROM runs{clause} GROUP BY {', '.join(by)} ORDER BY min(seq)", args).fetchall()
        cols = ["n", "answered", "escaped", "errors", "mean_latency_ms", "output_tokens", "cost_usd"]
        return by, cols, rows

    def summary(self, experiment: str | list[str] | None = None, **filters: Any) -> "pd.DataFrame":
        """Per variant (and model, when there are several) the same table as ``lab.tables.summary(runs)``,
        computed by SQLite (an index holds what it reads): n, answered, escaped, errors, mean latency,
        output tokens and cost (NaN when any call's price is unknown). Filters as :meth:`runs`."""
        import pandas as pd

        by, cols, rows = self.summary_rows(experiment, **filters)
        df = pd.DataFrame.from_records(rows, columns=by + cols)
        for col in cols[1:]:  # a group of NULLs comes back as None: NaN, as pandas would say
            df[col] = pd.to_numeric(df[col])
        df["mean_latency_ms"] = df["mean_latency_ms"].astype(float)
        df["cost_usd"] = df["cost_usd"].astype(float)
        return df.set_index(by if len(by) > 1 else by[0])

    def grades(self, experiment: str | None = None, *, run_id: str | None = None, grader: str | None = None,
               as_of: int | str | datetime | None = None) -> "pd.DataFrame":
        where, args = [], []
        for col, val in (("experiment_id", experiment), ("run_id", run_id), ("grader", grader)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        clause, extra = self._as_of_clause(as_of, "created_at")
        if clause:
            where.append(clause)
            args += extra
        return self._query("grades", where, args)

    def experiments(self) -> "pd.DataFrame":
        """One row per experiment with its call counts by outcome."""
        import pandas as pd

        df = self._query("experiments", [], [])
        with self._sql("count the runs"):
            counts = self._db.execute(
                f"SELECT experiment_id, count(*), {_COUNT_OUTCOMES}, sum(cost_usd), max(finished_at)"
                " FROM runs GROUP BY experiment_id"
            ).fetchall()
        c = pd.DataFrame(counts, columns=["id", "calls", "answered", "escaped", "errors", "cost_usd", "last_call_at"])
        return df.merge(c, on="id", how="left")

    def events(self, experiment: str | None = None) -> "pd.DataFrame":
        where, args = ([], []) if experiment is None else (["experiment_id = ?"], [experiment])
        return self._query("events", where, args)

    def prompt_versions(self, prompt_path: str | None = None) -> "pd.DataFrame":
        """Prompt versions, oldest first; with ``prompt_path``, every version run from that path, also
        one first seen under another path of the same file (a version row records only its first path)."""
        where, args = ([], []) if prompt_path is None else (
            ["prompt_path = ? OR version IN (SELECT DISTINCT prompt_version FROM runs WHERE prompt_path = ?)"],
            [prompt_path, prompt_path])
        return self._query("prompt_versions", where, args, order="first_seen")

    def find_cached(self, cache_key: str) -> dict[str, Any] | None:
        """The latest successful call with this cache key, for replay."""
        return self.find_cached_many([cache_key]).get(cache_key)

    def find_cached_many(self, cache_keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """:meth:`find_cached` for many keys in a few queries: key -> the latest successful call."""
        keys = list(dict.fromkeys(cache_keys))
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            with self._sql("look up cached calls"):
                cur = self._db.execute(
                    "SELECT cache_key, id, output, outcome, seed, input_tokens, output_tokens, latency_ms, cost_usd, confidence "
                    f"FROM runs WHERE cache_key IN ({', '.join('?' for _ in chunk)}) AND outcome != 'error' "
                    "ORDER BY seq", chunk)
                names = [d[0] for d in cur.description]
                for row in cur.fetchall():
                    found[row[0]] = dict(zip(names, row))  # ordered by seq: the latest wins
        return found

    def finished_keys(self, experiment_id: str, versions: dict[str, str] | None = None) -> set[tuple]:
        """(variant, input_id, model, repeat, conversation turn, attempt, round, role) of calls that
        finished without error: what a resumed experiment skips. ``versions`` (variant -> prompt
        version): only calls made with those versions count."""
        with self._sql("read finished calls"):
            rows = self._db.execute(
                "SELECT variant, input_id, model, repeat, turn, attempt, round, role, prompt_version FROM runs "
                "WHERE experiment_id = ? AND outcome != 'error'",
                (experiment_id,),
            ).fetchall()
        return {tuple(r[:8]) for r in rows if versions is None or versions.get(r[0]) == r[8]}

    def finished_versions(self, experiment_id: str) -> dict[str, set[str]]:
        """variant -> the prompt versions its finished calls in this experiment used."""
        with self._sql("read finished calls' versions"):
            rows = self._db.execute("SELECT DISTINCT variant, prompt_version FROM runs WHERE experiment_id = ? "
                                    "AND outcome != 'error' AND prompt_version IS NOT NULL", (experiment_id,)).fetchall()
        out: dict[str, set[str]] = {}
        for variant, version in rows:
            out.setdefault(variant, set()).add(version)
        return out

    def export(self, experiment: str, path: str | Path, *,
               partition_by: str | list[str] | None = None) -> Path:
        """Write one experiment's runs and grades as Parquet files under ``path`` (a folder).

        By default: ``runs.parquet`` and ``grades.parquet``. With ``partition_by`` (column names
        of the runs table, e.g. ``["variant", "model"]``, or ``"date"`` for the UTC day a call
        finished) the runs become a Hive-partitioned dataset in ``runs/`` (``variant=.../model=.../
        *.parquet``) that DuckDB, Polars or Spark read as one table; the partition columns come
        back from the folder names, so read it with ``hive_partitioning=true``. A value too long for a
        folder name is shortened to its start plus ``~`` and a hash (:func:`lab.names.folder_value`).
        """
        out = Path(path)
        runs = self.runs(experiment)
        if runs.empty:
            raise StoreError(f"{self.path}: no runs for experiment {experiment!r}")
        parts = [partition_by] if isinstance(partition_by, str) else list(partition_by or [])
        if parts:
            if "date" in parts and "date" not in runs:
                runs["date"] = runs["finished_at"].str.slice(0, 10)
            unknown = [c for c in parts if c not in runs]
            if unknown:
                raise StoreError(f"partition_by: {unknown} are not columns of the runs table; "
                                 f"try variant, model, prompt_version, input_id, date")
        out.mkdir(parents=True, exist_ok=True)
        for col in _JSON_COLUMNS["runs"]:
            runs[col] = [_dumps(v) for v in runs[col]]
        if parts:
            import pyarrow as pa
            import pyarrow.parquet as pq

            if (out / "runs").exists():
                raise StoreError(f"{out / 'runs'} already exists; export a partitioned table into a new folder")
            for col in parts:  # folder names: text, missing values spelled out, long ones shortened (lab.names)
                runs[col] = runs[col].astype("string").fillna("(none)").map(folder_value)
            pq.write_to_dataset(pa.Table.from_pandas(runs, preserve_index=False), out / "runs",
                                partition_cols=parts, basename_template="part-{i}.parquet")
        else:
            runs.to_parquet(out / "runs.parquet", index=False)
        grades = self.grades(experiment)
        grades["detail"] = [_dumps(v) for v in grades["detail"]]
        grades.to_parquet(out / "grades.parquet", index=False)
        return out

    # ---- provider batches (bookkeeping for lab.batch) -------------------------------------

    def add_batch(self, experiment_id: str, *, provider: str, model: str, batch_id: str, base_url: str | None,
                  state: str, counts: dict[str, Any] | None, requests: dict[str, dict[str, Any]]) -> None:
        """Record a submitted provider batch and its planned calls (custom id -> run row as planned),
        in one transaction."""
        at = now()
        with self._sql("record a provider batch"):
            self._db.begin_write()
            try:
                self._db.execute(
                    "INSERT INTO batches (experiment_id, provider, model, batch_id, base_url, state, request_count,"
                    " counts, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (experiment_id, provider, model, batch_id, base_url, state, len(requests), _dumps(counts),
                     at, at))
                self._db.executemany(
                    "INSERT INTO batch_requests (custom_id, batch_id, experiment_id, call) VALUES (?, ?, ?, ?)",
                    [(cid, batch_id, experiment_id, _dumps(redact_value(call))) for cid, call in requests.items()])
            except BaseException:
                self._db.rollback()
                raise
            self._db.commit()

    def update_batch(self, provider: str, batch_id: str, *, state: str, counts: dict[str, Any] | None,
                     ingested: bool = False) -> None:
        """Note a batch's latest state (and, once its results are all run rows, when that happened)."""
        with self._sql("update a provider batch"):
            self._db.execute(
                "UPDATE batches SET state = ?, counts = ?, updated_at = ?,"
                " ingested_at = CASE WHEN ? THEN coalesce(ingested_at, ?) ELSE ingested_at END"
                " WHERE provider = ? AND batch_id = ?",
                (state, _dumps(counts), now(), bool(ingested), now(), provider, batch_id))

    def batches(self, experiment: str | None = None) -> "pd.DataFrame":
        """The provider batches submitted (for one experiment), oldest first."""
        where, args = ([], []) if experiment is None else (["experiment_id = ?"], [experiment])
        return self._query("batches", where, args)

    def batch_requests(self, batch_id: str) -> dict[str, dict[str, Any]]:
        """custom id -> the run row as planned, for every call submitted in one batch."""
        with self._sql("read a batch's requests"):
            rows = self._db.execute("SELECT custom_id, call FROM batch_requests WHERE batch_id = ?",
                                    (batch_id,)).fetchall()
        return {cid: json.loads(call) for cid, call in rows}

    def run_ids_present(self, ids: Iterable[str]) -> set[str]:
        """Which of these run ids already have a row in the log."""
        ids = list(ids)
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            with self._sql("look up run ids"):
                rows = self._db.execute(
                    f"SELECT id FROM runs WHERE id IN ({', '.join('?' for _ in chunk)})", chunk).fetchall()
            found.update(r[0] for r in rows)
        return found

    # ---- the search: versions tried on a set of inputs (issue 19) ---------------------------

    def event_details(self, experiment_id: str, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """``(at, detail)`` of each event of this kind, oldest first, without pandas (a run reads it)."""
        with self._sql("read the events table"):
            rows = self._db.execute("SELECT at, detail FROM events WHERE experiment_id = ? AND kind = ? ORDER BY seq",
                                    (experiment_id, kind)).fetchall()
        return [(at, json.loads(d) if d else {}) for at, d in rows]

    def versions_tried(self, task: str, input_ids: list[str], *, until: str | None = None) -> "pd.DataFrame":
        """Per variant and prompt version of ``task``: on how many of ``input_ids`` it was run, its
        calls, and its first and last call (``until``: only versions first run by then), oldest first."""
        import pandas as pd

        sql = ("SELECT variant, prompt_version, count(DISTINCT input_id), count(*), min(finished_at),"
               " max(finished_at) FROM runs WHERE task = ? AND coalesce(role, 'answer') = 'answer'"
               f" AND input_id IN ({self._db.json_elements}) GROUP BY variant, prompt_version")
        sql += " HAVING min(finished_at) <= ?" if until is not None else ""
        args: list[Any] = [task, json.dumps(list(input_ids))] + ([until] if until is not None else [])
        with self._sql("count the versions tried on these inputs"):
            rows = self._db.execute(sql + " ORDER BY min(seq)", args).fetchall()
        return pd.DataFrame.from_records(rows, columns=["variant", "prompt_version", "inputs", "calls", "first_at",
                                                        "last_at"])


def log(path: str | Path | None = None, *, busy_timeout_s: float = 60.0, lock_wait_s: float = 600.0) -> RunLog:
    """Open the run log (``results/promptlab.db`` by default, or ``$PROMPTLAB_LOG``); the options are
    :class:`RunLog`'s."""
    return RunLog(path, busy_timeout_s=busy_timeout_s, lock_wait_s=lock_wait_s)
