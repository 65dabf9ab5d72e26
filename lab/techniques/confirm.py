"""Confirm a choice once: the chosen version and the baseline on the held-out inputs.

A version chosen because it looked best on the dev inputs has an optimistic advantage there
(:mod:`lab.selection`). Held-out inputs took no part in the choice, so the paired comparison on
them is the confirmed result. Confirming spends them: each confirmation is recorded in the log
(``lab.holdout.uses``), and a later one on the same held-out inputs says how many choices they
have been used for.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Unpack

from ..config import PAIRED, RunConfig, RunOptions
from ..errors import ParameterError
from ..experiments import Experiment
from ..findings import Findings
from ..graders import Grader
from ..holdout import Split, as_inputs, find_split, record_use, uses
from ..inputs import InputSet
from ..prompts import PromptFile, Variant
from ..store import RunLog
from ._common import as_prompt, open_log, resolve_graders, run_and_grade
from .framing import Comparison


@dataclass
class Confirmation(Comparison):
    """A :class:`Comparison` of a chosen version and its baseline on held-out inputs."""

    input_set: str = ""
    held_out: int = 0
    uses: int = 1  # choices these held-out inputs have been used for, this one included

    @property
    def candidate(self) -> str:
        return self.variants[0]

    @property
    def baseline(self) -> str:
        return self.variants[1]

    def use_note(self) -> str:
        """How spent the held-out inputs are, in one sentence."""
        where = f"the {self.held_out} held-out inputs of {self.input_set!r}"
        if self.uses == 1:
            return f"confirmed on {where}, which took no part in the choice (their first use for a choice)"
        return (f"{where} have now been used for {self.uses} choices (every use is in the log): each reuse makes "
                "a confirmation on them more optimistic; fresh inputs confirm best")

    def findings(self, a: str | None = None, b: str | None = None, **kwargs: Any) -> Findings:
        f = super().findings(a, b, **kwargs)
        return dataclasses.replace(f, caveats=[self.use_note(), *f.caveats])

    def figure(self, value: str = "passed") -> Any:
        """Every version's rate of ``value`` (``passed``, or a measure of :mod:`lab.findings` such as
        ``appropriate``) on the dev inputs (the search, oldest first) beside the
        confirmed rates of the candidate and the baseline on the held-out inputs, with 95% intervals
        over inputs (:func:`lab.stats.rates`)."""
        import plotly.graph_objects as go

        from ..findings import behaviour
        from ..stats import rates
        from ..tables import with_grades

        held = behaviour(with_grades(self.log.runs(experiment=self.experiment_id), self.log.grades(self.experiment_id),
                                     grader=self.grader))
        split = find_split(self.input_set, self.log)
        names = {v.split("@")[0] for v in self.variants}
        every = self.log.runs(columns=["id", "experiment_id", "task", "variant", "prompt_version", "input_id",
                                       "input_tags", "outcome", "role", "repeat", "model"])
        dev = every[every["input_id"].isin(split.dev if split else []) & every["variant"].isin(names)
                    & (every["task"] == held["task"].iloc[0]) & (every["role"].fillna("answer") == "answer")]
        dev = behaviour(with_grades(dev, self.log.grades(), grader=self.grader))
        searched = rates(dev.assign(version=dev["variant"] + " " + dev["prompt_version"].str[:7]), value=value,
                         by="version")
        confirmed = rates(held, value=value).reindex(self.variants)
        fig = go.Figure()
        for label, r, symbol in (("dev (chosen on these)", searched, "circle"),
                                 ("held-out (confirmed)", confirmed, "diamond")):
            fig.add_trace(go.Scatter(
                x=[str(i) if symbol == "circle" else f"held-out: {i}" for i in r.index], y=r["rate"], name=label,
                mode="markers", marker={"symbol": symbol, "size": 11},
                error_y={"type": "data", "symmetric": False, "array": r["high"] - r["rate"],
                         "arrayminus": r["rate"] - r["low"]}))
        fig.update_layout(title=f"{value} by version: {len(searched)} tried on {len(split.dev) if split else 0} dev "
                                f"inputs, confirmed on {self.held_out} held-out (use {self.uses})",
                          yaxis={"range": [0, 1], "title": f"{value} rate (95% interval over inputs)"},
                          xaxis={"title": "version"}, template="plotly_white")
        return fig

    def __repr__(self) -> str:
        return (f"Confirmation({self.experiment_id!r}, candidate={self.candidate!r}, baseline={self.baseline!r}, "
                f"uses={self.uses})")


def _variant(pf: PromptFile, which: str | Variant, log: RunLog, role: str) -> Variant:
    """A variant of ``pf`` by name, a :class:`Variant` as given, or an earlier version by its id."""
    if isinstance(which, Variant):
        return which
    if which in pf.variants:
        return pf.variants[which]
    known = log.prompt_versions(pf.path)
    hit = known[known["version"].astype(str).str.startswith(str(which))] if len(known) else known
    if len(hit) == 1 and hit.iloc[0]["variant"] in pf.variants:
        row = hit.iloc[0]
        templates = tuple((r, t) for r, t in row["templates"])
        return dataclasses.replace(pf.variants[row["variant"]], templates=templates, version=str(row["version"]))
    raise ParameterError(f"{role}={which!r}: not a variant of {pf.path} ({sorted(pf.variants)}) nor one version "
                         "of it in the log")


def _distinct(cand: Variant, base: Variant) -> tuple[Variant, Variant]:
    """Two versions of one variant get names that tell them apart (``name@version``)."""
    if cand.name != base.name:
        return cand, base
    if cand.version == base.version:
        raise ParameterError(f"candidate and baseline are the same version of {cand.name!r} ({cand.version})")
    return (dataclasses.replace(cand, name=f"{cand.name}@{cand.version[:8]}"),
            dataclasses.replace(base, name=f"{base.name}@{base.version[:8]}"))


def confirm(prompt: str | Path | PromptFile, inputs: str | Path | InputSet | list[dict], *,
            candidate: str | Variant, baseline: str | Variant, grader: Grader | list[Grader] | None = None,
            log: RunLog | str | Path | None = None, id: str | None = None, config: RunConfig | None = None,
            **run: Unpack[RunOptions]) -> Confirmation:
    """Run ``candidate`` (the chosen version) and ``baseline`` on the held-out part of ``inputs``
    with the usual repeats and paired seeds, grade them, and return the confirmed result.

    ``candidate`` / ``baseline``: a variant name of ``prompt``, a :class:`lab.prompts.Variant`
    (e.g. the workbench's edited one), or an earlier version's id from the log. The input set
    needs a split (:func:`lab.split_inputs`, made before iterating). Each call is one use of the
    held-out inputs, recorded in the log; the result's findings say how many there have been."""
    cfg = RunConfig.of(config, defaults=PAIRED, **run)
    pf = as_prompt(prompt)
    rows = as_inputs(inputs)
    run_log = open_log(log)
    split: Split | None = find_split(rows, run_log)
    if split is None:
        raise ParameterError(f"input set {rows.name!r} has no held-out part: split it with lab.split_inputs(...) "
                             "before iterating (inputs used to choose a version cannot confirm it)")
    cand, base = _distinct(_variant(pf, candidate, run_log, "candidate"), _variant(pf, baseline, run_log, "baseline"))
    chosen = dataclasses.replace(pf, variants={cand.name: cand, base.name: base})
    graders = resolve_graders(grader, pf)
    exp = Experiment(chosen, rows, split="held_out", variants=[cand.name, base.name], log=run_log, id=id,
                     name=f"{pf.task}-confirm", config=cfg)
    runs, graders = run_and_grade(exp, graders)
    n = record_use(run_log, split, experiment=exp.id, candidate=cand.name, candidate_version=cand.version,
                   baseline=base.name, baseline_version=base.version)
    return Confirmation(exp.id, run_log, [cand.name, base.name], graders[-1].name if graders else None,
                        [g.name for g in graders], input_set=split.input_set, held_out=len(exp.inputs), uses=n)


def confirmations(input_set: str, log: RunLog | str | Path | None = None) -> Any:
    """Every confirmation on an input set's held-out part (a table, oldest first)."""
    return uses(open_log(log), input_set)
