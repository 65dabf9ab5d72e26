"""Statistics over run rows: rates with intervals, paired differences, and how many repeats to run.

    df = lab.with_grades(runs.df, log.grades(exp.id))      # adds passed / score per run
    lab.rates(df)                                          # pass rate per variant, Wilson 95% interval
    lab.rates(df, value="escaped", split_by_tag=True)      # escape rate per variant and tag
    lab.paired_difference(df, "honest", "persona")         # same (input, repeat) pairs; verdict
    lab.repeats_needed(df, "honest", "persona", difference=0.1)

Proportions use Wilson's interval (``scipy.stats.binomtest(...).proportion_ci``); means use a
bootstrap (``scipy.stats.bootstrap``). A paired difference is the mean, over (input, repeat)
pairs run on the same seed, of value(A) - value(B), with a t interval (default) or a bootstrap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from .errors import ParameterError

OUTCOME_VALUES = ("answered", "escaped", "error")


class _LazyScipy:
    """scipy.stats, imported on first use so that ``import lab`` stays quick."""

    def __getattr__(self, name: str):
        from scipy import stats

        return getattr(stats, name)


sps = _LazyScipy()
PAIR_KEYS = ("input_id", "repeat", "model")


def proportion_ci(k: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson interval for ``k`` successes out of ``n``; (nan, nan) when ``n`` is 0."""
    if n <= 0:
        return (math.nan, math.nan)
    ci = sps.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def mean_ci(values: Sequence[float] | np.ndarray, *, confidence: float = 0.95, n_resamples: int = 2000,
            seed: int = 0) -> tuple[float, float]:
    """Bootstrap (BCa) interval for the mean; the single value when all values are equal; nan when
    there are fewer than two values."""
    x = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))], dtype=float)
    if len(x) < 2:
        return (math.nan, math.nan) if len(x) == 0 else (float(x[0]), float(x[0]))
    if np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    res = sps.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="BCa",
                        rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if math.isnan(low) or math.isnan(high):  # BCa can fail on very lumpy data; percentile does not
        res = sps.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                            method="percentile", rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return (low, high)


def _values(df: pd.DataFrame, value: str) -> pd.Series:
    """The per-run value to aggregate: a column, or an outcome name (1 when the run had it)."""
    if value in df.columns:
        col = df[value]
        if col.dtype == bool:
            return col.astype(float)
        return pd.to_numeric(col, errors="coerce")
    if value in OUTCOME_VALUES:
        return (df["outcome"] == value).astype(float)
    raise ParameterError(
        f"value {value!r} is neither a column of the runs table nor an outcome {list(OUTCOME_VALUES)}; "
        "for 'passed' or 'score', add grades first: lab.with_grades(runs, grades)"
    )


def _by_list(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def _explode_tags(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, tag), plus every run once under the tag ``all``."""
    tagged = df.assign(tag=df["input_tags"].map(lambda t: list(t) if t else ["normal"])).explode("tag")
    return pd.concat([df.assign(tag="all"), tagged], ignore_index=True)


def rates(df: pd.DataFrame, *, value: str = "passed", by: str | Sequence[str] | None = "variant",
          split_by_tag: bool = False, confidence: float = 0.95) -> pd.DataFrame:
    """Rate of ``value`` per group with a Wilson interval.

    ``value`` is a 0/1 column (``passed`` after :func:`lab.tables.with_grades`) or an outcome
    (``escaped``, ``answered``, ``error``). Rows where the value is missing (ungraded runs) are
    left out and counted in ``missing``. With ``split_by_tag`` every input tag gets its own rows
    (``tag`` column; ``all`` covers every run). Columns: n, k, rate, low, high, missing.
    """
    keys = _by_list(by)
    data = _explode_tags(df) if split_by_tag else df
    if split_by_tag:
        keys = keys + ["tag"]
    vals = _values(data, value)
    data = data.assign(_v=vals)
    rows = []
    groups = data.groupby(keys, sort=False, dropna=False) if keys else [((), data)]
    for key, g in groups:
        v = g["_v"].dropna()
        n, k = int(len(v)), int((v > 0.5).sum())
        low, high = proportion_ci(k, n, confidence=confidence)
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(keys, key)), "n": n, "k": k, "rate": k / n if n else math.nan, "low": low,
                     "high": high, "missing": int(g["_v"].isna().sum())})
    out = pd.DataFrame(rows, columns=keys + ["n", "k", "rate", "low", "high", "missing"])
    return out.set_index(keys) if keys else out


def means(df: pd.DataFrame, *, value: str = "score", by: str | Sequence[str] | None = "variant",
          split_by_tag: bool = False, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Mean of a numeric column per group with a bootstrap interval. Columns: n, mean, low, high, missing."""
    keys = _by_list(by)
    data = _explode_tags(df) if split_by_tag else df
    if split_by_tag:
        keys = keys + ["tag"]
    data = data.assign(_v=_values(data, value))
    rows = []
    groups = data.groupby(keys, sort=False, dropna=False) if keys else [((), data)]
    for key, g in groups:
        v = g["_v"].dropna().to_numpy()
        low, high = mean_ci(v, confidence=confidence, seed=seed)
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(keys, key)), "n": len(v), "mean": float(v.mean()) if len(v) else math.nan,
                     "low": low, "high": high, "missing": int(g["_v"].isna().sum())})
    out = pd.DataFrame(rows, columns=keys + ["n", "mean", "low", "high", "missing"])
    return out.set_index(keys) if keys else out


def _pairs(df: pd.DataFrame, a: str, b: str, value: str, variant_col: str,
           pair_on: Sequence[str]) -> pd.DataFrame:
    for name in (a, b):
        if name not in set(df[variant_col]):
            raise ParameterError(f"no rows with {variant_col} {name!r}; present: {sorted(map(str, set(df[variant_col])))}")
    keys = [k for k in pair_on if k in df.columns]
    data = df.assign(_v=_values(df, value))
    data = data[data[variant_col].isin([a, b])]
    wide = data.pivot_table(index=keys, columns=variant_col, values="_v", aggfunc="mean")
    tags = data.groupby(keys)["input_tags"].first() if "input_tags" in data else None
    wide = wide.dropna(subset=[a, b]) if a in wide and b in wide else wide.iloc[0:0]
    out = pd.DataFrame({"a": wide[a], "b": wide[b]}, index=wide.index)
    if tags is not None:
        out["input_tags"] = tags.reindex(out.index)
    return out.reset_index()


Verdict = Literal["no detectable difference", "A better", "B better", "A higher", "B higher"]
# values where a higher share is better; for others (escaped, error) better depends on the inputs
_HIGHER_IS_BETTER = {"passed", "score", "correct"}


def _difference_row(d: np.ndarray, *, confidence: float, method: str, seed: int,
                    higher_is_better: bool | None) -> dict[str, object]:
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        low = high = math.nan
    elif method == "bootstrap":
        low, high = mean_ci(d, confidence=confidence, seed=seed)
    else:
        sd = float(d.std(ddof=1))
        if sd == 0:
            low = high = mean
        else:
            half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
            low, high = mean - half, mean + half
    if math.isnan(low) or low <= 0 <= high:
        verdict = "no detectable difference"
    else:
        a_higher = low > 0
        if higher_is_better is None:
            verdict = "A higher" if a_higher else "B higher"
        else:
            verdict = "A better" if a_higher == higher_is_better else "B better"
    return {"pairs": n, "difference": mean, "low": low, "high": high, "verdict": verdict}


def paired_difference(df: pd.DataFrame, a: str, b: str, *, value: str = "passed", split_by_tag: bool = False,
                      method: Literal["t", "bootstrap"] = "t", confidence: float = 0.95,
                      higher_is_better: bool | None | Literal["auto"] = "auto", variant_col: str = "variant",
                      pair_on: Sequence[str] = PAIR_KEYS, seed: int = 0) -> pd.DataFrame:
    """Compare variants ``a`` and ``b`` on the same (input, repeat, model) pairs.

    ``difference`` is the mean of value(a) - value(b) over pairs where both have a value, with a
    ``confidence`` interval (``t`` on the paired differences, or a ``bootstrap``). ``verdict`` is
    ``"A better"`` / ``"B better"`` when the interval excludes 0 (``higher_is_better`` says which
    direction is better; set it False for ``escaped`` on answerable inputs) and ``"no detectable
    difference"`` otherwise. ``"auto"`` treats a higher ``passed``/``score`` as better and, for other
    values such as ``escaped`` (right on unanswerable inputs, over-abstention on the rest), says
    only ``"A higher"`` / ``"B higher"``; ``reading`` says it in a sentence with the variants' names. With
    ``split_by_tag`` there is one row per input tag plus ``all``.
    """
    if method not in ("t", "bootstrap"):
        raise ParameterError(f"method must be 't' or 'bootstrap', got {method!r}")
    if not 0 < confidence < 1:
        raise ParameterError(f"confidence must be between 0 and 1, got {confidence!r}")
    if higher_is_better == "auto":
        higher_is_better = True if value in _HIGHER_IS_BETTER else None
    pairs = _pairs(df, a, b, value, variant_col, pair_on)
    groups: list[tuple[str, pd.DataFrame]] = [("all", pairs)]
    if split_by_tag and "input_tags" in pairs:
        tags = sorted({t for ts in pairs["input_tags"] for t in (ts or ["normal"])})
        groups += [(t, pairs[pairs["input_tags"].map(lambda ts, t=t: t in (ts or ["normal"]))]) for t in tags]
    rows = []
    for tag, p in groups:
        d = (p["a"] - p["b"]).to_numpy(dtype=float)
        row = {"tag": tag, "a": a, "b": b, "mean_a": float(p["a"].mean()) if len(p) else math.nan,
               "mean_b": float(p["b"].mean()) if len(p) else math.nan,
               **_difference_row(d, confidence=confidence, method=method, seed=seed, higher_is_better=higher_is_better)}
        row["reading"] = _reading(row, value, confidence)
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.set_index("tag") if split_by_tag else out.drop(columns="tag")


def _reading(row: dict[str, object], value: str, confidence: float) -> str:
    a, b, n = row["a"], row["b"], row["pairs"]
    if not n:
        return f"no pairs where both {a} and {b} have a {value} value"
    ci = f"{confidence:.0%} interval {row['low']:+.3f} to {row['high']:+.3f}"
    if row["verdict"] == "no detectable difference":
        return f"no detectable difference in {value} between {a} and {b} over {n} pairs ({ci})"
    if row["verdict"] in ("A higher", "B higher"):
        higher, lower = (a, b) if row["verdict"] == "A higher" else (b, a)
        return f"{value} is higher for {higher} than for {lower}: {row['difference']:+.3f} (A-B) over {n} pairs ({ci})"
    better, worse = (a, b) if row["verdict"] == "A better" else (b, a)
    return f"{better} better than {worse}: {value} differs by {row['difference']:+.3f} (A-B) over {n} pairs ({ci})"


@dataclass(frozen=True)
class PowerEstimate:
    """How many repeats an experiment needs to detect ``difference`` between two variants."""

    difference: float
    power: float
    confidence: float
    sd_of_differences: float
    pairs_needed: int
    inputs: int
    repeats_needed: int
    calls_needed: int
    cost_usd: float | None
    batch_cost_usd: float | None
    note: str

    def __str__(self) -> str:
        cost = "unknown cost" if self.cost_usd is None else f"about ${self.cost_usd:.4f} (${self.batch_cost_usd:.4f} with a batch API)"
        return (f"To detect a difference of {self.difference:g} with {self.power:.0%} power at {self.confidence:.0%} "
                f"confidence: {self.pairs_needed} pairs, i.e. {self.repeats_needed} repeats of {self.inputs} inputs "
                f"({self.calls_needed} calls, {cost}). {self.note}")


def repeats_needed(pilot: pd.DataFrame, a: str, b: str, *, difference: float, value: str = "passed",
                   power: float = 0.8, confidence: float = 0.95, variant_col: str = "variant",
                   pair_on: Sequence[str] = PAIR_KEYS) -> PowerEstimate:
    """From a pilot run, estimate the repeats needed to detect ``difference`` between ``a`` and ``b``.

    Uses the normal approximation for a paired comparison: pairs = ((z_conf + z_power) * sd / d)^2,
    with sd the standard deviation of the pilot's paired differences. When the pilot shows no
    spread at all (every pair equal), it assumes the spread of two independent proportions at
    the pilot's mean rate (clipped to 0.05..0.95), so a tiny pilot never claims one repeat is
    enough. Cost is the pilot's mean ``cost_usd`` per call times the calls needed (None when a
    price is unknown); batch APIs bill half (see lab/pricing.py). Judge calls are not counted.
    """
    if not (isinstance(difference, (int, float)) and difference > 0):
        raise ParameterError(f"difference must be a positive number (the effect to detect), got {difference!r}")
    if not 0 < power < 1 or not 0 < confidence < 1:
        raise ParameterError("power and confidence must be between 0 and 1")
    pairs = _pairs(pilot, a, b, value, variant_col, pair_on)
    if len(pairs) < 2:
        raise ParameterError(f"the pilot has {len(pairs)} pair(s) of {a!r} and {b!r} with a {value} value; run at least 2")
    d = (pairs["a"] - pairs["b"]).to_numpy(dtype=float)
    sd = float(d.std(ddof=1))
    note = f"sd of paired differences from {len(d)} pilot pairs."
    if sd == 0:
        p = float(np.clip(np.concatenate([pairs["a"], pairs["b"]]).mean(), 0.05, 0.95))
        sd = math.sqrt(2 * p * (1 - p))
        note = f"The pilot's pairs never differed; assumed independent outcomes at rate {p:.2f}."
    z = float(sps.norm.ppf(0.5 + confidence / 2) + sps.norm.ppf(power))
    n_pairs = max(2, math.ceil((z * sd / difference) ** 2))
    n_inputs = int(pilot[pilot[variant_col].isin([a, b])]["input_id"].nunique())
    n_models = int(pilot["model"].nunique()) if "model" in pilot else 1
    reps = max(1, math.ceil(n_pairs / max(1, n_inputs * n_models)))
    calls = 2 * reps * n_inputs * n_models
    costs = pilot[pilot[variant_col].isin([a, b])]["cost_usd"] if "cost_usd" in pilot else pd.Series(dtype=float)
    cost = None if costs.empty or costs.isna().any() else float(costs.mean()) * calls
    return PowerEstimate(difference=float(difference), power=power, confidence=confidence, sd_of_differences=sd,
                         pairs_needed=n_pairs, inputs=n_inputs, repeats_needed=reps, calls_needed=calls,
                         cost_usd=cost, batch_cost_usd=None if cost is None else cost / 2, note=note)
