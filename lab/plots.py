"""Plotly figures drawn from run-log DataFrames only (``log.runs(...)``, ``log.grades(...)``).

Every function takes the DataFrames as the log returns them, so a figure can be redrawn exactly
from any version of the log (``as_of=...``). Titles say what the figure shows; axes carry units.
Empty input gives an empty figure that says so, never an exception, so a notebook runs end to end.

"Correct" comes from grade rows when there are any (the latest grade with a pass/fail or a score
for each run); otherwise from the input's ``expected`` answer, matched against the first word of
the output (case and punctuation ignored). Escaped and error rows are never "correct" or "wrong":
they are outcomes of their own.
"""

from __future__ import annotations

import math
import re
from typing import Literal

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .errors import ParameterError

__all__ = [
    "outcome_rates", "paired_difference", "retry_spread", "critique_rounds", "score_by_version",
    "cost_latency", "outcome_categories", "wilson_interval",
]

CATEGORY_ORDER = ["answered-correct", "answered-wrong", "answered", "escaped", "error"]
CATEGORY_COLORS = {"answered-correct": "#2ca02c", "answered-wrong": "#d62728", "answered": "#1f77b4",
                   "escaped": "#ff7f0e", "error": "#7f7f7f"}
Metric = Literal["correct", "escaped", "answered", "error", "score"]


# ---- small computations (used only to draw; lab.stats owns the reported statistics) -------------

def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion (:func:`lab.stats.proportion_ci`); nan when ``n`` is 0."""
    from .stats import proportion_ci

    return proportion_ci(successes, n, confidence=level)


def _norm_answer(text: object) -> str:
    if not isinstance(text, str):
        return ""
    words = re.findall(r"\w+", text.casefold())
    return words[0] if words else ""


def _expected_match(output: object, expected: object) -> float:
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        return float("nan")
    if isinstance(expected, (list, tuple)):
        return float(any(_expected_match(output, e) == 1.0 for e in expected))
    return float(_norm_answer(output) == _norm_answer(str(expected)) != "")


def run_scores(runs: pd.DataFrame, grades: pd.DataFrame | None = None) -> pd.Series:
    """A score in [0, 1] per run (indexed like ``runs``), NaN where there is nothing to score by.

    From the latest grade row of each run that has a score or a pass/fail (human ratings on a
    1-5 scale are mapped onto [0, 1]); otherwise from ``expected``. Escaped and error rows are NaN.
    """
    scores = pd.Series(np.nan, index=runs.index, dtype=float)
    if runs.empty:
        return scores
    if grades is not None and not grades.empty:
        g = grades[grades["run_id"].isin(runs["id"])].copy()
        g["value"] = g["passed"].astype(float)
        has_score = g["score"].notna()
        s = g.loc[has_score, "score"].astype(float)
        human = g.loc[has_score, "grader"].astype(str).str.startswith("human")
        g.loc[has_score, "value"] = np.where(human & (s > 1), (s - 1) / 4, s)
        g = g[g["value"].notna()].sort_values("seq").groupby("run_id").tail(1)
        by_run = dict(zip(g["run_id"], g["value"]))
        scores = runs["id"].map(by_run).astype(float)
    missing = scores.isna()
    if missing.any() and "expected" in runs:
        fallback = [_expected_match(o, e) for o, e in zip(runs.loc[missing, "output"], runs.loc[missing, "expected"])]
        scores.loc[missing] = fallback
    scores[runs["outcome"] != "answered"] = np.nan
    return scores


def outcome_categories(runs: pd.DataFrame, grades: pd.DataFrame | None = None) -> pd.Series:
    """Per run: ``answered-correct``, ``answered-wrong``, ``answered`` (nothing to check it by),
    ``escaped`` or ``error``."""
    scores = run_scores(runs, grades)
    cat = runs["outcome"].astype(str).copy()
    answered = cat == "answered"
    cat[answered & (scores >= 0.5)] = "answered-correct"
    cat[answered & (scores < 0.5)] = "answered-wrong"
    return cat


def _explode_tags(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["tag"] = [list(t) if isinstance(t, (list, tuple)) and len(t) else ["(untagged)"] for t in out["input_tags"]]
    return out.explode("tag")


def _empty(title: str, why: str = "no runs to show yet") -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False},
                      annotations=[{"text": why, "showarrow": False, "font": {"size": 16}, "xref": "paper",
                                    "yref": "paper", "x": 0.5, "y": 0.5}])
    return fig


def _label(df: pd.DataFrame, col: str = "variant") -> pd.Series:
    return df[col].fillna("(none)").astype(str)


# ---- figures ---------------------------------------------------------------------------------

def outcome_rates(runs: pd.DataFrame, grades: pd.DataFrame | None = None, *, by: str = "variant",
                  split_by_tag: bool = True, level: float = 0.95) -> go.Figure:
    """Share of calls per outcome (answered-correct / answered-wrong / escaped / error) per variant,
    with Wilson intervals, one panel per input tag (a row with two tags counts in both panels)."""
    title = f"Outcome rates per {by} with {level:.0%} Wilson intervals" + (", by input tag" if split_by_tag else "")
    if runs.empty:
        return _empty(title)
    df = runs.copy()
    df["category"] = outcome_categories(df, grades)
    df[by] = _label(df, by)
    df = _explode_tags(df) if split_by_tag else df.assign(tag="all inputs")
    rows = []
    for (tag, group), part in df.groupby(["tag", by], sort=False):
        n = len(part)
        for cat in CATEGORY_ORDER:
            k = int((part["category"] == cat).sum())
            if k == 0 and cat == "answered":
                continue
            lo, hi = wilson_interval(k, n, level)
            rows.append({"tag": tag, by: group, "category": cat, "rate": 100 * k / n, "k": k, "n": n,
                         "plus": 100 * (hi - k / n), "minus": 100 * (k / n - lo)})
    table = pd.DataFrame(rows)
    table["label"] = [f"{k}/{n}" for k, n in zip(table["k"], table["n"])]
    cats = [c for c in CATEGORY_ORDER if c in set(table["category"])]
    panels = table["tag"].nunique()
    cols = min(panels, FACET_COLUMNS)
    grid_rows = math.ceil(panels / cols)
    fig = px.bar(table, x=by, y="rate", color="category", barmode="group", facet_col="tag", facet_col_wrap=cols,
                 facet_row_spacing=0.3 / grid_rows if grid_rows > 1 else 0.0, facet_col_spacing=0.04,
                 error_y="plus", error_y_minus="minus", category_orders={"category": cats}, text="label",
                 color_discrete_map=CATEGORY_COLORS,
                 hover_data={"k": True, "n": True, "plus": False, "minus": False, "label": False},
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


def _pair_values(runs: pd.DataFrame, grades: pd.DataFrame | None, metric: Metric) -> pd.Series:
    if metric in ("correct", "score"):
        return run_scores(runs, grades).where(runs["outcome"] == "answered", 0.0)
    return (runs["outcome"] == metric).astype(float)


def paired_difference(runs: pd.DataFrame, a: str, b: str, grades: pd.DataFrame | None = None, *,
                      metric: Metric = "correct", level: float = 0.95) -> go.Figure:
    """Mean difference ``b - a`` in ``metric`` over calls paired on input, repeat and model, with a
    t interval, for all inputs and per input tag. A whole interval right of zero favours ``b``."""
    what = {"correct": "correct-answer rate", "score": "mean score", "escaped": "escape rate",
            "answered": "answer rate", "error": "error rate"}[metric]
    title = f"Paired difference in {what}: {b} minus {a} ({level:.0%} interval)"
    if runs.empty:
        return _empty(title)
    have = set(runs["variant"].dropna())
    for name in (a, b):
        if name not in have:
            raise ParameterError(f"paired_difference: no runs of variant {name!r}; the runs have {sorted(have)}")
    df = runs[runs["variant"].isin([a, b]) & (runs["role"].fillna("answer") == "answer")].copy()
    df["value"] = _pair_values(df, grades, metric)
    keys = ["input_id", "repeat", "model"]
    wide = df.pivot_table(index=keys, columns="variant", values="value", aggfunc="mean").dropna(subset=[a, b])
    if wide.empty:
        return _empty(title, f"no inputs where both {a} and {b} have a scorable call")
    tags = df.drop_duplicates("input_id").set_index("input_id")["input_tags"]
    diffs = (wide[b] - wide[a]).rename("d").reset_index()
    diffs["tags"] = diffs["input_id"].map(tags)
    groups = [("all inputs", diffs)]
    for tag in sorted({t for ts in diffs["tags"] if isinstance(ts, list) for t in ts}):
        groups.append((f"tag: {tag}", diffs[[isinstance(ts, list) and tag in ts for ts in diffs["tags"]]]))
    from scipy.stats import t as student_t

    rows = []
    for name, part in groups:
        d = part["d"].to_numpy(float)
        n = len(d)
        mean = float(d.mean()) if n else float("nan")
        if n > 1:
            se = float(d.std(ddof=1)) / math.sqrt(n)
            half = float(student_t.ppf(1 - (1 - level) / 2, n - 1)) * se
        else:
            half = float("nan")
        rows.append({"group": name, "mean": 100 * mean, "half": 100 * half if half == half else 0.0, "pairs": n})
    table = pd.DataFrame(rows)
    fig = go.Figure(go.Scatter(
        x=table["mean"], y=table["group"], mode="markers+text", marker={"size": 11},
        text=[f"  n={n}" for n in table["pairs"]], textposition="middle right",
        error_x={"type": "data", "array": table["half"]}, customdata=table["pairs"],
        hovertemplate="%{y}: %{x:.1f} points (%{customdata} pairs)<extra></extra>",
    ))
    fig.add_vline(x=0, line_dash="dash", line_color="gray")
    # a difference of two rates lives in -100..100 points: a fixed axis keeps figures comparable
    fig.update_layout(title=title, xaxis_title=f"{what}, {b} − {a} (percentage points)",
                      xaxis={"range": [-105, 105], "dtick": 25, "zeroline": False},
                      yaxis_title="inputs", yaxis={"autorange": "reversed"}, height=160 + 45 * len(table))
    return fig


def retry_spread(runs: pd.DataFrame) -> go.Figure:
    """For each input (and variant): agreement across retries, the share of samples giving the most
    common answer (first word, case ignored). Consistent answers suggest the model "knows";
    scatter suggests guessing. The label on each bar is the number of distinct answers."""
    title = "Retry spread per input: agreement across samples (label: distinct answers, n samples)"
    df = runs[(runs["outcome"] != "error") & (runs["role"].fillna("answer") == "answer")].copy() if len(runs) else runs
    if df.empty:
        return _empty(title)
    df["answer"] = [_norm_answer(o) or "(empty)" for o in df["output"]]
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
        return _empty(title, "no scorable answers (grade them, or give the inputs an expected answer)")
    fig = go.Figure()
    for var, part in df.groupby("variant", sort=False):
        agg = part.groupby("round")["score"].agg(["mean", "count", "std"]).reset_index()
        half = [_mean_half(m, s, n, level) for m, s, n in zip(agg["mean"], agg["std"], agg["count"])]
        fig.add_trace(go.Scatter(x=agg["round"], y=100 * agg["mean"], mode="lines+markers+text", name=var,
                                 error_y={"type": "data", "array": [100 * h for h in half]},
                                 text=[f"n={n}" for n in agg["count"]], textposition="top right",
                                 customdata=agg["count"],
                                 hovertemplate="round %{x}: %{y:.1f}% (n=%{customdata})<extra>" + var + "</extra>"))
    fig.update_layout(title=title, xaxis_title="critique round (number of revisions)",
                      yaxis_title="mean score (%)", xaxis={"dtick": 1}, legend_title="variant")
    fig.update_yaxes(range=[-5, 105])
    return fig


def _mean_half(mean: float, std: float, n: int, level: float) -> float:
    if n < 2 or std != std:
        return 0.0
    from scipy.stats import t as student_t

    return float(student_t.ppf(1 - (1 - level) / 2, n - 1)) * std / math.sqrt(n)


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
        return _empty(title, "no scorable answers (grade them, or give the inputs an expected answer)")
    df["when"] = pd.to_datetime(df["finished_at"], utc=True, format="ISO8601")
    # versions are placed in the order they were first run, one tick each, labelled with the minute
    # (a time axis over a few seconds of work ticks at sub-millisecond spacing)
    firsts = df.groupby("prompt_version")["when"].min().sort_values()
    ticks = {v: f"{v[:8]}<br>{t:%Y-%m-%d %H:%M}" for v, t in firsts.items()}
    fig = go.Figure()
    for var, part in df.groupby("variant", sort=False):
        agg = part.groupby("prompt_version").agg(when=("when", "min"), mean=("score", "mean"),
                                                 n=("score", "count"), std=("score", "std")).sort_values("when")
        half = [_mean_half(m, s, n, level) for m, s, n in zip(agg["mean"], agg["std"], agg["n"])]
        fig.add_trace(go.Scatter(x=[ticks[v] for v in agg.index], y=100 * agg["mean"], mode="lines+markers+text",
                                 name=var, error_y={"type": "data", "array": [100 * h for h in half]},
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
        color = palette[i % len(palette)]
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
        fig.update_yaxes(range=[0, 1], row=1, col=3)
    for col in (1, 2, 3):
        fig.update_xaxes(title_text=by, row=1, col=col)
    fig.update_yaxes(title_text="latency (ms)", row=1, col=1)
    fig.update_yaxes(title_text="output tokens", row=1, col=2)
    fig.update_yaxes(title_text="cost (USD)", row=1, col=3)
    fig.update_layout(title=title, legend_title=by, boxmode="group")
    return fig
