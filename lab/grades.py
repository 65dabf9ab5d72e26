"""Grades for runs: every (run, grader) gets a grade row in the log; people rate and rank runs too.

    lab.grade(runs, lab.graders.match(mode="numeric", marker="ANSWER:"))
    lab.grade(runs, lab.judge("Is it clear and correct for a 10-year-old?", repeats=3))
    lab.rate(run_id, rater="ana", score=4, note="good, but long")

A grade is a row in the log's ``grades`` table that points at the run it grades (``run_id``),
names its grader (``match:numeric``, ``regex``, ``json_schema``, ``custom:<name>``,
``escape_hatch``, ``judge:<model>``, ``human:<name>``) and carries ``score``, ``passed``,
``label`` and ``detail``. Regrading adds rows and never rewrites a run or an earlier grade;
readers take the latest grade per (run, grader) (see :func:`lab.tables.with_grades`).

Runs that ended in an ``error`` are not graded (they have no output); a grader that does not
apply to a run (``match`` on a row without ``expected``) writes no row for it. The graders
themselves are pure functions in :mod:`lab.graders`; the LLM judge, and how its calls are made and
logged, is in :mod:`lab.judges` (:func:`grade` hands it the runs).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import GraderError
from .experiments import RunsLike, runs_frame
from .graders import Grader, grade_row, graders_or_default
from .store import RunLog

if TYPE_CHECKING:  # run's grading (grade_stored) reads plain rows: pandas is loaded by the DataFrame paths only
    import pandas as pd


def grade(runs: RunsLike, graders: Grader | Sequence[Grader], *, log: RunLog | None = None,
          roles: Sequence[str] = ("answer", "revision"), concurrency: int | None = None) -> pd.DataFrame:
    """Grade runs and append one grade row per (run, grader) to the log. Returns the new rows.

    ``runs`` is a DataFrame of run rows, a :class:`~lab.experiments.Runs`, or an experiment id (read
    from ``log``, default the default log). Only rows whose ``role`` is in ``roles`` are graded
    (answers and self-critique revisions by default; critiques and judge calls are not answers).
    Error rows are skipped. Judge graders make logged model calls (see :func:`lab.judges.judge`).
    """
    import pandas as pd

    df, log = runs_frame(runs, log)
    graders = [graders] if isinstance(graders, Grader) else list(graders)
    if not graders or not all(isinstance(g, Grader) for g in graders):
        raise GraderError("grade: give one grader or a list of graders (lab.graders.match(), lab.judge(...), ...)")
    if "role" in df:
        df = df[df["role"].isin(list(roles))]
    df = df[df["outcome"] != "error"]
    rows = df.to_dict("records")
    new_ids = log.add_grades(_function_grades(rows, graders))  # one commit for all of them
    judges = [g for g in graders if g.afn is not None]
    if judges:
        from .judges import grade_with_judges  # a judge's path (it reads tables): not loaded to grade by functions

        new_ids += grade_with_judges(log, rows, judges, concurrency)
    if not new_ids:
        return log.grades(run_id="__none__")
    out = pd.concat([log.grades(experiment=e) for e in {r["experiment_id"] for r in rows}], ignore_index=True)
    return out[out["id"].isin(set(new_ids))].reset_index(drop=True)


def _function_grades(rows: list[dict[str, Any]], graders: Sequence[Grader]) -> list[dict[str, Any]]:
    """The grade rows of the graders that are functions of a run's fields (judges make calls: not here)."""
    pending: list[dict[str, Any]] = []
    for g in graders:
        if g.fn is not None:
            for run in rows:
                gr = g.fn(run)
                if gr is not None:
                    pending.append(grade_row(run, g.name, gr))
    return pending


#: what the graders a prompt file can name (match, regex, json_schema, escape_hatch, the default) read of a run
GRADE_FIELDS = ["id", "experiment_id", "variant", "input_id", "input_tags", "input_vars", "expected", "model",
                "outcome", "output", "role"]


def grade_stored(log: RunLog, experiment_id: str, graders: Sequence[Grader], *,
                 roles: Sequence[str] = ("answer", "revision")) -> list[str]:
    """:func:`grade` for one experiment in ``log``, without pandas: ``graders`` (or, when there are
    none, the default grader where some run has an expected answer) must be functions of a run's
    fields, read as plain rows of :data:`GRADE_FIELDS`; the grade rows are those :func:`grade`
    writes. Judges read whole rows and make calls: use :func:`grade`. Returns the new grade ids."""
    if any(g.fn is None for g in graders):
        raise GraderError("grade_stored: judges read whole runs and make calls; grade them with lab.grade(...)")
    rows = [dict(zip(GRADE_FIELDS, r)) for r in log.run_rows(experiment_id, GRADE_FIELDS)]
    graders = graders_or_default(graders, {"expected": [r["expected"] for r in rows]})
    rows = [r for r in rows if r["role"] in roles and r["outcome"] != "error"]
    return log.add_grades(_function_grades(rows, graders)) if graders and rows else []


# ---- human ratings -------------------------------------------------------------------------


def _check_run(log: RunLog, run_id: str) -> dict[str, Any]:
    found = log.run(run_id)
    if found is None:
        raise GraderError(f"{log.path}: no run with id {run_id!r}; take ids from the runs table's 'id' column")
    return found


def rate(run_id: str, *, rater: str, score: float | None = None, passed: bool | None = None,
         note: str | None = None, log: RunLog | None = None) -> str:
    """Store a person's rating of one run as a grade row (grader ``human:<rater>``). Returns its id.

    Give a ``score`` (any scale you keep consistent), ``passed``, or both; ``note`` is kept in
    ``detail``. Rating again adds a new row; the latest counts.
    """
    if not isinstance(rater, str) or not re.fullmatch(r"[\w.\-@ ]+", rater):
        raise GraderError(f"rate: rater must be a name (letters, digits, . - _ @), got {rater!r}")
    if score is None and passed is None and note is None:
        raise GraderError("rate: give a score, passed, or a note")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float)) or math.isnan(score)):
        raise GraderError(f"rate: score must be a number, got {score!r}")
    log = log if log is not None else RunLog()
    run = _check_run(log, run_id)
    return log.add_grade(run_id, f"human:{rater}", score=None if score is None else float(score), passed=passed,
                         label="rating", detail={"note": note} if note else None, experiment_id=run["experiment_id"])


def rank(run_ids: Sequence[str], *, rater: str, note: str | None = None, log: RunLog | None = None) -> list[str]:
    """Store a person's ranking of several outputs, best first (often easier than scoring one).

    Each run gets a grade row ``human:<rater>:rank`` with ``score`` = its place (1 = best) and
    the other runs in ``detail``. Returns the new grade ids.
    """
    ids = list(run_ids)
    if len(ids) < 2 or len(set(ids)) != len(ids):
        raise GraderError("rank: give at least two distinct run ids, best first")
    if not isinstance(rater, str) or not re.fullmatch(r"[\w.\-@ ]+", rater):
        raise GraderError(f"rank: rater must be a name (letters, digits, . - _ @), got {rater!r}")
    log = log if log is not None else RunLog()
    runs = [_check_run(log, r) for r in ids]
    return [log.add_grade(r["id"], f"human:{rater}:rank", score=float(i + 1), label="rank",
                          detail={"among": ids, **({"note": note} if note else {})}, experiment_id=r["experiment_id"])
            for i, r in enumerate(runs)]
