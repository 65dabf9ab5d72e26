"""A comparison view over the run log: pick experiments, variants and tags; see the figures from
:mod:`lab.plots` and the outputs side by side per input (escaped text)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any
import ipywidgets as W
import pandas as pd

from .. import plots, tables
from ..findings import findings
from ..store import RunLog

PLOTLY_MIME = "application/vnd.plotly.v1+json"

FIGURES = {
    "outcome rates by tag": lambda runs, grades, a, b: plots.outcome_rates(runs, grades),
    "paired difference": lambda runs, grades, a, b: plots.paired_difference(runs, a, b, grades),
    "retry spread": lambda runs, grades, a, b: plots.retry_spread(runs),
    "score by critique round": lambda runs, grades, a, b: plots.critique_rounds(runs, grades),
    "score by prompt version": lambda runs, grades, a, b: plots.score_by_version(runs, grades),
    "latency, tokens, cost": lambda runs, grades, a, b: plots.cost_latency(runs),
}


def figure_output(fig: Any) -> dict[str, Any]:
    """A plotly figure as an Output widget's display_data entry (rendered by JupyterLab's plotly
    extension; built here so that it works in any kernel, and outside one)."""
    return {"output_type": "display_data", "metadata": {},
            "data": {PLOTLY_MIME: json.loads(fig.to_json()), "text/plain": str(fig.layout.title.text or "figure")}}


def side_by_side(runs: pd.DataFrame, grades: pd.DataFrame | None = None, *, blind: bool = False) -> pd.DataFrame:
    """:func:`lab.tables.side_by_side` (outputs per input and repeat, one column group per
    variant); ``blind`` replaces the variant names with A, B, ... in a shuffled order."""
    table = tables.side_by_side(runs, grades)
    if not blind or table.empty:
        return table
    import random

    variants = [v for v in dict.fromkeys(table.columns.get_level_values(0)) if v not in ("input", "tags")]
    shuffled = list(variants)
    random.Random(len(runs)).shuffle(shuffled)
    names = {v: f"variant {chr(65 + shuffled.index(v))}" for v in variants}
    return table.rename(columns=names, level=0)


class CompareView(W.VBox):
    """Choose experiments, variants and tags; the figure and the side-by-side table follow."""

    def __init__(self, log: RunLog | str | Path | None = None, experiments: list[str] | None = None):
        self.run_log = log if isinstance(log, RunLog) else RunLog(log)
        exps = self.run_log.experiments()
        ids = list(exps["id"]) if len(exps) else []
        self.experiments = W.SelectMultiple(options=ids, value=tuple(experiments or ids[-1:]), description="experiments",
                                            layout=W.Layout(width="420px", height="110px"))
        self.variants = W.SelectMultiple(description="variants", layout=W.Layout(width="240px", height="110px"))
        self.tags = W.SelectMultiple(description="tags", layout=W.Layout(width="240px", height="110px"))
        self.figure = W.Dropdown(options=list(FIGURES), description="figure", layout=W.Layout(width="360px"))
        self.blind = W.Checkbox(value=False, description="hide variant names", indent=False)
        self.refresh = W.Button(description="Refresh", icon="refresh")
        self.status = W.HTML("")
        self.findings = W.HTML("")  # lab.findings over the selection: the verdict in words, above the figure
        self.plot = W.Output()
        self.table = W.Output()
        for w in (self.experiments, self.variants, self.tags, self.figure, self.blind):
            w.observe(lambda _c, w=w: self._update(choices=w is self.experiments), names="value")
        self.refresh.on_click(lambda _: self._update(choices=True))
        super().__init__([W.HBox([self.experiments, self.variants, self.tags]),
                          W.HBox([self.figure, self.blind, self.refresh]), self.status, self.findings, self.plot,
                          self.table])
        self._update(choices=True)

    def selected_runs(self) -> pd.DataFrame:
        """The log rows the current choices select."""
        if not self.experiments.value:
            return self.run_log.runs(experiment="").iloc[:0]
        runs = self.run_log.runs(experiment=list(self.experiments.value))
        if self.variants.value:
            runs = runs[runs["variant"].isin(self.variants.value)]
        if self.tags.value:
            chosen = set(self.tags.value)
            runs = runs[[bool(set(t or []) & chosen) for t in runs["input_tags"]]]
        return runs

    def _update(self, choices: bool = False) -> None:
        if getattr(self, "_updating", False):
            return
        self._updating = True
        try:
            if choices:
                all_runs = self.run_log.runs(experiment=list(self.experiments.value)) if self.experiments.value else None
                variants = sorted(all_runs["variant"].dropna().unique()) if all_runs is not None else []
                tags = sorted({t for ts in all_runs["input_tags"] for t in (ts or [])}) if all_runs is not None else []
                self.variants.options, self.tags.options = variants, tags
            runs = self.selected_runs()
            grades = self.run_log.grades()
            variants = list(dict.fromkeys(runs["variant"].dropna())) if len(runs) else []
            a, b = (variants + [None, None])[:2]
            # hidden in blind mode: the findings name the variants
            self.findings.value = "" if runs.empty or self.blind.value else findings(runs, grades)._repr_html_()
            self.plot.outputs = ()
            self.table.outputs = ()
            name = self.figure.value
            if name == "paired difference" and (a is None or b is None):
                self.status.value = "paired difference needs two variants in the selection"
                return
            fig = FIGURES[name](runs, grades, a, b)
            self.plot.outputs = (figure_output(fig),)
            self.table.append_display_data(side_by_side(runs, grades, blind=self.blind.value))
            self.status.value = f"{len(runs)} calls selected"
        except Exception as exc:
            self.status.value = f"<span style='color:#d62728'>error: {html.escape(str(exc))}</span>"
        finally:
            self._updating = False


def compare_view(log: RunLog | str | Path | None = None, experiments: list[str] | None = None) -> CompareView:
    """The comparison view over the log (default: the latest experiment selected)."""
    return CompareView(log, experiments)
