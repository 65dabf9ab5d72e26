"""The run log: every model call is one row, written the moment the call finishes.

The embedded default is one SQLite file (WAL mode, busy timeout), ``results/promptlab.db`` unless
``PROMPTLAB_LOG`` or an explicit path says otherwise. The log is append-only: rows are never
updated; grades and ratings are rows of their own. ``as_of`` re-reads any table exactly as it was
at a point in the log (a ``seq`` number from :meth:`RunLog.version`, or a UTC timestamp).
Several processes may write one log at once; a killed process loses no committed row.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from .version import __version__
from .errors import StoreError
from .migrations import migrate
from .names import folder_value
from .secrets import redact, redact_value

DEFAULT_LOG = Path("results") / "promptlab.db"

_JSON_COLUMNS = {
    "runs": ["input_tags", "input_vars", "expected", "params", "messages"],
    "experiments": ["models", "variants", "params"],
    "grades": ["detail"],
    "events": ["detail"],
    "prompt_versions": ["templates", "params"],
    "batches": ["counts"],
}


_VERSIONED = ("runs", "grades")
_NEXT_SEQ = "SELECT 1 + max(coalesce((SELECT max(seq) FROM runs), 0), coalesce((SELECT max(seq) FROM grades), 0))"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def new_id() -> str:
    return uuid.uuid4().hex


def default_log_path() -> Path:
    return Path(os.environ.get("PROMPTLAB_LOG") or DEFAULT_LOG)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


@dataclass
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


class RunLog:
    """A run log on disk. Reads return pandas DataFrames; writes commit one row at a time."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_log_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 60000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")  # in WAL: durable against a killed process
            migrate(self._db)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open the run log ({exc}); is it a promptlab log?") from None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RunLog({str(self.path)!r})"

    def close(self) -> None:
        self._db.close()

    # ---- writing -------------------------------------------------------------------------

    def _insert(self, table: str, row: dict[str, Any]) -> int:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        values = [
            _dumps(v) if k in _JSON_COLUMNS.get(table, ()) else v for k, v in row.items()
        ]
        if table in _VERSIONED:
            # runs and grades share one sequence, so one number (the log's version) orders both
            cols += ", seq"
            marks += f", ({_NEXT_SEQ})"
        with self._lock:
            cur = self._db.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", values)
            return int(cur.lastrowid)

    @staticmethod
    def _run_row(rec: RunRecord) -> dict[str, Any]:
        row = dict(rec.__dict__)
        row["id"] = row["id"] or new_id()
        row["finished_at"] = row["finished_at"] or now()
        row["output"] = redact(row["output"]) if row["output"] else row["output"]
        row["error"] = redact(row["error"]) if row["error"] else row["error"]
        for col in ("messages", "input_vars", "expected"):  # a key pasted into an input by mistake
            row[col] = redact_value(row[col])
        row["lab_version"] = __version__
        return row

    def add_run(self, rec: RunRecord) -> str:
        """Append one finished call; commits immediately. Returns the run id."""
        row = self._run_row(rec)
        self._insert("runs", row)
        return row["id"]

    def add_runs(self, recs: list[RunRecord]) -> list[str]:
        """Append several rows in one transaction (all or none). For rows that cost nothing to
        redo, such as replays from the log: one commit instead of one per row."""
        rows = [self._run_row(r) for r in recs]
        if not rows:
            return []
        cols = list(rows[0])
        json_cols = set(_JSON_COLUMNS["runs"])
        values = [[_dumps(row[c]) if c in json_cols else row[c] for c in cols] for row in rows]
        sql = f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(sql, values)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return [row["id"] for row in rows]

    def add_experiment(self, id: str, *, name: str | None, prompt_path: str | None, inputs_path: str | None,
                       models: list[str], variants: list[str], repeats: int, params: dict[str, Any]) -> None:
        """Record an experiment once; a resumed experiment keeps its first record."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO experiments (id, name, created_at, prompt_path, inputs_path, models, variants,"
                " repeats, params, lab_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (id, name, now(), prompt_path, inputs_path, _dumps(models), _dumps(variants), repeats,
                 _dumps(params), __version__),
            )

    def add_event(self, experiment_id: str, kind: str, **detail: Any) -> None:
        self._insert("events", {"experiment_id": experiment_id, "at": now(), "kind": kind, "detail": detail})

    def add_prompt_version(self, version: str, *, prompt_path: str, task: str, variant: str,
                           templates: Iterable[tuple[str, str]], params: dict[str, Any], escape_hatch: str | None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO prompt_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (version, prompt_path, task, variant, _dumps([list(t) for t in templates]), _dumps(params),
                 escape_hatch, now()),
            )

    def add_grade(self, run_id: str, grader: str, *, score: float | None = None, passed: bool | None = None,
                  label: str | None = None, detail: dict[str, Any] | None = None,
                  experiment_id: str | None = None) -> str:
        """Append a grade (or a human rating) for a run. Regrading adds rows; it never rewrites."""
        gid = new_id()
        self._insert("grades", {
            "id": gid, "run_id": run_id, "experiment_id": experiment_id, "grader": grader,
            "score": score, "passed": None if passed is None else int(bool(passed)), "label": label,
            "detail": detail, "created_at": now(), "lab_version": __version__,
        })
        return gid

    # ---- reading -------------------------------------------------------------------------

    def version(self) -> int:
        """The log's current point: pass it as ``as_of`` later to re-read tables exactly as now."""
        with self._lock:
            row = self._db.execute(_NEXT_SEQ).fetchone()
        return int(row[0]) - 1

    def _as_of_clause(self, as_of: int | str | datetime | None, ts_col: str) -> tuple[str, list[Any]]:
        if as_of is None:
            return "", []
        if isinstance(as_of, bool):
            raise ValueError("as_of must be a log version (int) or a timestamp")
        if isinstance(as_of, int):
            return "seq <= ?", [as_of]
        ts = pd.Timestamp(as_of)
        if ts.tzinfo is None:
            ts = ts.tz_localize("UTC")
        return f"{ts_col} <= ?", [ts.tz_convert("UTC").isoformat(timespec="microseconds")]

    def _query(self, table: str, where: list[str], args: list[Any], order: str = "seq") -> pd.DataFrame:
        sql = f"SELECT * FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(f"({w})" for w in where)
        sql += f" ORDER BY {order}"
        with self._lock:
            cur = self._db.execute(sql, args)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        df = pd.DataFrame.from_records(rows, columns=names)
        for col in _JSON_COLUMNS.get(table, ()):
            if col in df:
                df[col] = [json.loads(v) if isinstance(v, str) else None for v in df[col]]  # pandas 3 reads NULL as NaN
        return df

    def runs(self, experiment: str | list[str] | None = None, *, variant: str | None = None,
             model: str | None = None, prompt_version: str | None = None, tag: str | None = None,
             outcome: str | None = None, role: str | None = None,
             as_of: int | str | datetime | None = None) -> pd.DataFrame:
        """Run rows (one per model call) as a DataFrame, oldest first, filtered as asked."""
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
            where.append("EXISTS (SELECT 1 FROM json_each(runs.input_tags) WHERE value = ?)")
            args.append(tag)
        clause, extra = self._as_of_clause(as_of, "finished_at")
        if clause:
            where.append(clause)
            args += extra
        return self._query("runs", where, args)

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
        df = self._query("experiments", [], [])
        with self._lock:
            counts = self._db.execute(
                "SELECT experiment_id, count(*), sum(outcome = 'answered'), sum(outcome = 'escaped'),"
                " sum(outcome = 'error'), sum(cost_usd), max(finished_at) FROM runs GROUP BY experiment_id"
            ).fetchall()
        c = pd.DataFrame(counts, columns=["id", "calls", "answered", "escaped", "errors", "cost_usd", "last_call_at"])
        return df.merge(c, on="id", how="left")

    def events(self, experiment: str | None = None) -> pd.DataFrame:
        where, args = ([], []) if experiment is None else (["experiment_id = ?"], [experiment])
        return self._query("events", where, args)

    def prompt_versions(self, prompt_path: str | None = None) -> pd.DataFrame:
        where, args = ([], []) if prompt_path is None else (["prompt_path = ?"], [prompt_path])
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
            with self._lock:
                cur = self._db.execute(
                    "SELECT cache_key, id, output, outcome, seed, input_tokens, output_tokens, latency_ms, cost_usd "
                    f"FROM runs WHERE cache_key IN ({', '.join('?' for _ in chunk)}) AND outcome != 'error' "
                    "ORDER BY seq", chunk)
                names = [d[0] for d in cur.description]
                for row in cur.fetchall():
                    found[row[0]] = dict(zip(names, row))  # ordered by seq: the latest wins
        return found

    def finished_keys(self, experiment_id: str) -> set[tuple]:
        """(variant, input_id, model, repeat, conversation turn, attempt, round, role) of calls that
        finished without error: what a resumed experiment skips."""
        with self._lock:
            rows = self._db.execute(
                "SELECT variant, input_id, model, repeat, turn, attempt, round, role FROM runs "
                "WHERE experiment_id = ? AND outcome != 'error'",
                (experiment_id,),
            ).fetchall()
        return {tuple(r) for r in rows}

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
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
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
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def update_batch(self, provider: str, batch_id: str, *, state: str, counts: dict[str, Any] | None,
                     ingested: bool = False) -> None:
        """Note a batch's latest state (and, once its results are all run rows, when that happened)."""
        with self._lock:
            self._db.execute(
                "UPDATE batches SET state = ?, counts = ?, updated_at = ?,"
                " ingested_at = CASE WHEN ? THEN coalesce(ingested_at, ?) ELSE ingested_at END"
                " WHERE provider = ? AND batch_id = ?",
                (state, _dumps(counts), now(), int(ingested), now(), provider, batch_id))

    def batches(self, experiment: str | None = None) -> pd.DataFrame:
        """The provider batches submitted (for one experiment), oldest first."""
        where, args = ([], []) if experiment is None else (["experiment_id = ?"], [experiment])
        return self._query("batches", where, args)

    def batch_requests(self, batch_id: str) -> dict[str, dict[str, Any]]:
        """custom id -> the run row as planned, for every call submitted in one batch."""
        with self._lock:
            rows = self._db.execute("SELECT custom_id, call FROM batch_requests WHERE batch_id = ?",
                                    (batch_id,)).fetchall()
        return {cid: json.loads(call) for cid, call in rows}

    def run_ids_present(self, ids: Iterable[str]) -> set[str]:
        """Which of these run ids already have a row in the log."""
        ids = list(ids)
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            with self._lock:
                rows = self._db.execute(
                    f"SELECT id FROM runs WHERE id IN ({', '.join('?' for _ in chunk)})", chunk).fetchall()
            found.update(r[0] for r in rows)
        return found

def log(path: str | Path | None = None) -> RunLog:
    """Open the run log (``results/promptlab.db`` by default, or ``$PROMPTLAB_LOG``)."""
    return RunLog(path)
