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
from ..store import RunLog, RunRecord


def input_set_table(records: list[RunRecord], prompt: PromptFile, log: RunLog) -> pd.DataFrame:
    """One row per call of an input set run: input, output, expected, outcome, grade.

    The grade comes from the prompt file's ``grader:``, or without one from the default grader
    (normalized match against the input's ``expected`` answer), written to the log as grade rows;
    blank when there is nothing to check an answer by.
    """

    from .. import plots
    from ..graders import graders_or_default
    from ..grading import grade
    from ..techniques._common import resolve_graders

    df = pd.DataFrame([dataclasses.asdict(r) for r in records])
    grades = None
    graders = graders_or_default(resolve_graders(None, prompt), df) if len(df) else []
    if graders:
        grade(df, graders, log=log)
        grades = log.grades(experiment=records[0].experiment_id)
    cats = plots.outcome_categories(df, grades) if len(df) else pd.Series(dtype=str)
    words = {"answered-correct": "correct", "answered-wrong": "wrong"}
    return pd.DataFrame({
        "input": df.get("input_id", pd.Series(dtype=str)),
        "output": [r.output if r.outcome != "error" else r.error for r in records],
        "expected": ["" if e is None else str(e) for e in df.get("expected", [])],
        "outcome": df.get("outcome", pd.Series(dtype=str)),
        "grade": [words.get(c, "") for c in cats],
    })
