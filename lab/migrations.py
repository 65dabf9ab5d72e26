"""The run log's schema, grown by small numbered migrations recorded in the database.

An old log is upgraded in place when opened by a newer promptlab: migrations only add tables,
columns and indexes, never drop or rewrite rows. Append new migrations at the end; never edit
one that has shipped.

Migrations are written in SQLite's DDL. ``db`` is a ``sqlite3.Connection`` or one of the run log's
connections (``lab.store.backend``): a PostgreSQL one translates the few type spellings that differ
(``INTEGER PRIMARY KEY AUTOINCREMENT``, ``INTEGER``, ``REAL``) and takes a lock for each migration's
transaction, so two processes opening a new log at once migrate it once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Migration = Callable[[Any], None]


def m001_initial(db: Any) -> None:
    db.execute(
        """CREATE TABLE experiments (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            name TEXT,
            created_at TEXT NOT NULL,
            prompt_path TEXT,
            inputs_path TEXT,
            models TEXT,          -- JSON list
            variants TEXT,        -- JSON list
            repeats INTEGER,
            params TEXT,          -- JSON: everything the experiment was asked to do (no secrets)
            lab_version TEXT
        )"""
    )
    db.execute(
        """CREATE TABLE runs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            experiment_id TEXT NOT NULL,
            prompt_path TEXT,
            task TEXT,
            variant TEXT,
            prompt_version TEXT,
            input_id TEXT,
            input_tags TEXT,      -- JSON list
            input_vars TEXT,      -- JSON object
            expected TEXT,        -- JSON value
            model TEXT NOT NULL,
            params TEXT,          -- JSON object, as sent
            seed INTEGER,
            repeat INTEGER NOT NULL DEFAULT 0,
            messages TEXT NOT NULL, -- JSON list of {role, content}: exactly what the model saw
            output TEXT,
            outcome TEXT NOT NULL, -- answered | escaped | error
            error TEXT,
            input_tokens INTEGER,
            output_tokens INTEGER,
            latency_ms REAL,
            cost_usd REAL,
            started_at TEXT,
            finished_at TEXT NOT NULL,
            cache_key TEXT,
            replayed_from TEXT,
            lab_version TEXT
        )"""
    )
    db.execute("CREATE INDEX runs_experiment ON runs(experiment_id)")
    db.execute("CREATE INDEX runs_cache_key ON runs(cache_key)")


def m002_grades(db: Any) -> None:
    """Grades and human ratings are rows of their own that point at the run they judge."""
    db.execute(
        """CREATE TABLE grades (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            run_id TEXT NOT NULL,
            experiment_id TEXT,
            grader TEXT NOT NULL,   -- e.g. expected:normalized, regex, judge:<model>, human:<name>
            score REAL,
            passed INTEGER,         -- 1, 0 or NULL when the grader does not pass/fail
            label TEXT,
            detail TEXT,            -- JSON
            created_at TEXT NOT NULL,
            lab_version TEXT
        )"""
    )
    db.execute("CREATE INDEX grades_run ON grades(run_id)")
    db.execute("CREATE INDEX grades_experiment ON grades(experiment_id)")


def m003_conversations(db: Any) -> None:
    """Conversation trees (reset, follow-ups, retries of a turn) and critique rounds."""
    for col, decl in [
        ("conversation_id", "TEXT"),
        ("turn", "INTEGER NOT NULL DEFAULT 0"),
        ("attempt", "INTEGER NOT NULL DEFAULT 0"),
        ("round", "INTEGER NOT NULL DEFAULT 0"),
        ("parent_id", "TEXT"),
        ("role", "TEXT NOT NULL DEFAULT 'answer'"),  # answer | critique | revision | judge | ...
    ]:
        db.execute(f"ALTER TABLE runs ADD COLUMN {col} {decl}")
    db.execute("CREATE INDEX runs_conversation ON runs(conversation_id)")
    db.execute("CREATE INDEX runs_resume ON runs(experiment_id, variant, input_id, model, repeat)")


def m004_events_and_versions(db: Any) -> None:
    """Experiment events (started, stopped by budget, finished) and every prompt version seen."""
    db.execute(
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            experiment_id TEXT NOT NULL,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT             -- JSON
        )"""
    )
    db.execute("CREATE INDEX events_experiment ON events(experiment_id)")
    db.execute(
        """CREATE TABLE prompt_versions (
            version TEXT PRIMARY KEY,
            prompt_path TEXT,
            task TEXT,
            variant TEXT,
            templates TEXT,         -- JSON list of [role, template]
            params TEXT,            -- JSON
            escape_hatch TEXT,
            first_seen TEXT NOT NULL
        )"""
    )


def m005_batches(db: Any) -> None:
    """Provider batches (Anthropic Message Batches, OpenAI Batch) and the calls waiting in them.

    ``batches`` is bookkeeping, not a versioned table: its ``state`` follows the provider's, and
    each change is also an event. ``batch_requests`` keeps every submitted call, fully rendered,
    so a later session can turn results into run rows from the log alone.
    """
    db.execute(
        """CREATE TABLE batches (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            experiment_id TEXT NOT NULL,
            provider TEXT NOT NULL,     -- anthropic | openai
            model TEXT NOT NULL,        -- the lab's model string
            batch_id TEXT NOT NULL,     -- the provider's id
            base_url TEXT,              -- where it was sent, when not the SDK's default
            state TEXT NOT NULL,        -- the provider's own status string
            request_count INTEGER NOT NULL,
            counts TEXT,                -- JSON: the provider's per-outcome counts
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            ingested_at TEXT,           -- set once every result is a run row
            UNIQUE (provider, batch_id)
        )"""
    )
    db.execute("CREATE INDEX batches_experiment ON batches(experiment_id)")
    db.execute(
        """CREATE TABLE batch_requests (
            custom_id TEXT PRIMARY KEY, -- the planned run's id, also the run row's id
            batch_id TEXT NOT NULL,
            experiment_id TEXT NOT NULL,
            call TEXT NOT NULL          -- JSON: the run row as planned, before the answer
        )"""
    )
    db.execute("CREATE INDEX batch_requests_batch ON batch_requests(batch_id)")


def m006_confidence(db: Any) -> None:
    """Per run, the small confidence record from token log-probabilities (JSON; see lab.logprobs);
    NULL when the experiment did not ask for it or the provider returns none."""
    db.execute("ALTER TABLE runs ADD COLUMN confidence TEXT")



def m007_summary_index(db: Any) -> None:
    """An index that holds everything a summary reads (``log.summary``, ``python -m lab show``), so
    summarizing a 100k-row experiment reads the index, not the rows. It replaces ``runs_experiment``,
    which ``runs_resume`` (same first column) already made redundant: still five indexes per row."""
    db.execute("CREATE INDEX runs_summary ON runs(experiment_id, variant, model, outcome, latency_ms,"
               " output_tokens, cost_usd)")
    db.execute("DROP INDEX IF EXISTS runs_experiment")


def m008_finish_reason(db: Any) -> None:
    """Per run, why the answer ended, in the lab's words (``lab.providers.finish_reason``): ``stop``,
    ``length`` (stopped at max tokens), ``content_filter``, ``tool_calls``; NULL when the provider
    did not say, and on every row logged before this column existed."""
    db.execute("ALTER TABLE runs ADD COLUMN finish_reason TEXT")


def m009_findings_index(db: Any) -> None:
    """An index that holds everything the findings read of a run (``lab.findings.RUN_FIELDS``, in log
    order), so ``python -m lab show`` reads a 100k-row experiment from the index instead of rows that
    carry their messages (0.28 s -> 0.15 s to fetch them on SQLite). It costs a writer about 2 us a row."""
    db.execute("CREATE INDEX runs_findings ON runs(experiment_id, seq, variant, input_id, repeat, model, outcome,"
               " role, finish_reason, input_tags, id)")


def m010_one_experiment_index(db: Any) -> None:
    """One index for everything read by experiment: the findings' columns in log order (m009's), then
    what a summary adds (latency, output tokens, cost). It replaces ``runs_findings``, ``runs_summary``
    and ``runs_resume``, which all began with ``experiment_id``: the summary's kept its rows in
    latency order and the resume index in input order, so each new row went into a page in the
    middle of them, while this one grows at its end (``seq`` comes second). The writer's CPU a row
    went from 33 to 20 us on a fresh log; a summary or a resume reads the same index range."""
    db.execute("CREATE INDEX runs_by_experiment ON runs(experiment_id, seq, variant, input_id, repeat, model,"
               " outcome, role, finish_reason, input_tags, id, latency_ms, output_tokens, cost_usd)")
    for name in ("runs_findings", "runs_summary", "runs_resume"):
        db.execute(f"DROP INDEX IF EXISTS {name}")


MIGRATIONS: list[Migration] = [m001_initial, m002_grades, m003_conversations, m004_events_and_versions,
                               m005_batches, m006_confidence, m007_summary_index, m008_finish_reason,
                               m009_findings_index, m010_one_experiment_index]


def _server(db: Any) -> bool:
    return getattr(db, "dialect", "sqlite") != "sqlite"


def _begin(db: Any) -> None:
    begin = getattr(db, "begin_write", None)
    if begin is not None:
        begin()
    else:
        db.execute("BEGIN IMMEDIATE")


def applied(db: Any) -> list[str]:
    create = "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    if _server(db):  # two processes creating it at once collide on a server: one at a time
        _begin(db)
        db.execute(create)
        db.execute("COMMIT")
    else:
        db.execute(create)
    order = "applied_at, name" if _server(db) else "rowid"
    return [r[0] for r in db.execute(f"SELECT name FROM _migrations ORDER BY {order}")]


def pending(db: Any) -> list[str]:
    """Names of the migrations this log lacks (read only: a log that cannot be written can still say)."""
    try:
        done = {r[0] for r in db.execute("SELECT name FROM _migrations")}
    except getattr(db, "errors", (sqlite3.OperationalError,)):  # no _migrations table: a new, empty log
        done = set()
    return [m.__name__ for m in MIGRATIONS if m.__name__ not in done]


def migrate(db: Any, upto: str | None = None) -> list[str]:
    """Apply pending migrations in order (each in its own transaction). Returns the names applied."""
    done = set(applied(db))
    ran = []
    for m in MIGRATIONS:
        if m.__name__ not in done:
            _begin(db)
            try:
                # another process may have migrated while we waited for the lock
                if db.execute("SELECT 1 FROM _migrations WHERE name = ?", (m.__name__,)).fetchone() is None:
                    m(db)
                    db.execute(
                        "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                        (m.__name__, datetime.now(UTC).isoformat()),
                    )
                    ran.append(m.__name__)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        if upto is not None and m.__name__ == upto:
            break
    return ran
