"""The workbench's session lives in :mod:`lab.session` (plain Python: it imports no widgets or
plotting); these names stay importable from here. This module adds the input-set table the
workbench shows, a view that reads :mod:`lab.plots`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd

from ..errors import CallCancelled  # noqa: F401
from ..prompts import PromptFile
from ..session import Session, Turn, edit_variant, find_input_sets, find_prompt_files  # noqa: F401
from ..store import RunLog, RunRecord


@dataclass(frozen=True)
class GradeBadge:
    """What a card and a grid cell say about one output: the outcome in words, why, and which
    grader said so. ``kind`` is one of :data:`OUTCOME_KINDS` (the colour)."""

    text: str
    kind: str
    why: str
    grader: str | None = None
    truncated: bool = False


# outcome kinds with their colours (the grid, the cards' badges and the filters use them)
OUTCOME_KINDS = {"correct": "#2ca02c", "wrong": "#d62728", "escaped-right": "#17becf",
                 "over-abstained": "#ff7f0e", "answered-right": "#98df8a", "error": "#7f7f7f", "ungraded": "#bbbbbb"}
FAILURES = frozenset({"wrong", "over-abstained", "error"})


def _is_missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _short(text: object, n: int = 60) -> str:
    t = " ".join(str(text or "").split())
    return t if len(t) <= n else t[: n - 1] + "…"


def badge(rec: RunRecord, grades: pd.DataFrame | None) -> GradeBadge:
    """The badge for one output. Correctness comes from a correctness grader (match, regex,
    json_schema, a judge, ...); an escape-hatch grader's pass only says the model answered where it
    should (or escaped where it should); an escape is right on an input tagged ``unanswerable``
    and over-abstention on any other."""
    truncated = getattr(rec, "finish_reason", None) == "length"
    if rec.outcome == "error":
        return GradeBadge("error", "error", f"the call failed: {_short(rec.error, 200)}")
    unanswerable = "unanswerable" in (rec.input_tags or [])
    if rec.outcome == "escaped":
        if unanswerable:
            return GradeBadge("escaped where it should", "escaped-right",
                              "took the way out on an input tagged unanswerable: the right call", truncated=truncated)
        return GradeBadge("over-abstained", "over-abstained",
                          "took the way out on an input that has an answer (not tagged unanswerable)", truncated=truncated)
    g = grades[grades["run_id"] == rec.id] if grades is not None and len(grades) else None
    if g is not None and len(g):
        g = g[~g["grader"].astype(str).str.startswith("human:")].sort_values("seq")
    if g is None or g.empty or g["passed"].isna().all():
        why = ("no grader in the prompt file and no expected answer for this input" if _is_missing(rec.expected)
               else "not graded yet")
        return GradeBadge("ungraded", "ungraded", why, truncated=truncated)
    g = g[g["passed"].notna()]
    correctness = g[~g["grader"].astype(str).str.startswith("escape_hatch")]
    row = (correctness if len(correctness) else g).iloc[-1]
    passed, grader = bool(row["passed"]), str(row["grader"])
    got = f"got \"{_short(rec.output)}\""
    if len(correctness):
        expected = "" if _is_missing(rec.expected) else f"expected \"{_short(rec.expected, 40)}\", "
        return GradeBadge("correct" if passed else "wrong", "correct" if passed else "wrong",
                          f"{grader}: {expected}{got}", grader, truncated)
    if passed:
        return GradeBadge("answered where it should", "answered-right",
                          f"{grader}: answered an answerable input (this grader does not check correctness)", grader,
                          truncated)
    return GradeBadge("answered where it should have escaped", "wrong",
                      f"{grader}: the input is tagged unanswerable, the model answered anyway", grader, truncated)


def grade_records(records: list[RunRecord], prompt: PromptFile, log: RunLog) -> dict[str, GradeBadge]:
    """Grade the records not graded yet with the prompt file's ``grader:`` (or, without one, the
    default grader where inputs have ``expected`` answers), write those grades to the log, and
    return a badge per run id."""
    from ..graders import graders_or_default
    from ..grading import grade
    from ..techniques._common import resolve_graders

    if not records:
        return {}
    df = pd.DataFrame([dataclasses.asdict(r) for r in records])
    df = df[df["outcome"] != "error"]
    graders = graders_or_default(resolve_graders(None, prompt), df) if len(df) else []
    experiments = set(df["experiment_id"]) if len(df) else set()
    grades = pd.concat([log.grades(experiment=e) for e in experiments], ignore_index=True) if experiments else None
    if graders and len(df):
        done = set(grades["run_id"]) if grades is not None and len(grades) else set()
        todo = df[~df["id"].isin(done)]
        if len(todo):
            grade(todo, graders, log=log)
            grades = pd.concat([log.grades(experiment=e) for e in experiments], ignore_index=True)
    return {r.id: badge(r, grades) for r in records}


def input_text(rec: RunRecord) -> str:
    """The input as its text (typed input included), not its id."""
    vars_ = rec.input_vars or {}
    if len(vars_) == 1:
        return str(next(iter(vars_.values())))
    return "; ".join(f"{k}: {v}" for k, v in vars_.items()) or str(rec.input_id or "")


def input_set_table(records: list[RunRecord], prompt: PromptFile, log: RunLog) -> pd.DataFrame:
    """One row per call of an input set run: input, output, expected, outcome, grade and why.

    The grade comes from the prompt file's ``grader:``, or without one from the default grader
    (normalized match against the input's ``expected`` answer), written to the log as grade rows;
    escapes are read against the input's tags (right on ``unanswerable``, over-abstention elsewhere).
    """
    badges = grade_records(records, prompt, log)
    return pd.DataFrame({
        "input": [r.input_id for r in records],
        "output": [r.output if r.outcome != "error" else r.error for r in records],
        "expected": ["" if _is_missing(r.expected) else str(r.expected) for r in records],
        "outcome": [r.outcome for r in records],
        "grade": [badges[r.id].text for r in records],
        "why": [badges[r.id].why for r in records],
    })
