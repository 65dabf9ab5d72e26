"""Merging run logs: the SQLite logs of several machines into one log (a SQLite file or a team's
PostgreSQL database), each row exactly once.

Rows carry their own ids (runs, grades, experiments, batches), or are identified by what they
hold (events, prompt versions by their content hash), so a merge is idempotent: merging the same
file twice, or two files that share rows (a log copied, then both copies grown), adds each row
once. A row whose id is already in the destination with other content is a conflict: it is
refused, named in one line, and the rest is merged.

Merged rows get new ``seq`` numbers in the destination (its own sequence, in the source's order),
so ``as_of`` on the destination sees them from the moment of the merge on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StoreError
from . import RunLog
from .writer import _write_items

#: tables merged, in an order where a row's references come before it; the column that identifies
#: a row (None: the whole row does)
TABLES: list[tuple[str, str | None]] = [
    ("experiments", "id"), ("prompt_versions", "version"), ("runs", "id"), ("grades", "id"), ("events", None),
    ("batches", None), ("batch_requests", "custom_id"),
]
#: first records that may differ between two machines and are not a conflict: an experiment
#: resumed on another machine records itself again there; the destination keeps its first record
_FIRST_RECORD_WINS = {"experiments", "prompt_versions", "batches"}
#: columns numbered by each log itself
_LOCAL = {"seq"}
_CHUNK = 500


@dataclass
class Merged:
    """What one source added: new rows per table, rows already there, conflicts refused."""

    source: str
    added: dict[str, int] = field(default_factory=dict)
    present: int = 0
    conflicts: list[str] = field(default_factory=list)

    def line(self) -> str:
        new = ", ".join(f"{n} {t}" for t, n in self.added.items() if n) or "nothing new"
        refused = f"; {len(self.conflicts)} conflicting row(s) refused" if self.conflicts else ""
        return f"{self.source}: {new} ({self.present} row(s) already there){refused}"


def merge(sources: list[str | Path], into: RunLog) -> list[Merged]:
    """Merge each source log into ``into``; one :class:`Merged` per source."""
    out = []
    for src in sources:
        if str(src) == str(into.path) or (not isinstance(into.path, str) and Path(src).resolve() == into.path.resolve()):
            raise StoreError(f"{src}: is the log merged into; name another source")
        if not isinstance(src, str) or "://" not in src:
            if not Path(src).is_file():
                raise StoreError(f"{src}: no such run log file")
        source = RunLog(src)
        try:
            out.append(_merge_one(source, into))
        finally:
            source.close()
    return out


def _merge_one(source: RunLog, dest: RunLog) -> Merged:
    result = Merged(str(source.path))
    for table, key in TABLES:
        dest_cols = set(dest._columns(table))
        cols = [c for c in source._columns(table) if c not in _LOCAL and c in dest_cols]
        added = 0
        for rows in _chunks(source, table, cols):
            new = _new_rows(dest, table, key, cols, rows, result)
            if new:
                with dest._sql(f"merge into the {table} table"):
                    added += _write_items(dest._db, [(table, tuple(cols), r, True) for r in new])
        result.added[table] = added
    return result


def _chunks(source: RunLog, table: str, cols: list[str]) -> Iterator[list[tuple]]:
    order = "seq" if "seq" in source._columns(table) else cols[0]
    with source._sql(f"read the {table} table"):
        cur = source._db.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}")
        while True:
            rows = cur.fetchmany(_CHUNK)
            if not rows:
                return
            yield [tuple(r) for r in rows]


def _new_rows(dest: RunLog, table: str, key: str | None, cols: list[str], rows: list[tuple],
              result: Merged) -> list[tuple]:
    """The rows of this chunk that ``dest`` lacks; conflicts are noted in ``result``."""
    if key is None:
        present = {r for r in rows if _has_row(dest, table, cols, r)}
        result.present += len(present)
        return [r for r in rows if r not in present]
    k = cols.index(key)
    there = _rows_by_key(dest, table, key, cols, [r[k] for r in rows])
    new = []
    for r in rows:
        old = there.get(r[k])
        if old is None:
            new.append(r)
            there[r[k]] = r  # a key twice in one chunk (cannot happen with a unique key) is new once
            continue
        result.present += 1
        if table not in _FIRST_RECORD_WINS:
            differ = [c for c, a, b in zip(cols, r, old) if not _same(a, b)]
            if differ:
                result.conflicts.append(
                    f"{table} row {key}={r[k]!r} from {result.source}: already in {dest.path} with another "
                    f"{', '.join(differ[:3])}{' ...' if len(differ) > 3 else ''}; not merged")
    return new


def _rows_by_key(dest: RunLog, table: str, key: str, cols: list[str], keys: list[Any]) -> dict[Any, tuple]:
    with dest._sql(f"read the {table} table"):
        cur = dest._db.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE {key} IN ({', '.join('?' for _ in keys)})",
                               keys)
        k = cols.index(key)
        return {r[k]: tuple(r) for r in cur.fetchall()}


def _has_row(dest: RunLog, table: str, cols: list[str], row: tuple) -> bool:
    cond = " AND ".join(dest._db.same(c) for c in cols)
    with dest._sql(f"read the {table} table"):
        return dest._db.execute(f"SELECT 1 FROM {table} WHERE {cond} LIMIT 1", list(row)).fetchone() is not None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):  # a server log keeps NUL as U+2400 (lab.store.backend)
        return a.replace("\x00", "\u2400") == b.replace("\x00", "\u2400")
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b
