"""The workbench's session lives in :mod:`lab.session` (plain Python: it imports no widgets or
plotting); these names stay importable from here. This module adds the input-set table the
workbench shows, a view that reads :mod:`lab.plots`.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from ..errors import CallCancelled  # noqa: F401
from ..prompts import PromptFile
from ..session import Session, Turn, edit_variant, find_input_sets, find_prompt_files  # noqa: F401
from ..grid import FAILURES, OUTCOME_KINDS, GradeBadge, badge  # noqa: F401
from ..store import RunLog, RunRecord


def _is_missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and v != v)


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
