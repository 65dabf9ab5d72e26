"""Findings: what an experiment's log says, in plain words a reader can trust.

    f = lab.findings.from_log(log, exp.id)         # or findings(runs_df, grades_df)
    print(f)                                       # text (the CLI prints this after run and show)
    f                                              # HTML in a notebook (names escaped)

Computed only from the log's runs and grades, through ``lab.stats`` (intervals over inputs). Per
framing: appropriate behaviour (the correct answer where there is one, the way out where there is
none), correct on answerable inputs, escaped on unanswerable ones, over-abstention (escaped on
answerable) and hallucination (answered on unanswerable), each with its interval and n (inputs x
repeats); the paired verdict A - B with its interval; the input tags that drive it; and the caveats
that apply (too few inputs, ungraded runs, unparsed judge grades, errors, the default grader).
Raw escape rates are compared as higher / lower, never better.

One computation serves both entries: :func:`findings` turns DataFrames into a :class:`RunTable`
(each column as per-run codes into its distinct values), :func:`from_log` reads one from the log
(the columns it uses, coded by the database where they have few values: ``RunLog.run_codes``),
and the statistics run on arrays (``lab.stats.rate_of``, ``lab.stats.paired_readings``).
So ``python -m lab run`` and ``show`` print findings without loading pandas; ``per_framing`` and
``by_tag`` are DataFrames built when someone asks for them.
"""

from __future__ import annotations

import functools
import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ParameterError
from .graders import DEFAULT_GRADER, DEFAULT_GRADER_NOTE, UNPARSED_WARN_SHARE, latest_grades
from .stats import (
    MIN_INPUTS,
    TOO_FEW,
    Population,
    RunPairs,
    first_seen_codes,
    format_p,
    interval_ends,
    paired_readings,
    plural,
    rate_of,
    rate_text,
)

if TYPE_CHECKING:  # the notebook API takes and gives DataFrames; run and show read findings without pandas
    import pandas as pd

MEASURES = {  # column -> (words, rows it is over)
    "appropriate": "appropriate behaviour",
    "correct_answerable": "correct on answerable",
    "escaped_unanswerable": "escaped on unanswerable",
    "over_abstention": "over-abstention (escaped on answerable)",
    "hallucination": "answered on unanswerable",
}
#: what the findings read of a run (the log's other columns are neither fetched nor parsed)
#: (the log keeps an index of exactly these, in log order: migration m009_findings_index)
RUN_FIELDS = ["id", "variant", "input_id", "repeat", "model", "input_tags", "outcome", "role", "finish_reason"]
#: of those, the ones with few distinct values in an experiment: the log returns them as codes (``RunLog.run_codes``)
_FEW_VALUES = ["variant", "repeat", "model", "input_tags", "outcome", "role", "finish_reason"]
#: what they read of a grade
GRADE_FIELDS = ["run_id", "grader", "passed", "label", "seq"]


_NAN = ("NaN",)  # the key NaN values are coded under (NaN equals no NaN, so each would be its own value)


def _same(x: Any) -> Any:
    return x.__class__, _NAN if x != x else x  # 1 and 1.0 stay two inputs, as their texts are


def _tags_key(tags: Any) -> Any:
    return tuple(tags) if isinstance(tags, (list, tuple, np.ndarray)) else _same(tags)


@dataclass(frozen=True)
class Coded:
    """A column of a :class:`RunTable`: each run's value as a code into ``values``, the column's
    distinct values (in no set order; after :meth:`take` some may have no run). The findings ask
    about each distinct value once and handle runs as arrays of codes: a 100k-row experiment has a
    few variants and outcomes, and at most one input id per two runs."""

    codes: np.ndarray  # intp, one per run
    values: list[Any]

    @classmethod
    def of(cls, items: Sequence[Any], key: Callable[[Any], Any] = _same) -> Coded:
        """``items`` coded in order of first appearance; ``key`` says which are the same value
        (default: equal ones, NaN with NaN)."""
        index: dict[Any, int] = {}
        values: list[Any] = []
        codes = []
        for x in items:
            k = key(x)
            code = index.get(k)
            if code is None:
                code = index[k] = len(values)
                values.append(x)
            codes.append(code)
        return cls(np.array(codes, dtype=np.intp), values)

    def __len__(self) -> int:
        return len(self.codes)

    def where(self, test: Callable[[Any], bool]) -> np.ndarray:
        """Per run, ``test`` of its value (asked once per distinct value)."""
        return np.array([bool(test(v)) for v in self.values], dtype=bool)[self.codes]

    def eq(self, value: Any) -> np.ndarray:
        return self.where(lambda v: v == value)

    def labels(self, of: Callable[[Any], Any]) -> np.ndarray:
        """Per run, a code for ``of(its value)``: runs whose values give equal results share one."""
        return first_seen_codes([of(v) for v in self.values])[self.codes]

    def ranks(self) -> tuple[np.ndarray, int]:
        """Per run, its value's rank among the distinct values in sorted order (-1 for None and NaN),
        and how many ranks there are."""
        uniq = sorted(v for v in self.values if v is not None and v == v)
        pos = {v: r for r, v in enumerate(uniq)}
        return np.array([pos.get(v, -1) for v in self.values], dtype=np.int64)[self.codes], len(uniq)

    def present(self) -> list[Any]:
        """The values runs have, in order of first appearance."""
        used, first = np.unique(self.codes, return_index=True)
        return [self.values[c] for c in used[np.argsort(first)]]

    def take(self, idx: np.ndarray) -> Coded:
        return Coded(self.codes[idx], self.values)


def _unanswerable(tags: Coded) -> np.ndarray:
    """Per run, whether its input is tagged ``unanswerable``."""
    return tags.where(lambda t: "unanswerable" in (list(t) if t is not None else []))


def _measures(outcome: Coded, passed: np.ndarray, unans: np.ndarray) -> dict[str, np.ndarray]:
    """Per run, one 0/1 value per measure (NaN where a measure does not apply to the run, or it is ungraded)."""
    escaped = outcome.eq("escaped").astype(float)
    answered = outcome.eq("answered").astype(float)
    out = {
        "correct_answerable": np.where(~unans, passed, np.nan),
        "over_abstention": np.where(~unans, escaped, np.nan),
        "escaped_unanswerable": np.where(unans, escaped, np.nan),
        "hallucination": np.where(unans, answered, np.nan),
        "appropriate": np.where(~unans, passed, escaped),
    }
    err = outcome.eq("error")
    for col in out.values():
        col[err] = np.nan
    return {m: out[m] for m in MEASURES}


def behaviour(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` (runs with ``passed`` from :func:`lab.tables.with_grades`) with one 0/1 column per
    measure (NaN where a measure does not apply to the run, or it is ungraded)."""
    out = df.copy()
    passed = out["passed"].to_numpy(dtype=float) if "passed" in out else np.full(len(out), np.nan)
    unans = _unanswerable(Coded.of(list(out["input_tags"]), key=_tags_key))
    for col, values in _measures(Coded.of(out["outcome"].tolist()), passed, unans).items():
        out[col] = values
    return out


@dataclass
class RunTable:
    """The runs a findings block reads, one entry per run in log order, each column :class:`Coded`:
    what both :func:`findings` (from DataFrames) and :func:`from_log` (from the log's rows, without
    pandas) hand to the one computation of the findings."""

    id: list[Any] | None  # None where nothing needs them (no grades to join: read from the log)
    variant: Coded
    input_id: Coded
    repeat: Coded
    model: Coded
    input_tags: Coded
    outcome: Coded
    finish_reason: Coded | None
    passed: np.ndarray = field(default_factory=lambda: np.zeros(0))  # one grader's latest grade: 1.0, 0.0 or NaN

    def __len__(self) -> int:
        return len(self.outcome)

    @functools.cached_property
    def clusters(self) -> np.ndarray:
        """Each run's input as a code, as lab.stats clusters runs (by the id's text: a run without
        one is in the cluster "None")."""
        return self.input_id.labels(str)

    @functools.cached_property
    def inputs(self) -> np.ndarray:
        """:attr:`clusters`, with -1 where a run has no input id."""
        missing = self.input_id.where(lambda i: i is None or i != i)
        return np.where(missing, -1, self.clusters) if missing.any() else self.clusters

    @functools.cached_property
    def unanswerable(self) -> np.ndarray:
        return _unanswerable(self.input_tags)

    def take(self, keep: np.ndarray) -> RunTable:
        """The runs where ``keep`` (one bool per run) is true."""
        if keep.all():
            return self
        idx = np.flatnonzero(keep)
        return RunTable(id=None if self.id is None else [self.id[i] for i in idx], variant=self.variant.take(idx),
                        input_id=self.input_id.take(idx), repeat=self.repeat.take(idx), model=self.model.take(idx),
                        input_tags=self.input_tags.take(idx), outcome=self.outcome.take(idx),
                        finish_reason=None if self.finish_reason is None else self.finish_reason.take(idx),
                        passed=self.passed[idx] if len(self.passed) else self.passed)


def _role(r: Any) -> Any:
    return "answer" if r is None or r != r else r


def _answers(t: RunTable, roles: Coded | None) -> tuple[RunTable, list[str]]:
    """The answers a findings block reads, and their roles: first answers and revisions; a
    self-critique's first answers only."""
    if roles is None:
        return t, ["answer", "revision"]
    keep = ["answer"] if roles.where(lambda r: _role(r) == "revision").any() else ["answer", "revision"]
    return t.take(roles.where(lambda r: _role(r) in keep)), keep


def _graded(t: RunTable, grades: Sequence[tuple], grader: str | None) -> tuple[RunTable, str | None]:
    """``t`` with one grader's latest grade per run as ``passed`` (``grades``: (run_id, grader,
    passed, ...) tuples, oldest first; :func:`lab.graders.latest_grades` picks them), and that grader."""
    grader, latest = latest_grades(grades, set(t.id or ()) if grades else set(), grader)
    t.passed = np.array([math.nan if (g := latest.get(i)) is None or g[2] is None or g[2] != g[2] else float(g[2])
                         for i in t.id or ()], dtype=float) if latest else np.full(len(t), np.nan)
    return t, grader


def _unparsed_share(t: RunTable, grades: Sequence[tuple]) -> float:
    """Share of judge grades on these runs (latest per run and judge) whose reply could not be read."""
    if not grades:
        return math.nan
    ids = set(t.id or ())
    latest = {(g[0], g[1]): g[3] for g in grades if g[0] in ids and str(g[1]).startswith("judge:")}
    return sum(label == "unparsed" for label in latest.values()) / len(latest) if latest else math.nan


def _fmt_rate(r: dict[str, Any], m: str) -> str:
    """One measure's rate with its n (inputs x repeats), or its counts when there is no interval."""
    rate = r[m]
    if r[m + "_n"] == 0 or rate is None or rate != rate:
        return "n/a"
    return rate_text(int(r[m + "_k"]), int(r[m + "_n"]), int(r[m + "_inputs"]), float(rate), float(r[m + "_low"]),
                     float(r[m + "_high"]))


def _ci(v: dict[str, Any], confidence: float) -> str:
    """The interval and the test behind a verdict, in the words a headline uses."""
    how = "; ".join(x for x in (format_p(v.get("p_value", math.nan)), v.get("method") or "") if x)
    ci = "{:.0%} interval {} to {}".format(confidence, *interval_ends(v["low"], v["high"], 2))
    if v["low"] == v["high"]:
        how += "; every input gave the same difference"
    return ci + (f"; {how}" if how else "")


@dataclass
class Findings:
    """The findings block: build it with :func:`findings` or :func:`from_log`."""

    experiment_id: str | None
    a: str | None
    b: str | None
    grader: str | None
    confidence: float
    framings: list[dict[str, Any]]  # per variant: <measure>, <measure>_low/_high/_n/_k/_inputs, inputs, calls, repeats
    verdict: dict[str, Any] | None  # the paired difference row (all inputs) for the headline value
    verdict_value: str | None
    escapes: dict[str, Any] | None  # the paired difference in raw escape rates (higher / lower)
    tag_readings: list[dict[str, Any]] | None  # the paired difference per input tag (lab.stats.paired_readings)
    drivers: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)

    @property
    def per_framing(self) -> pd.DataFrame:
        """The rates per framing as a DataFrame (index variant), built when asked for."""
        import pandas as pd

        cols = [f"{m}{k}" for m in MEASURES for k in ("", "_low", "_high", "_n", "_k", "_inputs")]
        return pd.DataFrame(self.framings, columns=["variant", *cols, "inputs", "calls", "repeats"]).set_index("variant")

    @property
    def by_tag(self) -> pd.DataFrame | None:
        """The paired difference per input tag as a DataFrame (index tag; the columns of
        :func:`lab.stats.paired_difference`), built when asked for; None when there is no verdict."""
        import pandas as pd

        if self.tag_readings is None:
            return None
        rows = [{k: v for k, v in r.items() if k != "same_everywhere"} for r in self.tag_readings]
        return pd.DataFrame(rows, columns=list(rows[0]) if rows else ["tag"]).set_index("tag")

    @property
    def headline(self) -> str:
        """One sentence: who won, or that nobody did (or that it cannot be told)."""
        if self.verdict is None:
            if self.a and self.b:
                return (f"No verdict between {self.a} and {self.b}: no graded pairs "
                        "(grade the runs, or give the inputs expected answers).")
            return "One framing only: nothing to compare."
        v = self.verdict
        what = {**MEASURES, "passed": "pass rate"}.get(self.verdict_value or "", self.verdict_value)
        diff = f"{self.a} - {self.b} = {v['difference'] + 0.0:+.2f}"
        n = f"{plural(v['inputs'], 'input')}, {plural(v['pairs'], 'pair')}"
        if v["verdict"] == TOO_FEW:
            return (f"Too few inputs to tell ({plural(v['inputs'], 'input')}; a verdict and an interval need "
                    f"{MIN_INPUTS}): {what} {diff} over {n}.")
        ci = _ci(v, self.confidence)
        if v["verdict"] in ("A better", "B better"):
            win, lose = (self.a, self.b) if v["verdict"] == "A better" else (self.b, self.a)
            where = f"on these {plural(v['inputs'], 'input')}" if v.get("population") == "these" else f"over {n}"
            return f"{win} beats {lose} on {what}: {diff} ({ci}; {where})."
        return f"No detectable difference in {what} between {self.a} and {self.b}: {diff} ({ci}; {n})."

    def lines(self) -> list[str]:
        head = f"Findings for {self.experiment_id}" if self.experiment_id else "Findings"
        out = [head + (f" (grader {self.grader})" if self.grader else " (ungraded)"), self.headline]
        if self.escapes is not None and self.escapes["pairs"]:
            e = self.escapes
            if e["verdict"] in ("A higher", "B higher"):
                hi, lo = (self.a, self.b) if e["verdict"] == "A higher" else (self.b, self.a)
                out.append(f"Escapes: {hi} escapes more often than {lo} ({self.a} - {self.b} = {e['difference'] + 0.0:+.2f}, "
                           f"{_ci(e, self.confidence)}); higher, not better: see the rates by input kind.")
            else:
                out.append(f"Escapes: {e['reading']}.")
        out.append(f"Per framing ({self.confidence:.0%} intervals over inputs; n = inputs x repeats):")
        for r in self.framings:
            parts = [f"{MEASURES[m]} {_fmt_rate(r, m)}" for m in MEASURES if r[m + "_n"] > 0]
            out.append(f"  {r['variant']} (n = {int(r['inputs'])} x {r['repeats']:g}): " + "; ".join(parts))
        if self.drivers:
            out.append("Driven by: " + "; ".join(self.drivers))
        if self.caveats:
            out.append("Caveats:")
            out += [f"  - {c}" for c in self.caveats]
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        e = html.escape
        lines = self.lines()
        head = "<tr><th></th>" + "".join(f"<th>{e(c)}</th>" for c in ["n (inputs x repeats)", *MEASURES.values()]) \
            + "</tr>"
        rows = "".join(f"<tr><th>{e(str(r['variant']))}</th>" + "".join(
            f"<td>{e(v)}</td>" for v in [f"{int(r['inputs'])} x {r['repeats']:g}", *(_fmt_rate(r, m) for m in MEASURES)])
            + "</tr>" for r in self.framings)
        extra = [ln for ln in lines[2:] if not ln.startswith("  ") and not ln.startswith("Per framing")
                 and ln != "Caveats:"]
        caveats = "".join(f"<li>{e(c)}</li>" for c in self.caveats)
        return (f"<div class='lab-findings'><p><b>{e(lines[0])}</b></p><p><b>{e(self.headline)}</b></p>"
                + "".join(f"<p>{e(x)}</p>" for x in extra if not x.startswith("  -"))
                + f"<table>{head}{rows}</table>"
                + (f"<p>Caveats:</p><ul>{caveats}</ul>" if caveats else "") + "</div>")


def _drivers(by_tag: list[dict[str, Any]], verdict: dict[str, Any] | None, a: str, b: str) -> list[str]:
    """Which tags drive the verdict: the tag readings are one family, Holm-adjusted (one clause says so)."""
    if len(by_tag) < 2:
        return []
    fam = int(max(r.get("family", 1) for r in by_tag))
    adjusted = f"Holm-adjusted over {fam} tags" if fam > 1 else "one tag with a verdict"
    out = [f"tag {r['tag']}: {a} - {b} = {r['difference'] + 0.0:+.2f} ({' to '.join(interval_ends(r['low'], r['high'], 2))}, "
           f"{plural(r['inputs'], 'input')}; {adjusted})"
           for r in by_tag if r["verdict"] in ("A better", "B better")]
    if verdict and verdict["verdict"] in ("A better", "B better") and not out:
        sign = 1 if verdict["difference"] > 0 else -1
        ranked = [r for r in by_tag if r["pairs"] > 0]
        if ranked:
            top = max(ranked, key=lambda r: sign * r["difference"])  # the first of equals, as a stable sort gives
            out.append(f"mostly tag {top['tag']}: {a} - {b} = {top['difference'] + 0.0:+.2f} over "
                       f"{plural(top['inputs'], 'input')} (no tag is a verdict on its own"
                       + (f" after Holm adjustment over {fam} tags)" if fam > 1 else ")"))
    return out


class _Pairs:
    """The runs of framings ``a`` and ``b`` paired as lab.stats pairs them (``lab.stats.RunPairs``),
    with each pair's input (its rank) and tags (its first tagged run's)."""

    def __init__(self, t: RunTable, a: str, b: str) -> None:
        ranks = [col.ranks() for col in (t.input_id, t.repeat, t.model)]
        self.pairs = RunPairs(t.variant.eq(a), t.variant.eq(b), ranks)
        self.input = ranks[0][0][self.pairs.first()]
        tagged = self.pairs.first(t.input_tags.where(lambda v: v is not None))
        self.tag_code = np.where(tagged >= 0, t.input_tags.codes[tagged], -1)
        self.tag_values = t.input_tags.values

    def readings(self, x: np.ndarray, a: str, b: str, *, split_by_tag: bool = False, **kw: Any) -> list[dict[str, Any]]:
        """:func:`lab.stats.paired_readings` of per-run values ``x`` (NaN: no value)."""
        idx, mean_a, mean_b = self.pairs.means(x)
        tags = [self.tag_values[c] if c >= 0 else None for c in self.tag_code[idx].tolist()] if split_by_tag else None
        return paired_readings(mean_a, mean_b, first_seen_codes(self.input[idx]), a, b, tags=tags, **kw)


def _reading(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: v for k, v in rows[0].items() if k not in ("tag", "same_everywhere")}


def _count_distinct(codes: np.ndarray) -> int:
    """How many distinct values among non-negative integer ``codes`` (np.unique would import numpy.ma: 20 ms)."""
    return int(np.count_nonzero(np.bincount(codes))) if len(codes) else 0


def _framings(t: RunTable, values: dict[str, np.ndarray], variants: list[str], confidence: float,
              population: Population) -> list[dict[str, Any]]:
    """Per framing: each measure's rate with its interval over inputs, and the framing's inputs, calls and repeats."""
    clusters = t.clusters
    out = []
    for v in variants:
        mask = t.variant.eq(v)
        row: dict[str, Any] = {"variant": v}
        for m, x in values.items():
            r = rate_of(x[mask], clusters[mask], confidence=confidence, population=population)
            row.update({m: r["rate"], f"{m}_low": r["low"], f"{m}_high": r["high"], f"{m}_n": r["n"],
                        f"{m}_k": r["k"], f"{m}_inputs": r["inputs"]})
        row.update(inputs=_count_distinct(t.inputs[mask & (t.inputs >= 0)]), calls=int(mask.sum()))
        row["repeats"] = round(float(row["calls"]) / max(int(row["inputs"]), 1), 1)  # as rate_text
        out.append(row)
    return out


def _compute(t: RunTable, *, grader: str | None, has_expected: Callable[[], bool], unparsed: float,
             a: str | None, b: str | None, confidence: float, population: Population,
             experiment_id: str | None) -> Findings:
    """The findings of the runs in ``t`` (answers, with ``passed`` from ``grader``): one computation
    whether the runs came as DataFrames or as the log's rows."""
    values = _measures(t.outcome, t.passed, t.unanswerable)
    variants = [str(v) for v in t.variant.present() if v is not None]
    a = a or (variants[0] if variants else None)
    b = b or (variants[1] if len(variants) > 1 else None)
    has_unans = bool(t.unanswerable.any())
    per = _framings(t, values, variants, confidence, population)

    caveats: list[str] = []
    verdict = escapes = by_tag = None
    value = None
    drivers: list[str] = []
    if a and b:
        if not 0 < confidence < 1:
            raise ParameterError(f"confidence must be between 0 and 1, got {confidence!r}")
        for name in (a, b):
            if name not in t.variant.present():
                raise ParameterError(f"no rows with variant {name!r}; present: {sorted(map(str, t.variant.present()))}")
        pairs = _Pairs(t, a, b)
        value = "appropriate" if has_unans else "passed"
        x = values["appropriate"] if has_unans else t.passed
        # ungraded runs have no verdict: "appropriate" alone would judge only the unanswerable inputs
        if grader is not None and (~np.isnan(x)).any():
            rows = pairs.readings(x, a, b, split_by_tag=True, value=value, confidence=confidence,
                                  population=population, higher_is_better=True)
            verdict = _reading(rows)
            if verdict["pairs"] == 0:
                verdict = None
            by_tag = rows[1:]
            drivers = _drivers(by_tag, verdict, a, b)
        if len(variants) > 2:
            caveats.append(f"{len(variants)} framings: this block compares {a} and {b}; every pair read as one "
                           "Holm-adjusted family is lab.stats.pairwise(runs) (Comparison.pairwise())")
        escaped = t.outcome.eq("escaped").astype(float)
        escapes = _reading(pairs.readings(escaped, a, b, value="escaped", confidence=confidence,
                                          population=population, higher_is_better=None))
        is_a = t.variant.eq(a)
        both = (is_a | t.variant.eq(b)) & (t.inputs >= 0)
        n_inputs = _count_distinct(t.inputs[both])
        if population == "inputs" and n_inputs < MIN_INPUTS:
            caveats.append(f"too few inputs to tell: {plural(n_inputs, 'input')} (a verdict needs {MIN_INPUTS})")
        calls = np.unique(is_a[both] + 2 * t.inputs[both], return_counts=True)[1]
        if len(calls) and calls.max() > 2 * calls.min():
            caveats.append(f"repeats differ by input ({calls.min()} to {calls.max()} calls per input and "
                           "framing): each input counts once, but with fewer than 15 inputs, re-running the inputs that "
                           "looked interesting can still tilt a verdict; run every input the same number of times")
        small = [f"{MEASURES[m]} ({min(int(r[m + '_inputs']) for r in per)})" for m in MEASURES
                 if any(r[m + "_n"] > 0 and r[m + "_low"] != r[m + "_low"] for r in per)]
        if small and n_inputs >= MIN_INPUTS:
            caveats.append(f"rates over fewer than {MIN_INPUTS} inputs are shown as counts, without an interval: "
                           + ", ".join(small))
    answered = t.outcome.eq("answered")
    n_answered = int(answered.sum())
    ungraded = int((answered & np.isnan(t.passed)).sum())
    if grader is None:
        caveats.append(
            f"ungraded: no grades for these runs yet, so nothing says which answers are correct ({n_answered} "
            "answered runs; the inputs have expected answers: lab.grade(runs, lab.graders.default_grader()) grades them)"
            if has_expected() else
            f"ungraded: no grader and no expected answers, so nothing says which answers are correct "
            f"({n_answered} answered runs)")
    elif ungraded:
        caveats.append(f"{ungraded} of {n_answered} answered runs have no {grader} grade and are left out")
    if grader == DEFAULT_GRADER:
        caveats.append(DEFAULT_GRADER_NOTE)
    if unparsed == unparsed:
        caveats.append(f"{unparsed:.0%} of judge grades are unparsed" + (
            ": the judge's replies cannot be read, do not trust its grades" if unparsed > UNPARSED_WARN_SHARE else ""))
    errors = int(t.outcome.eq("error").sum())
    if errors:
        caveats.append(f"{errors} calls ended in an error and are left out of every rate")
    truncated = int(t.finish_reason.eq("length").sum()) if t.finish_reason is not None else 0
    if truncated:
        caveats.append(f"{truncated} of {len(t)} answers stopped at max tokens and may be cut short; "
                       "a larger max_tokens gives them room")
    if population == "these":
        caveats.append("conclusions are about exactly these inputs, not inputs like them")
    return Findings(experiment_id=experiment_id, a=a, b=b, grader=grader, confidence=confidence, framings=per,
                    verdict=verdict, verdict_value=value, escapes=escapes,
                    tag_readings=by_tag,
                    drivers=drivers, caveats=caveats)


def _column(df: pd.DataFrame, name: str, default: Any = None) -> list[Any]:
    return df[name].tolist() if name in df else [default] * len(df)


def table_of(runs: pd.DataFrame) -> RunTable:
    """A :class:`RunTable` of ``runs`` (a runs DataFrame as ``log.runs()`` returns it)."""
    return RunTable(id=_column(runs, "id"),
                    variant=Coded.of([None if v is None or v != v else str(v) for v in runs["variant"]]),
                    input_id=Coded.of(_column(runs, "input_id")), repeat=Coded.of(_column(runs, "repeat", 0)),
                    model=Coded.of(_column(runs, "model", "")), input_tags=Coded.of(_column(runs, "input_tags"), _tags_key),
                    outcome=Coded.of(runs["outcome"].tolist()),
                    finish_reason=Coded.of(runs["finish_reason"].tolist()) if "finish_reason" in runs else None)


def _grade_tuples(grades: pd.DataFrame | None) -> list[tuple]:
    """A grades DataFrame as (run_id, grader, passed, label, seq) tuples, oldest first."""
    if grades is None or grades.empty or "grader" not in grades:
        return []
    rows = list(zip(*(_column(grades, c) for c in GRADE_FIELDS)))
    return sorted(rows, key=lambda g: g[4])


def first_answers(runs: pd.DataFrame, grades: pd.DataFrame | None, grader: str | None) -> RunTable:
    """The first answers among ``runs`` (role ``answer``) with ``grader``'s latest grades, as a :class:`RunTable`."""
    t = table_of(runs)
    if "role" in runs:
        t = t.take(np.array([r is None or r != r or r == "answer" for r in runs["role"]], dtype=bool))
    return _graded(t, _grade_tuples(grades), grader)[0]


def verdict_reading(t: RunTable, a: str, b: str, value: str, *, confidence: float) -> dict[str, Any]:
    """The paired reading a - b of ``value`` (``passed`` or ``appropriate``) over the runs of ``t``,
    at ``confidence``, as in the headline (higher is better; no split by tag)."""
    x = _measures(t.outcome, t.passed, t.unanswerable)["appropriate"] if value == "appropriate" else t.passed
    return _reading(_Pairs(t, a, b).readings(x, a, b, value=value, confidence=confidence, higher_is_better=True))


def findings(runs: pd.DataFrame, grades: pd.DataFrame | None = None, *, a: str | None = None, b: str | None = None,
             grader: str | None = None, confidence: float = 0.95, population: Population = "inputs",
             experiment_id: str | None = None) -> Findings:
    """The findings block for ``runs`` (as ``log.runs(...)`` returns them) and their ``grades``.

    ``a`` and ``b`` are the framings to compare (default: the first two variants in the runs); the
    verdict is about appropriate behaviour when some inputs are tagged ``unanswerable``, else about
    the pass rate. ``population="these"`` reads about exactly these inputs."""
    t, _ = _answers(table_of(runs), Coded.of(runs["role"].tolist()) if "role" in runs else None)
    graded = _grade_tuples(grades)
    t, grader = _graded(t, graded, grader)
    kept = set(t.id or ())

    def has_expected() -> bool:
        if "expected" not in runs:
            return False
        return any(e is not None and e == e for i, e in zip(runs["id"], runs["expected"]) if i in kept)
    exp = experiment_id or (str(runs["experiment_id"].iloc[0]) if "experiment_id" in runs and len(runs) else None)
    return _compute(t, grader=grader, has_expected=has_expected, unparsed=_unparsed_share(t, graded),
                    a=a, b=b, confidence=confidence, population=population, experiment_id=exp)


def answers_in_log(log: Any, experiment_id: str, grader: str | None = None, *,
                   roles: list[str] | None = None) -> tuple[RunTable, str | None, list[tuple], list[str]]:
    """One experiment's answers in ``log`` as a :class:`RunTable` with their grades (``grader``'s, or
    the one used last), that grader, the grade tuples and the roles read (``roles``, else the
    findings' own choice); as plain rows, without pandas."""
    grades = log.grade_rows(experiment_id, GRADE_FIELDS)
    few, many, ids = log.run_codes(experiment_id, _FEW_VALUES, many=["input_id"], plain=["id"] if grades else [])
    f = {c: Coded(*v) for c, v in zip(_FEW_VALUES + ["input_id"], few + many)}
    t = RunTable(id=ids[0] if grades else None, variant=f["variant"], input_id=f["input_id"], repeat=f["repeat"],
                 model=f["model"], input_tags=f["input_tags"], outcome=f["outcome"], finish_reason=f["finish_reason"])
    if roles is None:
        t, roles = _answers(t, f["role"])
    else:
        t = t.take(f["role"].where(lambda r: ("answer" if r is None else r) in roles))
    t, grader = _graded(t, grades, grader)
    return t, grader, grades, roles


def from_log(log: Any, experiment_id: str, *, a: str | None = None, b: str | None = None, grader: str | None = None,
             confidence: float = 0.95, population: Population = "inputs") -> Findings:
    """:func:`findings` for one experiment of a :class:`lab.store.RunLog`, read from the log's rows
    (the columns the findings use, as plain tuples: no pandas, so ``python -m lab show`` is quick)."""
    t, grader, grades, roles = answers_in_log(log, experiment_id, grader)

    def has_expected() -> bool:
        return bool(log.any_expected(experiment_id, roles))
    return _compute(t, grader=grader, has_expected=has_expected, unparsed=_unparsed_share(t, grades), a=a, b=b,
                    confidence=confidence, population=population, experiment_id=experiment_id)
