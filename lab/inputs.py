"""Input sets: the rows a prompt runs over, from YAML, CSV or JSONL.

Each row has an ``id``, template variables, ``tags`` (``normal``, ``edge``, ``unanswerable``,
...) and optionally the ``expected`` answer. In YAML and JSONL every key other than ``id``,
``tags``, ``expected`` and ``notes`` is a variable (or put them under ``vars:``). In CSV, tags
are separated by ``;`` or ``|``. A row without tags is tagged ``normal``.

    - id: short-positive
      text: "Love it, works perfectly."
      expected: positive
    - id: not-a-review
      tags: [edge, unanswerable]
      text: "Preheat the oven to 200C and grease a tin."
      expected: UNSURE
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._yaml import MAX_DEPTH, YamlSyntaxError, line_of, load_with_lines, read_text
from .errors import InputSetError
from .names import canonical_id, free_id_problem, terminal_text
from .text import depth_of, unstorable

RESERVED = {"id", "tags", "expected", "notes", "vars"}


@dataclass(frozen=True)
class InputRow:
    id: str
    vars: dict[str, Any]
    tags: tuple[str, ...] = ("normal",)
    expected: Any = None
    line: int | None = None  # where the row starts in its file, for error messages


@dataclass(frozen=True)
class InputSet:
    path: str
    rows: tuple[InputRow, ...]
    name: str = field(default="")

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def tagged(self, *tags: str) -> InputSet:
        """Only rows carrying at least one of ``tags``."""
        return InputSet(self.path, tuple(r for r in self.rows if set(r.tags) & set(tags)), self.name)

    def check_text_values(self, text_only: dict[str, frozenset[str]]) -> None:
        """Raise if a variable that a variant prints as text holds null, true/false, a list or a mapping
        (YAML's ``null``, ``yes`` and ``{...}`` would reach the model as ``None``, ``True`` or a Python
        repr). ``text_only``: variant -> the names its templates only print."""
        for row in self.rows:
            for variant, names in text_only.items():
                bad = [n for n in sorted(names & set(row.vars)) if _not_text(row.vars[n])]
                if bad:
                    raise InputSetError(self._not_text_message(row, bad[0], variant))

    def _not_text_message(self, row: InputRow, name: str, variant: str) -> str:
        where = f"line {row.line}, " if row.line else ""
        return (f"{self.path}: {where}row {terminal_text(row.id)!r}, field {name!r} is {_kind_of(row.vars[name])}, "
                f"and variant {variant!r} prints it as text; write it as text (in quotes in YAML), or use it in "
                "the template explicitly (e.g. {% if " + name + " is not none %}{{ " + name + " }}{% endif %})")

    def check_variables(self, needed: dict[str, frozenset[str]]) -> None:
        """Raise if a row lacks a variable that a variant's templates use. ``needed``: variant -> names."""
        problems = []
        for row in self.rows:
            for variant, names in needed.items():
                missing = sorted(names - set(row.vars))
                if missing:
                    where = f"line {row.line}, " if row.line else ""
                    problems.append(f"  {where}row {row.id!r} lacks {missing}, used by variant {variant!r}")
        if problems:
            shown = problems[:20] + ([f"  ... and {len(problems) - 20} more"] if len(problems) > 20 else [])
            raise InputSetError(f"{self.path}: rows are missing template variables:\n" + "\n".join(shown))


def _not_text(value: Any) -> bool:
    return value is None or isinstance(value, (bool, list, dict))


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    return "a list" if isinstance(value, list) else "a mapping"


def _tags(value: Any, where: str) -> tuple[str, ...]:
    if value is None or value == "":
        return ("normal",)
    if isinstance(value, str):
        parts = [t.strip() for t in value.replace("|", ";").replace(",", ";").split(";")]
    elif isinstance(value, (list, tuple)):
        parts = [str(t).strip() for t in value]
    else:
        raise InputSetError(f"{where}: tags must be a list of strings or a ';'-separated string, got {value!r}")
    return tuple(t for t in parts if t) or ("normal",)


def _check_value(name: str, value: Any, where: str) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise InputSetError(f"{where}: variable {name!r} is {value!r}; use a string or leave the row out")
    problem = unstorable(value)
    if problem:
        raise InputSetError(f"{where}: {name!r} {problem}; fix the file's text (save it as UTF-8)")
    if depth_of(value, MAX_DEPTH) > MAX_DEPTH:
        raise InputSetError(f"{where}: {name!r} nests lists or mappings more than {MAX_DEPTH} deep; flatten it")
    return value


def _row_id(raw: dict, where: str) -> str:
    """The row's id as ids are compared (NFC, trimmed); refused when it hides or disguises characters."""
    if "id" not in raw or raw["id"] is None or str(raw["id"]).strip() == "":
        raise InputSetError(f"{where}: row has no 'id' (every row needs a unique id)")
    rid = raw["id"]
    if not isinstance(rid, (str, int)) or isinstance(rid, bool):
        raise InputSetError(f"{where}: 'id' must be a string or integer, got {terminal_text(repr(rid))[:200]}")
    problem = free_id_problem(str(rid).strip())
    if problem:
        raise InputSetError(f"{where}: id {terminal_text(ascii(str(rid)))[:200]} {problem}")
    return canonical_id(str(rid))


def _row(raw: Any, where: str, line: int | None) -> InputRow:
    if not isinstance(raw, dict):
        raise InputSetError(f"{where}: each row must be a mapping with an 'id', got {type(raw).__name__}")
    rid = _row_id(raw, where)
    variables = dict(raw.get("vars") or {})
    if "vars" in raw and not isinstance(raw["vars"], dict):
        raise InputSetError(f"{where}: 'vars' must be a mapping of variable names to values")
    variables.update({k: v for k, v in raw.items() if k not in RESERVED})
    for k, v in variables.items():
        if not isinstance(k, str) or not k.isidentifier():
            raise InputSetError(f"{where}: variable name {k!r} is not a valid identifier")
        _check_value(k, v, where)
    for k in ("tags", "expected"):
        _check_value(k, raw.get(k), where)
    return InputRow(id=rid, vars=variables, tags=_tags(raw.get("tags"), where), expected=raw.get("expected"), line=line)


def _from_yaml(path: Path, text: str) -> list[InputRow]:
    try:
        data, node = load_with_lines(text)
    except YamlSyntaxError as exc:
        raise InputSetError(f"{path} line {exc.line}: {exc}") from None
    loc: tuple[Any, ...] = ()
    if isinstance(data, dict) and "inputs" in data:
        data, loc = data["inputs"], ("inputs",)
    if data is None:
        data = []
    if not isinstance(data, list):
        raise InputSetError(f"{path}: expected a list of rows (or a mapping with 'inputs:'), got {type(data).__name__}")
    rows = []
    for i, raw in enumerate(data):
        line = line_of(node, (*loc, i))
        rows.append(_row(raw, f"{path} line {line}, row {i + 1}", line))
    return rows


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise KeyError(k)
        out[k] = v
    return out


def _from_jsonl(path: Path, text: str) -> list[InputRow]:
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        # refused before parsing: json recurses once a level, and at the interpreter's recursion
        # limit anything can fail (a finalizer the garbage collector runs there, say); rows that nest
        # less are parsed and refused with the column that nests too deep
        if _json_depth(line) > _PARSE_DEPTH:
            raise InputSetError(f"{path} line {n}: the JSON nests more than {MAX_DEPTH} deep; flatten it")
        try:
            raw = json.loads(line, object_pairs_hook=_no_repeated_keys)
        except json.JSONDecodeError as exc:
            raise InputSetError(f"{path} line {n}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        except KeyError as exc:  # from _no_repeated_keys
            raise InputSetError(f"{path} line {n}: the key {terminal_text(exc.args[0])!r} appears twice in the row; "
                                "keep one") from None
        except RecursionError:
            raise InputSetError(f"{path} line {n}: the JSON nests more than {MAX_DEPTH} deep; flatten it") from None
        rows.append(_row(raw, f"{path} line {n}", n))
    return rows


def _from_csv(path: Path, text: str) -> list[InputRow]:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
        header = reader.fieldnames
        if not header:
            return []
        if None in header or any(h is None or h.strip() == "" for h in header):
            raise InputSetError(f"{path} line 1: the header has an empty column name")
        if len(set(header)) != len(header):
            raise InputSetError(f"{path} line 1: the header repeats a column name: {header}")
        rows = []
        for raw in reader:
            line = reader.line_num
            if None in raw:
                raise InputSetError(f"{path} line {line}: row has more fields than the header ({len(header)})")
            if any(v is None for v in raw.values()):
                raise InputSetError(f"{path} line {line}: row has fewer fields than the header ({len(header)})")
            clean = {k.strip(): v for k, v in raw.items()}
            if clean.get("expected") == "":
                clean["expected"] = None
            rows.append(_row(clean, f"{path} line {line}", line))
        return rows
    except csv.Error as exc:
        raise InputSetError(f"{path} line {reader.line_num}: malformed CSV ({exc})") from None


def rows_from_records(records: Iterable[dict[str, Any]], name: str = "<inline>") -> InputSet:
    """An input set from Python dicts (for notebooks); same rules as files."""
    rows = [_row(dict(r), f"{name} row {i + 1}", None) for i, r in enumerate(records)]
    _check_unique(name, rows)
    if not rows:
        raise InputSetError(f"{name}: the input set is empty")
    return InputSet(name, tuple(rows), name)


def _check_unique(path: str | Path, rows: list[InputRow]) -> None:
    seen: dict[str, InputRow] = {}
    for row in rows:
        if row.id in seen:
            first = seen[row.id]
            lines = f" (lines {first.line} and {row.line})" if row.line else ""
            raise InputSetError(f"{path}: duplicate input id {terminal_text(row.id)!r}{lines}; ids must be unique "
                                "(they are compared after Unicode NFC normalization, without surrounding spaces)")
        seen[row.id] = row


def load_inputs(path: str | Path) -> InputSet:
    """Load an input set (``.yaml``/``.yml``, ``.csv``, ``.jsonl``). Raises :class:`InputSetError`."""
    path = Path(path)
    text = read_text(path, "input set", InputSetError)
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        rows = _from_yaml(path, text)
    elif suffix == ".csv":
        rows = _from_csv(path, text)
    elif suffix in (".jsonl", ".ndjson"):
        rows = _from_jsonl(path, text)
    else:
        raise InputSetError(f"{path}: unknown input set format {suffix!r}; use .yaml, .csv or .jsonl")
    if not rows:
        raise InputSetError(f"{path}: the input set is empty; add at least one row with an 'id'")
    _check_unique(path, rows)
    return InputSet(str(path), tuple(rows), path.stem)


_PARSE_DEPTH = 500


def _json_depth(line: str) -> int:
    """How deeply a JSON text's arrays and objects nest (brackets inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in line:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest
