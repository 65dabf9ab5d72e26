"""Escape-hatch report: escapes where they are right, over-abstention where they are not,
and coverage vs accuracy on the inputs the model did answer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from ..stats import rates


def escape_report(runs: pd.DataFrame, *, by: str | Sequence[str] = "variant", confidence: float = 0.95) -> pd.DataFrame:
    """Per variant (or ``by``): how the declared way out was used.

    On inputs tagged ``unanswerable`` an escape is the right answer: ``escape_rate`` (with
    ``escape_low``/``escape_high``). On the other inputs an escape is over-abstention:
    ``over_abstention`` (with interval), and ``coverage`` is the share of them answered. Intervals are
    over inputs (:func:`lab.stats.rates`).
    ``accuracy_on_answered`` (with interval) is the pass rate on answerable inputs the model
    answered; it needs a ``passed`` column (:func:`lab.tables.with_grades`), else it is NaN. Error
    rows are counted in ``errors`` and left out of every rate.
    """
    keys = [by] if isinstance(by, str) else list(by)
    df = runs[runs["role"].isin(["answer", "revision"])] if "role" in runs else runs
    passed = df["passed"] if "passed" in df else pd.Series(math.nan, index=df.index)
    df = df.assign(_unans=df["input_tags"].map(lambda t: "unanswerable" in (t or [])), _passed=passed)
    rows = []
    for k, g in df.groupby(keys, sort=False, dropna=False):
        ok = g[g["outcome"] != "error"]
        un, ans = ok[ok["_unans"]], ok[~ok["_unans"]]
        esc_k = int((un["outcome"] == "escaped").sum())
        oa_k = int((ans["outcome"] == "escaped").sum())
        answered = ans[ans["outcome"] == "answered"]
        graded = answered["_passed"].dropna()
        acc_k = int((graded > 0.5).sum())
        el, eh = _interval(un, un["outcome"] == "escaped", confidence)
        ol, oh = _interval(ans, ans["outcome"] == "escaped", confidence)
        al, ah = _interval(answered, answered["_passed"], confidence)
        rows.append({**dict(zip(keys, k if isinstance(k, tuple) else (k,))),
                     "unanswerable_n": len(un), "escape_rate": esc_k / len(un) if len(un) else math.nan,
                     "escape_low": el, "escape_high": eh,
                     "answerable_n": len(ans), "over_abstention": oa_k / len(ans) if len(ans) else math.nan,
                     "over_abstention_low": ol, "over_abstention_high": oh,
                     "coverage": len(answered) / len(ans) if len(ans) else math.nan,
                     "answered_graded_n": len(graded),
                     "accuracy_on_answered": acc_k / len(graded) if len(graded) else math.nan,
                     "accuracy_low": al, "accuracy_high": ah, "errors": int((g["outcome"] == "error").sum())})
    return pd.DataFrame(rows).set_index(keys)


def _interval(rows: pd.DataFrame, value: pd.Series, confidence: float) -> tuple[float, float]:
    """The interval over inputs (lab.stats.rates) for a 0/1 value of these rows; nan when there are none."""
    if rows.empty:
        return (math.nan, math.nan)
    r = rates(rows.assign(_x=value.astype(float)), value="_x", by=None, confidence=confidence)
    return (float(r["low"].iloc[0]), float(r["high"].iloc[0]))
