"""Reading the log: tables as pandas DataFrames (filtered, ``as_of`` a point in the log, only the
columns asked for), the summary computed by the database, and the lookups the runner, the batch
path and the selection search make without pandas."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from .backend import Connection, LogURL
from .record import _JSON_COLUMNS, _decode_json_column
from .writer import _connect

if TYPE_CHECKING:
    import pandas as pd

#: most distinct values of a column that ``run_codes`` has the database code (a CASE per run compares with each)
_MOST_CODES = 32
#: answered, escaped and error calls of a group (FILTER: SQLite >= 3.30 and PostgreSQL alike)
_COUNT_OUTCOMES = ("count(*) FILTER (WHERE outcome = 'answered'), count(*) FILTER (WHERE outcome = 'escaped'),"
                   " count(*) FILTER (WHERE outcome = 'error')")


class Queries:
    """The reading part of :class:`lab.store.RunLog`."""

    path: Path | LogURL
    busy_timeout_s: float
    _db: Connection
    _lock: threading.Lock
    _errors: tuple[type[BaseException], ...]

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
               columns: list[str] | None = None) -> pd.DataFrame:
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
             as_of: int | str | datetime | None = None, columns: list[str] | None = None) -> pd.DataFrame:
        """Run rows (one per model call) as a DataFrame, oldest first, filtered as asked.

        ``columns`` (names of the runs table) reads only those: JSON columns not asked for are
        neither fetched nor parsed, which is most of the cost on a big experiment."""
        where, args = self._runs_where(experiment, variant=variant, model=model, prompt_version=prompt_version,
                                       tag=tag, outcome=outcome, role=role, as_of=as_of)
        return self._query("runs", where, args, columns=None if columns is None else list(columns))

    def run_rows(self, experiment: str, columns: list[str]) -> list[tuple]:
        """One experiment's runs as plain tuples of ``columns``, oldest first, JSON columns decoded:
        what ``python -m lab run`` grades and reads the selection clause from, without pandas."""
        rows = self._experiment_rows("runs", experiment, columns)
        if not rows or not any(c in _JSON_COLUMNS["runs"] for c in columns):
            return rows
        return list(zip(*self._decoded_columns(rows, columns)))

    def run_columns(self, experiment: str, columns: list[str]) -> list[list[Any]]:
        """:meth:`run_rows` as one list per column (what the findings read: ``python -m lab show``).
        Rows with the same JSON text share its decoded value: read them, do not change them."""
        return self._decoded_columns(self._experiment_rows("runs", experiment, columns), columns, shared=True)

    @staticmethod
    def _decoded_columns(rows: list[tuple], columns: list[str], *, shared: bool = False) -> list[list[Any]]:
        cols = [list(c) for c in zip(*rows)] if rows else [[] for _ in columns]
        for i, c in enumerate(columns):
            if c in _JSON_COLUMNS["runs"]:
                cols[i] = _decode_json_column(cols[i], shared=shared)
        return cols

    def run_codes(self, experiment: str, few: list[str], *, many: Sequence[str] = (), plain: Sequence[str] = ()
                  ) -> tuple[list[tuple[Any, list[Any]]], list[tuple[Any, list[Any]]], list[list[Any]]]:
        """One experiment's runs, oldest first: each column of ``few`` and ``many`` as (codes, values),
        a numpy array of one code per run and the column's distinct values (JSON decoded; runs with
        the same value share it: read them, do not change them), and each of ``plain`` as a list.
        What the findings of ``python -m lab show`` read a 100k-row experiment with.

        ``few`` are columns with few distinct values in an experiment (variant, outcome, ...): the
        database codes them, all of a run's codes packed into one integer, where reading them as
        values makes one Python object per run and column. One with more than ``_MOST_CODES``
        distinct values is read as values and coded here, as ``many`` always are."""
        import numpy as np

        from ..stats import first_seen

        self._select("runs", [*few, *many, *plain])  # checks the names
        distinct = dict(zip(few, self._distinct_values(experiment, few)))
        packed = {c: v for c, v in distinct.items() if 1 < len(v) <= _MOST_CODES}
        raw = [*many, *(c for c, v in distinct.items() if len(v) > _MOST_CODES)]
        code, args = _packed_code(packed)
        with self._sql("read the runs table"):
            rows = self._db.execute(f"SELECT {', '.join([*plain, *raw, code] if code else [*plain, *raw]) or 'seq'}"
                                    " FROM runs WHERE experiment_id = ? ORDER BY seq", [*args, experiment]).fetchall()
        got = [list(c) for c in zip(*rows)] if rows else [[] for _ in range(len(plain) + len(raw) + bool(code))]
        out = {c: (np.zeros(len(rows), dtype=np.intp), v) for c, v in distinct.items()}
        out.update(zip(packed, _unpacked(np.array(got[-1] if code else [], dtype=np.int64), list(packed.values()))))
        out.update((c, first_seen(got[len(plain) + i])) for i, c in enumerate(raw))
        out = {c: (codes, _decode_json_column(values, shared=True) if c in _JSON_COLUMNS["runs"] else values)
               for c, (codes, values) in out.items()}
        return [out[c] for c in few], [out[c] for c in many], got[:len(plain)]

    def _distinct_values(self, experiment: str, columns: list[str]) -> list[list[Any]]:
        """Each column's distinct values in one experiment (NULL as None), in one pass."""
        if not columns:
            return []
        with self._sql("read the runs table"):
            found = self._db.execute(self._db.distinct_json(columns, "FROM runs WHERE experiment_id = ?"),
                                     [experiment]).fetchone()
        return [json.loads(text) if text else [] for text in found]

    def grade_rows(self, experiment: str, columns: list[str]) -> list[tuple]:
        """One experiment's grades as plain tuples of ``columns``, oldest first (``detail`` left as JSON text)."""
        return self._experiment_rows("grades", experiment, columns)

    def _experiment_rows(self, table: str, experiment: str, columns: list[str]) -> list[tuple]:
        """One experiment's rows of ``table`` as tuples of ``columns``, oldest first, as stored."""
        sql = self._select(table, columns)
        with self._sql(f"read the {table} table"):
            return self._db.execute(sql, [experiment]).fetchall()

    def _select(self, table: str, columns: list[str]) -> str:
        known = self._columns(table)
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise StoreError(f"columns: {unknown} are not columns of the {table} table; it has {sorted(known)}")
        return f"SELECT {', '.join(columns)} FROM {table} WHERE experiment_id = ? ORDER BY seq"

    def any_expected(self, experiment: str, roles: list[str]) -> bool:
        """Whether some run of ``experiment`` in one of ``roles`` has an expected answer."""
        marks = ", ".join("?" for _ in roles)
        with self._sql("look for expected answers"):
            row = self._db.execute(f"SELECT 1 FROM runs WHERE experiment_id = ? AND coalesce(role, 'answer') IN ({marks})"
                                   " AND expected IS NOT NULL AND expected <> 'null' LIMIT 1",
                                   [experiment, *roles]).fetchone()
        return row is not None

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

    def summary(self, experiment: str | list[str] | None = None, **filters: Any) -> pd.DataFrame:
        """Per variant (and model, when there are several; in order of first appearance): n, answered,
        escaped, errors, mean latency, output tokens and cost (NaN when any call's price is unknown,
        rather than a partial sum). The lab's one summary: computed by the database (an index holds
        what it reads), read here into a DataFrame. Filters as :meth:`runs`."""
        import pandas as pd

        by, cols, rows = self.summary_rows(experiment, **filters)
        df = pd.DataFrame.from_records(rows, columns=by + cols)
        for col in cols[1:]:  # a group of NULLs comes back as None: NaN, as pandas would say
            df[col] = pd.to_numeric(df[col])
        df["mean_latency_ms"] = df["mean_latency_ms"].astype(float)
        df["cost_usd"] = df["cost_usd"].astype(float)
        return df.set_index(by if len(by) > 1 else by[0])

    def grades(self, experiment: str | None = None, *, run_id: str | None = None, grader: str | None = None,
               as_of: int | str | datetime | None = None) -> pd.DataFrame:
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

    def experiments(self) -> pd.DataFrame:
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

    def events(self, experiment: str | None = None) -> pd.DataFrame:
        where, args = ([], []) if experiment is None else (["experiment_id = ?"], [experiment])
        return self._query("events", where, args)

    def prompt_versions(self, prompt_path: str | None = None) -> pd.DataFrame:
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
                    "SELECT cache_key, id, output, outcome, seed, input_tokens, output_tokens, latency_ms, cost_usd, confidence, "
                    "finish_reason "
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

    def batches(self, experiment: str | None = None) -> pd.DataFrame:
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

    def event_details(self, experiment_id: str, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """``(at, detail)`` of each event of this kind, oldest first, without pandas (a run reads it)."""
        with self._sql("read the events table"):
            rows = self._db.execute("SELECT at, detail FROM events WHERE experiment_id = ? AND kind = ? ORDER BY seq",
                                    (experiment_id, kind)).fetchall()
        return [(at, json.loads(d) if d else {}) for at, d in rows]

    def versions_tried(self, task: str, input_ids: list[str], *, until: str | None = None) -> pd.DataFrame:
        """Per variant and prompt version of ``task``: on how many of ``input_ids`` it was run, its
        calls, and its first and last call (``until``: only versions first run by then), oldest first."""
        import pandas as pd

        return pd.DataFrame.from_records(self.versions_tried_rows(task, input_ids, until=until),
                                         columns=["variant", "prompt_version", "inputs", "calls", "first_at", "last_at"])

    def versions_tried_rows(self, task: str, input_ids: list[str], *, until: str | None = None) -> list[tuple]:
        """:meth:`versions_tried` as plain tuples (variant, prompt_version, inputs, calls, first_at, last_at)."""
        sql = ("SELECT variant, prompt_version, count(DISTINCT input_id), count(*), min(finished_at),"
               " max(finished_at) FROM runs WHERE task = ? AND coalesce(role, 'answer') = 'answer'"
               f" AND input_id IN ({self._db.json_elements}) GROUP BY variant, prompt_version")
        sql += " HAVING min(finished_at) <= ?" if until is not None else ""
        args: list[Any] = [task, json.dumps(list(input_ids))] + ([until] if until is not None else [])
        with self._sql("count the versions tried on these inputs"):
            return self._db.execute(sql + " ORDER BY min(seq)", args).fetchall()


def _packed_code(columns: dict[str, list[Any]]) -> tuple[str, list[Any]]:
    """An SQL expression of each run's codes for ``columns`` (name -> its distinct values) packed into one
    integer (the first column's code + its count x the second's + ...), and its parameters."""
    terms, args, stride = [], [], 1
    for column, values in columns.items():
        named = [(i, v) for i, v in enumerate(values) if v is not None]
        last = values.index(None) if None in values else named.pop()[0]  # no WHEN matched: NULL, or the last value
        terms.append(f"{stride} * (CASE {column} {' '.join(f'WHEN ? THEN {i}' for i, _ in named)} ELSE {last} END)")
        args += [v for _, v in named]
        stride *= len(values)
    return " + ".join(terms), args


def _unpacked(code: Any, values: list[list[Any]]) -> list[tuple[Any, list[Any]]]:
    """:func:`_packed_code`'s integers back into each column's (codes, values)."""
    out, stride = [], 1
    for v in values:
        out.append((code // stride % len(v), v))
        stride *= len(v)
    return out
