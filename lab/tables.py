"""DataFrame views over run rows: grades joined to runs, ways to read outputs side by side, and
``readable`` for a person. (The summary table is the run log's: ``log.summary(experiment)``.)"""

from __future__ import annotations

from collections.abc import Set

import numpy as np
import pandas as pd

from .errors import ParameterError
from .graders import latest_grades
from .text import normalize

# ---- reading outputs side by side ------------------------------------------------------------

GRADE_COLUMNS = ["passed", "score", "label", "grader"]


def with_grades(runs: pd.DataFrame, grades: pd.DataFrame | None, *, grader: str | None = None) -> pd.DataFrame:
    """``runs`` with the columns ``passed`` (1.0, 0.0 or NaN), ``score``, ``label`` and ``grader``
    from one grader's latest grade per run (regrades add rows; the newest counts).

    ``grader`` names it (``match:numeric``, ``judge:local:smollm2``, ``human:ana``, ...); when
    omitted, the most recently used grader among these runs' grades is taken. Runs without a
    grade get NaN. With no grades at all the columns are present and empty.
    """
    out = runs.copy()
    for col in GRADE_COLUMNS:
        out[col] = pd.Series([float("nan") if col in ("passed", "score") else None] * len(out),
                             index=out.index, dtype=float if col in ("passed", "score") else object)
    if grades is None or grades.empty or runs.empty:
        return out
    ordered = grades.sort_values("seq", kind="stable")
    rows = zip(ordered["run_id"], ordered["grader"], ordered.index)  # (run id, grader, row label)
    grader, latest = latest_grades(rows, set(runs["id"]), grader)
    if grader is None:  # no grades on these runs
        return out
    g = grades.loc[[row[2] for row in latest.values()]].set_index("run_id")  # the grade rows that count
    out["passed"] = out["id"].map(g["passed"]).astype(float)
    out["score"] = out["id"].map(g["score"]).astype(float)
    out["label"] = out["id"].map(g["label"])
    out["grader"] = out["id"].map(lambda i: grader if i in latest else None)
    return out


def run_scores(runs: pd.DataFrame, grades: pd.DataFrame | None = None, *, grader: str | None = None) -> pd.Series:
    """A score in [0, 1] per run (indexed like ``runs``), NaN where no grader graded it.

    From ``grader``'s latest grade (default: the grader :func:`lab.tables.with_grades` picks):
    ``passed`` when it has one, else its score (human ratings on a 1-5 scale are mapped onto
    [0, 1]). Escaped and error rows are NaN: they are outcomes of their own. Graders are the only
    source of "correct": figures and tables read it from here."""
    if runs.empty:
        return pd.Series(np.nan, index=runs.index, dtype=float)
    g = with_grades(runs, grades, grader=grader)
    score = g["score"]
    human = g["grader"].astype(str).str.startswith("human")
    score = score.where(~(human & (score > 1)), (score - 1) / 4)
    out = g["passed"].where(g["passed"].notna(), score).astype(float)
    out[runs["outcome"] != "answered"] = np.nan
    return out


def outcome_categories(runs: pd.DataFrame, grades: pd.DataFrame | None = None, *,
                       grader: str | None = None) -> pd.Series:
    """Per run: ``answered-correct``, ``answered-wrong``, ``answered`` (no grade), ``escaped`` or ``error``."""
    scores = run_scores(runs, grades, grader=grader)
    cat = runs["outcome"].astype(str).copy()
    answered = cat == "answered"
    cat[answered & (scores >= 0.5)] = "answered-correct"
    cat[answered & (scores < 0.5)] = "answered-wrong"
    return cat


def _input_text(vars_: object) -> str:
    if isinstance(vars_, dict):
        if len(vars_) == 1:
            return str(next(iter(vars_.values())))
        return "; ".join(f"{k}={v}" for k, v in vars_.items())
    return ""


def side_by_side(runs: pd.DataFrame, grades: pd.DataFrame | None = None, *, grader: str | None = None,
                 columns: str = "variant", index: tuple[str, ...] = ("input_id", "repeat"),
                 show: tuple[str, ...] = ("output", "outcome", "passed")) -> pd.DataFrame:
    """Outputs to read next to each other: one row per ``index`` (input and repeat by default),
    one column group per ``columns`` value (variant by default; ``round`` or ``model`` work too),
    showing ``show`` fields. An ``input`` column holds the input's text. Only answers and
    revisions are shown (critiques and judge calls have their own views)."""
    df = runs
    if "role" in df:
        df = df[df["role"].isin(["answer", "revision"])]
    df = with_grades(df, grades, grader=grader)
    if df.empty:
        return pd.DataFrame()
    idx = list(index)
    wide = df.pivot_table(index=idx, columns=columns, values=list(show), aggfunc="first", dropna=False)
    wide = wide.swaplevel(0, 1, axis=1).sort_index(axis=1, level=0, sort_remaining=False)
    order = list(dict.fromkeys(df[columns]))
    wide = wide.reindex(columns=pd.MultiIndex.from_product([order, list(show)]))
    inputs = df.groupby(idx, sort=False)["input_vars"].first().map(_input_text)
    wide.insert(0, ("input", ""), inputs.reindex(wide.index))
    if "input_tags" in df:
        tags = df.groupby(idx, sort=False)["input_tags"].first().map(lambda t: ", ".join(t or []))
        wide.insert(1, ("tags", ""), tags.reindex(wide.index))
    return wide


def escaped(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that took the way out, with the input they escaped on: where the prompt or the
    data is strange. Columns: variant, input_id, tags, input, repeat, output, and whether the
    input was tagged ``unanswerable`` (an escape there is the right answer)."""
    df = runs[runs["outcome"] == "escaped"]
    if "role" in df:
        df = df[df["role"].isin(["answer", "revision"])]
    out = pd.DataFrame({
        "variant": df["variant"], "input_id": df["input_id"],
        "tags": df["input_tags"].map(lambda t: ", ".join(t or [])),
        "input": df["input_vars"].map(_input_text), "repeat": df["repeat"], "output": df["output"],
        "unanswerable": df["input_tags"].map(lambda t: "unanswerable" in (t or [])),
    })
    return out.reset_index(drop=True)


def disagreements(runs: pd.DataFrame, grades: pd.DataFrame | None = None, *, grader: str | None = None,
                  on: str = "auto", columns: str = "variant",
                  index: tuple[str, ...] = ("input_id", "repeat")) -> pd.DataFrame:
    """The rows of :func:`side_by_side` where the variants differ.

    ``on``: ``passed`` (one variant's output passed the grader, another's failed), ``outcome``
    (answered vs escaped vs error), ``answer`` (normalized output text differs), or ``auto``
    (``passed`` when there are grades, else ``answer``).
    """
    df = runs
    if "role" in df:
        df = df[df["role"].isin(["answer", "revision"])]
    df = with_grades(df, grades, grader=grader)
    if on == "auto":
        on = "passed" if df["passed"].notna().any() else "answer"
    if on not in ("passed", "outcome", "answer"):
        raise ParameterError(f"disagreements: on must be 'auto', 'passed', 'outcome' or 'answer', got {on!r}")
    key = df["output"].map(normalize) if on == "answer" else df[on]
    df = df.assign(_key=key.astype(str))
    differs = df.groupby(list(index))["_key"].nunique() > 1
    wide = side_by_side(runs, grades, grader=grader, columns=columns, index=index)
    if wide.empty:
        return wide
    return wide[wide.index.isin(differs[differs].index)]


def critique_rounds(runs: pd.DataFrame, grades: pd.DataFrame | None = None, *, grader: str | None = None) -> pd.DataFrame:
    """Self-critique chains read round by round: one row per (input, repeat, round) with the
    answer at that round (round 0 = first answer, then each revision), its grade, the critique
    that led to it, and the round's cost (critique + revision calls)."""
    answers = with_grades(runs[runs["role"].isin(["answer", "revision"])], grades, grader=grader)
    crit = runs[runs["role"] == "critique"].set_index("id")
    cost = runs.groupby(["conversation_id", "round"])["cost_usd"].sum(min_count=1)
    tokens = runs.groupby(["conversation_id", "round"])["output_tokens"].sum(min_count=1)
    rows = []
    for _, a in answers.iterrows():
        c = crit.loc[a["parent_id"]] if a["role"] == "revision" and a["parent_id"] in crit.index else None
        rows.append({
            "variant": a["variant"], "input_id": a["input_id"], "repeat": a["repeat"], "round": a["round"],
            "answer": a["output"], "passed": a["passed"], "score": a["score"],
            "critique": None if c is None else c["output"],
            "output_tokens": tokens.get((a["conversation_id"], a["round"])),
            "cost_usd": cost.get((a["conversation_id"], a["round"])),
            "run_id": a["id"], "conversation_id": a["conversation_id"],
        })
    cols = ["variant", "input_id", "repeat", "round", "answer", "passed", "score", "critique", "output_tokens",
            "cost_usd", "run_id", "conversation_id"]
    return pd.DataFrame(rows, columns=cols).sort_values(["variant", "input_id", "repeat", "round"]).reset_index(drop=True)




def unparsed_share(grades: pd.DataFrame, judge: str | None = None) -> float:
    """Share of judge grades (latest per run; one judge, or every ``judge:*`` grader) the judge's
    reply could not be read for (label ``unparsed``); NaN when there are none."""
    if grades is None or grades.empty:
        return float("nan")
    names = grades["grader"].astype(str)
    g = grades[names == judge] if judge else grades[names.str.startswith("judge:")]
    if g.empty:
        return float("nan")
    latest = g.sort_values("seq").groupby(["run_id", "grader"]).tail(1)
    return float((latest["label"] == "unparsed").mean())


# ---- tables to read: what a report shows instead of raw reprs ------------------------------------

# float columns in [0, 1] under these names are shares; differences of shares are percentage points
SHARE_NAMES = frozenset({"rate", "passed", "pass_rate", "correct", "escaped", "answered", "appropriate", "coverage",
                         "over_abstention", "agreement", "accuracy", "mean_a", "mean_b", "rate_full", "rate_base",
                         "rate_changed", "score", "mean_score", "confidence", "mean_confidence", "p_answer",
                         "p_escape"})
POINT_NAMES = frozenset({"difference", "change"})
NO_VALUE = "–"


def readable(df: pd.DataFrame, *, shares: tuple[str, ...] = (), points: tuple[str, ...] = ()) -> pd.DataFrame:
    """A copy of ``df`` as short strings for a person: shares as percentages, differences of shares
    as signed percentage points, an interval folded into its value (``x_low``/``x_high`` or
    ``low``/``high`` beside ``difference``, ``change`` or ``rate``: "+12 pts (-3 to +27)"), p-values
    as 0.012 or <0.001, milliseconds and dollars with their unit, counts with thousands separators,
    lists and dicts as "a, b" and "k: v", newlines as ⏎, and a missing value as "–" (never "nan",
    never 5.551115e-17). Column names lose their underscores. ``shares`` and ``points`` name more
    columns to read as shares or as differences of shares."""
    out = ReadableFrame(df.copy())
    share_cols = SHARE_NAMES | set(shares)
    point_cols = POINT_NAMES | set(points)
    for col in list(out.columns):
        name = col[-1] if isinstance(col, tuple) else col
        out[col] = _readable_column(out[col], str(name), share_cols, point_cols)
    out = _fold_intervals(out, df, point_cols)
    if isinstance(out.index, pd.MultiIndex) or out.index.dtype == object:
        out.index = out.index.map(lambda v: _cell(v) if not isinstance(v, tuple) else tuple(_cell(x) for x in v))
    out.index.names = [_heading(n) if isinstance(n, str) else n for n in out.index.names]
    return out.rename(columns=lambda c: _heading(c) if isinstance(c, str) else c)


class ReadableFrame(pd.DataFrame):
    """A table of strings made to be read: shown whole (no "..." in long outputs, no row limit
    up to 500 rows)."""

    @property
    def _constructor(self) -> type:
        return ReadableFrame

    def _repr_html_(self) -> str | None:
        # a plain 0, 1, 2 row number says nothing: left out
        plain = isinstance(self.index, pd.RangeIndex) and self.index.name is None
        with pd.option_context("display.max_colwidth", None, "display.max_rows", 500, "display.max_columns", 50):
            if plain:
                return self.to_html(index=False, classes="dataframe", border=0, escape=True)
            return super()._repr_html_()


def _heading(name: str) -> str:
    return name.replace("_", " ")


def _is_share(s: pd.Series) -> bool:
    v = pd.to_numeric(s, errors="coerce").dropna()
    return s.dtype.kind == "f" and len(v) > 0 and bool(((v >= -1e-9) & (v <= 1 + 1e-9)).all())


def _readable_column(s: pd.Series, name: str, share_cols: Set[str], point_cols: Set[str]) -> pd.Series:
    base = name.removesuffix("_low").removesuffix("_high")
    if name in ("low", "high") or base != name:
        kind = ("points" if name in ("low", "high") else
                "share" if (base in share_cols or f"{base}_rate" in share_cols) and _is_share(s) else "number")
    elif name.startswith("passed") and set(pd.to_numeric(s, errors="coerce").dropna()) <= {0.0, 1.0}:
        kind = "pass"
    elif name in point_cols:
        kind = "points"
    elif name in share_cols and _is_share(s):
        kind = "share"
    elif name == "p_value":
        kind = "p"
    elif name.endswith("_ms"):
        kind = "ms"
    elif name.endswith("_usd"):
        kind = "usd"
    else:
        kind = "number"
    if kind == "points" and not (pd.to_numeric(s, errors="coerce").dropna().abs() <= 1 + 1e-9).all():
        kind = "number"
    return s.map(lambda v: _cell(v, kind))


def _cell(v: object, kind: str = "number") -> str:
    import math

    import numpy as np

    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT:
        return NO_VALUE
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_cell(x)}" for k, x in v.items()) or NO_VALUE
    if isinstance(v, (list, tuple, set, np.ndarray)):
        return ", ".join(_cell(x) for x in v) or NO_VALUE
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        x = 0.0 if abs(float(v)) < 1e-9 else float(v)
        if kind == "pass":
            return "pass" if x == 1 else "fail"
        if kind == "share":
            return f"{100 * x:.0f}%"
        if kind == "points":
            return f"{100 * x:+.0f} pts"
        if kind == "p":
            return "<0.001" if x < 0.001 else f"{x:.3f}"
        if kind == "ms":
            return f"{x:,.0f}\u00a0ms"
        if kind == "usd":
            return f"${x:.4f}" if x < 1 else f"${x:,.2f}"
        if x.is_integer():
            return f"{int(x):,}"
        return f"{x:,.3g}" if abs(x) < 100 else f"{x:,.1f}"
    return str(v).replace("\r\n", "\n").replace("\n", " ⏎ ").strip()


def _fold_intervals(out: pd.DataFrame, raw: pd.DataFrame, point_cols: Set[str]) -> pd.DataFrame:
    """Fold ``x_low``/``x_high`` into ``x`` and a bare ``low``/``high`` into the value they bound."""
    cols = [c for c in raw.columns if isinstance(c, str)]
    for col in cols:
        for stem in dict.fromkeys((col, col.removesuffix("_rate"))):
            low, high = f"{stem}_low", f"{stem}_high"
            if low in cols and high in cols and low in out and high in out:
                out = _fold(out, raw, col, low, high)
    if "low" in cols and "high" in cols:
        target = next((c for c in ("difference", "change", "rate", "mean", "value") if c in cols), None)
        if target is not None:
            out = _fold(out, raw, target, "low", "high")
    return out


def _fold(out: pd.DataFrame, raw: pd.DataFrame, col: str, low: str, high: str) -> pd.DataFrame:
    lo, hi = out[low], out[high]
    both = raw[low].notna() & raw[high].notna()
    lo_txt = lo.str.removesuffix(" pts")
    out[col] = [f"{v} ({a} to {b})" if ok else v for v, a, b, ok in zip(out[col], lo_txt, hi, both)]
    out = out.drop(columns=[low, high])
    return out.rename(columns={col: f"{col} (interval)"})
