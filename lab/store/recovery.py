"""Ingesting the recovery file: rows kept while the log could not take them go in exactly once at
the next open; a line that cannot (torn, not JSON, not a row this log holds) is set aside in
``<recovery file>.rejected`` with its reason."""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from .backend import Connection, LogURL
from .record import _JSON_COLUMNS, Item, _is_json, _storable_row
from .writer import _say, _write_items, fcntl

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


class Recovery:
    """The recovery-file part of :class:`lab.store.RunLog`."""

    path: Path | LogURL
    recovery_path: Path
    _db: Connection
    _lock: threading.Lock
    if TYPE_CHECKING:
        def _sql(self, what: str) -> Any:  # RunLog's reading part (Queries) holds the connection
            ...
    _errors: tuple[type[BaseException], ...]

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
            _ = self._schema  # read now: a failure to read it is the log's, not a line's
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
