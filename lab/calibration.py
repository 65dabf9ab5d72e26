"""Does the model know when it does not know? Calibration and selective answering from the
confidence records of runs made with ``confidence=True`` (see :mod:`lab.logprobs`).

    df = lab.tables.with_grades(log.runs(experiment=exp_id), log.grades(exp_id))
    lab.calibration.calibration(df)          # Brier and ECE (next to a calibrated model's) per variant and tag
    lab.calibration.reliability(df)          # per confidence bin: count, mean confidence, accuracy
    lab.calibration.selective(df)            # coverage vs accuracy when abstaining below a threshold
    lab.calibration.confident_hallucinations(df)

"Correct" comes from the grader (``passed``); confidence is the probability of the answer's first
word (``p_answer``), or of its first token (``which="p_first"``). Calibration reads answered runs
(an escape states no answer to be confident in). Intervals are over inputs: the inputs are the
sample, so Brier and ECE intervals resample inputs (a seeded bootstrap), and rates use
:func:`lab.stats.rates` / :func:`lab.stats.means`. Runs without a record (confidence not asked
for, or a provider such as Anthropic that returns no log-probabilities) are left out and named
by :func:`availability`: "no confidence available", never a zero.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from .errors import ParameterError
from .logprobs import probability_of
from .stats import MIN_INPUTS, _cluster_sums, clustered_interval, means, rates

Which = Literal["p_answer", "p_first"]
NO_CONFIDENCE = "no confidence available"
UNANSWERABLE = "unanswerable"


def _keys(by: str | Sequence[str] | None) -> list[str]:
    return [] if by is None else ([by] if isinstance(by, str) else list(by))


def _answers(runs: pd.DataFrame) -> pd.DataFrame:
    df = runs
    if "role" in df:
        df = df[df["role"].fillna("answer").isin(["answer", "revision"])]
    return df[df["outcome"] != "error"]


def availability(runs: pd.DataFrame) -> pd.DataFrame:
    """Per model: calls, calls with a confidence record, and ``status`` (``available`` or
    ``no confidence available``)."""
    df = _answers(runs)
    rec = df["confidence"] if "confidence" in df else pd.Series([None] * len(df), index=df.index)
    has = rec.map(lambda r: isinstance(r, dict))
    out = pd.DataFrame({"calls": df.groupby("model").size(), "with_confidence": has.groupby(df["model"]).sum()})
    out["status"] = np.where(out["with_confidence"] > 0, "available", NO_CONFIDENCE)
    return out


def confidence_rows(runs: pd.DataFrame, *, which: Which = "p_answer") -> pd.DataFrame:
    """Answered runs that have a confidence record and a grade, with ``conf`` (the probability)
    and ``correct`` (0/1 from ``passed``) columns. Needs :func:`lab.tables.with_grades` first."""
    if which not in ("p_answer", "p_first"):
        raise ParameterError(f"which must be 'p_answer' or 'p_first', got {which!r}")
    if "passed" not in runs:
        raise ParameterError("calibration needs grades: lab.tables.with_grades(runs, grades) adds the passed column")
    df = _answers(runs)
    df = df[df["outcome"] == "answered"]
    if "confidence" not in df:
        return df.iloc[0:0].assign(conf=[], correct=[])
    conf = df["confidence"].map(lambda r: r.get(which) if isinstance(r, dict) else None)
    df = df.assign(conf=pd.to_numeric(conf, errors="coerce"), correct=pd.to_numeric(df["passed"], errors="coerce"))
    return df[df["conf"].notna() & df["correct"].notna()]


def _tag_groups(df: pd.DataFrame, keys: list[str], split_by_tag: bool) -> list[tuple[tuple, pd.DataFrame]]:
    groups = [] if not keys else list(df.groupby(keys, sort=False, dropna=False))
    if not keys:
        groups = [((), df)]
    out = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        out.append((key + (("all",) if split_by_tag else ()), g))
        if split_by_tag:
            tags = sorted({t for ts in g["input_tags"] for t in (ts or ["normal"])})
            for t in tags:
                out.append((key + (t,), g[g["input_tags"].map(lambda ts, t=t: t in (ts or ["normal"]))]))
    return out


def _bin_index(conf: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum((conf * bins).astype(int), bins - 1)


def _brier_ece_by_input(g: pd.DataFrame, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per input: row count, summed squared error, and per bin its count, summed confidence and
    summed correctness (so that any reweighting of inputs gives Brier and ECE in one product)."""
    ids, inv = np.unique(g["input_id"].astype(str).to_numpy(), return_inverse=True)
    conf, y = g["conf"].to_numpy(float), g["correct"].to_numpy(float)
    b = _bin_index(conf, bins)
    n_i = np.bincount(inv, minlength=len(ids)).astype(float)
    se_i = np.bincount(inv, weights=(conf - y) ** 2, minlength=len(ids))
    cnt = np.zeros((len(ids), bins))
    sc = np.zeros((len(ids), bins))
    sy = np.zeros((len(ids), bins))
    np.add.at(cnt, (inv, b), 1.0)
    np.add.at(sc, (inv, b), conf)
    np.add.at(sy, (inv, b), y)
    return n_i, se_i, cnt, sc, sy


def _brier_ece(w: np.ndarray, n_i, se_i, cnt, sc, sy) -> tuple[np.ndarray, np.ndarray]:
    """Brier and ECE for input weights ``w`` (R x inputs): the observed data has weights 1."""
    n = w @ n_i
    brier = (w @ se_i) / n
    s_c, s_y = w @ sc, w @ sy
    ece = np.abs(s_c - s_y).sum(axis=1) / n  # sum over bins of n_b/N * |mean conf_b - acc_b|
    return brier, ece


def _calibrated_ece(conf: np.ndarray, bins: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """ECE of a perfectly calibrated model with these confidences (each answer correct with its own
    stated probability): ``draws`` simulated values. A finite sample's ECE is above 0 even then."""
    onehot = np.eye(bins)[_bin_index(conf, bins)]
    y = (rng.random((draws, len(conf))) < conf).astype(float)
    return np.abs(conf @ onehot - y @ onehot).sum(axis=1) / len(conf)


def calibration(runs: pd.DataFrame, *, by: str | Sequence[str] | None = "variant", split_by_tag: bool = True,
                which: Which = "p_answer", bins: int = 10, confidence: float = 0.95, n_resamples: int = 2000,
                seed: int = 0) -> pd.DataFrame:
    """Per group (and tag): ``n`` answered runs with a confidence, ``inputs``, ``mean_confidence``,
    ``accuracy``, the Brier score (mean squared gap between confidence and correctness; 0 is
    perfect, 0.25 is a constant 50%) and the expected calibration error (``ece``: the
    count-weighted gap between confidence and accuracy over ``bins`` equal-width bins).

    ECE is biased upward on a finite sample: a perfectly calibrated model of 10 inputs x 1 shows
    about 0.25. So next to it stand ``ece_calibrated`` (the mean ECE a perfectly calibrated model
    with these confidences would show on this many answers) and ``ece_corrected`` = ``ece`` -
    ``ece_calibrated`` (about 0 for a calibrated model; can be slightly negative), whose interval
    ``ece_corrected_low``/``_high`` is a basic (bias-correcting) bootstrap over inputs: inputs are
    resampled whole, with their repeats. ``brier_low``/``_high`` and ``ece_low``/``_high`` are
    percentile bootstrap intervals over inputs. Fewer than 2 inputs give no interval."""
    if bins < 1 or not 0 < confidence < 1:
        raise ParameterError("bins must be >= 1 and confidence between 0 and 1")
    df = confidence_rows(runs, which=which)
    keys = _keys(by) + (["tag"] if split_by_tag else [])
    rows = []
    rng = np.random.default_rng(seed)
    nan = math.nan
    for key, g in _tag_groups(df, _keys(by), split_by_tag):
        if g.empty:
            continue
        parts = _brier_ece_by_input(g, bins)
        k = len(parts[0])
        brier, ece = (float(x[0]) for x in _brier_ece(np.ones((1, k)), *parts))
        null = float(_calibrated_ece(g["conf"].to_numpy(float), bins, 200, rng).mean())
        lo_b = hi_b = lo_e = hi_e = lo_c = hi_c = nan
        if k >= 2:
            w = rng.multinomial(k, np.full(k, 1 / k), size=n_resamples).astype(float)
            bb, ee = _brier_ece(w, *parts)
            a = (1 - confidence) / 2
            lo_b, hi_b = (float(x) for x in np.quantile(bb, [a, 1 - a]))
            lo_e, hi_e = (float(x) for x in np.quantile(ee, [a, 1 - a]))
            q_lo, q_hi = (float(x) for x in np.quantile(ee - null, [a, 1 - a]))
            lo_c, hi_c = 2 * (ece - null) - q_hi, 2 * (ece - null) - q_lo
        rows.append({**dict(zip(keys, key)), "n": len(g), "inputs": k, "mean_confidence": float(g["conf"].mean()),
                     "accuracy": float(g["correct"].mean()), "brier": brier, "brier_low": lo_b, "brier_high": hi_b,
                     "ece": ece, "ece_low": lo_e, "ece_high": hi_e, "ece_calibrated": null,
                     "ece_corrected": ece - null, "ece_corrected_low": lo_c, "ece_corrected_high": hi_c})
    cols = keys + ["n", "inputs", "mean_confidence", "accuracy", "brier", "brier_low", "brier_high", "ece",
                   "ece_low", "ece_high", "ece_calibrated", "ece_corrected", "ece_corrected_low", "ece_corrected_high"]
    out = pd.DataFrame(rows, columns=cols)
    return out.set_index(keys) if keys else out


def reliability(runs: pd.DataFrame, *, by: str | Sequence[str] | None = "variant", which: Which = "p_answer",
                bins: int = 10, confidence: float = 0.95) -> pd.DataFrame:
    """The reliability diagram's numbers: per group and confidence bin, ``n`` (count), ``inputs``,
    the bin's edges, ``mean_confidence`` and ``accuracy`` (share of the bin's answers graded
    correct) with an interval over inputs (``low``/``high``: the answers of one input are one piece
    of evidence, as in :func:`lab.stats.rates` with ``weight="calls"``; NaN below
    ``lab.stats.MIN_INPUTS`` inputs in the bin). Empty bins are left out. A calibrated model has
    accuracy close to mean confidence in each bin."""
    df = confidence_rows(runs, which=which)
    keys = _keys(by)
    df = df.assign(bin=_bin_index(df["conf"].to_numpy(float), bins))
    rows = []
    for key, g in df.groupby(keys + ["bin"], sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        n, k = len(g), int((g["correct"] > 0.5).sum())
        codes = pd.factorize(g["input_id"].astype(str))[0]
        ci = clustered_interval(*(a[None] for a in _cluster_sums(g["correct"].to_numpy(float), codes)),
                                confidence=confidence, bounds=(0.0, 1.0), weight="calls", min_inputs=MIN_INPUTS)
        b = int(key[-1])
        rows.append({**dict(zip(keys, key[:-1])), "bin_low": b / bins, "bin_high": (b + 1) / bins, "n": n,
                     "inputs": int(ci["inputs"][0]), "mean_confidence": float(g["conf"].mean()), "accuracy": k / n,
                     "low": float(ci["low"][0]), "high": float(ci["high"][0])})
    return pd.DataFrame(rows, columns=keys + ["bin_low", "bin_high", "n", "inputs", "mean_confidence", "accuracy",
                                              "low", "high"])


def selective(runs: pd.DataFrame, *, by: str | Sequence[str] | None = "variant",
              which: Which = "p_answer") -> pd.DataFrame:
    """Selective answering: for each threshold, abstain on answers whose confidence is below it.

    One row per (group, threshold) with ``kind="threshold"``: ``coverage`` (share of all calls
    still answered; escapes always count as abstentions), ``accuracy`` (graded correct among those
    answered), ``abstained_unanswerable`` (share of the abstentions that fell on inputs tagged
    unanswerable: the right ones to abstain on). Plus one row per group with ``kind="hatch"``:
    the declared escape hatch alone (threshold 0). Compare a variant without the hatch (its curve)
    with one with it (its point) to see whether the hatch abstains on the right inputs or a
    threshold would do better."""
    if "passed" not in runs:
        raise ParameterError("selective answering needs grades: lab.tables.with_grades(runs, grades) adds passed")
    df = _answers(runs)
    keys = _keys(by)
    rows = []
    groups = list(df.groupby(keys, sort=False, dropna=False)) if keys else [((), df)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        unans = g["input_tags"].map(lambda t: UNANSWERABLE in (t or [])).to_numpy(bool)
        answered = (g["outcome"] == "answered").to_numpy(bool)
        conf = pd.to_numeric(g["confidence"].map(lambda r: r.get(which) if isinstance(r, dict) else None)
                             if "confidence" in g else pd.Series(np.nan, index=g.index), errors="coerce").to_numpy(float)
        correct = pd.to_numeric(g["passed"], errors="coerce").fillna(0).to_numpy(float)
        n = len(g)
        if n == 0:
            continue

        def point(keep: np.ndarray, kind: str, threshold: float) -> dict:
            abst = ~keep
            return {**dict(zip(keys, key)), "kind": kind, "threshold": threshold, "n": n,
                    "answered": int(keep.sum()), "coverage": keep.sum() / n,
                    "accuracy": float(correct[keep].mean()) if keep.any() else math.nan,
                    "abstained_unanswerable": float(unans[abst].mean()) if abst.any() else math.nan}

        rows.append(point(answered, "hatch", 0.0))
        have = answered & ~np.isnan(conf)
        for t in sorted(set(conf[have].tolist())):
            rows.append(point(have & (conf >= t), "threshold", float(t)))
    cols = keys + ["kind", "threshold", "n", "answered", "coverage", "accuracy", "abstained_unanswerable"]
    return pd.DataFrame(rows, columns=cols)


def confident_hallucinations(runs: pd.DataFrame, *, threshold: float = 0.5, by: str | Sequence[str] | None = "variant",
                             which: Which = "p_answer") -> pd.DataFrame:
    """On inputs tagged unanswerable, the answers given anyway (not escaped), with how confident
    the model was: ``hallucinations`` (answers given), ``mean_confidence`` with an interval
    (:func:`lab.stats.means`), and ``confident`` (share at or above ``threshold``, with a Wilson
    interval from :func:`lab.stats.rates`)."""
    df = _answers(runs)
    df = df[df["input_tags"].map(lambda t: UNANSWERABLE in (t or [])) & (df["outcome"] == "answered")]
    conf = df["confidence"].map(lambda r: r.get(which) if isinstance(r, dict) else None) if "confidence" in df \
        else pd.Series([], dtype=float)
    df = df.assign(conf=pd.to_numeric(conf, errors="coerce"))
    df = df[df["conf"].notna()]
    df = df.assign(confident=(df["conf"] >= threshold).astype(float))
    m = means(df, value="conf", by=by).rename(columns={"n": "hallucinations", "mean": "mean_confidence",
                                                       "low": "confidence_low", "high": "confidence_high"})
    r = rates(df, value="confident", by=by).rename(columns={"rate": "confident", "low": "confident_low",
                                                           "high": "confident_high"})
    return m[["hallucinations", "mean_confidence", "confidence_low", "confidence_high"]].join(
        r[["confident", "confident_low", "confident_high"]])


def probability_scores(runs: pd.DataFrame, *, by: str | Sequence[str] | None = "variant",
                       split_by_tag: bool = False) -> pd.DataFrame:
    """The sampled outcome next to the model's probability of being right, per group: ``passed``
    rate (:func:`lab.stats.rates`) and mean ``p_correct`` (:func:`lab.stats.means`), where
    ``p_correct`` is the probability the model gave, at the first answer position, to tokens that
    start an accepted answer (the escape string on unanswerable inputs). For single-token answers
    this scores every call by its expected correctness instead of one draw: the same mean, less
    variance (see README). Only calls whose output is one word count (``n``): when the model
    starts with "The answer is ...", its first position says nothing about the answer."""
    df = _answers(runs)
    if "passed" not in df:
        raise ParameterError("probability_scores needs grades: lab.tables.with_grades(runs, grades) adds passed")
    records = df["confidence"] if "confidence" in df else pd.Series([None] * len(df), index=df.index)
    one_word = df["output"].map(lambda o: isinstance(o, str) and len(re.findall(r"\w+", o)) == 1)
    p = [probability_of(rec, exp) if ok else None for rec, exp, ok in zip(records, df["expected"], one_word)]
    df = df.assign(p_correct=pd.to_numeric(pd.Series(p, index=df.index, dtype=object), errors="coerce"))
    df = df[df["p_correct"].notna()]
    r = rates(df, value="passed", by=by, split_by_tag=split_by_tag)
    m = means(df, value="p_correct", by=by, split_by_tag=split_by_tag)
    return r[["n", "rate", "low", "high"]].rename(columns={"rate": "sampled_pass_rate", "low": "sampled_low",
                                                           "high": "sampled_high"}).join(
        m[["mean", "low", "high"]].rename(columns={"mean": "p_correct", "low": "p_correct_low",
                                                   "high": "p_correct_high"}))
