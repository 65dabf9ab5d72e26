"""DataFrame views over run rows: the summary table and ways to read outputs side by side."""

from __future__ import annotations

import pandas as pd

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
