"""Persona vs honest context: the same task in several framings, on identical inputs, repeat
indices and seeds, graded the same way and compared pair by pair."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Unpack

import pandas as pd

from ..config import PAIRED, RunConfig, RunOptions
from ..errors import ParameterError
from ..experiments import Experiment
from ..findings import Findings, findings
from ..graders import Grader
from ..holdout import with_selection
from ..inputs import InputSet
from ..names import html_text
from ..prompts import PromptFile
from ..stats import paired_difference, pairwise, rates
from ..store import RunLog
from ..tables import disagreements, escaped, side_by_side, with_grades
from ._common import as_prompt, resolve_graders, run_and_grade
from .escape import escape_report


@dataclass
class Comparison:
    """Variants of one prompt run on the same (input, repeat) pairs, with their grades.

    Every view reads the log, so grades added later (a judge, a person's ratings) show up.
    """

    experiment_id: str
    log: RunLog
    variants: list[str]
    grader: str | None
    graders: list[str] = field(default_factory=list)

    @property
    def runs(self) -> pd.DataFrame:
        """The experiment's answers with ``passed`` / ``score`` / ``label`` from ``grader``."""
        return with_grades(self.log.runs(experiment=self.experiment_id), self.log.grades(self.experiment_id),
                           grader=self.grader)

    def rates(self, value: str = "passed", *, split_by_tag: bool = False) -> pd.DataFrame:
        """Per-variant rate of ``value`` (``passed``, ``escaped``, ``answered``) with intervals over inputs."""
        return rates(self.runs, value=value, split_by_tag=split_by_tag)

    def difference(self, a: str | None = None, b: str | None = None, *, value: str = "passed",
                   split_by_tag: bool = True, higher_is_better: bool | None | Literal["auto"] = "auto",
                   method: Literal["t", "bootstrap"] = "t") -> pd.DataFrame:
        """Paired difference a - b (default: the first two variants) over the same (input, repeat)
        pairs, per tag and overall, with a verdict."""
        a = a or self.variants[0]
        b = b or (self.variants[1] if len(self.variants) > 1 else None)
        if b is None:
            raise ParameterError("difference: this comparison has one variant; name two to compare")
        return paired_difference(self.runs, a, b, value=value, split_by_tag=split_by_tag,
                                 higher_is_better=higher_is_better, method=method)

    def pairwise(self, *, value: str = "passed") -> pd.DataFrame:
        """Every pair of this comparison's variants, read as one Holm-adjusted family (with three or
        more framings, "which is best" asks all the pairs at once): :func:`lab.stats.pairwise`."""
        return pairwise(self.runs, self.variants, value=value)

    def escapes(self) -> pd.DataFrame:
        """Escape rate on unanswerable inputs, over-abstention, coverage and accuracy per variant."""
        return escape_report(self.runs)

    def escaped(self) -> pd.DataFrame:
        """The escaped outputs, with the inputs they escaped on."""
        return escaped(self.log.runs(experiment=self.experiment_id))

    def side_by_side(self) -> pd.DataFrame:
        """Outputs per (input, repeat), one column group per variant, with outcome and grade."""
        return side_by_side(self.log.runs(experiment=self.experiment_id), self.log.grades(self.experiment_id),
                            grader=self.grader)

    def disagreements(self, on: str = "auto") -> pd.DataFrame:
        """The (input, repeat) rows where the variants' outputs differ (by grade, outcome or answer)."""
        return disagreements(self.log.runs(experiment=self.experiment_id), self.log.grades(self.experiment_id),
                             grader=self.grader, on=on)

    def findings(self, a: str | None = None, b: str | None = None, **kwargs: Any) -> Findings:
        """The findings block: per framing rates by what escapes mean, the verdict a - b in words, caveats
        (the first says so when these inputs were used to choose between versions: lab.selection)."""
        f = findings(self.log.runs(experiment=self.experiment_id), self.log.grades(self.experiment_id),
                     a=a or self.variants[0], b=b or (self.variants[1] if len(self.variants) > 1 else None),
                     grader=self.grader, experiment_id=self.experiment_id, **kwargs)
        return with_selection(f, self.log, self.experiment_id)

    def _repr_html_(self) -> str:
        parts = [self.findings()._repr_html_(),
                 f"<p><b>{html_text(self.experiment_id)}</b>: {html_text(', '.join(self.variants))}; "
                 f"grader {html_text(str(self.grader))}</p>",
                 self.rates("escaped").to_html()]
        if self.grader:
            parts.append(self.rates().to_html())
        return "".join(parts)

    def __repr__(self) -> str:
        return f"Comparison({self.experiment_id!r}, variants={self.variants}, grader={self.grader!r})"

    def __str__(self) -> str:
        return str(self.findings())


def compare_framings(prompt: str | Path | PromptFile, inputs: str | Path | InputSet | list[dict] | None = None, *,
                     variants: list[str] | None = None, grader: Grader | list[Grader] | None = None,
                     log: RunLog | str | Path | None = None, tags: list[str] | None = None, id: str | None = None,
                     config: RunConfig | None = None, **run: Unpack[RunOptions]) -> Comparison:
    """Run framings of one task (persona, honest context, persona + escape hatch, ...) on the
    same inputs, repeat indices and seeds, grade them, and return a :class:`Comparison`.

    ``variants`` picks and orders the framings (default: all, in file order; the first two are
    what :meth:`Comparison.difference` compares by default). ``seed`` defaults to 0 so that the
    framings are paired on identical seeds and a rerun reproduces on seeded providers.
    ``grader`` defaults to the prompt file's ``grader:``; several graders may be given, the last
    one is the one views read (pass ``grader=`` names to the stats functions for others).
    How to run is a :class:`lab.config.RunConfig` (``config``) and/or its options as keywords
    (``model``, ``repeats``: 3 here, ``seed``: 0 here, ``params``, ``concurrency``, ``budget_usd``, ...).
    """
    cfg = RunConfig.of(config, defaults=PAIRED, **run)
    pf = as_prompt(prompt)
    graders = resolve_graders(grader, pf)
    chosen = pf.select(variants)
    if len(chosen) < 1:
        raise ParameterError(f"{pf.path}: no variants to compare")
    exp = Experiment(pf, inputs, variants=[v.name for v in chosen], log=log, tags=tags, id=id,
                     name=f"{pf.task}-framings", config=cfg)
    runs, graders = run_and_grade(exp, graders)
    return Comparison(exp.id, exp.log, [v.name for v in chosen], graders[-1].name if graders else None,
                      [g.name for g in graders])
