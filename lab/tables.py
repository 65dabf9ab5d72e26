"""DataFrame views over run rows: the summary table and ways to read outputs side by side."""

from __future__ import annotations

import pandas as pd

from .errors import ParameterError
from .text import normalize

SUMMARY_COLUMNS = ["n", "answered", "escaped", "errors", "mean_latency_ms", "output_tokens", "cost_usd"]


def summary(runs: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Per variant (and model, when there are several): calls, outcomes, mean latency, tokens, cost.

    ``cost_usd`` is NaN when any call's price is unknown, rather than a partial sum.
    """
    if by is None:
        by = ["variant"] + (["model"] if runs["model"].nunique() > 1 else []) if len(runs) else ["variant"]
    if runs.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS).rename_axis(by[0] if len(by) == 1 else None)
    g = runs.groupby(by, sort=False, dropna=False)
    out = pd.DataFrame({
        "n": g.size(),
        "answered": g["outcome"].apply(lambda s: int((s == "answered").sum())),
        "escaped": g["outcome"].apply(lambda s: int((s == "escaped").sum())),
        "errors": g["outcome"].apply(lambda s: int((s == "error").sum())),
        "mean_latency_ms": g["latency_ms"].mean().round(1),
        "output_tokens": g["output_tokens"].sum(min_count=1),
        "cost_usd": g["cost_usd"].apply(lambda s: s.sum() if s.notna().all() else float("nan")),
    })
    return out


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
    g = grades[grades["run_id"].isin(set(runs["id"]))]
    if grader is None:
        if g.empty:
            return out
        grader = g.sort_values("seq")["grader"].iloc[-1]
    g = g[g["grader"] == grader].sort_values("seq").groupby("run_id").tail(1).set_index("run_id")
    out["passed"] = out["id"].map(g["passed"]).astype(float)
    out["score"] = out["id"].map(g["score"]).astype(float)
    out["label"] = out["id"].map(g["label"])
    out["grader"] = out["id"].map(lambda i: grader if i in g.index else None)
    return out


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


UNPARSED_WARN_SHARE = 0.2


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
