"""The run record and the log's rows as values: ids, timestamps, the JSON columns, and text made
storable before it is written (lone surrogates escaped, integers past 64 bits kept as text)."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..text import is_storable, storable_value
from .backend import LogURL, check_url, is_url

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
    return datetime.now(UTC).isoformat(timespec="microseconds")


_random: list[int] = []  # 62-bit random tails, drawn 256 at a time
_ids_lock = threading.Lock()
if hasattr(os, "register_at_fork"):  # a forked child must not hand out its parent's random tails
    os.register_at_fork(after_in_child=_random.clear)
_TAIL = (1 << 62) - 1
_last_head = 0  # the time part of the last id made here (ms and 12 bits of fraction)


def new_id() -> str:
    """A new id: a version-7 UUID (RFC 9562) in hex: the time in milliseconds, then the fraction of
    the millisecond in 12 bits, then 62 random bits. Ids made later sort later (strictly, within a
    process), so the log's unique index on ids and its conversation index grow at their right edge
    instead of taking each new row into a random page: the writer's CPU a row on a 100k-row log went
    from 79 to 46 us. The random tails are drawn 256 at a time from ``os.urandom`` (one system call
    an id cost more than the rest of the id). Ids in earlier logs (version 4, random) stay as they
    are. A short form for people is the end of an id (``id[-8:]``, random), never its start (the time)."""
    ms, frac = divmod(time.time_ns(), 1_000_000)
    global _last_head
    with _ids_lock:
        head = max((ms << 12) | (frac * 4096 // 1_000_000), _last_head + 1)  # strictly increasing in a process
        _last_head = head
        if not _random:
            raw = os.urandom(8 * 256)
            _random.extend(int.from_bytes(raw[i:i + 8], "big") & _TAIL for i in range(0, len(raw), 8))
        tail = _random.pop()
    return f"{((head >> 12) << 80) | (0x7 << 76) | ((head & 0xFFF) << 64) | (0b10 << 62) | tail:032x}"


def default_log_path() -> Path | LogURL:
    """``$PROMPTLAB_LOG`` (a path, or a ``postgresql://`` URL) or ``results/promptlab.db``."""
    return log_target(os.environ.get("PROMPTLAB_LOG") or DEFAULT_LOG)


def log_target(target: str | os.PathLike[str]) -> Path | LogURL:
    """A log's name as given: a ``postgresql://`` URL stays a URL (never a file path)."""
    return check_url(os.fspath(target)) if is_url(target) else Path(target)


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


def _decode_json_column(values: Iterable[Any], *, shared: bool = False) -> list[Any]:
    """JSON texts to values, each distinct text parsed once (tags and expected answers repeat across a
    big experiment's rows). Each row gets its own list or dict, so that changing one cell changes no
    other; only flat ones are cached (copied per row), nested ones are parsed per row. ``shared``:
    rows with the same text share one value (for readers that do not change them)."""
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
        out.append(hit.copy() if not shared and hit.__class__ in (list, dict) else hit)
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
    finish_reason: str | None = None  # why the answer ended: stop, length (at max tokens), ...; None: not said


Item = tuple[str, tuple[str, ...], tuple, bool]  # table, columns, values (JSON already encoded), or-ignore


_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(RunRecord))


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
