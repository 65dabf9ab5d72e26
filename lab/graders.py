"""Graders: small factory functions that turn one run row into a grade (pure functions; no calls, no log).

    g = lab.graders.match(mode="numeric", marker="ANSWER:")
    g({"output": "ANSWER: 42", "expected": 42})     # Grade(score=1.0, passed=True, label="match")
    lab.grade(runs, g)                              # applied to runs and logged: lab.grades

A grader names itself (``match:numeric``, ``regex``, ``json_schema``, ``custom:<name>``,
``escape_hatch``, ``judge:<model>``) and returns a :class:`Grade` (``score``, ``passed``, ``label``,
``detail``) or None when it does not apply (``match`` on a row without ``expected``). The LLM
judge is a grader too, but one that calls a model: everything about it is in :mod:`lab.judges`.
Prompt files name graders in their ``grader:``; :func:`check_grader_spec` checks that when the file loads.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import sys
from collections.abc import Awaitable, Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import GraderError, LabError, ParameterError
from .text import EscapeHatch, normalize, numbers_in

if TYPE_CHECKING:  # prompt files load graders to check their `grader:`; running calls needs no pandas
    import pandas as pd


@dataclass(frozen=True)
class Grade:
    """What a grader says about one run. Any field may be None (e.g. a judge that gives no pass/fail)."""

    score: float | None = None
    passed: bool | None = None
    label: str | None = None
    detail: dict[str, Any] | None = None


RunRow = Mapping[str, Any]  # one row of ``RunLog.runs()``, as a dict


def grade_row(run: RunRow, grader: str, g: Grade) -> dict[str, Any]:
    """``g`` as a row of the log's grades table (``RunLog.add_grades``), pointing at ``run``."""
    score = None if g.score is None or (isinstance(g.score, float) and math.isnan(g.score)) else float(g.score)
    return dict(run_id=run["id"], grader=grader, score=score, passed=g.passed, label=g.label, detail=g.detail,
                experiment_id=run.get("experiment_id"))


@dataclass(frozen=True)
class Grader:
    """A named grading function. Build one with a factory (:func:`match`, :func:`lab.judge`, ...).

    ``fn(run) -> Grade | None`` for graders that only read the run; graders that call a model
    (the judge, :mod:`lab.judges`) set ``afn(run, call) -> Grade | None`` instead, where ``call``
    makes one logged model call.
    """

    name: str
    fn: Callable[[RunRow], Grade | None] | None = None
    afn: Callable[[RunRow, ModelCall], Awaitable[Grade | None]] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __call__(self, run: RunRow) -> Grade | None:
        """Grade one run row (sync graders only; use :func:`grade` for judges)."""
        if self.fn is None:
            raise GraderError(f"grader {self.name!r} calls a model; use lab.grade(runs, grader) to run it")
        return self.fn(run)


ModelCall = Callable[..., Awaitable[Any]]


def _missing(value: Any) -> bool:
    """None, NaN or pandas' NA: a DataFrame row without an expected answer carries one of these."""
    pd = sys.modules.get("pandas")  # a value can only be pandas' NA if pandas is loaded
    if value is None or (pd is not None and value is pd.NA):
        return True
    return isinstance(value, float) and math.isnan(value)


def _alternatives(expected: Any) -> list[Any]:
    if _missing(expected):
        return []
    if isinstance(expected, (list, tuple)):
        return [e for e in expected if not _missing(e)]
    return [expected]


def _after_marker(output: str, marker: str | None) -> str | None:
    if marker is None:
        return output
    idx = output.casefold().rfind(marker.casefold())
    return None if idx < 0 else output[idx + len(marker):]


MatchMode = Literal["exact", "normalized", "numeric"]


MatchLocation = Literal["whole", "start", "end", "anywhere"]


def match(*, mode: MatchMode = "normalized", location: MatchLocation = "whole", marker: str | None = None,
          tolerance: float = 0.0) -> Grader:
    """Compare the output with the input row's ``expected`` (a value, or a list of acceptable ones).

    ``mode``:
      - ``exact``: the strings are equal after stripping surrounding whitespace. ``"Positive"``
        does not match ``"positive"``, and ``"60%"`` does not match ``"60"``.
      - ``normalized``: both sides go through :func:`normalize` (case, punctuation, symbols and
        extra spaces dropped). ``"Positive."`` matches ``"positive"``; ``"60%"`` matches ``"60"``
        because ``%`` is a symbol; but ``"9.90"`` does not match ``"9.9"`` (it is text here), and
        ``"1,000"`` becomes ``"1 000"``, which does not match ``"1000"``. Use ``numeric`` for numbers.
      - ``numeric``: numbers are read from the output and compared with ``expected`` as numbers,
        within ``tolerance`` (absolute). ``"9.90"`` matches ``9.9``; ``"1,000"`` is one thousand
        (``,`` is read as a thousands separator, so the European ``"9,9"`` is 99); ``"60%"`` is
        60, not 0.6; ``"3/4"`` is two numbers, 3 and 4.

    ``location`` says where in the output the answer must be: ``whole`` (the output is the
    answer, nothing else; for ``numeric``: the output holds exactly one number), ``start``,
    ``end`` (``numeric``: the first or last number), or ``anywhere``. ``marker`` (e.g.
    ``"ANSWER:"``) first cuts the output to what follows the marker's last occurrence; an output
    without the marker fails with label ``no marker``.

    Rows without ``expected`` get no grade row.
    """
    if mode not in ("exact", "normalized", "numeric"):
        raise GraderError(f"match: mode must be 'exact', 'normalized' or 'numeric', got {mode!r}")
    if location not in ("whole", "start", "end", "anywhere"):
        raise GraderError(f"match: location must be 'whole', 'start', 'end' or 'anywhere', got {location!r}")
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or tolerance < 0:
        raise GraderError(f"match: tolerance must be a number >= 0, got {tolerance!r}")
    if marker is not None and (not isinstance(marker, str) or not marker):
        raise GraderError(f"match: marker must be a non-empty string, got {marker!r}")

    def text_hit(out: str, exp: str) -> bool:
        if location == "whole":
            return out == exp
        if mode == "normalized":  # compare whole words
            out, exp = f" {out} ", f" {exp} "
        if location == "start":
            return out.startswith(exp) if mode == "normalized" else re.match(rf"{re.escape(exp)}(?!\w)", out) is not None
        if location == "end":
            return out.endswith(exp) if mode == "normalized" else re.search(rf"(?<!\w){re.escape(exp)}$", out) is not None
        return exp in out if mode == "normalized" else re.search(rf"(?<!\w){re.escape(exp)}(?!\w)", out) is not None

    def fn(run: RunRow) -> Grade | None:
        wanted = _alternatives(run.get("expected"))
        if not wanted:
            return None
        output = _after_marker(run.get("output") or "", marker)
        if output is None:
            return Grade(score=0.0, passed=False, label="no marker", detail={"marker": marker})
        if mode == "numeric":
            nums = numbers_in(output)
            targets = []
            for w in wanted:
                got = numbers_in(w) if isinstance(w, str) else [float(w)] if isinstance(w, (int, float)) else []
                if len(got) != 1:
                    raise GraderError(
                        f"match(mode='numeric'): input {run.get('input_id')!r} has expected {w!r}, which is not "
                        "one number; use mode='normalized' for text answers"
                    )
                targets.append(got[0])
            if location == "whole":  # just a number, perhaps with a sign, unit symbol or full stop
                picked = nums if len(nums) == 1 and re.fullmatch(r"[^\w]*[-+−]?[\d.,]+[^\w]*", output.strip()) else []
            elif location == "start":
                picked = nums[:1]
            elif location == "end":
                picked = nums[-1:]
            else:
                picked = nums
            tol = tolerance or 1e-9 * max(1.0, *(abs(t) for t in targets))  # float noise only, by default
            ok = any(abs(p - t) <= tol for p in picked for t in targets)
            return Grade(score=float(ok), passed=ok, label="match" if ok else ("no number" if not nums else "mismatch"),
                         detail={"read": picked, "expected": targets})
        prep = normalize if mode == "normalized" else (lambda s: str(s).strip())
        out = prep(output)
        ok = any(text_hit(out, prep(w)) for w in wanted)
        return Grade(score=float(ok), passed=ok, label="match" if ok else "mismatch")

    return Grader(name=f"match:{mode}", fn=fn, options={"mode": mode, "location": location, "marker": marker,
                                                         "tolerance": tolerance})


DEFAULT_GRADER = "match:default"


DEFAULT_GRADER_NOTE = "graded by normalized match against `expected` (at the start of the output; no grader named)"
#: above this share of unparsed judge grades, a judge's grades are not to be trusted (a warning, a caveat)
UNPARSED_WARN_SHARE = 0.2


def latest_grades(grades: Iterable[tuple], run_ids: Container[Any],
                  grader: str | None = None) -> tuple[str | None, dict[Any, tuple]]:
    """One grader's latest grade per run: the lab's one rule for which grade counts (regrades add
    rows; the newest counts). ``grades``: tuples that start (run_id, grader, ...), oldest first;
    only those of ``run_ids`` are read. ``grader`` names the grader; when None, the one used last
    on these runs. Returns that grader and run id -> its latest grade tuple."""
    mine = [g for g in grades if g[0] in run_ids]
    if grader is None and mine:
        grader = mine[-1][1]
    return grader, {g[0]: g for g in mine if g[1] == grader}


def default_grader() -> Grader:
    """The grader used when inputs have ``expected`` answers and no grader is named: normalized
    match of ``expected`` at the start of the output (``"Positive, clearly."`` passes for
    ``positive``). Named ``match:default`` so every reading can say how it was graded."""
    g = match(mode="normalized", location="start")
    return Grader(name=DEFAULT_GRADER, fn=g.fn, options={**g.options, "default": True})


def graders_or_default(graders: Sequence[Grader], runs: pd.DataFrame | Mapping[str, Sequence[Any]]) -> list[Grader]:
    """``graders``, or the default grader when there are none and some run has an ``expected`` answer."""
    if graders:
        return list(graders)
    if "expected" in runs and any(_alternatives(e) for e in runs["expected"]):
        return [default_grader()]
    return []


RegexMode = Literal["search", "match", "fullmatch"]


def regex(pattern: str, *, mode: RegexMode = "search", ignore_case: bool = False, name: str | None = None) -> Grader:
    """Pass when ``pattern`` is found in the output (``search``), at its start (``match``), or is
    the whole output (``fullmatch``; surrounding whitespace is not stripped, so allow for it).
    ``label`` is the first capture group when there is one, else the matched text."""
    if mode not in ("search", "match", "fullmatch"):
        raise GraderError(f"regex: mode must be 'search', 'match' or 'fullmatch', got {mode!r}")
    try:
        compiled = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except (re.error, TypeError) as exc:
        raise GraderError(f"regex: pattern {pattern!r} does not compile: {exc}") from None

    def fn(run: RunRow) -> Grade:
        m = getattr(compiled, mode)(run.get("output") or "")
        if m is None:
            return Grade(score=0.0, passed=False, label="no match")
        text = m.group(1) if compiled.groups else m.group(0)
        return Grade(score=1.0, passed=True, label=text[:200] if text is not None else None)

    return Grader(name=name or "regex", fn=fn, options={"pattern": pattern, "mode": mode, "ignore_case": ignore_case})


JsonExtract = Literal["whole", "first_object", "code_block"]


def _extract_json(output: str, extract: str) -> Any:
    if extract == "code_block":
        m = re.search(r"```(?:json)?\s*\n?(.*?)```", output, re.DOTALL)
        output = m.group(1) if m else output
        extract = "first_object" if not m else "whole"
    if extract == "whole":
        return json.loads(output)
    dec = json.JSONDecoder()
    for i, ch in enumerate(output):
        if ch in "{[":
            try:
                return dec.raw_decode(output, i)[0]
            except json.JSONDecodeError:
                continue
    raise json.JSONDecodeError("no JSON value found", output, 0)


def json_schema(schema: dict[str, Any] | str | Path, *, extract: JsonExtract = "first_object") -> Grader:
    """Pass when the output holds JSON valid against ``schema`` (a dict, or a path to a JSON file).

    ``extract``: ``whole`` (the output must be JSON and nothing else), ``first_object`` (the first
    ``{...}`` or ``[...]`` that parses, so "Here you go: {...}" passes), or ``code_block`` (inside a
    ```json fence). Labels: ``valid``, ``invalid`` (detail lists the first errors), ``no json``.
    """
    import jsonschema

    if isinstance(schema, (str, Path)):
        try:
            schema = json.loads(Path(schema).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise GraderError(f"json_schema: cannot read schema file {schema}: {exc}") from None
    if not isinstance(schema, dict):
        raise GraderError(f"json_schema: schema must be a dict (or a JSON file path), got {type(schema).__name__}")
    if extract not in ("whole", "first_object", "code_block"):
        raise GraderError(f"json_schema: extract must be 'whole', 'first_object' or 'code_block', got {extract!r}")
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise GraderError(f"json_schema: the schema itself is invalid: {exc.message}") from None
    validator = cls(schema)

    def fn(run: RunRow) -> Grade:
        try:
            value = _extract_json(run.get("output") or "", extract)
        except json.JSONDecodeError:
            return Grade(score=0.0, passed=False, label="no json")
        errors = [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(value)]
        if errors:
            return Grade(score=0.0, passed=False, label="invalid", detail={"errors": errors[:5]})
        return Grade(score=1.0, passed=True, label="valid")

    return Grader(name="json_schema", fn=fn, options={"extract": extract})


def custom(fn: Callable[..., Any], *, name: str | None = None) -> Grader:
    """Wrap a Python function as a grader. ``fn(output)`` or ``fn(output, run)`` may return a
    bool (passed), a number (score), a string (label), a :class:`Grade`, or None (no grade row)."""
    if not callable(fn):
        raise GraderError(f"custom: expected a function, got {type(fn).__name__}")
    try:
        n_params = len([p for p in inspect.signature(fn).parameters.values()
                        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])
    except (TypeError, ValueError):
        n_params = 1
    label = name or getattr(fn, "__name__", "function")

    def wrapped(run: RunRow) -> Grade | None:
        out = fn(run.get("output") or "", run) if n_params >= 2 else fn(run.get("output") or "")
        if out is None or isinstance(out, Grade):
            return out
        if isinstance(out, bool):
            return Grade(score=float(out), passed=out)
        if isinstance(out, (int, float)):
            return Grade(score=float(out))
        if isinstance(out, str):
            return Grade(label=out)
        raise GraderError(f"custom grader {label!r} returned {type(out).__name__}; return bool, number, str, Grade or None")

    return Grader(name=f"custom:{label}", fn=wrapped)


def escape_hatch(text: str | None = None, *, match: Literal["word", "start", "exact"] = "word") -> Grader:
    """Detect the declared way out, and say whether taking it was right for the input.

    Label ``escaped`` or ``answered``; score 1 when escaped. ``passed`` is True when the choice
    fits the input: escaped on an input tagged ``unanswerable``, answered on any other (so a
    failure on an answerable input is over-abstention). Without ``text``, the run's own
    ``outcome`` (set from the prompt file's ``escape_hatch``) decides.
    """
    hatch = EscapeHatch(text=text, match=match) if text is not None else None
    if match not in ("word", "start", "exact"):
        raise GraderError(f"escape_hatch: match must be 'word', 'start' or 'exact', got {match!r}")

    def fn(run: RunRow) -> Grade:
        escaped = hatch.detect(run.get("output")) if hatch else run.get("outcome") == "escaped"
        unanswerable = "unanswerable" in (run.get("input_tags") or [])
        return Grade(score=float(escaped), passed=escaped == unanswerable, label="escaped" if escaped else "answered",
                     detail={"unanswerable": unanswerable})

    return Grader(name="escape_hatch", fn=fn, options={"text": text, "match": match})


_FACTORIES: dict[str, Callable[..., Grader]] = {
    "match": match, "regex": regex, "json_schema": json_schema, "escape_hatch": escape_hatch,
}

# A prompt file's `{kind: judge, ...}`: its fields and their types. The judge calls a model, so it is
# built in lab.judges (which sits above the runner); prompts load here, below it, and check this much
# of a judge spec when the file loads. lab.judges checks the values before any call;
# tests/test_grading.py holds this table to lab.judges.judge's signature.
JUDGE_SPEC_FIELDS: dict[str, type | tuple[type, ...]] = {
    "rubric": str, "model": str, "repeats": int, "scale": str, "pass_at": (int, float), "max_tokens": int, "seed": int,
}

SPEC_KINDS = (*_FACTORIES, "judge")


def _check_judge_spec(options: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(options) - set(JUDGE_SPEC_FIELDS))
    if unknown:
        raise GraderError(f"{where}: judge has no option {unknown[0]!r}; judge takes {list(JUDGE_SPEC_FIELDS)}")
    if "rubric" not in options:
        raise GraderError(f"{where}: judge needs a rubric (what a good answer does)")
    for name, value in options.items():
        wanted = JUDGE_SPEC_FIELDS[name]
        if isinstance(value, bool) or not isinstance(value, wanted):
            kinds = " or ".join(t.__name__ for t in (wanted if isinstance(wanted, tuple) else (wanted,)))
            raise GraderError(f"{where}: judge's {name} must be {kinds}, got {value!r}")


def check_grader_spec(spec: Any, where: str = "grader") -> None:
    """Check a prompt file's ``grader:`` mapping, e.g. ``{kind: match, mode: numeric, marker: "ANSWER:"}``
    or ``{kind: judge, rubric: ..., repeats: 2}``, raising :class:`GraderError` that starts with ``where``.

    Graders of this module are built, so every option is checked; a judge's fields and their types
    are checked here, its values (and its model) when :func:`lab.judges.judge_from_spec` builds it."""
    if not isinstance(spec, Mapping) or "kind" not in spec:
        raise GraderError(f"{where}: expected a mapping with 'kind' (one of {sorted(SPEC_KINDS)})")
    if spec["kind"] == "judge":
        _check_judge_spec({k: v for k, v in spec.items() if k != "kind"}, where)
    else:
        grader_from_spec(spec, where)


def grader_from_spec(spec: Mapping[str, Any], where: str = "grader") -> Grader:
    """Build a grader of this module from a prompt file's ``grader:`` mapping, e.g.
    ``{kind: match, mode: numeric, marker: "ANSWER:"}``. A ``{kind: judge, ...}`` spec is built by
    :func:`lab.judges.judge_from_spec` (a judge calls a model)."""
    if not isinstance(spec, Mapping) or "kind" not in spec:
        raise GraderError(f"{where}: expected a mapping with 'kind' (one of {sorted(SPEC_KINDS)})")
    kind = spec["kind"]
    if kind == "judge":
        raise GraderError(f"{where}: a judge calls a model; build it with lab.judges.judge_from_spec")
    factory = _FACTORIES.get(kind)
    if factory is None:
        raise GraderError(f"{where}: unknown grader kind {kind!r}; use one of {sorted(SPEC_KINDS)}")
    options = {k: v for k, v in spec.items() if k != "kind"}
    try:
        return factory(**options)
    except TypeError as exc:
        allowed = [p for p in inspect.signature(factory).parameters]
        raise GraderError(f"{where}: {exc}; {kind} takes {allowed}") from None
    except LabError as exc:
        raise GraderError(f"{where}: {exc}") from None


def check_grader_list(graders: Any) -> list[Grader]:
    if graders is None:
        return []
    if isinstance(graders, Grader):
        return [graders]
    if isinstance(graders, (list, tuple)) and all(isinstance(g, Grader) for g in graders):
        return list(graders)
    raise ParameterError(f"grader must be a Grader (lab.graders.match(), lab.judge(...), ...) or a list of them, got {graders!r}")
