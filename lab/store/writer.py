"""How rows reach the log: one transaction at a time, in groups from async code through a writer
thread, and into a recovery file next to the log (or under ``$PROMPTLAB_RECOVERY_DIR`` for a server
log) when the log cannot take them, for the next open to ingest (:mod:`lab.store.recovery`)."""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import StoreError
from .backend import Connection, LogURL, connect, db_errors, errors_for
from .record import _VERSIONED, Item

try:
    import fcntl
except ImportError:  # Windows: the recovery file is then written without a lock
    fcntl = None  # type: ignore[assignment]

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


def _as_store_error(exc: BaseException, path: Path | LogURL) -> BaseException:
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
    path.parent.mkdir(parents=True, exist_ok=True)  # a server log's folder (results/) may not exist yet
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
