"""Retry: the same prompt sampled N times as real, independent samples, and the spread they show.

One sample is noise. Whether a model "knows" something shows as the same answer across samples;
fabrication shows as scatter. "Re-roll until it looks right" is what this makes visible.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Unpack

import pandas as pd

from ..checks import check_int
from ..config import RunConfig, RunOptions
from ..errors import ParameterError
from ..experiments import Experiment
from ..findings import Findings, findings
from ..graders import Grader
from ..inputs import InputSet
from ..names import html_text
from ..prompts import PromptFile
from ..stats import proportion_ci
from ..store import RunLog
from ..tables import side_by_side, with_grades
from ..text import normalize, numbers_in
from ._common import as_prompt, resolve_graders, run_and_grade

AnswerKey = Literal["normalized", "exact", "number", "first_line"]


def _keyer(key: AnswerKey | Callable[[str], str]) -> Callable[[Any], str]:
    if callable(key):
        return lambda s: str(key(s or ""))
    if key == "normalized":
        return normalize
    if key == "exact":
        return lambda s: (s or "").strip()
    if key == "first_line":
        return lambda s: normalize((s or "").strip().split("\n", 1)[0])
    if key == "number":
        return lambda s: (lambda n: f"{n[-1]:g}" if n else "(no number)")(numbers_in(s))
    raise ParameterError(f"key must be 'normalized', 'exact', 'number', 'first_line' or a function, got {key!r}")


def spread(runs: pd.DataFrame, grades: pd.DataFrame | None = None, *, grader: str | None = None,
           key: AnswerKey | Callable[[str], str] = "normalized", confidence: float = 0.95) -> pd.DataFrame:
    """Per variant and input: how the samples spread.

    Columns: ``samples``, ``distinct`` answers, ``majority`` answer, ``agreement`` (share of
    samples giving the majority answer), ``answers`` (answer -> count, most common first),
    ``escaped``, ``errors``, and when graded ``pass_rate`` with its Wilson ``pass_low`` /
    ``pass_high``. ``key`` says when two outputs are "the same answer": ``normalized`` text (default),
    ``exact`` text, the last ``number``, the ``first_line``, or your own function.
    """
    keyer = _keyer(key)
    df = runs[runs["role"].isin(["answer", "revision"])] if "role" in runs else runs
    df = with_grades(df, grades, grader=grader)
    keys = ["variant", "input_id"] + (["model"] if df["model"].nunique() > 1 else [])
    rows = []
    for k, g in df.groupby(keys, sort=False, dropna=False):
        ok = g[g["outcome"] != "error"]
        counts = Counter(keyer(o) for o in ok["output"])
        top, top_n = counts.most_common(1)[0] if counts else (None, 0)
        graded = g["passed"].dropna()
        low, high = proportion_ci(int((graded > 0.5).sum()), len(graded), confidence=confidence)
        rows.append({**dict(zip(keys, k if isinstance(k, tuple) else (k,))), "samples": len(g),
                     "distinct": len(counts), "majority": top, "agreement": top_n / len(ok) if len(ok) else float("nan"),
                     "answers": dict(counts.most_common()), "escaped": int((g["outcome"] == "escaped").sum()),
                     "errors": int((g["outcome"] == "error").sum()), "graded": len(graded),
                     "pass_rate": float(graded.mean()) if len(graded) else float("nan"),
                     "pass_low": low, "pass_high": high})
    cols = keys + ["samples", "distinct", "majority", "agreement", "answers", "escaped", "errors", "graded",
                   "pass_rate", "pass_low", "pass_high"]
    return pd.DataFrame(rows, columns=cols).set_index(keys)


def answer_counts(runs: pd.DataFrame, *, key: AnswerKey | Callable[[str], str] = "normalized") -> pd.DataFrame:
    """Long form of the spread: one row per (variant, input, distinct answer) with its ``count``,
    ``share`` of the samples and one ``example`` output, most frequent first."""
    keyer = _keyer(key)
    df = runs[(runs["outcome"] != "error") & (runs["role"].isin(["answer", "revision"]) if "role" in runs else True)]
    df = df.assign(answer=df["output"].map(keyer))
    g = df.groupby(["variant", "input_id", "answer"], sort=False)
    out = pd.DataFrame({"count": g.size(), "example": g["output"].first()}).reset_index()
    out["share"] = out["count"] / out.groupby(["variant", "input_id"])["count"].transform("sum")
    return out.sort_values(["variant", "input_id", "count"], ascending=[True, True, False]).reset_index(drop=True)


@dataclass
class Retries:
    """What :func:`retry` did: the experiment's rows, their grades, and the spread of answers."""

    experiment_id: str
    log: RunLog
    grader: str | None
    key: Any = "normalized"

    @property
    def runs(self) -> pd.DataFrame:
        """Every sample, with ``passed`` / ``score`` / ``label`` from the grader (NaN when ungraded)."""
        return with_grades(self.log.runs(experiment=self.experiment_id), self.log.grades(self.experiment_id),
                           grader=self.grader)

    @property
    def spread(self) -> pd.DataFrame:
        return spread(self.log.runs(experiment=self.experiment_id), self.log.grades(self.experiment_id),
                      grader=self.grader, key=self.key)

    def answers(self) -> pd.DataFrame:
        return answer_counts(self.log.runs(experiment=self.experiment_id), key=self.key)

    def outputs(self) -> pd.DataFrame:
        """Every sample side by side: one row per (input, repeat), one column group per variant."""
        return side_by_side(self.log.runs(experiment=self.experiment_id), self.log.grades(self.experiment_id),
                            grader=self.grader)

    def findings(self, **kwargs: Any) -> Findings:
        """The findings block (rates by what escapes mean, per variant, with intervals over inputs)."""
        return findings(self.log.runs(experiment=self.experiment_id), self.log.grades(self.experiment_id),
                        grader=self.grader, experiment_id=self.experiment_id, **kwargs)

    def _repr_html_(self) -> str:
        return (self.findings()._repr_html_() + f"<p><b>{html_text(self.experiment_id)}</b>: retry spread</p>"
                + self.spread.to_html())

    def __repr__(self) -> str:
        return f"Retries({self.experiment_id!r})\n{self.spread.drop(columns=['answers']).to_string()}"


def retry(prompt: str | Path | PromptFile, inputs: str | Path | InputSet | list[dict] | None = None, *,
          n: int = 10, variant: str | None = None, grader: Grader | list[Grader] | None = None,
          key: AnswerKey | Callable[[str], str] = "normalized", log: RunLog | str | Path | None = None,
          tags: list[str] | None = None, id: str | None = None, config: RunConfig | None = None,
          **run: Unpack[RunOptions]) -> Retries:
    """Sample ``prompt`` ``n`` times per input (one variant, or all) and show the spread.

    Each sample is a real call with its own repeat index and seed (never served from the log
    unless ``replay=True``). ``grader`` (default: the prompt file's ``grader:``) grades every
    sample, so the result has a pass rate with an interval per input. ``key`` decides which
    outputs count as the same answer (see :func:`spread`).

        s = lab.retry("prompts/factual.yaml", "prompts/factual_inputs.yaml", n=10, variant="honest")
        s.spread          # distinct answers, majority, agreement, pass rate [low, high]
    """
    if "repeats" in run:
        raise ParameterError("retry: the number of samples is n=..., not repeats=...")
    cfg = RunConfig.of(config, **run, repeats=check_int("n", n, 1))
    _keyer(key)
    pf = as_prompt(prompt)
    graders = resolve_graders(grader, pf)
    exp = Experiment(pf, inputs, variants=[variant] if variant else None, log=log, tags=tags, id=id,
                     name=f"{pf.task}-retry", config=cfg)
    runs, graders = run_and_grade(exp, graders)
    return Retries(exp.id, exp.log, graders[-1].name if graders else None, key)
