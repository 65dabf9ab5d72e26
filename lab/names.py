"""Names that come from files (task, variant, experiment ids): what they may be, and how they are
shown and turned into paths.

A name used as an id or a path component (a prompt file's ``task`` and variant names, an
experiment id) uses letters, digits, ``_``, ``-`` and ``.``, starts with a letter or digit, and is at
most :data:`MAX_NAME` characters (experiment ids: :data:`MAX_ID`). Other names (input ids, grader
names) may be any text; they are data, so every surface escapes them: :func:`html_text` for HTML,
:func:`terminal_text` for a terminal. A path built from a name goes through :func:`path_under`,
which refuses anything that would leave the intended folder.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

MAX_NAME = 64
MAX_ID = 128
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
# controls, and the bidi embeddings, overrides and isolates that reorder what a terminal shows
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]|[\u202a-\u202e\u2066-\u2069]")
RULE = "letters, digits, '_', '-' and '.', starting with a letter or digit"


def name_problem(value: Any, *, limit: int = MAX_NAME) -> str | None:
    """Why ``value`` is not a valid name or id (one phrase), or None when it is."""
    if not isinstance(value, str):
        return f"must be text, got {type(value).__name__}"
    if not _NAME.fullmatch(value) or ".." in value:
        return f"{terminal_text(value)!r} may only use {RULE} (no '..')"
    if len(value) > limit:
        return f"is {len(value)} characters long; the limit is {limit}"
    return None


# Characters that make text look other than it is: bidi controls (U+202A-E, U+2066-9, marks), zero-width and
# other invisible format characters (Unicode category Cf), controls, lone surrogates, private use.
_INVISIBLE_CATEGORIES = {"Cf", "Cc", "Cs", "Co", "Cn"}


def free_id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a free-text id (an input id): it holds a character that hides or
    disguises what it says (a right-to-left override, a zero-width space, a control), or None."""
    for i, ch in enumerate(value):
        if unicodedata.category(ch) in _INVISIBLE_CATEGORIES:
            name = unicodedata.name(ch, "a control or unassigned character")
            return (f"holds U+{ord(ch):04X} ({name}) at character {i + 1}, an invisible or direction-changing "
                    "character that makes ids look alike; remove it")
    return None


def canonical_id(value: str) -> str:
    """A free-text id as ids are compared: Unicode NFC, surrounding white space removed."""
    return unicodedata.normalize("NFC", value).strip()


def check_id(value: Any, what: str, error: type[Exception]) -> str:
    """Return ``value`` if it is a valid experiment id, else raise ``error`` naming ``what``."""
    problem = name_problem(value, limit=MAX_ID)
    if problem:
        raise error(f"{what} {problem}")
    return value


def html_text(value: Any) -> str:
    """``value`` as text safe inside HTML (element content or a quoted attribute): every ``<``, ``>``,
    ``&`` and quote escaped, so model or user text stays inert; ``None`` is the empty text."""
    return html.escape("" if value is None else str(value), quote=True)


def terminal_text(value: Any) -> Any:
    """Control characters (ESC, BEL, ...) made visible as ``\\xNN``, bidi overrides and isolates as
    ``\\uNNNN``; non-text values unchanged."""
    if isinstance(value, str):
        return _CONTROL.sub(_visible, value)
    return value


def _visible(m: re.Match) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def path_under(base: str | Path, *parts: str, what: str = "path", error: type[Exception] = ValueError) -> Path:
    """``base / parts...``, refused unless it stays inside ``base`` (after resolving ``..`` and links)."""
    root = Path(base).resolve()
    target = root.joinpath(*parts).resolve()
    if target != root and root not in target.parents:
        shown = terminal_text("/".join(parts))
        raise error(f"{what} {shown!r} would be written outside {base}; use a plain name ({RULE})")
    return target


#: Longest folder name (bytes) written for a partition value; most file systems allow 255.
MAX_FOLDER_BYTES = 120


def folder_value(value: str) -> str:
    """A partition value short enough for a folder name: kept as is when it fits (percent-encoded, as
    Hive partitioning writes it), else its start plus ``~`` and 12 hex digits of its SHA-256, so
    different long values stay different folders."""
    if len(quote(value, safe="")) <= MAX_FOLDER_BYTES:
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]
    head = ""
    for ch in value:
        if len(quote(head + ch, safe="")) > MAX_FOLDER_BYTES // 2:
            break
        head += ch
    return f"{head}~{digest}"


def experiment_id(name: str) -> str:
    """A new experiment id: ``<name>-<UTC date>-<time>-<4 hex>`` (``sentiment-20260301-101500-3fa2``).
    The one format every experiment, technique and workbench session uses; check it with :func:`check_id`."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{name}-{stamp}-{uuid.uuid4().hex[:4]}"
