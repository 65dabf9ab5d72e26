"""A comparison view over the run log: pick experiments, variants and tags; read the findings
first, then the figures from :mod:`lab.plots` and the outputs side by side per input (escaped text).

Blind ("hide variant names") renames the variants to "variant A", "variant B", ... in a shuffled
order everywhere the view shows them: the findings, the figure (legend, axes, hover text, title)
and the table."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as W
import pandas as pd

from .. import plots, tables
from ..findings import findings
from ..grid import results_grid
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


def blind_names(runs: pd.DataFrame) -> dict[str, str]:
    """Variant name -> "variant A", "variant B", ... in an order shuffled by the experiments (the
    same experiments get the same letters, so the picker, the figure and the table agree)."""
    import random

    variants = sorted(runs["variant"].dropna().astype(str).unique()) if len(runs) else []
    shuffled = list(variants)
    exps = sorted(runs["experiment_id"].dropna().astype(str).unique()) if len(runs) else []
    random.Random("|".join(exps)).shuffle(shuffled)
    return {v: f"variant {chr(65 + shuffled.index(v))}" for v in variants}


def blinded(runs: pd.DataFrame, names: dict[str, str] | None = None) -> pd.DataFrame:
    """``runs`` with every variant name (and the prompt version, which would tell them apart)
    replaced, for figures and tables that must not say which variant is which."""
    if runs.empty:
        return runs
    names = names if names is not None else blind_names(runs)
    out = runs.copy()
    out["variant"] = out["variant"].map(lambda v: names.get(str(v), v) if v is not None else v)
    if "prompt_version" in out:
        out["prompt_version"] = out["variant"]
    return out


def side_by_side(runs: pd.DataFrame, grades: pd.DataFrame | None = None, *, blind: bool = False) -> pd.DataFrame:
    """:func:`lab.tables.side_by_side` (outputs per input and repeat, one column group per
    variant); ``blind`` replaces the variant names with A, B, ... in a shuffled order."""
    return tables.side_by_side(blinded(runs) if blind else runs, grades)


FINDINGS_STYLE = ("border-left:4px solid #1f77b4;background:#f5f8fc;padding:8px 12px;margin:6px 0 12px 0;"
                  "font-size:14px;line-height:1.45;max-width:1100px")


@dataclass(frozen=True)
class FindingsBlock:
    """The findings as HTML; a notebook cell that ends with one shows it (also in the HTML report)."""

    html: str

    def _repr_html_(self) -> str:
        return self.html


def findings_block(runs: pd.DataFrame, grades: pd.DataFrame | None = None) -> FindingsBlock:
    """The findings for a selection (:func:`lab.findings.findings`: per framing rates with intervals
    and n, the verdict in words, caveats) as an HTML block (class ``promptlab-findings``) that the
    compare view and the notebooks show first, above every figure."""
    from ..report import answer

    if runs.empty:
        return FindingsBlock(answer("Findings: no calls selected yet")._repr_html_())
    a, b = (sorted(str(v) for v in runs["variant"].dropna().unique()) + [None, None])[:2]
    block = answer(findings(runs, grades, a=a, b=b))  # one order everywhere: the paired figure says a - b too
    return FindingsBlock(block._repr_html_())

def experiment_choices(log: RunLog) -> list[tuple[str, str]]:
    """(label, id) for every experiment with at least one call, grouped by task, newest first:
    ``sentiment · 2026-11-28 22:01 UTC · 48 calls · 3f2a``."""
    exps = log.experiments()
    if exps.empty:
        return []
    exps = exps[exps["calls"].fillna(0) > 0].copy()
    exps["task"] = exps["name"].fillna("(unnamed)").astype(str)
    exps["when"] = exps["last_call_at"].fillna(exps["created_at"]).astype(str)
    exps = exps.sort_values(["task", "when"], ascending=[True, False])
    out = []
    for row in exps.itertuples():
        calls = int(row.calls)
        when = row.when[:16].replace("T", " ")
        # the whole id: two experiments of one task from two notebooks must never read alike
        out.append((f"{row.task} · {when} UTC · {calls} call{'s' if calls != 1 else ''} · {row.id}", row.id))
    return out


class CompareView(W.VBox):
    """Choose experiments, variants and tags; the figure and the side-by-side table follow."""

    def __init__(self, log: RunLog | str | Path | None = None, experiments: list[str] | None = None):
        self.run_log = log if isinstance(log, RunLog) else RunLog(log)
        choices = experiment_choices(self.run_log)
        ids = [i for _, i in choices]
        latest = self._latest(ids)
        wide = {"description_width": "initial"}
        self.experiments = W.SelectMultiple(options=choices, value=tuple(e for e in (experiments or latest) if e in ids),
                                            description="experiments", style=wide,
                                            layout=W.Layout(width="520px", height="120px"))
        self.variants = W.SelectMultiple(description="variants", style=wide, layout=W.Layout(width="240px",
                                                                                              height="120px"))
        self.tags = W.SelectMultiple(description="tags", style=wide, layout=W.Layout(width="240px", height="120px"))
        self.figure = W.Dropdown(options=list(FIGURES), description="figure", style=wide,
                                 layout=W.Layout(width="360px"))
        self.blind = W.Checkbox(value=False, description="hide variant names", indent=False,
                                layout=W.Layout(width="auto"))
        self.refresh = W.Button(description="Refresh", icon="refresh", layout=W.Layout(width="auto"))
        self.status = W.HTML("")
        self.findings = W.HTML("")  # first, above the figure
        self.findings.add_class("promptlab-findings-area")
        self.plot = W.Output()
        self.grid = W.HTML("")  # the results grid: inputs x variants (or versions), the outputs one click away
        self.table = W.Output()
        self._names: dict[str, str] = {}
        for w in (self.experiments, self.variants, self.tags, self.figure, self.blind):
            w.observe(lambda _c, w=w: self._update(choices=w in (self.experiments, self.blind)), names="value")
        self.refresh.on_click(lambda _: self._refresh())
        super().__init__([W.HBox([self.experiments, self.variants, self.tags], layout=W.Layout(flex_flow="row wrap")),
                          W.HBox([self.figure, self.blind, self.refresh]), self.status, self.findings, self.plot,
                          self.grid])
        self.add_class("promptlab-compare")
        self._update(choices=True)

    def _latest(self, ids: list[str]) -> list[str]:
        if not ids:
            return []
        exps = self.run_log.experiments()
        exps = exps[exps["id"].isin(ids)]
        # "latest" is the latest finished run: one still in progress has a "started" event and no "finished"
        events = self.run_log.events()
        if len(events):
            running = (set(events.loc[events["kind"] == "started", "experiment_id"])
                       - set(events.loc[events["kind"] == "finished", "experiment_id"]))
            done = exps[~exps["id"].isin(running)]
            exps = done if len(done) else exps
        return [str(exps.sort_values("last_call_at")["id"].iloc[-1])]

    def _refresh(self) -> None:
        keep = self.experiments.value
        self.experiments.options = experiment_choices(self.run_log)
        ids = {i for _, i in self.experiments.options}
        self.experiments.value = tuple(e for e in keep if e in ids)
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
                self._names = blind_names(all_runs) if all_runs is not None else {}
                keep = self.variants.value
                # blind: the picker names the variants as the figure does
                self.variants.options = (sorted((self._names.get(v, v), v) for v in variants) if self.blind.value
                                         else variants)
                self.variants.value = tuple(v for v in keep if v in variants)
                self.tags.options = tags
            runs = self.selected_runs()
            if self.blind.value:
                runs = blinded(runs, self._names)
            grades = self.run_log.grades()
            variants = sorted(str(v) for v in runs["variant"].dropna().unique()) if len(runs) else []
            a, b = (variants + [None, None])[:2]  # the order the findings use: honest - persona, A - B
            self.plot.outputs = ()
            self.table.outputs = ()
            self.grid.value = ""
            self.findings.value = findings_block(runs, grades).html  # blind: over the blinded runs (letters only)
            name = self.figure.value
            if name == "paired difference" and (a is None or b is None):
                self.status.value = "paired difference needs two variants in the selection"
                return
            fig = FIGURES[name](runs, grades, a, b)
            self.plot.outputs = (figure_output(fig),)
            self.grid.value = results_grid(runs, grades, columns=_grid_columns(runs)).html
            self.status.value = f"{len(runs)} calls selected"
        except Exception as exc:
            self.status.value = f"<span style='color:#d62728'>error: {html.escape(str(exc))}</span>"
        finally:
            self._updating = False


def _grid_columns(runs: pd.DataFrame) -> str:
    """Versions across when a variant was run in more than one version (did the edit help?), else variants."""
    if len(runs) and "prompt_version" in runs and runs.groupby("variant")["prompt_version"].nunique().max() > 1:
        return "version"
    return "variant"


def compare_view(log: RunLog | str | Path | None = None, experiments: list[str] | None = None) -> CompareView:
    """The comparison view over the log (default: the latest experiment selected)."""
    return CompareView(log, experiments)
