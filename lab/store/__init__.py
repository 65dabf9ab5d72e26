"""The run log: every model call is one row, written the moment the call finishes.

The embedded default is one SQLite file (WAL mode, busy timeout), ``results/promptlab.db`` unless
``PROMPTLAB_LOG`` or an explicit path says otherwise; a ``postgresql://`` URL there puts the log on a
PostgreSQL server instead (same schema, same guarantees). The log is append-only: rows are never
updated; grades and ratings are rows of their own. ``as_of`` re-reads any table exactly as it was
at a point in the log (a ``seq`` number from :meth:`RunLog.version`, or a UTC timestamp).
Several processes may write one log at once; a killed process loses no committed row.

:class:`RunLog` is assembled from the package's rooms: ``record`` (the run record, ids, JSON
columns, storable text), ``writer`` (transactions, the writer thread, the recovery file),
``recovery`` (ingesting that file), ``queries`` (reading), ``export`` (Parquet), ``backend`` (a
SQLite file or a PostgreSQL database) and ``merge`` (logs from other machines into one).
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from ..migrations import migrate, pending
from ..secrets import redact, redact_value, secret_values
from .backend import Connection, LogURL, SQLite, errors_for, recovery_path_for
from .export import Export
from .queries import Queries
from .record import (
    _JSON_COLUMNS,
    _RECORD_FIELDS,
    DEFAULT_LOG,
    Item,
    RunRecord,
    _dumps,
    _repairs_text,
    _storable_row,
    _values_storable,
    default_log_path,
    log_target,
    new_id,
    now,
)
from .recovery import Recovery
from .writer import _connect, _say, _Ticket, _Writer

if TYPE_CHECKING:
    import asyncio

__all__ = ["DEFAULT_LOG", "RunLog", "RunRecord", "default_log_path", "log", "log_target", "new_id", "now"]


@functools.cache
def _lab_version() -> str:
    """The version rows are stamped with, read from the package metadata once, when a row is first
    written (importlib.metadata costs a reader such as ``python -m lab show`` 15 ms)."""
    from ..version import __version__

    return __version__


class RunLog(Recovery, Queries, Export):
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

    def _write(self, items: list[Item]) -> bool:
        """Commit ``items`` in one transaction; False when they were kept in the recovery file."""
        return self._writer.write(items)

    def _submit(self, items: list[Item]) -> asyncio.Future[None]:
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
        row["lab_version"] = _lab_version()
        return row

    def _run_items(self, rec: RunRecord) -> list[Item]:
        """The items that log ``rec``: its row, and an event naming what was escaped to store it. The
        record itself takes the stored values, so what the caller keeps is what the log holds."""
        row, repairs = self._run_row(rec), dict[str, int]()
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

    def submit_run(self, rec: RunRecord) -> asyncio.Future[None]:
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

    def add_experiment(self, id: str, *, name: str | None, prompt_path: str | None, inputs_path: str | None,
                       models: list[str], variants: list[str], repeats: int, params: dict[str, Any]) -> None:
        """Record an experiment once; a resumed experiment keeps its first record."""
        self._insert("experiments", {
            "id": id, "name": name, "created_at": now(), "prompt_path": prompt_path, "inputs_path": inputs_path,
            "models": redact_value(models), "variants": variants, "repeats": repeats, "params": redact_value(params),
            "lab_version": _lab_version()}, ignore=True)

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
            "label": g.get("label"), "detail": g.get("detail"), "created_at": now(), "lab_version": _lab_version(),
        } for g in grades]
        if rows:
            self._write([self._item("grades", row) for row in rows])
        return [row["id"] for row in rows]

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


def log(path: str | Path | None = None, *, busy_timeout_s: float = 60.0, lock_wait_s: float = 600.0) -> RunLog:
    """Open the run log (``results/promptlab.db`` by default, or ``$PROMPTLAB_LOG``); the options are
    :class:`RunLog`'s."""
    return RunLog(path, busy_timeout_s=busy_timeout_s, lock_wait_s=lock_wait_s)
