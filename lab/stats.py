"""Statistics over run rows, with inputs as the unit of evidence.

    df = lab.tables.with_grades(runs.df, log.grades(exp.id))      # adds passed / score per run
    lab.stats.rates(df)                                          # pass rate per variant, interval over inputs
    lab.stats.rates(df, value="escaped", split_by_tag=True)      # escape rate per variant and tag
    lab.stats.paired_difference(df, "honest", "persona")         # honest - persona, paired per input; verdict
    lab.stats.plan(pilot, "honest", "persona", difference=0.1)   # inputs x repeats to detect 0.1

An experiment's inputs are a sample from the inputs its user cares about; repeats sample the
model's answer to each input. So calls of one input are not independent evidence: score
variance = variance between inputs + variance within an input / repeats (Evan Miller, "Adding
Error Bars to Evals", 2024). Everything here is over inputs:

- the estimand is the mean of per-input means: each input counts once, however many repeats it
  has (``weight="calls"`` asks for the call-weighted mean instead);
- a paired reading is one procedure: its interval is the set of differences its test does not
  reject, so the verdict is printed exactly when the interval excludes 0, and the p-value is that
  test's. From ``MIN_INPUTS`` to ``EXACT_UP_TO`` inputs the test is the sign-flip permutation
  test over per-input differences (all 2**n sign patterns, ties counted half: mid-p); above, the
  t-test on per-input differences (its large-sample form: the t statistic is a monotone function
  of the sign-flip statistic). Below ``MIN_INPUTS`` there is no verdict and no interval;
- a single rate is a Wilson score interval at the effective sample size the spread of per-input
  rates implies (never more than the calls), so it stays inside [0, 1]; below ``MIN_INPUTS``
  inputs a rate is counts only (``low``/``high`` are NaN);
- several readings taken together (per tag, per ablated part and measure, many variants) are a
  family: :func:`holm` adjusts their p-values, and each member's interval is drawn at its Holm
  level, so adjusted verdicts and adjusted intervals still agree (unadjusted figures are kept);
- ``population="these"`` asks about exactly these inputs (only the spread of repeats within an
  input counts as noise); readings then say "on these N inputs".

``bench/calibration.py`` checks all of this on simulated experiments with a known truth.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .distributions import chi2_ppf, t_ppf, t_sf
from .errors import ParameterError

OUTCOME_VALUES = ("answered", "escaped", "error")
MIN_INPUTS = 6  # fewest inputs for a verdict or an interval about inputs in general
EXACT_UP_TO = 12  # up to this many inputs the sign-flip permutation test decides (2**n sign patterns)
Population = Literal["inputs", "these"]
Weight = Literal["inputs", "calls"]
TOO_FEW = "too few inputs to tell"
NO_PAIRS = "no pairs"


class _Lazy:
    """A module imported on first use: scipy.stats and pandas cost 1 s and 140 MB between them, and the
    array core below (what ``python -m lab run`` and ``show`` read findings with) needs neither."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self._name), attr)


sps = _Lazy("scipy.stats")
if TYPE_CHECKING:
    import pandas as pd
else:
    pd = _Lazy("pandas")
_NORMAL = NormalDist()


#: single-rate intervals use the variance of per-input rates at this pessimistic quantile: with few
#: inputs from a skewed population (most inputs near 0, a few high) the sample spread is low exactly
#: when the estimate is low, and the plain interval missed the truth 1 time in 8 (bench/calibration.py)
RATE_VARIANCE_QUANTILE = 0.15

PAIR_KEYS = ("input_id", "repeat", "model")


def plural(n: int | float, word: str, many: str | None = None) -> str:
    """``"1 input"``, ``"3 inputs"``: a count with its noun, singular or plural as English wants."""
    n = int(n)
    return f"{n} {word if n == 1 else (many or word + 's')}"


def format_p(p: float) -> str:
    """A p-value as a reading prints it: ``p = 0.031``, ``p < 0.001``; empty when there is none."""
    if p is None or not math.isfinite(p):
        return ""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def proportion_ci(k: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson interval for ``k`` successes out of ``n`` independent trials; (nan, nan) when ``n`` is 0.

    For calls clustered by input use :func:`rates` (or :func:`clustered_interval`) instead."""
    if n <= 0:
        return (math.nan, math.nan)
    ci = sps.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def mean_ci(values: Sequence[float] | np.ndarray, *, confidence: float = 0.95, n_resamples: int = 2000,
            seed: int = 0, clusters: Sequence[object] | None = None) -> tuple[float, float]:
    """Interval for the mean of independent values: bootstrap (BCa); the single value when all values
    are equal; nan when there are none. With ``clusters`` (one label per value, e.g. the input id)
    the values are not independent: the interval is the t interval over clusters' means."""
    raw = np.asarray(values, dtype=float)
    keep = ~np.isnan(raw)
    x = raw[keep]
    if clusters is not None:
        labels = np.asarray(list(clusters), dtype=object)[keep]
        codes = pd.factorize(pd.Series(labels))[0]
        sums, sizes, sumsq = _cluster_sums(x, codes)
        ci = clustered_interval(sums[None], sizes[None], sumsq[None], confidence=confidence)
        return (float(ci["low"][0]), float(ci["high"][0]))
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


# ---- the core over per-input sums (vectorized: bench/calibration.py runs thousands of experiments) ----

def _cluster_sums(x: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cluster: sum of values, count, and sum of squared deviations from the cluster mean."""
    n = int(codes.max()) + 1 if len(codes) else 0
    sums = np.bincount(codes, weights=x, minlength=n)
    sizes = np.bincount(codes, minlength=n).astype(float)
    means = np.divide(sums, sizes, out=np.zeros_like(sums), where=sizes > 0)
    sumsq = np.bincount(codes, weights=(x - means[codes]) ** 2, minlength=n)
    return sums, sizes, sumsq


def _check(population: str, weight: str) -> None:
    if population not in ("inputs", "these"):
        raise ParameterError(f"population must be 'inputs' (inputs like these) or 'these' (exactly these inputs), "
                             f"got {population!r}")
    if weight not in ("inputs", "calls"):
        raise ParameterError(f"weight must be 'inputs' (each input counts once) or 'calls', got {weight!r}")


def _per_input(sums, sizes, weight: str):
    """(per-input means, weights, inputs used) from (experiments, inputs) sums and sizes."""
    sums, sizes = (np.atleast_2d(np.asarray(a, dtype=float)) for a in (sums, sizes))
    used = sizes > 0
    m = np.where(used, sums / np.where(used, sizes, 1), 0.0)
    w = np.where(used, sizes if weight == "calls" else 1.0, 0.0)
    return m, w, used


def _t_spread(m, w, used, sizes, sumsq, population: str, weight: str):
    """(estimate, variance of the estimate, degrees of freedom) of the weighted mean of per-input means."""
    n = used.sum(-1).astype(float)
    sw = w.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        est = (w * m).sum(-1) / sw
        resid = np.where(used, m - est[:, None], 0.0)
        between = n / (n - 1) * (w ** 2 * resid ** 2).sum(-1) / sw ** 2
        if population == "inputs":
            return est, between, n - 1
        within_df = np.where(used, sizes - 1, 0).clip(min=0).sum(-1)
        pooled = np.atleast_2d(sumsq).sum(-1) / within_df
        share = (w ** 2 / np.where(used, sizes, 1)).sum(-1) / sw ** 2  # sum of w_i^2 / K_i over (sum w)^2
        # one call per input: no spread within an input to measure; the calls' spread stands in for it
        var = np.where(within_df > 0, pooled * share, between)
        df = np.where(within_df > 0, within_df, n - 1)
        return est, var, df


def _signs(n: int) -> np.ndarray:
    return (1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)).astype(float)


def _flip_p(m: np.ndarray, w: np.ndarray, shift: np.ndarray, signs: np.ndarray, mid: bool = True) -> np.ndarray:
    """Sign-flip p-value of per-input means ``m`` (weights ``w``) centred on ``shift`` (one per row)."""
    r = w * (m - shift[:, None])
    obs = np.abs(r.sum(-1))[:, None]
    # (experiments, 2**n): the bulk of the bench's and the planner's time, hence float32 with a loose tolerance
    flipped = np.abs(r.astype(np.float32) @ signs.T.astype(np.float32))
    tol = 1e-5 * (np.abs(r).sum(-1)[:, None] + 1e-12)
    above = (flipped > obs + tol).mean(-1)
    ties = (np.abs(flipped - obs) <= tol).mean(-1)
    # a statistic of 0 is the least extreme there is: p = 1 (the doubled one-sided mid-p says so too)
    return np.where(obs[:, 0] <= tol[:, 0], 1.0, above + (0.5 if mid else 1.0) * ties)


def sign_flip_p(per_input: np.ndarray, *, weights: np.ndarray | None = None, shift: float | np.ndarray = 0.0,
                mid_p: bool = True) -> np.ndarray:
    """Two-sided sign-flip (permutation) test that per-input differences are centred on ``shift``.

    ``per_input`` is (experiments, inputs) (``weights``: one per input, 0 for an input without
    calls); all 2**inputs sign patterns are enumerated, so keep inputs to about 16. The statistic is
    |weighted sum of per-input differences - shift|. ``mid_p`` counts patterns that tie with the
    observed one as half (the lab's verdicts use it: the exact test counts them whole and is far
    below its nominal level with few repeats, where many per-input differences are 0 or equal).
    With ``mid_p=False`` it is ``scipy.stats.permutation_test(..., permutation_type="samples")``."""
    d = np.atleast_2d(np.asarray(per_input, dtype=float))
    n = d.shape[-1]
    if n > 20:
        raise ParameterError(f"sign_flip_p enumerates 2**n sign patterns; {n} inputs is too many (use the t interval)")
    w = np.ones_like(d) if weights is None else np.broadcast_to(np.asarray(weights, dtype=float), d.shape)
    shift = np.broadcast_to(np.asarray(shift, dtype=float), d.shape[:1])
    return _flip_p(d, w, shift, _signs(n), mid=mid_p)


def _compact(m: np.ndarray, w: np.ndarray, used: np.ndarray, width: int):
    """Move each row's used inputs to the left and keep ``width`` columns (rows with <= width inputs)."""
    order = np.argsort(~used, axis=-1, kind="stable")[:, :width]
    return np.take_along_axis(m, order, -1), np.take_along_axis(w, order, -1)


def _flip_reading(m, w, used, alpha: float, iterations: int = 48):
    """Sign-flip verdict and its inverted interval for rows with at most EXACT_UP_TO inputs.

    The interval is the set of shifts the test does not reject at ``alpha``, found by bisection from
    the estimate outwards; when 0 is rejected the near end is searched between 0 and the estimate,
    and when it is not, between 0 and the far bound, so the interval contains 0 exactly when the
    verdict says "no detectable difference"."""
    width = int(min(max(used.sum(-1).max(initial=0), 1), EXACT_UP_TO))
    mc, wc = _compact(m, w, used, width)
    signs = _signs(width)
    sw = wc.sum(-1)
    est = (wc * mc).sum(-1) / sw
    p0 = _flip_p(mc, wc, np.zeros(len(mc)), signs)
    reject = p0 <= alpha + 1e-12
    big = np.where(wc > 0, mc, np.nan)
    span = np.nanmax(big, -1) - np.nanmin(big, -1)
    pad = np.maximum(span, 1.0) * 1e-3
    lo_edge, hi_edge = np.nanmin(big, -1) - pad, np.nanmax(big, -1) + pad
    # beyond the data every per-input difference has one sign: only 2 of 2**n patterns tie
    bounded = _flip_p(mc, wc, lo_edge, signs) <= alpha
    ends = []
    for edge, side in ((lo_edge, -1), (hi_edge, 1)):
        inner = np.where(reject, est, side * np.maximum(side * est, 0.0))  # accepted: the estimate, or 0 when 0 is kept
        outer = np.where(reject & (side * est < 0), 0.0, edge)  # rejected 0 on this side: search between 0 and est
        inner = np.where(reject & (side * est < 0), est, inner)
        a, b = inner.copy(), outer.copy()  # a accepted, b rejected
        for _ in range(iterations):
            mid = (a + b) / 2
            ok = _flip_p(mc, wc, mid, signs) > alpha
            a, b = np.where(ok, mid, a), np.where(ok, b, mid)
        ends.append(np.where(bounded, a, side * np.inf))
    return est, ends[0], ends[1], p0, reject


def clustered_interval(sums: np.ndarray, sizes: np.ndarray, sumsq: np.ndarray, *, confidence: float = 0.95,
                       bounds: tuple[float, float] | None = None, population: Population = "inputs",
                       weight: Weight = "inputs", min_inputs: int = 1) -> dict[str, np.ndarray]:
    """Mean of per-input means, with its interval; every array argument is (experiments, inputs).

    ``sums``/``sizes``/``sumsq`` are each input's sum of values, number of calls and sum of squared
    deviations from the input's own mean (inputs with 0 calls are ignored). Returns arrays
    ``estimate``, ``low``, ``high``, ``se``, ``df``, ``inputs`` (with calls) and ``calls``. With
    ``bounds`` (e.g. (0, 1) for a rate) the interval is the Wilson score interval at the effective
    sample size p(1 - p) / variance (at most the number of calls), so it stays inside, with the
    variance over inputs taken at its pessimistic ``RATE_VARIANCE_QUANTILE`` (an upper chi-square
    bound: (inputs - 1) / chi2_0.15 times the sample's); without, it is estimate +- t * se. Rows
    with fewer than ``min_inputs`` inputs get a NaN interval."""
    _check(population, weight)
    sizes2 = np.atleast_2d(np.asarray(sizes, dtype=float))
    m, w, used = _per_input(sums, sizes2, weight)
    n = used.sum(-1).astype(float)
    calls = sizes2.sum(-1)
    est, var, df = _t_spread(m, w, used, sizes2, sumsq, population, weight)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(df >= 1, t_ppf(0.5 + confidence / 2, np.maximum(df, 1)), np.nan)
        se = np.sqrt(var)
        if bounds is None:
            low, high = est - q * se, est + q * se
        else:
            lo, hi = bounds
            width = hi - lo
            p = np.clip((est - lo) / width, 0, 1)
            v = var / width ** 2
            if population == "inputs":  # few inputs from a skewed population understate the spread: be pessimistic,
                # but never beyond the most a mean of n values in [0, 1] can vary (one call per input already is that)
                pess = v * np.where(n > 1, (n - 1) / chi2_ppf(RATE_VARIANCE_QUANTILE, np.maximum(n - 1, 1)), 1.0)
                v = np.minimum(pess, np.maximum(v, p * (1 - p) / np.maximum(n, 1)))
            units = n if population == "inputs" else calls
            n_eff = np.where((v > 0) & (p * (1 - p) > 0), p * (1 - p) / np.where(v > 0, v, 1), units)
            n_eff = np.clip(n_eff, 1e-9, np.maximum(calls, 1e-9))  # never more evidence than calls
            denom = 1 + q ** 2 / n_eff
            centre = (p + q ** 2 / (2 * n_eff)) / denom
            half = q / denom * np.sqrt(p * (1 - p) / n_eff + q ** 2 / (4 * n_eff ** 2))
            # the Wilson interval holds its estimate; at a rate of 0 or 1 the last bit of rounding could
            # put the end a hair past it (low 3e-17 for a rate of 0), so the ends are held to it
            low = np.minimum(lo + width * np.clip(centre - half, 0, 1), est)
            high = np.maximum(lo + width * np.clip(centre + half, 0, 1), est)
    few = n < min_inputs
    low, high = np.where(few, np.nan, low), np.where(few, np.nan, high)
    return {"estimate": est, "low": low, "high": high, "se": se, "df": df, "inputs": n, "calls": calls}


def difference_verdicts(sums: np.ndarray, sizes: np.ndarray, sumsq: np.ndarray, *, confidence: float = 0.95,
                        bounds: tuple[float, float] | None = (-1.0, 1.0), population: Population = "inputs",
                        min_inputs: int = MIN_INPUTS, weight: Weight = "inputs",
                        interval: bool = True) -> dict[str, np.ndarray]:
    """The paired reading for per-input sums of differences A - B, (experiments, inputs) arrays.

    Returns ``estimate`` (the mean of per-input differences, or the call-weighted mean with
    ``weight="calls"``), ``low``/``high`` (the interval: the differences the test does not reject),
    ``p_value`` (the same test at 0), ``se``, ``df``, ``inputs``, ``calls``, ``method`` (1: sign-flip,
    2: t, 0: none) and ``direction``: +1 (A higher), -1 (B higher), 0 (no detectable difference) or
    -2 (too few inputs to tell: no interval, no p-value). A direction is given exactly when the
    interval excludes 0. ``interval=False`` skips the sign-flip interval's search (the bench only
    needs verdicts). A rate difference's t interval is clipped to ``bounds``, which never moves 0 in
    or out of it; the sign-flip interval lies within the per-input differences anyway."""
    _check(population, weight)
    sizes2 = np.atleast_2d(np.asarray(sizes, dtype=float))
    m, w, used = _per_input(sums, sizes2, weight)
    n = used.sum(-1).astype(float)
    calls = sizes2.sum(-1)
    alpha = 1 - confidence
    est, var, df = _t_spread(m, w, used, sizes2, sumsq, population, weight)
    few = n < (min_inputs if population == "inputs" else 1)
    exact = ~few & (n <= EXACT_UP_TO) if population == "inputs" else np.zeros(len(n), dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(var)
        q = np.where(df >= 1, t_ppf(0.5 + confidence / 2, np.maximum(df, 1)), np.nan)
        low, high = est - q * se, est + q * se
        p = np.where(est == 0, 1.0, 0.0)
        t_test = (se > 0) & ~exact  # the sign-flip rows' p-values come below (the simulations' bulk)
        p[t_test] = 2 * t_sf(np.abs(est[t_test] / se[t_test]), np.maximum(df[t_test], 1))
    if bounds is not None:
        low, high = np.clip(low, *bounds), np.clip(high, *bounds)
    method = np.where(np.isfinite(low), 2, 0)
    if population == "inputs":
        if exact.any():
            rows = np.flatnonzero(exact)
            if interval:
                e, lo_x, hi_x, p_x, _ = _flip_reading(m[rows], w[rows], used[rows], alpha)
            else:
                width = int(n[rows].max())
                mc, wc = _compact(m[rows], w[rows], used[rows], width)
                p_x = _flip_p(mc, wc, np.zeros(len(rows)), _signs(width))
                e, lo_x, hi_x = est[rows], np.where(p_x <= alpha + 1e-12, est[rows], -np.inf), \
                    np.where(p_x <= alpha + 1e-12, est[rows], np.inf)
            if bounds is not None:
                lo_x, hi_x = np.clip(lo_x, *bounds), np.clip(hi_x, *bounds)
            est[rows], low[rows], high[rows], p[rows], method[rows] = e, lo_x, hi_x, p_x, 1
    if population == "these":  # one call per input and no spread between inputs: no noise was measured
        replicated = (np.where(used, sizes2 - 1, 0).clip(min=0).sum(-1) > 0)
        few = few | (~replicated & ~(se > 0))
    few = few | ~np.isfinite(est) | np.isnan(low) | np.isnan(high)
    low, high = np.where(few, np.nan, low), np.where(few, np.nan, high)
    p = np.where(few, np.nan, p)
    method = np.where(few, 0, method)
    est = np.where(np.abs(est) < 1e-12, 0.0, est)  # a sum of differences that cancels is 0, not -2e-17
    excludes = (low > 0) | (high < 0)
    # an end the search left a hair from 0 on an interval that contains 0 is 0 (no "-0.000")
    low = np.where(~excludes & (np.abs(low) < 1e-9), 0.0, low)
    high = np.where(~excludes & (np.abs(high) < 1e-9), 0.0, high)
    direction = np.where(few, -2.0, np.where(excludes, np.sign(est), 0.0))
    return {"estimate": est, "low": low, "high": high, "se": se, "df": df, "inputs": n, "calls": calls,
            "p_value": p, "direction": direction, "method": method}


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count as a member).

    A family of readings taken together (one per tag, per ablated part and measure, per pair of
    variants) is read at the family's level: the chance of any false verdict among them stays at 5%."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if not m:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adj, 1.0)
    return out


def holm_levels(p_values: Sequence[float] | np.ndarray, alpha: float) -> np.ndarray:
    """Each member's Holm level: the alpha its interval is drawn at so that the interval excludes
    0 exactly when the Holm-adjusted p-value is at most ``alpha``. Members rejected at step j get
    alpha / (m - j + 1); the rest get the level of the step where the procedure stopped."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    order = ok[np.argsort(p[ok], kind="stable")]
    stopped = False
    level = alpha
    for j, i in enumerate(order):
        step = alpha / (m - j)
        if not stopped and p[i] <= step + 1e-12:
            out[i] = step
        else:
            if not stopped:
                stopped, level = True, step
            out[i] = level
    return out


# ---- tables over run rows -------------------------------------------------------------------------

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
        "for 'passed' or 'score', add grades first: lab.tables.with_grades(runs, grades)"
    )


def _by_list(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def _explode_tags(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, tag), plus every run once under the tag ``all``."""
    tagged = df.assign(tag=df["input_tags"].map(_tag_list)).explode("tag")
    return pd.concat([df.assign(tag="all"), tagged], ignore_index=True)


def _tag_list(tags: object) -> list[str]:
    return list(tags) if isinstance(tags, (list, tuple, np.ndarray)) and len(tags) else ["normal"]


def _clusters(df: pd.DataFrame, cluster: str | None) -> np.ndarray:
    """Integer cluster codes: one per input (``cluster`` column), or one per row when there is none."""
    if cluster and cluster in df.columns:
        return pd.factorize(df[cluster].astype(str))[0]
    return np.arange(len(df))


def first_seen_codes(labels: Sequence[object] | np.ndarray) -> np.ndarray:
    """Integer codes numbering ``labels`` in order of first appearance (``pandas.factorize``'s order):
    the order of per-input sums, hence of the sums over inputs that readings make."""
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu":
        _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
        rank = np.empty(len(first), dtype=np.intp)
        rank[np.argsort(first, kind="stable")] = np.arange(len(first))
        return rank[inverse.reshape(-1)]
    return first_seen(labels)[0]


def first_seen(labels: Sequence[object] | np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """``labels`` as (codes, distinct labels), numbered in order of first appearance."""
    distinct = list(dict.fromkeys(labels))
    index = {x: i for i, x in enumerate(distinct)}
    return np.fromiter(map(index.__getitem__, labels), dtype=np.intp, count=len(labels)), distinct


def interval_of(x: np.ndarray, clusters: np.ndarray, *, confidence: float, bounds: tuple[float, float] | None,
                population: Population, weight: Weight, min_inputs: int) -> dict[str, float]:
    """One group's mean of per-input means with its interval, from per-run values ``x`` (NaN: left
    out) and their ``clusters`` (one label per run, e.g. the input id): :func:`rates` and :func:`means`
    for one group, on plain arrays."""
    x = np.asarray(x, dtype=float)
    keep = ~np.isnan(x)
    if not keep.any():
        return {"estimate": math.nan, "low": math.nan, "high": math.nan, "inputs": 0, "calls": 0}
    codes = first_seen_codes(np.asarray(clusters)[keep])
    ci = clustered_interval(*(a[None] for a in _cluster_sums(x[keep], codes)), confidence=confidence, bounds=bounds,
                            population=population, weight=weight,
                            min_inputs=min_inputs if population == "inputs" else 1)
    return {k: float(ci[k][0]) for k in ("estimate", "low", "high", "inputs", "calls")}


def rate_of(x: np.ndarray, clusters: np.ndarray, *, confidence: float = 0.95, population: Population = "inputs",
            weight: Weight = "inputs", min_inputs: int = MIN_INPUTS) -> dict[str, float]:
    """One row of :func:`rates` (n, inputs, k, rate, low, high, missing) from per-run 0/1 values ``x``
    (NaN: missing) and their clusters, without pandas."""
    x = np.asarray(x, dtype=float)
    ci = interval_of(x, clusters, confidence=confidence, bounds=(0.0, 1.0), population=population, weight=weight,
                     min_inputs=min_inputs)
    return {"n": int(ci["calls"]), "inputs": int(ci["inputs"]), "k": int((x > 0.5).sum()), "rate": ci["estimate"],
            "low": ci["low"], "high": ci["high"], "missing": int(np.isnan(x).sum())}


def rate_text(k: int, n: int, inputs: int, rate: float, low: float, high: float, *,
              repeats: float | None = None) -> str:
    """A rate as a reader should see it: ``"40% [22%, 61%] (10 inputs x 3)"``, or counts when there
    is no interval: ``"0 of 6 calls on 2 inputs (too few inputs for an interval)"``."""
    if not n or not math.isfinite(rate):
        return "no calls"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{int(k)} of {plural(n, 'call')} on {plural(inputs, 'input')} (too few inputs for an interval)"
    reps = repeats if repeats is not None else round(float(n) / max(int(inputs), 1), 1)  # Python's rounding, not numpy's
    return f"{rate:.0%} [{low:.0%}, {high:.0%}] ({plural(inputs, 'input')} x {reps:g})"


def _grouped(df: pd.DataFrame, value: str, by: str | Sequence[str] | None, split_by_tag: bool) -> tuple[list[str], Any]:
    """The group keys and the groups of ``df`` (per input tag too, when split), each row's value in ``_v``."""
    keys = _by_list(by)
    data = _explode_tags(df) if split_by_tag else df
    if split_by_tag:
        keys = keys + ["tag"]
    data = data.assign(_v=_values(data, value))
    return keys, (data.groupby(keys, sort=False, dropna=False) if keys else [((), data)])


def rates(df: pd.DataFrame, *, value: str = "passed", by: str | Sequence[str] | None = "variant",
          split_by_tag: bool = False, confidence: float = 0.95, population: Population = "inputs",
          cluster: str | None = "input_id", weight: Weight = "inputs", min_inputs: int = MIN_INPUTS) -> pd.DataFrame:
    """Rate of ``value`` per group, with an interval over inputs.

    ``value`` is a 0/1 column (``passed`` after :func:`lab.tables.with_grades`) or an outcome
    (``escaped``, ``answered``, ``error``). Rows where the value is missing (ungraded runs) are
    left out and counted in ``missing``. With ``split_by_tag`` every input tag gets its own rows
    (``tag`` column; ``all`` covers every run). ``rate`` is the mean of per-input rates (each input
    counts once; ``weight="calls"`` pools calls instead); the interval treats calls of one input
    (``cluster``) as one piece of evidence (see the module docstring) and stays inside [0, 1]; with
    fewer than ``min_inputs`` inputs there is no interval (``low``/``high`` NaN: read the counts ``k``
    of ``n``). ``population="these"`` gives the interval for exactly these inputs. Columns: n (calls),
    inputs, k, rate, low, high, missing.
    """
    _check(population, weight)
    keys, groups = _grouped(df, value, by, split_by_tag)
    rows = []
    for key, g in groups:
        r = rate_of(g["_v"].to_numpy(dtype=float), _clusters(g, cluster), confidence=confidence,
                    population=population, weight=weight, min_inputs=min_inputs)
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(keys, key)), **r})
    out = pd.DataFrame(rows, columns=keys + ["n", "inputs", "k", "rate", "low", "high", "missing"])
    return out.set_index(keys) if keys else out


def means(df: pd.DataFrame, *, value: str = "score", by: str | Sequence[str] | None = "variant",
          split_by_tag: bool = False, confidence: float = 0.95, seed: int = 0, population: Population = "inputs",
          cluster: str | None = "input_id", bounds: tuple[float, float] | None = None, weight: Weight = "inputs",
          min_inputs: int = MIN_INPUTS) -> pd.DataFrame:
    """Mean of a numeric column per group (the mean of per-input means) with a t interval over inputs
    (clustered like :func:`rates`; no interval below ``min_inputs`` inputs).

    ``bounds`` (e.g. (1, 5) for a 1-5 score) keeps the interval inside the scale. ``seed`` is kept
    for compatibility (the interval is no longer a bootstrap). Columns: n, inputs, mean, low, high, missing."""
    _check(population, weight)
    keys, groups = _grouped(df, value, by, split_by_tag)
    rows = []
    for key, g in groups:
        ci = interval_of(g["_v"].to_numpy(dtype=float), _clusters(g, cluster), confidence=confidence, bounds=bounds,
                         population=population, weight=weight, min_inputs=min_inputs)
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(keys, key)), "n": int(ci["calls"]), "inputs": int(ci["inputs"]),
                     "mean": ci["estimate"], "low": ci["low"], "high": ci["high"],
                     "missing": int(g["_v"].isna().sum())})
    out = pd.DataFrame(rows, columns=keys + ["n", "inputs", "mean", "low", "high", "missing"])
    return out.set_index(keys) if keys else out


class RunPairs:
    """Runs of variants A and B paired on their keys (``PAIR_KEYS``: input, repeat, model), as every
    paired reading pairs them: a pair is a key that runs of both variants have; its value for a
    variant is the mean over that variant's runs of the key with a value; pairs come in the keys'
    sorted order. Built from per-run arrays, so that the DataFrame functions (:func:`paired_difference`,
    :func:`plan`) and the findings (``lab.findings``, read without pandas) pair runs one way."""

    def __init__(self, is_a: np.ndarray, is_b: np.ndarray, ranks: Sequence[tuple[np.ndarray, int]]) -> None:
        """``is_a``, ``is_b``: per run, whether it is of variant A, of B; ``ranks``: per key, each run's
        rank of its value among the key's values in sorted order (-1: none, so the run is in no pair),
        and how many ranks there are."""
        self.is_a, self.is_b = is_a, is_b
        rows = np.flatnonzero(is_a | is_b)
        by = np.stack([r[rows] for r, _ in ranks])  # (keys, runs)
        ok = (by >= 0).all(axis=0)
        if math.prod(n for _, n in ranks) < 2 ** 62:  # one integer per run that sorts as its keys do
            keys, pair = np.unique(np.ravel_multi_index(by[:, ok], [max(n, 1) for _, n in ranks]), return_inverse=True)
        else:
            keys, pair = np.unique(by[:, ok].T, axis=0, return_inverse=True)
        self.pair = np.full(len(is_a), -1, dtype=np.intp)  # per run, its pair (-1: none)
        self.pair[rows[ok]] = pair.reshape(-1)
        self.count = len(keys)

    def first(self, where: np.ndarray | None = None) -> np.ndarray:
        """Per pair, its first run (in run order) where ``where`` holds (a bool per run); -1 where none does."""
        runs = np.flatnonzero((self.pair >= 0) & where if where is not None else self.pair >= 0)
        pairs, at = np.unique(self.pair[runs], return_index=True)
        out = np.full(self.count, -1, dtype=np.intp)
        out[pairs] = runs[at]
        return out

    def means(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pairs where both variants have a value of ``x`` (per run; NaN: none), and there A's mean and B's."""
        sums, counts = [], []
        for side in (self.is_a, self.is_b):
            use = side & (self.pair >= 0) & ~np.isnan(x)
            sums.append(np.bincount(self.pair[use], weights=x[use], minlength=self.count))
            counts.append(np.bincount(self.pair[use], minlength=self.count))
        idx = np.flatnonzero((counts[0] > 0) & (counts[1] > 0))
        return idx, sums[0][idx] / counts[0][idx], sums[1][idx] / counts[1][idx]


def _pairs(df: pd.DataFrame, a: str, b: str, value: str, variant_col: str,
           pair_on: Sequence[str]) -> pd.DataFrame:
    """One row per pair (:class:`RunPairs`) where both ``a`` and ``b`` have a value: its keys, a, b
    and input_tags (the first tagged run's)."""
    for name in (a, b):
        if name not in set(df[variant_col]):
            raise ParameterError(f"no rows with {variant_col} {name!r}; present: {sorted(map(str, set(df[variant_col])))}")
    keys = [k for k in pair_on if k in df.columns]
    if not keys:
        raise ParameterError(f"pair_on {list(pair_on)!r} names no column of the runs table")
    variants = df[variant_col]
    ranks = [(codes, len(uniques)) for codes, uniques in (pd.factorize(df[k], sort=True) for k in keys)]
    pairs = RunPairs((variants == a).to_numpy(dtype=bool), (variants == b).to_numpy(dtype=bool), ranks)
    idx, mean_a, mean_b = pairs.means(_values(df, value).to_numpy(dtype=float))
    out = pd.DataFrame({k: df[k].iloc[pairs.first()[idx]].to_numpy() for k in keys})
    out["a"], out["b"] = mean_a, mean_b
    if "input_tags" in df:
        tagged = pairs.first(df["input_tags"].notna().to_numpy())[idx]
        out["input_tags"] = [df["input_tags"].iloc[i] if i >= 0 else None for i in tagged]
    return out


Verdict = Literal["no pairs", "too few inputs to tell", "no detectable difference", "A better", "B better",
                  "A higher", "B higher"]
# values where a higher share is better; for others (escaped, error) better depends on the inputs
_HIGHER_IS_BETTER = {"passed", "score", "correct", "appropriate"}
_METHOD_NAMES = {1: "sign-flip test over inputs", 2: "t-test over inputs"}


def _is_rate(x: np.ndarray) -> bool:
    return bool(len(x)) and bool(np.all((x >= 0) & (x <= 1)))


def _difference_row(a_vals: np.ndarray, b_vals: np.ndarray, clusters: np.ndarray, *, confidence: float, method: str,
                    higher_is_better: bool | None, population: Population, min_inputs: int,
                    seed: int, weight: Weight = "inputs") -> dict[str, Any]:
    """One paired reading of per-pair values ``a_vals`` and ``b_vals`` clustered by ``clusters``."""
    d = a_vals - b_vals
    bounded = _is_rate(a_vals) and _is_rate(b_vals)
    if not len(d):
        return {"pairs": 0, "inputs": 0, "difference": math.nan, "low": math.nan, "high": math.nan,
                "p_value": math.nan, "verdict": NO_PAIRS, "method": ""}
    codes = first_seen_codes(clusters)
    sums, sizes, sumsq = _cluster_sums(d, codes)
    res = difference_verdicts(sums[None], sizes[None], sumsq[None], confidence=confidence,
                              bounds=(-1.0, 1.0) if bounded else None, population=population,
                              min_inputs=min_inputs, weight=weight)
    low, high, pval = float(res["low"][0]), float(res["high"][0]), float(res["p_value"][0])
    direction = int(res["direction"][0])
    name = _METHOD_NAMES.get(int(res["method"][0]), "") if population == "inputs" else "t-test within inputs"
    per_input = sums / sizes
    # resample inputs (clusters), not calls; the verdict is then the bootstrap interval's alone
    if method == "bootstrap" and direction != -2:
        name, pval = "bootstrap over inputs", math.nan
        if np.all(per_input == per_input[0]):
            low = high = float(per_input[0])
        else:
            low, high = mean_ci(per_input, confidence=confidence, seed=seed)
        if bounded:
            low, high = max(low, -1.0), min(high, 1.0)
        direction = int(np.sign(res["estimate"][0])) if (low > 0 or high < 0) else 0
    if direction == -2:
        verdict = TOO_FEW
    elif direction == 0:
        verdict = "no detectable difference"
    elif higher_is_better is None:
        verdict = "A higher" if direction > 0 else "B higher"
    else:
        verdict = "A better" if (direction > 0) == higher_is_better else "B better"
    return {"pairs": len(d), "inputs": int(res["inputs"][0]), "difference": float(res["estimate"][0]), "low": low,
            "high": high, "p_value": pval, "verdict": verdict, "method": name,
            "same_everywhere": bool(np.all(per_input == per_input[0]))}


def paired_difference(df: pd.DataFrame, a: str, b: str, *, value: str = "passed", split_by_tag: bool = False,
                      method: Literal["t", "bootstrap"] = "t", confidence: float = 0.95,
                      higher_is_better: bool | None | Literal["auto"] = "auto", variant_col: str = "variant",
                      pair_on: Sequence[str] = PAIR_KEYS, seed: int = 0, population: Population = "inputs",
                      min_inputs: int = MIN_INPUTS, weight: Weight = "inputs") -> pd.DataFrame:
    """Compare variants ``a`` and ``b`` on the same (input, repeat, model) pairs: ``a`` - ``b``.

    ``difference`` is the mean over inputs of each input's mean of value(a) - value(b) (pairs where
    both have a value; ``weight="calls"`` weights inputs by their pairs instead), with a
    ``confidence`` interval over inputs and the ``p_value`` of the same test (see the module
    docstring: sign-flip up to ``EXACT_UP_TO`` inputs, t above; ``method="bootstrap"`` resamples
    inputs and has no p-value). ``verdict``:

    - ``"no pairs"`` when no pair has both values;
    - ``"too few inputs to tell"`` below ``min_inputs`` inputs (no interval, no p-value);
    - ``"A better"`` / ``"B better"`` exactly when the interval excludes 0; ``higher_is_better``
      says which direction is better. ``"auto"`` treats a higher ``passed``/``score``/``appropriate``
      as better and, for other values such as ``escaped`` (right on unanswerable inputs,
      over-abstention on the rest), says only ``"A higher"`` / ``"B higher"``;
    - ``"no detectable difference"`` otherwise.

    With ``split_by_tag`` there is one row per input tag plus ``all``; the tag rows are a family
    (which tags drive it?): their ``p_value`` is Holm-adjusted and their interval drawn at their Holm
    level, so an adjusted verdict still agrees with its interval; ``p_unadjusted``,
    ``low_unadjusted``, ``high_unadjusted`` and ``verdict_unadjusted`` keep the figures read alone
    and ``family`` is the number of tag readings adjusted together. ``population="these"`` draws the
    conclusion about exactly these inputs (only the spread of repeats is noise) and the reading says
    "on these N inputs". ``reading`` says it all in a sentence with the variants' names. Other
    columns: pairs, inputs, mean_a, mean_b (means of per-input means), method.
    """
    if method not in ("t", "bootstrap"):
        raise ParameterError(f"method must be 't' or 'bootstrap', got {method!r}")
    if not 0 < confidence < 1:
        raise ParameterError(f"confidence must be between 0 and 1, got {confidence!r}")
    _check(population, weight)
    if higher_is_better == "auto":
        higher_is_better = True if value in _HIGHER_IS_BETTER else None
    cluster = "input_id" if "input_id" in pair_on else None
    pairs = _pairs(df, a, b, value, variant_col, pair_on)
    tags = list(pairs["input_tags"]) if split_by_tag and "input_tags" in pairs else None
    rows = paired_readings(pairs["a"].to_numpy(dtype=float), pairs["b"].to_numpy(dtype=float),
                           _clusters(pairs, cluster), a, b, tags=tags, value=value, confidence=confidence,
                           method=method, higher_is_better=higher_is_better, population=population,
                           min_inputs=min_inputs, seed=seed, weight=weight,
                           means=lambda mask: _frame_means(pairs[mask], cluster, weight))
    out = pd.DataFrame(rows).drop(columns="same_everywhere", errors="ignore")
    return out.set_index("tag") if split_by_tag else out.drop(columns="tag")


def paired_readings(a_vals: np.ndarray, b_vals: np.ndarray, clusters: np.ndarray, a: str, b: str, *,
                    tags: Sequence[object] | None = None, value: str = "passed", confidence: float = 0.95,
                    method: str = "t", higher_is_better: bool | None = True, population: Population = "inputs",
                    min_inputs: int = MIN_INPUTS, seed: int = 0, weight: Weight = "inputs",
                    means: Callable[[np.ndarray], dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """:func:`paired_difference` on plain arrays, one entry per pair (A's value, B's value, the
    pair's cluster, its input's tags): the ``all`` reading, then with ``tags`` one per tag (sorted),
    Holm-adjusted as a family, each a dict with the columns :func:`paired_difference` returns.
    ``means(mask)`` gives a group's mean_a and mean_b (default: per-input means from the arrays)."""
    groups: list[tuple[str, np.ndarray]] = [("all", np.ones(len(a_vals), dtype=bool))]
    if tags is not None:  # pairs of one input share its tags' object (from the log): each object read once
        which = first_seen_codes(list(map(id, tags)))
        lists = [_tag_list(ts) for ts in {id(ts): ts for ts in tags}.values()]
        groups += [(t, np.array([t in ts for ts in lists], dtype=bool)[which])
                   for t in sorted({t for ts in lists for t in ts})]
    kw: dict[str, Any] = dict(method=method, higher_is_better=higher_is_better, population=population,
                              min_inputs=min_inputs, seed=seed, weight=weight)

    def one(mask: np.ndarray, level: float) -> dict[str, Any]:
        return _difference_row(a_vals[mask], b_vals[mask], clusters[mask], confidence=level, **kw)
    rows = []
    for tag, mask in groups:
        mean_ab = means(mask) if means is not None else \
            _input_means(a_vals[mask], b_vals[mask], clusters[mask] if weight != "calls" else None)
        rows.append({"tag": tag, "a": a, "b": b, **mean_ab, **one(mask, confidence)})
    family = [i for i, r in enumerate(rows) if r["tag"] != "all"] if len(rows) > 2 else []
    adjust_family(rows, family, lambda i, level: one(groups[i][1], 1 - level), confidence)
    for row in rows:
        row["population"] = population
        row["reading"] = _reading(row, value, confidence)
    return rows


def pairwise(df: pd.DataFrame, variants: Sequence[str] | None = None, *, value: str = "passed",
             confidence: float = 0.95, higher_is_better: bool | None | Literal["auto"] = "auto",
             variant_col: str = "variant", pair_on: Sequence[str] = PAIR_KEYS, population: Population = "inputs",
             weight: Weight = "inputs", min_inputs: int = MIN_INPUTS) -> pd.DataFrame:
    """Every pair of ``variants`` (default: all, in order of appearance) compared as in
    :func:`paired_difference`, read as one family: with more than two variants, "which one is best"
    asks all the pairs at once, so p-values are Holm-adjusted and each interval is drawn at its Holm
    level (``p_unadjusted`` and the other ``*_unadjusted`` columns keep the figures read alone).
    One row per pair ``a`` - ``b``."""
    names = [str(v) for v in (variants or dict.fromkeys(df[variant_col].dropna()))]
    if len(names) < 2:
        raise ParameterError(f"pairwise needs at least two variants; got {names}")
    kw: dict[str, Any] = dict(value=value, higher_is_better=higher_is_better, variant_col=variant_col, pair_on=pair_on,
              population=population, weight=weight, min_inputs=min_inputs)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    rows = [paired_difference(df, a, b, confidence=confidence, **kw).iloc[0].to_dict() for a, b in pairs]
    for r in rows:
        r.pop("reading", None)
        r["family_of"] = "pairs of variants"

    def again(i: int, level: float) -> dict[str, object]:
        return paired_difference(df, *pairs[i], confidence=1 - level, **kw).iloc[0].to_dict()
    adjust_family(rows, list(range(len(rows))) if len(rows) > 1 else [], again, confidence)
    for r in rows:
        r["reading"] = _reading(r, value, confidence)
    return pd.DataFrame(rows)


def _input_means(a_vals: np.ndarray, b_vals: np.ndarray, clusters: np.ndarray | None) -> dict[str, float]:
    """mean_a and mean_b on the reading's own estimand (per-input means, each input once; with no
    ``clusters``, the mean over pairs)."""
    if not len(a_vals):
        return {"mean_a": math.nan, "mean_b": math.nan}
    if clusters is None:
        return {"mean_a": float(np.mean(a_vals)), "mean_b": float(np.mean(b_vals))}
    codes = first_seen_codes(clusters)
    sizes = np.bincount(codes)
    return {"mean_a": float(np.mean(np.bincount(codes, weights=a_vals) / sizes)),
            "mean_b": float(np.mean(np.bincount(codes, weights=b_vals) / sizes))}


def _frame_means(p: pd.DataFrame, cluster: str | None, weight: str) -> dict[str, float]:
    """:func:`_input_means` as pandas computes it (its compensated sums differ in the last digit on
    non-0/1 values): the DataFrame functions keep the figures they always gave."""
    if not len(p):
        return {"mean_a": math.nan, "mean_b": math.nan}
    if weight == "calls" or cluster is None or cluster not in p:
        return {"mean_a": float(p["a"].mean()), "mean_b": float(p["b"].mean())}
    g = p.groupby(p[cluster].astype(str), sort=False)[["a", "b"]].mean()
    return {"mean_a": float(g["a"].mean()), "mean_b": float(g["b"].mean())}


_UNADJUSTED = ("p_value", "low", "high", "verdict")


def adjust_family(rows: list[dict], family: list[int], recompute, confidence: float) -> None:
    """Holm-adjust a family of readings in place.

    ``rows`` are reading dicts (``p_value``, ``low``, ``high``, ``verdict``), ``family`` the indices
    read together; every row keeps its figures read alone under ``*_unadjusted``; each member gets
    its Holm-adjusted ``p_value``, and its ``low``/``high``/``verdict`` redrawn at its Holm level by
    ``recompute(i, level)`` (which returns those three), so an adjusted verdict agrees with its
    adjusted interval. Members without a p-value (too few inputs, no pairs) are not counted."""
    for r in rows:  # a row already read in another family keeps the figures it had alone
        for key in ("p_value", "low", "high", "verdict"):
            r.setdefault(key.replace("_value", "") + "_unadjusted", r[key])
        r.setdefault("family", 1)
    members = [i for i in family if math.isfinite(rows[i]["p_value"])]
    if len(members) < 2:
        return
    alpha = 1 - confidence
    p = np.array([rows[i]["p_value"] for i in members])
    adjusted, levels = holm(p), holm_levels(p, alpha)
    for i, padj, level in zip(members, adjusted, levels):
        again = recompute(i, float(level))
        rows[i].update({"p_value": float(padj), "low": again["low"], "high": again["high"],
                        "verdict": again["verdict"], "family": len(members)})


def interval_ends(low: float, high: float, digits: int = 3) -> tuple[str, str]:
    """An interval's ends as text: ``("-0.100", "+0.250")``. On an interval that excludes 0, an end
    nearer 0 than the digits show reads ``just above 0`` / ``just below 0`` (a sign-flip interval can
    end right at 0), never ``+0.000``; an infinite end reads ``no bound``."""
    excludes = low > 0 or high < 0

    def one(x: float) -> str:
        if not math.isfinite(x):
            return "no bound" if x == x else "n/a"
        if excludes and x != 0 and round(x, digits) == 0:
            return "just above 0" if x > 0 else "just below 0"
        return f"{x + 0.0:+.{digits}f}"
    return one(low), one(high)


def _interval_text(low: float, high: float, confidence: float, digits: int = 3) -> str:
    lo, hi = interval_ends(low, high, digits)
    return f"{confidence:.0%} interval {lo} to {hi}"


def _reading(row: dict[str, Any], value: str, confidence: float) -> str:
    a, b, n, k = row["a"], row["b"], row["pairs"], row["inputs"]
    if not n:
        return f"no pairs where both {a} and {b} have a {value} value"
    size = f"{'on these' if row.get('population') == 'these' else 'over'} {plural(k, 'input')} ({plural(n, 'pair')})"
    diff = f"{a} - {b} = {row['difference'] + 0.0:+.3f}"
    if row["verdict"] == TOO_FEW:
        if row.get("population") == "these":
            return (f"{TOO_FEW}: {value} {diff} {size}; one call per input and no spread to measure the noise "
                    "by (add repeats)")
        return f"{TOO_FEW}: {value} {diff} {size}; a verdict and an interval need {MIN_INPUTS} inputs"
    how = "; ".join(x for x in (format_p(row["p_value"]), row.get("method") or "") if x)
    if row.get("family", 1) > 1:
        how += f"; Holm-adjusted over {row['family']} {row.get('family_of', 'tags')}"
    ci = _interval_text(row["low"], row["high"], confidence) + (f"; {how}" if how else "")
    if row.get("same_everywhere") and row["low"] == row["high"]:
        ci += "; every input gave the same difference"
    if row["verdict"] == "no detectable difference":
        return f"no detectable difference in {value} between {a} and {b} {size}: {diff} ({ci})"
    if row["verdict"] in ("A higher", "B higher"):
        higher, lower = (a, b) if row["verdict"] == "A higher" else (b, a)
        return f"{value} is higher for {higher} than for {lower}: {diff} {size} ({ci})"
    better, worse = (a, b) if row["verdict"] == "A better" else (b, a)
    return f"{better} better than {worse} {size}: {value} {diff} ({ci})"


# ---- planning: inputs x repeats -----------------------------------------------------------------

PLAN_QUANTILE = 0.8  # plan on the 80th percentile of the between-input variance the pilot allows
PLAN_SIMULATIONS = 1000  # simulated experiments per design read by the sign-flip test (6-12 inputs): +-1.5 points


@dataclass(frozen=True)
class _Components:
    """What a design's power depends on: variance components of a paired difference, and (for
    0/1 values) the mean rate and the spread of base rates that reproduce the within-input spread."""

    between: float
    within: float
    rate: float | None
    base_var: float


def _power_t(difference: float, unit_var: float, n: int, confidence: float) -> float:
    """Exact power of the two-sided t-test over ``n`` per-input means of variance ``unit_var`` (noncentral t)."""
    from scipy import special

    if unit_var <= 0:
        return 1.0
    df = n - 1
    crit = float(t_ppf(0.5 + confidence / 2, df))
    nc = abs(difference) * math.sqrt(n / unit_var)
    upper = 1 - float(special.nctdtr(df, nc, crit))
    lower = float(special.nctdtr(df, nc, -crit))  # the far tail: nan (0, really) when nc is large
    return upper + (lower if math.isfinite(lower) else 0.0) if math.isfinite(upper) else 1.0


def _power_sim(difference: float, c: _Components, n: int, k: int, confidence: float,
               sims: int = PLAN_SIMULATIONS, seed: int = 0) -> float:
    """Share of simulated experiments (n inputs x k repeats) in which the lab's own procedure
    (:func:`difference_verdicts`) finds the difference in its direction. Seeded: the same design
    always gets the same answer, and a larger design is read on the same draws."""
    rng = np.random.default_rng(seed)
    effect = rng.normal(difference, math.sqrt(max(c.between, 0.0)), (sims, n))
    if c.rate is not None:
        base = _beta_like(rng, c.rate, c.base_var, (sims, n))
        pa, pb = np.clip(base + effect / 2, 0, 1), np.clip(base - effect / 2, 0, 1)
        sums = (rng.binomial(k, pa) - rng.binomial(k, pb)).astype(float)
    else:
        sums = k * (effect + rng.normal(0.0, math.sqrt(c.within / k), (sims, n)))
    res = difference_verdicts(sums, np.full((sims, n), float(k)), np.zeros((sims, n)), confidence=confidence,
                              bounds=None, interval=False)
    return float((res["direction"] == (1 if difference > 0 else -1)).mean())


def _beta_like(rng: np.random.Generator, mean: float, var: float, shape: tuple[int, ...]) -> np.ndarray:
    """Base rates with this mean and variance (a constant when the variance is 0)."""
    mean = min(max(mean, 1e-3), 1 - 1e-3)
    var = min(var, mean * (1 - mean) * 0.99)
    if var <= 1e-9:
        return np.full(shape, mean)
    s = mean * (1 - mean) / var - 1
    return rng.beta(mean * s, (1 - mean) * s, shape)


@functools.lru_cache(maxsize=4096)
def _power(difference: float, c: _Components, n: int, k: int, confidence: float,
           min_inputs: int = MIN_INPUTS, sims: int = PLAN_SIMULATIONS) -> float:
    """Power of the lab's reading at n inputs x k repeats: simulated through its sign-flip test up
    to ``EXACT_UP_TO`` inputs, the t-test's exact power above (the t-test is what it runs there)."""
    if n < min_inputs:
        return 0.0
    if n <= EXACT_UP_TO:
        # far out of reach for the t-test at this size: the sign-flip test (never much stronger) is too
        if _power_t(difference, c.between + c.within / k, n, confidence) < 0.2:
            return _power_t(difference, c.between + c.within / k, n, confidence)
        return _power_sim(difference, c, n, k, confidence, sims=sims)
    return _power_t(difference, c.between + c.within / k, n, confidence)


def predicted_power(difference: float, *, between_var: float, within_var: float, inputs: int, repeats: int,
                    confidence: float = 0.95, min_inputs: int = MIN_INPUTS, rate: float | None = None) -> float:
    """Power of the paired verdict to detect ``difference`` with ``inputs`` x ``repeats``, from the
    variance components: the lab's own procedure, simulated through its sign-flip test for 6-12
    inputs (0/1 outcomes at ``rate`` when given, else normal per-input means) and the t-test's exact
    power above; 0 below ``min_inputs`` inputs, where there is no verdict."""
    c = _components(between_var, within_var, rate)
    return _power(difference, c, inputs, repeats, confidence, min_inputs)


def _components(between: float, within: float, rate: float | None) -> _Components:
    base_var = 0.0 if rate is None else max(0.0, rate * (1 - rate) - within / 2)
    return _Components(between=between, within=within, rate=rate, base_var=base_var)


@dataclass(frozen=True)
class PlanOption:
    """One way to reach the requested power: ``inputs`` x ``repeats`` per variant. ``power`` is
    predicted on the pessimistic between-input variance the plan uses, ``power_if_as_estimated``
    on the pilot's own estimate."""

    inputs: int
    repeats: int
    calls: int
    power: float
    cost_usd: float | None
    power_if_as_estimated: float = math.nan


@dataclass(frozen=True)
class Plan:
    """How many inputs at how many repeats detect ``difference`` between two variants (see :func:`plan`)."""

    a: str
    b: str
    difference: float
    power: float
    confidence: float
    between_var: float
    within_var: float
    pilot_inputs: int
    pilot_repeats: int
    detectable_now: float
    options: list[PlanOption]
    recommended: PlanOption
    repeats_for_pilot_inputs: int | None
    advice: str
    cost_per_call: float | None
    notes: list[str] = field(default_factory=list)
    between_var_planned: float = math.nan
    rate: float | None = None

    # what lab.batch.suggest reads
    @property
    def calls_needed(self) -> int:
        return self.recommended.calls

    @property
    def cost_usd(self) -> float | None:
        return self.recommended.cost_usd

    @property
    def batch_cost_usd(self) -> float | None:
        return None if self.cost_usd is None else self.cost_usd / 2

    def power_at(self, inputs: int, repeats: int, *, as_estimated: bool = False) -> float:
        """Predicted power with ``inputs`` x ``repeats`` per variant, on the planned (pessimistic)
        between-input variance, or with ``as_estimated=True`` on the pilot's own estimate."""
        between = self.between_var if as_estimated or not math.isfinite(self.between_var_planned) \
            else self.between_var_planned
        return predicted_power(self.difference, between_var=between, within_var=self.within_var, inputs=inputs,
                               repeats=repeats, confidence=self.confidence, rate=self.rate)

    def table(self) -> pd.DataFrame:
        """Every option considered: inputs needed at each number of repeats, calls, power, cost."""
        return pd.DataFrame([o.__dict__ for o in self.options]).set_index("repeats")

    def __str__(self) -> str:
        r = self.recommended
        cost = "" if r.cost_usd is None else f", about ${r.cost_usd:.4f} (${r.cost_usd / 2:.4f} with a batch API)"
        lines = [
            f"To detect {self.a} - {self.b} = {self.difference:g} with {self.power:.0%} power at {self.confidence:.0%} "
            f"confidence: {plural(r.inputs, 'input')} x {plural(r.repeats, 'repeat')} ({r.calls} calls{cost}).",
            f"Predicted power {r.power:.0%} on the planned between-input variance, {r.power_if_as_estimated:.0%} if it "
            "is as the pilot estimated.",
            f"Variance of a paired difference: between inputs {self.between_var:.4f} as estimated, planned on "
            f"{self.between_var_planned:.4f} (the {PLAN_QUANTILE:.0%} upper bound the pilot allows: a pilot's spread "
            f"is uncertain, and optimism here is what makes experiments too small); within an input "
            f"{self.within_var:.4f} (divided by repeats).",
            self.advice,
            self._detectable_text(),
        ]
        return "\n".join(lines + self.notes)

    def _detectable_text(self) -> str:
        now = f"The current experiment ({plural(self.pilot_inputs, 'input')} x {plural(self.pilot_repeats, 'repeat')})"
        if self.pilot_inputs < MIN_INPUTS:
            return f"{now} is below the {MIN_INPUTS} inputs a verdict needs."
        if not math.isfinite(self.detectable_now) or (self.rate is not None and self.detectable_now > 1):
            return f"{now} cannot detect even the largest possible difference with {self.power:.0%} power."
        return f"{now} can detect a difference of about {self.detectable_now:.3f}."

    def _repr_html_(self) -> str:
        import html

        return "<pre>" + html.escape(str(self)) + "</pre>" + self.table().to_html()


REPEAT_CHOICES = (1, 2, 3, 5, 10, 20, 50, 100)


def variance_components(pairs: pd.DataFrame, cluster: str = "input_id") -> tuple[float, float, list[str]]:
    """(between-input variance, within-input variance, notes) of paired differences a - b."""
    d = (pairs["a"] - pairs["b"]).to_numpy(dtype=float)
    codes = pd.factorize(pairs[cluster].astype(str))[0] if cluster in pairs else np.arange(len(d))
    sums, sizes, sumsq = _cluster_sums(d, codes)
    notes: list[str] = []
    within_df = float((sizes - 1).sum())
    if within_df > 0:
        within = float(sumsq.sum() / within_df)
    else:  # one call per input: binomial spread at the pilot's rates (an upper bound for 0/1 values)
        pa, pb = float(pairs["a"].mean()), float(pairs["b"].mean())
        within = pa * (1 - pa) + pb * (1 - pb) if _is_rate(pairs["a"].to_numpy(float)) else float(np.var(d, ddof=1))
        notes.append("The pilot has one repeat per input, so the spread within an input is assumed from its rates.")
    means_ = sums / sizes
    between = 0.0
    if len(means_) >= 2:
        between = max(0.0, float(np.var(means_, ddof=1)) - within * float(np.mean(1 / sizes)))
    return between, within, notes


def _planned_between(pairs: pd.DataFrame, within: float, cluster: str = "input_id") -> float:
    """The between-input variance at its ``PLAN_QUANTILE`` upper bound: the spread of the pilot's
    per-input mean differences, taken at a chi-square upper bound, less the within-input part."""
    d = (pairs["a"] - pairs["b"]).to_numpy(dtype=float)
    codes = pd.factorize(pairs[cluster].astype(str))[0] if cluster in pairs else np.arange(len(d))
    sums, sizes, _ = _cluster_sums(d, codes)
    n = len(sums)
    if n < 2:
        return math.nan
    total = float(np.var(sums / sizes, ddof=1)) * (n - 1) / float(chi2_ppf(1 - PLAN_QUANTILE, n - 1))
    return max(0.0, total - within * float(np.mean(1 / sizes)))


def _fewest_inputs(power_at, target: float, max_inputs: int) -> int | None:
    """The smallest n >= MIN_INPUTS with power_at(n) >= target (exact: every n up to EXACT_UP_TO,
    then a bisection on the t-test's power, which grows with n)."""
    for n in range(MIN_INPUTS, EXACT_UP_TO + 1):
        if power_at(n) >= target:
            return n
    lo, hi = EXACT_UP_TO, EXACT_UP_TO + 1
    while power_at(hi) < target:
        lo, hi = hi, hi * 2
        if lo > max_inputs:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power_at(mid) >= target else (mid, hi)
    return hi if hi <= max_inputs else None


def plan(pilot: pd.DataFrame, a: str, b: str, *, difference: float, value: str = "passed", power: float = 0.8,
         confidence: float = 0.95, variant_col: str = "variant", pair_on: Sequence[str] = PAIR_KEYS,
         repeat_choices: Sequence[int] = REPEAT_CHOICES, max_inputs: int = 100_000) -> Plan:
    """From a pilot run, plan an experiment that detects ``a`` - ``b`` = ``difference``: inputs x repeats.

    The pilot's paired differences give two variance components: between inputs (how much the
    effect differs from input to input) and within an input (the model's sampling noise); repeats
    only shrink the second. A pilot's between-input variance is uncertain (and easily estimated as
    0), so the plan uses its ``PLAN_QUANTILE`` upper bound and says so; ``power_if_as_estimated``
    gives the power on the point estimate. Power is that of the lab's own reading: simulated through
    the sign-flip test for 6-12 inputs (0/1 outcomes at the pilot's rates), the t-test's exact power
    above. For each number of repeats in ``repeat_choices`` the plan finds the fewest inputs that
    reach ``power`` (an exact search); ``recommended`` is the option with the fewest calls, ties
    going to more inputs; ``repeats_for_pilot_inputs`` is the repeats that reach the power on the
    pilot's own inputs, or None when no number can ("add inputs: the spread between inputs
    dominates"). ``detectable_now`` is the smallest difference the pilot's own size detects with
    ``power``. Cost uses the pilot's mean ``cost_usd`` per call (None when a price is unknown); batch
    APIs bill half. When the pilot's pairs never differ, the within-input spread of independent
    outcomes at its mean rate (clipped to 0.05..0.95) is assumed, so a tiny pilot never claims one
    call is enough.
    """
    if isinstance(difference, bool) or not (isinstance(difference, (int, float)) and difference > 0):
        raise ParameterError(f"difference must be a positive number (the effect to detect), got {difference!r}")
    if not 0 < power < 1 or not 0 < confidence < 1:
        raise ParameterError("power and confidence must be between 0 and 1")
    pairs = _pairs(pilot, a, b, value, variant_col, pair_on)
    if len(pairs) < 2:
        raise ParameterError(f"the pilot has {len(pairs)} pair(s) of {a!r} and {b!r} with a {value} value; run at least 2")
    between, within, notes = variance_components(pairs)
    both = np.concatenate([pairs["a"], pairs["b"]])
    rate = float(both.mean()) if _is_rate(both) else None
    if between == 0 and within == 0:
        p = float(np.clip(both.mean(), 0.05, 0.95))
        within = 2 * p * (1 - p)
        notes.append(f"The pilot's pairs never differed; assumed independent outcomes at rate {p:.2f}.")
    planned = _planned_between(pairs, within)
    if not math.isfinite(planned):
        planned = between
    comp = _components(planned, within, rate)
    central = _components(between, within, rate)
    n_inputs = int(pairs["input_id"].nunique()) if "input_id" in pairs else len(pairs)
    pilot_repeats = max(1, round(len(pairs) / max(n_inputs, 1)))
    sub = pilot[pilot[variant_col].isin([a, b])]
    costs = sub["cost_usd"] if "cost_usd" in sub else pd.Series(dtype=float)
    per_call = None if costs.empty or costs.isna().any() else float(costs.mean())

    options = []
    for k in sorted(set(int(r) for r in repeat_choices)):
        n = _fewest_inputs(lambda n, k=k: _power(difference, comp, n, k, confidence), power, max_inputs)
        if n is None:
            continue
        calls = 2 * n * k
        options.append(PlanOption(inputs=n, repeats=k, calls=calls, power=_power(difference, comp, n, k, confidence),
                                  cost_usd=None if per_call is None else per_call * calls,
                                  power_if_as_estimated=_power(difference, central, n, k, confidence)))
    if not options:
        raise ParameterError(f"no plan reaches {power:.0%} power for a difference of {difference:g} within "
                             f"{max_inputs} inputs; ask about a larger difference")
    recommended = min(options, key=lambda o: (o.calls, -o.inputs))
    rough = PLAN_SIMULATIONS // 4  # the searches below say "about": fewer simulated experiments will do
    on_pilot = _repeats_on(lambda k: _power(difference, comp, n_inputs, k, confidence, sims=rough), power)
    if on_pilot is not None:
        advice = (f"On the pilot's {plural(n_inputs, 'input')}, {plural(on_pilot, 'repeat')} reach {power:.0%} power"
                  + ("." if on_pilot <= recommended.repeats or recommended.inputs >= n_inputs else
                     f"; {plural(recommended.inputs, 'input')} x {plural(recommended.repeats, 'repeat')} is cheaper."))
    elif n_inputs < MIN_INPUTS:
        advice = (f"add inputs: {plural(n_inputs, 'input')} {'is' if n_inputs == 1 else 'are'} below the {MIN_INPUTS} "
                  "a verdict needs, whatever the repeats.")
    else:
        limit = _power(difference, _components(planned, 0.0, None), n_inputs, 10 ** 6, confidence)
        unlimited = _fewest_inputs(lambda n: _power(difference, _components(planned, 0.0, None), n, 1, confidence),
                                   power, max_inputs)
        advice = (f"add inputs: the spread between inputs dominates. On the pilot's {plural(n_inputs, 'input')} "
                  f"no number of repeats reaches {power:.0%} power (at most {limit:.0%}); even with unlimited repeats it takes "
                  f"{unlimited if unlimited is not None else 'more than ' + str(max_inputs)} inputs.")
    detectable = _detectable(lambda d: _power(d, comp, n_inputs, pilot_repeats, confidence, sims=rough),
                             power) if n_inputs >= MIN_INPUTS else math.inf
    return Plan(a=a, b=b, difference=float(difference), power=power, confidence=confidence, between_var=between,
                within_var=within, pilot_inputs=n_inputs, pilot_repeats=pilot_repeats, detectable_now=detectable,
                options=options, recommended=recommended, repeats_for_pilot_inputs=on_pilot, advice=advice,
                cost_per_call=per_call, notes=notes, between_var_planned=planned, rate=rate)


def _repeats_on(power_at, target: float, most: int = 1000) -> int | None:
    """The fewest repeats (1..most) that reach ``target`` on a fixed number of inputs, or None."""
    if power_at(most) < target:
        return None
    lo, hi = 0, most
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power_at(mid) >= target else (mid, hi)
    return hi


def _detectable(power_at, target: float) -> float:
    """The smallest difference (to 0.001) that reaches ``target`` power; inf when even 2 does not."""
    if power_at(2.0) < target:
        return math.inf
    lo, hi = 0.0, 2.0
    while hi - lo > 1e-3:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if power_at(mid) >= target else (mid, hi)
    return hi


@dataclass(frozen=True)
class PowerEstimate:
    """A planned run in calls and cost, for :func:`lab.batch.suggest` (:func:`plan` answers in inputs x repeats)."""

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
        cost = ("unknown cost" if self.cost_usd is None
                else f"about ${self.cost_usd:.4f} (${self.batch_cost_usd:.4f} with a batch API)")
        return (f"To detect a difference of {self.difference:g} with {self.power:.0%} power at {self.confidence:.0%} "
                f"confidence: {self.pairs_needed} pairs, i.e. {self.repeats_needed} repeats of {self.inputs} inputs "
                f"({self.calls_needed} calls, {cost}). {self.note}")
