"""Plotly figures drawn from run-log DataFrames only (``log.runs(...)``, ``log.grades(...)``).

Every function takes the DataFrames as the log returns them, so a figure can be redrawn exactly
from any version of the log (``as_of=...``). Titles say what the figure shows; axes carry units.
Empty input gives an empty figure that says so, never an exception, so a notebook runs end to end.

"Correct" comes only from grade rows (a grader's ``passed``; the latest grade of the grader that
``lab.tables.with_grades`` picks), the same source ``lab.stats`` reads; every interval drawn here is
computed by ``lab.stats`` (clustered by input), so a figure and a table never disagree. Differences
are A - B as named in the call. Escaped and error rows are outcomes of their own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .errors import ParameterError
from .tables import outcome_categories, run_scores

__all__ = [
    "outcome_rates", "paired_difference", "retry_spread", "critique_rounds", "score_by_version",
    "cost_latency", "ablation_effects", "reliability", "selective_answering",
]

CATEGORY_ORDER = ["answered-correct", "answered-wrong", "answered", "escaped", "error"]
CATEGORY_COLORS = {"answered-correct": "#2ca02c", "answered-wrong": "#d62728", "answered": "#1f77b4",
                   "escaped": "#ff7f0e", "error": "#7f7f7f"}
# what a legend says for each category (never the raw key "answered-correct")
CATEGORY_WORDS = {"answered-correct": "correct", "answered-wrong": "wrong", "answered": "answered (ungraded)",
                  "escaped": "escaped", "error": "error"}
Metric = Literal["correct", "escaped", "answered", "error", "score"]


def _empty(title: str, why: str = "no runs to show yet") -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False},
                      annotations=[{"text": why, "showarrow": False, "font": {"size": 16}, "xref": "paper",
                                    "yref": "paper", "x": 0.5, "y": 0.5}])
    return fig


VARIANT_PALETTE = ["#1f77b4", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#ff7f0e", "#2ca02c"]


def variant_colors(names: Iterable[object]) -> dict[str, str]:
    """One colour per variant, the same in every figure of a report: the variants in sorted order
    take the palette in turn (so two variants never share a colour, and ``honest`` keeps its
    colour whether a figure lists it first or last)."""
    ordered = sorted({str(n) for n in names})
    return {n: VARIANT_PALETTE[i % len(VARIANT_PALETTE)] for i, n in enumerate(ordered)}


def _label(df: pd.DataFrame, col: str = "variant") -> pd.Series:
    return df[col].fillna("(none)").astype(str)


# ---- figures ---------------------------------------------------------------------------------

def outcome_rates(runs: pd.DataFrame, grades: pd.DataFrame | None = None, *, by: str = "variant",
                  split_by_tag: bool = True, level: float = 0.95, grader: str | None = None) -> go.Figure:
    """Share of calls per outcome (answered-correct / answered-wrong / escaped / error) per variant,
    with intervals over inputs from :func:`lab.stats.rates`, one panel per input tag (a row with
    two tags counts in both panels)."""
    from .stats import MIN_INPUTS, rates

    title = f"Outcome rates per {by} with {level:.0%} intervals over inputs" + (", by input tag" if split_by_tag else "")
    if runs.empty:
        return _empty(title)
    df = runs.copy()
    df["category"] = outcome_categories(df, grades, grader=grader)
    df[by] = _label(df, by)
    if not split_by_tag:
        df["input_tags"] = [["all inputs"]] * len(df)
    parts = []
    for cat in CATEGORY_ORDER:
        if cat == "answered" and not (df["category"] == cat).any():
            continue
        r = rates(df.assign(_is=(df["category"] == cat).astype(float)), value="_is", by=by, split_by_tag=True,
                  confidence=level).reset_index()
        parts.append(r.assign(category=cat))
    table = pd.concat(parts, ignore_index=True)
    table = table[table["tag"] != "all"] if split_by_tag else table[table["tag"] == "all inputs"]
    table = table.assign(rate=100 * table["rate"], plus=100 * (table["high"] - table["rate"]),
                         minus=100 * (table["rate"] - table["low"]))
    # below the size at which an interval means anything, a rate is shown as its counts, with no whisker
    few = table["inputs"] < MIN_INPUTS
    table.loc[few, ["plus", "minus"]] = 0.0
    table["label"] = [f"{int(k)}/{int(n)}" for k, n in zip(table["k"], table["n"])]
    cats = [CATEGORY_WORDS[c] for c in CATEGORY_ORDER if c in set(table["category"])]
    table["category"] = table["category"].map(CATEGORY_WORDS)
    if few.any():
        title += f" (no interval below {MIN_INPUTS} inputs: counts only)"
    panels = table["tag"].nunique()
    cols = min(panels, FACET_COLUMNS)
    grid_rows = math.ceil(panels / cols)
    fig = px.bar(table, x=by, y="rate", color="category", barmode="group", facet_col="tag", facet_col_wrap=cols,
                 facet_row_spacing=0.3 / grid_rows if grid_rows > 1 else 0.0, facet_col_spacing=0.04,
                 error_y="plus", error_y_minus="minus", category_orders={"category": cats}, text="label",
                 color_discrete_map={CATEGORY_WORDS[k]: c for k, c in CATEGORY_COLORS.items()},
                 hover_data={"k": True, "n": True, "inputs": True, "plus": False, "minus": False, "label": False},
                 labels={"rate": "share of calls (%)", by: by, "category": "outcome"}, title=title)
    fig.for_each_annotation(lambda a: a.update(text=a.text.replace("tag=", "tag: ")))
    _facet_layout(fig, grid_rows, "share of calls (%)")
    fig.update_traces(textposition="outside", cliponaxis=False, textfont_size=9, textangle=0)
    fig.update_layout(bargroupgap=0.04)
    fig.update_yaxes(range=[0, 118])
    return fig


FACET_COLUMNS = 4  # panels per row: up to 8 tags make two rows that do not overlap


def _facet_layout(fig: go.Figure, grid_rows: int, y_title: str) -> None:
    """Room for every panel of a wrapped facet grid: height grows with the rows, the y title is
    written once (a title per row sits on the panel to its left), the legend goes above the plot."""
    fig.for_each_yaxis(lambda a: a.update(title_text=""))
    fig.update_layout(height=140 + 300 * grid_rows, margin={"l": 80, "r": 20, "t": 110, "b": 60},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.0 + 0.12 / grid_rows, "x": 0,
                              "title": {"text": ""}})
    if grid_rows == 1:
        fig.update_layout(yaxis_title_text=y_title)
    else:
        fig.add_annotation(text=y_title, textangle=-90, showarrow=False, xref="paper", yref="paper", x=0, xshift=-42,
                           y=0.5, xanchor="right", yanchor="middle", font={"size": 14})


_METRIC_VALUE = {"correct": "passed", "score": "score", "escaped": "escaped", "answered": "answered", "error": "error"}


def paired_difference(runs: pd.DataFrame, a: str, b: str, grades: pd.DataFrame | None = None, *,
                      metric: Metric = "correct", level: float = 0.95, grader: str | None = None) -> go.Figure:
    """Paired difference ``a - b`` in ``metric`` (as :func:`lab.stats.paired_difference` computes it:
    pairs on input, repeat and model, interval over inputs), for all inputs and per input tag. A
    whole interval right of zero means ``a`` is higher. The hover text gives the verdict."""
    from .stats import paired_difference as stats_difference
    from .tables import with_grades

    what = {"correct": "pass rate", "score": "mean score", "escaped": "escape rate",
            "answered": "answer rate", "error": "error rate"}[metric]
    title = f"Paired difference in {what}: {a} minus {b} ({level:.0%} interval over inputs)"
    if runs.empty:
        return _empty(title)
    have = set(runs["variant"].dropna())
    for name in (a, b):
        if name not in have:
            raise ParameterError(f"paired_difference: no runs of variant {name!r}; the runs have {sorted(have)}")
    df = runs[runs["variant"].isin([a, b]) & (runs["role"].fillna("answer") == "answer")]
    df = with_grades(df, grades, grader=grader)
    value = _METRIC_VALUE[metric]
    if value in ("passed", "score") and df[value].isna().all():
        return _empty(title, f"no grades to compare {a} and {b} by (grade the runs, or give inputs an expected answer)")
    table = stats_difference(df, a, b, value=value, split_by_tag=True, confidence=level).reset_index()
    table = table[table["pairs"] > 0]
    if table.empty:
        return _empty(title, f"no inputs where both {a} and {b} have a {value} value")
    table["group"] = ["all inputs" if t == "all" else f"tag: {t}" for t in table["tag"]]
    mean, low, high = 100 * table["difference"], 100 * table["low"], 100 * table["high"]
    fig = go.Figure(go.Scatter(
        x=mean, y=table["group"], mode="markers+text", marker={"size": 11},
        # the n label sits above the interval line, never on it
        text=[f"n={i} inputs, {p} pairs" for i, p in zip(table["inputs"], table["pairs"])],
        textposition="top center", textfont={"size": 12},
        error_x={"type": "data", "symmetric": False, "array": (high - mean).fillna(0),
                 "arrayminus": (mean - low).fillna(0)},
        customdata=np.stack([table["pairs"], table["inputs"], table["verdict"]], axis=-1),
        hovertemplate="%{y}: %{x:.1f} points (%{customdata[1]} inputs, %{customdata[0]} pairs): "
                      "%{customdata[2]}<extra></extra>",
    ))
    fig.add_vline(x=0, line_dash="dash", line_color="gray")
    fig.update_layout(title=title, xaxis_title=f"{what}, {a} − {b} (percentage points)",
                      yaxis_title="inputs", yaxis={"autorange": "reversed"}, height=150 + 60 * len(table),
                      margin={"t": 60})
    if value != "score":  # a difference of two rates lives in -100..100 points: a fixed axis keeps figures comparable
        fig.update_xaxes(range=[-105, 105], dtick=25, zeroline=False)
    return fig


def retry_spread(runs: pd.DataFrame) -> go.Figure:
    """For each input (and variant): agreement across retries, the share of samples giving the most
    common answer (the whole output, normalized as ``lab.text.normalize`` does). Consistent answers suggest the model "knows";
    scatter suggests guessing. The label on each bar is the number of distinct answers."""
    title = "Retry spread per input: agreement across samples (label: distinct answers, n samples)"
    df = runs[(runs["outcome"] != "error") & (runs["role"].fillna("answer") == "answer")].copy() if len(runs) else runs
    if df.empty:
        return _empty(title)
    from .text import normalize

    df["answer"] = [normalize(o) or "(empty)" for o in df["output"]]
    df["variant"] = _label(df)
    rows = []
    for (inp, var), part in df.groupby(["input_id", "variant"], sort=False):
        counts = part["answer"].value_counts()
        rows.append({"input_id": inp, "variant": var, "samples": len(part), "distinct": len(counts),
                     "agreement": 100 * counts.iloc[0] / len(part),
                     "answers": ", ".join(f"{k} ×{v}" for k, v in counts.items())})
    table = pd.DataFrame(rows)
    table["label"] = [f"{int(d)} distinct<br>n={int(n)}" for d, n in zip(table["distinct"], table["samples"])]
    fig = px.bar(table, x="input_id", y="agreement", color="variant", barmode="group", text="label",
                 color_discrete_map=variant_colors(table["variant"].unique()),
                 hover_data={"samples": True, "answers": True, "distinct": True},
                 labels={"agreement": "samples agreeing with the most common answer (%)", "input_id": "input"},
                 title=title)
    fig.update_traces(textangle=0, textposition="inside", insidetextanchor="end")
    fig.update_yaxes(range=[0, 105])
    return fig


def critique_rounds(runs: pd.DataFrame, grades: pd.DataFrame | None = None, *, level: float = 0.95) -> go.Figure:
    """Mean score of the answer after each self-critique round (round 0: the first answer), per
    variant, with intervals. Critique rows themselves are not scored."""
    title = f"Score by self-critique round ({level:.0%} intervals; round 0 is the first answer)"
    if runs.empty:
        return _empty(title)
    df = runs[runs["role"].fillna("answer").isin(["answer", "revision"])].copy()
    df["score"] = run_scores(df, grades)
    df["variant"] = _label(df)
    df = df[df["score"].notna()]
    if df.empty:
        return _empty(title, "no graded answers (grade them, or give the inputs an expected answer)")
    from .stats import means

    fig = go.Figure()
    names = list(dict.fromkeys(df["variant"]))
    colors = variant_colors(names)
    # variants side by side around each round, their n labels on alternate sides: no line hides another
    offsets = {v: 0.08 * (i - (len(names) - 1) / 2) for i, v in enumerate(names)}
    positions = {v: ("top left" if i % 2 == 0 else "bottom right") for i, v in enumerate(names)}
    for var, part in df.groupby("variant", sort=False):
        agg = means(part, value="score", by="round", confidence=level, bounds=(0.0, 1.0)).reset_index()
        fig.add_trace(go.Scatter(x=agg["round"] + offsets[var], y=100 * agg["mean"], mode="lines+markers+text",
                                 name=var, line={"color": colors[str(var)]},
                                 text=[f"n={n}" for n in agg["n"]], textposition=positions[var],
                                 error_y={"type": "data", "symmetric": False,
                                          "array": (100 * (agg["high"] - agg["mean"])).fillna(0),
                                          "arrayminus": (100 * (agg["mean"] - agg["low"])).fillna(0)},
                                 customdata=agg["n"],
                                 hovertemplate="%{y:.1f}% (n=%{customdata})<extra>" + var + "</extra>"))
    fig.update_layout(title=title, xaxis_title="critique round (number of revisions)",
                      yaxis_title="mean score (%)", xaxis={"dtick": 1}, legend_title="variant")
    fig.update_yaxes(range=[-5, 105])
    return fig


def score_by_version(runs: pd.DataFrame, grades: pd.DataFrame | None = None, *, level: float = 0.95) -> go.Figure:
    """Mean score of each prompt version, placed at the time the version was first run, one line per
    variant: did editing the prompt help?"""
    title = f"Score by prompt version over time ({level:.0%} intervals)"
    if runs.empty:
        return _empty(title)
    df = runs[runs["role"].fillna("answer") == "answer"].copy()
    df["score"] = run_scores(df, grades)
    df["variant"] = _label(df)
    df = df[df["score"].notna() & df["prompt_version"].notna()]
    if df.empty:
        return _empty(title, "no graded answers (grade them, or give the inputs an expected answer)")
    df["when"] = pd.to_datetime(df["finished_at"], utc=True, format="ISO8601")
    from .stats import means

    # versions are placed in the order they were first run, one tick each, labelled with the minute
    # (a time axis over a few seconds of work ticks at sub-millisecond spacing)
    firsts = df.groupby("prompt_version")["when"].min().sort_values()
    ticks = {v: f"{v[:8]}<br>{t:%Y-%m-%d %H:%M}" for v, t in firsts.items()}
    fig = go.Figure()
    colors = variant_colors(df["variant"].unique())
    for var, part in df.groupby("variant", sort=False):
        agg = means(part, value="score", by="prompt_version", confidence=level, bounds=(0.0, 1.0))
        agg["when"] = part.groupby("prompt_version")["when"].min()
        agg = agg.sort_values("when")
        fig.add_trace(go.Scatter(x=[ticks[v] for v in agg.index], y=100 * agg["mean"], mode="lines+markers+text",
                                 name=var, line={"color": colors[str(var)]},
                                 error_y={"type": "data", "symmetric": False,
                                                    "array": (100 * (agg["high"] - agg["mean"])).fillna(0),
                                                    "arrayminus": (100 * (agg["mean"] - agg["low"])).fillna(0)},
                                 text=[f"n={n}" for n in agg["n"]], textposition="top right",
                                 customdata=list(zip(agg.index, agg["n"])),
                                 hovertemplate="version %{customdata[0]}: %{y:.1f}% (n=%{customdata[1]})<extra>"
                                               + var + "</extra>"))
    fig.update_layout(title=title, xaxis_title="prompt version, by its first run (UTC)",
                      yaxis_title="mean score (%)", legend_title="variant",
                      xaxis={"type": "category", "categoryorder": "array", "categoryarray": list(ticks.values())})
    fig.update_yaxes(range=[-5, 105])
    return fig


def cost_latency(runs: pd.DataFrame, *, by: str = "variant") -> go.Figure:
    """Latency (ms) and output tokens per call as box plots, and total cost (USD) per variant.
    Calls with an unknown price are left out of the cost panel."""
    title = f"Latency, output tokens and cost per {by}"
    if runs.empty:
        return _empty(title)
    df = runs.copy()
    df[by] = _label(df, by)
    fig = make_subplots(rows=1, cols=3, subplot_titles=("latency per call", "output tokens per call",
                                                        "total cost"), horizontal_spacing=0.09)
    groups = list(dict.fromkeys(df[by]))
    palette = px.colors.qualitative.Plotly
    for i, g in enumerate(groups):
        part = df[df[by] == g]
        color = variant_colors(groups)[g] if by == "variant" else palette[i % len(palette)]
        tick = f"{g}<br>n={len(part)}"
        fig.add_trace(go.Box(x=[tick] * len(part), y=part["latency_ms"], name=g, marker_color=color, legendgroup=g,
                             showlegend=True), row=1, col=1)
        fig.add_trace(go.Box(x=[tick] * len(part), y=part["output_tokens"], name=g, marker_color=color,
                             legendgroup=g, showlegend=False), row=1, col=2)
        cost = part["cost_usd"].dropna()
        if len(cost):
            fig.add_trace(go.Bar(x=[f"{g}<br>n={len(cost)} priced"], y=[float(cost.sum())], marker_color=color,
                                 legendgroup=g, showlegend=False,
                                 hovertemplate="%{x}: $%{y:.6f}<extra></extra>"), row=1, col=3)
    unpriced = sorted(df.loc[df["cost_usd"].isna(), "model"].dropna().astype(str).unique())
    if unpriced:  # say so, rather than draw an empty -1..1 axis or a $0 bar that reads as free
        lo, hi = fig.layout.xaxis3.domain
        fig.add_annotation(text="<br>".join(f"cost unknown for {m}" for m in unpriced), showarrow=False,
                           xref="paper", yref="paper", x=(lo + hi) / 2, xanchor="center",
                           y=0.5 if df["cost_usd"].isna().all() else 0.95, font={"size": 13, "color": "#555"})
        if df["cost_usd"].isna().all():
            fig.update_xaxes(visible=False, row=1, col=3)
            fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, row=1, col=3)
    priced = df["cost_usd"].dropna()
    if len(priced) and float(priced.sum()) == 0.0:  # a $0 bar on an empty -1..1 axis reads as "nothing here"
        free = sorted(df.loc[df["cost_usd"].notna(), "model"].dropna().astype(str).unique())
        lo, hi = fig.layout.xaxis3.domain
        fig.add_annotation(text="<br>".join(f"$0: no per-call price for {m}" for m in free), showarrow=False,
                           xref="paper", yref="paper", x=(lo + hi) / 2, xanchor="center", y=0.6,
                           font={"size": 13, "color": "#555"})
        fig.update_yaxes(range=[0, 1], showticklabels=False, showgrid=False, row=1, col=3)
    for col in (1, 2, 3):
        fig.update_xaxes(title_text=by, row=1, col=col)
    fig.update_yaxes(title_text="latency (ms)", row=1, col=1)
    fig.update_yaxes(title_text="output tokens", row=1, col=2)
    fig.update_yaxes(title_text="cost (USD)", row=1, col=3)
    fig.update_layout(title=title, legend_title=by, boxmode="group")
    return fig

def ablation_effects(effects: pd.DataFrame, *, measure: str = "correct", tag: str = "all", variant: str = "",
                     confidence: float = 0.95) -> go.Figure:
    """One row per part: the paired change in ``measure`` when that part is removed from ``variant``,
    with its interval, drawn from :meth:`lab.techniques.ablation.Ablation.effects` (which took them
    from :func:`lab.stats.paired_difference`). A row whose interval crosses the dashed zero line
    shows no effect beyond the noise."""
    what = measure.replace("_", " ")
    title = f"Effect on {what} of removing each part of {variant or 'the variant'} ({confidence:.0%} intervals)"
    if tag != "all":
        title += f", inputs tagged {tag}"
    if effects is None or effects.empty:
        return _empty(title, "no effects to show yet")
    rows = effects[(effects["measure"] == measure) & (effects["tag"] == tag)]
    if rows.empty:
        return _empty(title, f"no {what} effects for tag {tag!r}")
    change = 100 * rows["change"].astype(float)
    plus = (100 * rows["high"].astype(float) - change).fillna(0.0)
    minus = (change - 100 * rows["low"].astype(float)).fillna(0.0)
    # red only where the interval excludes 0 ("too few inputs to tell" is not an effect)
    excludes = (rows["low"].astype(float) > 0) | (rows["high"].astype(float) < 0)
    colors = ["#d62728" if b and x else "#7f7f7f" for b, x in zip(rows["beyond_noise"], excludes)]
    fig = go.Figure(go.Scatter(
        x=change, y=rows["part"].astype(str), mode="markers", marker={"size": 11, "color": colors},
        error_x={"type": "data", "array": plus, "arrayminus": minus, "symmetric": False},
        customdata=rows[["pairs"]].to_numpy(),
        hovertemplate="without %{y}: %{x:+.1f} points (%{customdata[0]} pairs)<extra></extra>",
    ))
    fig.add_vline(x=0, line_dash="dash", line_color="gray")
    fig.update_layout(title=title, xaxis_title=f"change in {what} when the part is removed (percentage points)",
                      yaxis_title="part removed", yaxis={"autorange": "reversed"})
    return fig


# ---- confidence ---------------------------------------------------------------------------------

def reliability(table: pd.DataFrame, *, by: str = "variant") -> go.Figure:
    """Reliability diagram from :func:`lab.calibration.reliability`: per confidence bin, the share
    of answers graded correct (with its Wilson interval) against the mean stated confidence, one
    line per ``by`` value, the count of answers per bin on hover and as marker text. Points on the
    dashed diagonal are calibrated; below it the model is over-confident."""
    title = "Reliability: stated confidence vs observed correctness (answers per bin shown)"
    if table is None or table.empty:
        return _empty(title, "no answers with a confidence record (confidence=True, a provider with log-probabilities)")
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dash", "color": "gray"},
                             name="calibrated", hoverinfo="skip"))
    groups = table.groupby(by, sort=False) if by in table else [("all", table)]
    colors = variant_colors(table[by].unique() if by in table else ["all"])
    for name, g in groups:
        fig.add_trace(go.Scatter(
            x=g["mean_confidence"], y=g["accuracy"], mode="lines+markers+text", name=str(name),
            line={"color": colors[str(name)]},
            text=[str(int(n)) for n in g["n"]], textposition="top center",
            error_y={"type": "data", "array": (g["high"] - g["accuracy"]).fillna(0),
                     "arrayminus": (g["accuracy"] - g["low"]).fillna(0), "symmetric": False},
            customdata=g[["n", "bin_low", "bin_high"]].to_numpy(),
            hovertemplate="confidence %{customdata[1]:.1f}-%{customdata[2]:.1f}: %{customdata[0]} answers, "
                          "%{y:.0%} correct<extra>%{fullData.name}</extra>"))
    fig.update_layout(title=title, xaxis_title="mean confidence in the bin (probability of the answer)",
                      yaxis_title="share of answers graded correct", xaxis={"range": [0, 1.02]},
                      yaxis={"range": [-0.02, 1.08]})
    return fig


def selective_answering(curve: pd.DataFrame, *, by: str = "variant") -> go.Figure:
    """Coverage vs accuracy from :func:`lab.calibration.selective`: a line per ``by`` value for
    abstaining below a confidence threshold, and the declared escape hatch as a diamond on the
    same axes. A hatch point above a curve abstains on better inputs than a threshold would."""
    title = "Selective answering: accuracy vs coverage, threshold on confidence and the escape hatch"
    if curve is None or curve.empty:
        return _empty(title, "no graded answers to draw")
    fig = go.Figure()
    groups = curve.groupby(by, sort=False) if by in curve else [("all", curve)]
    colors = variant_colors(curve[by].unique() if by in curve else ["all"])
    for name, g in groups:
        t = g[g["kind"] == "threshold"].sort_values("coverage")
        if not t.empty:
            fig.add_trace(go.Scatter(x=t["coverage"], y=t["accuracy"], mode="lines+markers", name=f"{name}: threshold",
                                     line={"color": colors[str(name)]},
                                     customdata=t[["threshold"]].to_numpy(),
                                     hovertemplate="abstain below %{customdata[0]:.2f}: coverage %{x:.0%}, "
                                                   "accuracy %{y:.0%}<extra></extra>"))
        h = g[g["kind"] == "hatch"]
        fig.add_trace(go.Scatter(x=h["coverage"], y=h["accuracy"], mode="markers", name=f"{name}: escape hatch",
                                 marker={"symbol": "diamond", "size": 13, "color": colors[str(name)]},
                                 hovertemplate="escape hatch: coverage %{x:.0%}, accuracy %{y:.0%}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="coverage (share of calls answered)",
                      yaxis_title="accuracy on the answered calls", xaxis={"range": [0, 1.02]},
                      yaxis={"range": [-0.02, 1.05]})
    return fig
