"""Confidence: does the model know when it does not know?

:func:`confidence` runs an experiment with ``confidence=True`` (token log-probabilities recorded
per run where the provider returns them), grades it, and returns a :class:`ConfidenceReport`:
calibration per variant and tag (Brier, ECE with intervals over inputs), a reliability figure,
the coverage-accuracy curve of abstaining below a threshold with the escape hatch as a point,
confident hallucinations on unanswerable inputs, and the probability-of-correct score next to
the sampled outcome. Models without log-probabilities (Anthropic) are reported as "no
confidence available"; their runs are logged and graded as usual.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Unpack

import pandas as pd

from .. import calibration as cal
from ..config import PAIRED, RunConfig, RunOptions
from ..experiments import Experiment
from ..graders import Grader
from ..grades import grade
from ..inputs import InputSet
from ..prompts import PromptFile
from ..store import RunLog
from ..tables import with_grades
from ._common import as_prompt, resolve_graders


@dataclass
class ConfidenceReport:
    """Confidence views over one experiment, read from the log."""

    experiment_id: str
    log: RunLog
    variants: list[str]
    grader: str | None
    no_confidence: list[str] = field(default_factory=list)
    which: cal.Which = "p_answer"

    @property
    def runs(self) -> pd.DataFrame:
        return with_grades(self.log.runs(experiment=self.experiment_id), self.log.grades(self.experiment_id),
                           grader=self.grader)

    def availability(self) -> pd.DataFrame:
        """Per model: whether confidence is available ("no confidence available" otherwise)."""
        return cal.availability(self.runs)

    def calibration(self, *, split_by_tag: bool = True, bins: int = 10) -> pd.DataFrame:
        return cal.calibration(self.runs, split_by_tag=split_by_tag, bins=bins, which=self.which)

    def reliability(self, *, bins: int = 10) -> pd.DataFrame:
        return cal.reliability(self.runs, bins=bins, which=self.which)

    def selective(self) -> pd.DataFrame:
        return cal.selective(self.runs, which=self.which)

    def hallucinations(self, *, threshold: float = 0.5) -> pd.DataFrame:
        """Answers given on unanswerable inputs and how confident they were."""
        return cal.confident_hallucinations(self.runs, threshold=threshold, which=self.which)

    def scores(self) -> pd.DataFrame:
        """Sampled pass rate next to the mean probability of being right."""
        return cal.probability_scores(self.runs)

    def reliability_figure(self, *, bins: int = 10):
        from ..plots import reliability

        return reliability(self.reliability(bins=bins))

    def selective_figure(self):
        from ..plots import selective_answering

        return selective_answering(self.selective())

    def _repr_html_(self) -> str:
        esc = html.escape
        avail = self.availability()
        missing = [m for m, s in avail["status"].items() if s == cal.NO_CONFIDENCE]
        note = "".join(f"<p>{esc(str(m))}: {cal.NO_CONFIDENCE}</p>" for m in missing)
        body = self.calibration(split_by_tag=False).to_html(escape=True) if len(missing) < len(avail) else ""
        return (f"<p><b>{esc(self.experiment_id)}</b>: confidence for {esc(', '.join(self.variants))}; "
                f"grader {esc(str(self.grader))}</p>{note}{body}")

    def __repr__(self) -> str:
        return f"ConfidenceReport({self.experiment_id!r}, variants={self.variants})"


def confidence(prompt: str | Path | PromptFile, inputs: str | Path | InputSet | list[dict] | None = None, *,
               variants: list[str] | None = None, grader: Grader | list[Grader] | None = None,
               log: RunLog | str | Path | None = None, tags: list[str] | None = None, id: str | None = None,
               which: cal.Which = "p_answer", config: RunConfig | None = None,
               **run: Unpack[RunOptions]) -> ConfidenceReport:
    """Run ``prompt`` with token log-probabilities recorded (``confidence=True``), grade it
    (``grader`` defaults to the prompt file's), and return a :class:`ConfidenceReport`."""
    cfg = RunConfig.of(config, defaults=PAIRED, **run).with_(confidence=True)
    pf = as_prompt(prompt)
    graders = resolve_graders(grader, pf)
    exp = Experiment(pf, inputs, variants=variants, log=log, tags=tags, id=id, name=f"{pf.task}-confidence",
                     config=cfg)
    exp.plan()
    runs = exp.run()
    if graders:
        grade(runs, graders)
    return ConfidenceReport(exp.id, exp.log, [v.name for v in exp.variants], graders[-1].name if graders else None,
                            list(exp.no_confidence), which)
